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


def wall_seconds(rows: list[dict], batch_steps: int) -> np.ndarray:
    """Training seconds up to each row, shape (rows,): the cumulative sum of each row's share of its chunk's
    wall time (compile included, held-out evaluations and checkpoints not)."""
    return np.cumsum([batch_steps / r["steps_per_second"] for r in rows])


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
    {"key", "label", "x", "y", "lo", "hi"} (key: "{steps|wall}/{train|eval|eval_greedy}/{group label}" or
    "ref/{policy}", also the matplotlib line's gid; x: environment steps or seconds, None for a horizontal
    reference line; y: return per meta-episode; lo/hi: the shaded 95% band across seeds, or None)."""
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
    for ax in (ax_s, ax_w):
        ax.set_ylabel("return per meta-episode (sum of H rewards)")
        ax.grid(alpha=0.3)
    ax_s.set(xlabel="environment steps", title="against environment steps")
    ax_w.set(xlabel="training wall-clock seconds (incl. compile, excl. held-out evaluations; mean over seeds)",
             title="against wall-clock time")
    _finish(fig, ax_s, "Learning curves — " + header + "\ntraining return: mean over the PPO batch's tasks at "
            "each iteration; held-out: the run's eval_every evaluations; reference lines: baselines on the "
            "report's held-out tasks (each label gives its number of tasks)", path, 0.86, 0.12, left=0.06, wspace=0.2)
    return fig, lines


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

