"""rl3jax.estimators.make_estimator: the estimator each family's hooks and the config choose."""

from __future__ import annotations

import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs.registry import make_env
from rl3jax.estimators import Estimator, make_estimator
from rl3jax.estimators.discovery import DiscoveryQEstimator
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.estimators.v4 import V4Estimator
from tests import reference_grid as ref
from tests.helpers import SMALL, small_env, small_task


def test_make_estimator_follows_the_family_hooks():
    """One ``make_estimator``: the estimator class from ``grid_side`` / ``v4_defaults``, settings from
    ``rl3_defaults`` (METHOD §2) with at most min(TH, H) sweeps, and refusals naming the fix."""
    def est(env, **kw):
        return make_estimator(make_env(env).with_horizon(kw.get("horizon", 100)), TrainConfig(env=env, **kw))

    bandit, mdp, mdp5, grid = est("bandit"), est("mdp"), est("mdp", horizon=5), est("grid11", horizon=250)
    assert type(bandit) is QEstimator and (bandit.max_sweeps, bandit.q_denom, bandit.alpha_laplace) == (1, 1.0, 0.1)
    assert type(mdp) is QEstimator and (mdp.max_sweeps, mdp.q_denom, mdp5.max_sweeps) == (10, 10.0, 5)
    assert type(grid) is GridQEstimator and (grid.max_sweeps, grid.grid_side, grid.mode) == (250, 11, "fresh")
    assert est("grid11", horizon=250, semantics="rlc").mode == "entered"
    v4b, v4m = est("bandit", semantics="v4"), est("mdp", semantics="v4")
    assert type(v4b) is V4Estimator and (v4b.q_denom, v4b.gamma, v4m.q_denom, v4m.max_sweeps) == (1.0, 0.99, 100.0, 10)
    assert all(isinstance(e, Estimator) for e in (bandit, grid, v4b))
    assert est("mdp", algo="rl2") is None
    with pytest.raises(ValueError, match="use algo rl2"):
        make_estimator(make_env("CartPole-v1"), TrainConfig(env="mdp"))
    with pytest.raises(ValueError, match="semantics 'v4' is implemented for envs bandit, mdp, grid11, grid13, "
                                         "not 'CartPole-v1'"):
        TrainConfig(env="CartPole-v1", algo="rl2", semantics="v4")  # the config refuses it first, naming the env
    # make_estimator's own check, by hook, for a family the config's name tables do not describe
    no_v4 = make_env("grid11")
    no_v4.v4_defaults = None
    with pytest.raises(ValueError, match="semantics 'v4' is not implemented for grid11 .it has no v4_defaults"):
        make_estimator(no_v4, TrainConfig(env="mdp", semantics="v4"))


def test_trainer_hooks_and_oracle_model():
    env = make_env("grid13")
    env500 = env.with_horizon(500)
    assert env500.horizon == 500 and env500.default_params.max_steps_in_episode == 500 and env.horizon == 350
    cfg = TrainConfig(env="grid13", horizon=500)
    est = make_estimator(env500, cfg)
    assert type(est) is GridQEstimator and est.grid_side == 13
    assert (est.max_sweeps, est.gamma, est.alpha_laplace, est.epsilon, est.q_denom, est.known_states) == \
        (500, 0.95, 0.01, 0.1, 10.0, "visited")
    coarse = make_estimator(env500, cfg.replace(algo="rl3_coarse"))  # measured faster than a per-cell model
    assert type(coarse) is DiscoveryQEstimator and (coarse.abstraction, coarse.grid_side, coarse.abstraction_radius,
                                                    coarse.capacity, coarse.max_transitions) == ("coarse", 13, 0.08,
                                                                                                 169, 500)
    assert (coarse.max_sweeps, coarse.alpha_laplace, coarse.epsilon, coarse.q_denom, coarse.known_states,
            coarse.warm_start) == (500, 0.01, 0.1, 10.0, "visited", True)
    dense = make_estimator(env500, cfg.replace(std_errors=True))  # standard errors: the dense estimator
    assert isinstance(dense, QEstimator) and dense.std_errors and dense.num_states == 169
    with pytest.raises(ValueError, match="RL³-coarse has no standard errors"):
        make_estimator(env500, cfg.replace(algo="rl3_coarse", std_errors=True))
    with pytest.raises(ValueError, match="algo 'rl3_coarse' does not apply to env 'mdp' .valid: rl2, rl3."):
        TrainConfig(env="mdp", algo="rl3_coarse")  # the config refuses it first
    # make_estimator's own check, by hook (env.grid_side), for a family the config's name tables do not describe
    with pytest.raises(ValueError, match="rl3_coarse' is for grid families"):
        make_estimator(make_env("mdp"), TrainConfig(env="grid11", algo="rl3_coarse"))
    _, task = small_task(0.2)
    t, r, absorbing, start = small_env().true_model(task)
    t_ref = ref.transition_matrix(SMALL, 0.2)
    rew = np.array([ref.REWARD.get(ch, 0.0) for ch in "".join(SMALL)])
    np.testing.assert_allclose(np.asarray(r), t_ref @ rew, atol=1e-4)
    assert int(start) == 24 and np.asarray(absorbing).sum() == 4


@pytest.mark.parametrize("env,variant,horizon,slots", [("garnet", "train", 100, 64), ("garnet", "s4096", 100, 201),
                                                        ("deepsea", "train", 300, 100), ("deepsea", "train", 20, 41)])
def test_discovery_slots_are_capped_by_the_family_state_bound(env, variant, horizon, slots):
    """Slots = min(state_bound, 2H + 1): garnet S = 64 < 201; S = 4096 > 201; deepsea N² = 100 < 601; 41 < 100."""
    est = make_estimator(make_env(env, variant), TrainConfig(env=env, variant=variant, algo="rl3", horizon=horizon))
    assert type(est) is DiscoveryQEstimator and est.capacity == slots and est.max_transitions == horizon
