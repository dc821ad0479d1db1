"""Every input is honoured or refused before anything is written (issue 9, items 2, 5, 6, 7 and the friction).

A config error: exit status 2, one line on stderr naming the bad value, no traceback, the output folder left as
it was. Most cases call ``cli.main`` in-process; a few run ``python -m rl3jax`` end to end. The option tables at
the end name how each flag of each subcommand and each ``--set`` field is checked, and fail when one is added
without an entry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

from rl3jax import cli
from rl3jax.cli import ConfigError, main, parse_sets
from rl3jax.cli import main as cli_main
from rl3jax.config import SEED_MAX, TrainConfig, preset
from rl3jax.estimators import make_estimator
from rl3jax.meta_episode import make_meta_env
from rl3jax.runs.driver import ChunkLoop, train
from rl3jax.runs.population import make_members
from tests.helpers import BANDIT_H, CFG, TINY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


T = ["--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "2",
     "--minibatch-envs", "2"]


def _snapshot(path: str):
    """Every file below ``path`` with size and modification time (None: path absent)."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        st = os.stat(path)
        return {".": (st.st_size, st.st_mtime_ns)}
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_size if name in files else None, st.st_mtime_ns)
    return out


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's errors and --version
        return e.code


def expect_error(capsys, argv, message, watch=None):
    """``argv`` fails with status 2 and one line containing ``message``; ``watch`` (a path) is unchanged."""
    before = _snapshot(watch) if watch else None
    capsys.readouterr()  # earlier output is not this command's
    rc = _run(argv)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    if watch:
        assert _snapshot(watch) == before
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 2-iteration bandit run, a checkpoint every iteration, keep_checkpoints=1."""
    out = str(tmp_path_factory.mktemp("runs") / "R")
    assert main(["train", *T, "--iters", "2", "--set", "chunk_iters=1", "--set", "checkpoint_every=1",
                 "--set", "keep_checkpoints=1", "--set", "epochs=1", "--out", out, "--no-progress"]) == 0
    return out


def test_keep_checkpoints_keeps_only_the_newest(run_dir):
    # 2 checkpoints were written (iterations 1 and 2); keep_checkpoints=1 leaves the newest only
    assert sorted(d for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit()) == ["2"]


# ------------------------------------------------------------------------------------------ new runs
NEW_RUN_ERRORS = [
    (T + ["--env", "mpd"], "unknown env 'mpd'"),
    (["--env", "CartPole-v1"], "use algo rl2"),  # default algo rl3: was AttributeError 'rl3_defaults'
    (T + ["--env", "Pong-misc", "--algo", "rl3"], "algo 'rl3' does not apply to env 'Pong-misc' (valid: rl2); it has "
     "no state index: give it one with state_fields in its rl3jax.envs.catalog.GYMNAX_ENVS entry, or register a "
     "family wrapping it with rl3jax.envs.registry.register(..., state_index=...), or use algo rl2"),
    (T + ["--set", "state_obs=true"], "state_obs shows a gymnax env's state_fields; env 'bandit' has none (valid: "),
    (T + ["--env", "Pendulum-v1"], "'Pendulum-v1' is not supported: its action space is continuous"),
    (T + ["--env", "PointRobot-misc"], "'PointRobot-misc' is not supported: its action space is continuous"),
    (T + ["--env", "MountainCarContinuous-v0"], "continuous"),
    (T + ["--env", "MNISTBandit-bsuite"], "downloads the MNIST data set"),
    (T + ["--algo", "rl3_coarse"], "algo 'rl3_coarse' does not apply to env 'bandit' (valid: rl2, rl3)"),
    (T + ["--set", "estimator=dense"], "estimator 'dense' is not one of auto, discovery"),
    (T + ["--set", "estimator=discovery", "--set", "std_errors=true"], "estimator 'discovery' has no standard errors"),
    (["--env", "grid13", "--variant", "ood"], "variant 'ood' is not valid for env 'grid13'"),
    # a preset of another family (issue 17 item 14)
    (T + ["--preset", "mdp-h100"], "preset 'mdp-h100' is for env 'mdp', not 'bandit'; presets of bandit: "
                                   "bandit-h100, "),
    (["--env", "CartPole-v1", "--algo", "rl2", "--preset", "cpu-mdp"], "CartPole-v1 has no preset: omit it"),
    (T + ["--num-envs", "3"], "not divisible"),
    # seeds: 32-bit, no aliasing (0 ~ 2**32, -1 ~ 2**32-1), no OverflowError after config.json
    (T + ["--seed", "-1"], "argument --seed: expected a 32-bit seed >= 0"),
    (T + ["--seed", "4294967296"], "argument --seed: expected a 32-bit seed <= 4294967295"),
    (T + ["--seed", "18446744073709551616"], "<= 4294967295"),
    (T + ["--seed", "1e23"], "argument --seed: expected a 32-bit seed in [0, 4294967295], got '1e23'"),
    (T + ["--set", "seed=4294967296"], "seed must be in [0, 4294967295]"),
    (T + ["--set", "seed=-1"], "seed must be in [0, 4294967295]"),
    (T + ["--set", "seed=1e23"], "--set seed=1e23: expected a whole number"),
    (T + ["--seed", str(SEED_MAX), "--seeds", "2"], "would reach seed 4294967296"),
    # other integers beyond 32 bits
    (T + ["--iters", "2147483648"], "argument --iters: expected a whole number <= 2147483647"),
    (T + ["--set", "epochs=2147483648"], "epochs must be at most 2147483647"),
    (T + ["--set", "epochs=1.5"], "--set epochs=1.5: expected a whole number"),
    (T + ["--set", "std_errors=maybe"], "--set std_errors=maybe: expected true or false"),
    (T + ["--set", "fused_update=true"], "--set: unknown config field 'fused_update'"),
    # values that passed before
    (T + ["--set", "lr=inf"], "--set lr=inf: expected a finite number"),
    (T + ["--set", "ent_coef=inf"], "--set ent_coef=inf: expected a finite number"),
    (T + ["--set", "ent_coef=nan"], "--set ent_coef=nan: expected a finite number"),
    (T + ["--set", "critic_weight_decay=nan"], "expected a finite number"),
    (T + ["--set", "vf_coef=-1"], "vf_coef must be in [0, 100] (used as float32), got -1"),
    (T + ["--set", "vi_epsilon=-1"], "vi_epsilon must be in [0, 1e+06] (used as float32) or none, got -1"),
    (T + ["--set", "vi_max_sweeps=0"], "vi_max_sweeps must be >= 1 or none"),
    (T + ["--set", "alpha_laplace=0"], "alpha_laplace must be in [1e-06, 1e+06] (used as float32; 0 is meaningless)"),
    (T + ["--set", "eval_every=-1"], "eval_every must be >= 0"),
    (T + ["--set", "gamma=1.5"], "gamma must be in [0, 1] (used as float32), got 1.5"),
    (T + ["--set", "lr=0"], "lr must be in [1e-08, 1] (used as float32; 0 is meaningless), got 0"),
    # floats as the float32 they are used in (issue 17 item 8): finite, non-zero where 0 is meaningless, sane
    (T + ["--set", "lr=1e300"], "lr must be in [1e-08, 1] (used as float32; 0 is meaningless), got 1e+300"),
    (T + ["--set", "lr=1e-50"], "lr must be in [1e-08, 1] (used as float32; 0 is meaningless), got 1e-50"),
    (T + ["--set", "clip_eps=1e-60"], "clip_eps must be in [0.0001, 10] (used as float32; 0 is meaningless)"),
    (T + ["--set", "target_kl=1e39"], "target_kl must be in [1e-06, 1e+10] (used as float32; 0 is meaningless)"),
    (T + ["--set", "ent_coef=1e30"], "ent_coef must be in [0, 100] (used as float32), got 1e+30"),
    (T + ["--set", "gae_lambda=-0.1"], "gae_lambda must be in [0, 1] (used as float32), got -0.1"),
    (T + ["--set", "critic_weight_decay=2"], "critic_weight_decay must be in [0, 1] (used as float32), got 2"),
    (T + ["--set", "gamma_obj=1"], "gamma_obj must be in [0, 0.99999] (used as float32) or none, got 1"),
    (T + ["--set", "vi_epsilon=1e40"], "vi_epsilon must be in [0, 1e+06] (used as float32) or none, got 1e+40"),
    (T + ["--set", "lr=1", "--set", "lr=2"], "--set lr given twice"),
    (T + ["--max-seconds", "-1"], "argument --max-seconds: expected a finite number of seconds > 0, got '-1'"),
    (T + ["--max-seconds", "nan"], "expected a finite number of seconds > 0, got 'nan'"),
    (T + ["--max-seconds", "inf"], "expected a finite number of seconds > 0, got 'inf'"),
    (T + ["--resume"], "holds no run (no config.json); drop --resume"),
    (T + ["--num-processes", "2"], "multi-host training needs all of"),
    (T + ["--coordinator-address", "localhost:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in [0, 2), got 2"),
    (T + ["--devices", "64"], "--devices 64 asks for more devices"),
    (T + ["--sweep", "lr=abc"], "--sweep lr=abc: expected a float"),
    (T + ["--sweep", "epochs=1,2"], "--sweep epochs: not sweepable in one compile"),
    # memory: estimated and refused before any compile
    (T[:-4] + ["--num-envs", "1000000000", "--minibatch-envs", "2"], "needs at least"),
    (T[:6] + ["--horizon", "100000000", "--num-envs", "1000", "--minibatch-envs", "2"], "needs at least"),
]


@pytest.mark.parametrize("argv, message", NEW_RUN_ERRORS, ids=[" ".join(a[len(T):] if a[:len(T)] == T else a)[:60]
                                                             for a, _ in NEW_RUN_ERRORS])
def test_new_run_config_error_writes_nothing(argv, message, capsys, tmp_path):
    out = tmp_path / "R"
    expect_error(capsys, ["train", *argv, "--out", str(out)], message)
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag, module", [("--tensorboard", "tensorboardX"), ("--wandb", "wandb")])
def test_missing_logging_package_refused_before_anything(flag, module, capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    argv = ["train", *T, flag] + (["proj"] if flag == "--wandb" else []) + ["--out", str(tmp_path / "R")]
    expect_error(capsys, argv, f"{flag} needs {module}")
    assert not (tmp_path / "R").exists()


def test_out_that_is_a_file_or_below_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    expect_error(capsys, ["train", *T, "--out", str(f)], "exists and is not a folder", watch=str(tmp_path))
    expect_error(capsys, ["train", *T, "--out", str(f / "R")], "which is a file", watch=str(tmp_path))


def test_out_read_only_simulated(capsys, tmp_path, monkeypatch):
    # the real check is os.access (root passes it, so this test stubs it for the folder); see the test below
    ro = str(tmp_path / "ro")
    os.mkdir(ro)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if os.path.abspath(p) == ro else real(p, mode))
    expect_error(capsys, ["train", *T, "--out", os.path.join(ro, "R")], "is not writable", watch=ro)
    expect_error(capsys, ["train", *T, "--out", ro], "the folder is not writable", watch=ro)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_out_read_only_real(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        expect_error(capsys, ["train", *T, "--out", str(ro / "R")], "is not writable", watch=str(ro))
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------------------------ existing runs
def test_new_run_into_a_run_folder_refused_naming_make(run_dir, capsys):
    err = expect_error(capsys, ["train", *T, "--out", run_dir], "already holds a run", watch=run_dir)
    assert "--resume" in err and "RESUME=1" in err


@pytest.mark.parametrize("extra, message", [
    (["--preset", "cpu-bandit"], "--resume --preset cpu-bandit: the preset sets eval_every=10 but the run in"),
    (["--iters", "1"], "--iters 1 is below the run's newest checkpoint (iteration 2)"),
    (["--set", "lr=0.1"], "differ from the run's config.json: ['lr']"),
    (["--seed", "4294967296"], "<= 4294967295"),
])
def test_resume_refusals_leave_the_run_as_it_was(run_dir, extra, message, capsys):
    expect_error(capsys, ["train", "--out", run_dir, "--resume", *extra], message, watch=run_dir)


def test_resume_to_the_same_total_is_allowed(run_dir, capsys, monkeypatch):
    """Allowed, and there is nothing to do: one line, exit 0, training not called (issue 17 item 16)."""
    import rl3jax.runs.driver

    calls = []
    monkeypatch.setattr(rl3jax.runs.driver, "train", lambda cfg, out, **kw: calls.append((cfg, kw)))
    assert main(["train", "--out", run_dir, "--resume", "--iters", "2", "--no-progress"]) == 0
    idle = f"nothing to do: {run_dir} is at iteration 2 of 2; pass --iters M (> 2) to continue\n"
    assert capsys.readouterr().out == idle and not calls
    # a preset that agrees with the run (its fields given explicitly, as experiments/reproduce.py repeats the
    # command that started a run) is honoured, not refused
    agree = ["--horizon", "4", "--num-envs", "2", "--minibatch-envs", "2", "--iters", "2"]  # the rest: cpu-bandit's
    assert main(["train", "--out", run_dir, "--resume", "--preset", "cpu-bandit", *agree, "--no-progress"]) == 0
    assert capsys.readouterr().out == idle and not calls


@pytest.fixture
def broken_run(run_dir, tmp_path):
    def make(text):
        d = str(tmp_path / "broken")
        shutil.copytree(run_dir, d)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(text)
        return d

    return make


@pytest.mark.parametrize("text, message", [
    ("{not json", "config.json is not valid JSON (Expecting property name"),
    ('{"horizon": "4"}', "config.json: config field horizon must be a whole number, got '4'"),
    ('{"lr": NaN}', "config.json: lr must be in [1e-08, 1] (used as float32; 0 is meaningless), got nan"),
    ('{"nonsense": 1}', "config.json: unknown config fields ['nonsense']"),
    ("[1, 2]", "config.json: a config must be a JSON object"),
])
def test_bad_config_json_named_in_one_line(broken_run, text, message, capsys, tmp_path):
    d = broken_run(text)
    for argv in (["train", "--out", d, "--resume", "--iters", "4"], ["eval", "--run", d, "--episodes", "2"],
                 ["render", "--samples", "--run", d, "--out", str(tmp_path / "s.png")]):
        err = expect_error(capsys, argv, message, watch=d)
        assert os.path.join(d, "config.json") in err
    assert not (tmp_path / "s.png").exists()


# ------------------------------------------------------------------------------------------ eval
@pytest.mark.parametrize("argv, message", [
    (["--env", "mdp"], "--env and --horizon apply only with --policy"),
    (["--horizon", "9"], "--env and --horizon apply only with --policy"),
])
def test_eval_run_ignores_nothing(run_dir, argv, message, capsys):
    expect_error(capsys, ["eval", "--run", run_dir, *argv], message, watch=run_dir)


def test_eval_json_checked_before_the_work(run_dir, capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    expect_error(capsys, ["eval", "--run", run_dir, "--json", str(tmp_path)], "is a folder", watch=run_dir)
    expect_error(capsys, ["eval", "--run", run_dir, "--json", str(f / "e.json")], "which is a file", watch=run_dir)


@pytest.mark.parametrize("argv, message", [
    (["--policy", "random", "--env", "bandit"], "--policy needs --env and --horizon"),
    (["--policy", "random", "--env", "nope", "--horizon", "4"], "unknown env 'nope'"),
    (["--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "2000000000"],
     "--episodes 2000000000 needs at least"),
    (["--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "0"], "expected a whole number >= 1"),
])
def test_eval_policy_errors(argv, message, capsys):
    expect_error(capsys, ["eval", *argv], message)


# ------------------------------------------------------------------------------------------ bench
@pytest.mark.parametrize("argv, message", [
    (["--scaling", "--devices", "0,abc"], "--devices '0,abc': expected comma-separated whole numbers >= 1"),
    (["--scaling", "--devices", ""], "--devices '': expected comma-separated"),
    (["--scaling", "--seeds", "2,x"], "--seeds '2,x': expected comma-separated"),
    (["--devices", "2"], "--devices applies only with --scaling"),
    (["--seeds", "2"], "--seeds applies only with --scaling"),
    (["--scaling", "--only", "bandit-rl2-gru"], "apply to the workload table, not to --scaling"),
    (["--scaling", "--set", "epochs=1"], "apply to the workload table, not to --scaling"),
    (["--population", "--only", "bandit-rl2-gru"], "apply to the workload table, not to --population"),
    (["--population", "--scaling"], "--scaling and --population are two benchmarks: choose one"),
    (["--population", "--devices", "2"], "--devices applies only with --scaling"),
    (["--population", "--seeds", "0,4"], "--seeds '0,4': expected comma-separated whole numbers >= 1"),
    (["--scaling", "--quick", "--devices", "1,3"], "[3] exceed the 1 local devices"),
    (["--quick", "--only", "nope"], "unknown workloads"),
])
def test_bench_flag_errors(argv, message, capsys):
    expect_error(capsys, ["bench", *argv], message)


def test_bench_json_checked_first(capsys, tmp_path):
    expect_error(capsys, ["bench", "--quick", "--json", str(tmp_path)], "is a folder", watch=str(tmp_path))


# ------------------------------------------------------------------------------------------ render
def test_render_errors(run_dir, capsys, tmp_path):
    png = str(tmp_path / "s.png")
    expect_error(capsys, ["render", "--samples", "--run", run_dir, "--out", png],
                 "render draws grid tasks (grid11, grid13); run", watch=run_dir)  # was an AttributeError traceback
    expect_error(capsys, ["render", "--run", run_dir, "--out", str(tmp_path / "e.gif")], "render draws grid tasks")
    expect_error(capsys, ["render", "--samples", "--variant", "dense", "--out", png], "--samples draws every variant")
    expect_error(capsys, ["render", "--samples", "--episodes", "3", "--out", png], "--samples draws every variant")
    expect_error(capsys, ["render", "--out", png], "render needs --run DIR (or --samples)")
    expect_error(capsys, ["render", "--samples", "--out", str(tmp_path)], "is a folder")
    assert os.listdir(tmp_path) == []


def test_render_checks_of_a_grid_run(tmp_path):
    """``runfiles.check_render`` (the CLI's one check before ``render_cli``, no JAX): the family to draw, the
    run's variant names, a population folder refused naming its members."""
    from rl3jax.runs import runfiles

    grid = tmp_path / "grid"
    grid.mkdir()
    runfiles.atomic_write_json(str(grid / runfiles.CONFIG), TrainConfig(env="grid11", horizon=250).to_dict())
    assert runfiles.check_render(str(grid)) == "grid11"
    assert runfiles.check_render(str(grid), samples=True) == "grid11"
    assert runfiles.check_render(None, samples=True) == runfiles.RENDER_DEFAULT_FAMILY
    with pytest.raises(ValueError, match="unknown variant 'dense' for env 'grid11'; valid variants: train"):
        runfiles.check_render(str(grid), variant="dense")
    assert runfiles.check_render(str(grid), variant="train", episodes=3) == "grid11"
    (tmp_path / "pop").mkdir()
    runfiles.atomic_write_json(str(tmp_path / "pop" / runfiles.POPULATION), {"members": []})
    with pytest.raises(runfiles.RunFolderError, match="holds a population .* render one member folder"):
        runfiles.check_render(str(tmp_path / "pop"))


# ------------------------------------------------------------------------------------------ end to end
def _python(*args, code=None):
    cmd = [sys.executable, *(["-c", code] if code else ["-m", "rl3jax", *args])]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_subprocess_config_error_one_line_no_folder_no_jax(tmp_path):
    out = tmp_path / "R"
    r = _python("train", *T, "--env", "mpd", "--out", str(out))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown env 'mpd'" in r.stderr
    assert not out.exists()
    r = _python("train", *T, "--seed", "18446744073709551616", "--out", str(out))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "<= 4294967295" in r.stderr
    assert not out.exists()
    # the error paths of names, values and folders import no JAX (that is what makes them take ~0.2 s, not 15 s)
    code = ("import sys; from rl3jax.cli import main\n"
            f"for a in ({T + ['--env', 'mpd']!r}, {T + ['--set', 'lr=inf']!r}, {T + ['--env', 'PointRobot-misc']!r},"
            f" ['--env', 'CartPole-v1'], {T + ['--resume']!r}, {T + ['--sweep', 'lr=abc']!r},"
            f" {T + ['--sweep', 'epochs=1,2']!r}, {T + ['--algo', 'rl2', '--set', 'alpha_laplace=0.2']!r}):\n"
            f"    assert main(['train', *a, '--out', {str(out)!r}]) == 2\n"
            "print('jax' in sys.modules, 'gymnax' in sys.modules)")
    r = _python(code=code)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stderr


def test_subprocess_bench_cpu_devices_is_honoured():
    # --cpu-devices 2 gives 2 devices (so 4 is refused, naming 2); it must act before JAX starts its backend
    r = _python("bench", "--scaling", "--quick", "--cpu-devices", "2", "--devices", "4")
    assert r.returncode == 2 and "[4] exceed the 2 local devices" in r.stderr and "Traceback" not in r.stderr


def test_version_and_help(capsys):
    import rl3jax

    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rl3jax {rl3jax.__version__}"
    assert _run(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for s in ("cpu-mdp", "cpu-bandit", "cpu-grid11", "(default: 1)", "grid13 350", "0 .. 4294967295"):
        assert s in text, s
    assert _run(["eval", "--help"]) == 0
    assert "(default: 1000)" in " ".join(capsys.readouterr().out.split())
    assert _run(["train", "--horizon", "0", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --horizon: expected a whole number >= 1, got 0" in err


def test_every_flag_has_help():
    parser = cli.build_parser()
    for name, sub in _subparsers(parser).items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 8, (name, action.option_strings)


def test_reproduce_help_is_whole():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--help"],
                       capture_output=True, text=True, timeout=120)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert "evaluated in and out of distribution) and the H-scaling sweep on MDPs." in text
    assert "make reproduce ARGS=" in text and ".venv/bin/python experiments/reproduce.py" in text


# ------------------------------------------------------------------------------------------ presets
def test_grid_families_default_to_their_published_horizon():
    args = cli.build_parser().parse_args(["train", "--env", "grid13", "--algo", "rl2", "--out", "x"])
    assert cli.check_train_args(args).horizon == 350 and cli.check_train_args(args).num_envs == 16
    args = cli.build_parser().parse_args(["train", "--env", "grid11", "--out", "x"])
    assert cli.check_train_args(args).horizon == 250
    for name in ("cpu-grid11", "cpu-grid13"):
        cfg = TrainConfig(**preset(name))
        assert cfg.horizon == {"cpu-grid11": 250, "cpu-grid13": 350}[name]
    # every family with a laptop preset gets it when no preset is given (what `make train ENV=...` runs)
    for env in ("mdp", "bandit", "grid11", "grid13"):
        args = cli.build_parser().parse_args(["train", "--env", env, "--out", "x"])
        assert cli.check_train_args(args) == TrainConfig(**preset(f"cpu-{env}"))


# ------------------------------------------------------------------------------------------ option tables
#: flag -> how it is checked. ("call", extra argv): the flag changes what the command hands to the work
#: (the config or arguments of driver.train, evaluate, run_bench/bench_scaling, samples_png), checked below
#: against the same command without it. ("refused", extra argv, message): where it cannot be honoured it is
#: refused. ("test", "file::name"): a named test checks it (the test must exist).
FLAGS = {
    "train": {
        "--env": ("call", ["--env", "mdp"]),
        "--variant": ("call", ["--variant", "ood"]),
        "--algo": ("call", ["--algo", "rl3"]),
        "--model": ("call", ["--model", "gru"]),
        "--horizon": ("call", ["--horizon", "5"]),
        "--iters": ("call", ["--iters", "3"]),
        "--num-envs": ("call", ["--num-envs", "4"]),
        "--minibatch-envs": ("call", ["--minibatch-envs", "1"]),
        "--seed": ("call", ["--seed", "7"]),
        "--out": ("call", ["--out", "OTHER"]),
        "--preset": ("call", ["--preset", "bandit-h100"]),
        "--resume": ("test", "tests/system/test_cli_validation.py::test_resume_to_the_same_total_is_allowed"),
        "--set": ("call", ["--set", "lr=0.01"]),
        "--tensorboard": ("call", ["--tensorboard"]),
        "--wandb": ("call", ["--wandb", "proj"]),
        "--no-progress": ("call", ["--no-progress"]),
        "--max-seconds": ("call", ["--max-seconds", "5"]),
        "--devices": ("refused", ["--devices", "64"], "asks for more devices"),
        "--seeds": ("call", ["--seeds", "2"]),
        "--sweep": ("call", ["--sweep", "lr=0.001,0.01"]),
        "--coordinator-address": ("refused", ["--coordinator-address", "localhost:1"], "multi-host training needs"),
        "--num-processes": ("refused", ["--num-processes", "2"], "multi-host training needs"),
        "--process-id": ("refused", ["--process-id", "0"], "multi-host training needs"),
        "--distributed": ("test", "tests/system/test_distributed.py::test_two_processes_equal_single_process"),
    },
    "eval": {
        "--run": ("test", "tests/system/test_cli_validation.py::test_cli_train_eval_roundtrip"),
        "--policy": ("call", ["--policy", "oracle"]),
        "--env": ("call", ["--env", "mdp"]),
        "--variant": ("call", ["--variant", "ood"]),
        "--horizon": ("call", ["--horizon", "5"]),
        "--episodes": ("call", ["--episodes", "4"]),
        "--greedy": ("refused", ["--greedy"], "--greedy applies to a trained --run"),
        "--param": ("refused", ["--param", "epsilon=0.1"], "policy 'random' has no parameter 'epsilon'"),
        "--json": ("call", ["--json", "OTHER"]),
    },
    "baselines": {
        "--env": ("call", ["--env", "mdp"]),
        "--variant": ("call", ["--variant", "ood"]),
        "--horizon": ("call", ["--horizon", "5"]),
        "--episodes": ("call", ["--episodes", "4"]),
        "--only": ("call", ["--only", "random"]),
        "--batch": ("call", ["--batch", "2"]),
        "--json": ("call", ["--json", "OTHER"]),
    },
    "bench": {
        "--quick": ("call", ["--quick"]),
        "--json": ("call", ["--json", "OTHER"]),
        "--only": ("call", ["--only", "bandit-rl2-gru"]),
        "--repeats": ("call", ["--repeats", "1"]),
        "--set": ("call", ["--set", "epochs=1"]),
        "--scaling": ("call", ["--scaling"]),
        "--population": ("call", ["--population"]),
        "--cpu-devices": ("test", "tests/system/test_cli_validation.py::test_subprocess_bench_cpu_devices_is_honoured"),
        "--devices": ("refused", ["--devices", "1"], "--devices applies only with --scaling"),
        "--seeds": ("refused", ["--seeds", "1"], "--seeds applies only with --scaling"),
    },
    "render": {
        "--run": ("refused", ["--run", "RUN"], "render draws grid tasks"),
        "--variant": ("refused", ["--variant", "dense"], "--samples draws every variant"),
        "--episodes": ("refused", ["--episodes", "2"], "--samples draws every variant"),
        "--out": ("call", ["--out", "OTHER"]),
        "--samples": ("test", "tests/test_render.py::test_samples_png_has_a_row_per_variant"),
    },
    "report": {
        "--out": ("call", ["--out", "OTHER"]),
        "--episodes": ("call", ["--episodes", "7"]),
        "--variant": ("call", ["--variant", "ood"]),
        "--baselines-json": ("call", ["--baselines-json", "OTHER"]),
    },
    "sweep": {},  # its actions' flags: tests/test_sweep.py::SWEEP_FLAGS
}


#: the command each subcommand's flags are varied from (OUT / OTHER: files in tmp_path; RUN: the fixture run)
BASE = {"train": ["train", *T, "--out", "OUT"],
        "eval": ["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "3"],
        "baselines": ["baselines", "--env", "bandit", "--horizon", "4", "--episodes", "3"],
        "bench": ["bench"],
        "render": ["render", "--samples", "--out", "OUT"],
        "report": ["report", "RUN", "--out", "OUT"],
        "sweep": ["sweep", "plan", "--out", "OUT", *T]}


#: TrainConfig field -> (another valid value, what it changes). ppo: _ppo_signature(cfg); estimator: the RL³
#: estimator; meta_env: the meta-episode env; network: the actor; state: the initial TrainState's shapes;
#: schedule: ChunkLoop's chunks and checkpoints; ("test", name): a named test;
FIELDS = {
    "env": ("mdp", "meta_env"), "variant": ("ood", "meta_env"), "algo": ("rl2", "meta_env"),
    "model": ("gru", "network"),
    "gru_hidden": (128, ("test", "tests/test_networks.py::test_gru_hidden_sets_the_width_of_actor_and_critic")), "horizon": (6, "meta_env"), "iters": (8, "schedule"), "num_envs": (8, "state"),
    "minibatch_envs": (4, "ppo"), "epochs": (2, "ppo"), "lr": (1e-2, "ppo"), "ent_coef": (0.5, "ppo"),
    "ent_schedule": ("linear", "ppo"), "gamma": (0.9, "ppo"), "gae_lambda": (0.9, "ppo"), "clip_eps": (0.1, "ppo"),
    "vf_coef": (1.0, "ppo"), "target_kl": (0.5, "ppo"), "critic_weight_decay": (0.5, "ppo"),
    "kl_chunks": (2, "ppo"), "kl_rule": ("minibatch", "ppo"), "shared_torso": (True, "ppo"),
    "semantics": ("rlc", "estimator"),
    "vi_carry_over": (True, ("test", "tests/test_config.py::test_config_refuses_what_does_not_apply")),
    "std_errors": (True, "estimator"), "gamma_obj": (0.5, "estimator"), "estimator": ("discovery", "estimator"),
    "state_obs": (True, ("test", "tests/envs/test_state_index.py::test_state_obs_block_holds_the_normalised_state")),
    "alpha_laplace": (0.5, "estimator"), "vi_epsilon": (0.5, "estimator"), "vi_max_sweeps": (3, "estimator"),
    "vi_sweep_block": (3, "estimator"),
    "seed": (5, ("test", "tests/test_trainer.py::test_same_seed_same_result_and_chunking_does_not_matter")),
    "chunk_iters": (1, "schedule"), "checkpoint_every": (2, "schedule"),
    "keep_checkpoints": (1, ("test", "tests/system/test_cli_validation.py::test_keep_checkpoints_keeps_only_the_newest")),
    "eval_every": (1, ("test", "tests/runs/test_driver.py::test_eval_rows_resume_csv_and_loggers")),
    "eval_episodes": (8, ("test", "tests/runs/test_driver.py::test_evaluator_equals_evaluate_and_compiles_once")),
}


def _subparsers(parser) -> dict:
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _test_exists(ref: str) -> bool:
    path, name = ref.split("::")
    with open(os.path.join(ROOT, path)) as f:
        return f"def {name}(" in f.read()


def test_option_tables_cover_every_flag_and_field():
    """Fails when a flag or a TrainConfig field is added without saying how it is honoured."""
    subs = _subparsers(cli.build_parser())
    assert set(subs) == set(FLAGS), f"subcommands without a FLAGS table: {set(subs) ^ set(FLAGS)}"
    for name in FLAGS:
        flags = {a.option_strings[-1] for a in subs[name]._actions if a.option_strings and a.dest != "help"}
        assert flags == set(FLAGS[name]), (name, flags ^ set(FLAGS[name]))
    assert set(FIELDS) == {f.name for f in dataclasses.fields(TrainConfig)}
    refs = [e[1] for t in FLAGS.values() for e in t.values() if e[0] == "test"]
    refs += [k[1] for _, k in FIELDS.values() if isinstance(k, tuple)]
    for ref in refs:
        assert _test_exists(ref), ref


def _subst(argv, tmp_path, run_dir):
    m = {"OUT": str(tmp_path / "out"), "OTHER": str(tmp_path / "other"), "RUN": run_dir}
    return [m.get(a, a) for a in argv]


def _vary(base, extra):
    """``base`` with ``extra`` applied: a flag already in base gets the new value, else it is appended."""
    out = list(base)
    if extra[0] in out and len(extra) == 2:
        out[out.index(extra[0]) + 1] = extra[1]
        return out
    return out + extra


@pytest.fixture
def capture(monkeypatch):
    """Replaces the work of each subcommand with a recorder of what it was handed."""
    import importlib.util

    import rl3jax.baselines
    import rl3jax.bench
    import rl3jax.evaluate
    import rl3jax.memory
    import rl3jax.render
    import rl3jax.report
    import rl3jax.runs.driver
    import rl3jax.runs.load
    import rl3jax.trainer

    calls = []
    real_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n in ("tensorboardX", "wandb")
                        else real_spec(n, *a))
    monkeypatch.setattr(rl3jax.trainer, "make_train", lambda cfg, mesh=None: None)
    monkeypatch.setattr(rl3jax.memory, "check_train_memory", lambda *a, **k: None)
    monkeypatch.setattr(rl3jax.runs.driver, "train", lambda cfg, out, **kw: calls.append((cfg.to_dict(), out, kw)))

    def fake_eval(meta_env, policy, episodes, **kw):
        calls.append((meta_env.env.name, getattr(meta_env.env, "variant", None), meta_env.horizon, policy, episodes,
                      kw))
        return {"episodes": episodes, "mean_return": 0.0, "stderr": 0.0, "step_rewards": [0.0]}

    monkeypatch.setattr(rl3jax.evaluate, "evaluate", fake_eval)
    monkeypatch.setattr(rl3jax.runs.load, "evaluate", fake_eval)
    monkeypatch.setattr(rl3jax.bench, "run_bench", lambda **kw: calls.append(("run_bench", kw)))
    monkeypatch.setattr(rl3jax.bench, "bench_scaling", lambda **kw: calls.append(("scaling", kw)))
    monkeypatch.setattr(rl3jax.bench, "bench_population", lambda **kw: calls.append(("population", kw)))
    monkeypatch.setattr(rl3jax.render, "samples_png", lambda family, out, **kw: calls.append((family, out, kw)))
    monkeypatch.setattr(rl3jax.evaluate, "run_baselines", lambda *a, **kw: calls.append((a, kw)) or [])
    monkeypatch.setattr(rl3jax.report, "make_report", lambda paths, out, **kw: calls.append((paths, out, kw))
                        or {"runs": []})
    return calls


@pytest.mark.parametrize("sub", list(FLAGS))
def test_every_flag_changes_behaviour_or_is_refused(sub, capture, run_dir, tmp_path, capsys):
    base = _subst(BASE[sub], tmp_path, run_dir)
    assert main(base) == 0, capsys.readouterr().err
    files = sorted(os.listdir(tmp_path))
    reference = capture[-1] if capture else None  # sweep plan hands nothing on (it writes the plan)
    for flag, entry in FLAGS[sub].items():
        if entry[0] == "test":
            continue
        argv = _vary(base, _subst(entry[1], tmp_path, run_dir))
        if entry[0] == "refused":
            expect_error(capsys, argv, entry[2])
            continue
        n = len(capture)
        assert main(argv) == 0, (flag, capsys.readouterr().err)
        written = sorted(os.listdir(tmp_path)) != files
        assert len(capture) == n + 1 and (capture[-1] != reference or written), f"{sub} {flag} changed nothing"
        for p in os.listdir(tmp_path):  # a flag that writes a file (--json) shows it; start clean for the next
            if p not in files:
                os.remove(os.path.join(tmp_path, p))


def _schedule(cfg):

    chunks, saves = [], []
    ChunkLoop(cfg, 0).run(lambda s, n: (chunks.append(n) or s, {}), None, lambda it, n, m, dt, evals=None: None,
                          lambda it, s: saves.append(it))
    return chunks, saves


def _ppo_signature(cfg):
    """What a PPO iteration computes: its jaxpr (static settings) and the values ``Trainer.init`` puts in
    ``TrainState.hparams`` (``TrainConfig.hparams``; tests/runs/test_population.py checks that it does)."""

    from rl3jax.trainer import make_train

    trainer = make_train(cfg)
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    return str(jax.make_jaxpr(trainer.iteration)(state)), cfg.hparams()


@pytest.mark.parametrize("field", list(FIELDS))
def test_every_config_field_changes_behaviour(field):

    from rl3jax.trainer import make_train

    value, kind = FIELDS[field]
    if isinstance(kind, tuple):
        return  # a named test checks it (test_option_tables_cover_every_flag_and_field checks that it exists)
    base = TrainConfig(env="bandit", algo="rl3", model="markov", horizon=4, num_envs=4, minibatch_envs=2, iters=4,
                       chunk_iters=4, checkpoint_every=4)
    alt = base.replace(**{field: value})
    assert getattr(alt, field) != getattr(base, field)
    if kind == "ppo":
        assert _ppo_signature(alt) != _ppo_signature(base)
    elif kind == "estimator":
        env = make_meta_env(base).env
        assert make_estimator(env, alt) != make_estimator(env, base)
    elif kind == "meta_env":
        def sig(cfg):
            m = make_meta_env(cfg)
            return (m.env.name, getattr(m.env, "variant", None), m.horizon, type(m.estimator), m.obs_dim)

        assert sig(alt) != sig(base)
    elif kind == "network":
        assert type(make_train(alt).actor.module) is not type(make_train(base).actor.module)
    elif kind == "state":
        shape = lambda c: jax.tree.leaves(jax.eval_shape(make_train(c).init, jax.random.key(0)).env_state)[0].shape  # noqa: E731
        assert shape(alt) != shape(base)
    elif kind == "schedule":
        assert _schedule(alt) != _schedule(base)
    else:
        raise AssertionError(f"unknown kind {kind!r}")


def test_report_out_defaults_to_the_single_runs_report_folder(capture, run_dir, capsys):
    assert main(["report", run_dir]) == 0
    paths, out, _ = capture[-1]
    assert paths == [run_dir] and out == os.path.join(run_dir, "report")
    expect_error(capsys, ["report", run_dir, run_dir], "--out is needed for a report of several runs")


# ------------------------------------------------------------------------------------------ presets follow
@pytest.mark.parametrize("given, want", [
    # (num_envs, minibatch_envs, eval_every, model) of cpu-mdp under the user's overrides (issue 17 12b, 13)
    ({}, (320, 80, 20, "markov")),
    ({"num_envs": 64}, (64, 16, 20, "markov")),  # the README's example: 4 minibatches, not 80-sequence ones
    ({"num_envs": 10}, (10, 2, 20, "markov")),  # 10 / 4 = 2.5 sequences: the nearest divisor (ties: larger)
    ({"horizon": 500}, (64, 16, 20, "markov")),  # 32000 steps per iteration at H = 500
    ({"iters": 200}, (320, 80, 50, "markov")),  # four held-out evaluations per run
    ({"iters": 2}, (320, 80, 0, "markov")),  # fewer iterations than evaluations: none
    ({"minibatch_envs": 40, "eval_every": 3}, (320, 40, 3, "markov")),  # given: kept
    ({"algo": "rl2"}, (320, 80, 20, "gru")),  # RL² gets a sequence model
    ({"algo": "rl2", "model": "markov"}, (320, 80, 20, "markov")),  # the explicit ablation stays possible
])
def test_preset_derived_settings_follow_the_overrides(given, want):
    from rl3jax.config import build

    cfg = build({"env": "mdp", **given})
    assert (cfg.num_envs, cfg.minibatch_envs, cfg.eval_every, cfg.model) == want


def test_notes_say_what_a_valid_config_may_not_mean():
    from rl3jax.config import build, notes

    assert notes(build({"env": "mdp"}), cpu=True) == []  # the laptop preset: about 4 minutes
    (memoryless,) = notes(build({"env": "bandit", "algo": "rl2", "model": "markov"}))
    assert memoryless.startswith("note: algo rl2 with model markov") and "ablation" in memoryless
    (long,) = notes(build({}, "mdp-h100"), cpu=True)  # 10000 x 32000 steps at ~2000/s
    assert long.startswith("warning: about 44 h on this CPU (320,000,000 env steps")
    assert notes(build({}, "mdp-h100"), cpu=False) == []  # a GPU: no estimate
    for env, ret in (("CartPole-v1", "the return is H"), ("MountainCar-v0", "the return is -H")):
        (constant,) = notes(build({"env": env, "algo": "rl2", "model": "gru"}))
        assert constant.startswith(f"warning: env {env}'s meta-episode return cannot vary") and ret in constant
    assert notes(build({"env": "MetaMaze-misc", "algo": "rl2", "model": "gru"})) == []


def test_train_prints_the_notes_before_it_starts(capture, tmp_path, capsys):
    assert main(["train", *T, "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("note: algo rl2 with model markov sees only the current input")
    assert out[1].startswith("training rl2 (markov) on bandit/train")


def test_gymnax_env_trains_through_the_cli(tmp_path):
    from rl3jax.cli import main

    out = str(tmp_path / "run")
    assert main(["train", "--env", "BernoulliBandit-misc", "--algo", "rl2", "--model", "markov", "--horizon", "250",
                 "--num-envs", "2", "--minibatch-envs", "2", "--iters", "1", "--set", "epochs=1", "--out", out,
                 "--no-progress"]) == 0


def test_cli_semantics_error_is_one_line(capsys, tmp_path):
    assert cli_main(["train", "--env", "grid11", "--algo", "rl3_coarse", "--set", "semantics=v4", "--out",
                     str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "semantics 'v4'" in err and "Traceback" not in err


def test_paper_v4_bandit_markov_cli(tmp_path):
    run = str(tmp_path / "run")
    assert cli_main(["train", "--preset", "paper-v4-bandit-h100", "--model", "markov-v4", "--iters", "1",
                     "--horizon", "6", "--num-envs", "4", "--minibatch-envs", "2", "--set", "epochs=1",
                     "--out", run, "--no-progress"]) == 0
    assert cli_main(["eval", "--run", run, "--episodes", "4", "--greedy"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "nope", "--out", "X"], "unknown env 'nope'"),
    (["train", "--env", "mdp", "--variant", "bogus", "--out", "X"], "variant 'bogus'"),
    (["train", "--num-envs", "10", "--minibatch-envs", "4", "--out", "X"], "not divisible"),
    (["train", "--set", "lr=abc", "--out", "X"], "expected a float"),
    (["train", "--set", "nofield=1", "--out", "X"], "unknown config field"),
    (["train", "--set", "fused_update=true", "--out", "X"], "--set: unknown config field 'fused_update'"),
    (["train", "--preset", "nope", "--out", "X"], "unknown preset"),
    (["eval", "--run", "/nonexistent/run", "--episodes", "2"], "not a run folder"),
])
def test_cli_bad_input_gives_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_bad_int_flag_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--horizon", "0", "--out", "X"])
    assert e.value.code == 2
    assert "expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_cli_corrupt_checkpoint_gives_clear_error(tmp_path, capsys):
    run = str(tmp_path / "run")
    cfg = TrainConfig(env="bandit", algo="rl2", iters=2, **TINY)
    train(cfg, run, quiet=True)
    step_dir = os.path.join(run, "checkpoints", "2", "state")
    for root, _, files in os.walk(step_dir):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint step 2:" in err and "is truncated or resized" in err and "Traceback" not in err
    # a step whose checksum manifest was lost is refused in one line; one written before manifests (no "sealed"
    # in its meta) still fails in one line, from orbax's own error, after a note
    os.remove(os.path.join(run, "checkpoints", "2", "rl3jax_manifest.json"))
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "lost its checksum file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    meta_path = os.path.join(run, "checkpoints", "2", "meta", "metadata")
    meta = json.load(open(meta_path))
    del meta["sealed"]
    json.dump(meta, open(meta_path, "w"))
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not be restored" in err[-1] and "has no checksums" in err[0] and len(err) == 2


def test_cli_train_eval_roundtrip(tmp_path):
    run = str(tmp_path / "run")
    assert cli_main(["train", "--env", "bandit", "--algo", "rl3", "--model", "markov", "--horizon", "8",
                     "--iters", "2", "--num-envs", "8", "--minibatch-envs", "4", "--out", run,
                     "--no-progress"]) == 0
    out = str(tmp_path / "eval.json")
    assert cli_main(["eval", "--run", run, "--episodes", "20", "--greedy", "--json", out]) == 0
    with open(out) as f:
        res = json.load(f)
    for k in ("env", "variant", "algo", "policy", "horizon", "episodes", "mean_return", "stderr"):
        assert k in res
    assert res["episodes"] == 20 and res["policy"] == "greedy" and 0 <= res["mean_return"] <= 8


@pytest.mark.parametrize("setting, message", [("eval_every=-2", "eval_every must be >= 0 (0: never), got -2"),
                                              ("eval_every=1.5", "--set eval_every=1.5: expected a whole number"),
                                              ("eval_episodes=0", "eval_episodes must be >= 1, got 0")])
def test_cli_bad_eval_settings(tmp_path, capsys, setting, message):
    out = str(tmp_path / "run")
    rc = cli_main(["train", "--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--iters", "2",
                   "--num-envs", "2", "--minibatch-envs", "2", "--out", out, "--no-progress", "--set", setting])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not os.path.exists(out)


def test_sweep_parsing_and_errors():
    parse_sweep = lambda items: parse_sets(items, sweep=True)  # noqa: E731 (the parser --sweep and --set share)
    assert parse_sweep(["lr=1e-3,3e-4", "gae-lambda=0.3,0.9"]) == {"lr": [1e-3, 3e-4], "gae_lambda": [0.3, 0.9]}
    members = make_members(CFG, seeds=2, sweep={"lr": [1e-3, 3e-4]})
    assert [(m.seed, m.settings) for m in members] == [(10, (("lr", 1e-3),)), (11, (("lr", 1e-3),)),
                                                       (10, (("lr", 3e-4),)), (11, (("lr", 3e-4),))]
    with pytest.raises(ConfigError, match="NAME=V1"):
        parse_sweep(["lr"])
    with pytest.raises(ConfigError, match="--sweep lr=fast: expected a float"):
        parse_sweep(["lr=fast"])
    with pytest.raises(ConfigError, match="expected distinct values"):
        parse_sweep(["lr=1,1"])
    with pytest.raises(ConfigError, match="--sweep epochs: not sweepable in one compile"):
        parse_sweep(["epochs=1,2"])
    for name in ("learning_rate", "epochs"):  # no config field; a field that changes shapes or code
        with pytest.raises(ValueError, match=f"--sweep {name}: not sweepable in one compile; sweepable: lr,"):
            make_members(CFG, sweep={name: [1, 2]})
    with pytest.raises(ValueError, match=r"lr must be in \[1e-08, 1\]"):
        make_members(CFG, sweep={"lr": [1e-3, -1.0]})


@pytest.mark.parametrize("argv,needle", [
    (["--policy", "ucb", "--env", "bandit", "--horizon", "5", "--param", "c=-2"], "c='-2' is not valid"),
    (["--policy", "ucb", "--env", "bandit", "--horizon", "5", "--param", "gamma=1"], "no parameter 'gamma'"),
    (["--policy", "opsrl", "--env", "mdp", "--horizon", "5", "--param", "m=0"], "m='0' is not valid"),
    (["--policy", "psrl", "--env", "bandit", "--horizon", "5"], "does not fit env 'bandit'"),
    (["--policy", "bayes-optimal", "--env", "bandit", "--horizon", "40"], "H <= 26"),
    (["--policy", "nope", "--env", "bandit", "--horizon", "5"], "unknown policy 'nope'; valid: random, oracle"),
])
def test_cli_eval_policy_errors_exit_2_with_one_line(argv, needle, capsys):
    assert main(["eval", *argv, "--episodes", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err, err


def test_cli_parser_does_not_start_a_jax_backend():
    """`train` must be able to set up multi-host JAX after parsing: building the parser imports no backend."""
    import subprocess
    import sys

    code = ("import rl3jax.cli as c\ntry:\n    c.main(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
            "from jax._src import xla_bridge\nprint(bool(xla_bridge._backends))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_cli_baselines_table_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["baselines", "--env", "bandit", "--horizon", str(BANDIT_H), "--episodes", "60", "--only",
                 "oracle,greedy,random", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["policy"] for r in rows] == ["random", "oracle", "greedy"]  # registry order
    by = {r["policy"]: r for r in rows}
    assert by["random"]["normalised"] == pytest.approx(0.0) and by["oracle"]["normalised"] == pytest.approx(1.0)
    for r in rows:
        assert len(r["step_rewards"]) == BANDIT_H
        assert sum(r["step_rewards"]) == pytest.approx(r["mean_return"], rel=1e-5)
        assert r["policy"] in text
    g = by["greedy"]
    assert g["normalised"] == pytest.approx((g["mean_return"] - by["random"]["mean_return"])
                                            / (by["oracle"]["mean_return"] - by["random"]["mean_return"]))


# ------------------------------------------------------------------ found by the fresh-user trial (issue 17)
def test_a_flag_and_a_set_of_the_same_field_are_refused(tmp_path, capsys):
    """``--env mdp --set env=bandit`` trained bandits silently: a field given twice is one line, exit 2."""
    out = str(tmp_path / "x")
    assert cli_main(["train", "--env", "mdp", "--set", "env=bandit", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "env is given twice, --env mdp and --set env=bandit" in err
    assert not os.path.exists(out)


def test_a_bad_value_is_named_even_where_the_out_folder_is_taken(tmp_path, capsys):
    """A new run's settings are checked before its folder: the bad value is the error, not the taken folder."""
    out = str(tmp_path / "taken")
    os.makedirs(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(TrainConfig().to_dict(), f)
    for bad in ("horizon=abc", "lr=nan"):
        assert cli_main(["train", "--env", "mdp", "--set", bad, "--out", out]) == 2
        err = capsys.readouterr().err
        assert bad.split("=")[0] in err and "already holds a run" not in err, err


def test_a_new_run_in_a_population_member_folder_names_the_population(tmp_path, capsys):
    pop = tmp_path / "pop"
    member = pop / "seed0"
    member.mkdir(parents=True)
    (pop / "population.json").write_text("{}")
    (member / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    assert cli_main(["train", "--env", "mdp", "--out", str(member)]) == 2
    err = capsys.readouterr().err
    assert f"is a member of the population in {pop}" in err and f"--out {pop} --resume" in err
    assert "pass --resume to continue it" not in err
