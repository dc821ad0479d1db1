"""The discovery-indexed RL³ estimator: METHOD §2 on any discrete-state task family, at a cost that follows the
meta-episode length H, not the size of the state space.

A task family names its concrete state with ``state_index`` (an int32 of any value: a cell id, a packed
(row, col), a hash). Each concrete state the task shows gets a *slot* in order of discovery (at most
``capacity``; with ``known_states='all'`` the slots are the ids 0..num_states−1 from the start). Observed
transitions are kept sparsely, at most ``max_transitions`` distinct (z, a, z') entries of model states z
(slots, or abstract ids on RL³-coarse) with their count and running mean reward (the dense model's update, so
the values match). With K model states known, one value-iteration backup (METHOD §2.1, §2.2) is

    Q(z,a) = [Σ_{e=(z,a,z')} N_e·(R̄_e + γ V(z')) + α_L·(Σ_{z' seen} R̄(z,a,z') + γ Σ_{known} V)]
             / (N(z,a) + α_L·K)                                               (tried)
    Q(z,a) = γ · mean_{known} V                                               (untried)
    Q(z,a) = γ · V(z)                                                         (z absorbing: self-loop, reward 0)

the dense ``rl3jax.estimators.tabular.QEstimator``'s backup restricted to the known states: a sweep is one
segment sum over the transition list plus O(slots × actions), and memory is O((capacity + max_transitions) ×
A) per task, whatever |S| is. N(z,a), Σ N·R̄ and Σ_{seen} R̄ are segment sums computed once per solve.
Value iteration is ``rl3jax.estimators.tabular.converge`` (per-task convergence mask, sweep budget), warm-started
from the previous Q and re-zeroed when the set of model states grew (``warm_start``), else from Q = 0.

* ``abstraction='coarse'`` (RL³-coarse on grids, METHOD §2.5; ``make_estimator`` picks this estimator for it:
  measured faster than a per-cell grid model, ``scripts/bench_estimators.py``): a newly discovered cell (id =
  row·N + col) joins the abstract state of the nearest earlier cell strictly within the Euclidean radius (in
  observation units, (row/N, col/N); computed from integer cell offsets, so equidistant cells tie exactly)
  whose cluster has fewer than 2 members (ties: the earliest discovered; the original code iterated a hash
  map, an arbitrary order), else opens a new abstract id. The model runs over abstract ids (ids never change
  once given, so entries are kept per abstract transition; absorbing per abstract id, as in the original);
  counts shown stay per concrete cell, Q per abstract id.
* ``semantics='v4'`` (the paper's own code, ``rl3jax.estimators.v4``): maximum-likelihood model, untried
  (z, a) a self-loop, every solve warm-started from the previous Q, the shown Q refreshed for the state the
  step left, counts/100, the v4 feature layout. Undiscovered states are unrewarded self-loops there (Q = 0),
  so the values equal ``V4Estimator``'s over all S.

Capacity: a state met when every slot is taken gets none; a step from or to it is left out of the model and
its features are zeros (Q 0, counts 0); a new (z, a, z') entry when the transition list is full is likewise
left out. ``rl3jax.estimators.make_estimator`` sizes both so this never happens in a meta-episode of H steps:
slots min(num_states or the family's state_bound, 2H + 1) (the start state, every step's successor and every task-episode reset's state),
H transitions.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax.estimators.tabular import EstimatorBase, converge
from rl3jax.estimators.v4 import COUNT_DENOM_V4
from rl3jax.layout import Layout, v4_features

SEMANTICS = ("rl3", "v4")
ABSTRACTIONS = (None, "coarse")
#: the abstraction radius of METHOD §2.5 by grid side
COARSE_RADIUS = {11: 0.1, 13: 0.08}


def segment_sum(x: jax.Array, seg: jax.Array, num: int) -> jax.Array:
    """(num, ...) Σ of ``x`` (E, ...) per segment id ``seg`` (E,) int32: a scatter-add, the fastest under vmap
    on the CPU measured (a one-hot matmul: 1.9x slower on mdp; ``scripts/bench_estimators.py --segment-sum``)."""
    return jax.ops.segment_sum(x, seg, num_segments=num)


@struct.dataclass
class DiscoveryState:
    """One task's model (C = capacity slots, E = max_transitions, A actions; float32 unless noted)."""

    ids: jax.Array  # (C,) int32 concrete state id of each slot, in order of discovery
    num_slots: jax.Array  # () int32 slots in use
    n_sa: jax.Array  # (C, A) N(s,a) per slot (the counts shown)
    e_src: jax.Array  # (E,) int32 model state z of each transition entry
    e_act: jax.Array  # (E,) int32 action
    e_dst: jax.Array  # (E,) int32 successor model state z'
    e_cnt: jax.Array  # (E,) N(z,a,z') (0: unused entry)
    e_r: jax.Array  # (E,) running mean reward R̄(z,a,z')
    num_entries: jax.Array  # () int32 entries in use
    absorbing: jax.Array  # (C,) bool per model state: reached with the task's terminal flag
    q: jax.Array  # (C, A) latest value-iteration solution per model state (0 for states not yet known)
    shown_q: jax.Array  # (C, A) per slot: Q as last refreshed ('entered': on entering; 'v4': on leaving)
    sweeps: jax.Array  # () int32 sweeps of the latest solve
    # RL³-coarse only (None otherwise)
    mid: jax.Array | None = None  # (C,) int32 abstract id of each slot
    size: jax.Array | None = None  # (C,) int32 cells per abstract id
    num_ids: jax.Array | None = None  # () int32 abstract ids in use (K)


@dataclasses.dataclass(frozen=True)
class DiscoveryQEstimator(EstimatorBase):
    """The discovery-indexed estimator (module docstring): the ``rl3jax.estimators.Estimator`` protocol for
    concrete state ids of any int32 value; hashable, so it can be a jit-static argument.

    Args (the rest as ``rl3jax.estimators.tabular.QEstimator``; no standard errors):
        capacity: C slots (H + 1 suffices when task episodes restart in one start state; with
            known_states='all' it must equal num_states).
        max_transitions: E distinct (z, a, z') entries (one per real step suffices; default capacity − 1, with
            known_states='visited' only).
        num_states: S, an upper bound on the ids, needed only by ``known`` and known_states='all'.
        abstraction: None or 'coarse' (grids, METHOD §2.5; needs grid_side, the ids being row·N + col);
            abstraction_radius: Euclidean, in observation units (default ``COARSE_RADIUS``: 0.1 for 11×11, 0.08
            for 13×13, else 1.05/N).
        semantics: 'rl3' (METHOD §2) or 'v4' (the paper's own code, ``rl3jax.estimators.v4``; it uses neither
            alpha_laplace, warm_start nor known_states: its rules are fixed).

    Raises ValueError for a setting out of range (``EstimatorBase.__post_init__``), capacity or max_transitions
    < 1, an unknown semantics or abstraction, known_states='all' without max_transitions or num_states ==
    capacity, 'coarse' without grid_side or with known_states='all' or 'v4', 'v4' with mode 'entered'.
    """

    num_actions: int
    capacity: int
    gamma: float
    alpha_laplace: float = 0.1
    epsilon: float = 0.01
    max_sweeps: int = 10
    warm_start: bool = False
    mode: str = "fresh"
    q_denom: float = 1.0
    known_states: str = "visited"
    num_states: int | None = None
    abstraction: str | None = None
    grid_side: int | None = None
    semantics: str = "rl3"
    sweep_block: int | None = None  # sweeps per while-loop step (``converge``); None: 1 on CPU (measured), else 8
    max_transitions: int | None = None
    abstraction_radius: float | None = None

    def __post_init__(self):
        super().__post_init__()
        for name, bad, allowed in (
                ("capacity", self.capacity < 1, ">= 1"),
                ("max_transitions", self.max_transitions is not None and self.max_transitions < 1, ">= 1"),
                ("semantics", self.semantics not in SEMANTICS, f"one of {SEMANTICS}"),
                ("abstraction", self.abstraction not in ABSTRACTIONS, f"one of {ABSTRACTIONS}"),
                ("known_states", self.known_states == "all" and self.num_states != self.capacity,
                 f"'visited' unless num_states == capacity (num_states={self.num_states}, capacity={self.capacity})"),
                ("mode", self.semantics == "v4" and self.mode != "fresh", "'fresh' with semantics 'v4'")):
            if bad:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")
        if self.max_transitions is None:
            if self.known_states == "all":
                raise ValueError("known_states='all' needs max_transitions (one per real step: H)")
            object.__setattr__(self, "max_transitions", max(self.capacity - 1, 1))
        if self.abstraction == "coarse":
            if self.grid_side is None or self.known_states != "visited" or self.semantics != "rl3":
                raise ValueError("abstraction='coarse' needs grid_side, known_states='visited' and semantics 'rl3'")
            n = self.grid_side
            radius = COARSE_RADIUS.get(n, 1.05 / n) if self.abstraction_radius is None else self.abstraction_radius
            if radius < 0:
                raise ValueError(f"abstraction_radius must be >= 0, got {radius}")
            object.__setattr__(self, "abstraction_radius", float(radius))

    @property
    def coarse(self) -> bool:
        return self.abstraction == "coarse"

    @property
    def feature_layout(self) -> Layout:
        """``rl3jax.layout.rl3_features`` (semantics 'rl3') or ``v4_features`` ('v4')."""
        return v4_features(self.num_actions) if self.semantics == "v4" else super().feature_layout

    def init(self, start_state: jax.Array) -> DiscoveryState:
        """A new task: empty model, Q = 0; slot 0 holds ``start_state`` (int32), or slots are 0..S−1 ('all')."""
        c, a, e = self.capacity, self.num_actions, self.max_transitions
        if self.known_states == "all":
            ids, num = jnp.arange(c, dtype=jnp.int32), jnp.int32(c)
        else:
            ids, num = jnp.zeros((c,), jnp.int32).at[0].set(jnp.asarray(start_state, jnp.int32)), jnp.int32(1)
        zi, zf, zq = jnp.zeros((e,), jnp.int32), jnp.zeros((e,), jnp.float32), jnp.zeros((c, a), jnp.float32)
        est = DiscoveryState(ids=ids, num_slots=num, n_sa=zq, e_src=zi, e_act=zi, e_dst=zi, e_cnt=zf, e_r=zf,
                             num_entries=jnp.int32(0), absorbing=jnp.zeros((c,), bool), q=zq, shown_q=zq,
                             sweeps=jnp.int32(0))
        if not self.coarse:
            return est
        return est.replace(mid=jnp.zeros((c,), jnp.int32), size=jnp.zeros((c,), jnp.int32).at[0].set(1),
                           num_ids=jnp.int32(1))

    # ------------------------------------------------------------------------------------------- slots
    def slot(self, est: DiscoveryState, s) -> jax.Array:
        """int32 slot of concrete id(s) ``s`` (any shape; ``capacity`` where the id has none)."""
        s = jnp.asarray(s)
        match = (s[..., None] == est.ids) & (jnp.arange(self.capacity) < est.num_slots)
        return jnp.where(match.any(-1), jnp.argmax(match, -1), self.capacity).astype(jnp.int32)

    def model_id(self, est: DiscoveryState, slot) -> jax.Array:
        """The model state of a slot (itself, or its abstract id when coarse; ``capacity`` for none)."""
        return est.mid.at[slot].get(mode="fill", fill_value=self.capacity) if self.coarse else slot

    def _add(self, est: DiscoveryState, s):
        """``s`` (int32) with a slot if it has none and one is free. Returns (est, slot, grew): ``grew``, the
        set of model states grew (a new slot; when coarse, a new abstract id)."""
        c = self.capacity
        slot = self.slot(est, s)
        new = (slot == c) & (est.num_slots < c)
        slot = jnp.where(new, est.num_slots, slot)
        at = jnp.where(new, slot, c)  # out of range: dropped
        grew = new
        if self.coarse:  # METHOD §2.5: join the nearest earlier cell's cluster of one, else a new abstract id
            n = self.grid_side
            d2 = (est.ids // n - s // n) ** 2 + (est.ids % n - s % n) ** 2
            max_d2 = math.ceil((self.abstraction_radius * n) ** 2) - 1  # strictly inside the radius, in cells²
            order = jnp.arange(c)
            eligible = (order < est.num_slots) & (est.size[est.mid] < 2) & (d2 <= max_d2)
            best = jnp.argmin(jnp.where(eligible, d2 * (c + 1) + order, jnp.iinfo(jnp.int32).max))
            joined = eligible.any()
            z = jnp.where(joined, est.mid[best], est.num_ids)
            grew = new & ~joined
            est = est.replace(mid=est.mid.at[at].set(z, mode="drop"),
                              size=est.size.at[jnp.where(new, z, c)].add(1, mode="drop"),
                              num_ids=est.num_ids + grew.astype(jnp.int32))
        est = est.replace(ids=est.ids.at[at].set(jnp.asarray(s, jnp.int32), mode="drop"),
                          num_slots=est.num_slots + new.astype(jnp.int32))
        return est, slot, grew

    def visit(self, est: DiscoveryState, s) -> DiscoveryState:
        """``est`` with concrete state ``s`` known (a slot; 'all': unchanged)."""
        return est if self.known_states == "all" else self._add(est, s)[0]

    def known(self, est: DiscoveryState) -> jax.Array:
        """(..., S) bool: the ids 0..S−1 that have a slot. Raises ValueError without ``num_states``."""
        if self.num_states is None:
            raise ValueError("known() needs num_states: the discovery estimator keeps ids, not a state table")
        valid = jnp.arange(self.capacity) < est.num_slots[..., None]
        return ((est.ids[..., None] == jnp.arange(self.num_states)) & valid[..., None]).any(-2)

    # ------------------------------------------------------------------------------------------- model
    def _record(self, est: DiscoveryState, z, a, z2, r):
        """The transition entry (z, a, z') counted once more and its running mean moved towards ``r`` (the dense
        ``record_counts`` update). Returns (est, ok): not ok when a state has no slot or the list is full."""
        e_num = self.max_transitions
        match = (est.e_src == z) & (est.e_act == a) & (est.e_dst == z2) & (jnp.arange(e_num) < est.num_entries)
        found = match.any()
        e = jnp.where(found, jnp.argmax(match), est.num_entries)
        ok = (z < self.capacity) & (z2 < self.capacity) & (e < e_num)
        e = jnp.where(ok, e, e_num)
        n = est.e_cnt.at[e].get(mode="fill", fill_value=0.0) + 1.0
        old = est.e_r.at[e].get(mode="fill", fill_value=0.0)
        est = est.replace(e_src=est.e_src.at[e].set(z, mode="drop"), e_act=est.e_act.at[e].set(a, mode="drop"),
                          e_dst=est.e_dst.at[e].set(z2, mode="drop"), e_cnt=est.e_cnt.at[e].set(n, mode="drop"),
                          e_r=est.e_r.at[e].add((r - old) / n, mode="drop"),
                          num_entries=est.num_entries + (ok & ~found).astype(jnp.int32))
        return est, ok

    def update(self, est: DiscoveryState, s, a, r, s_next, terminal) -> DiscoveryState:
        """Record a real step (``s``, ``s_next``: int32 ids; ``a`` int32; ``r`` float32; ``terminal`` bool),
        re-solve (METHOD §2.2), and refresh the shown cache: the state entered ('entered'), or left ('v4')."""
        c = self.capacity
        a, r = jnp.asarray(a, jnp.int32), jnp.asarray(r, jnp.float32)
        est, slot_s, grew_s = self._add(est, jnp.asarray(s, jnp.int32))
        est, slot_n, grew_n = self._add(est, jnp.asarray(s_next, jnp.int32))
        z, z2 = self.model_id(est, slot_s), self.model_id(est, slot_n)
        est, ok = self._record(est, z, a, z2, r)
        est = est.replace(n_sa=est.n_sa.at[jnp.where(ok, slot_s, c), a].add(1.0, mode="drop"),
                          absorbing=est.absorbing.at[jnp.where(ok, z2, c)].set(terminal, mode="drop")
                          | est.absorbing)
        if self.semantics == "v4":  # the original re-allocates zero Q when its model grows (VAMDP.jl 137-157)
            est = self.solve(est, jnp.where(grew_s | grew_n, 0.0, est.q))
            return est.replace(shown_q=est.shown_q.at[slot_s].set(est.q.at[z].get(mode="fill", fill_value=0.0),
                                                                  mode="drop"))
        q0 = jnp.where(grew_s | grew_n, 0.0, est.q) if self.warm_start else jnp.zeros_like(est.q)
        est = self.solve(est, q0)
        return est.replace(shown_q=est.shown_q.at[slot_n].set(est.q.at[z2].get(mode="fill", fill_value=0.0),
                                                              mode="drop"))

    # --------------------------------------------------------------------------------- value iteration
    def solve(self, est: DiscoveryState, q0: jax.Array) -> DiscoveryState:
        """Synchronous value iteration from ``q0`` (C, A) (module docstring; 'v4': the maximum-likelihood
        backup of ``V4Estimator``): at most ``max_sweeps`` sweeps, stop once max|ΔQ| < ε. The loop runs in the
        (A, C) layout (measured: a third faster than (C, A) under vmap on the CPU)."""
        c, n_a, gamma, alpha = self.capacity, self.num_actions, self.gamma, self.alpha_laplace
        seg = est.e_act * c + est.e_src

        def per_sa(x):
            """Σ over the entries of each (z, a): (A, C, ...) of x (E, ...)."""
            return segment_sum(x, seg, c * n_a).reshape(n_a, c, *x.shape[1:])

        cnt, dst = est.e_cnt, est.e_dst
        # N(z,a), Σ N·R̄ and Σ_{seen} R̄ in one scatter
        n_za, r_sum, r_seen = jnp.moveaxis(per_sa(jnp.stack([cnt, cnt * est.e_r, jnp.where(cnt > 0, est.e_r, 0.0)],
                                                            -1)), -1, 0)
        tried, absorbing = n_za > 0, est.absorbing[None, :]
        if self.semantics == "v4":
            def sweep(q):
                v = q.max(axis=0)
                q_ml = (r_sum + gamma * per_sa(cnt * v[dst])) / jnp.maximum(n_za, 1.0)
                q_new = jnp.where(tried & ~absorbing, q_ml, gamma * v[None, :])  # untried, absorbing: self-loop
                return q_new, jnp.max(jnp.abs(q_new - q))
        else:
            k_int = est.num_ids if self.coarse else est.num_slots
            known = jnp.arange(c) < k_int
            k = k_int.astype(jnp.float32)
            denom = n_za + alpha * k
            laplace_r = alpha * r_seen

            def sweep(q):
                v = q.max(axis=0)
                sum_v = jnp.where(known, v, 0.0).sum()
                q_tried = (r_sum + gamma * per_sa(cnt * v[dst]) + laplace_r + (alpha * gamma) * sum_v) / denom
                q_new = jnp.where(tried, q_tried, gamma * sum_v / k)
                q_new = jnp.where(known[None, :], jnp.where(absorbing, gamma * v[None, :], q_new), 0.0)
                return q_new, jnp.max(jnp.abs(q_new - q))

        block = self.sweep_block or (1 if jax.default_backend() == "cpu" else 8)
        sweeps, q = converge(sweep, q0.T, self.max_sweeps, self.epsilon, block)
        return est.replace(q=q.T, sweeps=sweeps)

    # -------------------------------------------------------------------------------------- features
    def q_values(self, est: DiscoveryState, s) -> jax.Array:
        """(..., n) float32 Q of the latest solve at concrete id(s) ``s`` (any shape; coarse: of the abstract
        state); zeros for an id without a slot."""
        return est.q.at[self.model_id(est, self.slot(est, s))].get(mode="fill", fill_value=0.0)

    def features(self, est: DiscoveryState, s) -> jax.Array:
        """(feature_dim,) float32 policy-input blocks for current state ``s`` (``feature_layout``, METHOD §1,
        §2.4): 'rl3': advantages, value (/Q_DENOM), std errors (zeros), counts N(s,·)/10 per concrete state;
        'v4': shown Q/Q_DENOM, counts/100. An id without a slot shows zeros."""
        slot = self.slot(est, s)
        counts = est.n_sa.at[slot].get(mode="fill", fill_value=0.0)
        shown = est.shown_q.at[slot].get(mode="fill", fill_value=0.0)
        if self.semantics == "v4":
            return jnp.concatenate([shown / self.q_denom, counts / COUNT_DENOM_V4])
        q = est.q.at[self.model_id(est, slot)].get(mode="fill", fill_value=0.0) if self.mode == "fresh" else shown
        v, d = q.max(), self.q_denom
        zeros = jnp.zeros((self.num_actions + 1,), jnp.float32)
        return jnp.concatenate([(q - v) / d, v[None] / d, zeros, counts / 10.0])
