"""Tests for the PPO outer learner (METHOD §5). Tiny shapes and linear 'networks' so they run fast on CPU."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rl3jax import ppo
from rl3jax.ppo import (
    PPOConfig,
    actor_loss,
    categorical_kl,
    critic_loss,
    entropy_coef,
    gae,
    make_optimizers,
    ppo_update,
)

B, T, M, N = 4, 5, 3, 2


def actor_apply(params, obs):
    return obs @ params["w"] + params["b"]


def critic_apply(params, obs):
    return obs @ params["w"] + params["b"]


def init_params(key):
    k1, k2 = jax.random.split(key)
    actor = {"w": 0.1 * jax.random.normal(k1, (M, N)), "b": jnp.zeros((N,))}
    critic = {"w": 0.1 * jax.random.normal(k2, (M,)), "b": jnp.zeros(())}
    return actor, critic


def make_batch(key, actor_params, critic_params, b=B):
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (b, T, M))
    logits = actor_apply(actor_params, obs)
    actions = jax.random.categorical(k2, logits).astype(jnp.int32)
    logp = ppo.log_prob(logits, actions)
    values = critic_apply(critic_params, obs)
    rewards = jax.random.normal(k3, (b, T)) + (actions == 1)
    return {"obs": obs, "actions": actions, "logp": logp, "values": values, "rewards": rewards, "logits": logits}


@jax.jit
def _setup(cfg, seed):
    actor, critic = init_params(jax.random.PRNGKey(seed))
    batch = make_batch(jax.random.PRNGKey(seed + 100), actor, critic)
    a_tx, c_tx = make_optimizers(cfg)
    return actor, critic, a_tx.init(actor), c_tx.init(critic), batch


def setup(cfg, seed=0):
    """Params, optimiser states and a rollout-like batch (one compile: eager op-by-op is slow on CPU)."""
    return _setup(cfg, seed)


def tree_allclose(a, b, **kw):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.allclose(x, y, **kw)), a, b)))


def tree_equal(a, b):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


# ------------------------------------------------------------------------------------------------ GAE


def test_gae_hand_computed():
    gamma, lam = 0.5, 0.5
    r = jnp.array([[1.0, 2.0, 3.0]])
    v = jnp.array([[0.5, 1.0, 2.0]])
    # deltas: d0 = 1 + 0.5*1.0 - 0.5 = 1.0 ; d1 = 2 + 0.5*2.0 - 1.0 = 2.0 ; d2 = 3 + 0 - 2.0 = 1.0 (terminal)
    # gamma*lam = 0.25: A2 = 1.0 ; A1 = 2.0 + 0.25*1.0 = 2.25 ; A0 = 1.0 + 0.25*2.25 = 1.5625
    adv, tgt = gae(r, v, gamma, lam)  # step T is terminal: no bootstrap after it
    np.testing.assert_allclose(adv, [[1.5625, 2.25, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(tgt, [[2.0625, 3.25, 3.0]], rtol=1e-6)


def _gae_loop(r, v, gamma, lam):
    r, v = np.asarray(r, np.float64), np.asarray(v, np.float64)
    adv = np.zeros_like(r)
    for b in range(r.shape[0]):
        last = 0.0
        for t in reversed(range(r.shape[1])):
            nv = v[b, t + 1] if t + 1 < r.shape[1] else 0.0
            delta = r[b, t] + gamma * nv - v[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv, adv + v


def test_gae_matches_python_loop():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    r = jax.random.normal(k1, (3, 7))
    v = jax.random.normal(k2, (3, 7))
    adv, tgt = gae(r, v, 0.99, 0.3)
    adv_ref, tgt_ref = _gae_loop(r, v, 0.99, 0.3)
    np.testing.assert_allclose(adv, adv_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tgt, tgt_ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ losses


def test_actor_loss_hand_computed():
    # 3 steps, 2 actions; uniform new policy: log π(a) = log 0.5, entropy = log 2 at every step.
    logits = jnp.zeros((1, 3, 2))
    actions = jnp.array([[0, 1, 0]])
    # old probabilities chosen so the ratios r = 0.5 / p_old are 2.0, 0.7, 1.1
    old_logp = jnp.log(jnp.array([[0.25, 0.5 / 0.7, 0.5 / 1.1]]))
    # advantages [3, 1, 2]: mean 2, (population) std sqrt(2/3) -> normalised [+k, -k, 0], k = 1/sqrt(2/3)
    adv = jnp.array([[3.0, 1.0, 2.0]])
    k = 1.0 / (math.sqrt(2.0 / 3.0) + 1e-8)
    ent_coef = 0.1
    loss, aux = actor_loss(logits, actions, old_logp, adv, ent_coef, clip_eps=0.2)
    # step 0: A=+k, r=2.0: min(2.0k, 1.2k) = 1.2k   (clipped above)
    # step 1: A=-k, r=0.7: min(-0.7k, -0.8k) = -0.8k (clipped below, pessimistic side)
    # step 2: A=0 -> 0 (r=1.1 is inside the clip range)
    pg = -(1.2 * k - 0.8 * k + 0.0) / 3
    np.testing.assert_allclose(aux["pg_loss"], pg, rtol=1e-5)
    np.testing.assert_allclose(aux["entropy"], math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(loss, pg - ent_coef * math.log(2.0), rtol=1e-5)
    np.testing.assert_allclose(aux["clip_frac"], 2.0 / 3.0, rtol=1e-6)  # |r-1| > 0.2 at steps 0 and 1
    approx = sum((r - 1) - math.log(r) for r in (2.0, 0.7, 1.1)) / 3
    np.testing.assert_allclose(aux["approx_kl"], approx, rtol=1e-5)
    # steps 0 and 1: the min picks the clipped (constant) term, so no policy gradient flows there; the entropy
    # gradient is zero at the uniform policy
    g = jax.grad(lambda lg: actor_loss(lg, actions, old_logp, adv, ent_coef)[0])(logits)
    np.testing.assert_allclose(g[0, :2], 0.0, atol=1e-7)
    # an unclipped step does get a gradient
    g2 = jax.grad(lambda lg: actor_loss(lg, actions, old_logp, jnp.array([[3.0, 2.0, 1.0]]), 0.0)[0])(logits)
    assert np.abs(np.asarray(g2[0, 2])).max() > 1e-3  # step 2: r = 1.1 in range, Â = -k


def test_actor_loss_advantage_normalisation_is_per_minibatch():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4))
    actions = jnp.zeros((2, 3), jnp.int32)
    shift = jnp.array([[0.05, -0.3, 0.1], [0.4, -0.02, 0.0]])  # ratios exp(shift): some clipped
    old_logp = ppo.log_prob(logits, actions) - shift
    adv = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
    l1, _ = actor_loss(logits, actions, old_logp, adv, 0.0)
    l2, _ = actor_loss(logits, actions, old_logp, 10.0 * adv + 5.0, 0.0)  # affine-invariant after normalisation
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    # and normalisation uses the whole minibatch (not per sequence): compare with a manual computation
    a = np.asarray(adv)
    ahat = (a - a.mean()) / (a.std() + 1e-8)
    r = np.exp(np.asarray(shift, np.float64))
    ref = -np.mean(np.minimum(r * ahat, np.clip(r, 0.8, 1.2) * ahat))
    np.testing.assert_allclose(l1, ref, rtol=1e-5)


def test_critic_loss_half_mse():
    v = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    t = jnp.array([[0.0, 2.0], [3.0, 1.0]])
    # squared errors 1, 0, 9, 4 -> mean 3.5 -> 1.75
    np.testing.assert_allclose(critic_loss(v, t), 1.75)
    np.testing.assert_allclose(critic_loss(v, t, PPOConfig().vf_coef), 1.75)  # default vf_coef is the 0.5


def test_categorical_kl():
    old = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1]]))
    new = jnp.log(jnp.array([[0.25, 0.75], [0.9, 0.1]]))
    ref = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.0) / 2
    np.testing.assert_allclose(categorical_kl(old, new), ref, rtol=1e-5)
    np.testing.assert_allclose(categorical_kl(old, old), 0.0, atol=1e-7)


# ------------------------------------------------------------------------------------------------ schedule


def test_entropy_schedule():
    c = PPOConfig(ent_coef=0.02, ent_schedule="constant", total_iters=100)
    for it in (0, 50, 100):
        np.testing.assert_allclose(entropy_coef(c, it), 0.02, rtol=1e-6)
    lin = PPOConfig(ent_coef=0.02, ent_schedule="linear", total_iters=100)
    np.testing.assert_allclose(entropy_coef(lin, 0), 0.02, rtol=1e-6)
    np.testing.assert_allclose(entropy_coef(lin, 50), 0.01, rtol=1e-6)
    np.testing.assert_allclose(entropy_coef(lin, 100), 0.0, atol=1e-9)
    np.testing.assert_allclose(entropy_coef(lin, 150), 0.0, atol=1e-9)  # clamped
    with pytest.raises(ValueError, match="total_iters"):
        PPOConfig(ent_schedule="linear")
    with pytest.raises(ValueError, match="ent_schedule"):
        PPOConfig(ent_schedule="cosine")


# ------------------------------------------------------------------------------------------------ optimisers


def test_coupled_weight_decay_only_on_critic():
    cfg = PPOConfig(actor_lr=1e-2, critic_lr=1e-2, critic_weight_decay=0.1)
    a_tx, c_tx = make_optimizers(cfg)
    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    zeros = jax.tree.map(jnp.zeros_like, p)

    upd, _ = a_tx.update(zeros, a_tx.init(p), p)
    assert tree_equal(optax.apply_updates(p, upd), p)  # zero gradient: the actor does not move

    upd, _ = c_tx.update(zeros, c_tx.init(p), p)
    new = optax.apply_updates(p, upd)
    assert not tree_equal(new, p)
    # by hand: g = 0 + wd*p ; Adam step 1: m = 0.1 g, v = 0.001 g^2, m̂ = g, v̂ = g^2
    w = np.asarray(p["w"], np.float64)
    g = 0.1 * w
    m_hat = (0.1 * g) / (1 - 0.9)
    v_hat = (0.001 * g**2) / (1 - 0.999)
    ref = w - 1e-2 * m_hat / (np.sqrt(v_hat) + 1e-7)
    np.testing.assert_allclose(new["w"], ref, rtol=1e-5)

    # and with a real gradient: critic step == adam(grad + wd*params)
    grad = {"w": jnp.array([0.3, 0.0, -1.0])}
    upd, _ = c_tx.update(grad, c_tx.init(p), p)
    adam = optax.adam(1e-2, b1=0.9, b2=0.999, eps=1e-7)
    upd_ref, _ = adam.update(jax.tree.map(lambda gg, pp: gg + 0.1 * pp, grad, p), adam.init(p))
    assert tree_allclose(upd, upd_ref, rtol=1e-6)


def test_learning_rate_lives_in_opt_state():
    cfg = PPOConfig(actor_lr=0.123, critic_lr=0.456)
    a_tx, c_tx = make_optimizers(cfg)
    p = {"w": jnp.ones(2)}
    np.testing.assert_allclose(a_tx.init(p).hyperparams["learning_rate"], 0.123, rtol=1e-6)
    np.testing.assert_allclose(c_tx.init(p).hyperparams["learning_rate"], 0.456, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ update


def test_bad_minibatch_count_raises():
    with pytest.raises(ValueError, match=r"num_envs=10.*num_minibatches=3"):
        PPOConfig(num_minibatches=3, num_envs=10)
    cfg = PPOConfig(num_minibatches=3, epochs=1)
    actor, critic, a_s, c_s, batch = setup(cfg)  # B = 4
    with pytest.raises(ValueError, match=r"num_envs=4.*num_minibatches=3"):
        ppo_update(jax.random.PRNGKey(0), actor, critic, a_s, c_s, batch, cfg, 0, actor_apply, critic_apply)


# One jitted update shared by the tests below; only two static configs are used (epochs 4 and 1, 2 minibatches),
# everything else that varies (lr, target_kl, ent_coef, gae_lambda, data, iteration) is a traced leaf.
EPOCHS4 = PPOConfig(epochs=4, num_minibatches=2)
EPOCHS1 = EPOCHS4.replace(epochs=1)


@chex.assert_max_traces(n=2)
def _update_impl(key, actor, critic, a_s, c_s, batch, cfg, it):
    return ppo_update(key, actor, critic, a_s, c_s, batch, cfg, it, actor_apply, critic_apply)


UPDATE = jax.jit(_update_impl)


def _run(cfg, seed=0):
    actor, critic, a_s, c_s, batch = setup(cfg, seed=seed)
    out = UPDATE(jax.random.PRNGKey(7), actor, critic, a_s, c_s, batch, cfg, 0)
    return (actor, critic), out


def test_kl_early_stop_freezes_actor_after_one_epoch():
    kw = dict(actor_lr=0.5, critic_lr=0.05, target_kl=0.01)
    (actor0, critic0), (a4, c4, as4, cs4, m4) = _run(EPOCHS4.replace(**kw))
    _, (a1, c1, as1, _, m1) = _run(EPOCHS1.replace(**kw))
    assert float(m1["kl"]) >= 0.01  # large lr: the KL exceeds the target after epoch 1
    assert int(m4["actor_epochs"]) == 1
    assert tree_allclose(a4, a1, rtol=1e-6, atol=1e-7)  # actor frozen after exactly one epoch
    assert tree_allclose(as4, as1, rtol=1e-6, atol=1e-7)  # ... and its optimiser state too
    assert int(as4.count) == 2  # 1 epoch x 2 minibatches
    assert int(cs4.count) == 8  # critic: 4 epochs x 2 minibatches
    assert not tree_allclose(c4, c1)  # the critic kept training
    # the critic is independent of the actor: same result with early stopping switched off
    _, (a_inf, c_inf, _, _, m_inf) = _run(EPOCHS4.replace(**{**kw, "target_kl": 1e9}))
    assert int(m_inf["actor_epochs"]) == 4
    assert tree_allclose(c4, c_inf, rtol=1e-6, atol=1e-7)
    assert not tree_allclose(a4, a_inf)
    for k in ("actor_loss", "critic_loss", "entropy", "approx_kl", "clip_frac", "explained_variance", "kl"):
        assert m4[k].shape == () and np.isfinite(m4[k])


def test_tiny_lr_trains_actor_all_epochs():
    (actor0, critic0), (a, c, a_s, c_s, m) = _run(EPOCHS4.replace(actor_lr=1e-6, critic_lr=1e-6))
    assert int(m["actor_epochs"]) == 4
    assert int(a_s.count) == 8 and int(c_s.count) == 8
    assert float(m["kl"]) < 0.01
    assert not tree_equal(a, actor0) and not tree_equal(c, critic0)


def test_jit_matches_no_jit_and_traces_once():
    cfg = EPOCHS1.replace(actor_lr=1e-2, critic_lr=1e-2)
    actor, critic, a_s, c_s, batch = setup(cfg)
    args = (jax.random.PRNGKey(7), actor, critic, a_s, c_s)
    out_jit = UPDATE(*args, batch, cfg, 0)
    # Un-jitted run, also without the rollout logits: they are then recomputed from the initial actor params,
    # which is the rollout policy.
    nolog = {k: v for k, v in batch.items() if k != "logits"}
    out_eager = ppo_update(*args, nolog, cfg, 0, actor_apply, critic_apply)
    assert tree_allclose(out_jit, out_eager, rtol=1e-5, atol=1e-6)

    # New data, iteration, lr, ent_coef, gae_lambda, target_kl: no retrace (assert_max_traces on UPDATE).
    for i, lr in enumerate((1e-2, 3e-3)):
        c = cfg.replace(actor_lr=lr, ent_coef=0.02 * (i + 1), gae_lambda=0.3 + 0.1 * i, target_kl=0.02)
        actor, critic, a_s, c_s, batch = setup(c, seed=i + 1)
        jax.block_until_ready(UPDATE(jax.random.PRNGKey(i), actor, critic, a_s, c_s, batch, c, jnp.asarray(i)))
        jax.block_until_ready(UPDATE(jax.random.PRNGKey(i), actor, critic, a_s, c_s, batch, c, i + 5))


def test_vmapped_lr_sweep_matches_single_runs():
    base = EPOCHS1.replace(target_kl=1e9)
    actor, critic, _, _, batch = setup(base)
    lrs = jnp.array([1e-3, 3e-2])

    def one(lr, update):
        cfg = base.replace(actor_lr=lr, critic_lr=lr)
        a_tx, c_tx = make_optimizers(cfg)
        return update(jax.random.PRNGKey(3), actor, critic, a_tx.init(actor), c_tx.init(critic), batch, cfg, 0)[:2]

    swept = jax.jit(jax.vmap(lambda lr: one(lr, _ppo_update_plain)))(lrs)
    for i in range(2):
        single = one(float(lrs[i]), UPDATE)
        assert tree_allclose(jax.tree.map(lambda x, i=i: x[i], swept), single, rtol=1e-5, atol=1e-6)


def _ppo_update_plain(key, actor, critic, a_s, c_s, batch, cfg, it):
    return ppo_update(key, actor, critic, a_s, c_s, batch, cfg, it, actor_apply, critic_apply)


# ------------------------------------------------------------------------------------------------ fused step


def _col_critic_apply(params, obs):  # a critic of the actor's shape with one output column
    return (obs @ params["w"] + params["b"])[..., 0]


def _fused_apply(stacked, obs):
    out = jax.vmap(actor_apply, in_axes=(0, None))(stacked, obs)
    return out[0], out[1][..., 0]


@jax.jit
def _pair_setup(cfg):
    actor, _ = init_params(jax.random.PRNGKey(0))
    critic = {"w": 0.1 * jax.random.normal(jax.random.PRNGKey(1), (M, 1)), "b": jnp.zeros((1,))}
    obs = jax.random.normal(jax.random.PRNGKey(2), (B, T, M))
    logits = actor_apply(actor, obs)
    actions = jax.random.categorical(jax.random.PRNGKey(3), logits).astype(jnp.int32)
    batch = {"obs": obs, "actions": actions, "logp": ppo.log_prob(logits, actions), "logits": logits,
             "values": _col_critic_apply(critic, obs),
             "rewards": jax.random.normal(jax.random.PRNGKey(4), (B, T)) + (actions == 1)}
    a_tx, c_tx = make_optimizers(cfg)
    return actor, critic, a_tx.init(actor), c_tx.init(critic), batch


def _pair_run(cfg, fused):
    actor, critic, a_s, c_s, batch = _pair_setup(cfg)
    f = jax.jit(lambda *a: ppo_update(*a, actor_apply, _col_critic_apply, _fused_apply if fused else None))
    return f(jax.random.PRNGKey(7), actor, critic, a_s, c_s, batch, cfg, 0)


@pytest.mark.parametrize("target_kl", [1e9, 0.01])
def test_fused_actor_critic_step_equals_separate_steps(target_kl):
    """One vmapped step over the stacked (actor, zero-padded critic) pair gives the separate updates' result,
    including the KL stop (target 0.01 with a large actor lr freezes the actor after one of four epochs),
    and returns the critic in its own shapes; the full-batch KL in chunks equals one pass."""
    cfg = EPOCHS4.replace(actor_lr=0.5 if target_kl < 1 else 1e-2, critic_lr=0.05, target_kl=target_kl)
    sep = _pair_run(cfg, fused=False)
    fus = _pair_run(cfg, fused=True)
    chunked = _pair_run(cfg.replace(kl_chunks=2), fused=True)
    assert int(sep[4]["actor_epochs"]) == (1 if target_kl < 1 else 4)
    assert int(fus[4]["actor_epochs"]) == int(sep[4]["actor_epochs"])
    chex.assert_trees_all_equal_shapes_and_dtypes(fus[:4], sep[:4])
    assert tree_allclose(fus, sep, rtol=1e-5, atol=1e-6)
    assert tree_allclose(chunked, fus, rtol=1e-5, atol=1e-6)
    assert int(fus[2].count) == 2 * int(sep[4]["actor_epochs"]) and int(fus[3].count) == 8


def test_fused_update_rejects_unpairable_params():
    cfg = EPOCHS1
    actor, critic, a_s, c_s, batch = setup(cfg)  # critic b is (), actor b is (N,): different ranks
    with pytest.raises(ValueError, match=r"critic leaf of shape \(\) cannot be zero-padded to the actor.s \(2,\)"):
        ppo_update(jax.random.PRNGKey(0), actor, critic, a_s, c_s, batch, cfg, 0, actor_apply, critic_apply,
                   _fused_apply)
    with pytest.raises(ValueError, match=r"kl_chunks=3"):
        ppo_update(jax.random.PRNGKey(0), actor, critic, a_s, c_s, batch, cfg.replace(kl_chunks=3), 0,
                   actor_apply, critic_apply)
