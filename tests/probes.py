"""Probe task families for PPO (in the spirit of Andy Jones' probe environments), as one-step task episodes.

Each isolates one piece of the learner: ``constant`` (the critic must learn discounted returns-to-go),
``action`` (the actor must prefer action 0), ``observation`` (the actor must match a random observed bit).
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
