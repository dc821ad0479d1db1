"""The outer loop in Stoix's shape: a host loop over jitted chunks of PPO iterations, with a progress bar,
metrics files (JSONL and CSV), optional TensorBoard / Weights & Biases, held-out evaluation and checkpoints
between chunks. ``--resume`` restores the full state, so N + N iterations equal 2N bit for bit.

Metrics rows (one per PPO iteration): ``iteration``, ``env_steps``, the iteration's scalar metrics and
``steps_per_second`` (of its chunk, the first chunk's compile included; held-out evaluations and checkpoints
excluded, so ``batch_steps / steps_per_second`` summed over the rows is the training time). With
``eval_every = N`` > 0 the rows of iterations N, 2N, ... also carry ``EVAL_FIELDS``: the held-out mean
return ± s.e. of the stochastic and the greedy policy over ``eval_episodes`` test tasks
(``rl3jax.evaluate``'s fixed test set).

Under faults (see the region "Run folders under faults"): one process writes a run folder (``RunLock``; readers
open checkpoints read-only), a resume may not change what depends on the run's length, a run stopped before its
first checkpoint resumes from iteration 0, metrics are rewritten atomically, every iteration carries a
finiteness flag and training stops at the first non-finite one (``TrainingDiverged``) before any checkpoint of
it, and Ctrl-C reports which checkpoint is intact (``TrainingInterrupted``).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np

from rl3jax import distributed
from rl3jax.checkpoint import Checkpointer, CheckpointError, finished_steps
from rl3jax.config import TrainConfig
from rl3jax.evaluate import HeldOutEvaluator
from rl3jax.train import FINITE, jit_chunk, make_train

#: fields that may differ between a run and its resumption
RESUMABLE_CHANGES = ("iters", "chunk_iters", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "eval_episodes")


class MetricsLog:
    """Appends one row per PPO iteration to metrics.jsonl and metrics.csv; truncates on resume.

    Rows may carry fields that others lack (the ``eval_*`` fields of held-out evaluations exist only on
    every ``eval_every``-th row): the CSV header is the union of the fields in order of first appearance,
    missing cells are empty, and the CSV is rewritten with the wider header when a new field first appears.

    The rewrite at resume is atomic (temporary files, then ``os.replace``), so a kill at that moment leaves the
    old files whole. A torn final line of metrics.jsonl (a write cut short, e.g. by a full disk) is dropped with
    a note on stderr; any other unreadable line is an error naming the file and line (``CheckpointError``).
    """

    def __init__(self, run_dir: str, resume_iteration: int = 0):
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        rows = []
        if resume_iteration and os.path.exists(self.jsonl):
            rows = [r for r in read_metrics(self.jsonl) if r["iteration"] <= resume_iteration]
            if [r["iteration"] for r in rows] != list(range(1, resume_iteration + 1)):
                print(f"note: {self.jsonl} holds {len(rows)} of the rows of iterations 1..{resume_iteration}; "
                      "the missing ones cannot be recovered", file=sys.stderr)
        _atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        self.fields: list[str] = _union_fields(rows)
        if self.fields:
            self._write_csv(rows)
        elif os.path.exists(self.csv):
            os.remove(self.csv)

    def _write_csv(self, rows: list[dict]) -> None:
        with open(self.csv, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.jsonl, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        new_fields = [k for k in _union_fields(rows) if k not in self.fields]
        if new_fields:  # a field seen for the first time: rewrite the CSV with the wider header
            self.fields += new_fields
            self._write_csv(read_metrics(os.path.dirname(self.jsonl)))
            return
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerows(rows)


def _union_fields(rows: list[dict]) -> list[str]:
    fields: dict[str, None] = {}
    for r in rows:
        fields.update(dict.fromkeys(r))
    return list(fields)


class NullLog:
    """What processes other than 0 get instead of a ``MetricsLog`` (only process 0 writes logs)."""

    def append(self, rows: list[dict]) -> None:
        pass


class ExternalLoggers:
    """Optional TensorBoard (tensorboardX) and Weights & Biases; silently absent when not asked for."""

    def __init__(self, run_dir: str, cfg: TrainConfig, tensorboard: bool, wandb_project: str | None):
        self.tb = self.wb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise SystemExit("--tensorboard needs tensorboardX: pip install 'rl3jax[logging]'") from None
            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--wandb needs wandb: pip install 'rl3jax[logging]'") from None
            self.wb = wandb.init(project=wandb_project, config=cfg.to_dict(), dir=run_dir)

    def log(self, row: dict) -> None:
        step = row["env_steps"]
        if self.tb:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)
        if self.wb:
            self.wb.log(row, step=step)

    def close(self):
        if self.tb:
            self.tb.close()
        if self.wb:
            self.wb.finish()


def read_metrics(path: str) -> list[dict]:
    """The rows of a metrics.jsonl file, or of ``path/metrics.jsonl`` for a run folder (one dict per PPO
    iteration; eval rows carry ``EVAL_FIELDS``). A torn final line (no newline: an append cut short) is dropped
    with a note on stderr; any other bad line raises ``CheckpointError`` naming the file and the line."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path, newline="") as f:
        text = f.read()
    lines = text.split("\n")
    rows = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("iteration"), int):
                raise ValueError("not a metrics row (no integer 'iteration')")
        except ValueError as e:
            if k == len(lines) - 1:  # the last line has no newline: a torn append
                print(f"note: dropped the torn last line {k + 1} of {path} (an interrupted write)", file=sys.stderr)
                break
            raise CheckpointError(f"{path} line {k + 1} is not a metrics row ({str(e).splitlines()[0]})") from None
        rows.append(row)
    return rows


def load_run_config(run_dir: str) -> TrainConfig:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{run_dir} is not a run folder (no config.json)")
    with open(path) as f:
        return TrainConfig.from_dict(json.load(f))


def _atomic_write_json(path: str, obj: Any) -> None:
    _atomic_write_text(path, json.dumps(obj, indent=2))


def _atomic_write_text(path: str, text: str) -> None:
    """Writes ``path`` whole or not at all: a temporary file, flushed to disk, then ``os.replace``."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: fields a held-out evaluation adds to the metrics row of its iteration
EVAL_FIELDS = ("eval_return", "eval_stderr", "eval_return_greedy", "eval_stderr_greedy", "eval_episodes")


# ------------------------------------------------------------------------------------------------------------
# Run folders under faults: one writer (a lock), resumes that keep the schedule, divergence, interrupts, progress
# ------------------------------------------------------------------------------------------------------------
LOCK_FILE = ".lock"


class RunLockedError(CheckpointError):
    """Another process is training in the run folder (it holds the folder's lock)."""


class TrainingDiverged(FloatingPointError):
    """An iteration produced a NaN or infinite loss, metric or parameter; nothing after it was checkpointed.
    ``iteration`` is the first bad one (1-based). The CLI exits with status 1 (a failed run, not a bad input)."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says truthfully which checkpoint a ``--resume`` continues from."""


class RunLock:
    """An exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` held by the one process that writes the run folder.

    A second writer (another ``train`` or ``train --resume`` on the same folder) gets ``RunLockedError`` naming
    the folder and the holder's PID. Readers (``eval``, ``render``) take no lock: they open checkpoints
    read-only. The lock is released by ``release()`` or, if the process dies, by the kernel. The lock file is
    left in place (removing it would let two processes lock two different files), unless this lock created it
    and it is the only thing in the folder, so a command refused before writing leaves the folder as it was.
    """

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.created = not os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(self.fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise RunLockedError(f"run folder {run_dir} is in use by another training process (PID {pid}); "
                                 "wait for it to finish or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        run_dir = os.path.dirname(self.path)
        if self.created and os.listdir(run_dir) == [LOCK_FILE]:
            os.remove(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def lock_run(run_dir: str) -> list[RunLock]:
    """Locks ``run_dir`` (and its population folder, for a member folder of one); [] on processes other than 0."""
    if not distributed.is_main_process():
        return []
    locks = [RunLock(run_dir)]
    parent = os.path.dirname(os.path.abspath(run_dir))
    if os.path.exists(os.path.join(parent, "population.json")):
        try:
            locks.append(RunLock(parent))
        except RunLockedError:
            release_locks(locks)
            raise
    return locks


def release_locks(locks: list[RunLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def check_resume(old: TrainConfig, cfg: TrainConfig, source: str) -> None:
    """Refuses a ``--resume`` whose settings would make the run differ from a straight run of ``cfg.iters``.

    Only ``RESUMABLE_CHANGES`` may differ from the run's ``old`` config, and ``iters`` only where nothing
    depends on the total length: the linear entropy schedule decays to 0 at the ``iters`` the run started with
    (fixed at its start; see ``rl3jax.ppo.entropy_coef``), so N iterations + a resume to 2N could not equal a
    straight 2N run. Chunks, checkpoints (multiples of ``checkpoint_every`` counted from iteration 0) and the
    progress ETA do not depend on it. ``ValueError`` (one line) otherwise."""
    diff = {k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v} - set(RESUMABLE_CHANGES)
    if diff:
        raise ValueError(f"--resume with settings that differ from the run's {source}: {sorted(diff)} "
                         f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    if cfg.iters != old.iters and old.ent_schedule != "constant":
        raise ValueError(f"--resume --iters {cfg.iters}: this run's ent_schedule={old.ent_schedule} decays over "
                         f"its iters={old.iters}, fixed when it started, so it cannot be extended or shortened "
                         f"(a resumed run must equal a straight one); resume with --iters {old.iters}, or "
                         f"start a new run with --iters {cfg.iters}")


def first_nonfinite(metrics: dict, n: int) -> int | None:
    """Index (0-based, within the chunk) of the first iteration whose ``FINITE`` flag is 0, or None.

    ``metrics``: host arrays with leading axis n (a population's have a second, member axis: any member)."""
    flag = np.asarray(metrics[FINITE]).reshape(n, -1)
    bad = np.flatnonzero(~(flag > 0.5).all(axis=1))
    return int(bad[0]) if bad.size else None


def divergence(metrics: dict, it: int, i: int, ckpt_dir: str, who: str = "") -> TrainingDiverged:
    """The one-line error for a first non-finite iteration ``it + i + 1`` (``metrics`` as in ``first_nonfinite``;
    ``who``: e.g. the population members concerned)."""
    names = sorted(k for k, v in metrics.items() if k != FINITE and not np.all(np.isfinite(np.asarray(v)[i])))
    what = f"non-finite {', '.join(names)}" if names else "non-finite parameters or optimiser state"
    steps = finished_steps(ckpt_dir)
    last = f"the last checkpoint is step {steps[-1]}" if steps else "no checkpoint was written"
    return TrainingDiverged(f"training diverged at iteration {it + i + 1}{who}: {what}; stopped without writing "
                            f"a checkpoint after it ({last}); try a smaller lr or ent_coef", it + i + 1)


def interrupted(it: int, ckpt_dir: str) -> TrainingInterrupted:
    """The truthful Ctrl-C message: which finished checkpoint (if any) ``--resume`` continues from."""
    steps = finished_steps(ckpt_dir)
    if steps:
        return TrainingInterrupted(f"interrupted at iteration {it}; checkpoint step {steps[-1]} is intact, "
                                   "--resume continues from it")
    return TrainingInterrupted(f"interrupted at iteration {it}, before the first checkpoint; --resume starts "
                               "the run again from iteration 0 with its config.json")


def _population_interrupted(out: str) -> TrainingInterrupted:
    try:
        with open(os.path.join(out, "population.json")) as f:
            first = json.load(f)["members"][0]["name"]
    except (OSError, ValueError, KeyError, IndexError):
        return TrainingInterrupted("interrupted before the population's folders were written")
    steps = finished_steps(os.path.join(out, first, "checkpoints"))
    if steps:
        return TrainingInterrupted(f"interrupted; the members' checkpoint step {steps[-1]} is intact, --resume "
                                   "continues from it")
    return TrainingInterrupted("interrupted before the first checkpoint; --resume starts the population again "
                               "from iteration 0 with its population.json")


class Progress:
    """The progress bar: "compiling…" until the first chunk is back, then one ETA from steady-state chunk
    times only (the first chunk, which includes the compile, is left out; tqdm's own ETA and rate, which
    would include it, are not shown). Silent when ``enabled`` is False."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        self.total = total
        self.steady_s, self.steady_n, self.chunks = 0.0, 0, 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                            bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
            self.bar.set_description_str("compiling… ", refresh=True)

    def eta_s(self, it: int) -> float | None:
        """Seconds left for iterations ``it .. total`` at the steady-state rate (None before a steady chunk)."""
        return (self.total - it) * self.steady_s / self.steady_n if self.steady_n else None

    def update(self, it: int, n: int, dt: float, postfix: dict) -> None:
        """Chunk done: ``n`` iterations in ``dt`` seconds, now at iteration ``it``."""
        self.chunks += 1
        if self.chunks > 1:
            self.steady_s += dt
            self.steady_n += n
        if self.bar is None:
            return
        eta = self.eta_s(it)
        self.bar.set_description_str("")
        self.bar.set_postfix(ordered_dict={**postfix, "eta": "…" if eta is None else self.bar.format_interval(eta)},
                             refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ChunkLoop:
    """The host loop over jitted chunks that ``train`` and ``population.train_population`` share.

    Schedules chunks of at most ``cfg.chunk_iters`` iterations that end on every ``cfg.checkpoint_every``
    multiple, on every ``cfg.eval_every`` multiple (when > 0) and at ``cfg.iters``; times each chunk (the first
    one includes the compile: ``compile_s``); runs ``evaluate`` after the chunks that end on an
    ``eval_every`` multiple (multiples of the absolute iteration, so a resumed run keeps the cadence); calls
    ``save`` at the checkpoint boundaries, at the end, and at the first chunk boundary after ``max_seconds``
    of wall time (where it stops). One place for this, so a single run and a population checkpoint,
    evaluate and stop at the same iterations.
    """

    def __init__(self, cfg: TrainConfig, start: int, max_seconds: float | None = None, evaluate=None):
        self.cfg = cfg
        self.it = start
        self.max_seconds = max_seconds
        self.evaluate = evaluate if cfg.eval_every else None
        self.next_ckpt = self._next_multiple(cfg.checkpoint_every)
        self.next_eval = self._next_multiple(cfg.eval_every) if self.evaluate else None
        self.t_run = time.perf_counter()
        self.compile_s: float | None = None
        self.eval_s = 0.0

    def _next_multiple(self, every: int) -> int:
        return (self.it // every + 1) * every

    def elapsed(self) -> float:
        """Wall time since the loop was set up."""
        return time.perf_counter() - self.t_run

    def timing(self) -> str:
        """The timing part of the final ``done:`` line."""
        ev = f", held-out evaluations {self.eval_s:.1f}s" if self.eval_s else ""
        return f"first chunk incl. compile {self.compile_s:.1f}s{ev}, total {self.elapsed():.1f}s"

    def run(self, chunk_fn, state, on_chunk, save):
        """Runs chunks until ``cfg.iters`` (or ``max_seconds``); returns the final state.

        ``chunk_fn(state, n) -> (state, metrics)``; ``on_chunk(it, n, metrics, dt, evals)`` gets the host
        metrics of iterations ``it + 1 .. it + n``, the chunk's seconds (without the evaluation) and
        ``evaluate(it + n, state)``'s result when the chunk ends on an evaluation iteration, else None (it
        logs, and raises to abort); ``save(it, state)`` writes the checkpoints at iteration ``it``.
        """
        cfg = self.cfg
        while self.it < cfg.iters:
            n = min(cfg.chunk_iters, cfg.iters - self.it, self.next_ckpt - self.it)
            if self.next_eval is not None:
                n = min(n, self.next_eval - self.it)
            t0 = time.perf_counter()
            state, metrics = chunk_fn(state, n)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            if self.compile_s is None:
                self.compile_s = dt
            evals = None
            if self.next_eval is not None and self.it + n == self.next_eval:
                t1 = time.perf_counter()
                evals = self.evaluate(self.it + n, state)
                self.eval_s += time.perf_counter() - t1
                self.next_eval += cfg.eval_every
            on_chunk(self.it, n, metrics, dt, evals)
            self.it += n
            out_of_time = self.max_seconds is not None and self.elapsed() >= self.max_seconds
            if self.max_seconds is not None:  # process 0's clock decides, so every process stops at the same chunk
                out_of_time = distributed.broadcast_flag(out_of_time)
            if self.it >= self.next_ckpt or self.it >= cfg.iters or out_of_time:
                save(self.it, state)
                self.next_ckpt = self._next_multiple(cfg.checkpoint_every)
            if out_of_time:
                break
        return state


def report_command(out: str) -> str:
    """The shell command that makes the report of run folder ``out`` (printed when training ends): the
    ``rl3jax`` script beside this Python (a virtual environment's ``bin/``, e.g. ``.venv/bin/rl3jax``, which
    need not be on PATH), else ``python -m rl3jax``."""
    import shlex

    script = os.path.join(os.path.dirname(sys.executable), "rl3jax")
    exe = [os.path.relpath(script) if not os.path.relpath(script).startswith("..") else script] \
        if os.path.exists(script) else [sys.executable, "-m", "rl3jax"]
    return shlex.join([*exe, "report", out])


def train(cfg: TrainConfig, out: str, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          wandb_project: str | None = None, quiet: bool = False, mesh=None, seeds: int = 1,
          sweep: dict | None = None, max_seconds: float | None = None):
    """Trains to ``cfg.iters`` total iterations in run folder ``out``; returns (final state, last metrics).

    ``mesh`` (``rl3jax.distributed.make_mesh``): split the env axis over its devices (None: one device).
    ``seeds`` > 1 or a ``sweep`` ({name: [values]}) train a vmapped population instead, one member folder
    each (``rl3jax.population``). In a multi-process run only process 0 writes config, metrics and logs;
    every process takes part in checkpoints. ``max_seconds`` stops (with a checkpoint) at the first chunk
    boundary after that much wall time; ``--resume`` continues from there (also from a folder whose run was
    stopped before its first checkpoint: it starts again from iteration 0 with the folder's config.json).

    Errors: ``ValueError`` (settings; nothing written), ``RunLockedError`` (another process trains in
    ``out``), ``CheckpointError`` (missing/corrupt checkpoint; ``CheckpointWriteError``: one could not be
    written), ``TrainingDiverged`` (a NaN/inf loss, metric or parameter: names the first bad iteration; no
    checkpoint is written after it), ``TrainingInterrupted`` (Ctrl-C; says which checkpoint is intact),
    ``OSError`` (e.g. a full disk while appending metrics).
    """
    cfg.validate()
    if seeds != 1 or sweep or (resume and os.path.exists(os.path.join(out, "population.json"))):
        from rl3jax.population import train_population

        locks = lock_run(out) if os.path.isdir(out) else []  # a fresh folder: population.py creates it
        try:
            return train_population(cfg, out, seeds=seeds, sweep=sweep, resume=resume, progress=progress,
                                    tensorboard=tensorboard, wandb_project=wandb_project, quiet=quiet, mesh=mesh,
                                    max_seconds=max_seconds)
        except KeyboardInterrupt:
            raise _population_interrupted(out) from None
        finally:
            release_locks(locks)
    return _train_single(cfg, out, resume, progress, tensorboard, wandb_project, quiet, mesh, max_seconds)


def _train_single(cfg, out, resume, progress, tensorboard, wandb_project, quiet, mesh, max_seconds):
    main = distributed.is_main_process()
    quiet = quiet or not main
    cfg_path = os.path.join(out, "config.json")
    if resume:
        check_resume(load_run_config(out), cfg, "config.json")
    elif os.path.exists(cfg_path):
        raise ValueError(f"run folder {out} already holds a run; pass --resume to continue it or choose "
                         "another --out")
    os.makedirs(out, exist_ok=True)
    locks = lock_run(out)  # after the checks, before anything is written
    ckpt_dir = os.path.join(out, "checkpoints")
    where = {"it": 0}  # the iteration reached, for the Ctrl-C message
    try:
        return _train_locked(cfg, out, resume, progress, tensorboard, wandb_project, quiet, mesh, max_seconds,
                             main, ckpt_dir, where)
    except KeyboardInterrupt:
        it = where["loop"].it if "loop" in where else where["it"]
        raise interrupted(it, ckpt_dir) from None
    finally:
        release_locks(locks)


def _train_locked(cfg, out, resume, progress, tensorboard, wandb_project, quiet, mesh, max_seconds, main, ckpt_dir,
                  where):
    distributed.barrier("rl3jax-config-checked")  # every process has checked before process 0 writes
    if main:
        _atomic_write_json(os.path.join(out, "config.json"), cfg.to_dict())

    trainer = make_train(cfg, mesh)
    ckpt = Checkpointer(ckpt_dir, keep=cfg.keep_checkpoints, write=True)
    if mesh is None:
        state = jax.jit(trainer.init)(jax.random.key(cfg.seed))
    else:
        state = distributed.init_sharded(lambda: trainer.init(jax.random.key(cfg.seed)), mesh, cfg.num_envs)
    start = 0
    if resume and ckpt.latest_step() is None:
        if not quiet:
            print(f"{out} has no checkpoint yet (stopped before the first one): starting it again from "
                  "iteration 0 with its config.json")
    elif resume:
        state, meta = ckpt.restore(state)
        start = int(state.iteration)
        if not quiet:
            print(f"resumed {out} at iteration {start} ({meta.get('env_steps', 0)} env steps)")
    where["it"] = start
    log = MetricsLog(out, start) if main else NullLog()
    ext = ExternalLoggers(out, cfg, tensorboard and main, wandb_project if main else None)
    chunk_fn = jit_chunk(trainer)
    bar = Progress(cfg.iters, start, progress and not quiet)
    last = {}

    def on_chunk(it, n, metrics, dt, evals):
        nonlocal last
        bad = first_nonfinite(metrics, n)
        metrics = {k: v for k, v in metrics.items() if k != FINITE}
        rows = []
        sps = n * cfg.batch_steps / dt
        for i in range(n if bad is None else bad + 1):  # up to the first non-finite iteration
            row = {"iteration": it + i + 1, "env_steps": (it + i + 1) * cfg.batch_steps}
            row.update({k: float(v[i]) for k, v in metrics.items()})
            row["steps_per_second"] = sps
            rows.append(row)
        if evals is not None and bad is None:
            rows[-1].update(evals)
        for r in rows:
            ext.log(r)
        log.append(rows)
        if bad is not None:
            raise divergence(metrics, it, bad, ckpt_dir)
        it += n
        last = rows[-1]
        post = dict(steps=f"{last['env_steps']:.3g}", sps=f"{sps:,.0f}", ret=f"{last['return_mean']:.2f}")
        if evals is not None:
            post["held_out"] = f"{evals['eval_return']:.2f}"
        bar.update(it, n, dt, post)

    def save(it, state):
        ckpt.save(it, state, {"iteration": it, "env_steps": it * cfg.batch_steps, "return_mean": last["return_mean"]})

    evaluator = HeldOutEvaluator(trainer.meta_env, trainer.actor, cfg.eval_episodes) if cfg.eval_every else None
    evaluate = (lambda it, st: evaluator.row_fields(st.actor_params)) if evaluator else None
    loop = where["loop"] = ChunkLoop(cfg, start, max_seconds, evaluate=evaluate)
    try:
        state = loop.run(chunk_fn, state, on_chunk, save)
    finally:
        bar.close()
        ckpt.close()
        ext.close()
    if not quiet and last:
        print(f"done: {loop.it} iterations, {loop.it * cfg.batch_steps} env steps, "
              f"mean return {last['return_mean']:.2f} ({loop.timing()})")
        print(f"report: {report_command(out)}")
    return state, last
