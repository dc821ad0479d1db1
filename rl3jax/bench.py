"""``rl3jax bench``: end-to-end meta-training throughput (rollout + estimator + PPO update), after compile.

Each workload compiles one jitted chunk of PPO iterations (timed separately as ``compile_seconds``), runs it
``repeats`` times and reports the median env-steps/s. Stage timings (rollout incl. estimator; PPO update)
show which stage dominates. Absolute numbers mean something only on an accelerator; on CPU use the ratios.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import time

import jax

from rl3jax import distributed
from rl3jax.config import TrainConfig
from rl3jax.outputs import atomic_write_json
from rl3jax.runs.population import jit_chunk, make_population
from rl3jax.trainer import make_train


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
    # 13x13 grids at the paper's batch: 33600 steps = 96 envs x H=350, 12-sequence minibatches
    grid = dict(horizon=30, num_envs=16, minibatch_envs=4, epochs=2) if quick else \
        dict(horizon=350, num_envs=96, minibatch_envs=12, epochs=8)
    for algo in ("rl2", "rl3", "rl3_coarse"):
        out.append(dict(name=f"grid13-{algo}-transformer", env="grid13", algo=algo, model="transformer",
                        iters=iters, **grid))
    # RL³ with the discovery-indexed estimator where the grid estimator serves by default; and on garnets of 64
    # and 4096 states, whose RL³ cost follows H, not |S| (issue 18)
    out.append(dict(name="grid13-rl3-discovery-transformer", env="grid13", algo="rl3", model="transformer",
                    estimator="discovery", iters=iters, **grid))
    for variant, size in (("train", "s64"), ("s4096", "s4096")):
        for algo in ("rl2", "rl3"):
            out.append(dict(name=f"garnet-{size}-{algo}-transformer", env="garnet", variant=variant, algo=algo,
                            model="transformer", iters=iters, **base))
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


def _chunk_memory(compiled):
    """Device bytes the compiled chunk needs (arguments + outputs + temporaries − donated aliases), from XLA's
    buffer assignment: per workload, unlike the process-wide ``peak_bytes_in_use``."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def _mb(n) -> str:
    return "?" if n is None else f"{n / 2**20:.0f}"


def _median_time(chunk, state, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``chunk(state) -> (state, metrics)``, each on the state the last
    one returned (the state is donated)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = chunk(state)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_workload(w: dict, repeats: int = 3, overrides: dict | None = None) -> dict:
    w = dict(w)
    name = w.pop("name")
    overrides = dict(overrides or {})
    cfg = TrainConfig(**{**w, **overrides}, chunk_iters=w["iters"])
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    n = cfg.iters
    t0 = time.perf_counter()
    compiled = jax.jit(trainer.chunk, static_argnums=1).lower(state, n).compile()
    compile_s = time.perf_counter() - t0
    state = jax.block_until_ready(compiled(state))[0]  # warm-up
    t_chunk = _median_time(compiled, state, repeats)
    # stage breakdown: one rollout (incl. estimator)
    collect = jax.jit(trainer.collect)
    key = jax.random.key(1)
    jax.block_until_ready(collect(state.actor_params, key))
    t_roll = _median_time(lambda s: (s, collect(state.actor_params, key)), state, repeats)
    steps = n * cfg.batch_steps
    return {"workload": name, "env": cfg.env, "variant": cfg.variant, "estimator": cfg.estimator, "algo": cfg.algo,
            "model": cfg.model, "horizon": cfg.horizon,
            "num_envs": cfg.num_envs, "minibatch_envs": cfg.minibatch_envs, "epochs": cfg.epochs,
            "iters_per_chunk": n, "steps_per_second": steps / t_chunk,
            "rollout_steps_per_second": cfg.batch_steps / t_roll,
            "update_share": max(0.0, 1.0 - n * t_roll / t_chunk),
            "compile_seconds": compile_s, "chunk_memory_bytes": _chunk_memory(compiled),
            "peak_memory_bytes": _peak_memory(), "device": _device_name(),
            "overrides": overrides}


def run_bench(quick: bool = False, json_path: str | None = None, only: str | None = None,
              repeats: int = 3, overrides: dict | None = None) -> list[dict]:
    """Every workload (or those in ``only``), each with the config ``overrides`` applied."""
    ws = workloads(quick)
    if only:
        names = only.split(",")  # run in the order given
        by_name = {w["name"]: w for w in ws}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown workloads {unknown}; valid: {', '.join(by_name)}")
        ws = [by_name[n] for n in names]
    records = []
    print(f"{'workload':34s} {'H':>4s} {'envs':>5s} {'steps/s':>11s} {'rollout/s':>11s} {'update%':>7s} "
          f"{'compile s':>9s} {'mem MB':>7s}  device")
    for w in ws:
        r = bench_workload(w, repeats, overrides)
        records.append(r)
        print(f"{r['workload']:34s} {r['horizon']:4d} {r['num_envs']:5d} {r['steps_per_second']:11,.0f} "
              f"{r['rollout_steps_per_second']:11,.0f} {100 * r['update_share']:6.1f}% {r['compile_seconds']:9.1f} "
              f"{_mb(r['chunk_memory_bytes']):>7s}  {r['device']}", flush=True)
        _dump(records, json_path)
    # RL³ / RL² cost ratio per (env, variant, model, workload family)
    by = {(r["env"], r["variant"], r["model"], r["num_envs"], r["algo"], r["estimator"]): r for r in records}
    for (env, variant, model, ne, algo, estimator), r in by.items():
        rl2 = by.get((env, variant, model, ne, "rl2", "auto"))
        if algo in ("rl3", "rl3_coarse") and rl2:
            print(f"  {algo}/rl2 time per step, {env} {variant} {model} {ne} envs, estimator {estimator}: "
                  f"{rl2['steps_per_second'] / r['steps_per_second']:.3f}")
    return records


# ------------------------------------------------------------------------------------------ scaling
def scaling_workload(quick: bool) -> dict:
    """One fixed workload (the same global batch at every device count: strong scaling)."""
    if quick:
        return dict(env="mdp", algo="rl3", model="gru", horizon=20, num_envs=64, minibatch_envs=16, epochs=2,
                    iters=2)
    return dict(env="mdp", algo="rl3", model="transformer", horizon=100, num_envs=320, minibatch_envs=32,
                epochs=8, iters=5)


def _time_chunk(run, n: int, repeats: int) -> tuple[float, float]:
    """(median seconds of a chunk of ``n`` iterations, seconds of the first: compile + warm-up) of population
    ``run`` (``population.make_population``)."""
    chunk = jit_chunk(run)
    t0 = time.perf_counter()
    state, m = chunk(run.init_state(), n)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    return _median_time(lambda s: chunk(s, n), state, repeats), compile_s


def bench_scaling(quick: bool = False, devices: list[int] | None = None, seeds: list[int] | None = None,
                  repeats: int = 3, json_path: str | None = None, workload: dict | None = None) -> list[dict]:
    """Steps/s of one workload at 1, 2, 4, 8 devices (env axis split, params replicated) and with K vmapped
    seeds on one device. Device efficiency = steps/s(n) / (n · steps/s(1)); for seeds, steps/s counts every
    member's steps and the speed-up is against one seed (K seeds one after another would give 1.0)."""
    w = dict(workload or scaling_workload(quick))
    cfg = TrainConfig(**w, chunk_iters=w["iters"])
    n_iter = cfg.iters
    avail = len(jax.local_devices())
    if devices is None:  # the default: 1, 2, 4, 8 as far as the machine has devices
        devices = [d for d in (1, 2, 4, 8) if d <= avail and cfg.num_envs % d == 0]
    else:  # asked for explicitly: honoured or refused, never skipped
        too_many = [d for d in devices if d > avail]
        if too_many:
            raise ValueError(f"--devices {','.join(map(str, devices))}: {too_many} exceed the {avail} local "
                             f"devices (on a CPU, --cpu-devices N fakes N)")
        uneven = [d for d in devices if cfg.num_envs % d]
        if uneven:
            raise ValueError(f"--devices {','.join(map(str, devices))}: the workload's {cfg.num_envs} tasks do "
                             f"not split evenly over {uneven} devices")
    seeds = seeds or [1, 2, 4, 8]
    records = []
    print(f"scaling: {cfg.env} {cfg.algo} {cfg.model}, H={cfg.horizon}, {cfg.num_envs} envs, minibatch "
          f"{cfg.minibatch_envs}, {cfg.epochs} epochs, {n_iter} iterations per timed chunk; "
          f"{avail} {jax.devices()[0].platform} devices available")
    print(f"{'devices':>7s} {'seeds':>5s} {'envs/device':>11s} {'steps/s':>12s} {'speed-up':>8s} "
          f"{'efficiency':>10s} {'compile s':>9s}")
    base = {}
    for kind, d, k in [("devices", d, 1) for d in devices] + [("seeds", 1, k) for k in seeds]:
        run = make_population(cfg, mesh=distributed.make_mesh(d)) if kind == "devices" else \
            make_population(cfg, seeds=k)
        t, c = _time_chunk(run, n_iter, repeats)
        sps = k * n_iter * cfg.batch_steps / t
        base.setdefault(kind, sps)
        rec = {"kind": kind, "devices": d, "seeds": k, "envs_per_device": cfg.num_envs * k // d,
               "steps_per_second": sps, "speedup": sps / base[kind],
               "efficiency": sps / (d * base[kind]) if kind == "devices" else None, "compile_seconds": c,
               "device": _device_name(), **w}
        records.append(rec)
        _dump(records, json_path)
        eff = f"{rec['efficiency']:10.2f}" if kind == "devices" else f"{'':>10s}"
        print(f"{d:7d} {k:5d} {rec['envs_per_device']:11d} {sps:12,.0f} {rec['speedup']:8.2f} {eff} {c:9.1f}",
              flush=True)
    return records


# ------------------------------------------------------------------------------------------ populations
def _separate_run(w: dict, seed: int, repeats: int, barrier, out) -> None:
    """One of K separate runs, in its own process: compile and warm up a population of one, wait for the others
    (``barrier``), time ``repeats`` chunks; puts (start, end, compile seconds) on the queue ``out``."""
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # K processes share one accelerator's memory
    run = make_population(TrainConfig(**{**w, "seed": seed}, chunk_iters=w["iters"]))
    chunk = jit_chunk(run)
    t0 = time.perf_counter()
    state, m = chunk(run.init_state(), w["iters"])
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    barrier.wait()
    t0 = time.time()
    for _ in range(repeats):
        state, m = chunk(state, w["iters"])
    jax.block_until_ready(m)
    out.put((t0, time.time(), compile_s))


def _separate_runs(w: dict, k: int, repeats: int) -> tuple[float, float]:
    """(seconds of ``repeats`` chunks of K runs at once, from the first start to the last end; median compile
    seconds) of ``k`` processes (spawned: a fork of a process that has started JAX is unsafe)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_separate_run, args=(w, w.get("seed", 0) + i, repeats, barrier, out))
             for i in range(k)]
    for p in procs:
        p.start()
    got = []
    try:
        while len(got) < k:
            try:
                got.append(out.get(timeout=1.0))
            except queue.Empty:  # a run that died never reports (and its peers wait at the barrier)
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError(f"a separate run failed (exit codes {[p.exitcode for p in procs]})") from None
    finally:
        for p in procs:
            if len(got) < k:
                p.terminate()
            p.join()
    return max(g[1] for g in got) - min(g[0] for g in got), statistics.median(g[2] for g in got)


def bench_population(quick: bool = False, members: list[int] | None = None, repeats: int = 3,
                     json_path: str | None = None, workload: dict | None = None) -> list[dict]:
    """Aggregate env-steps/s (every member's steps) of K members of one workload (``scaling_workload``), K in
    ``members`` [1, 4, 16]: trained as one vmapped population in one program, against K separate runs at once
    (K processes, each a population of one, timed over the same window after all have compiled: what launching K
    runs gives). ``ratio``: one program's steps/s over the separate runs'. Records as ``bench_scaling``'s."""
    w = dict(workload or scaling_workload(quick))
    cfg = TrainConfig(**w, chunk_iters=w["iters"])
    members = members or [1, 4, 16]
    steps = w["iters"] * cfg.batch_steps
    print(f"population: {cfg.env} {cfg.algo} {cfg.model}, H={cfg.horizon}, {cfg.num_envs} envs per member, "
          f"{w['iters']} iterations per chunk, {repeats} timed chunks; {os.cpu_count()} CPU cores")
    print(f"{'members':>7s} {'one program steps/s':>20s} {'separate runs steps/s':>22s} {'ratio':>6s} "
          f"{'compile s (one / separate)':>27s}")
    records = []
    for k in members:
        t_one, c_one = _time_chunk(make_population(cfg, seeds=k), w["iters"], repeats)
        t_sep, c_sep = _separate_runs(w, k, repeats)
        one, sep = k * steps / t_one, k * steps * repeats / t_sep
        records.append({"members": k, "one_program_steps_per_second": one, "separate_runs_steps_per_second": sep,
                        "ratio": one / sep, "one_program_compile_seconds": c_one,
                        "separate_run_compile_seconds": c_sep, "repeats": repeats, "device": _device_name(), **w})
        _dump(records, json_path)
        print(f"{k:7d} {one:20,.0f} {sep:22,.0f} {one / sep:6.2f} {c_one:13.1f} / {c_sep:.1f}", flush=True)
    return records


def _dump(records: list[dict], json_path: str | None) -> None:
    if json_path:  # after every record, so a run cut short keeps what it measured
        atomic_write_json(json_path, records)
