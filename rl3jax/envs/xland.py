"""XLand-MiniGrid (``xminigrid``, the extra ``rl3jax[xland]``) as an rl3jax task family: the task is one rule set.

A task is xminigrid's ``XLandEnvParams`` with one ``RuleSet`` (goal, production rules, initial objects) drawn
from the variant's training set; ``sample_test_task`` draws from its held-out set (disjoint; the held-out
evaluation uses it). A task episode is xminigrid's own: ``reset`` lays the room out and places the objects and the
agent at random, ``step`` is xminigrid's step (rules, then the goal), and the task episode ends as xminigrid ends
it: at the goal (reward 1 − 0.9·t/TH, terminated) or after TH = ``max_steps`` = 3·height·width steps.

Observation (``get_obs``): xminigrid's egocentric view (5×5 cells of (tile, colour)) with each cell's tile and
colour one-hot (13 + 12 entries), then the agent's direction one-hot (4): 5·5·25 + 4 = 629 float32. One-hot, not
the ids scaled: tile and colour ids are names, not magnitudes, and a dense layer over the one-hot code is an
embedding per cell, as in xland-minigrid's own agent (which embeds tile and colour and adds the direction).

RL³ (METHOD §2) over an abstraction of the state: ``state_index`` packs the agent's cell, direction and held
object (pocket) into one int32, ``((pocket · 4 + direction) · H + row) · W + col``. The model is approximate: the
state also holds the objects on the grid, which rules and the agent change, so one index stands for several
true states and its learned transitions and rewards are averages over them (as RL³-coarse on grids is).
``grid_side`` = the room's side N, so RL³-coarse (METHOD §2.5) applies too: its radius clusters neighbouring cells
of one direction and pocket (the packed id's row part differs by at least N otherwise).

Variants (``VARIANTS``): rule sets generated here (``rl3jax.envs.xland_rulesets``: the presets of the published
benchmarks, cached on disk) or read from a benchmark file of xland-minigrid's (``load_benchmark_file``, from
``$XLAND_MINIGRID_DATA``, default ``~/.xland_minigrid``, where ``xminigrid.load_benchmark`` keeps its downloads).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import xminigrid
from gymnax.environments import spaces
from xminigrid.benchmarks import NAME2HFFILENAME
from xminigrid.core.constants import NUM_ACTIONS, NUM_COLORS, NUM_TILES
from xminigrid.core.observation import transparent_field_of_view
from xminigrid.types import RuleSet, StepType, TimeStep

from rl3jax.envs.base import DISCOVERY_DEFAULTS, TaskEnv
from rl3jax.envs.xland_rulesets import load_benchmark_file, rulesets

#: variant (``rl3jax.envs.catalog.FAMILIES``, same order) -> (xminigrid env id, rule-set source): a preset of
#: ``rl3jax.envs.xland_rulesets.PRESETS`` (generated) or 'file:NAME', xland-minigrid's benchmark NAME read from
#: ``$XLAND_MINIGRID_DATA``
VARIANTS = {"train": ("XLand-MiniGrid-R1-9x9", "trivial"), "small": ("XLand-MiniGrid-R1-9x9", "small"),
            "medium": ("XLand-MiniGrid-R1-9x9", "medium"), "high": ("XLand-MiniGrid-R1-9x9", "high"),
            "r4-13x13-medium": ("XLand-MiniGrid-R4-13x13", "medium"),
            "file-trivial-21k": ("XLand-MiniGrid-R1-9x9", "file:trivial-21k"),
            "file-small-1m": ("XLand-MiniGrid-R1-9x9", "file:small-1m"),
            "file-medium-1m": ("XLand-MiniGrid-R1-9x9", "file:medium-1m"),
            "file-high-1m": ("XLand-MiniGrid-R4-13x13", "file:high-1m")}
#: generated sets: seed, training and held-out rule sets (21 000 in all, the size of the published trivial set)
SEED, NUM_TRAIN, NUM_TEST = 0, 20_000, 1_000
VIEW_CODE = NUM_TILES + NUM_COLORS  # one-hot entries per view cell


def _rulesets(source: str) -> tuple[dict, dict]:
    if not source.startswith("file:"):
        return rulesets(source, SEED, NUM_TRAIN, NUM_TEST)
    folder = os.environ.get("XLAND_MINIGRID_DATA", os.path.expanduser("~/.xland_minigrid"))
    return load_benchmark_file(os.path.join(folder, NAME2HFFILENAME[source[5:]]))


def _encode(view: jax.Array, direction: jax.Array) -> jax.Array:
    """The observation (``get_obs``) of a view (V, V, 2) uint8 and a direction (int in [0, 4))."""
    view = view.astype(jnp.int32)
    code = jnp.concatenate([jax.nn.one_hot(view[..., 0], NUM_TILES), jax.nn.one_hot(view[..., 1], NUM_COLORS)], -1)
    return jnp.concatenate([code.reshape(-1), jax.nn.one_hot(direction, 4)]).astype(jnp.float32)


class XLandMiniGrid(TaskEnv):
    """The XLand-MiniGrid family (module docstring); 6 actions (forward, right, left, pick up, put down, toggle).

    Args: variant: one of ``VARIANTS``. Raises ValueError for an unknown variant, a corrupt or other-version
    rule-set cache (``rl3jax.envs.xland_rulesets.rulesets``), FileNotFoundError for a missing benchmark file.
    """

    family = "xland"
    rl3_defaults = DISCOVERY_DEFAULTS  # rewards are at most 1 per task episode: Q shown as is (q_denom 1)

    def __init__(self, variant: str = "train"):
        if variant not in VARIANTS:
            raise ValueError(f"xland variant {variant!r} is not one of {', '.join(map(repr, VARIANTS))}")
        self.variant, (self.env_id, self.source) = variant, VARIANTS[variant]
        self.env, self.params = xminigrid.make(self.env_id)
        self.grid_side = self.params.height if self.params.height == self.params.width else None
        train, test = _rulesets(self.source)
        self.train_sets, self.test_sets = (RuleSet(goal=jnp.asarray(d["goals"]), rules=jnp.asarray(d["rules"]),
                                                   init_tiles=jnp.asarray(d["init_tiles"])) for d in (train, test))

    @property
    def name(self) -> str:
        return f"xland-{self.variant}"

    @property
    def num_actions(self) -> int:
        return int(NUM_ACTIONS)

    @property
    def default_params(self):
        return self.params.replace(ruleset=jax.tree.map(lambda x: x[0], self.train_sets))

    @property
    def task_horizon(self) -> int:
        """TH: xminigrid's ``max_steps`` (3 · height · width)."""
        return int(self.params.max_steps)

    def _draw(self, sets: RuleSet, key: jax.Array):
        i = jax.random.randint(key, (), 0, sets.goal.shape[0])
        return self.params.replace(ruleset=jax.tree.map(lambda x: x[i], sets))

    def sample_task(self, key: jax.Array):
        """One task: the params with a rule set drawn uniformly from the training set (jittable, vmappable)."""
        return self._draw(self.train_sets, key)

    def sample_test_task(self, key: jax.Array):
        """One held-out task: a rule set drawn uniformly from the held-out set (disjoint from the training set)."""
        return self._draw(self.test_sets, key)

    def reset_env(self, key, params):
        """xminigrid's reset: room, objects and agent placed at random. Returns (obs (629,) float32, state)."""
        ts = self.env.reset(params, key)
        state = ts.state.replace(key=jnp.zeros((), jnp.uint32))  # xminigrid's step never reads it
        return _encode(ts.observation, state.agent.direction), state

    def step_env(self, key, state, action, params):
        """xminigrid's step (``key`` unused: its dynamics are deterministic). Returns (obs, state, reward float32,
        terminated (the goal is reached), {})."""
        ts = TimeStep(state=state, step_type=StepType.MID, reward=jnp.float32(0), discount=jnp.float32(1),
                      observation=jnp.zeros(()))
        ts = self.env.step(params, ts, action)
        terminated = ts.discount == 0  # xminigrid: discount 0 exactly at the goal; truncation keeps 1
        return _encode(ts.observation, ts.state.agent.direction), ts.state, ts.reward.astype(jnp.float32), terminated, {}

    def get_obs(self, state, params=None, key=None):
        """(629,) float32: the egocentric 5×5 view's tile and colour one-hot per cell, then the direction one-hot."""
        v = self.params.view_size
        return _encode(transparent_field_of_view(state.grid, state.agent, v, v), state.agent.direction)

    def observation_space(self, params=None):
        v = self.params.view_size
        return spaces.Box(0.0, 1.0, (v * v * VIEW_CODE + 4,))

    def state_index(self, state, params) -> jax.Array:
        """The agent's (cell, direction, held object) packed into an int32 (module docstring)."""
        pocket = state.agent.pocket.astype(jnp.int32)
        row, col = state.agent.position.astype(jnp.int32)
        held = pocket[0] * NUM_COLORS + pocket[1]
        return ((held * 4 + state.agent.direction.astype(jnp.int32)) * self.params.height + row) * self.params.width + col
