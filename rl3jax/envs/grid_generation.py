"""Random grid generation and the rejection rule (METHOD §3), pure JAX, apart from the environment.

A grid is drawn the way the original code does and redrawn (``lax.while_loop``) until the optimal
``reject_horizon``-step undiscounted return from 'S' lies in [``min_return``, ``max_return``], so
``jax.vmap`` draws thousands of accepted grids on device. Generation, in order (1-based centre c = ceil(N/2)):

1. ``num_obstacle_sets`` segments of ``obstacle_len`` 'O' cells: vertical or horizontal with probability ½, first
   cell uniform, extending towards the centre row (vertical) / column (horizontal), a random direction if it
   starts on it;
2. ``num_water_sets`` segments of ``water_len`` 'W' cells the same way (they may overwrite 'O');
3. 'S' at (c, c);
4. 'G' uniform over cells at Manhattan distance >= ``min_goal_dist`` from the centre (overwrites anything);
5. ``num_dangers`` times: a cell uniform in rows/cols 2..N-1, accepted if it is ' ' and its 4 neighbours are all
   ' ' or 'O'; then 'X' there and '!' on its 4 neighbours (overwriting 'O', as the original code does).
   The original retries until a cell is accepted, which is the same as drawing uniformly among the acceptable
   cells; we draw that way directly (no loop). Should no cell be acceptable (the original would loop forever)
   the grid is rejected and redrawn.
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.envs.grid_geometry import (
    DANGER,
    EMPTY,
    GOAL,
    OBSTACLE,
    START,
    WARNING,
    WATER,
    center_index,
    finite_horizon_vi,
    start_cell,
)


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """How the grids of a family are drawn (METHOD §3). Sizes and lengths in cells.

    Raises ValueError (on construction) for a segment that cannot fit from the centre, a goal distance beyond
    the grid, a slip outside [0, 1] or a non-positive count.
    """

    size: int = 13  # N: the grid is N×N
    num_obstacle_sets: int = 11
    obstacle_len: int = 3
    num_water_sets: int = 5
    water_len: int = 2
    num_dangers: int = 2
    min_goal_dist: int = 8  # Manhattan distance of 'G' from the centre, at least
    slip: float = 0.2  # p_slip of ' ', 'S', '!'
    reject_horizon: int = 100  # steps of the rejection rule's optimal return
    min_return: float = 50.0  # accepted optimal returns: [min_return, max_return]
    max_return: float = 100.0
    max_draws: int = 100_000  # after this many draws the last grid is kept (never seen for the presets)

    def __post_init__(self):
        size = self.size
        if size < 3:
            raise ValueError(f"size must be >= 3, got {size}")
        cen = center_index(size)
        for n in ("num_obstacle_sets", "num_water_sets", "num_dangers", "min_goal_dist"):
            if getattr(self, n) < 0:
                raise ValueError(f"{n} must be >= 0, got {getattr(self, n)}")
        for n in ("obstacle_len", "water_len"):
            # a segment extends towards the centre line, or either way from it: it must fit from the centre
            v = getattr(self, n)
            if not 1 <= v <= min(cen + 1, size - cen):
                raise ValueError(f"{n} must be in [1, {min(cen + 1, size - cen)}] on a {size}x{size} grid, got {v}")
        max_dist = 2 * max(cen, size - 1 - cen)
        if self.min_goal_dist > max_dist:
            raise ValueError(f"min_goal_dist {self.min_goal_dist} exceeds the largest Manhattan distance from the "
                             f"centre of a {size}x{size} grid ({max_dist})")
        if not 0.0 <= self.slip <= 1.0:
            raise ValueError(f"slip must be in [0, 1], got {self.slip}")
        if self.reject_horizon < 1 or self.max_draws < 1:
            raise ValueError("reject_horizon and max_draws must be >= 1")
        for n in ("slip", "min_return", "max_return"):
            object.__setattr__(self, n, float(getattr(self, n)))


#: the published families (METHOD §3)
GRID11 = GridConfig(size=11)
GRID13 = GridConfig(size=13)
#: family -> (base configuration, variant -> the ``GridConfig`` fields the variant changes in it); the variant
#: names are the family's spec's (``rl3jax.envs.catalog.FAMILIES``, tests/envs/test_registry.py checks they agree), those
#: besides 'train' are out of distribution (METHOD §3)
GRID_FAMILIES: dict[str, tuple[GridConfig, dict[str, dict]]] = {
    "grid11": (GRID11, {"train": {}}),
    "grid13": (GRID13, {"train": {}, "dense": {"obstacle_len": 4}, "deterministic": {"slip": 0.0},
                        "watery": {"num_water_sets": 8}, "dangerous": {"num_dangers": 4},
                        "corner": {"min_goal_dist": 12}}),
}


def _cover(rows, cols, n):
    """(S,) whether any of the cells (rows, cols) (any shape, all inside the grid) is each cell."""
    idx = (rows * n + cols).reshape(-1)
    return (idx[:, None] == jnp.arange(n * n)[None, :]).any(axis=0)


def _neighbours(mask, op):
    """``op`` (``operator.and_``: all, ``or_``: any) of the 4 neighbours of each cell (off-grid counts as unset)."""
    pad = jnp.pad(mask, 1)
    return op(op(op(pad[:-2, 1:-1], pad[2:, 1:-1]), pad[1:-1, :-2]), pad[1:-1, 2:])


def _uniform_int(u, n):
    """floor(u * n) for u ~ U[0, 1): uniform on {0, ..., n-1} (clipped against float rounding)."""
    return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), jnp.asarray(n, jnp.int32) - 1)


def _segments(cfg: GridConfig, u: jax.Array, length: int):
    """Straight segments of ``length`` cells from uniforms ``u`` (count, 4): (rows, cols), (count, length).

    Per segment: vertical with probability ½; the first cell uniform (its coordinate along the segment's
    axis, and the fixed other coordinate); it extends towards the centre line, a random way if on it.
    """
    n, cen = cfg.size, center_index(cfg.size)
    vertical = u[:, 0] < 0.5
    start = _uniform_int(u[:, 1], n)  # along the segment's axis
    other = _uniform_int(u[:, 2], n)  # the fixed coordinate
    random_dir = jnp.where(u[:, 3] < 0.5, 1, -1)
    direction = jnp.where(start == cen, random_dir, jnp.where(start > cen, -1, 1))
    along = start[:, None] + direction[:, None] * jnp.arange(length)[None, :]
    rows = jnp.where(vertical[:, None], along, other[:, None])
    cols = jnp.where(vertical[:, None], other[:, None], along)
    return rows.astype(jnp.int32), cols.astype(jnp.int32)


def goal_cells(cfg: GridConfig) -> np.ndarray:
    """(k,) int64 indices of the cells 'G' is drawn from, uniformly (step 4: Manhattan distance from the centre
    >= ``min_goal_dist``), in increasing order."""
    n, cen = cfg.size, center_index(cfg.size)
    rows, cols = np.divmod(np.arange(n * n), n)
    return np.flatnonzero((np.abs(rows - cen) + np.abs(cols - cen)) >= cfg.min_goal_dist)


def tile_frequencies(cfg: GridConfig, key: jax.Array, num: int) -> np.ndarray:
    """(N·N, 7) float64: the fraction of ``num`` accepted grids (``sample_grid`` with the keys
    ``split(key, num)``) with each tile code in each cell: the generator's per-cell tile distribution (after the
    rejection rule), its column ``GOAL`` the goal's. A Monte Carlo estimate (standard error sqrt(p(1-p)/num))."""
    tiles, _, _ = jax.jit(jax.vmap(lambda k: sample_grid(cfg, k)))(jax.random.split(key, num))
    flat = np.asarray(tiles).reshape(num, -1)
    return np.stack([(flat == code).mean(axis=0) for code in range(START + 1)], axis=1)


def draw_layout(cfg: GridConfig, key: jax.Array) -> dict:
    """One grid drawn by the generation steps, before the rejection rule (a dict of arrays).

    Keys: ``tiles`` (N, N) int8; ``obstacle_rows/cols`` (sets, len) and ``water_rows/cols`` in drawing
    order (first cell first); ``goal`` (2,); ``dangers`` (num_dangers, 2); ``dangers_ok`` (num_dangers,)
    whether an acceptable cell existed for each danger.

    All randomness comes from one ``uniform`` call (each threefry call costs seconds of compile time).
    """
    n = cfg.size
    cen = center_index(n)
    n_o, n_w, n_d = cfg.num_obstacle_sets, cfg.num_water_sets, cfg.num_dangers
    u = jax.random.uniform(key, (4 * (n_o + n_w) + 1 + n_d,))
    u_obs, u_wat = u[:4 * n_o].reshape(n_o, 4), u[4 * n_o:4 * (n_o + n_w)].reshape(n_w, 4)
    u_goal, u_dan = u[4 * (n_o + n_w)], u[4 * (n_o + n_w) + 1:]
    # painted with masks rather than scatters (much faster to compile under vmap on CPU)
    cells = jnp.arange(n * n)
    o_rows, o_cols = _segments(cfg, u_obs, cfg.obstacle_len)
    w_rows, w_cols = _segments(cfg, u_wat, cfg.water_len)
    tiles = jnp.full((n * n,), EMPTY, jnp.int32)
    tiles = jnp.where(_cover(o_rows, o_cols, n), OBSTACLE, tiles)
    tiles = jnp.where(_cover(w_rows, w_cols, n), WATER, tiles)
    tiles = jnp.where(cells == cen * n + cen, START, tiles)
    allowed = goal_cells(cfg)
    goal = jnp.asarray(allowed, jnp.int32)[_uniform_int(u_goal, len(allowed))]
    goal_rc = jnp.stack(jnp.divmod(goal, n)).astype(jnp.int32)
    tiles = jnp.where(cells == goal, GOAL, tiles).reshape(n, n)

    interior = np.zeros((n, n), bool)
    interior[1:-1, 1:-1] = True
    interior = jnp.asarray(interior)
    lower_tri = jnp.asarray(np.tril(np.ones((n * n, n * n), np.float32)))  # cumulative counts by matmul
    dangers, oks = [], []
    for i in range(n_d):
        # (written with masks and shifts: dynamic scatters and cumsum are slow to compile on CPU)
        free = (tiles == EMPTY) | (tiles == OBSTACLE)
        nbrs_free = _neighbours(free, operator.and_)
        ok_mask = (interior & (tiles == EMPTY) & nbrs_free).reshape(-1)
        count = ok_mask.sum()
        ok = count > 0
        # the k-th acceptable cell, k uniform in [0, count): uniform over the acceptable cells
        k = _uniform_int(u_dan[i], jnp.maximum(count, 1))
        # number of acceptable cells up to each cell (exact: small integers, full-precision dot)
        rank = jnp.dot(lower_tri, ok_mask.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
        cell = jnp.argmax(rank > k.astype(jnp.float32))
        x_mask = (cells == cell).reshape(n, n) & ok
        tiles = jnp.where(x_mask, DANGER, jnp.where(_neighbours(x_mask, operator.or_), WARNING, tiles))
        dangers.append(jnp.stack(jnp.divmod(cell, n)).astype(jnp.int32))
        oks.append(ok)
    dangers = jnp.stack(dangers) if dangers else jnp.zeros((0, 2), jnp.int32)
    oks = jnp.stack(oks) if oks else jnp.zeros((0,), bool)
    return {"tiles": tiles.astype(jnp.int8), "obstacle_rows": o_rows, "obstacle_cols": o_cols,
            "water_rows": w_rows, "water_cols": w_cols, "goal": goal_rc, "dangers": dangers,
            "dangers_ok": oks}


def optimal_return(cfg: GridConfig, tiles: jax.Array) -> jax.Array:
    """Optimal ``reject_horizon``-step undiscounted return from 'S' (float32; the rejection rule's statistic)."""
    v, _ = finite_horizon_vi(tiles, cfg.slip, cfg.reject_horizon, 1.0)
    return v[start_cell(cfg.size)]


def accepts(cfg: GridConfig, dangers_ok: jax.Array, opt_return: jax.Array) -> jax.Array:
    """The rejection rule (bool): every danger was placed and the optimal return is in range."""
    return dangers_ok.all() & (opt_return >= cfg.min_return) & (opt_return <= cfg.max_return)


def sample_grid(cfg: GridConfig, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One accepted grid: (tiles (N, N) int8, its optimal return float32, the number of grids drawn int32).

    Redrawn until ``accepts`` holds; after ``max_draws`` draws the last one is kept (recognisable by its
    optimal return outside [min_return, max_return]; never seen for the published configurations).
    """

    def cond(carry):
        _, _, _, accepted, draws = carry
        return ~accepted & (draws < cfg.max_draws)

    def body(carry):
        k, _, _, _, draws = carry
        k, sub = jax.random.split(k)
        layout = draw_layout(cfg, sub)
        ret = optimal_return(cfg, layout["tiles"])
        return k, layout["tiles"], ret, accepts(cfg, layout["dangers_ok"], ret), draws + 1

    init = (key, jnp.zeros((cfg.size, cfg.size), jnp.int8), jnp.float32(jnp.nan), jnp.asarray(False),
            jnp.int32(0))
    _, tiles, ret, _, draws = jax.lax.while_loop(cond, body, init)
    return tiles, ret, draws
