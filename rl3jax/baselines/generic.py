"""Baselines for every family (``ENTRIES``): random, the task-knowing oracle, the RL³ estimator alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rl3jax.baselines.base import ALL, EPSILON, SHARP, Baseline, argmax_random, epsilon_mix, num_tasks, sharp_logits
from rl3jax.meta_episode import MetaEnv


def true_model(env, task) -> tuple:
    """(succ, prob, R, absorbing, start) of one task: the family's sparse true model where it has one, else its
    dense one with succ None (prob = T)."""
    return env.true_model_sparse(task) if env.has_true_model_sparse else (None, *env.true_model(task))


def expected(succ, prob, v: jax.Array) -> jax.Array:
    """E[v(s')] under a true model's rows ``prob`` (..., S) dense or (..., k) sparse with ``succ``: shape (...)."""
    return prob @ v if succ is None else (prob * v[succ]).sum(-1)


def finite_horizon_values(meta_env: MetaEnv, task) -> jax.Array:
    """V[k, s]: optimal expected reward over the next k = 0..min(TH, H) steps of a meta-episode from state s (one
    task); absorbing states restart the task episode (value of the start state)."""
    succ, prob, r_true, absorbing, start = true_model(meta_env.env, task)
    k_max = min(meta_env.task_horizon, meta_env.horizon)

    def backup(v, _):
        v_next = jnp.where(absorbing, v[start], v)  # an absorbing state restarts the task episode
        v_new = (r_true + expected(succ, prob, v_next)).max(axis=1)
        return v_new, v_new

    v0 = jnp.zeros(r_true.shape[0], jnp.float32)
    _, vs = jax.lax.scan(backup, v0, None, length=k_max)
    return jnp.concatenate([v0[None], vs], axis=0)


def oracle_build(meta_env: MetaEnv, consts, tasks, key, params):
    """The task-knowing oracle: optimal for the remaining budget of the task episode, by finite-horizon value
    iteration on the true model (``finite_horizon_values``; sparse or dense, ``true_model``); sharp logits
    (argmax ties: the first action)."""
    v_tab = jax.vmap(lambda t: finite_horizon_values(meta_env, t))(tasks)

    def q_values(task, v, state):
        succ, prob, r_true, absorbing, start = true_model(meta_env.env, task)
        s = meta_env.env.state_index(state.env_state, task)
        k = jnp.minimum(meta_env.task_horizon - state.tau, meta_env.horizon - state.t)
        v_prev = v[jnp.maximum(k - 1, 0)]
        v_next = jnp.where(absorbing, v_prev[start], v_prev)
        return r_true[s] + expected(None if succ is None else succ[s], prob[s], v_next)

    def step(carry, obs, state):
        q = jax.vmap(q_values)(tasks, v_tab, state)
        return carry, SHARP * (q - q.max(axis=1, keepdims=True))  # sharp logits: greedy either way

    return step, jnp.zeros(())


def random_build(meta_env: MetaEnv, consts, tasks, key, params):
    """Uniformly random actions for each task, drawn from the carry's key (sharp logits)."""
    num, n = num_tasks(tasks), meta_env.num_actions

    def step(carry, obs, state):
        key, k = jax.random.split(carry)
        return key, sharp_logits(jax.random.randint(k, (num,), 0, n), n)

    return step, key


def model_build(meta_env: MetaEnv, consts, tasks, key, params):
    """Greedy (ε-greedy with ``params["epsilon"]``) on the RL³ estimator's current Q at the current state."""
    estimator, n = meta_env.estimator, meta_env.num_actions
    eps = params.get("epsilon")

    def step(carry, obs, state):
        key, k_tie, k_eps = jax.random.split(carry, 3)
        s = jax.vmap(meta_env.env.state_index)(state.env_state, tasks)
        q = jax.vmap(estimator.q_values)(state.est, s)  # the latest solve's Q (METHOD §2)
        action = argmax_random(k_tie, q)
        if eps is not None:
            action = epsilon_mix(k_eps, action, eps, n)
        return key, sharp_logits(action, n)

    return step, key


ENTRIES = (
    Baseline("random", (ALL,), (), random_build, "Uniformly random actions.", stochastic=True),
    Baseline("oracle", (ALL,), (), oracle_build,
             "Task-knowing oracle: finite-horizon value iteration on the true task for the steps left in the "
             "task episode (the score of METHOD §3's task-knowing agent).", needs_model=True),
    Baseline("model-greedy", (ALL,), (), model_build,
             "Greedy on the RL³ object-level estimator's current Q at the current state (METHOD §2; Bhatia, "
             "Nashed & Zilberstein 2023): object-level RL alone, the ablation of meta-learning.",
             needs_estimator=True),
    Baseline("model-epsilon-greedy", (ALL,), (EPSILON,), model_build,
             "ε-greedy on the RL³ estimator's current Q (METHOD §2).", needs_estimator=True, stochastic=True),
)
