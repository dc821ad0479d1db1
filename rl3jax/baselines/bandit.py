"""Bernoulli-bandit baselines on Beta(1, 1) posteriors (``ENTRIES``), each scoring arms (``bandit_scores``)
from per-task success and failure counts of the previous actions and rewards it reads (METHOD §1).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.baselines.base import EPSILON, Baseline, Param, argmax_random, epsilon_mix, num_tasks, sharp_logits
from rl3jax.meta_episode import MetaEnv

BAYES_MAX_STATES = 2_000_000  # exchangeable posterior states the bayes-optimal table may hold
GITTINS_MAX_HORIZON = 200  # the calibration costs O(H^5) work: H=100 takes 3 s on a 2-core CPU, H=200 32x that


class IntractableError(ValueError):
    """A baseline's table cannot be built at this horizon; ``rl3jax.evaluate.run_baselines`` leaves it out."""


@functools.cache
def compute_gittins_table(horizon: int) -> np.ndarray:
    """Finite-horizon Gittins indices of a Bernoulli arm with a Beta(1, 1) prior.

    Returns ``G`` (float64, (H+1, H+1, H+1); cached per H): ``G[m, s, f]``, the index of an arm with ``s`` successes and
    ``f`` failures when ``m`` pulls remain (this one included), for s + f <= H - m (NaN elsewhere): the known
    arm's reward per pull λ that makes retiring to it at once (m·λ, final) as good as pulling the unknown arm now
    and acting optimally after (Gittins 1979; Gittins, Glazebrook & Weber 2011). With p = (s+1)/(s+f+2),

        V_λ(j, s, f) = max(j·λ, p·(1 + V_λ(j−1, s+1, f)) + (1−p)·V_λ(j−1, s, f+1)),  V_λ(0, ·) = 0;

    the gap g(λ) = C(λ) − m·λ (C: the value of pulling now) is convex, piecewise linear and decreasing, with its
    root in [p, 1]: found by Newton steps from the lower end, guarded by bisection, to |g| or a bracket < 1e-12,
    starting from G[m−1, s, f]. m = 1: the posterior mean.

    Raises ValueError for H < 1, ``IntractableError`` for H > ``GITTINS_MAX_HORIZON``.
    """
    h = int(horizon)
    if h < 1:
        raise ValueError(f"gittins: horizon must be >= 1, got {h}")
    if h > GITTINS_MAX_HORIZON:
        raise IntractableError(f"gittins: the index table is tractable for H <= {GITTINS_MAX_HORIZON}, got H={h}")
    table = np.full((h + 1, h + 1, h + 1), np.nan)
    for m in range(1, h + 1):
        span = h - m
        s0, f0 = np.nonzero(np.add.outer(np.arange(span + 1), np.arange(span + 1)) <= span)
        p0 = (s0 + 1.0) / (s0 + f0 + 2.0)
        if m == 1:
            table[1, s0, f0] = p0
            continue
        # warm start: the index does not decrease with the pulls left (more to gain from information), so
        # G[m-1] is a lower end with g >= 0; the bracket guards the rare case where it is not
        lam = np.maximum(p0, table[m - 1, s0, f0])
        lo, hi = p0.copy(), np.ones_like(p0)
        active = np.ones(len(p0), bool)
        for _ in range(200):
            idx = np.nonzero(active)[0]
            if len(idx) == 0:
                break
            g, dg = _gittins_gap(lam[idx], s0[idx], f0[idx], m)
            pos = g > 0
            lo[idx] = np.where(pos, lam[idx], lo[idx])
            hi[idx] = np.where(pos, hi[idx], lam[idx])
            newton = lam[idx] - g / dg
            inside = (newton > lo[idx]) & (newton < hi[idx])
            nxt = np.where(inside, newton, 0.5 * (lo[idx] + hi[idx]))
            done = (np.abs(g) < 1e-12) | (hi[idx] - lo[idx] < 1e-12)
            lam[idx] = np.where(done, lam[idx], nxt)
            active[idx] = ~done
        table[m, s0, f0] = lam
    return table


def _gittins_gap(lam: np.ndarray, s0: np.ndarray, f0: np.ndarray, m: int):
    """g(λ) = C(λ) − m·λ and dg/dλ for roots (s0, f0) with m pulls left, each root with its own λ (R,)."""
    v = np.zeros((len(lam), m + 1))  # depth m: no pulls left
    dv = np.zeros_like(v)
    s0c, n0c, lamc = s0[:, None].astype(np.float64), (s0 + f0)[:, None].astype(np.float64), lam[:, None]
    for d in range(m - 1, 0, -1):  # d pulls made since the root, m - d left; states u = successes among them
        u = np.arange(d + 1)
        p = (s0c + u + 1.0) / (n0c + d + 2.0)
        cont = p * (1.0 + v[:, 1:d + 2]) + (1.0 - p) * v[:, :d + 1]
        dcont = p * dv[:, 1:d + 2] + (1.0 - p) * dv[:, :d + 1]
        ret = lamc * (m - d)
        retire = ret >= cont
        v = np.where(retire, ret, cont)
        dv = np.where(retire, float(m - d), dcont)
    p0 = (s0 + 1.0) / (s0 + f0 + 2.0)
    c = p0 * (1.0 + v[:, 1]) + (1.0 - p0) * v[:, 0]
    dc = p0 * dv[:, 1] + (1.0 - p0) * dv[:, 0]
    return c - m * lam, dc - m


def _pair_id(s, f):
    """Index of the arm posterior (s successes, f failures): pairs ordered by n = s+f, then s."""
    n = s + f
    return n * (n + 1) // 2 + s


def _multiset_counts(num_arms: int, t_max: int, dtype=object) -> np.ndarray:
    """c[t], t < t_max: multisets of k arm posteriors (s, f) with t pulls in all, i.e. the coefficient of
    x^t y^k in Π_n (1 − y·x^n)^−(n+1) (n+1 pair types have n pulls), by a knapsack over the types."""
    poly = np.zeros((num_arms + 1, t_max), dtype=dtype)  # [arms so far, total pulls]
    poly[0, 0] = 1
    for n in range(t_max):
        for _ in range(n + 1):  # each of the n+1 types with n pulls, unlimited multiplicity
            for size in range(1, num_arms + 1):
                poly[size, n:] += poly[size - 1, :t_max - n]
    return poly[num_arms]


@functools.cache
def bayes_max_horizon(num_arms: int) -> int:
    """The largest H whose bayes-optimal table holds at most ``BAYES_MAX_STATES`` states (k=5: 26)."""
    t_max = 16
    while True:
        total = np.cumsum(_multiset_counts(num_arms, t_max, dtype=np.float64))  # cumulative: H = 1..t_max
        over = np.nonzero(total > BAYES_MAX_STATES)[0]
        if len(over):
            return int(over[0])  # total[h-1] counts H = h; the first H over the limit is over[0] + 1
        t_max *= 2


def _children(rows: np.ndarray, pair_s: np.ndarray, pair_n: np.ndarray) -> list[np.ndarray]:
    """(N, k) sorted pair ids -> the success and the failure children of pulling each slot, each (N, k, k) sorted
    (``pair_s``, ``pair_n``: successes and pulls of each pair id)."""
    k = rows.shape[1]
    s, n = pair_s[rows], pair_n[rows]
    out = []
    for new in (_pair_id(s + 1, n - s), _pair_id(s, n + 1 - s)):
        c = np.repeat(rows[:, None, :], k, axis=1)
        idx = np.arange(k)
        c[:, idx, idx] = new
        out.append(np.sort(c, axis=-1))
    return out


@functools.cache
def bayes_optimal_table(num_arms: int, horizon: int):
    """Exact Bayes-optimal action values of a k-armed Bernoulli bandit with independent Beta(1,1) priors.

    The posterior is the multiset of the arms' (successes, failures), canonically a sorted tuple of pair ids
    (the arms are exchangeable). Backward induction over the total pulls t = H−1..0:

        Q_t(x, i) = p_i·(1 + V_{t+1}(x + success on i)) + (1 − p_i)·V_{t+1}(x + failure on i),
        V_t(x) = max_i Q_t(x, i),  V_H = 0,  p_i = (s_i + 1)/(s_i + f_i + 2)   (Bellman 1956).

    Returns ``(rows, q)``: ``rows`` (N, k) int32, every reachable state's sorted pair ids, in lexicographic
    order; ``q`` (N, k) float64, the value of pulling each slot's arm; ``q[0].max()``: the expected return.

    Raises ValueError for H < 1, ``IntractableError`` for H > ``bayes_max_horizon(k)``.
    """
    k, h = int(num_arms), int(horizon)
    if h < 1:
        raise ValueError(f"bayes-optimal: horizon must be >= 1, got {h}")
    if h > bayes_max_horizon(k):
        raise IntractableError(f"bayes-optimal: exact dynamic programming is tractable only for H <= "
                               f"{bayes_max_horizon(k)} with k={k} arms ({BAYES_MAX_STATES:,} posterior states at "
                               f"most); got H={h}")
    n_pairs = (h + 1) * (h + 2) // 2
    pair_s = np.concatenate([np.arange(n + 1) for n in range(h + 1)])
    pair_n = np.concatenate([np.full(n + 1, n) for n in range(h + 1)])
    weights = n_pairs ** np.arange(k - 1, -1, -1, dtype=np.int64)  # lexicographic int64 key of a sorted row

    def key(rows):
        return rows.astype(np.int64) @ weights

    layers = [np.zeros((1, k), np.int64)]
    for _ in range(1, h):
        succ, fail = _children(layers[-1], pair_s, pair_n)
        allc = np.concatenate([succ.reshape(-1, k), fail.reshape(-1, k)])
        _, first = np.unique(key(allc), return_index=True)
        layers.append(allc[first])  # np.unique sorts by key = lexicographic order
    v_next, keys_next = None, None
    qs = [None] * h
    for t in range(h - 1, -1, -1):
        rows = layers[t]
        s, n = pair_s[rows], pair_n[rows]
        p = (s + 1.0) / (n + 2.0)
        if v_next is None:
            q = p
        else:
            succ, fail = _children(rows, pair_s, pair_n)
            v_s = v_next[np.searchsorted(keys_next, key(succ.reshape(-1, k)))].reshape(len(rows), k)
            v_f = v_next[np.searchsorted(keys_next, key(fail.reshape(-1, k)))].reshape(len(rows), k)
            q = p * (1.0 + v_s) + (1.0 - p) * v_f
        qs[t] = q
        v_next, keys_next = q.max(axis=1), key(rows)
    rows = np.concatenate(layers)
    q = np.concatenate(qs)
    order = np.argsort(key(rows), kind="stable")
    return rows[order].astype(np.int32), q[order]


def _row_search(rows: jax.Array, query: jax.Array) -> jax.Array:
    """Index of ``query`` (k,) in the lexicographically sorted ``rows`` (N, k) (binary search; must be there)."""
    n = rows.shape[0]

    def less(a, b):
        diff = a != b
        i = jnp.argmax(diff)
        return diff.any() & (a[i] < b[i])

    def body(_, c):
        lo, hi = c
        mid = (lo + hi) // 2
        go_right = less(rows[mid], query)
        return jnp.where(go_right, mid + 1, lo), jnp.where(go_right, hi, mid)

    lo, _ = jax.lax.fori_loop(0, max(1, math.ceil(math.log2(n + 1)) + 1), body, (jnp.int32(0), jnp.int32(n)))
    return jnp.minimum(lo, n - 1)


def bandit_scores(name: str, key: jax.Array, successes: jax.Array, failures: jax.Array, t: jax.Array,
                  horizon: int, consts=None, c: float = 0.2) -> jax.Array:
    """Scores (B, k) whose argmax (random tie-breaking) is the arm chosen by bandit baseline ``name``.

    ``successes``, ``failures``: (B, k) float32 counts per arm so far; ``t``: (B,) int32 pulls so far;
    ``horizon``: H; ``consts``: the tables of ``gittins`` / ``bayes-optimal`` (from their prepare step).
    Prior Beta(1, 1) on every arm; posterior mean μ_a = (s_a + 1)/(n_a + 2), n_a = s_a + f_a.

    * greedy, epsilon-greedy: μ_a.
    * ucb: μ_a + c·sqrt(2·ln(t + 2k) / (n_a + 2)): UCB1 (Auer et al. 2002) counting the prior's two
      pseudo-pulls per arm (RL²'s baseline, Duan et al. 2016).
    * thompson: one draw from Beta(s_a + 1, f_a + 1) per arm (Thompson 1933).
    * gittins: G[H − t, s_a, f_a] (``compute_gittins_table``).
    * bayes-optimal: the exact action value Q_t(x, a) (``bayes_optimal_table``).
    """
    n = successes + failures
    mean = (successes + 1.0) / (n + 2.0)
    k = successes.shape[-1]
    if name in ("greedy", "epsilon-greedy"):
        return mean
    if name == "ucb":
        total = t[:, None].astype(jnp.float32) + 2.0 * k
        return mean + c * jnp.sqrt(2.0 * jnp.log(total) / (n + 2.0))
    if name == "thompson":
        return jax.random.beta(key, successes + 1.0, failures + 1.0)
    if name == "gittins":
        m = jnp.clip(horizon - t, 1, horizon)[:, None]
        return consts[m, successes.astype(jnp.int32), failures.astype(jnp.int32)]
    if name == "bayes-optimal":
        rows, q = consts
        ids = _pair_id(successes.astype(jnp.int32), failures.astype(jnp.int32))
        order = jnp.argsort(ids, axis=-1)
        sorted_ids = jnp.take_along_axis(ids, order, axis=-1)
        row = jax.vmap(lambda qq: _row_search(rows, qq))(sorted_ids)
        q_sorted = q[row]
        return jnp.zeros_like(q_sorted).at[jnp.arange(q_sorted.shape[0])[:, None], order].set(q_sorted)
    raise ValueError(f"{name!r} is not a bandit index policy")


def bandit_build(name: str):
    """Builder of a Bernoulli-bandit posterior policy: the carry holds (key, successes, failures) per task."""

    def build(meta_env: MetaEnv, consts, tasks, key, params):
        num, k = num_tasks(tasks), meta_env.num_actions
        carry = (key, jnp.zeros((num, k), jnp.float32), jnp.zeros((num, k), jnp.float32))

        def step(carry, obs, state):
            key, succ, fail = carry
            key, k_score, k_tie, k_eps = jax.random.split(key, 4)
            pulled = (state.t > 0)[:, None] & (jnp.arange(k)[None, :] == state.prev_action[:, None])
            win = (state.prev_reward > 0.5)[:, None]
            succ, fail = succ + (pulled & win), fail + (pulled & ~win)
            scores = bandit_scores(name, k_score, succ, fail, state.t, meta_env.horizon, consts, params.get("c", 0.2))
            action = argmax_random(k_tie, scores)
            if "epsilon" in params:
                action = epsilon_mix(k_eps, action, params["epsilon"], k)
            return (key, succ, fail), sharp_logits(action, k)

        return step, carry

    return build


def prepare_bayes(meta_env, params):
    rows, q = bayes_optimal_table(meta_env.num_actions, meta_env.horizon)
    return jnp.asarray(rows), jnp.asarray(q, jnp.float32)


ENTRIES = (
    Baseline("greedy", ("bandit",), (), bandit_build("greedy"),
             "Greedy: the arm with the highest Beta(1,1) posterior mean (s+1)/(n+2), no exploration."),
    Baseline("epsilon-greedy", ("bandit",), (EPSILON,), bandit_build("epsilon-greedy"),
             "ε-greedy on the Beta(1,1) posterior mean (Sutton & Barto 2018, §2.2).", stochastic=True),
    Baseline("ucb", ("bandit",), (Param("c", 0.2, low=0.0),), bandit_build("ucb"),
             "UCB1 (Auer, Cesa-Bianchi & Fischer 2002) with RL²'s prior pseudo-counts (Duan et al. 2016): "
             "index (s+1)/(n+2) + c·sqrt(2 ln(t+2k)/(n+2))."),
    Baseline("thompson", ("bandit",), (), bandit_build("thompson"),
             "Thompson sampling with Beta(1,1) priors (Thompson 1933).", stochastic=True),
    Baseline("gittins", ("bandit",), (), bandit_build("gittins"),
             "Finite-horizon Gittins index (Gittins 1979; Gittins, Glazebrook & Weber 2011) by calibration "
             "against a known arm with the remaining pulls.",
             prepare=lambda meta_env, p: jnp.asarray(compute_gittins_table(meta_env.horizon), jnp.float32)),
    Baseline("bayes-optimal", ("bandit",), (), bandit_build("bayes-optimal"),
             "Exact Bayes-optimal policy by dynamic programming over exchangeable Beta posteriors "
             "(Bellman 1956); small H only.", prepare=prepare_bayes),
)
