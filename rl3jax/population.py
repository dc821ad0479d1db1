"""Seeds and hyper-parameter sweeps in one compile: a population of independent runs as a vmapped axis.

A single run is a population of one that keeps today's single-run program: ``Population(stacked=False)``,
whose state has no member axis (``trainer.init`` / ``trainer.chunk`` unchanged). ``rl3jax.driver.train`` runs
both through one host loop.

``--seeds K`` trains K runs with seeds ``seed, seed+1, ..., seed+K-1``; ``--sweep name=v1,v2,...`` (repeatable)
adds numeric hyper-parameter settings; the population is the product settings x seeds, member order: the
sweeps' values in the order given (the first sweep outermost), then the seeds. Every member is exactly the
run that ``rl3jax train`` would do alone with the member's config (same seed, same hyper-parameters): the
``TrainState`` gets a leading member axis, ``Trainer.iteration`` is vmapped over it and scanned over
iterations in one jitted chunk; nothing is averaged across members.

Sweepable (values that live in the state, so one compile serves every setting): the fields of
``config.HParams`` (``TrainState.hparams``: ``lr``, ``critic_weight_decay``, ``ent_coef``, ``gae_lambda``).
Anything that changes shapes or code (H, num_envs, model, epochs) needs separate runs.

Run folder layout (``out``): ``population.json`` (base config, seeds, sweep, member list), ``config.json`` (the
base config) and one folder per member, named ``seed{S}`` or ``seed{S}-{name}{value}...`` (e.g.
``seed0-lr0.001``), each a complete, ordinary run folder: the member's own ``config.json``, ``metrics.jsonl``
/ ``metrics.csv`` and ``checkpoints/`` (the member's unstacked ``TrainState``). So ``rl3jax eval --run
out/seed1`` works unchanged, and ``rl3jax train --resume --out out`` resumes the whole population.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax import distributed
from rl3jax.config import HParams, TrainConfig
from rl3jax.train import Trainer, TrainState, make_train


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of a population: its position, seed and swept values."""

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


def make_members(cfg: TrainConfig, seeds: int = 1, sweep: dict[str, list[float]] | None = None) -> list[Member]:
    """The members of ``seeds`` seeds x the ``sweep``'s settings (order: module docstring). ValueError for
    ``seeds`` < 1, a name that is no config field, or a member config that is invalid (e.g. lr <= 0)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    sweep = sweep or {}
    names = list(sweep)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if name not in fields:
            raise ValueError(f"--sweep {name}: not a config field (sweepable: {', '.join(HParams._fields)})")
    members = []
    for combo in itertools.product(*[sweep[n] for n in names]):
        for i in range(seeds):
            members.append(Member(len(members), cfg.seed + i, tuple(zip(names, combo))))
    for m in members:
        m.config(cfg)  # a TrainConfig validates itself: e.g. lr <= 0, gae_lambda > 1
    return members


@dataclasses.dataclass(frozen=True)
class Population:
    """Pure functions over a population ``TrainState`` (every leaf has a leading member axis), or, with
    ``stacked=False``, over a single run's ``TrainState`` (one member, no member axis, the trainer's own
    ``init`` and ``chunk``)."""

    trainer: Trainer
    members: tuple[Member, ...]
    stacked: bool = True

    def __post_init__(self):
        if not self.stacked and (len(self.members) != 1 or self.members[0].settings):
            raise ValueError("an unstacked population is a single run: one member, no sweep")
        for name, _ in self.members[0].settings:
            if name not in HParams._fields:
                raise ValueError(f"--sweep {name}: not sweepable in one compile; sweepable: "
                                 f"{', '.join(HParams._fields)} "
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
        """``state`` (stacked) with each member's swept values in ``state.hparams`` (float32)."""
        swept = {name: jnp.asarray([dict(m.settings)[name] for m in self.members], jnp.float32)
                 for name, _ in self.members[0].settings}
        return state.replace(hparams=state.hparams._replace(**swept))

    def chunk(self, state: TrainState, num_iters: int):
        """``num_iters`` iterations of every member in one scan; metrics of shape (num_iters, members)
        (unstacked: the trainer's chunk, metrics of shape (num_iters,))."""
        if not self.stacked:
            return self.trainer.chunk(state, num_iters)
        if self.size == 1:  # no vmap: keeps lax.cond (the KL early stop) a real branch
            def step(s):
                new, metrics = self.trainer.iteration(jax.tree.map(lambda x: x[0], s))
                return jax.tree.map(lambda x: x[None], (new, metrics))
        else:  # under vmap the early stop's cond becomes a select: both branches run
            step = jax.vmap(self.trainer.iteration)
        return jax.lax.scan(lambda s, _: step(s), state, None, length=num_iters)

    def init_state(self) -> TrainState:
        """The initial state, jitted into the training shardings of the trainer's mesh (None: one device).
        Unstacked: ``trainer.init(jax.random.key(seed))``, the single run's program."""
        cfg = self.trainer.cfg
        if not self.stacked:
            return distributed.init_sharded(self.trainer.init, self.trainer.mesh, cfg.num_envs,
                                            seed=self.members[0].seed)
        return distributed.init_sharded(self.init, self.trainer.mesh, cfg.num_envs, pop_dims=1)

    def member(self, tree, i: int):
        """Member ``i``'s part of a population pytree (a state, its params): the leaves' index ``i`` on the
        member axis; unstacked: ``tree`` itself."""
        return member_state(tree, i) if self.stacked else tree

    def stack(self, states: list[TrainState]) -> TrainState:
        """The population state of the members' states (in the training shardings); unstacked: the one state."""
        if not self.stacked:
            return states[0]
        fn = lambda ms: jax.tree.map(lambda *xs: jnp.stack(xs), *ms)  # noqa: E731
        return distributed.jit_state(fn, self.trainer.mesh, self.trainer.cfg.num_envs, pop_dims=1)(states)

    def member_metrics(self, metrics: dict) -> dict[str, np.ndarray]:
        """Host metrics of a chunk with the member axis last: each (num_iters, members)."""
        return {k: np.asarray(v).reshape(len(v), -1) for k, v in metrics.items()}


def member_state(state, i: int):
    """Member ``i`` of a stacked population state or pytree (for a state: an ordinary ``TrainState``)."""
    return jax.tree.map(lambda x: x[i], state)


def make_population(cfg: TrainConfig, seeds: int = 1, sweep: dict | None = None, mesh=None,
                    stacked: bool = True) -> Population:
    """The population of ``seeds`` seeds x ``sweep`` settings of ``cfg`` on ``mesh`` (``rl3jax.distributed``;
    None: one device). ``stacked=False``: the single run of ``cfg`` (``seeds`` 1, no sweep). ValueError for a
    sweep name that is not sweepable or a member config that is invalid."""
    return Population(make_train(cfg, mesh), tuple(make_members(cfg, seeds, sweep)), stacked)


def jit_chunk(pop: Population):
    """The jitted chunk ``(state, num_iters) -> (state, metrics)`` (num_iters static, state donated) in the
    trainer's mesh's shardings; for an unstacked population the single run's (``Trainer.chunk``)."""
    return distributed.sharded_chunk(pop.chunk, pop.trainer.mesh, pop.trainer.cfg.num_envs,
                                     pop_dims=1 if pop.stacked else 0)
