"""Independent loop-based NumPy / pure-Python versions of the classical baselines, written from the definitions
(not from rl3jax.baselines), for the tests in tests/baselines/.

Conventions: Beta(1,1) priors on Bernoulli arms, posterior mean (s+1)/(n+2); an MDP's posterior is
Dirichlet(α0 + counts) per (s, a) and a normal mean reward with prior N(μ0, 1/τ0) and known noise precision τ.
"""

from __future__ import annotations

import functools
import math

import numpy as np


# ------------------------------------------------------------------------------------- bandit scores
def bandit_score(name: str, s: list[int], f: list[int], t: int, c: float = 0.2) -> list[float]:
    """Per-arm score of greedy / ucb from the definitions (loop over arms)."""
    k = len(s)
    out = []
    for a in range(k):
        n = s[a] + f[a]
        mean = (s[a] + 1) / (n + 2)
        if name in ("greedy", "epsilon-greedy"):
            out.append(mean)
        elif name == "ucb":
            out.append(mean + c * math.sqrt(2.0 * math.log(t + 2 * k) / (n + 2)))
        else:
            raise ValueError(name)
    return out


def best_set(scores, tol: float = 1e-4) -> set[int]:
    m = max(scores)
    return {i for i, v in enumerate(scores) if v >= m - tol}


# ---------------------------------------------------------------------------- Gittins by bisection
def pull_value(j: int, s: int, f: int, value, lam: float, memo: dict) -> float:
    """Pulling the Beta(s+1, f+1) arm with j steps left: expected reward plus ``value`` of the j−1 steps after."""
    p = (s + 1) / (s + f + 2)
    return p * (1 + value(j - 1, s + 1, f, lam, memo)) + (1 - p) * value(j - 1, s, f + 1, lam, memo)


def one_armed_retire_value(j: int, s: int, f: int, lam: float, memo: dict) -> float:
    """Value of the retirement problem: j pulls left, unknown arm Beta(s+1, f+1), retire for λ per pull."""
    if j == 0:
        return 0.0
    key = (j, s, f)
    if key not in memo:
        memo[key] = max(j * lam, pull_value(j, s, f, one_armed_retire_value, lam, memo))
    return memo[key]


def gittins_index(m: int, s: int, f: int, iters: int = 60) -> float:
    """The calibrating λ by plain bisection on [0, 1]: pulling now (then acting optimally) vs retiring (m·λ)."""
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        lam = 0.5 * (lo + hi)
        if pull_value(m, s, f, one_armed_retire_value, lam, {}) > m * lam:
            lo = lam
        else:
            hi = lam
    return 0.5 * (lo + hi)


def one_armed_optimal(j: int, s: int, f: int, lam: float, memo: dict) -> float:
    """Bayes-optimal value of a one-armed bandit: each of j steps pull the Beta arm or a known arm paying λ."""
    if j == 0:
        return 0.0
    key = (j, s, f)
    if key not in memo:
        known = lam + one_armed_optimal(j - 1, s, f, lam, memo)
        memo[key] = max(pull_value(j, s, f, one_armed_optimal, lam, memo), known)
    return memo[key]


def one_armed_policy_value(j: int, s: int, f: int, lam: float, pull_unknown) -> float:
    """Expected return of the policy ``pull_unknown(j, s, f) -> bool`` in the same one-armed bandit."""
    if j == 0:
        return 0.0
    if pull_unknown(j, s, f):
        p = (s + 1) / (s + f + 2)
        return p * (1 + one_armed_policy_value(j - 1, s + 1, f, lam, pull_unknown)) + \
            (1 - p) * one_armed_policy_value(j - 1, s, f + 1, lam, pull_unknown)
    return lam + one_armed_policy_value(j - 1, s, f, lam, pull_unknown)


# -------------------------------------------------------------------- Bayes-optimal by brute force
def bruteforce_bayes(counts: list[tuple[int, int]], remaining: int) -> tuple[float, list[float]]:
    """Optimal expected reward over ``remaining`` pulls from per-arm (s, f), by enumerating every pull and
    reward sequence (expectimax without memoisation or symmetry). Returns (value, per-arm Q)."""
    if remaining == 0:
        return 0.0, [0.0] * len(counts)
    qs = []
    for a, (s, f) in enumerate(counts):
        p = (s + 1) / (s + f + 2)
        win = list(counts)
        win[a] = (s + 1, f)
        lose = list(counts)
        lose[a] = (s, f + 1)
        qs.append(p * (1 + bruteforce_bayes(win, remaining - 1)[0])
                  + (1 - p) * bruteforce_bayes(lose, remaining - 1)[0])
    return max(qs), qs


@functools.cache
def _memo_bayes(state: tuple, remaining: int) -> float:
    if remaining == 0:
        return 0.0
    return max(_memo_bayes_q(state, remaining))


@functools.cache
def _memo_bayes_q(state: tuple, remaining: int) -> tuple:
    qs = []
    for a, (s, f) in enumerate(state):
        p = (s + 1) / (s + f + 2)
        win = tuple(sorted(state[:a] + ((s + 1, f),) + state[a + 1:]))
        lose = tuple(sorted(state[:a] + ((s, f + 1),) + state[a + 1:]))
        qs.append(p * (1 + _memo_bayes(win, remaining - 1)) + (1 - p) * _memo_bayes(lose, remaining - 1))
    return tuple(qs)


def bayes_q(counts: list[tuple[int, int]], remaining: int) -> list[float]:
    """Bayes-optimal Q per arm (memoised recursion over sorted posterior tuples; k=5 at H <= 10 is quick)."""
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    q_sorted = _memo_bayes_q(tuple(counts[i] for i in order), remaining)
    q = [0.0] * len(counts)
    for slot, arm in enumerate(order):
        q[arm] = q_sorted[slot]
    return q


def bayes_policy_value(k: int, horizon: int, choose) -> float:
    """Exact Bayesian expected return (p ~ U(0,1)^k) of a deterministic policy ``choose(counts, t) -> arm``."""

    def value(counts, t):
        if t == horizon:
            return 0.0
        a = choose(counts, t)
        s, f = counts[a]
        p = (s + 1) / (s + f + 2)
        win, lose = list(counts), list(counts)
        win[a], lose[a] = (s + 1, f), (s, f + 1)
        return p * (1 + value(win, t + 1)) + (1 - p) * value(lose, t + 1)

    return value([(0, 0)] * k, 0)


# ------------------------------------------------------------------------- bandit simulations
def simulate_bandit(name: str, probs: np.ndarray, horizon: int, rng: np.random.Generator,
                    epsilon: float = 0.1) -> float:
    """One meta-episode of epsilon-greedy or Thompson sampling on a Bernoulli bandit; returns the total reward."""
    k = len(probs)
    s, f = [0] * k, [0] * k
    total = 0.0
    for _ in range(horizon):
        if name == "epsilon-greedy":
            if rng.random() < epsilon:
                a = int(rng.integers(k))
            else:
                a = int(rng.choice(sorted(best_set(bandit_score("greedy", s, f, 0), 1e-9))))
        elif name == "thompson":
            a = int(np.argmax([rng.beta(s[i] + 1, f[i] + 1) for i in range(k)]))
        else:
            raise ValueError(name)
        r = float(rng.random() < probs[a])
        total += r
        if r > 0.5:
            s[a] += 1
        else:
            f[a] += 1
    return total


def bandit_model_q(s: list[int], f: list[int], alpha: float = 0.1) -> list[float]:
    """The RL³ bandit estimator's Q(ready, a) from METHOD §2 (K = 2 states, one sweep from Q = 0):
    T̂(pulled | ready, a)·R̄ = (N + α)/(N + 2α)·(successes/N) for a tried arm, 0 for an untried one."""
    out = []
    for a in range(len(s)):
        n = s[a] + f[a]
        out.append(0.0 if n == 0 else (n + alpha) / (n + 2 * alpha) * s[a] / n)
    return out


# ------------------------------------------------------------------------------- MDP posteriors
class MDPPosterior:
    """Loop-built posterior statistics of one task, from what the policy sees (METHOD §1)."""

    def __init__(self, n_s: int, n_a: int):
        self.n = np.zeros((n_s, n_a, n_s))
        self.r_n = np.zeros((n_s, n_a))
        self.r_sum = np.zeros((n_s, n_a))

    def add(self, s, a, r, s_next, s_next_seen: bool):
        self.r_n[s, a] += 1
        self.r_sum[s, a] += r
        if s_next_seen:  # the state a task episode ends in is never shown
            self.n[s, a, s_next] += 1

    def reward_mean_prec(self, mu0=0.0, tau0=1.0, tau=1.0):
        prec = tau0 + self.r_n * tau
        return (tau0 * mu0 + tau * self.r_sum) / prec, prec


def finite_horizon_qs(t_mat: np.ndarray, r: np.ndarray, steps: int) -> list[np.ndarray]:
    """[Q_1, ..., Q_steps]: Q_1 = R, Q_k(s,a) = R(s,a) + Σ_s' T(s'|s,a) max_a' Q_{k-1}(s',a')."""
    out, q = [], np.zeros_like(r)
    for _ in range(steps):
        q = r + t_mat @ q.max(axis=1)
        out.append(q)
    return out


def map_greedy_q(post: MDPPosterior, steps: int, alpha0=1.0, mu0=0.0, tau0=1.0, tau=1.0) -> np.ndarray:
    mean, _ = post.reward_mean_prec(mu0, tau0, tau)
    counts = alpha0 + post.n
    return finite_horizon_qs(counts / counts.sum(-1, keepdims=True), mean, steps)[-1]


def simulate_psrl(transitions: np.ndarray, mean_rewards: np.ndarray, noise: float, horizon: int, task_horizon: int,
                  rng: np.random.Generator, samples: int = 1, alpha0=1.0, mu0=0.0, tau0=1.0, tau=1.0) -> float:
    """One meta-episode of PSRL (samples=1) or OPSRL (max over ``samples`` posterior MDPs); returns the total."""
    n_s, n_a = mean_rewards.shape
    post = MDPPosterior(n_s, n_a)
    s, step_in_ep, total, q_tab = 0, 0, 0.0, None
    for t in range(horizon):
        left = min(task_horizon - step_in_ep, horizon - t)
        if step_in_ep == 0:
            mean, prec = post.reward_mean_prec(mu0, tau0, tau)
            qs = []
            for _ in range(samples):
                g = rng.gamma(alpha0 + post.n)  # Dirichlet(α) = independent Gamma(α_i, 1) draws, normalised
                t_s = g / g.sum(axis=-1, keepdims=True)
                r_s = mean + rng.standard_normal(mean.shape) / np.sqrt(prec)
                qs.append(finite_horizon_qs(t_s, r_s, task_horizon))
            q_tab = [np.max([qs[i][k] for i in range(samples)], axis=0) for k in range(task_horizon)]
        q = q_tab[left - 1][s]
        a = int(rng.choice(sorted(best_set(list(q), 1e-9))))
        s_next = int(rng.choice(n_s, p=transitions[s, a] / transitions[s, a].sum()))
        r = mean_rewards[s, a] + noise * rng.standard_normal()
        total += r
        step_in_ep += 1
        over = step_in_ep >= task_horizon
        post.add(s, a, r, s_next, not over)
        s = 0 if over else s_next
        step_in_ep = 0 if over else step_in_ep
    return total
