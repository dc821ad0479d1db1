"""rl3jax.envs.mdp: transitions, rewards and steps of each variant (METHOD §3).

Statistical checks draw many independent samples and allow 5 standard errors of the estimate (stated at each
check): with fixed seeds they are deterministic, and a correct sampler would fail one with probability ~6e-7.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.envs.mdp import MDPState
from rl3jax.envs.registry import make_env
from tests.helpers import Z, _close, _step_many, _var_check, step_env_steps


# --------------------------------------------------------------------------------------------------- MDPs
def _dirichlet_check(t, alpha, what):
    s = t.shape[-1]
    assert t.min() >= 0.0
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-5, err_msg=f"{what}: rows sum to 1")
    rows = t.reshape(-1, s).astype(np.float64)
    n_rows = rows.shape[0]
    a0 = alpha * s
    var = alpha * (a0 - alpha) / (a0 ** 2 * (a0 + 1))  # per-entry variance of Dirichlet(α·1_S)
    # mean of each entry across rows: 1/S, s.e. sqrt(var / n_rows)
    for j in range(s):
        _close(rows[:, j].mean(), 1 / s, np.sqrt(var / n_rows), f"{what}: mean of entry {j}")
    # per-row mean squared deviation from 1/S has expectation var; rows are independent, so its s.e. is
    # its own std / sqrt(n_rows)
    per_row = ((rows - 1 / s) ** 2).mean(-1)
    _close(per_row.mean(), var, per_row.std() / np.sqrt(n_rows), f"{what}: entry variance {var:.5f}")
    return rows, var


def test_mdp_dirichlet_transitions(task_pool):
    t = task_pool("mdp")["train"].transitions
    assert t.shape[1:] == (10, 5, 10) and t.shape[0] >= 200
    rows, var = _dirichlet_check(t, 1.0, "Dirichlet(1)")
    assert np.isclose(var, 1 * 9 / (10 ** 2 * 11))
    t25 = task_pool("mdp")["alpha0.25"].transitions
    rows25, var25 = _dirichlet_check(t25, 0.25, "Dirichlet(0.25)")
    assert np.isclose(var25, 0.25 * 2.25 / (2.5 ** 2 * 3.5)) and var25 > 2 * var
    # sparser rows: more near-zero entries and a larger largest entry
    assert (rows25 < 0.01).mean() > (rows < 0.01).mean() + 0.2
    assert rows25.max(-1).mean() > rows.max(-1).mean() + 0.1
    chex.assert_tree_all_finite((t, t25))


def test_mdp_mean_rewards_and_noise(task_pool):
    tasks = task_pool("mdp")["train"]
    r = tasks.mean_rewards.astype(np.float64)
    assert r.shape[1:] == (10, 5) and r.shape[0] >= 200
    _close(r.mean(), 1.0, 1 / np.sqrt(r.size), "R = 1 + N(0,1): mean")
    _var_check(r, 1.0, 1.0, 3.0, "R = 1 + N(0,1): variance")
    np.testing.assert_array_equal(tasks.reward_noise, 1.0)
    # alpha0.25 changes only the transitions
    t25 = task_pool("mdp")["alpha0.25"]
    _close(t25.mean_rewards.mean(), 1.0, 1 / np.sqrt(r.size), "alpha0.25: reward mean")
    np.testing.assert_array_equal(t25.reward_noise, 1.0)


def test_mdp_det_rewards_uniform_noiseless(task_pool):
    tasks = task_pool("mdp")["det-rewards"]
    r = tasks.mean_rewards.astype(np.float64)
    assert r.min() >= 0.0 and r.max() <= 2.0
    _close(r.mean(), 1.0, np.sqrt(1 / 3 / r.size), "U(0,2) mean")
    _var_check(r, 1.0, 1 / 3, 1 / 5, "U(0,2) variance 1/3")  # U(-1,1): μ4 = 1/5
    np.testing.assert_array_equal(tasks.reward_noise, 0.0)
    np.testing.assert_allclose(tasks.transitions.sum(-1), 1.0, atol=1e-5)
    # observed rewards are exactly the means
    env, step = _step_many("mdp", "det-rewards")
    task = jax.tree.map(lambda x: x[0], tasks)
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    for s, a in [(0, 0), (4, 3)]:
        _, _, rew, _, _ = step(keys, MDPState(time=jnp.int32(0), pos=jnp.int32(s)), a, task)
        np.testing.assert_allclose(np.asarray(rew), task.mean_rewards[s, a], rtol=1e-6)


@pytest.mark.parametrize("variant", ["train", "alpha0.25"])
def test_mdp_step_distribution(variant, task_pool):
    """Next-state frequencies match T[s,a] and observed rewards are R(s,a) + N(0,1)."""
    env, step = _step_many("mdp", variant)
    task = jax.tree.map(lambda x: x[3], task_pool("mdp")[variant])
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    for s, a in [(0, 1), (7, 4)]:
        obs, nxt, r, done, _ = jax.device_get(step(keys, MDPState(time=jnp.int32(0), pos=jnp.int32(s)), a, task))
        assert not done.any()
        np.testing.assert_array_equal(obs, np.eye(10)[nxt.pos])
        freq = np.bincount(nxt.pos, minlength=10) / n
        p = np.asarray(task.transitions[s, a], np.float64)
        for j in range(10):  # binomial s.e.; + 1/n so that a p ≈ 0 entry may show one stray count
            assert abs(freq[j] - p[j]) <= Z * np.sqrt(p[j] * (1 - p[j]) / n) + 1 / n, (s, a, j, freq[j], p[j])
        assert (freq[p == 0] == 0).all()
        noise = r.astype(np.float64) - float(task.mean_rewards[s, a])
        _close(noise.mean(), 0.0, 1 / np.sqrt(n), "reward noise mean")
        _var_check(noise, 0.0, 1.0, 3.0, "reward noise variance 1")
        # the noise is independent of the next state (separate keys)
        _close(np.corrcoef(noise, nxt.pos)[0, 1], 0.0, 1 / np.sqrt(n), "noise vs next state correlation")
    _, st = env.reset_env(jax.random.PRNGKey(0), task)
    assert int(st.pos) == 0  # every task episode starts in state 1 (index 0)


class StepEnvJitTest(chex.TestCase):
    """``step_env`` gives the same observations, rewards and dones jitted and eager (8 steps of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_step_env_with_and_without_jit(self):
        env = make_env("mdp")
        chex.assert_trees_all_close(step_env_steps(self.variant(env.step_env), env),
                                    step_env_steps(env.step_env, env), rtol=1e-6)
