"""Loop-based NumPy reference of the paper's own code's object-level RL and policy input ('v4' semantics).

Written from the Julia sources, not from rl3jax: bhatiaabhinav/RL3 at commit f8121786 (``VAMDP.jl``:
``ValueEstimateAugmentedMDPER`` ``reset!`` / ``step!`` / ``value_iteration!``; ``learned_mdp.jl``:
``LearnedTabularModel``, ``update_model!``, ``transition_probability``, ``reward``; ``main.jl``: γ, Q_DENOM,
VI_EP, task horizons, ``drop_observation``), ValueIteration.jl 2941831 (``bellman_backup_synchronous!``),
MetaMDPs.jl 97e613d (``MetaMDPwithTimeContext``: the time context) and MDPs.jl 09f2024
(``EvidenceObservationWrapper``: prev action, prev reward, new-episode flag). Dictionaries and explicit loops
in Float64, as in Julia; states and actions are 0-based here.

The reference does not simulate the task: it is fed the real transitions (s, a, r, s', absorbing, whether the
task episode ended, the start state after a reset) and returns the policy input the original would build.
"""

from __future__ import annotations

import numpy as np


class LearnedTabularModel:
    """``learned_mdp.jl``: counts in dictionaries; integer states (the state id is the state itself)."""

    def __init__(self, nstates: int, nactions: int, default_reward: float = 0.0):
        self.nstates, self.nactions = nstates, nactions
        self.actions_support: dict[int, set] = {}
        self.T_counts: dict[tuple, int] = {}
        self.T_counts_nextstate: dict[tuple, dict] = {}
        self.T: dict[tuple, dict] = {}
        self.T_support: dict[tuple, set] = {}
        self.experience_tuple_counts: dict[tuple, int] = {}
        self.R: dict[tuple, float] = {}
        self.absorbing_states: set = set()
        self.default_reward = default_reward

    def update_model(self, s: int, a: int, r: float, s2: int, is_absorbing_state: bool) -> None:
        self.actions_support.setdefault(s, set()).add(a)
        if (s, a) not in self.T_counts_nextstate:
            self.T_counts_nextstate[(s, a)] = {}
            self.T[(s, a)] = {}
            self.T_support[(s, a)] = set()
        self.T_counts[(s, a)] = self.T_counts.get((s, a), 0) + 1
        self.T_support[(s, a)].add(s2)
        self.T_counts_nextstate[(s, a)][s2] = self.T_counts_nextstate[(s, a)].get(s2, 0) + 1
        for x in self.T_support[(s, a)]:
            self.T[(s, a)][x] = self.T_counts_nextstate[(s, a)][x] / self.T_counts[(s, a)]
        n = self.experience_tuple_counts.get((s, a, s2), 0) + 1
        self.experience_tuple_counts[(s, a, s2)] = n
        self.R[(s, a, s2)] = ((n - 1) * self.R.get((s, a, s2), 0.0) + r) / n
        if is_absorbing_state:
            self.absorbing_states.add(s2)

    def transition_probability(self, s: int, a: int, s2: int) -> float:
        if s in self.absorbing_states:
            return 1.0 if s2 == s else 0.0
        if s in self.actions_support and a in self.actions_support[s]:
            return self.T[(s, a)].get(s2, 0.0)
        return 1.0 if s2 == s else 0.0

    def reward(self, s: int, a: int, s2: int) -> float:
        if s in self.absorbing_states:
            return 0.0
        return self.R.get((s, a, s2), self.default_reward)


def value_iteration(model: LearnedTabularModel, gamma: float, horizon: int, eps: float,
                    q: np.ndarray, v: np.ndarray, deltas: list | None = None) -> int:
    """``value_iteration!`` of VAMDP.jl in place on the preallocated q (A, S) and v (S,); returns sweeps.
    ``deltas``, if given, receives max|ΔQ| of every sweep."""
    S, A = model.nstates, model.nactions
    T = np.zeros((S, A, S))  # Julia's T[s′, a, s], stored here as T[s, a, s′]
    R = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            for s2 in range(S):
                T[s, a, s2] = model.transition_probability(s, a, s2)
                R[s, a, s2] = model.reward(s, a, s2)
    i = 0
    while i < horizon:
        delta = 0.0  # bellman_backup_synchronous!
        for s in range(S):
            for a in range(A):
                q_new = 0.0
                for s2 in range(S):
                    q_new += T[s, a, s2] * (R[s, a, s2] + gamma * v[s2])
                delta = max(delta, abs(q_new - q[a, s]))
                q[a, s] = q_new
        for s in range(S):
            v[s] = max(q[:, s])
        if deltas is not None:
            deltas.append(delta)
        i += 1
        if delta < eps:
            break
    return i


class V4Reference:
    """One env slot: ``reset_task`` (a new meta-episode) and ``step`` return the original's policy input.

    Args: nstates, nactions; task_horizon (TH, also the sweep budget); horizon (H); q_denom (1 bandits, 100
    MDPs); drop_observation (True for RL³ on bandits); gamma 0.99; eps 0.01.
    """

    def __init__(self, nstates, nactions, task_horizon, horizon, q_denom, drop_observation, gamma=0.99,
                 eps=0.01):
        self.S, self.A = nstates, nactions
        self.TH, self.H = task_horizon, horizon
        self.q_denom, self.drop = q_denom, drop_observation
        self.gamma, self.eps = gamma, eps

    # VAMDP.jl: the wrapper is built once per task (Iterators.map), so the preallocated arrays start at zero
    def reset_task(self, start_state: int) -> np.ndarray:
        self.prealloc_Q = np.zeros((self.A, self.S))
        self.prealloc_V = np.zeros(self.S)
        self.q: dict[int, np.ndarray] = {}
        self.counts: dict[int, np.ndarray] = {}
        self.model = LearnedTabularModel(self.S, self.A)
        self.sweeps = 0
        self.steps = 0  # MetaMDPwithTimeContext.steps
        self.task_episode_steps = 0
        self._vamdp_reset(start_state)
        return self._evidence(True, None, 0.0)

    def _ensure(self, o):
        if o not in self.q:
            self.q[o] = np.zeros(self.A, np.float32)
            self.counts[o] = np.zeros(self.A, np.int64)

    def _vamdp_reset(self, start_state):
        self.o = start_state
        self._ensure(self.o)

    def step(self, s: int, a: int, r: float, s2: int, absorbing: bool, episode_over: bool,
             start_state: int) -> np.ndarray:
        """The real step s -a-> s2 with reward r; ``absorbing``: s2 is a terminal state of the task;
        ``episode_over``: the task episode ended (absorbing or τ reached TH) and restarts at ``start_state``."""
        assert s == self.o
        self._ensure(s2)
        self.model.update_model(s, a, r, s2, absorbing)
        self.deltas: list[float] = []
        self.sweeps = value_iteration(self.model, self.gamma, self.TH, self.eps, self.prealloc_Q, self.prealloc_V,
                                      self.deltas)
        self.q[s] = self.prealloc_Q[:, s].astype(np.float32)  # the state left is refreshed
        self.left = s
        self.counts[s][a] += 1
        self.o = s2
        self.steps += 1
        self.task_episode_steps += 1
        if episode_over:
            self.task_episode_steps = 0
            self._vamdp_reset(start_state)  # VAMDP reset!: cached values of the start state, no new solve
        return self._evidence(False, a, r)

    def _vamdp_state(self):
        parts = []
        if not self.drop:
            onehot = np.zeros(self.S, np.float32)
            onehot[self.o] = 1
            parts.append(onehot)
        parts += [self.q[self.o] / np.float32(self.q_denom), self.counts[self.o] / 100]
        return np.concatenate(parts)

    def _evidence(self, new_episode: bool, a, r) -> np.ndarray:
        prev = np.zeros(self.A + 1, np.float32)
        if not new_episode:
            prev[a] = 1
            prev[self.A] = r
        time = np.array([self.task_episode_steps / self.TH, self.steps / self.H])
        return np.concatenate([prev, [float(new_episode)], self._vamdp_state(), time]).astype(np.float64)

    def resync(self, q_sa: np.ndarray) -> None:
        """Test helper (not in the original): replace the latest solve's Q (given (S, A)) and V = max Q, and the
        cache of the state just left, e.g. after a float32 solve stopped one sweep apart at a borderline ΔQ."""
        self.prealloc_Q[:] = np.asarray(q_sa, np.float64).T
        self.prealloc_V[:] = self.prealloc_Q.max(axis=0)
        self.q[self.left] = self.prealloc_Q[:, self.left].astype(np.float32)

    @property
    def Q(self) -> np.ndarray:
        """(S, A) latest value-iteration Q."""
        return self.prealloc_Q.T.copy()

    @property
    def V(self) -> np.ndarray:
        return self.prealloc_V.copy()
