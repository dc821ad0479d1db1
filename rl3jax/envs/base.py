"""The task-family interface: a gymnax 1.0 ``Environment`` whose ``EnvParams`` is one task.

A task family adds to gymnax's interface what RL³ and the meta-episode wrapper (``rl3jax.meta_episode``) use.
Every hook is declared here with its default, so callers never probe for it:

=====================  =================================================  =========================================
hook                   what                                               default
=====================  =================================================  =========================================
``family``             registry name ('bandit', 'mdp', 'grid13', ...)     the env's ``name``
``sample_task(key)``   one task (``EnvParams``); vmap it to draw many     NotImplementedError
``sample_test_task``   one held-out task (evaluation; finite task sets)   ``sample_task``
``task_horizon``       TH, the task episode's own length (static int)     ``default_params.max_steps_in_episode``
``with_horizon(H)``    the family for meta horizon H                      itself (TH does not depend on H)
``num_states``         S, a bound on the state ids where dense tables     None: no dense tables
                       are wanted (bandit 2, mdp 10, grids N²)
``state_bound``        at most this many distinct states in one task      None: unknown (at most 2H + 1 met)
                       (sizes the discovery estimator; garnet S)
``state_index``        the concrete state (int32 scalar, any value)       ``state.pos`` (num_states None: error)
``has_state_index``    whether ``state_index`` applies                    overridden, or num_states set
``rl3_defaults``       estimator settings of METHOD §2                    None: no RL³
``v4_defaults``        settings of the paper's own code (semantics v4)    None: v4 not implemented
``grid_side``          N when states are the cells of an N×N grid         None
``true_model``         (T, R, absorbing, start) of one task (oracle)      NotImplementedError
``has_true_model``     whether ``true_model`` is implemented              overridden or not
``true_model_sparse``  (succ, P, R, absorbing, start): k successors each  NotImplementedError (``has_...``)
``is_terminated``      the state is absorbing                             False
``state_dim``          k, entries of ``state_features(state, params)``   0 (no ``state`` input block)
                       (the ``state_obs`` input block, float32)
=====================  =================================================  =========================================

Besides these, a family writes gymnax's members: ``name``, ``num_actions``, ``default_params`` (an ``EnvParams``
with a static ``max_steps_in_episode``), ``reset_env(key, params)``, ``step_env(key, state, action, params)``,
``get_obs`` (a flat float32 vector) and ``observation_space`` (``action_space`` defaults to ``Discrete(n)``). The
meta-episode wrapper calls ``reset_env`` / ``step_env`` itself and ends task episodes at TH or an absorbing
state, so the env state needs no step counter and gymnax's auto-reset is not used. ``tests/probes.py`` and
``rl3jax/envs/bandit.py`` are short examples; ``rl3jax.envs.registry.register`` adds a family from outside.

Per-task arrays are pytree fields of ``EnvParams``; sizes (and the task horizon TH, ``max_steps_in_episode``)
are static fields, so every task in a vmapped batch shares one shape. Task families import no estimator: the
estimator of a family is chosen by ``rl3jax.estimators.make_estimator`` from these hooks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces


@dataclasses.dataclass(frozen=True)
class RL3Defaults:
    """Estimator settings of a task family (METHOD §2, table of per-family defaults)."""

    q_denom: float  # Q_DENOM: the RL³ blocks of the policy input are divided by it
    alpha_laplace: float  # α_L of the Laplace-smoothed model (METHOD §2.1)
    epsilon: float  # value iteration stops once max|ΔQ| < ε (METHOD §2.2)
    max_sweeps: int | None  # None: the task horizon TH (bandits 1, MDPs 10); grids use H
    warm_start: bool  # value iteration starts from the previous solve's Q
    known_states: str  # "all": K = |S| from the start; "visited": the states seen so far in the task


#: the settings of a family that names its states (``state_index``) but has none of its own: the discovery
#: estimator (``rl3jax.estimators.discovery``), TH sweeps, warm start, the states seen so far
DISCOVERY_DEFAULTS = RL3Defaults(q_denom=1.0, alpha_laplace=0.1, epsilon=0.01, max_sweeps=None, warm_start=True,
                                 known_states="visited")


@dataclasses.dataclass(frozen=True)
class V4Defaults:
    """Settings of the paper's own code for a family (``semantics='v4'``, ``rl3jax/estimators/v4.py``)."""

    q_denom: float  # Q_DENOM of the shown Q (main.jl: 1 for bandits, 100 otherwise)
    drop_task_obs: bool = False  # RL³ leaves the task observation out of the input (main.jl: drop_observation)
    epsilon: float = 0.01  # value iteration stops once max|ΔQ| < ε (main.jl VI_EP: 0.1 for grids, else 0.01)


class TaskEnv(environment.Environment):
    """Base class of rl3jax task families (see the module docstring for the hooks and their defaults)."""

    #: an upper bound on the state ids where dense tables are wanted (None: no dense tables; see state_index)
    num_states: int | None = None
    #: at most this many distinct states occur in one task (None: unknown, or ``num_states``); it caps the slots of
    #: the discovery-indexed estimator (``rl3jax.estimators.make_estimator``) without building dense tables
    state_bound: int | None = None
    #: estimator settings of the family (None: RL³ does not apply)
    rl3_defaults: RL3Defaults | None = None
    #: settings of the paper's own code (None: semantics 'v4' is not implemented for the family)
    v4_defaults: V4Defaults | None = None
    #: side N of the square grid whose cells (row * N + col) are the states, where every transition stays or
    #: moves to one of the 4 neighbours (the sparse grid estimator applies); None otherwise
    grid_side: int | None = None

    @property
    def family(self) -> str:
        """The registry name of the family (``rl3jax.envs.catalog.FAMILIES``); the env's name by default."""
        return self.name

    @property
    def task_horizon(self) -> int:
        """TH: steps after which a task episode is truncated (a static int shared by every task of the family)."""
        return int(self.default_params.max_steps_in_episode)

    def with_horizon(self, horizon: int) -> TaskEnv:
        """The family for meta-episodes of H = ``horizon`` steps. Families whose TH is their own (bandits,
        MDPs, gymnax envs) return themselves; grids, which have no task horizon, set TH = H."""
        del horizon
        return self

    def sample_task(self, key: jax.Array) -> Any:
        """One task (``EnvParams``) drawn with ``key``; vmap over keys to draw a batch."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample_task")

    def sample_test_task(self, key: jax.Array) -> Any:
        """One held-out test task drawn with ``key`` (``rl3jax.evaluate.held_out_tasks``): ``sample_task`` unless the
        family draws its tasks from a finite training set and keeps a disjoint held-out set (``xland``)."""
        return self.sample_task(key)

    def state_index(self, state: Any, params: Any) -> jax.Array:
        """The concrete discrete state of env state ``state``: an int32 scalar of any value (in [0, num_states)
        where ``num_states`` is set); by default its ``pos``."""
        if self.num_states is None:
            raise NotImplementedError(f"{self.name} has no discrete states (num_states is None)")
        return state.pos

    @property
    def has_state_index(self) -> bool:
        """Whether the family names its discrete states (``state_index`` overridden, or ``num_states`` set)."""
        return type(self).state_index is not TaskEnv.state_index or self.num_states is not None

    def true_model(self, params: Any) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """The true model of one task, for the task-knowing oracle: T (S, A, S) float32 transition
        probabilities, expected reward (S, A) float32, absorbing (S,) bool and the start state (int32)."""
        raise NotImplementedError(f"{self.name} has no known model")

    @property
    def has_true_model(self) -> bool:
        """Whether the family implements ``true_model`` (the oracle baseline needs it)."""
        return type(self).true_model is not TaskEnv.true_model

    def true_model_sparse(self, params: Any) -> tuple[jax.Array, ...]:
        """The true model of one task with k successors per (s, a), for families whose dense T would be too
        big: succ (S, A, k) int32 successor states, prob (S, A, k) float32 their probabilities (summing to 1),
        expected reward (S, A) float32, absorbing (S,) bool and the start state (int32)."""
        raise NotImplementedError(f"{self.name} has no known sparse model")

    @property
    def has_true_model_sparse(self) -> bool:
        """Whether the family implements ``true_model_sparse`` (the oracle uses it before ``true_model``)."""
        return type(self).true_model_sparse is not TaskEnv.true_model_sparse

    def action_space(self, params=None) -> spaces.Discrete:
        """``spaces.Discrete(num_actions)``."""
        return spaces.Discrete(self.num_actions)

    #: entries of ``state_features`` (the ``state_obs`` input block; the gymnax bridge defines both); 0: none
    state_dim: int = 0

    def is_terminated(self, state, params) -> jax.Array:
        """Whether ``state`` is absorbing (bool scalar). TH is truncation, not termination."""
        return jnp.asarray(False)
