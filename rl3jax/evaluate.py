"""Evaluation on fixed held-out test tasks: one meta-episode per task, mean return ± standard error.

Test tasks come from a fixed test seed, disjoint from the training streams (which start from
``jax.random.key(cfg.seed)``). Policies: a trained run (stochastic or greedy), ``random``, and ``oracle``,
which knows the task and acts optimally for the remaining budget by finite-horizon value iteration on the
true model, with absorbing states restarting the task episode (SPEC §3: the score a task-knowing agent gets).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.meta_episode import MetaEnv
from rl3jax.rollout import rollout, sample_tasks

TEST_SEED = 2_147_480_000  # far from any training seed; tasks are a pure function of (env, variant, index)
POLICIES = ("random", "oracle")


def held_out_tasks(meta_env: MetaEnv, num: int):
    """The first ``num`` held-out test tasks of a family (the same for every run and policy)."""
    key = jax.random.fold_in(jax.random.key(TEST_SEED), _stable_hash(meta_env.env.name))
    return sample_tasks(meta_env, key, num)


def _stable_hash(s: str) -> int:
    h = 0
    for ch in s.encode():
        h = (h * 131 + ch) % 1_000_003
    return h


def finite_horizon_values(meta_env: MetaEnv, task) -> jax.Array:
    """V[k, s]: optimal expected reward over the next k steps of a meta-episode from state s (one task)."""
    t_true, r_true, absorbing, start = meta_env.env.true_model(task)
    k_max = min(meta_env.task_horizon(task), meta_env.horizon)

    def backup(v, _):
        v_next = jnp.where(absorbing, v[start], v)  # an absorbing state restarts the task episode
        q = r_true + jnp.einsum("sat,t->sa", t_true, v_next)
        v_new = q.max(axis=1)
        return v_new, v_new

    v0 = jnp.zeros(t_true.shape[0], jnp.float32)
    _, vs = jax.lax.scan(backup, v0, None, length=k_max)
    return jnp.concatenate([v0[None], vs], axis=0)


def oracle_policy(meta_env: MetaEnv, tasks):
    """``(policy_step, carry)`` for the task-knowing oracle over a batch of tasks."""
    if not hasattr(meta_env.env, "true_model"):
        raise ValueError(f"the oracle needs a family with a known model; {meta_env.env.name} has none")
    v_tab = jax.vmap(lambda t: finite_horizon_values(meta_env, t))(tasks)

    def q_values(task, v, state):
        t_true, r_true, absorbing, start = meta_env.env.true_model(task)
        s = meta_env.env.state_index(state.env_state, task)
        k = jnp.minimum(meta_env.task_horizon(task) - state.tau, meta_env.horizon - state.t)
        v_prev = v[jnp.maximum(k - 1, 0)]
        v_next = jnp.where(absorbing, v_prev[start], v_prev)
        return r_true[s] + t_true[s] @ v_next

    def step(carry, obs, state):
        q = jax.vmap(q_values)(tasks, v_tab, state)
        return carry, 1e3 * (q - q.max(axis=1, keepdims=True))  # sharp logits: greedy either way

    return step, jnp.zeros(())


def random_policy(meta_env: MetaEnv, num: int):
    def step(carry, obs, state):
        return carry, jnp.zeros((num, meta_env.num_actions))

    return step, jnp.zeros(())


def network_policy(model, params, num: int):
    return (lambda c, o, _: model.step(params, c, o)), model.initial_carry(num)


def baseline_names(meta_env: MetaEnv) -> list[str]:
    """Names of the baseline policies (``evaluate(meta_env, name, ...)``) that fit this family."""
    return [p for p in POLICIES if p != "oracle" or hasattr(meta_env.env, "true_model")]


def evaluate(meta_env: MetaEnv, policy: str, episodes: int, greedy: bool = False, params=None, model=None,
             batch: int = 250, seed: int = 0, policy_params: dict | None = None) -> dict:
    """Mean return ± s.e. over the first ``episodes`` test tasks (one meta-episode each).

    ``policy``: "network" (``params`` and ``model`` of a trained actor) or a baseline name from
    ``baseline_names(meta_env)``; ``policy_params``: the baseline's parameters (e.g. {"epsilon": 0.1}).
    Returns {"mean_return", "stderr", "episodes", "returns" (episodes,), "step_rewards" (H,)}.
    """
    if policy_params:
        raise ValueError(f"policy {policy!r} takes no parameters, got {sorted(policy_params)}")
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    returns = []

    def run(tasks, key):
        num = jax.tree.leaves(tasks)[0].shape[0]
        if policy == "oracle":
            step, carry = oracle_policy(meta_env, tasks)
        elif policy == "random":
            step, carry = random_policy(meta_env, num)
        else:
            step, carry = network_policy(model, params, num)
        traj, _ = rollout(meta_env, step, carry, tasks, key, greedy=greedy or policy == "oracle")
        return traj.rewards

    run = jax.jit(run)
    all_tasks = held_out_tasks(meta_env, episodes)
    key = jax.random.fold_in(jax.random.key(TEST_SEED + 1), seed)
    for i, start in enumerate(range(0, episodes, batch)):
        stop = min(start + batch, episodes)
        tasks = jax.tree.map(lambda x: x[start:stop], all_tasks)
        returns.append(np.asarray(run(tasks, jax.random.fold_in(key, i))))
    rewards = np.concatenate(returns)  # (episodes, H)
    r = rewards.sum(axis=1)
    return {"mean_return": float(r.mean()),
            "stderr": float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"),
            "episodes": int(len(r)), "returns": r,
            # mean reward at each step t of the meta-episode over the test tasks (adaptation curve), shape (H,)
            "step_rewards": rewards.mean(axis=0)}
