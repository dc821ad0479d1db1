"""Tabular model-based baselines on Dirichlet (transitions) and normal (mean rewards) posteriors
(``rl3jax.baselines.posterior``), learning from what the policy input shows: posterior sampling (PSRL, OPSRL),
certainty equivalence (MAP-greedy), and value iteration on the posterior-mean or empirical model plus an
exploration bonus (BEB, MBIE-EB) or optimism for the pairs tried too rarely (R-MAX). Families: ``mdp``,
``garnet`` (dense, up to ``DENSE_MAX_STATES`` states), ``deepsea`` and the grids (sparse supports).

Every plan is finite-horizon value iteration over the steps left in the task episode (``plan_q``), of at most
``PLAN_DEPTH`` sweeps. PSRL and OPSRL plan at each task episode's start (one ``lax.cond`` for the batch: any
task that starts an episode replans them all, the others keep their plan); the others replan every step.
Unvisited pairs (n(s, a) = 0): the posterior-mean model is uniform over the support (Dirichlet α0), the mean
reward the prior μ0, BEB's bonus β and MBIE-EB's β (n counted as 1); R-MAX treats them as unknown.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rl3jax.baselines.base import Baseline, Param, argmax_random, num_tasks, sharp_logits
from rl3jax.baselines.posterior import (
    DENSE_MAX_STATES,
    PLAN_DEPTH,
    MDPPosterior,
    Support,
    dirichlet_counts,
    dirichlet_sample,
    mdp_posterior_update,
    plan_q,
    reward_posterior,
    support,
)
from rl3jax.meta_episode import MetaEnv

__all__ = ["DENSE_MAX_STATES", "ENTRIES", "MODEL_FAMILIES"]

MDP_PRIOR = (Param("alpha0", 1.0, positive=True), Param("mu0", 0.0), Param("tau0", 1.0, positive=True),
             Param("tau", 1.0, positive=True))
RMAX_ALPHA = 1e-6  # R-MAX's model: maximum likelihood (uniform over the support where nothing was counted)


def mean_model(post: MDPPosterior, sup: Support, alpha0: float) -> jax.Array:
    """The posterior-mean transition model (B, S, A, W): Dirichlet parameters normalised."""
    counts = dirichlet_counts(post, sup, alpha0)
    return counts / counts.sum(-1, keepdims=True)


def sampled_q(key, post: MDPPosterior, sup: Support, params, steps: int) -> jax.Array:
    """PSRL (Osband, Russo & Van Roy 2013, Algorithm 1) and OPSRL (Agrawal & Jia 2017): m MDPs drawn from the
    posterior (T ~ Dirichlet(α0 + n), R ~ N(mean, 1/precision)), the element-wise max of their finite-horizon
    Q (m = 1: PSRL). Returns (B, steps, S, A)."""
    k_t, k_r = jax.random.split(key)
    mean, prec = reward_posterior(post, params["mu0"], params["tau0"], params["tau"])
    counts = dirichlet_counts(post, sup, params["alpha0"])
    samples = params.get("m", 1)
    t_mat = dirichlet_sample(k_t, jnp.broadcast_to(counts, (samples, *counts.shape)))
    r = mean + jax.random.normal(k_r, (samples,) + mean.shape) / jnp.sqrt(prec)
    return plan_q(t_mat, r, steps, sup).max(axis=0)


def optimistic_q(kind: str, post: MDPPosterior, sup: Support, params, steps: int) -> jax.Array:
    """Q (B, steps, S, A) of the model-based methods with n(s, a) the steps taken from (s, a) so far:

    * map-greedy: Q_k = R̄ + T̄·V_{k-1} on the posterior means (certainty equivalence);
    * beb (Kolter & Ng 2009, "Near-Bayesian exploration in polynomial time", the BEB value recursion):
      Q_k(s,a) = R̄(s,a) + β/(1 + n(s,a)) + Σ_s' T̄(s'|s,a)·V_{k-1}(s'), T̄ the Dirichlet posterior mean;
    * mbie-eb (Strehl & Littman 2008, "An analysis of model-based interval estimation for Markov decision
      processes", MBIE-EB): Q_k(s,a) = R̄(s,a) + β/sqrt(n(s,a)) + Σ_s' T̄(s'|s,a)·V_{k-1}(s') (n = 0 as 1);
    * rmax (Brafman & Tennenholtz 2002, R-MAX): pairs with n(s,a) < m are unknown, Q_k = k·r_max (absorbing,
      r_max every step); the known ones follow the empirical model (mean rewards, transition frequencies).

    The papers' discount γ is 1 here: finite horizon over the steps left, as PSRL's plan."""
    if kind == "rmax":
        r_emp = post.r_sum / jnp.maximum(post.r_n, 1.0)
        return plan_q(mean_model(post, sup, RMAX_ALPHA), r_emp, steps, sup, post.r_n < params["m"],
                      params["r_max"])
    mean, _ = reward_posterior(post, params["mu0"], params["tau0"], params["tau"])
    bonus = {"map-greedy": lambda n: 0.0, "beb": lambda n: params.get("beta", 0.0) / (1.0 + n),
             "mbie-eb": lambda n: params.get("beta", 0.0) / jnp.sqrt(jnp.maximum(n, 1.0))}[kind](post.r_n)
    return plan_q(mean_model(post, sup, params["alpha0"]), mean + bonus, steps, sup)


def mdp_build(kind: str):
    """Builder of one method (``ENTRIES``) for the families with a posterior ``support``."""

    def build(meta_env: MetaEnv, consts, tasks, key, params):
        env, sup = meta_env.env, support(meta_env)
        num, n_a = num_tasks(tasks), meta_env.num_actions
        th = min(meta_env.task_horizon, meta_env.horizon)
        depth = min(th, PLAN_DEPTH)
        zeros = lambda *shape: jnp.zeros((num, *shape), jnp.float32)  # noqa: E731
        n_s = sup.num_states
        post = MDPPosterior(key=key, n_sas=zeros(n_s, n_a, sup.width), r_n=zeros(n_s, n_a), r_sum=zeros(n_s, n_a),
                            prev_s=jnp.zeros((num,), jnp.int32), prev_tau=jnp.zeros((num,), jnp.int32),
                            q_tab=zeros(depth, n_s, n_a))

        def step(post, obs, state):
            s = jax.vmap(env.state_index)(state.env_state, tasks)
            post = mdp_posterior_update(post, state, s, sup, meta_env.task_horizon)
            key, k_sample, k_tie = jax.random.split(post.key, 3)
            left = jnp.minimum(th - state.tau, meta_env.horizon - state.t)  # steps left in the task episode
            if kind in ("psrl", "opsrl"):
                new = state.tau == 0
                q_tab = jax.lax.cond(jnp.any(new), lambda: sampled_q(k_sample, post, sup, params, depth),
                                     lambda: post.q_tab)
                q_tab = jnp.where(new[:, None, None, None], q_tab, post.q_tab)
            else:
                q_tab = optimistic_q(kind, post, sup, params, depth)
            action = argmax_random(k_tie, q_tab[jnp.arange(num), jnp.clip(left - 1, 0, depth - 1), s])
            return dataclasses.replace(post, key=key, q_tab=q_tab), sharp_logits(action, n_a)

        return step, post

    return build


def _states(meta_env: MetaEnv, params=None) -> int:
    """``prepare``: the posterior's S (IntractableError for a dense one too big; ``support``)."""
    return support(meta_env).num_states


MODEL_FAMILIES = ("mdp", "garnet", "deepsea", "grid11", "grid13")
# tuned on tuning tasks by scripts/tune_baselines.py (docs/results/baselines/tuning.md)
BEB_BETA = Param("beta", 1.0, low=0.0, tuned=(("mdp", 1.0), ("garnet", 1.0), ("deepsea", 0.1), ("grid11", 0.3),
                                              ("grid13", 1.0)))
MBIE_BETA = Param("beta", 1.0, low=0.0, tuned=(("mdp", 3.0), ("garnet", 3.0), ("deepsea", 0.1), ("grid11", 3.0),
                                               ("grid13", 0.3)))
OPSRL_M = Param("m", 5, kind="int", low=1, tuned=(("garnet", 10), ("deepsea", 10)))
RMAX_M = Param("m", 5, kind="int", low=1, tuned=(("mdp", 1), ("garnet", 1), ("deepsea", 1), ("grid11", 3),
                                                 ("grid13", 3)))
# the largest mean reward of a step on each family (not tuned): the grids' goal, DeepSea's treasure, and about
# two standard deviations above the mean of the N(1, 1) mean rewards of mdp and garnet
R_MAX = Param("r_max", 1.0, tuned=(("mdp", 3.0), ("garnet", 3.0), ("deepsea", 1.0), ("grid11", 100.0),
                                   ("grid13", 100.0)))


def _entry(name: str, params: tuple, doc: str, stochastic: bool = False) -> Baseline:
    return Baseline(name, MODEL_FAMILIES, params, mdp_build(name), doc, _states, stochastic=stochastic)


ENTRIES = (
    _entry("psrl", MDP_PRIOR,
           "Posterior sampling RL (Osband, Russo & Van Roy 2013): one MDP drawn from the Dirichlet/normal "
           "posterior at the start of each task episode, followed with finite-horizon value iteration.", True),
    _entry("opsrl", MDP_PRIOR + (OPSRL_M,),
           "Optimistic PSRL (Agrawal & Jia 2017): m posterior MDPs per task episode, the element-wise max "
           "of their finite-horizon Q.", True),
    _entry("map-greedy", MDP_PRIOR,
           "MAP-greedy (certainty equivalence): greedy on finite-horizon value iteration of the posterior-mean MDP, "
           "solved again every step; no exploration."),
    _entry("beb", MDP_PRIOR + (BEB_BETA,),
           "Bayesian exploration bonus (Kolter & Ng 2009): value iteration on the posterior-mean MDP with "
           "reward R + β/(1 + n(s,a)), solved again every step."),
    _entry("mbie-eb", MDP_PRIOR + (MBIE_BETA,),
           "MBIE-EB (Strehl & Littman 2008): value iteration on the posterior-mean MDP with reward "
           "R + β/sqrt(n(s,a)) (n = 0 counted as 1), solved again every step."),
    _entry("rmax", (RMAX_M, R_MAX),
           "R-MAX (Brafman & Tennenholtz 2002): pairs tried fewer than m times are absorbing with reward r_max "
           "per step; the others follow the empirical model; solved again every step."),
)
