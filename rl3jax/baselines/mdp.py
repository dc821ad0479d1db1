"""Tabular-MDP baselines on Dirichlet (transitions) and normal (mean rewards) posteriors: PSRL (Osband, Russo &
Van Roy 2013), optimistic PSRL (Agrawal & Jia 2017) and MAP-greedy (certainty equivalence), learning from what
the policy input shows (``mdp_posterior_update``). Families ``mdp`` and ``garnet``; the posterior is dense
(S·A·S counts per task), so garnets beyond ``DENSE_MAX_STATES`` states are refused (``IntractableError``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from rl3jax.baselines.bandit import IntractableError
from rl3jax.baselines.base import Baseline, Param, argmax_random, num_tasks, sharp_logits
from rl3jax.meta_episode import MetaEnv

DENSE_MAX_STATES = 256  # S of the dense posterior: S·A·S counts per task (S = 256, A = 5: 1.3 MB; S = 4096: 335 MB)
MDP_PRIOR = (Param("alpha0", 1.0, positive=True), Param("mu0", 0.0), Param("tau0", 1.0, positive=True),
              Param("tau", 1.0, positive=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MDPPosterior:
    """Posterior statistics of one batch of tabular MDP tasks (leading axis B)."""

    key: jax.Array
    n_sas: jax.Array  # (B, S, A, S) observed transition counts
    r_n: jax.Array  # (B, S, A) observed rewards
    r_sum: jax.Array  # (B, S, A) sum of observed rewards
    prev_s: jax.Array  # (B,) state the previous action was taken in
    q_tab: jax.Array  # (B, TH, S, A) PSRL/OPSRL: Q with k+1 steps left of the sampled MDP(s)


def mdp_posterior_update(post: MDPPosterior, state, s: jax.Array) -> MDPPosterior:
    """Adds the previous step (prev_s, prev action, prev reward → s) to the posterior statistics. The last
    transition of a task episode ends in a state the policy never sees (METHOD §1: after the reset the input
    shows the start state), so it updates the rewards only: a transition counts when t > 0 and tau > 0."""
    b, a, had = jnp.arange(s.shape[0]), jnp.maximum(state.prev_action, 0), state.t > 0
    trans = (had & (state.tau > 0)).astype(jnp.float32)
    return dataclasses.replace(
        post, n_sas=post.n_sas.at[b, post.prev_s, a, s].add(trans),
        r_n=post.r_n.at[b, post.prev_s, a].add(had.astype(jnp.float32)),
        r_sum=post.r_sum.at[b, post.prev_s, a].add(jnp.where(had, state.prev_reward, 0.0)),
        prev_s=s)


def reward_posterior(post: MDPPosterior, mu0: float, tau0: float, tau: float):
    """Normal posterior of each mean reward R(s,a) with known noise precision τ: (mean, precision), (B, S, A);
    precision = τ0 + n·τ, mean = (τ0·μ0 + τ·Σr) / precision (conjugate normal model)."""
    prec = tau0 + post.r_n * tau
    return (tau0 * mu0 + tau * post.r_sum) / prec, prec


def finite_horizon_q(t_mat: jax.Array, r: jax.Array, steps: int) -> jax.Array:
    """Q[k-1] for k = 1..steps steps left: Q_1 = R, Q_k = R + T·max_a Q_{k-1}. t_mat (..., S, A, S), r (..., S, A)."""

    def backup(q, _):
        q_new = r + jnp.einsum("...sat,...t->...sa", t_mat, q.max(axis=-1))
        return q_new, q_new

    _, qs = jax.lax.scan(backup, jnp.zeros_like(r), None, length=steps)
    return jnp.moveaxis(qs, 0, -3)  # (..., steps, S, A)


GAMMA_POOLS = 4  # unrolled proposal rounds of ``gamma_sample`` before its loop (see its docstring)


def gamma_sample(key: jax.Array, alpha: jax.Array) -> jax.Array:
    """Gamma(α, 1) draws, one per element of ``alpha`` (float32, any shape, α > 0).

    Marsaglia & Tsang (2000): for a = α (α ≥ 1) or α + 1 (α < 1, then multiplied by U^(1/α)), d = a − 1/3,
    c = 1/sqrt(9d), propose v = (1 + c·x)^3 with x ~ N(0,1) and accept d·v when v > 0 and
    log u < x²/2 + d − d·v + d·log v (u ~ U(0,1)); acceptance >= 0.95 for a >= 1. Rejected elements get fresh
    proposals from pools of shrinking size (all elements, then 1/8, 1/64, 1/512 of them), then from pools of
    64 in a loop until every element is accepted (exact rejection sampling). About 1.15 proposals per draw, in
    bulk: ``jax.random.gamma`` splits a key per element and was several times slower here on CPU.
    """
    shape = alpha.shape
    a = alpha.reshape(-1).astype(jnp.float32)
    n = a.shape[0]
    boost = a < 1.0
    a1 = jnp.where(boost, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)

    def round_(key, out, pending, size, first=False):
        k_x, k_u = jax.random.split(key)
        x = jax.random.normal(k_x, (size,))
        u = jax.random.uniform(k_u, (size,))
        if first:
            has, xe, ue = pending, x, u
        else:  # the j-th still pending element takes proposal j of this pool
            rank = jnp.cumsum(pending) - 1
            has = pending & (rank < size)
            slot = jnp.where(has, rank, 0)
            xe, ue = x[slot], u[slot]
        v = (1.0 + c * xe) ** 3
        safe_v = jnp.where(v > 0, v, 1.0)
        ok = has & (v > 0) & (jnp.log(ue) < 0.5 * xe * xe + d - d * safe_v + d * jnp.log(safe_v))
        return jnp.where(ok, d * safe_v, out), pending & ~ok

    key, k_boost = jax.random.split(key)
    out, pending = d, jnp.ones((n,), bool)
    for i in range(GAMMA_POOLS):
        key, k = jax.random.split(key)
        out, pending = round_(k, out, pending, n if i == 0 else min(n, max(64, math.ceil(n / 8 ** i))), i == 0)

    def body(c):
        key, out, pending = c
        key, k = jax.random.split(key)
        return (key, *round_(k, out, pending, min(n, 64)))

    _, out, _ = jax.lax.while_loop(lambda c: c[2].any(), body, (key, out, pending))
    out = jnp.where(boost, out * jax.random.uniform(k_boost, (n,)) ** (1.0 / a), out)
    return out.reshape(shape)


def dirichlet_sample(key: jax.Array, alpha: jax.Array) -> jax.Array:
    """Dirichlet(α) draws over the last axis of ``alpha`` (normalised ``gamma_sample`` draws; a row whose
    draws all underflow to 0, possible only for tiny α, becomes uniform)."""
    g = gamma_sample(key, alpha)
    total = g.sum(axis=-1, keepdims=True)
    return jnp.where(total > 0, g / jnp.where(total > 0, total, 1.0), 1.0 / alpha.shape[-1])


def posterior_states(meta_env: MetaEnv, params=None) -> int:
    """S of the dense posterior: ``num_states``, else the rows of the sparse true model (garnet). The
    ``prepare`` of each entry: IntractableError beyond ``DENSE_MAX_STATES`` (``rl3jax baselines`` skips it)."""
    env = meta_env.env
    s = env.num_states or jax.eval_shape(env.true_model_sparse, env.default_params)[2].shape[0]
    if s > DENSE_MAX_STATES:
        raise IntractableError(f"the dense Dirichlet posterior holds S·A·S = {s * s * meta_env.num_actions:,} counts "
                               f"per task at S={s}; tractable for S <= {DENSE_MAX_STATES} (a sparse posterior over "
                               "the states seen is not implemented)")
    return s


def mdp_build(kind: str):
    """Builder of psrl / opsrl / map-greedy for the tabular MDP family."""

    def build(meta_env: MetaEnv, consts, tasks, key, params):
        env = meta_env.env
        num, n_s, n_a = num_tasks(tasks), posterior_states(meta_env), meta_env.num_actions
        th = min(meta_env.task_horizon, meta_env.horizon)
        alpha0, mu0, tau0, tau = params["alpha0"], params["mu0"], params["tau0"], params["tau"]
        samples = params.get("m", 1)
        zeros = lambda *shape: jnp.zeros((num, *shape), jnp.float32)  # noqa: E731
        post = MDPPosterior(key=key, n_sas=zeros(n_s, n_a, n_s), r_n=zeros(n_s, n_a), r_sum=zeros(n_s, n_a),
                            prev_s=jnp.zeros((num,), jnp.int32), q_tab=zeros(th, n_s, n_a))

        def sampled_q(key, post):
            k_t, k_r = jax.random.split(key)
            mean, prec = reward_posterior(post, mu0, tau0, tau)
            shape = (samples,) + post.n_sas.shape
            t_mat = dirichlet_sample(k_t, alpha0 + jnp.broadcast_to(post.n_sas, shape))
            r = mean + jax.random.normal(k_r, (samples,) + mean.shape) / jnp.sqrt(prec)
            return finite_horizon_q(t_mat, r, th).max(axis=0)  # OPSRL: element-wise max over the samples

        def step(post, obs, state):
            s = jax.vmap(env.state_index)(state.env_state, tasks)
            post = mdp_posterior_update(post, state, s)
            key, k_sample, k_tie = jax.random.split(post.key, 3)
            left = jnp.minimum(th - state.tau, meta_env.horizon - state.t)  # steps left in the task episode
            if kind == "map-greedy":
                mean, _ = reward_posterior(post, mu0, tau0, tau)
                counts = alpha0 + post.n_sas
                t_mat = counts / counts.sum(-1, keepdims=True)
                q_tab = finite_horizon_q(t_mat, mean, th)
            else:
                q_tab = jax.lax.cond(jnp.any(state.tau == 0), lambda: sampled_q(k_sample, post), lambda: post.q_tab)
                q_tab = jnp.where((state.tau == 0)[:, None, None, None], q_tab, post.q_tab)
            action = argmax_random(k_tie, q_tab[jnp.arange(num), jnp.clip(left - 1, 0, th - 1), s])
            return dataclasses.replace(post, key=key, q_tab=q_tab), sharp_logits(action, n_a)

        return step, post

    return build


MDP_FAMILIES = ("mdp", "garnet")
ENTRIES = (
    Baseline("psrl", MDP_FAMILIES, MDP_PRIOR, mdp_build("psrl"),
             "Posterior sampling RL (Osband, Russo & Van Roy 2013): one MDP drawn from the Dirichlet/normal "
             "posterior at the start of each task episode, followed with finite-horizon value iteration.",
             posterior_states, stochastic=True),
    Baseline("opsrl", MDP_FAMILIES, MDP_PRIOR + (Param("m", 5, kind="int", low=1),), mdp_build("opsrl"),
             "Optimistic PSRL (Agrawal & Jia 2017): m posterior MDPs per task episode, the element-wise max "
             "of their finite-horizon Q.", posterior_states, stochastic=True),
    Baseline("map-greedy", MDP_FAMILIES, MDP_PRIOR, mdp_build("map-greedy"),
             "MAP-greedy (certainty equivalence): greedy on finite-horizon value iteration of the posterior-mean MDP, "
             "solved again every step; no exploration.", posterior_states),
)
