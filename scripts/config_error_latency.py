#!/usr/bin/env python3
"""Benchmark (not a test): wall time from starting ``python -m rl3jax ...`` to its config error.

Runs each failing command of issue 9 (a mistyped env, an algorithm the env cannot serve, seeds and values out of
range, an output folder that is a file, ...) ``--repeats`` times in a fresh process and reports the median
time per command and over all of them. Every command must exit with status 2 and one line on stderr; the script
says so when one does not.

    .venv/bin/python scripts/config_error_latency.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = ["--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "2",
     "--minibatch-envs", "2"]


def cases(tmp: str) -> list[list[str]]:
    f = os.path.join(tmp, "a-file")
    with open(f, "w") as fh:
        fh.write("x")
    out = os.path.join(tmp, "R")
    return [
        ["train", *T, "--env", "mpd", "--out", out],
        ["train", "--env", "CartPole-v1", "--out", out],
        ["train", *T, "--env", "PointRobot-misc", "--out", out],
        ["train", *T, "--seed", "18446744073709551616", "--out", out],
        ["train", *T, "--set", "ent_coef=inf", "--out", out],
        ["train", *T, "--set", "vf_coef=-1", "--out", out],
        ["train", *T, "--max-seconds", "nan", "--out", out],
        ["train", *T, "--out", os.path.join(f, "R")],
        ["train", *T, "--resume", "--out", out],
        ["bench", "--scaling", "--devices", "0,abc"],
        ["render", "--samples", "--variant", "dense", "--out", os.path.join(tmp, "s.png")],
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="runs per command (the median is reported)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    all_times, bad = [], []
    with tempfile.TemporaryDirectory() as tmp:
        commands = cases(tmp)
        for argv_ in commands:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "rl3jax", *argv_], cwd=ROOT, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if r.returncode != 2 or len(r.stderr.strip().splitlines()) != 1:
                    bad.append((argv_, r.returncode, r.stderr.strip()[-300:]))
            all_times += times
            print(f"{statistics.median(times):6.2f} s  rl3jax {' '.join(argv_)[:100]}", flush=True)
    print(f"median time to a config error: {statistics.median(all_times):.2f} s over {len(all_times)} runs "
          f"({len(commands)} commands x {args.repeats})")
    for argv_, rc, err in bad:
        print(f"NOT a one-line exit-2 error (status {rc}): rl3jax {' '.join(argv_)}\n  {err}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
