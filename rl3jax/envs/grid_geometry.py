"""Gridworld geometry, tiles and dynamics as pure functions of an (N, N) tile array (METHOD §3).

Cells are indexed ``row * N + col`` (0-based); the centre is (c, c) with 1-based c = ceil(N/2). Actions and move
directions share indices: 0 NOOP/stay, 1 N, 2 E, 3 S, 4 W. A move goes to the intended cell with probability
1 − p_slip and to each perpendicular neighbour with p_slip / 2 (never backwards); mass aimed at an obstacle or
off the grid stays put. p_slip by the current tile: ' ', 'S', '!' → ``slip``; 'W' → 1; 'G', 'X', 'O' → 0. The
reward is the entry reward of the tile landed on (staying included). 'G' and 'X' are absorbing.

Used by the grid family (``rl3jax.envs.grid``), its generation (``rl3jax.envs.grid_generation``) and the
sparse grid estimator (``rl3jax.estimators.grid``), which all share the one neighbour table defined here.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# ------------------------------------------------------------------------------------------------ tiles
EMPTY, OBSTACLE, WATER, DANGER, WARNING, GOAL, START = range(7)
#: the character of each tile code (METHOD §3)
TILE_CHARS = " OWX!GS"
#: entry reward of each tile code ('O' is never entered)
TILE_REWARDS = (-1.0, 0.0, -2.0, -100.0, -10.0, 100.0, -1.0)
#: entering one of these ends the task episode
ABSORBING_TILES = (GOAL, DANGER)

# ------------------------------------------------------------------------------------------- directions
NOOP, NORTH, EAST, SOUTH, WEST = range(5)
#: (d_row, d_col) of each direction (stay, N, E, S, W)
DIRECTION_OFFSETS = np.array([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)
#: (A, 5) float32: probability of each move direction per action, as DIR_BASE + p_slip · DIR_PER_SLIP (per unit of
#: slip the intended direction loses 1 and each perpendicular one gains ½; NOOP never slips)
DIR_BASE = np.eye(5, dtype=np.float32)
DIR_PER_SLIP = np.array([[0, 0, 0, 0, 0], [0, -1, 0.5, 0, 0.5], [0, 0.5, -1, 0.5, 0], [0, 0, 0.5, -1, 0.5],
                         [0, 0.5, 0, 0.5, -1]], np.float32)


def center_index(size: int) -> int:
    """0-based row/col of the centre (1-based c = ceil(N/2))."""
    return math.ceil(size / 2) - 1


def start_cell(size: int) -> int:
    """Cell index of the start tile 'S' (the centre)."""
    c = center_index(size)
    return c * size + c


def neighbour_table(size: int) -> np.ndarray:
    """(S, 5) int32 cell reached in each direction (stay, N, E, S, W); off-grid directions map to the cell
    itself. Obstacles are not taken into account (``move_targets`` does that)."""
    rows, cols = np.divmod(np.arange(size * size), size)
    out = np.empty((size * size, 5), np.int32)
    for d, (dr, dc) in enumerate(DIRECTION_OFFSETS):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        out[:, d] = np.where(inside, r * size + c, rows * size + cols)
    return out


def is_absorbing(tile: jax.Array) -> jax.Array:
    """Whether each tile code (int array, any shape) is absorbing (``ABSORBING_TILES``: 'G', 'X')."""
    return (tile == GOAL) | (tile == DANGER)


# ------------------------------------------------------------------------------------ dynamics of tiles
# The per-cell dynamics below take ``cells`` (int array, any shape; None: every cell 0..S-1, giving the (S, ...)
# tables that oracles and tests use). ``GridWorld.step_env`` passes the one cell it is in, so the hot loop
# computes 5 or 25 numbers per step, not the whole grid's table.
def _cells(tiles: jax.Array, cells) -> jax.Array:
    return jnp.arange(tiles.size) if cells is None else jnp.asarray(cells, jnp.int32)


def tiles_at(tiles: jax.Array, cells=None) -> jax.Array:
    """(...) int32 tile code of each of ``cells`` (None: (S,), every cell)."""
    flat = tiles.reshape(-1).astype(jnp.int32)
    return flat if cells is None else flat[cells]


def move_targets(tiles: jax.Array, cells=None) -> jax.Array:
    """(..., 5) int32 landing cell of each direction from each of ``cells`` (None: (S, 5)): off-grid or into an
    obstacle stays put."""
    here = _cells(tiles, cells)
    nbr = jnp.asarray(neighbour_table(tiles.shape[-1]))[here]
    return jnp.where(tiles_at(tiles, nbr) == OBSTACLE, here[..., None], nbr)


def direction_probabilities(tiles: jax.Array, slip, cells=None) -> jax.Array:
    """(..., A, 5) float32 probability of each move direction (stay, N, E, S, W) per action, from each of
    ``cells`` (None: (S, A, 5)); p_slip by tile: ' ', 'S', '!' → slip; 'W' → 1; 'G', 'X', 'O' → 0."""
    slip = jnp.asarray(slip, jnp.float32)
    p = jnp.stack([slip, 0.0, 1.0, 0.0, slip, 0.0, slip]).astype(jnp.float32)[tiles_at(tiles, cells)]
    return jnp.asarray(DIR_BASE) + p[..., None, None] * jnp.asarray(DIR_PER_SLIP)


def tile_rewards(tiles: jax.Array, cells=None) -> jax.Array:
    """(...) float32 entry reward of each of ``cells`` (None: (S,))."""
    return jnp.asarray(TILE_REWARDS, jnp.float32)[tiles_at(tiles, cells)]


def absorbing_cells(tiles: jax.Array, cells=None) -> jax.Array:
    """(...) bool: whether the tile of each of ``cells`` (None: (S,)) is absorbing."""
    return is_absorbing(tiles_at(tiles, cells))


def transition_matrix(tiles: jax.Array, slip) -> jax.Array:
    """Dense (S, A, S) float32 true transition probabilities (tests, oracles; not for the hot path)."""
    s = tiles.size
    probs = direction_probabilities(tiles, slip)  # (S, A, 5)
    tgt = move_targets(tiles)  # (S, 5)
    onehot = jax.nn.one_hot(tgt, s, dtype=jnp.float32)  # (S, 5, S)
    return jnp.einsum("sad,sdt->sat", probs, onehot)


def finite_horizon_vi(tiles: jax.Array, slip, horizon: int, gamma: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Finite-horizon value iteration on the true grid: (V (S,), Q (S, A)) float32 of the ``horizon``-step
    problem (γ-discounted; entering 'G' or 'X' ends the episode). ``V[s]`` is the optimal expected return of
    ``horizon`` steps from cell ``s``, ``Q`` the value of each first action."""
    probs = direction_probabilities(tiles, slip)  # (S, A, 5)
    tgt = move_targets(tiles)  # (S, 5)
    rew = tile_rewards(tiles)[tgt]  # (S, 5) entry reward of each landing cell
    cont = (~absorbing_cells(tiles))[tgt]  # (S, 5) the episode goes on after landing there
    s, a = probs.shape[:2]

    def backup(_, carry):
        v, _q = carry
        x = rew + gamma * jnp.where(cont, v[tgt], 0.0)  # (S, 5)
        q = jnp.einsum("sad,sd->sa", probs, x)
        return q.max(axis=1), q

    v0 = jnp.zeros((s,), jnp.float32)
    return jax.lax.fori_loop(0, horizon, backup, (v0, jnp.zeros((s, a), jnp.float32)))
