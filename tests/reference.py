"""A small, loop-based NumPy reference (a Python loop over steps and sweeps) of METHOD §1–§2 (meta-episode inputs and the RL³ Q-estimator).

Written from docs/METHOD.md, independently of the JAX code, to be slow and obvious rather than fast.
It works in float64 and consumes only realised transitions: the start state of the task plus, per real step,
``(s, a, r, s_next, terminal)`` with concrete discrete state indices. From these it rebuilds everything the
policy sees (§1): the task-episode resets (terminal flag or TH steps), the time context, and the RL³ blocks.

What comes from METHOD (docs/METHOD.md):

* §2.1 model: counts N(s,a), N(s,a,s'), running means of r and r², absorbing flags (a state is absorbing once
  it was reached by a step whose terminal flag is set), the known-state set, and
  T̂(s'|s,a) = 1[s'==s] (absorbing s) | 1/K over known s' (N(s,a)=0) | (N(s,a,s')+α)/(N(s,a)+αK) otherwise;
  R̂ = 0 for absorbing s, R̄(s,a,s') if seen, else 0.
* §2.2 value iteration after every real step, γ = 0.95, synchronous sweeps from Q = 0 (or warm-started from
  the previous Q, re-zeroed when the known-state set grew), at most ``max_sweeps``; a sweep is applied and
  then the stop test max|ΔQ| < ε is made.
* §2.3 standard errors: transition s.e. sqrt(p(1−p)/(N(s,a)+αK)), sqrt(1/12) when N(s,a) = 0; reward s.e.
  std/sqrt(n−1) with n = N(s,a,s') and std the (population) standard deviation of the observed rewards, 1.0
  when n ≤ 1; Var(Q) = Σ_s' T²·Var(X) + X²·Var(T) + Var(X)·Var(T) with X = R̂ + γV(s'),
  Var(X) = Var(R) + γ²·E_v(s')², E_q = sqrt(Var), E_v = E_q at the greedy action.
* §2.4 modes: ``fresh`` shows the current state's Q from the latest solve; ``entered`` shows a cache that is
  refreshed for a state only when a real step enters it (at a task reset the start state's cached values).
* §1 policy input: prev action one-hot, prev reward, first-step flag, t/H, τ/TH, task observation,
  then (RL³) advantages (Q − V)/Q_DENOM, V/Q_DENOM, s.e. block (n + 1), counts N(s,·)/10.

Choices taken from the JAX code (rl3jax/estimators/tabular.py, rl3jax/meta_episode.py) where METHOD is silent:

* standard errors of absorbing states are 0 (their transition and reward s.e. are 0, so their E_q stays 0);
* transition/reward s.e. are only over *known* next states (0 towards states not yet known);
* the s.e. block is (E_q(s,·), E_v(s)) divided by Q_DENOM, like the Q/V blocks;
* inside a sweep the greedy action (for E_v) is taken from the previous iterate, ties broken towards the
  lowest action index (np.argmax); the shown E_v is E_q at argmax of the shown Q;
* the convergence test looks at ΔQ only (not at the s.e.);
* with warm start, the s.e. are warm-started too (from the previous solve's s.e.), re-zeroed with Q;
* 'visited' known states: the start state is known from the beginning of the task; a state becomes known
  when a step reaches it; the count block is N(s,·) of the current concrete state (never cached).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class RefConfig:
    num_states: int
    num_actions: int
    gamma: float = 0.95
    alpha: float = 0.1
    epsilon: float = 0.01
    max_sweeps: int = 10
    warm_start: bool = False
    mode: str = "fresh"  # 'fresh' | 'entered'
    std_errors: bool = False
    q_denom: float = 1.0
    known_states: str = "all"  # 'all' | 'visited'


class TabularModel:
    """§2.1: the learned model of one task, kept across task episodes, cleared for a new task."""

    def __init__(self, cfg: RefConfig, start_state: int):
        S, A = cfg.num_states, cfg.num_actions
        self.cfg = cfg
        self.n_sa = np.zeros((S, A))
        self.n_sas = np.zeros((S, A, S))
        self.r_sum = np.zeros((S, A, S))
        self.r2_sum = np.zeros((S, A, S))
        self.absorbing = [False] * S
        if cfg.known_states == "all":
            self.known = [True] * S
        else:
            self.known = [s == start_state for s in range(S)]

    def add(self, s, a, r, s_next, terminal) -> bool:
        """Records one real transition; returns whether the known-state set grew."""
        grew = not self.known[s_next]
        self.n_sa[s, a] += 1
        self.n_sas[s, a, s_next] += 1
        self.r_sum[s, a, s_next] += r
        self.r2_sum[s, a, s_next] += r * r
        if terminal:
            self.absorbing[s_next] = True
        self.known[s_next] = True
        return grew

    def estimates(self):
        """T̂, R̂ (S, A, S) and, for §2.3, the standard errors of T̂ and R̂."""
        cfg = self.cfg
        S = cfg.num_states
        alpha = cfg.alpha
        K = sum(self.known)
        known = np.array(self.known, float)[None, None, :]  # over next states s'
        n = self.n_sa[:, :, None]
        tried = n > 0
        smoothed = (self.n_sas + alpha) / (n + alpha * K) * known
        T = np.where(tried, smoothed, known / K)
        T_se = np.where(tried, np.sqrt(smoothed * (1.0 - smoothed) / (n + alpha * K)), np.sqrt(1.0 / 12.0) * known)
        m = self.n_sas
        mean = np.where(m > 0, self.r_sum / np.maximum(m, 1), 0.0)  # R̄ if seen, else 0
        var = np.maximum(self.r2_sum / np.maximum(m, 1) - mean ** 2, 0.0)  # population variance
        R = mean
        R_se = np.where(m > 1, np.sqrt(var) / np.sqrt(np.maximum(m - 1.0, 1.0)), 1.0) * known
        for s in range(S):
            if self.absorbing[s]:  # self loop, zero reward, zero s.e. (zero s.e.: the code's choice)
                T[s], R[s], T_se[s], R_se[s] = 0.0, 0.0, 0.0, 0.0
                T[s, :, s] = 1.0
        return T, R, T_se, R_se


def value_iteration(cfg: RefConfig, model: TabularModel, q0, e0):
    """§2.2/§2.3: synchronous sweeps from (q0, e0); returns (Q, E_q, sweeps used)."""
    S, A = cfg.num_states, cfg.num_actions
    T, R, T_se, R_se = model.estimates()
    g = cfg.gamma
    q, e = q0.copy(), e0.copy()
    sweeps = 0
    known = np.array(model.known)
    while sweeps < cfg.max_sweeps:
        # synchronous: V and its s.e. (E_q at the greedy action) both from the previous iterate
        greedy = np.argmax(q, axis=1)
        v = q[np.arange(S), greedy]
        e_v = e[np.arange(S), greedy]
        x = R + g * v[None, None, :]  # X(s,a,s') = R̂ + γ V(s')
        q_new = np.sum(T * x, axis=2)
        e_new = np.zeros((S, A))
        if cfg.std_errors:
            var_x = R_se ** 2 + (g * e_v[None, None, :]) ** 2
            var_t = T_se ** 2
            e_new = np.sqrt(np.sum(T ** 2 * var_x + x ** 2 * var_t + var_x * var_t, axis=2))
        q_new[~known] = 0.0  # only known states are part of the model
        e_new[~known] = 0.0
        delta = np.max(np.abs(q_new - q))
        q, e = q_new, e_new
        sweeps += 1
        if delta < cfg.epsilon:  # the sweep is applied, then the stop test
            break
    return q, e, sweeps


class Estimator:
    """§2: model + value iteration after every real step + the shown Q of §2.4."""

    def __init__(self, cfg: RefConfig, start_state: int):
        S, A = cfg.num_states, cfg.num_actions
        self.cfg = cfg
        self.model = TabularModel(cfg, start_state)
        self.q = np.zeros((S, A))
        self.e = np.zeros((S, A))
        self.cache_q = np.zeros((S, A))  # 'entered' mode: refreshed when a step enters the state
        self.cache_e = np.zeros((S, A))
        self.sweeps = 0

    def step(self, s, a, r, s_next, terminal):
        grew = self.model.add(s, a, r, s_next, terminal)
        S, A = self.cfg.num_states, self.cfg.num_actions
        if self.cfg.warm_start and not grew:
            q0, e0 = self.q, self.e
        else:
            q0, e0 = np.zeros((S, A)), np.zeros((S, A))
        self.q, self.e, self.sweeps = value_iteration(self.cfg, self.model, q0, e0)
        self.cache_q[s_next] = self.q[s_next]
        self.cache_e[s_next] = self.e[s_next]

    def features(self, s):
        cfg = self.cfg
        if cfg.mode == "fresh":
            q, e = self.q[s], self.e[s]
        else:
            q, e = self.cache_q[s], self.cache_e[s]
        g = int(np.argmax(q))
        v, e_v = q[g], e[g]
        d = cfg.q_denom
        return np.concatenate([(q - v) / d, [v / d], e / d, [e_v / d], self.model.n_sa[s] / 10.0])


def one_hot(i, n):
    x = np.zeros(n)
    if i is not None and i >= 0:
        x[i] = 1.0
    return x


def meta_episode_inputs(start_state, transitions, *, horizon, task_horizon, num_actions, task_obs,
                        estimator_cfg: RefConfig | None = None, sweeps_out: list | None = None):
    """§1: the H + 1 policy inputs of one meta-episode (before step 1, ..., after step H).

    ``transitions``: H tuples (s, a, r, s_next, terminal) of concrete state indices as realised by the task.
    ``task_obs(s) -> vector``: the task observation of concrete state ``s``.
    Returns (inputs (H+1, m), rewards (H,), meta-episode return); ``sweeps_out`` (a list) receives the
    number of value-iteration sweeps of every step. Asserts that every transition starts from
    the state the reference believes the agent is in (so resets are where METHOD puts them).
    """
    assert len(transitions) == horizon
    est = Estimator(estimator_cfg, start_state) if estimator_cfg is not None else None
    cur = start_state
    tau = 0
    prev_a, prev_r = -1, 0.0
    inputs, rewards = [], []

    def observe(t):
        parts = [one_hot(prev_a, num_actions), [prev_r], [1.0 if t == 0 else 0.0],
                 [t / horizon, tau / task_horizon], np.asarray(task_obs(cur), float)]
        if est is not None:
            parts.append(est.features(cur))
        return np.concatenate(parts)

    inputs.append(observe(0))
    for t, (s, a, r, s_next, terminal) in enumerate(transitions):
        assert s == cur, f"step {t}: transition starts in {s}, the reference is in {cur}"
        if est is not None:
            est.step(s, a, r, s_next, terminal)
            if sweeps_out is not None:
                sweeps_out.append(est.sweeps)
        tau += 1
        if terminal or tau >= task_horizon:
            cur, tau = start_state, 0  # the terminal state is never shown; same task, back at the start
        else:
            cur = s_next
        prev_a, prev_r = a, r
        rewards.append(r)
        inputs.append(observe(t + 1))
    return np.stack(inputs), np.array(rewards), float(np.sum(rewards))
