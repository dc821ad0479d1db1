"""Random gridworlds (METHOD §3): generation, rejection rule and slippery dynamics, all pure JAX.

A task is one N×N tile grid (``GridTask``). ``GridWorld.sample_task(key)`` draws a grid the way the original
code does and redraws (``lax.while_loop``) until the optimal 100-step undiscounted return from 'S' lies in
[50, 100], so ``jax.vmap(env.sample_task)(keys)`` draws thousands of accepted grids on device.

Generation, in order (1-based centre c = ceil(N/2)):

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

Dynamics: actions NOOP, N, E, S, W. NOOP stays. A move goes to the intended cell with probability 1 − p_slip
and to each perpendicular neighbour with p_slip / 2 (never backwards); mass aimed at an obstacle or off the
grid stays put. p_slip by the current tile: ' ', 'S', '!' → ``slip``; 'W' → 1; 'G', 'X', 'O' → 0. The reward
is the entry reward of the tile landed on (staying included): ' '/'S' −1, 'W' −2, '!' −10, 'X' −100, 'G' +100.
'G' and 'X' are absorbing: ``step_env`` returns ``terminated=True`` on landing there (the meta-episode wrapper
then resets to 'S'). There is no task horizon: ``max_steps_in_episode`` (TH) = the meta horizon H.

Cells are indexed ``row * N + col`` (0-based); the observation is ((row+1)/N, (col+1)/N).
"""

from __future__ import annotations

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import RL3Defaults, TaskEnv

# ------------------------------------------------------------------------------------------------ tiles
EMPTY, OBSTACLE, WATER, DANGER, WARNING, GOAL, START = range(7)
TILE_CHARS = " OWX!GS"
#: entry reward of each tile code ('O' is never entered)
TILE_REWARDS = (-1.0, 0.0, -2.0, -100.0, -10.0, 100.0, -1.0)
ABSORBING_TILES = (GOAL, DANGER)

# Actions and move directions share indices: 0 NOOP/stay, 1 N, 2 E, 3 S, 4 W.
NOOP, NORTH, EAST, SOUTH, WEST = range(5)
DIRECTION_OFFSETS = np.array([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)  # (d_row, d_col)
_PERPENDICULAR = {NORTH: (EAST, WEST), SOUTH: (EAST, WEST), EAST: (NORTH, SOUTH), WEST: (NORTH, SOUTH)}


def _direction_tables() -> tuple[np.ndarray, np.ndarray]:
    """(A, 5) direction probabilities without slip, and their change per unit of slip."""
    base = np.eye(5, dtype=np.float32)
    per_slip = np.zeros((5, 5), np.float32)
    for a, (p1, p2) in _PERPENDICULAR.items():
        per_slip[a, a] = -1.0
        per_slip[a, p1] = 0.5
        per_slip[a, p2] = 0.5
    return base, per_slip


_DIR_BASE, _DIR_PER_SLIP = _direction_tables()

# Variants and presets: (N, obstacle sets, obstacle len, water sets, water len, dangers, min goal dist, slip)
GRID11 = (11, 11, 3, 5, 2, 2, 8, 0.2)
GRID13 = (13, 11, 3, 5, 2, 2, 8, 0.2)
_CONFIG_FIELDS = ("size", "num_obstacle_sets", "obstacle_len", "num_water_sets", "water_len", "num_dangers",
                  "min_goal_dist", "slip")
#: variant -> overrides of the 13x13 configuration (METHOD §3, out of distribution)
GRID13_VARIANTS = {
    "train": {},
    "dense": {"obstacle_len": 4},
    "deterministic": {"slip": 0.0},
    "watery": {"num_water_sets": 8},
    "dangerous": {"num_dangers": 4},
    "corner": {"min_goal_dist": 12},
}
GRID11_VARIANTS = {"train": {}}
DEFAULT_HORIZON = {"grid11": 250, "grid13": 350}


@struct.dataclass
class GridState:
    time: jax.Array  # steps taken in the task episode
    pos: jax.Array  # int32 cell index row * N + col


@struct.dataclass
class GridTask:
    tiles: jax.Array  # (N, N) int8 tile codes
    slip: jax.Array  # () float32 default slip probability of ' ', 'S', '!'
    opt_return: jax.Array  # () float32 optimal ``reject_horizon``-step undiscounted return from 'S'
    size: int = struct.field(pytree_node=False, default=13)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=350)


# ----------------------------------------------------------------------------------- pure grid functions
def center_index(size: int) -> int:
    """0-based row/col of the centre (1-based c = ceil(N/2))."""
    return math.ceil(size / 2) - 1


def start_cell(size: int) -> int:
    c = center_index(size)
    return c * size + c


def neighbour_table(size: int) -> np.ndarray:
    """(S, 5) cell reached in each direction (stay, N, E, S, W); off-grid directions map to the cell itself."""
    rows, cols = np.divmod(np.arange(size * size), size)
    out = np.empty((size * size, 5), np.int32)
    for d, (dr, dc) in enumerate(DIRECTION_OFFSETS):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        out[:, d] = np.where(inside, r * size + c, rows * size + cols)
    return out


def move_targets(tiles: jax.Array) -> jax.Array:
    """(S, 5) landing cell of each direction from each cell: off-grid or into an obstacle stays put."""
    size = tiles.shape[-1]
    nbr = jnp.asarray(neighbour_table(size))
    flat = tiles.reshape(-1).astype(jnp.int32)
    blocked = flat[nbr] == OBSTACLE
    return jnp.where(blocked, jnp.arange(size * size)[:, None], nbr)


def slip_probabilities(tiles: jax.Array, slip) -> jax.Array:
    """(S,) p_slip of the current tile: ' ', 'S', '!' → slip; 'W' → 1; 'G', 'X', 'O' → 0."""
    flat = tiles.reshape(-1).astype(jnp.int32)
    slip = jnp.asarray(slip, jnp.float32)
    table = jnp.stack([slip, 0.0, 1.0, 0.0, slip, 0.0, slip]).astype(jnp.float32)
    return table[flat]


def direction_probabilities(tiles: jax.Array, slip) -> jax.Array:
    """(S, A, 5) probability of each move direction (stay, N, E, S, W) per cell and action."""
    p = slip_probabilities(tiles, slip)
    return jnp.asarray(_DIR_BASE)[None] + p[:, None, None] * jnp.asarray(_DIR_PER_SLIP)[None]


def tile_rewards(tiles: jax.Array) -> jax.Array:
    """(S,) entry reward of each cell."""
    return jnp.asarray(TILE_REWARDS, jnp.float32)[tiles.reshape(-1).astype(jnp.int32)]


def absorbing_cells(tiles: jax.Array) -> jax.Array:
    flat = tiles.reshape(-1)
    return (flat == GOAL) | (flat == DANGER)


def transition_matrix(task: GridTask) -> jax.Array:
    """Dense (S, A, S) true transition probabilities of one task (tests, oracles; not for the hot path)."""
    tiles = task.tiles
    s = tiles.size
    probs = direction_probabilities(tiles, task.slip)  # (S, A, 5)
    tgt = move_targets(tiles)  # (S, 5)
    onehot = jax.nn.one_hot(tgt, s, dtype=jnp.float32)  # (S, 5, S)
    return jnp.einsum("sad,sdt->sat", probs, onehot)


def _finite_horizon_vi(tiles, slip, horizon: int, gamma: float = 1.0):
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


def optimal_values(task: GridTask, horizon: int, gamma: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Finite-horizon value iteration on the true grid: (V, Q) of the ``horizon``-step problem.

    ``V[s]`` (shape (S,)) is the optimal expected (γ-discounted, default undiscounted) return of ``horizon``
    steps from cell ``s``; ``Q`` (S, A) the value of each first action. Entering 'G' or 'X' ends the episode.
    An oracle that knows the task acts greedily on the Q of its remaining horizon.
    """
    v, q = _finite_horizon_vi(task.tiles, task.slip, horizon, gamma)
    return v, q


def render_ascii(task_or_tiles) -> str:
    """The grid as text, one row per line, bordered (tile characters as in METHOD §3)."""
    tiles = np.asarray(getattr(task_or_tiles, "tiles", task_or_tiles))
    if tiles.ndim != 2:
        raise ValueError(f"render_ascii takes one task (tiles of shape (N, N)), got shape {tiles.shape}")
    n = tiles.shape[1]
    lines = ["+" + "-" * n + "+"]
    lines += ["|" + "".join(TILE_CHARS[int(t)] for t in row) + "|" for row in tiles]
    lines.append("+" + "-" * n + "+")
    return "\n".join(lines)


def _cover(rows, cols, n):
    """(S,) whether any of the cells (rows, cols) (any shape, all inside the grid) is each cell."""
    idx = (rows * n + cols).reshape(-1)
    return (idx[:, None] == jnp.arange(n * n)[None, :]).any(axis=0)


def _shift_and(mask):
    """Whether all 4 neighbours of each cell are set (off-grid counts as unset)."""
    pad = jnp.pad(mask, 1)
    return pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]


def _shift_or(mask):
    """Whether any of the 4 neighbours of each cell is set."""
    pad = jnp.pad(mask, 1)
    return pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]


def _uniform_int(u, n):
    """floor(u * n) for u ~ U[0, 1): uniform on {0, ..., n-1} (clipped against float rounding)."""
    return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), jnp.asarray(n, jnp.int32) - 1)


# --------------------------------------------------------------------------------------------- family
class GridWorld(TaskEnv):
    """The random gridworld family of METHOD §3 (see the module docstring)."""

    rl3_defaults = RL3Defaults(q_denom=10.0, alpha_laplace=0.01, epsilon=0.1, max_sweeps=None,
                               warm_start=True, known_states="visited")

    def __init__(self, size: int = 13, num_obstacle_sets: int = 11, obstacle_len: int = 3,
                 num_water_sets: int = 5, water_len: int = 2, num_dangers: int = 2, min_goal_dist: int = 8,
                 slip: float = 0.2, horizon: int = 350, name: str | None = None, reject_horizon: int = 100,
                 min_return: float = 50.0, max_return: float = 100.0, max_draws: int = 100_000):
        if size < 3:
            raise ValueError(f"size must be >= 3, got {size}")
        cen = center_index(size)
        for n, v in (("num_obstacle_sets", num_obstacle_sets), ("num_water_sets", num_water_sets),
                     ("num_dangers", num_dangers), ("min_goal_dist", min_goal_dist)):
            if v < 0:
                raise ValueError(f"{n} must be >= 0, got {v}")
        for n, v in (("obstacle_len", obstacle_len), ("water_len", water_len)):
            # a segment extends towards the centre line, or either way from it: it must fit from the centre
            if not 1 <= v <= min(cen + 1, size - cen):
                raise ValueError(f"{n} must be in [1, {min(cen + 1, size - cen)}] on a {size}x{size} grid, got {v}")
        max_dist = 2 * max(cen, size - 1 - cen)
        if min_goal_dist > max_dist:
            raise ValueError(f"min_goal_dist {min_goal_dist} exceeds the largest Manhattan distance from the "
                             f"centre of a {size}x{size} grid ({max_dist})")
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be in [0, 1], got {slip}")
        if horizon < 1 or reject_horizon < 1 or max_draws < 1:
            raise ValueError("horizon, reject_horizon and max_draws must be >= 1")
        self.size = size
        self.num_obstacle_sets = num_obstacle_sets
        self.obstacle_len = obstacle_len
        self.num_water_sets = num_water_sets
        self.water_len = water_len
        self.num_dangers = num_dangers
        self.min_goal_dist = min_goal_dist
        self.slip = float(slip)
        self.horizon = horizon
        self.reject_horizon = reject_horizon
        self.min_return = float(min_return)
        self.max_return = float(max_return)
        self.max_draws = max_draws
        self.num_states = size * size
        self._name = name or f"grid{size}"

    @classmethod
    def preset(cls, family: str, variant: str = "train", horizon: int | None = None) -> GridWorld:
        """'grid11' / 'grid13' in one of its variants, with the paper's meta horizon unless given."""
        table = {"grid11": (GRID11, GRID11_VARIANTS), "grid13": (GRID13, GRID13_VARIANTS)}
        if family not in table:
            raise ValueError(f"unknown grid family {family!r}; valid: {', '.join(table)}")
        base, variants = table[family]
        if variant not in variants:
            raise ValueError(f"unknown variant {variant!r} for env {family!r}; valid variants: {', '.join(variants)}")
        config = dict(zip(_CONFIG_FIELDS, base))
        config.update(variants[variant])
        name = family + ("" if variant == "train" else f"-{variant}")
        return cls(**config, horizon=horizon or DEFAULT_HORIZON[family], name=name)

    # ----------------------------------------------------------------------------------- gymnax API
    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return 5

    def _task(self, tiles, opt_return) -> GridTask:
        return GridTask(tiles=tiles.astype(jnp.int8), slip=jnp.float32(self.slip),
                        opt_return=jnp.asarray(opt_return, jnp.float32), size=self.size,
                        max_steps_in_episode=self.horizon)

    @property
    def default_params(self) -> GridTask:
        """An open grid with the goal in the bottom-right corner (shapes only; train on sampled tasks)."""
        tiles = jnp.zeros((self.size, self.size), jnp.int8)
        cen = center_index(self.size)
        tiles = tiles.at[cen, cen].set(START).at[-1, -1].set(GOAL)
        return self._task(tiles, jnp.nan)

    def reset_env(self, key, params):
        state = GridState(time=jnp.int32(0), pos=jnp.int32(start_cell(self.size)))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        tiles = params.tiles
        flat = tiles.reshape(-1).astype(jnp.int32)
        pos = state.pos
        p_slip = slip_probabilities(tiles, params.slip)[pos]
        action = jnp.asarray(action, jnp.int32)
        probs = jnp.asarray(_DIR_BASE)[action] + p_slip * jnp.asarray(_DIR_PER_SLIP)[action]
        d = jax.random.choice(key, 5, p=probs)
        nbr = jnp.asarray(neighbour_table(self.size))[pos, d]
        nxt = jnp.where(flat[nbr] == OBSTACLE, pos, nbr).astype(jnp.int32)
        tile = flat[nxt]
        reward = jnp.asarray(TILE_REWARDS, jnp.float32)[tile]
        terminated = (tile == GOAL) | (tile == DANGER)
        new = GridState(time=state.time + 1, pos=nxt)
        return self.get_obs(new, params), new, reward, terminated, {}

    def get_obs(self, state, params=None, key=None):
        row, col = jnp.divmod(state.pos, self.size)
        return (jnp.stack([row, col]).astype(jnp.float32) + 1.0) / self.size

    def state_index(self, state, params):
        return state.pos

    def is_terminated(self, state, params):
        tile = params.tiles.reshape(-1)[state.pos]
        return (tile == GOAL) | (tile == DANGER)

    def action_space(self, params=None):
        return spaces.Discrete(5)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (2,))

    def state_space(self, params=None):
        return spaces.Discrete(self.num_states)

    # ------------------------------------------------------------------------------------ generation
    def _segments(self, u: jax.Array, length: int):
        """Straight segments of ``length`` cells from uniforms ``u`` (count, 4): (rows, cols), (count, length).

        Per segment: vertical with probability ½; the first cell uniform (its coordinate along the segment's
        axis, and the fixed other coordinate); it extends towards the centre line, a random way if on it.
        """
        n, cen = self.size, center_index(self.size)
        vertical = u[:, 0] < 0.5
        start = _uniform_int(u[:, 1], n)  # along the segment's axis
        other = _uniform_int(u[:, 2], n)  # the fixed coordinate
        random_dir = jnp.where(u[:, 3] < 0.5, 1, -1)
        direction = jnp.where(start == cen, random_dir, jnp.where(start > cen, -1, 1))
        along = start[:, None] + direction[:, None] * jnp.arange(length)[None, :]
        rows = jnp.where(vertical[:, None], along, other[:, None])
        cols = jnp.where(vertical[:, None], other[:, None], along)
        return rows.astype(jnp.int32), cols.astype(jnp.int32)

    def draw_layout(self, key: jax.Array) -> dict:
        """One grid drawn by the generation steps, before the rejection rule (a dict of arrays).

        Keys: ``tiles`` (N, N) int8; ``obstacle_rows/cols`` (sets, len) and ``water_rows/cols`` in drawing
        order (first cell first); ``goal`` (2,); ``dangers`` (num_dangers, 2); ``dangers_ok`` (num_dangers,)
        whether an acceptable cell existed for each danger.

        All randomness comes from one ``uniform`` call (each threefry call costs seconds of compile time).
        """
        n = self.size
        cen = center_index(n)
        n_o, n_w, n_d = self.num_obstacle_sets, self.num_water_sets, self.num_dangers
        u = jax.random.uniform(key, (4 * (n_o + n_w) + 1 + n_d,))
        u_obs, u_wat = u[:4 * n_o].reshape(n_o, 4), u[4 * n_o:4 * (n_o + n_w)].reshape(n_w, 4)
        u_goal, u_dan = u[4 * (n_o + n_w)], u[4 * (n_o + n_w) + 1:]
        # painted with masks rather than scatters (much faster to compile under vmap on CPU)
        cells = jnp.arange(n * n)
        o_rows, o_cols = self._segments(u_obs, self.obstacle_len)
        w_rows, w_cols = self._segments(u_wat, self.water_len)
        tiles = jnp.full((n * n,), EMPTY, jnp.int32)
        tiles = jnp.where(_cover(o_rows, o_cols, n), OBSTACLE, tiles)
        tiles = jnp.where(_cover(w_rows, w_cols, n), WATER, tiles)
        tiles = jnp.where(cells == cen * n + cen, START, tiles)
        rows, cols = np.divmod(np.arange(n * n), n)
        allowed = np.flatnonzero((np.abs(rows - cen) + np.abs(cols - cen)) >= self.min_goal_dist)
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
            nbrs_free = _shift_and(free)
            ok_mask = (interior & (tiles == EMPTY) & nbrs_free).reshape(-1)
            count = ok_mask.sum()
            ok = count > 0
            # the k-th acceptable cell, k uniform in [0, count): uniform over the acceptable cells
            k = _uniform_int(u_dan[i], jnp.maximum(count, 1))
            # number of acceptable cells up to each cell (exact: small integers, full-precision dot)
            rank = jnp.dot(lower_tri, ok_mask.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
            cell = jnp.argmax(rank > k.astype(jnp.float32))
            x_mask = (cells == cell).reshape(n, n) & ok
            tiles = jnp.where(x_mask, DANGER, jnp.where(_shift_or(x_mask), WARNING, tiles))
            dangers.append(jnp.stack(jnp.divmod(cell, n)).astype(jnp.int32))
            oks.append(ok)
        dangers = jnp.stack(dangers) if dangers else jnp.zeros((0, 2), jnp.int32)
        oks = jnp.stack(oks) if oks else jnp.zeros((0,), bool)
        return {"tiles": tiles.astype(jnp.int8), "obstacle_rows": o_rows, "obstacle_cols": o_cols,
                "water_rows": w_rows, "water_cols": w_cols, "goal": goal_rc, "dangers": dangers,
                "dangers_ok": oks}

    def optimal_return(self, tiles: jax.Array) -> jax.Array:
        """Optimal ``reject_horizon``-step undiscounted return from 'S' (the rejection rule's statistic)."""
        v, _ = _finite_horizon_vi(tiles, self.slip, self.reject_horizon, 1.0)
        return v[start_cell(self.size)]

    def accepts(self, dangers_ok, opt_return) -> jax.Array:
        return dangers_ok.all() & (opt_return >= self.min_return) & (opt_return <= self.max_return)

    def sample_task_with_draws(self, key: jax.Array) -> tuple[GridTask, jax.Array]:
        """``sample_task`` plus the number of grids drawn (rejection statistics)."""

        def draw(k):
            layout = self.draw_layout(k)
            ret = self.optimal_return(layout["tiles"])
            return layout["tiles"], ret, self.accepts(layout["dangers_ok"], ret)

        def cond(carry):
            _, _, _, accepted, draws = carry
            return ~accepted & (draws < self.max_draws)

        def body(carry):
            k, _, _, _, draws = carry
            k, sub = jax.random.split(k)
            tiles, ret, accepted = draw(sub)
            return k, tiles, ret, accepted, draws + 1

        init = (key, jnp.zeros((self.size, self.size), jnp.int8), jnp.float32(jnp.nan), jnp.asarray(False),
                jnp.int32(0))
        _, tiles, ret, _, draws = jax.lax.while_loop(cond, body, init)
        return self._task(tiles, ret), draws

    def sample_task(self, key: jax.Array) -> GridTask:
        """One accepted grid (redrawn until the rule holds; after ``max_draws`` draws the last one is kept,
        recognisable by ``opt_return`` outside [min_return, max_return] — never seen for the paper's
        configurations)."""
        return self.sample_task_with_draws(key)[0]

    def with_horizon(self, horizon: int) -> GridWorld:
        """The same family with meta horizon H = ``horizon`` (and so TH = H: grids have no task horizon)."""
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        env = copy.copy(self)
        env.horizon = horizon
        return env

    def true_model(self, params: GridTask):
        """(T (S,A,S), expected entry reward (S,A), absorbing (S,), start cell) of one task, for the oracle."""
        t = transition_matrix(params)
        r = t @ tile_rewards(params.tiles)
        return t, r, absorbing_cells(params.tiles), jnp.int32(start_cell(self.size))

    # ------------------------------------------------------------------------------------------ RL³
    def estimator(self, *, horizon: int | None = None, abstraction: str | None = None, **overrides):
        """A ``GridQEstimator`` with this family's settings (METHOD §2; at most TH = H sweeps)."""
        from rl3jax.grid_estimator import GridQEstimator

        d = self.rl3_defaults
        kwargs = dict(num_states=self.num_states, num_actions=5, grid_side=self.size,
                      alpha_laplace=d.alpha_laplace, epsilon=d.epsilon, max_sweeps=horizon or self.horizon,
                      warm_start=d.warm_start, q_denom=d.q_denom, known_states=d.known_states,
                      abstraction=abstraction)
        kwargs.update(overrides)
        return GridQEstimator(**kwargs)

    def make_estimator(self, coarse: bool = False, **kw):
        """The trainer's hook: ``QEstimator``-style keyword arguments -> the grid's estimator.

        The sparse ``GridQEstimator`` (RL³-coarse with ``coarse=True``). Standard errors exist only in the
        dense ``QEstimator``, which is exact on grids too (only slower), so ``std_errors=True`` gets that one.
        """
        from rl3jax.estimator import QEstimator
        from rl3jax.grid_estimator import GridQEstimator

        if kw.get("std_errors"):
            if coarse:
                raise ValueError("RL³-coarse has no standard errors (the dense QEstimator has them, without "
                                 "the abstraction)")
            return QEstimator(**kw)
        return GridQEstimator(grid_side=self.size, abstraction="coarse" if coarse else None, **kw)


def make_grid(family: str, variant: str = "train", horizon: int | None = None) -> GridWorld:
    return GridWorld.preset(family, variant, horizon)


def _register() -> None:
    from rl3jax.envs.registry import register

    register("grid11", lambda variant: make_grid("grid11", variant), tuple(GRID11_VARIANTS))
    register("grid13", lambda variant: make_grid("grid13", variant), tuple(GRID13_VARIANTS))


_register()
