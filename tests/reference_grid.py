"""Loop-based NumPy reference for the gridworlds and the grid Q-estimator, written from METHOD §2.1/§2.2/§2.5/§3.

Independent of rl3jax: grids are lists of strings (tile characters), cells (row, col) 0-based, actions
0 NOOP, 1 N, 2 E, 3 S, 4 W. Only the tile characters and the action order are shared conventions.
"""

from __future__ import annotations

import math

import numpy as np

REWARD = {" ": -1.0, "S": -1.0, "W": -2.0, "!": -10.0, "X": -100.0, "G": 100.0}
ABSORBING = ("G", "X")
MOVES = {1: (-1, 0), 2: (0, 1), 3: (1, 0), 4: (0, -1)}
PERPENDICULAR = {1: (2, 4), 3: (2, 4), 2: (1, 3), 4: (1, 3)}


def centre(n: int) -> int:
    """0-based centre row/col: 1-based c = ceil(N/2)."""
    return math.ceil(n / 2) - 1


def slip_of(tile: str, slip: float) -> float:
    if tile in (" ", "S", "!"):
        return slip
    if tile == "W":
        return 1.0
    return 0.0  # 'G', 'X', 'O'


def _land(grid, r, c, move):
    """Cell reached by pushing from (r, c) in direction ``move``: stays put off-grid or into 'O'."""
    n = len(grid)
    dr, dc = MOVES[move]
    r2, c2 = r + dr, c + dc
    if not (0 <= r2 < n and 0 <= c2 < n) or grid[r2][c2] == "O":
        return r, c
    return r2, c2


def transition(grid, r, c, a, slip):
    """{(r', c'): probability} of one step from (r, c) with action a (METHOD §3)."""
    out: dict[tuple[int, int], float] = {}
    if a == 0:
        return {(r, c): 1.0}
    p = slip_of(grid[r][c], slip)
    outcomes = [(a, 1.0 - p)] + [(m, p / 2.0) for m in PERPENDICULAR[a]]
    for move, prob in outcomes:
        if prob == 0.0:
            continue
        cell = _land(grid, r, c, move)
        out[cell] = out.get(cell, 0.0) + prob
    return out


def transition_matrix(grid, slip) -> np.ndarray:
    n = len(grid)
    t = np.zeros((n * n, 5, n * n))
    for r in range(n):
        for c in range(n):
            for a in range(5):
                for (r2, c2), p in transition(grid, r, c, a, slip).items():
                    t[r * n + c, a, r2 * n + c2] += p
    return t


def optimal_return(grid, slip, horizon: int = 100) -> float:
    """Optimal expected undiscounted ``horizon``-step return from 'S' (finite-horizon value iteration)."""
    n = len(grid)
    t = transition_matrix(grid, slip)
    flat = [grid[i // n][i % n] for i in range(n * n)]
    rew = np.array([REWARD.get(ch, 0.0) for ch in flat])
    cont = np.array([ch not in ABSORBING for ch in flat], float)
    v = np.zeros(n * n)
    for _ in range(horizon):
        q = np.einsum("sat,t->sa", t, rew + cont * v)
        v = q.max(axis=1)
    c = centre(n)
    return float(v[c * n + c])


# ------------------------------------------------------------------------------------------- generation
def check_segment(rows, cols, length: int, n: int) -> list[str]:
    """A segment in drawing order: straight, contiguous, inside, extending towards the centre line."""
    errs = []
    rows, cols = [int(x) for x in rows], [int(x) for x in cols]
    if len(rows) != length:
        return [f"segment of length {len(rows)} != {length}"]
    if not all(0 <= x < n for x in rows + cols):
        errs.append(f"segment leaves the grid: {list(zip(rows, cols))}")
    cen = centre(n)
    if length == 1:
        return errs
    if len(set(cols)) == 1:  # vertical
        along = rows
    elif len(set(rows)) == 1:
        along = cols
    else:
        return errs + [f"segment is not straight: {list(zip(rows, cols))}"]
    step = along[1] - along[0]
    if step not in (-1, 1) or any(along[i + 1] - along[i] != step for i in range(length - 1)):
        errs.append(f"segment is not contiguous: {along}")
    first = along[0]
    if first < cen and step != 1 or first > cen and step != -1:
        errs.append(f"segment starting at {first} does not extend towards the centre {cen}: step {step}")
    return errs


def paint(layout: dict, n: int) -> tuple[list[str], list[str]]:
    """Replays generation from a drawn layout (segments, goal, dangers); returns (grid rows, errors)."""
    g = [[" "] * n for _ in range(n)]
    errs = []
    for kind, ch in (("obstacle", "O"), ("water", "W")):
        for rows, cols in zip(layout[f"{kind}_rows"], layout[f"{kind}_cols"]):
            for r, c in zip(rows, cols):
                g[int(r)][int(c)] = ch
    cen = centre(n)
    g[cen][cen] = "S"
    gr, gc = (int(x) for x in layout["goal"])
    g[gr][gc] = "G"
    for (r, c), ok in zip(layout["dangers"], layout["dangers_ok"]):
        r, c = int(r), int(c)
        if not ok:
            continue
        if not (1 <= r <= n - 2 and 1 <= c <= n - 2):
            errs.append(f"danger at {(r, c)} on the border")
            continue
        nbrs = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        if g[r][c] != " " or any(g[x][y] not in (" ", "O") for x, y in nbrs):
            errs.append(f"danger at {(r, c)} was not acceptable")
        g[r][c] = "X"
        for x, y in nbrs:
            g[x][y] = "!"
    return ["".join(row) for row in g], errs


def check_grid(grid, cfg: dict, check_return: bool = True) -> list[str]:
    """Constraints every accepted grid satisfies (cfg: the family's generation parameters)."""
    n = cfg["size"]
    errs = []
    if len(grid) != n or any(len(row) != n for row in grid):
        return ["wrong shape"]
    if any(ch not in " OWX!GS" for row in grid for ch in row):
        errs.append("unknown tile")
    cen = centre(n)
    if grid[cen][cen] != "S":
        errs.append("no 'S' at the centre")
    cells = {ch: [(r, c) for r in range(n) for c in range(n) if grid[r][c] == ch] for ch in " OWX!GS"}
    if len(cells["S"]) != 1:
        errs.append(f"{len(cells['S'])} 'S' tiles")
    if len(cells["G"]) != 1:
        errs.append(f"{len(cells['G'])} 'G' tiles")
    else:
        gr, gc = cells["G"][0]
        if abs(gr - cen) + abs(gc - cen) < cfg["min_goal_dist"]:
            errs.append(f"goal at Manhattan distance {abs(gr - cen) + abs(gc - cen)} < {cfg['min_goal_dist']}")
    if len(cells["X"]) != cfg["num_dangers"]:
        errs.append(f"{len(cells['X'])} dangers != {cfg['num_dangers']}")
    for r, c in cells["X"]:
        if not (1 <= r <= n - 2 and 1 <= c <= n - 2):
            errs.append(f"danger {(r, c)} on the border")
            continue
        if any(grid[x][y] != "!" for x, y in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))):
            errs.append(f"danger {(r, c)} without '!' on all 4 neighbours")
    xs = set(cells["X"])
    for r, c in cells["!"]:
        if not any(nb in xs for nb in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))):
            errs.append(f"warning {(r, c)} next to no danger")
    if len(cells["O"]) > cfg["num_obstacle_sets"] * cfg["obstacle_len"]:
        errs.append("too many obstacles")
    if len(cells["W"]) > cfg["num_water_sets"] * cfg["water_len"]:
        errs.append("too much water")
    if check_return:
        ret = optimal_return(grid, cfg["slip"], 100)
        if not 50.0 - 1e-3 <= ret <= 100.0 + 1e-3:
            errs.append(f"optimal 100-step return {ret} outside [50, 100]")
    return errs


# ------------------------------------------------------------------------------- learned model and VI
class RefEstimator:
    """The learned tabular model of METHOD §2.1 over discovered states, with warm-started VI (§2.2) and,
    optionally, the RL³-coarse abstraction (§2.5). States are concrete cells ``row * n + col``."""

    def __init__(self, n: int, start: int, num_actions=5, gamma=0.95, alpha=0.01, epsilon=0.1,
                 max_sweeps=350, warm_start=True, coarse_radius: float | None = None, q_denom=10.0):
        self.n, self.na, self.gamma, self.alpha, self.eps = n, num_actions, gamma, alpha, epsilon
        self.max_sweeps, self.warm_start, self.radius, self.q_denom = max_sweeps, warm_start, coarse_radius, q_denom
        self.seen: list[int] = []  # concrete cells in discovery order
        self.cell_id: dict[int, int] = {}  # concrete cell -> model state id (creation order)
        self.members: dict[int, list[int]] = {}
        self.n_sa: dict[tuple, int] = {}
        self.n_sas: dict[tuple, int] = {}
        self.r_mean: dict[tuple, float] = {}
        self.absorbing: set[int] = set()
        self.counts = np.zeros((n * n, num_actions))  # per concrete cell
        self.q = np.zeros((0, num_actions))  # over model ids
        self.shown = np.zeros((n * n, num_actions))
        self._discover(start)

    def _obs(self, cell):
        return divmod(cell, self.n)

    def _discover(self, cell) -> bool:
        """Adds a new concrete cell; True if a new model state was created."""
        best, best_d = None, math.inf
        if self.radius:
            r, c = self._obs(cell)
            for old in self.seen:  # discovery order: the first of equally near cells wins
                if len(self.members[self.cell_id[old]]) >= 2:
                    continue
                r2, c2 = self._obs(old)
                dist = math.hypot(r - r2, c - c2) / self.n
                if dist < self.radius and dist < best_d:
                    best, best_d = old, dist
        self.seen.append(cell)
        if best is None:
            z = len(self.members)
            self.members[z] = [cell]
            self.cell_id[cell] = z
            return True
        z = self.cell_id[best]
        self.members[z].append(cell)
        self.cell_id[cell] = z
        return False

    @property
    def k(self) -> int:
        return len(self.members)

    def update(self, s, a, r, s_next, terminal):
        grew = False
        if s_next not in self.cell_id:
            grew = self._discover(s_next)
        z, z2 = self.cell_id[s], self.cell_id[s_next]
        self.counts[s, a] += 1
        self.n_sa[z, a] = self.n_sa.get((z, a), 0) + 1
        cnt = self.n_sas.get((z, a, z2), 0) + 1
        self.n_sas[z, a, z2] = cnt
        old = self.r_mean.get((z, a, z2), 0.0)
        self.r_mean[z, a, z2] = old + (r - old) / cnt
        if terminal:
            self.absorbing.add(z2)
        self._solve(zero=grew or not self.warm_start)
        self.shown[s_next] = self.q[z2]

    def _model(self):
        k, na = self.k, self.na
        t = np.zeros((k, na, k))
        rr = np.zeros((k, na, k))
        for z in range(k):
            for a in range(na):
                if z in self.absorbing:
                    t[z, a, z] = 1.0
                    continue
                nsa = self.n_sa.get((z, a), 0)
                if nsa == 0:
                    t[z, a, :] = 1.0 / k
                    continue
                for z2 in range(k):
                    cnt = self.n_sas.get((z, a, z2), 0)
                    t[z, a, z2] = (cnt + self.alpha) / (nsa + self.alpha * k)
                    if cnt > 0:
                        rr[z, a, z2] = self.r_mean[z, a, z2]
        return t, rr

    def _solve(self, zero: bool):
        t, rr = self._model()
        k = self.k
        q = np.zeros((k, self.na))
        if not zero:
            q[:len(self.q)] = self.q
        self.sweeps = 0
        while self.sweeps < self.max_sweeps:
            v = q.max(axis=1)
            q_new = np.einsum("sat,sat->sa", t, rr + self.gamma * v[None, None, :])
            delta = np.abs(q_new - q).max()
            q = q_new
            self.sweeps += 1
            if delta < self.eps:
                break
        self.q = q

    def features(self, s, mode="fresh") -> np.ndarray:
        q = self.q[self.cell_id[s]] if mode == "fresh" else self.shown[s]
        v = q.max()
        d = self.q_denom
        return np.concatenate([(q - v) / d, [v / d], np.zeros(self.na + 1), self.counts[s] / 10.0])
