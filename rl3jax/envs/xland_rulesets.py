"""XLand-MiniGrid rule sets made here, without a download: the generator, its presets and the on-disk cache.

A rule set (xminigrid's ``RuleSet``) is a task tree: the root is a goal over one or two objects, and each object
the goal (or a rule) needs is either placed at the start or produced by a production rule from one or two other
objects, down to ``chain_depth`` levels (xland-minigrid's technical paper, Nikulin et al. 2023, §3). Objects are
xminigrid's pickable tiles (ball, square, pyramid, key, hex, star) in its 11 non-empty colours; one rule set uses
each object at most once, so the tree is unambiguous. Besides the tree, a rule set may hold distractor rules
(their inputs are objects of the task, their products new objects: a trap that can consume a needed object) and
distractor objects (placed, used by nothing). The encodings are those of xminigrid's goal and rule classes
(``xminigrid.core.goals`` / ``rules``: ``[id, tile, tile, ...]`` padded with zeros; the ids are read from the
classes' own ``encode``), padded to the largest rule set of the set with the empty rule (id 0) and the empty tile.

``PRESETS`` follow the published benchmark definitions (xland-minigrid's ``scripts/generate_benchmarks.sh``:
chain depth, pruning probability, distractor rules and objects); this generator is our own, written from
xminigrid's API, so its sets are not the published ones (a user who has those files points the family at them:
``load_benchmark_file``). A set is a pure function of (preset, seed, sizes): ``rulesets`` generates
``num_train + num_test`` distinct rule sets (equal up to the order of rules and of initial objects counts as a
duplicate) and splits them, so the training and held-out sets are disjoint. It writes them once into the cache
folder (``cache_dir``: ``$RL3JAX_XLAND_CACHE``, else ``$XDG_CACHE_HOME/rl3jax/xland``, else
``~/.cache/rl3jax/xland``) with ``rl3jax.outputs.atomic_write`` and reads them from there afterwards. A cache file
that is corrupt, of another ``VERSION`` or of other settings is refused with one line naming it and how to rebuild
it (delete it); it is never overwritten.
"""

from __future__ import annotations

import bz2
import dataclasses
import functools
import io
import json
import os
import pickle
import sys

import numpy as np
from xminigrid.core import goals as xgoals
from xminigrid.core import rules as xrules
from xminigrid.core.constants import Colors, Tiles

from rl3jax.outputs import atomic_write, check_output_file

#: the cache format; a file of another version is refused (delete it to rebuild)
VERSION = 1
#: the objects: xminigrid's pickable tiles × its colours but 'empty'
OBJECT_TILES = (Tiles.BALL, Tiles.SQUARE, Tiles.PYRAMID, Tiles.KEY, Tiles.HEX, Tiles.STAR)
OBJECT_COLORS = tuple(range(Colors.RED, Colors.PINK + 1))
GOAL_CLASSES = (xgoals.AgentHoldGoal, xgoals.AgentNearGoal, xgoals.TileNearGoal, xgoals.TileNearUpGoal,
                xgoals.TileNearRightGoal, xgoals.TileNearDownGoal, xgoals.TileNearLeftGoal, xgoals.AgentNearUpGoal,
                xgoals.AgentNearRightGoal, xgoals.AgentNearDownGoal, xgoals.AgentNearLeftGoal)
RULE_CLASSES = (xrules.AgentHoldRule, xrules.AgentNearRule, xrules.TileNearRule, xrules.TileNearUpRule,
                xrules.TileNearRightRule, xrules.TileNearDownRule, xrules.TileNearLeftRule, xrules.AgentNearUpRule,
                xrules.AgentNearRightRule, xrules.AgentNearDownRule, xrules.AgentNearLeftRule)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A generator setting (the published benchmark's flags of the same name)."""

    chain_depth: int  # levels of production rules below the goal
    prune_prob: float  # each needed object is placed instead of produced with this probability (0: never)
    num_distractor_rules: int  # at most this many (drawn uniformly in [0, n]); 0 for none
    num_distractor_objects: int  # exactly this many


#: xland-minigrid's benchmark definitions (trivial-21k, small-1m, medium-1m, high-1m)
PRESETS = {"trivial": Preset(0, 0.0, 0, 3), "small": Preset(1, 0.3, 2, 2), "medium": Preset(2, 0.1, 3, 2),
           "high": Preset(3, 0.1, 4, 1)}


@functools.cache
def _encodings() -> tuple[dict, dict]:
    """{class: (id, number of tile fields)} of the goal and rule classes, read from their own ``encode``."""
    def table(classes):
        out = {}
        for cls in classes:
            fields = [f.name for f in dataclasses.fields(cls)]
            enc = np.asarray(cls(**{f: np.zeros(2, np.uint8) for f in fields}).encode())
            out[cls] = (int(enc[0]), len(fields))
        return out
    return table(GOAL_CLASSES), table(RULE_CLASSES)


def _encode(kind_id: int, tiles: list, width: int) -> np.ndarray:
    """``[kind_id, *tiles]`` (uint8) padded with zeros to ``width`` (xminigrid's layout)."""
    out = np.zeros(width, np.uint8)
    out[0] = kind_id
    for i, t in enumerate(tiles):
        out[1 + 2 * i:3 + 2 * i] = t
    return out


def generate_one(rng: np.random.Generator, preset: Preset) -> tuple[np.ndarray, list, list]:
    """One rule set drawn with ``rng``: goal (5,) uint8, rules [(7,) uint8], initial objects [(2,) uint8]."""
    goal_codes, rule_codes = _encodings()
    pool = [np.array((t, c), np.uint8) for t in OBJECT_TILES for c in OBJECT_COLORS]
    order = iter(rng.permutation(len(pool)))
    fresh = lambda: pool[next(order)]  # noqa: E731  (an object not used yet)
    goal_cls = GOAL_CLASSES[rng.integers(len(GOAL_CLASSES))]
    gid, arity = goal_codes[goal_cls]
    frontier = [fresh() for _ in range(arity)]
    goal = _encode(gid, frontier, xgoals.MAX_GOAL_ENCODING_LEN)
    rules, used = [], list(frontier)
    for _ in range(preset.chain_depth):
        placed, nxt = [], []
        for obj in frontier:
            if preset.prune_prob and rng.random() < preset.prune_prob:
                placed.append(obj)
                continue
            rid, k = rule_codes[RULE_CLASSES[rng.integers(len(RULE_CLASSES))]]
            inputs = [fresh() for _ in range(k - 1)]
            rules.append(_encode(rid, inputs + [obj], xrules.MAX_RULE_ENCODING_LEN))
            used += inputs
            nxt += inputs
        frontier = placed + nxt
    init = frontier + [fresh() for _ in range(preset.num_distractor_objects)]
    for _ in range(rng.integers(preset.num_distractor_rules + 1) if preset.num_distractor_rules else 0):
        rid, k = rule_codes[RULE_CLASSES[rng.integers(len(RULE_CLASSES))]]
        present = used + init[len(frontier):]
        inputs = [present[i] for i in rng.choice(len(present), k - 1, replace=False)]
        rules.append(_encode(rid, inputs + [fresh()], xrules.MAX_RULE_ENCODING_LEN))
    return goal, rules, init


def _canonical(goal, rules, init) -> bytes:
    """The rule set up to the order of its rules and of its initial objects (duplicates compare equal)."""
    return b"|".join([goal.tobytes(), *sorted(r.tobytes() for r in rules), b"/", *sorted(t.tobytes() for t in init)])


def generate(preset: str, seed: int, num: int) -> dict[str, np.ndarray]:
    """``num`` distinct rule sets of ``preset`` from ``seed`` (NumPy's PCG64), padded to the largest: ``goals``
    (num, 5), ``rules`` (num, R, 7), ``init_tiles`` (num, T, 2) uint8 and ``num_rules`` (num,) int32 (the
    layout of xminigrid's benchmark files). ValueError for an unknown preset or ``num`` < 1."""
    if preset not in PRESETS:
        raise ValueError(f"unknown XLand rule-set preset {preset!r}; valid: {', '.join(PRESETS)}")
    if num < 1:
        raise ValueError(f"the number of rule sets must be >= 1, got {num}")
    rng, seen, sets = np.random.default_rng(seed), set(), []
    while len(sets) < num:
        one = generate_one(rng, PRESETS[preset])
        key = _canonical(*one)
        if key not in seen:
            seen.add(key)
            sets.append(one)
    width_r, width_t = max(1, max(len(r) for _, r, _ in sets)), max(len(t) for _, _, t in sets)
    rules = np.zeros((num, width_r, xrules.MAX_RULE_ENCODING_LEN), np.uint8)
    init = np.zeros((num, width_t, 2), np.uint8)
    for i, (_, r, t) in enumerate(sets):
        rules[i, :len(r)] = np.reshape(r, (-1, xrules.MAX_RULE_ENCODING_LEN))
        init[i, :len(t)] = t
    return {"goals": np.stack([g for g, _, _ in sets]), "rules": rules, "init_tiles": init,
            "num_rules": np.array([len(r) for _, r, _ in sets], np.int32)}


def cache_dir() -> str:
    """The rule-set cache folder: ``$RL3JAX_XLAND_CACHE``, else ``$XDG_CACHE_HOME/rl3jax/xland``, else
    ``~/.cache/rl3jax/xland``."""
    if os.environ.get("RL3JAX_XLAND_CACHE"):
        return os.environ["RL3JAX_XLAND_CACHE"]
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rl3jax", "xland")


def rulesets(preset: str, seed: int, num_train: int, num_test: int) -> tuple[dict, dict]:
    """The (training, held-out) rule sets of ``preset`` (``generate(preset, seed, num_train + num_test)`` split
    there: disjoint), read from the cache file or generated and written there first. ValueError (one line naming
    the file and how to rebuild it) for a cache file that is corrupt, of another ``VERSION`` or other settings."""
    meta = {"version": VERSION, "preset": preset, "seed": seed, "num_train": num_train, "num_test": num_test}
    path = os.path.join(cache_dir(), f"{preset}-seed{seed}-{num_train}+{num_test}-v{VERSION}.npz")
    if os.path.exists(path):
        data = _read(path, meta)
    else:
        check_output_file(path, "the XLand rule-set cache (RL3JAX_XLAND_CACHE)")  # one line, exit 2, before the work
        data = generate(preset, seed, num_train + num_test)
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **data)
        atomic_write(path, buf.getvalue())
        print(f"XLand rule sets generated and cached: {path}", file=sys.stderr)
    return ({k: v[:num_train] for k, v in data.items()}, {k: v[num_train:] for k, v in data.items()})


def _read(path: str, meta: dict) -> dict[str, np.ndarray]:
    """The arrays of cache file ``path`` (written with ``meta``); ValueError naming it otherwise."""
    fix = "delete it and rl3jax writes it anew (or set RL3JAX_XLAND_CACHE to another folder)"
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        found = json.loads(str(data.pop("meta")))
    except Exception as e:  # noqa: BLE001  (whatever np.load or json raise on a damaged file)
        raise ValueError(f"XLand rule-set cache {path} is corrupt ({type(e).__name__}): {fix}") from None
    if found != meta:
        raise ValueError(f"XLand rule-set cache {path} holds {found}, not {meta} (another version or settings): {fix}")
    if set(data) != {"goals", "rules", "init_tiles", "num_rules"} or len({len(v) for v in data.values()}) != 1:
        raise ValueError(f"XLand rule-set cache {path} is corrupt (arrays {sorted(data)}): {fix}")
    return data


def load_benchmark_file(path: str, test_fraction: float = 0.2, seed: int = 0) -> tuple[dict, dict]:
    """The rule sets of a benchmark file of xland-minigrid (a bz2 pickle of goals, rules, init_tiles and num_rules,
    as ``xminigrid.load_benchmark`` downloads them; nothing is downloaded here), shuffled with ``seed`` and split
    into (training, held-out) with ``test_fraction`` held out. FileNotFoundError / ValueError naming ``path``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no XLand benchmark file {path}: copy it there from a machine where "
                                "xminigrid.load_benchmark(name) downloaded it (its XLAND_MINIGRID_DATA folder), "
                                "or use a variant that rl3jax generates")
    try:
        with bz2.open(path, "rb") as f:
            raw = pickle.load(f)  # noqa: S301  (the user's own file, as xminigrid reads it)
        data = {k: np.asarray(raw[k]) for k in ("goals", "rules", "init_tiles", "num_rules")}
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"XLand benchmark file {path} cannot be read ({type(e).__name__}: {e})") from None
    order = np.random.default_rng(seed).permutation(len(data["goals"]))
    cut = len(order) - max(1, round(len(order) * test_fraction))
    return ({k: v[order[:cut]] for k, v in data.items()}, {k: v[order[cut:]] for k, v in data.items()})
