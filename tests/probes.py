"""Probe task families for PPO (in the spirit of Andy Jones' probe environments), as one-step task episodes.

Each isolates one piece of the learner: ``constant`` (the critic must learn discounted returns-to-go),
``action`` (the actor must prefer action 0), ``observation`` (the actor must match a random observed bit).
``Corridor`` is a user's family with a discrete state but no ``state_index`` of its own: ``register_corridors``
gives it one through ``registry.register(..., state_index=...)`` (RL³), and registers it with a hook that returns
a float and one that fails, for the errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import FAMILIES
from rl3jax.envs.registry import register


@struct.dataclass
class ProbeState:
    time: jax.Array
    bit: jax.Array


@struct.dataclass
class ProbeTask:
    dummy: jax.Array
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1)


class Probe(TaskEnv):
    def __init__(self, kind: str):
        self.kind = kind

    @property
    def name(self):
        return f"probe-{self.kind}"

    @property
    def default_params(self):
        return ProbeTask(dummy=jnp.zeros(()))

    @property
    def num_actions(self):
        return 2

    def sample_task(self, key):
        return ProbeTask(dummy=jnp.zeros(()))

    def reset_env(self, key, params):
        state = ProbeState(time=jnp.int32(0), bit=jax.random.bernoulli(key).astype(jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        if self.kind == "constant":
            reward = jnp.float32(1.0)
        elif self.kind == "action":
            reward = (action == 0).astype(jnp.float32)
        else:
            reward = (action == state.bit).astype(jnp.float32)
        new = state.replace(time=state.time + 1)
        return self.get_obs(new), new, reward, jnp.asarray(True), {}

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.bit, 2)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (2,))


def register_probes() -> None:
    for kind in ("constant", "action", "observation"):
        if f"probe-{kind}" not in FAMILIES:
            register(f"probe-{kind}", lambda variant, kind=kind: Probe(kind), ("train",))


@struct.dataclass
class CorridorState:
    cell: jax.Array  # 0, 1, 2: the goal at 2 (absorbing)


@struct.dataclass
class CorridorTask:
    right: jax.Array  # the action that moves right (the other moves left)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=4)


class Corridor(TaskEnv):
    """Three cells in a row, the start at 0; the task's ``right`` action moves right, the other left (clipped);
    reaching cell 2 pays 1 and ends the task episode (TH = 4). Observation: one-hot of the cell."""

    name = "corridor"
    num_actions = 2

    @property
    def default_params(self):
        return CorridorTask(right=jnp.int32(1))

    def sample_task(self, key):
        return CorridorTask(right=jax.random.bernoulli(key).astype(jnp.int32))

    def reset_env(self, key, params):
        state = CorridorState(cell=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        cell = jnp.clip(state.cell + jnp.where(action == params.right, 1, -1), 0, 2).astype(jnp.int32)
        new = CorridorState(cell=cell)
        return self.get_obs(new), new, (cell == 2).astype(jnp.float32), cell == 2, {}

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.cell, 3)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (3,))


#: corridor families: name -> its state_index hook (None: none, RL² only)
CORRIDOR_HOOKS = {
    "corridor": lambda state, params: state.cell,
    "corridor-no-index": None,
    "corridor-float-index": lambda state, params: state.cell / 2,
    "corridor-broken-index": lambda state, params: state.position,  # CorridorState has no field 'position'
}


def register_corridors() -> None:
    for name, hook in CORRIDOR_HOOKS.items():
        if name not in FAMILIES:
            register(name, lambda variant: Corridor(), ("train",), horizon=8, state_index=hook)
