"""Orbax checkpoints of the full ``TrainState`` (the PRNG key as raw key data), written atomically (a kill leaves
only a temporary folder orbax ignores) by the trainer alone (``write=True``; readers open orbax read-only), each
finished step sealed with a manifest of every file's SHA-256 and size and the config trained under (``MANIFEST``),
verified before a restore. Items: ``state`` and ``meta`` (JSON: iteration, env_steps, return_mean, a member's
``member``, ``format_version``; none: version 1).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from rl3jax.config import RUN_CONTROL, TrainConfig
from rl3jax.outputs import atomic_write_json
from rl3jax.runs.runfiles import (  # the errors are defined without JAX (the CLI sorts them)
    CONFIG,
    MANIFEST,
    POPULATION,
    CheckpointError,
    CheckpointWriteError,
    RunFolderError,
    _read_json,
    checkpoint_dir,
    finished_steps,
    is_population,
    read_config,
    read_population,
    training_pid,
)
from rl3jax.trainer import all_finite, from_v1, v1_layout

#: fields that may differ between a run and its resumption: its length and the run-control fields
RESUMABLE_CHANGES = ("iters", *RUN_CONTROL)

#: the checkpoint layout written (``meta["format_version"]``; none: 1). 2: Adam states and ``TrainState.hparams``;
#: 1: lr and weight decay inside ``optax.inject_hyperparams`` states (read through ``trainer.from_v1``)
FORMAT_VERSION = 2
#: the versions this version reads
READABLE_VERSIONS = (1, 2)


class CorruptCheckpointError(CheckpointError):
    """A finished checkpoint step's files do not match its checksum manifest."""


def _to_storable(state):
    return state.replace(key=jax.random.key_data(state.key))


#: the OS errors a failed save is named by (orbax and TensorStore bury them deep in their messages)
_OS_REASON = re.compile(r"No space left on device|Read-only file system|Permission denied|Disk quota exceeded|"
                        r"File too large|Input/output error|Too many open files|File name too long")


def _os_reason(e: BaseException) -> str | None:
    """The OS error behind ``e``: searched in its whole message and the exceptions it was raised from."""
    texts = []
    while e is not None and len(texts) < 20:
        texts.append(f"{getattr(e, 'strerror', None) or ''} {e}")
        e = e.__cause__ or e.__context__
    m = _OS_REASON.search(" ".join(texts))
    return m.group(0) if m else None


def _one_line(e: BaseException, limit: int = 240) -> str:
    """``Type: first line of the message`` (orbax/TensorStore messages run over many lines)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[0] if lines else ""
    if len(msg) > limit:  # keep both ends: TensorStore puts the OS error (e.g. "No space left") last
        msg = msg[: limit // 2] + " … " + msg[-(limit // 2):]
    return f"{type(e).__name__}: {msg}"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(step_dir: str, config: dict | None = None) -> dict:
    """Records ``{relative path: {"sha256", "bytes"}}`` of every file under ``step_dir`` in its manifest, with
    ``config`` (the ``TrainConfig.to_dict()`` the step was trained under); returns the files."""
    rels = sorted(os.path.relpath(os.path.join(root, name), step_dir)
                  for root, _, names in os.walk(step_dir) for name in names)
    files = {rel: {"sha256": _sha256(os.path.join(step_dir, rel)), "bytes": os.path.getsize(os.path.join(step_dir, rel))}
             for rel in rels if rel != MANIFEST and not rel.endswith(".tmp")}
    atomic_write_json(os.path.join(step_dir, MANIFEST), {"version": 1, "files": files,
                                                          **({"config": config} if config else {})})
    return files


def check_checkpoint_config(out: str) -> None:
    """At a resume of run (or population) folder ``out``: ``RunFolderError`` naming the fields unless the
    newest checkpoint of each run was trained under the settings its folder now holds (config.json, or
    population.json's base config with the member's seed and swept values), up to ``RESUMABLE_CHANGES``
    (``iters`` only under a constant ``ent_schedule``; a field missing on one side counts with its default). A
    step that records no config (written by an older rl3jax) is resumed as before, with a one-line note."""
    if is_population(out):
        spec = read_population(out)
        base, source = TrainConfig.from_dict(spec["config"]), POPULATION
        pairs = [(os.path.join(out, m["name"]), base.replace(seed=m["seed"], **m["settings"]))
                 for m in spec["members"]]
    else:
        pairs, source = [(out, read_config(out))], CONFIG
    for run_dir, cfg in pairs:
        steps = finished_steps(checkpoint_dir(run_dir))
        if not steps:
            continue
        manifest = os.path.join(checkpoint_dir(run_dir), str(steps[-1]), MANIFEST)
        recorded = _read_json(manifest) if os.path.isfile(manifest) else None
        recorded = recorded.get("config") if isinstance(recorded, dict) else None
        if recorded is None:
            print(f"note: checkpoint step {steps[-1]} in {run_dir} records no config (written by an older "
                  f"rl3jax); resuming with its {source} unchecked", file=sys.stderr)
            continue
        try:
            old = TrainConfig.from_dict(recorded).to_dict()
        except (ValueError, TypeError):
            old = recorded
        now, free = cfg.to_dict(), set(RUN_CONTROL) | ({"iters"} if old.get("ent_schedule") == "constant" else set())
        diff = [f"{k} ({old.get(k)!r} in the checkpoint, {now.get(k)!r} in {source})"
                for k in sorted(set(old) | set(now)) if k not in free and old.get(k) != now.get(k)]
        if diff:
            raise RunFolderError(f"--resume: {os.path.join(out, source)} differs from the settings checkpoint step "
                                 f"{steps[-1]} was trained under: {'; '.join(diff)}; a resume may change only "
                                 f"{', '.join(RESUMABLE_CHANGES)} (put the file back, or start a new run with "
                                 "another --out)")


@contextlib.contextmanager
def _absl_level(level: int):
    """absl's (orbax's) log level is ``level`` meanwhile."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(old)


@contextlib.contextmanager
def _stderr_held():
    """Holds what is written to file descriptor 2 meanwhile (orbax's many-line tracebacks of a failed save): the
    caller appends to the yielded list to discard it; otherwise it is written out afterwards."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to hold
        yield []
        return
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    discard: list = []
    try:
        yield discard
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if not discard:
            held.seek(0)
            os.write(2, held.read())
        held.close()


class Checkpointer:
    """The checkpoints of one run under ``directory`` (``checkpoints/``), one step per saved iteration.
    ``write=True`` (the trainer only) saves, ``retain``s and cleans up; else read-only. Errors: one-line
    ``CheckpointError``s naming the folder (``CorruptCheckpointError``, ``CheckpointWriteError``)."""

    def __init__(self, directory: str, keep: int = 3, write: bool = False, config: dict | None = None):
        self.directory = os.path.abspath(directory)
        self.write, self.keep, self.config = write, keep, config  # config: recorded in each step's manifest
        # pruning is ``retain``'s: a population prunes a step only once every member has a newer one
        options = ocp.CheckpointManagerOptions(max_to_keep=None, create=write, read_only=not write,
                                               save_interval_steps=int(write), cleanup_tmp_directories=write,
                                               enable_async_checkpointing=False)
        try:
            with _absl_level(logging.ERROR):  # read-only managers log a warning on every open
                self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        except OSError as e:
            raise CheckpointError(f"cannot open checkpoints in {self.directory}: {_one_line(e)}") from None

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state, meta: dict) -> None:
        """Writes ``state`` (any sharding) as step ``step`` with the JSON ``meta``, then its manifest.
        ``CheckpointError`` for a NaN or infinity; one-line ``CheckpointWriteError`` for an OS error (a full
        disk); the previous steps stay intact."""
        if not self.write:
            raise CheckpointError(f"{self.directory} was opened read-only")
        if not bool(all_finite(state.replace(key=jnp.zeros(())))):
            raise CheckpointError(f"refusing to write a non-finite state as checkpoint step {step} in "
                                  f"{self.directory}")
        try:  # orbax logs each worker thread's failure with its traceback
            with _stderr_held() as discard, _absl_level(logging.CRITICAL):
                try:
                    self.manager.save(step, args=ocp.args.Composite(
                        state=ocp.args.StandardSave(_to_storable(state)),
                        meta=ocp.args.JsonSave({**meta, "format_version": FORMAT_VERSION, "sealed": True})),
                        force=True)
                    self.manager.wait_until_finished()
                except BaseException:
                    discard.append(True)
                    time.sleep(1.0)  # TensorStore's writes still in flight fail into orbax's closed event loop
                    for tmp in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
                        shutil.rmtree(tmp, ignore_errors=True)  # a failed save leaves nothing behind
                    raise
            if jax.process_index() == 0:
                write_manifest(self.step_dir(step), self.config)
        except Exception as e:  # orbax wraps OS errors (ENOSPC, EROFS, ...) in many kinds
            raise CheckpointWriteError(f"could not write checkpoint step {step} in {self.directory}: "
                                       f"{_os_reason(e) or _one_line(e)}") from None

    def retain(self, newest: int) -> None:
        """Keeps the newest ``keep`` steps up to ``newest`` and deletes the others: the older ones, and any newer
        one (a population save that did not finish for every member). Writers only."""
        steps = self.all_steps()
        kept = [s for s in steps if s <= newest][-self.keep:]
        for s in steps:
            if s not in kept:
                self.manager.delete(s)

    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self.manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest step; for a reader of a run that is training right now, the one before a newest step
        still being sealed (finished by orbax, its manifest not yet written)."""
        steps = self.all_steps()
        if (not self.write and len(steps) > 1 and not os.path.exists(os.path.join(self.step_dir(steps[-1]), MANIFEST))
                and training_pid(os.path.dirname(self.directory)) is not None):
            return steps[-2]
        return steps[-1] if steps else None

    def verify(self, step: int) -> bool:
        """Checks every file listed in step ``step``'s manifest (False: it has none). Raises
        ``CorruptCheckpointError`` naming the first missing, resized or altered file (or an unreadable manifest)
        and the other steps available."""
        step_dir, path = self.step_dir(step), os.path.join(self.step_dir(step), MANIFEST)
        older = [s for s in self.all_steps() if s != step]
        hint = (f"; other steps: {', '.join(map(str, older))} (move {step_dir} out of {self.directory} to use the "
                "newest of them)" if older else "; no other step is available")
        if not os.path.exists(path):
            return False
        try:
            files = _read_json(path)["files"]
        except (RuntimeError, KeyError, TypeError) as e:
            raise CorruptCheckpointError(f"checkpoint step {step}: {path} is unreadable ({_one_line(e)}){hint}") from None
        for rel, want in sorted(files.items()):
            full = os.path.join(step_dir, rel)
            size = os.path.getsize(full) if os.path.isfile(full) else None
            problem = ("is missing" if size is None else
                       f"is truncated or resized ({size} bytes, {want['bytes']} written)" if size != want["bytes"] else
                       "is corrupt (SHA-256 differs from the one recorded at save)" if _sha256(full) != want["sha256"]
                       else None)
            if problem:
                raise CorruptCheckpointError(f"checkpoint step {step}: {full} {problem}{hint}")
        return True

    def meta(self, step: int) -> dict:
        """The meta item of step ``step``; ``CheckpointError`` for an unreadable one."""
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as e:  # orbax raises many kinds
            raise CheckpointError(f"checkpoint step {step} in {self.directory} has no readable meta item: "
                                  f"{_one_line(e)}") from None
        return meta if isinstance(meta, dict) else {}

    def restore(self, template, step: int | None = None) -> tuple[Any, dict]:
        """(state, meta) of step ``step`` (default: the latest), verified, in the structure and shardings of
        ``template`` (a fresh TrainState of the run's config). One-line ``CheckpointError`` naming the step and
        folder: none, an unknown format version, corrupt or unreadable, another structure, NaN or inf."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        sealed = self.verify(step)
        meta = self.meta(step)
        if not sealed:
            if meta.get("sealed"):
                raise CorruptCheckpointError(
                    f"checkpoint step {step} in {self.directory} has lost its checksum file {MANIFEST} (deleted, or a "
                    "kill during its save), so its files cannot be verified; to accept the step as it is, seal it "
                    f"again: python -m rl3jax.runs.checkpoint {self.step_dir(step)}")
            print(f"note: checkpoint step {step} in {self.directory} has no checksums (written by an older rl3jax): "
                  "restored unverified", file=sys.stderr)
        version = meta.get("format_version", 1)
        if version not in READABLE_VERSIONS:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} has format version {version!r}; this "
                                  f"rl3jax reads versions {', '.join(map(str, READABLE_VERSIONS))} (written by a "
                                  "newer rl3jax? use that version)")
        layout = v1_layout(template) if version == 1 else template
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(layout))
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                     meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many kinds; name the checkpoint and the cause
            raise CheckpointError(f"checkpoint step {step} (format version {version}) in {self.directory} could not "
                                  "be restored (corrupt, or its state structure differs from this configuration's): "
                                  f"{_one_line(e)}") from None
        # e.g. written by a version that did not stop at a divergence; the key (integers) left out, as in save: one program
        if not bool(all_finite(out.state.replace(key=jnp.zeros(())))):
            raise CheckpointError(f"checkpoint step {step} in {self.directory} holds NaN or infinite values "
                                  "(the run had diverged); it cannot be evaluated or resumed")
        state = out.state.replace(key=jax.random.wrap_key_data(out.state.key))
        return (from_v1(state) if version == 1 else state), dict(out.meta)

    def close(self) -> None:
        self.manager.close()


if __name__ == "__main__":  # python -m rl3jax.runs.checkpoint STEP_DIR: accept a step whose checksum file was lost
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python -m rl3jax.runs.checkpoint STEP_DIR (a checkpoint step folder to seal as it is)")
    print(f"sealed {len(write_manifest(sys.argv[1]))} files of {sys.argv[1]} as they are")
