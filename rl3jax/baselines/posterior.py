"""The tabular posterior of the model-based baselines (``rl3jax.baselines.mdp``): where a step can lead
(``Support``), the counts learned from what the policy input shows (``mdp_posterior_update``), the Dirichlet and
normal posteriors and their samplers, and finite-horizon value iteration over the steps left (``plan_q``).

A family fits when its states are counted: ``num_states`` or ``state_bound`` (mdp, garnet), or a known
transition support (grids, deepsea). Dense supports hold S·A·S counts per task and are refused beyond
``DENSE_MAX_STATES`` (``IntractableError``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.baselines.bandit import IntractableError
from rl3jax.envs.grid_geometry import neighbour_table, start_cell
from rl3jax.meta_episode import MetaEnv

DENSE_MAX_STATES = 256  # S of the dense posterior: S·A·S counts per task (S = 256, A = 5: 1.3 MB; S = 4096: 335 MB)
PLAN_DEPTH = 32  # sweeps of one plan at most: with more steps left, Q of PLAN_DEPTH steps (receding horizon)


@dataclasses.dataclass(frozen=True)
class Support:
    """Where a step from state s can lead, in the posterior's model. Dense (``succ`` None): any of the S states
    (mdp, garnet). Sparse (grids, deepsea): K slots per state, ``succ`` (S, K)
    int32 the state each slot leads to, S meaning 'done' (the task episode ended in an absorbing state: its value
    is the start state's, METHOD §1), and ``prior`` (S, K) float32, 1 where a slot takes the prior mass α0 (a
    slot repeating an earlier one, and 'done', take none: 'done' counts only once observed)."""

    num_states: int
    succ: np.ndarray | None = None
    prior: np.ndarray | None = None
    start: int = 0

    @property
    def width(self) -> int:
        """The last axis of the counts: S (dense) or K."""
        return self.num_states if self.succ is None else self.succ.shape[1]


def grid_support(size: int) -> Support:
    """N×N grids: the cells reached by staying or moving N, E, S, W (``neighbour_table``; obstacles and the border
    give the cell itself), and 'done' (an absorbing 'G' or 'X' entered)."""
    nb = neighbour_table(size)
    s = size * size
    first = np.array([[c not in row[:j] for j, c in enumerate(row)] for row in nb], np.float32)
    return Support(s, np.concatenate([nb, np.full((s, 1), s, np.int32)], 1),
                   np.concatenate([first, np.zeros((s, 1), np.float32)], 1), start_cell(size))


def deepsea_support(size: int) -> Support:
    """DeepSea: from (row, col) to (row + 1, col − 1) or (row + 1, col + 1), clipped; from the last row 'done'
    (the task episode ends there at TH = N, so the slot never counts and its value is never used)."""
    row, col = np.divmod(np.arange(size * size), size)
    nxt = np.stack([(row + 1) * size + np.clip(col + d, 0, size - 1) for d in (-1, 1)], 1)
    succ = np.where(row[:, None] < size - 1, nxt, size * size).astype(np.int32)
    first = np.stack([np.ones(size * size), succ[:, 1] != succ[:, 0]], 1).astype(np.float32)
    return Support(size * size, succ, first, 0)


def support(meta_env: MetaEnv, params=None) -> Support:
    """The posterior's support on ``meta_env``'s family (the ``prepare`` of each entry): grids and deepsea
    sparse, else dense over ``num_states`` or ``state_bound``. IntractableError for a dense one beyond
    ``DENSE_MAX_STATES`` (``rl3jax baselines`` lists it as skipped with the reason)."""
    env = meta_env.env
    if env.grid_side is not None:
        return grid_support(env.grid_side)
    if env.family == "deepsea":
        return deepsea_support(env.size)
    s = env.num_states or env.state_bound
    if s > DENSE_MAX_STATES:
        raise IntractableError(f"the dense Dirichlet posterior holds S·A·S = {s * s * meta_env.num_actions:,} counts "
                               f"per task at S={s}; tractable for S <= {DENSE_MAX_STATES} (a sparse posterior over "
                               "the states seen is not implemented)")
    return Support(s)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MDPPosterior:
    """Posterior statistics of one batch of tasks (leading axis B; W = ``Support.width``)."""

    key: jax.Array
    n_sas: jax.Array  # (B, S, A, W) observed transition counts (to each state, or each slot)
    r_n: jax.Array  # (B, S, A) observed rewards (n(s, a): the steps taken)
    r_sum: jax.Array  # (B, S, A) sum of observed rewards
    prev_s: jax.Array  # (B,) state the previous action was taken in
    prev_tau: jax.Array  # (B,) τ of the previous step
    q_tab: jax.Array  # (B, L, S, A): Q with k+1 steps left (k < L) of the last plan


def mdp_posterior_update(post: MDPPosterior, state, s: jax.Array, sup: Support, th: int) -> MDPPosterior:
    """Adds the previous step (prev_s, prev action, prev reward → s) to the statistics. The last transition of a
    task episode ends in a state the policy never sees (METHOD §1: after the reset the input shows the start
    state): it updates the rewards only, or, on a sparse support, counts 'done' when the episode ended before TH
    (an absorbing state was entered). A transition counts when t > 0 and tau > 0."""
    b, a, had = jnp.arange(s.shape[0]), jnp.maximum(state.prev_action, 0), state.t > 0
    if sup.succ is None:
        slot, count = s, had & (state.tau > 0)
    else:
        done = (state.tau == 0) & (post.prev_tau + 1 < th)
        match = jnp.asarray(sup.succ)[post.prev_s] == jnp.where(done, sup.num_states, s)[:, None]
        slot, count = jnp.argmax(match, axis=-1), had & ((state.tau > 0) | done) & match.any(-1)
    return dataclasses.replace(
        post, n_sas=post.n_sas.at[b, post.prev_s, a, slot].add(count.astype(jnp.float32)),
        r_n=post.r_n.at[b, post.prev_s, a].add(had.astype(jnp.float32)),
        r_sum=post.r_sum.at[b, post.prev_s, a].add(jnp.where(had, state.prev_reward, 0.0)),
        prev_s=s, prev_tau=state.tau)


def reward_posterior(post: MDPPosterior, mu0: float, tau0: float, tau: float):
    """Normal posterior of each mean reward R(s,a) with known noise precision τ: (mean, precision), (B, S, A);
    precision = τ0 + n·τ, mean = (τ0·μ0 + τ·Σr) / precision (conjugate normal model)."""
    prec = tau0 + post.r_n * tau
    return (tau0 * mu0 + tau * post.r_sum) / prec, prec


def dirichlet_counts(post: MDPPosterior, sup: Support, alpha0: float) -> jax.Array:
    """The Dirichlet posterior's parameters (B, S, A, W): α0 + counts (sparse: α0 on the slots with prior mass)."""
    return alpha0 + post.n_sas if sup.succ is None else alpha0 * jnp.asarray(sup.prior)[:, None] + post.n_sas


def finite_horizon_q(t_mat: jax.Array, r: jax.Array, steps: int) -> jax.Array:
    """Q[k-1] for k = 1..steps steps left: Q_1 = R, Q_k = R + T·max_a Q_{k-1}. t_mat (..., S, A, S), r (..., S, A)."""
    return plan_q(t_mat, r, steps, None)


def plan_q(t_mat: jax.Array, r: jax.Array, steps: int, sup: Support | None, unknown=None, r_max=0.0) -> jax.Array:
    """Finite-horizon value iteration over the steps left: Q[k-1] (..., steps, S, A) for k = 1..steps,
    Q_1 = R, Q_k = R + Σ_slot T·V_{k-1}(succ) with V = max_a Q ('done' has V_{k-1}(start): the task restarts).
    t_mat (..., S, A, W) on ``sup`` (None or dense: W = S), r (..., S, A). R-MAX (Brafman & Tennenholtz 2002):
    where ``unknown`` (..., S, A) is set, Q_k = k·r_max (an absorbing state paying r_max every step)."""

    def backup(q, k):
        v = q.max(axis=-1)
        if sup is None or sup.succ is None:
            q_new = r + jnp.einsum("...sat,...t->...sa", t_mat, v)
        else:
            v_ext = jnp.concatenate([v, v[..., sup.start, None]], axis=-1)
            q_new = r + (t_mat * jnp.take(v_ext, jnp.asarray(sup.succ), axis=-1)[..., None, :]).sum(-1)
        if unknown is not None:
            q_new = jnp.where(unknown, k * r_max, q_new)
        return q_new, q_new

    _, qs = jax.lax.scan(backup, jnp.zeros_like(r), jnp.arange(1, steps + 1, dtype=jnp.float32))
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
    """Dirichlet(α) draws over the last axis of ``alpha`` (normalised ``gamma_sample`` draws; an entry with α = 0
    draws 0, outside the support; a row whose draws all underflow to 0, possible only for tiny α, becomes
    uniform)."""
    g = gamma_sample(key, alpha)
    total = g.sum(axis=-1, keepdims=True)
    return jnp.where(total > 0, g / jnp.where(total > 0, total, 1.0), 1.0 / alpha.shape[-1])
