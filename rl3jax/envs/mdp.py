"""Random tabular MDPs (METHOD §3): T(·|s,a) ~ Dirichlet(α·1), R(s,a) = 1 + N(0,1), noisy observed rewards."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import RL3Defaults, TaskEnv, V4Defaults
from rl3jax.envs.catalog import FAMILIES

#: the variant names (``rl3jax.envs.catalog.FAMILIES``)
VARIANTS = FAMILIES["mdp"].variants


@struct.dataclass
class MDPState:
    """State of an MDP task episode: ``time`` (int32 steps taken), ``pos`` (int32 current state)."""

    time: jax.Array
    pos: jax.Array


@struct.dataclass
class MDPTask:
    """One MDP task (float32 arrays); static: S, A and TH."""

    transitions: jax.Array  # (S, A, S) rows sum to 1
    mean_rewards: jax.Array  # (S, A)
    reward_noise: jax.Array  # scalar std of the observed reward around its mean (1, or 0 for det-rewards)
    num_states: int = struct.field(pytree_node=False, default=10)
    num_actions: int = struct.field(pytree_node=False, default=5)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=10)


class RandomMDP(TaskEnv):
    """Random tabular MDP family (METHOD §3): T(·|s,a) ~ Dirichlet(α·1) with α = 1, mean rewards
    R(s,a) = 1 + N(0, 1), observed rewards R(s,a) + N(0, 1); every task episode starts in state 0 and lasts TH
    steps. Variants: ``alpha0.25`` (α = 0.25, sparser transitions), ``det-rewards`` (R ~ U(0, 2), no noise).

    Args:
        num_states: S (published: 10); num_actions: A (5); task_horizon: TH (10); variant: one of ``VARIANTS``.

    Raises ValueError for an unknown variant or a size below 1.
    """

    family = "mdp"
    rl3_defaults = RL3Defaults(q_denom=10.0, alpha_laplace=0.1, epsilon=0.01, max_sweeps=None,
                               warm_start=False, known_states="all")
    v4_defaults = V4Defaults(q_denom=100.0)

    def __init__(self, num_states: int = 10, num_actions: int = 5, task_horizon: int = 10,
                 variant: str = "train"):
        if variant not in VARIANTS:
            raise ValueError(f"mdp variant {variant!r} is not one of {', '.join(map(repr, VARIANTS))}")
        for n, v in (("num_states", num_states), ("num_actions", num_actions), ("task_horizon", task_horizon)):
            if v < 1:
                raise ValueError(f"{n} must be >= 1, got {v}")
        self.num_states = num_states
        self._num_actions = num_actions
        self._task_horizon = task_horizon
        self.variant = variant
        self.dirichlet_alpha = 0.25 if variant == "alpha0.25" else 1.0

    @property
    def name(self) -> str:
        return "mdp" + ("" if self.variant == "train" else f"-{self.variant}")

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def _task(self, transitions, mean_rewards, noise):
        return MDPTask(transitions=transitions, mean_rewards=mean_rewards, reward_noise=jnp.float32(noise),
                       num_states=self.num_states, num_actions=self._num_actions,
                       max_steps_in_episode=self._task_horizon)

    @property
    def default_params(self) -> MDPTask:
        s, a = self.num_states, self._num_actions
        return self._task(jnp.full((s, a, s), 1.0 / s), jnp.ones((s, a)), 1.0)

    def sample_task(self, key: jax.Array) -> MDPTask:
        """One task: ``transitions`` (S, A, S) and ``mean_rewards`` (S, A) float32 drawn with ``key``."""
        k_t, k_r = jax.random.split(key)
        s, a = self.num_states, self._num_actions
        if self.dirichlet_alpha == 1.0:  # Dirichlet(1,...,1) = normalised Exp(1) draws; far cheaper than gamma
            e = jax.random.exponential(k_t, (s, a, s))
            transitions = e / e.sum(axis=-1, keepdims=True)
        else:
            transitions = jax.random.dirichlet(k_t, jnp.full((s,), self.dirichlet_alpha), (s, a))
        if self.variant == "det-rewards":
            return self._task(transitions, jax.random.uniform(k_r, (s, a), maxval=2.0), 0.0)
        return self._task(transitions, 1.0 + jax.random.normal(k_r, (s, a)), 1.0)

    def reset_env(self, key, params):
        """The task episode's start in state 0 (``key`` unused). Returns (obs (S,) float32, state)."""
        state = MDPState(time=jnp.int32(0), pos=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """Takes ``action`` (int32 in [0, A)): next state s' ~ T(·|s,a), reward R(s,a) + noise·N(0, 1) (float32;
        ``key`` split into the two draws). Returns (obs (S,) float32 one-hot of s', state, reward, terminated
        False (TH truncates), {})."""
        k_s, k_r = jax.random.split(key)
        nxt = jax.random.categorical(k_s, jnp.log(params.transitions[state.pos, action]))
        reward = params.mean_rewards[state.pos, action] + params.reward_noise * jax.random.normal(k_r)
        new = MDPState(time=state.time + 1, pos=nxt.astype(jnp.int32))
        return self.get_obs(new, params), new, reward, jnp.asarray(False), {}

    def get_obs(self, state, params=None, key=None):
        """(S,) float32 one-hot of the current state."""
        return jax.nn.one_hot(state.pos, self.num_states)

    def true_model(self, params):
        """(T, expected reward, absorbing, start state) of one task, for the oracle."""
        return (params.transitions, params.mean_rewards, jnp.zeros((self.num_states,), bool), jnp.int32(0))

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.num_states,))

