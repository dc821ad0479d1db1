"""Orbax checkpoints of the full ``TrainState``, written atomically (temporary folder, then rename).

The typed PRNG key is stored as its raw key data, so a checkpoint is plain arrays. A kill during a save
leaves only an unfinished temporary folder, which orbax ignores: the last good step stays restorable.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the run's configuration."""


def _to_storable(state):
    return state.replace(key=jax.random.key_data(state.key))


def _from_storable(state):
    return state.replace(key=jax.random.wrap_key_data(state.key))


class Checkpointer:
    """Keeps the last ``keep`` checkpoints of a run under ``directory``."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_to_storable(state)),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, template, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure of ``template`` (a freshly initialised TrainState)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(template))
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                     meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many kinds; name the checkpoint and the cause
            raise CheckpointError(f"checkpoint step {step} in {self.directory} could not be restored "
                                  f"(corrupt, or written by a different configuration): "
                                  f"{type(e).__name__}: {str(e)[:300]}") from None
        return _from_storable(out.state), dict(out.meta)

    def close(self) -> None:
        self.manager.close()
