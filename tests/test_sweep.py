"""Sweeps (``rl3jax.sweep``, ``sweep_launch``, ``sweep_cli``) without training (issue 21): the plan, its
refusals, a job's train command line, the states ``status`` shows, what ``launch --backend slurm`` hands
submitit, ``sweep optuna``'s checks, and populations of a list of settings. The end-to-end runs (local launch,
kill -9, resume, Optuna workers, report) are in tests/system/test_sweep.py."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

from rl3jax import cli, sweep, sweep_launch
from rl3jax.config import HParams, TrainConfig, build
from rl3jax.runs.population import make_members
from tests.helpers import run_cli

try:  # imported here, not under a test's capsys: submitit's logging handler keeps the sys.stderr of its import
    import submitit
    from submitit.slurm import slurm
except ImportError:
    submitit = None

T = ["--env", "bandit", "--model", "markov", "--horizon", "4", "--num-envs", "2", "--minibatch-envs", "1",
     "--iters", "4"]
GRID = ["--grid", "algo=rl2,rl3", "--sweep", "lr=1e-3,3e-3", "--seeds", "2"]

#: every flag of every sweep action -> the test that checks it is honoured (or refused where it cannot be);
#: plan's settings flags are train's (cli._config_flags), checked by test_plan_jobs_are_train_configs
SWEEP_FLAGS = {
    "plan": {"--out": "test_plan_jobs_are_train_configs", "--grid": "test_plan_jobs_are_train_configs",
             "--seeds": "test_plan_jobs_are_train_configs", "--sweep": "test_plan_jobs_are_train_configs",
             **{f: "test_plan_jobs_are_train_configs" for f in ("--env", "--variant", "--algo", "--model", "--horizon",
                                                             "--iters", "--num-envs", "--minibatch-envs", "--seed",
                                                             "--preset", "--set")}},
    "run": {"--index": "test_run_is_train_with_resume_and_finished_exits_at_once",
            "--max-seconds": "test_run_is_train_with_resume_and_finished_exits_at_once",
            "--no-progress": "test_run_is_train_with_resume_and_finished_exits_at_once",
            "--distributed": "test_run_is_train_with_resume_and_finished_exits_at_once"},
    "launch": {**{f: "test_slurm_launch_hands_submitit_one_array" for f in (
        "--backend", "--slurm-partition", "--time", "--max-seconds")},
        "--parallel": "test_local_launch_gives_each_worker_its_own_gpus",
        "--gpus-per-job": "test_local_launch_gives_each_worker_its_own_gpus"},
    "status": {},
    "optuna": {f: "test_optuna_checks_before_jax" for f in (
        "--index", "--trials", "--batch", "--storage", "--search", "--study")},
}


_main = run_cli


def _plan(tmp_path, capsys, *extra, grid=tuple(GRID)) -> str:
    d = str(tmp_path / "sw")
    code, out, err = _main(["sweep", "plan", "--out", d, *T, *grid, *extra], capsys)
    assert code == 0, err
    return d


def test_sweep_flag_table_is_whole():
    """Fails when a flag of a sweep action is added without a test that checks it."""
    subs = dict(next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices)
                .choices["sweep"]._subparsers._group_actions[0].choices)
    assert set(subs) == set(SWEEP_FLAGS)
    src = open(__file__).read()
    for name, table in SWEEP_FLAGS.items():
        assert {a.option_strings[-1] for a in subs[name]._actions if a.option_strings and a.dest != "help"} == set(table)
        assert all(f"def {t}(" in src for t in table.values())


def test_plan_jobs_are_train_configs(tmp_path, capsys):
    """One job per grid value, each the config `rl3jax train` would build from the same flags plus the grid
    value (preset-derived fields included), with the population's seeds and sweep; the same plan again is
    nothing to do; another plan into the folder is refused naming the difference, the file left as it was."""
    d = _plan(tmp_path, capsys, "--set", "eval_every=2")
    plan = json.load(open(os.path.join(d, sweep.PLAN)))
    assert plan["rl3jax_version"] and [j["name"] for j in plan["jobs"]] == ["algo=rl2", "algo=rl3"]
    for job, algo in zip(plan["jobs"], ("rl2", "rl3")):
        args = cli.build_parser().parse_args(["train", *T, "--algo", algo, "--set", "eval_every=2", "--out", "x"])
        assert TrainConfig.from_dict(job["config"]) == cli.config_from_args(args)
        assert job["seeds"] == 2 and job["sweep"] == {"lr": [1e-3, 3e-3]} and job["grid"] == {"algo": algo}
    # a preset's derived fields follow the grid value (num_envs from each job's horizon)
    code, _, err = _main(["sweep", "plan", "--out", str(tmp_path / "p"), "--env", "bandit", "--preset",
                          "bandit-h100", "--grid", "horizon=50,100"], capsys)
    jobs = json.load(open(tmp_path / "p" / sweep.PLAN))["jobs"]
    assert code == 0 and [TrainConfig.from_dict(j["config"]) for j in jobs] == \
        [build({"env": "bandit", "horizon": h}, "bandit-h100") for h in (50, 100)]
    assert jobs[0]["config"]["num_envs"] == 2 * jobs[1]["config"]["num_envs"]
    before = open(os.path.join(d, sweep.PLAN)).read()
    code, out, _ = _main(["sweep", "plan", "--out", d, *T, *GRID, "--set", "eval_every=2"], capsys)
    assert code == 0 and "already holds this plan" in out
    code, _, err = _main(["sweep", "plan", "--out", d, *T, "--grid", "algo=rl2", *GRID[2:], "--set", "eval_every=2"],
                         capsys)
    assert code == 2 and "holds another plan (grid {'algo': ['rl2', 'rl3']} there, {'algo': ['rl2']} now)" in err
    assert open(os.path.join(d, sweep.PLAN)).read() == before


@pytest.mark.parametrize("grid,message", [
    (["--grid", "nope=1,2"], "--grid nope: unknown config field; valid: env, variant, algo, model"),
    (["--grid", "lr=1e-3,1e-2"], "--grid lr: sweepable in one program, so it belongs in --sweep lr=1e-3,1e-2"),
    (["--grid", "seed=1,2"], "--grid seed: seeds are vmapped inside each job; use --seeds K"),
    (["--grid", "horizon=4,8", "--horizon", "4"], "--grid horizon: horizon is given twice"),
    (["--grid", "epochs=4,4"], "--grid epochs=4,4: expected distinct values"),
    (["--grid", "horizon"], "--grid expects NAME=V1,V2,..., got 'horizon'"),
    (["--grid", "epochs=4,x"], "--set epochs=x: expected a whole number"),
    (["--grid", "epochs=1,0"], "job epochs=0: epochs"),
    (["--grid", "algo=rl2", "--sweep", "lr=0"], "job algo=rl2: lr must be in [1e-08, 1]"),
    (["--grid", "algo=rl2", "--sweep", "horizon=4,8"], "--sweep horizon: not sweepable in one compile"),
])
def test_bad_plans_are_one_line_and_write_nothing(tmp_path, capsys, grid, message):
    d = tmp_path / "sw"
    code, _, err = _main(["sweep", "plan", "--out", str(d), *T, *grid], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not d.exists()


def test_plan_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "x").write_text("")
    code, _, err = _main(["sweep", "plan", "--out", str(tmp_path / "sw"), *T], capsys)
    assert code == 2 and "holds files but no sweep.json" in err
    assert os.listdir(tmp_path / "sw") == ["x"]


def test_run_is_train_with_resume_and_finished_exits_at_once(tmp_path, capsys, monkeypatch):
    """`sweep run` hands `train` the job's full config, seeds and sweep (the same config it planned), --resume
    once the folder holds a run; a finished job prints so and exits 0 without starting `train`; an index outside
    the plan or none is one line with the range; the index may come from SLURM_ARRAY_TASK_ID."""
    d = _plan(tmp_path, capsys)
    calls = []
    monkeypatch.setattr(cli, "cmd_train", lambda args: calls.append(args) or 0)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert _main(["sweep", "run", d, "--max-seconds", "30", "--no-progress"], capsys)[0] == 0
    args = calls[-1]
    job = sweep.read_plan(d)["jobs"][1]
    assert cli.config_from_args(args) == TrainConfig.from_dict(job["config"])
    assert (args.out, args.seeds, args.sweep, args.resume, args.max_seconds, args.no_progress) == \
        (os.path.join(d, "jobs", "algo=rl3"), 2, ["lr=0.001,0.003"], False, 30.0, True)
    out = sweep.job_dir(d, job)
    os.makedirs(os.path.join(out, "checkpoints", "2"))
    json.dump(job["config"], open(os.path.join(out, "config.json"), "w"))
    assert _main(["sweep", "run", d, "--index", "1", "--distributed"], capsys)[0] == 0
    assert calls[-1].resume and calls[-1].no_progress is False and calls[-1].distributed and not args.distributed
    os.makedirs(os.path.join(out, "checkpoints", "4"))
    n = len(calls)
    code, stdout, _ = _main(["sweep", "run", d, "--index", "1"], capsys)
    assert code == 0 and len(calls) == n and "job 1 (algo=rl3) is finished: iteration 4" in stdout
    for index in ("2", "-1"):
        code, _, err = _main(["sweep", "run", d, "--index", index], capsys)
        assert code == 2 and err.strip().endswith(f"--index {index} is outside the plan in {d}: 0 .. 1 (2 jobs)")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert "give --index I (or set SLURM_ARRAY_TASK_ID)" in _main(["sweep", "run", d], capsys)[2]
    assert "is not a sweep folder" in _main(["sweep", "run", str(tmp_path), "--index", "0"], capsys)[2]


def test_status_names_each_state(tmp_path, capsys):
    d = _plan(tmp_path, capsys, "--grid", "epochs=1,2")
    jobs = sweep.read_plan(d)["jobs"]
    for job, step in zip(jobs, (4, 2, 2, 1)):  # finished, stopped, failed (its .rc), stopped by a signal (130)
        os.makedirs(os.path.join(sweep.job_dir(d, job), "checkpoints", str(step)))
        json.dump(job["config"], open(os.path.join(sweep.job_dir(d, job), "config.json"), "w"))
    os.makedirs(os.path.join(d, "logs"))
    open(os.path.join(d, "logs", jobs[2]["name"] + ".log"), "w").write("training ...\nrl3jax train: error: boom\n\n")
    open(os.path.join(d, "logs", jobs[2]["name"] + ".rc"), "w").write("1\n")
    open(os.path.join(d, "logs", jobs[3]["name"] + ".rc"), "w").write("130\n")
    code, out, _ = _main(["sweep", "status", d], capsys)
    lines = out.splitlines()
    assert code == 0 and "finished  iteration 4" in lines[0]
    assert "stopped   at checkpoint 2 of 4 (resumable: launch again)" in lines[1]
    assert "failed    rl3jax train: error: boom" in lines[2]
    assert "stopped   by SIGINT at checkpoint 1 of 4 (resumable: launch again)" in lines[3]
    assert lines[-1] == "1 finished, 1 failed, 2 stopped"
    shutil.rmtree(sweep.job_dir(d, jobs[3]))  # stopped by a signal before it wrote its run folder: not begun
    assert _main(["sweep", "status", d], capsys)[1].splitlines()[3].split()[2] == "planned"


def test_slurm_launch_hands_submitit_one_array(tmp_path, capsys, monkeypatch):
    """`launch --backend slurm` submits the jobs that are not finished as one job array (array size and %P, the
    partition, GPUs, time, each task's `sweep run --index I --max-seconds`), recorded in launch.json; sbatch is
    replaced by an echo of its answer, so the submission file is what SLURM would get."""
    if submitit is None:
        pytest.skip("the cluster extra (submitit) is not installed")
    d = _plan(tmp_path, capsys, "--grid", "epochs=1,2")
    done = sweep.read_plan(d)["jobs"][0]  # finished: not submitted again
    os.makedirs(os.path.join(sweep.job_dir(d, done), "checkpoints", "4"))
    json.dump(done["config"], open(os.path.join(sweep.job_dir(d, done), "config.json"), "w"))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    monkeypatch.setattr(slurm.SlurmExecutor, "_make_submission_command",
                        lambda self, path: ["echo", "Submitted batch job 4242"])
    code, out, err = _main(["sweep", "launch", d, "--backend", "slurm", "--parallel", "2", "--slurm-partition", "gpu",
                            "--gpus-per-job", "1", "--time", "30", "--max-seconds", "1700"], capsys)
    assert code == 0, err
    (script,) = glob.glob(os.path.join(d, "logs", "submitit", "**", "*submission*.sh"), recursive=True)
    text = open(script).read()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=30", "#SBATCH --job-name=rl3jax-sw"):
        assert line in text, (line, text)
    (record,) = json.load(open(os.path.join(d, sweep.LAUNCH)))
    assert [j["indices"] for j in record["jobs"]] == [[1], [2], [3]]
    assert [j["job_id"] for j in record["jobs"]] == ["4242_0", "4242_1", "4242_2"]
    pickled = sorted(glob.glob(os.path.join(d, "logs", "submitit", "**", "*_submitted.pkl"), recursive=True))
    first = submitit.core.utils.pickle_load(pickled[0])
    assert first.function is sweep_launch.work and first.args == (os.path.abspath(d), [1], 1700.0)
    assert "launched 3 jobs" in out
    code, _, err = _main(["sweep", "launch", d, "--backend", "local", "--slurm-partition", "gpu"], capsys)
    assert code == 2 and "--slurm-partition applies to --backend slurm" in err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = _main(["sweep", "launch", d, "--backend", "slurm"], capsys)
    assert code == 2 and "sbatch not found" in err


def test_local_launch_gives_each_worker_its_own_gpus(tmp_path, capsys, monkeypatch):
    """`--backend local --parallel 2 --gpus-per-job 2`: two workers (jobs 0, 2 and 1, 3), worker w seeing GPUs
    2w and 2w + 1 (the controllers are replaced by `true`, so no job runs and the launch reports failure)."""
    if submitit is None:
        pytest.skip("the cluster extra (submitit) is not installed")
    import subprocess

    from submitit.local import local

    d = _plan(tmp_path, capsys, "--grid", "epochs=1,2")
    started = []

    def fake(folder, command, cuda_devices="", **kw):
        started.append(cuda_devices)
        return subprocess.Popen(["true"])

    monkeypatch.setattr(local, "start_controller", fake)
    code, out, err = _main(["sweep", "launch", d, "--backend", "local", "--parallel", "2", "--gpus-per-job", "2"],
                           capsys)
    (record,) = json.load(open(os.path.join(d, sweep.LAUNCH)))
    assert code == 1 and started == ["0,1", "2,3"] and [j["indices"] for j in record["jobs"]] == [[0, 2], [1, 3]]
    assert record["parameters"]["timeout_min"] == sweep_launch.LOCAL_MINUTES


def test_launch_and_optuna_name_the_extra_when_it_is_missing(tmp_path, capsys, monkeypatch):
    import importlib.util

    d = _plan(tmp_path, capsys, grid=["--grid", "epochs=1,2"])  # no --sweep: Optuna's own arguments are valid
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("submitit", "optuna") else real(n, *a))
    for argv, what in ((["launch", d, "--backend", "local"], "submitit"),
                       (["optuna", d, "--trials", "2", "--storage", "journal:j.log", "--search", "lr=1e-4:1e-2"],
                        "optuna")):
        code, _, err = _main(["sweep", *argv], capsys)
        assert code == 2 and err.strip().endswith(f"needs {what}: pip install 'rl3jax[cluster]'"), err


@pytest.mark.parametrize("extra,message", [
    (["--storage", "sqlite:x.db"], "--storage 'sqlite:x.db': expected journal:PATH"),
    (["--search", "horizon=1:2"], "--search horizon: not searchable in one program; searchable: lr"),
    (["--search", "lr=1e-2:1e-4"], "--search 'lr=1e-2:1e-4': expected NAME=LOW:HIGH[:log] with LOW < HIGH"),
    (["--search", "ent_coef=0:1:log"], "(LOW > 0 with log)"),
    (["--search", "lr=1e-4:2"], "lr must be in [1e-08, 1]"),
    (["--search", "lr=1e-4:1e-2", "--search", "lr=1e-3:1e-2"], "--search lr: given twice"),
    (["--index", "3"], "--index 3 is outside the plan"),
    ([], "sweep optuna needs --search NAME=LOW:HIGH[:log]"),
])
def test_optuna_checks_before_jax(tmp_path, capsys, extra, message):
    d = _plan(tmp_path, capsys, grid=["--grid", "epochs=1,2"])
    search = [] if extra == [] or "--search" in extra else ["--search", "lr=1e-4:1e-2:log"]
    storage = [] if "--storage" in extra else ["--storage", f"journal:{tmp_path}/j.log"]
    code, _, err = _main(["sweep", "optuna", d, "--trials", "2", "--batch", "2", "--study", "s", *storage,
                          *search, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    with_sweep = _plan(tmp_path / "b", capsys)  # its jobs have --sweep lr: Optuna fills the population itself
    code, _, err = _main(["sweep", "optuna", with_sweep, "--trials", "2", "--storage", "journal:j", "--search",
                          "lr=1e-4:1e-2"], capsys)
    assert code == 2 and "Optuna fills its population with the trials" in err


def test_population_of_a_list_of_settings():
    """A list of settings (Optuna's trials) gives one member per setting and seed, not their product; settings
    of different names, a repeated member name or a bad value are refused."""
    cfg = TrainConfig(env="bandit", horizon=4, num_envs=2, minibatch_envs=1, model="markov")
    members = make_members(cfg, 2, [{"lr": 1e-3, "ent_coef": 0.1}, {"lr": 2e-3, "ent_coef": 0.0}])
    assert [m.name for m in members] == ["seed0-lr0.001-ent_coef0.1", "seed1-lr0.001-ent_coef0.1",
                                         "seed0-lr0.002-ent_coef0", "seed1-lr0.002-ent_coef0"]
    assert members[2].config(cfg) == cfg.replace(lr=2e-3, ent_coef=0.0)
    with pytest.raises(ValueError, match="the same names"):
        make_members(cfg, 1, [{"lr": 1e-3}, {"ent_coef": 0.1}])
    with pytest.raises(ValueError, match="members of the same name"):
        make_members(cfg, 1, [{"lr": 1e-3}, {"lr": 1.0000001e-3}])
    with pytest.raises(ValueError, match="lr"):
        make_members(cfg, 1, [{"lr": -1.0}])
    with pytest.raises(ValueError, match="not sweepable"):
        make_members(cfg, 1, [{"horizon": 5}])
    assert set(HParams._fields) >= {"lr", "ent_coef"}


def test_report_job_summary_takes_the_job_members_and_best_setting():
    """A job's members are the runs in its folder (not those of a job whose name it begins: algo=rl2 vs
    algo=rl2,model=gru); its best setting is the group of the highest IQM (one seed: its mean); its training
    seconds are the metrics rows' batch_steps / steps_per_second summed."""
    from types import SimpleNamespace

    from rl3jax.report import job_summary

    cfg = TrainConfig(env="bandit", horizon=4, num_envs=2, minibatch_envs=1, model="markov")  # 8 steps a batch
    run = lambda path: SimpleNamespace(path=path, cfg=cfg, rows=[{"steps_per_second": 4.0}] * 3)  # noqa: E731
    runs = [run("s/jobs/algo=rl2/seed0-lr0.1"), run("s/jobs/algo=rl2/seed1-lr0.1"), run("s/jobs/algo=rl2/seed0-lr0.2"),
            run("s/jobs/algo=rl2,model=gru")]
    groups = [{"label": "a", "runs": [0, 1], "stochastic": {"iqm": 1.0}},
              {"label": "b", "runs": [2], "stochastic": {"iqm": None}},
              {"label": "c", "runs": [3], "stochastic": {"iqm": None}}]
    evals = [{"stochastic": {"mean_return": x}} for x in (0.0, 2.0, 1.5, 9.0)]
    job = {"index": 0, "name": "algo=rl2", "grid": {"algo": "rl2"}, "state": "finished", "dir": "s/jobs/algo=rl2"}
    row = job_summary(job, runs, groups, evals)
    assert (row["members"], row["best"], row["train_seconds"]) == (3, {"group": "b", "stochastic": 1.5}, 6.0)
    other = job_summary({**job, "name": "algo=rl2,model=gru", "dir": "s/jobs/algo=rl2,model=gru"}, runs, groups, evals)
    assert (other["members"], other["best"]["group"]) == (1, "c")
    assert job_summary({**job, "dir": None}, runs, groups, evals)["best"] is None


def test_optuna_refuses_a_file_that_is_not_a_journal_and_writes_nothing(tmp_path, capsys):
    """A --storage file whose lines are not JSON (not Optuna's journal) is one line naming it; it is left as it
    was (Optuna would append a create-study record before failing)."""
    d = _plan(tmp_path, capsys, grid=["--grid", "epochs=1,2"])
    bad = tmp_path / "corrupt.log"
    bad.write_text("junk")
    code, _, err = _main(["sweep", "optuna", d, "--trials", "2", "--storage", f"journal:{bad}", "--search",
                          "lr=1e-4:1e-2"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"--storage {bad}: not an Optuna journal file" in err, err
    assert bad.read_text() == "junk"


def _tell_without_training(monkeypatch):
    """``sweep optuna``'s batches told a score of 1.0 each, without training."""
    from rl3jax import sweep_optuna

    monkeypatch.setattr(sweep_optuna, "run_batch", lambda study, cfg, asked, seeds, root: [
        study.tell(t, 1.0) and 1.0 for t in asked])


def test_optuna_batches_wait_for_the_lock_beside_the_journal(tmp_path, capsys, monkeypatch):
    """A worker asks each batch under the lock file PATH.rl3jax-lock (not Optuna's own PATH.lock: sharing that
    made every batch wait for Optuna's 10-30 s lock timeout, which then broke rl3jax's lock). While another
    process holds it, the worker has opened the study but asked no trial; once it is released, the worker fills
    the study to --trials exactly and stops."""
    optuna = pytest.importorskip("optuna", reason="the cluster extra (optuna) is not installed")
    import subprocess
    import sys
    import threading
    import time

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    _tell_without_training(monkeypatch)
    d, journal = _plan(tmp_path, capsys, grid=["--grid", "epochs=1,2"]), str(tmp_path / "j.log")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
                               journal + ".rl3jax-lock"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        codes = []
        worker = threading.Thread(target=lambda: codes.append(cli.main(
            ["sweep", "optuna", d, "--trials", "3", "--batch", "2", "--study", "s", "--storage", f"journal:{journal}",
             "--search", "lr=1e-4:1e-2"])))
        worker.start()
        for _ in range(600):  # the worker has opened the study; then it goes straight to the lock
            if os.path.exists(journal) and "s" in optuna.get_all_study_names(storage := JournalStorage(
                    JournalFileBackend(journal))):
                break
            time.sleep(0.05)
        time.sleep(1.0)
        assert worker.is_alive() and optuna.load_study(study_name="s", storage=storage).trials == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    worker.join(timeout=120)
    trials = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(journal))).trials
    assert codes == [0] and [t.value for t in trials] == [1.0] * 3


#: a stand-in submitit controller: runs its worker (WORKER) and exits with its status
CONTROLLER = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', sys.argv[1], *sys.argv[2:]]))"
#: a stand-in worker as `work` answers signals: PATH.ready (its PID and the signals blocked when it started) once
#: it answers them, PATH.stopping at the first, then after STOP_S seconds (its job's chunk ends) PATH.stopped
#: (every signal it got) and exit 128 + the first; exit 3 when no signal comes in 120 s
WORKER = """
import os, signal, sys, time
path, stop_s = sys.argv[1], float(sys.argv[2])
blocked, got = signal.pthread_sigmask(signal.SIG_BLOCK, []), []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda n, _: got.append(n))
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
open(path + '.ready', 'w').write(' '.join(map(str, [os.getpid(), *sorted(map(int, blocked))])))
deadline = time.monotonic() + 120
while not got:  # (none in 120 s: the test has failed; end so that the launch returns)
    time.sleep(0.01)
    if time.monotonic() > deadline:
        sys.exit(3)
open(path + '.stopping', 'w').write(str(got[0]))
time.sleep(stop_s)
open(path + '.stopped', 'w').write(' '.join(map(str, got)))
sys.exit(128 + got[0])
"""


def _launch_stand_ins(tmp_path, monkeypatch, stop_s: float, signal_at_start: int | None = None) -> list:
    """`sweep launch --backend local --parallel 2` of a 4-job plan set up with stand-in controllers (CONTROLLER,
    WORKER under tmp_path/w0, w1, ...); with ``signal_at_start``, the launch sends itself that signal as it starts
    its first controller. Returns the controllers' Popen list (filled as they start)."""
    import subprocess
    import sys

    from submitit.local import local

    controllers: list = []

    def start(folder, command, **kw):
        controllers.append(subprocess.Popen([sys.executable, "-c", CONTROLLER, WORKER, str(tmp_path / f"w{len(controllers)}"),
                                             str(stop_s)]))
        if signal_at_start and len(controllers) == 1:
            os.kill(os.getpid(), signal_at_start)
        return controllers[-1]

    monkeypatch.setattr(local, "start_controller", start)
    return controllers


def _wait_for(paths, what: str, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {paths}"
        time.sleep(0.02)


@pytest.mark.parametrize("signum,when", [(2, "running"), (15, "running"), (1, "starting"), (2, "starting")],
                         ids=["SIGINT", "SIGTERM", "SIGHUP-while-starting", "SIGINT-while-starting"])
def test_a_stopped_local_launch_waits_for_its_workers(signum, when, tmp_path, capsys, monkeypatch):
    """Ctrl-C, SIGTERM or SIGHUP to `launch --backend local`: one line saying so; the signal reaches every worker
    once (the controllers and workers start with it blocked, so Ctrl-C to the process group cannot reach a
    controller, and one that comes while they start is answered once they do); the launch waits until every
    worker has stopped (each takes 1 s after the signal, its job's chunk), prints where the jobs stand and exits
    128 + the signal's number, no traceback, its signal handlers and mask restored. The signal comes once both
    workers answer signals, or while the launch starts its first controller. (The test's own SIGTERM and SIGHUP
    handlers raise KeyboardInterrupt, so a launch that ignores them fails the test, not the suite.)"""
    if submitit is None:
        pytest.skip("the cluster extra (submitit) is not installed")
    import signal
    import threading

    d = _plan(tmp_path, capsys, "--grid", "epochs=1,2")
    controllers = _launch_stand_ins(tmp_path, monkeypatch, 1.0, signum if when == "starting" else None)
    workers = [str(tmp_path / f"w{w}") for w in range(2)]
    if when == "running":
        threading.Thread(target=lambda: _wait_for([w + ".ready" for w in workers], "worker")
                         or os.kill(os.getpid(), signum), daemon=True).start()

    def interrupt(*_):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code, out, err = _main(["sweep", "launch", d, "--backend", "local", "--parallel", "2"], capsys)
        assert signal.getsignal(signal.SIGTERM) is interrupt and signal.getsignal(signal.SIGHUP) is interrupt
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    name = signal.Signals(signum).name
    assert code == 128 + signum, (code, out, err)
    assert err.count(f"{name}: stopping the local jobs at the end of their current chunks") == 1, err
    assert "Traceback" not in out + err and "4 planned" in out
    for w in workers:  # each stopped (1 s after its signal) before the launch returned; the signal came once
        assert open(w + ".stopped").read() == str(signum)
        assert {1, 2, 15} <= set(map(int, open(w + ".ready").read().split()[1:]))  # started with them blocked
    assert [p.poll() for p in controllers] == [128 + signum] * 2


@pytest.mark.parametrize("first,second", [(2, 15), (2, 2)], ids=["SIGTERM-after-SIGINT", "SIGINT-twice"])
def test_a_second_signal_kills_the_local_workers_at_once(first, second, tmp_path, capsys, monkeypatch):
    """A second signal (another one, or the same once a second has passed) while the launch waits for workers
    that are stopping (stand-ins that would take a minute): every controller and worker is killed with SIGKILL,
    and the launch exits 128 + the second signal's number at once, saying the jobs keep their checkpoints."""
    if submitit is None:
        pytest.skip("the cluster extra (submitit) is not installed")
    import signal
    import threading
    import time

    d = _plan(tmp_path, capsys, "--grid", "epochs=1,2")
    controllers = _launch_stand_ins(tmp_path, monkeypatch, 60.0)
    workers = [str(tmp_path / f"w{w}") for w in range(2)]

    def signals():
        _wait_for([w + ".ready" for w in workers], "worker")
        os.kill(os.getpid(), first)
        t = time.monotonic()
        _wait_for([w + ".stopping" for w in workers], "stop")
        time.sleep(max(0.0, t + 1.5 - time.monotonic()))  # past the 1 s within which the same one is a repeat
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), second)

    def interrupt(*_):
        raise KeyboardInterrupt

    sent_at: list[float] = []
    threading.Thread(target=signals, daemon=True).start()
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        code, out, err = _main(["sweep", "launch", d, "--backend", "local", "--parallel", "2"], capsys)
        took = time.monotonic() - sent_at[0]
    finally:
        signal.signal(signal.SIGTERM, old)
    assert code == 128 + second and took < 30, (code, took, err)  # the stand-ins would take 60 s more
    assert err.count(f"{signal.Signals(first).name}: stopping the local jobs") == 1 and "Traceback" not in err
    assert f"{signal.Signals(second).name} (a second signal): aborted at once" in err
    assert "each job keeps its last checkpoint" in err
    assert [p.wait(timeout=30) for p in controllers] == [-signal.SIGKILL] * 2
    for w in workers:
        assert not os.path.exists(w + ".stopped")
        pid = int(open(w + ".ready").read().split()[0])
        _wait_for_exit(pid)


def _wait_for_exit(pid: int, timeout: float = 30) -> None:
    """Until process ``pid`` is gone or a zombie."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")


def test_a_stopped_worker_passes_the_signal_on_once_and_starts_no_other_job(tmp_path, capsys, monkeypatch):
    """A worker that gets SIGINT, SIGTERM or SIGHUP (a stopped launch; Ctrl-C, which reaches it directly too)
    passes the first on once to the job it runs (in its own session), records the job's exit status once it
    has stopped (a death by signal N as 128 + N) and exits 128 + the signal's number: the next job of its share
    does not start; its signal handlers are restored."""
    import signal

    from rl3jax import sweep_launch

    d = _plan(tmp_path, capsys)
    os.makedirs(os.path.join(d, sweep.LOGS))
    started, sent = [], []

    class Job:  # a `sweep run` that dies by the signal it gets; meanwhile SIGTERM, then SIGINT reach the worker
        def __init__(self, cmd, start_new_session=False, **kw):
            started.append((cmd[cmd.index("--index") + 1], start_new_session))

        def wait(self, timeout=None):
            if len(started) == 1 and not sent:  # the first wait: two signals (os.kill runs the handlers at once)
                [os.kill(os.getpid(), s) for s in (signal.SIGTERM, signal.SIGINT)]
            if sent:
                return -sent[0]
            raise sweep_launch.subprocess.TimeoutExpired("sweep run", timeout)

        def send_signal(self, sig):
            sent.append(sig)

    monkeypatch.setattr(sweep_launch.subprocess, "Popen", Job)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # as submitit's LocalExecutor sets it
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as e:
        sweep_launch.work(d, [0, 1])
    names = [j["name"] for j in sweep.read_plan(d)["jobs"]]
    assert e.value.code == 143 and started == [("0", True)] and sent == [signal.SIGTERM]
    assert open(os.path.join(d, sweep.LOGS, names[0] + ".rc")).read() == "143\n"
    assert not os.path.exists(os.path.join(d, sweep.LOGS, names[1] + ".log"))
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_slurm_worker_leaves_signals_to_slurm(tmp_path, capsys, monkeypatch):
    """Under SLURM (``SUBMITIT_EXECUTOR=slurm``) the worker installs no signal handlers and starts its job in its
    own process group, not a new session: SLURM signals every process of the job, as before the local stop."""
    import signal

    from rl3jax import sweep_launch

    d = _plan(tmp_path, capsys)
    os.makedirs(os.path.join(d, sweep.LOGS))
    started, handlers = [], []

    class Job:  # a `sweep run` that finishes at once
        def __init__(self, cmd, start_new_session=False, **kw):
            started.append(start_new_session)
            handlers.append([signal.getsignal(s) for s in sweep_launch.SIGNALS])

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(sweep_launch.subprocess, "Popen", Job)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    before = [signal.getsignal(s) for s in sweep_launch.SIGNALS]
    sweep_launch.work(d, [0])
    assert started == [False] and handlers == [before]

