"""What every baseline module shares: the registry's entry types (``Param``, ``Baseline``) and the action
helpers. A policy is ``(step, carry)``, ``step(carry, obs, meta_state) -> (carry, logits)`` over B tasks; a
baseline draws its own action (its PRNG key in the carry) and emits *sharp* logits, so ``greedy`` changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rl3jax.meta_episode import MetaEnv

SHARP = 1e3  # logit gap between the chosen action and the others (exp(-1000) == 0 in float32)
TIE_TOL = 1e-5  # scores within this of the best count as tied (random tie-breaking)


def sharp_logits(action: jax.Array, num_actions: int) -> jax.Array:
    """(B,) int actions -> (B, n) logits: 0 at the action, -1e3 elsewhere (argmax = every sample = action)."""
    return SHARP * (jax.nn.one_hot(action, num_actions) - 1.0)


def argmax_random(key: jax.Array, scores: jax.Array, tol: float = TIE_TOL) -> jax.Array:
    """Per row of ``scores`` (B, n): an index of the maximum, uniformly at random among those within ``tol``."""
    best = scores >= scores.max(axis=-1, keepdims=True) - tol
    u = jax.random.uniform(key, scores.shape)
    return jnp.argmax(jnp.where(best, u, -1.0), axis=-1).astype(jnp.int32)


def epsilon_mix(key: jax.Array, greedy_action: jax.Array, epsilon: float, n: int) -> jax.Array:
    """With probability ε a uniformly random action (any of the n, the greedy one included), else the greedy."""
    k_e, k_a = jax.random.split(key)
    explore = jax.random.uniform(k_e, greedy_action.shape) < epsilon
    return jnp.where(explore, jax.random.randint(k_a, greedy_action.shape, 0, n), greedy_action).astype(jnp.int32)


def num_tasks(tasks) -> int:
    """The leading (task) axis of a task pytree."""
    return jax.tree.leaves(tasks)[0].shape[0]


@dataclasses.dataclass(frozen=True)
class Param:
    """A baseline parameter: name, default, kind ('float' or 'int'), its range (``coerce`` checks it) and the
    defaults of some families (``tuned``: (family, value) pairs, e.g. tuned by ``scripts/tune_baselines.py``)."""

    name: str
    default: float
    kind: str = "float"
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    positive: bool = False  # strictly > 0
    tuned: tuple[tuple[str, float], ...] = ()

    def default_for(self, family: str | None) -> float | int:
        """The default on ``family``: its ``tuned`` value, else ``default``."""
        return dict(self.tuned).get(family, self.default)

    def describe(self) -> str:
        rng = ["> 0"] * self.positive + [f"{op} {x:g}" for op, x in ((">=", self.low), ("<=", self.high))
                                         if x is not None]
        return f"{self.name} ({self.kind}{', ' + ' and '.join(rng) if rng else ''}; default {self.default:g})"

    def coerce(self, policy: str, raw) -> float | int:
        bad = ValueError(f"policy {policy!r}: parameter {self.name}={raw!r} is not valid; expected "
                         f"{self.describe()}")
        try:
            v = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            raise bad from None
        if self.kind == "int" and math.isfinite(v) and v.is_integer():
            v = int(v)
        if (not math.isfinite(v) or (self.kind == "int" and not isinstance(v, int)) or (self.positive and not v > 0)
                or (self.low is not None and v < self.low) or (self.high is not None and v > self.high)):
            raise bad
        return v


ALL = "*"  # families: every family


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A registry entry: the families it fits ('*': every family; ``needs_model``: ``true_model`` or
    ``true_model_sparse``, ``needs_estimator``: the ``rl3_defaults`` hook), parameters, ``build(meta_env, consts,
    tasks, key, params) -> (step, carry)`` (inside jit), a description naming its source, ``prepare(meta_env,
    params) -> consts`` (host-side tables, may raise ValueError) and whether its actions are ``stochastic``
    beyond tie-breaking."""

    name: str
    families: tuple[str, ...]
    params: tuple[Param, ...]
    build: Callable
    doc: str
    prepare: Callable | None = None
    needs_estimator: bool = False
    needs_model: bool = False
    stochastic: bool = False

    @property
    def actions(self) -> str:
        """'stochastic', or 'deterministic' (a function of what the policy has seen; ties broken at random)."""
        return "stochastic" if self.stochastic else "deterministic"

    def fits(self, meta_env: MetaEnv) -> bool:
        env = meta_env.env
        model = env.has_true_model or env.has_true_model_sparse
        return ((model or not self.needs_model) and (env.rl3_defaults is not None or not self.needs_estimator)
                and (ALL in self.families or env.family in self.families))


EPSILON = Param("epsilon", 0.1, low=0.0, high=1.0)  # of every ε-greedy baseline
