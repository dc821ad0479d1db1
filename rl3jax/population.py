"""Seeds and hyper-parameter sweeps in one compile: a population of independent runs as a vmapped axis.

``--seeds K`` trains K runs with seeds ``seed, seed+1, ..., seed+K-1``; ``--sweep name=v1,v2,...`` (repeatable)
adds numeric hyper-parameter settings; the population is the product settings x seeds, member order: the
sweeps' values in the order given (the first sweep outermost), then the seeds. Every member is exactly the
run that ``rl3jax train`` would do alone with the member's config (same seed, same hyper-parameters): the
``TrainState`` gets a leading member axis, ``Trainer.iteration`` is vmapped over it and scanned over
iterations in one jitted chunk; nothing is averaged across members.

Sweepable (values that live in the state, so one compile serves every setting): ``lr`` (actor and critic,
the ``learning_rate`` of the ``optax.inject_hyperparams`` optimiser states), ``critic_weight_decay``
(the critic optimiser's ``weight_decay``), and every entry of ``TrainState.hparams`` (``ent_coef``,
``gae_lambda``, ...). Anything that changes shapes or code (H, num_envs, model, epochs) needs separate runs.

Run folder layout (``out``): ``population.json`` (base config, seeds, sweep, member list), ``config.json`` (the
base config) and one folder per member, named ``seed{S}`` or ``seed{S}-{name}{value}...`` (e.g.
``seed0-lr0.001``), each a complete, ordinary run folder: the member's own ``config.json``, ``metrics.jsonl``
/ ``metrics.csv`` and ``checkpoints/`` (the member's unstacked ``TrainState``). So ``rl3jax eval --run
out/seed1`` works unchanged, and ``rl3jax train --resume --out out`` resumes the whole population.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax import distributed
from rl3jax.checkpoint import Checkpointer, CheckpointError
from rl3jax.config import TrainConfig
from rl3jax.train import Trainer, TrainState, make_train

#: sweepable names stored in the optimiser states (name -> [(optimiser field, hyper-parameter key)])
OPT_HPARAMS = {"lr": [("actor_opt", "learning_rate"), ("critic_opt", "learning_rate")],
               "critic_weight_decay": [("critic_opt", "weight_decay")]}


@dataclasses.dataclass(frozen=True)
class Member:
    index: int
    seed: int
    settings: tuple[tuple[str, float], ...]  # (name, value) of the swept hyper-parameters

    @property
    def name(self) -> str:
        return f"seed{self.seed}" + "".join(f"-{k}{v:g}" for k, v in self.settings)

    def config(self, base: TrainConfig) -> TrainConfig:
        """The config of the equivalent stand-alone run."""
        return base.replace(seed=self.seed, **dict(self.settings))

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "seed": self.seed, "settings": dict(self.settings)}


def parse_sweep(items: list[str] | None) -> dict[str, list[float]]:
    """``["lr=1e-3,3e-4", "ent_coef=0,0.01"]`` -> ``{"lr": [1e-3, 3e-4], "ent_coef": [0.0, 0.01]}``."""
    out: dict[str, list[float]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--sweep expects NAME=V1,V2,..., got {item!r}")
        name, raw = item.split("=", 1)
        name = name.strip().replace("-", "_")
        if name in out:
            raise ValueError(f"--sweep {name} given twice")
        try:
            values = [float(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sweep {name}: values must be numbers, got {raw!r}") from None
        if not values:
            raise ValueError(f"--sweep {name}: no values")
        if len(set(values)) != len(values):
            raise ValueError(f"--sweep {name}: repeated values {values}")
        out[name] = values
    return out


def sweepable(trainer: Trainer) -> tuple[str, ...]:
    hp = jax.eval_shape(trainer.init, jax.random.key(0)).hparams
    return tuple(OPT_HPARAMS) + tuple(k for k in hp if k not in OPT_HPARAMS)


def make_members(cfg: TrainConfig, seeds: int = 1, sweep: dict[str, list[float]] | None = None) -> list[Member]:
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    sweep = sweep or {}
    names = list(sweep)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if name not in fields:
            raise ValueError(f"--sweep {name}: not a config field (sweepable: lr, ent_coef, gae_lambda, "
                             "critic_weight_decay)")
    members = []
    for combo in itertools.product(*[sweep[n] for n in names]):
        for i in range(seeds):
            members.append(Member(len(members), cfg.seed + i, tuple(zip(names, combo))))
    for m in members:
        m.config(cfg).validate()  # e.g. lr <= 0, gae_lambda > 1
    return members


def member_state(state: TrainState, i: int) -> TrainState:
    """Member ``i`` of a population state (an ordinary ``TrainState``)."""
    return jax.tree.map(lambda x: x[i], state)


@dataclasses.dataclass(frozen=True)
class Population:
    """Pure functions over a population ``TrainState`` (every leaf has a leading member axis)."""

    trainer: Trainer
    members: tuple[Member, ...]

    def __post_init__(self):
        allowed = sweepable(self.trainer)
        for name, _ in self.members[0].settings:
            if name not in allowed:
                raise ValueError(f"--sweep {name}: not sweepable in one compile; sweepable: {', '.join(allowed)} "
                                 "(other settings change shapes or code: use separate runs)")

    @property
    def size(self) -> int:
        return len(self.members)

    def _key_data(self) -> np.ndarray:
        with jax.ensure_compile_time_eval():  # constants, also while tracing
            return np.stack([np.asarray(jax.random.key_data(jax.random.key(m.seed))) for m in self.members])

    def init(self) -> TrainState:
        """Each member's ``trainer.init(jax.random.key(seed))``, stacked, with its swept values set.

        Takes no arguments (seeds and values are constants), so it jits into any sharding, multi-host too.
        """
        keys = jax.random.wrap_key_data(jnp.asarray(self._key_data()))
        # lax.map, not vmap: a vmapped init batches the orthogonal initialisers' QR factorisations, and
        # jaxlib's batched CPU LAPACK kernel deadlocked on a 2-core machine with the GRU (both pool threads
        # waiting in ParallelBatchMap). Each member's init is then the same program as a separate run's.
        state = jax.lax.map(self.trainer.init, keys)
        return self.apply_settings(state)

    def apply_settings(self, state: TrainState) -> TrainState:
        names = [n for n, _ in self.members[0].settings]
        for name in names:
            values = jnp.asarray([dict(m.settings)[name] for m in self.members], jnp.float32)
            if name in OPT_HPARAMS:
                for field, key in OPT_HPARAMS[name]:
                    opt = getattr(state, field)
                    hp = dict(opt.hyperparams)
                    hp[key] = values.astype(hp[key].dtype)
                    state = state.replace(**{field: opt._replace(hyperparams=hp)})
            else:
                hp = dict(state.hparams)
                hp[name] = values.astype(hp[name].dtype)
                state = state.replace(hparams=hp)
        return state

    def chunk(self, state: TrainState, num_iters: int):
        """``num_iters`` iterations of every member in one scan; metrics of shape (num_iters, members)."""
        if self.size == 1:  # no vmap: keeps lax.cond (the KL early stop) a real branch
            def step(s):
                new, metrics = self.trainer.iteration(jax.tree.map(lambda x: x[0], s))
                return jax.tree.map(lambda x: x[None], (new, metrics))
        else:  # under vmap the early stop's cond becomes a select: both branches run
            step = jax.vmap(self.trainer.iteration)
        return jax.lax.scan(lambda s, _: step(s), state, None, length=num_iters)


def make_population(cfg: TrainConfig, seeds: int = 1, sweep: dict | None = None, mesh=None) -> Population:
    return Population(make_train(cfg, mesh), tuple(make_members(cfg, seeds, sweep)))


def init_state(pop: Population) -> TrainState:
    mesh = pop.trainer.mesh
    if mesh is None:
        return jax.jit(pop.init)()
    return distributed.init_sharded(pop.init, mesh, pop.trainer.cfg.num_envs, pop_dims=1)


def jit_chunk(pop: Population):
    mesh = pop.trainer.mesh
    if mesh is None:
        return jax.jit(pop.chunk, static_argnums=1, donate_argnums=0)
    return distributed.sharded_chunk(pop.chunk, mesh, pop.trainer.cfg.num_envs, pop_dims=1)


def _stack(states: list, like: TrainState, mesh, num_envs: int) -> TrainState:
    fn = lambda ms: jax.tree.map(lambda *xs: jnp.stack(xs), *ms)  # noqa: E731
    if mesh is None:
        return jax.jit(fn)(states)
    sh = distributed.state_shardings(like, mesh, num_envs, pop_dims=1)
    return jax.jit(fn, out_shardings=sh)(states)


# ---------------------------------------------------------------------------------------- the driver
def _read_spec(out: str) -> dict:
    path = os.path.join(out, "population.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{out} holds no population run (no population.json)")
    with open(path) as f:
        return json.load(f)


def train_population(cfg: TrainConfig, out: str, seeds: int = 1, sweep: dict | None = None, resume: bool = False,
                     progress: bool = True, tensorboard: bool = False, wandb_project: str | None = None,
                     quiet: bool = False, mesh=None, max_seconds: float | None = None):
    """Trains every member to ``cfg.iters`` iterations; returns (population state, {member: last metrics}).

    ``max_seconds``: stop (with checkpoints) at the first chunk boundary after that much wall time."""
    from rl3jax.driver import (
        FINITE,
        ChunkLoop,
        ExternalLoggers,
        HeldOutEvaluator,
        MetricsLog,
        NullLog,
        Progress,
        _atomic_write_json,
        check_resume,
        divergence,
        first_nonfinite,
        report_command,
    )

    cfg.validate()
    main = distributed.is_main_process()
    quiet = quiet or not main
    spec_path = os.path.join(out, "population.json")
    if resume:
        spec = _read_spec(out)
        check_resume(TrainConfig.from_dict(spec["config"]), cfg, "population.json")
        if (seeds != 1 or sweep) and (seeds != spec["seeds"] or (sweep or {}) != spec["sweep"]):
            raise ValueError(f"--resume with --seeds/--sweep that differ from the run's (seeds {spec['seeds']}, "
                             f"sweep {spec['sweep']})")
        seeds, sweep = spec["seeds"], spec["sweep"]
    elif os.path.exists(spec_path) or os.path.exists(os.path.join(out, "config.json")):
        raise ValueError(f"run folder {out} already holds a run; pass --resume to continue it or choose another --out")
    pop = make_population(cfg, seeds, sweep, mesh)
    members = pop.members
    dirs = [os.path.join(out, m.name) for m in members]
    distributed.barrier("rl3jax-population-checked")
    if main:
        for m, d in zip(members, dirs):
            os.makedirs(d, exist_ok=True)
            _atomic_write_json(os.path.join(d, "config.json"), m.config(cfg).to_dict())
        _atomic_write_json(os.path.join(out, "config.json"), cfg.to_dict())
        _atomic_write_json(spec_path, {"config": cfg.to_dict(), "seeds": seeds, "sweep": sweep or {},
                                       "members": [m.to_dict() for m in members]})
    distributed.barrier("rl3jax-population-written")

    state = init_state(pop)
    ckpts = [Checkpointer(os.path.join(d, "checkpoints"), keep=cfg.keep_checkpoints, write=True) for d in dirs]
    start = 0
    if resume and all(c.latest_step() is None for c in ckpts):
        if not quiet:
            print(f"{out} has no checkpoint yet (stopped before the first one): starting it again from "
                  "iteration 0 with its population.json")
    elif resume:
        restored, steps = [], set()
        for i, c in enumerate(ckpts):
            st, _ = c.restore(member_state(state, i))
            restored.append(st)
            steps.add(int(st.iteration))
        if len(steps) != 1:
            raise CheckpointError(f"the members' latest checkpoints are at different iterations {sorted(steps)}")
        state = _stack(restored, state, mesh, cfg.num_envs)
        start = steps.pop()
        if not quiet:
            print(f"resumed population {out} ({len(members)} members) at iteration {start}")
    logs = [MetricsLog(d, start) if main else NullLog() for d in dirs]
    ext = ExternalLoggers(out, cfg, tensorboard and main, wandb_project if main else None)
    chunk_fn = jit_chunk(pop)
    bar = Progress(cfg.iters, start, progress and not quiet)
    lasts: dict[str, dict] = {}

    def on_chunk(it, n, metrics, dt, evals):  # metrics: each (n, members); evals: one dict per member
        bad = first_nonfinite(metrics, n)  # any member: a non-finite member state is never checkpointed
        if bad is not None:
            flags = np.asarray(metrics[FINITE])[bad]
            who = ", ".join(m.name for m, f in zip(members, flags) if not f > 0.5)
            raise divergence(metrics, it, bad, os.path.join(dirs[0], "checkpoints"), who=f" (member {who})")
        metrics = {k: v for k, v in metrics.items() if k != FINITE}
        sps = n * cfg.batch_steps * len(members) / dt  # all members together
        combined = []
        for j, (m, log) in enumerate(zip(members, logs)):
            rows = []
            for i in range(n):
                row = {"iteration": it + i + 1, "env_steps": (it + i + 1) * cfg.batch_steps}
                row.update({k: float(v[i, j]) for k, v in metrics.items()})
                row["steps_per_second"] = sps / len(members)
                rows.append(row)
            if evals is not None:
                rows[-1].update(evals[j])
            log.append(rows)
            lasts[m.name] = rows[-1]
            for i, r in enumerate(rows):
                if j == 0:
                    combined.append({"env_steps": r["env_steps"]})
                combined[i].update({f"{m.name}/{k}": v for k, v in r.items() if k != "env_steps"})
        for r in combined:
            ext.log(r)
        it += n
        rets = [r["return_mean"] for r in lasts.values() if math.isfinite(r["return_mean"])]
        bar.update(it, n, dt, dict(sps=f"{sps:,.0f}", ret_mean=f"{np.mean(rets):.2f}", ret_best=f"{np.max(rets):.2f}"))

    def save(it, state):
        for i, (m, c) in enumerate(zip(members, ckpts)):
            c.save(it, member_state(state, i), {"iteration": it, "env_steps": it * cfg.batch_steps,
                                                "return_mean": lasts[m.name]["return_mean"], "member": m.to_dict()})

    evaluate = None
    if cfg.eval_every:  # one compiled evaluation for every member (same shapes), each member's own params
        evaluator = HeldOutEvaluator(pop.trainer.meta_env, pop.trainer.actor, cfg.eval_episodes)

        def evaluate(it, st):
            params = jax.device_get(st.actor_params)
            return [evaluator.row_fields(jax.tree.map(lambda x, j=j: x[j], params)) for j in range(len(members))]

    loop = ChunkLoop(cfg, start, max_seconds, evaluate=evaluate)
    try:
        state = loop.run(chunk_fn, state, on_chunk, save)
    finally:
        bar.close()
        for c in ckpts:
            c.close()
        ext.close()
    if not quiet and lasts:
        print(f"done: {len(members)} members x {loop.it} iterations "
              f"({loop.it * cfg.batch_steps * len(members):,} env steps; {loop.timing()})")
        for name, r in lasts.items():
            print(f"  {name:24s} return {r['return_mean']:.2f}")
        print(f"report: {report_command(out)}")
    return state, lasts
