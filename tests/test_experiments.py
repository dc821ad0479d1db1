"""experiments/reproduce.py: every target's --dry-run prints valid commands; tiny versions run end to end."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import reproduce  # noqa: E402

from rl3jax import cli  # noqa: E402


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
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                             "rl3jax-test-jax-cache"))
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
