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

Envs whose state is plainly discrete name its fields in the catalog (``GymnaxSpec.state_fields``): the bridge
packs them into ``state_index`` (RL³, with ``DISCOVERY_DEFAULTS``) and shows them as ``state_features`` (RL²'s
extra input ``TrainConfig.state_obs``, for envs such as MetaMaze whose observation is a 3×3 view, not the cell).

The table of which gymnax envs are served, and how, is ``rl3jax.envs.catalog.GYMNAX_ENVS`` (no JAX needed to
refuse a name).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from rl3jax.envs.base import DISCOVERY_DEFAULTS, TaskEnv
from rl3jax.envs.catalog import CONTINUOUS, check_gymnax_name


class GymnaxTask(NamedTuple):
    """One task of a bridged gymnax env (a pytree): the env params and the task's state fields."""

    params: Any
    fields: dict


def _params(task):
    return task.params if isinstance(task, GymnaxTask) else task


class GymnaxBridge(TaskEnv):
    """A gymnax env as an rl3jax task family (see module docstring); RL³ applies where it has ``state_fields``.

    Args:
        env: the gymnax ``Environment`` (discrete actions).
        name: its registry name.
        task_fields: the ``EnvState`` fields its reset draws as the task (empty: the params are the task).
        state_fields: (field, size) pairs of its discrete state (``GymnaxSpec.state_fields``), or None.
        params: (field, value) pairs of the env params that differ from gymnax's defaults (``GymnaxSpec.params``).
    """

    def __init__(self, env, name: str, task_fields: tuple[str, ...] = (),
                 state_fields: tuple[tuple[str, int], ...] | None = None, params: tuple = ()):
        self.env = env
        self._default_params = env.default_params.replace(**dict(params))
        self._name = name
        self.task_fields = tuple(task_fields)
        self.state_fields = state_fields
        self.rl3_defaults = None if state_fields is None else DISCOVERY_DEFAULTS
        self._obs_args = tuple(inspect.signature(env.get_obs).parameters) if task_fields else ()

    # ----------------------------------------------------------------------------- the discrete state
    @property
    def has_state_index(self) -> bool:
        """Whether the env names its discrete state (``state_fields`` in its catalog entry)."""
        return self.state_fields is not None

    def _entries(self, state):
        return [(size, jnp.asarray(getattr(state, f), jnp.int32).reshape(-1)) for f, size in self.state_fields]

    def state_index(self, state, params):
        """The entries of the ``state_fields`` of ``state`` packed into one int32 scalar (mixed radix: each entry
        times the sizes of the entries after it); 0 for a bandit's one state. NotImplementedError without them."""
        if self.state_fields is None:
            raise NotImplementedError(f"{self.name} has no discrete states named (no state_fields in its "
                                      "rl3jax.envs.catalog.GYMNAX_ENVS entry)")
        index = jnp.int32(0)
        for size, values in self._entries(state):
            for v in values:
                index = index * size + v
        return index

    def state_features(self, state, params):
        """(k,) float32: each entry of the ``state_fields`` of ``state`` divided by its field's size (k entries,
        ``state_dim``), e.g. MetaMaze's cell (row/11, col/11)."""
        return jnp.concatenate([v / size for size, v in self._entries(state)]).astype(jnp.float32)

    @property
    def state_dim(self) -> int:
        """k, entries of ``state_features`` (0 without ``state_fields`` or with a single state)."""
        if not self.state_fields:
            return 0
        _, state = jax.eval_shape(lambda k: self.reset_env(k, self.sample_task(k)), jax.random.key(0))
        return sum(math.prod(getattr(state, f).shape) for f, _ in self.state_fields)

    # ----------------------------------------------------------------------------- forwarded
    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self):
        return self._default_params

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
        params = self.default_params
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
    return GymnaxBridge(env, name, spec.task_fields, spec.state_fields, spec.params)
