"""Reports of trained runs (``rl3jax report RUN [RUN ...] --out DIR``): held-out results, learning curves and
adaptation curves, for one run or several side by side (seeds, algorithms, models of one task family).

Writes into ``DIR``:

- ``results.json`` and ``results.md``: per run the held-out mean return ± standard error (std/√n) over the
  first N test tasks of ``rl3jax.evaluate`` (one meta-episode each, METHOD §3 "Test sets"), for the stochastic
  and the greedy policy, and its normalised score (x − random)/(oracle − random); per setting with several
  seeds (runs grouped by their config minus ``seed`` and the driver's bookkeeping fields) the interquartile
  mean (IQM) of the seeds' held-out means with a 95% stratified bootstrap confidence interval (percentile
  method, as rliable's ``get_interval_estimates``; one task family and variant is one stratum, so the
  bootstrap resamples seeds); the family's baselines (``rl3jax.evaluate.baseline_names``) on the same tasks.
- ``learning_curve.png``: training return (``return_mean`` of metrics.jsonl: the mean return of the PPO
  batch's meta-episodes at each iteration) and the held-out returns of the ``eval_every`` rows, against
  environment steps (left) and wall-clock seconds (right), one colour per setting: the mean over its seeds
  with a shaded 95% t-interval across seeds; horizontal lines: random, oracle and the best classical
  baseline of the family on the N held-out tasks.
- ``adaptation.png``: the mean reward at each step t of the meta-episode over the N held-out tasks, for each
  setting (stochastic solid, greedy dashed; mean over seeds, shaded 95% t-interval) and each baseline.
- ``cache.json``: the held-out evaluations made for this report (reused by the next report into ``DIR``).

Wall-clock seconds: the training time, reconstructed from the metrics rows as the cumulative sum of
``batch_steps / steps_per_second`` (each row's share of its chunk's wall time; the first chunk's compile
included, held-out evaluations and checkpoints not, so runs with different ``eval_every`` compare fairly;
a resumed run continues from its last kept row).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings

import numpy as np

from rl3jax.baselines import IntractableError
from rl3jax.config import GREEDY, POLICY_MODES, RUN_CONTROL, STOCHASTIC, TrainConfig, policy_mode
from rl3jax.envs.registry import variants
from rl3jax.evaluate import HeldOutEvaluator, baseline_names, evaluate
from rl3jax.outputs import atomic_write, atomic_write_json
from rl3jax.runfiles import check_evaluable
from rl3jax.runs import Run, expand_runs, load_run
from rl3jax.train import make_meta_env

#: config fields that do not define a setting (seeds of one setting differ only in these)
NOT_SETTING = ("seed", *RUN_CONTROL)
MODES = POLICY_MODES
REFERENCE = ("random", "oracle")


# ------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass
class RunInfo:
    """A run of the report: the loaded run, its display name, metrics rows and evaluated checkpoint."""

    run: Run
    name: str  # short unique display name
    rows: list  # metrics.jsonl rows
    iteration: int  # the latest checkpoint's iteration (what the held-out evaluation measures)

    @property
    def path(self) -> str:
        return self.run.path

    @property
    def cfg(self) -> TrainConfig:
        return self.run.cfg

    @property
    def setting(self) -> tuple:
        return tuple(sorted((k, v) for k, v in self.cfg.to_dict().items() if k not in NOT_SETTING))


def resolve_runs(paths: list[str]) -> list[str]:
    """Run folders from the command line: population folders (population.json) expand to their members.

    Raises ValueError for zero runs or a missing path; ``RunFolderError`` for a folder that is not a trained
    run (``rl3jax.runfiles.check_evaluable``: no config.json and metrics.jsonl, or no checkpoint)."""
    if not paths:
        raise ValueError("no run folders given; pass one or more folders written by `rl3jax train`")
    for p in paths:
        if not os.path.isdir(p):
            raise ValueError(f"{p} is not a folder (expected a run folder written by `rl3jax train`)")
    out = expand_runs(paths)
    for m in out:
        check_evaluable(m)
    return out


def load_runs(paths: list[str]) -> list[RunInfo]:
    """The runs of ``paths`` (run folders with a checkpoint, from ``resolve_runs``) with their metrics rows and
    newest checkpoint step; names unique (a population member keeps its population's name: ``pop/seed0``).
    ValueError for a run without metrics rows."""
    runs = []
    for p in paths:
        run = load_run(p)
        rows = run.metrics()
        if not rows:
            raise ValueError(f"{p}/metrics.jsonl has no rows")
        runs.append(RunInfo(run, "", rows, run.latest_step))
    names = [os.path.basename(os.path.normpath(r.path)) for r in runs]
    for r, n in zip(runs, names):  # member folders (seed0, ...) keep their population's name
        parent = os.path.dirname(os.path.normpath(r.path))
        r.name = f"{os.path.basename(parent)}/{n}" if r.run.is_member or names.count(n) > 1 else n
    return runs


def wall_seconds(rows: list[dict], batch_steps: int) -> np.ndarray:
    """Training seconds up to each row (shape (rows,)): the cumulative sum of ``batch_steps /
    steps_per_second`` (``steps_per_second`` is its chunk's, so each row gets an equal share of the chunk's
    wall time, compile included, held-out evaluations and checkpoints excluded)."""
    return np.cumsum([batch_steps / r["steps_per_second"] for r in rows])


# ------------------------------------------------------------------------------------------ statistics
def iqm_ci(x, confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean of scores ``x`` (shape (n,), one per seed) and its ``confidence`` bootstrap interval
    (``scipy.stats.bootstrap``, percentile method, fixed seed; Agarwal et al. 2021, "Deep RL at the Edge of
    the Statistical Precipice", whose rliable computes the same with one stratum). n = 1: (x, nan, nan)."""
    from scipy import stats

    x = np.asarray(x, float)
    iqm = float(stats.trim_mean(x, 0.25))
    if len(x) < 2:
        return iqm, float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples (equal scores) warn; the interval is still valid
        res = stats.bootstrap((x,), lambda a, axis: stats.trim_mean(a, 0.25, axis=axis), vectorized=True,
                              confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                              random_state=np.random.default_rng(seed))
    return iqm, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_band(ys: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Mean over seeds (axis 0) and a ``confidence`` Student-t interval of the mean (None for one seed)."""
    from scipy import stats

    ys = np.asarray(ys, float)
    m = ys.mean(axis=0)
    if ys.shape[0] < 2:
        return m, None, None
    half = stats.t.ppf(0.5 + confidence / 2, ys.shape[0] - 1) * ys.std(axis=0, ddof=1) / math.sqrt(ys.shape[0])
    return m, m - half, m + half


def normalise(x: float | None, ref: dict) -> float | None:
    """(x − random) / (oracle − random); None without both references."""
    lo, hi = ref.get("random"), ref.get("oracle")
    if x is None or lo is None or hi is None or hi == lo or not math.isfinite(x):
        return None
    return (x - lo) / (hi - lo)


# ------------------------------------------------------------------------------------------ evaluation
class Cache:
    """``DIR/cache.json``: evaluations keyed by what they measured (written after each new entry)."""

    def __init__(self, path: str):
        self.path = path
        self.data = {}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    self.data = json.load(f)
            except (OSError, json.JSONDecodeError):
                self.data = {}

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value
        atomic_write_json(self.path, self.data)


def _result(res: dict, source: str, greedy: bool) -> dict:
    return {"mean_return": float(res["mean_return"]), "stderr": float(res["stderr"]),
            "episodes": int(res["episodes"]), "greedy": bool(greedy),
            "step_rewards": [float(v) for v in np.asarray(res["step_rewards"])], "source": source}


def _existing_eval(run: RunInfo, variant: str, mode: str, episodes: int) -> dict | None:
    """An eval JSON in the run folder (``rl3jax eval --json``, e.g. reproduce's eval-{variant}-{mode}.json)
    of the same checkpoint, variant, mode and number of tasks, with the per-step rewards."""
    for fname in sorted(os.listdir(run.path)):
        if not (fname.startswith("eval") and fname.endswith(".json")):
            continue
        try:
            with open(os.path.join(run.path, fname)) as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(r, dict):
            continue
        if (r.get("variant") == variant and r.get("policy") == mode and r.get("episodes") == episodes
                and r.get("iteration") == run.iteration and len(r.get("step_rewards") or []) == run.cfg.horizon
                and "mean_return" in r and "stderr" in r):
            return _result(r, os.path.join(run.path, fname), mode == GREEDY)
    return None


def evaluate_runs(runs: list[RunInfo], variant: str, episodes: int, cache: Cache, log=print) -> list[dict]:
    """{mode: result} per run: reused from the run folder or the cache, else restored and evaluated (one
    compiled evaluation per setting, ``rl3jax.evaluate.HeldOutEvaluator``, equal to ``rl3jax.evaluate.evaluate``)."""
    compiled: dict = {}  # setting -> (trainer, template, evaluator)
    out = []
    for run in runs:
        res = {}
        keys = {mode: f"run|{os.path.abspath(run.path)}|{run.iteration}|{variant}|{mode}|{episodes}"
                for mode in MODES}  # the cache's key of each evaluation
        for mode, key in keys.items():
            found = _existing_eval(run, variant, mode, episodes)
            if found is None and cache.get(key):
                found = {**cache.get(key), "source": "cache"}
            if found:
                res[mode] = found
        missing = [m for m in MODES if m not in res]
        if missing:
            setting = (run.setting, variant)
            if setting not in compiled:
                trainer = run.run.trainer(variant)
                compiled[setting] = (trainer, run.run.template(trainer),
                                     HeldOutEvaluator(trainer.meta_env, trainer.actor, episodes))
            trainer, template, evaluator = compiled[setting]
            cfg = trainer.cfg
            state, _ = run.run.restore(trainer, run.iteration, template)
            for mode in missing:
                log(f"evaluating {run.name} ({mode}) on {episodes} held-out {cfg.env}/{variant} tasks")
                r = _result(evaluator(state.actor_params, mode == GREEDY), "evaluated", mode == GREEDY)
                cache.put(keys[mode], r)
                res[mode] = r
        out.append(res)
    return out


def load_baselines_json(path: str, env: str, variant: str, horizon: int, episodes: int) -> dict[str, dict]:
    """{policy: result} from a ``rl3jax baselines --json`` file: a list of result dicts (or a dict holding one
    under "baselines", "results" or "rows", as ``rl3jax baselines --json`` writes; its skipped rows, intractable
    at this H, are left out), each with "policy", "mean_return", "stderr" and optionally "step_rewards",
    "env", "variant", "horizon", "episodes" (checked against the report's where given, here or at the top).
    Raises ValueError for an unreadable file or one that measured something else."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--baselines-json {path}: cannot read it ({type(e).__name__}: {e})") from None
    top = data if isinstance(data, dict) else {}
    items = data if isinstance(data, list) else (data.get("baselines") or data.get("results") or data.get("rows")
                                                 or [])
    if not isinstance(items, list) or not items:
        raise ValueError(f"--baselines-json {path}: expected a list of baseline results (as `rl3jax baselines "
                         "--json` writes)")
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
    """{name: result} for every ``baseline_names(meta_env)`` of the family (random, oracle, and whatever
    classical baselines it lists), from ``from_json``, the cache, or ``evaluate`` (the oracle greedy)."""
    meta_env = make_meta_env(TrainConfig(env=env, variant=variant, horizon=horizon, algo="rl2"))
    out = {}
    for name in baseline_names(meta_env):
        key = f"baseline|{env}|{variant}|{horizon}|{name}|{episodes}"
        if from_json and name in from_json:
            out[name] = from_json[name]
        elif cache.get(key):
            out[name] = {**cache.get(key), "source": "cache"}
        else:
            log(f"evaluating baseline {name} on {episodes} held-out {env}/{variant} tasks (H={horizon})")
            greedy = name == "oracle"
            try:
                res = evaluate(meta_env, name, episodes, greedy=greedy)
            except IntractableError as e:  # no table at this H (bayes-optimal beyond its limit): left out
                log(f"  {name} skipped: {e}")
                continue
            out[name] = _result(res, "evaluated", greedy)
            cache.put(key, out[name])
    return out


def best_classical(baselines: dict[str, dict]) -> str | None:
    """The best baseline by held-out mean return other than random and oracle (None if there is none)."""
    others = [n for n in baselines if n not in REFERENCE and math.isfinite(baselines[n]["mean_return"])]
    return max(others, key=lambda n: baselines[n]["mean_return"]) if others else None


# ------------------------------------------------------------------------------------------ grouping
def group_runs(runs: list[RunInfo]) -> list[dict]:
    """Runs of one setting (config minus seed and bookkeeping) together, in first-seen order, with labels
    naming algorithm, model, iterations and any other field that differs between the settings."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.setting, []).append(i)
    settings = [dict(s) for s in groups]
    varying = sorted({k for s in settings for k in s if any(s[k] != o[k] for o in settings)}
                     - {"algo", "model", "iters"})
    out = []
    for s, idx in zip(settings, groups.values()):
        label = f"{s['algo']} · {s['model']} · {s['iters']} it"
        if varying:
            label += " · " + ", ".join(f"{k}={s[k]}" for k in varying)
        if len(idx) > 1:
            label += f" · {len(idx)} seeds"
        out.append({"label": label, "runs": idx, "algo": s["algo"], "model": s["model"], "iters": s["iters"],
                    "seeds": [runs[i].cfg.seed for i in idx], "setting": {k: s[k] for k in varying}})
    return out


# ------------------------------------------------------------------------------------------ figures
def _new_figure(w: float, h: float, ncols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _plot(ax, lines: list, data: dict, color, style: str, marker, label: str | None, key: str):
    (ln,) = ax.plot(data["x"], data["y"], style, color=color, marker=marker, markersize=4, label=label, lw=1.6)
    ln.set_gid(key)
    if data.get("lo") is not None:
        ax.fill_between(data["x"], data["lo"], data["hi"], color=color, alpha=0.2, lw=0)
    lines.append({"key": key, "label": label, **data})


def _ref_lines(ax, ref_lines: list[dict]):
    for r in ref_lines:
        ax.axhline(r["y"], color=r["color"], ls=r["style"], lw=1.2, label=r["label"]).set_gid(r["key"])


def _reference(baselines: dict) -> list[dict]:
    styles = {"random": ("0.45", ":"), "oracle": ("black", "--")}
    out = []
    for name in REFERENCE:
        if name in baselines:
            b = baselines[name]
            mode = policy_mode(b["greedy"])
            out.append({"key": f"ref/{name}", "name": name, "y": b["mean_return"], "color": styles[name][0],
                        "style": styles[name][1], "label": f"{name} ({mode}): {b['mean_return']:.2f}"})
    best = best_classical(baselines)
    if best:
        b = baselines[best]
        out.append({"key": f"ref/{best}", "name": best, "y": b["mean_return"], "color": "tab:purple", "style": "-.",
                    "label": f"best classical baseline, {best}: {b['mean_return']:.2f}"})
    return out


def learning_curve(runs: list[RunInfo], groups: list[dict], baselines: dict, header: str, path: str | None):
    """Draws learning_curve.png (to ``path`` if given); returns (figure, lines): the plotted lines, each
    {"key", "label", "x", "y", "lo", "hi"} (key: "{steps|wall}/{train|eval|eval_greedy}/{group label}" or
    "ref/{policy}", also the matplotlib line's gid; x: environment steps or seconds, None for a horizontal
    reference line; y: return per meta-episode; lo/hi: the shaded 95% band across seeds, or None)."""
    import matplotlib as mpl

    colors = mpl.colormaps["tab10"]
    fig, (ax_s, ax_w) = _new_figure(14, 6.2, 2)
    lines: list[dict] = []
    for gi, g in enumerate(groups):
        members = [runs[i] for i in g["runs"]]
        color = colors(gi % 10)
        # iterations every seed has (a run stopped early by --max-seconds is cut to the common part)
        common = set.intersection(*[{r["iteration"] for r in m.rows} for m in members])
        its = sorted(common)
        by_it = [{r["iteration"]: (r, w) for r, w in zip(m.rows, wall_seconds(m.rows, m.cfg.batch_steps))}
                 for m in members]
        steps = np.array([by_it[0][i][0]["env_steps"] for i in its], float)
        wall = np.mean([[b[i][1] for i in its] for b in by_it], axis=0)
        n = len(members)
        for field, kind, style, marker, what in (("return_mean", "train", "-", None, "training return"),
                                                  ("eval_return", "eval", "--", "o", "held-out, stochastic"),
                                                  ("eval_return_greedy", "eval_greedy", ":", "s", "held-out, greedy")):
            sel = [i for i in its if all(field in b[i][0] for b in by_it)]
            if not sel:
                continue
            mask = np.isin(its, sel)
            ys = np.array([[b[i][0][field] for i in sel] for b in by_it])
            m, lo, hi = mean_band(ys)
            if kind != "train" and "eval_episodes" in by_it[0][sel[0]][0]:
                what = what.replace("held-out", f"held-out ({by_it[0][sel[0]][0]['eval_episodes']} tasks)")
            label = f"{g['label']}: {what}" + (f" (mean of {n} seeds, 95% t-interval)" if n > 1 else "")
            for ax, panel, x in ((ax_s, "steps", steps[mask]), (ax_w, "wall", wall[mask])):
                _plot(ax, lines, {"x": x, "y": m, "lo": lo, "hi": hi}, color, style, marker,
                      label if panel == "steps" else None, f"{panel}/{kind}/{g['label']}")
    refs = _reference(baselines)
    for ax in (ax_s, ax_w):
        _ref_lines(ax, refs)
        ax.set_ylabel("return per meta-episode (sum of H rewards)")
        ax.grid(alpha=0.3)
    lines += [{"key": r["key"], "label": r["label"], "x": None, "y": r["y"], "lo": None, "hi": None} for r in refs]
    ax_s.set_xlabel("environment steps")
    ax_s.set_title("against environment steps")
    ax_w.set_xlabel("training wall-clock seconds (incl. compile, excl. held-out evaluations; mean over seeds)")
    ax_w.set_title("against wall-clock time")
    handles, labels = ax_s.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Learning curves — " + header + "\ntraining return: mean over the PPO batch's tasks at each "
                 "iteration; held-out: the run's eval_every evaluations; reference lines: baselines on the "
                 "report's held-out tasks", fontsize=10)
    nleg = len(labels)
    fig.subplots_adjust(top=0.86, bottom=0.12 + 0.028 * math.ceil(nleg / 2), left=0.06, right=0.98, wspace=0.2)
    if path:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return fig, lines


def adaptation_curve(runs: list[RunInfo], groups: list[dict], evals: list[dict], baselines: dict, header: str,
                     path: str | None):
    """Draws adaptation.png (to ``path`` if given); returns (figure, lines): {"key", "label", "x" (steps
    1..H), "y" (mean reward at step t over the held-out tasks; mean over seeds), "lo", "hi"}; key (also the
    line's gid) "{stochastic|greedy}/{group label}" or "baseline/{policy}"."""
    import matplotlib as mpl

    colors = mpl.colormaps["tab10"]
    fig, (ax,) = _new_figure(11, 7, 1)
    lines: list[dict] = []
    horizon = runs[0].cfg.horizon
    t = np.arange(1, horizon + 1)
    for gi, g in enumerate(groups):
        n = len(g["runs"])
        for mode, style in ((STOCHASTIC, "-"), (GREEDY, "--")):
            ys = np.array([evals[i][mode]["step_rewards"] for i in g["runs"]])
            m, lo, hi = mean_band(ys)
            label = f"{g['label']} ({mode})" + (f", mean of {n} seeds, 95% t-interval" if n > 1 else "")
            _plot(ax, lines, {"x": t, "y": m, "lo": lo, "hi": hi}, colors(gi % 10), style, None, label,
                  f"{mode}/{g['label']}")
    bstyle = {"random": ("0.45", ":"), "oracle": ("black", "--")}
    extra = mpl.colormaps["Set2"]
    k = 0
    for name, b in baselines.items():
        if b.get("step_rewards") is None:
            continue
        color, style = bstyle.get(name, (None, "-."))
        if color is None:
            color, k = extra(k % 8), k + 1
        mode = policy_mode(b["greedy"])
        _plot(ax, lines, {"x": t, "y": np.asarray(b["step_rewards"]), "lo": None, "hi": None}, color, style, None,
              f"baseline: {name} ({mode})", f"baseline/{name}")
    ax.set_xlabel("step t of the meta-episode")
    ax.set_ylabel("mean reward at step t over the held-out tasks")
    ax.grid(alpha=0.3)
    ax.set_xlim(0.5, horizon + 0.5)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Adaptation within a meta-episode — " + header + "\nmean reward at each step over the held-out "
                 "tasks (one meta-episode each; a new task at t = 1)", fontsize=10)
    fig.subplots_adjust(top=0.88, left=0.08, right=0.98, bottom=0.1 + 0.03 * math.ceil(len(labels) / 2))
    if path:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return fig, lines


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
        lines.append(f"| {r['name']} | {r['algo']} | {r['model']} | {r['iteration']} | {r['seed']} | "
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
    lines += ["", "## Baselines (same held-out tasks)", "", "| policy | actions | mean ± s.e. | normalised |",
              "|---|---|---|---|"]
    for b in res["baselines"]:
        best = " (best classical)" if b["policy"] == res["best_baseline"] else ""
        lines.append(f"| {b['policy']}{best} | {policy_mode(b['greedy'])} | {_pm(b)} | "
                     f"{_f(b['normalised'])} |")
    lines += ["", "Figures: `learning_curve.png` (training and held-out return against environment steps and "
              "wall-clock seconds), `adaptation.png` (mean reward at each step of the meta-episode)."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ the report
def make_report(paths: list[str], out: str, episodes: int = 1000, variant: str | None = None,
                baselines_json: str | None = None, log=print) -> dict:
    """Writes results.json, results.md, learning_curve.png and adaptation.png for the runs in ``paths``
    (population folders expand to their members) into ``out``; returns the results.json dict.

    ``episodes``: held-out test tasks (N); ``variant``: the test variant (default: the runs' training
    variant); ``baselines_json``: reuse a ``rl3jax baselines --json`` file for the baselines it holds.
    Raises ValueError (before writing anything) for no runs, a folder that is not a run, runs of different
    families or horizons, runs trained on different variants without ``variant``, a bad variant or N.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"--episodes must be a whole number >= 1, got {episodes!r}")
    runs = load_runs(resolve_runs(paths))
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
    from_json = load_baselines_json(baselines_json, env, variant, horizon, episodes) if baselines_json else None

    os.makedirs(out, exist_ok=True)
    cache = Cache(os.path.join(out, "cache.json"))
    evals = evaluate_runs(runs, variant, episodes, cache, log)
    baselines = evaluate_baselines(env, variant, horizon, episodes, cache, from_json, log)
    ref = {k: baselines[k]["mean_return"] for k in REFERENCE if k in baselines}
    groups = group_runs(runs)
    for g in groups:
        for mode in MODES:
            xs = [evals[i][mode]["mean_return"] for i in g["runs"]]
            iqm, lo, hi = iqm_ci(xs) if len(xs) > 1 else (None, None, None)
            g[mode] = {"iqm": iqm, "ci_low": lo, "ci_high": hi, "normalised_iqm": normalise(iqm, ref),
                       "normalised_ci_low": normalise(lo, ref), "normalised_ci_high": normalise(hi, ref)}
    res_runs = []
    for r, e in zip(runs, evals):
        gi = next(j for j, g in enumerate(groups) if runs.index(r) in g["runs"])
        res_runs.append({"run": r.path, "name": r.name, "group": groups[gi]["label"], "algo": r.cfg.algo,
                         "model": r.cfg.model, "iteration": r.iteration, "seed": r.cfg.seed,
                         "train_variant": r.cfg.variant,
                         **{m: {**e[m], "normalised": normalise(e[m]["mean_return"], ref)} for m in MODES}})
    best = best_classical(baselines)
    res = {"env": env, "variant": variant, "horizon": horizon, "episodes": episodes, "runs": res_runs,
           "groups": [{k: v for k, v in g.items()} for g in groups],
           "baselines": [{"policy": n, **b, "normalised": normalise(b["mean_return"], ref)}
                         for n, b in baselines.items()],
           "best_baseline": best, "reference": ref}
    header = (f"family {env}, test variant {variant}"
              + (f" (trained on {', '.join(train_variants)})" if train_variants != [variant] else "")
              + f", H={horizon}, {episodes} held-out tasks")
    # the data behind every plotted line, also in results.json
    res["learning_curve"] = learning_curve(runs, groups, baselines, header, os.path.join(out, "learning_curve.png"))[1]
    res["adaptation"] = adaptation_curve(runs, groups, evals, baselines, header, os.path.join(out, "adaptation.png"))[1]
    res = _jsonable(res)
    atomic_write_json(os.path.join(out, "results.json"), res)
    atomic_write(os.path.join(out, "results.md"), markdown(res))
    return res


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
