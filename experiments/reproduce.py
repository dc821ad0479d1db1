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
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from rl3jax import runfiles  # noqa: E402  (light: no JAX)
from rl3jax.config import POLICY_MODES, preset  # noqa: E402  (light: no JAX)

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
    runs = [Run("rl2", "RL²", "rl2", "transformer", preset_name, args),
            Run("rl3", "RL³", "rl3", "transformer", preset_name, args)]
    if third:
        runs.append(dataclasses.replace(third, train_args=args))
    return tuple(runs)


def _v4_row(preset_name: str, markov: bool) -> tuple[Run, ...]:
    """The paper's own code (``paper-v4-*`` presets: v4 semantics, transformer-v4); RL² gets the same network
    and the v4 input layout (the original's RL² has the one-hot task observation, no RL³ block)."""
    runs = [Run("rl2", "RL²", "rl2", "transformer-v4", preset_name),
            Run("rl3", "RL³", "rl3", "transformer-v4", preset_name)]
    if markov:
        runs.append(Run("rl3-markov", "RL³ (Markov)", "rl3", "markov-v4", preset_name))
    return tuple(runs)


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
)}


# ------------------------------------------------------------------------------------------ commands
@dataclasses.dataclass
class Step:
    argv: list[str]  # rl3jax arguments
    kind: str  # train | eval

    def shell(self) -> str:
        return shlex.join(["python", "-m", "rl3jax", *self.argv])


def run_kind(run: Run) -> str:
    """rl2, rl3, rl3-markov, rl3-coarse (the run's name without an ``-h{H}`` suffix)."""
    return run.name.split("-h")[0]


def _budget(run: Run, tiny: bool) -> tuple[int, int]:
    if tiny:
        return 2, 80
    c = run.config()
    return int(c["iters"]), int(c["num_envs"]) * int(c["horizon"])


def _member_dirs(run_dir: str, seeds: int, base_seed: int = 0) -> list[str]:
    return [run_dir] if seeds == 1 else [os.path.join(run_dir, f"seed{base_seed + i}") for i in range(seeds)]


def steps_for(target: Target, out: str, tiny: bool = False, seeds: int = 1, algos: set | None = None,
              stage: str = "all", episodes: int = 1000, extra: list[str] | None = None) -> list[Step]:
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
            steps.append(Step(argv + list(extra or []), "train"))
        if stage in ("all", "eval"):
            n = TINY_EPISODES if tiny else episodes
            for member in _member_dirs(run_dir, seeds):
                for variant in target.variants:
                    for mode in target.eval_modes:
                        argv = ["eval", "--run", member, "--variant", variant, "--episodes", str(n),
                                "--json", os.path.join(member, f"eval-{variant}-{mode}.json")]
                        steps.append(Step(argv + (["--greedy"] if mode == "greedy" else []), "eval"))
    if stage in ("all", "eval"):
        env = runs[0].config().get("env", "mdp") if runs else None
        for h in target.oracle_horizons:
            hh = 10 if tiny else h
            steps.append(Step(["eval", "--policy", "oracle", "--env", env, "--horizon", str(hh), "--episodes",
                               str(TINY_EPISODES if tiny else episodes),
                               "--json", os.path.join(tdir, f"oracle-h{h}.json")], "eval"))
    return steps


def describe(target: Target, tiny: bool, seeds: int) -> str:
    lines = [f"{target.name}: {target.doc}"]
    total = 0
    for r in target.runs:
        iters, batch = _budget(r, tiny)
        total += iters * batch * seeds
        c = r.config()
        h = 10 if tiny else c.get("horizon")
        lines.append(f"  {r.label:14s} {r.algo:10s} {r.model:11s} preset {r.preset or '-':12s} H={h}"
                     f" {iters} iters x {batch} steps = {iters * batch:.3g} env steps"
                     + (f" x {seeds} seeds" if seeds > 1 else ""))
    hours = total / ASSUMED_STEPS_PER_SECOND / 3600
    lines.append(f"  budget: {total:.3g} env steps in all; about {hours:.1f} h on one H100 at "
                 f"{ASSUMED_STEPS_PER_SECOND / 1e6:.1f} M steps/s (METHOD §7; grids with RL³ run slower); "
                 f"evaluation on {', '.join(target.variants)} ({' and '.join(target.eval_modes)})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ report
def _fmt(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)
    return f"{r['mean_return']:.1f} ± {r['stderr']:.1f}"


def report(target: Target, out: str, seeds: int = 1) -> str:
    tdir = os.path.join(out, target.name)
    lines = [f"### {target.name}: {target.doc}", "",
             "| run | variant | stochastic | greedy | published (METHOD §6) |", "|---|---|---|---|---|"]
    for r in target.runs:
        run_dir = os.path.join(tdir, r.name)
        for member in runfiles.run_dirs(run_dir):
            label = r.label + ("" if member == run_dir else f" ({os.path.basename(member)})")
            for v in target.variants:
                s = _fmt(os.path.join(member, f"eval-{v}-stochastic.json"))
                g = _fmt(os.path.join(member, f"eval-{v}-greedy.json"))
                if s is None and g is None:
                    continue
                pub = target.published.get(r.label, "") if v == "train" else ""
                lines.append(f"| {label} | {v} | {s or '-'} | {g or '-'} | {pub} |")
    for h in target.oracle_horizons:
        o = _fmt(os.path.join(tdir, f"oracle-h{h}.json"))
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


def report_figures(target: Target, out: str, episodes: int) -> list[str]:
    """``rl3jax report`` (``rl3jax.report.make_report``, the same code) of the target's trained runs: one report
    per horizon into ``<out>/<target>/report`` (``report-h{H}`` when the runs have several horizons), reusing
    the eval JSONs of the eval stage where they match. Returns the report folders written."""
    from rl3jax.report import make_report

    tdir = os.path.join(out, target.name)
    by_h: dict[int, list[str]] = {}
    for r in target.runs:
        run_dir = os.path.join(tdir, r.name)
        if runfiles.holds_run(run_dir):
            by_h.setdefault(runfiles.read_config(run_dir).horizon, []).append(run_dir)
    written = []
    for h, dirs in sorted(by_h.items()):
        rdir = os.path.join(tdir, "report" if len(by_h) == 1 else f"report-h{h}")
        make_report(dirs, rdir, episodes=episodes)
        written.append(rdir)
    return written


def _mean(path: str) -> float | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return float(json.load(f)["mean_return"])


# ------------------------------------------------------------------------------------------ laptop study
#: the laptop study's runs (the same three in every family): folder name, label, algorithm, model
LAPTOP_RUNS = (("rl2", "RL² (transformer)", "rl2", "transformer"),
               ("rl3", "RL³ (transformer)", "rl3", "transformer"),
               ("rl3-markov", "RL³ (Markov)", "rl3", "markov"))


@dataclasses.dataclass(frozen=True)
class LaptopFamily:
    env: str
    preset: str  # the tuned laptop preset: every run's PPO settings (lr, entropy bonus, epochs, minibatches)
    variants: tuple[str, ...]  # test variants: the training distribution first, then the OOD ones
    num_envs: int  # tasks per iteration (every run of the family: equal env-step budgets)
    iters: int
    minibatch_envs: int
    eval_every: int  # held-out evaluation during training (eval_episodes tasks, stochastic and greedy)
    chunk_iters: int
    #: measured member-steps/s of a 2-seed population on this machine class (a free 2-core CPU), per run
    #: name; for the time estimate and the time guard (see experiments/README.md "Laptop study")
    steps_per_second: tuple[tuple[str, float], ...] = ()


#: H = 100 for both families; equal env steps per family: num_envs × H × iters for each of the three runs
LAPTOP = {
    "bandit": LaptopFamily("bandit", "cpu-bandit", ("train", "ood"), num_envs=160, iters=20, minibatch_envs=40,
                           eval_every=5, chunk_iters=5,
                           steps_per_second=(("rl2", 2200.0), ("rl3", 2000.0), ("rl3-markov", 12000.0))),
    "mdp": LaptopFamily("mdp", "cpu-mdp", ("train", "alpha0.25", "det-rewards"), num_envs=160, iters=20,
                        minibatch_envs=40, eval_every=5, chunk_iters=5,
                        steps_per_second=(("rl2", 2200.0), ("rl3", 1800.0), ("rl3-markov", 8000.0))),
}
LAPTOP_HORIZON = 100
LAPTOP_SEEDS = 2
LAPTOP_EVAL_EPISODES = 250  # held-out tasks of the evaluations during training
LAPTOP_OUT = "docs/results/laptop"
LAPTOP_RUNS_DIR = "runs/study"
LAPTOP_MAX_MINUTES = 45.0
#: estimated seconds of the non-training work on a free 2-core CPU, per family and test variant: the baselines
#: (compile included) and the report's evaluations of every run, greedy and stochastic, on the held-out tasks
LAPTOP_BASELINE_SECONDS = 40.0
LAPTOP_REPORT_SECONDS = 80.0
#: tiny: the whole pipeline at a smoke-test scale
LAPTOP_TINY = {"num_envs": 8, "iters": 2, "minibatch_envs": 4, "eval_every": 1, "chunk_iters": 1, "horizon": 10,
               "episodes": 8, "eval_episodes": 8}
#: what the study writes into --out (and what --force removes there)
LAPTOP_OUTPUTS = ("README.md", "study.json") + tuple(LAPTOP)


def laptop_sizes(fam: LaptopFamily, tiny: bool) -> dict:
    """num_envs, iters, minibatch_envs, eval_every, chunk_iters, horizon, eval_episodes of the family's runs."""
    if tiny:
        return {k: v for k, v in LAPTOP_TINY.items() if k != "episodes"}
    return {"num_envs": fam.num_envs, "iters": fam.iters, "minibatch_envs": fam.minibatch_envs,
            "eval_every": fam.eval_every, "chunk_iters": fam.chunk_iters, "horizon": LAPTOP_HORIZON,
            "eval_episodes": LAPTOP_EVAL_EPISODES}


@dataclasses.dataclass
class LaptopStep(Step):
    family: str = ""
    run: str = ""  # train: the run's name; baselines/report: the variant
    estimate_s: float = 0.0  # estimated seconds on a free 2-core CPU


def laptop_steps(runs_dir: str, out: str, tiny: bool, seeds: int, algos: set | None, episodes: int,
                 extra: list[str] | None = None, resume: bool = False) -> list[LaptopStep]:
    """The study's ``rl3jax`` commands in order: per family, ``baselines --json`` for every test variant,
    ``train`` of the three runs (K-seed populations, equal env steps), then ``report`` for every test variant
    (runs evaluated on ``episodes`` held-out tasks, greedy and stochastic, beside the baselines)."""
    steps: list[LaptopStep] = []
    for name, fam in LAPTOP.items():
        z = laptop_sizes(fam, tiny)
        sps = dict(fam.steps_per_second)
        fdir, odir = os.path.join(runs_dir, name), os.path.join(out, name)
        for v in fam.variants:
            bjson = os.path.join(odir, f"baselines-{v}.json")
            if not (resume and os.path.exists(bjson)):
                steps.append(LaptopStep(["baselines", "--env", fam.env, "--variant", v, "--horizon", str(z["horizon"]),
                                         "--episodes", str(episodes), "--json", bjson], "baselines", name, v,
                                        0.0 if tiny else LAPTOP_BASELINE_SECONDS))
        runs = [r for r in LAPTOP_RUNS if not algos or r[0] in algos]
        for rname, _, algo, model in runs:
            run_dir = os.path.join(fdir, rname)
            argv = ["train", "--preset", fam.preset, "--algo", algo, "--model", model, "--out", run_dir,
                    "--horizon", str(z["horizon"]), "--iters", str(z["iters"]), "--num-envs", str(z["num_envs"]),
                    "--minibatch-envs", str(z["minibatch_envs"]), "--seeds", str(seeds),
                    "--set", f"eval_every={z['eval_every']}", "--set", f"eval_episodes={z['eval_episodes']}",
                    "--set", f"chunk_iters={z['chunk_iters']}", "--set", f"checkpoint_every={z['chunk_iters']}",
                    "--no-progress"]
            if tiny:
                argv += ["--set", "epochs=1"]
            if runfiles.holds_run(run_dir):
                argv += ["--resume"]
            est = z["num_envs"] * z["horizon"] * z["iters"] * seeds / sps.get(rname, 1000.0) + 60.0
            steps.append(LaptopStep(argv + list(extra or []), "train", name, rname, 0.0 if tiny else est))
        for v in fam.variants:
            argv = ["report", *[os.path.join(fdir, r[0]) for r in runs], "--out", os.path.join(odir, v),
                    "--episodes", str(episodes), "--variant", v,
                    "--baselines-json", os.path.join(odir, f"baselines-{v}.json")]
            steps.append(LaptopStep(argv, "report", name, v, 0.0 if tiny else LAPTOP_REPORT_SECONDS))
    return steps


def laptop_describe(steps: list[LaptopStep], tiny: bool, seeds: int, max_minutes: float) -> str:
    lines = ["laptop: RL² (transformer), RL³ (transformer) and RL³ (Markov) on bandits and MDPs, H=100, with equal "
             f"env-step budgets per family, {seeds} seeds each (vmapped populations)"]
    for name, fam in LAPTOP.items():
        z = laptop_sizes(fam, tiny)
        per = z["num_envs"] * z["horizon"] * z["iters"]
        lines.append(f"  {name}: preset {fam.preset} settings for every run; {z['num_envs']} tasks x H={z['horizon']}"
                     f" x {z['iters']} iters = {per:,} env steps per run and seed; held-out evaluation every "
                     f"{z['eval_every']} iters ({z['eval_episodes']} tasks); test variants {', '.join(fam.variants)}")
    est = sum(s.estimate_s for s in steps)
    lines.append(f"  estimate: {est / 60:.0f} min on a free 2-core CPU (training "
                 f"{sum(s.estimate_s for s in steps if s.kind == 'train') / 60:.0f} min); time guard: "
                 f"--max-minutes {max_minutes:g} (a train step stops at a chunk boundary when it would overrun)")
    return "\n".join(lines)


def _machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import platform

    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _commit() -> dict:
    import subprocess

    def git(*a):
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(status),
            "dirty_files": status.splitlines()}


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _seed_mean(rows: list[dict], mode: str) -> tuple[float, float]:
    """Mean over seeds of the held-out means, and its standard error from the test tasks (sqrt(Σ s.e.²) / K)."""
    ms = [r[mode]["mean_return"] for r in rows]
    ses = [r[mode]["stderr"] for r in rows]
    return sum(ms) / len(ms), (sum(se * se for se in ses) ** 0.5) / len(ses)


def laptop_table(out: str, runs_dir: str, algos: set | None = None) -> tuple[str, dict]:
    """The headline tables (markdown) and their numbers from the reports in ``out/<family>/<variant>/``."""
    md, data = [], {}
    for name, fam in LAPTOP.items():
        reps = {v: _load(os.path.join(out, name, v, "results.json")) for v in fam.variants
                if os.path.exists(os.path.join(out, name, v, "results.json"))}
        if "train" not in reps:
            continue
        ood = [v for v in fam.variants if v != "train"]
        fd = data[name] = {"runs": {}, "baselines": {}}
        md += [f"### {name} (H = {reps['train']['horizon']}, {reps['train']['episodes']} held-out tasks per "
               "evaluation)", "",
               "| algorithm | iterations (env steps per seed) | seeds | stochastic: mean ± s.e. | stochastic: IQM "
               "[95% CI] | greedy: mean ± s.e. | greedy: IQM [95% CI] | normalised (stoch. / greedy) | "
               + " | ".join(f"{v}: stoch. / greedy" for v in ood) + " |",
               "|---|---|---|---|---|---|---|---|" + "---|" * len(ood)]
        for rname, label, _, _ in LAPTOP_RUNS:
            if algos and rname not in algos:
                continue
            rdir = os.path.abspath(os.path.join(runs_dir, name, rname))
            rec = {}
            for v, rep in reps.items():
                rows = [r for r in rep["runs"] if os.path.dirname(os.path.abspath(r["run"])) == rdir]
                if not rows:
                    continue
                grp = next(g for g in rep["groups"] if g["label"] == rows[0]["group"])
                rec[v] = {"seeds": [r["seed"] for r in rows], "iterations": [r["iteration"] for r in rows],
                          **{m: {"mean": _seed_mean(rows, m)[0], "stderr": _seed_mean(rows, m)[1],
                                 "per_seed": [r[m]["mean_return"] for r in rows], "iqm": grp[m]["iqm"],
                                 "ci": [grp[m]["ci_low"], grp[m]["ci_high"]],
                                 "normalised_iqm": grp[m]["normalised_iqm"]} for m in POLICY_MODES}}
            if "train" not in rec:
                continue
            fd["runs"][rname] = rec
            t = rec["train"]
            cfg = runfiles.read_config(rdir)
            its = sorted(set(t["iterations"]))
            steps = ", ".join(f"{i} ({i * cfg.batch_steps:,})" for i in its)
            row = [label, steps, str(len(t["seeds"]))]
            for m in POLICY_MODES:
                row += [f"{t[m]['mean']:.2f} ± {t[m]['stderr']:.2f}",
                        f"{_f2(t[m]['iqm'])} [{_f2(t[m]['ci'][0])}, {_f2(t[m]['ci'][1])}]"]
            row.append(f"{_f3(t['stochastic']['normalised_iqm'])} / {_f3(t['greedy']['normalised_iqm'])}")
            for v in ood:
                row.append(f"{rec[v]['stochastic']['mean']:.2f} / {rec[v]['greedy']['mean']:.2f}" if v in rec else "-")
            md.append("| " + " | ".join(row) + " |")
        for v, rep in reps.items():
            fd["baselines"][v] = {b["policy"]: {"mean": b["mean_return"], "stderr": b["stderr"], "greedy": b["greedy"],
                                                "normalised": b["normalised"]} for b in rep["baselines"]}
            fd["baselines"][v]["best_classical"] = rep["best_baseline"]
        bt = fd["baselines"]["train"]
        best = bt.get("best_classical")
        for pol, label in (("random", "random"), (best, f"best classical baseline: {best}"), ("oracle", "oracle")):
            if not pol or pol not in bt:
                continue
            b = bt[pol]
            val = f"{b['mean']:.2f} ± {b['stderr']:.2f}"
            mode = "greedy" if b["greedy"] else "stochastic"
            row = [f"*{label}* ({mode})", "-", "-", val if mode == "stochastic" else "", "",
                   val if mode == "greedy" else "", "", _f3(b["normalised"])]
            for v in ood:
                ob = fd["baselines"].get(v, {}).get(pol)
                row.append(f"{ob['mean']:.2f}" if ob else "-")
            md.append("| " + " | ".join(row) + " |")
        for v in ood:
            bv = fd["baselines"].get(v, {})
            if bv.get("best_classical") and bv["best_classical"] != best:
                md.append(f"\nBest classical baseline on {v}: {bv['best_classical']} "
                          f"({bv[bv['best_classical']]['mean']:.2f}).")
        md += ["", f"Pictures: [learning curves]({name}/train/learning_curve.png), "
               f"[adaptation]({name}/train/adaptation.png); OOD: "
               + ", ".join(f"[{v} adaptation]({name}/{v}/adaptation.png)" for v in ood)
               + "; full reports: " + ", ".join(f"[{v}]({name}/{v}/results.md)" for v in fam.variants), "",
               f"![learning curves, {name}]({name}/train/learning_curve.png)", ""]
    return "\n".join(md), data


def _f2(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _f3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def laptop_readme(out: str, runs_dir: str, meta: dict, algos: set | None = None) -> str:
    """docs/results/laptop/README.md: how it was made (command, commit, machine, settings, wall times) and the
    headline tables; also writes study.json (the same, as numbers)."""
    table, data = laptop_table(out, runs_dir, algos)
    tiny = meta["tiny"]
    lines = ["# Laptop study: RL² vs RL³ on a 2-core CPU" + (" (TINY smoke-test scale: not a result)" if tiny else ""),
             "",
             f"Command: `{meta['command']}`  ",
             f"Commit: `{meta['commit']['commit']}`" + (" (with uncommitted changes: "
                                                        + ", ".join(meta['commit']['dirty_files']) + ")"
                                                        if meta["commit"]["dirty"] else "") + "  ",
             f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores ({meta['machine']['platform']}); "
             f"load average at the start {meta['load_start']}, at the end {meta.get('load_end')}  ",
             f"Started {meta['started']} UTC; total wall time **{meta['wall_s'] / 60:.1f} min** "
             f"({meta['wall_s']:.0f} s; time guard {meta['max_minutes']:g} min)", "",
             "## Settings", "",
             "Every run of a family has the same PPO settings and the same number of environment steps (tasks per "
             "iteration × H × iterations): the family's tuned laptop preset (`rl3jax/config.py`, BENCHMARKS.md "
             "\"Laptop presets (tuning)\"), tuned for RL³ (Markov); the transformers use the same learning rate, "
             "entropy bonus, epochs and minibatches (no separate tuning at this budget). Each run is a "
             f"{meta['seeds']}-seed vmapped population (`rl3jax train --seeds {meta['seeds']}`).", "",
             "| family | preset | tasks × H × iterations | env steps per run and seed | minibatch (sequences) | "
             "epochs | lr | entropy bonus | held-out evaluation during training |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, fam in LAPTOP.items():
        dirs = [os.path.join(runs_dir, name, r) for r in ["rl3-markov", *(r[0] for r in LAPTOP_RUNS)]]
        dirs = [d for d in dirs if runfiles.holds_run(d)]
        if not dirs:
            continue
        c = runfiles.read_config(dirs[0])
        lines.append(f"| {name} | {fam.preset} | {c.num_envs} × {c.horizon} × {c.iters} | "
                     f"{c.batch_steps * c.iters:,} | {c.minibatch_envs} | {c.epochs} | "
                     f"{c.lr:g} | {c.ent_coef:g} ({c.ent_schedule}) | every {c.eval_every} iterations, "
                     f"{c.eval_episodes} tasks |")
    lines += ["", "Models: RL² and RL³ (transformer): `--model transformer`; RL³ (Markov): `--model markov` (an MLP on "
              "the current input with the RL³ Q-estimates). RL³ uses the default `fresh` semantics.", "",
              "## Headline", "",
              "Held-out: the report's test tasks (`rl3jax.evaluate`, one meta-episode each). *mean ± s.e.*: mean "
              "over seeds of each seed's held-out mean, s.e. from the test tasks (√(Σ s.e.²)/K). *IQM [95% CI]*: "
              "interquartile mean over seeds with a stratified bootstrap interval (with 2 seeds the IQM is their "
              "mean and the interval spans them). Normalised score = (x − random)/(oracle − random), of the IQM. "
              "OOD columns: mean over seeds, stochastic / greedy. Baseline rows: the family's random policy, the "
              "best classical baseline on the training distribution and the task-knowing oracle, on the same "
              "tasks (their OOD columns: the same policy on the OOD tasks).", "", table,
              "## Wall times", "", "| stage | family | what | seconds |", "|---|---|---|---|"]
    for t in meta["stages"]:
        lines.append(f"| {t['kind']} | {t['family']} | {t['run']} | {t['seconds']:.0f} |")
    for kind in ("baselines", "train", "report"):
        tot = sum(t["seconds"] for t in meta["stages"] if t["kind"] == kind)
        lines.append(f"| all {kind} | | | {tot:.0f} |")
    lines += [f"| **total** | | | **{meta['wall_s']:.0f}** |", "",
              f"The plan's estimate for a free 2-core CPU was {meta['estimate_s'] / 60:.0f} min.", ""]
    if meta.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    lines += ["Reproduce: `make study` (= `.venv/bin/python experiments/reproduce.py laptop`); the run folders go "
              f"to `{LAPTOP_RUNS_DIR}/` (git-ignored), the reports here. Every step is an `rl3jax` command, "
              "listed with `experiments/reproduce.py laptop --dry-run`.", ""]
    runfiles.atomic_write_json(os.path.join(out, "study.json"), {**meta, "results": data})
    return "\n".join(lines)


def laptop_main(args, extra: list[str], p: argparse.ArgumentParser) -> int:
    """``reproduce.py laptop``: validates everything, then runs the study's steps with a time guard."""
    import shutil

    tiny = args.tiny
    out = args.out or (os.path.join("runs", "study-tiny", "results") if tiny else LAPTOP_OUT)
    runs_dir = args.runs or (os.path.join("runs", "study-tiny", "runs") if tiny else LAPTOP_RUNS_DIR)
    seeds = LAPTOP_SEEDS if args.seeds is None else args.seeds
    episodes = args.episodes if args.episodes is not None else (LAPTOP_TINY["episodes"] if tiny else 1000)
    max_minutes = LAPTOP_MAX_MINUTES if args.max_minutes is None else args.max_minutes
    if seeds < 2:
        p.error(f"--seeds {seeds}: the laptop study needs at least 2 seeds per run (the IQM's interval is over seeds)")
    if episodes < 1:
        p.error(f"--episodes {episodes}: must be >= 1")
    if not max_minutes > 0:
        p.error(f"--max-minutes {max_minutes:g}: must be > 0")
    if args.stage != "all":
        p.error(f"--stage {args.stage}: the laptop study runs all its stages in order (continue an interrupted "
                "one with --resume)")
    if args.resume and args.force:
        p.error("--resume and --force: choose one (continue the study, or start it again from nothing)")
    algos = set(args.algos.split(",")) if args.algos else None
    known = {r[0] for r in LAPTOP_RUNS}
    if algos and algos - known:
        p.error(f"--algos: unknown {sorted(algos - known)}; valid for laptop: {', '.join(sorted(known))}")
    if os.path.abspath(out) == os.path.abspath(runs_dir) or os.path.abspath(runs_dir).startswith(
            os.path.abspath(out) + os.sep):
        p.error(f"--runs {runs_dir}: must lie outside --out {out} (the run folders hold checkpoints)")
    busy = [d for d in (out, runs_dir) if os.path.isdir(d) and os.listdir(d)]
    for d in (out, runs_dir):
        if os.path.exists(d) and not os.path.isdir(d):
            p.error(f"{d} exists and is not a folder")
    steps = laptop_steps(runs_dir, out, tiny, seeds, algos, episodes, extra, resume=args.resume)
    print(laptop_describe(steps, tiny, seeds, max_minutes))
    for s in steps:
        print(("  " if args.dry_run else "  will run: ") + s.shell())
    if args.dry_run:
        if busy and not (args.resume or args.force):
            print(f"  (not empty: {', '.join(busy)}; the real run needs --resume to continue or --force to start "
                  "again)")
        return 0
    if busy and not (args.resume or args.force):
        p.error(f"{' and '.join(busy)} not empty: pass --resume to continue the study there, or --force to start "
                "it again (--force removes the run folders and the study's outputs)")
    if args.force:
        if os.path.isdir(runs_dir):
            shutil.rmtree(runs_dir)
        for name in LAPTOP_OUTPUTS:
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        steps = laptop_steps(runs_dir, out, tiny, seeds, algos, episodes, extra)

    import datetime

    from rl3jax.cli import main as rl3jax_main

    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    deadline = t_start + max_minutes * 60
    meta = {"command": " ".join(["experiments/reproduce.py", *args.argv]), "commit": _commit(),
            "machine": _machine(), "load_start": _load_avg(), "tiny": tiny, "seeds": seeds, "episodes": episodes,
            "max_minutes": max_minutes, "out": out, "runs": runs_dir,
            "started": datetime.datetime.fromtimestamp(t_start, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "stages": [], "notes": [], "estimate_s": sum(x.estimate_s for x in steps)}
    for i, s in enumerate(steps):
        argv = list(s.argv)
        if s.kind == "train" and not tiny:
            argv += ["--max-seconds", f"{_time_cap(steps, i, deadline - time.time()):.0f}"]
        shell = shlex.join(["python", "-m", "rl3jax", *argv])
        print(f"\n$ {shell}", flush=True)
        t0 = time.perf_counter()
        rc = rl3jax_main(argv)
        dt = time.perf_counter() - t0
        meta["stages"].append({"kind": s.kind, "family": s.family, "run": s.run, "seconds": dt, "command": shell})
        print(f"  ({dt:.1f}s; {(time.time() - t_start) / 60:.1f} min since the start)", flush=True)
        if rc:
            print(f"reproduce: step failed with status {rc}: {shell}", file=sys.stderr)
            return rc
        if s.kind == "train":
            run_dir = os.path.join(runs_dir, s.family, s.run)
            iters = runfiles.read_config(run_dir).iters
            rows = runfiles.read_metrics(runfiles.run_dirs(run_dir)[0])
            done = rows[-1]["iteration"] if rows else 0
            if done < iters:
                meta["notes"].append(f"{s.family}/{s.run}: the time guard stopped training at iteration {done} of "
                                     f"{iters} (its env steps are {done}/{iters} of the others')")
    meta["wall_s"] = time.time() - t_start
    meta["load_end"] = _load_avg()
    text = laptop_readme(out, runs_dir, meta, algos)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    print(f"laptop study written to {out} (README.md, study.json, <family>/<variant>/ reports) in "
          f"{meta['wall_s'] / 60:.1f} min")
    return 0


def _time_cap(steps: list[LaptopStep], i: int, left_s: float) -> float:
    """``--max-seconds`` of train step ``i`` with ``left_s`` seconds left to the deadline: the time left, less the
    estimates of the later non-train steps, shared among this and the later train steps in proportion to their
    estimates (so a uniformly slower machine cuts every run by the same fraction); at least 60 s."""
    later = steps[i + 1:]
    reserve = sum(x.estimate_s for x in later if x.kind != "train")
    train_left = steps[i].estimate_s + sum(x.estimate_s for x in later if x.kind == "train")
    return max(60.0, (left_s - reserve) * steps[i].estimate_s / max(train_left, 1e-9))


def _load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    names = list(TARGETS)
    intro = __doc__.split("\n\n")[0].replace("\n", " ")  # the first paragraph, whole
    p = argparse.ArgumentParser(
        description=intro, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="targets: " + ", ".join(names) + "\n\nRun it with the project's Python: after `make venv` (or any make "
               "target) that is\n  .venv/bin/python experiments/reproduce.py mdp-h100 --dry-run\nor through make:\n"
               "  make reproduce ARGS='mdp-h100 --dry-run'\nThe steps it prints are `python -m rl3jax ...` commands "
               "for that same Python\n(.venv/bin/python -m rl3jax ...). Train flags after -- go to every train step.")
    p.add_argument("target", choices=names + ["all", "list", "report", "laptop"],
                   help="a target; all: every target; list: targets, runs and budgets; report: the results tables; "
                        "laptop: the laptop study (RL² vs RL³ on a 2-core CPU, experiments/README.md)")
    p.add_argument("--out", default=None, help="root folder; each target gets a sub-folder [default: runs/repro; "
                                               f"laptop: the reports folder, {LAPTOP_OUT}]")
    p.add_argument("--dry-run", action="store_true", help="print the commands that would run, run nothing")
    p.add_argument("--tiny", action="store_true", help="2 iterations, 8 envs, H=10, 8 test tasks (smoke test)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"independent seeds per run (one vmapped population) [default: 1; laptop: {LAPTOP_SEEDS}]")
    p.add_argument("--algos", default=None, help="only these runs (e.g. rl2,rl3,rl3-markov,rl3-coarse)")
    p.add_argument("--stage", choices=("all", "train", "eval"), default="all",
                   help="train only (e.g. on every host of a pod), evaluate only, or both")
    p.add_argument("--episodes", type=int, default=None, help="held-out test tasks per evaluation [default: 1000]")
    g = p.add_argument_group("laptop study only")
    g.add_argument("--runs", default=None, help=f"run folders (checkpoints) [default: {LAPTOP_RUNS_DIR}]")
    g.add_argument("--resume", action="store_true", help="continue the study in --out and --runs")
    g.add_argument("--force", action="store_true",
                   help="start again: remove --runs and the study's outputs in --out first")
    g.add_argument("--max-minutes", type=float, default=None,
                   help=f"time guard for the whole study [default: {LAPTOP_MAX_MINUTES:g}]: each train step gets "
                        "--max-seconds = the time left minus the estimate of the steps after it")
    args, extra = p.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and any(not a.startswith("-") for a in extra[:1]):
        p.error(f"unrecognised arguments {extra} (pass train flags after --)")
    if args.target == "laptop":
        return laptop_main(args, extra, p)
    for flag, given in (("--runs", args.runs is not None), ("--resume", args.resume), ("--force", args.force),
                        ("--max-minutes", args.max_minutes is not None)):
        if given:
            p.error(f"{flag} applies to the laptop study only (target laptop), not to {args.target}")
    args.out = "runs/repro" if args.out is None else args.out
    args.seeds = 1 if args.seeds is None else args.seeds
    args.episodes = 1000 if args.episodes is None else args.episodes
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
            for rdir in report_figures(t, args.out, TINY_EPISODES if args.tiny else args.episodes):
                print(f"report of {t.name}: {rdir} (results.md, results.json, learning_curve.png, adaptation.png)")
        return 0
    plan = [(t, steps_for(t, args.out, args.tiny, args.seeds, algos, args.stage, args.episodes, extra))
            for t in targets]
    for t, steps in plan:
        print(describe(t, args.tiny, args.seeds))
        for s in steps:
            print(("  " if args.dry_run else "  will run: ") + s.shell())
    if args.dry_run:
        return 0
    from rl3jax.cli import main as rl3jax_main

    for t, steps in plan:
        for s in steps:
            print(f"\n$ {s.shell()}", flush=True)
            t0 = time.perf_counter()
            rc = rl3jax_main(s.argv)
            if rc:
                print(f"reproduce: step failed with status {rc}: {s.shell()}", file=sys.stderr)
                return rc
            print(f"  ({time.perf_counter() - t0:.1f}s)")
        if args.stage in ("all", "eval"):
            text = report(t, args.out, args.seeds)
            with open(os.path.join(args.out, t.name, "results.md"), "w") as f:
                f.write(text)
            print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
