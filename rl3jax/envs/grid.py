"""Random gridworlds (METHOD §3): the task family. Geometry, tiles and dynamics are in
``rl3jax.envs.grid_geometry``; how grids are drawn (``GridConfig``, the rejection rule) in
``rl3jax.envs.grid_generation``.

A task is one N×N tile grid (``GridTask``). ``GridWorld.sample_task(key)`` draws an accepted grid (optimal
100-step undiscounted return from 'S' in [50, 100]), so ``jax.vmap(env.sample_task)(keys)`` draws thousands on
device. Actions NOOP, N, E, S, W; a move slips sideways with the tile's p_slip; the reward is the entry reward
of the tile landed on (' '/'S' −1, 'W' −2, '!' −10, 'X' −100, 'G' +100). 'G' and 'X' are absorbing:
``step_env`` returns ``terminated=True`` on landing there (the meta-episode wrapper then resets to 'S'). There
is no task horizon: ``max_steps_in_episode`` (TH) = the meta horizon H (``with_horizon``).

Cells are indexed ``row * N + col`` (0-based); the observation is ((row+1)/N, (col+1)/N).
"""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from rl3jax.envs import grid_generation
from rl3jax.envs.base import RL3Defaults, TaskEnv, V4Defaults
from rl3jax.envs.catalog import FAMILIES
from rl3jax.envs.grid_generation import GRID13, GRID_FAMILIES, GridConfig
from rl3jax.envs.grid_geometry import (
    GOAL,
    START,
    TILE_CHARS,
    absorbing_cells,
    center_index,
    direction_probabilities,
    move_targets,
    start_cell,
    tile_rewards,
    transition_matrix,
)


@struct.dataclass
class GridState:
    """State of a grid task episode (int32 scalars)."""

    time: jax.Array  # steps taken in the task episode
    pos: jax.Array  # int32 cell index row * N + col


@struct.dataclass
class GridTask:
    """One grid task; static: N and TH (= H)."""

    tiles: jax.Array  # (N, N) int8 tile codes
    slip: jax.Array  # () float32 default slip probability of ' ', 'S', '!'
    opt_return: jax.Array  # () float32 optimal ``reject_horizon``-step undiscounted return from 'S'
    size: int = struct.field(pytree_node=False, default=13)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=350)


def render_ascii(task_or_tiles) -> str:
    """The grid as text, one row per line, bordered (tile characters as in METHOD §3).

    ``task_or_tiles``: a ``GridTask`` or an (N, N) array of tile codes. Raises ValueError for another shape.
    """
    tiles = np.asarray(task_or_tiles.tiles if isinstance(task_or_tiles, GridTask) else task_or_tiles)
    if tiles.ndim != 2:
        raise ValueError(f"render_ascii takes one task (tiles of shape (N, N)), got shape {tiles.shape}")
    n = tiles.shape[1]
    lines = ["+" + "-" * n + "+"]
    lines += ["|" + "".join(TILE_CHARS[int(t)] for t in row) + "|" for row in tiles]
    lines.append("+" + "-" * n + "+")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- family
class GridWorld(TaskEnv):
    """The random gridworld family of METHOD §3 (see the module docstring).

    Args:
        config: how grids are drawn (``GridConfig``; default: the 13×13 family).
        horizon: the meta horizon H, which is also TH (grids have no task horizon of their own).
        family: the registry name (default ``grid{N}``); variant: the variant's name ('train' adds nothing to
            the env's name).

    Raises ValueError (``GridConfig``) for an impossible configuration; H is checked by ``MetaEnv``.
    """

    rl3_defaults = RL3Defaults(q_denom=10.0, alpha_laplace=0.01, epsilon=0.1, max_sweeps=None,
                               warm_start=True, known_states="visited")
    # the paper's own code (METHOD §2.4, v4 on grids): main.jl Q_DENOM 100, VI_EP 0.1; the task observation kept
    v4_defaults = V4Defaults(q_denom=100.0, epsilon=0.1)

    def __init__(self, config: GridConfig = GRID13, horizon: int = 350, family: str | None = None,
                 variant: str = "train"):
        self.config = config
        self.size = config.size
        self.slip = config.slip
        self.horizon = horizon
        self.num_states = config.size * config.size
        self.grid_side = config.size
        self._family = family or f"grid{config.size}"
        self.variant = variant
        self._name = self._family + ("" if variant == "train" else f"-{variant}")

    # ----------------------------------------------------------------------------------- gymnax API
    @property
    def name(self) -> str:
        return self._name

    @property
    def family(self) -> str:
        return self._family

    @property
    def num_actions(self) -> int:
        return 5

    def _task(self, tiles, opt_return) -> GridTask:
        return GridTask(tiles=tiles.astype(jnp.int8), slip=jnp.float32(self.slip),
                        opt_return=jnp.asarray(opt_return, jnp.float32), size=self.size,
                        max_steps_in_episode=self.horizon)

    @property
    def default_params(self) -> GridTask:
        """An open grid with the goal in the bottom-right corner (shapes only; train on sampled tasks)."""
        tiles = jnp.zeros((self.size, self.size), jnp.int8)
        cen = center_index(self.size)
        tiles = tiles.at[cen, cen].set(START).at[-1, -1].set(GOAL)
        return self._task(tiles, jnp.nan)

    def reset_env(self, key, params):
        """The task episode's start: the agent on 'S' (the centre). Returns (obs (2,) float32, state)."""
        state = GridState(time=jnp.int32(0), pos=jnp.int32(start_cell(self.size)))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        """One real step with ``action`` (int32 in [0, 5): NOOP, N, E, S, W) in task ``params``: the move
        direction is drawn from ``direction_probabilities`` (slip), the landing cell is ``move_targets``'
        (obstacles and the border stop the move). Returns (obs (2,) float32 ((row+1)/N, (col+1)/N), state,
        reward float32 (the entry reward of the tile landed on), terminated bool (landed on 'G' or 'X'), {})."""
        tiles = params.tiles
        pos = state.pos
        action = jnp.asarray(action, jnp.int32)
        d = jax.random.choice(key, 5, p=direction_probabilities(tiles, params.slip, pos)[action])
        nxt = move_targets(tiles, pos)[d].astype(jnp.int32)
        new = GridState(time=state.time + 1, pos=nxt)
        return self.get_obs(new, params), new, tile_rewards(tiles, nxt), absorbing_cells(tiles, nxt), {}

    def get_obs(self, state, params=None, key=None):
        """(2,) float32: ((row+1)/N, (col+1)/N) of the agent's cell."""
        row, col = jnp.divmod(state.pos, self.size)
        return (jnp.stack([row, col]).astype(jnp.float32) + 1.0) / self.size

    def is_terminated(self, state, params):
        return absorbing_cells(params.tiles, state.pos)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (2,))

    # ------------------------------------------------------------------------------------ generation
    def sample_task_with_draws(self, key: jax.Array) -> tuple[GridTask, jax.Array]:
        """``sample_task`` plus the number of grids drawn (int32; rejection statistics)."""
        tiles, ret, draws = grid_generation.sample_grid(self.config, key)
        return self._task(tiles, ret), draws

    def sample_task(self, key: jax.Array) -> GridTask:
        """One accepted grid (``grid_generation.sample_grid``: redrawn until the rejection rule holds)."""
        return self.sample_task_with_draws(key)[0]

    def with_horizon(self, horizon: int) -> GridWorld:
        """The same family with meta horizon H = ``horizon`` (and so TH = H: grids have no task horizon; H is
        checked by ``rl3jax.meta_episode.MetaEnv``)."""
        env = copy.copy(self)
        env.horizon = horizon
        return env

    def true_model(self, params: GridTask):
        """(T (S,A,S), expected entry reward (S,A), absorbing (S,), start cell) of one task, for the oracle."""
        t = transition_matrix(params.tiles, params.slip)
        r = t @ tile_rewards(params.tiles)
        return t, r, absorbing_cells(params.tiles), jnp.int32(start_cell(self.size))


def make_grid(family: str, variant: str = "train", horizon: int | None = None) -> GridWorld:
    """Grid family ``family`` ('grid11', 'grid13'; its ``FamilySpec`` entry point) in ``variant``
    (``grid_generation.GRID_FAMILIES``), with the paper's meta horizon (the spec's H) unless given. ValueError
    for an unknown family or variant."""
    base, variants = GRID_FAMILIES.get(family, (None, {}))
    if variant not in variants:
        raise ValueError(f"unknown grid family {family!r} or variant {variant!r}; valid: "
                         + ", ".join(f"{f} {'/'.join(v)}" for f, (_, v) in GRID_FAMILIES.items()))
    config = dataclasses.replace(base, **variants[variant])
    return GridWorld(config, horizon=horizon or FAMILIES[family].horizon, family=family, variant=variant)
