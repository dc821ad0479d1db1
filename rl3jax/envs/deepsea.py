"""DeepSea (Osband et al. 2019, bsuite) as a meta-RL family: the task is the per-cell action mapping.

A first-class family rather than gymnax's ``DeepSea-bsuite`` through the bridge: gymnax fixes the size N in the
env's constructor (not its params), keeps the mapping in the env state (drawn at reset, not a task), shows an
N×N one-hot (900 inputs at N = 30) and carries bsuite's bookkeeping in every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import RL3Defaults, TaskEnv

#: variant (``rl3jax.envs.catalog.FAMILIES``, same order) -> N; 'train' is N = 10
SIZES = {"train": 10, "n20": 20, "n30": 30}
MOVE_COST = 0.01  # bsuite's unscaled move cost: each right move costs MOVE_COST / N


@struct.dataclass
class DeepSeaState:
    """Position in a DeepSea task episode: ``row``, ``col`` (int32; row N: the episode is over)."""

    row: jax.Array
    col: jax.Array


@struct.dataclass
class DeepSeaTask:
    """One task: ``right`` (N, N) int32, the action that moves right in each cell; static: N (= TH)."""

    right: jax.Array
    size: int = struct.field(pytree_node=False, default=10)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=10)


class DeepSea(TaskEnv):
    """DeepSea with N rows and columns, 2 actions, deterministic (bsuite's default). Every task episode starts at
    (0, 0) and lasts N steps: each step goes one row down and one column right if the action is the cell's
    ``right`` action (costing 0.01 / N), else one column left (both clipped to the grid); the right action in the
    bottom-right cell also pays +1 (the treasure). The optimal return of a task episode is 0.99 (right N times),
    found only by deep exploration: each unknown diagonal cell's right action is a coin flip.

    Variants (``SIZES``): ``train`` (N = 10), ``n20``, ``n30``. The catalog's H = 300 is 30 task episodes at
    N = 10: about 2N to explore (what a systematic explorer needs; one that knows the structure first reaches the
    treasure after 1 + N/2 on average, as each unknown diagonal cell costs an episode with probability ½) and N
    left to exploit. Train or test n20 / n30 with H = 3N² for the same ratio.

    Raises ValueError for an unknown variant.
    """

    family = "deepsea"
    rl3_defaults = RL3Defaults(q_denom=1.0, alpha_laplace=0.1, epsilon=0.01, max_sweeps=None,
                               warm_start=True, known_states="visited")

    def __init__(self, variant: str = "train"):
        if variant not in SIZES:
            raise ValueError(f"deepsea variant {variant!r} is not one of {', '.join(map(repr, SIZES))}")
        self.variant, self.size = variant, SIZES[variant]
        self.state_bound = self.size * self.size

    @property
    def name(self) -> str:
        return f"deepsea-n{self.size}"

    @property
    def num_actions(self) -> int:
        return 2

    @property
    def default_params(self) -> DeepSeaTask:
        n = self.size
        return DeepSeaTask(right=jnp.ones((n, n), jnp.int32), size=n, max_steps_in_episode=n)

    def sample_task(self, key: jax.Array) -> DeepSeaTask:
        """One task: each cell's right action uniform over {0, 1} (int32 (N, N))."""
        n = self.size
        return DeepSeaTask(right=jax.random.bernoulli(key, 0.5, (n, n)).astype(jnp.int32), size=n,
                           max_steps_in_episode=n)

    def reset_env(self, key, params):
        """The start (0, 0) (``key`` unused). Returns (obs (2,) float32, state)."""
        state = DeepSeaState(row=jnp.int32(0), col=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """One step (deterministic; ``key`` unused). Returns (obs, state, reward float32, terminated (row N), {})."""
        n = self.size
        right = action == params.right[state.row, state.col]
        reward = jnp.where(right, (state.col == n - 1) - MOVE_COST / n, 0.0).astype(jnp.float32)
        new = DeepSeaState(row=state.row + 1, col=jnp.clip(state.col + jnp.where(right, 1, -1), 0, n - 1))
        return self.get_obs(new, params), new, reward, self.is_terminated(new, params), {}

    def is_terminated(self, state, params) -> jax.Array:
        """Whether the bottom has been passed (row N)."""
        return state.row >= self.size

    def state_index(self, state, params) -> jax.Array:
        """row · N + col (int32; row N, past the bottom: N² + col)."""
        return (state.row * self.size + state.col).astype(jnp.int32)

    def get_obs(self, state, params=None, key=None):
        """(row / N, col / N) float32, as the grids: one input size at every N (a run evaluates on every size)."""
        return jnp.stack([state.row, state.col]).astype(jnp.float32) / self.size

    def true_model_sparse(self, params):
        """The model over the N(N + 1) states ``state_index`` names (the last row absorbing), one successor each:
        succ (S, 2, 1) int32, prob ones, expected reward (S, 2), absorbing (S,) bool, start 0."""
        n = self.size
        row, col = jnp.divmod(jnp.arange(n * (n + 1)), n)
        live = row < n
        right = params.right[jnp.minimum(row, n - 1), col][:, None] == jnp.arange(2)  # (S, 2)
        nxt = (row[:, None] + 1) * n + jnp.clip(col[:, None] + jnp.where(right, 1, -1), 0, n - 1)
        succ = jnp.where(live[:, None], nxt, jnp.arange(n * (n + 1))[:, None]).astype(jnp.int32)
        reward = jnp.where(right & live[:, None], (col[:, None] == n - 1) - MOVE_COST / n, 0.0)
        return succ[..., None], jnp.ones(succ.shape + (1,)), reward.astype(jnp.float32), ~live, jnp.int32(0)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (2,))
