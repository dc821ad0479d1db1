"""The grid estimators against the loop-based NumPy reference in tests/reference_grid.py: RL³'s sparse
``rl3jax.estimators.grid.GridQEstimator`` (METHOD §2.1, §2.2; also against the dense QEstimator) and what
``make_estimator`` gives RL³-coarse (§2.5: the ``DiscoveryQEstimator`` with abstraction 'coarse')."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs.grid import GridState
from rl3jax.envs.grid_geometry import (
    start_cell,
)
from rl3jax.estimators import make_estimator
from rl3jax.estimators.discovery import DiscoveryQEstimator
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.meta_episode import MetaEnv, make_meta_env
from tests import reference_grid as ref
from tests.helpers import estimator_features, fast_jit, grid_estimator, sampled, small_task


# -------------------------------------------------------------------------------- the Q-estimator
def drive(env, est, task, key, steps):
    """Random-action steps of one task with the estimator updated as ``MetaEnv`` does (reset to 'S' after
    an absorbing tile); returns per-step (s, a, r, s_next, terminal, shown cell, features, sweeps)."""
    start = start_cell(env.size)

    def body(carry, k):
        e, pos = carry
        ka, ks = jax.random.split(k)
        a = jax.random.randint(ka, (), 0, 5)
        _, nst, r, term, _ = env.step_env(ks, GridState(time=jnp.int32(0), pos=pos), a, task)
        e = est.update(e, pos, a, r, nst.pos, term)
        shown = jnp.where(term, start, nst.pos)
        return (e, shown), (pos, a, r, nst.pos, term, shown, est.features(e, shown), e.sweeps)

    (e, _), out = jax.lax.scan(body, (est.init(jnp.int32(start)), jnp.int32(start)), jax.random.split(key, steps))
    return e, out


def replay_reference(env, est, out, mode="fresh"):
    s, a, r, s2, term, shown, feats, sweeps = (np.asarray(x) for x in out)
    rest = ref.RefEstimator(env.size, start_cell(env.size), gamma=est.gamma, alpha=est.alpha_laplace,
                            epsilon=est.epsilon, max_sweeps=est.max_sweeps, warm_start=est.warm_start,
                            coarse_radius=getattr(est, "abstraction_radius", None), q_denom=est.q_denom)
    for t in range(len(s)):
        rest.update(int(s[t]), int(a[t]), float(r[t]), int(s2[t]), bool(term[t]))
        np.testing.assert_allclose(feats[t], rest.features(int(shown[t]), mode), rtol=0, atol=1e-5,
                                   err_msg=f"step {t}")
        assert sweeps[t] == rest.sweeps, t
    return rest


def cell_ids(e) -> dict[int, int]:
    """RL³-coarse (one task's ``DiscoveryState``): concrete cell -> abstract id."""
    return {int(c): int(z) for c, z in list(zip(np.asarray(e.ids), np.asarray(e.mid)))[:int(e.num_slots)]}


@pytest.mark.parametrize("abstraction", [None, "coarse"])
def test_estimator_matches_reference_on_small_grid(abstraction):
    """Many task episodes (absorbing 'G'/'X' next to the start), growing K, warm starts, coarse clusters."""
    env, task = small_task(0.2)
    est = grid_estimator(env, abstraction)
    assert type(est) is (DiscoveryQEstimator if abstraction else GridQEstimator)
    run = fast_jit(jax.vmap(lambda t, k: drive(env, est, t, k, 250), in_axes=(None, 0)))
    e, out = run(task, jax.random.split(jax.random.key(3), 2))
    for i in range(2):
        o = jax.tree.map(lambda x, i=i: x[i], out)
        rest = replay_reference(env, est, o)
        assert np.asarray(o[4]).sum() >= 3  # several task episodes ended on 'G'/'X'
        one = jax.tree.map(lambda x, i=i: x[i], e)
        assert set(np.flatnonzero(np.asarray(est.known(one)))) == set(rest.seen)
        if abstraction == "coarse":
            assert cell_ids(one) == rest.cell_id  # same clusters, same creation order
            assert int(one.num_ids) == rest.k < len(rest.seen)  # some cells were clustered
            assert np.bincount(list(cell_ids(one).values())).max() == 2  # clusters of at most 2, some full
        np.testing.assert_allclose(np.asarray(e.q[i])[:rest.k] if abstraction else
                                   np.asarray(e.q[i])[rest.seen], rest.q[:rest.k] if abstraction else
                                   rest.q[[rest.cell_id[c] for c in rest.seen]], atol=1e-4)


@pytest.mark.parametrize("family,abstraction,mode", [("grid13", None, "fresh"), ("grid11", "coarse", "fresh"),
                                                     ("grid13", "coarse", "entered")])
def test_estimator_matches_reference_on_sampled_grids(family, abstraction, mode):
    env, tasks, _ = sampled(family, "train")
    est = grid_estimator(env, abstraction, mode)
    run = fast_jit(jax.vmap(lambda t, k: drive(env, est, t, k, 160)))
    tasks2 = jax.tree.map(lambda x: jnp.asarray(x[:2]), tasks)
    _, out = run(tasks2, jax.random.split(jax.random.key(5), 2))
    for i in range(2):
        replay_reference(env, est, jax.tree.map(lambda x, i=i: x[i], out), mode)


def test_coarse_clustering_tie_break_and_cap():
    """Equidistant previously seen cells: the earliest discovered wins; a full cluster takes no more."""
    n = 7
    est = DiscoveryQEstimator(num_actions=5, capacity=n * n, gamma=0.95, alpha_laplace=0.01, epsilon=0.1,
                              max_sweeps=350, warm_start=True, q_denom=10.0, num_states=n * n, abstraction="coarse",
                              grid_side=n, abstraction_radius=0.15)
    update = fast_jit(est.update)
    e = est.init(jnp.int32(24))  # centre (3, 3)
    path = [(24, 25), (25, 18), (18, 17), (17, 16), (16, 23)]  # E, N, W, W, S
    for s, s2 in path:
        e = update(e, s, 0, -1.0, s2, False)
    ids = cell_ids(e)
    # 25 joins 24; 18 is next to 25 (full) only -> new id; 17 joins 18 (only free neighbour cluster);
    # 16 is next to 17 (full) -> new id; 23 is next to 16 (free) and 24 (full) -> joins 16
    assert [ids[c] for c in (24, 25, 18, 17, 16, 23)] == [0, 0, 1, 1, 2, 2]
    rest = ref.RefEstimator(n, 24, coarse_radius=0.15)
    for s, s2 in path:
        rest.update(s, 0, -1.0, s2, False)
    assert rest.cell_id == ids
    # a tie: new cell 17 = (2,3) is next to the singletons 16 = (2,2) and 18 = (2,4); 16 was seen first
    path = [(24, 23), (23, 16), (16, 23), (23, 24), (24, 25), (25, 26), (26, 25), (25, 18), (18, 17)]
    e = est.init(jnp.int32(24))
    rest = ref.RefEstimator(n, 24, coarse_radius=0.15)
    for s, s2 in path:
        e = update(e, s, 0, -1.0, s2, False)
        rest.update(s, 0, -1.0, s2, False)
    assert cell_ids(e) == rest.cell_id == {24: 0, 23: 0, 16: 1, 25: 2, 26: 2, 18: 3, 17: 1}
    np.testing.assert_allclose(np.asarray(e.q)[:4], rest.q, atol=1e-4)


def test_estimator_rejects_std_errors_and_bad_sizes():
    with pytest.raises(ValueError, match="dense"):
        GridQEstimator(num_states=169, gamma=0.95, std_errors=True)
    with pytest.raises(ValueError):
        GridQEstimator(num_states=170, gamma=0.95)


def rollout(me: MetaEnv, tasks, key, steps):
    def one(task, k):
        k0, k1 = jax.random.split(k)
        obs, st = me.reset(k0, task)

        def body(st, k):
            ka, ks = jax.random.split(k)
            obs, st, r, d, info = me.step(ks, st, jax.random.randint(ka, (), 0, 5), task)
            return st, (obs, r, st.est.sweeps)
        return jax.lax.scan(body, st, jax.random.split(k1, steps))[1]
    return jax.vmap(one)(tasks, jax.random.split(key, tasks.tiles.shape[0]))


def test_grid_estimator_equals_dense_estimator_in_meta_env():
    env, tasks, _ = sampled("grid13", "train")
    tasks = jax.tree.map(lambda x: jnp.asarray(x[:3]), tasks)
    h = 120
    dense = QEstimator(num_states=169, num_actions=5, gamma=0.95, alpha_laplace=0.01, epsilon=0.1, max_sweeps=env.horizon,
                       warm_start=True, q_denom=10.0, known_states="visited")
    outs = [fast_jit(rollout, static_argnums=(0, 3))(MetaEnv(env, h, est), tasks, jax.random.key(11), h)
            for est in (grid_estimator(env), dense)]
    (obs_g, r_g, sw_g), (obs_d, r_d, sw_d) = outs
    np.testing.assert_array_equal(np.asarray(r_g), np.asarray(r_d))
    np.testing.assert_array_equal(np.asarray(sw_g), np.asarray(sw_d))
    np.testing.assert_allclose(np.asarray(obs_g), np.asarray(obs_d), rtol=0, atol=1e-4)
    assert np.asarray(sw_g).max() > 20  # some solves restarted from zero after K grew


class UpdateJitTest(chex.TestCase):
    """``update`` then ``features`` give the same values jitted and eager (8 transitions of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_and_features_with_and_without_jit(self):
        cfg = TrainConfig(env="grid13", algo="rl3", horizon=20)
        env = make_meta_env(cfg).env
        est = make_estimator(env, cfg)
        assert isinstance(est, GridQEstimator)
        jitted = estimator_features(self.variant(est.update), self.variant(est.features), est, env)
        chex.assert_trees_all_close(jitted, estimator_features(est.update, est.features, est, env), rtol=1e-6,
                                    atol=1e-7)
