"""The CLI's persistent compilation cache (``rl3jax.compile_cache``): where it goes, when it is off, the
refusal of an unusable folder, and that a run reading its programs from the cache trains exactly as one that
compiled them."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PY = sys.executable


def _cache_of(command: str, env: dict) -> dict:
    """compile_cache(command) in a fresh process without JAX imported: the folder it returns and the JAX
    variables it leaves in the environment."""
    code = ("import json, os, sys; from rl3jax.compile_cache import compile_cache; d = compile_cache(sys.argv[1]); "
            "print(json.dumps({'dir': d, 'env': {k: v for k, v in os.environ.items() if k.startswith(('JAX_', "
            "'RL3JAX_COMPILE'))}, 'jax_imported': 'jax' in sys.modules}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "RL3JAX_COMPILE", "XDG_CACHE"))}
    out = subprocess.run([PY, "-c", code, command], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_default_folder_off_bench_and_the_users_jax_setting(tmp_path):
    got = _cache_of("train", {"XDG_CACHE_HOME": str(tmp_path)})
    assert got["dir"] == str(tmp_path / "rl3jax" / "xla") and os.path.isdir(got["dir"])
    assert got["env"]["JAX_COMPILATION_CACHE_DIR"] == got["dir"]  # processes it starts share it
    assert float(got["env"]["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0.1
    assert int(got["env"]["JAX_COMPILATION_CACHE_MAX_SIZE"]) == 2 << 30
    assert not got["jax_imported"]  # the CLI's checks run before JAX starts
    mine = _cache_of("eval", {"RL3JAX_COMPILE_CACHE": str(tmp_path / "mine")})
    assert mine["dir"] == str(tmp_path / "mine") and os.path.isdir(mine["dir"])
    assert _cache_of("train", {"RL3JAX_COMPILE_CACHE": "off"})["dir"] is None
    bench = _cache_of("bench", {"XDG_CACHE_HOME": str(tmp_path / "b")})
    assert bench["dir"] is None and bench["env"]["RL3JAX_COMPILE_CACHE"] == "off"  # its child runs too
    assert not (tmp_path / "b").exists()
    users = _cache_of("train", {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j"), "RL3JAX_COMPILE_CACHE": "off"})
    assert users["dir"] == str(tmp_path / "j")
    unusable = _cache_of("train", {"XDG_CACHE_HOME": "/dev/null"})  # the default failing: a note, no cache
    assert unusable["dir"] is None and "JAX_COMPILATION_CACHE_DIR" not in unusable["env"]


@pytest.mark.parametrize("argv", [["train", "--env", "bandit", "--out", "{tmp}/run"],
                                  ["eval", "--policy", "random", "--env", "bandit", "--horizon", "5"],
                                  ["report", "{tmp}/nothing"]])
def test_an_unusable_folder_is_refused_in_one_line(tmp_path, argv):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {**os.environ, "RL3JAX_COMPILE_CACHE": str(blocker / "xla")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([PY, "-m", "rl3jax", *[a.format(tmp=tmp_path) for a in argv]], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "RL3JAX_COMPILE_CACHE=" in out.stderr and "'off'" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_a_run_from_cached_programs_trains_exactly_as_a_compiled_one(tmp_path):
    """Two identical runs on one cache folder: the first compiles and writes the programs, the second reads them
    (their access-time stamps move, no program is added) and its metrics equal the first's bit for bit. A resume
    of the first compiles nothing either: a restored state is placed as a fresh one is (it once differed, and the
    first resume of every run compiled its chunk program again)."""
    cache = tmp_path / "xla"
    # every program kept, however fast it compiled: with the default 0.1 s floor, a program that compiles near it
    # (many take 0.01 - 0.03 s) may be kept by one run and not the other on a loaded machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")} | {
        "RL3JAX_COMPILE_CACHE": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    args = ["--env", "bandit", "--horizon", "10", "--iters", "2", "--num-envs", "8", "--minibatch-envs", "4",
            "--set", "epochs=1", "--no-progress"]

    def train(out, *more):
        subprocess.run([PY, "-m", "rl3jax", "train", *args, "--out", str(out), *more], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("steps_per_second", "time")} for r in rows]

    first = train(tmp_path / "a")
    programs = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name.endswith("-atime")}
    assert any(name.startswith("jit_chunk") for name in programs)
    second = train(tmp_path / "b")
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name.endswith("-atime")}
    assert after.keys() == programs.keys()  # nothing compiled anew
    assert all(after[n] > programs[n] for n in programs if n.startswith("jit_chunk"))  # read back
    assert second == first
    resumed = train(tmp_path / "a", "--resume", "--iters", "4")  # the same 2-iteration chunk, from the checkpoint
    assert {p.name for p in cache.iterdir() if p.name.endswith("-atime")} == programs.keys()
    assert resumed[:2] == first and len(resumed) == 4
