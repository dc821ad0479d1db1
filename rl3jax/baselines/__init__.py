"""Classical baseline policies, evaluated in the same harness (``rl3jax.evaluate``) as learned policies: one
module per family (``generic``: every family), each with its ``ENTRIES``; ``BASELINES`` maps name to entry.
"""

from __future__ import annotations

from rl3jax.baselines import bandit, generic, grid, mdp
from rl3jax.baselines.bandit import IntractableError as IntractableError  # re-exported
from rl3jax.baselines.base import Baseline
from rl3jax.config import TrainConfig
from rl3jax.estimators import make_estimator
from rl3jax.meta_episode import MetaEnv

BASELINES: dict[str, Baseline] = {b.name: b for b in (*generic.ENTRIES, *bandit.ENTRIES, *mdp.ENTRIES, *grid.ENTRIES)}


def get_baseline(name: str) -> Baseline:
    """The registry entry of ``name``; ValueError listing the valid names for an unknown one."""
    if name not in BASELINES:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(BASELINES)}")
    return BASELINES[name]


def baseline_names(meta_env: MetaEnv) -> list[str]:
    """Names of the baselines (``evaluate(meta_env, name, ...)``) that fit this family, in registry order."""
    return [name for name, b in BASELINES.items() if b.fits(meta_env)]


def validate_params(name: str, params: dict | None, family: str | None = None) -> dict:
    """The baseline's defaults on ``family`` (``Param.default_for``) updated with ``params`` (values may be
    strings, e.g. from the CLI), checked: ValueError naming an unknown parameter or a bad value and listing the
    valid ones."""
    b = get_baseline(name)
    spec = {p.name: p for p in b.params}
    out = {p.name: p.default_for(family) for p in b.params}
    for k, v in (params or {}).items():
        if k not in spec:
            valid = ", ".join(p.describe() for p in b.params) or "none"
            raise ValueError(f"policy {name!r} has no parameter {k!r}; valid: {valid}")
        out[k] = spec[k].coerce(name, v)
    return out


def check_fits(name: str, meta_env: MetaEnv) -> Baseline:
    """The entry of ``name`` if it fits ``meta_env``'s family; ValueError listing the ones that do otherwise."""
    b = get_baseline(name)
    if not b.fits(meta_env):
        raise ValueError(f"policy {name!r} does not fit env {meta_env.env.family!r}; policies for it: "
                         f"{', '.join(baseline_names(meta_env))}")
    return b


def make_policy(name: str, meta_env: MetaEnv, params: dict | None = None):
    """Checks and prepares baseline ``name``: ``(meta_env, consts, build)``, the meta env to run it in (with an
    RL³ estimator only for model-*), its host-side tables (a jit argument) and ``build(consts, tasks, key) ->
    (step, carry)``. ValueError for a policy that does not fit, a bad parameter or an intractable table."""
    b = check_fits(name, meta_env)
    p = validate_params(name, params, meta_env.env.family)
    env = meta_env
    if b.needs_estimator and meta_env.estimator is None:
        cfg = TrainConfig(env=meta_env.env.family, algo="rl3", horizon=meta_env.horizon)
        env = MetaEnv(meta_env.env, meta_env.horizon, make_estimator(meta_env.env, cfg))
    elif not b.needs_estimator and meta_env.estimator is not None:
        env = MetaEnv(meta_env.env, meta_env.horizon, None)
    consts = b.prepare(env, p) if b.prepare else None
    return env, consts, lambda consts, tasks, key: b.build(env, consts, tasks, key, p)
