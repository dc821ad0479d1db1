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

Grids (``nstates=None``): the original's grid task is ``GridWorldContinuous{Float32}`` (main_helper_fns.jl 55), a
Float32 vector state, so ``get_state_id`` (learned_mdp.jl 119-146, ``assign_abstract_state_id`` 346-380 with
radius 0) numbers the concrete states 0, 1, ... in order of discovery, the model has only the states seen so far,
and VAMDP.jl 137-157 solves from new zero Q and V whenever that number changed (else warm). Concrete states are
the callers' ints (a cell ``row * N + col``); ``obs_fn`` gives the task observation of one.
"""

from __future__ import annotations

import numpy as np


class LearnedTabularModel:
    """``learned_mdp.jl``: counts in dictionaries over state ids. ``nstates`` given: Int states, the id is the
    state itself (bandits, MDPs); None: ids in order of discovery (grids), ``nstates`` = ids given so far."""

    def __init__(self, nstates: int | None, nactions: int, default_reward: float = 0.0):
        self.by_discovery = nstates is None
        self.nstates, self.nactions = nstates or 0, nactions
        self.state_id: dict[int, int] = {}
        self.actions_support: dict[int, set] = {}
        self.T_counts: dict[tuple, int] = {}
        self.T_counts_nextstate: dict[tuple, dict] = {}
        self.T: dict[tuple, dict] = {}
        self.T_support: dict[tuple, set] = {}
        self.experience_tuple_counts: dict[tuple, int] = {}
        self.R: dict[tuple, float] = {}
        self.absorbing_states: set = set()
        self.default_reward = default_reward

    def get_state_id(self, s: int) -> int:
        if s not in self.state_id:
            self.state_id[s] = self.nstates if self.by_discovery else s  # Julia: nstates + 1, 1-based
            self.nstates = max(self.nstates, self.state_id[s] + 1)
        return self.state_id[s]

    def update_model(self, s: int, a: int, r: float, s2: int, is_absorbing_state: bool) -> None:
        s, s2 = self.get_state_id(s), self.get_state_id(s2)  # ids: s first, then s'
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

    def transition_support(self, s: int, a: int) -> set:
        if s in self.absorbing_states or a not in self.actions_support.get(s, ()):
            return {s}
        return self.T_support[(s, a)]

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
    ``deltas``, if given, receives max|ΔQ| of every sweep. T and R are filled entry by entry from the model
    (zero outside each (s, a)'s support, as the Julia's dense arrays); a sweep is one float64 array expression
    of ``bellman_backup_synchronous!``: q_new(s,a) = Σ_s' T(s'|s,a)·(R(s,a,s') + γ v(s')), δ = max|q_new − q|."""
    S, A = model.nstates, model.nactions
    T = np.zeros((S, A, S))  # Julia's T[s′, a, s], stored here as T[s, a, s′]
    R = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            for s2 in model.transition_support(s, a):
                T[s, a, s2] = model.transition_probability(s, a, s2)
                R[s, a, s2] = model.reward(s, a, s2)
    i = 0
    while i < horizon:
        q_new = (T * (R + gamma * v[None, None, :])).sum(axis=2).T  # (A, S)
        delta = float(np.abs(q_new - q).max())
        q[:] = q_new
        v[:] = q.max(axis=0)
        if deltas is not None:
            deltas.append(delta)
        i += 1
        if delta < eps:
            break
    return i


def grid_obs(side: int):
    """The task observation of cell ``row * side + col`` on an N×N grid: (row, col) 1-based over N, float32
    (GridWorlds.jl ``GridWorldContinuous``: ``T[(rcindex(gw, s) ./ size(gw.grid))...]``)."""
    return lambda c: np.array([(c // side + 1) / side, (c % side + 1) / side], np.float32)


class V4Reference:
    """One env slot: ``reset_task`` (a new meta-episode) and ``step`` return the original's policy input.

    Args: nstates (None: ids by discovery, the grids); nactions; task_horizon (TH, also the sweep budget);
    horizon (H); q_denom (1 bandits, 100 MDPs and grids); drop_observation (True for RL³ on bandits); gamma
    0.99; eps 0.01 (0.1 on grids, main.jl); obs_fn: the task observation of a concrete state (default one-hot of
    nstates).
    """

    def __init__(self, nstates, nactions, task_horizon, horizon, q_denom, drop_observation, gamma=0.99,
                 eps=0.01, obs_fn=None):
        self.S, self.A = nstates, nactions
        self.TH, self.H = task_horizon, horizon
        self.q_denom, self.drop = q_denom, drop_observation
        self.gamma, self.eps = gamma, eps
        self.obs_fn = obs_fn or (lambda c: np.eye(nstates, dtype=np.float32)[c])

    # VAMDP.jl: the wrapper is built once per task (Iterators.map), so the preallocated arrays start at zero;
    # with Int states (bandits, MDPs) they exist from construction, over all S (VAMDP.jl 46-63), else not yet
    def reset_task(self, start_state: int) -> np.ndarray:
        self.model = LearnedTabularModel(self.S, self.A)
        self.prealloc_Q = None
        if self.S:
            self._alloc()
        self.q: dict[int, np.ndarray] = {}
        self.counts: dict[int, np.ndarray] = {}
        self.sweeps = 0
        self.steps = 0  # MetaMDPwithTimeContext.steps
        self.task_episode_steps = 0
        self._vamdp_reset(start_state)
        return self._evidence(True, None, 0.0)

    def _alloc(self):
        self.prealloc_Q = np.zeros((self.A, self.model.nstates))
        self.prealloc_V = np.zeros(self.model.nstates)

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
        # VAMDP.jl 137-157: new zero Q and V when the number of states in the model changed, else warm start
        self.rezeroed = self.prealloc_Q is None or self.prealloc_Q.shape != (self.A, self.model.nstates)
        if self.rezeroed:
            self._alloc()
        self.deltas: list[float] = []
        self.sweeps = value_iteration(self.model, self.gamma, self.TH, self.eps, self.prealloc_Q, self.prealloc_V,
                                      self.deltas)
        self.q[s] = self.q_states([s])[0].astype(np.float32)  # the state left is refreshed
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
        parts = [] if self.drop else [self.obs_fn(self.o)]
        parts += [self.q[self.o] / np.float32(self.q_denom), self.counts[self.o] / 100]
        return np.concatenate(parts)

    def _evidence(self, new_episode: bool, a, r) -> np.ndarray:
        prev = np.zeros(self.A + 1, np.float32)
        if not new_episode:
            prev[a] = 1
            prev[self.A] = r
        time = np.array([self.task_episode_steps / self.TH, self.steps / self.H])
        return np.concatenate([prev, [float(new_episode)], self._vamdp_state(), time]).astype(np.float64)

    @property
    def known(self) -> list[int]:
        """The concrete states in the model (seen as s or s' of a step), in order of discovery on grids."""
        return sorted(self.model.state_id, key=self.model.state_id.get)

    def q_states(self, states) -> np.ndarray:
        """(len(states), A) float64 latest value-iteration Q of the given concrete states (in the model)."""
        return np.stack([self.prealloc_Q[:, self.model.state_id.get(c, c)] for c in states])

    def resync(self, q_cells: np.ndarray) -> None:
        """Test helper (not in the original): replace the latest solve's Q (given (num concrete states, A),
        indexed by concrete state) and V = max Q, and the cache of the state just left, e.g. after a float32
        solve stopped one sweep apart at a borderline ΔQ."""
        states = range(self.S) if self.S else self.known
        for c in states:
            self.prealloc_Q[:, self.model.state_id.get(c, c)] = q_cells[c]
        self.prealloc_V[:] = self.prealloc_Q.max(axis=0)
        self.q[self.left] = self.q_states([self.left])[0].astype(np.float32)

    @property
    def Q(self) -> np.ndarray:
        """(S, A) latest value-iteration Q (Int states: the id is the state)."""
        return self.prealloc_Q.T.copy()

    @property
    def V(self) -> np.ndarray:
        return self.prealloc_V.copy()
