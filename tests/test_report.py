"""``rl3jax report``: numbers, figures (data behind every line), reuse of evaluations, errors."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rl3jax.cli import main as cli_main
from rl3jax.config import TrainConfig
from rl3jax.evaluate import baseline_names, evaluate
from rl3jax.report import adaptation_curve, group_runs, iqm_ci, learning_curve, load_runs, make_report, markdown
from rl3jax.runs.driver import train
from rl3jax.runs.runfiles import read_metrics
from rl3jax.trainer import make_meta_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPISODES = 16
H = 8
T_975_1 = 12.706204736174698  # Student t, 97.5% quantile, 1 degree of freedom (two seeds)
BASE = dict(env="bandit", model="markov", horizon=H, num_envs=4, minibatch_envs=2, epochs=1, iters=4,
            chunk_iters=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A population of two RL³ seeds with held-out evaluations every 2 iterations, one RL² run without any,
    and their report (N = 16 held-out tasks)."""
    d = tmp_path_factory.mktemp("runs")
    pop, rl2 = str(d / "rl3pop"), str(d / "rl2")
    train(TrainConfig(algo="rl3", eval_every=2, eval_episodes=8, **BASE), pop, seeds=2, quiet=True)
    train(TrainConfig(algo="rl2", **BASE), rl2, quiet=True)
    out = str(d / "report")
    logs = []
    res = make_report([pop, rl2], out, episodes=EPISODES, log=logs.append)
    return {"pop": pop, "rl2": rl2, "out": out, "res": res, "logs": logs, "dir": d}


def _meta_env():
    return make_meta_env(TrainConfig(env="bandit", horizon=H, algo="rl2"))


def test_results_numbers(runs):
    res = runs["res"]
    assert [r["name"] for r in res["runs"]] == ["rl3pop/seed0", "rl3pop/seed1", "rl2"]  # population expanded
    names = baseline_names(_meta_env())
    assert len(runs["logs"]) == 3 * 2 + len(names)  # every run x mode and every fitting baseline: once each
    assert res["episodes"] == EPISODES and res["horizon"] == H and res["variant"] == "train"
    base = {b["policy"]: b for b in res["baselines"]}
    assert list(base) == names and {"random", "oracle", "thompson", "gittins"} <= set(base)
    classical = {k: v["mean_return"] for k, v in base.items() if k not in ("random", "oracle")}
    assert res["best_baseline"] == max(classical, key=classical.get)
    meta_env = _meta_env()
    for name, greedy in (("random", False), ("oracle", True)):  # independent evaluation of the baselines
        ref = evaluate(meta_env, name, EPISODES, greedy=greedy)
        assert base[name]["mean_return"] == ref["mean_return"] and base[name]["stderr"] == ref["stderr"]
        np.testing.assert_allclose(base[name]["step_rewards"], ref["step_rewards"], rtol=1e-6)
    lo, hi = base["random"]["mean_return"], base["oracle"]["mean_return"]
    assert base["random"]["normalised"] == 0.0 and base["oracle"]["normalised"] == 1.0
    for r in res["runs"]:
        assert r["iteration"] == 4
        for mode in ("stochastic", "greedy"):
            e = r[mode]
            assert e["episodes"] == EPISODES and len(e["step_rewards"]) == H
            assert math.isclose(sum(e["step_rewards"]), e["mean_return"], rel_tol=1e-5)
            assert math.isclose(e["normalised"], (e["mean_return"] - lo) / (hi - lo), rel_tol=1e-12)
    # the two seeds form one setting: IQM of two values is their mean; the percentile bootstrap interval of two
    # values spans [min, max] (a resample is both-low with probability 1/4 > 2.5%)
    groups = res["groups"]
    assert [g["label"] for g in groups] == ["rl3 · markov · 4 it · 2 seeds", "rl2 · markov · 4 it"]
    g = groups[0]
    for mode in ("stochastic", "greedy"):
        xs = [res["runs"][i][mode]["mean_return"] for i in (0, 1)]
        assert math.isclose(g[mode]["iqm"], np.mean(xs), rel_tol=1e-12)
        assert (g[mode]["ci_low"], g[mode]["ci_high"]) == (min(xs), max(xs))
        assert math.isclose(g[mode]["normalised_iqm"], (np.mean(xs) - lo) / (hi - lo), rel_tol=1e-9)
    assert groups[1]["stochastic"]["iqm"] is None  # one seed: no IQM


def test_iqm_ci_on_known_scores():
    """IQM of 1..8 = mean of 3..6 = 4.5 (scipy trims 2 of 8 at each end); the 95% interval lies inside the
    range and around the IQM; one score: no interval."""
    iqm, lo, hi = iqm_ci(np.arange(1.0, 9.0))
    assert iqm == 4.5 and 1.0 <= lo < 4.5 < hi <= 8.0
    assert iqm_ci([3.0])[0] == 3.0 and math.isnan(iqm_ci([3.0])[1])


def _md_rows(text, header_start):
    lines = text.splitlines()
    i = next(j for j, line in enumerate(lines) if line.startswith(header_start))
    out = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_markdown_holds_the_json_numbers(runs):
    res = json.load(open(os.path.join(runs["out"], "results.json")))
    md = open(os.path.join(runs["out"], "results.md")).read()
    rows = _md_rows(md, "| run |")
    assert len(rows) == 3
    for row, r in zip(rows, res["runs"]):
        assert row[0] == r["name"] and row[1] == r["algo"] and row[2] == r["model"] and row[3] == str(r["iteration"])
        assert row[6] == f"{r['stochastic']['mean_return']:.2f} ± {r['stochastic']['stderr']:.2f}"
        assert row[7] == f"{r['greedy']['mean_return']:.2f} ± {r['greedy']['stderr']:.2f}"
        assert row[8] == f"{r['stochastic']['normalised']:.3f}" and row[9] == f"{r['greedy']['normalised']:.3f}"
    assert [r["gru_hidden"] for r in res["runs"]] == [None] * 3  # markov runs
    res["runs"][0] |= {"model": "gru", "gru_hidden": 128}  # a GRU run's width is in its model cell
    assert _md_rows(markdown(res), "| run |")[0][2] == "gru (width 128)"
    (grow,) = _md_rows(md, "| setting |")
    g = res["groups"][0]
    assert grow[0] == g["label"] and grow[1] == "0, 1"
    s = g["stochastic"]
    assert grow[2] == f"{s['iqm']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
    assert grow[4] == f"{s['normalised_iqm']:.3f} [{s['normalised_ci_low']:.3f}, {s['normalised_ci_high']:.3f}]"
    brows = _md_rows(md, "| policy |")
    assert [b[0].removesuffix(" (best classical)") for b in brows] == [b["policy"] for b in res["baselines"]]
    assert [b[0] for b in brows].count(f"{res['best_baseline']} (best classical)") == 1
    for row, b in zip(brows, res["baselines"]):
        assert row[2] == f"{b['mean_return']:.2f} ± {b['stderr']:.2f}" and row[3] == f"{b['normalised']:.3f}"
    assert md.startswith(f"# Report: bandit / variant train, H = {H}")


def _figure_inputs(runs):
    res = runs["res"]
    rs = load_runs([runs["pop"], runs["rl2"]])
    return rs, group_runs(rs), {b["policy"]: b for b in res["baselines"]}, res


def _axes_lines(fig):
    return {ln.get_gid(): ln.get_xydata() for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}


def test_learning_curve_lines_equal_metrics(runs):
    from matplotlib.image import imread

    img = imread(os.path.join(runs["out"], "learning_curve.png"))
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 1000 and img[..., :3].std() > 0.05
    rs, groups, baselines, res = _figure_inputs(runs)
    fig, lines = learning_curve(rs, groups, baselines, "test", None)
    by_key = {ln["key"]: ln for ln in lines}
    drawn = _axes_lines(fig)
    m0, m1 = (read_metrics(os.path.join(runs["pop"], s)) for s in ("seed0", "seed1"))
    rl2 = read_metrics(runs["rl2"])
    pop_label, rl2_label = groups[0]["label"], groups[1]["label"]
    # two seeds: mean and a t-interval across them
    tr = by_key[f"steps/train/{pop_label}"]
    np.testing.assert_array_equal(tr["x"], [r["env_steps"] for r in m0])
    y0, y1 = np.array([r["return_mean"] for r in m0]), np.array([r["return_mean"] for r in m1])
    np.testing.assert_allclose(tr["y"], (y0 + y1) / 2, rtol=1e-12)
    half = T_975_1 * np.abs(y0 - y1) / 2  # sd of two values = |a-b|/sqrt(2); / sqrt(2) again
    np.testing.assert_allclose(tr["hi"] - tr["y"], half, rtol=1e-9, atol=1e-12)
    ev = by_key[f"steps/eval/{pop_label}"]
    e0 = [r for r in m0 if "eval_return" in r]
    e1 = [r for r in m1 if "eval_return" in r]
    assert [r["iteration"] for r in e0] == [2, 4]
    np.testing.assert_array_equal(ev["x"], [r["env_steps"] for r in e0])
    np.testing.assert_allclose(ev["y"], [(a["eval_return"] + b["eval_return"]) / 2 for a, b in zip(e0, e1)])
    evg = by_key[f"steps/eval_greedy/{pop_label}"]
    np.testing.assert_allclose(evg["y"], [(a["eval_return_greedy"] + b["eval_return_greedy"]) / 2
                                          for a, b in zip(e0, e1)])
    wall = by_key[f"wall/train/{pop_label}"]  # training seconds: cumulative batch_steps / steps_per_second
    batch = BASE["num_envs"] * H
    w0, w1 = (np.cumsum([batch / r["steps_per_second"] for r in m]) for m in (m0, m1))
    np.testing.assert_allclose(wall["x"], (w0 + w1) / 2)
    np.testing.assert_allclose(by_key[f"wall/eval/{pop_label}"]["x"], ((w0 + w1) / 2)[[1, 3]])
    # one run: its own numbers, no band, no eval line (it had eval_every = 0)
    r2 = by_key[f"steps/train/{rl2_label}"]
    np.testing.assert_array_equal(r2["y"], [r["return_mean"] for r in rl2])
    assert r2["lo"] is None and r2["hi"] is None
    assert f"steps/eval/{rl2_label}" not in by_key
    np.testing.assert_allclose(by_key[f"wall/train/{rl2_label}"]["x"],
                               np.cumsum([batch / r["steps_per_second"] for r in rl2]))
    # reference lines at the baselines' held-out means
    assert by_key["ref/random"]["y"] == baselines["random"]["mean_return"]
    assert by_key["ref/oracle"]["y"] == baselines["oracle"]["mean_return"]
    # what is drawn is what is returned (and what results.json holds)
    for ln in lines:
        xy = drawn[ln["key"]]
        if ln["x"] is None:
            np.testing.assert_allclose(xy[:, 1], ln["y"])
        else:
            np.testing.assert_allclose(xy, np.column_stack([ln["x"], ln["y"]]))
    assert [ln["key"] for ln in res["learning_curve"]] == [ln["key"] for ln in lines]
    np.testing.assert_allclose(res["learning_curve"][0]["y"], lines[0]["y"])


def test_wall_seconds_by_hand():
    from rl3jax.plots import wall_seconds

    rows = [{"steps_per_second": 10.0}, {"steps_per_second": 20.0}, {"steps_per_second": 5.0}]
    np.testing.assert_allclose(wall_seconds(rows, 40), [4.0, 6.0, 14.0])


def test_adaptation_lines_equal_evaluations(runs):
    from matplotlib.image import imread

    img = imread(os.path.join(runs["out"], "adaptation.png"))
    assert img.ndim == 3 and img[..., :3].std() > 0.05
    rs, groups, baselines, res = _figure_inputs(runs)
    evals = [{m: r[m] for m in ("stochastic", "greedy")} for r in res["runs"]]
    fig, lines = adaptation_curve(rs, groups, evals, baselines, "test", None)
    by_key = {ln["key"]: ln for ln in lines}
    for mode in ("stochastic", "greedy"):
        ln = by_key[f"{mode}/{groups[0]['label']}"]
        np.testing.assert_array_equal(ln["x"], np.arange(1, H + 1))
        np.testing.assert_allclose(ln["y"], (np.array(evals[0][mode]["step_rewards"])
                                             + np.array(evals[1][mode]["step_rewards"])) / 2)
        np.testing.assert_allclose(by_key[f"{mode}/{groups[1]['label']}"]["y"], evals[2][mode]["step_rewards"])
    ref = evaluate(_meta_env(), "random", EPISODES)
    np.testing.assert_allclose(by_key["baseline/random"]["y"], ref["step_rewards"], rtol=1e-6)
    assert "baseline/oracle" in by_key
    drawn = _axes_lines(fig)
    for ln in lines:
        np.testing.assert_allclose(drawn[ln["key"]], np.column_stack([ln["x"], ln["y"]]))


def test_report_reuses_evaluations(runs, tmp_path):
    """Again into the same folder: nothing evaluated, same numbers. An eval JSON in the run folder of the same
    checkpoint, variant, mode and N (with per-step rewards) is used instead of evaluating; with --baselines-json
    the report shows the baselines it holds, none other."""
    logs = []
    again = make_report([runs["pop"], runs["rl2"]], runs["out"], episodes=EPISODES, log=logs.append)
    assert logs == []
    assert [r["stochastic"]["mean_return"] for r in again["runs"]] == \
        [r["stochastic"]["mean_return"] for r in runs["res"]["runs"]]
    rl2 = str(tmp_path / "rl2")
    shutil.copytree(runs["rl2"], rl2)
    fake = {"env": "bandit", "variant": "train", "policy": "greedy", "episodes": EPISODES, "iteration": 4,
            "mean_return": 5.25, "stderr": 0.5, "step_rewards": [5.25 / H] * H}
    json.dump(fake, open(os.path.join(rl2, "eval-train-greedy.json"), "w"))
    json.dump({**fake, "iteration": 2}, open(os.path.join(rl2, "eval.json"), "w"))  # older checkpoint: ignored
    bjson = str(tmp_path / "baselines.json")
    json.dump([{"policy": "random", "env": "bandit", "variant": "train", "horizon": H, "episodes": EPISODES,
                "mean_return": 2.0, "stderr": 0.1, "step_rewards": [0.25] * H},
               {"policy": "oracle", "mean_return": 6.0, "stderr": 0.1, "step_rewards": [0.75] * H}], open(bjson, "w"))
    logs = []
    res = make_report([rl2], str(tmp_path / "rep"), episodes=EPISODES, baselines_json=bjson, log=logs.append)
    # the run's stochastic policy is evaluated; random and oracle come from the JSON, and the report shows those
    # two only (the JSON's `baselines --only` choice): none is evaluated
    assert logs == ["evaluating rl2 (stochastic) on 16 held-out bandit/train tasks"]
    assert [b["policy"] for b in res["baselines"]] == ["random", "oracle"]
    g = res["runs"][0]["greedy"]
    assert g["mean_return"] == 5.25 and g["source"].endswith("eval-train-greedy.json")
    assert g["normalised"] == (5.25 - 2.0) / (6.0 - 2.0)
    assert res["runs"][0]["stochastic"]["mean_return"] == runs["res"]["runs"][2]["stochastic"]["mean_return"]
    # a baselines file of another horizon is refused
    json.dump([{"policy": "random", "horizon": 100, "mean_return": 1.0, "stderr": 0.1}], open(bjson, "w"))
    with pytest.raises(ValueError, match=r"random has horizon=100, the report needs horizon=8"):
        make_report([rl2], str(tmp_path / "rep2"), episodes=EPISODES, baselines_json=bjson)
    assert not (tmp_path / "rep2").exists()


def test_cli_report_and_errors(runs, tmp_path, capsys):
    assert cli_main(["report", runs["rl2"], "--out", runs["out"] + "-cli", "--episodes", "16"]) == 0
    out = capsys.readouterr().out
    assert "report written to" in out and os.path.exists(os.path.join(runs["out"] + "-cli", "learning_curve.png"))
    other = tmp_path / "h10"
    shutil.copytree(runs["rl2"], other)
    cfg = json.load(open(other / "config.json"))
    json.dump({**cfg, "horizon": 10}, open(other / "config.json", "w"))
    bad = tmp_path / "not-a-run"
    bad.mkdir()
    cases = [([], "no run folders given"),
             ([str(bad)], "is not a run folder"),
             ([str(tmp_path / "missing")], "is not a folder"),
             ([runs["rl2"], str(other)], "one task family and horizon; got bandit H=8, bandit H=10"),
             ([runs["rl2"], "--variant", "nope"], "variant 'nope' is not valid for env 'bandit'")]
    for argv, msg in cases:
        dest = tmp_path / "never"
        rc = cli_main(["report", *argv, "--out", str(dest)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and len(err.splitlines()) == 1, (argv, err)
        assert err.startswith("rl3jax report: error:") and not dest.exists()


def test_make_report_target_and_reproduce_report(runs, tmp_path):
    p = subprocess.run(["make", "-n", "report", 'RUN=runs/a runs/b', "EPISODES=50"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert re.search(r"rl3jax report runs/a runs/b --out runs/a/report --episodes 50", p.stdout)
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import reproduce

    out = tmp_path / "repro"
    shutil.copytree(runs["rl2"], out / "bandit-h100" / "rl2")
    assert reproduce.main(["report", "--out", str(out), "--episodes", "16"]) == 0
    res = json.load(open(out / "bandit-h100" / "report" / "results.json"))
    assert [r["name"] for r in res["runs"]] == ["rl2"] and res["episodes"] == 16
    assert res["runs"][0]["greedy"]["mean_return"] == runs["res"]["runs"][2]["greedy"]["mean_return"]


def test_baselines_intractable_at_the_horizon_are_left_out(tmp_path):
    """Bandits at H=27 (one past bayes-optimal's limit: baselines.bayes_max_horizon(5) = 26):
    the report evaluates every other baseline and says why bayes-optimal is missing, instead of failing."""
    from rl3jax.report import Cache, evaluate_baselines

    logs = []
    out = evaluate_baselines("bandit", "train", 27, 4, Cache(str(tmp_path / "cache.json")), log=logs.append)
    assert "bayes-optimal" not in out and {"random", "oracle", "gittins", "thompson"} <= set(out)
    assert any(x.startswith("  bayes-optimal skipped: ") for x in logs)


def test_baselines_say_whether_their_actions_are_deterministic(runs):
    """Issue 17 item 19: UCB and Gittins choose deterministically (ties aside), Thompson samples; results.md says
    so in the table and explains every policy in one line under it."""
    res = runs["res"]
    actions = {b["policy"]: b["actions"] for b in res["baselines"]}
    assert {k: actions[k] for k in ("ucb", "gittins", "greedy", "model-greedy", "oracle")} == dict.fromkeys(
        ("ucb", "gittins", "greedy", "model-greedy", "oracle"), "deterministic")
    assert {actions[k] for k in ("random", "thompson", "epsilon-greedy")} == {"stochastic"}
    md = open(os.path.join(runs["out"], "results.md")).read()
    for row in _md_rows(md, "| policy |"):
        assert row[1] == actions[row[0].removesuffix(" (best classical)")]
    for name in actions:
        assert sum(line.startswith(f"- `{name}`: ") for line in md.splitlines()) == 1


def test_report_hint_names_make_report_for_a_family_registered_from_python():
    """Issue 17 item 17: the command line knows built-in families and gymnax envs only; a family registered
    from Python is reported with rl3jax.report.make_report."""
    from rl3jax.runs.resume import report_hint

    assert report_hint("runs/x", "bandit").endswith("rl3jax report runs/x")
    assert report_hint("runs/x", "CartPole-v1").endswith("rl3jax report runs/x")
    hint = report_hint("runs/x", "gauss3")
    assert "rl3jax.report.make_report(['runs/x'], 'runs/x/report')" in hint and "gauss3" in hint


def test_report_on_a_variant_whose_estimator_has_other_shapes(tmp_path):
    """A garnet run trained on S=64 and reported on s256: at H=40 their estimators have min(S, 2H + 1) = 64 and 81
    slots, so the checkpoint is restored in the training variant's shapes and the policy evaluated on s256
    (restoring into s256's shapes failed)."""
    cfg = TrainConfig(env="garnet", algo="rl3", model="markov", horizon=40, num_envs=2, minibatch_envs=1, iters=1,
                      epochs=1)
    run = str(tmp_path / "g")
    train(cfg, run, progress=False)
    res = make_report([run], str(tmp_path / "rep"), episodes=4, variant="s256",
                      baselines_json=None, log=lambda *_: None)
    assert res["variant"] == "s256" and math.isfinite(res["runs"][0]["greedy"]["mean_return"])
    assert cli_main(["eval", "--run", run, "--variant", "s256", "--episodes", "4", "--greedy"]) == 0


# ------------------------------------------------------------------------------------------ time to score
def _tts_run(rows, batch_steps=100):
    from types import SimpleNamespace

    return SimpleNamespace(rows=rows, cfg=SimpleNamespace(batch_steps=batch_steps))


def _tts_rows(evals, sps=50.0):
    """Metrics rows of iterations 1..2n, 100 steps each at ``sps`` steps/s (2 s per row at 50), held-out returns
    ``evals`` at the even iterations."""
    rows = []
    for i in range(1, 2 * len(evals) + 1):
        r = {"iteration": i, "env_steps": 100 * i, "return_mean": 0.0, "steps_per_second": sps}
        if i % 2 == 0:
            r.update(eval_return=evals[i // 2 - 1], eval_return_greedy=evals[i // 2 - 1] + 5.0, eval_episodes=8)
        rows.append(r)
    return rows


def test_time_to_score_by_hand():
    from rl3jax.plots import time_to_score

    x, y = [10.0, 20.0, 30.0, 40.0], [100.0, 120.0, 135.0, 150.0]
    # random 100, best 140: targets 120 (reached exactly at 20 s), 136 and 140 (both first at 40 s)
    got = time_to_score(x, y, 100.0, 140.0)
    assert [(s["fraction"], s["index"], s["x"]) for s in got] == [(0.5, 1, 20.0), (0.9, 3, 40.0), (1.0, 3, 40.0)]
    assert got[0]["target"] == 120.0 and math.isclose(got[1]["target"], 136.0)
    # best 200: 150 is reached at 40 s, 190 and 200 never
    got = time_to_score(x, y, 100.0, 200.0)
    assert [(s["index"], s["x"]) for s in got] == [(3, 40.0), (None, None), (None, None)]
    assert time_to_score([], [], 0.0, 1.0, fractions=(0.5,)) == [{"fraction": 0.5, "target": 0.5, "index": None,
                                                                   "x": None}]


def test_time_to_score_rows_marker_and_markdown():
    """Two settings on hand-made metrics rows: seconds are the cumulative 2 s per row up to the first evaluation
    at or above the target; the star marks are drawn where the table says; 'not reached' is shown as such."""
    from rl3jax.report import time_to_score_lines, time_to_score_rows

    runs = [_tts_run(_tts_rows([105.0, 125.0, 138.0, 142.0])), _tts_run(_tts_rows([101.0, 118.0]))]
    groups = [{"label": "fast", "runs": [0]}, {"label": "slow", "runs": [1]}]
    base = {n: {"mean_return": v, "actions": "x", "episodes": 8, "stderr": 0.0}
            for n, v in (("random", 100.0), ("oracle", 200.0), ("ucb", 140.0))}
    fig, lines = learning_curve(runs, groups, base, "test", None)
    rows = time_to_score_rows(lines, 100.0, 140.0)
    by = {(r["setting"], r["mode"]): r for r in rows}
    assert set(by) == {("fast", "stochastic"), ("fast", "greedy"), ("slow", "stochastic"), ("slow", "greedy")}
    # fast, stochastic: 125 >= 120 at iteration 4 (8 s, 400 steps); 138 >= 136 at 6 (12 s); 142 >= 140 at 8 (16 s)
    assert [(s["seconds"], s["env_steps"]) for s in by["fast", "stochastic"]["scores"]] == \
        [(8.0, 400), (12.0, 600), (16.0, 800)]
    # greedy is 5 higher: 110, 130, 143, 147 -> 50% at 8 s, 90% and 100% at 12 s
    assert [s["seconds"] for s in by["fast", "greedy"]["scores"]] == [8.0, 12.0, 12.0]
    assert [s["seconds"] for s in by["slow", "stochastic"]["scores"]] == [None, None, None]
    assert [s["env_steps"] for s in by["slow", "greedy"]["scores"]] == [400, None, None]
    assert math.isclose(by["slow", "stochastic"]["best_fraction"], 18.0 / 40.0)
    # the stars: on the stochastic lines only, at (seconds, held-out return) and (env steps, return); none for slow
    drawn = _axes_lines(fig)
    np.testing.assert_allclose(drawn["score/wall/fast"], [[8.0, 125.0], [12.0, 138.0], [16.0, 142.0]])
    np.testing.assert_allclose(drawn["score/steps/fast"], [[400, 125.0], [600, 138.0], [800, 142.0]])
    assert "score/wall/slow" not in drawn and any(k == "score/steps/fast" for k in (ln["key"] for ln in lines))
    md = "\n".join(time_to_score_lines({"time_to_score": rows, "best_baseline": "ucb"}))
    assert "| setting | held-out | 50% (120.00) | 90% (136.00) | 100% (140.00) | best fraction reached |" in md
    assert "| fast | stochastic | 8.0 s (400 steps) | 12.0 s (600 steps) | 16.0 s (800 steps) | 1.05 |" in md
    assert "| slow | stochastic | not reached | not reached | not reached | 0.45 |" in md
    # no baseline above random, or no evaluations: no rows, and the section says so
    assert time_to_score_rows(lines, 100.0, 100.0) == [] and time_to_score_rows(lines, None, 140.0) == []
    assert "no time to score" in "\n".join(time_to_score_lines({"time_to_score": [], "best_baseline": None}))


def test_report_time_to_score(runs):
    from rl3jax.report import time_to_score_rows

    res = runs["res"]
    ref = {b["policy"]: b["mean_return"] for b in res["baselines"]}
    want = time_to_score_rows(res["learning_curve"], ref["random"], ref[res["best_baseline"]])
    assert res["time_to_score"] == json.loads(json.dumps(want))
    # the population evaluated during training (stochastic and greedy); the RL² run did not
    assert [(r["setting"], r["mode"]) for r in res["time_to_score"]] == \
        [("rl3 · markov · 4 it · 2 seeds", "stochastic"), ("rl3 · markov · 4 it · 2 seeds", "greedy")]
    with open(os.path.join(runs["out"], "results.md")) as f:
        assert "## Time to score" in f.read()
