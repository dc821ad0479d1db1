"""Registry of task families and their out-of-distribution variants.

``make_env(name, variant)`` builds a task family; names are rl3jax's own families plus the environments
registered with gymnax that rl3jax can serve (``rl3jax.envs.gymnax_bridge``: discrete actions, one task per
meta-episode; RL² only). Names, variants and refusals are answered from static tables, without importing
JAX, so a mistyped name costs no JAX start-up (``check_env``).
"""

from __future__ import annotations

from collections.abc import Callable

from rl3jax.envs.gymnax_bridge import GYMNAX_ENVS, check_gymnax_name


def _bandit(variant):
    from rl3jax.envs.bandit import BernoulliBandit

    return BernoulliBandit(num_arms=5, variant=variant)


def _mdp(variant):
    from rl3jax.envs.mdp import RandomMDP

    return RandomMDP(variant=variant)


def _grid(family: str) -> Callable:
    def make(variant):
        from rl3jax.envs.grid import make_grid

        return make_grid(family, variant)

    return make


# name -> (constructor(variant) -> env, variants). The variant names of the built-in families are kept here
# (not read from their modules) so that checking a name needs no JAX; tests/test_cli_validation.py checks them
# against rl3jax.envs.mdp.VARIANTS and rl3jax.envs.grid's tables.
FAMILIES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "bandit": (_bandit, ("train", "ood")),
    "mdp": (_mdp, ("train", "alpha0.25", "det-rewards")),
    "grid11": (_grid("grid11"), ("train",)),
    "grid13": (_grid("grid13"), ("train", "dense", "deterministic", "watery", "dangerous", "corner")),
}

#: families with RL³ support (a tabular model); user-registered families are checked when built
TABULAR = {"bandit", "mdp", "grid11", "grid13"}
#: families with the coarse-abstraction RL³ estimator (algo rl3_coarse)
COARSE = {"grid11", "grid13"}
#: the published meta-episode length H of a family where it is not TrainConfig's default of 100 (METHOD §6)
PUBLISHED_HORIZON = {"grid11": 250, "grid13": 350}


def register(name: str, constructor: Callable, variant_names: tuple[str, ...]) -> None:
    """Adds a task family (used by the grid module and by users' own families)."""
    FAMILIES[name] = (constructor, tuple(variant_names))


def is_gymnax(name: str) -> bool:
    return name not in FAMILIES and name in GYMNAX_ENVS


def check_env(name: str) -> tuple[str, ...]:
    """The variants of env ``name``; ValueError for an unknown name or a gymnax env rl3jax cannot serve."""
    if name in FAMILIES:
        return FAMILIES[name][1]
    if name in GYMNAX_ENVS:
        check_gymnax_name(name)
        return ("train",)
    supported = [n for n, s in GYMNAX_ENVS.items() if s.kind != "refused"]
    raise ValueError(f"unknown env {name!r}; valid: {', '.join(sorted(FAMILIES))} "
                     f"or a gymnax env ({', '.join(supported)})")


def variants(name: str) -> tuple[str, ...]:
    """The variant names of env ``name`` (ValueError for an unknown or unsupported env)."""
    return check_env(name)


def make_env(name: str, variant: str | None = None):
    """The task family ``name`` in ``variant`` (None or 'train': the training distribution).

    Raises ValueError for an unknown name or variant, and (naming the reason) for a gymnax env that rl3jax
    cannot serve (continuous actions, data downloads).
    """
    variant = variant or "train"
    names = check_env(name)
    if variant not in names:
        if name in FAMILIES:
            raise ValueError(f"unknown variant {variant!r} for env {name!r}; valid variants: {', '.join(names)}")
        raise ValueError(f"gymnax env {name!r} has no variants (got {variant!r})")
    if name in FAMILIES:
        return FAMILIES[name][0](variant)
    from rl3jax.envs.gymnax_bridge import make_bridged

    return make_bridged(name)
