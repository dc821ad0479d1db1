"""The faults a fresh-user trial found (session 8): every command into a pipe its reader closed stops quietly
(status 141); every config field that takes ``none`` names it in its errors; the KL checks name only the two
settings in conflict; every output path option creates the folders it is below."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from rl3jax import sweep
from rl3jax.config import FLOAT_RANGES, ConfigError, TrainConfig, parse_sets
from tests.helpers import ROOT, child_env, run_cli

T = ["--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "2",
     "--minibatch-envs", "2"]


_main = run_cli


# ------------------------------------------------------------------------------------- 1. a closed pipe
@pytest.mark.parametrize("argv", [
    ["--help"],
    ["sweep", "plan", "--help"],
    ["sweep", "status", "{sweep}"],
    ["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "2"],
    ["baselines", "--env", "bandit", "--horizon", "4", "--episodes", "2", "--only", "random", "--batch", "2"],
], ids=lambda a: " ".join(a[:2]))
def test_a_pipe_closed_by_its_reader_stops_the_command_quietly(argv, tmp_path, capsys):
    """`rl3jax ... | head` where head has gone: no traceback, no 'Broken pipe', status 141 (128 + SIGPIPE), as a
    Unix tool killed by SIGPIPE. The pipe's read end is closed before the command starts, so every write fails."""
    d = str(tmp_path / "sw")
    assert _main(["sweep", "plan", "--out", d, *T, "--grid", "epochs=1,2"], capsys)[0] == 0
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "rl3jax", *[a.format(sweep=d) for a in argv]], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=child_env(), timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 141, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "pipe" not in proc.stderr.lower() and "error" not in proc.stderr


# ------------------------------------------------------------------------------------- 2. fields that take none
OPTIONAL = [f for f in dataclasses.fields(TrainConfig) if "None" in str(f.type)]


def test_the_optional_fields_are_found():
    assert {"target_kl", "gamma_obj", "alpha_laplace", "vi_epsilon", "vi_max_sweeps", "semantics"} <= {
        f.name for f in OPTIONAL}


@pytest.mark.parametrize("field", OPTIONAL, ids=lambda f: f.name)
def test_every_field_that_takes_none_names_it_in_its_errors(field, capsys, tmp_path):
    """`--set F=none` parses to None, and a bad value's one-line error says `or none` beside what else F takes:
    a value that is not a number (or not a choice), a number that is not finite, one out of range."""
    name = field.name
    assert parse_sets([f"{name}=none"]) == {name: None} == parse_sets([f"{name}=None"])
    rl3 = [*T[:2], "--algo", "rl3", *T[4:]]
    bad = ["x"] if str(field.type).startswith("str") else ["abc", "inf"] + (
        [str(FLOAT_RANGES[name][1] * 10)] if name in FLOAT_RANGES else ["0"])
    for value in bad:
        code, _, err = _main(["train", "--out", str(tmp_path / "r"), *rl3, "--set", f"{name}={value}"], capsys)
        assert code == 2 and err.count("\n") == 1 and "or none" in err, (value, err)
    assert not os.path.exists(tmp_path / "r")


def test_a_field_without_none_does_not_offer_it():
    for item, message in (("lr=abc", "--set lr=abc: expected a float"), ("epochs=x", "expected a whole number"),
                          ("shared_torso=2", "expected true or false"), ("target_kl=none", None)):
        try:
            parse_sets([item])
            assert message is None
        except ConfigError as e:
            assert str(e).endswith(message) and "none" not in str(e), e
    with pytest.raises(ConfigError, match="expected a float$"):
        parse_sets(["lr=none"])


# ------------------------------------------------------------------------------------- 3. the KL checks
@pytest.mark.parametrize("sets,message,unnamed", [
    (["kl_rule=minibatch", "target_kl=none"], "kl_rule=minibatch configures the KL stop, and target_kl=none turns "
     "it off: give a target_kl (e.g. 0.01), or leave kl_rule out", "kl_chunks"),
    (["kl_chunks=2", "target_kl=none"], "kl_chunks=2 configures the KL stop, and target_kl=none turns it off: give "
     "a target_kl (e.g. 0.01), or leave kl_chunks out", "kl_rule"),
    (["kl_chunks=2", "kl_rule=minibatch"], "kl_chunks=2 splits only kl_rule 'full''s full-batch pass, and "
     "kl_rule=minibatch has none: give kl_rule=full, or leave kl_chunks out", "target_kl"),
    (["kl_chunks=2", "kl_rule=minibatch", "target_kl=none"], "kl_rule=minibatch configures the KL stop, and "
     "target_kl=none turns it off: give a target_kl (e.g. 0.01), or leave kl_rule out", None),
])
def test_kl_checks_name_only_the_settings_in_conflict(sets, message, unnamed, capsys, tmp_path):
    code, _, err = _main(["train", "--out", str(tmp_path / "r"), *T, *[x for s in sets for x in ("--set", s)]],
                         capsys)
    assert code == 2 and err == f"rl3jax train: error: {message}\n", err
    assert unnamed is None or unnamed not in err
    for ok in (["kl_rule=minibatch"], ["kl_chunks=2"], ["target_kl=none"]):  # each alone is valid
        TrainConfig(num_envs=2, minibatch_envs=2, **parse_sets(ok))


# ------------------------------------------------------------------------------------- 4. output paths
def _optuna(tmp_path, capsys, monkeypatch):
    """`sweep optuna` of a planned job, each batch told a score without training (``run_batch`` replaced)."""
    pytest.importorskip("optuna", reason="the cluster extra (optuna) is not installed")
    from rl3jax import sweep_optuna

    monkeypatch.setattr(sweep_optuna, "run_batch", lambda study, cfg, asked, seeds, root: [
        study.tell(t, 1.0) and 1.0 for t in asked])
    d = str(tmp_path / "sw")
    assert _main(["sweep", "plan", "--out", d, *T, "--iters", "1"], capsys)[0] == 0
    return ["sweep", "optuna", d, "--trials", "1", "--batch", "1", "--search", "lr=1e-4:1e-2", "--storage"]


RUN = ["train", *T, "--iters", "1", "--no-progress", "--set", "epochs=1", "--out"]
slow = pytest.mark.slow
#: every output path option of every command -> (the command line before the path, the file it writes there)
OUTPUT_OPTIONS = {
    "train --out": (lambda *a: RUN, "config.json"),
    "eval --json": (lambda *a: ["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes",
                                "2", "--json"], ""),
    "baselines --json": (lambda *a: ["baselines", "--env", "bandit", "--horizon", "4", "--episodes", "2", "--only",
                                     "random", "--batch", "2", "--json"], ""),
    "sweep plan --out": (lambda *a: ["sweep", "plan", *T, "--out"], sweep.PLAN),
    "sweep optuna --storage": (_optuna, ""),
    "render --out": (lambda *a: ["render", "--samples", "--out"], ""),
    "report --out": (lambda tmp_path, capsys, mp: (_main([*RUN, str(tmp_path / "run")], capsys)[0] == 0 or
                                                   pytest.fail("train")) and
                     ["report", str(tmp_path / "run"), "--episodes", "2", "--out"], "results.md"),
    "bench --json": (lambda *a: ["bench", "--quick", "--only", "bandit-rl2-gru", "--repeats", "1", "--set",
                                 "model=markov", "--json"], ""),
}


@pytest.mark.parametrize("option", [pytest.param(k, marks=slow) if k.split()[0] in ("render", "report", "bench")
                                    else k for k in OUTPUT_OPTIONS])
def test_every_output_option_creates_the_folders_it_is_below(option, tmp_path, capsys, monkeypatch):
    """One rule for every output path (the one most commands followed): folders that do not exist yet are
    created, like `mkdir -p` (only after the checks, which create nothing)."""
    argv, written = OUTPUT_OPTIONS[option]
    path = str(tmp_path / "new" / "deeper" / ("x.log" if "optuna" in option else "x.png" if "render" in option
                                              else "x.json" if not written else "out"))
    argv = argv(tmp_path, capsys, monkeypatch)
    value = f"journal:{path}" if "optuna" in option else path
    code, _, err = _main([*argv, value], capsys)
    assert code == 0, err
    assert os.path.isfile(os.path.join(path, written) if written else path), os.listdir(tmp_path)
