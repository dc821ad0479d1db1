"""The outer loop in Stoix's shape: one host loop over jitted chunks of PPO iterations, with a progress bar,
metrics files (JSONL and CSV), optional TensorBoard / Weights & Biases, held-out evaluation and checkpoints
between chunks. ``--resume`` restores the full state, so N + N iterations equal 2N bit for bit.

A single run is a population of one (``rl3jax.population.Population(stacked=False)``, the single run's own
program); seeds and sweeps are a stacked population. ``train`` runs both through one loop; only the folder
layout (``rl3jax.runfiles``) and the console lines differ.

Metrics rows (one per PPO iteration): ``iteration``, ``env_steps``, the iteration's scalar metrics and
``steps_per_second`` (of its chunk, the first chunk's compile included; held-out evaluations and checkpoints
excluded, so ``batch_steps / steps_per_second`` summed over the rows is the training time). With
``eval_every = N`` > 0 the rows of iterations N, 2N, ... also carry ``EVAL_FIELDS``: the held-out mean
return ± s.e. of the stochastic and the greedy policy over ``eval_episodes`` test tasks
(``rl3jax.evaluate``'s fixed test set).

Under faults (see the region "Runs under faults"): one process writes a run folder (``rl3jax.runfiles.RunLock``;
readers open checkpoints read-only), a resume may not change what depends on the run's length, a run stopped
before its first checkpoint resumes from iteration 0, metrics are rewritten atomically, every iteration carries
a finiteness flag and training stops at the first non-finite one (``TrainingDiverged``) before any checkpoint
of it, and Ctrl-C reports which checkpoint is intact (``TrainingInterrupted``).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time

import jax
import numpy as np

from rl3jax import distributed, population
from rl3jax.checkpoint import RESUMABLE_CHANGES, Checkpointer, CheckpointError, check_checkpoint_config
from rl3jax.config import TrainConfig
from rl3jax.evaluate import HeldOutEvaluator
from rl3jax.population import Population, make_population
from rl3jax.runfiles import (
    CONFIG,
    POPULATION,
    MetricsLog,
    NullLog,
    atomic_write_json,
    check_new_run,
    checkpoint_dir,
    finished_steps,
    is_population,
    lock_run,
    read_config,
    read_population,
    release_locks,
)
from rl3jax.train import FINITE


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


#: fields a held-out evaluation adds to the metrics row of its iteration
EVAL_FIELDS = ("eval_return", "eval_stderr", "eval_return_greedy", "eval_stderr_greedy", "eval_episodes")


# ------------------------------------------------------------------------------------------------------------
# Runs under faults: resumes that keep the schedule, divergence, interrupts, progress
# ------------------------------------------------------------------------------------------------------------
class TrainingDiverged(FloatingPointError):
    """An iteration produced a NaN or infinite loss, metric or parameter; nothing after it was checkpointed.
    ``iteration`` is the first bad one (1-based). The CLI exits with status 1 (a failed run, not a bad input)."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says truthfully which checkpoint a ``--resume`` continues from."""


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
                         f"start a new run with --iters {cfg.iters} and another --out")


def first_nonfinite(metrics: dict, n: int) -> int | None:
    """Index (0-based, within the chunk) of the first iteration whose ``FINITE`` flag is 0, or None.

    ``metrics``: host arrays with leading axis n (a population's have a second, member axis: any member)."""
    flag = np.asarray(metrics[FINITE]).reshape(n, -1)
    bad = np.flatnonzero(~(flag > 0.5).all(axis=1))
    return int(bad[0]) if bad.size else None


def divergence(metrics: dict, it: int, i: int, ckpt_dir: str, who: str = "", out: str = "",
               lr: float | None = None) -> TrainingDiverged:
    """The one-line error for a first non-finite iteration ``it + i + 1`` (``metrics`` as in ``first_nonfinite``;
    ``who``: e.g. the population members concerned), with advice that works: a new run in another folder (a
    resume would repeat the same iterations, and may not change lr); with ``out`` and ``lr``, that command."""
    names = sorted(k for k, v in metrics.items() if k != FINITE and not np.all(np.isfinite(np.asarray(v)[i])))
    what = f"non-finite {', '.join(names)}" if names else "non-finite parameters or optimiser state"
    steps = finished_steps(ckpt_dir)
    last = f"the last checkpoint is step {steps[-1]}" if steps else "no checkpoint was written"
    new = f"the same command with --out {out.rstrip('/')}-lr{lr / 10:g} and --set lr={lr / 10:g}" if out and lr \
        else "the same command with another --out and a smaller --set lr or ent_coef"
    return TrainingDiverged(f"training diverged at iteration {it + i + 1}{who}: {what}; stopped without writing "
                            f"a checkpoint after it ({last}); a resume would repeat it, so start a new run: {new} "
                            "(in place of any --set lr)", it + i + 1)


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
        first = read_population(out)["members"][0]["name"]
    except (RuntimeError, KeyError, IndexError, TypeError):
        return TrainingInterrupted("interrupted before the population's folders were written")
    steps = finished_steps(checkpoint_dir(os.path.join(out, first)))
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
    """The schedule of ``train``'s host loop over jitted chunks (the same for a single run and a population).

    Schedules chunks of at most ``cfg.chunk_iters`` iterations that end on every ``cfg.checkpoint_every``
    multiple, on every ``cfg.eval_every`` multiple (when > 0) and at ``cfg.iters``; times each chunk (the first
    one includes the compile: ``compile_s``); runs ``evaluate`` after the chunks that end on an
    ``eval_every`` multiple (multiples of the absolute iteration, so a resumed run keeps the cadence); calls
    ``save`` at the checkpoint boundaries, at the end, and at the first chunk boundary after ``max_seconds``
    of wall time (where it stops).
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
        ``evaluate(state)``'s result when the chunk ends on an evaluation iteration, else None (it
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
                evals = self.evaluate(state)
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


def combined_rows(members, rows: list[list[dict]]) -> list[dict]:
    """One row per iteration from every member's rows: ``env_steps`` and ``{member name}/{field}``."""
    out = [{"env_steps": r["env_steps"]} for r in rows[0]]
    for m, member_rows in zip(members, rows):
        for c, r in zip(out, member_rows):
            c.update({f"{m.name}/{k}": v for k, v in r.items() if k != "env_steps"})
    return out


def report_command(out: str) -> str:
    """The shell command that makes the report of run folder ``out`` (printed when training ends): the
    ``rl3jax`` script beside this Python (a virtual environment's ``bin/``, e.g. ``.venv/bin/rl3jax``, which
    need not be on PATH), else ``python -m rl3jax``."""
    script = os.path.join(os.path.dirname(sys.executable), "rl3jax")
    exe = [os.path.relpath(script) if not os.path.relpath(script).startswith("..") else script] \
        if os.path.exists(script) else [sys.executable, "-m", "rl3jax"]
    return shlex.join([*exe, "report", out])


# ------------------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, out: str, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          wandb_project: str | None = None, quiet: bool = False, mesh=None, seeds: int = 1,
          sweep: dict | None = None, max_seconds: float | None = None):
    """Trains to ``cfg.iters`` total PPO iterations in run folder ``out``.

    Returns (final state, last metrics): for a single run the ``TrainState`` and the last metrics row (a dict,
    {} when no iteration ran); for a population (``seeds`` > 1, a ``sweep`` {name: [values]}, or ``resume`` of
    a population folder) the stacked state (every leaf with a leading member axis, ``rl3jax.population``) and
    {member name: last metrics row}. ``mesh`` (``rl3jax.distributed.make_mesh``): split the env axis over its
    devices (None: one device). In a multi-process run only process 0 writes config, metrics and logs; every
    process takes part in checkpoints. ``max_seconds`` (wall-clock seconds) stops, with a checkpoint, at the
    first chunk boundary after that much time; ``resume`` continues from the newest checkpoint (also from a
    folder whose run was stopped before its first checkpoint: it starts again from iteration 0 with the
    folder's config.json / population.json). ``quiet``: no console lines; ``progress``: the progress bar.

    Layout: a single run writes config.json, metrics.jsonl/csv and checkpoints/ into ``out``; a population
    writes population.json, the base config.json and one such run folder per member (``rl3jax.runfiles``).

    Errors: ``ValueError`` (settings, or a resume that changes them; nothing written), ``RunLockedError``
    (another process trains in ``out``), ``RunFolderError`` (not a run folder, unreadable config or metrics),
    ``CheckpointError`` (missing/corrupt checkpoint; ``CheckpointWriteError``: one could not be written),
    ``TrainingDiverged`` (a NaN/inf loss, metric or parameter: names the first bad iteration; no checkpoint is
    written after it), ``TrainingInterrupted`` (Ctrl-C; says which checkpoint is intact), ``OSError`` (e.g. a
    full disk while appending metrics).
    """
    stacked = seeds != 1 or bool(sweep) or (resume and is_population(out))
    main = distributed.is_main_process()
    if resume:
        seeds, sweep = _resume_settings(cfg, out, stacked, seeds, sweep)
    else:
        check_new_run(out)  # nothing of a run: no config, checkpoints, metrics, ...
    pop = make_population(cfg, seeds, sweep, mesh, stacked=stacked)
    os.makedirs(out, exist_ok=True)
    locks = lock_run(out) if main else []  # after the checks, before anything is written
    loop = _Loop(pop, out, quiet=quiet or not main, main=main, spec={"seeds": seeds, "sweep": sweep or {}})
    try:
        return loop.run(resume, progress, tensorboard, wandb_project, max_seconds)
    except KeyboardInterrupt:
        raise (_population_interrupted(out) if stacked else interrupted(loop.iteration, loop.ckpt_dirs[0])) from None
    finally:
        release_locks(locks)


def _resume_settings(cfg: TrainConfig, out: str, stacked: bool, seeds: int, sweep: dict | None):
    """Checks a resume of ``out`` against its stored settings (``check_resume``) and those its checkpoints were
    trained under (``check_checkpoint_config``); returns its (seeds, sweep)."""
    check_checkpoint_config(out)
    if not stacked:
        check_resume(read_config(out), cfg, CONFIG)
        return seeds, sweep
    spec = read_population(out)
    check_resume(TrainConfig.from_dict(spec["config"]), cfg, POPULATION)
    if (seeds != 1 or sweep) and (seeds != spec["seeds"] or (sweep or {}) != spec["sweep"]):
        raise ValueError(f"--resume with --seeds/--sweep that differ from the run's (seeds {spec['seeds']}, "
                         f"sweep {spec['sweep']})")
    return spec["seeds"], spec["sweep"]


class _Loop:
    """One training session of a population (a single run: a population of one, unstacked) in folder ``out``:
    folders, restore, logs, the chunk loop, checkpoints and the console lines."""

    def __init__(self, pop: Population, out: str, quiet: bool, main: bool, spec: dict):
        self.pop, self.out, self.quiet, self.main = pop, out, quiet, main
        self.spec = spec  # {"seeds": int, "sweep": {name: [values]}} for population.json
        self.cfg = pop.trainer.cfg
        self.dirs = [os.path.join(out, m.name) for m in pop.members] if pop.stacked else [out]
        self.ckpt_dirs = [checkpoint_dir(d) for d in self.dirs]
        self.start = 0
        self.chunks: ChunkLoop | None = None
        self.lasts: dict[str, dict] = {}  # member name -> its last metrics row

    @property
    def iteration(self) -> int:
        """The iteration reached (for the Ctrl-C message)."""
        return self.chunks.it if self.chunks is not None else self.start

    def write_folders(self) -> None:
        """config.json (and for a population the member folders and population.json); process 0 only."""
        cfg, pop = self.cfg, self.pop
        if not pop.stacked:
            atomic_write_json(os.path.join(self.out, CONFIG), cfg.to_dict())
            return
        for m, d in zip(pop.members, self.dirs):
            os.makedirs(d, exist_ok=True)
            atomic_write_json(os.path.join(d, CONFIG), m.config(cfg).to_dict())
        atomic_write_json(os.path.join(self.out, CONFIG), cfg.to_dict())
        atomic_write_json(os.path.join(self.out, POPULATION), {"config": cfg.to_dict(), **self.spec,
                                                               "members": [m.to_dict() for m in pop.members]})

    def restore(self, state, ckpts: list[Checkpointer], resume: bool):
        """(state, start iteration): the members' newest checkpoints when resuming, else ``state`` and 0."""
        pop, out, source = self.pop, self.out, POPULATION if self.pop.stacked else CONFIG
        if resume and all(c.latest_step() is None for c in ckpts):
            if not self.quiet:
                print(f"{out} has no checkpoint yet (stopped before the first one): starting it again from "
                      f"iteration 0 with its {source}")
            return state, 0
        if not resume:
            return state, 0
        restored = [c.restore(pop.member(state, i)) for i, c in enumerate(ckpts)]
        steps = {int(st.iteration) for st, _ in restored}
        if len(steps) != 1:
            raise CheckpointError(f"the members' latest checkpoints are at different iterations {sorted(steps)}")
        start = steps.pop()
        if not self.quiet:
            print(f"resumed population {out} ({pop.size} members) at iteration {start}" if pop.stacked else
                  f"resumed {out} at iteration {start} ({restored[0][1].get('env_steps', 0)} env steps)")
        return pop.stack([st for st, _ in restored]), start

    def run(self, resume: bool, progress: bool, tensorboard: bool, wandb_project: str | None,
            max_seconds: float | None):
        """Folders, restore, logs, then the chunk loop to ``cfg.iters``; returns ``train``'s (state, last rows)."""
        state, ckpts = self.setup(resume, progress, tensorboard, wandb_project)
        self.chunks = loop = ChunkLoop(self.cfg, self.start, max_seconds, evaluate=self.evaluator())
        try:
            state = loop.run(population.jit_chunk(self.pop), state, self.on_chunk,
                             lambda it, st: self.save(ckpts, it, st))
        finally:
            self.bar.close()
            for c in ckpts:
                c.close()
            self.ext.close()
        self.done()
        if self.pop.stacked:
            return state, self.lasts
        return state, self.lasts.get(self.pop.members[0].name, {})

    def setup(self, resume: bool, progress: bool, tensorboard: bool, wandb_project: str | None):
        """Writes the folders (process 0, between barriers), opens the checkpointers, restores or initialises
        the state, opens the logs and the progress bar; returns (state, checkpointers)."""
        cfg, main = self.cfg, self.main
        distributed.barrier("rl3jax-config-checked")  # every process has checked before process 0 writes
        if main:
            self.write_folders()
        distributed.barrier("rl3jax-folders-written")
        ckpts = [Checkpointer(d, keep=cfg.keep_checkpoints, write=True, config=m.config(cfg).to_dict())
                 for d, m in zip(self.ckpt_dirs, self.pop.members)]
        state, self.start = self.restore(self.pop.init_state(), ckpts, resume)
        self.logs = [MetricsLog(d, self.start) if main else NullLog() for d in self.dirs]
        self.ext = ExternalLoggers(self.out, cfg, tensorboard and main, wandb_project if main else None)
        self.bar = Progress(cfg.iters, self.start, progress and not self.quiet)
        return state, ckpts

    def save(self, ckpts: list[Checkpointer], it: int, state) -> None:
        """Each member's checkpoint of iteration ``it`` (meta: iteration, env steps, last training return)."""
        cfg, pop = self.cfg, self.pop
        for i, (m, c) in enumerate(zip(pop.members, ckpts)):
            meta = {"iteration": it, "env_steps": it * cfg.batch_steps,
                    "return_mean": self.lasts[m.name]["return_mean"]}
            c.save(it, pop.member(state, i), {**meta, "member": m.to_dict()} if pop.stacked else meta)

    def evaluator(self):
        """With ``cfg.eval_every``: ``state -> [EVAL_FIELDS dict per member]`` (one compiled evaluation for every
        member, each member's own parameters); else None."""
        cfg, pop = self.cfg, self.pop
        if not cfg.eval_every:
            return None
        held_out = HeldOutEvaluator(pop.trainer.meta_env, pop.trainer.actor, cfg.eval_episodes)

        def evaluate(st):
            params = jax.device_get(st.actor_params) if pop.stacked else st.actor_params
            return [held_out.row_fields(pop.member(params, j)) for j in range(pop.size)]

        return evaluate

    def on_chunk(self, it: int, n: int, metrics: dict, dt: float, evals: list[dict] | None) -> None:
        """Logs the rows of iterations ``it + 1 .. it + n`` (``metrics``: host arrays, (n,) or (n, members);
        ``evals``: one dict of ``EVAL_FIELDS`` per member or None) and raises ``TrainingDiverged`` at the first
        non-finite iteration (a single run logs the rows up to it; a population none of the chunk's)."""
        pop = self.pop
        bad = first_nonfinite(metrics, n)  # any member: a non-finite member state is never checkpointed
        if bad is not None and pop.stacked:
            flags = np.asarray(metrics[FINITE])[bad]
            who = ", ".join(m.name for m, f in zip(pop.members, flags) if not f > 0.5)
            raise divergence(metrics, it, bad, self.ckpt_dirs[0], who=f" (member {who})")
        metrics = pop.member_metrics({k: v for k, v in metrics.items() if k != FINITE})
        sps = n * self.cfg.batch_steps * pop.size / dt  # all members together
        count = n if bad is None else bad + 1  # up to the first non-finite iteration
        rows = [self.member_rows(it, count, metrics, j, sps / pop.size) for j in range(pop.size)]
        if evals is not None and bad is None:
            for member_rows, ev in zip(rows, evals):
                member_rows[-1].update(ev)
        self.write_rows(rows)
        if bad is not None:
            raise divergence(metrics, it, bad, self.ckpt_dirs[0], out=self.out, lr=self.cfg.lr)
        self.lasts.update({m.name: r[-1] for m, r in zip(pop.members, rows)})
        self.bar.update(it + n, n, dt, self.postfix(sps, evals))

    def member_rows(self, it: int, count: int, metrics: dict, j: int, sps: float) -> list[dict]:
        """Member ``j``'s metrics rows of iterations ``it + 1 .. it + count`` (``metrics``: (n, members) host
        arrays; ``sps``: the member's steps per second)."""
        rows = []
        for i in range(count):
            row = {"iteration": it + i + 1, "env_steps": (it + i + 1) * self.cfg.batch_steps}
            row.update({k: float(v[i, j]) for k, v in metrics.items()})
            row["steps_per_second"] = sps
            rows.append(row)
        return rows

    def write_rows(self, rows: list[list[dict]]) -> None:
        """Appends each member's rows to its metrics files; the external loggers get a single run's rows, or for
        a population one combined row per iteration (fields ``{member}/{field}``)."""
        for member_rows, log in zip(rows, self.logs):
            if not self.pop.stacked:
                for r in member_rows:
                    self.ext.log(r)
            log.append(member_rows)
        if self.pop.stacked:
            for r in combined_rows(self.pop.members, rows):
                self.ext.log(r)

    def postfix(self, sps: float, evals: list[dict] | None) -> dict:
        """The progress bar's figures after a chunk."""
        if self.pop.stacked:
            rets = [r["return_mean"] for r in self.lasts.values() if math.isfinite(r["return_mean"])]
            return dict(sps=f"{sps:,.0f}", ret_mean=f"{np.mean(rets):.2f}", ret_best=f"{np.max(rets):.2f}")
        last = self.lasts[self.pop.members[0].name]
        post = dict(steps=f"{last['env_steps']:.3g}", sps=f"{sps:,.0f}", ret=f"{last['return_mean']:.2f}")
        if evals is not None:
            post["held_out"] = f"{evals[0]['eval_return']:.2f}"
        return post

    def done(self) -> None:
        """The final console lines."""
        cfg, pop, it = self.cfg, self.pop, self.iteration
        if self.quiet or not self.lasts:
            return
        if pop.stacked:
            print(f"done: {pop.size} members x {it} iterations "
                  f"({it * cfg.batch_steps * pop.size:,} env steps; {self.chunks.timing()})")
            for name, r in self.lasts.items():
                print(f"  {name:24s} return {r['return_mean']:.2f}")
        else:
            last = self.lasts[pop.members[0].name]
            print(f"done: {it} iterations, {it * cfg.batch_steps} env steps, "
                  f"mean return {last['return_mean']:.2f} ({self.chunks.timing()})")
        print(f"report: {report_command(self.out)}")

