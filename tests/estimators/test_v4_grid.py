"""Semantics 'v4' on grids (METHOD §2.4, "v4 on grids"): the paper's own code numbers grid cells in order of
discovery and restarts value iteration from zero whenever a step brings a cell not yet in the model.

The estimator ``make_estimator`` gives for ``env=grid11/grid13, semantics='v4'`` (the discovery-indexed
estimator) is checked through the ``Estimator`` protocol alone (features in the policy input, ``q_values`` on the
cells in the model, ``known``, ``sweeps``) against the loop-based NumPy reference written from the Julia
(tests/estimators/reference_v4.py), whose settings here are the original's, hard-coded from main.jl: ε 0.1,
Q_DENOM 100, γ 0.99, at most TH = H sweeps. Those tests skip while ``rl3jax.estimators.discovery`` is not in the
tree. The reference itself is checked now against the dense ``V4Estimator`` over all N² cells with the re-zero
added (``RezeroedV4``): discovery order changes no result (synchronous sweeps; undiscovered cells are inert
zero self-loops), so only the re-zero separates the two.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs.grid_geometry import TILE_CHARS
from rl3jax.estimators import make_estimator
from rl3jax.estimators.v4 import V4Estimator
from rl3jax.meta_episode import MetaEnv, make_meta_env
from tests.estimators.reference_v4 import V4Reference, grid_obs
from tests.estimators.test_v4 import check_against_reference
from tests.helpers import small_task

needs_discovery = pytest.mark.skipif(importlib.util.find_spec("rl3jax.estimators.discovery") is None,
                                     reason="the discovery-indexed estimator (issue 18) is not in this tree")


@dataclasses.dataclass(frozen=True)
class RezeroedV4(V4Estimator):
    """The dense ``V4Estimator`` plus the original's grid rule (VAMDP.jl 137-157): Q, and so V = max Q, restart
    from zero when a step brings a state not yet in the model; ``known``: the states seen in a step so far."""

    def known(self, est):
        return (est.n_sa.sum(axis=1) > 0) | (est.n_sas.sum(axis=(0, 1)) > 0)

    def update(self, est, s, a, r, s_next, terminal):
        new = ~self.known(est)[s] | ~self.known(est)[s_next]
        return super().update(est.replace(q=jnp.where(new, 0.0, est.q)), s, a, r, s_next, terminal)


def _dense(side: int, horizon: int, rezero: bool = True) -> V4Estimator:
    """The dense stand-in with the original's grid settings (main.jl: ε 0.1, Q_DENOM 100; TH = H sweeps)."""
    return (RezeroedV4 if rezero else V4Estimator)(num_states=side * side, num_actions=5, gamma=0.99,
                                                   epsilon=0.1, max_sweeps=horizon, q_denom=100.0)


def _reference(meta_env):
    """A factory of the original's v4 estimator on a grid of ``meta_env`` (ids by discovery; main.jl's
    settings: ε 0.1, Q_DENOM 100, task observation kept; TH = H)."""
    side = meta_env.env.grid_side
    return lambda: V4Reference(None, 5, task_horizon=meta_env.task_horizon, horizon=meta_env.horizon, q_denom=100.0,
                               drop_observation=False, eps=0.1, obs_fn=grid_obs(side))


def _near_goal_task(env):
    """An N×N task (N = 11 or 13) with a goal two cells east of the start and a danger ('X', with its '!'
    ring) north-west of it, so random play ends many task episodes; water and obstacles around."""
    n, c = env.grid_side, env.grid_side // 2
    tiles = np.zeros((n, n), np.int8)
    marks = {(c, c): "S", (c, c + 2): "G", (c - 1, c - 1): "X", (c - 2, c - 1): "!", (c, c - 1): "!",
             (c - 1, c - 2): "!", (c - 1, c): "!", (c + 1, c): "W", (c + 1, c + 1): "W", (c + 2, c - 2): "O",
             (c - 3, c + 1): "O", (n - 1, n - 1): "G"}
    for (row, col), ch in marks.items():
        tiles[row, col] = TILE_CHARS.index(ch)
    return env._task(jnp.asarray(tiles), 0.0)


def _stack(*tasks):
    return jax.tree.map(lambda *x: jnp.stack(x), *tasks)


# ------------------------------------------------------------------- the reference, against the dense V4Estimator
@pytest.mark.parametrize("family,horizon,num_sampled", [("grid11", 60, 2), ("grid13", 40, 1)])
def test_reference_matches_dense_v4_with_rezero(family, horizon, num_sampled):
    """Sampled tasks and a task whose goal is near the start (resets, absorbing cells), uniform and biased random
    play: the reference and the dense estimator with the re-zero agree step by step."""
    env = make_meta_env(TrainConfig(env=family, algo="rl2", semantics="v4", horizon=horizon)).env
    meta_env = MetaEnv(env, horizon, _dense(env.grid_side, horizon), layout="v4")
    sampled = jax.vmap(meta_env.sample_task)(jax.random.split(jax.random.key(horizon), num_sampled))
    tasks = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), sampled, _near_goal_task(env))
    boundaries = sum(check_against_reference(meta_env, tasks, 3 + biased, biased, _reference(meta_env))
                     for biased in (False, True))
    assert boundaries >= 4  # the near-goal task ends task episodes


def test_reference_matches_dense_v4_on_a_small_grid():
    """The 7×7 grid of tests/helpers.py (every tile type next to the start): many resets, both absorbing kinds."""
    env, task = small_task()
    horizon = 120
    env = env.with_horizon(horizon)
    meta_env = MetaEnv(env, horizon, _dense(7, horizon), layout="v4")
    tasks = _stack(task, task, task)
    boundaries = sum(check_against_reference(meta_env, tasks, 11 + biased, biased, _reference(meta_env))
                     for biased in (False, True))
    assert boundaries >= 20


# ------------------------------------------------------------------------------------------- hand-computed
def _hand_case(est, side):
    """Start c; step 1: c -E-> c+1, the goal (+100, absorbing); step 2 (after the reset): c -N-> c−N (−1), a
    cell not yet in the model. Returns the estimator states after each step."""
    c = (side // 2) * side + side // 2
    e1 = est.update(est.init(jnp.int32(c)), c, 2, 100.0, c + 1, True)
    e1 = est.visit(e1, c)
    e2 = est.visit(est.update(e1, c, 1, -1.0, c - side, False), c - side)
    return c, e1, e2


def _check_hand_case(est, side, sweeps2=3):
    """Step 1 (cold): sweep 1 gives Q(c,E) = 100, sweep 2 the untried self-loops γ·V(c) = 99, sweep 3 nothing
    (ΔQ 0 < ε): 3 sweeps, Q(c,·) = (99, 99, 100, 99, 99). Step 2 brings c−N: the original restarts from zero,
    so again 3 sweeps (sweep 1: E 100 and N −1 + γ·0; sweep 2: the self-loops 99); warm, it would take 2 (sweep 1
    moves only Q(c,N) from 99 to −1)."""
    c, e1, e2 = _hand_case(est, side)
    q1 = [99.0, 99.0, 100.0, 99.0, 99.0]
    assert int(est.sweeps(e1)) == 3
    np.testing.assert_allclose(np.asarray(est.q_values(e1, c)), q1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(est.features(e1, c)), np.r_[q1, 0, 0, 1, 0, 0] / 100, rtol=1e-6)
    assert int(est.sweeps(e2)) == sweeps2
    q2 = [99.0, -1.0, 100.0, 99.0, 99.0]
    np.testing.assert_allclose(np.asarray(est.q_values(e2, jnp.array([c, c + 1, c - side]))),
                               [q2, [0.0] * 5, [0.0] * 5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(est.features(e2, c)), np.r_[q2, 0, 1, 1, 0, 0] / 100, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(est.features(e2, c - side)), np.zeros(10))  # never left: zeros
    assert sorted(np.flatnonzero(np.asarray(est.known(e2)))) == sorted([c, c + 1, c - side])


def test_reference_hand_computed_rezero():
    ref = V4Reference(None, 5, task_horizon=50, horizon=50, q_denom=100.0, drop_observation=False, eps=0.1,
                      obs_fn=grid_obs(11))
    ref.reset_task(60)
    obs = ref.step(60, 2, 100.0, 61, True, True, 60)
    assert ref.sweeps == 3 and ref.rezeroed and ref.known == [60, 61]
    np.testing.assert_allclose(obs[7:9], [6 / 11, 6 / 11], rtol=1e-6)  # the start cell, 1-based over N
    np.testing.assert_allclose(obs[9:19], np.r_[99, 99, 100, 99, 99, 0, 0, 1, 0, 0] / 100)
    ref.step(60, 1, -1.0, 49, False, False, 60)
    assert ref.sweeps == 3 and ref.rezeroed and ref.known == [60, 61, 49]
    np.testing.assert_allclose(ref.q_states([60, 61, 49]), [[99, -1, 100, 99, 99], [0] * 5, [0] * 5])
    ref.step(49, 1, -1.0, 49, False, False, 60)  # no new cell: warm start, a solve that moves only Q(49,N)
    assert not ref.rezeroed and ref.known == [60, 61, 49]


def test_dense_stand_in_hand_computed_and_the_rule_matters():
    _check_hand_case(_dense(11, 50), 11, sweeps2=3)
    plain = _dense(11, 50, rezero=False)
    _, e1, e2 = _hand_case(plain, 11)  # without the re-zero: the same step 1, then a warm 2-sweep solve
    assert (int(plain.sweeps(e1)), int(plain.sweeps(e2))) == (3, 2)


# -------------------------------------------------------------- the estimator make_estimator gives (protocol)
@needs_discovery
@pytest.mark.parametrize("family", ["grid11", "grid13"])
def test_make_estimator_v4_grid_hand_computed(family):
    cfg = TrainConfig(env=family, algo="rl3", semantics="v4", horizon=50)
    env = make_meta_env(TrainConfig(env=family, algo="rl2", semantics="v4", horizon=50)).env
    _check_hand_case(make_estimator(env, cfg), env.grid_side, sweeps2=3)


def _protocol_case(family, horizon, num_sampled, seed):
    meta_env = make_meta_env(TrainConfig(env=family, algo="rl3", semantics="v4", horizon=horizon))
    assert meta_env.obs_dim == 5 + 1 + 1 + 2 + 5 + 5 + 2 and not meta_env.drop_task_obs
    sampled = jax.vmap(meta_env.sample_task)(jax.random.split(jax.random.key(seed), num_sampled))
    tasks = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), sampled, _near_goal_task(meta_env.env))
    boundaries = sum(check_against_reference(meta_env, tasks, seed + 1 + biased, biased, _reference(meta_env))
                     for biased in (False, True))
    assert boundaries >= 4


@needs_discovery
@pytest.mark.parametrize("family,horizon,num_sampled", [("grid11", 80, 3), ("grid13", 60, 2)])
def test_make_estimator_v4_grid_matches_reference(family, horizon, num_sampled):
    """Features (the whole policy input), Q on the cells in the model, the known cells and the sweep counts after
    every step of random meta-episodes (uniform and biased play), within 1e-5."""
    _protocol_case(family, horizon, num_sampled, seed=horizon)


@needs_discovery
@pytest.mark.slow
@pytest.mark.parametrize("family,horizon,num_sampled", [("grid11", 250, 12), ("grid13", 350, 8)])
def test_make_estimator_v4_grid_matches_reference_published_horizons(family, horizon, num_sampled):
    _protocol_case(family, horizon, num_sampled, seed=1000 + horizon)


# ------------------------------------------------------------------------------------------------ layout
def test_v4_grid_layout_keeps_the_task_observation():
    """RL² under v4 on a grid: prev action (5), prev reward, first-step flag, the cell ((row, col) + 1) / N,
    τ/TH, t/H (TH = H)."""
    meta_env = make_meta_env(TrainConfig(env="grid11", algo="rl2", semantics="v4", horizon=8))
    assert meta_env.estimator is None and meta_env.obs_dim == 5 + 1 + 1 + 2 + 2 and meta_env.task_horizon == 8
    task = _near_goal_task(meta_env.env)
    obs, st = meta_env.reset(jax.random.key(0), task)
    np.testing.assert_allclose(np.asarray(obs), [0, 0, 0, 0, 0, 0, 1, 6 / 11, 6 / 11, 0, 0], atol=1e-7)
    obs, st, r, _, _ = meta_env.step(jax.random.key(1), st, jnp.int32(0), task)  # NOOP stays on 'S'
    np.testing.assert_allclose(np.asarray(obs), [1, 0, 0, 0, 0, -1, 0, 6 / 11, 6 / 11, 1 / 8, 1 / 8], atol=1e-7)
