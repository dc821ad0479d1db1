"""The JAX meta-episode + Q-estimator against the loop-based NumPy reference of METHOD §1–§2 (tests/reference.py).

The JAX ``MetaEnv`` plays random actions on many sampled tasks (vmapped). For every step we record the realised
transition (s, a, r, s', terminal) by stepping the underlying task env from the MetaState with the step's key
(and check it reproduces the MetaEnv's reward); the reference consumes only these transitions plus the start
state and rebuilds every policy input. Inputs and rewards must agree to 1e-5 at every step.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs.bandit import BanditTask
from rl3jax.envs.registry import make_env
from rl3jax.estimators import make_estimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.meta_episode import MetaEnv, make_meta_env
from tests.helpers import _mixed_tasks, _run_and_compare, _task_obs_fn, estimator_features
from tests.reference import RefConfig, meta_episode_inputs


def _estimator(env, *, mode, std_errors, warm_start=False, known_states="all", max_sweeps=None):
    d = env.rl3_defaults
    th = env.default_params.max_steps_in_episode
    return QEstimator(num_states=env.num_states, num_actions=env.num_actions, gamma=0.95,
                      alpha_laplace=d.alpha_laplace, epsilon=d.epsilon,
                      max_sweeps=max_sweeps or d.max_sweeps or th, warm_start=warm_start, mode=mode,
                      std_errors=std_errors, q_denom=d.q_denom, known_states=known_states)


def _blocks(menv: MetaEnv):
    """Slices of the policy-input blocks of METHOD §1, read from the meta env's layout (whose offsets
    test_layout_offsets_by_hand checks)."""
    lay = menv.layout
    out = dict(prev_a=lay["prev_action"].slice, prev_r=lay["prev_reward"].slice, first=lay["first"].slice,
               time=slice(lay["meta_time"].offset, lay["task_time"].stop), task=lay["task_obs"].slice)
    if "rl3" in lay:
        out.update(adv=lay["advantages"].slice, value=lay["value"].slice, se=lay["std_errors"].slice,
                   counts=lay["counts"].slice)
    return out


# ------------------------------------------------------------------------------------------- reference sanity
def test_reference_hand_worked_bandit_step():
    """One pull of arm 2 paying 1: T̂(1|0,2) = (1+0.1)/(1+0.1·2), Q(0,2) = T̂·1 after the single sweep."""
    cfg = RefConfig(num_states=2, num_actions=5, max_sweeps=1, q_denom=1.0)
    inputs, rewards, ret = meta_episode_inputs(0, [(0, 2, 1.0, 1, True)], horizon=1, task_horizon=1,
                                               num_actions=5, task_obs=_task_obs_fn(2), estimator_cfg=cfg)
    q = 1.1 / 1.2
    last = inputs[-1]
    np.testing.assert_allclose(last[:5], [0, 0, 1, 0, 0])
    np.testing.assert_allclose(last[5:11], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0])  # r, first, t/H, τ/TH, obs state 0
    np.testing.assert_allclose(last[11:16], [-q, -q, 0.0, -q, -q])  # advantages
    np.testing.assert_allclose(last[16], q)  # value
    np.testing.assert_allclose(last[17:23], 0.0)  # s.e. off
    np.testing.assert_allclose(last[23:28], [0, 0, 0.1, 0, 0])  # counts / 10
    assert ret == 1.0


def test_reference_hand_worked_standard_errors():
    """Bandit, 2 arms, s.e. on: arm 0 pulled twice paying 1 and 0 (reward s.e. = 0.5/sqrt(1) = 0.5)."""
    cfg = RefConfig(num_states=2, num_actions=2, max_sweeps=1, std_errors=True)
    inputs, _, _ = meta_episode_inputs(0, [(0, 0, 1.0, 1, True), (0, 0, 0.0, 1, True)], horizon=2,
                                       task_horizon=1, num_actions=2, task_obs=_task_obs_fn(2),
                                       estimator_cfg=cfg)
    p1 = 2.1 / 2.2  # T̂(1|0,0)
    p0 = 0.1 / 2.2
    t_se = np.sqrt(p1 * (1 - p1) / 2.2)  # same for both next states (p(1−p) symmetric)
    # from E_v = 0, V = 0: Var = Σ T²·Var(R) + R̂²·Var(T) + Var(R)·Var(T); R̂(0,0,1) = 0.5, s.e. 0.5;
    # R̂(0,0,0) unseen: 0 with s.e. 1
    var = p1 ** 2 * 0.25 + 0.25 * t_se ** 2 + 0.25 * t_se ** 2 + p0 ** 2 * 1.0 + 1.0 * t_se ** 2
    e_untried = np.sqrt(2 * (0.25 * 1.0 + 1.0 / 12))  # T̂ = 1/2, R̂ = 0 with s.e. 1, T s.e. sqrt(1/12)
    last = inputs[-1]
    q = p1 * 0.5
    # layout, n = 2: prev a 0:2, r 2, first 3, time 4:6, obs 6:8, adv 8:10, V 10, s.e. 11:14, counts 14:16
    np.testing.assert_allclose(last[8:10], [0.0, -q])  # advantages
    np.testing.assert_allclose(last[10], q)
    np.testing.assert_allclose(last[11:14], [np.sqrt(var), e_untried, np.sqrt(var)])
    np.testing.assert_allclose(last[14:16], [0.2, 0.0])


# ------------------------------------------------------------------------------------------- JAX vs reference
# Each (family, estimator config, H) is one XLA compile of a few seconds on CPU, so the configurations below
# cover every value of each switch (mode, std errors, warm start, known states) rather than their product;
# every batch mixes tasks from all variants of the family (train and OOD).
BANDIT_TASKS, BANDIT_H = 24, 30


BANDIT_CASES = [
    # (mode, std_errors, warm_start, known_states)
    ("fresh", False, False, "all"),
    ("entered", True, True, "visited"),
]


@pytest.mark.parametrize("mode,std_errors,warm_start,known", BANDIT_CASES)
def test_bandit_matches_reference(mode, std_errors, warm_start, known, task_pool):
    env = make_env("bandit")
    est = _estimator(env, mode=mode, std_errors=std_errors, warm_start=warm_start, known_states=known)
    assert est.max_sweeps == 1
    tasks = _mixed_tasks(task_pool, "bandit", BANDIT_TASKS, seed=1)
    menv, rec, inputs = _run_and_compare(env, est, horizon=BANDIT_H, num_tasks=BANDIT_TASKS, seed=1, tasks=tasks)
    b = _blocks(menv)
    # TH = 1: every step ends the task episode, the agent is always shown the 'ready' state at τ = 0
    assert rec["over"].all() and rec["term"].all()
    np.testing.assert_array_equal(rec["obs"][:, :, b["task"]], np.broadcast_to([1.0, 0.0], (24, 31, 2)))
    np.testing.assert_array_equal(rec["obs"][:, 1:, b["time"]][..., 1], 0.0)
    if mode == "entered":
        # METHOD §2.4: with the original code's cache, bandit advantages/value (and their s.e.) are always zero
        np.testing.assert_array_equal(rec["obs"][:, :, b["adv"]], 0.0)
        np.testing.assert_array_equal(rec["obs"][:, :, b["value"]], 0.0)
        np.testing.assert_array_equal(rec["obs"][:, :, b["se"]], 0.0)
    else:
        assert np.abs(rec["obs"][:, 1:, b["value"]]).max() > 0.1  # fresh mode does carry information
    # counts: N(ready, ·)/10 sums to t/10
    np.testing.assert_allclose(rec["obs"][:, :, b["counts"]].sum(-1), np.tile(np.arange(31) / 10.0, (24, 1)),
                               atol=1e-5)


def test_bandit_ood_extreme_probabilities_match_reference():
    """p < 0 and p > 1 (unclipped OOD tasks) as explicit tasks."""
    env = make_env("bandit", "ood")
    probs = jnp.array([[-0.4, 1.3, 0.5, 0.0, 1.0]] * BANDIT_TASKS, jnp.float32)
    tasks = BanditTask(probs=probs, num_arms=5)
    est = _estimator(env, mode="fresh", std_errors=False)  # reuses a compile above
    _, rec, _ = _run_and_compare(env, est, horizon=BANDIT_H, num_tasks=BANDIT_TASKS, seed=5, tasks=tasks)
    a, r = rec["a"], rec["r"]
    assert (r[a == 0] == 0).all() and (r[a == 1] == 1).all() and (r[a == 4] == 1).all()


MDP_CASES = [
    # (mode, std_errors, warm_start, known_states, H, tasks); H is not a multiple of TH = 10
    ("fresh", False, False, "all", 43, 36),
    ("entered", True, True, "visited", 37, 18),
    ("fresh", True, False, "all", 37, 18),
]


@pytest.mark.parametrize("mode,std_errors,warm_start,known,horizon,num_tasks", MDP_CASES)
def test_mdp_matches_reference(mode, std_errors, warm_start, known, horizon, num_tasks, task_pool):
    env = make_env("mdp")
    est = _estimator(env, mode=mode, std_errors=std_errors, warm_start=warm_start, known_states=known)
    assert est.max_sweeps == 10 and est.q_denom == 10.0
    tasks = _mixed_tasks(task_pool, "mdp", num_tasks, seed=2)
    menv, rec, _ = _run_and_compare(env, est, horizon=horizon, num_tasks=num_tasks, seed=2, tasks=tasks)
    b = _blocks(menv)
    # TH = 10, H not a multiple of 10: resets after steps 10, 20, 30, 40 show state 0 with τ = 0
    for t in range(10, horizon + 1, 10):
        np.testing.assert_array_equal(rec["obs"][:, t, b["task"]][:, 0], 1.0)
        np.testing.assert_array_equal(rec["obs"][:, t, b["time"]][:, 1], 0.0)
        np.testing.assert_array_equal(rec["obs"][:, t, b["first"]], 0.0)
    np.testing.assert_array_equal(rec["obs"][:, 0, b["first"]], 1.0)
    assert not rec["term"].any()
    if std_errors:
        assert (rec["obs"][:, 1:, b["se"]] > 0).any()
    else:
        np.testing.assert_array_equal(rec["obs"][:, :, b["se"]], 0.0)


def test_mdp_early_stop_and_sweep_budget(task_pool):
    """Both ends of the stop rule are exercised (and agree, see _run_and_compare): early stops and the cap."""
    env = make_env("mdp")
    est = _estimator(env, mode="fresh", std_errors=False)
    tasks = _mixed_tasks(task_pool, "mdp", 36, seed=6)
    _, rec, _ = _run_and_compare(env, est, horizon=43, num_tasks=36, seed=6, tasks=tasks)  # reuses a compile
    sweeps = rec["ref_sweeps"]
    assert (sweeps == 10).any() and (sweeps < 10).any(), np.unique(sweeps)


class UpdateJitTest(chex.TestCase):
    """``update`` then ``features`` give the same values jitted and eager (8 transitions of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_and_features_with_and_without_jit(self):
        cfg = TrainConfig(env="mdp", algo="rl3", horizon=20)
        env = make_meta_env(cfg).env
        est = make_estimator(env, cfg)
        assert isinstance(est, QEstimator)
        jitted = estimator_features(self.variant(est.update), self.variant(est.features), est, env)
        chex.assert_trees_all_close(jitted, estimator_features(est.update, est.features, est, env), rtol=1e-6,
                                    atol=1e-7)
