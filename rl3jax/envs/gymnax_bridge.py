"""Gymnax environments as rl3jax task families: one task per meta-episode, or a refusal by name.

A gymnax ``reset_env(key, params)`` draws the start state of an episode, and in several environments it also
draws what a meta-RL task is (the arm probabilities of ``BernoulliBandit-misc``, the goal of ``MetaMaze-misc``).
Chained naively inside one meta-episode (METHOD §1: task episodes back to back, one task), every episode reset
would then draw a new task. ``GymnaxBridge`` separates the two:

* ``sample_task(key)`` runs the env's reset once and keeps the state fields that form the task
  (``rl3jax.envs.catalog.GymnaxSpec.task_fields``) together with the env params: a ``GymnaxTask``;
* ``reset_env(key, task)`` resets the agent's part of the state and puts the task's fields back (and
  recomputes the observation from the patched state, for envs whose observation shows part of the task);
* ``step_env`` is the env's own step (no gymnax step changes these fields; tests/envs/test_gymnax_bridge.py checks
  that over meta-episodes several task episodes long).

The table of which gymnax envs are served, and how, is ``rl3jax.envs.catalog.GYMNAX_ENVS`` (no JAX needed to
refuse a name).
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import gymnax
import jax
from gymnax.environments import spaces

from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import CONTINUOUS, check_gymnax_name


class GymnaxTask(NamedTuple):
    """One task of a bridged gymnax env (a pytree): the env params and the task's state fields."""

    params: Any
    fields: dict


def _params(task):
    return task.params if isinstance(task, GymnaxTask) else task


class GymnaxBridge(TaskEnv):
    """A gymnax env as an rl3jax task family (see module docstring). RL² only: no tabular model for RL³
    (``num_states`` and ``rl3_defaults`` keep their defaults, None).

    Args:
        env: the gymnax ``Environment`` (discrete actions).
        name: its registry name.
        task_fields: the ``EnvState`` fields its reset draws as the task (empty: the params are the task).
    """

    def __init__(self, env, name: str, task_fields: tuple[str, ...] = ()):
        self.env = env
        self._name = name
        self.task_fields = tuple(task_fields)
        self._obs_args = tuple(inspect.signature(env.get_obs).parameters) if task_fields else ()

    # ----------------------------------------------------------------------------- forwarded
    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self):
        return self.env.default_params

    @property
    def num_actions(self) -> int:
        return int(self.env.num_actions)

    def observation_space(self, params=None):
        return self.env.observation_space(_params(params) if params is not None else self.default_params)

    def action_space(self, params=None):
        return self.env.action_space(_params(params) if params is not None else self.default_params)

    # ----------------------------------------------------------------------------- tasks
    def sample_task(self, key):
        """Draws one task: the env params, plus the task fields of a reset's state (kind ``task``)."""
        params = self.env.default_params
        if not self.task_fields:
            return params
        _, state = self.env.reset_env(key, params)
        return GymnaxTask(params, {f: getattr(state, f) for f in self.task_fields})

    def _get_obs(self, state, params, key):
        kw = {"state": state}
        if "params" in self._obs_args:
            kw["params"] = params
        if "key" in self._obs_args:
            kw["key"] = key
        return self.env.get_obs(**kw)

    def reset_env(self, key, task):
        """A new task episode of ``task``: the agent's start state is drawn, the task's fields are kept."""
        params = _params(task)
        if not self.task_fields:
            return self.env.reset_env(key, params)
        k_reset, k_obs = jax.random.split(key)
        _, state = self.env.reset_env(k_reset, params)
        state = state.replace(**task.fields)
        return self._get_obs(state, params, k_obs), state

    def step_env(self, key, state, action, task):
        return self.env.step_env(key, state, action, _params(task))


def make_bridged(name: str, variant: str = "train") -> GymnaxBridge:
    """The gymnax env ``name`` behind a ``GymnaxBridge`` (its ``FamilySpec`` entry point: ``variant`` is always
    'train', checked by the catalog). ValueError for a refused or unknown name."""
    spec = check_gymnax_name(name)
    env, params = gymnax.make(name)
    # the table's verdict, checked against the env itself (a gymnax release may change a space)
    if not isinstance(env.action_space(params), spaces.Discrete):
        raise ValueError(f"gymnax env {name!r} is not supported: {CONTINUOUS}")
    if not isinstance(env.observation_space(params), (spaces.Box, spaces.Discrete)):
        raise ValueError(f"gymnax env {name!r} is not supported: its observation space is a "
                         f"{type(env.observation_space(params)).__name__}; rl3jax flattens array observations only")
    return GymnaxBridge(env, name, spec.task_fields)
