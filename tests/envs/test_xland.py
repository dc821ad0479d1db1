"""The XLand-MiniGrid family (rl3jax.envs.xland, rl3jax.envs.xland_rulesets; issue 20). The refusals run always;
the rest needs the extra rl3jax[xland] (xminigrid) and skips with that reason without it."""

from __future__ import annotations

import bz2
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs import catalog
from tests.helpers import ROOT, _one_line_error, child_env

needs_xland = pytest.mark.skipif(importlib.util.find_spec("xminigrid") is None,
                                 reason="needs the extra rl3jax[xland]: pip install -e '.[xland]'")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xland-cache"))


@pytest.fixture
def xl(cache, monkeypatch):
    """The family's modules, with the rule-set cache in a temporary folder and small generated sets (200 + 50)."""
    if importlib.util.find_spec("xminigrid") is None:
        pytest.skip("needs the extra rl3jax[xland]: pip install -e '.[xland]'")
    from rl3jax.envs import xland, xland_rulesets
    monkeypatch.setenv("RL3JAX_XLAND_CACHE", cache)
    monkeypatch.setattr(xland, "NUM_TRAIN", 200)
    monkeypatch.setattr(xland, "NUM_TEST", 50)
    return xland, xland_rulesets


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("argv", [["train", "--env", "xland", "--out", "{tmp}/run"],
                                  ["eval", "--policy", "random", "--env", "xland", "--horizon", "10"],
                                  ["baselines", "--env", "xland", "--horizon", "10"]])
def test_without_the_extra_every_env_command_is_one_line_before_jax(argv, tmp_path):
    """Without xminigrid (simulated: the extra's module renamed to one that does not exist), each command that
    takes --env refuses 'xland' in one line naming the extra, exit 2, with JAX never imported, nothing written."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = ("import sys; from rl3jax.envs import catalog; catalog.EXTRAS['xland'] = ('rl3jax_absent_module', 'xland');"
            f"from rl3jax.cli import main; rc = main({argv!r}); print(rc, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=child_env())
    assert out.stdout.split() == ["2", "False"], out
    line = _one_line_error(out.stderr)
    assert "env 'xland' needs the package rl3jax_absent_module: pip install 'rl3jax[xland]'" in line
    assert not os.listdir(tmp_path)


def test_an_unknown_variant_is_one_line_listing_the_valid_ones(monkeypatch):
    monkeypatch.setitem(catalog.EXTRAS, "xland", ("json", "xland"))  # the check of the extra passes
    with pytest.raises(ValueError, match="variant 'r9-25x25' is not valid for env 'xland'; valid: train, small, "
                                         "medium, high, r4-13x13-medium, file-trivial-21k"):
        TrainConfig(env="xland", variant="r9-25x25")


# ------------------------------------------------------------------------------------------------ rule sets


def _keys(xr, data) -> list[bytes]:
    n = len(data["goals"])
    return [xr._canonical(data["goals"][i], list(data["rules"][i][:data["num_rules"][i]]),
                          [t for t in data["init_tiles"][i] if t.any()]) for i in range(n)]


@needs_xland
@pytest.mark.parametrize("preset", ["trivial", "small", "medium", "high"])
def test_rule_sets_are_xminigrid_encodings_of_solvable_trees(xl, preset):
    """Each generated rule set: goal and rules encode and decode as xminigrid's own classes do; every object the
    goal or a tree rule needs is placed or produced by a rule; the tree is at most chain_depth deep (at most
    2^(d+1) − 2 tree rules) plus at most the preset's distractor rules; distractor objects as set."""
    _, xr = xl
    goal_ids, rule_ids = xr._encodings()
    rule_of = {i: (cls, k) for cls, (i, k) in rule_ids.items()}
    data, p = xr.generate(preset, 3, 60), xr.PRESETS[preset]
    for g, rules, n, init in zip(data["goals"], data["rules"], data["num_rules"], data["init_tiles"], strict=True):
        goal_cls = next(c for c, (i, _) in goal_ids.items() if i == g[0])
        np.testing.assert_array_equal(goal_cls.decode(jnp.asarray(g)).encode(), g)
        assert not rules[n:].any() and rules[:n, 0].all()
        placed = {tuple(t) for t in init if t.any()}
        produced = {tuple(r[2 * rule_of[r[0]][1] - 1:2 * rule_of[r[0]][1] + 1]) for r in rules[:n]}
        needed = [tuple(g[1 + 2 * k:3 + 2 * k]) for k in range(goal_ids[goal_cls][1])]
        for r in rules[:n]:
            cls, k = rule_of[r[0]]
            np.testing.assert_array_equal(cls.decode(jnp.asarray(r)).encode(), r)
            needed += [tuple(r[1 + 2 * j:3 + 2 * j]) for j in range(k - 1)]
        assert all(o in placed | produced for o in needed) and not placed & produced
        assert n <= 2 ** (p.chain_depth + 1) - 2 + p.num_distractor_rules
        assert len(placed) >= p.num_distractor_objects + (p.chain_depth == 0) * len(needed)
    if preset == "trivial":  # no rules: the goal's objects and 3 distractors are placed
        assert (data["num_rules"] == 0).all()
        assert {int((t.any(axis=1)).sum()) for t in data["init_tiles"]} <= {4, 5}


@needs_xland
def test_rule_sets_are_deterministic_distinct_and_the_split_disjoint(xl, tmp_path, monkeypatch):
    _, xr = xl
    monkeypatch.setenv("RL3JAX_XLAND_CACHE", str(tmp_path))
    a = xr.generate("small", 7, 500)
    b = xr.generate("small", 7, 500)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["goals"], xr.generate("small", 8, 500)["goals"])
    assert len(set(_keys(xr, a))) == 500
    train, test = xr.rulesets("trivial", 0, 300, 100)
    kt, kh = _keys(xr, train), _keys(xr, test)
    assert (len(kt), len(kh), len(set(kt)), len(set(kh))) == (300, 100, 300, 100) and not set(kt) & set(kh)


@needs_xland
def test_the_cache_is_written_once_reused_and_a_bad_file_refused_untouched(xl, tmp_path, monkeypatch):
    _, xr = xl
    monkeypatch.setenv("RL3JAX_XLAND_CACHE", str(tmp_path / "c"))
    first, _ = xr.rulesets("trivial", 1, 40, 10)
    (path,) = [str(p) for p in (tmp_path / "c").iterdir()]
    assert os.path.basename(path) == f"trivial-seed1-40+10-v{xr.VERSION}.npz"
    stamp = os.stat(path).st_mtime_ns
    again, _ = xr.rulesets("trivial", 1, 40, 10)
    assert os.stat(path).st_mtime_ns == stamp and all(np.array_equal(first[k], again[k]) for k in first)
    with np.load(path) as f:  # the same name holding another version's file
        arrays = {k: f[k] for k in f.files}
    arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "version": xr.VERSION + 1}))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    for content in (None, b"not an npz file"):
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        before = open(path, "rb").read()
        with pytest.raises(ValueError, match=re.escape(f"XLand rule-set cache {path} ") + ".*delete it and rl3jax writes it anew"):
            xr.rulesets("trivial", 1, 40, 10)
        assert open(path, "rb").read() == before
    # a cache folder that cannot be made (below a file): one line naming the setting, before the generator runs
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("RL3JAX_XLAND_CACHE", str(tmp_path / "file" / "sub"))
    with pytest.raises(ValueError, match=r"XLand rule-set cache \(RL3JAX_XLAND_CACHE\) .* which is a file"):
        xr.rulesets("trivial", 2, 40, 10)


@needs_xland
def test_a_downloaded_benchmark_file_is_read_without_a_download(xl, tmp_path, monkeypatch):
    """The file-* variants read xland-minigrid's own file format from $XLAND_MINIGRID_DATA, split 80/20 disjointly;
    a missing file is one line naming it."""
    xland, xr = xl
    monkeypatch.setenv("XLAND_MINIGRID_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no XLand benchmark file {tmp_path}/trivial_21k: copy it there"):
        xland.XLandMiniGrid("file-trivial-21k")
    data = xr.generate("trivial", 5, 100)
    with bz2.open(tmp_path / "trivial_21k", "wb") as f:
        pickle.dump(data, f)
    env = xland.XLandMiniGrid("file-trivial-21k")
    assert (env.train_sets.goal.shape[0], env.test_sets.goal.shape[0]) == (80, 20)
    train = {bytes(np.asarray(g)) + bytes(np.asarray(i)) for g, i in zip(env.train_sets.goal, env.train_sets.init_tiles)}
    test = {bytes(np.asarray(g)) + bytes(np.asarray(i)) for g, i in zip(env.test_sets.goal, env.test_sets.init_tiles)}
    assert len(train) == 80 and len(test) == 20 and not train & test


# ------------------------------------------------------------------------------------------------ the family


@needs_xland
def test_the_spec_matches_the_family_hooks_and_every_generated_variant_builds(xl):
    from rl3jax.envs import registry
    xland, _ = xl
    spec = catalog.FAMILIES["xland"]
    assert tuple(xland.VARIANTS) == spec.variants
    envs = [registry.make_env("xland", v) for v in spec.variants if not v.startswith("file-")]
    assert registry.spec_of(envs[0], spec.entry, spec.variants, spec.horizon, spec.kwargs) == spec
    assert [(e.task_horizon, e.grid_side) for e in envs] == [(243, 9)] * 4 + [(507, 13)]
    assert {e.family for e in envs} == {"xland"} and len({e.name for e in envs}) == len(envs)


@needs_xland
def test_steps_are_xminigrids_own_and_end_as_it_ends_them(xl):
    """Over TH = 243 random actions our step_env gives xminigrid's own rewards, goal flags and grids (its env.step on
    the same task and key), and the observation is the one-hot code of its view plus the direction."""
    import xminigrid
    xland, _ = xl
    env = xland.XLandMiniGrid("small")
    own, params = xminigrid.make("XLand-MiniGrid-R1-9x9")
    task = env.sample_task(jax.random.key(4))
    params = params.replace(ruleset=task.ruleset)
    obs, state = env.reset_env(jax.random.key(9), task)
    ts = own.reset(params, jax.random.key(9))
    step, own_step = jax.jit(env.step_env), jax.jit(own.step)
    actions = np.random.default_rng(0).integers(0, 6, env.task_horizon)
    for a in actions:
        view, d = np.asarray(ts.observation), int(ts.state.agent.direction)
        code = np.asarray(obs)
        assert code.shape == (629,) and code.sum() == 5 * 5 * 2 + 1
        tiles = code[:625].reshape(5, 5, 25)
        assert (tiles[..., :13].argmax(-1) == view[..., 0]).all() and (tiles[..., 13:].argmax(-1) == view[..., 1]).all()
        assert code[625 + d] == 1
        obs, state, r, term, _ = step(jax.random.key(0), state, jnp.int32(a), task)
        ts = own_step(params, ts, jnp.int32(a))
        assert (float(r), bool(term)) == (float(ts.reward), float(ts.discount) == 0.0)
        assert np.array_equal(state.grid, ts.state.grid)
        if term:
            break
    assert bool(ts.last())  # the goal, or truncation at TH (xminigrid's max_steps)


@needs_xland
def test_reaching_the_goal_by_hand(xl):
    """Goal 'hold the red ball': the agent at (3, 3) facing right at a red ball on (3, 4) picks it up: reward
    1 − 0.9·1/243, terminated; the state index ((pocket·4 + dir)·9 + row)·9 + col before and after; the meta
    episode then starts a new task episode."""
    from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles
    from xminigrid.core.goals import AgentHoldGoal
    from xminigrid.types import RuleSet

    from rl3jax.meta_episode import MetaEnv
    xland, _ = xl
    env = xland.XLandMiniGrid()
    ball = TILES_REGISTRY[Tiles.BALL, Colors.RED]
    task = env.default_params.replace(ruleset=RuleSet(goal=AgentHoldGoal(tile=ball).encode(),
                                                      rules=jnp.zeros((1, 7), jnp.uint8),
                                                      init_tiles=jnp.asarray([ball])))
    _, state = env.reset_env(jax.random.key(0), task)
    grid = jnp.where((state.grid == ball).all(-1, keepdims=True), TILES_REGISTRY[Tiles.FLOOR, Colors.BLACK], state.grid)
    state = state.replace(grid=grid.at[3, 4].set(ball),
                          agent=state.agent.replace(position=jnp.array([3, 3]), direction=jnp.asarray(1)))
    assert int(env.state_index(state, task)) == ((0 * 4 + 1) * 9 + 3) * 9 + 3
    _, new, r, term, _ = env.step_env(jax.random.key(0), state, jnp.int32(3), task)
    assert bool(term) and float(r) == pytest.approx(1 - 0.9 / 243, abs=1e-7)
    held = Tiles.BALL * 12 + Colors.RED
    assert int(env.state_index(new, task)) == ((held * 4 + 1) * 9 + 3) * 9 + 3
    meta = MetaEnv(env, 512)
    _, ms = meta.reset(jax.random.key(0), task)
    _, ms2, r2, _, info = meta.step(jax.random.key(1), ms.replace(env_state=state), jnp.int32(3), task)
    assert bool(info["terminated"]) and bool(info["task_episode_over"]) and int(ms2.tau) == 0
    assert float(r2) == pytest.approx(1 - 0.9 / 243, abs=1e-7)


@needs_xland
def test_held_out_tasks_come_from_the_held_out_set(xl):
    from rl3jax.evaluate import held_out_tasks
    from rl3jax.meta_episode import make_meta_env
    xland, _ = xl
    meta = make_meta_env(TrainConfig(env="xland", algo="rl2", model="gru", horizon=16, num_envs=2, minibatch_envs=1))
    tasks = held_out_tasks(meta, 200)
    rows = lambda rs: {bytes(np.asarray(g)) + bytes(np.asarray(i)) for g, i in zip(rs.goal, rs.init_tiles)}  # noqa: E731
    drawn, test, train = rows(tasks.ruleset), rows(meta.env.test_sets), rows(meta.env.train_sets)
    assert drawn <= test and not drawn & train and len(drawn) > 40


@needs_xland
@pytest.mark.parametrize("algo", [pytest.param("rl2", marks=pytest.mark.slow), "rl3", "rl3_coarse"])  # rl2: -m slow
def test_training_runs_for_rl2_rl3_and_rl3_coarse(xl, algo, tmp_path):
    """One PPO iteration through the command line (the cpu-xland preset, H = 16): finite losses, an estimator of
    the discovery kind for RL³ (coarse: the abstraction over the room's cells)."""
    from rl3jax.cli import main
    from rl3jax.meta_episode import make_meta_env
    from rl3jax.runs.runfiles import read_metrics
    cfg = TrainConfig(env="xland", algo=algo, model="gru", horizon=16, num_envs=2, minibatch_envs=1)
    est = make_meta_env(cfg).estimator
    assert (type(est).__name__ if est else None, getattr(est, "abstraction", None), getattr(est, "grid_side", None)) == \
        {"rl2": (None, None, None), "rl3": ("DiscoveryQEstimator", None, None),
         "rl3_coarse": ("DiscoveryQEstimator", "coarse", 9)}[algo]
    if algo == "rl3_coarse":
        return  # the training loop is the same as rl3's
    out = str(tmp_path / "run")
    assert main(["train", "--env", "xland", "--algo", algo, "--horizon", "16", "--iters", "1", "--num-envs", "2",
                 "--minibatch-envs", "1", "--out", out, "--no-progress"]) == 0
    rows = read_metrics(out)
    assert len(rows) == 1 and all(np.isfinite(v) for k, v in rows[0].items() if "loss" in k)
