"""Seeds and hyper-parameter sweeps in one compile: a population of independent runs as a vmapped member axis
in front of every leaf of a ``TrainState``. A single run is a population of one, which skips ``vmap``.

``--seeds K`` trains seeds ``seed .. seed+K-1``; ``--sweep name=v1,v2,...`` (the ``config.HParams`` fields)
adds settings (or, from Python, a list of settings, e.g. Optuna's trials); members are the settings x seeds (first sweep outermost, seeds innermost), each the run
``rl3jax train`` would do alone with the member's config, in its own run folder ``seed{S}[-{name}{value}...]``.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax import distributed
from rl3jax.config import HParams, TrainConfig
from rl3jax.trainer import Trainer, TrainState, make_train


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


def make_members(cfg: TrainConfig, seeds: int = 1, sweep: dict[str, list[float]] | list[dict] | None = None
                 ) -> list[Member]:
    """The members of ``seeds`` seeds x the ``sweep``'s settings (order: module docstring): {name: [values]}
    (their product) or a list of {name: value} settings with the same names (one setting each, as the trials of
    ``rl3jax sweep optuna``). ValueError for ``seeds`` < 1, a name that is not a ``config.HParams`` field, two
    members of one name, or a member config that is invalid (lr <= 0)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    sweep = sweep or {}
    settings = [tuple(s.items()) for s in sweep] if isinstance(sweep, list) else \
        [tuple(zip(sweep, combo)) for combo in itertools.product(*sweep.values())]
    for name in sorted(set(sweep) if isinstance(sweep, dict) else {k for s in sweep for k in s}):
        if name not in HParams._fields:
            raise ValueError(f"--sweep {name}: not sweepable in one compile; sweepable: {', '.join(HParams._fields)}"
                             " (other settings change shapes or code: use separate runs)")
    if len({tuple(k for k, _ in s) for s in settings}) > 1:
        raise ValueError(f"the members' settings must have the same names, got {[dict(s) for s in settings]}")
    members = [Member(k, cfg.seed + i, s) for k, (s, i) in enumerate((s, i) for s in settings for i in range(seeds))]
    if len({m.name for m in members}) < len(members):
        raise ValueError(f"members of the same name (settings equal to 6 digits): {[m.name for m in members]}")
    for m in members:
        m.config(cfg)  # a TrainConfig validates itself: e.g. lr <= 0, gae_lambda > 1
    return members


@dataclasses.dataclass(frozen=True)
class Population:
    """Pure functions over a population ``TrainState`` (a leading member axis of ``size`` on every leaf)."""

    trainer: Trainer
    members: tuple[Member, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def single(self) -> bool:
        """A single run (one member, nothing swept): its run folder is the member's own, no population.json."""
        return self.size == 1 and not self.members[0].settings

    def chunk(self, state: TrainState, num_iters: int):
        """``num_iters`` iterations of every member in one scan; metrics of shape (num_iters, members)."""
        if self.size == 1:  # no vmap: the single run's own program (lax.cond, the KL early stop, stays a branch)
            new, metrics = self.trainer.chunk(member_state(state, 0), num_iters)
            return _add_axis(new), jax.tree.map(lambda x: x[:, None], metrics)
        # under vmap the early stop's cond becomes a select: both branches run
        return jax.lax.scan(lambda s, _: jax.vmap(self.trainer.iteration)(s), state, None, length=num_iters)

    def init_state(self) -> TrainState:
        """Each member's ``trainer.init(jax.random.key(seed))`` with its swept values in ``state.hparams``
        (float32), jitted into the training shardings of the trainer's mesh (None: one device). A population of
        one runs the single run's program, then adds the axis."""
        cfg, mesh = self.trainer.cfg, self.trainer.mesh

        def swept(state):
            return state.replace(hparams=state.hparams._replace(**{
                name: jnp.asarray([dict(m.settings)[name] for m in self.members], jnp.float32)
                for name, _ in self.members[0].settings}))

        if self.size == 1:
            one = distributed.init_sharded(self.trainer.init, mesh, cfg.num_envs, seed=self.members[0].seed)
            return distributed.jit_state(lambda s: swept(_add_axis(s)), mesh, cfg.num_envs, pop_dims=1)(one)

        def init():  # no arguments, so it jits into any sharding, multi-host too
            with jax.ensure_compile_time_eval():  # constants, also while tracing
                data = np.stack([np.asarray(jax.random.key_data(jax.random.key(m.seed))) for m in self.members])
            # lax.map, not vmap: a vmapped init batches the orthogonal initialisers' QR factorisations, and
            # jaxlib's batched CPU LAPACK kernel deadlocked on a 2-core machine with the GRU (both pool threads
            # waiting in ParallelBatchMap). Each member's init is then the same program as a separate run's.
            return swept(jax.lax.map(self.trainer.init, jax.random.wrap_key_data(jnp.asarray(data))))

        return distributed.init_sharded(init, mesh, cfg.num_envs, pop_dims=1)

    def stack(self, states: list[TrainState]) -> TrainState:
        """The population state of the members' states (e.g. restored checkpoints), in the training shardings."""
        fn = lambda ms: jax.tree.map(lambda *xs: jnp.stack(xs), *ms)  # noqa: E731
        return distributed.jit_state(fn, self.trainer.mesh, self.trainer.cfg.num_envs, pop_dims=1)(states)


def member_state(state, i: int):
    """Member ``i`` of a population state or pytree (for a state: an ordinary ``TrainState``)."""
    return jax.tree.map(lambda x: x[i], state)


def _add_axis(tree):
    """``tree`` as a population of one (a member axis of length 1 in front of every leaf)."""
    return jax.tree.map(lambda x: x[None], tree)


def make_population(cfg: TrainConfig, seeds: int = 1, sweep: dict | None = None, mesh=None) -> Population:
    """The population of ``seeds`` seeds x ``sweep`` settings of ``cfg`` on ``mesh`` (None: one device);
    ``make_members``'s ValueErrors."""
    return Population(make_train(cfg, mesh), tuple(make_members(cfg, seeds, sweep)))


def jit_chunk(pop: Population):
    """The jitted chunk ``(state, num_iters) -> (state, metrics)`` (num_iters static, state donated) in the
    trainer's mesh's shardings."""
    return distributed.sharded_chunk(pop.chunk, pop.trainer.mesh, pop.trainer.cfg.num_envs, pop_dims=1)
