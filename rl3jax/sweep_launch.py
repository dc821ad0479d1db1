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
import time

from rl3jax.config import ConfigError, TrainConfig
from rl3jax.outputs import atomic_write, atomic_write_json
from rl3jax.runs.runfiles import holds_run, latest_step
from rl3jax.runs.signals import StopSignals
from rl3jax.sweep import CLUSTER_EXTRA, LAUNCH, LOGS, job_dir, job_of, job_state, read_plan, read_text, status

BACKENDS = ("local", "slurm")
#: the signals that stop a local launch and its workers, as they stop ``rl3jax train``; the same one again within
#: ``REPEAT_S`` seconds is the first delivered twice
SIGNALS, REPEAT_S = StopSignals.SIGNALS, StopSignals.REPEAT_S
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
    output into ``DIR/logs/<name>.log``, exit status into ``<name>.rc`` (128 + N for a job ended by signal N).
    Raises ``RuntimeError`` naming the jobs that failed. SIGINT, SIGTERM or SIGHUP (a stopped launch, Ctrl-C) is
    passed on once to the job running, which stops with a checkpoint at the end of its chunk; no further job
    starts, and once the job has stopped the worker exits 128 + the signal's number (``SystemExit``). Each job runs
    in its own session, so the signal reaches it once, from here. ``launch`` starts its workers with these signals
    blocked; they are unblocked here once they are answered, so a stop that came earlier is answered too. All this
    under submitit's local executor only: under SLURM the worker and its job keep submitit's signal handling and
    SLURM's process tracking as they were (SLURM signals every process of the job itself)."""
    stop: list[int] = []
    local = os.environ.get("SUBMITIT_EXECUTOR") == "local"
    old = {s: signal.signal(s, lambda signum, _: stop.append(signum)) for s in SIGNALS} if local else {}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    failed = []
    try:
        for i in indices:
            if stop:
                break
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
                code = _wait(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=local), stop)
            atomic_write(rc, f"{code}\n")
            if code and not stop:
                failed.append(f"{job['name']} (exit status {code}, {log})")
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if stop:
        raise SystemExit(128 + stop[0])
    if failed:
        raise RuntimeError(f"sweep jobs failed: {'; '.join(failed)}")


def _wait(proc: subprocess.Popen, stop: list[int]) -> int:
    """``proc``'s exit status (128 + N when signal N ended it, as a shell says); the first signal in ``stop``
    is passed on to it once."""
    sent = False
    while True:
        try:
            code = proc.wait(timeout=0.1)
            return 128 - code if code < 0 else code
        except subprocess.TimeoutExpired:
            if stop and not sent:
                proc.send_signal(stop[0])
                sent = True


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
    its workers. Exit status 1 when a job failed; 128 + N when signal N stopped a ``local`` launch (``_LocalStop``),
    once every job has stopped with a checkpoint."""
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
    subs, failed = [], 0
    with (stop := _LocalStop(subs)) if args.backend == "local" else contextlib.nullcontext():
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
        if signum := stop.wait():  # every job stopped with a checkpoint: where each stands
            print(status(args.dir))
            return 128 + signum
        for s in subs:
            try:
                s.result()
            except Exception as e:  # noqa: BLE001  (submitit's FailedJobError carries the worker's error)
                failed += 1
                print(str(e).strip().splitlines()[-1], file=sys.stderr)
    print(status(args.dir))
    return 1 if failed else 0


def process_tree(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``pid`` and every process below it, parents first (from Linux's ``/proc``; ``children``: ``_children()``)."""
    children = _children() if children is None else children
    out = [pid]
    for p in out:
        out += children.get(p, [])
    return out


def _children() -> dict[int, list[int]]:
    """{PID: its children's PIDs} of every process, from ``/proc`` (Linux; empty elsewhere)."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{d}/stat") as f:
                out.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except (OSError, ValueError, IndexError):  # not a process, or one that has just ended
            continue
    return out


class _LocalStop:
    """SIGINT, SIGTERM and SIGHUP while ``launch --backend local`` starts and waits for its workers (a main-thread
    context manager). The workers start with these signals blocked and their submitit controllers never unblock
    them: a controller that got one (Ctrl-C reaches the whole process group) would kill its worker a second later
    and print a traceback. ``work`` unblocks them. ``wait`` passes the first signal on to every worker (``work``:
    its job stops at the end of its chunk with a checkpoint, no other starts), a worker that had not started yet
    as soon as it is seen, and returns once every worker has exited. A second signal (another one, or the same
    after ``REPEAT_S``: ``timeout`` and job control send one twice) kills every worker's processes at once with
    SIGKILL and raises ``KeyboardInterrupt`` with ``signum`` (the CLI exits 128 + signum)."""

    def __init__(self, subs: list):
        self.subs, self.signum, self.abort, self.reached = subs, None, None, set()  # job ids whose worker had it

    def _on_signal(self, signum, _frame) -> None:
        if self.signum is None:
            self.signum, self.first = signum, time.monotonic()
        elif signum != self.signum or time.monotonic() - self.first > REPEAT_S:
            self.abort = self.abort or signum

    def __enter__(self):
        self.old = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # the workers started from now inherit it
        return self

    def __exit__(self, *exc) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        for s, handler in self.old.items():
            signal.signal(s, handler)

    def wait(self) -> int | None:
        """Waits until every worker has exited; the number of the signal that stopped them, or None."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # a signal that came while they started is handled now
        announced = False
        while not all(s.done() for s in self.subs):
            if self.signum and not announced:
                print(f"{signal.Signals(self.signum).name}: stopping the local jobs at the end of their current "
                      "chunks, each with a checkpoint; a second Ctrl-C (or signal) aborts at once", file=sys.stderr,
                      flush=True)
                announced = True
            if self.abort:
                self._kill()
            if self.signum:
                self._forward()
            time.sleep(0.05)
        return self.signum

    def _forward(self) -> None:
        """The stop signal, once, to each running worker (its controller's child) as soon as it is seen; no scan of
        ``/proc`` once every worker has had it."""
        waiting = [s for s in self.subs if s.job_id not in self.reached and not s.done()]
        children = _children() if waiting else {}
        for s in waiting:
            for pid in children.get(int(s.job_id), []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, self.signum)
                self.reached.add(s.job_id)

    def _kill(self) -> None:
        """SIGKILL to every process of every worker (controller, worker, job); raises ``KeyboardInterrupt``."""
        children = _children()
        for pid in [p for s in self.subs for p in process_tree(int(s.job_id), children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        e = KeyboardInterrupt(f"{signal.Signals(self.abort).name} (a second signal): aborted at once, the local "
                              "workers and their jobs killed; each job keeps its last checkpoint (launch again to resume)")
        e.signum = self.abort
        raise e
