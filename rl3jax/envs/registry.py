"""Task families by name: ``make_env('mdp', variant='alpha0.25')``.

Names are rl3jax's own families (``rl3jax.envs.catalog.FAMILIES``) plus the gymnax environments rl3jax can
serve (``rl3jax.envs.gymnax_bridge``). This module imports every family; which names and variants exist is
answered by ``rl3jax.envs.catalog`` without JAX (``variants`` is the catalog's, re-exported here; the families
take their variant names from it), and its JAX-free family sets are checked here, at import, against the
families' hooks (``check_catalog``).
"""

from __future__ import annotations

from collections.abc import Callable

from rl3jax.config import V4_ENVS
from rl3jax.envs import bandit, catalog, mdp
from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import check_variant, variants
from rl3jax.envs.grid import make_grid
from rl3jax.envs.grid_generation import GRID_FAMILIES
from rl3jax.envs.gymnax_bridge import make_bridged

__all__ = ["BUILT_IN", "CONSTRUCTORS", "check_catalog", "make_env", "register", "variants"]

#: name -> constructor(variant) -> env; the variants of each are ``rl3jax.envs.catalog.FAMILIES[name]``
CONSTRUCTORS: dict[str, Callable[[str], TaskEnv]] = {
    "bandit": lambda variant: bandit.BernoulliBandit(num_arms=5, variant=variant),
    "mdp": lambda variant: mdp.RandomMDP(variant=variant),
    **{name: (lambda variant, name=name: make_grid(name, variant)) for name in GRID_FAMILIES},
}
#: rl3jax's own families (``register`` adds users' families to ``CONSTRUCTORS`` only)
BUILT_IN = tuple(CONSTRUCTORS)


def check_catalog() -> None:
    """RuntimeError unless the catalog names exactly the families built here, and its JAX-free family sets
    agree with the built-in families' hooks (each family built in its training variant):
    ``catalog.TABULAR`` = the families with ``rl3_defaults``, ``catalog.COARSE`` = those of them with a
    ``grid_side``, ``config.V4_ENVS`` = the families with ``v4_defaults``."""
    if set(CONSTRUCTORS) != set(catalog.FAMILIES):
        raise RuntimeError(f"rl3jax.envs.catalog.FAMILIES names {sorted(catalog.FAMILIES)}; the registry "
                           f"builds {sorted(CONSTRUCTORS)}")
    envs = {name: CONSTRUCTORS[name](catalog.FAMILIES[name][0]) for name in BUILT_IN}
    tabular = {name for name, env in envs.items() if env.rl3_defaults is not None}
    sets = {"rl3jax.envs.catalog.TABULAR (families with rl3_defaults)": (catalog.TABULAR, tabular),
            "rl3jax.envs.catalog.COARSE (tabular families with a grid_side)":
                (catalog.COARSE, {name for name in tabular if envs[name].grid_side is not None}),
            "rl3jax.config.V4_ENVS (families with v4_defaults)":
                (V4_ENVS, {name for name, env in envs.items() if env.v4_defaults is not None})}
    for what, (declared, hooks) in sets.items():
        if set(declared) != hooks:
            raise RuntimeError(f"{what} is {sorted(declared)}; the families' hooks say {sorted(hooks)}")


check_catalog()


def register(name: str, constructor: Callable[[str], TaskEnv], variant_names: tuple[str, ...]) -> None:
    """Adds a user's task family: ``constructor(variant) -> TaskEnv`` for each of ``variant_names`` (Python API:
    the ``rl3jax`` command line knows the built-in families and gymnax envs only). ValueError for the name of a
    built-in family or a gymnax env (they cannot be replaced)."""
    if name in BUILT_IN or catalog.is_gymnax(name):
        raise ValueError(f"register: {name!r} is a built-in task family or gymnax env; choose another name")
    CONSTRUCTORS[name] = constructor
    catalog.add_family(name, tuple(variant_names))


def make_env(name: str, variant: str | None = None) -> TaskEnv:
    """The task family ``name`` in ``variant`` (None or 'train': the training distribution).

    Raises ValueError for an unknown name or variant, and (naming the reason) for a gymnax env that rl3jax
    cannot serve (continuous actions, data downloads).
    """
    variant = check_variant(name, variant)
    if name in CONSTRUCTORS:
        return CONSTRUCTORS[name](variant)
    return make_bridged(name)
