"""experiments/reproduce.py: every target's --dry-run prints valid commands; tiny versions run end to end."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import laptop  # noqa: E402
import reproduce  # noqa: E402

from rl3jax import cli  # noqa: E402
from tests.helpers import TEST_CACHE_BYTES, TEST_CACHE_DIR  # noqa: E402


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    cli._add_train(sub)
    cli._add_eval(sub)
    return p


def _commands(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("python -m rl3jax "):
            out.append(shlex.split(line)[3:])
    return out


@pytest.mark.parametrize("target", list(reproduce.TARGETS))
@pytest.mark.parametrize("tiny", [False, True])
def test_dry_run_prints_valid_commands(target, tiny, tmp_path, capsys):
    out = tmp_path / "repro"
    argv = [target, "--dry-run", "--out", str(out)] + (["--tiny"] if tiny else [])
    assert reproduce.main(argv) == 0
    text = capsys.readouterr().out
    assert not out.exists()  # a dry run writes nothing
    assert "budget:" in text and "env steps" in text
    cmds = _commands(text)
    t = reproduce.TARGETS[target]
    trains = [c for c in cmds if c[0] == "train"]
    evals = [c for c in cmds if c[0] == "eval"]
    assert len(trains) == len(t.runs)
    assert len(evals) == len(t.eval_modes) * len(t.runs) * len(t.variants) + len(t.oracle_horizons)
    parser = _parser()
    for c in trains:
        cfg = cli.config_from_args(parser.parse_args(c))  # parses and validates (preset + flags)
        if tiny:
            assert (cfg.iters, cfg.num_envs, cfg.horizon, cfg.epochs) == (2, 8, 10, 1)
        else:
            run = next(r for r in t.runs if str(out / target / r.name) in c)
            assert cfg.iters * cfg.batch_steps == reproduce._budget(run, False)[0] * reproduce._budget(run, False)[1]
    for c in evals:
        args = parser.parse_args(c)
        if args.variant:
            assert args.variant in t.variants
    if target == "h-scaling" and not tiny:
        hs = sorted(cli.config_from_args(parser.parse_args(c)).horizon for c in trains)
        assert hs == sorted(2 * [128, 256, 512, 1024, 2048])


def test_dry_run_all_as_a_script_with_train_flags(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "all", "--dry-run",
                        "--seeds", "2", "--out", str(tmp_path), "--", "--devices", "2"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    trains = [c for c in _commands(p.stdout) if c[0] == "train"]
    assert len(trains) == sum(len(t.runs) for t in reproduce.TARGETS.values())
    assert all(c[-4:] == ["--seeds", "2", "--devices", "2"] for c in trains)
    # with --seeds, every member folder is evaluated
    assert any("/rl3/seed1" in " ".join(c) for c in _commands(p.stdout) if c[0] == "eval")


def test_list_and_bad_algos(capsys):
    assert reproduce.main(["list"]) == 0
    text = capsys.readouterr().out
    for name in reproduce.TARGETS:
        assert name + ":" in text
    with pytest.raises(SystemExit):
        reproduce.main(["mdp-h100", "--algos", "nope", "--dry-run"])


def test_tiny_target_runs(tmp_path, capsys):
    """One tiny reproduction end to end in this process: train, evaluate in and out of distribution, report."""
    out = tmp_path / "repro"
    assert reproduce.main(["bandit-h100", "--tiny", "--algos", "rl3-markov", "--out", str(out)]) == 0
    run = out / "bandit-h100" / "rl3-markov"
    for v in ("train", "ood"):
        for mode in ("stochastic", "greedy"):
            assert (run / f"eval-{v}-{mode}.json").exists()
    table = (out / "bandit-h100" / "results.md").read_text()
    assert "| RL³ (Markov) | train |" in table and "| RL³ (Markov) | ood |" in table
    # running it again continues the finished runs (--resume) instead of failing
    argv = ["bandit-h100", "--tiny", "--algos", "rl3-markov", "--out", str(out), "--stage", "train"]
    assert reproduce.main(argv) == 0
    assert "--resume" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_every_target(tmp_path):
    """A tiny version of every target (all runs, all test variants, the oracle), as one script run."""
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", TEST_CACHE_DIR)
    env.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(TEST_CACHE_BYTES))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "all", "--tiny",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=3600, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name, t in reproduce.TARGETS.items():
        table = (tmp_path / name / "results.md").read_text()
        for r in t.runs:
            for v in t.variants:
                assert f"| {r.label} | {v} |" in table, (name, r.label, v)
        for h in t.oracle_horizons:
            assert f"oracle H={h}" in table


# ------------------------------------------------------------------------------------------ laptop study
def _laptop_parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    for add in (cli._add_train, cli._add_baselines, cli._add_report):
        add(sub)
    return p


@pytest.mark.parametrize("tiny", [False, True])
def test_laptop_dry_run_equal_budgets(tiny, tmp_path, capsys):
    """The study's plan: per family the baselines of every test variant, the three runs as 2-seed populations
    with exactly equal env steps (same tasks x H x iterations, the family preset's PPO settings), and one report
    per test variant of all three runs with the baselines file; nothing written."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["laptop", "--dry-run", "--out", str(out), "--runs", str(runs)] + (["--tiny"] if tiny else [])
    assert reproduce.main(argv) == 0
    text = capsys.readouterr().out
    assert not out.exists() and not runs.exists()
    parser = _laptop_parser()
    cmds = _commands(text)
    for fam_name, fam in laptop.LAPTOP.items():
        trains = [c for c in cmds if c[0] == "train" and str(runs / fam_name) + "/" in " ".join(c)]
        assert [c[c.index("--out") + 1] for c in trains] == [str(runs / fam_name / r[0]) for r in laptop.LAPTOP_RUNS]
        cfgs = [cli.config_from_args(parser.parse_args(c)) for c in trains]
        assert [(c.algo, c.model) for c in cfgs] == [(r[2], r[3]) for r in laptop.LAPTOP_RUNS]
        assert {c.num_envs * c.horizon * c.iters for c in cfgs} == {cfgs[0].num_envs * cfgs[0].horizon * cfgs[0].iters}
        base = reproduce.preset(fam.preset)
        for c in cfgs:
            assert c.env == fam.env and (c.lr, c.ent_coef, c.ent_schedule) == (base["lr"], base["ent_coef"],
                                                                             base["ent_schedule"])
            assert c.eval_every > 0 and c.iters % c.eval_every == 0
            assert c.horizon == (10 if tiny else 100)
            if not tiny:
                z = laptop.LAPTOP_SIZES
                assert (c.iters, c.num_envs, c.minibatch_envs) == (z["iters"], z["num_envs"], z["minibatch_envs"])
                assert c.epochs == base.get("epochs", 8)
        for c in trains:
            assert c[c.index("--seeds") + 1] == "2"
        bls = [parser.parse_args(c) for c in cmds if c[0] == "baselines" and c[c.index("--env") + 1] == fam.env]
        assert [b.variant for b in bls] == list(fam.variants)
        reps = [parser.parse_args(c) for c in cmds if c[0] == "report" and str(out / fam_name) + "/" in " ".join(c)]
        assert [r.variant for r in reps] == list(fam.variants)
        for r, b in zip(reps, bls, strict=True):
            assert r.runs == [str(runs / fam_name / x[0]) for x in laptop.LAPTOP_RUNS]
            assert r.baselines_json == b.json and r.episodes == b.episodes == (8 if tiny else 1000)
    assert len(cmds) == sum(2 * len(f.variants) + 3 for f in laptop.LAPTOP.values())


def test_laptop_refusals(tmp_path, capsys):
    """Every laptop option is honoured or refused before anything is written; the other targets refuse the
    laptop-only flags."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    base = ["laptop", "--out", str(out), "--runs", str(runs)]
    bad = [base + ["--seeds", "1"], base + ["--resume", "--force"], base + ["--stage", "train"],
           base + ["--algos", "rl3,gru"], base + ["--episodes", "0"], base + ["--max-minutes", "0"],
           ["laptop", "--out", str(out), "--runs", str(out / "runs")],
           ["mdp-h100", "--dry-run", "--resume"], ["mdp-h100", "--dry-run", "--runs", str(runs)],
           ["mdp-h100", "--dry-run", "--max-minutes", "5"]]
    for argv in bad:
        with pytest.raises(SystemExit) as e:
            reproduce.main(argv)
        assert e.value.code == 2, argv
    assert not out.exists() and not runs.exists()
    out.mkdir()
    (out / "README.md").write_text("an earlier study\n")
    with pytest.raises(SystemExit) as e:  # a non-empty output folder needs --resume or --force
        reproduce.main(base)
    assert e.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "README.md").read_text() == "an earlier study\n" and not runs.exists()
    # a dry run says so and writes nothing
    assert reproduce.main(base + ["--dry-run"]) == 0
    assert "the real run needs --resume" in capsys.readouterr().out
    # --algos honoured: only those runs, with equal budgets
    assert reproduce.main(base + ["--dry-run", "--algos", "rl3-markov", "--seeds", "3"]) == 0
    trains = [c for c in _commands(capsys.readouterr().out) if c[0] == "train"]
    assert len(trains) == 2 and all(c[c.index("--model") + 1] == "markov" and "3" == c[c.index("--seeds") + 1]
                                    for c in trains)


def test_laptop_time_cap():
    """The time guard shares the time left (less the later non-train steps' estimates) among the train steps in
    proportion to their estimates: hand-computed."""
    S = laptop.Step
    steps = [S(["train"], "train", "f", "a", 100.0), S(["train"], "train", "f", "b", 300.0),
             S(["report"], "report", "f", "train", 50.0)]
    assert laptop._time_cap(steps, 0, 450.0) == pytest.approx((450 - 50) * 100 / 400)  # 100
    assert laptop._time_cap(steps, 1, 850.0) == pytest.approx((850 - 50) * 300 / 300)  # 800
    assert laptop._time_cap(steps, 0, 100.0) == 60.0  # at least 60 s


def test_report_reads_baselines_cli_json(tmp_path):
    """``rl3jax report --baselines-json`` reads what ``rl3jax baselines --json`` writes ({"rows": [...]}),
    leaving out the rows it skipped as intractable (bayes-optimal at H=100)."""
    from rl3jax.report import load_baselines_json

    path = tmp_path / "b.json"
    rows = [{"policy": "random", "mean_return": 50.0, "stderr": 0.5, "episodes": 4, "step_rewards": [0.5] * 100,
             "skipped": None},
            {"policy": "bayes-optimal", "mean_return": None, "stderr": None, "episodes": 0, "step_rewards": None,
             "skipped": "bayes-optimal: exact dynamic programming is tractable only for H <= 26"},
            {"policy": "oracle", "mean_return": 80.0, "stderr": 0.25, "episodes": 4, "step_rewards": None,
             "skipped": None}]
    path.write_text(json.dumps({"env": "bandit", "variant": "train", "horizon": 100, "episodes": 4, "rows": rows}))
    got = load_baselines_json(str(path), "bandit", "train", 100, 4)
    assert sorted(got) == ["oracle", "random"]
    assert got["random"]["mean_return"] == 50.0 and got["random"]["step_rewards"] == [0.5] * 100
    assert got["oracle"]["greedy"] and got["oracle"]["step_rewards"] is None
    with pytest.raises(ValueError, match="horizon=100"):
        load_baselines_json(str(path), "bandit", "train", 10, 4)


@pytest.mark.slow
def test_laptop_tiny_end_to_end(tmp_path):
    """The whole study at a tiny scale as one script run: baselines, 2-seed training of the three runs per
    family, reports in and out of distribution, the headline README and study.json; a second start without
    --resume is refused, with --resume it continues."""
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", TEST_CACHE_DIR)
    env.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(TEST_CACHE_BYTES))
    out, runs = tmp_path / "out", tmp_path / "runs"
    script = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "laptop", "--tiny",
              "--out", str(out), "--runs", str(runs)]
    p = subprocess.run(script, capture_output=True, text=True, timeout=3600, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    readme = (out / "README.md").read_text()
    study = json.loads((out / "study.json").read_text())
    assert study["tiny"] and study["seeds"] == 2 and study["machine"]["cores"] == os.cpu_count()
    assert len(study["commit"]["commit"]) == 40 and study["wall_s"] > 0
    kinds = [s["kind"] for s in study["stages"]]
    assert kinds.count("train") == 6 and kinds.count("report") == 5 and kinds.count("baselines") == 5
    for fam_name, fam in laptop.LAPTOP.items():
        assert f"### {fam_name}" in readme
        for v in fam.variants:
            rep = json.loads((out / fam_name / v / "results.json").read_text())
            assert rep["variant"] == v and rep["episodes"] == 8 and len(rep["runs"]) == 6
            assert {g["label"].split(" · ")[1] for g in rep["groups"]} == {"transformer", "markov"}
            for png in ("learning_curve.png", "adaptation.png"):
                assert (out / fam_name / v / png).stat().st_size > 1000
            assert "oracle" in {b["policy"] for b in rep["baselines"]}
        res = study["results"][fam_name]
        assert sorted(res["runs"]) == sorted(r[0] for r in laptop.LAPTOP_RUNS)
        for r in res["runs"].values():
            assert sorted(r) == sorted(fam.variants)
            for mode in ("stochastic", "greedy"):
                t = r["train"][mode]
                assert len(t["per_seed"]) == 2 and t["mean"] == pytest.approx(sum(t["per_seed"]) / 2)
                assert t["ci"][0] <= t["iqm"] <= t["ci"][1]
        for _, label, _, _ in laptop.LAPTOP_RUNS:
            assert f"| {label} |" in readme
        assert "*random* (stochastic)" in readme and "*oracle* (deterministic)" in readme
        assert f"({fam_name}/train/learning_curve.png)" in readme
    assert (runs / "mdp" / "rl3" / "seed1" / "checkpoints").is_dir()
    again = subprocess.run(script, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 2 and "--resume" in again.stderr
    p = subprocess.run(script + ["--resume"], capture_output=True, text=True, timeout=3600, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert " --resume" in p.stdout and "python -m rl3jax baselines" not in p.stdout  # reused, not recomputed
