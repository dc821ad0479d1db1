"""The laptop study's README (docs/results/laptop/README.md) and study.json, from its reports' results.json:
how it was made (command, commit, machine, settings, wall times) and the headline tables."""

from __future__ import annotations

import json
import os

from laptop import LAPTOP_RUNS, LaptopFamily, Study

from rl3jax.config import POLICY_MODES
from rl3jax.runs import runfiles


def _f(x, d: int = 2) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _run_record(rep: dict, rdir: str) -> dict | None:
    """One run's seeds in a report's results.json: per mode the mean over seeds of the held-out means with its
    standard error from the test tasks (sqrt(Σ s.e.²) / K), the per-seed means and the report's IQM [95% CI]."""
    rows = [r for r in rep["runs"] if os.path.dirname(os.path.abspath(r["run"])) == rdir]
    if not rows:
        return None
    grp = next(g for g in rep["groups"] if g["label"] == rows[0]["group"])
    rec = {"seeds": [r["seed"] for r in rows], "iterations": [r["iteration"] for r in rows]}
    for m in POLICY_MODES:
        ms, ses = [r[m]["mean_return"] for r in rows], [r[m]["stderr"] for r in rows]
        rec[m] = {"mean": sum(ms) / len(ms), "stderr": sum(se * se for se in ses) ** 0.5 / len(ses),
                  "per_seed": ms, "iqm": grp[m]["iqm"], "ci": [grp[m]["ci_low"], grp[m]["ci_high"]],
                  "normalised_iqm": grp[m]["normalised_iqm"]}
    return rec


def _baseline_rows(fd: dict, train: str, ood: list[str]) -> list[str]:
    """Rows of random, the best classical baseline and the oracle; a deterministic policy's value fills both
    columns (sampling its sharp logits and taking their argmax are the same policy)."""
    bt = fd["baselines"][train]
    best, md = bt.get("best_classical"), []
    for pol, label in (("random", "random"), (best, f"best classical baseline: {best}"), ("oracle", "oracle")):
        if not pol or pol not in bt:
            continue
        b = bt[pol]
        val = f"{b['mean']:.2f} ± {b['stderr']:.2f}"
        row = [f"*{label}* ({b['actions']})", "-", "-", val, "", val if b["actions"] == "deterministic" else "", "",
               _f(b["normalised"], 3)]
        row += [_f((fd["baselines"].get(v, {}).get(pol) or {}).get("mean")) for v in ood]
        md.append("| " + " | ".join(row) + " |")
    for v in ood:
        bv = fd["baselines"].get(v, {})
        if bv.get("best_classical") and bv["best_classical"] != best:
            md.append(f"\nBest classical baseline on {v}: {bv['best_classical']} "
                      f"({bv[bv['best_classical']]['mean']:.2f}).")
    return md


def _family_table(name: str, fam: LaptopFamily, reps: dict, runs_dir: str, algos: set | None) -> tuple[list, dict]:
    """The markdown lines and numbers of one family from its reports ``reps`` {variant: results.json}."""
    train, ood = fam.variants[0], list(fam.variants[1:])
    fd = {"runs": {}, "baselines": {}}
    md = [f"### {name} (H = {reps[train]['horizon']}, {reps[train]['episodes']} held-out tasks per evaluation)",
          "", "| algorithm | iterations (env steps per seed) | seeds | stochastic: mean ± s.e. | stochastic: IQM "
          "[95% CI] | greedy: mean ± s.e. | greedy: IQM [95% CI] | normalised (stoch. / greedy) |"
          + "".join(f" {v}: stoch. / greedy |" for v in ood), "|---|---|---|---|---|---|---|---|" + "---|" * len(ood)]
    for rname, label, _, _ in LAPTOP_RUNS:
        rdir = os.path.abspath(os.path.join(runs_dir, name, rname))
        rec = {v: r for v, rep in reps.items() if (r := _run_record(rep, rdir))}
        if (algos and rname not in algos) or train not in rec:
            continue
        fd["runs"][rname] = rec
        t = rec[train]
        steps = ", ".join(f"{i} ({i * runfiles.read_config(rdir).batch_steps:,})" for i in sorted(set(t["iterations"])))
        row = [label, steps, str(len(t["seeds"]))]
        for m in POLICY_MODES:
            row += [f"{t[m]['mean']:.2f} ± {t[m]['stderr']:.2f}", f"{_f(t[m]['iqm'])} [{_f(t[m]['ci'][0])}, "
                    f"{_f(t[m]['ci'][1])}]"]
        row.append(f"{_f(t['stochastic']['normalised_iqm'], 3)} / {_f(t['greedy']['normalised_iqm'], 3)}")
        row += [f"{rec[v]['stochastic']['mean']:.2f} / {rec[v]['greedy']['mean']:.2f}" if v in rec else "-" for v in ood]
        md.append("| " + " | ".join(row) + " |")
    for v, rep in reps.items():
        fd["baselines"][v] = {b["policy"]: {"mean": b["mean_return"], "stderr": b["stderr"], "actions": b["actions"],
                                            "normalised": b["normalised"]} for b in rep["baselines"]}
        fd["baselines"][v]["best_classical"] = rep["best_baseline"]
    md += _baseline_rows(fd, train, ood)
    md += ["", f"Pictures: [learning curves]({name}/{train}/learning_curve.png), "
           f"[adaptation]({name}/{train}/adaptation.png); OOD: "
           + ", ".join(f"[{v} adaptation]({name}/{v}/adaptation.png)" for v in ood)
           + "; full reports: " + ", ".join(f"[{v}]({name}/{v}/results.md)" for v in fam.variants), "",
           f"![learning curves, {name}]({name}/{train}/learning_curve.png)", ""]
    return md, fd


def laptop_table(study: Study, out: str, runs_dir: str, algos: set | None = None) -> tuple[str, dict]:
    """The headline tables (markdown) and their numbers from the reports in ``out/<family>/<variant>/``."""
    md, data = [], {}
    for name, fam in study.families.items():
        reps = {}
        for v in fam.variants:
            path = os.path.join(out, name, v, "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    reps[v] = json.load(f)
        if fam.variants[0] in reps:
            lines, data[name] = _family_table(name, fam, reps, runs_dir, algos)
            md += lines
    return "\n".join(md), data


def _settings(study: Study, runs_dir: str, seeds: int) -> list[str]:
    """The README's settings section: each family's preset and sizes, read from its first trained run."""
    lines = ["## Settings", "",
             "Every run of a family has the same PPO settings and the same number of environment steps (tasks per "
             "iteration × H × iterations): the family's laptop preset (`rl3jax/config.py`; cpu-bandit and cpu-mdp "
             "tuned for RL³ (Markov), BENCHMARKS.md \"Laptop presets (tuning)\"; cpu-garnet and cpu-deepsea take "
             "cpu-mdp's settings untuned); the transformers use the same learning rate, "
             "entropy bonus, epochs and minibatches (no separate tuning at this budget). Each run is a "
             f"{seeds}-seed vmapped population (`rl3jax train --seeds {seeds}`).", "",
             "| family | preset | tasks × H × iterations | env steps per run and seed | minibatch (sequences) | "
             "epochs | lr | entropy bonus | held-out evaluation during training |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, fam in study.families.items():
        dirs = [os.path.join(runs_dir, name, r) for r in ["rl3-markov", *(r[0] for r in LAPTOP_RUNS)]]
        dirs = [d for d in dirs if runfiles.holds_run(d)]
        if not dirs:
            continue
        c = runfiles.read_config(dirs[0])
        lines.append(f"| {name} | {fam.preset} | {c.num_envs} × {c.horizon} × {c.iters} | "
                     f"{c.batch_steps * c.iters:,} | {c.minibatch_envs} | {c.epochs} | "
                     f"{c.lr:g} | {c.ent_coef:g} ({c.ent_schedule}) | every {c.eval_every} iterations, "
                     f"{c.eval_episodes} tasks |")
    return lines


def laptop_readme(study: Study, out: str, runs_dir: str, meta: dict, algos: set | None = None) -> str:
    """docs/results/laptop/README.md: how it was made (command, commit, machine, settings, wall times) and the
    headline tables; also writes study.json (the same, as numbers)."""
    table, data = laptop_table(study, out, runs_dir, algos)
    tiny = meta["tiny"]
    lines = [f"# Laptop study: {study.title}, on a 2-core CPU" + (" (TINY smoke-test scale: not a result)" if tiny else ""),
             "",
             f"Command: `{meta['command']}`  ",
             f"Commit: `{meta['commit']['commit']}`" + (" (with uncommitted changes: "
                                                        + ", ".join(meta['commit']['dirty_files']) + ")"
                                                        if meta["commit"]["dirty"] else "") + "  ",
             f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores ({meta['machine']['platform']}); "
             f"load average at the start {meta['load_start']}, at the end {meta.get('load_end')}  ",
             f"Started {meta['started']} UTC; total wall time **{meta['wall_s'] / 60:.1f} min** "
             f"({meta['wall_s']:.0f} s; time guard {meta['max_minutes']:g} min)", "",
             *_settings(study, runs_dir, meta["seeds"])]
    lines += ["", "Models: RL² and RL³ (transformer): `--model transformer`; RL³ (Markov): `--model markov` (an MLP on "
              "the current input with the RL³ Q-estimates). RL³ uses the default `fresh` semantics.", "",
              "## Headline", "",
              "Held-out: the report's test tasks (`rl3jax.evaluate`, one meta-episode each). *mean ± s.e.*: mean "
              "over seeds of each seed's held-out mean, s.e. from the test tasks (√(Σ s.e.²)/K). *IQM [95% CI]*: "
              "interquartile mean over seeds with a stratified bootstrap interval (with 2 seeds the IQM is their "
              "mean and the interval spans them). Normalised score = (x − random)/(oracle − random), of the IQM. "
              "OOD columns: mean over seeds, stochastic / greedy. Baseline rows: the family's random policy, the "
              "best classical baseline on the training distribution and the task-knowing oracle, on the same "
              "tasks (their OOD columns: the same policy on the OOD tasks); each says whether its actions are "
              "deterministic (a function of what it has seen, ties broken at random: its value fills both "
              "columns) or stochastic.", "", table,
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
    cmd = meta["command"].split()
    lines += [f"Reproduce: `.venv/bin/python {' '.join(cmd[:2])}` (`make study` for the laptop study, `make "
              f"study-beyond` for the one beyond the paper); the run folders go to `{meta['runs']}/` (git-ignored), "
              f"the reports here. Every step is an `rl3jax` command, listed with `{' '.join(cmd[:2])} --dry-run`.", ""]
    runfiles.atomic_write_json(os.path.join(out, "study.json"), {**meta, "results": data})
    return "\n".join(lines)
