"""Shared torso against separate actor and critic networks (``TrainConfig.shared_torso``; METHOD §4-§5): held-out
return at equal env steps and at equal training time, from run folders that evaluated during training.

Train each setting twice with ``rl3jax train`` (``--set eval_every=N``), once with ``--set shared_torso=true``,
then give all the folders; runs are paired by (env, variant, H, algo, model, seed) and their ``shared_torso``:

    for t in separate shared; do x=; [ $t = shared ] && x="--set shared_torso=true"
      RL3JAX_COMPILE_CACHE=off .venv/bin/rl3jax train --env mdp --set eval_every=5 $x --out runs/st/mdp-rl3-$t; done
    .venv/bin/python scripts/shared_torso.py runs/st/* [--out docs/results/shared-torso/table.md]

(``RL3JAX_COMPILE_CACHE=off``: training seconds include compilation, so both runs should compile cold.) Runs pair
when every config field but ``shared_torso`` and the run-control ones (``iters``, ``RUN_CONTROL``) agree; a run
without its twin, or two runs of one setting and torso, is refused. Per pair: equal env steps, each variant's stochastic held-out return at the last evaluation both runs reached;
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
from rl3jax.config import RUN_CONTROL, TrainConfig  # noqa: E402
from rl3jax.outputs import atomic_write, check_output_file  # noqa: E402
from rl3jax.plots import wall_seconds  # noqa: E402

#: fields two runs of a pair may differ in (besides ``shared_torso``)
FREE = ("iters", *RUN_CONTROL)
#: the setting columns of the table
SHOWN = ("env", "variant", "horizon", "algo", "model", "seed")


def read_run(folder: str) -> dict:
    """A run folder's config and its evaluations during training: [{env_steps, seconds, return, stderr}].
    ValueError (one line) for a folder that is not a single run with evaluations during training."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            cfg = TrainConfig.from_dict(json.load(f))
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{folder}: not a run folder of `rl3jax train` (a population's members are its "
                         f"subfolders): {getattr(e, 'strerror', None) or e}") from None
    seconds = wall_seconds(rows, cfg.batch_steps)
    evals = [{"env_steps": r["env_steps"], "seconds": float(s), "return": r["eval_return"],
              "stderr": r["eval_stderr"]} for r, s in zip(rows, seconds) if "eval_return" in r]
    if not evals:
        raise ValueError(f"{folder} has no evaluations during training (train with --set eval_every=N)")
    return {"folder": folder, "cfg": cfg, "evals": evals, "seconds": float(seconds[-1])}


def pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
    """(separate, shared) per setting: runs whose configs agree but for ``shared_torso`` and ``FREE``.
    ValueError naming a run without its twin, or two runs of one setting and torso."""
    groups: dict = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r["cfg"].to_dict().items() if k not in (*FREE, "shared_torso")},
                         sort_keys=True, default=str)
        torso = r["cfg"].shared_torso
        if torso in groups.setdefault(key, {}):
            raise ValueError(f"{groups[key][torso]['folder']} and {r['folder']}: two runs of one setting with "
                             f"shared_torso={torso}; give one of each")
        groups[key][torso] = r
    if lonely := [r["folder"] for g in groups.values() if len(g) == 1 for r in g.values()]:
        raise ValueError(f"no twin of the same settings with the other shared_torso for: {', '.join(lonely)}")
    return [(g[False], g[True]) for g in groups.values()]


def compare(a: dict, b: dict) -> list[dict]:
    """Rows for the pair (separate ``a``, shared ``b``): each at equal env steps and at equal training seconds."""
    steps = min(a["evals"][-1]["env_steps"], b["evals"][-1]["env_steps"])
    budget = min(a["seconds"], b["seconds"])
    out = []
    for r in (a, b):
        at_steps = [e for e in r["evals"] if e["env_steps"] <= steps][-1]
        at_time = ([e for e in r["evals"] if e["seconds"] <= budget + 1e-9] or [None])[-1]  # None: no evaluation
        out.append({"run": os.path.basename(os.path.normpath(r["folder"])), "shared_torso": r["cfg"].shared_torso,
                    "env_steps": r["evals"][-1]["env_steps"], "seconds": r["seconds"],
                    "steps_per_second": r["evals"][-1]["env_steps"] / r["seconds"], "at_steps": at_steps,
                    "at_time": at_time})
    return out


def table(runs: list[dict]) -> str:
    """The markdown table of ``pairs(runs)`` (ValueError as ``pairs``); "–": no evaluation within the time."""
    lines = ["| setting | torso | env steps | training s | env steps/s | return at equal steps (steps) | "
             "return at equal time (s) |", "|" + "---|" * 7]
    for sep, sha in sorted(pairs(runs), key=lambda p: p[0]["folder"]):
        env, variant, h, algo, model, seed = (getattr(sep["cfg"], k) for k in SHOWN)
        for row in compare(sep, sha):
            s, t = row["at_steps"], row["at_time"]
            at_t = "–" if t is None else f"{t['return']:.2f} ± {t['stderr']:.2f} ({t['seconds']:.0f})"
            lines.append(f"| {env}/{variant} H={h} {algo} {model} seed {seed} | "
                         f"{'shared' if row['shared_torso'] else 'separate'} | {row['env_steps']:,} | "
                         f"{row['seconds']:.0f} | {row['steps_per_second']:,.0f} | {s['return']:.2f} ± "
                         f"{s['stderr']:.2f} ({s['env_steps']:,}) | {at_t} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (both torsos of each setting)")
    ap.add_argument("--out", default=None, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    try:
        check_output_file(args.out, "--out")
        md = table([read_run(folder) for folder in args.runs])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write(args.out, md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
