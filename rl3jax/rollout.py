"""Rollouts: every env plays one whole meta-episode of H steps with an incrementally applied policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax.meta_episode import MetaEnv

#: held-out tasks per jitted rollout in evaluations; an evaluation's random stream depends on it (one key per
#: batch), so every command (eval, baselines, report, evaluation during training) uses it to give the same figures
EVAL_BATCH = 250


def log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log π(a) for integer ``actions`` (...,) under ``logits`` (..., n) float32; shape (...,) float32 (the
    rollout's and the learner's)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


@struct.dataclass
class Trajectory:
    """One meta-episode per env, batch-major: leading axes (E, H)."""

    obs: jax.Array  # (E, H, m) policy inputs
    actions: jax.Array  # (E, H) int32
    logp: jax.Array  # (E, H) log π_old(a|·)
    logits: jax.Array  # (E, H, n) π_old's logits (for the KL early stop)
    rewards: jax.Array  # (E, H)


def sample_tasks(meta_env: MetaEnv, key: jax.Array, num: int):
    """``num`` tasks of the meta env's family (a task pytree with leading axis ``num``), one key each."""
    return jax.vmap(meta_env.sample_task)(jax.random.split(key, num))


def rollout(meta_env: MetaEnv, policy_step: Callable, policy_carry: Any, tasks, key: jax.Array, greedy: bool = False):
    """Runs H steps of ``policy_step(carry, obs (E, m) float32, meta_state) -> (carry, logits (E, n))`` on each
    of the E ``tasks`` (learned policies read only ``obs``; ``greedy``: argmax actions instead of samples).
    Returns the ``Trajectory`` (axes (E, H)) and the final ``MetaState`` (with each env's estimator state)."""
    num = jax.tree.leaves(tasks)[0].shape[0]
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(meta_env.reset)(jax.random.split(k_reset, num), tasks)
    step_env = jax.vmap(meta_env.step)

    def one_step(carry, k):
        pcarry, obs, state = carry
        pcarry, logits = policy_step(pcarry, obs, state)
        k_act, k_env = jax.random.split(k)
        action = (jnp.argmax(logits, axis=-1) if greedy else jax.random.categorical(k_act, logits)).astype(jnp.int32)
        nobs, nstate, reward, _, _ = step_env(jax.random.split(k_env, num), state, action, tasks)
        return (pcarry, nobs, nstate), (obs, action, log_prob(logits, action), logits, reward)

    (_, _, final), steps = jax.lax.scan(one_step, (policy_carry, obs, state), jax.random.split(k_run, meta_env.horizon))
    return Trajectory(*(jnp.swapaxes(x, 0, 1) for x in steps)), final  # (H, E, ...) -> (E, H, ...)
