"""The inner loop in purejaxrl's shape: ``make_train(cfg)`` returns pure, jittable functions over one
``TrainState`` pytree (params, optimiser states, last rollout's env/estimator state, rng, counters).

One PPO iteration = sample ``num_envs`` fresh tasks, play one whole meta-episode on each (METHOD §5), then run
the PPO update. ``chunk(state, n)`` scans n iterations inside one jit and returns per-iteration scalar
metrics; the driver (``rl3jax.driver``) loops over chunks on the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax import ppo
from rl3jax.config import TrainConfig
from rl3jax.distributed import check_divisible, data_parallel, sharded_chunk, split_leading
from rl3jax.meta_episode import MetaEnv, make_meta_env
from rl3jax.networks import make_network
from rl3jax.rollout import rollout, sample_tasks


@struct.dataclass
class TrainState:
    actor_params: Any
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    env_state: Any  # final MetaState (incl. RL³ estimator state) of the latest rollout
    key: jax.Array  # typed PRNG key (stored as key data in checkpoints)
    iteration: jax.Array  # PPO iterations done (int32)
    hparams: dict  # per-run numeric hyperparameters as arrays (vmappable for sweeps)


def ppo_config(cfg: TrainConfig) -> ppo.PPOConfig:
    return ppo.PPOConfig(
        gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_eps=cfg.clip_eps, epochs=cfg.epochs,
        num_minibatches=cfg.num_minibatches, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
        ent_schedule=cfg.ent_schedule, total_iters=cfg.iters, target_kl=cfg.target_kl, actor_lr=cfg.lr,
        critic_lr=cfg.lr, critic_weight_decay=cfg.critic_weight_decay, kl_chunks=cfg.kl_chunks)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Pure training functions for one config (all jittable; ``cfg`` is static)."""

    cfg: TrainConfig
    meta_env: MetaEnv
    actor: Any
    critic: Any
    pcfg: Any
    actor_tx: Any
    critic_tx: Any
    mesh: Any = None  # a jax.sharding.Mesh: split the env axis over its 'data' axis (rl3jax.distributed)

    def _split(self, tree):
        """Shard the leading (env) axis over the mesh; identity without one. Params stay replicated."""
        return split_leading(tree, self.mesh)

    def init(self, key: jax.Array) -> TrainState:
        k_a, k_c, k_run, k_env = jax.random.split(key, 4)
        m = self.meta_env.obs_dim
        actor_params = self.actor.init(k_a, m)
        critic_params = self.critic.init(k_c, m)
        k_task, k_reset = jax.random.split(k_env)  # distinct streams for drawing tasks and resetting them
        tasks = self._split(sample_tasks(self.meta_env, k_task, self.cfg.num_envs))
        _, env_state = jax.vmap(self.meta_env.reset)(jax.random.split(k_reset, self.cfg.num_envs), tasks)
        env_state = self._split(env_state)
        return TrainState(actor_params=actor_params, critic_params=critic_params,
                          actor_opt=self.actor_tx.init(actor_params),
                          critic_opt=self.critic_tx.init(critic_params), env_state=env_state, key=k_run,
                          iteration=jnp.int32(0),
                          hparams={"ent_coef": jnp.float32(self.cfg.ent_coef),
                                   "gae_lambda": jnp.float32(self.cfg.gae_lambda)})

    def collect(self, actor_params, key):
        """Fresh tasks, one meta-episode each. Returns (trajectory, final env state)."""
        k_task, k_roll = jax.random.split(key)
        tasks = self._split(sample_tasks(self.meta_env, k_task, self.cfg.num_envs))

        def step(c, o, _):
            c, logits = self.actor.step(actor_params, c, self._split(o))
            return c, self._split(logits)

        return self._split(rollout(self.meta_env, step, self.actor.initial_carry(self.cfg.num_envs), tasks,
                                   k_roll))

    @property
    def fused(self) -> bool:
        """Whether the PPO update trains actor and critic in one step (``TrainConfig.fused_update``)."""
        f = self.cfg.fused_update
        return f if f is not None else jax.default_backend() != "cpu"

    def _pair_sequence(self, stacked_params, xs):
        """Actor logits and critic values from the stacked pair of ``ppo.ppo_update``'s fused step: the critic
        is the actor's network with its output layer zero-padded from 1 to n outputs, so one vmapped pass
        of the actor's network computes both (value = output column 0)."""
        out = jax.vmap(self.actor.sequence, in_axes=(0, None))(stacked_params, xs)
        return out[0], out[1][..., 0]

    def iteration(self, state: TrainState):
        """One PPO iteration; returns the new state and a dict of scalar metrics."""
        key, k_roll, k_upd = jax.random.split(state.key, 3)
        traj, env_state = self.collect(state.actor_params, k_roll)
        values = self.critic.sequence(state.critic_params, traj.obs)[..., 0]
        batch = {"obs": traj.obs, "actions": traj.actions, "logp": traj.logp, "logits": traj.logits,
                 "values": values, "rewards": traj.rewards}
        pcfg = self.pcfg.replace(ent_coef=state.hparams["ent_coef"], gae_lambda=state.hparams["gae_lambda"])
        # each whole-sequence minibatch is split over the devices too (gradients: per-device sums + all-reduce)
        actor_fn = data_parallel(self.actor.sequence, self.mesh)
        critic_seq = data_parallel(self.critic.sequence, self.mesh)
        critic_fn = lambda p, x: critic_seq(p, x)[..., 0]  # noqa: E731
        fused_fn = data_parallel(self._pair_sequence, self.mesh) if self.fused else None
        a_p, c_p, a_o, c_o, upd = ppo.ppo_update(
            k_upd, state.actor_params, state.critic_params, state.actor_opt, state.critic_opt, batch, pcfg,
            state.iteration, actor_fn, critic_fn, fused_fn)
        returns = traj.rewards.sum(axis=1)
        metrics = {"return_mean": returns.mean(), "return_std": returns.std(),
                   "reward_per_step": traj.rewards.mean(), **upd}
        if env_state.est is not None:
            metrics["vi_sweeps"] = env_state.est.sweeps.astype(jnp.float32).mean()
        new = state.replace(actor_params=a_p, critic_params=c_p, actor_opt=a_o, critic_opt=c_o,
                            env_state=env_state, key=key, iteration=state.iteration + 1)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        metrics[FINITE] = finite_flag(metrics, (a_p, c_p, a_o, c_o))
        return new, metrics

    def chunk(self, state: TrainState, num_iters: int):
        """``num_iters`` iterations in one scan; metrics stacked to shape (num_iters,)."""
        return jax.lax.scan(lambda s, _: self.iteration(s), state, None, length=num_iters)


def finite_flag(metrics: dict, params) -> jax.Array:
    """1.0 when every metric (losses, return, KL, ...) and every leaf of ``params`` (parameters and optimiser
    states) is finite, else 0.0 (float32 scalar).

    Computed inside the jitted iteration (one reduction per parameter leaf, no squares that could overflow), so
    the driver learns the first non-finite iteration of a chunk without reading the parameters back. The
    driver removes this entry (``FINITE``) before logging."""
    ok = jnp.all(jnp.isfinite(jnp.stack([jnp.asarray(v, jnp.float32) for v in metrics.values()])))
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            ok = jnp.logical_and(ok, jnp.all(jnp.isfinite(leaf)))
    return ok.astype(jnp.float32)


#: the per-iteration metrics entry that carries ``finite_flag``
FINITE = "finite"


def make_train(cfg: TrainConfig, mesh=None) -> Trainer:
    """``mesh``: an optional ``jax.sharding.Mesh`` (see ``rl3jax.distributed.make_mesh``) over which the env
    axis is split; ``num_envs`` must be a multiple of its size."""
    cfg.validate()
    check_divisible(cfg.num_envs, cfg.minibatch_envs, mesh)
    meta_env = make_meta_env(cfg)
    n = meta_env.num_actions
    actor = make_network(cfg.model, n, cfg.horizon)
    critic = make_network(cfg.model, 1, cfg.horizon)
    pcfg = ppo_config(cfg)
    actor_tx, critic_tx = ppo.make_optimizers(pcfg)
    return Trainer(cfg=cfg, meta_env=meta_env, actor=actor, critic=critic, pcfg=pcfg, actor_tx=actor_tx,
                   critic_tx=critic_tx, mesh=mesh)


def jit_chunk(trainer: Trainer) -> Callable:
    """The jitted chunk function ``(state, num_iters) -> (state, metrics)``; num_iters is static.

    With a mesh, the state keeps its shardings in and out (env state split, the rest replicated)."""
    if trainer.mesh is not None:
        return sharded_chunk(trainer.chunk, trainer.mesh, trainer.cfg.num_envs)
    return jax.jit(trainer.chunk, static_argnums=1, donate_argnums=0)
