"""The KL early stop's settings (``target_kl`` None, ``kl_rule``) and the shared torso (``shared_torso``; METHOD
§4-§5): tiny linear networks for the update, the real networks for features/heads, a trainer-level learning run
and an exact resume."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax import ppo
from rl3jax.cli import main as cli_main
from rl3jax.config import TrainConfig, parse_sets
from rl3jax.evaluate import evaluate
from rl3jax.networks import make_network
from rl3jax.runs.driver import train
from rl3jax.trainer import jit_chunk, make_train
from tests.helpers import TINY, _leaves_equal
from tests.test_ppo import CFG, EPOCHS1, NO_STOP, B, M, actor_apply, critic_apply, hparams, setup, tree_allclose

D = 3  # the linear shared torso's width


def _run(cfg, lr=0.5, actor=actor_apply, seed=0):
    ac, rollout = setup(seed)
    return ppo.ppo_update(cfg, actor, critic_apply, jax.random.PRNGKey(7), ac, hparams(lr=lr), *rollout, 0)


# ---------------------------------------------------------------------------------------- the KL early stop


def _full_batch_calls(cfg) -> list:
    """Leading sizes of the obs the actor saw while ``ppo_update`` was traced: B is a full-batch (KL) pass."""
    seen = []

    def actor(p, obs):
        seen.append(obs.shape[0])
        return actor_apply(p, obs)

    jax.eval_shape(lambda: _run(cfg, actor=actor))
    return [s for s in seen if s == B]


def test_no_kl_stop_runs_no_kl_pass_and_trains_every_epoch():
    off = CFG.replace(target_kl=None)
    assert _full_batch_calls(off) == [] and _full_batch_calls(CFG) == [B]  # 'full': one pass per epoch (scan body)
    ac, m = _run(off)
    ac_huge, m_huge = _run(NO_STOP)  # the old way to switch it off: a target the KL never reaches
    assert int(m["actor_epochs"]) == 4 and int(ac.actor_opt.count) == 8
    assert tree_allclose(ac, ac_huge, rtol=1e-6, atol=1e-7)
    # with no stop, kl reports the last epoch's mean per-minibatch approx_kl (free), not a full-batch pass
    _, m1 = _run(EPOCHS1.replace(target_kl=None))
    assert float(m1["kl"]) == float(m1["approx_kl"])


def test_minibatch_kl_rule_uses_the_epochs_approx_kl_without_a_pass():
    rule = CFG.replace(kl_rule="minibatch")
    assert _full_batch_calls(rule) == []
    ac1, m1 = _run(EPOCHS1.replace(kl_rule="minibatch"))
    assert float(m1["kl"]) == float(m1["approx_kl"])  # one epoch: its minibatch mean is the metric's
    assert float(m1["kl"]) >= 0.01  # lr 0.5: past the target after epoch 1 (minibatch 2 saw the moved policy)
    ac4, m4 = _run(rule)
    assert int(m4["actor_epochs"]) == 1 and int(ac4.actor_opt.count) == 2 and int(ac4.critic_opt.count) == 8
    assert tree_allclose(ac4.actor_params, ac1.actor_params, rtol=1e-6, atol=1e-7)
    # the rule lags: the first minibatch's KL is 0 (π_old itself), so it is below the full-batch KL after the epoch
    _, full1 = _run(EPOCHS1)
    assert float(m1["kl"]) < float(full1["kl"])


def test_kl_settings_without_a_stop_are_refused_and_none_parses():
    assert parse_sets(["target_kl=none"]) == {"target_kl": None}
    assert TrainConfig.from_dict({"target_kl": 1e9}).target_kl == 1e9  # old config.json files still load
    for kw, msg in (({"target_kl": None, "kl_rule": "minibatch"}, "^kl_rule=minibatch configures the KL stop, and "
                                                                  "target_kl=none turns it off"),
                    ({"target_kl": None, "kl_chunks": 2}, "^kl_chunks=2 configures the KL stop, and target_kl=none"),
                    ({"kl_rule": "minibatch", "kl_chunks": 2}, "^kl_chunks=2 splits only kl_rule 'full''s full-batch pass"),
                    ({"kl_rule": "last"}, "kl_rule 'last' is not one of full, minibatch"),
                    ({"target_kl": 0.0}, "target_kl must be in"),
                    ({"shared_torso": True, "model": "markov-v4"}, "shared_torso does not apply to model 'markov-v4'")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(num_envs=4, minibatch_envs=2, **kw)


# ---------------------------------------------------------------------------------------- the shared torso


def _shared_setup(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    ap = {"w": 0.5 * jax.random.normal(k[0], (M, D)), "wa": 0.5 * jax.random.normal(k[1], (D, 2)), "ba": jnp.zeros(2)}
    cp = {"wv": 0.5 * jax.random.normal(k[2], (D,)), "bv": jnp.zeros(())}
    return ap, cp


def _joint(params, obs):
    h = jnp.tanh(obs @ params[0]["w"])
    return h @ params[0]["wa"] + params[0]["ba"], h @ params[1]["wv"] + params[1]["bv"]


def _shared_actor(ap, obs):
    return jnp.tanh(obs @ ap["w"]) @ ap["wa"] + ap["ba"]


def _reference_loss(params, mb, ent, cfg):
    """PPO's joint loss written out (METHOD §5): clipped surrogate − ent·entropy + vf·MSE."""
    logits, values = _joint(params, mb.obs)
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, mb.actions[..., None], -1)[..., 0]
    adv = (mb.advantages - mb.advantages.mean()) / (mb.advantages.std() + 1e-8)
    r = jnp.exp(logp - mb.old_logp)
    surrogate = jnp.minimum(r * adv, jnp.clip(r, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv).mean()
    entropy = (-(jnp.exp(logp_all) * logp_all).sum(-1)).mean()
    return -surrogate - ent * entropy + cfg.vf_coef * ((values - mb.targets) ** 2).mean()


def test_shared_update_equals_a_hand_written_joint_loss_and_one_adam():
    """One epoch of 2 minibatches: two steps of one Adam (β 0.9 / 0.999, ε 1e-7, NumPy) on the gradient of the
    written-out joint loss, the coupled decay on the value head only; and the full-batch KL after the epoch."""
    cfg, lr, wd, ent = EPOCHS1, 0.05, 0.3, 0.02
    _, (traj, values) = setup()
    ap, cp = _shared_setup()
    logits0 = _shared_actor(ap, traj.obs)
    traj = traj.replace(logits=logits0, logp=ppo.log_prob(logits0, traj.actions))
    batch = ppo.make_batch(traj, values, cfg, 0.3)
    mbs = ppo.minibatches(batch, jnp.array([3, 0, 2, 1]), cfg)
    ac = ppo.ActorCritic(ap, ppo.ADAM.init(ap), cp, ppo.ADAM.init(cp))
    out, metrics, kl, c_loss = jax.jit(lambda ac, mbs: ppo.update_shared(
        cfg, _joint, _shared_actor, ac, mbs, ent, jnp.float32(lr), jnp.float32(wd), traj.obs, traj.logits))(ac, mbs)

    p = jax.tree.map(lambda x: np.asarray(x, np.float64), (ap, cp))
    mom = jax.tree.map(np.zeros_like, p)
    sq = jax.tree.map(np.zeros_like, p)
    losses = []
    for t in (1, 2):
        mb = jax.tree.map(lambda x, t=t: x[t - 1], mbs)
        params32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), p)
        losses.append(float(_reference_loss(params32, mb, ent, cfg)))
        g = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.grad(_reference_loss)(params32, mb, ent, cfg))
        g = (g[0], jax.tree.map(lambda gi, pi: gi + wd * pi, g[1], p[1]))  # coupled L2 on the critic's head only
        mom = jax.tree.map(lambda m_, gi: 0.9 * m_ + 0.1 * gi, mom, g)
        sq = jax.tree.map(lambda s_, gi: 0.999 * s_ + 0.001 * gi * gi, sq, g)
        p = jax.tree.map(lambda x, m_, s_, t=t: x - lr * (m_ / (1 - 0.9 ** t)) / (np.sqrt(s_ / (1 - 0.999 ** t))
                                                                                   + 1e-7), p, mom, sq)
    assert tree_allclose((out.actor_params, out.critic_params), p, rtol=2e-4, atol=2e-6)
    assert int(out.actor_opt.count) == int(out.critic_opt.count) == 2
    np.testing.assert_allclose(float(metrics["actor_loss"]) + float(c_loss), np.mean(losses), rtol=1e-5)
    new_logits = _shared_actor(out.actor_params, traj.obs)
    np.testing.assert_allclose(float(kl), float(ppo.categorical_kl(logits0, new_logits)), rtol=1e-5)


def test_shared_kl_stop_freezes_the_whole_network():
    ap, cp = _shared_setup()
    _, (traj, values) = setup()
    logits0 = _shared_actor(ap, traj.obs)
    traj = traj.replace(logits=logits0, logp=ppo.log_prob(logits0, traj.actions))
    ac = ppo.ActorCritic(ap, ppo.ADAM.init(ap), cp, ppo.ADAM.init(cp))
    shared = CFG.replace(shared_torso=True, model="markov")

    def run(cfg):
        return jax.jit(lambda ac: ppo.ppo_update(cfg, _shared_actor, None, jax.random.PRNGKey(7), ac,
                                                 hparams(lr=0.5), traj, values, 0, joint=_joint))(ac)

    ac4, m4 = run(shared)
    ac1, m1 = run(shared.replace(epochs=1))
    assert float(m1["kl"]) >= 0.01 and int(m4["actor_epochs"]) == 1
    assert tree_allclose(ac4, ac1, rtol=1e-6, atol=1e-7)  # actor and value head both stopped after epoch 1
    assert int(ac4.critic_opt.count) == 2
    np.testing.assert_allclose(m4["critic_loss"], m1["critic_loss"], rtol=1e-6)  # the trained epoch's mean
    ac_off, m_off = run(shared.replace(target_kl=None))
    assert int(m_off["actor_epochs"]) == 4 and int(ac_off.critic_opt.count) == 8


@pytest.mark.parametrize("kind", ["transformer", "gru", "markov"])
def test_features_then_head_is_the_sequence_pass(kind):
    net = make_network(kind, 3, 6)
    params = net.init(jax.random.PRNGKey(0), 5)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 5))
    h = net.features(params, xs)
    assert h.shape == (2, 4, net.feature_dim)
    np.testing.assert_array_equal(net.head(params, h), net.sequence(params, xs))


def test_shared_trainer_state_and_values():
    """The critic's parameters are the value head alone; the actor's pass and the joint pass agree."""
    cfg = TrainConfig(env="bandit", algo="rl3", shared_torso=True, **TINY)  # TINY: a GRU
    tr = make_train(cfg)
    state = jax.jit(tr.init)(jax.random.key(0))
    heads = jax.tree.leaves(state.critic_params)
    assert [x.shape for x in heads] == [(1,), (tr.actor.feature_dim, 1)]  # bias, kernel: Dense(256 → 1)
    obs = jax.random.normal(jax.random.PRNGKey(2), (cfg.num_envs, cfg.horizon, tr.meta_env.obs_dim))
    logits, values = tr.joint((state.actor_params, state.critic_params), obs)
    np.testing.assert_allclose(logits, tr.actor.sequence(state.actor_params, obs), rtol=1e-6, atol=1e-7)
    assert values.shape == (cfg.num_envs, cfg.horizon)
    np.testing.assert_array_equal(values, tr.values(state.actor_params, state.critic_params, obs))


def test_shared_torso_learns_a_bandit():
    """RL³ Markov with the shared torso, test_learning.py's bandit run (H = 20, 5 arms, 40 iterations x 64
    tasks): random ≈ 10, oracle ≈ 16.7; the separate networks reach ≈ 13. The held-out s.e. over 200 tasks is
    about 0.3, so a margin of 1.5 is about 5 standard errors of the difference."""
    cfg = TrainConfig(env="bandit", algo="rl3", model="markov", horizon=20, num_envs=64, minibatch_envs=16,
                      epochs=4, lr=3e-3, ent_coef=0.0, iters=40, shared_torso=True)
    trainer = make_train(cfg)
    state, _ = jit_chunk(trainer)(jax.jit(trainer.init)(jax.random.key(0)), cfg.iters)
    learned = evaluate(trainer.meta_env, "network", 200, params=state.actor_params, model=trainer.actor)
    rand = evaluate(trainer.meta_env, "random", 200)
    assert learned["mean_return"] > rand["mean_return"] + 1.5, (learned, rand)


def test_shared_torso_resume_is_exact_and_evaluates(tmp_path):
    cfg = TrainConfig(**{**TINY, "model": "markov"}, env="bandit", algo="rl3", iters=4, shared_torso=True)
    full, _ = train(cfg, str(tmp_path / "full"), quiet=True)
    half = str(tmp_path / "half")
    train(cfg.replace(iters=2), half, quiet=True)
    resumed, _ = train(cfg, half, resume=True, quiet=True)
    for name in ("actor_params", "critic_params", "actor_opt", "critic_opt", "env_state"):
        assert _leaves_equal(getattr(full, name), getattr(resumed, name)), name
    out = str(tmp_path / "eval.json")
    assert cli_main(["eval", "--run", half, "--episodes", "8", "--json", out]) == 0
    with open(out) as f:
        assert np.isfinite(json.load(f)["mean_return"])
