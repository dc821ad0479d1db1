"""Sweeps beyond one program (``rl3jax sweep plan|run|launch|status``; ``optuna`` in ``rl3jax.sweep_optuna``).

A sweep folder::

    DIR/sweep.json          the plan (``plan``): the rl3jax version, the command line's settings and every job's
                            full config; a job is one program, one combination of the --grid settings (those that
                            change shapes or code), and a vmapped population of its --seeds x --sweep members
    DIR/jobs/<name>/        job <name>'s run folder (``rl3jax train --out``: lock, checkpoints, resume)
    DIR/logs/<name>.log     the output of every attempt of the job under ``launch`` (``<name>.rc``: its exit status)
    DIR/logs/submitit/      submitit's own files; DIR/launch.json: every launch's backend, job ids and log paths

``run`` is idempotent (a finished job exits 0 at once; an interrupted one resumes from its last checkpoint; the
run folder's lock keeps a second worker out); ``launch`` submits the jobs that are neither finished nor running
through submitit (``slurm``: one job array; ``local``: P worker processes on this machine, each running its share
of the jobs one after another). No JAX here: the command line checks everything before JAX starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

from rl3jax import __version__
from rl3jax.cli_args import config_flags, positive_int, seconds, subparser
from rl3jax.config import SEED_MAX, ConfigError, HParams, TrainConfig, build, parse_sets
from rl3jax.outputs import atomic_write, atomic_write_json, check_output_dir, check_output_file
from rl3jax.runs.runfiles import holds_run, latest_step, read_metrics, run_dirs, training_pid

PLAN, LAUNCH, JOBS, LOGS = "sweep.json", "launch.json", "jobs", "logs"
BACKENDS = ("local", "slurm")
#: the extra that ``launch`` and ``optuna`` need
CLUSTER_EXTRA = "pip install 'rl3jax[cluster]'"
#: a ``local`` job's time limit when no --time is given (submitit's own default is 2 minutes)
LOCAL_MINUTES = 7 * 24 * 60


def add_parser(sub) -> None:
    """The ``sweep`` subcommand and its actions (``plan`` takes the settings flags of ``train``)."""
    p = subparser(sub, "sweep", "sweeps of many programs: plan, run, launch (SLURM / local), status, optuna",
                  "Sweeps of many programs (docs/SCALING.md, 'Sweeps on a cluster'): `rl3jax sweep ACTION --help`.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{plan,run,launch,status,optuna}",
                           help="what to do (`rl3jax sweep ACTION --help`)")
    q = subparser(sub, "plan", "write DIR/sweep.json: the jobs of a grid",
                  "Write DIR/sweep.json: one job (one program) per combination of the --grid settings, each a vmapped "
                  "population of --seeds x --sweep members. Settings as `rl3jax train`.")
    q.add_argument("--out", required=True, help="the sweep folder")
    config_flags(q)
    q.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a config field that changes shapes or code (algo, model, horizon, num_envs, ...): one job "
                        "per value; repeat for a grid")
    q.add_argument("--seeds", type=positive_int, default=1, help="vmapped seeds in every job")
    q.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help=f"vmapped settings in every job ({', '.join(HParams._fields)})")
    q = subparser(sub, "run", "run (or resume) job I of a plan; a finished one exits 0")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--index", type=int, default=None, help="the job [default: $SLURM_ARRAY_TASK_ID]")
    q.add_argument("--max-seconds", type=seconds, default=None, help="stop with a checkpoint after this long")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--distributed", action="store_true",
                   help="one program over the hosts of a TPU pod slice (train --distributed), on every host")
    q = subparser(sub, "launch", "submit the unfinished jobs through submitit")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--backend", choices=BACKENDS, required=True,
                   help="slurm: one job array; local: P processes on this machine (waits for them; Ctrl-C or "
                        "SIGTERM cancels them: each job stops with a checkpoint)")
    q.add_argument("--parallel", type=positive_int, default=1, help="jobs at once (slurm: the array's %%P)")
    q.add_argument("--slurm-partition", default=None, help="slurm: the partition")
    q.add_argument("--gpus-per-job", type=int, default=None, help="GPUs of each job (slurm: --gpus-per-node)")
    q.add_argument("--time", type=positive_int, default=None, metavar="MINUTES",
                   help=f"each job's time limit [default: slurm: the partition's; local: {LOCAL_MINUTES}]")
    q.add_argument("--max-seconds", type=seconds, default=None,
                   help="each job stops with a checkpoint after this long (set it below --time; relaunch resumes)")
    q = subparser(sub, "status", "each job's state and progress")
    q.add_argument("dir", metavar="DIR")
    q = subparser(sub, "optuna", "Optuna (ask and tell) over job I's sweepable settings",
                  "Optuna's ask and tell: each batch of asked trials is one vmapped population (job I's config, "
                  "--seeds per trial), told its held-out mean return at the last iteration (eval_every is set to "
                  "iters unless it divides it). Workers on several machines share one study through the journal file.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--index", type=int, default=None, help="the job [default: $SLURM_ARRAY_TASK_ID, else 0]")
    q.add_argument("--trials", type=positive_int, required=True, help="trials of the study in all (every worker)")
    q.add_argument("--batch", type=positive_int, default=4, help="trials per population (one program)")
    q.add_argument("--storage", required=True, metavar="journal:PATH", help="Optuna's journal file (shared)")
    q.add_argument("--search", action="append", default=[], metavar="NAME=LOW:HIGH[:log]",
                   help=f"a searched setting ({', '.join(HParams._fields)}); repeatable")
    q.add_argument("--study", default=None, help="the study's name [default: the job's name]")


# ------------------------------------------------------------------------------------------ plan
def parse_grid(items: list[str], given: dict) -> dict[str, list]:
    """``--grid NAME=V1,V2`` items -> {field: [typed values]}. ``ConfigError`` (one line) for a malformed item,
    a name that is not a TrainConfig field (listing the valid ones), a sweepable one (it belongs in --sweep),
    ``seed`` (--seeds), a name given twice or also as a flag / --set, repeated or no values."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    valid = [f for f in fields if f not in (*HParams._fields, "seed")]
    out: dict[str, list] = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq:
            raise ConfigError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        if name in HParams._fields:
            raise ConfigError(f"--grid {name}: sweepable in one program, so it belongs in --sweep {name}={values} "
                              "(a vmapped population inside each job)")
        if name == "seed":
            raise ConfigError("--grid seed: seeds are vmapped inside each job; use --seeds K")
        if name not in fields:
            raise ConfigError(f"--grid {name}: unknown config field; valid: {', '.join(valid)}")
        if name in out or name in given:
            raise ConfigError(f"--grid {name}: {name} is given twice (--grid and another --grid, flag or --set)")
        out[name] = [parse_sets([f"{name}={v.strip()}"])[name] for v in values.split(",") if v.strip()]
        if not out[name] or len(set(map(str, out[name]))) != len(out[name]):
            raise ConfigError(f"--grid {name}={values}: expected distinct values V1,V2,...")
    return out


def make_plan(given: dict, preset: str | None, grid: dict, seeds: int, sweep: dict) -> dict:
    """The plan of ``sweep.json``: every job's config (``config.build`` of ``given`` and its grid values under
    ``preset``). ``ConfigError`` naming the job for a config, seed range or --sweep value that is invalid."""
    jobs = []
    for index, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        name = ",".join(f"{k}={v}".replace(os.sep, "_") for k, v in values.items()) or "job"
        try:
            cfg = build({**given, **values}, preset)
            for k, vs in sweep.items():
                for v in vs:
                    cfg.replace(**{k: v})  # e.g. lr <= 0 is refused here
        except ValueError as e:
            raise ConfigError(f"job {name}: {e}" if grid else str(e)) from None  # no --grid: one job, no name
        if cfg.seed + seeds - 1 > SEED_MAX:
            raise ConfigError(f"--seeds {seeds} from seed {cfg.seed} would reach seed {cfg.seed + seeds - 1} > {SEED_MAX}")
        jobs.append({"index": index, "name": name, "grid": values, "seeds": seeds, "sweep": sweep,
                     "config": cfg.to_dict()})
    return {"rl3jax_version": __version__,
            "plan": {"given": given, "preset": preset, "grid": grid, "seeds": seeds, "sweep": sweep}, "jobs": jobs}


def _difference(old: dict, new: dict) -> str | None:
    """What differs between two plans (the command line's settings first, then the jobs' configs), or None."""
    for k in new["plan"]:
        if old["plan"].get(k) != new["plan"][k]:
            return f"{k} {old['plan'].get(k)} there, {new['plan'][k]} now"
    for a, b in zip(old["jobs"], new["jobs"]):
        diff = sorted(k for k in b["config"] if a["config"].get(k) != b["config"][k])
        if diff:
            return f"job {b['name']}'s {diff[0]} {a['config'].get(diff[0])} there, {b['config'][diff[0]]} now"
    return None


def write_plan(out: str, plan: dict) -> str:
    """Writes ``out/sweep.json`` (the same plan again: nothing to do); the line to print. ``ConfigError`` for a
    folder that holds another plan (naming the difference) or other files, ``OutputError`` for one that cannot
    be written; nothing is written then."""
    check_output_dir(out, "--out")
    path = os.path.join(out, PLAN)
    if os.path.exists(path):
        old = read_plan(out)
        if diff := _difference(old, plan):
            raise ConfigError(f"{path} holds another plan ({diff}); plan into another --out")
        return f"{path} already holds this plan ({len(plan['jobs'])} jobs): nothing to do"
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"--out {out} holds files but no {PLAN}; plan into a new or empty folder")
    atomic_write_json(path, plan)
    return f"planned {len(plan['jobs'])} jobs in {path}: " + ", ".join(j["name"] for j in plan["jobs"])


def read_plan(directory: str) -> dict:
    """``DIR/sweep.json``; ``ConfigError`` (one line) when there is none or it is not a plan."""
    path = os.path.join(directory, PLAN)
    try:
        with open(path) as f:
            plan = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{directory} is not a sweep folder (no {PLAN}; write one with `rl3jax sweep plan`)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a sweep plan ({e})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("jobs"), list):
        raise ConfigError(f"{path} is not a sweep plan (no list of jobs)")
    return plan


def job_of(directory: str, index: int | None, default: int | None = None) -> dict:
    """Job ``index`` (None: ``$SLURM_ARRAY_TASK_ID``, else ``default``) of the plan in ``directory``;
    ``ConfigError`` (one line with the range) for none or one outside the plan."""
    jobs = read_plan(directory)["jobs"]
    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None and default is None:
            raise ConfigError("sweep: give --index I (or set SLURM_ARRAY_TASK_ID)")
        if env is not None and not env.isdecimal():
            raise ConfigError(f"SLURM_ARRAY_TASK_ID={env!r} is not a job index")
        index = int(env) if env is not None else default
    if not 0 <= index < len(jobs):
        raise ConfigError(f"--index {index} is outside the plan in {directory}: 0 .. {len(jobs) - 1} ({len(jobs)} jobs)")
    return jobs[index]


def job_dir(directory: str, job: dict) -> str:
    return os.path.join(directory, JOBS, job["name"])


# ------------------------------------------------------------------------------------------ run
def _arg(v) -> str:
    """A config value as ``--set`` reads it back exactly (floats by repr)."""
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else str(v)


def train_argv(directory: str, index: int | None, max_seconds: float | None = None, progress: bool = True,
               distributed: bool = False) -> list[str] | None:
    """The ``rl3jax train`` command line of job ``index`` (``job_of``), with ``--resume`` once its folder holds
    a run; None (after printing why) when the job is finished. No JAX."""
    job = job_of(directory, index)
    out, cfg = job_dir(directory, job), TrainConfig.from_dict(job["config"])
    if holds_run(out) and (latest_step(out) or 0) >= cfg.iters:
        print(f"job {job['index']} ({job['name']}) is finished: iteration {cfg.iters} in {out}")
        return None
    argv = ["train", "--out", out, "--seeds", str(job["seeds"])]
    argv += [x for k, vs in job["sweep"].items() for x in ("--sweep", f"{k}={','.join(map(_arg, vs))}")]
    argv += [x for k, v in job["config"].items() for x in ("--set", f"{k}={_arg(v)}")]
    return argv + ["--resume"] * holds_run(out) + ["--max-seconds", repr(max_seconds)] * (max_seconds is not None) \
        + ["--no-progress"] * (not progress) + ["--distributed"] * distributed


# ------------------------------------------------------------------------------------------ status
def _text(path: str) -> str:
    """The text of file ``path``; "" when there is none."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


SIGNAL_CODES = {str(128 + s): s.name for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)}  # stopped: resumable


def job_state(directory: str, job: dict) -> tuple[str, str]:
    """(state, detail) of a job: planned, running, finished, failed (its log's last line) or stopped (resumable)."""
    out, iters = job_dir(directory, job), job["config"]["iters"]
    log, rc = (os.path.join(directory, LOGS, job["name"] + ext) for ext in (".log", ".rc"))
    step = latest_step(out) if holds_run(out) else None
    if (pid := training_pid(out)) is not None:
        metrics = os.path.join(run_dirs(out)[0], "metrics.jsonl") if holds_run(out) else None
        rows = read_metrics(metrics) if metrics and os.path.exists(metrics) else []  # none yet while it starts
        return "running", f"PID {pid}, iteration {rows[-1]['iteration'] if rows else 0} of {iters}"
    if step is not None and step >= iters:
        return "finished", f"iteration {iters}"
    code = _text(rc).strip()
    if code not in ("", "0") and not (code in SIGNAL_CODES and holds_run(out)):
        lines = [s.strip() for s in _text(log).splitlines() if s.strip()]
        return "failed", (lines[-1] if lines else "no log") + f" ({log})"
    if holds_run(out):
        return "stopped", f"{f'by {SIGNAL_CODES[code]} ' if code in SIGNAL_CODES else ''}at checkpoint {step or 0} of "\
                          f"{iters} (resumable: launch again)"
    return "planned", ""


def status(directory: str) -> str:
    """The status table of a sweep folder."""
    plan = read_plan(directory)
    states = [(j, *job_state(directory, j)) for j in plan["jobs"]]
    lines = [f"{j['index']:>4}  {j['name']:30s} {s:9s} {d}".rstrip() for j, s, d in states]
    counts = {s: sum(1 for _, t, _ in states if t == s) for s in ("finished", "running", "failed", "stopped", "planned")}
    return "\n".join(lines + [", ".join(f"{n} {s}" for s, n in counts.items() if n)])


# ------------------------------------------------------------------------------------------ launch
def work(directory: str, indices: list[int], max_seconds: float | None = None) -> None:
    """A worker (what submitit runs): ``rl3jax sweep run DIR --index I [--max-seconds S]`` for each index in turn,
    output into ``DIR/logs/<name>.log``, exit status into ``<name>.rc``. Raises ``RuntimeError`` naming the jobs
    that failed; a SIGINT (``KeyboardInterrupt``) is passed on to the job running and, once it has stopped,
    re-raised: no further job starts."""
    failed = []
    for i in indices:
        job = job_of(directory, i)
        log, rc = (os.path.join(directory, LOGS, job["name"] + ext) for ext in (".log", ".rc"))
        if os.path.exists(rc):
            os.remove(rc)
        cmd = [sys.executable, "-m", "rl3jax", "sweep", "run", directory, "--index", str(i), "--no-progress",
               *(["--max-seconds", repr(max_seconds)] if max_seconds else [])]
        with open(log, "a") as f:
            f.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')} on {socket.gethostname()}: "
                    f"{' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            try:
                code = proc.wait()
            except KeyboardInterrupt:  # stop: the job checkpoints, and no other starts
                proc.send_signal(signal.SIGINT)
                atomic_write(rc, f"{proc.wait()}\n")
                raise
        atomic_write(rc, f"{code}\n")
        if code:
            failed.append(f"{job['name']} (exit status {code}, {log})")
    if failed:
        raise RuntimeError(f"sweep jobs failed: {'; '.join(failed)}")


def check_launch(args) -> list[dict]:
    """The jobs ``launch`` submits (neither finished nor running); ``ConfigError`` for a missing extra or
    ``sbatch``, or a bad ``--gpus-per-job``."""
    if importlib.util.find_spec("submitit") is None:
        raise ConfigError(f"sweep launch needs submitit: {CLUSTER_EXTRA}")
    if args.backend == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("sweep launch --backend slurm: sbatch not found (run it where SLURM is)")
    if args.backend == "local" and args.slurm_partition is not None:
        raise ConfigError("--slurm-partition applies to --backend slurm")
    if args.gpus_per_job is not None and args.gpus_per_job < 0:
        raise ConfigError(f"--gpus-per-job must be >= 0, got {args.gpus_per_job}")
    jobs = read_plan(args.dir)["jobs"]
    return [j for j in jobs if job_state(args.dir, j)[0] not in ("finished", "running")]


def launch(args) -> int:
    """``sweep launch``: submits ``check_launch``'s jobs, records them in ``DIR/launch.json``; ``local`` waits for
    its workers. Exit status 1 when a job failed."""
    todo = check_launch(args)
    import submitit

    directory = os.path.abspath(args.dir)
    if not todo:
        return print(f"nothing to launch: every job of {args.dir} is finished or running\n{status(args.dir)}") or 0
    os.makedirs(os.path.join(directory, LOGS), exist_ok=True)
    folder, gpus = os.path.join(directory, LOGS, "submitit", "%j"), args.gpus_per_job or 0
    params = {"timeout_min": args.time or (LOCAL_MINUTES if args.backend == "local" else None),
              "gpus_per_node": args.gpus_per_job}
    if args.backend == "slurm":  # one array task per job
        ex, shares = submitit.AutoExecutor(folder=folder, cluster="slurm"), [[j["index"]] for j in todo]
        params.update(name=f"rl3jax-{os.path.basename(directory)}", slurm_partition=args.slurm_partition,
                      slurm_array_parallelism=args.parallel)
    else:  # worker w runs jobs w, w + P, ... with GPUs wG .. wG + G - 1
        ex = submitit.LocalExecutor(folder=folder)
        shares = [[j["index"] for j in todo[w::args.parallel]] for w in range(min(args.parallel, len(todo)))]
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    subs, failed = [], 0  # local: the handlers are set before the workers start, so they inherit SIGINT's default
    with _cancel_on_signal(subs) if args.backend == "local" else contextlib.nullcontext():
        with ex.batch() if args.backend == "slurm" else contextlib.nullcontext():
            for w, share in enumerate(shares):
                if args.backend == "local" and gpus:
                    ex.update_parameters(visible_gpus=tuple(range(w * gpus, (w + 1) * gpus)))
                subs.append(ex.submit(work, directory, share, args.max_seconds))
        record = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "backend": args.backend,
                  "parameters": params, "jobs": [{"job_id": s.job_id, "indices": share, "stdout": str(s.paths.stdout),
                                                  "stderr": str(s.paths.stderr)} for s, share in zip(subs, shares)]}
        path = os.path.join(directory, LAUNCH)
        atomic_write_json(path, json.loads(_text(path) or "[]") + [record])
        print(f"launched {len(todo)} jobs of {args.dir} on {args.backend} as {len(subs)} submitit jobs "
              f"({', '.join(s.job_id for s in subs)}); logs in {os.path.join(args.dir, LOGS)}")
        if args.backend == "slurm":
            return 0
        for s in subs:
            try:
                s.result()
            except Exception as e:  # noqa: BLE001  (submitit's FailedJobError carries the worker's error)
                failed += 1
                print(str(e).strip().splitlines()[-1], file=sys.stderr)
    print(status(args.dir))
    return 1 if failed else 0


@contextlib.contextmanager
def _cancel_on_signal(subs: list):
    """While ``launch --backend local`` starts and waits for its workers: SIGINT, SIGTERM or SIGHUP cancels every
    worker (submitit's ``cancel``: SIGINT to its controller, which passes it on; the worker's job stops with a
    checkpoint and no other job starts) and raises ``KeyboardInterrupt`` with ``signum`` (the CLI exits 128 +
    signum). A main-thread context manager."""
    def stop(signum, _frame):
        for s in subs:
            s.cancel(check=False)
        e = KeyboardInterrupt(f"{signal.Signals(signum).name}: cancelled the local workers (their jobs stop with a "
                              "checkpoint; launch again to resume)")
        e.signum = signum
        raise e

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def check_optuna(args) -> dict:
    """The checks of ``sweep optuna`` without JAX; ``sweep_optuna.optimise``'s keyword arguments. ``ConfigError``
    (one line) for a storage other than ``journal:PATH``, no or a bad ``--search`` (not a
    ``HParams`` field, bounds not LOW < HIGH, out of the field's range, log with LOW <= 0), a job with --sweep, then a missing extra."""
    kind, _, path = args.storage.partition(":")
    if kind != "journal" or not path:
        raise ConfigError(f"--storage {args.storage!r}: expected journal:PATH (Optuna's journal file)")
    check_output_file(path, "--storage")
    if os.path.isfile(path):  # Optuna's journal: one JSON object a line; anything else is not one (nothing written)
        try:
            [json.loads(line) for line in _text(path).splitlines() if line.strip()]
        except ValueError:
            raise ConfigError(f"--storage {path}: not an Optuna journal file (a line is not JSON); give a new path "
                              "or the journal of this study") from None
    job = job_of(args.dir, args.index, default=0)
    if job["sweep"]:
        raise ConfigError(f"job {job['name']} has --sweep {job['sweep']}: Optuna fills its population with the trials; "
                          "plan without --sweep")
    if not args.search:
        raise ConfigError(f"sweep optuna needs --search NAME=LOW:HIGH[:log] ({', '.join(HParams._fields)})")
    cfg, search = TrainConfig.from_dict(job["config"]), {}
    for item in args.search:
        name, _, rng = item.partition("=")
        name, parts = name.strip().replace("-", "_"), rng.split(":")
        if name not in HParams._fields or name in search:
            raise ConfigError(f"--search {name}: {'given twice' if name in search else 'not searchable in one program'}; "
                              f"searchable: {', '.join(HParams._fields)}")
        try:
            lo, hi = float(parts[0]), float(parts[1])
            if parts[2:] not in ([], ["log"]) or not lo < hi or (lo <= 0 and len(parts) == 3):
                raise ValueError("")
            cfg.replace(**{name: lo}), cfg.replace(**{name: hi})
        except (ValueError, IndexError) as e:
            raise ConfigError(f"--search {item!r}: expected NAME=LOW:HIGH[:log] with LOW < HIGH (LOW > 0 with log)"
                              f"{f'; {e}' if str(e) and 'could not convert' not in str(e) else ''}") from None
        search[name] = (lo, hi, len(parts) == 3)
    if importlib.util.find_spec("optuna") is None:  # after the arguments: their errors do not need the extra
        raise ConfigError(f"sweep optuna needs optuna: {CLUSTER_EXTRA}")
    return {"directory": args.dir, "job": job, "search": search, "trials": args.trials, "batch": args.batch,
            "storage": path, "study": args.study or job["name"]}


def cmd(args, given_settings) -> int | list[str]:
    """``sweep plan``, ``status``, ``launch``: the exit status; ``run``: the job's ``train`` command line (or 0:
    finished); ``optuna``: ``check_optuna``'s study. ``given_settings(args)``: the config fields of the flags."""
    if args.action == "run":
        return train_argv(args.dir, args.index, args.max_seconds, not args.no_progress, args.distributed) or 0
    if args.action == "plan":
        given = given_settings(args)
        plan = make_plan(given, args.preset, parse_grid(args.grid, given), args.seeds, parse_sets(args.sweep, True))
        print(write_plan(args.out, plan))
        return 0
    if args.action == "status":
        print(status(args.dir))
        return 0
    return check_optuna(args) if args.action == "optuna" else launch(args)

