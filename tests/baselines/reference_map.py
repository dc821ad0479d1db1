"""Loop-based NumPy reference of ``psrl-map``'s planner and of its goal admissibility (which cells a path from 'S'
reaches), written from METHOD §3 and the dynamics of tests/reference_grid.py, not from rl3jax.baselines.grid.

Maps are lists of strings (tile characters); cells are row * N + col; actions 0 NOOP, 1 N, 2 E, 3 S, 4 W.
"""

from __future__ import annotations

import numpy as np

from tests.reference_grid import ABSORBING, MOVES, REWARD, centre, transition


def plan_q(grid: list[str], slip: float, sweeps: int, left: int) -> np.ndarray:
    """(S, 5) Q of the min(sweeps, left)-step problem: each step earns the entry reward of the cell landed on;
    landing on 'G' or 'X' restarts at 'S' (the value of 'S' with the steps left), as the meta-episode does."""
    n = len(grid)
    start = centre(n) * n + centre(n)
    v = np.zeros(n * n)
    q = np.zeros((n * n, 5))
    for _ in range(min(sweeps, left)):
        q = np.zeros((n * n, 5))
        for r in range(n):
            for c in range(n):
                for a in range(5):
                    for (r2, c2), p in transition(grid, r, c, a, slip).items():
                        tile = grid[r2][c2]
                        after = v[start] if tile in ABSORBING else v[r2 * n + c2]
                        q[r * n + c, a] += p * (REWARD.get(tile, 0.0) + after)  # from an "O" cell NOOP stays
        v = q.max(axis=1)
    return q


def next_to_reachable(grid: list[str], steps: int) -> set[int]:
    """Cells next to one that at most ``steps`` moves from 'S' reach (breadth-first; a path stops at 'G' or 'X'
    and never enters 'O')."""
    n = len(grid)
    c0 = centre(n)
    reach, frontier = {(c0, c0)}, [(c0, c0)]
    for _ in range(steps):
        new = []
        for r, c in frontier:
            if grid[r][c] in ABSORBING:
                continue
            for dr, dc in MOVES.values():
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < n and 0 <= c2 < n and grid[r2][c2] != "O" and (r2, c2) not in reach:
                    reach.add((r2, c2))
                    new.append((r2, c2))
        frontier = new
    out = set()
    for r, c in reach:
        if grid[r][c] in ABSORBING:
            continue
        for dr, dc in MOVES.values():
            if 0 <= r + dr < n and 0 <= c + dc < n:
                out.add((r + dr) * n + c + dc)
    return out
