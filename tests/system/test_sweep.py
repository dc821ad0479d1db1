"""Sweeps end to end (issue 21), in real processes: a 2 x 2 grid (algo rl2, rl3 x two lr in --sweep) x 2 seeds on
tiny bandits launched with submitit's local executor (P = 2), one worker killed with SIGKILL mid-way, the
relaunch (only the interrupted job runs again and resumes bit for bit), ``run --index`` of a finished job and
``report DIR``; Ctrl-C to a local launch; Optuna with two workers at once on one journal file. Slow: several
compiles on a loaded CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rl3jax import sweep, sweep_launch
from rl3jax.runs.runfiles import latest_step, read_metrics, run_dirs
from tests.helpers import ROOT, child_env

pytestmark = pytest.mark.slow
submitit = pytest.importorskip("submitit", reason="the cluster extra (submitit, optuna) is not installed")

ITERS = 16
T = ["--env", "bandit", "--model", "markov", "--horizon", "4", "--num-envs", "2", "--minibatch-envs", "1",
     "--set", "chunk_iters=2", "--set", "checkpoint_every=2", "--set", "eval_every=0"]


def _rl3jax(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rl3jax", *argv], cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=900, **kw)


def _rows(run: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in read_metrics(run)]


def _kill_worker_midway(d: str, index: int, launcher: subprocess.Popen) -> None:
    """SIGKILL to the submitit worker of job ``index`` (its controller and every process below) once the job has
    a checkpoint and is not finished."""
    job = sweep.job_of(d, index)
    out, deadline = sweep.job_dir(d, job), time.time() + 600
    while time.time() < deadline and launcher.poll() is None:
        step = latest_step(out) if os.path.exists(os.path.join(out, "population.json")) else None
        if step is not None and 2 <= step < ITERS and os.path.exists(os.path.join(d, sweep.LAUNCH)):
            assert sweep.job_state(d, job)[0] == "running"
            (record,) = json.load(open(os.path.join(d, sweep.LAUNCH)))
            (pid,) = [int(j["job_id"]) for j in record["jobs"] if j["indices"] == [index]]
            for p in sweep_launch.process_tree(pid):
                os.kill(p, signal.SIGKILL)
            return
        time.sleep(0.05)
    raise AssertionError(f"job {index} never stood at a checkpoint before its end: {launcher.communicate()}")


def test_local_launch_kill_relaunch_resumes_bit_for_bit_and_report(tmp_path):
    d = str(tmp_path / "sw")
    r = _rl3jax("sweep", "plan", "--out", d, *T, "--iters", str(ITERS), "--grid", "algo=rl2,rl3",
                "--sweep", "lr=1e-3,3e-3", "--seeds", "2")
    assert r.returncode == 0, r.stderr
    launcher = subprocess.Popen([sys.executable, "-m", "rl3jax", "sweep", "launch", d, "--backend", "local",
                                 "--parallel", "2"], cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_worker_midway(d, 1, launcher)
    out, err = launcher.communicate(timeout=900)
    assert launcher.returncode == 1, (out, err)  # job 0 finished; job 1's worker was killed
    states = [sweep.job_state(d, j)[0] for j in sweep.read_plan(d)["jobs"]]
    assert states == ["finished", "stopped"], states
    done = sweep.job_dir(d, sweep.job_of(d, 0))
    before = {m: open(os.path.join(m, "metrics.jsonl")).read() for m in run_dirs(done)}

    r = _rl3jax("sweep", "launch", d, "--backend", "local", "--parallel", "2")
    assert r.returncode == 0, r.stderr
    records = json.load(open(os.path.join(d, sweep.LAUNCH)))
    assert [[j["indices"] for j in rec["jobs"]] for rec in records] == [[[0], [1]], [[1]]]  # only the unfinished
    assert {m: open(os.path.join(m, "metrics.jsonl")).read() for m in run_dirs(done)} == before  # not re-trained
    logs = {j["name"]: open(os.path.join(d, "logs", j["name"] + ".log")).read() for j in sweep.read_plan(d)["jobs"]}
    assert logs["algo=rl2"].count("sweep run") == 1 and logs["algo=rl3"].count("sweep run") == 2
    assert "resumed" in logs["algo=rl3"]
    # every member finished exactly once: one row per iteration
    jobs = [sweep.job_dir(d, j) for j in sweep.read_plan(d)["jobs"]]
    members = [m for j in jobs for m in run_dirs(j)]
    assert len(members) == 8 and all([r["iteration"] for r in _rows(m)] == list(range(1, ITERS + 1)) for m in members)
    # the interrupted job equals a straight run of the same command line, bit for bit
    fresh = tmp_path / "fresh"  # the same plan, nothing run: job 1's command line from the start
    fresh.mkdir()
    shutil.copy(os.path.join(d, sweep.PLAN), fresh)
    r = _rl3jax(*sweep_launch.train_argv(str(fresh), 1), "--no-progress")
    assert r.returncode == 0, r.stderr
    straight = sweep.job_dir(str(fresh), sweep.job_of(d, 1))
    for m in run_dirs(jobs[1]):
        assert _rows(m) == _rows(os.path.join(straight, os.path.basename(m))), m
    # a finished job: `run --index` says so and starts nothing
    r = _rl3jax("sweep", "run", d, "--index", "0")
    assert r.returncode == 0 and "job 0 (algo=rl2) is finished" in r.stdout
    # report DIR: every member, the jobs with their best setting
    bjson = str(tmp_path / "baselines.json")
    json.dump([{"policy": "random", "env": "bandit", "variant": "train", "horizon": 4, "episodes": 8,
                "mean_return": 2.0, "stderr": 0.1, "step_rewards": [0.5] * 4},
               {"policy": "oracle", "mean_return": 3.0, "stderr": 0.1, "step_rewards": [0.75] * 4}], open(bjson, "w"))
    r = _rl3jax("report", d, "--episodes", "8", "--baselines-json", bjson)
    assert r.returncode == 0, r.stderr
    res = json.load(open(os.path.join(d, "report", "results.json")))
    assert sorted(x["name"] for x in res["runs"]) == sorted(
        f"{os.path.basename(j)}/{os.path.basename(m)}" for j in jobs for m in run_dirs(j))
    assert [(j["name"], j["state"], j["members"]) for j in res["sweep"]] == [("algo=rl2", "finished", 4),
                                                                              ("algo=rl3", "finished", 4)]
    for j in res["sweep"]:
        groups = [g for g in res["groups"] if g["label"].startswith(j["name"].split("=")[1])]
        assert j["best"]["stochastic"] == max(g["stochastic"]["iqm"] for g in groups)
    assert "## Sweep jobs" in open(os.path.join(d, "report", "results.md")).read()


def test_ctrl_c_stops_a_local_launch_once_its_jobs_have_checkpoints(tmp_path):
    """Ctrl-C (SIGINT to the launch's process group, as a terminal sends it) while both jobs of a local launch
    train: the launch says so once, waits until each job has stopped at the end of its chunk with a checkpoint
    (none before: checkpoint_every is beyond the run) at or after the iteration it had reached, and exits 130
    with no traceback; `sweep status` at once shows both stopped by SIGINT at that checkpoint, none running."""
    d, big = str(tmp_path / "sw"), 10**6
    r = _rl3jax("sweep", "plan", "--out", d, *T[:10], "--set", "chunk_iters=10", "--set", f"checkpoint_every={big}",
                "--set", "eval_every=0", "--iters", str(big), "--grid", "epochs=1,2")
    assert r.returncode == 0, r.stderr
    launcher = subprocess.Popen([sys.executable, "-m", "rl3jax", "sweep", "launch", d, "--backend", "local",
                                 "--parallel", "2"], cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    jobs, deadline = sweep.read_plan(d)["jobs"], time.time() + 600
    while True:  # both jobs past their first chunk
        reached = [sweep.job_state(d, j) for j in jobs]
        if all(s == "running" and not t.endswith(f"iteration 0 of {big}") for s, t in reached):
            break
        assert time.time() < deadline and launcher.poll() is None, (reached, launcher.communicate())
        time.sleep(0.05)
    assert [latest_step(sweep.job_dir(d, j)) for j in jobs] == [None, None]
    os.killpg(launcher.pid, signal.SIGINT)
    out, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 130 and "Traceback" not in out + err, (out, err)
    assert err.count("SIGINT: stopping the local jobs at the end of their current chunks") == 1, err
    status = _rl3jax("sweep", "status", d).stdout.splitlines()
    for j, (_, detail), line in zip(jobs, reached, status):
        step = latest_step(sweep.job_dir(d, j))
        assert step >= int(detail.split("iteration ")[1].split()[0]) > 0, (step, detail)
        assert f"stopped   by SIGINT at checkpoint {step} of {big} (resumable" in line, status
        assert open(os.path.join(d, "logs", j["name"] + ".rc")).read() == "130\n"
    assert status[-1] == "2 stopped"


def test_optuna_two_workers_share_one_study(tmp_path):
    """Two workers at once, 8 trials in batches of 4: every trial asked once, trained once (one population
    member each) and told the held-out return of its member."""
    optuna = pytest.importorskip("optuna", reason="the cluster extra (optuna) is not installed")
    d = str(tmp_path / "sw")
    r = _rl3jax("sweep", "plan", "--out", d, *T, "--iters", "2", "--set", "eval_episodes=8")
    assert r.returncode == 0, r.stderr
    journal = str(tmp_path / "study.log")
    cmd = [sys.executable, "-m", "rl3jax", "sweep", "optuna", d, "--trials", "8", "--batch", "4", "--storage",
           f"journal:{journal}", "--search", "lr=1e-4:1e-2:log", "--search", "ent_coef=0:0.1"]
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=child_env(JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="job", storage=JournalStorage(JournalFileBackend(journal)))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    told = sorted(line.split(":")[0] for out, _ in outs for line in out.splitlines() if line.startswith("trial "))
    assert told == sorted(f"trial {i}" for i in range(8))  # each trial trained and told by one worker, once
    batches = sorted(os.listdir(os.path.join(d, "optuna", "job")))
    assert len(batches) == 2 and sum(len(run_dirs(os.path.join(d, "optuna", "job", b))) for b in batches) == 8
    for t in trials:
        (run,) = t.user_attrs["runs"]
        rows = read_metrics(run)
        assert [r["iteration"] for r in rows] == [1, 2] and t.value == rows[-1]["eval_return"]
        assert json.load(open(os.path.join(run, "config.json")))["lr"] == t.params["lr"]
