"""Stops and kills (issue 17 items 1, 4, 5, 15, 16): SIGINT, SIGTERM and SIGHUP stop at the end of the chunk with
a checkpoint and the conventional exit status; a population saves as one unit, so a kill -9 at any moment of its
save leaves a population that resumes and continues exactly; the metrics history after a resume is exact and
metrics.csv is replaced whole; resuming a finished run does nothing, in one line, without building anything.

Subprocesses use the test suite's XLA flags and compilation cache (one tiny config), so each compiles once.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rl3jax.cli import main as cli_main
from rl3jax.config import TrainConfig
from rl3jax.outputs import atomic_write
from rl3jax.runs import runfiles
from rl3jax.runs.metrics import MetricsLog
from rl3jax.runs.runfiles import read_metrics
from tests.helpers import ROOT, child_env

T = ["--env", "mdp", "--algo", "rl3", "--model", "markov", "--horizon", "10", "--num-envs", "8",
     "--minibatch-envs", "4", "--no-progress"]


def _train(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rl3jax", "train", *T, *argv], cwd=ROOT,
                            env=child_env(JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, timeout: float = 300.0) -> None:
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _signalled(argv: list[str], ready, signals: list[int], gap: float) -> tuple[int, str]:
    """Trains ``argv`` in a subprocess, sends ``signals`` ``gap`` seconds apart once ``ready()``; (status, stderr)."""
    p = _train(*argv)
    try:
        _wait_for(ready)
        for i, sig in enumerate(signals):
            time.sleep(gap if i else 0.0)
            p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    return p.returncode, err


def _raw_state(ckpts: str) -> list[np.ndarray]:
    """The leaves of the newest checkpoint's state, read with orbax directly."""
    step = runfiles.finished_steps(ckpts)[-1]
    return [np.asarray(x) for x in jax.tree.leaves(ocp.StandardCheckpointer().restore(os.path.join(ckpts, str(step), "state")))]


def _rows(run: str) -> list[dict]:
    """metrics.jsonl without the timing field."""
    return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in read_metrics(run)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_at_the_end_of_the_chunk_with_a_checkpoint(tmp_path, sig):
    """checkpoint_every=10 and 2-iteration chunks: a signal after the first rows stops at the end of a chunk
    that is no checkpoint boundary, writes that step, says so with the resume command, exits 128 + signal."""
    run = str(tmp_path / "run")
    status, err = _signalled(["--iters", "400", "--set", "chunk_iters=2", "--set", "checkpoint_every=10", "--out", run],
                             lambda: os.path.exists(os.path.join(run, "metrics.jsonl")) and read_metrics(run),
                             [sig], gap=0.0)
    name = signal.Signals(sig).name
    assert status == 128 + sig, err
    assert f"{name}: stopping at the end of the current chunk (iteration " in err or \
        f"{name}: stopping before the next chunk, after writing a checkpoint" in err  # (between two chunks)
    stopped = [ln for ln in err.splitlines() if f"stopped by {name} at iteration" in ln]
    assert len(stopped) == 1, err
    it = int(stopped[0].split("at iteration ")[1].split(";")[0])
    assert it % 2 == 0 and 0 < it < 400
    assert f"checkpoint step {it} is intact; resume with: " in stopped[0] and f"--out {run} --resume" in stopped[0]
    assert runfiles.finished_steps(runfiles.checkpoint_dir(run))[-1] == it
    assert [r["iteration"] for r in read_metrics(run)] == list(range(1, it + 1))  # no row lost, none past it


def test_a_population_killed_at_any_moment_of_its_save_resumes_exactly(tmp_path):
    """kill -9 at a random moment while a 2-member population saves a checkpoint every iteration, then
    --resume: it continues from the newest step both members saved and ends equal to a straight run (metrics
    rows and final parameters); a member folder alone is refused, naming the population."""
    args = ["--seeds", "2", "--set", "chunk_iters=1", "--set", "checkpoint_every=1", "--set", "keep_checkpoints=1",
            "--set", "eval_every=0"]  # (the preset's evaluations follow --iters, which differs here)
    straight, pop = str(tmp_path / "straight"), str(tmp_path / "pop")
    assert _train(*args, "--iters", "8", "--out", straight).wait(timeout=600) == 0
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    p = _train(*args, "--iters", "200", "--out", pop)
    try:
        # the moment is drawn from this machine's own pace (a fixed span of seconds is past iteration 8 on a fast
        # one): once 1 to 3 more steps are committed, a random point of the next iteration and its saves
        _wait_for(lambda: os.path.exists(os.path.join(pop, runfiles.COMMITTED)))
        first, t0 = runfiles.latest_step(pop), time.perf_counter()
        target = first + rng.randint(1, 3)
        _wait_for(lambda: runfiles.latest_step(pop) >= target)
        time.sleep(rng.uniform(0.0, (time.perf_counter() - t0) / (runfiles.latest_step(pop) - first)))
        p.kill()
        p.wait()
    finally:
        p.kill()
    committed = runfiles.latest_step(pop)
    members = runfiles.run_dirs(pop)
    assert committed is not None and all(committed in runfiles.finished_steps(runfiles.checkpoint_dir(m))
                                         for m in members), f"seed {seed}"
    if committed >= 8:
        pytest.skip(f"killed after iteration 8 (seed {seed})")
    r = subprocess.run([sys.executable, "-m", "rl3jax", "train", "--out", pop, "--resume", "--iters", "8",
                        "--no-progress"], cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"seed {seed}: {r.stderr}"
    assert f"resumed {pop} at iteration {committed}" in r.stdout
    for m in members:
        name = os.path.basename(m)
        assert _rows(m) == _rows(os.path.join(straight, name)), f"seed {seed}: {name}"
        assert runfiles.finished_steps(runfiles.checkpoint_dir(m)) == [8]  # keep_checkpoints=1 after the commit
        a, b = _raw_state(os.path.join(m, "checkpoints")), _raw_state(os.path.join(straight, name, "checkpoints"))
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), f"seed {seed}: {name}"
    # one member alone is not resumable: the refusal names the population folder
    member = members[0]
    rc = cli_main(["train", "--out", member, "--resume", "--iters", "9", "--no-progress"])
    assert rc == 2
    assert runfiles.finished_steps(runfiles.checkpoint_dir(member)) == [8]


def test_resuming_a_finished_run_does_nothing_in_one_line(tmp_path, capsys, monkeypatch):
    """A run at its --iters: one line naming it and how to continue, exit 0, nothing built or compiled."""
    run = str(tmp_path / "run")
    os.makedirs(os.path.join(run, "checkpoints", "4"))  # a finished step (orbax names it once complete)
    cfg = TrainConfig(env="mdp", algo="rl3", model="markov", horizon=10, num_envs=8, minibatch_envs=4, iters=4)
    runfiles.atomic_write_json(os.path.join(run, "config.json"), cfg.to_dict())
    capsys.readouterr()

    def built(*a, **k):
        raise AssertionError("built a trainer")

    monkeypatch.setattr("rl3jax.trainer.make_train", built)
    assert cli_main(["train", "--out", run, "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out == f"nothing to do: {run} is at iteration 4 of 4; pass --iters M (> 4) to continue\n"


def test_metrics_history_is_exact_after_a_resume(tmp_path, capsys):
    """Rows after the resumed checkpoint are dropped (and named), a repeated row is kept once, missing rows
    are named; the CSV holds the same rows."""
    run = str(tmp_path)
    rows = [{"iteration": i, "env_steps": 10 * i, "x": float(i)} for i in (1, 2, 3, 3, 4, 6, 7)]
    atomic_write(os.path.join(run, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    MetricsLog(run, 5)
    err = capsys.readouterr().err
    assert "dropped the rows of iterations 6..7, after checkpoint step 5" in err
    assert "kept one row of each repeated iteration" in err and "lacks the rows of iterations 5;" in err
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3, 4]
    csv_its = [ln.split(",")[0] for ln in open(os.path.join(run, "metrics.csv")).read().splitlines()]
    assert csv_its == ["iteration", "1", "2", "3", "4"]


def test_metrics_csv_is_replaced_whole(tmp_path, monkeypatch):
    """A kill while metrics.csv is rewritten (at a resume, or when a new field appears) leaves the old file."""
    run = str(tmp_path)
    log = MetricsLog(run)
    log.append([{"iteration": 1, "env_steps": 10, "x": 1.0}])
    before = open(os.path.join(run, "metrics.csv")).read()

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        MetricsLog(run, 1)
    with pytest.raises(KeyboardInterrupt):
        log.append([{"iteration": 2, "env_steps": 20, "x": 2.0, "eval_return": 1.0}])
    assert open(os.path.join(run, "metrics.csv")).read() == before


def test_a_second_signal_aborts_at_once(tmp_path):
    """SIGTERM, then Ctrl-C while the chunk still runs: aborted at once with 130, saying what is intact.

    The first signal must land inside the long chunk, not during the setup before it (a stop asked for there
    ends the run at once, before the second signal is sent). So the run is a resume of a 2-iteration run, and
    the signals wait for the resume's rewrite of metrics.jsonl (the last file written before the loop) and a
    second more; the first signal's answer shows where it landed."""
    run = str(tmp_path / "run")
    first = _train("--iters", "2", "--set", "chunk_iters=2", "--out", run)
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    jsonl = os.path.join(run, "metrics.jsonl")
    before = os.stat(jsonl).st_ino

    def in_the_chunk() -> bool:
        if os.stat(jsonl).st_ino == before:  # rewritten whole (a new file) by the resume's setup
            return False
        time.sleep(1.0)
        return True

    status, err = _signalled(["--iters", "100000", "--set", "chunk_iters=50000", "--set", "checkpoint_every=100000",
                              "--out", run, "--resume"], in_the_chunk, [signal.SIGTERM, signal.SIGINT], gap=0.5)
    assert "SIGTERM: stopping at the end of the current chunk (iteration 50002, " in err, err
    assert status == 130, err
    assert "SIGINT again: aborting at once; checkpoint step 2 is intact; resume with: " in err, err
    assert runfiles.finished_steps(runfiles.checkpoint_dir(run)) == [2]


def test_the_same_signal_twice_at_once_is_one_request_to_stop(tmp_path):
    """GNU ``timeout`` sends its signal to the child and again to the process group: two SIGTERMs within
    ``StopSignals.REPEAT_S`` stop gracefully (a checkpoint at the stop, exit 143), they do not abort.

    The second is sent as soon as the first is answered on stderr, while the run still works on the chunk the
    answer names (20 iterations; no checkpoint before the stop's): a fixed gap could let a fast stop finish first,
    and the second signal would then meet the default handler (exit -15)."""
    run = str(tmp_path / "run")
    p = _train("--iters", "400", "--set", "chunk_iters=20", "--set", "checkpoint_every=400", "--set", "eval_every=0",
               "--out", run)
    try:
        _wait_for(lambda: os.path.exists(os.path.join(run, "metrics.jsonl")) and read_metrics(run))
        p.send_signal(signal.SIGTERM)
        err = ""
        while "SIGTERM: stopping" not in err and (line := p.stderr.readline()):
            err += line
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)  # (its few lines fit in the pipes)
        err += p.stderr.read()
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert "aborting at once" not in err and "stopped by SIGTERM at iteration" in err
    it = int(err.split("stopped by SIGTERM at iteration ")[1].split(";")[0])
    assert f"SIGTERM: stopping at the end of the current chunk (iteration {it}, " in err, err  # where it landed
    assert runfiles.finished_steps(runfiles.checkpoint_dir(run))[-1] == it


def test_a_signal_during_the_setup_stops_before_training_with_nothing_written(tmp_path, capsys, monkeypatch):
    """A Ctrl-C while `train` sets up (here: during its memory check, after JAX has started) is answered at once
    and stops the command before training starts: exit 130, nothing of the run written, the handlers restored."""
    from rl3jax import memory
    from rl3jax.runs.signals import StopSignals

    def signalled(*a, **k):  # the signal arrives; the watcher thread records it
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for(lambda: StopSignals._first is not None, timeout=30)

    monkeypatch.setattr(memory, "check_train_memory", signalled)
    handler, run = signal.getsignal(signal.SIGINT), str(tmp_path / "run")
    assert cli_main(["train", *T, "--iters", "4", "--out", run]) == 130
    err = capsys.readouterr().err
    assert "SIGINT: stopping before training starts (nothing trained yet)" in err
    assert "rl3jax train: stopped by SIGINT before training started; nothing of the run was written yet" in err
    assert not os.path.exists(run) and signal.getsignal(signal.SIGINT) is handler and StopSignals._first is None


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


def _ctrl_c_once_answering(p: subprocess.Popen) -> str:
    """SIGINT to ``p`` once it answers signals (SIGHUP caught); its stderr."""
    try:
        _wait_for(lambda: p.poll() is not None or _catches(p.pid, signal.SIGHUP), timeout=120)
        p.send_signal(signal.SIGINT)
        return p.communicate(timeout=120)[1]
    finally:
        p.kill()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads a process's signal handlers from /proc")
def test_ctrl_c_from_the_commands_first_line_is_never_lost(tmp_path):
    """End to end, as early as `train` answers signals (SIGHUP caught): a Ctrl-C stops it with 130, one truthful
    line about what was written, no traceback and no "Exception ignored" (a KeyboardInterrupt raised while JAX
    started was once lost so, and the run trained to its end with status 0). Where the answer lands depends on
    the machine's pace, so this does not pin the setup phase; the in-process test above does."""
    run = str(tmp_path / "run")
    p = _train("--iters", "100000", "--set", "chunk_iters=100000", "--out", run)
    err = _ctrl_c_once_answering(p)
    assert p.returncode == 130, err
    assert "SIGINT: stopping before " in err and "Traceback" not in err and "Exception ignored" not in err, err
    said = err.split("rl3jax train: stopped by SIGINT ")[1]
    assert ("nothing of the run was written yet" in said) == (not runfiles.holds_run(run)), err
    assert runfiles.latest_step(run) is None if runfiles.holds_run(run) else True


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads a process's signal handlers from /proc")
def test_ctrl_c_ends_an_evaluation_at_once_from_its_first_line(tmp_path):
    """eval (as baselines, report, render: nothing to save) ends at once on a Ctrl-C from the moment it answers
    signals, before JAX is imported: exit 130, one line, no traceback, the --json file not written."""
    out = str(tmp_path / "ev.json")
    p = subprocess.Popen([sys.executable, "-m", "rl3jax", "eval", "--policy", "random", "--env", "mdp", "--horizon",
                          "100", "--episodes", "1000000", "--json", out], cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _ctrl_c_once_answering(p)
    assert p.returncode == 130, err
    assert err.strip() == "SIGINT: stopping at once; each file of rl3jax eval is whole or not written", err
    assert not os.path.exists(out)
