"""Task families by name: ``make_env('mdp', variant='alpha0.25')``.

Every family is described once, by its ``rl3jax.envs.catalog.FamilySpec`` (JAX-free: names, variants, published
H, the algorithms and semantics that apply); this module builds one from the spec's entry point, which it
imports by name only then (``importlib``), so it imports no family itself. Served gymnax envs are built by
``rl3jax.envs.gymnax_bridge.make_bridged`` likewise. ``register`` adds a user's family from Python, with RL³ when
it names its discrete states (a ``state_index`` hook).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from rl3jax.envs import catalog
from rl3jax.envs.base import DISCOVERY_DEFAULTS, TaskEnv
from rl3jax.envs.catalog import FamilySpec, check_variant, variants

__all__ = ["BUILT_IN", "make_env", "register", "spec_of", "variants"]

#: rl3jax's own families (``register`` adds users' families to ``catalog.FAMILIES``, not here)
BUILT_IN = tuple(catalog.FAMILIES)


def _entry(entry: str | Callable) -> Callable:
    """The callable named ``"module:attr"`` (imported now), or ``entry`` itself when it is already callable."""
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


def spec_of(env: TaskEnv, entry: str | Callable, variant_names: tuple[str, ...], horizon: int = 100,
            kwargs: dict | None = None) -> FamilySpec:
    """The spec that family ``env``'s hooks imply (``rl3_defaults``: rl3; with a ``grid_side``: rl3_coarse;
    ``v4_defaults``: semantics 'v4'), for ``register`` and for the test that checks the catalog's specs."""
    algos = ("rl2",) if env.rl3_defaults is None else ("rl2", "rl3") + (() if env.grid_side is None
                                                                         else ("rl3_coarse",))
    sem = () if env.rl3_defaults is None else catalog.SEMANTICS_ALL + (() if env.v4_defaults is None else ("v4",))
    return FamilySpec(entry, tuple(variant_names), horizon, algos, sem, dict(kwargs or {}))


def _with_state_index(env: TaskEnv, hook: Callable, name: str) -> TaskEnv:
    """``env`` with ``hook`` as its ``state_index`` (its class becomes a subclass that overrides it, so
    ``has_state_index`` holds) and, unless it has its own, ``DISCOVERY_DEFAULTS``. An exception the hook raises
    carries a note naming the hook and the family."""
    def state_index(self, state, params):
        try:
            return hook(state, params)
        except Exception as e:
            e.add_note(f"raised by the state_index hook {getattr(hook, '__qualname__', hook)!r} of task family "
                       f"{name!r} (rl3jax.envs.registry.register)")
            raise

    cls = type(env)
    env.__class__ = type(cls.__name__, (cls,), {"state_index": state_index, "__module__": cls.__module__,
                                                "rl3_defaults": env.rl3_defaults or DISCOVERY_DEFAULTS})
    vars(env).pop("rl3_defaults", None)  # a value set in __init__ is in the class now
    return env


def register(name: str, constructor: Callable[[str], TaskEnv], variant_names: tuple[str, ...],
             horizon: int = 100, state_index: Callable | None = None) -> FamilySpec:
    """Adds a user's task family: ``constructor(variant) -> TaskEnv`` for each of ``variant_names`` (the first the
    training distribution), published H ``horizon`` (Python API: the ``rl3jax`` command line knows the built-in
    families and gymnax envs only). ``state_index(state, params) -> int32 scalar`` (any value: a cell id, a packed
    tuple, a hash) names the family's discrete state, the same for the same Markov state of a task: with it RL³
    applies (``DISCOVERY_DEFAULTS`` unless the family has ``rl3_defaults``). Builds the training variant once to
    read its hooks (``spec_of``) and returns the spec added to ``catalog.FAMILIES``. ValueError for the name of a
    built-in family or a gymnax env (they cannot be replaced) or no variants."""
    if name in BUILT_IN or catalog.is_gymnax(name):
        raise ValueError(f"register: {name!r} is a built-in task family or gymnax env; choose another name")
    if not variant_names:
        raise ValueError(f"register: {name!r} needs at least one variant (the first is the training distribution)")
    def build(variant):
        env = constructor(variant)
        return env if state_index is None else _with_state_index(env, state_index, name)

    spec = spec_of(build(variant_names[0]), build, variant_names, horizon)
    catalog.FAMILIES[name] = spec
    return spec


def make_env(name: str, variant: str | None = None) -> TaskEnv:
    """The task family ``name`` in ``variant`` (None or 'train': the training distribution), built from its spec.

    Raises ValueError for an unknown name or variant, and (naming the reason) for a gymnax env that rl3jax
    cannot serve (continuous actions, data downloads).
    """
    variant = check_variant(name, variant)
    spec = catalog.spec(name)
    return _entry(spec.entry)(variant=variant, **spec.kwargs)
