"""How many value-iteration sweeps the vmapped grid estimator runs per env step (the slowest of 96 tasks)
against what each task needs on its own: the device-independent cost driver of RL³ on grids (BENCHMARKS.md).
Uniform random actions, 13x13, H=350, the paper's 96 tasks. Usage: .venv/bin/python scripts/grid_sweeps.py"""
import jax
import numpy as np

from rl3jax.config import TrainConfig
from rl3jax.rollout import sample_tasks
from rl3jax.trainer import make_meta_env


def sweeps(algo: str) -> None:
    cfg = TrainConfig(env="grid13", algo=algo, horizon=350, num_envs=96, minibatch_envs=12)
    me = make_meta_env(cfg)
    n = me.num_actions
    @jax.jit
    def stats(key):
        tasks = sample_tasks(me, key, cfg.num_envs)
        k_reset, k_run = jax.random.split(key)
        obs, st = jax.vmap(me.reset)(jax.random.split(k_reset, cfg.num_envs), tasks)
        def one(c, k):
            st = c
            k1, k2 = jax.random.split(k)
            a = jax.random.randint(k1, (cfg.num_envs,), 0, n)
            _, st, r, _, _ = jax.vmap(me.step)(jax.random.split(k2, cfg.num_envs), st, a, tasks)
            s = st.est.sweeps
            return st, (s.max(), s.mean(), st.est.known.sum(-1).mean())
        _, (mx, mn, known) = jax.lax.scan(one, st, jax.random.split(k_run, cfg.horizon))
        return mx, mn, known
    mx, mn, known = map(np.asarray, stats(jax.random.key(0)))
    print(f"{algo}: per env step, sweeps max over 96 tasks: mean {mx.mean():.1f} (median {np.median(mx):.0f}); "
          f"mean over tasks {mn.mean():.1f}; total sequential sweeps per meta-episode {mx.sum():.0f} vs "
          f"{mn.sum():.0f} if each task stopped on its own; known cells at the end {known[-1]:.0f}", flush=True)


for algo in ("rl3", "rl3_coarse"):
    sweeps(algo)
