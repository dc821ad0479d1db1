#!/usr/bin/env python3
"""One command per reproduction target: every row of METHOD §6 (RL² and RL³ and the third column, evaluated in
and out of distribution) and the H-scaling sweep on MDPs.

    python experiments/reproduce.py list                        # targets, runs and budgets
    python experiments/reproduce.py mdp-h100 --dry-run          # print exactly what would run
    python experiments/reproduce.py mdp-h100                    # train every algorithm, then evaluate
    python experiments/reproduce.py grid13 --seeds 3 --algos rl3,rl3_coarse
    python experiments/reproduce.py h-scaling --stage train -- --distributed   # on every host of a pod slice
    python experiments/reproduce.py report                      # results tables + `rl3jax report` per target
    python experiments/reproduce.py all --tiny --out /tmp/t     # a tiny version of everything (smoke test)

Every step is an ordinary ``python -m rl3jax ...`` command; they run in this process (one JAX start-up), in
the order printed. A run folder that already exists is continued with ``--resume`` (so an interrupted
reproduction picks up where it stopped). Arguments after ``--`` are appended to every ``train`` command
(e.g. ``--devices 4`` or the multi-host flags; see docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.join(ROOT, "experiments")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import laptop  # noqa: E402  (experiments/laptop.py: the laptop study)

from rl3jax.config import POLICY_MODES, preset  # noqa: E402  (light: no JAX)
from rl3jax.runs import runfiles

#: assumed end-to-end throughput for the time estimates: METHOD §7, paper batch, transformer, one H100
ASSUMED_STEPS_PER_SECOND = 0.4e6
#: tiny: the same commands scaled down to a smoke test
TINY_TRAIN = ["--iters", "2", "--horizon", "10", "--num-envs", "8", "--minibatch-envs", "4",
              "--set", "epochs=1", "--set", "chunk_iters=2", "--set", "checkpoint_every=2"]
TINY_EPISODES = 8
H_SCALING = (128, 256, 512, 1024, 2048)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # folder name inside the target's folder
    label: str  # column of the results table
    algo: str
    model: str
    preset: str | None = None
    train_args: tuple[str, ...] = ()  # beyond the preset

    def config(self) -> dict:
        d = preset(self.preset) if self.preset else {}
        it = iter(self.train_args)
        for a in it:
            if a.startswith("--"):
                d[a[2:].replace("-", "_")] = next(it)
        return d


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    doc: str
    runs: tuple[Run, ...]
    variants: tuple[str, ...]  # test variants to evaluate each run on (first: in distribution)
    published: dict  # label -> published "mean ± s.e." (METHOD §6), in distribution
    oracle_horizons: tuple[int, ...] = ()  # task-knowing baseline at these H (normalised scores)
    eval_modes: tuple[str, ...] = POLICY_MODES  # policies evaluated on the test tasks


#: H=500: 32000 / 500 = 64 sequences per batch; the paper's 3200-step minibatch is 6.4 sequences, which does not
#: divide them into whole sequences, so these rows use 8-sequence minibatches (4000 steps, 8 per epoch)
H500_MINIBATCH = ("--minibatch-envs", "8")


def _row(preset_name: str, third: Run | None) -> tuple[Run, ...]:
    args = H500_MINIBATCH if preset_name.endswith("h500") else ()
    return (Run("rl2", "RL²", "rl2", "transformer", preset_name, args),
            Run("rl3", "RL³", "rl3", "transformer", preset_name, args)) + ((dataclasses.replace(third, train_args=args),) if third else ())


def _v4_row(preset_name: str, markov: bool) -> tuple[Run, ...]:
    """The paper's own code (``paper-v4-*`` presets: v4 semantics, transformer-v4); RL² gets the same network
    and the v4 input layout (the original's RL² has the one-hot task observation, no RL³ block)."""
    return (Run("rl2", "RL²", "rl2", "transformer-v4", preset_name),
            Run("rl3", "RL³", "rl3", "transformer-v4", preset_name)) + (
        (Run("rl3-markov", "RL³ (Markov)", "rl3", "markov-v4", preset_name),) if markov else ())


def _h_runs() -> tuple[Run, ...]:
    runs = []
    for h in H_SCALING:
        # the later code's MDP settings (METHOD §6 last row): batch 32768 steps, minibatch 4096 steps, entropy 0.1 -> 0
        args = ("--horizon", str(h), "--num-envs", str(32768 // h), "--minibatch-envs", str(4096 // h))
        for algo, label in (("rl2", "RL²"), ("rl3", "RL³")):
            runs.append(Run(f"{algo}-h{h}", f"{label} H={h}", algo, "transformer", "mdp-h512", args))
    return tuple(runs)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("bandit-h100", "Bernoulli bandits k=5, H=100 (paper)",
           _row("bandit-h100", Run("rl3-markov", "RL³ (Markov)", "rl3", "markov", "bandit-h100")),
           ("train", "ood"), {"RL²": "76.9 ± 0.6", "RL³": "77.5 ± 0.5", "RL³ (Markov)": "75.2 ± 0.5"}),
    Target("bandit-h500", "Bernoulli bandits k=5, H=500 (paper)",
           _row("bandit-h500", Run("rl3-markov", "RL³ (Markov)", "rl3", "markov", "bandit-h500")),
           ("train", "ood"), {"RL²": "392.1 ± 2.5", "RL³": "393.2 ± 2.7", "RL³ (Markov)": "391.8 ± 2.6"}),
    Target("mdp-h100", "random 10x5 MDPs, H=100 (paper)", _row("mdp-h100", None),
           ("train", "alpha0.25", "det-rewards"), {"RL²": "159.5 ± 0.8", "RL³": "158.9 ± 0.8"}),
    Target("mdp-h500", "random 10x5 MDPs, H=500 (paper)", _row("mdp-h500", None),
           ("train", "alpha0.25", "det-rewards"), {"RL²": "927.8 ± 3.7", "RL³": "926.9 ± 3.7"}),
    Target("grid11", "11x11 gridworlds, H=250",
           _row("grid11", Run("rl3-coarse", "RL³-coarse", "rl3_coarse", "transformer", "grid11")),
           ("train",), {"RL²": "524 ± 22", "RL³": "630 ± 22", "RL³-coarse": "613 ± 21"}),
    Target("grid13", "13x13 gridworlds, H=350, and the five out-of-distribution 13x13 families",
           _row("grid13", Run("rl3-coarse", "RL³-coarse", "rl3_coarse", "transformer", "grid13")),
           ("train", "dense", "deterministic", "watery", "dangerous", "corner"),
           {"RL²": "584 ± 28", "RL³": "902 ± 27", "RL³-coarse": "831 ± 28"}),
    Target("bandit-h512", "Bernoulli bandits, H=512 (later code)", _row("bandit-h512", None), ("train", "ood"), {}),
    Target("mdp-h512", "random MDPs, H=512 (later code)", _row("mdp-h512", None),
           ("train", "alpha0.25", "det-rewards"), {}),
    Target("h-scaling", "MDPs, H in {128, ..., 2048}: RL² and RL³ against a task-knowing oracle "
           "(METHOD §6: RL³ ≈ 0.92 of the oracle at H=2048, RL² ≈ 0.80)", _h_runs(), ("train",), {},
           oracle_horizons=H_SCALING),
    # the paper's tables with the paper's own code's semantics and networks; greedy test, as the paper did
    Target("paper-v4-bandit-h100", "Bernoulli bandits k=5, H=100: the paper's own code (v4 semantics)",
           _v4_row("paper-v4-bandit-h100", True), ("train", "ood"),
           {"RL²": "76.9 ± 0.6", "RL³": "77.5 ± 0.5", "RL³ (Markov)": "75.2 ± 0.5"}, eval_modes=("greedy",)),
    Target("paper-v4-bandit-h500", "Bernoulli bandits k=5, H=500: the paper's own code (v4 semantics)",
           _v4_row("paper-v4-bandit-h500", True), ("train", "ood"),
           {"RL²": "392.1 ± 2.5", "RL³": "393.2 ± 2.7", "RL³ (Markov)": "391.8 ± 2.6"}, eval_modes=("greedy",)),
    Target("paper-v4-mdp-h100", "random 10x5 MDPs, H=100: the paper's own code (v4 semantics)",
           _v4_row("paper-v4-mdp-h100", False), ("train", "alpha0.25", "det-rewards"),
           {"RL²": "159.5 ± 0.8", "RL³": "158.9 ± 0.8"}, eval_modes=("greedy",)),
    Target("paper-v4-mdp-h500", "random 10x5 MDPs, H=500: the paper's own code (v4 semantics)",
           _v4_row("paper-v4-mdp-h500", False), ("train", "alpha0.25", "det-rewards"),
           {"RL²": "927.8 ± 3.7", "RL³": "926.9 ± 3.7"}, eval_modes=("greedy",)),
    Target("paper-v4-grid11", "11x11 gridworlds, H=250: the paper's own code (v4 semantics, METHOD §2.6)",
           _v4_row("paper-v4-grid11", False), ("train",), {"RL²": "524 ± 22", "RL³": "630 ± 22"},
           eval_modes=("greedy",)),
    Target("paper-v4-grid13", "13x13 gridworlds, H=350: the paper's own code (v4 semantics, METHOD §2.6)",
           _v4_row("paper-v4-grid13", False), ("train", "dense", "deterministic", "watery", "dangerous", "corner"),
           {"RL²": "584 ± 28", "RL³": "902 ± 27"}, eval_modes=("greedy",)),
)}


# ------------------------------------------------------------------------------------------ commands
def run_kind(run: Run) -> str:
    return run.name.split("-h")[0]  # rl2, rl3, rl3-markov, rl3-coarse: the name without an -h{H} suffix


def _budget(run: Run, tiny: bool) -> tuple[int, int]:
    if tiny:
        return 2, 80
    c = run.config()
    return int(c["iters"]), int(c["num_envs"]) * int(c["horizon"])


def steps_for(target: Target, out: str, tiny: bool = False, seeds: int = 1, algos: set | None = None,
              stage: str = "all", episodes: int = 1000, extra: list[str] | None = None) -> list[laptop.Step]:
    steps = []
    runs = [r for r in target.runs if not algos or run_kind(r) in algos]
    tdir = os.path.join(out, target.name)
    for r in runs:
        run_dir = os.path.join(tdir, r.name)
        if stage in ("all", "train"):
            argv = ["train", "--algo", r.algo, "--model", r.model, "--out", run_dir, "--no-progress"]
            if r.preset:
                argv += ["--preset", r.preset]
            own = list(r.train_args)
            if tiny:  # the tiny sizes replace the run's own
                pairs = [own[i:i + 2] for i in range(0, len(own), 2)]
                own = [a for pair in pairs if pair[0] not in TINY_TRAIN for a in pair] + TINY_TRAIN
            argv += own
            if seeds > 1:
                argv += ["--seeds", str(seeds)]
            if runfiles.holds_run(run_dir):
                argv += ["--resume"]
            steps.append(laptop.Step(argv + list(extra or []), "train"))
        if stage in ("all", "eval"):
            n = TINY_EPISODES if tiny else episodes
            for member in [run_dir] if seeds == 1 else [os.path.join(run_dir, f"seed{i}") for i in range(seeds)]:
                for variant in target.variants:
                    for mode in target.eval_modes:
                        argv = ["eval", "--run", member, "--variant", variant, "--episodes", str(n),
                                "--json", os.path.join(member, f"eval-{variant}-{mode}.json")]
                        steps.append(laptop.Step(argv + (["--greedy"] if mode == "greedy" else []), "eval"))
    if stage in ("all", "eval"):
        env = runs[0].config().get("env", "mdp") if runs else None
        for h in target.oracle_horizons:
            hh = 10 if tiny else h
            steps.append(laptop.Step(["eval", "--policy", "oracle", "--env", env, "--horizon", str(hh), "--episodes",
                               str(TINY_EPISODES if tiny else episodes),
                               "--json", os.path.join(tdir, f"oracle-h{h}.json")], "eval"))
    return steps


def describe(target: Target, tiny: bool, seeds: int) -> str:
    lines = [f"{target.name}: {target.doc}"]
    total = 0
    for r in target.runs:
        iters, batch = _budget(r, tiny)
        total += iters * batch * seeds
        h = 10 if tiny else r.config().get("horizon")
        lines.append(f"  {r.label:14s} {r.algo:10s} {r.model:11s} preset {r.preset or '-':12s} H={h}"
                     f" {iters} iters x {batch} steps = {iters * batch:.3g} env steps"
                     + (f" x {seeds} seeds" if seeds > 1 else ""))
    lines.append(f"  budget: {total:.3g} env steps in all; about {total / ASSUMED_STEPS_PER_SECOND / 3600:.1f} h on one H100 at "
                 f"{ASSUMED_STEPS_PER_SECOND / 1e6:.1f} M steps/s (METHOD §7; grids with RL³ run slower); "
                 f"evaluation on {', '.join(target.variants)} ({' and '.join(target.eval_modes)})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ report
def _mean(path: str, pm: bool = False) -> float | str | None:
    """The mean return of an eval JSON (``pm``: "mean ± s.e." to 1 decimal); None when there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)
    return f"{r['mean_return']:.1f} ± {r['stderr']:.1f}" if pm else float(r["mean_return"])


def report(target: Target, out: str, seeds: int = 1) -> str:
    tdir = os.path.join(out, target.name)
    lines = [f"### {target.name}: {target.doc}", "",
             "| run | variant | stochastic | greedy | published (METHOD §6) |", "|---|---|---|---|---|"]
    for r in target.runs:
        run_dir = os.path.join(tdir, r.name)
        for member in runfiles.run_dirs(run_dir):
            label = r.label + ("" if member == run_dir else f" ({os.path.basename(member)})")
            for v in target.variants:
                s = _mean(os.path.join(member, f"eval-{v}-stochastic.json"), True)
                g = _mean(os.path.join(member, f"eval-{v}-greedy.json"), True)
                if s is None and g is None:
                    continue
                pub = target.published.get(r.label, "") if v == "train" else ""
                lines.append(f"| {label} | {v} | {s or '-'} | {g or '-'} | {pub} |")
    for h in target.oracle_horizons:
        o = _mean(os.path.join(tdir, f"oracle-h{h}.json"), True)
        if o:
            lines.append(f"| oracle H={h} | train | {o} | | |")
    if target.oracle_horizons:
        lines += ["", "Fraction of the oracle's return (in distribution; METHOD §6 at H=2048: RL³ ≈ 0.92, RL² ≈ 0.80):",
                  "", "| run | stochastic | greedy |", "|---|---|---|"]
        for r in target.runs:
            h = r.name.rsplit("-h", 1)[-1]
            oracle = _mean(os.path.join(tdir, f"oracle-h{h}.json"))
            s, g = (_mean(os.path.join(tdir, r.name, f"eval-train-{m}.json")) for m in POLICY_MODES)
            if oracle and (s is not None or g is not None):
                frac = lambda x, oracle=oracle: "-" if x is None else f"{x / oracle:.3f}"  # noqa: E731
                lines.append(f"| {r.label} | {frac(s)} | {frac(g)} |")
    return "\n".join(lines) + "\n"


def report_figures(target: Target, out: str, episodes: int) -> None:
    """``rl3jax report`` (``rl3jax.report.make_report``, the same code) of the target's trained runs: one report
    per horizon into ``<out>/<target>/report`` (``report-h{H}`` when the runs have several horizons), reusing
    the eval JSONs of the eval stage where they match."""
    from rl3jax.report import make_report

    tdir = os.path.join(out, target.name)
    by_h: dict[int, list[str]] = {}
    for r in target.runs:
        run_dir = os.path.join(tdir, r.name)
        if runfiles.holds_run(run_dir):
            by_h.setdefault(runfiles.read_config(run_dir).horizon, []).append(run_dir)
    for h, dirs in sorted(by_h.items()):
        rdir = os.path.join(tdir, "report" if len(by_h) == 1 else f"report-h{h}")
        make_report(dirs, rdir, episodes=episodes)
        print(f"report of {target.name}: {rdir} (results.md, results.json, learning_curve.png, adaptation.png)")


# ------------------------------------------------------------------------------------------ main
def _parser() -> argparse.ArgumentParser:
    names = list(TARGETS)
    intro = __doc__.split("\n\n")[0].replace("\n", " ")  # the first paragraph, whole
    p = argparse.ArgumentParser(
        description=intro, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="targets: " + ", ".join(names) + "\n\nRun it with the project's Python: after `make venv` (or any make "
               "target) that is\n  .venv/bin/python experiments/reproduce.py mdp-h100 --dry-run\nor through make:\n"
               "  make reproduce ARGS='mdp-h100 --dry-run'\nThe steps it prints are `python -m rl3jax ...` commands "
               "for that same Python\n(.venv/bin/python -m rl3jax ...). Train flags after -- go to every train step.")
    p.add_argument("target", choices=names + ["all", "list", "report", *laptop.STUDIES],
                   help="a target; all: every target; list: targets, runs and budgets; report: the results tables; "
                        "laptop: the laptop study (RL² vs RL³ on a 2-core CPU, experiments/README.md)")
    p.add_argument("--out", default=None, help="root folder; each target gets a sub-folder [default: runs/repro; "
                                               f"laptop: the reports folder, {laptop.LAPTOP_OUT}]")
    p.add_argument("--dry-run", action="store_true", help="print the commands that would run, run nothing")
    p.add_argument("--tiny", action="store_true", help="2 iterations, 8 envs, H=10, 8 test tasks (smoke test)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"independent seeds per run (one vmapped population) [default: 1; laptop: {laptop.LAPTOP_SEEDS}]")
    p.add_argument("--algos", default=None, help="only these runs (e.g. rl2,rl3,rl3-markov,rl3-coarse)")
    p.add_argument("--stage", choices=("all", "train", "eval"), default="all",
                   help="train only (e.g. on every host of a pod), evaluate only, or both")
    p.add_argument("--episodes", type=int, default=None, help="held-out test tasks per evaluation [default: 1000]")
    laptop.add_arguments(p)
    return p


def main(argv=None) -> int:
    p = _parser()
    args, extra = p.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    extra = extra[1:] if extra[:1] == ["--"] else extra
    if extra and not extra[0].startswith("-"):
        p.error(f"unrecognised arguments {extra} (pass train flags after --)")
    if args.target in laptop.STUDIES:
        return laptop.laptop_main(laptop.STUDIES[args.target], args, extra, p)
    laptop.refuse_flags(args, p)
    args.out = "runs/repro" if args.out is None else args.out
    args.seeds, args.episodes = (1 if args.seeds is None else args.seeds), (1000 if args.episodes is None else args.episodes)
    if args.seeds < 1 or args.episodes < 1:
        p.error(f"--seeds {args.seeds} / --episodes {args.episodes}: both must be >= 1")
    targets = list(TARGETS.values()) if args.target in ("all", "list", "report") else [TARGETS[args.target]]
    algos = set(args.algos.split(",")) if args.algos else None
    if algos:
        known = {run_kind(r) for t in targets for r in t.runs}
        if algos - known:
            p.error(f"--algos: unknown {sorted(algos - known)}; valid: {', '.join(sorted(known))}")
    if args.target == "list":
        for t in targets:
            print(describe(t, args.tiny, args.seeds) + "\n")
        return 0
    if args.target == "report":
        text = "\n".join(report(t, args.out, args.seeds) for t in targets)
        print(text)
        for t in targets:
            report_figures(t, args.out, TINY_EPISODES if args.tiny else args.episodes)
        return 0
    plan = [(t, steps_for(t, args.out, args.tiny, args.seeds, algos, args.stage, args.episodes, extra))
            for t in targets]
    for t, steps in plan:
        print(describe(t, args.tiny, args.seeds))
        for s in steps:
            print(("  " if args.dry_run else "  will run: ") + s.shell())
    if args.dry_run:
        return 0
    for t, steps in plan:
        for s in steps:
            rc, _ = laptop.run_step(s.argv)
            if rc:
                return rc
        if args.stage in ("all", "eval"):
            text = report(t, args.out, args.seeds)
            with open(os.path.join(args.out, t.name, "results.md"), "w") as f:
                f.write(text)
            print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
