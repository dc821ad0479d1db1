"""Grid baselines (``ENTRIES``): ``psrl-map``, posterior sampling over whole maps with the task generator's own
prior (Strens 2000; Osband, Russo & Van Roy 2013), for ``grid11``, ``grid13`` and every variant.

What the policy learns from is only what its input shows (METHOD §1): the cell it is in, the previous action and
reward, the time counters. Per task it keeps a factorised posterior over the map (``MapPosterior``):

- a cell entered is known exactly: its tile follows from the entry reward (−1 ' ' or 'S', −2 'W', −10 '!');
- 'G' and 'X' are never shown (landing there resets to 'S'), so a +100 or −100 reward is evidence about the
  cells the previous move could have reached: the goal's posterior (one cell, the generator's goal
  probabilities as prior) is multiplied by the chance of landing on each; a stay without NOOP (the move was
  blocked) raises the obstacle probability of the cells the move could have aimed at, and −100 the danger
  probability, by the exact one-event Bayes update of independent cells (assumed-density filtering);
- an unseen cell next to a seen '!' is 'X' with the conditional probability that exactly one of the '!'s
  unseen neighbours is (the generator paints '!' around each 'X').

The prior of an unseen cell is the generator's per-cell tile distribution (``grid_generation.tile_frequencies``
on ``PRIOR_GRIDS`` grids of a fixed seed, never the held-out tasks), conditioned on not being the goal; the goal's
prior is its per-cell frequency smoothed by one count over the cells the generator draws it from
(``goal_cells``); the goal drawn must be reachable from 'S' in the map drawn, as the generator's rejection rule
makes it in every task. Every ``period`` steps (the same step for the whole batch, so the ``lax.cond`` is a real
branch) each task draws fresh noise, one posterior sample of the map; between draws the noise is kept, so the map
stays the same except where the posterior has changed (common random numbers: a refuted goal gives way to the
posterior's next, a cell seen takes its tile) instead of being redrawn, which would dither. At every step the
map is planned on by ``sweeps`` sweeps of finite-horizon value iteration with the family's slip model
(``grid_geometry``) for the steps left in the meta-episode (landing on 'G' or 'X' restarts at 'S', as the
meta-episode does), and the policy acts greedily on it (random tie-breaking).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.baselines.base import Baseline, Param, argmax_random, num_tasks, sharp_logits
from rl3jax.envs.grid_generation import GridConfig, goal_cells, tile_frequencies
from rl3jax.envs.grid_geometry import (
    DANGER,
    EMPTY,
    GOAL,
    OBSTACLE,
    START,
    WARNING,
    WATER,
    absorbing_cells,
    direction_probabilities,
    move_targets,
    neighbour_table,
    start_cell,
    tile_rewards,
)
from rl3jax.meta_episode import MetaEnv

PRIOR_GRIDS = 4096  # grids drawn for the generator's per-cell tile distribution (s.e. <= 0.008 per frequency)
PRIOR_SEED = 1_913_000_019  # their key: far from the training, held-out (evaluate.TEST_SEED) and test seeds
UNKNOWN = -1  # tile code of a cell not entered yet


@functools.lru_cache(maxsize=8)
def map_prior(cfg: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    """The prior of ``psrl-map`` for grids drawn by ``cfg``: (tile (S, 7) float32, the tile distribution of each
    cell given that the goal is not there; goal (S,) float32, summing to 1, zero outside ``goal_cells``)."""
    freq = tile_frequencies(cfg, jax.random.key(PRIOR_SEED), PRIOR_GRIDS)
    allowed = np.zeros(cfg.size ** 2)
    allowed[goal_cells(cfg)] = 1.0
    goal = (freq[:, GOAL] * PRIOR_GRIDS + allowed) * allowed  # one count per allowed cell (a uniform pseudo-draw)
    tile = freq.copy()
    tile[:, GOAL] = 0.0
    tile[tile.sum(1) == 0, EMPTY] = 1.0  # a cell that held the goal in every draw
    return (tile / tile.sum(1, keepdims=True)).astype(np.float32), (goal / goal.sum()).astype(np.float32)


def prepare(meta_env: MetaEnv, params) -> tuple[np.ndarray, np.ndarray]:
    """``map_prior`` of the family's generator configuration (``GridWorld.config``)."""
    return map_prior(meta_env.env.config)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MapPosterior:
    """The map posterior of B grid tasks (S = N·N cells); float32 unless said."""

    tiles: jax.Array  # (B, S) int32 tile code of each cell entered, UNKNOWN elsewhere
    p_block: jax.Array  # (B, S) probability that an unseen cell is 'O'
    p_danger: jax.Array  # (B, S) probability that an unseen cell is 'X' (before the '!' rule)
    goal: jax.Array  # (B, S) goal posterior (normalised; zero where it cannot be)
    prev_s: jax.Array  # (B,) int32 cell the previous action was taken in


def one_of(p: jax.Array, q: jax.Array, targets: jax.Array, fixed: jax.Array, free: jax.Array) -> jax.Array:
    """Bayes update of independent cell probabilities ``p`` (S,) on the event "the direction drawn (with
    probabilities ``q`` (5,)) aimed at a cell with the property": π_j ← π_j (q_j + Σ_{d≠j} q_d π_d) / Σ_d q_d π_d
    for the ``free`` (5,) bool targets; ``fixed`` (5,) holds π_d of the others (0 or 1). ``targets`` (5,) int."""
    pi = jnp.where(free, p[targets], fixed)
    total = (q * pi).sum()
    new = pi * (q + total - q * pi) / jnp.where(total > 0, total, 1.0)
    return p.at[targets].set(jnp.where(free & (total > 0), new, p[targets]))


def observe(post: MapPosterior, s, t, tau, prev_action, prev_reward, nbr, start: int, slip: float) -> MapPosterior:
    """One task's posterior (unbatched fields) after the previous step (taken in ``post.prev_s`` with
    ``prev_action``, reward ``prev_reward``) showed cell ``s``; ``nbr`` (S, 5) ``neighbour_table``."""
    here, a, had = post.prev_s, jnp.maximum(prev_action, 0), t > 0
    q = direction_probabilities(jnp.maximum(post.tiles, 0), slip, here)[a]  # (5,) directions drawn
    targets = nbr[here]
    unseen = (post.tiles[targets] == UNKNOWN) & (targets != here)
    moved = had & (tau > 0) & (s != here)
    code = jnp.select([prev_reward == -2.0, prev_reward == -10.0, s == start], [WATER, WARNING, START], EMPTY)
    tiles = jnp.where(moved, post.tiles.at[s].set(code), post.tiles)
    blocked = had & (tau > 0) & (s == here) & (a > 0)
    p_block = jnp.where(blocked, one_of(post.p_block, q, targets, (targets == here) * 1.0, unseen), post.p_block)
    absorbed = had & (tau == 0)
    danger = absorbed & (prev_reward == -100.0)
    p_danger = jnp.where(danger, one_of(post.p_danger, q, targets, jnp.zeros(5), unseen), post.p_danger)
    landed = jnp.zeros_like(post.goal).at[targets].add(jnp.where(unseen, q, 0.0))  # chance of landing per cell
    goal = jnp.where(absorbed & (prev_reward == 100.0), post.goal * landed, post.goal)
    goal = jnp.where(tiles == UNKNOWN, goal, 0.0)
    total = goal.sum()
    goal = jnp.where(total > 0, goal / jnp.where(total > 0, total, 1.0), post.goal)  # keep it if contradicted
    known = tiles != UNKNOWN
    return dataclasses.replace(post, tiles=tiles, p_block=jnp.where(known, 0.0, p_block),
                               p_danger=jnp.where(known, 0.0, p_danger), goal=goal, prev_s=s)


def danger_probability(tiles: jax.Array, p_danger: jax.Array, nbr: jax.Array) -> jax.Array:
    """(S,) probability that each unseen cell is 'X': ``p_danger``, or at least, next to a seen '!', the chance
    that it is the one 'X' among that '!'s unseen neighbours (odds p/(1−p) normalised over them)."""
    nb4 = nbr[:, 1:]
    cand = (tiles[nb4] == UNKNOWN) & (nb4 != jnp.arange(tiles.shape[0])[:, None])
    odds = p_danger / (1.0 - jnp.minimum(p_danger, 0.999))
    total = jnp.where(cand, odds[nb4], 0.0).sum(1)  # per cell w: the odds summed over w's unseen neighbours
    inv = jnp.where((tiles == WARNING) & (total > 0), 1.0 / jnp.where(total > 0, total, 1.0), 0.0)
    return jnp.where(tiles == UNKNOWN, jnp.maximum(p_danger, odds * inv[nb4].max(1)), 0.0)


#: the order of the tiles an unseen cell's uniform is matched against (obstacles and dangers first: as their
#: probabilities grow with evidence, the cells that change are those with the smallest uniforms)
DRAW_ORDER = (OBSTACLE, DANGER, EMPTY, WATER, WARNING)


def next_to_reachable(tiles: jax.Array, nbr: jax.Array, steps: int) -> jax.Array:
    """(S,) bool: the cells next to one that a path of at most ``steps`` moves from 'S' reaches in the map
    ``tiles`` (S,) (paths avoid 'O' and end at 'G' or 'X'; any direction can be tried, 'W' included)."""
    nb4 = nbr[:, 1:]
    opened = (nb4 != jnp.arange(tiles.shape[0])[:, None])
    passable = tiles != OBSTACLE
    onward = passable & (tiles != GOAL) & (tiles != DANGER)

    def grow(_, reach):
        return reach | (passable & jnp.any(opened & (reach & onward)[nb4], axis=1))

    reach = jax.lax.fori_loop(0, steps, grow, tiles == START)
    return jnp.any(opened & (reach & onward)[nb4], axis=1)


def sample_map(u: jax.Array, gumbel: jax.Array, post: MapPosterior, tile_prior: jax.Array,
               nbr: jax.Array, steps: int) -> jax.Array:
    """One map (S,) int32 drawn from one task's posterior with the noise ``u`` (S,) U(0,1) and ``gumbel`` (S,)
    Gumbel(0,1): seen cells as seen; an unseen cell by inverse CDF of ``u`` over ``DRAW_ORDER``: 'O' with
    ``p_block``, 'X' with ``danger_probability``, else ' ', 'W' or '!' in the prior's proportions; then 'G' on
    argmax(log w + gumbel) (the Gumbel-max draw) with w the goal posterior times the chance that the cell is
    neither 'O' nor 'X', among the cells that ``steps`` moves from 'S' reach in the map drawn (the generator keeps
    only grids whose goal 'S' reaches; all of them if none is). Kept fixed, the noise makes the map follow the posterior without redrawing it."""
    p_x = danger_probability(post.tiles, post.p_danger, nbr)
    other = tile_prior[:, jnp.array(DRAW_ORDER[2:])]
    other = other / jnp.maximum(other.sum(1, keepdims=True), 1e-12)
    rest = jnp.clip(1.0 - post.p_block - p_x, 0.0, 1.0)
    cdf = jnp.cumsum(jnp.concatenate([post.p_block[:, None], p_x[:, None], rest[:, None] * other], 1), axis=1)
    drawn = jnp.asarray(DRAW_ORDER)[jnp.minimum((u[:, None] >= cdf).sum(1), len(DRAW_ORDER) - 1)]
    tiles = jnp.where(post.tiles == UNKNOWN, drawn, post.tiles)
    w = post.goal * (1.0 - post.p_block) * (1.0 - p_x)
    near = next_to_reachable(tiles, nbr, steps)
    w = jnp.where(jnp.any(near & (w > 0)), jnp.where(near, w, 0.0), w)
    g = jnp.argmax(jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)) + gumbel, -jnp.inf))
    return jnp.where((jnp.arange(tiles.shape[0]) == g) & (w.sum() > 0), GOAL, tiles).astype(jnp.int32)


def plan_q(tiles: jax.Array, slip: float, sweeps: int, left: jax.Array) -> jax.Array:
    """(S, A) float32 optimal Q of one map (tiles (S,) int, S = N·N) for k = min(``sweeps``, ``left``) steps:
    Q_1(s, a) = E[r], Q_k(s, a) = E[r(s') + V_{k−1}(s' or 'S' if s' is 'G'/'X')] over the slip model
    (``direction_probabilities``, ``move_targets``; r the entry reward)."""
    n = int(round(tiles.shape[0] ** 0.5))
    grid = tiles.reshape(n, n)
    probs, tgt = direction_probabilities(grid, slip), move_targets(grid)  # (S, A, 5), (S, 5)
    rew, absorb = tile_rewards(grid)[tgt], absorbing_cells(grid)[tgt]
    start = start_cell(n)

    def q_of(v):
        return jnp.einsum("sad,sd->sa", probs, rew + jnp.where(absorb, v[start], v[tgt]))

    def sweep(i, v):
        return jnp.where(i < left - 1, q_of(v).max(1), v)

    return q_of(jax.lax.fori_loop(0, sweeps - 1, sweep, jnp.zeros(tiles.shape[0], jnp.float32)))


def psrl_map_build(meta_env: MetaEnv, consts, tasks, key, params):
    """``psrl-map`` (module docstring) over the B ``tasks`` of a grid family: (step, carry).

    ``consts``: ``prepare``'s (tile prior (S, 7), goal prior (S,)); ``params``: ``period`` (steps between fresh
    noise, i.e. new posterior draws, at t = 0, period, 2·period, ... for the whole batch) and ``sweeps`` (value
    iteration sweeps per plan, also the path length within which the goal drawn must be reachable).
    ``step(carry, obs, state) -> (carry, logits (B, 5) float32, sharp)`` reads only what the policy input shows
    (``state_index`` is the cell of the task observation; the time counters, previous action and reward); the
    carry is (key, ``MapPosterior``, (uniforms (B, S), Gumbels (B, S)) of the current draw). Each step draws the
    map with the current noise from the updated posterior and plans on it (``plan_q``)."""
    env = meta_env.env
    tile_prior, goal_prior = (jnp.asarray(c) for c in consts)
    num, n_s, n_a = num_tasks(tasks), env.num_states, meta_env.num_actions
    period, sweeps, slip, start = int(params["period"]), int(params["sweeps"]), env.slip, start_cell(env.size)
    nbr = jnp.asarray(neighbour_table(env.size))
    tiles = jnp.full((num, n_s), UNKNOWN, jnp.int32).at[:, start].set(START)
    post = MapPosterior(tiles=tiles, p_block=jnp.broadcast_to(tile_prior[:, OBSTACLE], (num, n_s)),
                        p_danger=jnp.broadcast_to(tile_prior[:, DANGER], (num, n_s)),
                        goal=jnp.broadcast_to(goal_prior, (num, n_s)), prev_s=jnp.full((num,), start, jnp.int32))
    upd = jax.vmap(functools.partial(observe, nbr=nbr, start=start, slip=slip))

    def noise(key):
        k_u, k_g = jax.random.split(key)
        return jax.random.uniform(k_u, (num, n_s)), jax.random.gumbel(k_g, (num, n_s))

    def plan(u, gumbel, post, left):
        return plan_q(sample_map(u, gumbel, post, tile_prior, nbr, sweeps), slip, sweeps, left)

    def step(carry, obs, state):  # carry: (key, posterior, the noise of the current draw)
        key, post, (u, gumbel) = carry
        s = jax.vmap(env.state_index)(state.env_state, tasks)
        post = upd(post, s, state.t, state.tau, state.prev_action, state.prev_reward)
        key, k_map, k_tie = jax.random.split(key, 3)
        u, gumbel = jax.lax.cond(jnp.any(state.t % period == 0), lambda: noise(k_map), lambda: (u, gumbel))
        left = jnp.minimum(meta_env.task_horizon - state.tau, meta_env.horizon - state.t)
        q = jax.vmap(plan)(u, gumbel, post, left)
        action = argmax_random(k_tie, q[jnp.arange(num), s])
        return (key, post, (u, gumbel)), sharp_logits(action, n_a)

    return step, (key, post, noise(key))


ENTRIES = (
    Baseline("psrl-map", ("grid11", "grid13"),
             (Param("period", 50, kind="int", low=1), Param("sweeps", 45, kind="int", low=1)), psrl_map_build,
             "Posterior sampling over whole maps with the generator's own prior (Strens 2000; Osband, Russo & "
             "Van Roy 2013): a map drawn from the posterior every `period` steps, planned by `sweeps` sweeps of "
             "finite-horizon value iteration with the family's slip model.", prepare, stochastic=True),
)
