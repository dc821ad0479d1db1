"""Run folders under faults (issue 9, items 1 and 7): a resumed schedule equals the straight run's, readers never
touch a writer's files, one writer per folder, resumable before the first checkpoint, atomic metrics, checksummed
checkpoints, divergence stopped at the first bad iteration, OS errors in one line, and an honest progress bar.

Issue 17 (the section at the end): a resume refuses a config that is not its checkpoint's, a folder holding part
of a run is not empty, advice that works, every output path checked before the work and never replaced, a full
disk named with its path (real, on a small tmpfs where mounting is allowed), a lost checksum file, the memory
limit that applies, and readers of a run that is training right now."""

from __future__ import annotations

import errno
import json
import os
import shutil

import jax
import numpy as np
import pytest

from rl3jax import config
from rl3jax.cli import main as cli_main
from rl3jax.config import TrainConfig
from rl3jax.runs import population, runfiles
from rl3jax.runs.checkpoint import FORMAT_VERSION, Checkpointer, CheckpointError, CorruptCheckpointError, write_manifest
from rl3jax.runs.driver import Progress, TrainingDiverged, train
from rl3jax.runs.load import Run, load_run
from rl3jax.runs.metrics import MetricsLog
from rl3jax.runs.runfiles import RunFolderError, RunLock, RunLockedError, read_metrics
from tests.helpers import _leaves_equal, _one_line_error

# `T` of the issue, with tiny chunks so every boundary is exercised
T = dict(env="bandit", algo="rl2", model="markov", horizon=4, num_envs=2, minibatch_envs=2, epochs=2,
         chunk_iters=2, checkpoint_every=2)


T_ARGV = ["--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "2",
          "--minibatch-envs", "2", "--no-progress", "--set", "epochs=2", "--set", "chunk_iters=2",
          "--set", "checkpoint_every=2", "--set", "eval_every=0"]


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    """A finished 4-iteration run of T (checkpoints at 2 and 4); tests copy it before changing it."""
    run = str(tmp_path_factory.mktemp("faults") / "run4")
    train(TrainConfig(iters=4, **T), run, quiet=True)
    return run


def _copy(run, tmp_path):
    import shutil

    dst = str(tmp_path / "copy")
    shutil.copytree(run, dst)
    return dst


# -------------------------------------------------------------------------------- 1. schedules across resumes
def test_linear_schedule_resume_keeps_straight_schedule_bit_for_bit(tmp_path):
    cfg = TrainConfig(iters=4, ent_schedule="linear", ent_coef=0.1, **T)
    straight, _ = train(cfg, str(tmp_path / "straight"), quiet=True)
    # the same run stopped at its first chunk boundary (max_seconds: iteration 2 of 4), then resumed to 4
    half = str(tmp_path / "half")
    stopped, _ = train(cfg, half, quiet=True, max_seconds=1e-6)
    assert int(stopped.iteration[0]) == 2
    resumed, _ = train(cfg, half, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 4
    for name in ("actor_params", "critic_params", "actor_opt", "critic_opt"):
        assert _leaves_equal(getattr(straight, name), getattr(resumed, name)), name
    ents = [r["ent_coef"] for r in read_metrics(half)]
    assert ents == [r["ent_coef"] for r in read_metrics(str(tmp_path / "straight"))]
    np.testing.assert_allclose(ents, [0.1, 0.075, 0.05, 0.025], rtol=1e-6)  # 0.1 * (1 - i/4)


def test_linear_schedule_resume_with_other_iters_is_refused_before_writing(tmp_path):
    cfg = TrainConfig(iters=2, ent_schedule="linear", ent_coef=0.1, **T)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True)
    before = open(os.path.join(run, "config.json")).read()
    with pytest.raises(ValueError, match=r"ent_schedule=linear decays over its iters=2.*--iters 2"):
        train(cfg.replace(iters=4), run, resume=True, quiet=True)
    assert open(os.path.join(run, "config.json")).read() == before
    # a constant schedule does not depend on the length: extending it stays allowed (N + N = 2N is in test_train)
    train(cfg.replace(ent_schedule="constant", iters=2), str(tmp_path / "c"), quiet=True)
    train(cfg.replace(ent_schedule="constant", iters=4), str(tmp_path / "c"), resume=True, quiet=True)


# -------------------------------------------------------------------------------- 2. readers and writers
def test_eval_leaves_a_trainers_in_progress_checkpoint_alone(run4, tmp_path, capsys):
    run = _copy(run4, tmp_path)
    tmp_ckpt = os.path.join(run, "checkpoints", "6.orbax-checkpoint-tmp-1234567")  # a save in progress
    os.makedirs(os.path.join(tmp_ckpt, "state"))
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 0
    assert os.path.isdir(os.path.join(tmp_ckpt, "state"))
    # opening read-only creates nothing either
    missing = str(tmp_path / "nothing" / "checkpoints")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        Checkpointer(missing).restore(None)
    assert not os.path.exists(missing)


def test_second_writer_is_refused_naming_folder_and_pid(run4, tmp_path, capsys):
    run = _copy(run4, tmp_path)
    lock = RunLock(run)  # this process plays the trainer that holds the folder
    try:
        with pytest.raises(RunLockedError, match=rf"run folder {run} is in use .*PID {os.getpid()}\)"):
            train(TrainConfig(iters=6, **T), run, resume=True, quiet=True)
        for argv in (["--resume", "--iters", "6"], T_ARGV):  # a resume, or a new run into the folder in use
            assert cli_main(["train", "--out", run, "--no-progress", *argv]) == 2
            captured = capsys.readouterr()
            line = _one_line_error(captured.err)
            assert run in line and f"in use by another training process (PID {os.getpid()})" in line
            assert captured.out == ""  # refused before announcing a training
    finally:
        lock.release()
    state, _ = train(TrainConfig(iters=6, **T), run, resume=True, quiet=True)  # released: works
    assert int(state.iteration[0]) == 6


def test_resume_before_the_first_checkpoint_starts_from_zero(tmp_path):
    cfg = TrainConfig(iters=2, **T)
    full, _ = train(cfg, str(tmp_path / "full"), quiet=True)
    run = str(tmp_path / "killed")  # what a kill during the first chunk leaves: config.json and nothing else
    os.makedirs(run)
    runfiles.atomic_write_json(os.path.join(run, "config.json"), cfg.to_dict())
    resumed, _ = train(cfg, run, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 2 and _leaves_equal(full.actor_params, resumed.actor_params)


@pytest.mark.parametrize("when", ["before", "after"])
def test_ctrl_c_message_tells_which_checkpoint_is_intact(tmp_path, capsys, monkeypatch, when):
    real = population.jit_chunk

    def interrupting_jit_chunk(pop):
        fn, calls = real(pop), []

        def chunk(state, n):
            calls.append(n)
            if len(calls) == (1 if when == "before" else 2):
                raise KeyboardInterrupt
            return fn(state, n)
        return chunk

    monkeypatch.setattr(population, "jit_chunk", interrupting_jit_chunk)
    run = str(tmp_path / "run")
    assert cli_main(["train", *T_ARGV, "--iters", "4", "--out", run]) == 130
    err = capsys.readouterr().err
    if when == "before":
        assert "before the first checkpoint" in err and "intact" not in err
    else:
        assert "interrupted at iteration 2; checkpoint step 2 is intact" in err
    monkeypatch.setattr(population, "jit_chunk", real)
    state, _ = train(runfiles.read_config(run), run, resume=True, quiet=True)  # and it resumes
    assert int(state.iteration[0]) == 4


# -------------------------------------------------------------------------------- metrics files
def test_metrics_rewrite_at_resume_is_atomic(run4, tmp_path, monkeypatch):
    run = _copy(run4, tmp_path)
    before = open(os.path.join(run, "metrics.jsonl")).read()

    def killed(*a, **k):  # the process dies while the rows are being rewritten
        raise KeyboardInterrupt

    monkeypatch.setattr(runfiles.json, "dumps", killed)
    with pytest.raises(KeyboardInterrupt):
        MetricsLog(run, 2)
    monkeypatch.undo()
    assert open(os.path.join(run, "metrics.jsonl")).read() == before
    MetricsLog(run, 2)
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2]


def test_torn_last_metrics_line_is_dropped_and_bad_lines_name_the_file(run4, tmp_path, capsys):
    run = _copy(run4, tmp_path)
    path = os.path.join(run, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"iteration": 5, "env_st')  # an append cut short by a full disk
    state, _ = train(TrainConfig(iters=6, **T), run, resume=True, quiet=True)
    assert "torn last line 5 of " + path in capsys.readouterr().err
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    lines = open(path).read().splitlines()
    lines[1] = "garbage"
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match=rf"{path} line 2 is not a metrics row"):
        MetricsLog(run, 6)


# -------------------------------------------------------------------------------- checkpoint integrity
def _largest_file(step_dir):
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "delete"])
def test_damaged_checkpoint_is_detected_in_one_line_naming_the_file(run4, tmp_path, capsys, damage):
    run = _copy(run4, tmp_path)
    victim = _largest_file(os.path.join(run, "checkpoints", "4"))
    data = bytearray(open(victim, "rb").read())
    if damage == "bitflip":  # same size, one bit
        data[len(data) // 2] ^= 0x01
        open(victim, "wb").write(bytes(data))
    elif damage == "truncate":
        open(victim, "wb").write(bytes(data[: len(data) // 2]))
    else:
        os.remove(victim)
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    word = {"bitflip": "is corrupt", "truncate": "is truncated", "delete": "is missing"}[damage]
    assert f"checkpoint step 4: {victim} {word}" in line and "other steps: 2" in line
    with pytest.raises(CorruptCheckpointError):
        train(TrainConfig(iters=6, **T), run, resume=True, quiet=True)
    # the way out the message names: move the bad step aside, resume from the older one
    os.rename(os.path.join(run, "checkpoints", "4"), os.path.join(run, "corrupt-4"))
    state, _ = train(TrainConfig(iters=6, **T), run, resume=True, quiet=True)
    assert int(state.iteration[0]) == 6


# -------------------------------------------------------------------------------- checkpoint format version
def _set_format_version(step_dir, version):
    """Rewrites a step's meta item with ``format_version`` = version (None: removed, as written before
    versioning) and re-seals its manifest, so only the version differs."""
    path = os.path.join(step_dir, "meta", "metadata")
    meta = json.load(open(path))
    meta.pop("format_version", None)
    if version is not None:
        meta["format_version"] = version
    json.dump(meta, open(path, "w"))
    write_manifest(step_dir)


def test_checkpoint_format_version_old_loads_newer_is_refused(run4, tmp_path, capsys):
    run = _copy(run4, tmp_path)
    step4 = os.path.join(run, "checkpoints", "4")
    assert json.load(open(os.path.join(step4, "meta", "metadata")))["format_version"] == FORMAT_VERSION == 2
    # format 1 (tests/data/checkpoint_v1, written at 22ec62c), also from before versioning (no version: 1)
    v1 = shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "checkpoint_v1", "run"), tmp_path / "v1")
    state, _ = load_run(str(v1)).restore()
    _set_format_version(os.path.join(v1, "checkpoints", "1"), None)
    old, meta = load_run(str(v1)).restore()
    assert "format_version" not in meta and _leaves_equal(old.actor_params, state.actor_params)
    assert _leaves_equal(old.critic_opt, state.critic_opt) and int(old.iteration) == 1
    _set_format_version(step4, 3)  # written by a newer rl3jax: one line naming the version and the folder
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"checkpoint step 4 in {os.path.abspath(os.path.join(run, 'checkpoints'))} has format version 3" in line


def test_checkpoint_of_another_structure_is_one_line(run4, tmp_path):
    other = Run(run4, TrainConfig(iters=4, **{**T, "model": "gru"}))  # the run's files, another network
    with pytest.raises(CheckpointError, match=r"checkpoint step 4 \(format version 2\) in .* could not be restored "
                                              r"\(corrupt, or its state structure differs") as e:
        other.restore()
    assert "\n" not in str(e.value)


# -------------------------------------------------------------------------------- divergence
def test_divergence_stops_at_the_first_bad_iteration_without_a_checkpoint(tmp_path, capsys, monkeypatch):
    run = str(tmp_path / "nan")
    # an entropy coefficient large enough to overflow Adam's second moment at once (the config refuses it as
    # outside ent_coef's sane range; widened here to reach the divergence)
    monkeypatch.setitem(config.FLOAT_RANGES, "ent_coef", (0.0, 1e30))
    t_argv = ["chunk_iters=10" if a == "chunk_iters=2" else a for a in T_ARGV]  # a field may be set only once
    argv = ["train", *t_argv, "--iters", "10", "--set", "ent_coef=1e30", "--out", run]
    assert cli_main(argv) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "training diverged at iteration 1:" in line and "no checkpoint was written" in line
    assert not os.path.exists(os.path.join(run, "checkpoints", "10"))
    assert [r["iteration"] for r in read_metrics(run)] == [1]


def test_divergence_after_a_checkpoint_names_the_first_bad_iteration(run4, tmp_path, monkeypatch):
    run = _copy(run4, tmp_path)
    real = population.jit_chunk

    def poisoned(pop):  # iteration 6 (the 2nd of the chunk 5..6) goes non-finite
        fn = real(pop)

        def chunk(state, n):
            state, m = fn(state, n)
            m = dict(m)
            m["finite"] = m["finite"].at[1].set(0.0)
            return state, m
        return chunk

    monkeypatch.setattr(population, "jit_chunk", poisoned)
    with pytest.raises(TrainingDiverged, match=r"iteration 6: non-finite parameters or optimiser state; .*"
                                               r"the last checkpoint is step 4"):
        train(TrainConfig(iters=8, **T), run, resume=True, quiet=True)
    assert Checkpointer(os.path.join(run, "checkpoints")).all_steps() == [2, 4]


def test_checkpointer_refuses_a_non_finite_state(run4, tmp_path):
    cfg = TrainConfig(iters=4, **T)
    from rl3jax.trainer import make_train

    state = jax.jit(make_train(cfg).init)(jax.random.key(0))
    bad = state.replace(actor_params=jax.tree.map(lambda x: x * np.nan, state.actor_params))
    ck = Checkpointer(str(tmp_path / "ck"), write=True)
    with pytest.raises(CheckpointError, match="non-finite"):
        ck.save(1, bad, {})
    assert ck.all_steps() == []
    # a non-finite checkpoint written by an older version (bypassing the check) is refused on restore
    import orbax.checkpoint as ocp

    from rl3jax.runs.checkpoint import FORMAT_VERSION, _to_storable

    ck.manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(_to_storable(bad)),
                                               meta=ocp.args.JsonSave({"format_version": FORMAT_VERSION})),
                    force=True)
    ck.close()
    with pytest.raises(CheckpointError, match="step 1 .* holds NaN or infinite values"):
        Checkpointer(str(tmp_path / "ck")).restore(state)


# -------------------------------------------------------------------------------- OS errors
def test_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(run4, tmp_path, capsys, monkeypatch):
    run = _copy(run4, tmp_path)
    import orbax.checkpoint as ocp

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    assert cli_main(["train", "--out", run, "--resume", "--iters", "6", "--no-progress"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "could not write checkpoint step 6" in line and "No space left on device" in line
    monkeypatch.undo()
    state, _ = Checkpointer(os.path.join(run, "checkpoints")).restore(
        jax.jit(__import__("rl3jax.trainer", fromlist=["make_train"]).make_train(
            TrainConfig(iters=4, **T)).init)(jax.random.key(0)))
    assert int(state.iteration) == 4


def test_full_disk_while_logging_is_one_line(run4, tmp_path, capsys, monkeypatch):
    run = _copy(run4, tmp_path)

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device", self.jsonl)

    monkeypatch.setattr(MetricsLog, "append", full)
    assert cli_main(["train", "--out", run, "--resume", "--iters", "6", "--no-progress"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert line == f"rl3jax train: error: cannot write {run}/metrics.jsonl: No space left on device"


# -------------------------------------------------------------------------------- progress
def test_progress_says_compiling_then_one_steady_state_eta(capsys):
    p = Progress(total=10, initial=0, enabled=True)
    assert p.bar.desc.startswith("compiling")
    p.update(2, 2, 100.0, {"ret": "1.0"})  # the first chunk: includes the compile, no ETA yet
    assert p.bar.postfix == "ret=1.0, eta=…" and not p.bar.desc
    p.update(4, 2, 1.0, {"ret": "1.0"})  # steady: 0.5 s per iteration, 6 left
    assert p.bar.postfix == "ret=1.0, eta=00:03"
    p.update(6, 2, 3.0, {"ret": "1.0"})  # mean of steady chunks: 4 s / 4 it, 4 left
    assert p.bar.postfix == "ret=1.0, eta=00:04"
    p.close()
    out = capsys.readouterr().err
    assert "compiling" in out and "<" not in out  # tqdm's own (compile-inflated) remaining-time is not shown


@pytest.mark.slow  # a child process that imports JAX and compiles: ~20 s idle, minutes on a loaded 2-core machine
def test_real_write_failure_during_a_save_is_one_line(run4, tmp_path):
    # a real failing write, in a child process: RLIMIT_FSIZE makes every write beyond 200 kB fail with EFBIG,
    # TensorStore's path for ENOSPC too (a checkpoint data file here is ~1.4 MB; metrics and config are small)
    import subprocess
    import sys

    run = _copy(run4, tmp_path)
    child = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
             "sys.argv = ['rl3jax'] + sys.argv[1:]; runpy.run_module('rl3jax', run_name='__main__')")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", child, "train", "--out", run, "--resume", "--iters", "6",
                        "--no-progress"], cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    line = _one_line_error(p.stderr)  # was ~120 lines of orbax/asyncio tracebacks
    assert line.startswith("rl3jax train: error: could not write checkpoint step 6") and "File too large" in line
    assert Checkpointer(os.path.join(run, "checkpoints")).all_steps() == [2, 4]


# ================================================================================ issue 17 (third round)
def _tmpfs(path, options: str) -> str:
    """A small tmpfs mounted at ``path`` (``options``: e.g. "size=1m", "ro"), unmounted at the end of the test
    by the ``mounts`` fixture; skips where mounting is not allowed (not root, a container without the right)."""
    import subprocess

    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (and a kernel that allows it here)")
    return str(path)


@pytest.fixture
def mounts():
    """Paths to unmount after the test."""
    import subprocess

    paths: list[str] = []
    yield paths
    for p in reversed(paths):
        subprocess.run(["umount", "-l", p], capture_output=True)


def _fill(folder: str, leave: int = 0) -> None:
    """Fills the file system of ``folder`` up to ``leave`` bytes."""
    st = os.statvfs(folder)
    with open(os.path.join(folder, "filler"), "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))


# -------------------------------------------------------------------------------- 17.2 a resume's config
@pytest.mark.parametrize("edit, field", [({"horizon": 8}, "horizon (4 in the checkpoint, 8 in config.json)"),
                                         ({"lr": 1e-3}, "lr (0.0003 in the checkpoint, 0.001 in config.json)"),
                                         ({"epochs": None}, "epochs (2 in the checkpoint, 8 in config.json)")])
def test_resume_refuses_a_config_json_edited_since_the_checkpoint(run4, tmp_path, capsys, edit, field):
    run = _copy(run4, tmp_path)
    path = os.path.join(run, "config.json")
    cfg = json.load(open(path))
    for k, v in edit.items():  # None: the field deleted, so it would silently take its default
        cfg.pop(k) if v is None else cfg.__setitem__(k, v)
    runfiles.atomic_write_json(path, cfg)
    assert cli_main(["train", "--out", run, "--resume", "--iters", "6", "--no-progress"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "differs from the settings checkpoint step 4 was trained under" in line and field in line
    assert "a resume may change only iters, chunk_iters, checkpoint_every" in line
    assert Checkpointer(os.path.join(run, "checkpoints")).all_steps() == [2, 4]  # nothing trained


def test_resume_accepts_run_control_changes_and_notes_a_checkpoint_without_a_recorded_config(run4, tmp_path,
                                                                                              capsys):
    from rl3jax.runs.checkpoint import MANIFEST, check_checkpoint_config

    run = _copy(run4, tmp_path)
    path = os.path.join(run, "config.json")
    runfiles.atomic_write_json(path, {**json.load(open(path)), "checkpoint_every": 4, "eval_every": 2})
    check_checkpoint_config(run)  # run-control fields may change
    manifest = os.path.join(run, "checkpoints", "4", MANIFEST)
    recorded = json.load(open(manifest))
    assert recorded["config"] == TrainConfig(iters=4, **T).to_dict()  # what the step was trained under
    runfiles.atomic_write_json(path, {**json.load(open(path)), "horizon": 8})
    runfiles.atomic_write_json(manifest, {k: v for k, v in recorded.items() if k != "config"})  # an older step
    check_checkpoint_config(run)  # resumes as before, with a note
    assert "records no config (written by an older rl3jax)" in capsys.readouterr().err


def test_resume_of_a_population_refuses_an_edited_population_json(tmp_path):
    from rl3jax.runs.checkpoint import MANIFEST, check_checkpoint_config

    base = TrainConfig(iters=4, **T)
    members = [{"index": i, "name": f"seed{i}-lr{lr:g}", "seed": i, "settings": {"lr": lr}}
               for i, lr in enumerate((1e-3, 3e-4))]
    pop = str(tmp_path / "pop")
    for m in members:  # what each member's newest step records: the member's own config
        step = os.path.join(pop, m["name"], "checkpoints", "4")
        os.makedirs(step)
        runfiles.atomic_write_json(os.path.join(step, MANIFEST), {
            "files": {}, "config": base.replace(seed=m["seed"], lr=m["settings"]["lr"]).to_dict()})
    spec = {"config": base.to_dict(), "seeds": 2, "sweep": {"lr": [1e-3, 3e-4]}, "members": members}
    runfiles.atomic_write_json(os.path.join(pop, "population.json"), spec)
    check_checkpoint_config(pop)  # as trained
    runfiles.atomic_write_json(os.path.join(pop, "population.json"),
                               {**spec, "config": {**spec["config"], "gae_lambda": 0.5, "iters": 6}})
    with pytest.raises(RunFolderError, match=r"population.json differs from the settings checkpoint step 4 was "
                                             r"trained under: gae_lambda \(0.3 in the checkpoint, 0.5 in "
                                             r"population.json\); a resume may change only iters"):
        check_checkpoint_config(pop)


# -------------------------------------------------------------------------------- 17.7 part of a run
@pytest.mark.parametrize("keep", [("checkpoints",), ("metrics.jsonl", "metrics.csv"), ("metrics.csv", ".lock")])
def test_a_folder_holding_part_of_a_run_is_not_empty(run4, tmp_path, capsys, keep):
    import shutil

    run = _copy(run4, tmp_path)
    for name in os.listdir(run):
        if name not in keep:
            (shutil.rmtree if os.path.isdir(os.path.join(run, name)) else os.remove)(os.path.join(run, name))
    before = sorted(os.listdir(run))
    assert cli_main(["train", *T_ARGV, "--seed", "5", "--out", run]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert run in line and all(k in line for k in keep), line
    assert sorted(os.listdir(run)) == before
    with pytest.raises(ValueError, match="holds"):  # the Python API too
        train(TrainConfig(iters=2, **T), run, quiet=True)


def test_a_lock_file_alone_is_no_part_of_a_run(tmp_path):
    open(tmp_path / ".lock", "w").close()  # a start killed before it wrote anything
    runfiles.check_new_run(str(tmp_path))
    assert runfiles.run_parts(str(tmp_path)) == []


# -------------------------------------------------------------------------------- 17.9 advice that works
def test_divergence_advice_is_a_command_that_is_accepted(tmp_path, capsys, monkeypatch):
    from rl3jax.cli import build_parser, check_train_args

    monkeypatch.setitem(config.FLOAT_RANGES, "ent_coef", (0.0, 1e30))  # to reach a divergence (see above)
    run = str(tmp_path / "nan")
    argv = ["train", *T_ARGV, "--iters", "2", "--set", "ent_coef=1e30", "--out", run]
    assert cli_main(argv) == 1
    line = _one_line_error(capsys.readouterr().err)
    new_out, lr = f"{run}-lr0.0001", "0.0001"  # a tenth of the laptop preset's 1e-3
    assert f"the same command with --out {new_out} and --set lr={lr}" in line
    advised = [a for a in argv if a != run] + ["--set", f"lr={lr}"]
    advised[advised.index("--out") + 1:advised.index("--out") + 1] = [new_out]
    assert check_train_args(build_parser().parse_args(advised)).lr == pytest.approx(1e-4)
    resume = ["train", "--out", run, "--resume", "--iters", "2", "--set", f"lr={lr}", "--no-progress"]
    assert cli_main(resume) == 2  # what the old advice led to: a resume may not change lr
    capsys.readouterr()


# -------------------------------------------------------------------------------- 17.6 / 17.10 output paths
def _outputs(tmp, target: str) -> list[list[str]]:
    """Every command with an output path, writing to ``target`` (the cheapest form of each)."""
    return [["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "4", "--json", target],
            ["baselines", "--env", "bandit", "--horizon", "4", "--episodes", "4", "--only", "random", "--json",
             target],
            ["bench", "--quick", "--only", "nothing", "--json", target],
            ["render", "--samples", "--out", target]]


@pytest.mark.parametrize("k", range(4))
def test_every_output_path_that_is_a_folder_is_one_line_before_any_work(tmp_path, capsys, k):
    argv = _outputs(tmp_path, str(tmp_path))[k]
    assert cli_main(argv) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"{tmp_path}: is a folder, expected a file path" in line


def test_every_gif_of_render_is_checked_before_any_work(tmp_path, capsys):
    os.makedirs(tmp_path / "ep-1.gif")  # the second of --episodes 2's outputs is a folder
    assert cli_main(["render", "--run", str(tmp_path / "run"), "--episodes", "2", "--out", str(tmp_path / "ep.gif")]) == 2
    assert f"{tmp_path / 'ep-1.gif'}: is a folder, expected a file path" in _one_line_error(capsys.readouterr().err)


def test_train_and_report_outputs_are_checked_before_any_work(run4, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for argv, needle in ((["train", *T_ARGV, "--out", str(afile)], "exists and is not a folder (a file)"),
                         (["report", run4, "--out", str(afile)], "exists and is not a folder (a file)"),
                         (["report", run4, "--out", str(tmp_path / ("x" * 300))], "longer than the 255 bytes"),
                         (["train", *T_ARGV, "--out", str(tmp_path / "/".join(["d" * 200] * 25))],
                          "the limit is 4096")):
        assert cli_main(argv) == 2, argv
        assert needle in _one_line_error(capsys.readouterr().err)
    assert afile.read_text() == "keep" and sorted(os.listdir(tmp_path)) == ["afile"]  # no nested empty folders


def test_read_only_folders_are_refused_before_any_work(run4, tmp_path, capsys, mounts):
    ro = _tmpfs(tmp_path / "ro", "ro,size=1m")
    mounts.append(ro)
    for argv in (["train", *T_ARGV, "--out", os.path.join(ro, "run")], ["report", run4, "--out", ro],
                 _outputs(tmp_path, os.path.join(ro, "x.json"))[0]):
        assert cli_main(argv) == 2, argv
        line = _one_line_error(capsys.readouterr().err)
        assert ro in line and ("the folder is not writable" in line or f"cannot be created, {ro} is not writable"
                               in line), line


def test_atomic_write_follows_symlinks_and_writes_through_devices_and_fifos(tmp_path):
    import threading

    from rl3jax.outputs import atomic_write, check_output_file

    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    check_output_file(str(link), "--json")
    atomic_write(str(link), "new")
    assert link.is_symlink() and target.read_text() == "new"  # the link stays a link, its target is written
    check_output_file(os.devnull, "--json")
    atomic_write(os.devnull, b"x" * 10)  # written through: /dev/null stays the system's sink
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    atomic_write(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and not os.path.isfile(fifo)
    if os.geteuid() == 0:  # the issue's `mknod N c 1 3`: a device node stays a device node
        node = str(tmp_path / "N")
        os.mknod(node, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))
        assert cli_main(["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "4",
                         "--json", node]) == 0
        assert __import__("stat").S_ISCHR(os.stat(node).st_mode)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".tmp")) == []


def test_a_full_disk_names_the_path_and_leaves_the_old_file_and_no_tmp(tmp_path, capsys, mounts):
    from rl3jax.outputs import WriteError, atomic_write

    small = _tmpfs(tmp_path / "small", "size=256k")
    mounts.append(small)
    out = os.path.join(small, "eval.json")
    with open(out, "w") as f:
        f.write("previous")
    _fill(small)
    with pytest.raises(WriteError, match=rf"^cannot write {out}: No space left on device$"):
        atomic_write(out, "x" * 100_000)
    assert open(out).read() == "previous" and [n for n in os.listdir(small) if n.endswith(".tmp")] == []
    assert cli_main(["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "4",
                     "--json", out]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert line == f"rl3jax eval: error: cannot write {out}: No space left on device"


def test_a_full_disk_during_a_real_save_is_one_line_with_its_cause_and_leaves_no_tmp(run4, tmp_path, capsys,
                                                                                     mounts):
    import shutil

    small = _tmpfs(tmp_path / "small", "size=8m")
    mounts.append(small)
    run = os.path.join(small, "run")
    shutil.copytree(run4, run)
    _fill(small, leave=96 * 1024)  # room for the metrics and config, not for a checkpoint
    assert cli_main(["train", "--out", run, "--resume", "--iters", "6", "--no-progress"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"rl3jax train: error: could not write checkpoint step 6 in {run}/checkpoints")
    assert line.endswith("No space left on device")
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["2", "4"]  # no temporary folder left


# -------------------------------------------------------------------------------- 17.12 a lost checksum file
def test_a_step_whose_checksum_file_was_deleted_is_refused_with_how_to_accept_it(run4, tmp_path, capsys):
    import subprocess
    import sys

    from rl3jax.runs.checkpoint import MANIFEST

    run = _copy(run4, tmp_path)
    step4 = os.path.join(run, "checkpoints", "4")
    os.remove(os.path.join(step4, MANIFEST))
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "checkpoint step 4" in line and f"lost its checksum file {MANIFEST}" in line
    command = line.split("seal it again: ")[1]
    assert command == f"python -m rl3jax.runs.checkpoint {step4}"
    p = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "sealed" in p.stdout, p.stderr
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 0  # accepted as it is
    capsys.readouterr()


def test_a_reader_of_a_run_in_training_takes_the_step_before_one_being_sealed(run4, tmp_path, capsys):
    from rl3jax.runs.checkpoint import MANIFEST

    run = _copy(run4, tmp_path)
    os.remove(os.path.join(run, "checkpoints", "4", MANIFEST))  # what a reader sees between orbax's rename and it
    lock = RunLock(run)  # this process plays the trainer
    try:
        assert Checkpointer(os.path.join(run, "checkpoints")).latest_step() == 2
        assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 0
    finally:
        lock.release()
    assert Checkpointer(os.path.join(run, "checkpoints")).latest_step() == 4  # no trainer: the step is refused
    assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 2
    assert "lost its checksum file" in _one_line_error(capsys.readouterr().err)


# -------------------------------------------------------------------------------- 17.11 memory
def test_the_memory_check_uses_the_address_space_limit(tmp_path):
    """The limit (``ulimit -v``, set in the child once JAX and rl3jax are loaded) leaves 1 GiB of address space,
    less than any other limit of a machine that runs this suite: a fixed ``ulimit -v 8000000`` left 5.9 GiB here,
    and a host with less memory available (a 7 GB CI machine running two test workers) was named instead."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = ["eval", "--policy", "random", "--env", "mdp", "--horizon", "10", "--episodes", "6000000"]
    child = ("import resource, runpy, sys, jax, rl3jax.cli, rl3jax.evaluate; jax.devices(); "
             "vm = int(next(ln for ln in open('/proc/self/status') if ln.startswith('VmSize')).split()[1]) * 1024; "
             "resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30)); "
             "sys.argv = ['rl3jax'] + sys.argv[1:]; runpy.run_module('rl3jax', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", child, *argv], cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stderr[-3000:]
    line = _one_line_error(p.stderr)
    assert "--episodes 6000000 needs at least 12.5 GiB" in line and "(ulimit -v)" in line


def test_an_allocation_failure_is_one_line(monkeypatch, capsys):
    import rl3jax.evaluate

    def oom(*a, **k):
        raise RuntimeError("INTERNAL: Error dispatching computation: Out of memory allocating 15060000388 bytes.")

    monkeypatch.setattr(rl3jax.evaluate, "evaluate", oom)
    assert cli_main(["eval", "--policy", "random", "--env", "bandit", "--horizon", "4", "--episodes", "4"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "out of memory (Out of memory allocating 15060000388 bytes.)" in line and "eval: --episodes" in line


# -------------------------------------------------------------------------------- readers of a run in training
@pytest.mark.slow  # a second process that imports JAX and trains: ~30 s idle
def test_eval_works_on_a_run_that_is_training_right_now(tmp_path, capsys):
    import subprocess
    import sys
    import time

    run = str(tmp_path / "live")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trainer = subprocess.Popen([sys.executable, "-m", "rl3jax", "train", *T_ARGV, "--iters", "100000", "--out", run],
                               cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while len(runfiles.finished_steps(os.path.join(run, "checkpoints"))) < 2 and time.time() < deadline:
            assert trainer.poll() is None, trainer.stderr.read()
            time.sleep(0.5)
        for _ in range(3):  # while it keeps saving and pruning
            assert runfiles.training_pid(run) == str(trainer.pid)
            assert cli_main(["eval", "--run", run, "--episodes", "4"]) == 0, capsys.readouterr().err
    finally:
        trainer.kill()
        trainer.wait()
    assert "over 4 test tasks" in capsys.readouterr().out
