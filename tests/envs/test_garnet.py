"""rl3jax.envs.garnet: sampling statistics, steps against the sparse model, jit / vmap, the oracle's values
against a NumPy loop (METHOD §3).

Statistical checks allow 5 standard errors (``tests.helpers.Z``), stated at each check; with fixed seeds they are
deterministic, and a correct sampler would fail one with probability ~6e-7 per check.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.envs import catalog, garnet
from rl3jax.envs.garnet import GarnetMDP, GarnetState, distinct_ints
from rl3jax.envs.registry import make_env
from rl3jax.evaluate import evaluate, held_out_tasks
from rl3jax.meta_episode import MetaEnv
from tests.helpers import Z, _close, _meta, _var_check, step_env_steps


def _tasks(env, n, seed=0):
    return jax.device_get(jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(seed), n)))


def test_variants_sizes_and_names():
    assert tuple(garnet.SIZES) == catalog.FAMILIES["garnet"].variants
    envs = {v: make_env("garnet", v) for v in catalog.FAMILIES["garnet"].variants}
    assert {v: (e.size, e.branching) for v, e in envs.items()} == {
        "train": (64, 5), "s256": (256, 5), "s1024": (1024, 5), "s4096": (4096, 5), "branch10": (64, 10)}
    assert envs["s4096"].name == "garnet-s4096" and envs["branch10"].name == "garnet-s64-k10"
    assert all(e.num_states is None and e.task_horizon == 10 and e.num_actions == 5 for e in envs.values())
    # one observation size at every S (a run trained on s64 evaluates on s4096)
    assert {e.observation_space().shape for e in envs.values()} == {(12,)}
    assert envs["s4096"].has_true_model_sparse and not make_env("mdp").has_true_model_sparse
    with pytest.raises(NotImplementedError, match="mdp has no known sparse model"):
        make_env("mdp").true_model_sparse(make_env("mdp").default_params)
    with pytest.raises(ValueError, match="'s64' is not one of 'train', 's256'"):
        GarnetMDP("s64")
    with pytest.raises(ValueError, match="1 <= k <= S, got S=4, k=5"):
        GarnetMDP(num_states=4)


def test_distinct_ints_uniform_subsets():
    """Floyd's algorithm: k distinct values, each of the n equally likely (k/n per draw; binomial s.e.)."""
    n, k, rows = 7, 3, 20000
    x = np.asarray(distinct_ints(jax.random.key(1), n, k, (rows,)))
    assert x.shape == (rows, k) and x.min() >= 0 and x.max() < n
    assert (np.sort(x, 1)[:, 1:] > np.sort(x, 1)[:, :-1]).all()
    p = k / n
    for j in range(n):
        _close((x == j).any(1).mean(), p, np.sqrt(p * (1 - p) / rows), f"P(value {j} in the subset)")
    # all C(7,3) = 35 subsets occur, each with probability 1/35
    codes = (1 << x).sum(1)
    counts = np.bincount(codes, minlength=128)[np.bincount(codes, minlength=128) > 0]
    assert len(counts) == 35
    assert np.abs(counts / rows - 1 / 35).max() <= Z * np.sqrt(1 / 35 * 34 / 35 / rows)


@pytest.mark.parametrize("variant,num", [("train", 300), ("branch10", 300), ("s4096", 4)])
def test_sampled_tasks(variant, num):
    """Successors distinct and in range, probabilities Dirichlet(1) over k (rows sum to 1; per-entry mean 1/k and
    variance (k − 1)/(k²(k + 1))), every state a successor of a row with probability k/S, rewards 1 + N(0, 1)."""
    env = make_env("garnet", variant)
    s, k = env.size, env.branching
    t = _tasks(env, num)
    succ, prob, r = t.succ, t.prob.astype(np.float64), t.mean_rewards.astype(np.float64)
    assert succ.shape == prob.shape == (num, s, 5, k) and succ.dtype == np.int32 and r.shape == (num, s, 5)
    assert succ.min() >= 0 and succ.max() < s
    srt = np.sort(succ, -1)
    assert (srt[..., 1:] > srt[..., :-1]).all(), "successors drawn without replacement"
    assert prob.min() > 0
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-5)
    rows = prob.reshape(-1, k)
    var = (k - 1) / (k * k * (k + 1))
    _close(rows.mean(), 1 / k, np.sqrt(var / rows.size), "Dirichlet(1): entry mean")
    per_row = ((rows - 1 / k) ** 2).mean(-1)
    _close(per_row.mean(), var, per_row.std() / np.sqrt(len(per_row)), f"Dirichlet(1): entry variance {var:.4f}")
    hit = np.zeros((num * s * 5, s), bool)
    np.put_along_axis(hit, succ.reshape(-1, k), True, axis=1)
    freq, p = hit.mean(0), k / s
    assert np.abs(freq - p).max() <= Z * np.sqrt(p * (1 - p) / hit.shape[0]), "successors uniform over states"
    _close(r.mean(), 1.0, 1 / np.sqrt(r.size), "R = 1 + N(0,1): mean")
    _var_check(r, 1.0, 1.0, 3.0, "R = 1 + N(0,1): variance")


def test_step_follows_the_sparse_model():
    """20000 steps from (s, a): next-state frequencies equal prob[s, a] (5 binomial s.e.), no other state is
    reached, rewards R(s, a) + N(0, 1) (mean and variance, 5 s.e.); the observation is the ±1 code of s'."""
    env = make_env("garnet")
    task = jax.tree.map(lambda x: x[0], _tasks(env, 1, seed=3))
    step = jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))
    keys = jax.random.split(jax.random.key(4), 20000)
    for s, a in [(0, 0), (17, 3), (63, 4)]:
        obs, new, rew, term, _ = jax.device_get(step(keys, GarnetState(pos=jnp.int32(s)), jnp.int32(a), task))
        assert not term.any()
        nxt, p = np.asarray(new.pos), np.asarray(task.prob[s, a], np.float64)
        assert set(np.unique(nxt)) <= set(np.asarray(task.succ[s, a]).tolist())
        for j, sj in enumerate(np.asarray(task.succ[s, a])):
            _close((nxt == sj).mean(), p[j], np.sqrt(p[j] * (1 - p[j]) / len(nxt)), f"P({sj} | {s}, {a})")
        _close(rew.mean(), float(task.mean_rewards[s, a]), 1 / np.sqrt(len(rew)), "reward mean")
        _var_check(rew, float(task.mean_rewards[s, a]), 1.0, 3.0, "reward variance")
        bits = (nxt[:, None] >> np.arange(12)) & 1
        np.testing.assert_array_equal(obs, 2.0 * bits - 1.0)


def test_state_index_and_code_at_s4096():
    env = make_env("garnet", "s4096")
    task = env.default_params
    for s in (0, 1, 2049, 4095):
        st = GarnetState(pos=jnp.int32(s))
        assert int(env.state_index(st, task)) == s
        code = np.asarray(env.get_obs(st))
        assert int(((code + 1) / 2) @ (1 << np.arange(12))) == s


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_env_with_and_without_jit(self):
        env = make_env("garnet")
        chex.assert_trees_all_close(step_env_steps(self.variant(env.step_env), env),
                                    step_env_steps(env.step_env, env), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_sample_task_vmapped_equals_one_by_one(self):
        env = GarnetMDP(num_states=16)
        keys = jax.random.split(jax.random.key(5), 3)
        batch = self.variant(jax.vmap(env.sample_task))(keys)
        for i, key in enumerate(keys):
            chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batch), env.sample_task(key))


def reference_values(succ, prob, r, steps):
    """V[k][s], k = 0..steps: finite-horizon value iteration with loops over states, actions and successors."""
    succ, prob, r = np.asarray(succ, int), np.asarray(prob, np.float64), np.asarray(r, np.float64)
    n_s, n_a, k = succ.shape
    vs = [np.zeros(n_s)]
    for _ in range(steps):
        v = vs[-1]
        vs.append(np.array([max(r[s, a] + sum(prob[s, a, j] * v[succ[s, a, j]] for j in range(k))
                                for a in range(n_a)) for s in range(n_s)]))
    return np.array(vs)


def test_oracle_values_equal_the_numpy_loop():
    """``finite_horizon_values`` on the sparse model equals the loop reference (1e-4) on a small garnet, and on
    the dense model built by ``true_model``; the dense model is refused beyond 256 states."""
    from rl3jax.baselines.generic import finite_horizon_values

    env = GarnetMDP(num_states=12)
    menv = MetaEnv(env, 100)
    for task in (jax.tree.map(lambda x, i=i: x[i], _tasks(env, 3, seed=7)) for i in range(3)):
        ref = reference_values(task.succ, task.prob, task.mean_rewards, 10)
        np.testing.assert_allclose(finite_horizon_values(menv, task), ref, rtol=1e-5, atol=1e-4)
        t_dense, r_dense, _, _ = env.true_model(task)
        np.testing.assert_allclose(t_dense.sum(-1), 1.0, atol=1e-6)
        np.testing.assert_allclose(np.take_along_axis(np.asarray(t_dense), np.asarray(task.succ), -1), task.prob)
        np.testing.assert_array_equal(r_dense, task.mean_rewards)
    with pytest.raises(ValueError, match="use true_model_sparse"):
        make_env("garnet", "s1024").true_model(make_env("garnet", "s1024").default_params)


def test_oracle_return_is_the_models_value():
    """The oracle's held-out mean return at H = 100 equals the mean of 10 · V_10(0) (10 task episodes from state 0;
    5 s.e. of the return); V from the NumPy loop on the same tasks."""
    menv = _meta("garnet", 100)
    res = evaluate(menv, "oracle", 200)
    tasks = jax.device_get(held_out_tasks(menv, 200))
    v = [reference_values(tasks.succ[i], tasks.prob[i], tasks.mean_rewards[i], 10)[10, 0] for i in range(200)]
    _close(res["mean_return"], 10 * np.mean(v), res["stderr"], "oracle return = 10 V_10(0)")
