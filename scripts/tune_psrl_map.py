"""Tunes ``psrl-map``'s parameters on tuning tasks, never the held-out ones (BENCHMARKS.md, "Grids").

    .venv/bin/python scripts/tune_psrl_map.py ENV H NUM SETTING [SETTING ...]

ENV a grid family (``grid11``, ``grid13``), H the meta horizon, NUM tasks drawn with the key ``TUNE_SEED`` (not
``evaluate.TEST_SEED``), each SETTING ``key=value[,key=value]`` of psrl-map's parameters (``-``: the defaults).
Prints one line per setting: mean return ± standard error over the NUM tasks (the same tasks and policy key for
every setting, so settings compare paired) and the seconds it took (compile included).
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

from rl3jax.baselines import make_policy
from rl3jax.config import TrainConfig
from rl3jax.meta_episode import make_meta_env
from rl3jax.rollout import rollout, sample_tasks

TUNE_SEED = 12345


def main(env: str, horizon: str, num: str, *settings: str) -> None:
    meta_env = make_meta_env(TrainConfig(env=env, horizon=int(horizon), algo="rl2"))
    tasks = sample_tasks(meta_env, jax.random.key(TUNE_SEED), int(num))
    for setting in settings:
        params = {} if setting == "-" else dict(kv.split("=", 1) for kv in setting.split(","))
        menv, consts, build = make_policy("psrl-map", meta_env, params)

        def run(consts, tasks, key, menv=menv, build=build):
            step, carry = build(consts, tasks, key)
            return rollout(menv, step, carry, tasks, key)[0].rewards

        t0 = time.perf_counter()
        ret = np.asarray(jax.jit(run)(consts, tasks, jax.random.key(7))).sum(1)
        print(f"{env} H={horizon} {setting}: {ret.mean():.1f} ± {ret.std(ddof=1) / np.sqrt(len(ret)):.1f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
