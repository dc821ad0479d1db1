"""The ``rl3jax sweep`` command line: its parser, the checks of ``sweep optuna`` made before JAX starts, and the
dispatch of its actions (``rl3jax.sweep``: plan and status; ``rl3jax.sweep_launch``: run and launch;
``rl3jax.sweep_optuna``: the study, which ``rl3jax.cli`` runs once these checks pass)."""

from __future__ import annotations

import importlib.util
import json
import os

from rl3jax.cli_args import config_flags, positive_int, seconds, subparser
from rl3jax.config import ConfigError, HParams, TrainConfig, parse_sets
from rl3jax.outputs import check_output_file
from rl3jax.sweep import CLUSTER_EXTRA, job_of, make_plan, parse_grid, read_text, status, write_plan
from rl3jax.sweep_launch import BACKENDS, LOCAL_MINUTES, launch, train_argv


def add_parser(sub) -> None:
    """The ``sweep`` subcommand and its actions (``plan`` takes the settings flags of ``train``)."""
    p = subparser(sub, "sweep", "sweeps of many programs: plan, run, launch (SLURM / local), status, optuna",
                  "Sweeps of many programs (docs/SCALING.md, 'Sweeps on a cluster'): `rl3jax sweep ACTION --help`.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{plan,run,launch,status,optuna}",
                           help="what to do (`rl3jax sweep ACTION --help`)")
    q = subparser(sub, "plan", "write DIR/sweep.json: the jobs of a grid",
                  "Write DIR/sweep.json: one job (one program) per combination of the --grid settings, each a vmapped "
                  "population of --seeds x --sweep members. Settings as `rl3jax train`.")
    q.add_argument("--out", required=True, help="the sweep folder")
    config_flags(q)
    q.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a config field that changes shapes or code (algo, model, horizon, num_envs, ...): one job "
                        "per value; repeat for a grid")
    q.add_argument("--seeds", type=positive_int, default=1, help="vmapped seeds in every job")
    q.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help=f"vmapped settings in every job ({', '.join(HParams._fields)})")
    q = subparser(sub, "run", "run (or resume) job I of a plan; a finished one exits 0")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--index", type=int, default=None, help="the job [default: $SLURM_ARRAY_TASK_ID]")
    q.add_argument("--max-seconds", type=seconds, default=None, help="stop with a checkpoint after this long")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--distributed", action="store_true",
                   help="one program over the hosts of a TPU pod slice (train --distributed), on every host")
    q = subparser(sub, "launch", "submit the unfinished jobs through submitit")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--backend", choices=BACKENDS, required=True,
                   help="slurm: one job array; local: P processes on this machine (waits for them; Ctrl-C, "
                        "SIGTERM or SIGHUP stops every job at the end of its chunk with a checkpoint, and waits for that; a "
                        "second signal kills them at once)")
    q.add_argument("--parallel", type=positive_int, default=1, help="jobs at once (slurm: the array's %%P)")
    q.add_argument("--slurm-partition", default=None, help="slurm: the partition")
    q.add_argument("--gpus-per-job", type=int, default=None, help="GPUs of each job (slurm: --gpus-per-node)")
    q.add_argument("--time", type=positive_int, default=None, metavar="MINUTES",
                   help=f"each job's time limit [default: slurm: the partition's; local: {LOCAL_MINUTES}]")
    q.add_argument("--max-seconds", type=seconds, default=None,
                   help="each job stops with a checkpoint after this long (set it below --time; relaunch resumes)")
    q = subparser(sub, "status", "each job's state and progress")
    q.add_argument("dir", metavar="DIR")
    q = subparser(sub, "optuna", "Optuna (ask and tell) over job I's sweepable settings",
                  "Optuna's ask and tell: each batch of asked trials is one vmapped population (job I's config, "
                  "--seeds per trial), told its held-out mean return at the last iteration (eval_every is set to "
                  "iters unless it divides it). Workers on several machines share one study through the journal file.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--index", type=int, default=None, help="the job [default: $SLURM_ARRAY_TASK_ID, else 0]")
    q.add_argument("--trials", type=positive_int, required=True, help="trials of the study in all (every worker)")
    q.add_argument("--batch", type=positive_int, default=4, help="trials per population (one program)")
    q.add_argument("--storage", required=True, metavar="journal:PATH", help="Optuna's journal file (shared)")
    q.add_argument("--search", action="append", default=[], metavar="NAME=LOW:HIGH[:log]",
                   help=f"a searched setting ({', '.join(HParams._fields)}); repeatable")
    q.add_argument("--study", default=None, help="the study's name [default: the job's name]")



def check_optuna(args) -> dict:
    """The checks of ``sweep optuna`` without JAX; ``sweep_optuna.optimise``'s keyword arguments. ``ConfigError``
    (one line) for a storage other than ``journal:PATH``, no or a bad ``--search`` (not a
    ``HParams`` field, bounds not LOW < HIGH, out of the field's range, log with LOW <= 0), a job with --sweep, then a missing extra."""
    kind, _, path = args.storage.partition(":")
    if kind != "journal" or not path:
        raise ConfigError(f"--storage {args.storage!r}: expected journal:PATH (Optuna's journal file)")
    check_output_file(path, "--storage")
    if os.path.isfile(path):  # Optuna's journal: one JSON object a line; anything else is not one (nothing written)
        try:
            [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
        except ValueError:
            raise ConfigError(f"--storage {path}: not an Optuna journal file (a line is not JSON); give a new path "
                              "or the journal of this study") from None
    job = job_of(args.dir, args.index, default=0)
    if job["sweep"]:
        raise ConfigError(f"job {job['name']} has --sweep {job['sweep']}: Optuna fills its population with the trials; "
                          "plan without --sweep")
    if not args.search:
        raise ConfigError(f"sweep optuna needs --search NAME=LOW:HIGH[:log] ({', '.join(HParams._fields)})")
    cfg, search = TrainConfig.from_dict(job["config"]), {}
    for item in args.search:
        name, _, rng = item.partition("=")
        name, parts = name.strip().replace("-", "_"), rng.split(":")
        if name not in HParams._fields or name in search:
            raise ConfigError(f"--search {name}: {'given twice' if name in search else 'not searchable in one program'}; "
                              f"searchable: {', '.join(HParams._fields)}")
        try:
            lo, hi = float(parts[0]), float(parts[1])
            if parts[2:] not in ([], ["log"]) or not lo < hi or (lo <= 0 and len(parts) == 3):
                raise ValueError("")
            cfg.replace(**{name: lo}), cfg.replace(**{name: hi})
        except (ValueError, IndexError) as e:
            raise ConfigError(f"--search {item!r}: expected NAME=LOW:HIGH[:log] with LOW < HIGH (LOW > 0 with log)"
                              f"{f'; {e}' if str(e) and 'could not convert' not in str(e) else ''}") from None
        search[name] = (lo, hi, len(parts) == 3)
    if importlib.util.find_spec("optuna") is None:  # after the arguments: their errors do not need the extra
        raise ConfigError(f"sweep optuna needs optuna: {CLUSTER_EXTRA}")
    return {"directory": args.dir, "job": job, "search": search, "trials": args.trials, "batch": args.batch,
            "storage": path, "study": args.study or job["name"]}



def cmd(args, given_settings) -> int | list[str]:
    """``sweep plan``, ``status``, ``launch``: the exit status; ``run``: the job's ``train`` command line (or 0:
    finished); ``optuna``: ``check_optuna``'s study. ``given_settings(args)``: the config fields of the flags."""
    if args.action == "run":
        return train_argv(args.dir, args.index, args.max_seconds, not args.no_progress, args.distributed) or 0
    if args.action == "plan":
        given = given_settings(args)
        plan = make_plan(given, args.preset, parse_grid(args.grid, given), args.seeds, parse_sets(args.sweep, True))
        print(write_plan(args.out, plan))
        return 0
    if args.action == "status":
        print(status(args.dir))
        return 0
    return check_optuna(args) if args.action == "optuna" else launch(args)
