"""Task families by name: ``make_env('mdp', variant='alpha0.25')``.

Names are rl3jax's own families (``rl3jax.envs.catalog.FAMILIES``) plus the gymnax environments rl3jax can
serve (``rl3jax.envs.gymnax_bridge``). This module imports every family; which names and variants exist is
answered by ``rl3jax.envs.catalog`` without JAX (``variants`` is the catalog's, re-exported here), and checked
here, at import, against the families' own tables.
"""

from __future__ import annotations

from collections.abc import Callable

from rl3jax.envs import bandit, catalog, mdp
from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import check_variant, variants
from rl3jax.envs.grid import make_grid
from rl3jax.envs.grid_generation import GRID_FAMILIES
from rl3jax.envs.gymnax_bridge import make_bridged

__all__ = ["CONSTRUCTORS", "check_catalog", "make_env", "register", "variants"]

#: name -> (constructor(variant) -> env, the variants the family's module defines)
CONSTRUCTORS: dict[str, tuple[Callable[[str], TaskEnv], tuple[str, ...]]] = {
    "bandit": (lambda variant: bandit.BernoulliBandit(num_arms=5, variant=variant), bandit.VARIANTS),
    "mdp": (lambda variant: mdp.RandomMDP(variant=variant), mdp.VARIANTS),
    **{name: (lambda variant, name=name: make_grid(name, variant), tuple(variants))
       for name, (_, variants) in GRID_FAMILIES.items()},
}


def check_catalog() -> None:
    """RuntimeError unless the catalog names exactly these families with the variants their modules define."""
    mine = {name: variants for name, (_, variants) in CONSTRUCTORS.items()}
    if mine != catalog.FAMILIES:
        raise RuntimeError(f"rl3jax.envs.catalog.FAMILIES {catalog.FAMILIES} differs from the families' own "
                           f"tables {mine}")


check_catalog()


def register(name: str, constructor: Callable[[str], TaskEnv], variant_names: tuple[str, ...]) -> None:
    """Adds a user's task family: ``constructor(variant) -> TaskEnv`` for each of ``variant_names``."""
    CONSTRUCTORS[name] = (constructor, tuple(variant_names))
    catalog.add_family(name, tuple(variant_names))


def make_env(name: str, variant: str | None = None) -> TaskEnv:
    """The task family ``name`` in ``variant`` (None or 'train': the training distribution).

    Raises ValueError for an unknown name or variant, and (naming the reason) for a gymnax env that rl3jax
    cannot serve (continuous actions, data downloads).
    """
    variant = check_variant(name, variant)
    if name in CONSTRUCTORS:
        return CONSTRUCTORS[name][0](variant)
    return make_bridged(name)
