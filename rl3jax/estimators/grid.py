"""The RL³ Q-estimator for gridworlds: the learned model of METHOD §2.1 stored sparsely (RL³-coarse, §2.5, is
``rl3jax.estimators.discovery``'s).

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
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax.envs.grid_geometry import DIRECTION_OFFSETS, NOOP
from rl3jax.estimators.tabular import EstimatorBase, converge


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
    absorbing: jax.Array  # (S,) bool per cell
    known: jax.Array  # (S,) bool concrete cells seen so far
    q: jax.Array  # (S, A) latest value-iteration solution per cell
    shown_q: jax.Array  # (S, A) per concrete cell: Q as last refreshed on entering it ('entered' mode)
    sweeps: jax.Array  # () int32 sweeps used by the latest solve


@dataclasses.dataclass(frozen=True)
class GridQEstimator(EstimatorBase):
    """Sparse grid Q-estimator (see module docstring): the ``rl3jax.estimators.Estimator`` protocol; hashable,
    so it can be a jit-static argument.

    Args: as ``rl3jax.estimators.tabular.QEstimator`` (``num_states`` = N², defaults of the grid families; ``gamma``
        required, keyword only), plus
        grid_side: N (default: sqrt(num_states)).

    Raises ValueError for std_errors=True (use the dense ``QEstimator``), num_states that is not grid_side², and
    the settings ``EstimatorBase.__post_init__`` refuses.
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
    # sweeps unrolled per while-loop step (``rl3jax.estimators.tabular.converge``); None: 1 on CPU, where a masked
    # sweep costs more than a loop step (measured: blocks of 8 halve CPU rollout speed), 8 on accelerators,
    # where each loop step is a device-to-host predicate round trip (not yet measured on a GPU)
    sweep_block: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.std_errors:
            raise ValueError("GridQEstimator does not compute standard errors; use the dense "
                             "rl3jax.estimators.tabular.QEstimator(std_errors=True) instead")
        side = self.grid_side if self.grid_side is not None else math.isqrt(self.num_states)
        if side < 1 or side * side != self.num_states:
            raise ValueError(f"num_states {self.num_states} is not grid_side² (grid_side={self.grid_side})")
        object.__setattr__(self, "grid_side", side)

    def init(self, start_state: jax.Array) -> GridEstimatorState:
        """The state of a new task: empty model, Q = 0, only ``start_state`` (int32 cell) known ('visited')."""
        s, a = self.num_states, self.num_actions
        known = jnp.ones((s,), bool) if self.known_states == "all" else jnp.arange(s) == start_state
        zeros_sa = jnp.zeros((s, a), jnp.float32)
        zeros_das = jnp.zeros((5, a, s), jnp.float32)
        return GridEstimatorState(
            n_sa=zeros_sa, n_das=zeros_das, r_das=zeros_das, absorbing=jnp.zeros((s,), bool), known=known,
            q=zeros_sa, shown_q=zeros_sa, sweeps=jnp.int32(0))

    # ----------------------------------------------------------------------------------------- model
    def _direction(self, s, s_next):
        """The direction d (int32, ``grid_geometry.DIRECTION_OFFSETS``' index) from cell ``s`` to ``s_next``,
        which is ``s`` itself (NOOP) or a 4-neighbour of it."""
        n = self.grid_side
        dr = s_next // n - s // n
        dc = s_next % n - s % n
        moves = range(1, len(DIRECTION_OFFSETS))
        return jnp.select([(dr == DIRECTION_OFFSETS[d, 0]) & (dc == DIRECTION_OFFSETS[d, 1]) for d in moves],
                          list(moves), NOOP).astype(jnp.int32)

    def record(self, est: GridEstimatorState, s, a, r, s_next, terminal):
        """Adds one real transition (s_next must be s or a 4-neighbour of s); returns (est, grew): ``grew``, the
        set of known cells grew."""
        d = self._direction(s, s_next)
        r = jnp.asarray(r, jnp.float32)
        grew = ~est.known[s_next]
        n = est.n_das[d, a, s] + 1.0
        est = est.replace(
            n_sa=est.n_sa.at[s, a].add(1.0),
            n_das=est.n_das.at[d, a, s].set(n),
            r_das=est.r_das.at[d, a, s].add((r - est.r_das[d, a, s]) / n),
        )
        return est.replace(known=est.known.at[s_next].set(True),
                           absorbing=est.absorbing.at[s_next].set(est.absorbing[s_next] | terminal)), grew

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
        The loop runs on the cells in the (A, S) layout, neighbour values being shifts of the cell grid."""
        gamma, alpha = self.gamma, self.alpha_laplace
        cnt = est.n_das  # (5, A, S) counts by direction
        known = est.known
        k = known.sum().astype(jnp.float32)
        r_sum = _sum5(cnt[d] * est.r_das[d] for d in range(5))
        r_seen = _sum5(jnp.where(cnt[d] > 0, est.r_das[d], 0.0) for d in range(5))
        n_az = est.n_sa.T
        tried = n_az > 0
        denom = n_az + alpha * k
        laplace_r = alpha * r_seen
        absorbing = est.absorbing[None, :]
        col_mask = known[None, :]

        def sweep(q):
            v = q.max(axis=0)
            sum_v = jnp.where(known, v, 0.0).sum()
            vn = self._shifted(v)
            # Σ_d N(s,a,d)·V(nbr(s,d)) as an explicit sum of 5 slices: XLA:CPU's reduce over a length-5 axis is
            # ~20x slower
            future = _sum5(cnt[d] * vn[d][None, :] for d in range(5))
            q_tried = (r_sum + gamma * future + laplace_r + (alpha * gamma) * sum_v) / denom
            q_new = jnp.where(tried, q_tried, gamma * sum_v / k)
            q_new = jnp.where(col_mask, jnp.where(absorbing, gamma * v[None, :], q_new), 0.0)
            return q_new, jnp.max(jnp.abs(q_new - q))

        block = self.sweep_block or (1 if jax.default_backend() == "cpu" else 8)
        sweeps, q = converge(sweep, q0.T, self.max_sweeps, self.epsilon, block)
        return est.replace(q=q.T, sweeps=sweeps)

    def update(self, est: GridEstimatorState, s, a, r, s_next, terminal) -> GridEstimatorState:
        """Record a real step, re-solve, and refresh the 'entered' cache of the cell it entered."""
        est, grew = self.record(est, s, a, r, s_next, terminal)
        q0 = jnp.where(grew, 0.0, est.q) if self.warm_start else jnp.zeros_like(est.q)
        est = self.solve(est, q0)
        return est.replace(shown_q=est.shown_q.at[s_next].set(est.q[s_next]))

    # -------------------------------------------------------------------------------------- features
    def q_values(self, est: GridEstimatorState, s) -> jax.Array:
        """(..., n) Q of the latest solve at cell(s) ``s`` (int, any shape)."""
        return est.q[s]

    def features(self, est: GridEstimatorState, s) -> jax.Array:
        """(feature_dim,) float32 policy-input blocks for current cell ``s`` (``feature_layout``): advantages,
        value, std errors (zeros), counts; Q per the mode: the latest solve's, or cached on entering ``s``."""
        q = self.q_values(est, s) if self.mode == "fresh" else est.shown_q[s]
        v = q.max()
        d = self.q_denom
        zeros = jnp.zeros((self.num_actions + 1,), jnp.float32)
        return jnp.concatenate([(q - v) / d, v[None] / d, zeros, est.n_sa[s] / 10.0])
