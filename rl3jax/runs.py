"""A trained run, loaded from its folder: config, metrics, checkpoints and the restored training state.

    run = load_run("runs/mdp")               # config.json read and validated; nothing compiled yet
    rows = run.metrics()                     # metrics.jsonl rows
    trainer = run.trainer()                  # rl3jax.train.make_train(run.cfg) (variant= for an OOD test)
    state, meta = run.restore(trainer)       # the newest checkpoint (read-only: safe while the run trains)

The files themselves (names, config, metrics, population.json, the lock) are ``rl3jax.runfiles``, which needs
no JAX; this module adds what does (the trainer and the checkpointed ``TrainState``). Used by ``rl3jax eval``,
``render`` and ``report``; ``rl3jax.driver`` writes the folders. What a training session writes and says in a
folder is here too, for the driver and the CLI: its metrics logs (``MetricsLog``, ``ExternalLoggers``), what a
``--resume`` may change and where it continues (``resume_settings``, ``nothing_to_do``, ``intact``), and how a
signal stops it (``StopSignals``, ``TrainingInterrupted``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shlex
import signal
import sys
import threading

from rl3jax.checkpoint import RESUMABLE_CHANGES, Checkpointer, check_checkpoint_config
from rl3jax.config import TrainConfig
from rl3jax.distributed import init_sharded
from rl3jax.envs import catalog
from rl3jax.envs.registry import BUILT_IN
from rl3jax.evaluate import evaluate
from rl3jax.memory import check_eval_memory
from rl3jax.outputs import atomic_write_text
from rl3jax.runfiles import (
    CONFIG,
    METRICS_CSV,
    METRICS_JSONL,
    POPULATION,
    checkpoint_dir,
    finished_steps,
    is_member,
    is_population,
    latest_step,
    read_config,
    read_metrics,
    read_population,
    read_run_config,
    run_dirs,
)
from rl3jax.train import Trainer, TrainState, make_train


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
    def steps(self) -> list[int]:
        """The finished checkpoint steps (PPO iterations), ascending."""
        return finished_steps(checkpoint_dir(self.path))

    @property
    def latest_step(self) -> int | None:
        """The newest finished checkpoint step, or None."""
        steps = self.steps
        return steps[-1] if steps else None

    def metrics(self) -> list[dict]:
        """The metrics.jsonl rows, one per PPO iteration (``rl3jax.runfiles.read_metrics``)."""
        return read_metrics(self.path)

    def trainer(self, variant: str | None = None, mesh=None) -> Trainer:
        """The run's ``Trainer`` (``make_train``), on task ``variant`` (default: the run's; ValueError for one
        the family lacks) and ``mesh`` (None: one device). Builds the env and networks; compiles nothing."""
        cfg = self.cfg if variant is None else self.cfg.replace(variant=variant)
        return make_train(cfg, mesh)

    def template(self, trainer: Trainer) -> TrainState:
        """A freshly initialised state of ``trainer`` (seed of the run), in the training shardings of its mesh
        (``rl3jax.distributed.init_sharded``; None: one device): the structure ``restore`` fills."""
        return init_sharded(trainer.init, trainer.mesh, trainer.cfg.num_envs, seed=self.cfg.seed)

    def restore(self, trainer: Trainer | None = None, step: int | None = None,
                template: TrainState | None = None) -> tuple[TrainState, dict]:
        """(state, meta) of checkpoint ``step`` (default: the newest), read-only (safe while the run trains).

        ``trainer``: default ``self.trainer()``; ``template``: default ``self.template(trainer)`` (pass one to
        restore many runs of one setting without re-initialising). ``meta``: {"iteration", "env_steps",
        "return_mean", "format_version", and "member" for a population member}. Errors: ``CheckpointError``
        (one line: no checkpoint, a corrupt or unreadable one, another format version or configuration)."""
        trainer = self.trainer() if trainer is None else trainer
        template = self.template(trainer) if template is None else template
        ckpt = Checkpointer(checkpoint_dir(self.path))
        try:
            return ckpt.restore(template, step)
        finally:
            ckpt.close()

    def evaluate(self, episodes: int, greedy: bool = False) -> tuple[dict, int]:
        """``rl3jax eval --run``: the newest checkpoint on ``episodes`` held-out tasks of ``self.cfg`` (sampled
        actions, or ``greedy``); returns (``rl3jax.evaluate.evaluate``'s result, the checkpoint's iteration).
        ValueError (one line) before any work where the tasks do not fit in memory (``rl3jax.memory``)."""
        trainer = self.trainer()
        check_eval_memory(trainer.meta_env, episodes)
        state, _ = self.restore(trainer)
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
    out: list[str] = []
    for p in paths:
        for m in run_dirs(p):
            if os.path.abspath(m) not in [os.path.abspath(x) for x in out]:
                out.append(m)
    return out


# ------------------------------------------------------------------------------------------ metrics logs
class MetricsLog:
    """Appends one row per PPO iteration to metrics.jsonl and metrics.csv; at a resume, keeps exactly the rows
    of iterations 1 .. ``resume_iteration``.

    Rows may carry fields that others lack (the ``eval_*`` fields of held-out evaluations exist only on
    every ``eval_every``-th row): the CSV header is the union of the fields in order of first appearance,
    missing cells are empty, and the CSV is rewritten with the wider header when a new field first appears.

    At a resume the rows after the checkpoint (written before a stop or a kill, and to be written again) are
    dropped, a repeated row is kept once (the last), and a note on stderr names what was dropped or is missing.
    Both files are rewritten whole (``atomic_write_text``), so a kill meanwhile leaves the old files. A torn
    final line of metrics.jsonl is dropped with a note; any other unreadable line is a ``RunFolderError``
    naming the file and line.
    """

    def __init__(self, run_dir: str, resume_iteration: int = 0):
        self.jsonl = os.path.join(run_dir, METRICS_JSONL)
        self.csv = os.path.join(run_dir, METRICS_CSV)
        rows = read_metrics(self.jsonl) if os.path.exists(self.jsonl) else []
        by_it = {r["iteration"]: r for r in rows if r["iteration"] <= resume_iteration}
        dropped = sorted({r["iteration"] for r in rows} - set(by_it))
        if dropped:
            print(f"note: {self.jsonl}: dropped the rows of iterations {_spans(dropped)}, after checkpoint step "
                  f"{resume_iteration} that the resume continues from (they are trained again)", file=sys.stderr)
        if len(by_it) + len(dropped) != len(rows):
            print(f"note: {self.jsonl}: kept one row of each repeated iteration", file=sys.stderr)
        missing = sorted(set(range(1, resume_iteration + 1)) - set(by_it))
        if missing:
            print(f"note: {self.jsonl} lacks the rows of iterations {_spans(missing)}; they cannot be recovered",
                  file=sys.stderr)
        rows = [by_it[k] for k in sorted(by_it)]
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        self.fields: list[str] = _union_fields(rows)
        if self.fields:
            self._write_csv(rows)
        elif os.path.exists(self.csv):
            os.remove(self.csv)

    def _write_csv(self, rows: list[dict]) -> None:
        text = io.StringIO()
        w = csv.DictWriter(text, self.fields)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.csv, text.getvalue())

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.jsonl, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        new_fields = [k for k in _union_fields(rows) if k not in self.fields]
        if new_fields:  # a field seen for the first time: rewrite the CSV with the wider header
            self.fields += new_fields
            self._write_csv(read_metrics(os.path.dirname(self.jsonl)))
            return
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerows(rows)


def _spans(its: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1..3, 7"``."""
    spans: list[list[int]] = []
    for i in its:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in spans)


def _union_fields(rows: list[dict]) -> list[str]:
    fields: dict[str, None] = {}
    for r in rows:
        fields.update(dict.fromkeys(r))
    return list(fields)


class ExternalLoggers:
    """Optional TensorBoard (tensorboardX) and Weights & Biases; silently absent when not asked for."""

    def __init__(self, run_dir: str, cfg, tensorboard: bool, wandb_project: str | None):
        self.tb = self.wb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise SystemExit("--tensorboard needs tensorboardX: pip install 'rl3jax[logging]'") from None
            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--wandb needs wandb: pip install 'rl3jax[logging]'") from None
            self.wb = wandb.init(project=wandb_project, config=cfg.to_dict(), dir=run_dir)

    def log(self, row: dict) -> None:
        step = row["env_steps"]
        if self.tb:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)
        if self.wb:
            self.wb.log(row, step=step)

    def close(self):
        if self.tb:
            self.tb.close()
        if self.wb:
            self.wb.finish()


class NullLog:
    """What processes other than 0 get instead of a ``MetricsLog`` (only process 0 writes logs)."""

    def append(self, rows: list[dict]) -> None:
        pass


# ------------------------------------------------------------------------------------------ resuming a folder
def command(*args: str) -> str:
    """The shell command ``rl3jax ARGS`` as printed in messages: the ``rl3jax`` script beside this Python (a
    virtual environment's ``bin/``, e.g. ``.venv/bin/rl3jax``, which need not be on PATH), else
    ``python -m rl3jax``."""
    script = os.path.join(os.path.dirname(sys.executable), "rl3jax")
    exe = [os.path.relpath(script) if not os.path.relpath(script).startswith("..") else script] \
        if os.path.exists(script) else [sys.executable, "-m", "rl3jax"]
    return shlex.join([*exe, *args])


def report_hint(out: str, env: str) -> str:
    """How to report run folder ``out`` of task family ``env`` (printed when training ends): the ``rl3jax report``
    command, or, for a family registered from Python (unknown to the command line), the ``make_report`` call to
    make from the Python that registered it."""
    if env in BUILT_IN or catalog.is_gymnax(env):
        return command("report", out)
    return f"from Python, after registering {env!r}: rl3jax.report.make_report([{out!r}], {os.path.join(out, 'report')!r})"


def check_resume(old: TrainConfig, cfg: TrainConfig, source: str) -> None:
    """Refuses a ``--resume`` whose settings would make the run differ from a straight run of ``cfg.iters``.

    Only ``RESUMABLE_CHANGES`` may differ from the run's ``old`` config, and ``iters`` only where nothing
    depends on the total length: the linear entropy schedule decays to 0 at the ``iters`` the run started with
    (fixed at its start; see ``rl3jax.ppo.entropy_coef``), so N iterations + a resume to 2N could not equal a
    straight 2N run. Chunks, checkpoints (multiples of ``checkpoint_every`` counted from iteration 0) and the
    progress ETA do not depend on it. ``ValueError`` (one line) otherwise."""
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
    """Checks a ``--resume`` of folder ``out`` with ``cfg`` (``check_resume``, against config.json or
    population.json, and ``checkpoint.check_checkpoint_config``, against the settings its checkpoints were
    trained under); returns the run's (seeds, sweep). ``ValueError`` (one line) for changed settings, a
    ``--seeds`` / ``--sweep`` that differ from the population's or that a single run lacks, and a member folder
    of a population (a population resumes as one unit: the message names its folder); ``RunFolderError`` for a
    config file edited since its checkpoint."""
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


def intact(out: str) -> str:
    """Which checkpoint of ``out`` a ``--resume`` continues from, said truthfully (``runfiles.latest_step``)."""
    step = latest_step(out)
    if step is None:
        return (f"there is no checkpoint yet (stopped before the first checkpoint): "
                f"{command('train', '--out', out, '--resume')} starts the run again from iteration 0")
    return f"checkpoint step {step} is intact; resume with: {command('train', '--out', out, '--resume')}"


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (``signum``: SIGINT for Ctrl-C); its message says truthfully which checkpoint
    a ``--resume`` continues from. The CLI exits with status 128 + ``signum`` (130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP during training (a context manager; only in the main thread, else a no-op).

    The first one is answered at once with one line on stderr (the loop stops at the end of the current chunk,
    ``when()`` says about when, then writes a checkpoint) and recorded in ``signum``; the loop then raises
    ``TrainingInterrupted``. A second one aborts at once (exit status 128 + its number): the last checkpoint
    stays intact (saves are atomic), the iterations since it are lost. The lines are printed by a thread that
    ``signal.set_wakeup_fd`` wakes, so they appear even while the main thread waits in a compiled computation
    or a compile (where Python signal handlers cannot run)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, out: str, when):
        self.out, self.when = out, when
        self.signum: int | None = None
        self.old: dict = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self.pipe = os.pipe()
        os.set_blocking(self.pipe[1], False)
        self.old = {s: signal.signal(s, lambda *_: None) for s in self.SIGNALS}
        self.old_fd = signal.set_wakeup_fd(self.pipe[1], warn_on_full_buffer=False)
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        while data := os.read(self.pipe[0], 1):
            name = signal.Signals(data[0]).name
            if self.signum is None:
                self.signum = data[0]
                print(f"\n{name}: stopping {self.when()}; a second Ctrl-C (or signal) aborts at once",
                      file=sys.stderr, flush=True)
            else:
                print(f"\n{name} again: aborting at once; {intact(self.out)}", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
        os.close(self.pipe[0])

    def __exit__(self, *exc) -> None:
        if self.old:
            signal.set_wakeup_fd(self.old_fd)
            for s, handler in self.old.items():
                signal.signal(s, handler)
            os.close(self.pipe[1])  # the watcher reads end-of-file and closes its end
