"""Shared torso against separate actor and critic networks (``TrainConfig.shared_torso``; METHOD §4-§5): held-out
return at equal env steps and at equal training time, from run folders that evaluated during training.

Train each setting twice with ``rl3jax train`` (``--set eval_every=N``), once with ``--set shared_torso=true``,
then give all the folders; runs are paired by (env, variant, H, algo, model, seed) and their ``shared_torso``:

    for t in separate shared; do x=; [ $t = shared ] && x="--set shared_torso=true"
      .venv/bin/rl3jax train --env mdp --set eval_every=5 $x --out runs/st/mdp-rl3-$t; done
    .venv/bin/python scripts/shared_torso.py runs/st/* [--out docs/results/shared-torso/table.md]

Per pair: equal env steps, each variant's stochastic held-out return at the last evaluation both runs reached;
equal time, at its last evaluation within the shorter run's training seconds (``rl3jax.plots.wall_seconds``:
compile included, evaluations and checkpoints not). The held-out tasks are each run's ``eval_episodes`` first ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from rl3jax.config import TrainConfig  # noqa: E402
from rl3jax.plots import wall_seconds  # noqa: E402

PAIR_KEY = ("env", "variant", "horizon", "algo", "model", "seed")


def read_run(folder: str) -> dict:
    """A run folder's config and its evaluations during training: [{env_steps, seconds, return, stderr}]."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    seconds = wall_seconds(rows, cfg.batch_steps)
    evals = [{"env_steps": r["env_steps"], "seconds": float(s), "return": r["eval_return"],
              "stderr": r["eval_stderr"]} for r, s in zip(rows, seconds) if "eval_return" in r]
    if not evals:
        raise SystemExit(f"error: {folder} has no evaluations during training (train with --set eval_every=N)")
    return {"folder": folder, "cfg": cfg, "evals": evals, "seconds": float(seconds[-1])}


def compare(a: dict, b: dict) -> list[dict]:
    """Rows for the pair (separate ``a``, shared ``b``): each at equal env steps and at equal training seconds."""
    steps = min(a["evals"][-1]["env_steps"], b["evals"][-1]["env_steps"])
    budget = min(a["seconds"], b["seconds"])
    out = []
    for r in (a, b):
        at_steps = [e for e in r["evals"] if e["env_steps"] <= steps][-1]
        at_time = ([e for e in r["evals"] if e["seconds"] <= budget + 1e-9] or r["evals"][:1])[-1]
        out.append({"run": os.path.basename(os.path.normpath(r["folder"])), "shared_torso": r["cfg"].shared_torso,
                    "env_steps": r["evals"][-1]["env_steps"], "seconds": r["seconds"],
                    "steps_per_second": r["evals"][-1]["env_steps"] / r["seconds"], "at_steps": at_steps,
                    "at_time": at_time})
    return out


def table(runs: list[dict]) -> str:
    groups: dict = {}
    for r in runs:
        groups.setdefault(tuple(getattr(r["cfg"], k) for k in PAIR_KEY), {})[r["cfg"].shared_torso] = r
    lines = ["| setting | torso | env steps | training s | env steps/s | return at equal steps (steps) | "
             "return at equal time (s) |", "|" + "---|" * 7]
    for key, pair in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(pair) != 2:
            print(f"note: {' '.join(map(str, key))} has no {'shared' if False in pair else 'separate'} twin",
                  file=sys.stderr)
            continue
        for row in compare(pair[False], pair[True]):
            s, t = row["at_steps"], row["at_time"]
            lines.append(f"| {key[0]} H={key[2]} {key[3]} {key[4]} seed {key[5]} | "
                         f"{'shared' if row['shared_torso'] else 'separate'} | {row['env_steps']:,} | "
                         f"{row['seconds']:.0f} | {row['steps_per_second']:,.0f} | {s['return']:.2f} ± "
                         f"{s['stderr']:.2f} ({s['env_steps']:,}) | {t['return']:.2f} ± {t['stderr']:.2f} "
                         f"({t['seconds']:.0f}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (both torsos of each setting)")
    ap.add_argument("--out", default=None, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    md = table([read_run(folder) for folder in args.runs])
    if args.out:
        from rl3jax.outputs import atomic_write
        atomic_write(args.out, md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
