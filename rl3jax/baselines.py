"""Classical baseline policies, evaluated in the same harness (``rl3jax.evaluate``) as learned policies.

A policy in the harness is ``(step, carry)`` with ``step(carry, obs, meta_state) -> (carry, logits)`` over a
batch of B tasks (``rl3jax.rollout.rollout``). Every baseline here chooses its own action (with its own PRNG
key in the carry, for random tie-breaking, exploration and posterior samples) and emits *sharp* logits
(0 for the chosen action, -1e3 for the others), so sampling from them and taking their argmax give the same
action: the harness's ``greedy`` flag does not change a baseline.

Baselines read what a learned policy reads (the previous action and reward, METHOD §1) from the meta state, plus
the current task state (``env.state_index``); ``oracle`` reads the task itself and ``model-greedy`` the RL³
estimator's state. The registry ``BASELINES`` maps each name to the families it fits, its parameters (with
defaults and allowed ranges), its constructor and its source:

=======================  =====================  ========================================================
name                     families               source
=======================  =====================  ========================================================
random                   every family           uniform random actions
oracle                   families with a model  finite-horizon value iteration on the true task
model-greedy             bandit, mdp, grids     greedy on the RL³ estimator's Q (Bhatia et al. 2023, §2)
model-epsilon-greedy     bandit, mdp, grids     the same, ε-greedy
greedy                   bandit                 posterior-mean greedy (Beta(1,1) prior)
epsilon-greedy           bandit                 ε-greedy on the posterior mean (Sutton & Barto 2018, §2.2)
ucb                      bandit                 UCB1 (Auer et al. 2002) with the prior pseudo-counts of
                                                RL²'s baseline (Duan et al. 2016)
thompson                 bandit                 Thompson sampling (Thompson 1933)
gittins                  bandit                 finite-horizon Gittins index by calibration against a
                                                known arm (Gittins 1979; Gittins, Glazebrook & Weber 2011)
bayes-optimal            bandit (small H)       exact Bayes-optimal dynamic programming (Bellman 1956)
psrl                     mdp                    posterior sampling RL (Osband, Russo & Van Roy 2013)
opsrl                    mdp                    optimistic PSRL (Agrawal & Jia 2017)
map-greedy               mdp                    certainty equivalence on the posterior mean
=======================  =====================  ========================================================

MDP posteriors (psrl, opsrl, map-greedy) learn from what the policy input shows: the state a task episode
ends in is never shown (METHOD §1), so that last transition updates the reward posterior only.

``rl3jax.evaluate.run_baselines(env, variant, horizon, episodes)`` evaluates every fitting baseline on the same
held-out tasks (used by ``rl3jax baselines`` and the report).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.config import TrainConfig
from rl3jax.estimators import make_estimator
from rl3jax.meta_episode import MetaEnv
from rl3jax.outputs import atomic_write

SHARP = 1e3  # logit gap between the chosen action and the others (exp(-1000) == 0 in float32)
TIE_TOL = 1e-5  # scores within this of the best count as tied (random tie-breaking)
BAYES_MAX_STATES = 2_000_000  # exchangeable posterior states the bayes-optimal table may hold
GITTINS_VERSION = "v1"  # bump when the table's definition changes (on-disk cache key)
GITTINS_MAX_HORIZON = 200  # the calibration costs O(H^5) work: H=100 takes 3 s here, H=200 about 32x that


class IntractableError(ValueError):
    """A baseline's table cannot be built at this horizon (bayes-optimal beyond ``BAYES_MAX_STATES``, gittins
    beyond ``GITTINS_MAX_HORIZON``). ``rl3jax.evaluate.run_baselines`` and ``rl3jax report`` leave such a
    baseline out."""


# ------------------------------------------------------------------------------------------ helpers
def sharp_logits(action: jax.Array, num_actions: int) -> jax.Array:
    """(B,) int actions -> (B, n) logits: 0 at the action, -1e3 elsewhere (argmax = every sample = action)."""
    return SHARP * (jax.nn.one_hot(action, num_actions) - 1.0)


def argmax_random(key: jax.Array, scores: jax.Array, tol: float = TIE_TOL) -> jax.Array:
    """Per row of ``scores`` (B, n): an index of the maximum, uniformly at random among those within ``tol``."""
    best = scores >= scores.max(axis=-1, keepdims=True) - tol
    u = jax.random.uniform(key, scores.shape)
    return jnp.argmax(jnp.where(best, u, -1.0), axis=-1).astype(jnp.int32)


def _epsilon_mix(key: jax.Array, greedy_action: jax.Array, epsilon: float, n: int) -> jax.Array:
    """With probability ε a uniformly random action (any of the n, the greedy one included), else the greedy."""
    k_e, k_a = jax.random.split(key)
    explore = jax.random.uniform(k_e, greedy_action.shape) < epsilon
    return jnp.where(explore, jax.random.randint(k_a, greedy_action.shape, 0, n), greedy_action).astype(jnp.int32)


def _num(tasks) -> int:
    return jax.tree.leaves(tasks)[0].shape[0]


# ----------------------------------------------------------------------------------- random, oracle
def finite_horizon_values(meta_env: MetaEnv, task) -> jax.Array:
    """V[k, s]: optimal expected reward over the next k steps of a meta-episode from state s (one task).

    ``k`` = 0..min(TH, H); absorbing states restart the task episode (value of the start state).
    """
    t_true, r_true, absorbing, start = meta_env.env.true_model(task)
    k_max = min(meta_env.task_horizon, meta_env.horizon)

    def backup(v, _):
        v_next = jnp.where(absorbing, v[start], v)  # an absorbing state restarts the task episode
        q = r_true + jnp.einsum("sat,t->sa", t_true, v_next)
        v_new = q.max(axis=1)
        return v_new, v_new

    v0 = jnp.zeros(t_true.shape[0], jnp.float32)
    _, vs = jax.lax.scan(backup, v0, None, length=k_max)
    return jnp.concatenate([v0[None], vs], axis=0)


def oracle_policy(meta_env: MetaEnv, tasks):
    """``(policy_step, carry)`` for the task-knowing oracle over a batch of tasks.

    It acts optimally for the remaining budget of the task episode, by finite-horizon value iteration on the
    true model (``finite_horizon_values``); its logits are sharp (argmax ties: the first action).
    """
    if not meta_env.env.has_true_model:
        raise ValueError(f"the oracle needs a family with a known model; {meta_env.env.name} has none")
    v_tab = jax.vmap(lambda t: finite_horizon_values(meta_env, t))(tasks)

    def q_values(task, v, state):
        t_true, r_true, absorbing, start = meta_env.env.true_model(task)
        s = meta_env.env.state_index(state.env_state, task)
        k = jnp.minimum(meta_env.task_horizon - state.tau, meta_env.horizon - state.t)
        v_prev = v[jnp.maximum(k - 1, 0)]
        v_next = jnp.where(absorbing, v_prev[start], v_prev)
        return r_true[s] + t_true[s] @ v_next

    def step(carry, obs, state):
        q = jax.vmap(q_values)(tasks, v_tab, state)
        return carry, SHARP * (q - q.max(axis=1, keepdims=True))  # sharp logits: greedy either way

    return step, jnp.zeros(())


def random_policy(meta_env: MetaEnv, num: int, key: jax.Array | None = None):
    """Uniformly random actions for ``num`` tasks, drawn from the carry's key (sharp logits)."""
    key = jax.random.key(0) if key is None else key
    n = meta_env.num_actions

    def step(carry, obs, state):
        key, k = jax.random.split(carry)
        return key, sharp_logits(jax.random.randint(k, (num,), 0, n), n)

    return step, key


# ------------------------------------------------------------------------ Bernoulli bandit posteriors
def _cache_dir() -> str:
    return os.environ.get("RL3JAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "rl3jax"))


@functools.cache
def gittins_table(horizon: int) -> np.ndarray:
    """``compute_gittins_table(horizon)``, computed once per horizon and kept in memory and on disk
    (``$RL3JAX_CACHE_DIR``, default ~/.cache/rl3jax; H=100 takes 3 s to compute on a quiet 2-core CPU, about
    10 s on a busy one)."""
    h = int(horizon)
    if not 1 <= h <= GITTINS_MAX_HORIZON:
        return compute_gittins_table(h)  # raises the ValueError
    path = os.path.join(_cache_dir(), f"gittins-{GITTINS_VERSION}-H{h}.npy")
    try:
        table = np.load(path)
        if table.shape == (h + 1, h + 1, h + 1):
            return table
    except (OSError, ValueError):
        pass
    table = compute_gittins_table(h)
    try:
        atomic_write(path, lambda f: np.save(f, table))
    except OSError:
        pass  # a read-only home: recompute next time
    return table


def compute_gittins_table(horizon: int) -> np.ndarray:
    """Finite-horizon Gittins indices of a Bernoulli arm with a Beta(1, 1) prior.

    Returns ``G`` (float64, shape (H+1, H+1, H+1)): ``G[m, s, f]`` is the index of an arm with ``s`` successes
    and ``f`` failures so far when ``m`` pulls remain (this one included), for m = 1..H and s + f <= H - m
    (NaN elsewhere). The index is the calibrating safe-arm value λ: the reward per pull of a known arm that
    makes a one-armed bandit with m pulls left indifferent between retiring to the known arm at once (m·λ)
    and pulling the unknown arm now and acting optimally afterwards (Gittins 1979; Gittins, Glazebrook & Weber
    2011; retiring is final, as nothing is learned from the known arm). With p = (s+1)/(s+f+2),

        V_λ(j, s, f) = max(j·λ, p·(1 + V_λ(j−1, s+1, f)) + (1−p)·V_λ(j−1, s, f+1)),  V_λ(0, ·) = 0,

    by backward induction over the Beta posteriors (s+1, f+1); the gap g(λ) = C(λ) − m·λ, C the value of
    pulling now, is convex, piecewise linear and strictly decreasing in λ, and its root lies in [p, 1]. The
    root is found by bisection on that bracket accelerated with Newton steps from the lower end (exact on a
    piecewise-linear convex g: a Newton step never passes the root; a step that leaves the bracket falls back
    to the midpoint), to |g| < 1e-12 or a bracket narrower than 1e-12, starting from G[m−1, s, f] (the index
    grows with the pulls left). m = 1 gives the posterior mean.

    Raises ValueError for H < 1 or H > ``GITTINS_MAX_HORIZON`` (the work grows as H^5/120 DP cells per step).
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
def bayes_state_count(num_arms: int, horizon: int) -> int:
    """Number of exchangeable posterior states (multisets of k (s, f) pairs) with fewer than H pulls in all."""
    return int(sum(_multiset_counts(num_arms, horizon)))


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


@functools.cache
def bayes_optimal_table(num_arms: int, horizon: int):
    """Exact Bayes-optimal action values of a k-armed Bernoulli bandit with independent Beta(1,1) priors.

    The posterior is the multiset of (successes, failures) of the k arms (arms are exchangeable, so a sorted
    tuple of pair ids is a canonical state). Backward induction over the total pulls t = H−1..0:

        Q_t(x, i) = p_i·(1 + V_{t+1}(x + success on i)) + (1 − p_i)·V_{t+1}(x + failure on i),
        V_t(x) = max_i Q_t(x, i),  V_H = 0,  p_i = (s_i + 1)/(s_i + f_i + 2)   (Bellman 1956).

    Returns ``(rows, q)``: ``rows`` (N, k) int32, every reachable state's sorted pair ids (``_pair_id``),
    sorted lexicographically; ``q`` (N, k) float64, the action value of pulling the arm in each slot.
    The expected return of the Bayes-optimal policy from the prior is ``q[0].max()`` (row 0 = no pulls).

    Raises ValueError if the table would exceed ``BAYES_MAX_STATES`` states (k=5: H <= 25).
    """
    k, h = int(num_arms), int(horizon)
    if h < 1:
        raise ValueError(f"bayes-optimal: horizon must be >= 1, got {h}")
    if h > bayes_max_horizon(k):
        raise IntractableError(f"bayes-optimal: exact dynamic programming is tractable only for H <= "
                         f"{bayes_max_horizon(k)} with k={k} arms ({BAYES_MAX_STATES:,} posterior states at most); "
                         f"got H={h}")
    n_pairs = (h + 1) * (h + 2) // 2
    pair_s = np.concatenate([np.arange(n + 1) for n in range(h + 1)])
    pair_n = np.concatenate([np.full(n + 1, n) for n in range(h + 1)])
    weights = n_pairs ** np.arange(k - 1, -1, -1, dtype=np.int64)  # lexicographic int64 key of a sorted row

    def key(rows):
        return rows.astype(np.int64) @ weights

    def children(rows):
        """(N, k) -> success and failure children per slot, each (N, k, k) sorted."""
        s, n = pair_s[rows], pair_n[rows]
        succ = _pair_id(s + 1, n - s)
        fail = _pair_id(s, n + 1 - s)
        out = []
        for new in (succ, fail):
            c = np.repeat(rows[:, None, :], k, axis=1)
            idx = np.arange(k)
            c[:, idx, idx] = new
            out.append(np.sort(c, axis=-1))
        return out

    layers = [np.zeros((1, k), np.int64)]
    for _ in range(1, h):
        succ, fail = children(layers[-1])
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
            succ, fail = children(rows)
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
    * ucb: μ_a + c·sqrt(2·ln(t + 2k) / (n_a + 2)) — UCB1 (Auer et al. 2002) on the pseudo-counts of one
      success in two pulls per arm (RL²'s baseline, Duan et al. 2016): n_eff,a = n_a + 2, and the total
      pull count t + 2k counts those pseudo-pulls too.
    * thompson: one draw from Beta(s_a + 1, f_a + 1) per arm (Thompson 1933).
    * gittins: G[H − t, s_a, f_a] (``gittins_table``).
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


def _bandit_build(name: str):
    """Builder of a Bernoulli-bandit posterior policy: the carry holds (key, successes, failures) per task."""

    def build(meta_env: MetaEnv, consts, tasks, key, params):
        num, k = _num(tasks), meta_env.num_actions
        horizon = meta_env.horizon
        carry = (key, jnp.zeros((num, k), jnp.float32), jnp.zeros((num, k), jnp.float32))

        def step(carry, obs, state):
            key, succ, fail = carry
            key, k_score, k_tie, k_eps = jax.random.split(key, 4)
            pulled = (state.t > 0)[:, None] & (jnp.arange(k)[None, :] == state.prev_action[:, None])
            win = (state.prev_reward > 0.5)[:, None]
            succ = succ + (pulled & win)
            fail = fail + (pulled & ~win)
            scores = bandit_scores(name, k_score, succ, fail, state.t, horizon, consts, c=params.get("c", 0.2))
            action = argmax_random(k_tie, scores)
            if "epsilon" in params:
                action = _epsilon_mix(k_eps, action, params["epsilon"], k)
            return (key, succ, fail), sharp_logits(action, k)

        return step, carry

    return build


def _prepare_gittins(meta_env, params):
    return jnp.asarray(gittins_table(meta_env.horizon), jnp.float32)


def _prepare_bayes(meta_env, params):
    rows, q = bayes_optimal_table(meta_env.num_actions, meta_env.horizon)
    return jnp.asarray(rows), jnp.asarray(q, jnp.float32)


# ------------------------------------------------------------------------------- RL³ model (ablation)
def _model_build(meta_env: MetaEnv, consts, tasks, key, params):
    estimator, n = meta_env.estimator, meta_env.num_actions
    eps = params.get("epsilon")

    def step(carry, obs, state):
        key, k_tie, k_eps = jax.random.split(carry, 3)
        s = jax.vmap(meta_env.env.state_index)(state.env_state, tasks)
        q = jax.vmap(estimator.q_values)(state.est, s)  # the latest solve's Q (METHOD §2)
        action = argmax_random(k_tie, q)
        if eps is not None:
            action = _epsilon_mix(k_eps, action, eps, n)
        return key, sharp_logits(action, n)

    return step, key


# ------------------------------------------------------------------------------ tabular MDP posteriors
@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MDPPosterior:
    """Posterior statistics of one batch of tabular MDP tasks (leading axis B)."""

    key: jax.Array
    n_sas: jax.Array  # (B, S, A, S) observed transition counts
    r_n: jax.Array  # (B, S, A) observed rewards
    r_sum: jax.Array  # (B, S, A) sum of observed rewards
    prev_s: jax.Array  # (B,) state the previous action was taken in
    q_tab: jax.Array  # (B, TH, S, A) PSRL/OPSRL: Q with k+1 steps left of the sampled MDP(s)


def mdp_posterior_update(post: MDPPosterior, state, s: jax.Array) -> MDPPosterior:
    """Adds the previous step (prev_s, prev action, prev reward → s) to the posterior statistics.

    The last transition of a task episode ends in a state the policy never sees (METHOD §1: after the reset the
    input shows the start state), so it updates the reward statistics only: a transition counts when
    ``t > 0`` and ``tau > 0`` (no reset in between).
    """
    num = s.shape[0]
    b = jnp.arange(num)
    had = state.t > 0
    a = jnp.maximum(state.prev_action, 0)
    trans = (had & (state.tau > 0)).astype(jnp.float32)
    return dataclasses.replace(
        post,
        n_sas=post.n_sas.at[b, post.prev_s, a, s].add(trans),
        r_n=post.r_n.at[b, post.prev_s, a].add(had.astype(jnp.float32)),
        r_sum=post.r_sum.at[b, post.prev_s, a].add(jnp.where(had, state.prev_reward, 0.0)),
        prev_s=s)


def reward_posterior(post: MDPPosterior, mu0: float, tau0: float, tau: float):
    """Normal posterior of each mean reward R(s,a) with known noise precision τ: (mean, precision), (B, S, A).

    precision = τ0 + n·τ,  mean = (τ0·μ0 + τ·Σr) / precision  (conjugate normal model).
    """
    prec = tau0 + post.r_n * tau
    return (tau0 * mu0 + tau * post.r_sum) / prec, prec


def finite_horizon_q(t_mat: jax.Array, r: jax.Array, steps: int) -> jax.Array:
    """Q[k-1] for k = 1..steps steps left: Q_1 = R, Q_k = R + T·max_a Q_{k-1}. t_mat (..., S, A, S), r (..., S, A)."""

    def backup(q, _):
        q_new = r + jnp.einsum("...sat,...t->...sa", t_mat, q.max(axis=-1))
        return q_new, q_new

    _, qs = jax.lax.scan(backup, jnp.zeros_like(r), None, length=steps)
    return jnp.moveaxis(qs, 0, -3)  # (..., steps, S, A)


GAMMA_POOLS = 4  # unrolled proposal rounds of ``gamma_sample`` before its loop (see its docstring)


def gamma_sample(key: jax.Array, alpha: jax.Array) -> jax.Array:
    """Gamma(α, 1) draws, one per element of ``alpha`` (float32, any shape, α > 0).

    Marsaglia & Tsang (2000): for a = α (α ≥ 1) or α + 1 (α < 1, then multiplied by U^(1/α)), d = a − 1/3,
    c = 1/sqrt(9d), propose v = (1 + c·x)^3 with x ~ N(0,1) and accept d·v when v > 0 and
    log u < x²/2 + d − d·v + d·log v (u ~ U(0,1)); acceptance >= 0.95 for a >= 1. Rejected elements get fresh
    proposals from pools of shrinking size (all elements, then 1/8, 1/64, 1/512 of them), then from pools of
    64 in a loop until every element is accepted (exact rejection sampling). About 1.15 proposals per draw, in
    bulk: ``jax.random.gamma`` splits a key per element and was several times slower here on CPU.
    """
    shape = alpha.shape
    a = alpha.reshape(-1).astype(jnp.float32)
    n = a.shape[0]
    boost = a < 1.0
    a1 = jnp.where(boost, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)

    def round_(key, out, pending, size, first=False):
        k_x, k_u = jax.random.split(key)
        x = jax.random.normal(k_x, (size,))
        u = jax.random.uniform(k_u, (size,))
        if first:
            has, xe, ue = pending, x, u
        else:  # the j-th still pending element takes proposal j of this pool
            rank = jnp.cumsum(pending) - 1
            has = pending & (rank < size)
            slot = jnp.where(has, rank, 0)
            xe, ue = x[slot], u[slot]
        v = (1.0 + c * xe) ** 3
        safe_v = jnp.where(v > 0, v, 1.0)
        ok = has & (v > 0) & (jnp.log(ue) < 0.5 * xe * xe + d - d * safe_v + d * jnp.log(safe_v))
        return jnp.where(ok, d * safe_v, out), pending & ~ok

    key, k_boost = jax.random.split(key)
    out, pending = d, jnp.ones((n,), bool)
    for i in range(GAMMA_POOLS):
        key, k = jax.random.split(key)
        out, pending = round_(k, out, pending, n if i == 0 else min(n, max(64, math.ceil(n / 8 ** i))), i == 0)

    def body(c):
        key, out, pending = c
        key, k = jax.random.split(key)
        return (key, *round_(k, out, pending, min(n, 64)))

    _, out, _ = jax.lax.while_loop(lambda c: c[2].any(), body, (key, out, pending))
    out = jnp.where(boost, out * jax.random.uniform(k_boost, (n,)) ** (1.0 / a), out)
    return out.reshape(shape)


def dirichlet_sample(key: jax.Array, alpha: jax.Array) -> jax.Array:
    """Dirichlet(α) draws over the last axis of ``alpha`` (normalised ``gamma_sample`` draws; a row whose
    draws all underflow to 0, possible only for tiny α, becomes uniform)."""
    g = gamma_sample(key, alpha)
    total = g.sum(axis=-1, keepdims=True)
    return jnp.where(total > 0, g / jnp.where(total > 0, total, 1.0), 1.0 / alpha.shape[-1])


def _mdp_build(kind: str):
    """Builder of psrl / opsrl / map-greedy for the tabular MDP family."""

    def build(meta_env: MetaEnv, consts, tasks, key, params):
        env = meta_env.env
        num, n_s, n_a = _num(tasks), env.num_states, meta_env.num_actions
        th = min(meta_env.task_horizon, meta_env.horizon)
        alpha0, mu0, tau0, tau = params["alpha0"], params["mu0"], params["tau0"], params["tau"]
        samples = params.get("m", 1)
        post = MDPPosterior(key=key, n_sas=jnp.zeros((num, n_s, n_a, n_s), jnp.float32),
                            r_n=jnp.zeros((num, n_s, n_a), jnp.float32),
                            r_sum=jnp.zeros((num, n_s, n_a), jnp.float32), prev_s=jnp.zeros((num,), jnp.int32),
                            q_tab=jnp.zeros((num, th, n_s, n_a), jnp.float32))

        def sampled_q(key, post):
            k_t, k_r = jax.random.split(key)
            mean, prec = reward_posterior(post, mu0, tau0, tau)
            shape = (samples,) + post.n_sas.shape
            t_mat = dirichlet_sample(k_t, alpha0 + jnp.broadcast_to(post.n_sas, shape))
            r = mean + jax.random.normal(k_r, (samples,) + mean.shape) / jnp.sqrt(prec)
            return finite_horizon_q(t_mat, r, th).max(axis=0)  # OPSRL: element-wise max over the samples

        def step(post, obs, state):
            s = jax.vmap(env.state_index)(state.env_state, tasks)
            post = mdp_posterior_update(post, state, s)
            key, k_sample, k_tie = jax.random.split(post.key, 3)
            left = jnp.minimum(th - state.tau, meta_env.horizon - state.t)  # steps left in the task episode
            if kind == "map-greedy":
                mean, _ = reward_posterior(post, mu0, tau0, tau)
                counts = alpha0 + post.n_sas
                t_mat = counts / counts.sum(-1, keepdims=True)
                q_tab = finite_horizon_q(t_mat, mean, th)
            else:
                q_tab = jax.lax.cond(jnp.any(state.tau == 0), lambda: sampled_q(k_sample, post),
                                     lambda: post.q_tab)
                q_tab = jnp.where((state.tau == 0)[:, None, None, None], q_tab, post.q_tab)
            b = jnp.arange(num)
            q = q_tab[b, jnp.clip(left - 1, 0, th - 1), s]
            action = argmax_random(k_tie, q)
            return dataclasses.replace(post, key=key, q_tab=q_tab), sharp_logits(action, n_a)

        return step, post

    return build


# ------------------------------------------------------------------------------------------ registry
@dataclasses.dataclass(frozen=True)
class Param:
    """A baseline parameter: name, default, kind ('float' or 'int') and the closed/open range it must lie in."""

    name: str
    default: float
    kind: str = "float"
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    positive: bool = False  # strictly > 0

    def describe(self) -> str:
        rng = []
        if self.positive:
            rng.append("> 0")
        if self.low is not None:
            rng.append(f">= {self.low:g}")
        if self.high is not None:
            rng.append(f"<= {self.high:g}")
        return f"{self.name} ({self.kind}{', ' + ' and '.join(rng) if rng else ''}; default {self.default:g})"

    def coerce(self, policy: str, raw) -> float | int:
        bad = ValueError(f"policy {policy!r}: parameter {self.name}={raw!r} is not valid; expected "
                         f"{self.describe()}")
        if isinstance(raw, bool):
            raise bad
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise bad from None
        if self.kind == "int":
            if not v.is_integer():
                raise bad
            v = int(v)
        if (not math.isfinite(v) or (self.positive and not v > 0) or (self.low is not None and v < self.low)
                or (self.high is not None and v > self.high)):
            raise bad
        return v


ALL = "*"


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A registry entry: the families it fits ('*': every family; the oracle also needs ``true_model``, the
    model-* baselines an RL³ model, the ``rl3_defaults`` hook),
    its parameters, ``prepare(meta_env, params) -> consts`` (host-side tables, run once, may raise
    ValueError), ``build(meta_env, consts, tasks, key, params) -> (step, carry)`` (inside jit), and a
    docstring naming its source."""

    name: str
    families: tuple[str, ...]
    params: tuple[Param, ...]
    build: Callable
    doc: str
    prepare: Callable | None = None
    needs_estimator: bool = False
    needs_model: bool = False

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def fits(self, meta_env: MetaEnv) -> bool:
        if self.needs_model and not meta_env.env.has_true_model:
            return False
        if self.needs_estimator and meta_env.env.rl3_defaults is None:
            return False
        return ALL in self.families or meta_env.env.family in self.families


_EPS = Param("epsilon", 0.1, low=0.0, high=1.0)
_MDP_PRIOR = (Param("alpha0", 1.0, positive=True), Param("mu0", 0.0), Param("tau0", 1.0, positive=True),
              Param("tau", 1.0, positive=True))


def _random_build(meta_env, consts, tasks, key, params):
    return random_policy(meta_env, _num(tasks), key)


def _oracle_build(meta_env, consts, tasks, key, params):
    return oracle_policy(meta_env, tasks)


BASELINES: dict[str, Baseline] = {b.name: b for b in [
    Baseline("random", (ALL,), (), _random_build, "Uniformly random actions."),
    Baseline("oracle", (ALL,), (), _oracle_build,
             "Task-knowing oracle: finite-horizon value iteration on the true task for the steps left in the "
             "task episode (the score of METHOD §3's task-knowing agent).", needs_model=True),
    Baseline("model-greedy", (ALL,), (), _model_build,
             "Greedy on the RL³ object-level estimator's current Q at the current state (METHOD §2; Bhatia, "
             "Nashed & Zilberstein 2023): object-level RL alone, the ablation of meta-learning.",
             needs_estimator=True),
    Baseline("model-epsilon-greedy", (ALL,), (_EPS,), _model_build,
             "ε-greedy on the RL³ estimator's current Q (METHOD §2).", needs_estimator=True),
    Baseline("greedy", ("bandit",), (), _bandit_build("greedy"),
             "Greedy on the Beta(1,1) posterior mean (s+1)/(n+2)."),
    Baseline("epsilon-greedy", ("bandit",), (_EPS,), _bandit_build("epsilon-greedy"),
             "ε-greedy on the Beta(1,1) posterior mean (Sutton & Barto 2018, §2.2)."),
    Baseline("ucb", ("bandit",), (Param("c", 0.2, low=0.0),), _bandit_build("ucb"),
             "UCB1 (Auer, Cesa-Bianchi & Fischer 2002) with RL²'s prior pseudo-counts (Duan et al. 2016): "
             "index (s+1)/(n+2) + c·sqrt(2 ln(t+2k)/(n+2))."),
    Baseline("thompson", ("bandit",), (), _bandit_build("thompson"),
             "Thompson sampling with Beta(1,1) priors (Thompson 1933)."),
    Baseline("gittins", ("bandit",), (), _bandit_build("gittins"),
             "Finite-horizon Gittins index (Gittins 1979; Gittins, Glazebrook & Weber 2011) by calibration "
             "against a known arm with the remaining pulls.", prepare=_prepare_gittins),
    Baseline("bayes-optimal", ("bandit",), (), _bandit_build("bayes-optimal"),
             "Exact Bayes-optimal policy by dynamic programming over exchangeable Beta posteriors "
             "(Bellman 1956); small H only.", prepare=_prepare_bayes),
    Baseline("psrl", ("mdp",), _MDP_PRIOR, _mdp_build("psrl"),
             "Posterior sampling RL (Osband, Russo & Van Roy 2013): one MDP drawn from the Dirichlet/normal "
             "posterior at the start of each task episode, followed with finite-horizon value iteration."),
    Baseline("opsrl", ("mdp",), _MDP_PRIOR + (Param("m", 5, kind="int", low=1),), _mdp_build("opsrl"),
             "Optimistic PSRL (Agrawal & Jia 2017): m posterior MDPs per task episode, the element-wise max "
             "of their finite-horizon Q."),
    Baseline("map-greedy", ("mdp",), _MDP_PRIOR, _mdp_build("map-greedy"),
             "Certainty equivalence: finite-horizon value iteration on the posterior-mean MDP, every step."),
]}


def get_baseline(name: str) -> Baseline:
    """The registry entry of ``name``; ValueError listing the valid names for an unknown one."""
    if name not in BASELINES:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(BASELINES)}")
    return BASELINES[name]


def baseline_names(meta_env: MetaEnv) -> list[str]:
    """Names of the baselines (``evaluate(meta_env, name, ...)``) that fit this family, in registry order."""
    return [name for name, b in BASELINES.items() if b.fits(meta_env)]


def validate_params(name: str, params: dict | None) -> dict:
    """The baseline's defaults updated with ``params`` (values may be strings, e.g. from the CLI), checked.

    Raises ValueError naming an unknown parameter or a bad value and listing the valid ones.
    """
    b = get_baseline(name)
    spec = {p.name: p for p in b.params}
    out = b.defaults()
    for k, v in (params or {}).items():
        if k not in spec:
            valid = ", ".join(p.describe() for p in b.params) or "none"
            raise ValueError(f"policy {name!r} has no parameter {k!r}; valid: {valid}")
        out[k] = spec[k].coerce(name, v)
    return out


def check_fits(name: str, meta_env: MetaEnv) -> Baseline:
    """The entry of ``name`` if it fits ``meta_env``'s family; ValueError listing the ones that do otherwise."""
    b = get_baseline(name)
    if not b.fits(meta_env):
        raise ValueError(f"policy {name!r} does not fit env {meta_env.env.name!r}; policies for it: "
                         f"{', '.join(baseline_names(meta_env))}")
    return b


def meta_env_for(name: str, meta_env: MetaEnv) -> MetaEnv:
    """The meta env the baseline runs in: with the family's RL³ estimator for model-* baselines, without an
    estimator for the others (it would only cost time; the task dynamics are the same either way)."""
    b = get_baseline(name)
    if b.needs_estimator:
        if meta_env.estimator is not None:
            return meta_env
        cfg = TrainConfig(env=meta_env.env.family, algo="rl3", horizon=meta_env.horizon)
        return MetaEnv(meta_env.env, meta_env.horizon, make_estimator(meta_env.env, cfg))
    if meta_env.estimator is not None:
        return MetaEnv(meta_env.env, meta_env.horizon, None)
    return meta_env


def make_policy(name: str, meta_env: MetaEnv, params: dict | None = None):
    """Checks and prepares baseline ``name`` for ``meta_env``.

    Returns ``(meta_env, consts, build)``: the meta env to run it in (see ``meta_env_for``), its host-side
    tables (a pytree of arrays, pass them through jit as an argument) and
    ``build(consts, tasks, key) -> (step, carry)`` for a batch of tasks. Raises ValueError if the policy does
    not fit the family, a parameter is unknown or invalid, or a table is intractable for the horizon.
    """
    b = check_fits(name, meta_env)
    p = validate_params(name, params)
    env = meta_env_for(name, meta_env)
    consts = b.prepare(env, p) if b.prepare else None

    def build(consts, tasks, key):
        return b.build(env, consts, tasks, key, p)

    return env, consts, build
