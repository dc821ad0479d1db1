"""Bernoulli bandits as one-step MDPs (METHOD §3): state 0 'ready' → any arm → state 1 (absorbing); TH = 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import RL3Defaults, TaskEnv, V4Defaults
from rl3jax.envs.catalog import FAMILIES

#: the variant names (``rl3jax.envs.catalog.FAMILIES``)
VARIANTS = FAMILIES["bandit"].variants


@struct.dataclass
class BanditState:
    """State of a bandit task episode: ``time`` (int32 steps taken), ``pos`` (int32: 0 ready, 1 pulled)."""

    time: jax.Array
    pos: jax.Array  # 0 ready, 1 pulled (absorbing)


@struct.dataclass
class BanditTask:
    """One bandit task: the arms' success probabilities; static: k and TH (= 1)."""

    probs: jax.Array  # (k,) success probabilities; may leave [0, 1] out of distribution
    num_arms: int = struct.field(pytree_node=False, default=5)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1)


class BernoulliBandit(TaskEnv):
    """k-armed Bernoulli bandit (METHOD §3): a task is k success probabilities, p_i ~ U(0, 1) ('train') or
    p_i ~ N(0.5, 0.5) unclipped ('ood', out of distribution). One pull per task episode (TH = 1); the reward
    is 1 with probability p (0 if p < 0, 1 if p > 1), else 0.

    Args:
        num_arms: k >= 2 (the published family: 5).
        variant: 'train' or 'ood'.

    Raises ValueError for another variant or k < 2.
    """

    family = "bandit"
    num_states = 2
    rl3_defaults = RL3Defaults(q_denom=1.0, alpha_laplace=0.1, epsilon=0.01, max_sweeps=None,
                               warm_start=False, known_states="all")
    v4_defaults = V4Defaults(q_denom=1.0, drop_task_obs=True)

    def __init__(self, num_arms: int = 5, variant: str = "train"):
        if variant not in VARIANTS:
            raise ValueError(f"bandit variant {variant!r} is not one of {', '.join(map(repr, VARIANTS))}")
        if num_arms < 2:
            raise ValueError(f"num_arms must be >= 2, got {num_arms}")
        self.num_arms = num_arms
        self.variant = variant

    @property
    def name(self) -> str:
        return f"bandit{self.num_arms}" + ("" if self.variant == "train" else f"-{self.variant}")

    @property
    def default_params(self) -> BanditTask:
        return BanditTask(probs=jnp.full((self.num_arms,), 0.5), num_arms=self.num_arms)

    @property
    def num_actions(self) -> int:
        return self.num_arms

    def sample_task(self, key: jax.Array) -> BanditTask:
        """One task: ``probs`` (k,) float32 drawn with ``key``."""
        if self.variant == "ood":
            probs = 0.5 + 0.5 * jax.random.normal(key, (self.num_arms,))
        else:
            probs = jax.random.uniform(key, (self.num_arms,))
        return BanditTask(probs=probs, num_arms=self.num_arms)

    def reset_env(self, key, params):
        """The task episode's start, in the 'ready' state 0 (``key`` unused). Returns (obs (2,) float32, state)."""
        state = BanditState(time=jnp.int32(0), pos=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """Pulls arm ``action`` (int32 in [0, k)): reward 1.0 with probability p_action (one uniform draw from
        ``key``), else 0.0. Returns (obs (2,) float32 of the absorbing state 1, state, reward float32,
        terminated True, {})."""
        # u < p: p < 0 never pays, p > 1 always pays (the unclipped OOD variant)
        reward = (jax.random.uniform(key) < params.probs[action]).astype(jnp.float32)
        new = BanditState(time=state.time + 1, pos=jnp.int32(1))
        return self.get_obs(new, params), new, reward, jnp.asarray(True), {}

    def get_obs(self, state, params=None, key=None):
        """(2,) float32 one-hot of the state (0 ready, 1 pulled)."""
        return jax.nn.one_hot(state.pos, 2)

    def is_terminated(self, state, params):
        return state.pos == 1

    def true_model(self, params):
        """(T (S,A,S), expected reward (S,A), absorbing (S,), start state) of one task, for the oracle."""
        k = self.num_arms
        t = jnp.zeros((2, k, 2)).at[:, :, 1].set(1.0)
        r = jnp.stack([jnp.clip(params.probs, 0.0, 1.0), jnp.zeros((k,))])
        return t, r, jnp.array([False, True]), jnp.int32(0)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (2,))

