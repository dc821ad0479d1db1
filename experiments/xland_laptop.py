"""The XLand laptop result (issue 20, item 6): RL² (GRU), RL³ (Markov) and RL³-coarse (Markov) on the default
xland family (R1 9×9, trivial preset) at equal env-step budgets, evaluated on held-out rule sets (disjoint from
the training set) with random, model-greedy and model-epsilon-greedy (on the RL³ estimator's Q) beside, written
to ``docs/results/xland/laptop/`` with the commit, the machine and the wall times.

    .venv/bin/python experiments/xland_laptop.py --quick      # smoke run (a few minutes)
    .venv/bin/python experiments/xland_laptop.py              # the result (cpu-xland preset: 40 × 32 × 512 steps)

Every step is an ``rl3jax`` command run in this process (``train``, ``eval --run``, ``eval --policy``).
Sizes other than the preset's: ``--iters``, ``--num-envs``, ``--horizon``, ``--episodes``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rl3jax.cli import main as rl3jax  # noqa: E402
from rl3jax.outputs import atomic_write, atomic_write_json  # noqa: E402

#: folder, label, algo, model
RUNS = (("rl2-gru", "RL² (GRU)", "rl2", "gru"), ("rl3-markov", "RL³ (Markov)", "rl3", "markov"),
        ("rl3-coarse-markov", "RL³-coarse (Markov)", "rl3_coarse", "markov"))


def _eval(argv: list[str], path: str) -> dict:
    if rl3jax(["eval", *argv, "--json", path]):
        raise RuntimeError(f"rl3jax eval {' '.join(argv)} failed")
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "xland", "laptop"))
    p.add_argument("--runs", default=os.path.join(ROOT, "runs", "xland-laptop"), help="the run folders")
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--horizon", type=int, default=512)
    p.add_argument("--episodes", type=int, default=500, help="held-out rule sets, one meta-episode each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 3 iterations of 8 envs at H = 128, 32 episodes")
    a = p.parse_args(argv)
    if a.quick:
        a.iters, a.num_envs, a.horizon, a.episodes = 3, 8, 128, 32
    os.makedirs(a.out, exist_ok=True)
    rows, t0 = [], time.time()
    for policy in ("random", "model-greedy", "model-epsilon-greedy"):  # the baselines that fit (no oracle)
        res = _eval(["--policy", policy, "--env", "xland", "--horizon", str(a.horizon), "--episodes",
                     str(a.episodes)], os.path.join(a.out, f"{policy}.json"))
        rows.append({"label": policy, "mean": res["mean_return"], "stderr": res["stderr"], "train_s": 0.0})
    for folder, label, algo, model in RUNS:
        run = os.path.join(a.runs, folder)
        t = time.time()
        if rl3jax(["train", "--env", "xland", "--algo", algo, "--model", model, "--iters", str(a.iters),
                   "--num-envs", str(a.num_envs), "--minibatch-envs", str(max(1, a.num_envs // 4)), "--horizon",
                   str(a.horizon), "--seed", str(a.seed), "--out", run, "--no-progress", "--set", "eval_every=0"]):
            raise RuntimeError(f"training {label} failed")
        train_s = time.time() - t
        for greedy in (False, True):
            res = _eval(["--run", run, "--episodes", str(a.episodes)] + ["--greedy"] * greedy,
                        os.path.join(a.out, f"{folder}{'-greedy' * greedy}.json"))
            rows.append({"label": label + " greedy" * greedy, "mean": res["mean_return"], "stderr": res["stderr"],
                         "train_s": train_s})
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    meta = {"commit": commit.stdout.strip(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "settings": {k: getattr(a, k) for k in ("iters", "num_envs", "horizon", "episodes", "seed")},
            "env_steps_per_run": a.iters * a.num_envs * a.horizon, "wall_s": time.time() - t0}
    atomic_write_json(os.path.join(a.out, "laptop.json"), {**meta, "rows": rows})
    table = ["| policy | held-out mean return ± s.e. | training wall time (s) |", "|---|---|---|"]
    table += [f"| {r['label']} | {r['mean']:.3f} ± {r['stderr']:.3f} | {r['train_s']:.0f} |" for r in rows]
    atomic_write(os.path.join(a.out, "README.md"), "\n".join([
        "# XLand-MiniGrid laptop result (R1 9×9, trivial preset, held-out rule sets)", "",
        f"`python experiments/xland_laptop.py{' --quick' if a.quick else ''}` at commit {meta['commit']} on "
        f"{meta['machine']}, {meta['date']}: {meta['env_steps_per_run']:,} env steps per run (H = {a.horizon}), "
        f"{a.episodes} held-out rule sets, {meta['wall_s'] / 60:.1f} min in all.", "", *table, ""]))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
