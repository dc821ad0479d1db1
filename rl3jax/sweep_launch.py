"""Running and launching the jobs of a sweep (``rl3jax sweep run|launch``): a job's ``train`` command line, the
worker that submitit runs, and ``launch`` through submitit (``slurm``: one job array; ``local``: P worker processes
on this machine, each running its share of the jobs one after another).

``run`` is idempotent (a finished job exits 0 at once; an interrupted one resumes from its last checkpoint; the
run folder's lock keeps a second worker out); ``launch`` submits the jobs that are neither finished nor running.
No JAX here.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

from rl3jax.config import ConfigError, TrainConfig
from rl3jax.outputs import atomic_write, atomic_write_json
from rl3jax.runs.runfiles import holds_run, latest_step
from rl3jax.sweep import CLUSTER_EXTRA, LAUNCH, LOGS, job_dir, job_of, job_state, read_plan, read_text, status

BACKENDS = ("local", "slurm")
#: a ``local`` job's time limit when no --time is given (submitit's own default is 2 minutes)
LOCAL_MINUTES = 7 * 24 * 60


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
        atomic_write_json(path, json.loads(read_text(path) or "[]") + [record])
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
