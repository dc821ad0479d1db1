"""rl3jax.trainer: probes (tests/probes.py), shapes, determinism, donation, and one trace per jitted chunk."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.config import HParams, TrainConfig
from rl3jax.distributed import sharded_chunk
from rl3jax.trainer import jit_chunk, make_train
from tests.helpers import TINY, _leaves_equal
from tests.probes import register_probes

register_probes()


def _train_probe(kind, iters=40, **kw):
    cfg = TrainConfig(env=f"probe-{kind}", algo="rl2", model="markov", horizon=4, num_envs=32,
                      minibatch_envs=8, epochs=4, lr=3e-3, ent_coef=0.0, iters=iters, **kw)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    state, metrics = jit_chunk(trainer)(state, iters)
    return trainer, state, metrics


def test_probe_constant_reward_critic_learns_returns_to_go():
    trainer, state, _ = _train_probe("constant", iters=60)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    values = trainer.critic.sequence(state.critic_params, traj.obs)[..., 0]
    # reward 1 every step, H=4, only step H terminal: V(t) = sum_{k < H-t} 0.99^k
    expected = np.array([sum(0.99 ** k for k in range(4 - t)) for t in range(4)])
    np.testing.assert_allclose(np.asarray(values).mean(0), expected, atol=0.15)


def test_probe_action_dependent_reward_actor_prefers_rewarded_action():
    trainer, state, metrics = _train_probe("action", iters=30)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    assert float(jnp.mean(traj.actions == 0)) > 0.9  # starts at 0.5
    assert float(metrics["return_mean"][-1]) > 0.9 * 4


def test_probe_observation_dependent_reward_actor_reads_observation():
    trainer, state, _ = _train_probe("observation", iters=40)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    assert float(traj.rewards.mean()) > 0.9  # random policy: 0.5


def test_iteration_shapes_finite_and_no_retrace():
    cfg = TrainConfig(env="mdp", algo="rl3", iters=4, **TINY)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def it(s):
        return trainer.iteration(s)

    for _ in range(3):
        state, metrics = it(state)
    chex.assert_tree_all_finite((state.actor_params, state.critic_params, metrics))
    for v in metrics.values():
        chex.assert_shape(v, ())
    assert int(state.iteration) == 3
    traj, env_state = jax.jit(trainer.collect)(state.actor_params, jax.random.key(1))
    chex.assert_shape(traj.obs, (16, 8, trainer.meta_env.obs_dim))
    chex.assert_shape(traj.rewards, (16, 8))
    np.testing.assert_allclose(np.asarray(env_state.episode_return), np.asarray(traj.rewards.sum(1)), rtol=1e-5)


def test_same_seed_same_result_and_chunking_does_not_matter():
    cfg = TrainConfig(env="bandit", algo="rl3", iters=4, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    init = jax.jit(trainer.init)
    a, ma = jax.jit(trainer.chunk, static_argnums=1)(init(jax.random.key(5)), 4)
    s = init(jax.random.key(5))
    s, m1 = jax.jit(trainer.chunk, static_argnums=1)(s, 1)
    s, m3 = jax.jit(trainer.chunk, static_argnums=1)(s, 3)
    assert _leaves_equal(a.actor_params, s.actor_params)
    assert _leaves_equal(a.critic_params, s.critic_params)
    np.testing.assert_array_equal(np.asarray(ma["return_mean"]),
                                  np.concatenate([np.asarray(m1["return_mean"]), np.asarray(m3["return_mean"])]))
    c, _ = jax.jit(trainer.chunk, static_argnums=1)(init(jax.random.key(6)), 4)
    assert not _leaves_equal(a.actor_params, c.actor_params)


def test_eager_init_states_can_be_donated_to_the_jitted_chunk():
    """The documented Python path without jitting ``init``: ``trainer.init`` -> ``jit_chunk`` (which donates the
    state). Two eagerly built states share no buffer, so donating one leaves the other usable, and both give the jitted init's result bit for bit."""
    cfg = TrainConfig(env="bandit", algo="rl3", iters=2, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    chunk = jit_chunk(trainer)
    first, second = trainer.init(jax.random.key(3)), trainer.init(jax.random.key(3))
    a, _ = chunk(first, 2)
    b, _ = chunk(second, 2)  # failed before: its lr buffer had been donated with ``first``
    ref, _ = chunk(jax.jit(trainer.init)(jax.random.key(3)), 2)
    assert _leaves_equal(a.actor_params, b.actor_params) and _leaves_equal(a.actor_params, ref.actor_params)
    assert _leaves_equal(a.critic_opt, ref.critic_opt)


def test_chunk_traces_once_over_two_calls():
    """The jitted chunk (``distributed.sharded_chunk`` of ``Trainer.chunk``, as ``jit_chunk``) compiles once:
    a second call, with other hyper-parameter values in the state, does not retrace."""
    cfg = TrainConfig(env="bandit", algo="rl3", iters=4, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    chunk = sharded_chunk(chex.assert_max_traces(trainer.chunk, n=1), None, cfg.num_envs)
    state, m1 = chunk(jax.jit(trainer.init)(jax.random.key(0)), 2)
    state, m2 = chunk(state.replace(hparams=HParams(*(jnp.float32(v) for v in (1e-2, 0.0, 0.1, 0.9)))), 2)
    assert int(state.iteration) == 4
    np.testing.assert_allclose(m2["actor_lr"], [1e-2, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(m2["ent_coef"], [0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(m1["actor_lr"], [cfg.lr] * 2, rtol=1e-6)
