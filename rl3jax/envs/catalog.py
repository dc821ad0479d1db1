"""What environments exist, answered without importing JAX: family names, variants, gymnax's table.

``rl3jax.config`` validates a command line against this module before JAX starts (a config error costs about
0.2 s; tests/test_cli_validation.py checks that no JAX is imported on that path). The families themselves
(JAX code) are built by ``rl3jax.envs.registry.make_env``, which checks at import that its families and their
variants are exactly the ones named here.

Names are rl3jax's own task families (``FAMILIES``: name -> variant names, the first the training
distribution) plus the environments registered with gymnax that rl3jax can serve (``GYMNAX_ENVS``: discrete
actions, one task per meta-episode; RL² only, see ``rl3jax.envs.gymnax_bridge``). Every name in
``gymnax.registered_envs`` has an entry in ``GYMNAX_ENVS`` (tests/test_gymnax_bridge.py keeps it complete):
``fixed`` (the reset draws only the agent's start state; the task is the env's params), ``task`` (the state
fields its reset draws as the task), or ``refused`` with the reason (continuous actions, which the categorical
policy cannot serve; data downloaded at creation).
"""

from __future__ import annotations

import dataclasses

#: grid family -> variant name -> the ``rl3jax.envs.grid_generation.GridConfig`` fields the variant changes
#: in the family's base configuration (METHOD §3); the variant names of the grid families are these keys
GRID_VARIANTS: dict[str, dict[str, dict]] = {
    "grid11": {"train": {}},
    "grid13": {
        "train": {},
        "dense": {"obstacle_len": 4},
        "deterministic": {"slip": 0.0},
        "watery": {"num_water_sets": 8},
        "dangerous": {"num_dangers": 4},
        "corner": {"min_goal_dist": 12},
    },
}
#: family name -> its variant names (METHOD §3; "train" is the training distribution, the others are
#: out of distribution). The families' modules take their variant names from here (``bandit.VARIANTS``,
#: ``mdp.VARIANTS``, ``grid_generation.GRID_FAMILIES``); ``rl3jax.envs.registry.register`` adds users' own
#: families.
FAMILIES: dict[str, tuple[str, ...]] = {
    "bandit": ("train", "ood"),
    "mdp": ("train", "alpha0.25", "det-rewards"),
    **{name: tuple(v) for name, v in GRID_VARIANTS.items()},
}
#: families with RL³ support (the ``rl3_defaults`` hook; ``rl3jax.envs.registry.check_catalog`` checks the
#: two agree); users' families are checked when built
TABULAR = frozenset({"bandit", "mdp", "grid11", "grid13"})
#: families with the coarse-abstraction RL³ estimator (algo rl3_coarse, METHOD §2.5): the tabular grid
#: families (the ``grid_side`` hook; checked likewise)
COARSE = frozenset({"grid11", "grid13"})
#: the published meta-episode length H of a family where it is not TrainConfig's default of 100 (METHOD §6);
#: grids have no task horizon of their own, so it is also their TH
PUBLISHED_HORIZON = {"grid11": 250, "grid13": 350}

CONTINUOUS = "its action space is continuous (a Box); rl3jax's policies are categorical over discrete actions"


@dataclasses.dataclass(frozen=True)
class GymnaxSpec:
    """How rl3jax serves one gymnax env."""

    kind: str  # "fixed" | "task" | "refused"
    task_fields: tuple[str, ...] = ()  # kind "task": the EnvState fields its reset draws as the task
    reason: str = ""  # kind "refused": why


def _fixed() -> GymnaxSpec:
    return GymnaxSpec("fixed")


def _task(*fields: str) -> GymnaxSpec:
    return GymnaxSpec("task", tuple(fields))


def _refused(reason: str) -> GymnaxSpec:
    return GymnaxSpec("refused", reason=reason)


#: every gymnax env (gymnax 0.0.9 / 1.0 registry) -> how rl3jax serves it
GYMNAX_ENVS: dict[str, GymnaxSpec] = {
    "CartPole-v1": _fixed(),
    "Pendulum-v1": _refused(CONTINUOUS),
    "Acrobot-v1": _fixed(),
    "MountainCar-v0": _fixed(),
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


def is_gymnax(name: str) -> bool:
    """Whether ``name`` is a gymnax env (served or refused) rather than an rl3jax task family."""
    return name not in FAMILIES and name in GYMNAX_ENVS


def check_env(name: str) -> tuple[str, ...]:
    """The variants of env ``name``; ValueError for an unknown name or a gymnax env rl3jax cannot serve."""
    if name in FAMILIES:
        return FAMILIES[name]
    if name in GYMNAX_ENVS:
        check_gymnax_name(name)
        return ("train",)
    supported = [n for n, s in GYMNAX_ENVS.items() if s.kind != "refused"]
    raise ValueError(f"unknown env {name!r}; valid: {', '.join(sorted(FAMILIES))} "
                     f"or a gymnax env ({', '.join(supported)})")


def variants(name: str) -> tuple[str, ...]:
    """The variant names of env ``name`` (ValueError for an unknown or unsupported env)."""
    return check_env(name)


def check_variant(name: str, variant: str | None) -> str:
    """``variant`` of env ``name`` ('train' for None), or ValueError listing the valid ones."""
    variant = variant or "train"
    names = check_env(name)
    if variant not in names:
        if name in FAMILIES:
            raise ValueError(f"unknown variant {variant!r} for env {name!r}; valid variants: {', '.join(names)}")
        raise ValueError(f"gymnax env {name!r} has no variants (got {variant!r})")
    return variant


def add_family(name: str, variant_names: tuple[str, ...]) -> None:
    """Names a user's task family and its variants (``rl3jax.envs.registry.register`` calls this)."""
    FAMILIES[name] = tuple(variant_names)
