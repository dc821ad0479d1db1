"""What environments exist, answered without importing JAX: one ``FamilySpec`` per task family, and gymnax's table.

``rl3jax.config`` checks a command line against it before JAX starts (tests/system/test_cli_validation.py checks that no
JAX is imported on that path); ``rl3jax.envs.registry.make_env`` builds a family from its spec's entry point.
Adding a family is one module plus one ``FAMILIES`` entry (tests/envs/test_registry.py checks each spec against its hooks).

The gymnax envs rl3jax can serve (discrete actions, one task per meta-episode, RL² only:
``rl3jax.envs.gymnax_bridge``) are env names too. ``GYMNAX_ENVS`` classifies every name of
``gymnax.registered_envs`` (tests/envs/test_gymnax_bridge.py keeps it complete): ``fixed`` (its reset draws only the
start state; the task is the env's params), ``task`` (the state fields its reset draws as the task), or
``refused`` with the reason (continuous actions; data downloaded at creation).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

#: the object-level semantics every tabular family has (METHOD §2, §2.4); 'v4' is listed per family
SEMANTICS_ALL = ("fresh", "rlc")


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """One task family, described once (METHOD §3, §6).

    ``entry``: ``"module:callable"`` (or, for a family registered from Python, the callable itself) that
    ``rl3jax.envs.registry.make_env`` calls as ``entry(variant=v, **kwargs)`` to get a ``TaskEnv``;
    ``variants``: variant names, the first the training distribution, the others out of distribution;
    ``horizon``: the published meta-episode length H (steps), the default of a run without a preset;
    ``algos``: the algorithms that apply (``config.ALGOS``: rl2 always, rl3 with the ``rl3_defaults`` hook,
    rl3_coarse with a ``grid_side``); ``semantics``: the estimator semantics that apply (``config.SEMANTICS``:
    'v4' with the ``v4_defaults`` hook; none for an RL²-only family).
    """

    entry: str | Callable
    variants: tuple[str, ...]
    horizon: int = 100
    algos: tuple[str, ...] = ("rl2", "rl3")
    semantics: tuple[str, ...] = SEMANTICS_ALL
    kwargs: dict = dataclasses.field(default_factory=dict)


#: the grid worlds' entry point (``rl3jax.envs.grid``; ``is_grid``)
GRID_ENTRY = "rl3jax.envs.grid:make_grid"
#: family name -> its spec; ``rl3jax.envs.registry.register`` adds users' own families
FAMILIES: dict[str, FamilySpec] = {
    "bandit": FamilySpec("rl3jax.envs.bandit:BernoulliBandit", ("train", "ood"),
                         semantics=SEMANTICS_ALL + ("v4",)),
    "mdp": FamilySpec("rl3jax.envs.mdp:RandomMDP", ("train", "alpha0.25", "det-rewards"),
                      semantics=SEMANTICS_ALL + ("v4",)),
    # sizes as variants, 'train' the smallest (S = 64; N = 10): ``rl3jax.envs.garnet.SIZES``, ``deepsea.SIZES``;
    # H = 300 for deepsea: 30 task episodes of N = 10 steps (the reason: ``rl3jax.envs.deepsea.DeepSea``)
    "garnet": FamilySpec("rl3jax.envs.garnet:GarnetMDP", ("train", "s256", "s1024", "s4096", "branch10")),
    "deepsea": FamilySpec("rl3jax.envs.deepsea:DeepSea", ("train", "n20", "n30"), 300),
    # grids have no task horizon of their own: H is also their TH; the variants' meaning is
    # ``rl3jax.envs.grid_generation.GRID_FAMILIES``
    "grid11": FamilySpec(GRID_ENTRY, ("train",), 250, ("rl2", "rl3", "rl3_coarse"),
                         semantics=SEMANTICS_ALL + ("v4",), kwargs={"family": "grid11"}),
    "grid13": FamilySpec(GRID_ENTRY,
                         ("train", "dense", "deterministic", "watery", "dangerous", "corner"), 350,
                         ("rl2", "rl3", "rl3_coarse"), semantics=SEMANTICS_ALL + ("v4",),
                         kwargs={"family": "grid13"}),
}

CONTINUOUS = "its action space is continuous (a Box); rl3jax's policies are categorical over discrete actions"


@dataclasses.dataclass(frozen=True)
class GymnaxSpec:
    """How rl3jax serves one gymnax env."""

    kind: str  # "fixed" | "task" | "refused"
    task_fields: tuple[str, ...] = ()  # kind "task": the EnvState fields its reset draws as the task
    reason: str = ""  # kind "refused": why
    constant: str = ""  # served, but every policy's meta-episode return is the same: why (``config.notes`` warns)


_fixed = functools.partial(GymnaxSpec, "fixed")
_refused = functools.partial(GymnaxSpec, "refused", ())


def _task(*fields: str) -> GymnaxSpec:
    return GymnaxSpec("task", fields)


#: every gymnax env (gymnax 0.0.9 / 1.0 registry) -> how rl3jax serves it
GYMNAX_ENVS: dict[str, GymnaxSpec] = {
    "CartPole-v1": _fixed(constant="every step pays +1, a fall only starts the next task episode: the return is H"),
    "Pendulum-v1": _refused(CONTINUOUS),
    "Acrobot-v1": _fixed(),
    "MountainCar-v0": _fixed(constant="every step pays -1, the goal included: the return is -H"),
    "MountainCarContinuous-v0": _refused(CONTINUOUS),
    "Asterix-MinAtar": _fixed(),
    "Breakout-MinAtar": _fixed(),
    "Freeway-MinAtar": _fixed(),
    "Seaquest-MinAtar": _fixed(),
    "SpaceInvaders-MinAtar": _fixed(),
    "Catch-bsuite": _fixed(),
    "DeepSea-bsuite": _task("action_mapping"),
    "MemoryChain-bsuite": _task("context", "query"),
    "UmbrellaChain-bsuite": _task("need_umbrella"),
    "DiscountingChain-bsuite": _fixed(),
    "MNISTBandit-bsuite": _refused("creating it downloads the MNIST data set (and fails without a network); "
                                   "rl3jax does not fetch data"),
    "SimpleBandit-bsuite": _task("rewards"),
    "FourRooms-misc": _task("goal"),
    "MetaMaze-misc": _task("goal"),
    "PointRobot-misc": _refused(CONTINUOUS),
    "BernoulliBandit-misc": _task("reward_probs", "exp_reward_best"),
    "GaussianBandit-misc": _task("mu"),
    "Reacher-misc": _refused(CONTINUOUS),
    "Swimmer-misc": _refused(CONTINUOUS),
    "Pong-misc": _fixed(),
    "FrozenLake-misc": _fixed(),
}


def check_gymnax_name(name: str) -> GymnaxSpec:
    """The spec of gymnax env ``name``; ValueError naming the env and the reason when rl3jax cannot serve it."""
    spec = GYMNAX_ENVS.get(name)
    if spec is None:
        raise ValueError(f"gymnax env {name!r} is not classified by rl3jax (rl3jax.envs.catalog.GYMNAX_ENVS says "
                         "which of its state fields are the task); not supported")
    if spec.kind == "refused":
        raise ValueError(f"gymnax env {name!r} is not supported: {spec.reason}")
    return spec


def is_grid(name: str) -> bool:
    """Whether env ``name`` is a grid world (built by ``rl3jax.envs.grid``: what ``rl3jax render`` draws)."""
    return name in FAMILIES and FAMILIES[name].entry == GRID_ENTRY


def is_gymnax(name: str) -> bool:
    """Whether ``name`` is a gymnax env (served or refused) rather than an rl3jax task family."""
    return name not in FAMILIES and name in GYMNAX_ENVS


def check_env(name: str) -> tuple[str, ...]:
    """The variants of env ``name``; ValueError for an unknown name or a gymnax env rl3jax cannot serve."""
    if name in FAMILIES:
        return FAMILIES[name].variants
    if name in GYMNAX_ENVS:
        check_gymnax_name(name)
        return ("train",)
    supported = [n for n, s in GYMNAX_ENVS.items() if s.kind != "refused"]
    raise ValueError(f"unknown env {name!r}; valid: {', '.join(sorted(FAMILIES))} "
                     f"or a gymnax env ({', '.join(supported)})")


#: the variant names of env ``name`` (ValueError for an unknown or unsupported env)
variants = check_env


def check_variant(name: str, variant: str | None) -> str:
    """``variant`` of env ``name`` ('train' for None), or ValueError listing the valid ones."""
    variant = variant or "train"
    names = check_env(name)
    if variant not in names:
        if name in FAMILIES:
            raise ValueError(f"unknown variant {variant!r} for env {name!r}; valid variants: {', '.join(names)}")
        raise ValueError(f"gymnax env {name!r} has no variants (got {variant!r})")
    return variant


def spec(name: str) -> FamilySpec:
    """The spec of env ``name``: its ``FAMILIES`` entry, or for a served gymnax env an RL²-only spec built by
    ``rl3jax.envs.gymnax_bridge.make_bridged``. ValueError as ``check_env``."""
    check_env(name)
    if name in FAMILIES:
        return FAMILIES[name]
    return FamilySpec("rl3jax.envs.gymnax_bridge:make_bridged", ("train",), algos=("rl2",), semantics=(),
                      kwargs={"name": name})
