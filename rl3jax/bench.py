"""``rl3jax bench``: end-to-end meta-training throughput (rollout + estimator + PPO update), after compile.

Each workload compiles one jitted chunk of PPO iterations (timed separately as ``compile_seconds``), runs it
``repeats`` times and reports the median env-steps/s. Stage timings (rollout incl. estimator; PPO update)
show which stage dominates. Absolute numbers mean something only on an accelerator; on CPU use the ratios.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp

from rl3jax.config import TrainConfig
from rl3jax.train import make_train


def workloads(quick: bool) -> list[dict]:
    """(name, config overrides). Paper batch: 32000 steps = 320 envs x H=100, 32-sequence minibatches."""
    out = []
    if quick:
        base = dict(horizon=20, num_envs=32, minibatch_envs=8, epochs=2)
        iters = 2
    else:
        base = dict(horizon=100, num_envs=320, minibatch_envs=32, epochs=8)
        iters = 5
    for env in ("bandit", "mdp"):
        for model in ("transformer", "gru"):
            for algo in ("rl2", "rl3"):
                out.append(dict(name=f"{env}-{algo}-{model}", env=env, algo=algo, model=model, iters=iters, **base))
    many = dict(horizon=20, num_envs=256, minibatch_envs=64, epochs=2) if quick else \
        dict(horizon=100, num_envs=4096, minibatch_envs=512, epochs=8)
    for algo in ("rl2", "rl3"):
        out.append(dict(name=f"many-mdp-{algo}-transformer", env="mdp", algo=algo, model="transformer",
                        iters=iters, **many))
    return out


def _device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}".rstrip(":")


def _peak_memory():
    try:
        stats = jax.devices()[0].memory_stats()
        return int(stats.get("peak_bytes_in_use")) if stats else None
    except Exception:  # CPU backends may not report memory
        return None


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_workload(w: dict, repeats: int = 3) -> dict:
    w = dict(w)
    name = w.pop("name")
    cfg = TrainConfig(**w, chunk_iters=w["iters"]).validate()
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    n = cfg.iters
    t0 = time.perf_counter()
    compiled = jax.jit(trainer.chunk, static_argnums=1).lower(state, n).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state))  # warm-up
    holder = {"s": state}

    def run():
        holder["s"], m = compiled(holder["s"])
        return m

    t_chunk = _median_time(run, repeats)
    # stage breakdown: one rollout (incl. estimator), one PPO update on a fixed batch
    collect = jax.jit(trainer.collect)
    key = jax.random.key(1)
    jax.block_until_ready(collect(state.actor_params, key))
    t_roll = _median_time(lambda: collect(state.actor_params, key), repeats)
    steps = n * cfg.batch_steps
    rec = {"workload": name, "env": cfg.env, "algo": cfg.algo, "model": cfg.model, "horizon": cfg.horizon,
           "num_envs": cfg.num_envs, "minibatch_envs": cfg.minibatch_envs, "epochs": cfg.epochs,
           "iters_per_chunk": n, "steps_per_second": steps / t_chunk,
           "rollout_steps_per_second": cfg.batch_steps / t_roll,
           "update_share": max(0.0, 1.0 - n * t_roll / t_chunk),
           "compile_seconds": compile_s, "peak_memory_bytes": _peak_memory(), "device": _device_name()}
    return rec


def run_bench(quick: bool = False, json_path: str | None = None, only: str | None = None,
              repeats: int = 3) -> list[dict]:
    ws = workloads(quick)
    if only:
        names = set(only.split(","))
        unknown = names - {w["name"] for w in ws}
        if unknown:
            raise ValueError(f"unknown workloads {sorted(unknown)}; valid: {', '.join(w['name'] for w in ws)}")
        ws = [w for w in ws if w["name"] in names]
    records = []
    print(f"{'workload':34s} {'H':>4s} {'envs':>5s} {'steps/s':>11s} {'rollout/s':>11s} {'update%':>7s} "
          f"{'compile s':>9s}  device")
    for w in ws:
        r = bench_workload(w, repeats)
        records.append(r)
        print(f"{r['workload']:34s} {r['horizon']:4d} {r['num_envs']:5d} {r['steps_per_second']:11,.0f} "
              f"{r['rollout_steps_per_second']:11,.0f} {100 * r['update_share']:6.1f}% {r['compile_seconds']:9.1f}  "
              f"{r['device']}", flush=True)
        if json_path:
            with open(json_path, "w") as f:
                json.dump(records, f, indent=2)
    # RL³ / RL² cost ratio per (env, model, workload family)
    by = {(r["env"], r["model"], r["num_envs"], r["algo"]): r for r in records}
    for (env, model, ne, algo), r in by.items():
        if algo == "rl3" and (env, model, ne, "rl2") in by:
            ratio = by[(env, model, ne, "rl2")]["steps_per_second"] / r["steps_per_second"]
            print(f"  RL³/RL² time per step, {env} {model} {ne} envs: {ratio:.3f}")
    return records
