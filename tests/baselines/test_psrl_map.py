"""rl3jax.baselines.grid (``psrl-map``): the prior against the generator (Monte Carlo), the posterior's exact
one-event Bayes updates, decisions on hand-built posteriors, the planner against a NumPy loop reference, and
the orderings theory expects on held-out tasks."""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax import baselines as B
from rl3jax.baselines import grid as G
from rl3jax.envs.grid import make_grid
from rl3jax.envs.grid_generation import GRID11, goal_cells, tile_frequencies
from rl3jax.envs.grid_geometry import (
    DANGER,
    EMPTY,
    GOAL,
    OBSTACLE,
    START,
    TILE_CHARS,
    WARNING,
    WATER,
    neighbour_table,
    start_cell,
)
from tests.baselines import reference_map as ref
from tests.helpers import _meta, _paired, _run

SLIP = 0.2
Z = 4.5  # tolerance in standard errors of a frequency


def _codes(rows: list[str]) -> np.ndarray:
    """Tile codes (S,) of a map drawn as strings; '?' is a cell not seen (UNKNOWN)."""
    return np.array([G.UNKNOWN if ch == "?" else TILE_CHARS.index(ch) for row in rows for ch in row], np.int32)


def _posterior(rows: list[str], goal: dict[int, float], p_block=0.0, p_danger=0.0) -> G.MapPosterior:
    """One task's posterior: the seen cells of ``rows``, the goal weights ``goal`` {cell: weight}."""
    tiles = _codes(rows)
    w = np.zeros(tiles.size, np.float32)
    for cell, x in goal.items():
        w[cell] = x
    unseen = tiles == G.UNKNOWN
    return G.MapPosterior(tiles=jnp.asarray(tiles), p_block=jnp.asarray(np.where(unseen, p_block, 0.0), jnp.float32),
                          p_danger=jnp.asarray(np.where(unseen, p_danger, 0.0), jnp.float32),
                          goal=jnp.asarray(w / w.sum()), prev_s=jnp.int32(start_cell(len(rows))))


def _actions(post: G.MapPosterior, n: int, draws: int = 16, cell: int | None = None) -> set[int]:
    """The actions psrl-map takes in ``cell`` (default 'S') on ``draws`` maps drawn from ``post`` (the tiles of an
    unseen cell: ' ' unless 'O' or 'X' by the posterior), planning 40 sweeps."""
    prior = jnp.zeros((n * n, 7)).at[:, EMPTY].set(1.0)
    nbr = jnp.asarray(neighbour_table(n))
    cell = start_cell(n) if cell is None else cell

    def act(key):
        k_u, k_g = jax.random.split(key)
        tiles = G.sample_map(jax.random.uniform(k_u, (n * n,)), jax.random.gumbel(k_g, (n * n,)), post, prior, nbr, 40)
        return jnp.argmax(G.plan_q(tiles, SLIP, 40, 100)[cell])

    return set(np.asarray(jax.vmap(act)(jax.random.split(jax.random.key(0), draws))).tolist())


# ------------------------------------------------------------------------------------------- the prior
def test_prior_sampler_agrees_with_the_generators_frequencies():
    """Maps drawn from the prior (no observation) against grids of the generator itself (another seed): per cell,
    each tile's frequency within Z = 4.5 standard errors of the difference of two frequencies,
    |f_map − f_gen| <= 4.5·sqrt(p(1−p)(1/n_map + 1/n_gen)), p pooled (a floor of 1/n for p = 0 on one side);
    the goal's frequencies the same way. The prior's own table: 'X' never on the border, 'G' only where the
    generator draws it, nothing but 'S' at the centre."""
    cfg, n_gen, n_map = GRID11, 2048, 4096
    tile_prior, goal_prior = G.map_prior(cfg)
    s = cfg.size ** 2
    assert np.allclose(tile_prior.sum(1), 1.0, atol=1e-5) and math.isclose(goal_prior.sum(), 1.0, rel_tol=1e-5)
    outside = np.ones(s, bool)
    outside[goal_cells(cfg)] = False
    assert (goal_prior[outside] == 0).all() and (goal_prior[~outside] > 0).all()
    border = np.ones((cfg.size, cfg.size), bool)
    border[1:-1, 1:-1] = False
    assert (tile_prior[border.reshape(-1), DANGER] == 0).all()
    assert tile_prior[start_cell(cfg.size), START] == 1.0

    gen = tile_frequencies(cfg, jax.random.key(77), n_gen)
    nbr = jnp.asarray(neighbour_table(cfg.size))
    tiles = jnp.full((s,), G.UNKNOWN, jnp.int32).at[start_cell(cfg.size)].set(START)
    post = G.MapPosterior(tiles=tiles, p_block=jnp.asarray(tile_prior[:, OBSTACLE]),
                          p_danger=jnp.asarray(tile_prior[:, DANGER]), goal=jnp.asarray(goal_prior),
                          prev_s=jnp.int32(start_cell(cfg.size)))

    def draw(key):
        k_u, k_g = jax.random.split(key)
        return G.sample_map(jax.random.uniform(k_u, (s,)), jax.random.gumbel(k_g, (s,)), post,
                            jnp.asarray(tile_prior), nbr, 45)

    maps = np.asarray(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(5), n_map)))
    got = np.stack([(maps == code).mean(0) for code in range(7)], axis=1)
    p = (got * n_map + gen * n_gen) / (n_map + n_gen)
    p = np.maximum(p, 1.0 / n_gen)
    bound = Z * np.sqrt(p * (1 - p) * (1 / n_map + 1 / n_gen))
    bad = np.argwhere(np.abs(got - gen) > bound)
    assert len(bad) == 0, [(int(c), TILE_CHARS[k], float(got[c, k]), float(gen[c, k])) for c, k in bad[:10]]
    assert (got[:, GOAL] > 0).sum() == len(goal_cells(cfg))  # every cell the generator may put 'G' on is drawn


# ----------------------------------------------------------------------------------- the posterior
def _observe(post, s, action, reward, tau, n):
    return G.observe(post, jnp.int32(s), jnp.int32(5), jnp.int32(tau), jnp.int32(action), jnp.float32(reward),
                     jnp.asarray(neighbour_table(n)), start_cell(n), SLIP)


def test_entering_a_cell_reveals_its_tile():
    """The entry reward names the tile: −2 'W', −10 '!', −1 ' ' ('S' at the centre); the cell then has no
    obstacle, danger or goal probability left."""
    rows = ["?????", "?????", "??S??", "?????", "?????"]
    post = _posterior(rows, {0: 1.0, 7: 1.0}, p_block=0.3, p_danger=0.1)
    for cell, reward, code in ((7, -2.0, WATER), (13, -10.0, WARNING), (11, -1.0, EMPTY)):
        after = _observe(post, cell, 1, reward, 3, 5)
        assert int(after.tiles[cell]) == code and int(after.prev_s) == cell
        assert float(after.p_block[cell]) == float(after.p_danger[cell]) == float(after.goal[cell]) == 0.0
    assert math.isclose(float(_observe(post, 7, 1, -2.0, 3, 5).goal[0]), 1.0, rel_tol=1e-6)


def _enumerated(pi: dict[int, float], q: dict[int, float], fixed: dict[int, float]) -> dict[int, float]:
    """P(cell has the property | the direction drawn aimed at a cell with it), by enumerating the unseen cells'
    2^k joint states (independent priors ``pi``; ``fixed`` cells' states known)."""
    cells = list(pi)
    num, total = dict.fromkeys(cells, 0.0), 0.0
    for states in itertools.product((0, 1), repeat=len(cells)):
        prior = math.prod(pi[c] if x else 1 - pi[c] for c, x in zip(cells, states))
        has = {**fixed, **dict(zip(cells, states))}
        lik = sum(p * has[c] for c, p in q.items())
        total += prior * lik
        for c, x in zip(cells, states):
            num[c] += prior * lik * x
    return {c: num[c] / total for c in cells}


def test_a_blocked_move_and_a_danger_are_exact_bayes_updates():
    """From 'S' (cell 12 of a 5×5 grid) the action N draws N with 0.8, E and W with 0.1 each. A stay (the move was
    blocked) with W seen open: P(O) of N and E by enumeration; −100 (landed on 'X') likewise for P(X); 'G' after
    +100: prior × chance of landing, normalised."""
    rows = ["?????", "?????", "? S??", "?????", "?????"]  # W of 'S' (cell 11) seen open
    post = _posterior(rows, {7: 1.0, 13: 3.0, 0: 1.0}, p_block=0.3, p_danger=0.2)
    after = _observe(post, 12, 1, -1.0, 3, 5)
    want = _enumerated({7: 0.3, 13: 0.3}, {7: 0.8, 13: 0.1, 11: 0.1}, {11: 0})
    assert math.isclose(float(after.p_block[7]), want[7], rel_tol=1e-5)
    assert math.isclose(float(after.p_block[13]), want[13], rel_tol=1e-5)
    assert float(after.p_block[0]) == pytest.approx(0.3) and float(after.p_danger[7]) == pytest.approx(0.2)
    danger = _observe(post, 12, 1, -100.0, 0, 5)
    want = _enumerated({7: 0.2, 13: 0.2}, {7: 0.8, 13: 0.1, 11: 0.1}, {11: 0})
    assert math.isclose(float(danger.p_danger[7]), want[7], rel_tol=1e-5)
    assert math.isclose(float(danger.p_danger[13]), want[13], rel_tol=1e-5)
    goal = _observe(post, 12, 1, 100.0, 0, 5).goal
    z = 1.0 * 0.8 + 3.0 * 0.1
    assert np.allclose(np.asarray(goal)[[7, 13, 0]], [0.8 / z, 0.3 / z, 0.0], atol=1e-6)


def test_a_seen_warning_points_at_its_danger():
    """A seen '!' has one 'X' among its unseen neighbours: with equal priors each of two gets 1/2; a cell that
    cannot hold 'X' (prior 0) leaves it all to the other."""
    rows = ["?????", " ?   ", "?!S  ", "     ", "     "]  # '!' at cell 11, its unseen neighbours 6 and 10
    post = _posterior(rows, {0: 1.0}, p_danger=0.02)
    nbr = jnp.asarray(neighbour_table(5))
    p = np.asarray(G.danger_probability(post.tiles, post.p_danger, nbr))
    assert p[6] == pytest.approx(0.5, rel=1e-3) and p[10] == pytest.approx(0.5, rel=1e-3) and p[12] == 0.0
    assert p[1] == pytest.approx(0.02)  # not next to the '!'
    post = dataclasses.replace(post, p_danger=post.p_danger.at[10].set(0.0))
    assert np.asarray(G.danger_probability(post.tiles, post.p_danger, nbr))[6] == pytest.approx(1.0, rel=1e-3)


# ----------------------------------------------------------------------------------------- decisions
def test_goal_seen_walks_to_it():
    """The goal located two cells north of 'S' on an open map: psrl-map goes north, whatever it draws."""
    rows = ["     ", "     ", "  S  ", "     ", "     "]
    post = _posterior(rows, {2: 1.0})
    post = dataclasses.replace(post, tiles=post.tiles.at[2].set(G.UNKNOWN))
    assert _actions(post, 5) == {1}


def test_goal_unseen_explores_toward_the_admissible_cells():
    """A corridor with unseen cells at both ends, the goal's posterior on the east ones only (the west ones
    cannot hold it, as cells nearer than ``min_goal_dist`` cannot): psrl-map heads east, whatever it draws."""
    rows = ["OOOOO", "?OOO?", "? S ?", "?OOO?", "OOOOO"]
    post = _posterior(rows, {9: 1.0, 14: 1.0, 19: 1.0})
    assert _actions(post, 5, draws=32) == {2}


def test_next_to_water_takes_the_dry_way():
    """The goal diagonally north-east of 'S': north is 'W' (−2, and it slips sideways), east is ' ': psrl-map
    goes east. With 'X' located to the east (p_danger 1, as after −100 events there) it never goes east."""
    rows = ["     ", "  W? ", "  S  ", "     ", "     "]
    post = _posterior(rows, {8: 1.0})
    assert _actions(post, 5) == {2}
    post = _posterior(["     ", "  W? ", "  S? ", "     ", "     "], {8: 1.0})
    post = dataclasses.replace(post, p_danger=post.p_danger.at[13].set(1.0))
    assert 2 not in _actions(post, 5, draws=64)


# ------------------------------------------------------------------------------------ the planner
def _rows(codes: np.ndarray, n: int) -> list[str]:
    return ["".join(TILE_CHARS[int(x)] for x in codes[r * n:(r + 1) * n]) for r in range(n)]


@pytest.mark.parametrize("left", [7, 300])
def test_planner_matches_the_numpy_loop_reference(left):
    """On three held-out grid11 tasks and three maps drawn from the prior, ``plan_q`` (30 sweeps, or the steps
    left) equals the reference's Q (float32 against float64) and its greedy action is one of the reference's;
    ``next_to_reachable`` equals a breadth-first search."""
    env = make_grid("grid11")
    n = env.size
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.key(3), 3))
    maps = [np.asarray(t).reshape(-1) for t in tasks.tiles]
    tile_prior, goal_prior = G.map_prior(env.config)
    post = G.MapPosterior(tiles=jnp.full((n * n,), G.UNKNOWN).at[start_cell(n)].set(START),
                          p_block=jnp.asarray(tile_prior[:, OBSTACLE]), p_danger=jnp.asarray(tile_prior[:, DANGER]),
                          goal=jnp.asarray(goal_prior), prev_s=jnp.int32(start_cell(n)))
    nbr = jnp.asarray(neighbour_table(n))
    for i in range(3):
        k_u, k_g = jax.random.split(jax.random.key(10 + i))
        maps.append(np.asarray(G.sample_map(jax.random.uniform(k_u, (n * n,)), jax.random.gumbel(k_g, (n * n,)),
                                            post, jnp.asarray(tile_prior), nbr, 30)))
    for codes in maps:
        rows = _rows(codes, n)
        q = np.asarray(G.plan_q(jnp.asarray(codes), SLIP, 30, left))
        want = ref.plan_q(rows, SLIP, 30, left)
        np.testing.assert_allclose(q, want, rtol=1e-4, atol=1e-2)
        chosen = want[np.arange(n * n), q.argmax(1)]
        assert (chosen >= want.max(1) - 1e-2).all()
        near = np.flatnonzero(np.asarray(G.next_to_reachable(jnp.asarray(codes), nbr, 9)))
        assert set(near.tolist()) == ref.next_to_reachable(rows, 9)


# ------------------------------------------------------------------------------------- the policy
def test_fits_grids_only_and_names_its_parameters():
    """psrl-map fits every grid family and variant, no other family; a parameter it does not take is named."""
    assert "psrl-map" in B.baseline_names(_meta("grid13", 20, "dense"))
    with pytest.raises(ValueError, match="policies for it: .*random"):
        B.check_fits("psrl-map", _meta("mdp", 20))
    with pytest.raises(ValueError, match=r"no parameter 'm'; valid: period .*, sweeps"):
        B.validate_params("psrl-map", {"m": 3})


def test_held_out_orderings_on_grid11():
    """On the first 48 held-out grid11 tasks at H = 250: oracle ≥ psrl-map ≥ psrl (the prior-free posterior
    sampling), psrl-map ≥ model-greedy, psrl-map ≥ random: psrl-map's paired differences with each, beyond 3
    standard errors (1000 tasks: psrl-map 221 ± 23, psrl −428 ± 16, BENCHMARKS.md)."""
    num, h = 48, 250
    r = {name: _run("grid11", h, name, num)[1] for name in ("oracle", "psrl-map", "psrl", "model-greedy", "random")}
    for hi, lo in (("oracle", "psrl-map"), ("psrl-map", "psrl"), ("psrl-map", "model-greedy"), ("psrl-map", "random")):
        d, se = _paired(r[hi], r[lo])
        assert d > 3 * se, (hi, lo, d, se)
