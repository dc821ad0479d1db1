"""The outer loop in Stoix's shape: one host loop over jitted chunks of PPO iterations, with a progress bar,
metrics files, optional TensorBoard / W&B, held-out evaluation and checkpoints between chunks. ``--resume``
restores the full state, so N + N iterations equal 2N bit for bit. A single run is a population of one; the
member axis is stripped only at the edges (checkpoints, metrics rows, evaluations).

Metrics rows (one per iteration): ``iteration``, ``env_steps``, the scalar metrics and ``steps_per_second`` (of
its chunk, compile included); with ``eval_every = N`` the rows of iterations N, 2N, ... add ``EVAL_FIELDS``.

Under faults: a population saves as one unit (``runfiles.COMMITTED``); training stops at the first non-finite
iteration before any checkpoint of it (``TrainingDiverged``); signals stop at a chunk's end (``StopSignals``).
"""

from __future__ import annotations

import math
import os
import signal
import time

import jax
import numpy as np

from rl3jax import distributed
from rl3jax.config import TrainConfig
from rl3jax.evaluate import HeldOutEvaluator
from rl3jax.runs import population
from rl3jax.runs.checkpoint import Checkpointer
from rl3jax.runs.metrics import ExternalLoggers, MetricsLog
from rl3jax.runs.population import Population, make_population, member_state
from rl3jax.runs.resume import nothing_to_do, report_hint, resume_settings
from rl3jax.runs.runfiles import (
    COMMITTED,
    CONFIG,
    POPULATION,
    atomic_write_json,
    check_new_run,
    checkpoint_dir,
    intact,
    latest_step,
    lock_run,
    release_locks,
)
from rl3jax.runs.signals import StopSignals, TrainingInterrupted
from rl3jax.trainer import FINITE

#: fields a held-out evaluation adds to the metrics row of its iteration
EVAL_FIELDS = ("eval_return", "eval_stderr", "eval_return_greedy", "eval_stderr_greedy", "eval_episodes")


class TrainingDiverged(FloatingPointError):
    """An iteration produced a NaN or infinite loss, metric or parameter (the message names the first); nothing
    after it was checkpointed. The CLI exits with status 1 (a failed run, not a bad input)."""


def divergence(metrics: dict, it: int, i: int, out: str, who: str, lr: float) -> TrainingDiverged:
    """The one-line error for a first non-finite iteration ``it + i + 1`` of the run in ``out`` (``who``: e.g. the
    members concerned), advising a new run in another folder with ``lr / 10`` (a resume would repeat it)."""
    names = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v)[i])))
    what = f"non-finite {', '.join(names)}" if names else "non-finite parameters or optimiser state"
    step = latest_step(out)
    last = f"the last checkpoint is step {step}" if step is not None else "no checkpoint was written"
    return TrainingDiverged(f"training diverged at iteration {it + i + 1}{who}: {what}; stopped without writing "
                            f"a checkpoint after it ({last}); a resume would repeat it, so start a new run: the same "
                            f"command with --out {out.rstrip('/')}-lr{lr / 10:g} and --set lr={lr / 10:g} "
                            "(in place of any --set lr)")


class Progress:
    """The progress bar: "compiling…" until the first chunk is back, then an ETA from the chunks after it (tqdm's
    own would include the compile). Silent unless ``enabled``."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar, self.steady = None, None  # (seconds, iterations) of the chunks after the first
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                            bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
            self.bar.set_description_str("compiling… ", refresh=True)

    def update(self, it: int, n: int, dt: float, postfix: dict) -> None:
        """Chunk done: ``n`` iterations in ``dt`` seconds, now at iteration ``it``."""
        if self.bar is None:
            return
        self.steady = (0.0, 0) if self.steady is None else (self.steady[0] + dt, self.steady[1] + n)
        s, k = self.steady
        eta = self.bar.format_interval((self.bar.total - it) * s / k) if k else "…"
        self.bar.set_description_str("")
        self.bar.set_postfix(ordered_dict={**postfix, "eta": eta}, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ChunkLoop:
    """The schedule of ``train``'s host loop: chunks of at most ``cfg.chunk_iters`` iterations that end on every
    ``checkpoint_every`` and ``eval_every`` multiple (of the absolute iteration, so a resume keeps the cadence)
    and at ``cfg.iters``; ``save`` at checkpoint boundaries, at the end, and at the first chunk boundary after
    ``max_seconds`` or ``stop()`` (where it stops; process 0 decides for every process)."""

    def __init__(self, cfg: TrainConfig, start: int, max_seconds: float | None = None, evaluate=None, stop=None):
        self.cfg = cfg
        self.it = start
        self.max_seconds = max_seconds
        self.stop = stop or (lambda: False)
        self.chunk: tuple[int, float] | None = None  # (iterations, start time) of the chunk running now
        self.per_iter: float | None = None  # seconds per iteration of the last chunk after the first
        self.evaluate = evaluate if cfg.eval_every else None
        self.next_ckpt = self._next_multiple(cfg.checkpoint_every)
        self.next_eval = self._next_multiple(cfg.eval_every) if self.evaluate else math.inf
        self.t_run = time.perf_counter()
        self.compile_s: float | None = None
        self.eval_s = 0.0

    def _next_multiple(self, every: int) -> int:
        return (self.it // every + 1) * every

    def when(self) -> str:
        """When a stop asked for now happens (the message of a stop signal)."""
        if self.it >= self.cfg.iters:
            return "now: training has finished"
        if self.chunk is None:
            return "before the first chunk (nothing trained yet)" if self.compile_s is None else \
                "before the next chunk, after writing a checkpoint"
        n, t0 = self.chunk
        eta = "after the compile" if self.per_iter is None else \
            f"in about {max(0.0, t0 + n * self.per_iter - time.perf_counter()):.0f} s"
        return f"at the end of the current chunk (iteration {self.it + n}, {eta}), then writing a checkpoint"

    def timing(self) -> str:
        """The timing part of the final ``done:`` line."""
        ev = f", held-out evaluations {self.eval_s:.1f}s" if self.eval_s else ""
        return f"first chunk incl. compile {self.compile_s:.1f}s{ev}, total {time.perf_counter() - self.t_run:.1f}s"

    def run(self, chunk_fn, state, on_chunk, save):
        """Runs chunks until ``cfg.iters`` (or a stop); returns the final state. ``chunk_fn(state, n) -> (state,
        metrics)``; ``on_chunk(it, n, metrics, dt, evals)`` gets the host metrics of iterations ``it + 1 .. it +
        n``, the chunk's seconds and ``evaluate(state)`` where due, else None (it raises to abort);
        ``save(it, state)`` writes the checkpoints at iteration ``it``."""
        cfg, saved = self.cfg, self.it
        while self.it < cfg.iters:
            if self.stop():  # asked for during the last chunk (or before the first): save it, stop
                if self.it != saved:
                    save(self.it, state)
                break
            n = min(cfg.chunk_iters, cfg.iters - self.it, self.next_ckpt - self.it, self.next_eval - self.it)
            t0 = time.perf_counter()
            self.chunk = (n, t0)
            state, metrics = chunk_fn(state, n)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            if self.compile_s is None:
                self.compile_s = dt
            else:
                self.per_iter = dt / n
            evals = None
            if self.it + n == self.next_eval:
                t1 = time.perf_counter()
                evals = self.evaluate(state)
                self.eval_s += time.perf_counter() - t1
                self.next_eval += cfg.eval_every
            on_chunk(self.it, n, metrics, dt, evals)
            self.it += n
            self.chunk = None
            # process 0's clock decides, so every process stops at the same chunk
            out_of_time = self.max_seconds is not None and distributed.broadcast_flag(
                time.perf_counter() - self.t_run >= self.max_seconds)
            if self.it >= self.next_ckpt or self.it >= cfg.iters or out_of_time:
                save(self.it, state)
                saved, self.next_ckpt = self.it, self._next_multiple(cfg.checkpoint_every)
            if out_of_time:
                break
        return state


# ------------------------------------------------------------------------------------------ the driver
def train(cfg: TrainConfig, out: str, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          wandb_project: str | None = None, quiet: bool = False, mesh=None, seeds: int = 1,
          sweep: dict | None = None, max_seconds: float | None = None):
    """Trains to ``cfg.iters`` total PPO iterations in run folder ``out``; returns (state, lasts).

    ``state``: the final population ``TrainState`` (a leading member axis, length 1 for a single run;
    ``population.member_state(state, i)``), ``lasts``: {member name: its last metrics row} ({} if none ran).
    The population is ``seeds`` x the ``sweep`` {name: [values]} (a ``resume`` reads them from the folder;
    it continues from ``runfiles.latest_step``, or from 0 without one). ``mesh`` (None: one device) splits the
    env axis; only process 0 writes files. ``max_seconds``: stop, with a checkpoint, at the first chunk
    boundary after that much wall time.

    Errors: ``ValueError`` (settings; nothing written), ``RunLockedError``, ``RunFolderError``,
    ``CheckpointError`` / ``CheckpointWriteError``, ``TrainingDiverged`` (names the first bad iteration),
    ``TrainingInterrupted`` (a signal; says which checkpoint is intact), ``OSError`` (a full disk).
    """
    main = distributed.is_main_process()
    if resume:
        seeds, sweep = resume_settings(cfg, out, seeds, sweep)
    else:
        check_new_run(out)  # nothing of a run: no config, checkpoints, metrics, ...
    pop = make_population(cfg, seeds, sweep, mesh)
    os.makedirs(out, exist_ok=True)
    locks = lock_run(out) if main else []  # after the checks, before anything is written
    loop = _Loop(pop, out, quiet=quiet or not main, main=main, spec={"seeds": seeds, "sweep": sweep or {}})
    try:
        return loop.run(resume, progress, tensorboard, wandb_project, max_seconds)
    except KeyboardInterrupt as e:  # not through StopSignals (e.g. training outside the main thread): say so
        raise e if isinstance(e, TrainingInterrupted) else \
            TrainingInterrupted(f"interrupted at iteration {loop.iteration}; {intact(out)}") from None
    finally:
        release_locks(locks)


class _Loop:
    """One training session of a population (a single run: a population of one) in folder ``out``: folders,
    restore, logs, the chunk loop, checkpoints and the console lines."""

    def __init__(self, pop: Population, out: str, quiet: bool, main: bool, spec: dict):
        self.pop, self.out, self.quiet, self.main, self.cfg = pop, out, quiet, main, pop.trainer.cfg
        self.spec = spec  # {"seeds": int, "sweep": {name: [values]}} for population.json
        self.dirs = [out] if pop.single else [os.path.join(out, m.name) for m in pop.members]
        self.start, self.chunks = 0, None  # the first iteration; the ChunkLoop once it runs
        self.lasts: dict[str, dict] = {}  # member name -> its last metrics row

    @property
    def iteration(self) -> int:
        """The iteration reached."""
        return self.chunks.it if self.chunks is not None else self.start

    def restore(self, state, resume: bool):
        """(state, start iteration): with ``resume`` every member's checkpoint of ``latest_step`` (steps saved
        after it deleted first), else ``state`` and 0."""
        if not resume:
            return state, 0
        step = latest_step(self.out)
        for c in self.ckpts:
            c.retain(-1 if step is None else step)
        if step is None:
            if not self.quiet:
                print(f"{self.out} has no checkpoint yet (stopped before the first one): starting it again from "
                      f"iteration 0 with its {CONFIG if self.pop.single else POPULATION}")
            return state, 0
        restored = [c.restore(member_state(state, i), step) for i, c in enumerate(self.ckpts)]
        if not self.quiet and step < self.cfg.iters:
            what = f"{restored[0][1].get('env_steps', 0)} env steps" if self.pop.single else \
                f"population of {self.pop.size} members"
            print(f"resumed {self.out} at iteration {step} ({what})")
        elif not self.quiet:
            print(nothing_to_do(self.cfg, self.out))
        return self.pop.stack([st for st, _ in restored]), step

    def run(self, resume: bool, progress: bool, tensorboard: bool, wandb_project: str | None,
            max_seconds: float | None):
        """Folders, restore, logs, then the chunk loop to ``cfg.iters``; returns ``train``'s (state, lasts)."""
        with StopSignals(lambda: self.chunks.when() if self.chunks else "before the first chunk",
                         lambda: intact(self.out)) as sig:
            state = self.setup(resume, progress, tensorboard, wandb_project)
            stop = lambda: distributed.broadcast_flag(sig.signum is not None)  # noqa: E731
            self.chunks = loop = ChunkLoop(self.cfg, self.start, max_seconds, self.evaluator(), stop)
            try:
                state = loop.run(population.jit_chunk(self.pop), state, self.on_chunk, self.save)
            finally:
                self.bar.close()
                for c in self.ckpts:
                    c.close()
                self.ext.close()
            if sig.signum is not None:
                name = signal.Signals(sig.signum).name
                raise TrainingInterrupted(f"stopped by {name} at iteration {loop.it}; {intact(self.out)}",
                                          sig.signum)
            self.done()  # a signal now stops nothing: its answer says so (``ChunkLoop.when``)
        return state, self.lasts

    def setup(self, resume: bool, progress: bool, tensorboard: bool, wandb_project: str | None):
        """Folders (process 0, between barriers), checkpointers, logs and progress bar; returns the state."""
        cfg, main, pop = self.cfg, self.main, self.pop
        distributed.barrier("rl3jax-config-checked")  # every process has checked before process 0 writes
        if main:  # each member's config.json, the base config.json (a single run's: the same), population.json
            files = {os.path.join(d, CONFIG): m.config(cfg).to_dict() for m, d in zip(pop.members, self.dirs)}
            files[os.path.join(self.out, CONFIG)] = cfg.to_dict()
            if not pop.single:
                files[os.path.join(self.out, POPULATION)] = {"config": cfg.to_dict(), **self.spec,
                                                             "members": [m.to_dict() for m in pop.members]}
            for path, obj in files.items():
                atomic_write_json(path, obj)  # the member folders made with their files
        distributed.barrier("rl3jax-folders-written")
        self.ckpts = [Checkpointer(checkpoint_dir(d), keep=cfg.keep_checkpoints, write=True,
                                   config=m.config(cfg).to_dict()) for d, m in zip(self.dirs, self.pop.members)]
        state, self.start = self.restore(self.pop.init_state(), resume)
        self.logs = [MetricsLog(d, self.start) for d in self.dirs] if main else []  # only process 0 writes
        self.ext = ExternalLoggers(self.out, cfg, tensorboard and main, wandb_project if main else None)
        self.bar = Progress(cfg.iters, self.start, progress and not self.quiet and self.start < cfg.iters)
        return state

    def save(self, it: int, state) -> None:
        """Every member's checkpoint of iteration ``it``, then a population's ``COMMITTED`` step, then pruning."""
        cfg, pop = self.cfg, self.pop
        for i, (m, c) in enumerate(zip(pop.members, self.ckpts)):
            meta = {"iteration": it, "env_steps": it * cfg.batch_steps,
                    "return_mean": self.lasts[m.name]["return_mean"]}
            c.save(it, member_state(state, i), meta if pop.single else {**meta, "member": m.to_dict()})
        if self.main and not pop.single:
            atomic_write_json(os.path.join(self.out, COMMITTED), {"step": it})
        for c in self.ckpts:
            c.retain(it)

    def evaluator(self):
        """With ``cfg.eval_every``: ``state -> [EVAL_FIELDS dict per member]`` (one compile for all); else None."""
        cfg, pop = self.cfg, self.pop
        if not cfg.eval_every:
            return None
        held_out = HeldOutEvaluator(pop.trainer.meta_env, pop.trainer.actor, cfg.eval_episodes)
        return lambda st: [held_out.row_fields(member_state(st.actor_params, j)) for j in range(pop.size)]

    def on_chunk(self, it: int, n: int, metrics: dict, dt: float, evals: list[dict] | None) -> None:
        """Logs the rows of iterations ``it + 1 .. it + n`` (``metrics``: host arrays (n, members); ``evals``: per
        member or None) to the metrics files and external loggers; at a first non-finite iteration logs the rows
        up to it and raises ``TrainingDiverged``."""
        pop = self.pop
        flags = np.asarray(metrics.pop(FINITE)).reshape(n, -1) > 0.5  # (n, members); a non-finite state is
        bad = next((i for i in range(n) if not flags[i].all()), None)  # never checkpointed
        sps = n * self.cfg.batch_steps * pop.size / dt  # all members together
        rows = [[{"iteration": it + i + 1, "env_steps": (it + i + 1) * self.cfg.batch_steps,  # per member
                  **{k: float(np.asarray(v)[i, j]) for k, v in metrics.items()}, "steps_per_second": sps / pop.size}
                 for i in range(n if bad is None else bad + 1)] for j in range(pop.size)]
        if evals is not None and bad is None:
            for member_rows, ev in zip(rows, evals):
                member_rows[-1].update(ev)
        for member_rows, log in zip(rows, self.logs):
            log.append(member_rows)
        for i, row in enumerate(rows[0]):  # a population's fields as {member}/{field}
            self.ext.log(row if pop.single else {"env_steps": row["env_steps"], **{
                f"{m.name}/{k}": v for m, r in zip(pop.members, rows) for k, v in r[i].items() if k != "env_steps"}})
        if bad is not None:
            who = "" if pop.single else \
                f" (member {', '.join(m.name for m, f in zip(pop.members, flags[bad]) if not f)})"
            raise divergence(metrics, it, bad, self.out, who, self.cfg.lr)
        self.lasts.update({m.name: r[-1] for m, r in zip(pop.members, rows)})
        self.bar.update(it + n, n, dt, self.postfix(sps, evals))

    def postfix(self, sps: float, evals: list[dict] | None) -> dict:
        """The progress bar's figures after a chunk (a population: the mean and best member return)."""
        rets = [r["return_mean"] for r in self.lasts.values() if math.isfinite(r["return_mean"])] or [math.nan]
        post = dict(sps=f"{sps:,.0f}", ret=f"{np.mean(rets):.2f}")
        if not self.pop.single:
            post["best"] = f"{np.max(rets):.2f}"
        if evals is not None:
            post["held_out"] = f"{np.mean([e['eval_return'] for e in evals]):.2f}"
        return post

    def done(self) -> None:
        """The final console lines."""
        cfg, pop, it = self.cfg, self.pop, self.iteration
        if self.quiet or not self.lasts:
            return
        rets = {name: f"{r['return_mean']:.2f}" for name, r in self.lasts.items()}
        print(f"done: {f'{pop.size} members x ' if pop.size > 1 else ''}{it} iterations, "
              f"{it * cfg.batch_steps * pop.size:,} env steps"
              f"{f', mean return {rets.popitem()[1]}' if pop.size == 1 else ''} ({self.chunks.timing()})")
        for name, ret in rets.items():
            print(f"  {name:24s} return {ret}")
        print(f"report: {report_hint(self.out, cfg.env)}")
