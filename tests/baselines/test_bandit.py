"""Classical baselines (rl3jax.baselines) against exact values, brute force, the loop-based references in
tests/baselines/reference.py, and the orderings theory guarantees on held-out tasks.

Tolerances: exact computations agree to 1e-9 (float64 NumPy) or 1e-4 (float32 JAX scores); a replayed
deterministic policy must pick, at every step, an action in the reference's set of maximisers (within 1e-4);
policies that draw their own random numbers (ε-greedy, Thompson, PSRL, OPSRL) must agree with the reference
in mean return within 4 standard errors of the difference; orderings hold within 3 standard errors of the
paired per-task difference (same held-out tasks).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from rl3jax import baselines as B
from rl3jax.baselines import bandit, base, posterior
from tests.baselines import reference as ref
from tests.helpers import BANDIT_H, BANDIT_N, BANDIT_POLICIES, _paired, _run


def _counts(actions, rewards, k):
    """Per-step (successes, failures) lists before each step of one bandit meta-episode (loop)."""
    s, f = [0] * k, [0] * k
    for a, r in zip(actions, rewards):
        yield list(s), list(f)
        if r > 0.5:
            s[a] += 1
        else:
            f[a] += 1


# ------------------------------------------------------------------------------ exact bandit tables
def _decode(row, horizon):
    pairs = [(s, n - s) for n in range(horizon + 1) for s in range(n + 1)]
    return [pairs[i] for i in row]


@pytest.mark.parametrize("k,horizons", [(2, range(1, 7)), (3, range(1, 6))])
def test_bayes_optimal_table_equals_brute_force_enumeration(k, horizons):
    for h in horizons:
        rows, q = bandit.bayes_optimal_table(k, h)
        v, q0 = ref.bruteforce_bayes([(0, 0)] * k, h)
        assert q[0].max() == pytest.approx(v, abs=1e-9)
        np.testing.assert_allclose(q[0], q0, atol=1e-9)
    # every posterior state of the k=2, H=6 table: its Q equals brute force over the pulls left
    h = 6 if k == 2 else 5
    rows, q = bandit.bayes_optimal_table(k, h)
    for row, q_row in zip(rows, q):
        counts = _decode(row, h)
        left = h - sum(s + f for s, f in counts)
        np.testing.assert_allclose(q_row, ref.bruteforce_bayes(counts, left)[1], atol=1e-9)


def test_bayes_optimal_k3_h6_root_by_brute_force():
    rows, q = bandit.bayes_optimal_table(3, 6)
    assert q[0].max() == pytest.approx(ref.bruteforce_bayes([(0, 0)] * 3, 6)[0], abs=1e-9)


def test_bayes_optimal_state_count_and_horizon_limit():
    def count(k, h):  # exchangeable posterior states (multisets of k (s, f) pairs) with fewer than h pulls in all
        return int(sum(bandit._multiset_counts(k, h)))

    for k, h in ((2, 6), (3, 5), (5, 8)):
        assert len(bandit.bayes_optimal_table(k, h)[0]) == count(k, h)
    limit = bandit.bayes_max_horizon(5)
    assert count(5, limit) <= bandit.BAYES_MAX_STATES < count(5, limit + 1)
    assert limit == 26
    with pytest.raises(B.IntractableError, match=r"H <= 26 with k=5.*got H=27"):
        bandit.bayes_optimal_table(5, 27)


def test_gittins_table_equals_bisection_reference():
    h = 8
    g = bandit.compute_gittins_table(h)
    for m in range(1, h + 1):
        for s in range(h - m + 1):
            for f in range(h - m - s + 1):
                assert g[m, s, f] == pytest.approx(ref.gittins_index(m, s, f, iters=50), abs=1e-9), (m, s, f)
    assert g[1, 2, 1] == pytest.approx(3 / 5)  # one pull left: the posterior mean
    assert np.isnan(g[h, 1, 0])  # unreachable: H pulls left after a pull


def test_gittins_rule_is_bayes_optimal_on_one_armed_bandit():
    """Pulling the unknown arm iff its finite-horizon Gittins index >= λ is optimal against a known arm λ."""
    h = 10
    g = bandit.compute_gittins_table(h)
    for lam in (0.05, 0.3, 0.5, 0.61, 0.83, 0.97):
        rule = lambda j, s, f, lam=lam: g[j, s, f] >= lam  # noqa: E731
        for m in range(1, h + 1):
            for s in range(h - m + 1):
                for f in range(h - m - s + 1):
                    best = ref.one_armed_optimal(m, s, f, lam, {})
                    assert ref.one_armed_policy_value(m, s, f, lam, rule) == pytest.approx(best, abs=1e-9)


def test_bayes_optimal_value_bounds_every_index_policy_exactly():
    """Exact Bayesian expected returns (k=3, H=6): no index policy beats the Bayes-optimal table."""
    k, h = 3, 6
    v_star = bandit.bayes_optimal_table(k, h)[1][0].max()
    g = bandit.compute_gittins_table(h)

    def first_best(scores):
        return int(np.argmax(np.asarray(scores) >= max(scores) - 1e-12))

    policies = {
        "greedy": lambda c, t: first_best(ref.bandit_score("greedy", [s for s, _ in c], [f for _, f in c], t)),
        "ucb": lambda c, t: first_best(ref.bandit_score("ucb", [s for s, _ in c], [f for _, f in c], t)),
        "gittins": lambda c, t: first_best([g[h - t, s, f] for s, f in c]),
    }
    values = {n: ref.bayes_policy_value(k, h, p) for n, p in policies.items()}
    for n, v in values.items():
        assert v <= v_star + 1e-12, n
    assert values["gittins"] > values["greedy"] - 1e-12  # the index accounts for the value of information


# ------------------------------------------------------------------------- hand-built decisions
@functools.cache
def _decide_fn(name, horizon):
    def decide(key, s, f, t, consts, c):
        k_score, k_tie = jax.random.split(key)
        scores = bandit.bandit_scores(name, k_score, s, f, t, horizon, consts, c=c)
        return base.argmax_random(k_tie, scores), scores

    return jax.jit(jax.vmap(decide, in_axes=(0, None, None, None, None, None)))


def _decide(name, s, f, t, draws=1, c=0.2, horizon=20, consts=None):
    keys = jax.random.split(jax.random.key(3), draws)
    s = jnp.asarray([s], jnp.float32)
    f = jnp.asarray([f], jnp.float32)
    a, scores = _decide_fn(name, horizon)(keys, s, f, jnp.asarray([t], jnp.int32), consts, c)
    return np.asarray(a)[:, 0], np.asarray(scores)[:, 0]


def test_greedy_decisions_on_hand_built_posteriors():
    a, scores = _decide("greedy", [3, 0, 1], [1, 0, 1], t=6)
    np.testing.assert_allclose(scores[0], [4 / 6, 1 / 2, 2 / 4], rtol=1e-6)
    assert a[0] == 0
    # arms 0 and 1 tie at 2/3: random tie-breaking between them, never arm 2
    a, _ = _decide("greedy", [1, 1, 0], [0, 0, 0], t=2, draws=400)
    assert set(a.tolist()) == {0, 1}
    assert abs((a == 0).mean() - 0.5) < 4 * math.sqrt(0.25 / 400)


def test_ucb_decisions_on_hand_built_posteriors():
    # k=2, t=11: arm 0 has 8/10 successes, arm 1 0/1. Means 9/12 and 1/3; bonuses c*sqrt(2 ln 15 / 12) and
    # c*sqrt(2 ln 15 / 3): the exploration bonus wins once c > (9/12 - 1/3) / (sqrt(2ln15/3) - sqrt(2ln15/12))
    s, f, t = [8, 0], [2, 1], 11
    b0, b1 = math.sqrt(2 * math.log(15) / 12), math.sqrt(2 * math.log(15) / 3)
    flip = (9 / 12 - 1 / 3) / (b1 - b0)
    assert 0.6 < flip < 0.63
    for c, arm in ((0.2, 0), (flip - 0.01, 0), (flip + 0.01, 1), (1.0, 1)):
        a, scores = _decide("ucb", s, f, t, c=c)
        np.testing.assert_allclose(scores[0], [9 / 12 + c * b0, 1 / 3 + c * b1], rtol=1e-5)
        assert a[0] == arm, c
    # the reference formula agrees
    assert ref.bandit_score("ucb", s, f, t, c=1.0) == pytest.approx(_decide("ucb", s, f, t, c=1.0)[1][0], rel=1e-5)


def test_thompson_choice_frequencies_match_exact_probabilities():
    s, f = [2, 0, 5], [1, 0, 6]  # posteriors Beta(3,2), Beta(1,1), Beta(6,7)
    draws = 4000
    a, _ = _decide("thompson", s, f, t=14, draws=draws)
    dists = [stats.beta(si + 1, fi + 1) for si, fi in zip(s, f)]
    for i, d in enumerate(dists):
        others = [o for j, o in enumerate(dists) if j != i]
        p_exact = integrate.quad(lambda x, d=d, others=others: d.pdf(x) * np.prod([o.cdf(x) for o in others]), 0, 1)[0]
        freq = (a == i).mean()
        assert abs(freq - p_exact) < 4 * math.sqrt(p_exact * (1 - p_exact) / draws), (i, freq, p_exact)


def test_gamma_and_dirichlet_samplers_match_scipy():
    """Kolmogorov–Smirnov distance below its 0.1% critical value 1.95/sqrt(n) (fixed keys: deterministic)."""
    n = 20000
    gamma = jax.jit(posterior.gamma_sample)
    for i, a in enumerate((0.3, 1.0, 2.5, 12.0)):
        x = np.asarray(gamma(jax.random.key(i), jnp.full((n,), a)))
        assert stats.kstest(x, stats.gamma(a).cdf).statistic < 1.95 / math.sqrt(n), a
    alpha = jnp.asarray([1.0, 2.0, 5.0, 0.5])
    d = np.asarray(jax.jit(posterior.dirichlet_sample)(jax.random.key(9), jnp.broadcast_to(alpha, (n, 4))))
    np.testing.assert_allclose(d.sum(1), 1.0, rtol=1e-5)
    for j in range(4):  # marginal Beta(α_j, Σα − α_j)
        marg = stats.beta(float(alpha[j]), float(alpha.sum() - alpha[j]))
        assert stats.kstest(d[:, j], marg.cdf).statistic < 1.95 / math.sqrt(n), j


# ---------------------------------------------------------------- JAX versus NumPy, on held-out tasks
@pytest.mark.parametrize("name", ["greedy", "ucb", "gittins", "bayes-optimal", "model-greedy"])
def test_deterministic_bandit_baselines_replay_the_reference(name):
    """Every action the JAX policy took is a maximiser of the reference's score given the same history."""
    actions, rewards, _, _ = _run("bandit", BANDIT_H, name, BANDIT_N)
    k = 5
    g = bandit.compute_gittins_table(BANDIT_H) if name == "gittins" else None
    for task in range(BANDIT_N):
        for t, (s, f) in enumerate(_counts(actions[task], rewards[task], k)):
            if name in ("greedy", "ucb"):
                scores = ref.bandit_score(name, s, f, t)
            elif name == "gittins":
                scores = [g[BANDIT_H - t, s[i], f[i]] for i in range(k)]
            elif name == "model-greedy":
                scores = ref.bandit_model_q(s, f)
            else:
                scores = ref.bayes_q(list(zip(s, f)), BANDIT_H - t)
            assert actions[task, t] in ref.best_set(scores), (name, task, t, scores)


@pytest.mark.parametrize("name", ["epsilon-greedy", "thompson"])
def test_stochastic_bandit_baselines_agree_with_numpy_in_mean(name):
    _, rewards, _, tasks = _run("bandit", BANDIT_H, name, BANDIT_N)
    rng = np.random.default_rng(5)
    probs = np.asarray(tasks.probs)
    ref_returns = np.array([ref.simulate_bandit(name, p, BANDIT_H, rng) for p in probs])
    jax_returns = rewards.sum(1)
    se = math.sqrt(jax_returns.var(ddof=1) / BANDIT_N + ref_returns.var(ddof=1) / BANDIT_N)
    assert abs(jax_returns.mean() - ref_returns.mean()) < 4 * se


def test_bayes_optimal_is_best_bandit_baseline_and_matches_its_value():
    best = _run("bandit", BANDIT_H, "bayes-optimal", BANDIT_N)[1]
    for name in BANDIT_POLICIES:
        d, se = _paired(_run("bandit", BANDIT_H, name, BANDIT_N)[1], best)
        assert d <= 3 * se, (name, d, se)
    # held-out tasks are drawn from the prior (p ~ U(0,1)): the mean return estimates the Bayes value
    v_star = bandit.bayes_optimal_table(5, BANDIT_H)[1][0].max()
    r = best.sum(1)
    assert abs(r.mean() - v_star) < 4 * r.std(ddof=1) / math.sqrt(BANDIT_N)
