"""The task-family interface: a gymnax 1.0 ``Environment`` whose ``EnvParams`` is one task.

A task family adds three things to gymnax's interface so that RL³ and the meta-episode wrapper can use it:

* ``sample_task(key) -> EnvParams`` draws one task (vmap it to draw thousands);
* ``state_index(state, params) -> int32`` names the concrete discrete state the RL³ estimator models;
* ``rl3_defaults`` holds the family's estimator settings from METHOD §2 (Q_DENOM, α_L, ε, sweeps, warm start).

Per-task arrays are pytree fields of ``EnvParams``; sizes (and the task horizon TH,
``max_steps_in_episode``) are static fields, so every task in a vmapped batch shares one shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment


@dataclasses.dataclass(frozen=True)
class RL3Defaults:
    """Estimator settings of a task family (METHOD §2)."""

    q_denom: float
    alpha_laplace: float
    epsilon: float
    max_sweeps: int | None  # None: the task horizon TH (bandits 1, MDPs 10); grids use H
    warm_start: bool
    known_states: str  # "all": K = |S| from the start; "visited": the states seen so far in the task


class TaskEnv(environment.Environment):
    """Base class of rl3jax task families (see module docstring)."""

    #: number of concrete discrete states the estimator models (None: not a tabular family)
    num_states: int | None = None
    #: estimator settings of the family
    rl3_defaults: RL3Defaults | None = None

    def sample_task(self, key: jax.Array) -> Any:
        raise NotImplementedError

    def state_index(self, state: Any, params: Any) -> jax.Array:
        raise NotImplementedError

    def obs_dim(self, params: Any) -> int:
        return int(self.observation_space(params).shape[0])

    def is_terminated(self, state, params) -> jax.Array:  # absorbing tiles only; TH is truncation
        return jnp.asarray(False)
