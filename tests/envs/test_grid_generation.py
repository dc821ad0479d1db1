"""rl3jax.envs.grid_generation: drawn layouts follow the generation rules (METHOD §3) and the variants
move their statistics in the intended direction."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from rl3jax.envs.grid import render_ascii
from rl3jax.envs.grid_generation import GRID_FAMILIES, draw_layout
from rl3jax.envs.grid_geometry import (
    TILE_CHARS,
)
from rl3jax.envs.registry import make_env
from tests import reference_grid as ref
from tests.helpers import SAMPLES, config, fast_jit, sampled

GRID13_NAMES = tuple(GRID_FAMILIES["grid13"][1])


def to_rows(tiles) -> list[str]:
    return ["".join(TILE_CHARS[int(t)] for t in row) for row in np.asarray(tiles)]


# --------------------------------------------------------------------------------------- generation
def test_layout_follows_generation_rules():
    env = make_env("grid13")
    layouts = fast_jit(jax.vmap(functools.partial(draw_layout, env.config)))(jax.random.split(jax.random.key(1), 256))
    layouts = jax.tree.map(np.asarray, layouts)
    n, cen = 13, ref.centre(13)
    vertical, both_ways = [], set()
    for i in range(256):
        lay = {k: v[i] for k, v in layouts.items()}
        for kind, length in (("obstacle", 3), ("water", 2)):
            for rows, cols in zip(lay[f"{kind}_rows"], lay[f"{kind}_cols"]):
                assert not ref.check_segment(rows, cols, length, n)
                vertical.append(len(set(cols)) == 1)
                along = rows if len(set(cols)) == 1 else cols
                if along[0] == cen:
                    both_ways.add(int(np.sign(along[1] - along[0])))
        painted, errs = ref.paint(lay, n)
        assert not errs
        assert painted == to_rows(lay["tiles"])
        gr, gc = lay["goal"]
        assert abs(gr - cen) + abs(gc - cen) >= 8
    assert 0.45 < np.mean(vertical) < 0.55
    assert both_ways == {-1, 1}
    # dangers are drawn uniformly among acceptable cells: each accepted one was acceptable when drawn
    assert layouts["dangers_ok"].mean() > 0.99


@pytest.mark.parametrize("family,variant", [("grid11", "train")] + [("grid13", v) for v in GRID13_NAMES])
def test_sampled_grids_satisfy_constraints(family, variant):
    env, tasks, draws = sampled(family, variant)
    cfg = config(env)
    assert (draws >= 1).all() and (draws < env.config.max_draws).all()
    assert ((tasks.opt_return >= 50.0) & (tasks.opt_return <= 100.0)).all()
    np.testing.assert_allclose(tasks.slip, cfg["slip"])
    for i in range(SAMPLES):
        rows = to_rows(tasks.tiles[i])
        assert not ref.check_grid(rows, cfg, check_return=i < 6), (i, render_ascii(tasks.tiles[i]))
        if i < 6:  # the JAX rejection statistic is the reference optimal return
            assert tasks.opt_return[i] == pytest.approx(ref.optimal_return(rows, cfg["slip"]), abs=1e-3)


def _stats(tasks):
    tiles = tasks.tiles.reshape(len(tasks.tiles), -1)
    n = tasks.tiles.shape[-1]
    cen = ref.centre(n)
    goal = np.argmax(tiles == TILE_CHARS.index("G"), axis=1)
    return {ch: (tiles == TILE_CHARS.index(ch)).sum(1).mean() for ch in "OWX!"} | {
        "goal_dist": (np.abs(goal // n - cen) + np.abs(goal % n - cen)).mean(), "slip": tasks.slip.mean()}


def test_variant_statistics_move_in_the_intended_direction():
    base = _stats(sampled("grid13", "train")[1])
    dense = _stats(sampled("grid13", "dense")[1])
    watery = _stats(sampled("grid13", "watery")[1])
    dangerous = _stats(sampled("grid13", "dangerous")[1])
    corner = _stats(sampled("grid13", "corner")[1])
    det = _stats(sampled("grid13", "deterministic")[1])
    assert dense["O"] > base["O"] + 3  # segments of 4 instead of 3 obstacle cells: more obstacle cells
    assert watery["W"] > base["W"] + 3  # 8 water segments instead of 5
    assert base["X"] == 2 and dangerous["X"] == 4 and dangerous["!"] > base["!"]
    assert corner["goal_dist"] == 12 and base["goal_dist"] < 11  # the goal in a corner, farther away
    assert det["slip"] == 0.0 and base["slip"] == pytest.approx(0.2)
