"""rl3jax.baselines.generic: model-greedy policies, policy parameters, and the orderings theory
guarantees on held-out tasks (random below every baseline below the oracle, within 3 standard errors of the
paired per-task difference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl3jax import baselines as B
from rl3jax.evaluate import evaluate, held_out_tasks, run_baselines
from tests.helpers import (
    BANDIT_H,
    BANDIT_N,
    BANDIT_POLICIES,
    MDP_H,
    MDP_N,
    MDP_POLICIES,
    MDP_SLOW_POLICIES,
    _meta,
    _paired,
    _run,
)


def _model_best_sets(obs, env, horizon, tol=1e-5):
    """Per step, the maximisers of the RL³ advantage block (Q − V)/Q_DENOM shown in the policy input (METHOD §1),
    found by the layout of the meta env the model-* baselines run in (the family's with its estimator)."""
    layout = B.make_policy("model-greedy", _meta(env, horizon))[0].layout
    adv = obs[:, layout["advantages"].slice]
    return [set(np.nonzero(row >= row.max() - tol)[0].tolist()) for row in adv]


@pytest.mark.parametrize("env,horizon,num", [("bandit", BANDIT_H, BANDIT_N), ("mdp", MDP_H, MDP_N)])
def test_model_greedy_acts_on_the_estimators_shown_q(env, horizon, num):
    """model-greedy's action maximises the RL³ estimator's current Q, as the RL³ policy input shows it."""
    actions, _, obs, _ = _run(env, horizon, "model-greedy", num)
    for task in range(num):
        for t, best in enumerate(_model_best_sets(obs[task], env, horizon)):
            assert actions[task, t] in best, (env, task, t)


def test_model_epsilon_greedy_explores_at_rate_epsilon():
    """A step leaves the greedy set with probability ε·(n − |greedy set|)/n (uniform exploration over n arms)."""
    actions, _, obs, _ = _run("bandit", BANDIT_H, "model-epsilon-greedy", BANDIT_N)
    eps, n = 0.1, 5
    off, expected, var = 0, 0.0, 0.0
    for task in range(BANDIT_N):
        for t, best in enumerate(_model_best_sets(obs[task], "bandit", BANDIT_H)):
            p = eps * (n - len(best)) / n
            off += actions[task, t] not in best
            expected += p
            var += p * (1 - p)
    assert abs(off - expected) < 4 * math.sqrt(var), (off, expected)


@pytest.mark.parametrize("env,horizon,num,names", [
    ("bandit", BANDIT_H, BANDIT_N, BANDIT_POLICIES), ("mdp", MDP_H, MDP_N, MDP_POLICIES),
    pytest.param("mdp", MDP_H, MDP_N, MDP_SLOW_POLICIES, marks=pytest.mark.slow)])
def test_random_below_every_baseline_below_oracle(env, horizon, num, names):
    rand = _run(env, horizon, "random", num)[1]
    oracle = _run(env, horizon, "oracle", num)[1]
    for name in names:
        r = _run(env, horizon, name, num)[1]
        d, se = _paired(r, rand)
        assert d > 3 * se, (name, "not above random", d, se)
        d, se = _paired(r, oracle)
        assert d < 3 * se, (name, "above the oracle", d, se)


# ----------------------------------------------------------------------------------- harness, CLI
def test_evaluate_honours_policy_params_and_refuses_bad_ones():
    m = _meta("bandit", BANDIT_H)
    # ε = 1: uniformly random arms, expected return H * mean(p) per task (5 standard errors)
    res = evaluate(m, "epsilon-greedy", 300, policy_params={"epsilon": "1"})
    p = np.clip(np.asarray(held_out_tasks(m, 300).probs), 0, 1)
    assert abs(res["mean_return"] - BANDIT_H * p.mean()) < 5 * res["stderr"]
    with pytest.raises(ValueError, match="no parameter 'eps'.*epsilon"):
        evaluate(m, "epsilon-greedy", 10, policy_params={"eps": 0.1})
    with pytest.raises(ValueError, match="epsilon=1.5"):
        evaluate(m, "epsilon-greedy", 10, policy_params={"epsilon": 1.5})
    with pytest.raises(ValueError, match="'psrl' does not fit.*ucb"):
        evaluate(m, "psrl", 10)
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        evaluate(m, "nope", 10)


@pytest.mark.slow
@pytest.mark.parametrize("env", ["bandit", "mdp"])
def test_orderings_on_1000_tasks_at_h100(env):
    rows = {r["policy"]: r for r in run_baselines(env, None, 100, 1000)}
    rand, oracle = rows["random"], rows["oracle"]
    for name, r in rows.items():
        if r["skipped"] or name in ("random", "oracle"):
            continue
        se = math.hypot(r["stderr"], rand["stderr"])
        assert r["mean_return"] > rand["mean_return"] + 3 * se, name
        assert r["mean_return"] < oracle["mean_return"] + 3 * math.hypot(r["stderr"], oracle["stderr"]), name
