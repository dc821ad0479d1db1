"""The outer loop in Stoix's shape: a host loop over jitted chunks of PPO iterations, with a progress bar,
metrics files (JSONL and CSV), optional TensorBoard / Weights & Biases, held-out evaluation and checkpoints
between chunks. ``--resume`` restores the full state, so N + N iterations equal 2N bit for bit.

Metrics rows (one per PPO iteration): ``iteration``, ``env_steps``, the iteration's scalar metrics and
``steps_per_second`` (of its chunk, the first chunk's compile included; held-out evaluations and checkpoints
excluded, so ``batch_steps / steps_per_second`` summed over the rows is the training time). With
``eval_every = N`` > 0 the rows of iterations N, 2N, ... also carry ``EVAL_FIELDS``: the held-out mean
return ± s.e. of the stochastic and the greedy policy over ``eval_episodes`` test tasks
(``rl3jax.evaluate``'s fixed test set).
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
    """Appends one row per PPO iteration to metrics.jsonl and metrics.csv; truncates on resume.

    Rows may carry fields that others lack (the ``eval_*`` fields of held-out evaluations exist only on
    every ``eval_every``-th row): the CSV header is the union of the fields in order of first appearance,
    missing cells are empty, and the CSV is rewritten with the wider header when a new field first appears.
    """

    def __init__(self, run_dir: str, resume_iteration: int = 0):
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        rows = []
        if resume_iteration and os.path.exists(self.jsonl):
            rows = read_metrics(run_dir)
            rows = [r for r in rows if r["iteration"] <= resume_iteration]
        with open(self.jsonl, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
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


def read_metrics(run_dir: str) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` (one dict per PPO iteration; eval rows carry ``eval_*`` fields)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


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


#: fields a held-out evaluation adds to the metrics row of its iteration
EVAL_FIELDS = ("eval_return", "eval_stderr", "eval_return_greedy", "eval_stderr_greedy", "eval_episodes")


def check_eval_settings(cfg: TrainConfig) -> None:
    """Raises ValueError unless ``eval_every`` is a whole number >= 0 (0: off) and ``eval_episodes`` >= 1."""
    ev, ep = cfg.eval_every, cfg.eval_episodes
    if isinstance(ev, bool) or not isinstance(ev, (int, np.integer)) or ev < 0:
        raise ValueError(f"eval_every must be a whole number of iterations >= 0 (0: no evaluation during "
                         f"training), got {ev!r}")
    if isinstance(ep, bool) or not isinstance(ep, (int, np.integer)) or ep < 1:
        raise ValueError(f"eval_episodes must be a whole number of held-out tasks >= 1, got {ep!r}")


class HeldOutEvaluator:
    """The held-out evaluation of ``rl3jax.evaluate.evaluate(meta_env, "network", episodes, greedy=...,
    params=..., model=actor)``, compiled once and reused for every evaluation during training.

    ``evaluate`` closes over the parameters inside a fresh ``jax.jit`` on every call (so it traces and
    compiles again each time); this class takes the parameters as an argument of one jitted function and
    repeats ``evaluate``'s task batches and keys exactly, so its results equal ``evaluate``'s bit for bit
    (tests/test_eval_every.py checks both). ``traces`` counts traces: one per (batch shape, greedy) pair,
    then never again.
    """

    def __init__(self, meta_env, actor, episodes: int, batch: int = 250, seed: int = 0):
        from rl3jax.evaluate import TEST_SEED, held_out_tasks, network_policy
        from rl3jax.rollout import rollout

        self.episodes = int(episodes)
        self.batch = int(batch)
        self.tasks = held_out_tasks(meta_env, self.episodes)
        self.key = jax.random.fold_in(jax.random.key(TEST_SEED + 1), seed)
        self.traces = 0

        def run(params, tasks, key, greedy):
            self.traces += 1
            num = jax.tree.leaves(tasks)[0].shape[0]
            step, carry = network_policy(actor, params, num)
            traj, _ = rollout(meta_env, step, carry, tasks, key, greedy=greedy)
            return traj.rewards

        self._run = jax.jit(run, static_argnums=3)

    def __call__(self, actor_params, greedy: bool) -> dict:
        """{"mean_return", "stderr", "episodes", "step_rewards" (H,)} of one policy (``greedy``: argmax actions)."""
        params = jax.device_get(actor_params)  # host copy: independent of the training state's sharding
        out = []
        for i, start in enumerate(range(0, self.episodes, self.batch)):
            stop = min(start + self.batch, self.episodes)
            tasks = jax.tree.map(lambda x: x[start:stop], self.tasks)
            out.append(np.asarray(self._run(params, tasks, jax.random.fold_in(self.key, i), bool(greedy))))
        rewards = np.concatenate(out)
        r = rewards.sum(axis=1)
        return {"mean_return": float(r.mean()),
                "stderr": float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"),
                "episodes": int(len(r)), "step_rewards": rewards.mean(axis=0)}

    def row_fields(self, actor_params) -> dict:
        """The ``EVAL_FIELDS`` of a metrics row: stochastic and greedy held-out mean return ± s.e."""
        s, g = self(actor_params, False), self(actor_params, True)
        return {"eval_return": s["mean_return"], "eval_stderr": s["stderr"], "eval_return_greedy": g["mean_return"],
                "eval_stderr_greedy": g["stderr"], "eval_episodes": s["episodes"]}


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
    """The shell command that makes the report of run folder ``out`` (printed when training ends)."""
    import shlex

    return shlex.join(["rl3jax", "report", out, "--out", os.path.join(out, "report")])


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
    check_eval_settings(cfg)
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

    def on_chunk(it, n, metrics, dt, evals):
        nonlocal last
        rows = []
        sps = n * cfg.batch_steps / dt
        for i in range(n):
            row = {"iteration": it + i + 1, "env_steps": (it + i + 1) * cfg.batch_steps}
            row.update({k: float(v[i]) for k, v in metrics.items()})
            row["steps_per_second"] = sps
            rows.append(row)
        if evals is not None:
            rows[-1].update(evals)
        it += n
        for r in rows:
            ext.log(r)
        log.append(rows)
        last = rows[-1]
        if bar is not None:
            eta = (cfg.iters - it) * cfg.batch_steps / max(sps, 1e-9)
            post = dict(steps=f"{last['env_steps']:.3g}", sps=f"{sps:,.0f}", ret=f"{last['return_mean']:.2f}",
                        eta=f"{eta/60:.1f}m")
            if evals is not None:
                post["held_out"] = f"{evals['eval_return']:.2f}"
            bar.set_postfix(**post)
            bar.update(n)
        if not math.isfinite(last["return_mean"]) or not math.isfinite(last.get("critic_loss", 0.0)):
            raise FloatingPointError(f"non-finite metrics at iteration {it}: {last}")

    def save(it, state):
        ckpt.save(it, state, {"iteration": it, "env_steps": it * cfg.batch_steps, "return_mean": last["return_mean"]})

    evaluator = HeldOutEvaluator(trainer.meta_env, trainer.actor, cfg.eval_episodes) if cfg.eval_every else None
    evaluate = (lambda it, st: evaluator.row_fields(st.actor_params)) if evaluator else None
    loop = ChunkLoop(cfg, start, max_seconds, evaluate=evaluate)
    state = loop.run(chunk_fn, state, on_chunk, save)
    if bar is not None:
        bar.close()
    ckpt.close()
    ext.close()
    if not quiet and last:
        print(f"done: {loop.it} iterations, {loop.it * cfg.batch_steps} env steps, "
              f"mean return {last['return_mean']:.2f} ({loop.timing()})")
        print(f"report: {report_command(out)}")
    return state, last
