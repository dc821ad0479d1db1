"""Command line: ``rl3jax {train,eval,baselines,bench,render,report}`` (also ``python -m rl3jax``).

Every input is honoured or refused before anything is written or compiled: a bad name, value, combination,
missing optional package or unwritable output ends in one line naming it and what is allowed, exit status 2,
no traceback, and leaves the output folder as it was. The checks that need no JAX run before JAX is imported,
so such an error takes about a second. To add a subcommand: write ``_add_NAME(sub)`` (use ``_subparser``) and
``cmd_NAME(args) -> int`` and list them in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from rl3jax import __version__, runfiles
from rl3jax.config import (
    ALGOS,
    INT_MAX,
    MODELS,
    PRESETS,
    SEED_MAX,
    SWEEPABLE,
    TrainConfig,
    default_base,
    laptop_preset,
    policy_mode,
    preset,
)
from rl3jax.envs.catalog import FAMILIES, GYMNAX_ENVS, PUBLISHED_HORIZON


class ConfigError(ValueError):
    """A user input the command cannot honour (main prints it as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``rl3jax train: error: ...``) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or action.required:
            return action.help
        return super()._get_help_string(action)


def _subparser(sub, name: str, help: str, description: str | None = None):
    return sub.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)


def _int_type(lo: int, hi: int, what: str = "a whole number"):
    """An argparse type: a whole number in [lo, hi] (decimal digits only: 1e23 and 2.5 are refused)."""

    def conv(s: str) -> int:
        try:
            v = int(s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in [{lo}, {hi}], got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {what} >= {lo}, got {v}")
        if v > hi:
            raise argparse.ArgumentTypeError(f"expected {what} <= {hi}, got {v}")
        return v

    return conv


_positive_int = _int_type(1, INT_MAX)
_seed = _int_type(0, SEED_MAX, "a 32-bit seed")


def _seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {s!r}")
    return v


def _laptop_presets() -> dict[str, str]:
    """family -> its laptop preset (``config.laptop_preset``), for the families that have one."""
    return {env: laptop_preset(env) for env in FAMILIES if laptop_preset(env) is not None}


def _add_train(sub):
    laptop = _laptop_presets()
    served = [n for n, spec in GYMNAX_ENVS.items() if spec.kind != "refused"]
    models = {name: PRESETS[name]["model"] for name in laptop.values() if "model" in PRESETS[name]}
    p = _subparser(sub, "train", "meta-train RL² / RL³ with PPO",
                   "Meta-train RL² / RL³ with PPO. Settings: --preset (or, without one, the family's laptop preset "
                   f"{' / '.join(laptop.values())} for env {' / '.join(laptop)}; other envs start from "
                   "TrainConfig's defaults), then the flags below, then --set overrides.")
    p.add_argument("--env", default=None,
                   help=f"task family: {', '.join(FAMILIES)}, or a gymnax env with discrete actions "
                        f"(e.g. {', '.join(served[:2])}; RL² only) [default: {TrainConfig.env}]")
    p.add_argument("--variant", default=None,
                   help=f"task-family variant [default: {TrainConfig.variant}, the training distribution]")
    p.add_argument("--algo", choices=ALGOS, default=None,
                   help=f"algorithm [default: the preset's, else {TrainConfig.algo}]")
    p.add_argument("--model", choices=MODELS, default=None,
                   help=f"sequence model [default: the preset's ({', '.join(f'{k}: {v}' for k, v in models.items())}), "
                        f"else {TrainConfig.model}]")
    p.add_argument("--horizon", type=_positive_int, default=None,
                   help="meta-episode length H [default: the preset's, else the family's published H "
                        f"({', '.join(f'{k} {v}' for k, v in PUBLISHED_HORIZON.items())}), else {TrainConfig.horizon}]")
    p.add_argument("--iters", type=_positive_int, default=None,
                   help="total PPO iterations to reach (with --resume: the new total) [default: the preset's]")
    p.add_argument("--num-envs", type=_positive_int, default=None,
                   help="parallel tasks per iteration [default: the preset's]")
    p.add_argument("--minibatch-envs", type=_positive_int, default=None,
                   help="whole sequences per minibatch; must divide --num-envs [default: the preset's]")
    p.add_argument("--seed", type=_seed, default=None, help=f"PRNG seed, 0 .. {SEED_MAX} [default: {TrainConfig.seed}]")
    p.add_argument("--out", required=True, help="run folder (config, metrics, checkpoints); must not hold a run "
                                                 "unless --resume")
    p.add_argument("--preset", default=None, help=f"published settings of a new run: {', '.join(PRESETS)}")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its config.json) to --iters in total")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (e.g. --set lr=1e-3 --set semantics=rlc); repeatable")
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
                   help=f"vmapped sweep of a numeric hyper-parameter ({', '.join(SWEEPABLE)}); repeat for a grid")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="multi-host: process 0's address (or JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=_positive_int, default=None,
                   help="multi-host: number of processes (or JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=_int_type(0, INT_MAX), default=None,
                   help="multi-host: this process, 0 .. --num-processes - 1 (or JAX_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="multi-host with JAX's cluster auto-detection (Cloud TPU pod slices, SLURM, Open MPI)")


def _coerce(field: dataclasses.Field, raw: str):
    typ = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if raw.lower() == "none" and "None" in typ:
        return None
    if typ.startswith("bool"):
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"--set {field.name}={raw}: expected true or false")
    if typ.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--set {field.name}={raw}: expected a whole number") from None
    if typ.startswith("float"):
        try:
            v = float(raw)
        except ValueError:
            raise ConfigError(f"--set {field.name}={raw}: expected a float") from None
        if not math.isfinite(v):
            raise ConfigError(f"--set {field.name}={raw}: expected a finite number")
        return v
    return raw


def parse_sets(items: list[str]) -> dict:
    """``--set FIELD=VALUE`` items -> {field: typed value}; a clear error for a malformed item or unknown field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in fields:
            raise ConfigError(f"--set: unknown config field {k!r}; valid: {', '.join(fields)}")
        if k in out:
            raise ConfigError(f"--set {k} given twice")
        out[k] = _coerce(fields[k], v)
    return out


# ------------------------------------------------------------------------------------------ checks (no JAX)
def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def check_writable_dir(path: str, flag: str) -> None:
    """ConfigError unless folder ``path`` exists as a writable folder or can be created (its nearest existing
    ancestor is a writable folder). Creates nothing."""
    p = os.path.abspath(path)
    if os.path.lexists(p):
        if not os.path.isdir(p):
            raise ConfigError(f"{flag} {path}: exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: the folder is not writable")
        return
    anc = _nearest_existing(p)
    if not os.path.isdir(anc):
        raise ConfigError(f"{flag} {path}: cannot be created below {anc}, which is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot be created, {anc} is not writable")


def check_writable_file(path: str, flag: str) -> None:
    """ConfigError unless file ``path`` can be written (an existing writable file, or a new file in a folder
    that exists or can be created). Creates nothing."""
    p = os.path.abspath(path)
    if os.path.isdir(p):
        raise ConfigError(f"{flag} {path}: is a folder, expected a file path")
    if os.path.lexists(p):
        if not os.access(p, os.W_OK):
            raise ConfigError(f"{flag} {path}: the file is not writable")
        return
    anc = _nearest_existing(os.path.dirname(p))
    if not os.path.isdir(anc):
        raise ConfigError(f"{flag} {path}: cannot be created below {anc}, which is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot be created, {anc} is not writable")


def _check_package(module: str, flag: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{flag} needs {module}: pip install 'rl3jax[logging]' (or omit {flag})")


# ------------------------------------------------------------------------------------------ train
def config_from_args(args) -> TrainConfig:
    """Preset (or ``config.default_base``: the laptop preset of the family, or its published H), then flags,
    then ``--set`` overrides. With ``--resume`` the run's own config.json is the base and only what is given
    explicitly changes."""
    given = {k: v for k, v in {"env": args.env, "variant": args.variant, "algo": args.algo, "model": args.model,
                               "horizon": args.horizon, "iters": args.iters, "num_envs": args.num_envs,
                               "minibatch_envs": args.minibatch_envs, "seed": args.seed}.items() if v is not None}
    given.update(parse_sets(args.set))
    if args.resume:
        stored = runfiles.read_config(args.out)
        if args.preset:  # honoured where it agrees with the run (e.g. repeating the command that started it)
            differ = {k: v for k, v in preset(args.preset).items() if k not in given and getattr(stored, k) != v}
            if differ:
                k = sorted(differ)[0]
                raise ConfigError(f"--resume --preset {args.preset}: the preset sets {k}={differ[k]!r} but the run "
                                  f"in {args.out} has {k}={getattr(stored, k)!r} (differing: {', '.join(sorted(differ))}); "
                                  "a resumed run keeps its settings: drop --preset, or start a new run elsewhere")
        src = os.path.join(args.out, runfiles.CONFIG)
        try:
            return stored.replace(**given)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--resume of {src}: {e}") from None
    env = given.get("env", TrainConfig.env)
    base = preset(args.preset) if args.preset else default_base(env)
    base.update(given)
    return TrainConfig(**base)


def check_train_args(args) -> TrainConfig:
    """Every check of ``train`` that needs no JAX: output folder, names, ranges, combinations, packages.
    Returns the validated config."""
    out = args.out
    check_writable_dir(out, "--out")
    holds = runfiles.holds_run(out)
    in_use_by = runfiles.training_pid(out)
    if in_use_by is not None:
        raise ConfigError(runfiles.in_use_message(out, in_use_by))
    if args.resume and not holds:
        raise ConfigError(f"--resume: {out} holds no run (no config.json); drop --resume to start one")
    if not args.resume and holds:
        raise ConfigError(runfiles.holds_run_message(out))
    cfg = config_from_args(args)
    if cfg.seed + args.seeds - 1 > SEED_MAX:
        raise ConfigError(f"--seeds {args.seeds} from --seed {cfg.seed} would reach seed "
                          f"{cfg.seed + args.seeds - 1} > {SEED_MAX}")
    if args.resume:
        done = runfiles.latest_step(out)
        if done is not None and cfg.iters < done:
            raise ConfigError(f"--iters {cfg.iters} is below the run's newest checkpoint (iteration {done}); "
                              f"--iters is the total to reach, so pass --iters > {done}")
    if args.tensorboard:
        _check_package("tensorboardX", "--tensorboard")
    if args.wandb:
        _check_package("wandb", "--wandb")
    if args.num_processes is not None and args.process_id is not None and args.process_id >= args.num_processes:
        raise ConfigError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
    return cfg


def memory_limit_bytes() -> tuple[int | None, str]:
    """(bytes, what) of the first device's memory limit, or host RAM on a backend that does not report one."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # CPU backends may not report memory
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{jax.devices()[0].device_kind} memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM"
    except (ValueError, OSError, AttributeError):
        return None, "memory"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_train_memory(trainer, members: int = 1, devices: int = 1) -> None:
    """ConfigError when a lower bound of the memory one iteration needs exceeds the device (or host) memory.

    The bound counts only what must exist at once: the training state (parameters, optimiser and env
    states; exact, from ``jax.eval_shape`` of ``init``) and the rollout's trajectory, which the PPO update
    reads whole: per env and step the policy input (obs_dim floats), logits (num_actions), and 6 scalars
    (action, log-prob, reward, value, advantage, return), float32. Activations come on top, so a run that
    passes may still not fit; one refused would not.
    """
    import jax
    import numpy as np

    cfg = trainer.cfg
    shapes = jax.eval_shape(trainer.init, jax.random.key(0))
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes)
                      if hasattr(x, "dtype") and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
    m = trainer.meta_env
    traj_bytes = 4 * cfg.num_envs * cfg.horizon * (m.obs_dim + m.num_actions + 6)
    need = members * (state_bytes + traj_bytes) / max(devices, 1)
    limit, what = memory_limit_bytes()
    if limit is not None and need > limit:
        raise ConfigError(f"num_envs={cfg.num_envs} x horizon={cfg.horizon}"
                          f"{f' x {members} members' if members > 1 else ''} needs at least {_gib(need)} "
                          f"(training state {_gib(members * state_bytes)} + trajectory {_gib(members * traj_bytes)}"
                          f"{f' over {devices} devices' if devices > 1 else ''}), more than the {_gib(limit)} of "
                          f"{what}; use fewer --num-envs, a shorter --horizon or fewer seeds")


def cmd_train(args) -> int:
    cfg = check_train_args(args)
    sweep = {}
    if args.sweep:
        from rl3jax.population import make_members, parse_sweep

        sweep = parse_sweep(args.sweep)
    from rl3jax import distributed

    # before anything touches a JAX backend
    try:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id, auto=args.distributed)
    except (ValueError, RuntimeError) as e:
        if not args.distributed or isinstance(e, ConfigError):
            raise
        raise ConfigError(f"--distributed: JAX's cluster auto-detection found no cluster to join ({e}); give "
                          "--coordinator-address, --num-processes and --process-id instead") from None
    from rl3jax.driver import train
    from rl3jax.runs import nothing_to_do, resume_settings
    from rl3jax.train import make_train

    if args.resume:  # a finished run: one line, before anything is built or compiled
        resume_settings(cfg, args.out, args.seeds, sweep)
        if idle := nothing_to_do(cfg, args.out):
            print(idle)
            return 0

    mesh = distributed.make_mesh(args.devices)  # None for one device
    trainer = make_train(cfg, mesh)  # builds the env, estimator and networks (no compile): their errors come now
    pop = args.seeds
    if sweep:
        make_members(cfg, args.seeds, sweep)  # names and values of the sweep
        for v in sweep.values():
            pop *= len(v)
    check_train_memory(trainer, pop, distributed.mesh_size(mesh))
    if distributed.is_main_process():
        print(f"training {cfg.algo} ({cfg.model}) on {cfg.env}/{cfg.variant}: H={cfg.horizon}, {cfg.num_envs} tasks x "
              f"{cfg.iters} iterations = {cfg.iters * cfg.batch_steps:,} env steps"
              f"{f' x {pop} members' if pop > 1 else ''} on {distributed.describe(mesh)} -> {args.out}")
    train(cfg, args.out, resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard,
          wandb_project=args.wandb, mesh=mesh, seeds=args.seeds, sweep=sweep, max_seconds=args.max_seconds)
    return 0


# ------------------------------------------------------------------------------------------ eval
def _add_eval(sub):
    p = _subparser(sub, "eval", "evaluate on held-out test tasks (one meta-episode each)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="a run folder written by `rl3jax train`")
    # no argparse choices: the names come from rl3jax.baselines, whose import would start a JAX backend
    # before `train` can set up multi-host runs; cmd_eval checks the name against the registry instead
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


def parse_params(items: list[str]) -> dict:
    """``--param KEY=VALUE`` items -> {key: raw string}; the baseline's registry entry checks names and values."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def check_eval_memory(meta_env, episodes: int) -> None:
    """ConfigError when the held-out tasks and per-step rewards of ``episodes`` meta-episodes (all held at
    once: a lower bound) exceed device (or host) memory."""
    import jax
    import numpy as np

    task = jax.eval_shape(meta_env.sample_task, jax.random.key(0))
    task_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(task) if hasattr(x, "dtype"))
    need = episodes * (task_bytes + 4 * meta_env.horizon)
    limit, what = memory_limit_bytes()
    if limit is not None and need > limit:
        raise ConfigError(f"--episodes {episodes} needs at least {_gib(need)} for the test tasks and rewards, more "
                          f"than the {_gib(limit)} of {what}; use fewer --episodes")


def cmd_eval(args) -> int:
    if args.run and (args.env is not None or args.horizon is not None):
        raise ConfigError("--env and --horizon apply only with --policy; a run evaluates on its own env and H")
    if args.policy and args.greedy:
        raise ConfigError("--greedy applies to a trained --run; a --policy baseline chooses its own actions")
    if args.json:
        check_writable_file(args.json, "--json")
    if args.run:
        if args.param:
            raise ConfigError("--param applies to --policy baselines, not to a trained --run")
        cfg = runfiles.read_run_config(args.run, "evaluate")
        if args.variant:
            cfg = cfg.replace(variant=args.variant)
    else:
        if args.env is None or args.horizon is None:
            raise ConfigError("--policy needs --env and --horizon")
        cfg = TrainConfig(env=args.env, variant=args.variant or "train", horizon=args.horizon, algo="rl2")

    from rl3jax.baselines import check_fits, get_baseline, validate_params
    from rl3jax.evaluate import evaluate
    from rl3jax.runs import Run
    from rl3jax.train import make_meta_env

    if args.run:
        run = Run(args.run, cfg)
        trainer = run.trainer()
        check_eval_memory(trainer.meta_env, args.episodes)
        state, _ = run.restore(trainer)
        res = evaluate(trainer.meta_env, "network", args.episodes, greedy=args.greedy,
                       params=state.actor_params, model=trainer.actor)
        policy, algo = policy_mode(args.greedy), cfg.algo
        iteration = int(state.iteration)
    else:
        get_baseline(args.policy)  # unknown name: the error lists the valid ones
        meta_env = make_meta_env(cfg)
        policy_params = validate_params(args.policy, parse_params(args.param))
        check_fits(args.policy, meta_env)
        check_eval_memory(meta_env, args.episodes)
        res = evaluate(meta_env, args.policy, args.episodes, greedy=args.greedy, policy_params=policy_params)
        policy, algo, iteration = args.policy, None, None
    out = {"env": cfg.env, "variant": cfg.variant, "algo": algo, "policy": policy, "horizon": cfg.horizon,
           "episodes": res["episodes"], "mean_return": res["mean_return"], "stderr": res["stderr"],
           "iteration": iteration, "run": args.run,
           "step_rewards": [float(x) for x in res["step_rewards"]]}  # per step t: the adaptation curve
    if not args.run:
        out["params"] = policy_params
    shown = "".join(f" {k}={v:g}" for k, v in out.get("params", {}).items())
    print(f"{cfg.env}/{cfg.variant} H={cfg.horizon} {algo or ''} {policy}{shown}: "
          f"{res['mean_return']:.2f} ± {res['stderr']:.2f} over {res['episodes']} test tasks")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        runfiles.atomic_write_json(args.json, out)
    return 0


# ------------------------------------------------------------------------------------------ baselines
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
    from rl3jax.evaluate import run_baselines

    if args.json:
        check_writable_file(args.json, "--json")
    names = None
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        if not names:
            raise ConfigError("--only needs at least one baseline name")

    def show(row):
        done = f"skipped ({row['skipped']})" if row.get("skipped") else f"{row['seconds']:.1f} s"
        print(f"  {row['policy']}: {done}", file=sys.stderr, flush=True)

    rows = run_baselines(args.env, args.variant, args.horizon, args.episodes, names=names, batch=args.batch,
                         progress=show)
    print(f"{args.env}/{args.variant or 'train'} H={args.horizon}, {args.episodes} held-out tasks; "
          "normalised = (x - random) / (oracle - random)")
    print(f"{'policy':22s} {'mean':>9s}   {'s.e.':>6s} {'normalised':>10s} {'seconds':>8s}")
    for r in rows:
        if r.get("skipped"):
            print(f"{r['policy']:22s} skipped: {r['skipped']}")
            continue
        norm = "" if r["normalised"] is None else f"{r['normalised']:.3f}"
        print(f"{r['policy']:22s} {r['mean_return']:9.2f} ± {r['stderr']:6.2f} {norm:>10s} {r['seconds']:8.1f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        runfiles.atomic_write_json(args.json, {"env": args.env, "variant": args.variant or "train",
                                               "horizon": args.horizon, "episodes": args.episodes, "rows": rows})
    return 0


# ------------------------------------------------------------------------------------------ bench
def _add_bench(sub):
    p = _subparser(sub, "bench", "end-to-end meta-training throughput")
    p.add_argument("--quick", action="store_true", help="small workloads (CPU smoke run)")
    p.add_argument("--json", default=None, help="write the records as JSON here (after every workload)")
    p.add_argument("--only", default=None, help="comma-separated workload names (not with --scaling)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed runs per workload (median reported)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field in every workload (e.g. --set fused_update=false for an A/B; "
                        "not with --scaling)")
    p.add_argument("--scaling", action="store_true",
                   help="one workload at 1, 2, 4, 8 devices and with 1, 2, 4, 8 vmapped seeds (docs/SCALING.md)")
    p.add_argument("--cpu-devices", type=_positive_int, default=None,
                   help="fake this many CPU devices (to try --scaling on a machine without accelerators)")
    p.add_argument("--devices", default=None,
                   help="with --scaling: comma-separated device counts [default: 1,2,4,8 up to the devices there are]")
    p.add_argument("--seeds", default=None, help="with --scaling: numbers of vmapped seeds [default: 1,2,4,8]")


def parse_counts(flag: str, s: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; ConfigError naming ``flag`` for anything but whole numbers >= 1."""
    items = [x.strip() for x in s.split(",") if x.strip()]
    try:
        out = [int(x) for x in items]
    except ValueError:
        out = []
    if not items or len(out) != len(items) or any(v < 1 or v > INT_MAX for v in out):
        raise ConfigError(f"{flag} {s!r}: expected comma-separated whole numbers >= 1 (e.g. 1,2,4,8)")
    return out


def cmd_bench(args) -> int:
    if not args.scaling:
        for flag, v in (("--devices", args.devices), ("--seeds", args.seeds)):
            if v is not None:
                raise ConfigError(f"{flag} applies only with --scaling")
    elif args.only or args.set:
        raise ConfigError("--only and --set apply to the workload table, not to --scaling")
    devices = parse_counts("--devices", args.devices) if args.devices is not None else None
    seeds = parse_counts("--seeds", args.seeds) if args.seeds is not None else None
    overrides = parse_sets(args.set)
    if args.json:
        check_writable_file(args.json, "--json")
    import jax

    if args.cpu_devices:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if not args.quick and jax.default_backend() == "cpu":
        print("note: these are the accelerator-size workloads, on a CPU (slow: many minutes); --quick runs the "
              "small ones", file=sys.stderr)
    if args.scaling:
        from rl3jax.bench import bench_scaling

        bench_scaling(quick=args.quick, devices=devices, seeds=seeds, repeats=args.repeats, json_path=args.json)
        return 0
    from rl3jax.bench import run_bench

    run_bench(quick=args.quick, json_path=args.json, only=args.only, repeats=args.repeats, overrides=overrides)
    return 0


# ------------------------------------------------------------------------------------------ render
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
    check_writable_file(args.out, "--out")
    runfiles.check_render(args.run, args.variant, args.episodes, args.samples)  # before JAX starts
    from rl3jax.render import render_cli

    return render_cli(args.run, args.out, variant=args.variant, episodes=args.episodes, samples=args.samples)


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
                   help="reuse the baseline results of `rl3jax baselines --json` (same env, variant, H, N)")


def cmd_report(args) -> int:
    if args.out is None:
        if len(args.runs) != 1:
            raise ConfigError("--out is needed for a report of several runs (one run: RUN/report by default)")
        args.out = os.path.join(args.runs[0], "report")
    from rl3jax.report import make_report

    res = make_report(args.runs, args.out, episodes=args.episodes, variant=args.variant,
                      baselines_json=args.baselines_json)
    for r in res["runs"]:
        print(f"{r['name']}: stochastic {r['stochastic']['mean_return']:.2f} ± {r['stochastic']['stderr']:.2f}, "
              f"greedy {r['greedy']['mean_return']:.2f} ± {r['greedy']['stderr']:.2f}")
    print(f"report written to {args.out}: results.md, results.json, learning_curve.png, adaptation.png")
    return 0


#: subcommand -> (add its parser, run it)
SUBCOMMANDS = {"train": (_add_train, cmd_train), "eval": (_add_eval, cmd_eval),
               "baselines": (_add_baselines, cmd_baselines), "bench": (_add_bench, cmd_bench),
               "render": (_add_render, cmd_render), "report": (_add_report, cmd_report)}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rl3jax", formatter_class=_Formatter,
                     description="RL³ / RL² meta-reinforcement learning in JAX: train, evaluate, benchmark, render. "
                                 "`rl3jax COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"rl3jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for add, _ in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except KeyboardInterrupt as e:  # training says which checkpoint (if any) is intact
        print(f"rl3jax {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    except Exception as e:  # noqa: BLE001  (sorted below: user errors are one line, bugs keep their traceback)
        if isinstance(e, (FloatingPointError, runfiles.CheckpointWriteError)):
            print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)  # the run failed (diverged; disk full)
            return 1
        if isinstance(e, (ValueError, FileNotFoundError, runfiles.RunFolderError)):
            print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError):
            print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
