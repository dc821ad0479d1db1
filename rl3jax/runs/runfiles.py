"""The files of a run folder, read and written without JAX (so the CLI checks a folder before JAX starts).

A single run's folder (``rl3jax train --out RUN``)::

    RUN/config.json        the TrainConfig (``read_config``)
    RUN/metrics.jsonl      one row per PPO iteration (``read_metrics``; written by ``rl3jax.runs.metrics.MetricsLog``)
    RUN/metrics.csv        the same rows as CSV
    RUN/checkpoints/<it>/  orbax checkpoints of the TrainState at iteration <it> (``rl3jax.runs.checkpoint``)
    RUN/.lock              held by the one process that trains in the folder (``RunLock``)

A population's folder (``rl3jax.runs.population``) holds ``population.json``, the base ``config.json``,
``checkpoint.json`` (``COMMITTED``) and one ordinary run folder per member (``run_dirs``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys

from rl3jax.config import TrainConfig, build, preset
from rl3jax.envs.catalog import FAMILIES, check_variant, is_grid
from rl3jax.outputs import atomic_write_json as atomic_write_json  # re-exported: run files are written with it
from rl3jax.outputs import check_output_dir

CONFIG = "config.json"
POPULATION = "population.json"
#: in a population folder: {"step": N}, written (atomically) after every member has saved checkpoint step N
COMMITTED = "checkpoint.json"
#: a checkpoint step's manifest (every file's SHA-256 and size, the config it was trained under), written last (``rl3jax.runs.checkpoint``)
MANIFEST = "rl3jax_manifest.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".lock"


class RunFolderError(RuntimeError):
    """A run folder, or a file in it, is missing, unreadable or inconsistent (one line naming the path)."""


class RunLockedError(RunFolderError):
    """Another process is training in the run folder (it holds the folder's lock)."""


class CheckpointError(RunFolderError):
    """A checkpoint is missing, corrupt, of an unknown format version, or of another configuration (raised by
    ``rl3jax.runs.checkpoint``; defined here so the CLI sorts it without JAX)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (e.g. a full or read-only disk); earlier steps are intact."""


def in_use_message(path: str, pid: str) -> str:
    """The one-line refusal to write run folder ``path`` while process ``pid`` trains in it."""
    return f"run folder {path} is in use by another training process (PID {pid}); wait for it to finish or stop it first"


# ------------------------------------------------------------------------------------------ what a folder holds
def holds_run(path: str) -> bool:
    """Whether ``path`` holds a run or a population (its config.json or population.json exists)."""
    return os.path.exists(os.path.join(path, CONFIG)) or is_population(path)


def run_parts(path: str) -> list[str]:
    """What in folder ``path`` is part of a run: config.json, population.json, metrics files, a non-empty
    checkpoints/ or tb/, member folders holding any of these, and a .lock beside any of them (alone it holds
    nothing). [] for an empty or new folder."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    files = (CONFIG, POPULATION, METRICS_JSONL, METRICS_CSV)
    parts = [n for n in names if n in files]
    for n in names:
        full = os.path.join(path, n)
        if os.path.isdir(full) and (os.listdir(full) if n in (CHECKPOINTS, "tb") else  # a member folder
                                    any(os.path.exists(os.path.join(full, f)) for f in (*files, CHECKPOINTS))):
            parts.append(n + "/")
    return parts + ([LOCK_FILE] if parts and LOCK_FILE in names else [])


def check_new_run(path: str) -> None:
    """``ValueError`` (one line) unless ``path`` holds no run and no part of one (``run_parts``)."""
    if holds_run(path):
        pop = os.path.dirname(os.path.abspath(path))
        if is_member(path):
            raise ValueError(f"run folder {path} is a member of the population in {pop}; resume the population "
                             f"(--out {pop} --resume) or choose another --out")
        raise ValueError(f"run folder {path} already holds a run; pass --resume to continue it (through make: "
                         "RESUME=1) or choose another --out")
    parts = run_parts(path)
    if parts:
        raise ValueError(f"run folder {path} holds part of a run ({', '.join(parts)}) but no {CONFIG}, so it "
                             "can be neither resumed nor reused; choose another --out (or move those away)")


def check_train_folder(out: str, resume: bool) -> None:
    """The checks of ``train --out`` (no JAX): a folder that can be written (``check_output_dir``), not in use
    by another trainer (``RunLockedError``), holding a run for ``resume`` and nothing of one otherwise
    (``check_new_run``). ``OutputError`` / ``ValueError`` / ``RunFolderError``, one line."""
    check_output_dir(out, "--out")
    pid = training_pid(out)
    if pid is not None:
        raise RunLockedError(in_use_message(out, pid))
    if not resume:
        check_new_run(out)
    elif not holds_run(out):
        found = run_parts(out)
        raise RunFolderError(f"--resume: {out} holds no run (no {CONFIG}"
                             f"{'; found ' + ', '.join(found) if found else ''}); drop --resume to start one"
                             f"{' in another --out' if found else ''}")


def train_config(out: str, resume: bool, preset_name: str | None, given: dict) -> TrainConfig:
    """The config of ``rl3jax train`` (no JAX): ``config.build(given, preset_name)``, or with ``resume`` the
    run's config.json under ``given`` (a preset must agree with the run; ``iters`` may not fall below the
    newest checkpoint). ``ValueError`` / ``RunFolderError``, one line."""
    if not resume:
        return build(given, preset_name)
    stored = read_config(out)
    if preset_name:  # honoured where it agrees with the run (e.g. repeating the command that started it)
        differ = {k: v for k, v in preset(preset_name, given).items() if k not in given and getattr(stored, k) != v}
        if differ:
            k = sorted(differ)[0]
            raise ValueError(f"--resume --preset {preset_name}: the preset sets {k}={differ[k]!r} but the run in "
                             f"{out} has {k}={getattr(stored, k)!r} (differing: {', '.join(sorted(differ))}); a "
                             "resumed run keeps its settings: drop --preset, or start a new run with another --out")
    try:
        cfg = stored.replace(**given)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--resume of {os.path.join(out, CONFIG)}: {e}") from None
    done = latest_step(out)
    if done is not None and cfg.iters < done:
        raise ValueError(f"--iters {cfg.iters} is below the run's newest checkpoint (iteration {done}); --iters is "
                         f"the total to reach, so pass --iters {done} or more")
    return cfg


def is_population(path: str) -> bool:
    """Whether ``path`` is a population's folder (it holds population.json)."""
    return os.path.exists(os.path.join(path, POPULATION))


def is_member(run_dir: str) -> bool:
    """Whether ``run_dir`` is a member folder of a population (its parent holds population.json)."""
    return is_population(os.path.dirname(os.path.abspath(run_dir)))


def read_config(run_dir: str) -> TrainConfig:
    """A run folder's config.json as a (validated) TrainConfig. ``RunFolderError`` (one line naming the folder or
    file) for a folder without config.json, an unreadable or non-JSON file, or fields unknown or invalid."""
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise RunFolderError(f"{run_dir} is not a run folder (no {CONFIG})")
    try:
        return TrainConfig.from_dict(_read_json(path))
    except (ValueError, TypeError) as e:
        raise RunFolderError(f"{path}: {e}") from None


def read_run_config(path: str, verb: str) -> TrainConfig:
    """The config of the single run (or population member) in ``path``. ``RunFolderError`` (one line) for a
    folder that is no run, or a population's (naming its member folders to ``verb`` instead, e.g. "render")."""
    if is_population(path):
        raise RunFolderError(f"{path} holds a population (--seeds/--sweep); {verb} one member folder: "
                             f"{', '.join(run_dirs(path))}")
    return read_config(path)


def check_evaluable(run_dir: str) -> None:
    """``RunFolderError`` (one line naming the folder) unless ``run_dir`` holds a trained run: config.json,
    metrics.jsonl and a finished checkpoint."""
    if not all(os.path.exists(os.path.join(run_dir, f)) for f in (CONFIG, METRICS_JSONL)):
        raise RunFolderError(f"{run_dir} is not a run folder (it needs {CONFIG} and {METRICS_JSONL} from "
                             "`rl3jax train`)")
    if latest_step(run_dir) is None:
        raise RunFolderError(f"{run_dir} holds no checkpoint (nothing to evaluate)")


#: the grid family ``render --samples`` draws without a run
RENDER_DEFAULT_FAMILY = "grid13"


def check_render(run: str | None, variant: str | None = None, episodes: int = 1, samples: bool = False) -> str:
    """The checks of ``rl3jax render`` (no JAX); returns the grid family to draw (``samples`` without a run:
    ``RENDER_DEFAULT_FAMILY``). ValueError (one line) for ``samples`` with a ``variant`` or ``episodes``,
    neither, a family that is not a grid, or an unknown ``variant``; ``RunFolderError`` for a bad ``run``."""
    if samples and (variant is not None or episodes != 1):
        raise ValueError("--samples draws every variant of the family; --variant and --episodes apply to a run's GIF")
    if not samples and not run:
        raise ValueError("render needs --run DIR (or --samples)")
    if not run:
        return RENDER_DEFAULT_FAMILY
    env = read_run_config(run, "render").env
    if not is_grid(env):
        grids = ", ".join(n for n in FAMILIES if is_grid(n))
        raise ValueError(f"render draws grid tasks ({grids}); run {run} trained on {env!r}")
    if variant is not None:
        check_variant(env, variant)
    return env


def read_population(path: str) -> dict:
    """population.json of a population folder: {"config": base config dict, "seeds": int, "sweep": {name:
    [values]}, "members": [{"index", "name", "seed", "settings"}]}. ``RunFolderError`` for none or unreadable."""
    spec = os.path.join(path, POPULATION)
    if not os.path.exists(spec):
        raise RunFolderError(f"{path} holds no population run (no {POPULATION})")
    return _read_json(spec)


def _read_json(path: str):
    """The JSON in ``path``; ``RunFolderError`` naming the file for an unreadable or invalid one."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} could not be read: {e}") from None


def run_dirs(path: str) -> list[str]:
    """The single-run folders of ``path``: a population's members (in member order; ``read_population``'s
    errors), else ``[path]``."""
    return [os.path.join(path, m["name"]) for m in read_population(path)["members"]] if is_population(path) \
        else [path]


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINTS)


def finished_steps(directory: str) -> list[int]:
    """The finished steps under a checkpoint folder, read from the folder names alone (orbax renames a step's
    temporary folder to its plain number only once the step is complete); [] when there is no folder."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def latest_step(path: str) -> int | None:
    """The checkpoint step a ``--resume`` of ``path`` continues from, None if there is none: a single run's
    newest finished step; a population's ``COMMITTED`` step (written once every member has saved it), or, without
    that file (a population of an older rl3jax), the newest step that every member has finished and sealed."""
    if not is_population(path):
        steps = finished_steps(checkpoint_dir(path))
        return steps[-1] if steps else None
    if os.path.exists(os.path.join(path, COMMITTED)):
        step = _read_json(os.path.join(path, COMMITTED)).get("step")
        if not isinstance(step, int):
            raise RunFolderError(f"{os.path.join(path, COMMITTED)} names no integer step")
        return step
    common = set.intersection(*[{s for s in finished_steps(checkpoint_dir(d))
                                 if os.path.exists(os.path.join(checkpoint_dir(d), str(s), MANIFEST))}
                                for d in run_dirs(path)])
    return max(common) if common else None


# ------------------------------------------------------------------------------------------ metrics
def read_metrics(path: str) -> list[dict]:
    """The rows of a metrics.jsonl file, or of ``path/metrics.jsonl`` for a run folder (one dict per PPO
    iteration, ``rl3jax.runs.driver``'s fields). A torn final line (no newline: an append cut short) is dropped
    with a note on stderr; any other bad line raises ``RunFolderError`` naming the file and the line."""
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_JSONL)
    with open(path, newline="") as f:
        lines = f.read().split("\n")
    rows = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("iteration"), int):
                raise ValueError("not a metrics row (no integer 'iteration')")
        except ValueError as e:
            if k == len(lines) - 1:  # the last line has no newline: a torn append
                print(f"note: dropped the torn last line {k + 1} of {path} (an interrupted write)", file=sys.stderr)
                break
            raise RunFolderError(f"{path} line {k + 1} is not a metrics row ({str(e).splitlines()[0]})") from None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ one writer
class RunLock:
    """An exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` held by the one process that writes the folder; a
    second writer gets ``RunLockedError`` naming the holder's PID. The file stays at ``release()`` (removing it
    would let two processes lock two files) unless this lock created it and it is alone in the folder."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.created = not os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(self.fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise RunLockedError(in_use_message(run_dir, pid)) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        if self.created and os.listdir(os.path.dirname(self.path)) == [LOCK_FILE]:
            os.remove(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def lock_run(run_dir: str) -> list[RunLock]:
    """Locks ``run_dir`` (and its population folder, for a member folder of one)."""
    locks = [RunLock(run_dir)]
    if is_member(run_dir):
        try:
            locks.append(RunLock(os.path.dirname(os.path.abspath(run_dir))))
        except RunLockedError:
            release_locks(locks)
            raise
    return locks


def release_locks(locks: list[RunLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def training_pid(run_dir: str) -> str | None:
    """The PID in ``run_dir/.lock`` while a training process holds that lock (``RunLock``), else None.
    Probes with a shared, non-blocking ``flock`` that is released at once; creates nothing."""
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError:
        return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def command(*args: str) -> str:
    """The shell command ``rl3jax ARGS`` as printed in messages: the ``rl3jax`` script beside this Python (e.g.
    ``.venv/bin/rl3jax``, which need not be on PATH), else ``python -m rl3jax``."""
    script = os.path.join(os.path.dirname(sys.executable), "rl3jax")
    exe = [os.path.relpath(script) if not os.path.relpath(script).startswith("..") else script] \
        if os.path.exists(script) else [sys.executable, "-m", "rl3jax"]
    return shlex.join([*exe, *args])


def intact(out: str) -> str:
    """What a stopped ``rl3jax train --out out`` left, said truthfully: the checkpoint a ``--resume`` continues
    from (``latest_step``), a run without one, or nothing of a run."""
    step, again = latest_step(out), command("train", "--out", out, "--resume")
    if step is not None:
        return f"checkpoint step {step} is intact; resume with: {again}"
    if holds_run(out):
        return f"there is no checkpoint yet (stopped before the first checkpoint): {again} starts the run again from iteration 0"
    return "nothing of the run was written yet: start it again with the same command"
