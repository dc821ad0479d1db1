"""Tests for the PPO outer learner (METHOD §5). Tiny shapes and linear 'networks' so they run fast on CPU."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rl3jax import ppo
from rl3jax.config import HParams, TrainConfig
from rl3jax.ppo import (
    ADAM,
    ActorCritic,
    actor_loss,
    adam_step,
    categorical_kl,
    critic_loss,
    entropy_coef,
    gae,
)
from rl3jax.rollout import Trajectory
from rl3jax.trainer import all_finite, finite_flag

B, T, M, N = 4, 5, 3, 2
#: 4 epochs of 2 minibatches of 2 whole sequences; KL target 0.01
CFG = TrainConfig(num_envs=B, minibatch_envs=2, epochs=4, target_kl=0.01)
EPOCHS1 = CFG.replace(epochs=1)
NO_STOP = CFG.replace(target_kl=1e9)


def actor_apply(params, obs):
    return obs @ params["w"] + params["b"]


def critic_apply(params, obs):
    return obs @ params["w"] + params["b"]


def ppo_update(key, ac, rollout, hp, it, cfg):
    """``rollout``: (trajectory, values)."""
    return ppo.ppo_update(cfg, actor_apply, critic_apply, key, ac, hp, *rollout, it)


def hparams(ent_coef=0.01, gae_lambda=0.3, lr=3e-4, critic_weight_decay=0.01):
    return HParams(*(jnp.float32(v) for v in (lr, critic_weight_decay, ent_coef, gae_lambda)))


def init_params(key):
    k1, k2 = jax.random.split(key)
    actor = {"w": 0.1 * jax.random.normal(k1, (M, N)), "b": jnp.zeros((N,))}
    critic = {"w": 0.1 * jax.random.normal(k2, (M,)), "b": jnp.zeros(())}
    return actor, critic


def make_rollout(key, actor_params, critic_params, b=B):
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (b, T, M))
    logits = actor_apply(actor_params, obs)
    actions = jax.random.categorical(k2, logits).astype(jnp.int32)
    logp = ppo.log_prob(logits, actions)
    values = critic_apply(critic_params, obs)
    rewards = jax.random.normal(k3, (b, T)) + (actions == 1)
    return Trajectory(obs=obs, actions=actions, logp=logp, logits=logits, rewards=rewards), values


@jax.jit
def setup(seed=0):
    """Params, Adam states and a rollout (one compile: eager op-by-op is slow on CPU)."""
    actor, critic = init_params(jax.random.PRNGKey(seed))
    rollout = make_rollout(jax.random.PRNGKey(seed + 100), actor, critic)
    return ActorCritic(actor, ADAM.init(actor), critic, ADAM.init(critic)), rollout


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


class GaeTest(chex.TestCase):
    """``gae`` equals the NumPy loop reference (float64), jitted and not."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_matches_python_loop(self):
        k1, k2 = jax.random.split(jax.random.PRNGKey(1))
        r = jax.random.normal(k1, (3, 7))
        v = jax.random.normal(k2, (3, 7))
        adv, tgt = self.variant(gae)(r, v, 0.99, jnp.float32(0.3))  # λ traced, as from TrainState.hparams
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
    g = jax.grad(lambda lg: actor_loss(lg, actions, old_logp, adv, ent_coef, 0.2)[0])(logits)
    np.testing.assert_allclose(g[0, :2], 0.0, atol=1e-7)
    # an unclipped step does get a gradient
    g2 = jax.grad(lambda lg: actor_loss(lg, actions, old_logp, jnp.array([[3.0, 2.0, 1.0]]), 0.0, 0.2)[0])(
        logits)
    assert np.abs(np.asarray(g2[0, 2])).max() > 1e-3  # step 2: r = 1.1 in range, Â = -k


def test_actor_loss_advantage_normalisation_is_per_minibatch():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4))
    actions = jnp.zeros((2, 3), jnp.int32)
    shift = jnp.array([[0.05, -0.3, 0.1], [0.4, -0.02, 0.0]])  # ratios exp(shift): some clipped
    old_logp = ppo.log_prob(logits, actions) - shift
    adv = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
    l1, _ = actor_loss(logits, actions, old_logp, adv, 0.0, 0.2)
    l2, _ = actor_loss(logits, actions, old_logp, 10.0 * adv + 5.0, 0.0, 0.2)  # affine-invariant after normalisation
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
    np.testing.assert_allclose(critic_loss(v, t, 0.5), 1.75)
    np.testing.assert_allclose(critic_loss(v, t, TrainConfig().vf_coef), 1.75)  # default vf_coef is the 0.5


def test_categorical_kl():
    old = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1]]))
    new = jnp.log(jnp.array([[0.25, 0.75], [0.9, 0.1]]))
    ref = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.0) / 2
    np.testing.assert_allclose(categorical_kl(old, new), ref, rtol=1e-5)
    np.testing.assert_allclose(categorical_kl(old, old), 0.0, atol=1e-7)


# ------------------------------------------------------------------------------------------------ schedule


def test_entropy_schedule():
    c = TrainConfig(ent_schedule="constant", iters=100)
    for it in (0, 50, 100):
        np.testing.assert_allclose(entropy_coef(c, 0.02, it), 0.02, rtol=1e-6)
    lin = TrainConfig(ent_schedule="linear", iters=100)
    np.testing.assert_allclose(entropy_coef(lin, 0.02, 0), 0.02, rtol=1e-6)
    np.testing.assert_allclose(entropy_coef(lin, 0.02, 50), 0.01, rtol=1e-6)
    np.testing.assert_allclose(entropy_coef(lin, 0.02, 100), 0.0, atol=1e-9)
    np.testing.assert_allclose(entropy_coef(lin, 0.02, 150), 0.0, atol=1e-9)  # clamped
    with pytest.raises(ValueError, match="ent_schedule 'cosine' is not one of constant, linear"):
        TrainConfig(ent_schedule="cosine")  # refused by the config, before any schedule is computed


# ------------------------------------------------------------------------------------------------ optimiser


@jax.jit
def _step(grads, p, lr, wd):
    return adam_step(grads, ADAM.init(p), p, jnp.float32(lr), jnp.float32(wd))[0]


def test_adam_step_with_coupled_weight_decay():
    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    zeros = jax.tree.map(jnp.zeros_like, p)
    assert tree_equal(_step(zeros, p, 1e-2, 0.0), p)  # zero gradient, no decay (the actor): it does not move
    new = _step(zeros, p, 1e-2, 0.1)
    # by hand: g = 0 + wd*p ; Adam step 1: m = 0.1 g, v = 0.001 g^2, m̂ = g, v̂ = g^2
    w = np.asarray(p["w"], np.float64)
    g = 0.1 * w
    m_hat = (0.1 * g) / (1 - 0.9)
    v_hat = (0.001 * g**2) / (1 - 0.999)
    np.testing.assert_allclose(new["w"], w - 1e-2 * m_hat / (np.sqrt(v_hat) + 1e-7), rtol=1e-5)
    # with a real gradient: bit for bit optax's chain(add_decayed_weights, adam), the optimiser of format-1 runs
    grad = {"w": jnp.array([0.3, 0.0, -1.0])}
    tx = optax.chain(optax.add_decayed_weights(jnp.float32(0.1)),
                     optax.adam(jnp.float32(1e-2), b1=0.9, b2=0.999, eps=1e-7))
    ref = jax.jit(lambda g, p: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(grad, p)
    assert tree_equal(_step(grad, p, 1e-2, 0.1), ref)
    # the learning rate is an argument (traced): Adam's first step is -lr · sign(g)
    np.testing.assert_allclose(_step({"w": jnp.array([1.0, -1.0, 0.0])}, p, 0.5, 0.0)["w"], [0.5, -1.5, 0.5],
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------------ update


def test_rollout_that_does_not_fit_the_config_raises():
    ac, rollout = setup()  # B = 4
    with pytest.raises(ValueError, match=r"the rollout has 4 sequences but num_envs=8"):
        ppo_update(jax.random.PRNGKey(0), ac, rollout, hparams(), 0, CFG.replace(num_envs=8))
    # minibatches and KL chunks that do not divide the batch are refused by the config, so never reach the update
    with pytest.raises(ValueError, match=r"num_envs=4 is not divisible.*minibatch_envs=3"):
        TrainConfig(num_envs=4, minibatch_envs=3)
    with pytest.raises(ValueError, match=r"num_envs=4 is not divisible by kl_chunks=3"):
        TrainConfig(num_envs=4, minibatch_envs=2, kl_chunks=3)


def test_minibatches_are_whole_sequences_of_one_permutation():
    ac, rollout = setup()
    batch = ppo.make_batch(*rollout, CFG, 0.3)
    perm = jnp.array([2, 0, 3, 1])
    mbs = ppo.minibatches(batch, perm, CFG)
    chex.assert_shape(mbs.obs, (2, 2, T, M))
    chex.assert_shape([mbs.actions, mbs.old_logp, mbs.advantages, mbs.targets], (2, 2, T))
    for i, seq in enumerate(np.asarray(perm)):
        np.testing.assert_array_equal(mbs.obs[i // 2, i % 2], rollout[0].obs[seq])  # time is never sliced
        np.testing.assert_array_equal(mbs.targets[i // 2, i % 2], batch.targets[seq])


# One jitted update shared by the tests below; its static configs are CFG, EPOCHS1, NO_STOP, NO_STOP with one
# epoch and CFG with kl_chunks=2; everything else that varies (lr, weight decay, ent_coef, gae_lambda, data, iteration) is traced.
@functools.partial(jax.jit, static_argnames="cfg")
@chex.assert_max_traces(n=5)
def UPDATE(key, ac, rollout, hp, it, cfg):
    return ppo_update(key, ac, rollout, hp, it, cfg)


def _run(cfg, seed=0, lr=3e-4):
    ac, rollout = setup(seed)
    return ac, UPDATE(jax.random.PRNGKey(7), ac, rollout, hparams(lr=lr), 0, cfg)


def test_kl_early_stop_freezes_actor_after_one_epoch():
    ac0, (ac4, m4) = _run(CFG, lr=0.5)
    _, (ac1, m1) = _run(EPOCHS1, lr=0.5)
    assert float(m1["kl"]) >= 0.01  # large lr: the KL exceeds the target after epoch 1
    assert int(m4["actor_epochs"]) == 1
    assert tree_allclose(ac4.actor_params, ac1.actor_params, rtol=1e-6, atol=1e-7)  # frozen after one epoch
    assert tree_allclose(ac4.actor_opt, ac1.actor_opt, rtol=1e-6, atol=1e-7)  # ... and its optimiser state too
    assert int(ac4.actor_opt.count) == 2  # 1 epoch x 2 minibatches
    assert int(ac4.critic_opt.count) == 8  # critic: 4 epochs x 2 minibatches
    assert not tree_allclose(ac4.critic_params, ac1.critic_params)  # the critic kept training
    # the critic is independent of the actor: same result with early stopping switched off
    _, (ac_inf, m_inf) = _run(NO_STOP, lr=0.5)
    assert int(m_inf["actor_epochs"]) == 4
    assert tree_allclose(ac4.critic_params, ac_inf.critic_params, rtol=1e-6, atol=1e-7)
    assert not tree_allclose(ac4.actor_params, ac_inf.actor_params)
    # the full-batch KL in two chunks of sequences equals one pass: same stop, same result
    _, chunked = _run(CFG.replace(kl_chunks=2), lr=0.5)
    assert tree_allclose(chunked, (ac4, m4), rtol=1e-5, atol=1e-6)
    # shapes and dtypes: the state keeps its own; every metric is a scalar (float32, actor_epochs int32)
    chex.assert_trees_all_equal_shapes_and_dtypes(ac4, ac0)
    for k, v in m4.items():
        assert v.shape == () and v.dtype == (jnp.int32 if k == "actor_epochs" else jnp.float32), k
        assert np.isfinite(v), k
    np.testing.assert_allclose([m4["actor_lr"], m4["critic_lr"]], 0.5, rtol=1e-6)


def test_tiny_lr_trains_actor_all_epochs():
    ac0, (ac, m) = _run(CFG, lr=1e-6)
    assert int(m["actor_epochs"]) == 4
    assert int(ac.actor_opt.count) == 8 and int(ac.critic_opt.count) == 8
    assert float(m["kl"]) < 0.01
    assert not tree_equal(ac.actor_params, ac0.actor_params) and not tree_equal(ac.critic_params, ac0.critic_params)


def test_jit_matches_no_jit_and_traces_once():
    ac, rollout = setup()
    key = jax.random.PRNGKey(7)
    out_jit = UPDATE(key, ac, rollout, hparams(lr=1e-2), 0, EPOCHS1)
    out_eager = ppo_update(key, ac, rollout, hparams(lr=1e-2), 0, EPOCHS1)
    assert tree_allclose(out_jit, out_eager, rtol=1e-5, atol=1e-6)

    # New data, iteration and every hyper-parameter: no retrace (assert_max_traces on UPDATE).
    for i, lr in enumerate((1e-2, 3e-3)):
        ac, rollout = setup(i + 1)
        hp = hparams(0.02 * (i + 1), 0.3 + 0.1 * i, lr, 0.01 * i)
        jax.block_until_ready(UPDATE(jax.random.PRNGKey(i), ac, rollout, hp, jnp.asarray(i), EPOCHS1))
        jax.block_until_ready(UPDATE(jax.random.PRNGKey(i), ac, rollout, hp, i + 5, EPOCHS1))


def test_vmapped_hparams_sweep_matches_single_runs():
    """A population replaces ``HParams`` per member: the vmapped update equals each member's own update."""
    base = EPOCHS1.replace(target_kl=1e9)
    ac, rollout = setup()
    swept_hp = HParams(*(jnp.array(v, jnp.float32) for v in ([1e-3, 3e-2], [0.0, 0.1], [0.0, 0.05], [0.3, 0.9])))
    run = functools.partial(ppo_update, jax.random.PRNGKey(3), ac, rollout, it=0, cfg=base)
    swept = jax.jit(jax.vmap(lambda hp: run(hp=hp)))(swept_hp)
    for i in range(2):
        member = jax.tree.map(lambda x, i=i: x[i], swept_hp)
        single = UPDATE(jax.random.PRNGKey(3), ac, rollout, member, 0, base)
        assert tree_allclose(jax.tree.map(lambda x, i=i: x[i], swept), single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swept[1]["actor_lr"], [1e-3, 3e-2], rtol=1e-6)


def test_all_finite_and_finite_flag():
    tree = {"a": jnp.ones(3), "n": jnp.arange(3), "k": jax.random.key(0), "f": 1.5}
    assert all_finite(tree).dtype == jnp.bool_ and all_finite(tree).shape == ()
    assert bool(all_finite(tree)) and bool(all_finite({}))
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        assert not bool(all_finite({**tree, "a": jnp.array([1.0, bad, 2.0])}))
    assert float(finite_flag({"loss": jnp.float32(1.0)}, tree)) == 1.0
    assert float(finite_flag({"loss": jnp.float32(jnp.nan)}, tree)) == 0.0
    assert float(finite_flag({"loss": jnp.float32(1.0)}, {"p": jnp.array([jnp.inf])})) == 0.0
