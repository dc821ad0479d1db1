"""Registry of task families and their out-of-distribution variants.

``make_env(name, variant)`` builds a task family; names are rl3jax's own families plus any environment
registered with gymnax (flat observations; a task is then whatever its reset draws; RL² only).
"""

from __future__ import annotations

from typing import Callable

from rl3jax.envs.bandit import BernoulliBandit
from rl3jax.envs.mdp import VARIANTS as MDP_VARIANTS
from rl3jax.envs.mdp import RandomMDP

# name -> (constructor(variant) -> env, variants)
FAMILIES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "bandit": (lambda variant: BernoulliBandit(num_arms=5, variant=variant), ("train", "ood")),
    "mdp": (lambda variant: RandomMDP(variant=variant), MDP_VARIANTS),
}


def register(name: str, constructor: Callable, variant_names: tuple[str, ...]) -> None:
    """Adds a task family (used by the grid module and by users' own families)."""
    FAMILIES[name] = (constructor, tuple(variant_names))


def _gymnax_names() -> list[str]:
    import gymnax

    return list(gymnax.registered_envs)


def variants(name: str) -> tuple[str, ...]:
    _ensure_builtin()
    if name in FAMILIES:
        return FAMILIES[name][1]
    return ("train",)


def _ensure_builtin() -> None:
    # Grid families register themselves on import; import lazily to keep `import rl3jax.envs` light.
    import rl3jax.envs.grid  # noqa: F401


def make_env(name: str, variant: str | None = None):
    """The task family ``name`` in ``variant`` (None or 'train': the training distribution)."""
    _ensure_builtin()
    variant = variant or "train"
    if name in FAMILIES:
        constructor, names = FAMILIES[name]
        if variant not in names:
            raise ValueError(f"unknown variant {variant!r} for env {name!r}; valid variants: {', '.join(names)}")
        return constructor(variant)
    gym_names = _gymnax_names()
    if name in gym_names:
        if variant != "train":
            raise ValueError(f"gymnax env {name!r} has no variants (got {variant!r})")
        import gymnax

        env, _ = gymnax.make(name)
        return env
    raise ValueError(f"unknown env {name!r}; valid: {', '.join(sorted(FAMILIES))} "
                     f"or a gymnax env ({', '.join(gym_names)})")
