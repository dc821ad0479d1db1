"""Old against new RL³ estimator: seconds of one vmapped meta-episode rollout with estimator updates (uniform
random actions, no policy), compiled once, median of ``--repeats`` runs. Workloads: mdp (H 100, 320 tasks; dense
``QEstimator`` vs ``DiscoveryQEstimator``), grid13 (H 350, 96 tasks; ``GridQEstimator`` vs ``DiscoveryQEstimator``,
rl3; rl3_coarse: the discovery estimator alone, which serves it since it measured 0.54-0.69 of the grid
estimator's coarse path, deleted then). ``--segment-sum onehot`` swaps the discovery estimator's scatter-add for a one-hot matmul
(the alternative measured). Usage: .venv/bin/python scripts/bench_estimators.py [--repeats 5] [--only grid13]"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from rl3jax.config import TrainConfig
from rl3jax.envs.registry import make_env
from rl3jax.estimators import discovery, make_estimator
from rl3jax.estimators.discovery import DiscoveryQEstimator
from rl3jax.meta_episode import MetaEnv

WORKLOADS = (("mdp", "rl3", 100, 320), ("grid13", "rl3", 350, 96), ("grid13", "rl3_coarse", 350, 96))


def discovery_like(old, h: int, sweep_block: int | None) -> DiscoveryQEstimator:
    """The discovery estimator with the settings of ``old`` (a dense or grid estimator) for H = ``h``."""
    kw = {f: getattr(old, f) for f in ("num_actions", "gamma", "epsilon", "max_sweeps", "q_denom", "num_states",
                                       "alpha_laplace", "warm_start", "mode", "known_states")}
    if getattr(old, "abstraction", None):
        kw.update(abstraction=old.abstraction, grid_side=old.grid_side)
    cap = old.num_states if old.known_states == "all" else min(old.num_states, 2 * h + 1)
    if sweep_block is not None:
        kw.update(sweep_block=sweep_block)
    return DiscoveryQEstimator(capacity=cap, max_transitions=h, **kw)


def rollout_fn(menv: MetaEnv, num: int):
    def one(task, k):
        k0, k1 = jax.random.split(k)
        _, st = menv.reset(k0, task)

        def body(st, k):
            ka, ks = jax.random.split(k)
            _, st, r, _, _ = menv.step(ks, st, jax.random.randint(ka, (), 0, menv.num_actions), task)
            return st, r
        st, r = jax.lax.scan(body, st, jax.random.split(k1, menv.horizon))
        return r.sum(), menv.estimator.sweeps(st.est)

    def run(key):
        tasks = jax.vmap(menv.env.sample_task)(jax.random.split(key, num))
        return jax.vmap(one)(tasks, jax.random.split(key, num))
    return jax.jit(run)


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.key(0)))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.key(i + 1)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def onehot_segment_sum(x, seg, num):
    return jnp.einsum("es,e...->s...", jax.nn.one_hot(seg, num, dtype=x.dtype), x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default=None, help="a family name (mdp, grid13)")
    p.add_argument("--segment-sum", choices=("scatter", "onehot"), default="scatter")
    p.add_argument("--sweep-block", type=int, default=None, help="the discovery estimator's (default: its own)")
    p.add_argument("--new-only", action="store_true", help="time only the discovery estimator")
    args = p.parse_args()
    if args.segment_sum == "onehot":
        discovery.segment_sum = onehot_segment_sum
    print(f"device {jax.devices()[0].device_kind}; segment sum: {args.segment_sum}")
    for family, algo, h, num in WORKLOADS:
        if args.only and args.only != family:
            continue
        env = make_env(family).with_horizon(h)
        old = make_estimator(env, TrainConfig(env=family, algo=algo, horizon=h))
        row = []
        new = discovery_like(old, h, args.sweep_block)
        for est in (new,) if args.new_only or old == new else (old, new):
            sec, comp = median_seconds(rollout_fn(MetaEnv(env, h, est), num), args.repeats)
            row.append(sec)
            print(f"{family} {algo} H={h} tasks={num} {type(est).__name__}: median {sec:.3f} s "
                  f"({num * h / sec:,.0f} env steps/s; compile {comp:.1f} s)", flush=True)
        if len(row) == 2:
            print(f"  new/old = {row[1] / row[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
