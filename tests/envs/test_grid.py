"""rl3jax.envs.grid: the gridworld family (METHOD §3) against the loop-based NumPy reference in
tests/reference_grid.py: registry and presets, transition probabilities, steps, optimal values, rendering."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.envs.catalog import variants
from rl3jax.envs.grid import GridState, GridWorld, render_ascii
from rl3jax.envs.grid_generation import GridConfig
from rl3jax.envs.grid_geometry import (
    absorbing_cells,
    direction_probabilities,
    finite_horizon_vi,
    move_targets,
    start_cell,
    tile_rewards,
    transition_matrix,
)
from rl3jax.envs.registry import make_env
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.meta_episode import MetaEnv
from tests import reference_grid as ref
from tests.helpers import SMALL, config, fast_jit, grid_estimator, small_task, step_env_steps


# ------------------------------------------------------------------------------------------ registry
def test_registry_and_presets():
    assert variants("grid11") == ("train",)
    assert variants("grid13") == ("train", "dense", "deterministic", "watery", "dangerous", "corner")
    g11, g13 = make_env("grid11"), make_env("grid13")
    assert (g11.size, g11.horizon, g11.num_states, g11.name) == (11, 250, 121, "grid11")
    assert (g13.size, g13.horizon, g13.num_states, g13.name) == (13, 350, 169, "grid13")
    assert config(g11) == dict(size=11, num_obstacle_sets=11, obstacle_len=3, num_water_sets=5, water_len=2,
                               num_dangers=2, min_goal_dist=8, slip=0.2)
    base = config(g13)
    for variant, change in [("dense", {"obstacle_len": 4}), ("deterministic", {"slip": 0.0}),
                            ("watery", {"num_water_sets": 8}), ("dangerous", {"num_dangers": 4}),
                            ("corner", {"min_goal_dist": 12})]:
        env = make_env("grid13", variant)
        assert config(env) == {**base, **change}
        assert env.name == f"grid13-{variant}"
    with pytest.raises(ValueError, match="valid variants"):
        make_env("grid11", "dense")
    d = g13.rl3_defaults
    assert (d.q_denom, d.alpha_laplace, d.epsilon, d.warm_start, d.known_states) == (10.0, 0.01, 0.1, True, "visited")
    assert d.max_sweeps is None  # TH, which is H for grids
    task = g13.default_params
    assert task.max_steps_in_episode == 350 and task.tiles.shape == (13, 13)
    with pytest.raises(ValueError, match="obstacle_len must be in \\[1, 7\\]"):
        GridConfig(size=13, obstacle_len=8)
    with pytest.raises(ValueError, match="min_goal_dist 13 exceeds"):
        GridConfig(size=13, min_goal_dist=13)
    with pytest.raises(ValueError, match="horizon must be >= 1"):  # H is checked in one place: MetaEnv
        MetaEnv(GridWorld(horizon=0), 0)
    est = grid_estimator(g13)
    assert isinstance(est, GridQEstimator) and est.max_sweeps == 350 and est.alpha_laplace == 0.01
    assert grid_estimator(g13, abstraction="coarse").abstraction_radius == 0.08
    assert grid_estimator(g11, abstraction="coarse").abstraction_radius == 0.1
    assert (g11.family, g13.family, make_env("grid13", "dense").family) == ("grid11", "grid13", "grid13")


# ----------------------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("slip", [0.2, 0.0])
def test_transition_probabilities_match_reference(slip):
    env, task = small_task(slip)
    t = np.asarray(transition_matrix(task.tiles, task.slip), np.float64)
    np.testing.assert_allclose(t, ref.transition_matrix(SMALL, slip), rtol=0, atol=1e-6)
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-6)
    flat = "".join(SMALL)
    np.testing.assert_array_equal(np.asarray(tile_rewards(task.tiles)), [ref.REWARD.get(ch, 0.0) for ch in flat])
    # spot checks: water slips fully sideways, obstacles and edges keep the mass
    n = 7
    s = 3 * n + 2  # 'W' left of the start: north -> half east ('S'), half west (' ')
    assert t[s, 1, 3 * n + 3] == pytest.approx(0.5) and t[s, 1, 3 * n + 1] == pytest.approx(0.5)
    s = 0 * n + 1  # top edge, right of 'O': west is blocked, north is off-grid
    assert t[s, 4, s] == pytest.approx(1.0 - slip + slip / 2)  # intended blocked + slipping north off-grid
    assert t[s, 0, s] == 1.0


def test_step_env_matches_reference():
    env, task = small_task(0.2)
    n = 7
    cases = [(3 * n + 3, a) for a in range(5)] + [(3 * n + 2, 1), (1 * n + 1, 2), (0 * n + 1, 4), (4 * n + 4, 2)]
    keys = jax.random.split(jax.random.key(0), 4000)

    @fast_jit
    def sample(pos, action):
        def one(k):
            return env.step_env(k, GridState(time=jnp.int32(0), pos=pos), action, task)
        return jax.vmap(one)(keys)

    for pos, a in cases:
        obs, st, rew, term, _ = sample(jnp.int32(pos), jnp.int32(a))
        expect = ref.transition(SMALL, pos // n, pos % n, a, 0.2)
        nxt = np.asarray(st.pos)
        got_cells = set(map(int, np.unique(nxt)))
        assert got_cells <= {r * n + c for r, c in expect}
        for (r, c), p in expect.items():
            assert abs(np.mean(nxt == r * n + c) - p) < 0.03, (pos, a, (r, c), p)
        tiles = np.array(["".join(SMALL)[i] for i in nxt])
        np.testing.assert_array_equal(np.asarray(rew), [ref.REWARD[ch] for ch in tiles])
        np.testing.assert_array_equal(np.asarray(term), np.isin(tiles, ref.ABSORBING))
        np.testing.assert_allclose(np.asarray(obs), np.stack([nxt // n + 1, nxt % n + 1], 1) / n, atol=1e-7)
    _, st0 = env.reset_env(jax.random.key(0), task)
    assert int(env.state_index(st0, task)) == start_cell(7) == 24
    np.testing.assert_allclose(np.asarray(env.get_obs(st0, task)), [4 / 7, 4 / 7])


def test_optimal_values_and_render():
    env, task = small_task(0.2)
    v, q = finite_horizon_vi(task.tiles, task.slip, 100)
    assert float(v[start_cell(7)]) == pytest.approx(ref.optimal_return(SMALL, 0.2, 100), abs=1e-3)
    assert q.shape == (49, 5)
    text = render_ascii(task)
    assert text.splitlines()[1:-1] == ["|" + row + "|" for row in SMALL]
    np.testing.assert_array_equal(np.asarray(move_targets(task.tiles))[0], [0, 0, 1, 7, 0])


def test_per_cell_dynamics_equal_the_tables_rows():
    """What ``step_env`` computes for the one cell it is in equals that cell's row of the whole-grid tables, bit
    for bit, for every cell (a batch of cells too)."""
    _, task = small_task(0.2)
    cells = jnp.arange(task.tiles.size)
    for fn in (move_targets, tile_rewards, absorbing_cells):
        table = np.asarray(fn(task.tiles))
        np.testing.assert_array_equal(np.asarray(fn(task.tiles, cells)), table)
        np.testing.assert_array_equal(np.asarray(fn(task.tiles, jnp.int32(9))), table[9])
    table = np.asarray(direction_probabilities(task.tiles, task.slip))
    assert table.shape == (49, 5, 5)
    for c in (0, 9, 24, 48):
        np.testing.assert_array_equal(np.asarray(direction_probabilities(task.tiles, task.slip, jnp.int32(c))),
                                      table[c])


class StepEnvJitTest(chex.TestCase):
    """``step_env`` gives the same observations, rewards and dones jitted and eager (8 steps of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_step_env_with_and_without_jit(self):
        env = make_env("grid13")
        chex.assert_trees_all_close(step_env_steps(self.variant(env.step_env), env),
                                    step_env_steps(env.step_env, env), rtol=1e-6)
