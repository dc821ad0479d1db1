"""The meta-episode (trial) wrapper of METHOD §1: one task, H steps, task episodes chained back to back.

``MetaEnv`` follows gymnax's ``reset(key, params) / step(key, state, action, params)`` with the *task* as
params. Its state carries the task environment's state, the time counters, the previous action and reward,
the running return and (RL³) the Q-estimator state; its observation is the policy input with the blocks of
METHOD §1 in the order of its ``layout`` (``rl3jax.layout``). A task episode ends at an absorbing state or after
TH steps and is reset at once (same task), so the terminal state is never shown. Only step H ends the
meta-episode.

Two input layouts (``rl3jax.layout``): ``layout='method'`` (METHOD §1) and ``layout='v4'``, the paper's own code
(RL3 commit f8121786: MDPs.jl ``EvidenceObservationWrapper`` around MetaMDPs.jl ``MetaMDPwithTimeContext``
around VAMDP.jl's wrapper).

``make_meta_env(cfg)`` builds the meta env a training config describes (family, horizon, estimator, layout).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax import layout as layouts
from rl3jax.config import TrainConfig
from rl3jax.envs.base import TaskEnv
from rl3jax.envs.registry import make_env
from rl3jax.estimators import Estimator, make_estimator


@struct.dataclass
class MetaState:
    """The state of one meta-episode (int32 counters, float32 reward and return)."""

    env_state: Any  # the task environment's state
    t: jax.Array  # meta-steps taken so far
    tau: jax.Array  # steps taken in the current task episode
    prev_action: jax.Array  # -1 before the first step
    prev_reward: jax.Array
    episode_return: jax.Array  # undiscounted sum of rewards so far
    task_obs: jax.Array  # the task observation currently shown
    est: Any  # the estimator's state (RL³ only, else None)


class MetaEnv:
    """Wraps a task family (a ``TaskEnv``; gymnax envs through ``rl3jax.envs.gymnax_bridge``) into H-step
    meta-episodes (METHOD §1), gymnax-style: ``reset(key, task)``, ``step(key, state, action, task)``.

    Args:
        env: the task family.
        horizon: H, real steps per meta-episode (>= 1).
        estimator: the RL³ estimator (``rl3jax.estimators.Estimator``), or None for RL².
        layout: 'method' (METHOD §1) or 'v4' (the paper's own code); see ``rl3jax.layout``.
        drop_task_obs: leave the task observation out of the input ('v4' only; the original's RL³ on bandits).
        state_obs: add the block ``state``, the env's ``state_features`` (gymnax envs with ``state_fields``).

    Attributes: ``layout`` (``rl3jax.layout.Layout`` of the policy input), ``obs_dim`` (= ``layout.size``),
    ``num_actions`` (n), ``task_obs_dim`` (m, 0 when dropped), ``task_horizon`` (TH: the task's own episode length,
    ``max_steps_in_episode`` of the family; grids set it to H).

    Raises ValueError for H < 1, an unknown layout, ``drop_task_obs`` outside 'v4', or an estimator on a family
    without a state index (``has_state_index``); TypeError at trace time when ``state_index`` returns anything but
    an integer scalar; ValueError for ``state_obs`` on a family without state features.
    """

    def __init__(self, env: TaskEnv, horizon: int, estimator: Estimator | None = None, layout: str = "method",
                 drop_task_obs: bool = False, state_obs: bool = False):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if drop_task_obs and layout != "v4":
            raise ValueError("drop_task_obs is part of the 'v4' layout only")
        if estimator is not None and not env.has_state_index:
            raise ValueError(f"RL³ needs a task family that names its discrete states; {env.name} has no "
                             "state_index hook (give it one, or use algo 'rl2')")
        state_dim = env.state_dim if state_obs else 0
        if state_obs and not state_dim:
            raise ValueError(f"state_obs: {env.name} has no state features (gymnax envs with state_fields have)")
        self.env = env
        self.horizon = horizon
        self.estimator = estimator
        self.drop_task_obs = drop_task_obs
        # a static size shared by every task of a batch, read once (gymnax's params hold it as an array leaf)
        self.task_horizon = env.task_horizon
        self.num_actions = int(env.num_actions)
        self.task_obs_dim = 0 if drop_task_obs else int(jnp.size(jnp.zeros(env.observation_space(
            env.default_params).shape)))
        self.layout = layouts.policy_input(layout, self.num_actions, self.task_obs_dim,
                                           estimator.feature_layout if estimator is not None else None, state_dim)
        self.obs_dim = self.layout.size

    def sample_task(self, key: jax.Array):
        """One task of the family (``env.sample_task``); vmap over keys for a batch."""
        return self.env.sample_task(key)

    def state_index(self, env_state, params) -> jax.Array:
        """The family's ``state_index`` as an int32 scalar; TypeError (at trace time) for any other result."""
        s = self.env.state_index(env_state, params)
        if jnp.ndim(s) != 0 or not jnp.issubdtype(jnp.result_type(s), jnp.integer):
            raise TypeError(f"the state_index hook of env {self.env.name!r} ({type(self.env).__name__}) must return "
                            f"an integer scalar (an int32 state id), got {jnp.result_type(s)} of shape {jnp.shape(s)}")
        return jnp.asarray(s, jnp.int32)

    def observation(self, state: MetaState, params) -> jax.Array:
        """The policy input (obs_dim,) float32: the blocks of ``self.layout`` in order (``layout.policy_input``)."""
        n = self.num_actions
        parts = {
            "prev_action": lambda: jnp.where(state.prev_action >= 0, jax.nn.one_hot(state.prev_action, n),
                                             jnp.zeros((n,))),
            "prev_reward": lambda: state.prev_reward[None],
            "first": lambda: (state.t == 0).astype(jnp.float32)[None],
            "task_obs": lambda: state.task_obs.reshape(-1).astype(jnp.float32),
            "state": lambda: self.env.state_features(state.env_state, params),
            layouts.RL3: lambda: self.estimator.features(state.est, self.state_index(state.env_state, params)),
            "meta_time": lambda: (state.t / self.horizon).astype(jnp.float32)[None],
            "task_time": lambda: (state.tau / self.task_horizon).astype(jnp.float32)[None],
        }
        return jnp.concatenate([parts[name]().astype(jnp.float32) for name in self.layout.names])

    # --------------------------------------------------------------------------------- gymnax API
    def reset(self, key: jax.Array, params) -> tuple[jax.Array, MetaState]:
        """A new meta-episode of task ``params``: the task's start state and (RL³) an empty estimator.
        Returns (obs (obs_dim,) float32, state)."""
        task_obs, env_state = self.env.reset_env(key, params)
        est = None if self.estimator is None else self.estimator.init(self.state_index(env_state, params))
        state = MetaState(env_state=env_state, t=jnp.int32(0), tau=jnp.int32(0), prev_action=jnp.int32(-1),
                          prev_reward=jnp.float32(0.0), episode_return=jnp.float32(0.0),
                          task_obs=jnp.asarray(task_obs, jnp.float32), est=est)
        return self.observation(state, params), state

    def step(self, key: jax.Array, state: MetaState, action: jax.Array, params):
        """One real step with ``action`` (int32). Returns (obs (obs_dim,) float32, state, reward float32, done
        bool, info); done is True only at step H; info: ``task_episode_over`` (the task episode ended and was
        reset) and ``terminated`` (it ended in an absorbing state)."""
        k_step, k_reset = jax.random.split(key)
        action = jnp.asarray(action, jnp.int32)
        obs_st, env_st, reward, terminated, _ = self.env.step_env(k_step, state.env_state, action, params)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        tau = state.tau + 1
        episode_over = terminated | (tau >= self.task_horizon)
        obs_re, env_re = self.env.reset_env(k_reset, params)
        env_state = jax.tree.map(lambda r, c: jnp.where(episode_over, r, c), env_re, env_st)
        task_obs = jnp.where(episode_over, jnp.asarray(obs_re, jnp.float32), jnp.asarray(obs_st, jnp.float32))
        est = state.est
        if self.estimator is not None:  # visit: after a reset the task is in its start state (visited at its start)
            s, s_next, s_now = (self.state_index(x, params) for x in (state.env_state, env_st, env_state))
            est = self.estimator.visit(self.estimator.update(est, s, action, reward, s_next, terminated), s_now)
        new = MetaState(env_state=env_state, t=state.t + 1, tau=jnp.where(episode_over, 0, tau),
                        prev_action=action, prev_reward=reward, episode_return=state.episode_return + reward,
                        task_obs=task_obs, est=est)
        done = new.t >= self.horizon
        info = {"task_episode_over": episode_over, "terminated": terminated}
        return self.observation(new, params), new, reward, done, info


def make_meta_env(cfg: TrainConfig) -> MetaEnv:
    """The meta env of a training config: family ``cfg.env`` in ``cfg.variant`` for H = ``cfg.horizon``
    (``with_horizon``), with its RL³ estimator (``rl3jax.estimators.make_estimator``; None for RL²), the block
    ``state`` with ``cfg.state_obs``, and the layout of ``cfg.semantics`` ('v4': the paper's own code's, dropping the task observation where the family's
    ``v4_defaults`` say so for RL³). Raises ValueError as ``make_env`` and ``make_estimator`` do."""
    env = make_env(cfg.env, cfg.variant).with_horizon(cfg.horizon)
    est = make_estimator(env, cfg)
    if cfg.semantics != "v4":
        return MetaEnv(env, cfg.horizon, est, state_obs=cfg.state_obs)
    # the original drops the bandit's task observation for RL³ only (main.jl: drop_observation); RL² keeps it
    return MetaEnv(env, cfg.horizon, est, layout="v4",
                   drop_task_obs=est is not None and env.v4_defaults.drop_task_obs)
