"""The RL³ object-level Q-estimator (METHOD §2): a learned tabular model and value iteration after every step.

Pure functions over an ``EstimatorState`` pytree of fixed shape, so the estimator lives inside the
environment state and ``vmap`` runs it for thousands of tasks. The model is dense over S concrete states
(S×A×S counts), which is exact and cheap for bandits (S=2) and MDPs (S=10); states not yet known (grids) are
masked out, so K, the number of known states, can grow during a task.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax.layout import Layout, rl3_features

MODES = ("fresh", "entered")


@struct.dataclass
class EstimatorState:
    """The dense estimator's state of one task (float32 unless noted; S states, A actions)."""

    n_sa: jax.Array  # (S, A) visit counts N(s,a)
    n_sas: jax.Array  # (S, A, S) transition counts N(s,a,s')
    r_mean: jax.Array  # (S, A, S) running mean of observed rewards
    r2_mean: jax.Array  # (S, A, S) running mean of squared rewards (standard errors)
    absorbing: jax.Array  # (S,) bool: reached with the task's terminal flag
    known: jax.Array  # (S,) bool: states in the model (all, or visited so far)
    q: jax.Array  # (S, A) latest value-iteration solution
    q_se: jax.Array  # (S, A) standard errors of q (zeros unless enabled)
    shown_q: jax.Array  # (S, A) Q of a state as last refreshed on entering it ('entered' mode cache)
    shown_q_se: jax.Array  # (S, A)
    sweeps: jax.Array  # () int32: sweeps used by the latest solve (diagnostics)


def converge(sweep, x0, max_sweeps: int, epsilon: float, block: int = 8):
    """Value-iteration driver: apply ``sweep(x) -> (x_new, max|ΔQ|)`` at most ``max_sweeps`` times, stopping
    once max|ΔQ| < ε (a sweep is applied, then the stop test made). Returns (sweeps applied, x).

    Sweeps run in unrolled blocks of ``block`` with a convergence mask, inside a while loop over blocks (a
    budget of at most ``block`` sweeps needs no loop at all). The result is exactly that of a plain while loop,
    per task; under ``vmap`` the loop runs until the slowest task has converged, and a block costs one
    loop-predicate round trip instead of ``block`` (on a GPU that round trip, not the tiny sweep, is the cost).
    """

    def masked(carry):
        i, x, delta = carry
        active = (i < max_sweeps) & (delta >= epsilon)
        x_new, d_new = sweep(x)
        x = jax.tree.map(lambda a, b: jnp.where(active, a, b), x_new, x)
        return i + active.astype(jnp.int32), x, jnp.where(active, d_new, delta)

    carry = (jnp.int32(0), x0, jnp.float32(jnp.inf))
    if max_sweeps <= block:
        for _ in range(max_sweeps):
            carry = masked(carry)
    else:
        def body(c):
            for _ in range(block):
                c = masked(c)
            return c

        carry = jax.lax.while_loop(lambda c: (c[0] < max_sweeps) & (c[2] >= epsilon), body, carry)
    return carry[0], carry[1]


def record_counts(est, s, a, r, s_next, terminal):
    """``est`` (fields n_sa (S, A), n_sas and r_mean (S, A, S), absorbing (S,)) with one real transition added:
    counts N(s,a) and N(s,a,s'), the running mean reward of (s,a,s'), s' absorbing once ``terminal``."""
    n = est.n_sas[s, a, s_next] + 1.0
    r = jnp.asarray(r, jnp.float32)
    return est.replace(
        n_sa=est.n_sa.at[s, a].add(1.0),
        n_sas=est.n_sas.at[s, a, s_next].set(n),
        r_mean=est.r_mean.at[s, a, s_next].add((r - est.r_mean[s, a, s_next]) / n),
        absorbing=est.absorbing.at[s_next].set(est.absorbing[s_next] | terminal))


class EstimatorBase:
    """Members of the ``rl3jax.estimators.Estimator`` protocol shared by the dense, grid and v4 estimators (state
    fields ``q`` (S, A), ``sweeps`` int32 and, for ``visit`` / ``known``, ``known`` (S,) bool with the setting
    ``known_states``: 'all' or 'visited')."""

    def __post_init__(self):
        """ValueError for a setting out of range, of those the estimator has: mode (``MODES``), known_states ('all'
        or 'visited'), max_sweeps >= 1, gamma in [0, 1), alpha_laplace > 0, q_denom > 0."""
        for name, ok, allowed in (("mode", lambda v: v in MODES, f"one of {MODES}"),
                                  ("known_states", lambda v: v in ("all", "visited"), "one of ('all', 'visited')"),
                                  ("max_sweeps", lambda v: v >= 1, ">= 1"), ("gamma", lambda v: 0 <= v < 1, "in [0, 1)"),
                                  ("alpha_laplace", lambda v: v > 0, "> 0"), ("q_denom", lambda v: v > 0, "> 0")):
            if hasattr(self, name) and not ok(getattr(self, name)):
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

    @property
    def feature_layout(self) -> Layout:
        """advantages (n), value (1), std errors (n + 1), counts (n) (``rl3jax.layout.rl3_features``)."""
        return rl3_features(self.num_actions)

    @property
    def feature_dim(self) -> int:
        return self.feature_layout.size

    def q_values(self, est, s) -> jax.Array:
        return est.q[s]

    def visit(self, est, s):
        return est if self.known_states == "all" else est.replace(known=est.known.at[s].set(True))

    def known(self, est) -> jax.Array:
        return est.known

    def sweeps(self, est) -> jax.Array:
        return est.sweeps


@dataclasses.dataclass(frozen=True)
class QEstimator(EstimatorBase):
    """The dense RL³ estimator (METHOD §2): configuration plus pure ``init`` / ``update`` / ``features`` /
    ``q_values`` (the ``rl3jax.estimators.Estimator`` protocol); hashable, so it can be a jit-static argument.

    Args:
        num_states: S concrete states; num_actions: n.
        gamma: γ_obj of value iteration (METHOD §2.2; [0, 1)); required, ``make_estimator`` passes the
            config's ``gamma_obj_value``.
        alpha_laplace: α_L > 0 of the Laplace-smoothed model (METHOD §2.1).
        epsilon: stop once max|ΔQ| < ε; max_sweeps: at most this many sweeps per solve (>= 1).
        warm_start: start each solve from the previous Q (re-zeroed when the set of known states grew).
        mode: 'fresh' (the latest solve's Q of the current state) or 'entered' (the Q cached on entering it,
            METHOD §2.4).
        std_errors: propagate standard errors of T̂ and R̂ through value iteration (METHOD §2.3).
        q_denom: Q_DENOM, divides the shown advantages, value and standard errors.
        known_states: 'all' (K = S from the start) or 'visited' (the states seen so far in the task).
        sweep_block: sweeps unrolled per while-loop step (``converge``); no effect on the results.

    Raises ValueError for a setting out of range (``EstimatorBase.__post_init__``).
    """

    num_states: int
    num_actions: int
    gamma: float  # no default: γ_obj is the config's (``TrainConfig.gamma_obj_value``, via ``make_estimator``)
    alpha_laplace: float = 0.1
    epsilon: float = 0.01
    max_sweeps: int = 10
    warm_start: bool = False
    mode: str = "fresh"
    std_errors: bool = False
    q_denom: float = 1.0
    known_states: str = "all"
    sweep_block: int = 10  # sweeps unrolled per while-loop step (see ``converge``)

    def init(self, start_state: jax.Array) -> EstimatorState:
        """The state of a new task: empty model, Q = 0; known states all, or only ``start_state`` (int32)."""
        s, a = self.num_states, self.num_actions
        zeros_sas = jnp.zeros((s, a, s), jnp.float32)
        known = jnp.ones((s,), bool) if self.known_states == "all" else jnp.arange(s) == start_state
        return EstimatorState(
            n_sa=jnp.zeros((s, a), jnp.float32), n_sas=zeros_sas, r_mean=zeros_sas, r2_mean=zeros_sas,
            absorbing=jnp.zeros((s,), bool), known=known,
            q=jnp.zeros((s, a), jnp.float32), q_se=jnp.zeros((s, a), jnp.float32),
            shown_q=jnp.zeros((s, a), jnp.float32), shown_q_se=jnp.zeros((s, a), jnp.float32),
            sweeps=jnp.int32(0))

    # ----------------------------------------------------------------------------------------------- model
    def record(self, est: EstimatorState, s, a, r, s_next, terminal) -> EstimatorState:
        """Adds one real transition to the learned model (counts, running reward means, absorbing, known)."""
        r = jnp.asarray(r, jnp.float32)
        n = est.n_sas[s, a, s_next] + 1.0
        return record_counts(est, s, a, r, s_next, terminal).replace(
            r2_mean=est.r2_mean.at[s, a, s_next].add((r * r - est.r2_mean[s, a, s_next]) / n),
            known=est.known.at[s_next].set(True))

    def model(self, est: EstimatorState):
        """T̂(s'|s,a), R̂(s,a,s') and their standard errors (METHOD §2.1, §2.3), dense (S, A, S)."""
        s_num = self.num_states
        known = est.known.astype(jnp.float32)
        k = known.sum()
        alpha = self.alpha_laplace
        tried = est.n_sa > 0
        denom = est.n_sa + alpha * k
        t_tried = (est.n_sas + alpha * known[None, None, :]) / denom[..., None]
        t_untried = jnp.broadcast_to(known / k, t_tried.shape)
        t_hat = jnp.where(tried[..., None], t_tried, t_untried)
        eye = jnp.eye(s_num, dtype=jnp.float32)[:, None, :]
        absorbing = est.absorbing[:, None, None]
        t_hat = jnp.where(absorbing, jnp.broadcast_to(eye, t_hat.shape), t_hat)
        seen = est.n_sas > 0
        r_hat = jnp.where(seen & ~absorbing, est.r_mean, 0.0)
        if not self.std_errors:
            return t_hat, r_hat, None, None
        t_se = jnp.where(tried[..., None], jnp.sqrt(t_hat * (1.0 - t_hat) / denom[..., None]),
                         jnp.sqrt(1.0 / 12.0))
        t_se = jnp.where(absorbing, 0.0, t_se * known[None, None, :])
        var_pop = jnp.maximum(est.r2_mean - est.r_mean ** 2, 0.0)
        r_se = jnp.where(est.n_sas > 1, jnp.sqrt(var_pop) / jnp.sqrt(jnp.maximum(est.n_sas - 1.0, 1.0)), 1.0)
        r_se = jnp.where(absorbing, 0.0, r_se * known[None, None, :])
        return t_hat, r_hat, t_se, r_se

    # --------------------------------------------------------------------------------- value iteration
    def solve(self, est: EstimatorState, q0: jax.Array) -> EstimatorState:
        """Synchronous value iteration from ``q0``: at most ``max_sweeps`` sweeps, stop once max|ΔQ| < ε."""
        t_hat, r_hat, t_se, r_se = self.model(est)
        gamma = self.gamma
        row_mask = est.known[:, None]

        # Σ_t T̂·R̂ does not change during the solve: a sweep is then one matrix-vector product
        rt = None if self.std_errors else jnp.einsum("sat,sat->sa", t_hat, r_hat)

        def sweep(carry):
            q, e_q = carry
            v = q.max(axis=1)
            if not self.std_errors:
                q_new = jnp.where(row_mask, rt + gamma * jnp.einsum("sat,t->sa", t_hat, v), 0.0)
                return (q_new, e_q), jnp.max(jnp.abs(q_new - q))
            x = r_hat + gamma * v[None, None, :]
            q_new = jnp.where(row_mask, jnp.einsum("sat,sat->sa", t_hat, x), 0.0)
            greedy = jnp.argmax(q, axis=1)
            e_v = jnp.take_along_axis(e_q, greedy[:, None], axis=1)[:, 0]
            var_x = r_se ** 2 + (gamma * e_v[None, None, :]) ** 2
            var_t = t_se ** 2
            var_q = (t_hat ** 2 * var_x + x ** 2 * var_t + var_x * var_t).sum(-1)
            return (q_new, jnp.where(row_mask, jnp.sqrt(var_q), 0.0)), jnp.max(jnp.abs(q_new - q))

        e0 = jnp.zeros_like(q0) if not self.warm_start else est.q_se
        sweeps, (q, q_se) = converge(sweep, (q0, e0), self.max_sweeps, self.epsilon, self.sweep_block)
        return est.replace(q=q, q_se=q_se, sweeps=sweeps)

    def update(self, est: EstimatorState, s, a, r, s_next, terminal) -> EstimatorState:
        """Record a real step, re-solve, and refresh the 'entered' cache of the state it entered."""
        grew = ~est.known[s_next]
        est = self.record(est, s, a, r, s_next, terminal)
        if self.warm_start:
            q0 = jnp.where(grew, jnp.zeros_like(est.q), est.q)
            est = est.replace(q_se=jnp.where(grew, 0.0, est.q_se))
        else:
            q0 = jnp.zeros_like(est.q)
        est = self.solve(est, q0)
        return est.replace(shown_q=est.shown_q.at[s_next].set(est.q[s_next]),
                           shown_q_se=est.shown_q_se.at[s_next].set(est.q_se[s_next]))

    # -------------------------------------------------------------------------------------- features
    def features(self, est: EstimatorState, s) -> jax.Array:
        """(feature_dim,) float32 policy-input blocks for current state ``s`` (``feature_layout``, METHOD §1):
        advantages (Q − V)/Q_DENOM, value V/Q_DENOM, std errors (E_q, E_v)/Q_DENOM, counts N(s,·)/10."""
        q, q_se = (est.q[s], est.q_se[s]) if self.mode == "fresh" else (est.shown_q[s], est.shown_q_se[s])
        greedy = jnp.argmax(q)
        v, v_se, d = q[greedy], q_se[greedy], self.q_denom
        return jnp.concatenate([(q - v) / d, v[None] / d, q_se / d, v_se[None] / d, est.n_sa[s] / 10.0])
