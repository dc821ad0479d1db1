"""The laptop study (``reproduce.py laptop``, ``make study``): RL² (transformer), RL³ (transformer) and RL³
(Markov) on bandits and MDPs at H = 100 with equal env-step budgets, 2-seed populations, on a 2-core CPU.

Every step is an ``rl3jax`` command (``baselines --json``, ``train``, ``report``) run in this process; the headline
README and study.json are gathered from the reports' results.json. See experiments/README.md "Laptop study".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

from rl3jax.runs import runfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the laptop study's runs (the same three in every family): folder name, label, algorithm, model
LAPTOP_RUNS = (("rl2", "RL² (transformer)", "rl2", "transformer"),
               ("rl3", "RL³ (transformer)", "rl3", "transformer"),
               ("rl3-markov", "RL³ (Markov)", "rl3", "markov"))


@dataclasses.dataclass(frozen=True)
class LaptopFamily:
    env: str
    preset: str  # the tuned laptop preset: every run's PPO settings (lr, entropy bonus, epochs, minibatches)
    variants: tuple[str, ...]  # test variants: the training distribution first, then the OOD ones
    #: measured member-steps/s of a 2-seed population on this machine class (a free 2-core CPU), per run
    #: name; for the time estimate and the time guard (see experiments/README.md "Laptop study")
    steps_per_second: dict
    #: run sizes that differ from ``LAPTOP_SIZES`` (e.g. a family with its own H); ``baselines``: variant -> the
    #: ``--only`` list of its baselines step (absent: every baseline that fits); ``runs``: the ``LAPTOP_RUNS`` it
    #: trains (empty: all)
    sizes: dict = dataclasses.field(default_factory=dict)
    baselines: dict = dataclasses.field(default_factory=dict)
    runs: tuple[str, ...] = ()


LAPTOP = {"bandit": LaptopFamily("bandit", "cpu-bandit", ("train", "ood"),
                                 {"rl2": 2200.0, "rl3": 2000.0, "rl3-markov": 12000.0}),
          "mdp": LaptopFamily("mdp", "cpu-mdp", ("train", "alpha0.25", "det-rewards"),
                              {"rl2": 2200.0, "rl3": 1800.0, "rl3-markov": 8000.0})}
#: every run of both families (equal env steps: num_envs × H × iters): tasks per iteration, iterations, minibatch
#: sequences, held-out evaluation every eval_every iterations on eval_episodes tasks, iterations per chunk
LAPTOP_SIZES = {"num_envs": 160, "iters": 20, "minibatch_envs": 40, "eval_every": 5, "chunk_iters": 5,
                "horizon": 100, "eval_episodes": 250}
#: the study beyond the paper (``make study-beyond``, issue 18): garnets of 64 and 256 states (one family, the
#: training variant first; the s64 runs are also tested on s256 and on 10 successors per (s, a)) and DeepSea
#: (N = 10, H = 300, so 54 tasks x 300 ~ the others' 160 x 100 steps per iteration), 12 iterations each (~190 K
#: steps per run and seed). To fit about 40 minutes of a 2-core CPU, RL³ (transformer) runs on garnet-s64 only, and
#: PSRL / OPSRL / MAP-greedy at S = 256 (dense 256 x 5 x 256 posteriors) are left out of that baselines step.
_BEYOND_SIZES = {"iters": 12, "eval_every": 4, "chunk_iters": 4}
_S256 = {"s256": "random,oracle,model-greedy"}
BEYOND = {"garnet-s64": LaptopFamily("garnet", "cpu-garnet", ("train", "s256", "branch10"),
                                     {"rl2": 2200.0, "rl3": 1500.0, "rl3-markov": 6000.0}, _BEYOND_SIZES, _S256),
          "garnet-s256": LaptopFamily("garnet", "cpu-garnet", ("s256",), {"rl2": 2200.0, "rl3-markov": 6000.0},
                                      _BEYOND_SIZES, _S256, ("rl2", "rl3-markov")),
          "deepsea-n10": LaptopFamily("deepsea", "cpu-deepsea", ("train",), {"rl2": 900.0, "rl3-markov": 4000.0},
                                      {**_BEYOND_SIZES, "horizon": 300, "num_envs": 54, "minibatch_envs": 18},
                                      runs=("rl2", "rl3-markov"))}
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


@dataclasses.dataclass(frozen=True)
class Study:
    """One laptop study (a ``reproduce.py`` target): its families (name -> ``LaptopFamily``, the training variant
    first in each), the folders it writes by default and its time guard (minutes)."""

    title: str
    families: dict
    out: str
    runs_dir: str
    max_minutes: float

    def outputs(self) -> tuple[str, ...]:
        """What the study writes into --out (and what --force removes there)."""
        return ("README.md", "study.json") + tuple(self.families)


#: the studies by target name
STUDIES = {"laptop": Study("RL² vs RL³ on bandits and MDPs", LAPTOP, LAPTOP_OUT, LAPTOP_RUNS_DIR, LAPTOP_MAX_MINUTES),
           "beyond": Study("RL² vs RL³ beyond the paper: garnets and DeepSea", BEYOND, "docs/results/beyond",
                           "runs/study-beyond", 60.0)}


def laptop_sizes(tiny: bool, fam: LaptopFamily | None = None) -> dict:
    """num_envs, iters, minibatch_envs, eval_every, chunk_iters, horizon, eval_episodes of every run (of ``fam``)."""
    if tiny:
        return {k: v for k, v in LAPTOP_TINY.items() if k != "episodes"}
    return {**LAPTOP_SIZES, **(fam.sizes if fam else {})}


@dataclasses.dataclass
class Step:
    argv: list[str]  # rl3jax arguments
    kind: str  # baselines | train | report (reproduce.py targets: train | eval)
    family: str = ""
    run: str = ""  # train: the run's name; baselines/report: the variant
    estimate_s: float = 0.0  # estimated seconds on a free 2-core CPU

    def shell(self) -> str:
        return shlex.join(["python", "-m", "rl3jax", *self.argv])


def laptop_steps(study: Study, runs_dir: str, out: str, tiny: bool, seeds: int, algos: set | None, episodes: int,
                 extra: list[str] | None = None, resume: bool = False) -> list[Step]:
    """The study's ``rl3jax`` commands in order: per family, ``baselines --json`` for every test variant,
    ``train`` of the three runs (K-seed populations, equal env steps), then ``report`` for every test variant
    (runs evaluated on ``episodes`` held-out tasks, greedy and stochastic, beside the baselines)."""
    steps: list[Step] = []
    for name, fam in study.families.items():
        z = laptop_sizes(tiny, fam)
        fdir, odir = os.path.join(runs_dir, name), os.path.join(out, name)
        for v in fam.variants:
            bjson = os.path.join(odir, f"baselines-{v}.json")
            if not (resume and os.path.exists(bjson)):
                steps.append(Step(["baselines", "--env", fam.env, "--variant", v, "--horizon", str(z["horizon"]),
                                         "--episodes", str(episodes), "--json", bjson]
                                  + (["--only", fam.baselines[v]] if v in fam.baselines else []), "baselines", name, v,
                                        0.0 if tiny else LAPTOP_BASELINE_SECONDS))
        runs = [r for r in LAPTOP_RUNS if (not algos or r[0] in algos) and (not fam.runs or r[0] in fam.runs)]
        for rname, _, algo, model in runs:
            run_dir = os.path.join(fdir, rname)
            argv = ["train", "--preset", fam.preset, "--algo", algo, "--model", model, "--out", run_dir,
                    "--horizon", str(z["horizon"]), "--iters", str(z["iters"]), "--num-envs", str(z["num_envs"]),
                    "--minibatch-envs", str(z["minibatch_envs"]), "--seeds", str(seeds),
                    "--set", f"eval_every={z['eval_every']}", "--set", f"eval_episodes={z['eval_episodes']}",
                    "--set", f"chunk_iters={z['chunk_iters']}", "--set", f"checkpoint_every={z['chunk_iters']}",
                    "--no-progress"] + (["--variant", fam.variants[0]] if fam.variants[0] != "train" else [])
            if tiny:
                argv += ["--set", "epochs=1"]
            if runfiles.holds_run(run_dir):
                argv += ["--resume"]
            est = z["num_envs"] * z["horizon"] * z["iters"] * seeds / fam.steps_per_second[rname] + 60.0
            steps.append(Step(argv + list(extra or []), "train", name, rname, 0.0 if tiny else est))
        for v in fam.variants:
            argv = ["report", *[os.path.join(fdir, r[0]) for r in runs], "--out", os.path.join(odir, v),
                    "--episodes", str(episodes), "--variant", v,
                    "--baselines-json", os.path.join(odir, f"baselines-{v}.json")]
            steps.append(Step(argv, "report", name, v, 0.0 if tiny else LAPTOP_REPORT_SECONDS))
    return steps


def laptop_describe(study: Study, steps: list[Step], tiny: bool, seeds: int, max_minutes: float) -> str:
    lines = [f"{study.title}: RL² (transformer), RL³ (transformer) and RL³ (Markov) with equal "
             f"env-step budgets per family, {seeds} seeds each (vmapped populations)"]
    for name, fam in study.families.items():
        z = laptop_sizes(tiny, fam)
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
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _commit() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(status),
            "dirty_files": status.splitlines()}


def _options(study: Study, args, p: argparse.ArgumentParser) -> dict:
    """The study's settings from ``reproduce.py laptop``'s options (defaults filled in); exit 2 for a bad one."""
    tiny = args.tiny
    o = {"tiny": tiny, "out": args.out or (os.path.join("runs", "study-tiny", "results") if tiny else study.out),
         "runs": args.runs or (os.path.join("runs", "study-tiny", "runs") if tiny else study.runs_dir),
         "seeds": LAPTOP_SEEDS if args.seeds is None else args.seeds,
         "episodes": args.episodes if args.episodes is not None else (LAPTOP_TINY["episodes"] if tiny else 1000),
         "max_minutes": study.max_minutes if args.max_minutes is None else args.max_minutes,
         "algos": set(args.algos.split(",")) if args.algos else None}
    if o["seeds"] < 2:
        p.error(f"--seeds {o['seeds']}: the laptop study needs at least 2 seeds per run (the IQM's interval is over "
                "seeds)")
    if o["episodes"] < 1:
        p.error(f"--episodes {o['episodes']}: must be >= 1")
    if not o["max_minutes"] > 0:
        p.error(f"--max-minutes {o['max_minutes']:g}: must be > 0")
    if args.stage != "all":
        p.error(f"--stage {args.stage}: the laptop study runs all its stages in order (continue an interrupted "
                "one with --resume)")
    if args.resume and args.force:
        p.error("--resume and --force: choose one (continue the study, or start it again from nothing)")
    known = {r[0] for r in LAPTOP_RUNS}
    if o["algos"] and o["algos"] - known:
        p.error(f"--algos: unknown {sorted(o['algos'] - known)}; valid for laptop: {', '.join(sorted(known))}")
    out, runs_dir = os.path.abspath(o["out"]), os.path.abspath(o["runs"])
    if out == runs_dir or runs_dir.startswith(out + os.sep):
        p.error(f"--runs {o['runs']}: must lie outside --out {o['out']} (the run folders hold checkpoints)")
    for d in (o["out"], o["runs"]):
        if os.path.exists(d) and not os.path.isdir(d):
            p.error(f"{d} exists and is not a folder")
    return o


def laptop_main(study: Study, args, extra: list[str], p: argparse.ArgumentParser) -> int:
    """``reproduce.py laptop`` (or another ``STUDIES`` target): validates everything, then runs the study's steps
    with a time guard."""
    o = _options(study, args, p)
    out, runs_dir = o["out"], o["runs"]
    busy = [d for d in (out, runs_dir) if os.path.isdir(d) and os.listdir(d)]
    plan = (study, runs_dir, out, o["tiny"], o["seeds"], o["algos"], o["episodes"], extra)
    steps = laptop_steps(*plan, resume=args.resume)
    print(laptop_describe(study, steps, o["tiny"], o["seeds"], o["max_minutes"]))
    for s in steps:
        print(("  " if args.dry_run else "  will run: ") + s.shell())
    if busy and not (args.resume or args.force):
        if args.dry_run:
            print(f"  (not empty: {', '.join(busy)}; the real run needs --resume to continue or --force to start "
                  "again)")
        else:
            p.error(f"{' and '.join(busy)} not empty: pass --resume to continue the study there, or --force to "
                    "start it again (--force removes the run folders and the study's outputs)")
    if args.dry_run:
        return 0
    if args.force:
        if os.path.isdir(runs_dir):
            shutil.rmtree(runs_dir)
        for name in study.outputs():
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        steps = laptop_steps(*plan)
    return _run_study(study, steps, o, args.argv)


def run_step(argv: list[str], since: float | None = None) -> tuple[int, float]:
    """Runs ``python -m rl3jax ARGV`` in this process, printing the command and its time (and the minutes since
    ``since``, a ``time.time()``); returns (exit status, seconds). A failure is reported on stderr."""
    from rl3jax.cli import main as rl3jax_main

    shell = shlex.join(["python", "-m", "rl3jax", *argv])
    print(f"\n$ {shell}", flush=True)
    t0 = time.perf_counter()
    rc = rl3jax_main(argv)
    dt = time.perf_counter() - t0
    print(f"  ({dt:.1f}s" + (f"; {(time.time() - since) / 60:.1f} min since the start)" if since else ")"), flush=True)
    if rc:
        print(f"reproduce: step failed with status {rc}: {shell}", file=sys.stderr)
    return rc, dt


def _run_study(study: Study, steps: list[Step], o: dict, argv: list[str]) -> int:
    """Runs the steps (train steps with ``--max-seconds`` from the time guard), then writes README.md and
    study.json into the study's --out."""
    out, runs_dir = o["out"], o["runs"]
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    deadline = t_start + o["max_minutes"] * 60
    meta = {"command": " ".join(["experiments/reproduce.py", *argv]), "commit": _commit(),
            "machine": _machine(), "load_start": _load_avg(), **{k: o[k] for k in ("tiny", "seeds", "episodes",
                                                                                  "max_minutes", "out", "runs")},
            "started": datetime.datetime.fromtimestamp(t_start, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "stages": [], "notes": [], "estimate_s": sum(x.estimate_s for x in steps)}
    for i, s in enumerate(steps):
        argv = list(s.argv)
        if s.kind == "train" and not o["tiny"]:
            argv += ["--max-seconds", f"{_time_cap(steps, i, deadline - time.time()):.0f}"]
        rc, dt = run_step(argv, t_start)
        meta["stages"].append({"kind": s.kind, "family": s.family, "run": s.run, "seconds": dt,
                               "command": shlex.join(["python", "-m", "rl3jax", *argv])})
        if rc:
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
    import laptop_readme  # experiments/laptop_readme.py (it imports this module)

    text = laptop_readme.laptop_readme(study, out, runs_dir, meta, o["algos"])
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    print(f"{study.title}: written to {out} (README.md, study.json, <family>/<variant>/ reports) in "
          f"{meta['wall_s'] / 60:.1f} min")
    return 0


def _time_cap(steps: list[Step], i: int, left_s: float) -> float:
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``reproduce.py``'s laptop studies (``STUDIES``)."""
    g = p.add_argument_group("laptop studies only (targets " + ", ".join(STUDIES) + ")")
    g.add_argument("--runs", default=None, help="run folders (checkpoints) [default: per study, "
                   + ", ".join(f"{k}: {v.runs_dir}" for k, v in STUDIES.items()) + "]")
    g.add_argument("--resume", action="store_true", help="continue the study in --out and --runs")
    g.add_argument("--force", action="store_true",
                   help="start again: remove --runs and the study's outputs in --out first")
    g.add_argument("--max-minutes", type=float, default=None,
                   help="time guard for the whole study [default: per study, " + ", ".join(
                       f"{k}: {v.max_minutes:g}" for k, v in STUDIES.items()) + "]: each train step gets "
                        "--max-seconds = the time left minus the estimate of the steps after it")


def refuse_flags(args, p: argparse.ArgumentParser) -> None:
    """Exit 2 (``p.error``) when a laptop-study option is given to another target."""
    for flag, given in (("--runs", args.runs is not None), ("--resume", args.resume), ("--force", args.force),
                        ("--max-minutes", args.max_minutes is not None)):
        if given:
            p.error(f"{flag} applies to the laptop studies only (targets {', '.join(STUDIES)}), not to {args.target}")
