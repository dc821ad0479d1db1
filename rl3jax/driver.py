"""The outer loop in Stoix's shape: a host loop over jitted chunks of PPO iterations, with a progress bar,
metrics files (JSONL and CSV), optional TensorBoard / Weights & Biases, evaluation and checkpoints between
chunks. ``--resume`` restores the full state, so N + N iterations equal 2N bit for bit.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any

import jax
import numpy as np

from rl3jax import distributed
from rl3jax.checkpoint import CheckpointError, Checkpointer
from rl3jax.config import TrainConfig
from rl3jax.train import jit_chunk, make_train

#: fields that may differ between a run and its resumption
RESUMABLE_CHANGES = ("iters", "chunk_iters", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "eval_episodes")


class MetricsLog:
    """Appends one row per PPO iteration to metrics.jsonl and metrics.csv; truncates on resume."""

    def __init__(self, run_dir: str, resume_iteration: int = 0):
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        rows = []
        if resume_iteration and os.path.exists(self.jsonl):
            with open(self.jsonl) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            rows = [r for r in rows if r["iteration"] <= resume_iteration]
        with open(self.jsonl, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        self.fields = list(rows[0]) if rows else None
        if self.fields:
            with open(self.csv, "w", newline="") as f:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(rows)
        elif os.path.exists(self.csv):
            os.remove(self.csv)

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.jsonl, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        new = self.fields is None
        if new:
            self.fields = list(rows[0])
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)


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


def load_run_config(run_dir: str) -> TrainConfig:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{run_dir} is not a run folder (no config.json)")
    with open(path) as f:
        return TrainConfig.from_dict(json.load(f))


def _atomic_write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


class ChunkLoop:
    """The host loop over jitted chunks that ``train`` and ``population.train_population`` share.

    Schedules chunks of at most ``cfg.chunk_iters`` iterations that end on every ``cfg.checkpoint_every``
    multiple and at ``cfg.iters``; times each chunk (the first one includes the compile: ``compile_s``);
    calls ``save`` at those checkpoint boundaries, at the end, and at the first chunk boundary after
    ``max_seconds`` of wall time (where it stops). One place for this, so a single run and a population
    checkpoint and stop at the same iterations.
    """

    def __init__(self, cfg: TrainConfig, start: int, max_seconds: float | None = None):
        self.cfg = cfg
        self.it = start
        self.max_seconds = max_seconds
        self.next_ckpt = self._next_checkpoint()
        self.t_run = time.perf_counter()
        self.compile_s: float | None = None

    def _next_checkpoint(self) -> int:
        return (self.it // self.cfg.checkpoint_every + 1) * self.cfg.checkpoint_every

    def elapsed(self) -> float:
        """Wall time since the loop was set up."""
        return time.perf_counter() - self.t_run

    def timing(self) -> str:
        """The timing part of the final ``done:`` line."""
        return f"first chunk incl. compile {self.compile_s:.1f}s, total {self.elapsed():.1f}s"

    def run(self, chunk_fn, state, on_chunk, save):
        """Runs chunks until ``cfg.iters`` (or ``max_seconds``); returns the final state.

        ``chunk_fn(state, n) -> (state, metrics)``; ``on_chunk(it, n, metrics, dt)`` gets the host metrics of
        iterations ``it + 1 .. it + n`` and the chunk's seconds (it logs, and raises to abort);
        ``save(it, state)`` writes the checkpoints at iteration ``it``.
        """
        cfg = self.cfg
        while self.it < cfg.iters:
            n = min(cfg.chunk_iters, cfg.iters - self.it, self.next_ckpt - self.it)
            t0 = time.perf_counter()
            state, metrics = chunk_fn(state, n)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            if self.compile_s is None:
                self.compile_s = dt
            on_chunk(self.it, n, metrics, dt)
            self.it += n
            out_of_time = self.max_seconds is not None and self.elapsed() >= self.max_seconds
            if self.max_seconds is not None:  # process 0's clock decides, so every process stops at the same chunk
                out_of_time = distributed.broadcast_flag(out_of_time)
            if self.it >= self.next_ckpt or self.it >= cfg.iters or out_of_time:
                save(self.it, state)
                self.next_ckpt = self._next_checkpoint()
            if out_of_time:
                break
        return state


def train(cfg: TrainConfig, out: str, resume: bool = False, progress: bool = True, tensorboard: bool = False,
          wandb_project: str | None = None, quiet: bool = False, mesh=None, seeds: int = 1,
          sweep: dict | None = None, max_seconds: float | None = None):
    """Trains to ``cfg.iters`` total iterations in run folder ``out``; returns (final state, last metrics).

    ``mesh`` (``rl3jax.distributed.make_mesh``): split the env axis over its devices (None: one device).
    ``seeds`` > 1 or a ``sweep`` ({name: [values]}) train a vmapped population instead, one member folder
    each (``rl3jax.population``). In a multi-process run only process 0 writes config, metrics and logs;
    every process takes part in checkpoints. ``max_seconds`` stops (with a checkpoint) at the first chunk
    boundary after that much wall time; ``--resume`` continues from there.
    """
    cfg.validate()
    if seeds != 1 or sweep or (resume and os.path.exists(os.path.join(out, "population.json"))):
        from rl3jax.population import train_population

        return train_population(cfg, out, seeds=seeds, sweep=sweep, resume=resume, progress=progress,
                                tensorboard=tensorboard, wandb_project=wandb_project, quiet=quiet, mesh=mesh,
                                max_seconds=max_seconds)
    main = distributed.is_main_process()
    quiet = quiet or not main
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(out, "config.json")
    if resume:
        old = load_run_config(out)
        diff = {k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v} - set(RESUMABLE_CHANGES)
        if diff:
            raise ValueError(f"--resume with settings that differ from the run's config.json: {sorted(diff)} "
                             f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    elif os.path.exists(cfg_path):
        raise ValueError(f"run folder {out} already holds a run; pass --resume to continue it or choose "
                         "another --out")
    distributed.barrier("rl3jax-config-checked")  # every process has checked before process 0 writes
    if main:
        _atomic_write_json(cfg_path, cfg.to_dict())

    trainer = make_train(cfg, mesh)
    ckpt = Checkpointer(os.path.join(out, "checkpoints"), keep=cfg.keep_checkpoints)
    if mesh is None:
        state = jax.jit(trainer.init)(jax.random.key(cfg.seed))
    else:
        state = distributed.init_sharded(lambda: trainer.init(jax.random.key(cfg.seed)), mesh, cfg.num_envs)
    start = 0
    if resume:
        state, meta = ckpt.restore(state)
        start = int(state.iteration)
        if not quiet:
            print(f"resumed {out} at iteration {start} ({meta.get('env_steps', 0)} env steps)")
    log = MetricsLog(out, start) if main else NullLog()
    ext = ExternalLoggers(out, cfg, tensorboard and main, wandb_project if main else None)
    chunk_fn = jit_chunk(trainer)
    bar = None
    if progress and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iters, initial=start, unit="it", dynamic_ncols=True)
    last = {}

    def on_chunk(it, n, metrics, dt):
        nonlocal last
        rows = []
        for i in range(n):
            row = {"iteration": it + i + 1, "env_steps": (it + i + 1) * cfg.batch_steps}
            row.update({k: float(v[i]) for k, v in metrics.items()})
            rows.append(row)
        it += n
        sps = n * cfg.batch_steps / dt
        for r in rows:
            r["steps_per_second"] = sps
            ext.log(r)
        log.append(rows)
        last = rows[-1]
        if bar is not None:
            eta = (cfg.iters - it) * cfg.batch_steps / max(sps, 1e-9)
            bar.set_postfix(steps=f"{last['env_steps']:.3g}", sps=f"{sps:,.0f}", ret=f"{last['return_mean']:.2f}",
                            eta=f"{eta/60:.1f}m")
            bar.update(n)
        if not math.isfinite(last["return_mean"]) or not math.isfinite(last.get("critic_loss", 0.0)):
            raise FloatingPointError(f"non-finite metrics at iteration {it}: {last}")

    def save(it, state):
        ckpt.save(it, state, {"iteration": it, "env_steps": it * cfg.batch_steps, "return_mean": last["return_mean"]})

    loop = ChunkLoop(cfg, start, max_seconds)
    state = loop.run(chunk_fn, state, on_chunk, save)
    if bar is not None:
        bar.close()
    ckpt.close()
    ext.close()
    if not quiet and last:
        print(f"done: {loop.it} iterations, {loop.it * cfg.batch_steps} env steps, "
              f"mean return {last['return_mean']:.2f} ({loop.timing()})")
    return state, last
