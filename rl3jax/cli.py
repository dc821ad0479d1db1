"""Command line: ``rl3jax {train,eval,baselines,bench,render,report,sweep}`` (also ``python -m rl3jax``).

Every input is honoured or refused before anything is written or compiled (a bad one: one line naming it and
what is allowed, exit status 2), by checks without JAX before it is imported. To add a subcommand: write
``_add_NAME(sub)`` and ``cmd_NAME(args) -> int`` and list them in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import signal
import sys

from rl3jax import __version__, memory, outputs, sweep_cli
from rl3jax.cli_args import Formatter as _Formatter
from rl3jax.cli_args import Parser as _Parser
from rl3jax.cli_args import config_flags as _config_flags
from rl3jax.cli_args import int_type as _int_type
from rl3jax.cli_args import positive_int as _positive_int
from rl3jax.cli_args import seconds as _seconds
from rl3jax.cli_args import subparser as _subparser
from rl3jax.compile_cache import compile_cache
from rl3jax.config import (
    GREEDY,
    INT_MAX,
    SEED_MAX,
    STOCHASTIC,
    ConfigError,
    HParams,
    TrainConfig,
    laptop_preset,
    notes,
    parse_sets,
)
from rl3jax.envs.catalog import FAMILIES, check_variant
from rl3jax.runs import runfiles
from rl3jax.runs.signals import StopSignals, TrainingInterrupted


def _add_train(sub):
    laptop = {env: laptop_preset(env) for env in FAMILIES if laptop_preset(env) is not None}
    p = _subparser(sub, "train", "meta-train RL² / RL³ with PPO",
                   "Meta-train RL² / RL³ with PPO. Settings: --preset (or, without one, the family's laptop preset "
                   f"{' / '.join(laptop.values())} for env {' / '.join(laptop)}; other envs start from "
                   "TrainConfig's defaults), then the flags below, then --set overrides.")
    _config_flags(p)
    p.add_argument("--out", required=True, help="run folder (config, metrics, checkpoints); must not hold a run "
                                                 "unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its config.json) to --iters in total")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (needs tensorboardX)")
    p.add_argument("--wandb", default=None, metavar="PROJECT", help="also log to Weights & Biases (needs wandb)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-seconds", type=_seconds, default=None,
                   help="stop with a checkpoint at the first chunk boundary after this much wall time")
    g = p.add_argument_group("scaling (docs/SCALING.md)")
    g.add_argument("--devices", type=_positive_int, default=None,
                   help="devices per process to split the tasks over [default: all local devices]")
    g.add_argument("--seeds", type=_positive_int, default=1,
                   help="train K independent seeds (seed, seed+1, ...) as one vmapped population")
    g.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help=f"vmapped sweep of a numeric hyper-parameter ({', '.join(HParams._fields)}); repeat for a grid")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="multi-host: process 0's address (or JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=_positive_int, default=None,
                   help="multi-host: number of processes (or JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=_int_type(0, INT_MAX), default=None,
                   help="multi-host: this process, 0 .. --num-processes - 1 (or JAX_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="multi-host with JAX's cluster auto-detection (Cloud TPU pod slices, SLURM, Open MPI)")


def given_settings(args) -> dict:
    """The config fields that ``_config_flags``'s flags and ``--set``s give; ``ConfigError`` for one given twice."""
    given = {k: getattr(args, k) for k in ("env", "variant", "algo", "model", "horizon", "iters", "num_envs",
                                           "minibatch_envs", "seed") if getattr(args, k) is not None}
    sets = parse_sets(args.set)
    if k := min(set(given) & set(sets), default=None):
        raise ConfigError(f"{k} is given twice, --{k.replace('_', '-')} {given[k]} and --set {k}={sets[k]}; "
                          "give it once")
    return {**given, **sets}


def config_from_args(args) -> TrainConfig:
    """The validated config of a ``train`` command line (``runfiles.train_config`` of ``given_settings``)."""
    return runfiles.train_config(args.out, args.resume, args.preset, given_settings(args))


def check_train_args(args) -> TrainConfig:
    """Every check of ``train`` without JAX; the config. A new run's settings are checked before its folder, a
    resume's after it (they are read from it)."""
    cfg = None if args.resume else config_from_args(args)
    runfiles.check_train_folder(args.out, args.resume)
    cfg = cfg or config_from_args(args)
    if cfg.seed + args.seeds - 1 > SEED_MAX:
        raise ConfigError(f"--seeds {args.seeds} from --seed {cfg.seed} would reach seed "
                          f"{cfg.seed + args.seeds - 1} > {SEED_MAX}")
    args.sweep_values = parse_sets(args.sweep, sweep=True)  # {} without --sweep; its names and values checked here
    for flag, given, module in (("--tensorboard", args.tensorboard, "tensorboardX"), ("--wandb", args.wandb, "wandb")):
        if given and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{flag} needs {module}: pip install 'rl3jax[logging]' (or omit {flag})")
    return cfg


def cmd_train(args) -> int:
    """``rl3jax train``; SIGINT, SIGTERM and SIGHUP are answered from its first line (``StopSignals``), also during
    the setup, where one stops the command before training starts (one process: nothing written)."""
    with StopSignals(lambda: "before training starts (nothing trained yet)", lambda: runfiles.intact(args.out)) as sig:
        return _train(args, sig)


def _train(args, sig: StopSignals) -> int:
    cfg = check_train_args(args)
    from rl3jax import distributed
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id, auto=args.distributed)
    distributed.check_same_settings({**cfg.to_dict(), "out": args.out, "resume": args.resume, "seeds": args.seeds,
                                     "sweep": args.sweep, "devices": args.devices, "max_seconds": args.max_seconds})
    import jax

    from rl3jax.runs.driver import nothing_to_do, train  # importing these starts a JAX backend: after initialize
    from rl3jax.runs.population import make_members
    from rl3jax.trainer import make_train
    sweep = args.sweep_values
    if args.resume and (idle := nothing_to_do(cfg, args.out, args.seeds, sweep)):  # before anything is built
        return print(idle) or 0
    mesh = distributed.make_mesh(args.devices)  # None for one device
    trainer = make_train(cfg, mesh)  # builds the env, estimator and networks (no compile): their errors come now
    pop = len(make_members(cfg, args.seeds, sweep)) if sweep else args.seeds  # checks the sweep's names and values
    memory.check_train_memory(trainer, pop, distributed.mesh_size(mesh))
    if distributed.is_main_process():
        for line in () if args.resume else notes(cfg, cpu=jax.default_backend() == "cpu"):  # maybe not as meant
            print(line)  # stdout, with the line below: stderr keeps one line per error
        print(f"training {cfg.algo} ({cfg.model}) on {cfg.env}/{cfg.variant}: H={cfg.horizon}, {cfg.num_envs} tasks x "
              f"{cfg.iters} iterations = {cfg.iters * cfg.batch_steps:,} env steps"
              f"{f' x {pop} members' if pop > 1 else ''} on {distributed.describe(mesh)} -> {args.out}")
    if sig.signum is not None and jax.process_count() == 1:  # several processes: the chunk loop stops them together
        raise TrainingInterrupted(f"stopped by {signal.Signals(sig.signum).name} before training started; "
                                  f"{runfiles.intact(args.out)}", sig.signum)
    train(cfg, args.out, resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard,
          wandb_project=args.wandb, mesh=mesh, seeds=args.seeds, sweep=sweep, max_seconds=args.max_seconds)
    return 0


def _add_eval(sub):
    p = _subparser(sub, "eval", "evaluate on held-out test tasks (one meta-episode each)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="a run folder written by `rl3jax train`")
    # no argparse choices: importing rl3jax.baselines starts JAX before multi-host set-up; cmd_eval checks names
    g.add_argument("--policy", help="a baseline policy instead of a run: random, oracle, model-greedy, ucb, "
                   "gittins, psrl, ... (`rl3jax baselines --env E` runs every one that fits a family)")
    p.add_argument("--env", default=None, help="with --policy (required there): the task family")
    p.add_argument("--variant", default=None, help="test variant (e.g. an OOD one) [default: the run's, or train]")
    p.add_argument("--horizon", type=_positive_int, default=None, help="with --policy (required there): H")
    p.add_argument("--episodes", type=_positive_int, default=1000, help="held-out test tasks, one meta-episode each")
    p.add_argument("--greedy", action="store_true", help="with --run: argmax actions instead of sampling "
                   "(--policy baselines choose their own actions)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="with --policy: a parameter of the baseline (e.g. --param epsilon=0.05)")
    p.add_argument("--json", default=None, help="write the result as JSON here")


def cmd_eval(args) -> int:
    if args.run and (args.env is not None or args.horizon is not None):
        raise ConfigError("--env and --horizon apply only with --policy; a run evaluates on its own env and H")
    if args.policy and args.greedy:
        raise ConfigError("--greedy applies to a trained --run; a --policy baseline chooses its own actions")
    if args.run and args.param:
        raise ConfigError("--param applies to --policy baselines, not to a trained --run")
    outputs.check_output_file(args.json, "--json")
    if args.run:
        run_cfg = runfiles.read_run_config(args.run, "evaluate")
        cfg = run_cfg.replace(variant=args.variant) if args.variant else run_cfg
        from rl3jax.runs.load import Run

        (res, iteration), params = Run(args.run, run_cfg).evaluate(args.episodes, args.greedy, cfg.variant), {}
        policy, algo = GREEDY if args.greedy else STOCHASTIC, cfg.algo
    else:
        if args.env is None or args.horizon is None:
            raise ConfigError("--policy needs --env and --horizon")
        cfg = TrainConfig(env=args.env, variant=args.variant or "train", horizon=args.horizon, algo="rl2")
        from rl3jax.evaluate import evaluate_baseline

        res, params = evaluate_baseline(cfg, args.policy, args.episodes, args.param)
        policy, algo, iteration = args.policy, None, None
    out = {"env": cfg.env, "variant": cfg.variant, "algo": algo, "policy": policy, "horizon": cfg.horizon,
           "episodes": res["episodes"], "mean_return": res["mean_return"], "stderr": res["stderr"],
           "iteration": iteration, "run": args.run, "step_rewards": [float(x) for x in res["step_rewards"]],
           **({"params": params} if args.policy else {})}  # step_rewards: per step t, the adaptation curve
    shown = "".join(f" {k}={v:g}" for k, v in params.items())
    print(f"{cfg.env}/{cfg.variant} H={cfg.horizon} {algo or ''} {policy}{shown}: "
          f"{res['mean_return']:.2f} ± {res['stderr']:.2f} over {res['episodes']} test tasks")
    if args.json:
        outputs.atomic_write_json(args.json, out)
    return 0


def _add_baselines(sub):
    p = _subparser(sub, "baselines", "every classical baseline that fits a family, on the same held-out tasks")
    p.add_argument("--env", required=True, help=f"task family: {', '.join(FAMILIES)}")
    p.add_argument("--variant", default=None, help="task-family variant (default: the training distribution)")
    p.add_argument("--horizon", type=_positive_int, required=True, help="meta-episode length H")
    p.add_argument("--episodes", type=_positive_int, default=1000, help="held-out test tasks")
    p.add_argument("--only", default=None, help="comma-separated baseline names (default: all that fit)")
    p.add_argument("--batch", type=_positive_int, default=250,
                   help="tasks per jitted call (each batch has its own random stream: keep the default to get "
                        "the figures of eval --policy and report)")
    p.add_argument("--json", default=None, help="write the rows (incl. per-step mean rewards) as JSON here")


def cmd_baselines(args) -> int:
    outputs.check_output_file(args.json, "--json")
    check_variant(args.env, args.variant)  # an unknown env or variant, a missing extra: before JAX starts
    names = None
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        if not names:
            raise ConfigError("--only needs at least one baseline name")
    from rl3jax.evaluate import baselines_table, run_baselines

    def show(row):
        done = f"skipped ({row['skipped']})" if row.get("skipped") else f"{row['seconds']:.1f} s"
        print(f"  {row['policy']}: {done}", file=sys.stderr, flush=True)

    rows = run_baselines(args.env, args.variant, args.horizon, args.episodes, names=names, batch=args.batch,
                         progress=show)
    print(f"{args.env}/{args.variant or 'train'} H={args.horizon}, {args.episodes} held-out tasks; "
          f"normalised = (x - random) / (oracle - random)\n{baselines_table(rows)}")
    if args.json:
        outputs.atomic_write_json(args.json, {"env": args.env, "variant": args.variant or "train",
                                               "horizon": args.horizon, "episodes": args.episodes, "rows": rows})
    return 0


def _add_bench(sub):
    p = _subparser(sub, "bench", "end-to-end meta-training throughput")
    p.add_argument("--quick", action="store_true", help="small workloads (CPU smoke run)")
    p.add_argument("--json", default=None, help="write the records as JSON here (after every workload)")
    p.add_argument("--only", default=None, help="comma-separated workload names (not with --scaling)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed runs per workload (median reported)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field in every workload (e.g. --set epochs=4 for an A/B; "
                        "not with --scaling)")
    p.add_argument("--scaling", action="store_true",
                   help="one workload at 1, 2, 4, 8 devices and with 1, 2, 4, 8 vmapped seeds (docs/SCALING.md)")
    p.add_argument("--cpu-devices", type=_positive_int, default=None,
                   help="fake this many CPU devices (to try --scaling on a machine without accelerators)")
    p.add_argument("--devices", default=None,
                   help="with --scaling: comma-separated device counts [default: 1,2,4,8 up to the devices there are]")
    p.add_argument("--seeds", default=None, help="with --scaling: numbers of vmapped seeds [default: 1,2,4,8]; "
                   "with --population: members K [default: 1,4,16]")
    p.add_argument("--population", action="store_true",
                   help="K members as one vmapped population against K separate runs at once (aggregate steps/s)")


def cmd_bench(args) -> int:
    if args.scaling and args.population:
        raise ConfigError("--scaling and --population are two benchmarks: choose one")
    if args.devices is not None and not args.scaling:
        raise ConfigError("--devices applies only with --scaling")
    if args.seeds is not None and not (args.scaling or args.population):
        raise ConfigError("--seeds applies only with --scaling or --population")
    if (args.scaling or args.population) and (args.only or args.set):
        raise ConfigError(f"--only and --set apply to the workload table, not to "
                          f"{'--scaling' if args.scaling else '--population'}")
    counts = {}
    for flag, s in (("--devices", args.devices), ("--seeds", args.seeds)):  # "1,2,4" -> [1, 2, 4]
        items = [] if s is None else [x.strip() for x in s.split(",") if x.strip()]
        if s is not None and (not items or not all(x.isdecimal() and 1 <= int(x) <= INT_MAX for x in items)):
            raise ConfigError(f"{flag} {s!r}: expected comma-separated whole numbers >= 1 (e.g. 1,2,4,8)")
        counts[flag] = [int(x) for x in items] if s is not None else None
    overrides = parse_sets(args.set)
    outputs.check_output_file(args.json, "--json")
    import jax
    if args.cpu_devices:  # before anything (importing rl3jax.bench too) starts the backend
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    from rl3jax.bench import bench_population, bench_scaling, run_bench

    if not args.quick and jax.default_backend() == "cpu":
        print("note: these are the accelerator-size workloads, on a CPU (slow: many minutes); --quick runs the "
              "small ones", file=sys.stderr)
    if args.population:
        bench_population(quick=args.quick, members=counts["--seeds"], repeats=args.repeats, json_path=args.json)
    elif args.scaling:
        bench_scaling(quick=args.quick, devices=counts["--devices"], seeds=counts["--seeds"], repeats=args.repeats,
                      json_path=args.json)
    else:
        run_bench(quick=args.quick, json_path=args.json, only=args.only, repeats=args.repeats, overrides=overrides)
    return 0


def _add_render(sub):
    p = _subparser(sub, "render", "draw a trained agent's meta-episode on a held-out grid (GIF)")
    p.add_argument("--run", default=None, help="a run folder of a grid family (with --samples: its family)")
    p.add_argument("--variant", default=None, help="test variant of the grid family [default: the run's]")
    p.add_argument("--episodes", type=_positive_int, default=1,
                   help="held-out tasks to draw, one GIF each (OUT-0.gif, OUT-1.gif, ... when more than one)")
    p.add_argument("--out", required=True, help="the GIF (or with --samples the PNG) to write")
    p.add_argument("--samples", action="store_true",
                   help="a static PNG of sampled grids of every variant instead (family of --run, default grid13)")


def cmd_render(args) -> int:
    outputs.check_outputs(args.out, "--out", count=1 if args.samples else args.episodes)
    family = runfiles.check_render(args.run, args.variant, args.episodes, args.samples)  # before JAX starts
    from rl3jax.render import render_cli

    return render_cli(args.run, args.out, args.variant, args.episodes, samples_of=family if args.samples else None)


def _add_report(sub):
    p = _subparser(sub, "report", "results table, learning and adaptation curves of trained runs (seeds and "
                                   "algorithms side by side)")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run folders written by `rl3jax train` (a population folder stands for its members)")
    p.add_argument("--out", default=None, help="folder for results.md, results.json, learning_curve.png, "
                                               "adaptation.png [default: RUN/report for a single run]")
    p.add_argument("--episodes", type=_positive_int, default=1000, help="held-out test tasks (N)")
    p.add_argument("--variant", default=None, help="test variant (e.g. an OOD one); default: the runs' own")
    p.add_argument("--baselines-json", default=None, metavar="PATH",
                   help="reuse the baseline results of `rl3jax baselines --json` (same env, variant, H, N): the report "
                        "shows those baselines (its --only choice), none other")


def cmd_report(args) -> int:
    if args.out is None:
        if len(args.runs) != 1:
            raise ConfigError("--out is needed for a report of several runs (one run: RUN/report by default)")
        args.out = os.path.join(args.runs[0], "report")
    outputs.check_outputs(args.out, "--out", outputs.REPORT_FILES)
    from rl3jax.report import make_report

    res = make_report(args.runs, args.out, episodes=args.episodes, variant=args.variant,
                      baselines_json=args.baselines_json)
    for r in res["runs"]:
        print(f"{r['name']}: stochastic {r['stochastic']['mean_return']:.2f} ± {r['stochastic']['stderr']:.2f}, "
              f"greedy {r['greedy']['mean_return']:.2f} ± {r['greedy']['stderr']:.2f}")
    print(f"report written to {args.out}: results.md, results.json, learning_curve.png, adaptation.png")
    return 0


def cmd_sweep(args) -> int:
    done = sweep_cli.cmd(args, given_settings)  # an exit status; `run`: the job's train command line; `optuna`: the study
    if args.action == "optuna":  # checked without JAX
        from rl3jax.sweep_optuna import optimise
        return optimise(**done)
    return cmd_train(build_parser().parse_args(done)) if isinstance(done, list) else done


#: subcommand -> (add its parser, run it)
SUBCOMMANDS = {"train": (_add_train, cmd_train), "eval": (_add_eval, cmd_eval),
               "baselines": (_add_baselines, cmd_baselines), "bench": (_add_bench, cmd_bench),
               "render": (_add_render, cmd_render), "report": (_add_report, cmd_report),
               "sweep": (sweep_cli.add_parser, cmd_sweep)}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rl3jax", formatter_class=_Formatter,
                     description="RL³ / RL² meta-reinforcement learning in JAX: train, evaluate, benchmark, render. "
                                 "`rl3jax COMMAND --help` for a command's options. Compiled programs are kept in "
                                 "~/.cache/rl3jax/xla (RL3JAX_COMPILE_CACHE=DIR or off; README).")
    parser.add_argument("--version", action="version", version=f"rl3jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for add, _ in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv=None) -> int:
    """The command line; its exit status. Output into a pipe its reader closed early (``rl3jax ... | head``)
    stops the command quietly with status 141 (128 + SIGPIPE), as a Unix tool killed by SIGPIPE (Python's
    recipe: stdout pointed at ``os.devnull`` so that nothing is written at exit)."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at exit (also after --help's SystemExit)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        compile_cache(args.command)
        if args.command not in ("eval", "baselines", "report", "render"):  # train, sweep: their own; bench: children
            return SUBCOMMANDS[args.command][1](args)
        with StopSignals(None, lambda: f"each file of rl3jax {args.command} is whole or not written"):
            return SUBCOMMANDS[args.command][1](args)  # a Ctrl-C, once lost in JAX's start, ends it at once
    except BrokenPipeError:
        raise  # main's
    except KeyboardInterrupt as e:  # training says which checkpoint (if any) is intact
        print(f"rl3jax {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    except Exception as e:  # noqa: BLE001  (sorted below: user errors are one line, bugs keep their traceback)
        op = "write" if getattr(e, "errno", None) in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG) else "access"
        msg = memory.out_of_memory(e) or (f"cannot {op} {e.filename}: {e.strerror}" if getattr(e, "filename", None)
                                          and getattr(e, "strerror", None) else str(e))
        if isinstance(e, (ValueError, FileNotFoundError, runfiles.RunFolderError)) and not isinstance(
                e, runfiles.CheckpointWriteError):
            status = 2  # a bad input
        elif isinstance(e, (FloatingPointError, OSError, runfiles.CheckpointWriteError)) or msg != str(e):
            status = 1  # the run failed (diverged; disk full; out of memory)
        else:
            raise
        print(f"rl3jax {args.command}: error: {msg}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
