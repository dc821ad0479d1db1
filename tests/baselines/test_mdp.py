"""rl3jax.baselines.mdp against the loop-based references in tests/baselines/reference.py: MAP-greedy
replayed exactly, posterior sampling equal in mean return within 4 standard errors of the difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.baselines import reference as ref
from tests.helpers import MDP_H, MDP_N, _meta, _run


def _mdp_history(obs, layout, th):
    """(state, tau) seen at each step of one MDP meta-episode, from the policy input (METHOD §1 layout)."""
    states = obs[:, layout["task_obs"].slice].argmax(axis=1)
    taus = np.rint(obs[:, layout["task_time"].offset] * th).astype(int)
    return states, taus


def test_map_greedy_replays_the_reference():
    actions, rewards, obs, _ = _run("mdp", MDP_H, "map-greedy", MDP_N)
    n_a, n_s, th = 5, 10, 10
    for task in range(25):
        states, taus = _mdp_history(obs[task], _meta("mdp", MDP_H).layout, th)
        post = ref.MDPPosterior(n_s, n_a)
        for t in range(MDP_H):
            if t > 0:
                post.add(states[t - 1], actions[task, t - 1], rewards[task, t - 1], states[t], taus[t] > 0)
            left = min(th - taus[t], MDP_H - t)
            q = ref.map_greedy_q(post, left)[states[t]]
            assert actions[task, t] in ref.best_set(list(q)), (task, t, q)


@pytest.mark.parametrize("name,samples", [("psrl", 1), pytest.param("opsrl", 5, marks=pytest.mark.slow)])
def test_posterior_sampling_agrees_with_numpy_in_mean(name, samples):
    _, rewards, _, tasks = _run("mdp", MDP_H, name, MDP_N)
    rng = np.random.default_rng(9)
    t_true, r_true, noise = (np.asarray(x) for x in (tasks.transitions, tasks.mean_rewards, tasks.reward_noise))
    ref_returns = np.array([ref.simulate_psrl(t_true[i], r_true[i], float(noise[i]), MDP_H, 10, rng, samples)
                            for i in range(MDP_N)])
    jax_returns = rewards.sum(1)
    se = math.sqrt(jax_returns.var(ddof=1) / MDP_N + ref_returns.var(ddof=1) / MDP_N)
    assert abs(jax_returns.mean() - ref_returns.mean()) < 4 * se
