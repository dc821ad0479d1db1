"""Tunes the model-based baselines' exploration parameters (β of BEB and MBIE-EB, m of OPSRL, the R-MAX threshold
m) on tuning tasks, never on the held-out ones, and writes the table ``docs/results/baselines/tuning.md`` / ``.json``.

Tuning tasks: ``sample_tasks(fold_in(key(TUNE_SEED), stable hash of the env's name), n)``, the held-out tasks'
draw (``rl3jax.evaluate.held_out_tasks``) with another seed, TUNE_SEED = TEST_SEED + 1000 (training uses small
seeds: ``TrainConfig.seed``); the script checks that none of its tasks equals one of the first 1000 held-out
tasks (byte-equal arrays) before it runs. One meta-episode per task at the family's catalog horizon H; the
value with the highest mean return wins (ties: the first in the grid). The chosen values are the families'
``Param.tuned`` defaults in ``rl3jax/baselines/mdp.py`` (copied there by hand from the table).

Usage: .venv/bin/python scripts/tune_baselines.py [--families grid11,mdp] [--tasks 200] [--batch 100]
       [--out docs/results/baselines]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import time

import jax
import numpy as np

from rl3jax.baselines import make_policy
from rl3jax.config import TrainConfig
from rl3jax.envs.catalog import FAMILIES
from rl3jax.evaluate import TEST_SEED, held_out_tasks, summarize
from rl3jax.meta_episode import make_meta_env
from rl3jax.outputs import atomic_write, atomic_write_json
from rl3jax.rollout import rollout, sample_tasks

TUNE_SEED = TEST_SEED + 1000
BETAS = (0.1, 0.3, 1.0, 3.0, 10.0)
GRID = {"beb": ("beta", BETAS), "mbie-eb": ("beta", BETAS), "opsrl": ("m", (2, 5, 10)), "rmax": ("m", (1, 3, 10))}
# grids (rewards −1 a step, +100 at the goal; a rollout costs about 10× an mdp one): fewer, larger values
GRID_GRIDS = {"beb": ("beta", (1.0, 3.0, 10.0, 30.0, 100.0)), "mbie-eb": ("beta", (1.0, 3.0, 10.0, 30.0, 100.0)),
              "opsrl": ("m", (2, 5)), "rmax": ("m", (1, 3))}


def tuning_tasks(meta_env, num: int):
    """The first ``num`` tuning tasks of the family (see the module docstring)."""
    h = 0
    for ch in meta_env.env.name.encode():
        h = (h * 131 + ch) % 1_000_003
    return sample_tasks(meta_env, jax.random.fold_in(jax.random.key(TUNE_SEED), h), num)


def _digests(tasks, num: int) -> set[str]:
    leaves = [np.asarray(x) for x in jax.tree.leaves(tasks)]
    return {hashlib.sha256(b"".join(x[i].tobytes() for x in leaves)).hexdigest() for i in range(num)}


def score(meta_env, tasks, name: str, params: dict, batch: int) -> dict:
    """``summarize`` of baseline ``name`` with ``params`` on ``tasks`` (one meta-episode each)."""
    menv, consts, build = make_policy(name, meta_env, params)

    @jax.jit
    def run(consts, tasks, key):
        k_pol, k_roll = jax.random.split(key)
        step, carry = build(consts, tasks, k_pol)
        return rollout(menv, step, carry, tasks, k_roll)[0].rewards

    num = jax.tree.leaves(tasks)[0].shape[0]
    key = jax.random.key(TUNE_SEED + 1)
    out = [np.asarray(run(consts, jax.tree.map(lambda x, i=i: x[i:i + batch], tasks), jax.random.fold_in(key, i)))
           for i in range(0, num, batch)]
    return summarize(np.concatenate(out))


def tune_family(family: str, num: int, batch: int, policies=None, values=None) -> dict:
    """Every value of each policy's grid (``policies``: a subset; ``values``: only these values) on ``num`` tuning
    tasks; ``{"horizon", "tasks", "rows": {policy: {"param", "chosen", "trials"}}}``."""
    meta_env = make_meta_env(TrainConfig(env=family, horizon=FAMILIES[family].horizon, algo="rl2"))
    tasks = tuning_tasks(meta_env, num)
    overlap = _digests(tasks, num) & _digests(held_out_tasks(meta_env, 1000), 1000)
    if overlap:
        raise SystemExit(f"{family}: {len(overlap)} tuning tasks equal held-out tasks")
    rows = {}
    for name, (param, grid) in (GRID_GRIDS if meta_env.env.grid_side else GRID).items():
        if policies and name not in policies:
            continue
        trials = []
        for v in grid if values is None else values:
            t0 = time.perf_counter()
            res = score(meta_env, tasks, name, {param: v}, batch)
            trials.append({"value": v, "mean_return": res["mean_return"], "stderr": res["stderr"],
                           "seconds": time.perf_counter() - t0})
            print(f"{family} {name} {param}={v:g}: {res['mean_return']:.2f} ± {res['stderr']:.2f} "
                  f"({trials[-1]['seconds']:.0f} s)", flush=True)
        best = max(trials, key=lambda r: r["mean_return"])
        rows[name] = {"param": param, "chosen": best["value"], "trials": trials}
    return {"horizon": meta_env.horizon, "tasks": num, "rows": rows}


def write(out_dir: str, results: dict) -> None:
    """Adds ``results`` (family -> ``tune_family``'s) to ``tuning.json`` (trials of a value tried before are
    replaced, others kept; the best value chosen again) and rewrites ``tuning.md`` from it, both atomically."""
    os.makedirs(out_dir, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"commit": commit, "machine": platform.processor() or platform.machine(), "tune_seed": TUNE_SEED}
    path = os.path.join(out_dir, "tuning.json")
    old = json.load(open(path)) if os.path.exists(path) else {"families": {}}
    for fam, res in results.items():
        prev = old["families"].setdefault(fam, {**res, "rows": {}})
        if prev["tasks"] != res["tasks"] or prev["horizon"] != res["horizon"]:
            raise SystemExit(f"{fam}: tuned before on {prev['tasks']} tasks at H={prev['horizon']}; use the same")
        for name, row in res["rows"].items():
            new = {t["value"] for t in row["trials"]}
            trials = sorted([t for t in prev["rows"].get(name, {"trials": []})["trials"] if t["value"] not in new]
                            + row["trials"], key=lambda t: t["value"])
            best = max(trials, key=lambda t: t["mean_return"])
            prev["rows"][name] = {"param": row["param"], "chosen": best["value"], "trials": trials}
    old.update(meta)
    atomic_write_json(path, old)
    lines = ["# Tuning of the model-based baselines' exploration parameters", "",
             f"`scripts/tune_baselines.py` (commit {commit}): tuning tasks from seed {TUNE_SEED} (disjoint from the "
             "held-out tasks, checked), one meta-episode per task at the catalog horizon; mean return ± s.e. "
             "per value, the chosen one in bold (the `Param.tuned` defaults of `rl3jax/baselines/mdp.py`).", "",
             "| family | H | tasks | policy | parameter | values tried: mean return ± s.e. | seconds |", "|---|---|---|---|---|---|---|"]
    for fam, res in old["families"].items():
        for name, row in res["rows"].items():
            cells = ", ".join((f"**{t['value']:g}: {t['mean_return']:.2f} ± {t['stderr']:.2f}**"
                               if t["value"] == row["chosen"] else
                               f"{t['value']:g}: {t['mean_return']:.2f} ± {t['stderr']:.2f}") for t in row["trials"])
            secs = sum(t["seconds"] for t in row["trials"])
            lines.append(f"| {fam} | {res['horizon']} | {res['tasks']} | {name} | {row['param']} | {cells} | {secs:.0f} |")
    notes_path = os.path.join(out_dir, "tuning-notes.md")  # hand-written, kept below the table
    notes = open(notes_path).read() if os.path.exists(notes_path) else ""
    atomic_write(os.path.join(out_dir, "tuning.md"), "\n".join(lines) + "\n" + (f"\n{notes}" if notes else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="mdp,garnet,deepsea,grid11,grid13")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", default="docs/results/baselines")
    ap.add_argument("--policies", default=None, help="comma-separated subset of beb,mbie-eb,opsrl,rmax")
    ap.add_argument("--values", default=None, help="comma-separated values: only these of each grid")
    args = ap.parse_args()
    for fam in args.families.split(","):
        write(args.out, {fam: tune_family(fam, args.tasks, args.batch, args.policies and args.policies.split(","),
                                          args.values and [float(v) for v in args.values.split(",")])})


if __name__ == "__main__":
    main()
