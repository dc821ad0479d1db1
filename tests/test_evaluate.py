"""Held-out evaluation and its baselines against exactly computable values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.baselines.generic import finite_horizon_values
from rl3jax.evaluate import evaluate, held_out_tasks
from tests.helpers import _meta


def test_test_tasks_are_fixed_and_distinct_from_training_streams():
    m = _meta("bandit", 10)
    a = held_out_tasks(m, 50).probs
    b = held_out_tasks(m, 50).probs
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    train_like = jax.vmap(m.sample_task)(jax.random.split(jax.random.key(0), 50)).probs
    assert not np.allclose(np.asarray(a), np.asarray(train_like))
    # the first k of a larger test set are the same tasks
    np.testing.assert_array_equal(np.asarray(held_out_tasks(m, 80).probs[:50]), np.asarray(a))


def test_bandit_oracle_and_random_match_their_expectations():
    h, n = 20, 400
    m = _meta("bandit", h)
    p = np.clip(np.asarray(held_out_tasks(m, n).probs), 0, 1)
    oracle = evaluate(m, "oracle", n)
    rand = evaluate(m, "random", n)
    # per-task expectations: H * max p (oracle pulls the best arm), H * mean p (uniform random arms);
    # tolerance: 5 standard errors of the mean return
    assert abs(oracle["mean_return"] - h * p.max(1).mean()) < 5 * oracle["stderr"] + 1e-6
    assert abs(rand["mean_return"] - h * p.mean(1).mean()) < 5 * rand["stderr"]


def test_mdp_oracle_return_matches_its_value_table_and_beats_random():
    h, n = 25, 300
    m = _meta("mdp", h)
    tasks = held_out_tasks(m, n)
    v = jax.vmap(lambda t: finite_horizon_values(m, t))(tasks)
    # TH = 10, H = 25: episodes of 10, 10, 5 steps from state 0
    expected = np.asarray(2 * v[:, 10, 0] + v[:, 5, 0])
    oracle = evaluate(m, "oracle", n)
    assert abs(oracle["mean_return"] - expected.mean()) < 5 * oracle["stderr"]
    rand = evaluate(m, "random", n)
    assert oracle["mean_return"] > rand["mean_return"] + 10 * (oracle["stderr"] + rand["stderr"])


def test_finite_horizon_values_by_hand_on_a_two_state_mdp():
    m = _meta("mdp", 3)
    s, a = m.env.num_states, m.env.num_actions
    t = jnp.zeros((s, a, s)).at[:, :, 0].set(1.0)  # every action returns to state 0
    r = jnp.zeros((s, a)).at[0, 2].set(1.0).at[0, 4].set(0.5)
    task = m.env.default_params.replace(transitions=t, mean_rewards=r)
    v = np.asarray(finite_horizon_values(m, task))
    np.testing.assert_allclose(v[:4, 0], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(v[:4, 1], [0.0, 0.0, 1.0, 2.0])
