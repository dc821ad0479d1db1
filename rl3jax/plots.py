"""The report's figures (matplotlib, imported on first use): learning curves and adaptation curves, each with
the data behind every line.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from rl3jax.config import GREEDY, STOCHASTIC
from rl3jax.outputs import atomic_write

REFERENCE = ("random", "oracle")
#: colour and line style of the reference policies' lines
REF_STYLE = {"random": ("0.45", ":"), "oracle": ("black", "--")}
#: time-to-score: fractions of the way from the random policy's held-out return to the best classical baseline's
SCORE_FRACTIONS = (0.5, 0.9, 1.0)


def wall_seconds(rows: list[dict], batch_steps: int) -> np.ndarray:
    """Training seconds up to each row, shape (rows,): the cumulative sum of each row's share of its chunk's
    wall time (compile included, held-out evaluations and checkpoints not)."""
    return np.cumsum([batch_steps / r["steps_per_second"] for r in rows])


def time_to_score(x, y, random: float, best: float, fractions=SCORE_FRACTIONS) -> list[dict]:
    """Where a held-out return curve first reaches each fraction f of the way from ``random`` to ``best`` (issue
    22): per f, {"fraction": f, "target": random + f (best − random), "index": the first i with y[i] >= target, or
    None (never reached), "x": x[index] or None}. ``x``: seconds or env steps, ``y``: returns, both shape (n,)."""
    out = []
    for f in fractions:
        target = random + f * (best - random)
        hit = next((i for i, v in enumerate(y) if v >= target), None)
        out.append({"fraction": f, "target": target, "index": hit, "x": None if hit is None else float(x[hit])})
    return out


def mean_band(ys: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Mean over seeds (axis 0) and a ``confidence`` Student-t interval of the mean (None for one seed)."""
    from scipy import stats

    ys = np.asarray(ys, float)
    m = ys.mean(axis=0)
    if ys.shape[0] < 2:
        return m, None, None
    half = stats.t.ppf(0.5 + confidence / 2, ys.shape[0] - 1) * ys.std(axis=0, ddof=1) / math.sqrt(ys.shape[0])
    return m, m - half, m + half


def best_classical(baselines: dict[str, dict]) -> str | None:
    """The best baseline by held-out mean return other than random and oracle (None if there is none)."""
    others = [n for n in baselines if n not in REFERENCE and math.isfinite(baselines[n]["mean_return"])]
    return max(others, key=lambda n: baselines[n]["mean_return"]) if others else None


def _new_figure(w: float, h: float, ncols: int):
    """(figure, its ``ncols`` axes side by side, the tab10 colours) without pyplot."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)], mpl.colormaps["tab10"]


def _plot(ax, lines: list, data: dict, color, style: str, marker, label: str | None, key: str):
    (ln,) = ax.plot(data["x"], data["y"], style, color=color, marker=marker, markersize=4, label=label, lw=1.6)
    ln.set_gid(key)
    if data.get("lo") is not None:
        ax.fill_between(data["x"], data["lo"], data["hi"], color=color, alpha=0.2, lw=0)
    lines.append({"key": key, "label": label, **data})


def _finish(fig, ax, title: str, path: str | None, top: float, bottom: float, **adjust):
    """The legend of ``ax``'s lines under the axes, the title, the margins (``bottom`` plus a row of legend per
    two entries); saves to ``path`` if given."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(top=top, bottom=bottom + 0.03 * math.ceil(len(labels) / 2), right=0.98, **adjust)
    if path:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))


def learning_curve(runs: list, groups: list[dict], baselines: dict, header: str, path: str | None):
    """Draws learning_curve.png (to ``path`` if given); returns (figure, lines): the plotted lines, each
    {"key", "label", "x", "y", "lo", "hi"} (key: "{steps|wall}/{train|eval|eval_greedy}/{group label}",
    "ref/{policy}" or "score/{steps|wall}/{group label}" (``_mark_scores``' stars), also the matplotlib line's
    gid; x: environment steps or seconds, None for a horizontal reference line; y: return per meta-episode;
    lo/hi: the shaded 95% band across seeds, or None)."""
    fig, (ax_s, ax_w), colors = _new_figure(14, 6.2, 2)
    lines: list[dict] = []
    for gi, g in enumerate(groups):
        members = [runs[i] for i in g["runs"]]
        # iterations every seed has (a run stopped early by --max-seconds is cut to the common part)
        its = sorted(set.intersection(*[{r["iteration"] for r in m.rows} for m in members]))
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
                _plot(ax, lines, {"x": x, "y": m, "lo": lo, "hi": hi}, colors(gi % 10), style, marker,
                      label if panel == "steps" else None, f"{panel}/{kind}/{g['label']}")
    best = best_classical(baselines)  # reference lines: random, oracle, the best classical baseline
    for name in [n for n in REFERENCE if n in baselines] + ([best] if best else []):
        b, (color, style) = baselines[name], REF_STYLE.get(name, ("tab:purple", "-."))
        what = name if name in REFERENCE else f"best classical baseline, {name}"
        label = f"{what} ({b['actions']}, {b['episodes']} tasks): {b['mean_return']:.2f}"
        for ax in (ax_s, ax_w):
            ax.axhline(b["mean_return"], color=color, ls=style, lw=1.2, label=label).set_gid(f"ref/{name}")
        lines.append({"key": f"ref/{name}", "label": label, "x": None, "y": b["mean_return"], "lo": None, "hi": None})
    if best and "random" in baselines:
        _mark_scores({"steps": ax_s, "wall": ax_w}, lines, baselines["random"]["mean_return"],
                     baselines[best]["mean_return"], best)
    for ax in (ax_s, ax_w):
        ax.set_ylabel("return per meta-episode (sum of H rewards)")
        ax.grid(alpha=0.3)
    ax_s.set(xlabel="environment steps", title="against environment steps")
    ax_w.set(xlabel="training wall-clock seconds (incl. compile, excl. held-out evaluations; mean over seeds)",
             title="against wall-clock time")
    _finish(fig, ax_s, "Learning curves — " + header + "\ntraining return: mean over the PPO batch's tasks at "
            "each iteration; held-out: the run's eval_every evaluations;\nreference lines: baselines on the "
            "report's held-out tasks (each label gives its number of tasks)", path, 0.84, 0.12, left=0.06, wspace=0.2)
    return fig, lines


def _mark_scores(axes: dict, lines: list, random: float, best: float, best_name: str) -> None:
    """A star, labelled 50% / 90% / 100%, where each held-out (stochastic) line first reaches ``time_to_score``'s
    fractions of the way from random to the best classical baseline; each star set is also a line of ``lines``
    (key "score/{steps|wall}/{group label}", y: the held-out returns there). Nothing when best <= random."""
    if not best > random:
        return
    for ln in [ln for ln in lines if ln["key"].split("/")[1:2] == ["eval"]]:
        panel, _, label = ln["key"].split("/", 2)
        hits = [s for s in time_to_score(ln["x"], ln["y"], random, best) if s["index"] is not None]
        if not hits:
            continue
        ax = axes[panel]
        color = next(d.get_color() for d in ax.get_lines() if d.get_gid() == ln["key"])
        data = {"x": [s["x"] for s in hits], "y": [float(ln["y"][s["index"]]) for s in hits], "lo": None, "hi": None}
        what = (f"held-out (stochastic) first at {', '.join(f'{f:.0%}' for f in SCORE_FRACTIONS)} of the way from "
                f"random to {best_name} (time to score)")
        first = panel == "steps" and not any(x["key"].startswith("score/") for x in lines)
        (m,) = ax.plot(data["x"], data["y"], ls="none", marker="*", ms=12, color=color, mec="black", mew=0.6,
                       label=what if first else None)
        m.set_gid(f"score/{panel}/{label}")
        marks: dict = {}  # one label per point: "90%, 100%" where two fractions are first reached together
        for s, x, y in zip(hits, data["x"], data["y"]):
            marks.setdefault((x, y), []).append(f"{s['fraction']:.0%}")
        for xy, names in marks.items():
            ax.annotate(", ".join(names), xy, textcoords="offset points", xytext=(5, 6), fontsize=7)
        lines.append({"key": f"score/{panel}/{label}", "label": what if first else None, **data})


def adaptation_curve(runs: list, groups: list[dict], evals: list[dict], baselines: dict, header: str, path: str | None):
    """Draws adaptation.png (to ``path`` if given); returns (figure, lines): {"key", "label", "x" (steps
    1..H), "y" (mean reward at step t over the held-out tasks; mean over seeds), "lo", "hi"}; key (also the
    line's gid) "{stochastic|greedy}/{group label}" or "baseline/{policy}"."""
    import matplotlib as mpl

    fig, (ax,), colors = _new_figure(11, 7, 1)
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
    extra = itertools.cycle(mpl.colormaps["Set2"].colors)  # the other baselines' colours
    for name, b in baselines.items():
        if b.get("step_rewards") is not None:
            color, style = REF_STYLE.get(name) or (next(extra), "-.")
            _plot(ax, lines, {"x": t, "y": np.asarray(b["step_rewards"]), "lo": None, "hi": None}, color, style,
                  None, f"baseline: {name} ({b['actions']})", f"baseline/{name}")
    ax.set(xlabel="step t of the meta-episode", ylabel="mean reward at step t over the held-out tasks",
           xlim=(0.5, horizon + 0.5))
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    _finish(fig, ax, "Adaptation within a meta-episode — " + header + "\nmean reward at each step over the held-out "
            "tasks (one meta-episode each; a new task at t = 1)", path, 0.88, 0.1, left=0.08)
    return fig, lines

