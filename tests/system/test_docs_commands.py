"""Every command shown in a fenced bash block of README.md and docs/*.md is accepted by the code (issue 17 12b).

Each ``rl3jax`` command is parsed by the real parser (an unknown flag or a bad value fails), and a ``train``
command's config is built and checked as the CLI does before JAX starts (``cli.check_train_args``: presets,
overrides, the run folder of a ``--resume``). The README's walk-through runs for real at a tiny size: its first
``rl3jax train`` (tiny sizes appended, which argparse lets win) and its first ``eval --run`` of that run. A
``make`` line is expanded with ``make -n`` and its ``rl3jax`` command checked the same way. A command of another kind
fails the test unless ``NOT_RL3JAX`` says why it is not run.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess

import pytest

from rl3jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
#: the first words of shown commands that are not rl3jax's, and why they are not run
NOT_RL3JAX = {"python3": "installs a GPU/TPU build (network, another jaxlib)",
              "gcloud": "a TPU pod; the rl3jax command it wraps is checked (quoted in it)"}
#: appended to the first README train command: a tiny run of the same command (flags given later win)
TINY_TRAIN = ["--iters", "2", "--horizon", "10", "--num-envs", "4", "--set", "eval_episodes=4", "--set",
              "epochs=1", "--no-progress"]


def shown_commands() -> list[tuple[str, str]]:
    """(document, command) for every command line of the fenced bash blocks, continuations joined."""
    out = []
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc)).read()
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if line and not line.startswith("#"):
                    out.append((doc, line))
    return out


def _rl3jax_argv(command: str) -> list[str] | None:
    """The rl3jax arguments of a shown command (env assignments before it dropped), or None for another kind."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    if words and words[0] in (".venv/bin/rl3jax", "rl3jax"):
        return words[1:]
    if words and words[0] == "make":
        dry = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        lines = [ln for ln in dry.stdout.splitlines() if "bin/rl3jax " in ln]
        return shlex.split(lines[0])[1:] if lines else []
    if words and words[0] == "gcloud":
        inner = re.search(r"(\.venv/bin/rl3jax .*)", words[-1])
        return shlex.split(inner.group(1))[1:]
    assert words and words[0] in NOT_RL3JAX, f"a shown command of an unknown kind: {command}"
    return None


def _localise(argv: list[str], tmp) -> list[str]:
    """Output paths under ``tmp`` (runs/..., /shared/..., *.json)."""
    return [str(tmp / a.lstrip("/")) if a.startswith(("runs/", "/shared/", "/mnt/")) or a.endswith(".json") else a
            for a in argv]


def test_the_docs_show_commands():
    docs = {doc for doc, _ in shown_commands()}
    assert {"README.md", "docs/SCALING.md"} <= docs and len(shown_commands()) >= 15


def test_every_shown_command_is_accepted(tmp_path, capsys):
    parser = cli.build_parser()
    ran_train = ran_eval = False
    for doc, command in shown_commands():
        argv = _rl3jax_argv(command)
        if not argv:
            continue
        make = command.startswith("make ")  # checked in a folder of their own
        argv = _localise(argv, tmp_path / "make" if make else tmp_path)
        if "--process-id" in argv:  # a multi-host launch: P and i are placeholders
            argv = [{"P": "2", "i": "0"}.get(a, a) for a in argv]
        if argv[0] == "train" and not ran_train and doc == "README.md" and not make:
            assert cli.main(argv + TINY_TRAIN) == 0, (command, capsys.readouterr().err)
            ran_train = True
            continue
        if argv[0] == "eval" and "--run" in argv and ran_train and not ran_eval:
            assert cli.main(argv + ["--episodes", "4"]) == 0, command
            ran_eval = True
            continue
        args = parser.parse_args(argv)  # SystemExit (exit 2) for a refused flag or value
        if argv[0] == "train":
            cfg = cli.check_train_args(args)
            assert cfg.num_envs % cfg.minibatch_envs == 0, command
    assert ran_train and ran_eval
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["rl3jax train --env mdp --algo rl3 --model transformer --horizon 100 "
                                     "--iters 200 --num-envs 64 --out runs/mdp"])
def test_the_readme_first_example_keeps_the_preset_minibatches(command, tmp_path):
    """The laptop preset's 4 minibatches follow --num-envs 64 (16 sequences each), not its 80 of 320 tasks."""
    args = cli.build_parser().parse_args(_localise(shlex.split(command)[1:], tmp_path))
    cfg = cli.config_from_args(args)
    assert (cfg.num_envs, cfg.minibatch_envs, cfg.num_minibatches, cfg.eval_every) == (64, 16, 4, 50)
