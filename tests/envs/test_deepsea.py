"""rl3jax.envs.deepsea: the task (per-cell right action), the dynamics against the sparse model, the optimum
(right N times: 1 − 0.01 per task episode) and the random policy's return, both hand-computed."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.envs import catalog, deepsea
from rl3jax.envs.deepsea import DeepSea, DeepSeaState
from rl3jax.envs.registry import make_env
from rl3jax.evaluate import evaluate
from tests.helpers import _close, _meta, step_env_steps


def test_variants_and_task_sampling():
    assert tuple(deepsea.SIZES) == catalog.FAMILIES["deepsea"].variants
    assert catalog.FAMILIES["deepsea"].horizon == 300
    envs = [make_env("deepsea", v) for v in catalog.FAMILIES["deepsea"].variants]
    assert [(e.name, e.task_horizon, e.num_actions) for e in envs] == [
        ("deepsea-n10", 10, 2), ("deepsea-n20", 20, 2), ("deepsea-n30", 30, 2)]
    assert all(e.observation_space().shape == (2,) and e.num_states is None for e in envs)
    right = np.asarray(jax.vmap(envs[0].sample_task)(jax.random.split(jax.random.key(0), 400)).right)
    assert right.shape == (400, 10, 10) and set(np.unique(right)) == {0, 1}
    _close(right.mean(), 0.5, 0.5 / np.sqrt(right.size), "right action ~ U{0, 1}")
    with pytest.raises(ValueError, match="'n10' is not one of 'train', 'n20', 'n30'"):
        DeepSea("n10")


def _walk(env, task, actions):
    """(rewards, states (row, col), terminated) of stepping ``actions`` from the start."""
    _, st = env.reset_env(None, task)
    out = []
    for a in actions:
        _, st, r, term, _ = env.step_env(None, st, jnp.int32(a), task)
        out.append((float(r), (int(st.row), int(st.col)), bool(term)))
    return out


def test_going_right_n_times_is_the_optimum():
    """Right N times pays 1 − N · 0.01/N = 0.99 and ends at row N; one wrong action on the diagonal loses the
    treasure (the column can no longer reach N − 1)."""
    env = make_env("deepsea")
    task = env.sample_task(jax.random.key(3))
    right = np.asarray(task.right)
    walk = _walk(env, task, [right[i, i] for i in range(10)])
    assert [s for _, s, _ in walk] == [(i + 1, min(i + 1, 9)) for i in range(10)]
    assert [t for _, _, t in walk] == [False] * 9 + [True]
    np.testing.assert_allclose([r for r, _, _ in walk], [-0.001] * 9 + [0.999], rtol=1e-6)
    assert sum(r for r, _, _ in walk) == pytest.approx(0.99, abs=1e-6)
    wrong = _walk(env, task, [1 - right[0, 0]] + [right[i, max(i - 1, 0)] for i in range(1, 10)])
    assert wrong[0][1] == (1, 0) and max(r for r, _, _ in wrong) < 0.5


def test_step_matches_the_sparse_model_everywhere():
    """Every live (cell, action) of a task: step_env's next state index and reward are the model's; the model's
    last row is absorbing, its rows are one successor of probability 1."""
    env = make_env("deepsea")
    task = env.sample_task(jax.random.key(5))
    succ, prob, reward, absorbing, start = (np.asarray(x) for x in env.true_model_sparse(task))
    assert succ.shape == (110, 2, 1) and (prob == 1).all() and int(start) == 0
    np.testing.assert_array_equal(absorbing, np.arange(110) >= 100)
    step = jax.jit(env.step_env)
    for s in range(100):
        for a in range(2):
            st = DeepSeaState(row=jnp.int32(s // 10), col=jnp.int32(s % 10))
            _, new, r, term, _ = step(None, st, jnp.int32(a), task)
            assert int(env.state_index(new, task)) == succ[s, a, 0] and bool(term) == absorbing[succ[s, a, 0]]
            assert float(r) == pytest.approx(float(reward[s, a]), abs=1e-7)


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_env_with_and_without_jit(self):
        env = make_env("deepsea", "n20")
        chex.assert_trees_all_close(step_env_steps(self.variant(env.step_env), env),
                                    step_env_steps(env.step_env, env), rtol=1e-6)


def test_oracle_and_random_returns_hand_computed():
    """At H = 300 (30 task episodes of 10 steps) the oracle earns 30 · 0.99 = 29.7 on every task; the random
    policy goes right with probability ½ each step: 30 · (2⁻¹⁰ − 10 · ½ · 0.001) = −0.1207 in expectation
    (5 s.e.)."""
    menv = _meta("deepsea", 300)
    oracle = evaluate(menv, "oracle", 50)
    assert oracle["mean_return"] == pytest.approx(29.7, abs=1e-4) and oracle["stderr"] < 1e-5
    rand = evaluate(menv, "random", 1000)
    _close(rand["mean_return"], 30 * (2.0 ** -10 - 0.005), rand["stderr"], "random return")
