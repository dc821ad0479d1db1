"""A trained run, loaded from its folder: config, metrics, checkpoints and the restored training state.

    run = load_run("runs/mdp")               # config.json read and validated; nothing compiled yet
    rows = run.metrics()                     # metrics.jsonl rows
    trainer = run.trainer()                  # rl3jax.trainer.make_train(run.cfg) (variant= for an OOD test)
    state, meta = run.restore()              # the newest checkpoint (read-only: safe while the run trains), in
                                             # the training variant's shapes (an OOD variant's estimator may differ)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from rl3jax.config import TrainConfig
from rl3jax.distributed import init_sharded
from rl3jax.evaluate import evaluate
from rl3jax.memory import check_eval_memory
from rl3jax.runs.checkpoint import Checkpointer
from rl3jax.runs.runfiles import checkpoint_dir, finished_steps, is_member, read_metrics, read_run_config, run_dirs
from rl3jax.trainer import Trainer, TrainState, make_train


@dataclasses.dataclass(frozen=True)
class Run:
    """A single run's folder (also a population member's) and its validated config."""

    path: str
    cfg: TrainConfig

    @property
    def is_member(self) -> bool:
        """Whether the run is a member of a population (its parent folder holds population.json)."""
        return is_member(self.path)

    @property
    def latest_step(self) -> int | None:
        """The newest finished checkpoint step (a PPO iteration), or None."""
        return steps[-1] if (steps := finished_steps(checkpoint_dir(self.path))) else None

    def metrics(self) -> list[dict]:
        """The metrics.jsonl rows, one per PPO iteration (``runfiles.read_metrics``)."""
        return read_metrics(self.path)

    def trainer(self, variant: str | None = None) -> Trainer:
        """The run's ``Trainer`` (``make_train``, one device) on task ``variant`` (default: the run's; ValueError
        for one the family lacks). Builds the env and networks; compiles nothing."""
        return make_train(self.cfg if variant is None else self.cfg.replace(variant=variant))

    def template(self, trainer: Trainer) -> TrainState:
        """A freshly initialised state of ``trainer`` (seed of the run), in the training shardings of its mesh
        (``rl3jax.distributed.init_sharded``; None: one device): the structure ``restore`` fills."""
        return init_sharded(trainer.init, trainer.mesh, trainer.cfg.num_envs, seed=self.cfg.seed)

    def restore(self, trainer: Trainer | None = None, step: int | None = None,
                template: TrainState | None = None) -> tuple[TrainState, dict]:
        """(state, meta) of checkpoint ``step`` (default: the newest), read-only (safe while the run trains);
        ``template`` (default ``self.template(trainer)``) lets many runs of one setting share one. Errors:
        ``Checkpointer.restore``'s one-line ``CheckpointError``."""
        trainer = self.trainer() if trainer is None else trainer
        template = self.template(trainer) if template is None else template
        with contextlib.closing(Checkpointer(checkpoint_dir(self.path))) as ckpt:
            return ckpt.restore(template, step)

    def evaluate(self, episodes: int, greedy: bool = False, variant: str | None = None) -> tuple[dict, int]:
        """``rl3jax eval --run``: (``evaluate``'s result, iteration) of the newest checkpoint on ``episodes``
        held-out tasks of ``variant`` (default: the run's; ``greedy``: argmax actions). ValueError (one line),
        before any work, where they do not fit in memory."""
        trainer = self.trainer(variant)
        check_eval_memory(trainer.meta_env, episodes)
        state, _ = self.restore()  # in the training variant's shapes
        return evaluate(trainer.meta_env, "network", episodes, greedy=greedy, params=state.actor_params,
                        model=trainer.actor), int(state.iteration)


def load_run(path: str) -> Run:
    """The run in folder ``path`` (a single run or one population member). Errors: ``RunFolderError`` (one
    line) for a folder that is no run, a population folder (naming its member folders), or an unreadable or
    invalid config.json."""
    return Run(path, read_run_config(path, "use"))


def expand_runs(paths: list[str]) -> list[str]:
    """The run folders of ``paths``, a population folder standing for its members (in member order);
    duplicates dropped, first occurrence kept."""
    out: dict[str, str] = {}  # absolute path -> the path as first given
    for m in (m for p in paths for m in run_dirs(p)):
        out.setdefault(os.path.abspath(m), m)
    return list(out.values())
