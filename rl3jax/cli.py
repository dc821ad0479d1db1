"""Command line: ``rl3jax {train,eval,bench,render}`` (also ``python -m rl3jax``).

Errors a user can cause (bad flags, impossible sizes, missing or corrupt checkpoints) end in one clear
message and exit status 2, never a traceback from inside JAX.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from rl3jax.config import ALGOS, MODELS, PRESETS, TrainConfig, preset


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v}")
    return v


def _add_train(sub):
    p = sub.add_parser("train", help="meta-train RL² / RL³ with PPO")
    p.add_argument("--env", default=None, help="task family: bandit, mdp, grid11, grid13, or a gymnax env name")
    p.add_argument("--variant", default=None, help="task-family variant (default: the training distribution)")
    p.add_argument("--algo", choices=ALGOS, default=None)
    p.add_argument("--model", choices=MODELS, default=None)
    p.add_argument("--horizon", type=_positive_int, default=None, help="meta-episode length H")
    p.add_argument("--iters", type=_positive_int, default=None, help="total PPO iterations to reach")
    p.add_argument("--num-envs", type=_positive_int, default=None, help="parallel tasks per iteration")
    p.add_argument("--minibatch-envs", type=_positive_int, default=None, help="sequences per minibatch")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="run folder (config, metrics, checkpoints)")
    p.add_argument("--preset", default=None, help=f"published settings: {', '.join(PRESETS)}")
    p.add_argument("--resume", action="store_true", help="continue the run in --out to --iters in total")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (e.g. --set lr=1e-3 --set estimator_mode=entered)")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (needs tensorboardX)")
    p.add_argument("--wandb", default=None, metavar="PROJECT", help="also log to Weights & Biases")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop with a checkpoint at the first chunk boundary after this much wall time")
    g = p.add_argument_group("scaling (docs/SCALING.md)")
    g.add_argument("--devices", type=_positive_int, default=None,
                   help="devices per process to split the tasks over (default: all local devices)")
    g.add_argument("--seeds", type=_positive_int, default=1,
                   help="train K independent seeds (seed, seed+1, ...) as one vmapped population")
    g.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="vmapped sweep of a numeric hyper-parameter (lr, ent_coef, gae_lambda, "
                        "critic_weight_decay); repeat for a grid")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="multi-host: process 0's address (or JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=_positive_int, default=None,
                   help="multi-host: number of processes (or JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, help="multi-host: this process (or JAX_PROCESS_ID)")
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
        raise ValueError(f"--set {field.name}={raw}: expected true or false")
    for name, conv in (("int", int), ("float", float)):
        if typ.startswith(name):
            try:
                return conv(raw)
            except ValueError:
                raise ValueError(f"--set {field.name}={raw}: expected a {name}") from None
    return raw


def parse_sets(items: list[str]) -> dict:
    """``--set FIELD=VALUE`` items -> {field: typed value}; a clear error for a malformed item or unknown field."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in fields:
            raise ValueError(f"--set: unknown config field {k!r}; valid: {', '.join(fields)}")
        out[k] = _coerce(fields[k], v)
    return out


def config_from_args(args) -> TrainConfig:
    """Preset (or the laptop preset of the family, or the defaults), then flags, then ``--set`` overrides.

    With ``--resume`` the run's own config.json is the base and only what is given explicitly changes.
    """
    given = {k: v for k, v in {"env": args.env, "variant": args.variant, "algo": args.algo, "model": args.model,
                               "horizon": args.horizon, "iters": args.iters, "num_envs": args.num_envs,
                               "minibatch_envs": args.minibatch_envs, "seed": args.seed}.items() if v is not None}
    given.update(parse_sets(args.set))
    if args.resume and os.path.exists(os.path.join(args.out, "config.json")):
        from rl3jax.driver import load_run_config

        return load_run_config(args.out).replace(**given).validate()
    env = given.get("env", "mdp")
    if args.preset:
        base = preset(args.preset)
    elif f"cpu-{env}" in PRESETS:
        base = preset(f"cpu-{env}")
    else:
        base = {}
    base.update(given)
    return TrainConfig(**base).validate()


def cmd_train(args) -> int:
    from rl3jax import distributed

    # before anything touches a JAX backend
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id, auto=args.distributed)
    from rl3jax.driver import train
    from rl3jax.population import parse_sweep

    cfg = config_from_args(args)
    sweep = parse_sweep(args.sweep)
    mesh = distributed.make_mesh(args.devices)
    if distributed.mesh_size(mesh) == 1:
        mesh = None
    if distributed.is_main_process():
        pop = args.seeds
        for v in sweep.values():
            pop *= len(v)
        print(f"training {cfg.algo} ({cfg.model}) on {cfg.env}/{cfg.variant}: H={cfg.horizon}, {cfg.num_envs} tasks x "
              f"{cfg.iters} iterations = {cfg.iters * cfg.batch_steps:,} env steps"
              f"{f' x {pop} members' if pop > 1 else ''} on {distributed.describe(mesh)} -> {args.out}")
    train(cfg, args.out, resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard,
          wandb_project=args.wandb, mesh=mesh, seeds=args.seeds, sweep=sweep, max_seconds=args.max_seconds)
    return 0


def _add_eval(sub):
    p = sub.add_parser("eval", help="evaluate on held-out test tasks (one meta-episode each)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="a run folder written by `rl3jax train`")
    g.add_argument("--policy", choices=("random", "oracle"), help="a baseline policy instead of a run")
    p.add_argument("--env", default=None, help="with --policy: the task family")
    p.add_argument("--variant", default=None, help="test variant (e.g. an OOD one); default: the run's")
    p.add_argument("--horizon", type=_positive_int, default=None, help="with --policy: H")
    p.add_argument("--episodes", type=_positive_int, default=1000)
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    p.add_argument("--json", default=None, help="write the result as JSON here")


def cmd_eval(args) -> int:
    import jax

    from rl3jax.checkpoint import Checkpointer
    from rl3jax.driver import load_run_config
    from rl3jax.evaluate import evaluate
    from rl3jax.train import make_meta_env, make_train

    if args.run:
        if os.path.exists(os.path.join(args.run, "population.json")):
            names = sorted(d for d in os.listdir(args.run) if os.path.exists(os.path.join(args.run, d, "config.json")))
            raise ValueError(f"{args.run} holds a population (--seeds/--sweep); evaluate one member folder: "
                             f"{', '.join(os.path.join(args.run, n) for n in names)}")
        cfg = load_run_config(args.run)
        if args.variant:
            cfg = cfg.replace(variant=args.variant).validate()
        trainer = make_train(cfg)
        ckpt = Checkpointer(os.path.join(args.run, "checkpoints"))
        template = jax.jit(trainer.init)(jax.random.key(cfg.seed))
        state, meta = ckpt.restore(template)
        ckpt.close()
        res = evaluate(trainer.meta_env, "network", args.episodes, greedy=args.greedy,
                       params=state.actor_params, model=trainer.actor)
        policy, algo = ("greedy" if args.greedy else "stochastic"), cfg.algo
        iteration = int(state.iteration)
    else:
        if args.env is None or args.horizon is None:
            raise ValueError("--policy needs --env and --horizon")
        cfg = TrainConfig(env=args.env, variant=args.variant or "train", horizon=args.horizon, algo="rl2").validate()
        meta_env = make_meta_env(cfg)
        res = evaluate(meta_env, args.policy, args.episodes, greedy=args.greedy)
        policy, algo, iteration = args.policy, None, None
    out = {"env": cfg.env, "variant": cfg.variant, "algo": algo, "policy": policy, "horizon": cfg.horizon,
           "episodes": res["episodes"], "mean_return": res["mean_return"], "stderr": res["stderr"],
           "iteration": iteration, "run": args.run}
    print(f"{cfg.env}/{cfg.variant} H={cfg.horizon} {algo or ''} {policy}: "
          f"{res['mean_return']:.2f} ± {res['stderr']:.2f} over {res['episodes']} test tasks")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="end-to-end meta-training throughput")
    p.add_argument("--quick", action="store_true", help="small workloads (CPU smoke run)")
    p.add_argument("--json", default=None)
    p.add_argument("--only", default=None, help="comma-separated workload names")
    p.add_argument("--repeats", type=_positive_int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field in every workload (e.g. --set fused_update=false for an A/B)")
    p.add_argument("--scaling", action="store_true",
                   help="one workload at 1, 2, 4, 8 devices and with 1, 2, 4, 8 vmapped seeds (docs/SCALING.md)")
    p.add_argument("--cpu-devices", type=_positive_int, default=None,
                   help="fake this many CPU devices (to try --scaling on a machine without accelerators)")
    p.add_argument("--devices", default="1,2,4,8", help="with --scaling: device counts")
    p.add_argument("--seeds", default="1,2,4,8", help="with --scaling: numbers of vmapped seeds")


def cmd_bench(args) -> int:
    if args.cpu_devices:
        import jax

        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.scaling:
        from rl3jax.bench import bench_scaling

        ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
        bench_scaling(quick=args.quick, devices=ints(args.devices), seeds=ints(args.seeds), repeats=args.repeats,
                      json_path=args.json)
        return 0
    from rl3jax.bench import run_bench

    run_bench(quick=args.quick, json_path=args.json, only=args.only, repeats=args.repeats,
              overrides=parse_sets(args.set))
    return 0


def _add_render(sub):
    p = sub.add_parser("render", help="draw a trained agent's meta-episode on a held-out grid (GIF)")
    p.add_argument("--run", default=None)
    p.add_argument("--variant", default=None)
    p.add_argument("--episodes", type=_positive_int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--samples", action="store_true", help="a static PNG of sampled grids per variant instead")


def cmd_render(args) -> int:
    from rl3jax.render import render_cli

    return render_cli(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rl3jax", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_bench(sub)
    _add_render(sub)
    args = parser.parse_args(argv)
    from rl3jax.checkpoint import CheckpointError, CheckpointWriteError

    try:
        return {"train": cmd_train, "eval": cmd_eval, "bench": cmd_bench, "render": cmd_render}[args.command](args)
    except (FloatingPointError, CheckpointWriteError) as e:  # the run failed (diverged; disk full): exit 1
        print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, CheckpointError, FileNotFoundError) as e:
        print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a full or read-only disk while writing metrics: one line, exit 1
        print(f"rl3jax {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # training says which checkpoint (if any) is intact
        print(f"rl3jax {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
