"""rl3jax.meta_episode: the vmapped, jitted meta-episode equals a loop, traces once, and its RL² inputs
equal the NumPy reference (tests/reference.py)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.envs.mdp import VARIANTS as MDP_VARIANTS
from rl3jax.envs.registry import make_env
from rl3jax.estimators.tabular import QEstimator
from rl3jax.meta_episode import MetaEnv
from tests.helpers import _mixed_tasks, _run_and_compare, fast_jit, grid_estimator, sampled

# ------------------------------------------------------------------------------------ MetaEnv under vmap/jit
H_VMAP, N_VMAP = 13, 6


def _meta_env_rl3():
    env = make_env("mdp")
    # std errors are compared under vmap against the reference in tests/estimators/test_tabular.py; off here to
    # keep this compile (x2: vmapped and single) small
    est = QEstimator(num_states=10, num_actions=5, gamma=0.95, max_sweeps=10, std_errors=False, q_denom=10.0,
                     mode="entered", known_states="visited", warm_start=True)
    return env, MetaEnv(env, H_VMAP, est)


def _mixed_mdp_tasks(task_pool, n):
    """Tasks from all three MDP variants (their dynamics share one step function; only sampling differs)."""
    assert n % len(MDP_VARIANTS) == 0
    m = n // len(MDP_VARIANTS)
    parts = [jax.tree.map(lambda x: x[-m:], task_pool("mdp")[v]) for v in MDP_VARIANTS]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def test_vmap_equals_loop_no_retrace_finite(task_pool):
    env, menv = _meta_env_rl3()
    tasks = _mixed_mdp_tasks(task_pool, N_VMAP)
    assert tasks.transitions.shape[0] == N_VMAP
    assert set(np.unique(tasks.reward_noise)) == {0.0, 1.0}
    keys = jax.random.split(jax.random.PRNGKey(1), (N_VMAP, H_VMAP + 1))
    actions = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (N_VMAP, H_VMAP), 0, 5))

    chex.clear_trace_counter()
    v_reset = jax.jit(chex.assert_max_traces(lambda k, p: jax.vmap(menv.reset)(k, p), n=1))
    # retracing (e.g. a state field changing dtype or weak type between reset and step) would raise
    v_step = jax.jit(chex.assert_max_traces(lambda *args: jax.vmap(menv.step)(*args), n=1))
    obs, st = v_reset(keys[:, 0], tasks)
    v_obs, v_rew = [obs], []
    for t in range(H_VMAP):
        obs, st, r, done, info = v_step(keys[:, t + 1], st, jnp.asarray(actions[:, t]), tasks)
        chex.assert_tree_all_finite((obs, st, r))
        v_obs.append(obs)
        v_rew.append(r)
        assert bool(done.all()) == (t == H_VMAP - 1)
    v_obs, v_rew = np.stack(v_obs, 1), np.stack(v_rew, 1)
    np.testing.assert_allclose(np.asarray(st.episode_return), v_rew.sum(1), rtol=1e-5, atol=1e-5)
    assert v_obs.shape == (N_VMAP, H_VMAP + 1, menv.obs_dim)

    # a Python loop over single tasks (jit, no vmap) gives the same meta-episodes
    s_reset, s_step = jax.jit(menv.reset), jax.jit(menv.step)
    for i in range(N_VMAP):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        obs, sst = s_reset(keys[i, 0], task)
        np.testing.assert_allclose(obs, v_obs[i, 0], atol=1e-5)
        for t in range(H_VMAP):
            obs, sst, r, _, _ = s_step(keys[i, t + 1], sst, actions[i, t], task)
            np.testing.assert_allclose(obs, v_obs[i, t + 1], atol=1e-5, err_msg=f"task {i} step {t}")
            np.testing.assert_allclose(r, v_rew[i, t], atol=1e-5)
        chex.assert_trees_all_close(sst, jax.tree.map(lambda x, i=i: x[i], st), atol=1e-5)


@pytest.mark.parametrize("abstraction", [None, "coarse"])
def test_meta_env_vmapped_jit_no_retrace(abstraction):
    env, tasks, _ = sampled("grid13", "train")
    me = MetaEnv(env, env.horizon, grid_estimator(env, abstraction))
    assert me.obs_dim == me.layout.size and me.layout["rl3"].size == me.estimator.feature_dim
    traces = []

    @fast_jit
    def step(keys, state, actions, tasks):
        traces.append(1)
        return jax.vmap(me.step)(keys, state, actions, tasks)

    b = 8
    tasks = jax.tree.map(lambda x: jnp.asarray(x[:b]), tasks)
    obs, st = fast_jit(jax.vmap(me.reset))(jax.random.split(jax.random.key(0), b), tasks)
    total = np.zeros(b)
    for t in range(6):
        keys = jax.random.split(jax.random.key(100 + t), b)
        obs, st, r, done, info = step(keys, st, jnp.full((b,), t % 5, jnp.int32), tasks)
        total += np.asarray(r)
        assert obs.shape == (b, me.obs_dim) and np.isfinite(np.asarray(obs)).all()
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(st.episode_return), total, rtol=1e-6)
    assert (np.asarray(st.t) == 6).all()
    # the counts block shows the visits of the current cell
    assert me.layout["counts"].stop == me.obs_dim and np.asarray(obs[:, me.layout["counts"].slice]).min() >= 0.0


def test_rl2_inputs_match_reference(task_pool):
    """No estimator (RL²): the first blocks only."""
    env = make_env("mdp")
    tasks = _mixed_tasks(task_pool, "mdp", 6, seed=3)
    menv, _, _ = _run_and_compare(env, None, horizon=23, num_tasks=6, seed=3, tasks=tasks)
    assert "rl3" not in menv.layout and menv.layout["task_obs"].size == env.num_states
