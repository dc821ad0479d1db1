"""rl3jax.estimators.discovery: the discovery-indexed estimator equals the dense, grid and v4 estimators (and so
the NumPy references they are checked against) over whole random meta-episodes, whatever the ids; capacity,
a non-integer state index, and make_estimator's choice."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs.base import DISCOVERY_DEFAULTS, V4Defaults
from rl3jax.envs.registry import make_env
from rl3jax.estimators import Estimator, make_estimator
from rl3jax.estimators.discovery import DiscoveryQEstimator
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.meta_episode import MetaEnv, make_meta_env
from tests.helpers import estimator_features
from tests.probes import Probe

HASH = (7919, 123456789)


def like(old, **kw) -> DiscoveryQEstimator:
    """The discovery estimator with ``old``'s settings (slots: all S when old knows all states, else 2H + 1)."""
    h = kw.pop("h")
    fields = ("num_actions", "gamma", "epsilon", "max_sweeps", "q_denom", "num_states")
    common = {f: getattr(old, f) for f in fields}
    if not isinstance(old, QEstimator | GridQEstimator):  # V4Estimator
        return DiscoveryQEstimator(**{**common, "semantics": "v4", "capacity": old.num_states, "known_states": "all",
                                      "max_transitions": h, **kw})
    common.update(alpha_laplace=old.alpha_laplace, warm_start=old.warm_start, mode=old.mode,
                  known_states=old.known_states, max_transitions=h,
                  capacity=old.num_states if old.known_states == "all" else min(old.num_states, 2 * h + 1))
    return DiscoveryQEstimator(**{**common, **kw})


def play(menv: MetaEnv, tasks, key, all_ids):
    """One whole meta-episode of uniformly random actions per task (jit of vmap). Returns per step (H, tasks):
    the policy input, sweeps, and Q at every state of ``all_ids`` (ids as the estimator sees them)."""
    h, n = menv.horizon, menv.num_actions
    est = menv.estimator

    def one(task, k):
        k0, k1 = jax.random.split(k)
        _, st = menv.reset(k0, task)

        def body(st, k):
            ka, ks = jax.random.split(k)
            obs, st, _, _, _ = menv.step(ks, st, jax.random.randint(ka, (), 0, n), task)
            return st, (obs, est.sweeps(st.est), est.q_values(st.est, all_ids))
        return jax.lax.scan(body, st, jax.random.split(k1, h))[1]
    num = jax.tree.leaves(tasks)[0].shape[0]
    return jax.jit(jax.vmap(one))(tasks, jax.random.split(key, num))


def compare(env, old, new, h, num_tasks, seed, ids=None, **meta_kw):
    """Both estimators in the same meta-episodes (same keys, so the same transitions): policy inputs, sweeps and
    Q at every state equal within 1e-5 (Q relative to its scale). Returns the old run's sweeps."""
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.key(seed), num_tasks))
    states = jnp.arange(env.num_states)
    obs_o, sw_o, q_o = play(MetaEnv(env, h, old, **meta_kw), tasks, jax.random.key(seed + 1), states)
    new_env = env if ids is None else ids
    obs_n, sw_n, q_n = play(MetaEnv(new_env, h, new, **meta_kw), tasks, jax.random.key(seed + 1),
                            states if ids is None else states * HASH[0] + HASH[1])
    np.testing.assert_array_equal(np.asarray(sw_n), np.asarray(sw_o))
    np.testing.assert_allclose(np.asarray(obs_n), np.asarray(obs_o), rtol=0, atol=1e-5)
    q_o = np.asarray(q_o)
    np.testing.assert_allclose(np.asarray(q_n), q_o, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(q_o).max()))
    return np.asarray(sw_o)


def est_of(env_name, h, **cfg):
    env = make_env(env_name).with_horizon(h)
    return env, make_estimator(env, TrainConfig(env=env_name, horizon=h, **cfg))


# ------------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("semantics", ["fresh", "rlc"])
def test_mdp_equals_dense(semantics):
    """mdp (all 10 states known from the start, 10 sweeps, Q from 0): the dense QEstimator's values, which
    tests/estimators/test_tabular.py checks against the NumPy reference."""
    env, old = est_of("mdp", 43, semantics=semantics)
    assert type(old) is QEstimator and old.known_states == "all"
    sweeps = compare(env, old, like(old, h=43), 43, 12, seed=3)
    assert sweeps.min() >= 1 and sweeps.max() == 10  # some solves stopped early, some used the budget


@pytest.mark.parametrize("env_name,h", [("mdp", 34), ("bandit", 24)])
def test_v4_equals_v4_estimator(env_name, h):
    """semantics 'v4' (the paper's code): V4Estimator's values (tests/estimators/test_v4.py: the Julia reference)."""
    cfg = TrainConfig(env=env_name, algo="rl3", semantics="v4", horizon=h)
    menv = make_meta_env(cfg)
    old = menv.estimator
    new = like(old, h=h)
    assert new.feature_layout == old.feature_layout
    compare(menv.env, old, new, h, 12, seed=5, layout="v4", drop_task_obs=menv.drop_task_obs)


@pytest.mark.parametrize("family,mode", [("grid11", "fresh"), ("grid13", "rlc")])
def test_grids_equal_grid_estimator(family, mode):
    """RL³ on grids (warm start, K growing): GridQEstimator's values, which tests/estimators/test_grid.py checks
    against tests/reference_grid.py (as it checks RL³-coarse, which make_estimator serves with this estimator)."""
    h = 150
    env, old = est_of(family, h, semantics=mode)
    assert type(old) is GridQEstimator
    new = like(old, h=h)
    assert new.capacity == env.num_states  # min(N², 2H + 1)
    sweeps = compare(env, old, new, h, 3, seed=11)
    assert sweeps.max() > 8  # some solves restarted from zero after K grew (a warm solve takes 1-4)


def test_hashed_ids_equal_small_ids():
    """ids = id·7919 + 123456789 (ids as a hash gives them): the same inputs, sweeps and Q as the dense model of
    the small ids, with known states growing as visited (K < S early on, warm start)."""
    env = make_env("mdp")
    old = QEstimator(num_states=10, num_actions=5, gamma=0.95, max_sweeps=10, warm_start=True, q_denom=10.0,
                     known_states="visited")
    hashed = make_env("mdp")
    hashed.state_index = lambda state, params: state.pos * HASH[0] + HASH[1]
    new = like(old, h=30, num_states=None)
    compare(env, old, new, 30, 8, seed=21, ids=hashed)


class UpdateJitTest(chex.TestCase):
    """``update`` then ``features`` give the same values jitted and eager (8 transitions of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_and_features_with_and_without_jit(self):
        for name, algo in (("grid11", "rl3_coarse"), ("mdp", "rl3")):
            env, old = est_of(name, 20, algo=algo)
            est = old if algo == "rl3_coarse" else like(old, h=20)
            jitted = estimator_features(self.variant(est.update), self.variant(est.features), est, env)
            chex.assert_trees_all_close(jitted, estimator_features(est.update, est.features, est, env),
                                        rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("env_name,h,semantics", [("mdp", 20, "fresh"), ("grid11", 40, "rlc")])
def test_estimator_discovery_option_equals_auto(env_name, h, semantics):
    """``estimator='discovery'``: the DiscoveryQEstimator with auto's settings (mdp: all 10 states as slots), the
    same policy inputs, sweeps and Q (1e-5); with std_errors it is refused, naming both."""
    env, auto = est_of(env_name, h, semantics=semantics)
    _, new = est_of(env_name, h, semantics=semantics, estimator="discovery")
    assert type(auto) in (QEstimator, GridQEstimator) and new == like(auto, h=h)
    assert new.capacity == (10 if env_name == "mdp" else 81) and new.max_transitions == h
    compare(env, auto, new, h, 4, seed=7)
    assert type(est_of(env_name, h, semantics="v4", estimator="discovery")[1]) is DiscoveryQEstimator
    with pytest.raises(ValueError, match="estimator 'discovery' has no standard errors .std_errors=true needs "
                                         "estimator 'auto'"):
        TrainConfig(env=env_name, estimator="discovery", std_errors=True)
    with pytest.raises(ValueError, match="estimator 'dense' is not one of auto, discovery"):
        TrainConfig(env=env_name, estimator="dense")


# ------------------------------------------------------------------------------------------- capacity
def test_capacity_reached_leaves_new_states_out():
    """3 slots, 2 transition entries: a 4th state gets no slot (its steps stay out of the model, its features
    are zeros); a 3rd distinct transition is left out, while a seen one still counts."""
    est = DiscoveryQEstimator(num_actions=2, capacity=3, gamma=0.9, max_transitions=2, max_sweeps=50,
                              epsilon=1e-6, num_states=100)
    update = jax.jit(est.update)
    e = est.init(jnp.int32(40))
    e = update(e, 40, 0, 1.0, 50, False)  # entry 1; slots 40, 50
    e = update(e, 50, 1, 0.0, 60, False)  # entry 2; slots full
    full = e
    e = update(e, 60, 0, 5.0, 70, False)  # 70 has no slot: left out
    assert int(e.num_slots) == 3 and 70 not in np.asarray(e.ids)
    np.testing.assert_array_equal(np.asarray(e.n_sa), np.asarray(full.n_sa))
    np.testing.assert_array_equal(np.asarray(est.features(e, 70)), np.zeros(8))
    np.testing.assert_array_equal(np.asarray(est.q_values(e, jnp.array([70, 71]))), np.zeros((2, 2)))
    e = update(e, 40, 1, 2.0, 60, False)  # a 3rd distinct entry: left out
    assert int(e.num_entries) == 2 and float(e.n_sa[0, 1]) == 0.0
    e = update(e, 40, 0, 3.0, 50, False)  # entry 1 again: counted, mean (1 + 3)/2
    assert float(e.e_cnt[0]) == 2.0 and float(e.e_r[0]) == 2.0 and float(e.n_sa[0, 0]) == 2.0
    known = np.asarray(est.known(e))
    assert known.shape == (100,) and set(np.flatnonzero(known)) == {40, 50, 60}
    with pytest.raises(ValueError, match="needs num_states"):
        DiscoveryQEstimator(num_actions=2, capacity=3, gamma=0.9).known(e)


def test_settings_are_checked():
    for kw, match in ((dict(capacity=0), "capacity must be >= 1"), (dict(semantics="v5"), "semantics must be"),
                      (dict(known_states="all", num_states=4), "num_states == capacity"),
                      (dict(known_states="all", num_states=3), "needs max_transitions"),
                      (dict(abstraction="coarse"), "needs grid_side"),
                      (dict(semantics="v4", mode="entered"), "mode must be 'fresh'")):
        with pytest.raises(ValueError, match=match):
            DiscoveryQEstimator(**{**dict(num_actions=2, capacity=3, gamma=0.9), **kw})


# ----------------------------------------------------------------------------- state index and wiring
class IndexedProbe(Probe):
    """The observation probe (a random bit at every reset) naming its state; ``float_index``: a wrong hook."""

    rl3_defaults = DISCOVERY_DEFAULTS

    def __init__(self, float_index=False):
        super().__init__("observation")
        self.float_index = float_index

    def state_index(self, state, params):
        return state.bit.astype(jnp.float32) if self.float_index else state.bit


def test_state_index_hook_wiring():
    """make_estimator gives families without num_states the discovery estimator (2H + 1 slots: random reset
    states), a float index is a TypeError at trace time naming the hook, no index is refused."""
    probe = IndexedProbe()
    assert probe.has_state_index and make_env("mdp").has_state_index
    assert not make_env("CartPole-v1").has_state_index
    est = make_estimator(probe, TrainConfig(env="mdp", horizon=6))
    assert type(est) is DiscoveryQEstimator and isinstance(est, Estimator)
    assert (est.capacity, est.max_transitions, est.max_sweeps, est.warm_start) == (13, 6, 1, True)
    menv = MetaEnv(probe, 6, est)
    _, st = menv.reset(jax.random.key(0), probe.default_params)
    assert int(st.est.num_slots) == 1
    with pytest.raises(TypeError, match="state_index hook of env 'probe-observation'.*got float32"):
        MetaEnv(IndexedProbe(float_index=True), 6, est).reset(jax.random.key(0), probe.default_params)
    with pytest.raises(ValueError, match="no state_index hook"):
        MetaEnv(Probe("observation"), 6, est)
    with pytest.raises(ValueError, match="std_errors=true needs the dense estimator"):
        make_estimator(probe, TrainConfig(env="mdp", horizon=6, std_errors=True))


def test_v4_on_grids_is_discovery_indexed():
    """semantics 'v4' on a grid family with v4_defaults: the discovery estimator (N² slots), the v4 layout."""
    env = make_env("grid11").with_horizon(40)
    env.v4_defaults = V4Defaults(q_denom=100.0)
    est = make_estimator(env, TrainConfig(env="mdp", semantics="v4", horizon=40))
    assert type(est) is DiscoveryQEstimator and est.semantics == "v4"
    assert (est.capacity, est.max_transitions, est.q_denom, est.gamma) == (81, 40, 100.0, 0.99)
    menv = MetaEnv(env, 40, est, layout="v4")
    obs, st = menv.reset(jax.random.key(0), env.sample_task(jax.random.key(1)))
    _, st, _, _, _ = menv.step(jax.random.key(2), st, jnp.int32(1), env.sample_task(jax.random.key(1)))
    assert int(st.est.num_slots) in (1, 2) and obs.shape == (menv.obs_dim,)
