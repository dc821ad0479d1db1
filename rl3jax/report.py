"""Reports of trained runs (``rl3jax report RUN [RUN ...] --out DIR``, or ``make_report``): for one run or several
of one task family side by side (a sweep folder of ``rl3jax.sweep`` stands for its trained jobs, and adds a table
of its jobs with each one's best setting), ``results.json`` and ``results.md`` (held-out mean return ± s.e. over the first N
test tasks (METHOD §3), stochastic and greedy, normalised; per setting with several seeds the IQM with a 95%
bootstrap interval; the family's baselines on the same tasks), the figures of ``rl3jax.plots`` and ``cache.json``
(evaluations the next report reuses): ``outputs.REPORT_FILES``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import warnings

import numpy as np

from rl3jax.baselines import BASELINES
from rl3jax.config import GREEDY, POLICY_MODES, RUN_CONTROL, STOCHASTIC
from rl3jax.envs.registry import variants
from rl3jax.evaluate import HeldOutEvaluator, normalise, run_baselines
from rl3jax.outputs import atomic_write, atomic_write_json
from rl3jax.plots import REFERENCE, adaptation_curve, best_classical, learning_curve, time_to_score
from rl3jax.runs.load import Run, expand_runs, load_run
from rl3jax.runs.runfiles import check_evaluable, holds_run, latest_step
from rl3jax.sweep import PLAN, job_dir, job_state, read_plan


# ------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass
class RunInfo:
    """A run of the report: the loaded run, its unique display name, metrics rows and newest checkpoint's
    iteration; ``setting``: its config without the fields seeds of one setting differ in."""

    run: Run
    name: str
    rows: list
    iteration: int

    def __post_init__(self):
        self.path, self.cfg = self.run.path, self.run.cfg
        self.setting = tuple(sorted((k, v) for k, v in self.cfg.to_dict().items() if k not in ("seed", *RUN_CONTROL)))


def load_runs(paths: list[str]) -> list[RunInfo]:
    """The runs of ``paths`` (population folders: their members), names unique (``pop/seed0``). ValueError for
    zero runs, a missing path or no metrics rows; ``RunFolderError`` for a folder that is no trained run."""
    if not paths:
        raise ValueError("no run folders given; pass one or more folders written by `rl3jax train`")
    for p in paths:
        if not os.path.isdir(p):
            raise ValueError(f"{p} is not a folder (expected a run folder written by `rl3jax train`)")
    runs = []
    for p in expand_runs(paths):
        check_evaluable(p)
        run = load_run(p)
        if not (rows := run.metrics()):
            raise ValueError(f"{p}/metrics.jsonl has no rows")
        runs.append(RunInfo(run, "", rows, run.latest_step))
    names = [os.path.basename(os.path.normpath(r.path)) for r in runs]
    for r, n in zip(runs, names):  # member folders (seed0, ...) keep their population's name
        parent = os.path.dirname(os.path.normpath(r.path))
        r.name = f"{os.path.basename(parent)}/{n}" if r.run.is_member or names.count(n) > 1 else n
    return runs


def sweep_jobs(paths: list[str]) -> tuple[list[str], list[dict]]:
    """``paths`` with each sweep folder (its ``sweep.json``) replaced by the folders of its jobs that hold a
    checkpoint; the sweep's jobs ({"index", "name", "grid", "state", "dir": None while untrained}). ValueError
    for a sweep with no trained job."""
    out, jobs = [], []
    for p in paths:
        if not os.path.exists(os.path.join(p, PLAN)):
            out.append(p)
            continue
        first = len(jobs)
        for j in read_plan(p)["jobs"]:
            d = job_dir(p, j)
            trained = holds_run(d) and latest_step(d) is not None
            jobs.append({**{k: j[k] for k in ("index", "name", "grid")}, "state": job_state(p, j)[0],
                         "dir": d if trained else None})
            out += [d] * trained
        if not any(j["dir"] for j in jobs[first:]):
            raise ValueError(f"no job of the sweep in {p} has a checkpoint yet (`rl3jax sweep status {p}`)")
    return out, jobs


def job_summary(job: dict, runs: list[RunInfo], groups: list[dict], evals: list[dict]) -> dict:
    """A sweep job's row: its members, the setting (group) of the best held-out stochastic return (the IQM over
    seeds, or the mean of one seed) and its training seconds (compile included; from the metrics rows)."""
    top = os.path.abspath(job["dir"]) + os.sep if job["dir"] else None  # the job's folder or a member below it
    idx = [i for i, r in enumerate(runs) if top and (os.path.abspath(r.path) + os.sep).startswith(top)]
    score = lambda g: g[STOCHASTIC]["iqm"] if g[STOCHASTIC]["iqm"] is not None else \
        evals[g["runs"][0]][STOCHASTIC]["mean_return"]  # noqa: E731
    best = max((g for g in groups if set(g["runs"]) <= set(idx)), key=score, default=None)
    seconds = sum(runs[idx[0]].cfg.batch_steps / r["steps_per_second"] for r in runs[idx[0]].rows) if idx else None
    return {**{k: v for k, v in job.items() if k != "dir"}, "members": len(idx), "train_seconds": seconds,
            "best": None if best is None else {"group": best["label"], "stochastic": score(best)}}


# ------------------------------------------------------------------------------------------ statistics
def iqm_ci(x, confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean of scores ``x`` (shape (n,), one per seed) and its ``confidence`` percentile bootstrap
    interval (``scipy.stats.bootstrap``, fixed seed; as rliable, Agarwal et al. 2021). n = 1: (x, nan, nan)."""
    from scipy import stats

    x = np.asarray(x, float)
    iqm = float(stats.trim_mean(x, 0.25))
    if len(x) < 2:
        return iqm, float("nan"), float("nan")
    with warnings.catch_warnings(action="ignore"):  # degenerate resamples (equal scores) warn; the CI is still valid
        res = stats.bootstrap((x,), lambda a, axis: stats.trim_mean(a, 0.25, axis=axis), vectorized=True,
                              confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                              random_state=np.random.default_rng(seed))
    return iqm, float(res.confidence_interval.low), float(res.confidence_interval.high)


# ------------------------------------------------------------------------------------------ evaluation
class Cache(dict):
    """``DIR/cache.json``: evaluations keyed by what they measured (written after each new entry)."""

    def __init__(self, path: str):
        super().__init__(data if isinstance(data := _read_json(path), dict) else {})
        self.path = path

    def put(self, key: str, value: dict) -> None:
        self[key] = value
        atomic_write_json(self.path, self)


def _read_json(path: str):
    """The JSON in ``path``; None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _result(res: dict, source: str, greedy: bool) -> dict:
    return {"mean_return": float(res["mean_return"]), "stderr": float(res["stderr"]),
            "episodes": int(res["episodes"]), "greedy": bool(greedy),
            "step_rewards": [float(v) for v in np.asarray(res["step_rewards"])], "source": source}


def _existing_eval(run: RunInfo, variant: str, mode: str, episodes: int) -> dict | None:
    """An eval JSON in the run folder (``rl3jax eval --json``, e.g. reproduce's eval-{variant}-{mode}.json)
    of the same checkpoint, variant, mode and number of tasks, with the per-step rewards."""
    want = {"variant": variant, "policy": mode, "episodes": episodes, "iteration": run.iteration}
    for path in sorted(glob.glob(os.path.join(glob.escape(run.path), "eval*.json"))):
        r = _read_json(path)
        if (isinstance(r, dict) and all(r.get(k) == v for k, v in want.items()) and "mean_return" in r
                and "stderr" in r and len(r.get("step_rewards") or []) == run.cfg.horizon):
            return _result(r, path, mode == GREEDY)
    return None


def evaluate_runs(runs: list[RunInfo], variant: str, episodes: int, cache: Cache, log=print) -> list[dict]:
    """{mode: result} per run: reused from the run folder or the cache, else restored and evaluated (one
    ``HeldOutEvaluator`` per setting)."""
    compiled: dict = {}  # setting -> (trainer, template, evaluator); the variant is the same for all
    out = []
    for run in runs:
        keys = {mode: f"run|{os.path.abspath(run.path)}|{run.iteration}|{variant}|{mode}|{episodes}"
                for mode in POLICY_MODES}  # the cache's key of each evaluation
        res = {m: _existing_eval(run, variant, m, episodes) or (k in cache and {**cache[k], "source": "cache"})
               for m, k in keys.items()}
        missing = [m for m in POLICY_MODES if not res[m]]
        if missing:
            if run.setting not in compiled:
                trainer = run.run.trainer(variant)  # the checkpoint has the training variant's shapes
                compiled[run.setting] = (trainer, run.run.template(run.run.trainer()),
                                         HeldOutEvaluator(trainer.meta_env, trainer.actor, episodes))
            trainer, template, evaluator = compiled[run.setting]
            state, _ = run.run.restore(trainer, run.iteration, template)
            for mode in missing:
                log(f"evaluating {run.name} ({mode}) on {episodes} held-out {trainer.cfg.env}/{variant} tasks")
                res[mode] = _result(evaluator(state.actor_params, mode == GREEDY), "evaluated", mode == GREEDY)
                cache.put(keys[mode], res[mode])
        out.append(res)
    return out


def load_baselines_json(path: str, env: str, variant: str, horizon: int, episodes: int) -> dict[str, dict]:
    """{policy: result} from a ``rl3jax baselines --json`` file: a list of result dicts, or a dict holding one
    under "baselines", "results" or "rows" (skipped rows left out), each with "policy", "mean_return", "stderr"
    and optionally "step_rewards" and "env", "variant", "horizon", "episodes" (checked against the report's,
    here or at the top). ValueError for an unreadable file or one that measured something else."""
    data = _read_json(path)
    top = data if isinstance(data, dict) else {}
    items = data if isinstance(data, list) else top.get("baselines") or top.get("results") or top.get("rows")
    if not isinstance(items, list) or not items:
        raise ValueError(f"--baselines-json {path}: expected a readable list of baseline results (as `rl3jax "
                         "baselines --json` writes)")
    want = {"env": env, "variant": variant, "horizon": horizon, "episodes": episodes}
    out = {}
    for it in items:
        if isinstance(it, dict) and it.get("skipped"):  # `rl3jax baselines` skips intractable ones (bayes-optimal)
            continue
        if not isinstance(it, dict) or not {"policy", "mean_return", "stderr"} <= set(it):
            raise ValueError(f"--baselines-json {path}: every entry needs policy, mean_return and stderr")
        for k, v in want.items():
            got = it.get(k, top.get(k))
            if got is not None and got != v:
                raise ValueError(f"--baselines-json {path}: {it['policy']} has {k}={got!r}, the report needs "
                                 f"{k}={v!r} (env {env}, variant {variant}, H={horizon}, {episodes} tasks)")
        sr = it.get("step_rewards")
        out[it["policy"]] = {"mean_return": float(it["mean_return"]), "stderr": float(it["stderr"]),
                             "episodes": episodes, "greedy": bool(it.get("greedy", it["policy"] == "oracle")),
                             "step_rewards": [float(v) for v in sr] if sr is not None and len(sr) == horizon else None,
                             "source": path}
    return out


def evaluate_baselines(env: str, variant: str, horizon: int, episodes: int, cache: Cache,
                       from_json: dict | None = None, log=print) -> dict[str, dict]:
    """{name: ``run_baselines`` row plus its one-line "about"} for every baseline that fits the family (with
    ``from_json``: those it holds, i.e. the ``rl3jax baselines --only`` choice), from ``from_json``, the cache, or
    evaluated now (and cached); one intractable at this H is left out (logged)."""
    key = f"baseline|{env}|{variant}|{horizon}|{{}}|{episodes}".format
    known = {n: {**cache[key(n)], "source": "cache"} for n in BASELINES if key(n) in cache}

    def progress(row):
        if row["skipped"]:
            log(f"  {row['policy']} skipped: {row['skipped']}")
        elif row["source"] == "evaluated":
            log(f"evaluated baseline {row['policy']} on {episodes} held-out {env}/{variant} tasks (H={horizon})")
            cache.put(key(row["policy"]), row)

    rows = run_baselines(env, variant, horizon, episodes, list(from_json) if from_json else None, progress=progress,
                         known={**known, **(from_json or {})})
    return {r["policy"]: {**r, "about": BASELINES[r["policy"]].doc} for r in rows if not r["skipped"]}


# ------------------------------------------------------------------------------------------ grouping
def group_runs(runs: list[RunInfo]) -> list[dict]:
    """Runs of one ``setting`` together, in first-seen order, labelled by algorithm, model, iterations and any
    other field that differs between the settings."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.setting, []).append(i)
    settings = [dict(s) for s in groups]
    varying = sorted({k for s in settings for k in s if any(s[k] != o[k] for o in settings)}
                     - {"algo", "model", "iters"})
    out = []
    for s, idx in zip(settings, groups.values()):
        extra = [", ".join(f"{k}={s[k]}" for k in varying)] if varying else []
        seeds = [f"{len(idx)} seeds"] if len(idx) > 1 else []
        label = " · ".join([s["algo"], s["model"], f"{s['iters']} it", *extra, *seeds])
        out.append({"label": label, "runs": idx, "algo": s["algo"], "model": s["model"], "iters": s["iters"],
                    "seeds": [runs[i].cfg.seed for i in idx], "setting": {k: s[k] for k in varying}})
    return out


# ------------------------------------------------------------------------------------------ tables
def _pm(r: dict | None) -> str:
    return "-" if r is None else f"{r['mean_return']:.2f} ± {r['stderr']:.2f}"


def _f(x: float | None, d: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"


def _ci(s: dict | None, pre: str = "", d: int = 2) -> str:
    if s is None or s.get(pre + "iqm") is None:
        return "-"
    return f"{_f(s[pre + 'iqm'], d)} [{_f(s[pre + 'ci_low'], d)}, {_f(s[pre + 'ci_high'], d)}]"


def markdown(res: dict) -> str:
    """results.md from the results.json dict (the same numbers, rounded: returns to 2 decimals, normalised
    scores to 3)."""
    H = res["horizon"]
    lines = [f"# Report: {res['env']} / variant {res['variant']}, H = {H}", "",
             f"Held-out: the first {res['episodes']} test tasks of `rl3jax.evaluate` (one meta-episode of {H} steps "
             "each); mean return ± standard error (std/√n).",
             "Normalised score = (x − random) / (oracle − random).",
             "Stochastic: actions sampled from the policy; greedy: argmax actions.", "",
             "## Runs", "",
             "| run | algorithm | model | iterations | seed | train variant | stochastic | greedy | "
             "normalised stochastic | normalised greedy | evaluation |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        s, g = r[STOCHASTIC], r[GREEDY]
        src = "evaluated now" if "evaluated" in (s["source"], g["source"]) else "reused"
        model = r["model"] + (f" (width {r['gru_hidden']})" if r.get("gru_hidden") else "")  # the GRU's width
        lines.append(f"| {r['name']} | {r['algo']} | {model} | {r['iteration']} | {r['seed']} | "
                     f"{r['train_variant']} | {_pm(s)} | {_pm(g)} | {_f(s['normalised'])} | {_f(g['normalised'])} | "
                     f"{src} |")
    multi = [g for g in res["groups"] if len(g["runs"]) > 1]
    if multi:
        lines += ["", "## Settings with several seeds", "",
                  "Interquartile mean (IQM) of the seeds' held-out means, with a 95% stratified bootstrap confidence "
                  "interval (scipy.stats.bootstrap, percentile, 10000 resamples).", "",
                  "| setting | seeds | IQM stochastic [95% CI] | IQM greedy [95% CI] | normalised IQM stochastic "
                  "[95% CI] | normalised IQM greedy [95% CI] |", "|---|---|---|---|---|---|"]
        for g in multi:
            lines.append(f"| {g['label']} | {', '.join(map(str, g['seeds']))} | {_ci(g['stochastic'])} | "
                         f"{_ci(g['greedy'])} | {_ci(g['stochastic'], 'normalised_', 3)} | "
                         f"{_ci(g['greedy'], 'normalised_', 3)} |")
    if res.get("sweep"):
        lines += ["", "## Sweep jobs", "", "Each job's best setting by held-out stochastic return (IQM over seeds, "
                  "or the one seed's mean); training seconds from the metrics rows (compile included).", "",
                  "| job | state | members | best setting | its held-out return | training seconds |",
                  "|---|---|---|---|---|---|"]
        for j in res["sweep"]:
            b = j["best"] or {}
            lines.append(f"| {j['index']} {j['name']} | {j['state']} | {j['members']} | {b.get('group', '-')} | "
                         f"{_f(b.get('stochastic'), 2)} | {_f(j['train_seconds'], 1)} |")
    lines += ["", "## Baselines (same held-out tasks)", "", "| policy | actions | mean ± s.e. | normalised |",
              "|---|---|---|---|"]
    for b in res["baselines"]:
        best = " (best classical)" if b["policy"] == res["best_baseline"] else ""
        lines.append(f"| {b['policy']}{best} | {b['actions']} | {_pm(b)} | {_f(b['normalised'])} |")
    lines += ["", "Actions: *deterministic*, a function of what the policy has seen (ties broken at random); "
              "*stochastic*, random draws beyond that (exploration, posterior samples). The policies:", ""]
    lines += [f"- `{b['policy']}`: {b['about']}" for b in res["baselines"]]
    lines += ["", "Figures: `learning_curve.png` (training and held-out return against environment steps and "
              "wall-clock seconds), `adaptation.png` (mean reward at each step of the meta-episode)."]
    return "\n".join(lines + time_to_score_lines(res)) + "\n"


# ------------------------------------------------------------------------------------------ time to score
def time_to_score_rows(curve: list[dict], random: float | None, best: float | None) -> list[dict]:
    """Time-to-score (issue 22) of each held-out line of a learning curve (``plots.learning_curve``'s lines, or
    the "learning_curve" of a results.json): per setting and policy mode, {"setting", "mode", "scores": per
    ``plots.SCORE_FRACTIONS`` f {"fraction", "target" (random + f (best − random)), "seconds", "env_steps"} (both None:
    never reached), "best_fraction" (the highest held-out return as such a fraction)}. Seconds: training
    wall-clock, compile included, held-out evaluations not (``plots.wall_seconds``; a population's members share
    them), at the first evaluation at or above the target. [] without ``random`` or a ``best`` above it."""
    if random is None or best is None or not best > random:
        return []
    by_key = {ln["key"]: ln for ln in curve}
    rows = []
    for key, ln in by_key.items():
        parts = key.split("/", 2)
        if len(parts) < 3 or parts[0] != "wall" or parts[1] not in ("eval", "eval_greedy"):
            continue
        steps = by_key[f"steps/{parts[1]}/{parts[2]}"]["x"]
        scores = [{"fraction": s["fraction"], "target": s["target"], "seconds": s["x"],
                   "env_steps": None if s["index"] is None else int(steps[s["index"]])}
                  for s in time_to_score(ln["x"], ln["y"], random, best)]
        rows.append({"setting": parts[2], "mode": STOCHASTIC if parts[1] == "eval" else GREEDY, "scores": scores,
                     "best_fraction": (float(max(ln["y"])) - random) / (best - random)})
    return rows


def time_to_score_lines(res: dict) -> list[str]:
    """results.md's "Time to score" section from ``res["time_to_score"]`` (none: a line saying why)."""
    rows, best = res.get("time_to_score") or [], res.get("best_baseline")
    head = ["", "## Time to score", ""]
    if not rows:
        return head + ["No held-out evaluations during training (`--set eval_every=N`) or no classical baseline "
                       "above random: no time to score."]
    cells = [f"{s['fraction']:.0%} ({s['target']:.2f})" for s in rows[0]["scores"]]
    out = head + [f"Training wall-clock (compile included, held-out evaluations not) until the held-out return of "
                  f"the evaluations during training first reaches the fraction of the way from random to the best "
                  f"classical baseline ({best}) on the report's tasks; in brackets the return it must reach.", "",
                  f"| setting | held-out | {' | '.join(cells)} | best fraction reached |",
                  "|---|---|" + "---|" * len(cells) + "---|"]
    for r in rows:
        got = [f"{s['seconds']:.1f} s ({s['env_steps']:,} steps)" if s["seconds"] is not None else "not reached"
               for s in r["scores"]]
        best_reached = math.floor(r["best_fraction"] * 100 + 1e-9) / 100  # rounded down: 0.899 is not 0.90
        out.append(f"| {r['setting']} | {r['mode']} | {' | '.join(got)} | {best_reached:.2f} |")
    return out


# ------------------------------------------------------------------------------------------ the report
def _check_report(runs: list[RunInfo], episodes, variant: str | None) -> tuple[str, int, str, str]:
    """(env, horizon, test variant, figure header) of a report of ``runs``; ValueError as ``make_report``."""
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"--episodes must be a whole number >= 1, got {episodes!r}")
    fams = sorted({(r.cfg.env, r.cfg.horizon) for r in runs})
    if len(fams) > 1:
        raise ValueError("a report compares runs of one task family and horizon; got "
                         + ", ".join(f"{e} H={h}" for e, h in fams) + " (make one report each)")
    env, horizon = fams[0]
    train_variants = sorted({r.cfg.variant for r in runs})
    if variant is None:
        if len(train_variants) > 1:
            raise ValueError(f"the runs were trained on different variants {train_variants}; pass --variant to "
                             "choose the test variant")
        variant = train_variants[0]
    if variant not in variants(env):
        raise ValueError(f"--variant {variant!r} is not valid for env {env!r}; valid: {', '.join(variants(env))}")
    return env, horizon, variant, (f"family {env}, test variant {variant}" + (
        f" (trained on {', '.join(train_variants)})" if train_variants != [variant] else "") + f", H={horizon}")


def make_report(paths: list[str], out: str, episodes: int = 1000, variant: str | None = None,
                baselines_json: str | None = None, log=print) -> dict:
    """Writes the report of the runs in ``paths`` (population folders: their members; sweep folders: their
    trained jobs, ``sweep_jobs``) into ``out``; returns the
    results.json dict. ``episodes``: N; ``variant``: the test variant (default: the runs' own); ``baselines_json``:
    a ``rl3jax baselines --json`` file to reuse. ValueError, before writing anything, for no runs, a folder that is
    no run, runs of several families, horizons or (without ``variant``) training variants, a bad variant or N."""
    paths, jobs = sweep_jobs(paths)
    runs = load_runs(paths)
    env, horizon, variant, header = _check_report(runs, episodes, variant)
    from_json = load_baselines_json(baselines_json, env, variant, horizon, episodes) if baselines_json else None

    os.makedirs(out, exist_ok=True)
    cache = Cache(os.path.join(out, "cache.json"))
    evals = evaluate_runs(runs, variant, episodes, cache, log)
    baselines = evaluate_baselines(env, variant, horizon, episodes, cache, from_json, log)
    ref = {k: baselines[k]["mean_return"] for k in REFERENCE if k in baselines}
    groups = group_runs(runs)
    for g in groups:
        for mode in POLICY_MODES:
            xs = [evals[i][mode]["mean_return"] for i in g["runs"]]
            iqm, lo, hi = iqm_ci(xs) if len(xs) > 1 else (None, None, None)
            g[mode] = {"iqm": iqm, "ci_low": lo, "ci_high": hi, "normalised_iqm": normalise(iqm, ref),
                       "normalised_ci_low": normalise(lo, ref), "normalised_ci_high": normalise(hi, ref)}
    label = {i: g["label"] for g in groups for i in g["runs"]}
    res_runs = [{"run": r.path, "name": r.name, "group": label[i], "algo": r.cfg.algo, "model": r.cfg.model,
                 "gru_hidden": r.cfg.gru_hidden if r.cfg.model == "gru" else None, "iteration": r.iteration,
                 "seed": r.cfg.seed, "train_variant": r.cfg.variant,
                 **{m: {**evals[i][m], "normalised": normalise(evals[i][m]["mean_return"], ref)} for m in POLICY_MODES}}
                for i, r in enumerate(runs)]
    res = {"env": env, "variant": variant, "horizon": horizon, "episodes": episodes, "runs": res_runs,
           "groups": groups, "baselines": [{"policy": n, **b, "normalised": normalise(b["mean_return"], ref)}
                                           for n, b in baselines.items()],
           "best_baseline": best_classical(baselines), "reference": ref,
           **({"sweep": [job_summary(j, runs, groups, evals) for j in jobs]} if jobs else {})}
    # the data behind every plotted line, also in results.json (the learning curve's held-out lines have the
    # runs' own numbers of tasks, so only the adaptation curve's header gives the report's)
    res["learning_curve"] = learning_curve(runs, groups, baselines, header, os.path.join(out, "learning_curve.png"))[1]
    res["time_to_score"] = time_to_score_rows(res["learning_curve"], ref.get("random"), (baselines[
        res["best_baseline"]]["mean_return"] if res["best_baseline"] else None))
    res["adaptation"] = adaptation_curve(runs, groups, evals, baselines, f"{header}, {episodes} held-out tasks",
                                         os.path.join(out, "adaptation.png"))[1]
    res = _jsonable(res)
    atomic_write_json(os.path.join(out, "results.json"), res)
    atomic_write(os.path.join(out, "results.md"), markdown(res))
    return res


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
