"""Garnet MDPs (METHOD §3): S states, 5 actions, each (s, a) with k successors drawn without replacement
(Archibald, McKinnon & Thomas 1995; Bhatnagar et al. 2009), stored sparsely so that S = 4096 fits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import RL3Defaults, TaskEnv

#: variant (``rl3jax.envs.catalog.FAMILIES``, same order) -> (S, k successors per (s, a)); 'train' is S = 64
SIZES = {"train": (64, 5), "s256": (256, 5), "s1024": (1024, 5), "s4096": (4096, 5), "branch10": (64, 10)}
OBS_BITS = 12  # the observation's width: a ±1 code of the state id, enough for S <= 4096 (see ``get_obs``)
DENSE_MAX_STATES = 256  # ``true_model`` builds the dense (S, A, S) table only up to here


@struct.dataclass
class GarnetState:
    """State of a garnet task episode: ``pos`` (int32 current state)."""

    pos: jax.Array


@struct.dataclass
class GarnetTask:
    """One garnet task; static: S, k and TH."""

    succ: jax.Array  # (S, A, k) int32 distinct successor states of each (s, a)
    prob: jax.Array  # (S, A, k) float32 their probabilities, summing to 1
    mean_rewards: jax.Array  # (S, A) float32
    num_states: int = struct.field(pytree_node=False, default=64)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=10)


def distinct_ints(key: jax.Array, n: int, k: int, shape: tuple[int, ...]) -> jax.Array:
    """``shape + (k,)`` int32: per element, a uniformly random k-subset of [0, n) (Floyd's algorithm; Bentley &
    Floyd 1987): for j = n−k .. n−1 draw t in [0, j], take j if t is already taken, else t. O(k²) work per
    element, none per n."""
    out = []
    for key_j, j in zip(jax.random.split(key, k), range(n - k, n), strict=True):
        t = jax.random.randint(key_j, shape, 0, j + 1)
        taken = jnp.zeros(shape, bool)
        for o in out:
            taken = taken | (o == t)
        out.append(jnp.where(taken, j, t))
    return jnp.stack(out, axis=-1).astype(jnp.int32)


class GarnetMDP(TaskEnv):
    """Garnet family: S states, A = 5 actions; each (s, a) has k = 5 successor states drawn uniformly without
    replacement, with Dirichlet(1) probabilities over them; mean rewards R(s, a) = 1 + N(0, 1), observed rewards
    R(s, a) + N(0, 1) (as ``mdp``); task episodes of TH = 10 steps from state 0.

    Variants (``SIZES``): ``train`` (S = 64), ``s256``, ``s1024``, ``s4096`` (S = 256, 1024, 4096) and ``branch10``
    (S = 64, k = 10 successors: out of distribution). ``num_states`` stays None (``state_bound`` = S): no dense table is built for
    RL³ (the discovery-indexed estimator's cost follows H, not S); ``state_index`` is the state id in [0, S).

    Args: variant: one of ``SIZES``; num_states / branching override its S and k (tests: small garnets).
    Raises ValueError for an unknown variant, S < 1 or k outside [1, S].
    """

    family = "garnet"
    # mdp's scale: Q over a 10-step task episode, shown divided by 10; the discovery estimator's settings
    rl3_defaults = RL3Defaults(q_denom=10.0, alpha_laplace=0.1, epsilon=0.01, max_sweeps=None,
                               warm_start=True, known_states="visited")

    def __init__(self, variant: str = "train", num_states: int | None = None, branching: int | None = None):
        if variant not in SIZES:
            raise ValueError(f"garnet variant {variant!r} is not one of {', '.join(map(repr, SIZES))}")
        s, k = SIZES[variant]
        self.size = s if num_states is None else num_states
        self.branching = k if branching is None else branching
        if self.size < 1 or not 1 <= self.branching <= self.size:
            raise ValueError(f"garnet needs S >= 1 and 1 <= k <= S, got S={self.size}, k={self.branching}")
        self.variant, self.state_bound = variant, self.size
        self.obs_bits = max(OBS_BITS, (self.size - 1).bit_length())

    @property
    def name(self) -> str:
        return f"garnet-s{self.size}" + ("" if self.branching == 5 else f"-k{self.branching}")

    @property
    def num_actions(self) -> int:
        return 5

    @property
    def default_params(self) -> GarnetTask:
        s, k = self.size, self.branching
        return GarnetTask(succ=jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32) % s, (s, 5, k)),
                          prob=jnp.full((s, 5, k), 1.0 / k), mean_rewards=jnp.ones((s, 5)), num_states=s)

    def sample_task(self, key: jax.Array) -> GarnetTask:
        """One task drawn with ``key`` (jittable, vmappable): succ (S, 5, k) int32, prob (S, 5, k) and
        mean_rewards (S, 5) float32. Dirichlet(1) = normalised Exp(1) draws."""
        k_s, k_p, k_r = jax.random.split(key, 3)
        s, k = self.size, self.branching
        e = jax.random.exponential(k_p, (s, 5, k))
        return GarnetTask(succ=distinct_ints(k_s, s, k, (s, 5)), prob=e / e.sum(axis=-1, keepdims=True),
                          mean_rewards=1.0 + jax.random.normal(k_r, (s, 5)), num_states=s)

    def reset_env(self, key, params):
        """The task episode's start in state 0 (``key`` unused). Returns (obs (OBS_BITS,) float32, state)."""
        state = GarnetState(pos=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """Takes ``action`` (int32 in [0, 5)): s' = succ[s, a, j] with j ~ prob[s, a], reward R(s, a) + N(0, 1)
        (float32). Returns (obs, state, reward, terminated False (TH truncates), {})."""
        k_s, k_r = jax.random.split(key)
        j = jax.random.categorical(k_s, jnp.log(params.prob[state.pos, action]))
        reward = params.mean_rewards[state.pos, action] + jax.random.normal(k_r)
        new = GarnetState(pos=params.succ[state.pos, action, j])
        return self.get_obs(new, params), new, reward, jnp.asarray(False), {}

    def state_index(self, state, params) -> jax.Array:
        """The state id (int32 in [0, S))."""
        return state.pos

    def get_obs(self, state, params=None, key=None):
        """(obs_bits,) float32: the state id's binary code, bit i as ±1 (obs_bits = 12 up to S = 4096). One code
        at every S, so that S is the only thing the variants change and a run evaluates on every size; a one-hot
        would give a transformer 4096 inputs. RL² sees this code; two states' codes agree in all bits iff equal."""
        bits = (state.pos >> jnp.arange(self.obs_bits, dtype=jnp.int32)) & 1
        return (2 * bits - 1).astype(jnp.float32)

    def true_model_sparse(self, params):
        """(succ, prob, expected reward, absorbing (none), start state 0) of one task: the oracle's model."""
        return (params.succ, params.prob, params.mean_rewards, jnp.zeros((self.size,), bool), jnp.int32(0))

    def true_model(self, params):
        """The dense (T (S, 5, S), R, absorbing, start) for S <= ``DENSE_MAX_STATES``; ValueError beyond."""
        if self.size > DENSE_MAX_STATES:
            raise ValueError(f"garnet: the dense model of S={self.size} states has {self.size ** 2 * 5:,} entries; "
                             f"use true_model_sparse (dense only for S <= {DENSE_MAX_STATES})")
        t = jnp.zeros((self.size, 5, self.size)).at[
            jnp.arange(self.size)[:, None, None], jnp.arange(5)[None, :, None], params.succ].add(params.prob)
        return t, params.mean_rewards, jnp.zeros((self.size,), bool), jnp.int32(0)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (self.obs_bits,))
