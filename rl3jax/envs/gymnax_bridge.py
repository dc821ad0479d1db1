"""Gymnax environments as rl3jax task families: one task per meta-episode, or a refusal by name.

A gymnax ``reset_env(key, params)`` draws the start state of an episode, and in several environments it also
draws what a meta-RL task is (the arm probabilities of ``BernoulliBandit-misc``, the goal of ``MetaMaze-misc``).
Chained naively inside one meta-episode (METHOD §1: task episodes back to back, one task), every episode reset
would then draw a new task. ``GymnaxBridge`` separates the two:

* ``sample_task(key)`` runs the env's reset once and keeps the state fields that form the task
  (``GymnaxSpec.task_fields``) together with the env params: a ``GymnaxTask``;
* ``reset_env(key, task)`` resets the agent's part of the state and puts the task's fields back (and
  recomputes the observation from the patched state, for envs whose observation shows part of the task);
* ``step_env`` is the env's own step (no gymnax step changes these fields; tests/test_gymnax_bridge.py checks
  that over meta-episodes several task episodes long).

Every name in ``gymnax.registered_envs`` has an entry in ``GYMNAX_ENVS`` (a test keeps the table complete):
``fixed`` (the reset draws only the agent's start state; the task is the env's params), ``task`` (the fields
above), or ``refused`` with the reason (continuous actions, which the categorical policy cannot serve; data
downloaded at creation). This module imports no JAX at import time, so a refusal costs no JAX start-up.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, NamedTuple

CONTINUOUS = "its action space is continuous (a Box); rl3jax's policies are categorical over discrete actions"


@dataclasses.dataclass(frozen=True)
class GymnaxSpec:
    kind: str  # "fixed" | "task" | "refused"
    task_fields: tuple[str, ...] = ()  # kind "task": the EnvState fields its reset draws as the task
    reason: str = ""  # kind "refused": why


def _fixed() -> GymnaxSpec:
    return GymnaxSpec("fixed")


def _task(*fields: str) -> GymnaxSpec:
    return GymnaxSpec("task", tuple(fields))


def _refused(reason: str) -> GymnaxSpec:
    return GymnaxSpec("refused", reason=reason)


#: every gymnax env (gymnax 0.0.9 / 1.0 registry) -> how rl3jax serves it
GYMNAX_ENVS: dict[str, GymnaxSpec] = {
    "CartPole-v1": _fixed(),
    "Pendulum-v1": _refused(CONTINUOUS),
    "Acrobot-v1": _fixed(),
    "MountainCar-v0": _fixed(),
    "MountainCarContinuous-v0": _refused(CONTINUOUS),
    "Asterix-MinAtar": _fixed(),
    "Breakout-MinAtar": _fixed(),
    "Freeway-MinAtar": _fixed(),
    "Seaquest-MinAtar": _fixed(),
    "SpaceInvaders-MinAtar": _fixed(),
    "Catch-bsuite": _fixed(),
    "DeepSea-bsuite": _task("action_mapping"),
    "MemoryChain-bsuite": _task("context", "query"),
    "UmbrellaChain-bsuite": _task("need_umbrella"),
    "DiscountingChain-bsuite": _fixed(),
    "MNISTBandit-bsuite": _refused("creating it downloads the MNIST data set (and fails without a network); "
                                   "rl3jax does not fetch data"),
    "SimpleBandit-bsuite": _task("rewards"),
    "FourRooms-misc": _task("goal"),
    "MetaMaze-misc": _task("goal"),
    "PointRobot-misc": _refused(CONTINUOUS),
    "BernoulliBandit-misc": _task("reward_probs", "exp_reward_best"),
    "GaussianBandit-misc": _task("mu"),
    "Reacher-misc": _refused(CONTINUOUS),
    "Swimmer-misc": _refused(CONTINUOUS),
    "Pong-misc": _fixed(),
    "FrozenLake-misc": _fixed(),
}


def check_gymnax_name(name: str) -> GymnaxSpec:
    """The spec of gymnax env ``name``; ValueError naming the env and the reason when rl3jax cannot serve it."""
    spec = GYMNAX_ENVS.get(name)
    if spec is None:
        raise ValueError(f"gymnax env {name!r} is not classified by rl3jax (rl3jax.envs.gymnax_bridge."
                         "GYMNAX_ENVS says which of its state fields are the task); not supported")
    if spec.kind == "refused":
        raise ValueError(f"gymnax env {name!r} is not supported: {spec.reason}")
    return spec


class GymnaxTask(NamedTuple):
    """One task of a bridged gymnax env (a pytree): the env params and the task's state fields."""

    params: Any
    fields: dict


def _params(task):
    return task.params if isinstance(task, GymnaxTask) else task


class GymnaxBridge:
    """A gymnax env as an rl3jax task family (see module docstring). RL² only: no tabular model for RL³.

    Args:
        env: the gymnax ``Environment`` (discrete actions).
        name: its registry name.
        task_fields: the ``EnvState`` fields its reset draws as the task (empty: the params are the task).
    """

    num_states = None  # not a tabular family: RL³ needs one
    rl3_defaults = None

    def __init__(self, env, name: str, task_fields: tuple[str, ...] = ()):
        self.env = env
        self.name = name
        self.task_fields = tuple(task_fields)
        self._obs_args = tuple(inspect.signature(env.get_obs).parameters) if task_fields else ()

    # ----------------------------------------------------------------------------- forwarded
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
        import jax

        k_reset, k_obs = jax.random.split(key)
        _, state = self.env.reset_env(k_reset, params)
        state = state.replace(**task.fields)
        return self._get_obs(state, params, k_obs), state

    def step_env(self, key, state, action, task):
        return self.env.step_env(key, state, action, _params(task))


def make_bridged(name: str) -> GymnaxBridge:
    """The gymnax env ``name`` behind a ``GymnaxBridge`` (ValueError for a refused or unknown name)."""
    spec = check_gymnax_name(name)
    import gymnax
    from gymnax.environments import spaces

    env, params = gymnax.make(name)
    # the table's verdict, checked against the env itself (a gymnax release may change a space)
    if not isinstance(env.action_space(params), spaces.Discrete):
        raise ValueError(f"gymnax env {name!r} is not supported: {CONTINUOUS}")
    if not isinstance(env.observation_space(params), (spaces.Box, spaces.Discrete)):
        raise ValueError(f"gymnax env {name!r} is not supported: its observation space is a "
                         f"{type(env.observation_space(params)).__name__}; rl3jax flattens array observations only")
    return GymnaxBridge(env, name, spec.task_fields)
