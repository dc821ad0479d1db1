"""The RL³ object-level estimators behind one interface (``Estimator``, METHOD §2): the dense
``rl3jax.estimators.tabular.QEstimator``, the sparse ``rl3jax.estimators.grid.GridQEstimator`` (RL³ on grids), the
paper's own code's ``rl3jax.estimators.v4.V4Estimator`` and the discovery-indexed
``rl3jax.estimators.discovery.DiscoveryQEstimator`` (any state ids, RL³-coarse); ``make_estimator`` is the one
place that picks a family's (task families import no estimator).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

from rl3jax.config import TrainConfig
from rl3jax.envs.base import TaskEnv
from rl3jax.estimators.discovery import DiscoveryQEstimator
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.estimators.v4 import V4Estimator
from rl3jax.layout import Layout


@runtime_checkable
class Estimator(Protocol):
    """What ``MetaEnv``, the trainer, the baselines and the renderer use of an RL³ estimator (all functions pure and
    jittable; the estimator itself is a frozen, hashable dataclass, so it can be a jit-static argument).
    ``isinstance(x, Estimator)`` checks that ``x`` has every member.

    ``s``, ``a``, ``s_next``: int32 scalars (concrete states, actions); ``r``: float32; ``terminal``: bool.
    """

    num_states: int | None  # S concrete states (None: any int32 ids, discovery-indexed)
    num_actions: int  # n

    @property
    def feature_layout(self) -> Layout:
        """The blocks of ``features`` (``rl3jax.layout.rl3_features`` or ``v4_features``)."""

    @property
    def feature_dim(self) -> int:
        """Entries of ``features`` (``feature_layout.size``)."""

    def init(self, start_state: jax.Array) -> Any:
        """The estimator state of a new task (an empty model), a pytree of fixed shape."""

    def update(self, est: Any, s, a, r, s_next, terminal) -> Any:
        """Adds one real step to the model and re-solves it by value iteration (METHOD §2.1, §2.2)."""

    def features(self, est: Any, s) -> jax.Array:
        """(feature_dim,) float32: the RL³ blocks of the policy input for the current state ``s``."""

    def q_values(self, est: Any, s) -> jax.Array:
        """(..., n) float32: Q(s,·) of the latest value-iteration solve at concrete state(s) ``s`` (int, any
        shape; on RL³-coarse the Q of the abstract state of ``s``)."""

    def visit(self, est: Any, s) -> Any:
        """The estimator state once the task is in concrete state ``s`` after a step (a task-episode reset
        included): an estimator that models only the states visited so far adds ``s`` to its known states; the
        others return ``est`` unchanged."""

    def known(self, est: Any) -> jax.Array:
        """(..., S) bool: the states in the model (all of them, or those visited so far); leading batch axes
        of ``est`` pass through. ValueError where ``num_states`` is None."""

    def sweeps(self, est: Any) -> jax.Array:
        """(...) int32: value-iteration sweeps of the latest solve (diagnostics); batch axes pass through."""


def make_estimator(env: TaskEnv, cfg: TrainConfig) -> Estimator | None:
    """The RL³ estimator of task family ``env`` for config ``cfg`` (None for ``algo='rl2'``).

    Settings: the family's ``rl3_defaults`` (METHOD §2) unless the config overrides them (``alpha_laplace``,
    ``vi_epsilon``, ``vi_max_sweeps``, ``vi_sweep_block``), γ_obj from ``cfg.gamma_obj_value``, at most
    min(TH, H) sweeps by default, mode 'entered' for ``semantics='rlc'`` (METHOD §2.4). Which estimator
    (``cfg.estimator`` 'auto', chosen by measurement, ``scripts/bench_estimators.py``): grid families
    (``env.grid_side``) get the sparse ``GridQEstimator`` for RL³, except with ``std_errors``, which only the
    dense ``QEstimator`` computes (exact on grids, only slower); other families with ``num_states`` the dense
    ``QEstimator``; ``algo='rl3_coarse'`` (grids), families without ``num_states`` and ``semantics='v4'`` on
    grids the ``DiscoveryQEstimator`` (coarse: ``abstraction='coarse'``). ``cfg.estimator='discovery'``: the
    ``DiscoveryQEstimator`` wherever RL³ applies. Its slots: num_states with known_states 'all', else
    min(num_states or state_bound, 2H + 1); H transitions (no meta-episode of H steps fills them). ``semantics='v4'``: the
    paper's own code (``V4Estimator``, or the ``DiscoveryQEstimator`` with semantics 'v4'): Q_DENOM of
    ``env.v4_defaults`` (main.jl: 1 for bandits, 100 otherwise), its ε (0.01; grids 0.1) and at most min(TH, H)
    sweeps unless the config overrides them.

    Raises ValueError for RL³ on a family without a state index or ``rl3_defaults``, rl3_coarse on a family that
    is not a grid, standard errors with rl3_coarse or the discovery estimator, and v4 on a family without
    ``v4_defaults``.
    """
    if cfg.algo == "rl2":
        return None
    d = env.rl3_defaults
    if d is None or not env.has_state_index:
        raise ValueError(f"algo {cfg.algo!r} needs a task family with a state index (a state_index hook and "
                         f"rl3_defaults); env {cfg.env!r} has none (use algo rl2)")
    coarse, v4 = cfg.algo == "rl3_coarse", cfg.semantics == "v4"
    if coarse and env.grid_side is None:
        raise ValueError(f"algo 'rl3_coarse' is for grid families, not env {cfg.env!r}")
    if coarse and cfg.std_errors:
        raise ValueError("RL³-coarse has no standard errors (the dense QEstimator has them, without the abstraction)")
    discovery = env.num_states is None or coarse or cfg.estimator == "discovery" or (v4 and env.grid_side is not None)
    if discovery and cfg.std_errors:
        raise ValueError(f"std_errors=true needs the dense estimator: a family with num_states (bandit, mdp, grids) "
                         f"and estimator 'auto', not env {cfg.env!r} with estimator {cfg.estimator!r}")
    kw = dict(num_states=env.num_states, num_actions=int(env.num_actions), gamma=cfg.gamma_obj_value,
              **({} if cfg.vi_sweep_block is None else {"sweep_block": cfg.vi_sweep_block}))
    if v4:
        if env.v4_defaults is None:
            raise ValueError(f"semantics 'v4' is not implemented for {env.name} (it has no v4_defaults)")
        kw.update(epsilon=cfg.vi_epsilon if cfg.vi_epsilon is not None else env.v4_defaults.epsilon,
                  max_sweeps=cfg.vi_max_sweeps or min(env.task_horizon, cfg.horizon), q_denom=env.v4_defaults.q_denom)
    else:
        kw.update(alpha_laplace=cfg.alpha_laplace if cfg.alpha_laplace is not None else d.alpha_laplace,
                  epsilon=cfg.vi_epsilon if cfg.vi_epsilon is not None else d.epsilon,
                  max_sweeps=cfg.vi_max_sweeps or d.max_sweeps or min(env.task_horizon, cfg.horizon),
                  warm_start=d.warm_start, mode="entered" if cfg.semantics == "rlc" else "fresh",
                  q_denom=d.q_denom, known_states=d.known_states)
    if discovery:
        h, s = cfg.horizon, env.num_states if env.num_states is not None else env.state_bound
        slots = s if kw.get("known_states") == "all" else 2 * h + 1 if s is None else min(s, 2 * h + 1)
        return DiscoveryQEstimator(capacity=slots, max_transitions=h, semantics="v4" if v4 else "rl3",
                                   **(dict(abstraction="coarse", grid_side=env.grid_side) if coarse else {}), **kw)
    if v4:
        return V4Estimator(**kw)
    if env.grid_side is None or cfg.std_errors:
        return QEstimator(std_errors=cfg.std_errors, **kw)
    return GridQEstimator(grid_side=env.grid_side, **kw)
