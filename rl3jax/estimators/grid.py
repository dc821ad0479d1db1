"""The RL³ Q-estimator for gridworlds: the learned model of METHOD §2.1 stored sparsely, and RL³-coarse (§2.5).

Same interface and semantics as ``rl3jax.estimators.tabular.QEstimator`` (``init`` / ``update`` / ``features``,
``feature_dim``), but it exploits the grid: every observed next state of (s, a) is s itself or one of its 4
neighbours, so the model keeps counts N(s,a,d) and mean rewards R̄(s,a,d) for the 5 directions d (stay, N, E,
S, W) instead of a dense S×A×S tensor (stored direction-major, (5, A, S), and summed over directions as 5
explicit slices: XLA's CPU reductions over a length-5 axis are an order of magnitude slower). The Laplace
term of T̂ and the untried-action model are uniform over the K known states (rank one), so one backup is

    Q(s,a) = [Σ_d N(s,a,d)·(R̄(s,a,d) + γ V(nbr(s,d))) + α_L·(Σ_{s' seen} R̄(s,a,s') + γ Σ_{known} V)]
             / (N(s,a) + α_L·K)                                              (tried)
    Q(s,a) = γ · mean_{known} V                                              (untried)
    Q(s,a) = γ · V(s)                                                        (s absorbing: self-loop, reward 0)

which is exactly the dense model's backup at O(S·A·5) per sweep instead of O(S·A·S). Value iteration is the
dense estimator's (``rl3jax.estimators.tabular.converge``), warm-started from the previous Q (re-zeroed when the set of
known states grew).

RL³-coarse (``abstraction='coarse'``): a newly seen cell joins the abstract state of the nearest previously
seen cell within the Euclidean ``abstraction_radius`` (in observation units, (row/N, col/N)) whose cluster still
has fewer than 2 members, otherwise it gets a new abstract id. Distances are computed from integer cell
offsets, so equidistant cells tie exactly; ties go to the earliest discovered cell (the original code
iterated a hash map, i.e. an arbitrary order). The model and value iteration then work over abstract ids (K =
number of abstract ids; absorbing is per abstract id, as in the original). A cluster has at most 2 cells, so with
every cell carrying its abstract state's Q, Σ_{z'} N(z,a,z')·V(z') is the sum of the two members'
per-direction sums, and the Laplace reward term Σ_{z' seen} R̄(z,a,z') (entries of z that reach
the same z' merged) is kept up to date incrementally at each step. Counts shown in the features stay per
concrete cell; the advantages/value shown for cell s are those of its abstract id. No standard errors (§2.3).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rl3jax.envs.grid_geometry import DIRECTION_OFFSETS, NOOP, neighbour_table
from rl3jax.estimators.tabular import EstimatorBase, converge

ABSTRACTIONS = (None, "coarse")
#: the abstraction radius of METHOD §2.5 by grid side
COARSE_RADIUS = {11: 0.1, 13: 0.08}


def _sum5(terms):
    terms = list(terms)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


@struct.dataclass
class GridEstimatorState:
    """The grid estimator's state of one task (float32 unless noted; S cells, A actions)."""

    n_sa: jax.Array  # (S, A) visit counts N(s,a) per concrete cell
    n_das: jax.Array  # (5, A, S) transition counts N(s,a,d) by direction d (stay, N, E, S, W)
    r_das: jax.Array  # (5, A, S) running mean of the observed rewards R̄(s,a,d)
    absorbing: jax.Array  # (S,) bool per model state (concrete cell, or abstract id when coarse)
    known: jax.Array  # (S,) bool concrete cells seen so far
    q: jax.Array  # (S, A) latest value-iteration solution per model state
    shown_q: jax.Array  # (S, A) per concrete cell: Q as last refreshed on entering it ('entered' mode)
    sweeps: jax.Array  # () int32 sweeps used by the latest solve
    # RL³-coarse only (None otherwise)
    abs_id: jax.Array | None = None  # (S,) int32 abstract id of each concrete cell, -1 unseen
    partner: jax.Array | None = None  # (S,) int32 the other cell of its cluster, -1 none
    rep: jax.Array | None = None  # (S,) int32 first cell of each abstract id, -1 unused
    order: jax.Array | None = None  # (S,) int32 discovery rank of each cell, -1 unseen
    num_ids: jax.Array | None = None  # () int32 abstract ids in use (K)
    num_seen: jax.Array | None = None  # () int32 cells seen
    n_az: jax.Array | None = None  # (A, S) N(z,a) per abstract id
    rsum_az: jax.Array | None = None  # (A, S) sum of the rewards observed from (z, a)
    rseen_az: jax.Array | None = None  # (A, S) Σ over seen successors z' of the mean reward R̄(z,a,z')


@dataclasses.dataclass(frozen=True)
class GridQEstimator(EstimatorBase):
    """Sparse grid Q-estimator (see module docstring): the ``rl3jax.estimators.Estimator`` protocol; hashable,
    so it can be a jit-static argument.

    Args: as ``rl3jax.estimators.tabular.QEstimator`` (``num_states`` = N², defaults of the grid families; ``gamma``
        required, keyword only), plus
        grid_side: N (default: sqrt(num_states)); abstraction: None or 'coarse' (RL³-coarse, METHOD §2.5);
        abstraction_radius: Euclidean radius in observation units (default: 0.1 for 11×11, 0.08 for 13×13,
        else 1.05/N).

    Raises ValueError for std_errors=True (use the dense ``QEstimator``), num_states that is not grid_side²,
    an unknown abstraction, 'coarse' without known_states='visited', a negative radius, and the settings
    ``EstimatorBase.__post_init__`` refuses.
    """

    num_states: int
    num_actions: int = 5
    gamma: float = dataclasses.field(kw_only=True)
    alpha_laplace: float = 0.01
    epsilon: float = 0.1
    max_sweeps: int = 350
    warm_start: bool = True
    mode: str = "fresh"
    std_errors: bool = False
    q_denom: float = 10.0
    known_states: str = "visited"
    grid_side: int | None = None  # default: sqrt(num_states)
    abstraction: str | None = None  # None or 'coarse'
    abstraction_radius: float | None = None  # default: 0.1 (11x11), 0.08 (13x13), else 1.05/N
    # sweeps unrolled per while-loop step (``rl3jax.estimators.tabular.converge``); None: 1 on CPU, where a masked
    # sweep costs more than a loop step (measured: blocks of 8 halve CPU rollout speed), 8 on accelerators,
    # where each loop step is a device-to-host predicate round trip (not yet measured on a GPU)
    sweep_block: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.std_errors:
            raise ValueError("GridQEstimator does not compute standard errors; use the dense "
                             "rl3jax.estimators.tabular.QEstimator(std_errors=True) instead")
        if self.abstraction not in ABSTRACTIONS:
            raise ValueError(f"abstraction {self.abstraction!r} is not one of {ABSTRACTIONS}")
        side = self.grid_side if self.grid_side is not None else math.isqrt(self.num_states)
        if side < 1 or side * side != self.num_states:
            raise ValueError(f"num_states {self.num_states} is not grid_side² (grid_side={self.grid_side})")
        object.__setattr__(self, "grid_side", side)
        if self.abstraction == "coarse":
            if self.known_states != "visited":
                raise ValueError("abstraction='coarse' assigns abstract ids as cells are discovered: "
                                 "it needs known_states='visited'")
            radius = COARSE_RADIUS.get(side, 1.05 / side) if self.abstraction_radius is None else self.abstraction_radius
            if radius < 0:
                raise ValueError(f"abstraction_radius must be >= 0, got {radius}")
            object.__setattr__(self, "abstraction_radius", float(radius))

    @property
    def coarse(self) -> bool:
        return self.abstraction == "coarse"

    def init(self, start_state: jax.Array) -> GridEstimatorState:
        """The state of a new task: empty model, Q = 0, only ``start_state`` (int32 cell) known ('visited')."""
        s, a = self.num_states, self.num_actions
        cells = jnp.arange(s)
        is_start = cells == start_state
        known = jnp.ones((s,), bool) if self.known_states == "all" else is_start
        zeros_sa = jnp.zeros((s, a), jnp.float32)
        zeros_das = jnp.zeros((5, a, s), jnp.float32)
        est = GridEstimatorState(
            n_sa=zeros_sa, n_das=zeros_das, r_das=zeros_das, absorbing=jnp.zeros((s,), bool), known=known,
            q=zeros_sa, shown_q=zeros_sa, sweeps=jnp.int32(0))
        if not self.coarse:
            return est
        minus = jnp.full((s,), -1, jnp.int32)
        zeros_as = jnp.zeros((a, s), jnp.float32)
        return est.replace(abs_id=jnp.where(is_start, 0, -1).astype(jnp.int32), partner=minus,
                           rep=minus.at[0].set(jnp.asarray(start_state, jnp.int32)),
                           order=jnp.where(is_start, 0, -1).astype(jnp.int32),
                           num_ids=jnp.int32(1), num_seen=jnp.int32(1), n_az=zeros_as, rsum_az=zeros_as,
                           rseen_az=zeros_as)

    # ----------------------------------------------------------------------------------------- model
    def model_index(self, est: GridEstimatorState, s) -> jax.Array:
        """The model state of concrete cell ``s`` (itself, or its abstract id when coarse)."""
        return est.abs_id[s] if self.coarse else jnp.asarray(s)

    def _direction(self, s, s_next):
        """The direction d (int32, ``grid_geometry.DIRECTION_OFFSETS``' index) from cell ``s`` to ``s_next``,
        which is ``s`` itself (NOOP) or a 4-neighbour of it."""
        n = self.grid_side
        dr = s_next // n - s // n
        dc = s_next % n - s % n
        moves = range(1, len(DIRECTION_OFFSETS))
        return jnp.select([(dr == DIRECTION_OFFSETS[d, 0]) & (dc == DIRECTION_OFFSETS[d, 1]) for d in moves],
                          list(moves), NOOP).astype(jnp.int32)

    def _assign(self, est: GridEstimatorState, s_next, new):
        """RL³-coarse: the abstract id of a newly seen cell; returns (est, grew)."""
        s_num, n = self.num_states, self.grid_side
        rows, cols = np.divmod(np.arange(s_num), n)
        d2 = (jnp.asarray(rows) - s_next // n) ** 2 + (jnp.asarray(cols) - s_next % n) ** 2
        # est.known is the set seen before this step (s_next itself is not in it when new)
        max_d2 = math.ceil((self.abstraction_radius * n) ** 2) - 1  # strictly inside the radius, in cells²
        eligible = est.known & (est.partner < 0) & (d2 <= max_d2) & (jnp.arange(s_num) != s_next)
        key = jnp.where(eligible, d2 * (s_num + 1) + est.order, jnp.iinfo(jnp.int32).max)
        c = jnp.argmin(key)  # nearest, then earliest discovered
        joined = new & eligible.any()
        created = new & ~joined
        z = jnp.where(joined, est.abs_id[c], est.num_ids)
        abs_id = jnp.where(new, est.abs_id.at[s_next].set(z), est.abs_id)
        partner = jnp.where(joined, est.partner.at[s_next].set(c).at[c].set(s_next), est.partner)
        rep = jnp.where(created, est.rep.at[jnp.minimum(est.num_ids, s_num - 1)].set(s_next), est.rep)
        order = jnp.where(new, est.order.at[s_next].set(est.num_seen), est.order)
        est = est.replace(abs_id=abs_id, partner=partner, rep=rep, order=order,
                          num_ids=est.num_ids + created.astype(jnp.int32),
                          num_seen=est.num_seen + new.astype(jnp.int32))
        return est, created

    def record(self, est: GridEstimatorState, s, a, r, s_next, terminal):
        """Adds one real transition (s_next must be s or a 4-neighbour of s); returns (est, grew).

        ``grew``: the set of known model states grew (a new cell; when coarse, a new abstract id).
        """
        d = self._direction(s, s_next)
        r = jnp.asarray(r, jnp.float32)
        new = ~est.known[s_next]
        if self.coarse:
            est, grew = self._assign(est, s_next, new)
            est = self._record_abstract(est, s, a, r, s_next)
        else:
            grew = new
        n = est.n_das[d, a, s] + 1.0
        est = est.replace(
            n_sa=est.n_sa.at[s, a].add(1.0),
            n_das=est.n_das.at[d, a, s].set(n),
            r_das=est.r_das.at[d, a, s].add((r - est.r_das[d, a, s]) / n),
        )
        z_next = self.model_index(est, s_next)
        return est.replace(known=est.known.at[s_next].set(True),
                           absorbing=est.absorbing.at[z_next].set(est.absorbing[z_next] | terminal)), grew

    def _record_abstract(self, est: GridEstimatorState, s, a, r, s_next) -> GridEstimatorState:
        """RL³-coarse: N(z,a), Σ r and Σ_{z' seen} R̄(z,a,z') of the abstract model, updated incrementally.

        Called before the concrete counts are updated. An observed (z, a, z') of the abstract model is the
        union of the concrete entries (member m of z, direction d) whose successor cell lies in z'. Successor
        ids never change once assigned (a cell joining a cluster is new, so no counts lead to it yet), so a
        step changes only the mean of its own group, which is recomputed from the ≤ 10 entries of z.
        """
        z, z_next = est.abs_id[s], est.abs_id[s_next]
        m0 = est.rep[z]
        m1 = est.partner[m0]
        members = jnp.stack([m0, m1])
        valid = members >= 0
        safe = jnp.maximum(members, 0)
        nbr = jnp.asarray(neighbour_table(self.grid_side).T)[:, safe]  # (5, 2): (direction, member)
        cnt = jnp.where(valid[None, :], est.n_das[:, a, safe], 0.0)  # (5, 2)
        in_group = (est.abs_id[nbr] == z_next) & (cnt > 0)
        g_cnt = jnp.where(in_group, cnt, 0.0).sum()
        g_sum = jnp.where(in_group, cnt * est.r_das[:, a, safe], 0.0).sum()
        old_mean = jnp.where(g_cnt > 0, g_sum / jnp.maximum(g_cnt, 1.0), 0.0)
        new_mean = (g_sum + r) / (g_cnt + 1.0)
        return est.replace(n_az=est.n_az.at[a, z].add(1.0), rsum_az=est.rsum_az.at[a, z].add(r),
                           rseen_az=est.rseen_az.at[a, z].add(new_mean - old_mean))

    # --------------------------------------------------------------------------------- value iteration
    def _shifted(self, x: jax.Array) -> jax.Array:
        """(5, ..., S): x (..., S) at each cell's neighbour per direction (``DIRECTION_OFFSETS``; off-grid: the
        cell itself)."""
        n = self.grid_side
        lead = x.shape[:-1]
        g = x.reshape(*lead, n, n)
        p = jnp.pad(g, [(0, 0)] * len(lead) + [(1, 1), (1, 1)], mode="edge")
        parts = [p[..., 1 + dr: 1 + dr + n, 1 + dc: 1 + dc + n] for dr, dc in DIRECTION_OFFSETS.tolist()]
        return jnp.stack(parts).reshape(5, *lead, n * n)

    def solve(self, est: GridEstimatorState, q0: jax.Array) -> GridEstimatorState:
        """Synchronous value iteration from ``q0`` (S, A): at most ``max_sweeps`` sweeps, stop once max|ΔQ| < ε.

        The loop runs on concrete cells in the (A, S) layout. With the coarse abstraction each cell carries
        the Q of its abstract state (both cells of a cluster hold the same values), so neighbour values are
        shifts of the cell grid and an abstract state's Σ N·V is its cell's sum plus its partner's.
        """
        gamma, alpha = self.gamma, self.alpha_laplace
        s_num = self.num_states
        cnt = est.n_das  # (5, A, S) concrete counts by direction
        known = est.known
        if self.coarse:
            ids = jnp.maximum(est.abs_id, 0)  # unseen cells: masked out below
            k = est.num_ids.astype(jnp.float32)
            n_az, r_sum, r_seen = est.n_az[:, ids], est.rsum_az[:, ids], est.rseen_az[:, ids]
            absorbing = est.absorbing[ids] & known
            counted = known & (est.rep[ids] == jnp.arange(s_num))  # one cell per abstract state
            has_partner = (est.partner >= 0)[None, :]
            partner = jnp.maximum(est.partner, 0)
            q_init = jnp.where(known[None, :], q0[ids].T, 0.0)
        else:
            k = known.sum().astype(jnp.float32)
            n_az = est.n_sa.T
            r_sum = _sum5(cnt[d] * est.r_das[d] for d in range(5))
            r_seen = _sum5(jnp.where(cnt[d] > 0, est.r_das[d], 0.0) for d in range(5))
            absorbing = est.absorbing
            counted = known
            q_init = q0.T
        tried = n_az > 0
        denom = n_az + alpha * k
        laplace_r = alpha * r_seen
        absorbing = absorbing[None, :]
        col_mask = known[None, :]

        def future(v):
            """Σ_{s'} N(z,a,s')·V(s') of each cell's model state, (A, S)."""
            vn = self._shifted(v)
            # an explicit sum of 5 slices: XLA:CPU's reduce over a length-5 axis is ~20x slower
            f = _sum5(cnt[d] * vn[d][None, :] for d in range(5))
            if not self.coarse:
                return f
            return f + jnp.where(has_partner, f[:, partner], 0.0)  # the other member's sum

        def sweep(q):
            v = q.max(axis=0)
            sum_v = jnp.where(counted, v, 0.0).sum()
            q_tried = (r_sum + gamma * future(v) + laplace_r + (alpha * gamma) * sum_v) / denom
            q_new = jnp.where(tried, q_tried, gamma * sum_v / k)
            q_new = jnp.where(col_mask, jnp.where(absorbing, gamma * v[None, :], q_new), 0.0)
            return q_new, jnp.max(jnp.abs(q_new - q))

        block = self.sweep_block or (1 if jax.default_backend() == "cpu" else 8)
        sweeps, q = converge(sweep, q_init, self.max_sweeps, self.epsilon, block)
        if self.coarse:  # back to abstract ids: the Q of each id's first cell
            q = jnp.where(est.rep[None, :] >= 0, q[:, jnp.maximum(est.rep, 0)], 0.0)
        return est.replace(q=q.T, sweeps=sweeps)

    def update(self, est: GridEstimatorState, s, a, r, s_next, terminal) -> GridEstimatorState:
        """Record a real step, re-solve, and refresh the 'entered' cache of the cell it entered."""
        est, grew = self.record(est, s, a, r, s_next, terminal)
        q0 = jnp.where(grew, 0.0, est.q) if self.warm_start else jnp.zeros_like(est.q)
        est = self.solve(est, q0)
        return est.replace(shown_q=est.shown_q.at[s_next].set(est.q[self.model_index(est, s_next)]))

    # -------------------------------------------------------------------------------------- features
    def q_values(self, est: GridEstimatorState, s) -> jax.Array:
        """(..., n) Q of the latest solve at concrete cell(s) ``s`` (that of its abstract state when coarse)."""
        return est.q[self.model_index(est, s)]

    def features(self, est: GridEstimatorState, s) -> jax.Array:
        """(feature_dim,) float32 policy-input blocks for current cell ``s`` (``feature_layout``): advantages,
        value, std errors (zeros), counts; Q per the mode: the latest solve's, or cached on entering ``s``."""
        q = self.q_values(est, s) if self.mode == "fresh" else est.shown_q[s]
        v = q.max()
        d = self.q_denom
        zeros = jnp.zeros((self.num_actions + 1,), jnp.float32)
        return jnp.concatenate([(q - v) / d, v[None] / d, zeros, est.n_sa[s] / 10.0])
