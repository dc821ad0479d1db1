"""The policy input's layout: named blocks with their offsets and sizes (METHOD §1).

One ``Layout`` describes a flat input vector as consecutive named blocks (``Block``). ``MetaEnv`` builds its
observation in the order of its layout (``MetaEnv.layout``), the estimators build their feature vector in the
order of theirs (``feature_layout``, which the policy input nests as its block ``"rl3"``), and readers (tests,
baselines, figures) find a block by name instead of re-deriving offsets::

    layout = meta_env.layout
    adv = obs[..., layout["advantages"].slice]       # RL³ advantages (Q − V)/Q_DENOM, shape (..., n)
    layout["task_obs"].offset, layout.size           # offset of the task observation; the input size

Layouts (n actions, m task-observation entries):

* ``'method'`` (METHOD §1): prev_action n, prev_reward 1, first 1, meta_time 1 (t/H), task_time 1 (τ/TH),
  task_obs m, with ``state_obs`` the env's state k (``state``: a gymnax env's ``state_fields`` / sizes), then for RL³ the block ``rl3`` = ``rl3_features(n)``: advantages n, value 1, std_errors n + 1,
  counts n. So n + 4 + m (+ k) entries for RL², 4n + 6 + m (+ k) for RL³.
* ``'v4'`` (the paper's own code, RL3 commit f8121786, see ``rl3jax.meta_episode``): prev_action n,
  prev_reward 1, first 1, task_obs m (left out for RL³ on bandits), ``rl3`` = ``v4_features(n)``: shown_q n,
  counts n; then task_time 1, meta_time 1.

Pure Python (no JAX): a layout is static, computed once per ``MetaEnv``.
"""

from __future__ import annotations

import dataclasses

#: the input layouts ``MetaEnv`` implements
LAYOUTS = ("method", "v4")
#: name of the block that holds the estimator's features (nested blocks inside)
RL3 = "rl3"


@dataclasses.dataclass(frozen=True)
class Block:
    """One named block of a flat vector: entries ``[offset, offset + size)``; ``parts``: nested blocks
    (absolute offsets) that tile it, e.g. the RL³ features inside the policy input."""

    name: str
    offset: int
    size: int
    parts: tuple[Block, ...] = ()

    @property
    def stop(self) -> int:
        """One past the block's last entry."""
        return self.offset + self.size

    @property
    def slice(self) -> slice:
        """``slice(offset, stop)``: index the last axis of a vector with it."""
        return slice(self.offset, self.stop)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Consecutive named blocks of a flat vector (hashable; see the module docstring).

    Build one with ``Layout.of(("name", size) | ("name", Layout), ...)``; a ``Layout`` given as a size is nested
    (its blocks become the parts of that block, shifted to their absolute offsets).
    """

    blocks: tuple[Block, ...]

    @classmethod
    def of(cls, *entries: tuple[str, int | Layout]) -> Layout:
        """The layout of ``entries`` in order; ValueError for a negative size or a repeated name."""
        blocks, offset = [], 0
        for name, what in entries:
            if isinstance(what, Layout):
                parts = tuple(_shifted(b, offset) for b in what.blocks)
                size = what.size
            else:
                parts, size = (), int(what)
            if size < 0:
                raise ValueError(f"block {name!r} has a negative size {size}")
            blocks.append(Block(name, offset, size, parts))
            offset += size
        out = cls(tuple(blocks))
        names = [b.name for b in out.all_blocks()]
        if len(set(names)) != len(names):
            raise ValueError(f"repeated block names in {names}")
        return out

    @property
    def size(self) -> int:
        """Total number of entries."""
        return sum(b.size for b in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the top-level blocks, in order."""
        return tuple(b.name for b in self.blocks)

    def all_blocks(self):
        """Every block, top-level and nested, depth first."""
        return _walk(self.blocks)

    def __contains__(self, name: str) -> bool:
        return any(b.name == name for b in self.all_blocks())

    def __getitem__(self, name: str) -> Block:
        """The block called ``name`` (top-level or nested); KeyError listing the names otherwise."""
        for b in self.all_blocks():
            if b.name == name:
                return b
        raise KeyError(f"no block {name!r} in the layout; blocks: {', '.join(b.name for b in self.all_blocks())}")


def _shifted(block: Block, offset: int) -> Block:
    return Block(block.name, block.offset + offset, block.size, tuple(_shifted(p, offset) for p in block.parts))


def _walk(blocks):
    for b in blocks:
        yield b
        yield from _walk(b.parts)


def rl3_features(num_actions: int) -> Layout:
    """The RL³ blocks of METHOD §1 (``QEstimator.features``, ``GridQEstimator.features``): advantages
    (Q(s,·) − V(s))/Q_DENOM (n), value V(s)/Q_DENOM (1), standard errors (E_q(s,·), E_v(s))/Q_DENOM (n + 1;
    zeros unless switched on), counts N(s,·)/10 (n)."""
    n = num_actions
    return Layout.of(("advantages", n), ("value", 1), ("std_errors", n + 1), ("counts", n))


def v4_features(num_actions: int) -> Layout:
    """The RL³ blocks of the paper's own code (``V4Estimator.features``): shown Q(s,·)/Q_DENOM (n), then
    counts N(s,·)/100 (n)."""
    return Layout.of(("shown_q", num_actions), ("counts", num_actions))


def policy_input(kind: str, num_actions: int, task_obs_dim: int, features: Layout | None = None,
                 state_dim: int = 0) -> Layout:
    """The policy input of ``MetaEnv`` (see the module docstring).

    Args:
        kind: 'method' or 'v4'.
        num_actions: n; task_obs_dim: m, entries of the flattened task observation (0: left out);
        features: the estimator's ``feature_layout`` (RL³), or None (RL²: no ``rl3`` block);
        state_dim: k, entries of the block ``state`` after the task observation (0: none).

    Raises ValueError for an unknown kind.
    """
    if kind not in LAYOUTS:
        raise ValueError(f"layout {kind!r} is not one of {', '.join(LAYOUTS)}")
    head = [("prev_action", num_actions), ("prev_reward", 1), ("first", 1)]
    task = ([("task_obs", task_obs_dim)] if task_obs_dim else []) + ([("state", state_dim)] if state_dim else [])
    rl3 = [(RL3, features)] if features is not None else []
    if kind == "v4":
        return Layout.of(*head, *task, *rl3, ("task_time", 1), ("meta_time", 1))
    return Layout.of(*head, ("meta_time", 1), ("task_time", 1), *task, *rl3)
