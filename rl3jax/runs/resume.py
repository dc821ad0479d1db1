"""What a ``--resume`` may change and where it continues (``check_resume``, ``resume_settings``, ``nothing_to_do``)
and how to report a run (``report_hint``); ``runfiles.command`` and ``runfiles.intact`` say how to resume."""

from __future__ import annotations

import os

from rl3jax.config import TrainConfig
from rl3jax.envs import catalog
from rl3jax.envs.registry import BUILT_IN
from rl3jax.runs.checkpoint import RESUMABLE_CHANGES, check_checkpoint_config
from rl3jax.runs.runfiles import (
    CONFIG,
    POPULATION,
    command,
    is_member,
    is_population,
    latest_step,
    read_config,
    read_population,
)


def report_hint(out: str, env: str) -> str:
    """How to report run folder ``out`` of family ``env``: the ``rl3jax report`` command, or for a family
    registered from Python (unknown to the command line) the ``make_report`` call to make there."""
    if env in BUILT_IN or catalog.is_gymnax(env):
        return command("report", out)
    return f"from Python, after registering {env!r}: rl3jax.report.make_report([{out!r}], {os.path.join(out, 'report')!r})"


def check_resume(old: TrainConfig, cfg: TrainConfig, source: str) -> None:
    """``ValueError`` (one line) for a ``--resume`` that would make the run differ from a straight run of
    ``cfg.iters``: a change from the run's ``old`` config outside ``RESUMABLE_CHANGES``, or of ``iters`` under
    the linear entropy schedule (it decays to 0 at the ``iters`` the run started with)."""
    diff = {k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v} - set(RESUMABLE_CHANGES)
    if diff:
        raise ValueError(f"--resume with settings that differ from the run's {source}: {sorted(diff)} "
                         f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    if cfg.iters != old.iters and old.ent_schedule != "constant":
        raise ValueError(f"--resume --iters {cfg.iters}: this run's ent_schedule={old.ent_schedule} decays over "
                         f"its iters={old.iters}, fixed when it started, so it cannot be extended or shortened "
                         f"(a resumed run must equal a straight one); resume with --iters {old.iters}, or "
                         f"start a new run with --iters {cfg.iters} and another --out")


def resume_settings(cfg: TrainConfig, out: str, seeds: int = 1, sweep: dict | None = None):
    """Checks a ``--resume`` of folder ``out`` with ``cfg`` (``check_resume``, ``check_checkpoint_config``);
    returns the run's (seeds, sweep). ``ValueError`` (one line) for changed settings, ``--seeds`` / ``--sweep``
    that differ from the population's (or a single run's), a population member's folder (a population resumes
    as one unit); ``RunFolderError`` for a config file edited since its checkpoint."""
    if is_member(out):
        parent = os.path.dirname(os.path.abspath(out))
        raise ValueError(f"{out} is a member of the population in {parent}, which saves and resumes as one unit: "
                         f"{command('train', '--out', parent, '--resume')}")
    check_checkpoint_config(out)
    if not is_population(out):
        check_resume(read_config(out), cfg, CONFIG)
        if seeds != 1 or sweep:
            raise ValueError(f"--resume of the single run in {out} with --seeds/--sweep (they start a population: "
                             "choose another --out)")
        return seeds, sweep
    spec = read_population(out)
    check_resume(TrainConfig.from_dict(spec["config"]), cfg, POPULATION)
    if (seeds != 1 or sweep) and (seeds != spec["seeds"] or (sweep or {}) != spec["sweep"]):
        raise ValueError(f"--resume with --seeds/--sweep that differ from the run's (seeds {spec['seeds']}, "
                         f"sweep {spec['sweep']})")
    return spec["seeds"], spec["sweep"]


def nothing_to_do(cfg: TrainConfig, out: str, seeds: int = 1, sweep: dict | None = None) -> str | None:
    """The one line for a ``--resume`` of ``out`` whose checkpoint is already at ``cfg.iters``, else None;
    after ``resume_settings``'s checks (and errors). Reads the folder only: no JAX work."""
    resume_settings(cfg, out, seeds, sweep)
    step = latest_step(out)
    if step is None or step < cfg.iters:
        return None
    how = (f"pass --iters M (> {step}) to continue" if cfg.ent_schedule == "constant" else
           f"its ent_schedule={cfg.ent_schedule} ends at iteration {step}, so it cannot be continued")
    return f"nothing to do: {out} is at iteration {step} of {cfg.iters}; {how}"
