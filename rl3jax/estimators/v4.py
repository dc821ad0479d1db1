"""The object-level RL of the paper's own code (``semantics='v4'``): the estimator behind the published tables.

Read from the original Julia repository (bhatiaabhinav/RL3 at commit f8121786, files ``VAMDP.jl``,
``learned_mdp.jl``, ``main.jl``; its pinned ValueIteration.jl 2941831 and MetaMDPs.jl 97e613d). Per task:

* Learned model (``LearnedTabularModel``): plain maximum-likelihood counts, no smoothing.
  T̂(s'|s,a) = N(s,a,s')/N(s,a) for a tried (s,a); an untried (s,a) is a self-loop (``default_reward`` 0);
  an absorbing state (reached with the task's terminal flag) is a self-loop with reward 0.
  R̂(s,a,s') = running mean of the rewards seen on (s,a,s'), 0 where never seen.
* Value iteration (``value_iteration!`` in VAMDP.jl) after every real step: γ = 0.99, at most TH synchronous
  sweeps (bandits 1, MDPs min(10, H)), stop once max_{s,a}|Q_new − Q_old| < ε (0.01), where a sweep is
  Q(s,a) ← Σ_s' T̂(s'|s,a)(R̂(s,a,s') + γ V(s')) followed by V(s) ← max_a Q(s,a). The Q and V arrays are
  preallocated and reused, so every solve is warm-started from the previous one's Q and V (V = max_a Q).
  A new task gets a new wrapper object (``Iterators.map`` builds one per task draw), i.e. fresh zero arrays:
  here ``init`` (called at every meta-episode reset) zeroes them too.
* Shown values (``env.q``, a per-state cache): after each solve only the state the step *left* is refreshed,
  ``q[s] ← Q(s,·)``; the policy sees the cache of the state it is in (zeros until that state was first left).
  A task-episode reset shows the start state's cache without a new solve. For bandits the ready state is left
  at every step, so the shown Q are per-arm value estimates of the latest solve.
* Counts: N(s,·) of the state the policy is in (visit counts of its actions this meta-episode).

Policy-input block (``features``): Q_shown(s,·)/Q_DENOM (n) then N(s,·)/100 (n); Q_DENOM = 1 for bandits and
100 otherwise. No advantage, V or standard-error blocks.

Pure functions over a fixed-shape pytree; under ``vmap`` value iteration runs a fixed budget of masked sweeps
(``rl3jax.estimators.tabular.converge``), which per task equals the original's loop exactly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from rl3jax.estimators.tabular import EstimatorBase, converge, record_counts
from rl3jax.layout import Layout, v4_features

#: the original's constants (VAMDP.jl ``step!``; main.jl): the VI stopping threshold ε and the counts' divisor
#: (its γ = 0.99 is the v4 default of ``TrainConfig.gamma_obj_value``)
EPSILON_V4 = 0.01
COUNT_DENOM_V4 = 100.0


@struct.dataclass
class V4State:
    """The v4 estimator's state of one task."""

    n_sa: jax.Array  # (S, A) float32 N(s,a): model counts = the visit counts shown to the policy
    n_sas: jax.Array  # (S, A, S) float32 N(s,a,s')
    r_mean: jax.Array  # (S, A, S) float32 running mean reward of (s,a,s'), 0 where unseen
    absorbing: jax.Array  # (S,) bool
    q: jax.Array  # (S, A) float32 the preallocated Q array (latest solve)
    shown_q: jax.Array  # (S, A) float32 per-state cache, refreshed when a step leaves the state
    sweeps: jax.Array  # () int32 sweeps used by the latest solve


@dataclasses.dataclass(frozen=True)
class V4Estimator(EstimatorBase):
    """Configuration plus pure ``init`` / ``update`` / ``features`` / ``q_values`` (the
    ``rl3jax.estimators.Estimator`` protocol; hashable, jit-static).

    Args:
        num_states: S, concrete states of the family (bandit 2, MDP 10).
        num_actions: A.
        gamma: VI discount (the original: 0.99); required, ``make_estimator`` passes the config's
            ``gamma_obj_value``.
        epsilon: stop once max|ΔQ| < ε (original: 0.01 for bandits and MDPs).
        max_sweeps: at most this many sweeps per solve (original: the task horizon TH = min(TH_family, H)).
        q_denom: Q_DENOM of the shown Q (original: 1 for bandits, 100 otherwise).
        sweep_block: sweeps unrolled per while-loop step (``converge``); no effect on results.

    Raises ValueError for max_sweeps < 1, γ outside [0, 1) or Q_DENOM <= 0.
    """

    num_states: int
    num_actions: int
    gamma: float  # no default: γ_obj is the config's (``TrainConfig.gamma_obj_value``, via ``make_estimator``)
    epsilon: float = EPSILON_V4
    max_sweeps: int = 10
    q_denom: float = 100.0
    sweep_block: int = 10

    @property
    def feature_layout(self) -> Layout:
        """Shown Q (n), counts (n) (``rl3jax.layout.v4_features``)."""
        return v4_features(self.num_actions)

    def visit(self, est: V4State, s) -> V4State:
        return est  # every state is in the model from the start

    def known(self, est: V4State) -> jax.Array:
        return jnp.ones_like(est.absorbing)

    def init(self, start_state: jax.Array) -> V4State:
        """A new task: empty model, Q = V = 0, empty cache. ``start_state`` (int) is unused (all S known)."""
        del start_state
        s, a = self.num_states, self.num_actions
        z = jnp.zeros((s, a, s), jnp.float32)
        return V4State(n_sa=jnp.zeros((s, a), jnp.float32), n_sas=z, r_mean=z,
                       absorbing=jnp.zeros((s,), bool), q=jnp.zeros((s, a), jnp.float32),
                       shown_q=jnp.zeros((s, a), jnp.float32), sweeps=jnp.int32(0))

    def model(self, est: V4State):
        """Maximum-likelihood T̂ (S, A, S) and R̂ (S, A, S) of ``learned_mdp.jl``."""
        s_num = self.num_states
        eye = jnp.eye(s_num, dtype=jnp.float32)[:, None, :]
        tried = est.n_sa > 0
        t_ml = est.n_sas / jnp.maximum(est.n_sa, 1.0)[..., None]
        t_hat = jnp.where(tried[..., None], t_ml, eye)
        absorbing = est.absorbing[:, None, None]
        t_hat = jnp.where(absorbing, eye, t_hat)
        r_hat = jnp.where(absorbing, 0.0, est.r_mean)
        return t_hat, r_hat

    def solve(self, est: V4State) -> V4State:
        """Warm-started synchronous value iteration (``value_iteration!`` of VAMDP.jl)."""
        t_hat, r_hat = self.model(est)
        rt = jnp.einsum("sat,sat->sa", t_hat, r_hat)
        gamma = self.gamma

        def sweep(q):
            q_new = rt + gamma * jnp.einsum("sat,t->sa", t_hat, q.max(axis=1))
            return q_new, jnp.max(jnp.abs(q_new - q))

        sweeps, q = converge(sweep, est.q, self.max_sweeps, self.epsilon, self.sweep_block)
        return est.replace(q=q, sweeps=sweeps)

    def update(self, est: V4State, s, a, r, s_next, terminal) -> V4State:
        """One real step (s, a, r, s', terminal): record it, re-solve, refresh the cache of the state left (s).

        ``s``, ``a``, ``s_next``: int scalars; ``r``: float; ``terminal``: bool (s' is absorbing).
        """
        est = record_counts(est, s, a, r, s_next, terminal)
        est = self.solve(est)
        return est.replace(shown_q=est.shown_q.at[s].set(est.q[s]))

    def features(self, est: V4State, s) -> jax.Array:
        """(2n,) float32: cached Q(s,·)/Q_DENOM, then N(s,·)/100, for the state ``s`` the policy is in."""
        return jnp.concatenate([est.shown_q[s] / self.q_denom, est.n_sa[s] / COUNT_DENOM_V4])
