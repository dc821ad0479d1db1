"""The inner loop in purejaxrl's shape: ``make_train(cfg)`` returns pure, jittable functions over one
``TrainState`` pytree; ``chunk(state, n)`` scans n PPO iterations inside one jit, and the driver
(``rl3jax.runs.driver``) loops over chunks on the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rl3jax import ppo
from rl3jax.config import HParams, TrainConfig
from rl3jax.distributed import check_divisible, data_parallel, sharded_chunk, split_leading
from rl3jax.meta_episode import MetaEnv, make_meta_env
from rl3jax.networks import SequenceModel, make_network, make_value_head
from rl3jax.rollout import rollout, sample_tasks


@struct.dataclass
class TrainState:
    """Everything a run carries from one iteration to the next (a pytree; checkpoints store it field by field).

    ``actor_opt`` / ``critic_opt``: ``ppo.ADAM`` states; ``hparams``: ``config.HParams`` of float32 scalars. A
    population stacks every leaf on a leading member axis."""

    actor_params: Any
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    env_state: Any  # final MetaState (incl. RL³ estimator state) of the latest rollout (``init``: zeros)
    key: jax.Array  # typed PRNG key (stored as key data in checkpoints)
    iteration: jax.Array  # PPO iterations done (int32)
    hparams: HParams  # the sweepable settings (vmapped in a population)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Pure training functions for one config (all jittable; ``cfg`` is static), built by ``make_train``:
    ``meta_env`` (METHOD §1), ``actor`` / ``critic`` (METHOD §4; n logits, 1 value) and ``mesh`` (or None).
    ``cfg.shared_torso``: ``critic`` is a value head (``networks.make_value_head``) on the actor's features, so
    ``critic_params`` hold that head alone and ``actor_params`` all an acting policy needs."""

    cfg: TrainConfig
    meta_env: MetaEnv
    actor: SequenceModel
    critic: SequenceModel
    mesh: Any = None

    def init(self, key: jax.Array) -> TrainState:
        """The state before the first iteration, from a typed PRNG key (split into actor, critic and run streams
        and an unused fourth): fresh networks and Adam states, the config's ``hparams``, and as ``env_state``
        zeros of a reset's structure (``num_envs`` tasks). No iteration reads ``env_state`` (each collects fresh
        tasks), so the init program holds no env code: it compiled in a third of the first chunk's time with it."""
        k_a, k_c, k_run, _ = jax.random.split(key, 4)
        m = self.meta_env.obs_dim
        actor_params = self.actor.init(k_a, m)
        critic_params = self.critic.init(k_c, self.actor.feature_dim if self.cfg.shared_torso else m)

        def reset(k):
            tasks = sample_tasks(self.meta_env, k, self.cfg.num_envs)
            return jax.vmap(self.meta_env.reset)(jax.random.split(k, self.cfg.num_envs), tasks)[1]

        env_state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(reset, key))
        return TrainState(actor_params=actor_params, critic_params=critic_params,
                          actor_opt=ppo.ADAM.init(actor_params), critic_opt=ppo.ADAM.init(critic_params),
                          env_state=split_leading(env_state, self.mesh), key=k_run, iteration=jnp.int32(0),
                          hparams=HParams(*(jnp.float32(v) for v in self.cfg.hparams())))

    def collect(self, actor_params, key: jax.Array):
        """``num_envs`` fresh tasks, one whole meta-episode of H steps each (METHOD §5). Returns ``(trajectory,
        final MetaState)``; the trajectory's leaves have leading axes (num_envs, H) (``rollout.Trajectory``)."""
        k_task, k_roll = jax.random.split(key)
        tasks = split_leading(sample_tasks(self.meta_env, k_task, self.cfg.num_envs), self.mesh)

        def step(c, o, _):
            c, logits = self.actor.step(actor_params, c, split_leading(o, self.mesh))
            return c, split_leading(logits, self.mesh)

        traj = rollout(self.meta_env, step, self.actor.initial_carry(self.cfg.num_envs), tasks, k_roll)
        return split_leading(traj, self.mesh)

    def iteration(self, state: TrainState):
        """One PPO iteration (METHOD §5): collect, then ``ppo.ppo_update``. Returns ``(new state, metrics)``,
        float32 scalars: ``return_mean``, ``return_std``, ``reward_per_step``, the update's metrics, ``vi_sweeps``
        (RL³: mean VI sweeps of the last step) and ``FINITE``."""
        key, k_roll, k_upd = jax.random.split(state.key, 3)
        traj, env_state = self.collect(state.actor_params, k_roll)
        values = self.values(state.actor_params, state.critic_params, traj.obs)
        # the training passes split over the mesh's devices: gradients are per-device sums plus an all-reduce
        actor, critic = (data_parallel(net.sequence, self.mesh) for net in (self.actor, self.critic))
        joint = data_parallel(self.joint, self.mesh) if self.cfg.shared_torso else None
        ac = ppo.ActorCritic(state.actor_params, state.actor_opt, state.critic_params, state.critic_opt)
        ac, upd = ppo.ppo_update(self.cfg, actor, lambda p, x: critic(p, x)[..., 0], k_upd, ac, state.hparams,
                                 traj, values, state.iteration, joint=joint)
        returns = traj.rewards.sum(axis=1)
        metrics = {"return_mean": returns.mean(), "return_std": returns.std(),
                   "reward_per_step": traj.rewards.mean(), **upd}
        if self.meta_env.estimator is not None:
            metrics["vi_sweeps"] = self.meta_env.estimator.sweeps(env_state.est).astype(jnp.float32).mean()
        new = state.replace(actor_params=ac.actor_params, critic_params=ac.critic_params, actor_opt=ac.actor_opt,
                            critic_opt=ac.critic_opt, env_state=env_state, key=key, iteration=state.iteration + 1)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        metrics[FINITE] = finite_flag(metrics, ac)
        return new, metrics

    def joint(self, params, obs):
        """The shared torso's one pass: ``params`` (actor_params, critic_params), obs (B, T, m) -> (logits (B, T, n),
        values (B, T)), both heads on one ``actor.features``."""
        h = self.actor.features(params[0], obs)
        return self.actor.head(params[0], h), self.critic.sequence(params[1], h)[..., 0]

    def values(self, actor_params, critic_params, obs) -> jax.Array:
        """The critic's values (B, T) float32 of obs (B, T, m): its own pass, or the shared torso's."""
        if self.cfg.shared_torso:
            return self.joint((actor_params, critic_params), obs)[1]
        return self.critic.sequence(critic_params, obs)[..., 0]

    def chunk(self, state: TrainState, num_iters: int):
        """``num_iters`` (static int) iterations in one scan; metrics stacked to shape (num_iters,)."""
        return jax.lax.scan(lambda s, _: self.iteration(s), state, None, length=num_iters)


def v1_layout(state: TrainState) -> TrainState:
    """``state``'s leaves in checkpoint format 1's shape (``optax.inject_hyperparams`` around Adam; ``hparams``
    a dict of ent_coef and gae_lambda): the restore template of a format-1 step (``from_v1`` maps it back)."""

    def opt(adam, weight_decay):
        hyper = {"learning_rate": state.hparams.lr, "weight_decay": weight_decay}
        return optax.InjectStatefulHyperparamsState(count=adam.count, hyperparams=hyper, hyperparams_states={},
                                                    inner_state=(optax.EmptyState(), (adam, optax.EmptyState())))

    hp = state.hparams
    return state.replace(actor_opt=opt(state.actor_opt, hp.critic_weight_decay),
                         critic_opt=opt(state.critic_opt, hp.critic_weight_decay),
                         hparams={"ent_coef": hp.ent_coef, "gae_lambda": hp.gae_lambda})


def from_v1(old) -> TrainState:
    """The ``TrainState`` of a state restored in format 1's layout (``v1_layout``)."""
    return old.replace(actor_opt=old.actor_opt.inner_state[1][0], critic_opt=old.critic_opt.inner_state[1][0],
                       hparams=HParams(lr=old.actor_opt.hyperparams["learning_rate"],
                                       critic_weight_decay=old.critic_opt.hyperparams["weight_decay"],
                                       ent_coef=old.hparams["ent_coef"], gae_lambda=old.hparams["gae_lambda"]))


@jax.jit
def all_finite(tree) -> jax.Array:
    """True (bool scalar) when every inexact (float or complex) leaf of ``tree`` is finite; other leaves (ints,
    bools, PRNG keys) are not checked."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def finite_flag(metrics: dict, params) -> jax.Array:
    """1.0 when every metric and every leaf of ``params`` (parameters and optimiser states) is finite, else 0.0
    (float32 scalar): the metrics entry ``FINITE``, which the driver reads and removes before logging."""
    ok = jnp.all(jnp.isfinite(jnp.stack([jnp.asarray(v, jnp.float32) for v in metrics.values()])))
    return jnp.logical_and(ok, all_finite(params)).astype(jnp.float32)


#: the per-iteration metrics entry that carries ``finite_flag``
FINITE = "finite"


def make_train(cfg: TrainConfig, mesh=None) -> Trainer:
    """The ``Trainer`` of a config: the meta-episode env with its RL³ estimator, the actor and the critic.
    ``mesh``: a ``jax.sharding.Mesh`` (``rl3jax.distributed.make_mesh``) over which the env axis is split, or None;
    ValueError unless ``num_envs`` divides over its size. Compiles nothing."""
    check_divisible(cfg.num_envs, mesh)
    meta_env = make_meta_env(cfg)
    critic = make_value_head(cfg.horizon) if cfg.shared_torso else make_network(cfg.model, 1, cfg.horizon,
                                                                                 cfg.gru_hidden)
    actor = make_network(cfg.model, meta_env.num_actions, cfg.horizon, cfg.gru_hidden)
    return Trainer(cfg=cfg, meta_env=meta_env, actor=actor, critic=critic, mesh=mesh)


def jit_chunk(trainer: Trainer) -> Callable:
    """The jitted ``(state, num_iters) -> (state, metrics)`` (num_iters static; ``distributed.sharded_chunk``).
    The state is donated: use the returned one."""
    return sharded_chunk(trainer.chunk, trainer.mesh, trainer.cfg.num_envs)
