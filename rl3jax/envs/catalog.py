"""What environments exist, answered without importing JAX: one ``FamilySpec`` per task family, and gymnax's table.

``rl3jax.config`` checks a command line against it before JAX starts (tests/system/test_cli_validation.py checks that no
JAX is imported on that path); ``rl3jax.envs.registry.make_env`` builds a family from its spec's entry point.
Adding a family is one module plus one ``FAMILIES`` entry (tests/envs/test_registry.py checks each spec against its hooks).

The gymnax envs rl3jax can serve (discrete actions, one task per meta-episode: ``rl3jax.envs.gymnax_bridge``) are
env names too. ``GYMNAX_ENVS`` classifies every name of ``gymnax.registered_envs`` (tests/envs/test_gymnax_bridge.py
keeps it complete): ``fixed`` (its reset draws only the start state; the task is the env's params), ``task`` (the
state fields its reset draws as the task), or ``refused`` with the reason (continuous actions; data downloaded at
creation). A served env whose state is plainly discrete also names the state fields of its ``state_index``
(``GymnaxSpec.state_fields``); RL³ applies to those envs only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
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
    # XLand-MiniGrid (the extra rl3jax[xland]): R1 9×9 with the trivial preset for training; the variants' meaning
    # is ``rl3jax.envs.xland.VARIANTS``; H = 512 (TH = 243 on 9×9: two task episodes at most, many when solved)
    "xland": FamilySpec("rl3jax.envs.xland:XLandMiniGrid",
                        ("train", "small", "medium", "high", "r4-13x13-medium", "file-trivial-21k", "file-small-1m",
                         "file-medium-1m", "file-high-1m"), 512, ("rl2", "rl3", "rl3_coarse")),
}
#: family -> (the module it needs, the extra of rl3jax that installs it): ``check_env`` refuses the family without it
EXTRAS = {"xland": ("xminigrid", "xland")}

CONTINUOUS = "its action space is continuous (a Box); rl3jax's policies are categorical over discrete actions"


@dataclasses.dataclass(frozen=True)
class GymnaxSpec:
    """How rl3jax serves one gymnax env.

    ``state_fields``: the env state's fields that form its discrete state, as (field, size) pairs, or None (no
    state index: RL² only). ``GymnaxBridge.state_index`` packs their entries (a vector field gives several) into
    one int32 in mixed radix (size of each entry's field; every entry but the first in [0, size));
    ``state_features`` shows them divided by their sizes (``TrainConfig.state_obs``). () is the one state of a
    bandit.
    """

    kind: str  # "fixed" | "task" | "refused"
    task_fields: tuple[str, ...] = ()  # kind "task": the EnvState fields its reset draws as the task
    reason: str = ""  # kind "refused": why
    constant: str = ""  # served, but every policy's meta-episode return is the same: why (``config.notes`` warns)
    state_fields: tuple[tuple[str, int], ...] | None = None
    params: tuple[tuple[str, object], ...] = ()  # (field, value) of the env params that differ from gymnax's


_fixed = functools.partial(GymnaxSpec, "fixed")
_refused = functools.partial(GymnaxSpec, "refused", ())


def _task(*fields: str, state: tuple[tuple[str, int], ...] | None = None, params=()) -> GymnaxSpec:
    return GymnaxSpec("task", fields, state_fields=state, params=params)


#: every gymnax env (gymnax 0.0.9 / 1.0 registry) -> how rl3jax serves it. A state index identifies the env's
#: Markov state for a fixed task, except what the comment says it leaves out; ``time`` is the step within the
#: task episode where the dynamics read it (it restarts with the task episode, as the meta-episode's τ). No index:
#: continuous states (classic control, Pong's ball), or MinAtar's (10×10 boards of several channels, timers).
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
    # the ball's cell and the paddle's column (the paddle's row is fixed; prev_done is False between resets)
    "Catch-bsuite": _fixed(state_fields=(("ball_x", 5), ("ball_y", 10), ("paddle_x", 5))),
    # size 8: row 0..8 (8: the bottom, absorbing), column 0..7; leaves out bad_episode (bookkeeping; time = row).
    # gymnax's params keep one action mapping (drawn with key 0) for every reset: a task draws its own
    "DeepSea-bsuite": _task("action_mapping", state=(("row", 9), ("column", 8)),
                            params=(("sample_action_map", True),)),
    # the step 0..6 (memory_length 5); the task is the context and the query
    "MemoryChain-bsuite": _task("context", "query", state=(("time", 7),)),
    # the umbrella taken at the first step, the step 0..10 (chain_length 10)
    "UmbrellaChain-bsuite": _task("need_umbrella", state=(("has_umbrella", 2), ("time", 11))),
    # the chosen chain (context -1 before the first action, then 0..4) and the step 0..100
    "DiscountingChain-bsuite": _fixed(state_fields=(("context", 5), ("time", 101))),
    "MNISTBandit-bsuite": _refused("creating it downloads the MNIST data set (and fails without a network); "
                                   "rl3jax does not fetch data"),
    # bandits: one state (a reward depends only on the action and the task)
    "SimpleBandit-bsuite": _task("rewards", state=()),
    # the agent's cell (row, column) of the 13×13 map
    "FourRooms-misc": _task("goal", state=(("pos", 13),)),
    # the agent's cell of the 11×11 map; leaves out last_action, last_reward, time (shown, not dynamics)
    "MetaMaze-misc": _task("goal", state=(("pos", 11),)),
    "PointRobot-misc": _refused(CONTINUOUS),
    "BernoulliBandit-misc": _task("reward_probs", "exp_reward_best", state=()),
    "GaussianBandit-misc": _task("mu", state=()),
    "Reacher-misc": _refused(CONTINUOUS),
    "Swimmer-misc": _refused(CONTINUOUS),
    "Pong-misc": _fixed(),
    # the cell 0..15 of the 4×4 lake (holes and the goal absorbing)
    "FrozenLake-misc": _fixed(state_fields=(("position", 16),)),
}

def no_index_hint(name: str) -> str:
    """How to give env ``name`` the state index RL³ needs (the config's refusal of RL³ on it ends with this)."""
    if is_gymnax(name):
        return ("give it one with state_fields in its rl3jax.envs.catalog.GYMNAX_ENVS entry, or register a family "
                "wrapping it with rl3jax.envs.registry.register(..., state_index=...), or use algo rl2")
    return ("give it one with a state_index(state, params) -> int32 hook on the family or "
            f"rl3jax.envs.registry.register({name!r}, ..., state_index=...), or use algo rl2")


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
    """The variants of env ``name``; ValueError for an unknown name, a gymnax env rl3jax cannot serve, or a family
    whose extra (``EXTRAS``) is not installed."""
    if name in FAMILIES:
        module, extra = EXTRAS.get(name, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            raise ValueError(f"env {name!r} needs the package {module}: pip install 'rl3jax[{extra}]'")
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
    """The spec of env ``name``: its ``FAMILIES`` entry, or for a served gymnax env a spec built by
    ``rl3jax.envs.gymnax_bridge.make_bridged`` (RL³ where it has ``state_fields``). ValueError as ``check_env``."""
    check_env(name)
    if name in FAMILIES:
        return FAMILIES[name]
    indexed = GYMNAX_ENVS[name].state_fields is not None
    return FamilySpec("rl3jax.envs.gymnax_bridge:make_bridged", ("train",), algos=("rl2", "rl3")[:1 + indexed],
                      semantics=SEMANTICS_ALL if indexed else (), kwargs={"name": name})
