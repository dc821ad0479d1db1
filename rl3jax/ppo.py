"""The outer learner: PPO over whole meta-episodes (METHOD §5), as plain functions (rejax's ``ppo.py`` shape):
``Trainer.iteration`` -> ``ppo_update`` -> ``update_actor`` (then ``epoch_kl``) / ``update_critic``, or
``update_shared`` (the shared torso) -> the losses.

``actor`` (params, obs (b, T, m)) -> logits (b, T, n) and ``critic`` (params, obs) -> values (b, T) are static
callables over whole sequences; minibatches are whole sequences (time is never sliced). Static settings are
``TrainConfig`` fields (the jit cache key); the traced, sweepable ones are ``config.HParams``
(``TrainState.hparams``), read by ``adam_step`` and the losses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rl3jax.config import HParams, TrainConfig
from rl3jax.rollout import Trajectory, log_prob

#: added to the advantages' standard deviation in the per-minibatch normalisation
ADV_EPS = 1e-8
#: Adam's ε, actor and critic (METHOD §5; the original's main.jl)
ADAM_EPS = 1e-7
#: Adam's moments; its state is ``TrainState.actor_opt`` / ``critic_opt``
ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=ADAM_EPS)
ACTOR_METRICS = ("actor_loss", "pg_loss", "entropy", "approx_kl", "clip_frac")

ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, obs (b, T, m)) -> logits (b, T, n) or values (b, T)


@struct.dataclass
class Batch:
    """Per-sequence training data (leading axis B), shuffled together every epoch (``minibatches``)."""

    obs: jax.Array  # (B, T, m)
    actions: jax.Array  # (B, T) int32
    old_logp: jax.Array  # (B, T)
    advantages: jax.Array  # (B, T) GAE, not normalised (``actor_loss`` normalises per minibatch)
    targets: jax.Array  # (B, T) value targets = values + advantages


@struct.dataclass
class ActorCritic:
    """The four trees one PPO iteration changes (``TrainState``'s fields of these names; ``ADAM`` states)."""

    actor_params: Any
    actor_opt: Any
    critic_params: Any
    critic_opt: Any


# ---- GAE, schedule, optimiser ----------------------------------------------------------------------------


def gae(rewards: jax.Array, values: jax.Array, gamma, lam) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over whole sequences (Schulman et al. 2016, eq. 16; METHOD §5).

    ``rewards``, ``values``: (B, T) float, time on the last axis. The last step T of every sequence is the (only)
    terminal: the value after it is zero (no bootstrap). ``gamma``, ``lam``: discount and GAE λ in [0, 1], floats
    or traced scalars. Returns ``(advantages, targets)``, both (B, T), with ``targets = values + advantages``.
    """
    rewards, values = jnp.asarray(rewards), jnp.asarray(values)
    next_values = jnp.concatenate([values[..., 1:], jnp.zeros_like(values[..., :1])], axis=-1)
    deltas = rewards + gamma * next_values - values  # (B, T)
    decay = jnp.broadcast_to(jnp.asarray(gamma * lam, deltas.dtype), deltas.shape)

    # A_t = δ_t + γλ·A_{t+1} as a parallel scan of affine maps x -> a·x + b (log T steps, not a T-step loop).
    def compose(later, earlier):
        (a_l, b_l), (a_e, b_e) = later, earlier
        return a_e * a_l, b_e + a_e * b_l

    _, advantages = jax.lax.associative_scan(compose, (decay, deltas), reverse=True, axis=deltas.ndim - 1)
    return advantages, values + advantages


def entropy_coef(cfg: TrainConfig, ent_coef, iteration) -> jax.Array:
    """The entropy bonus coefficient (float32 scalar) at ``iteration`` (PPO iterations done): ``ent_coef`` (may
    be traced) under ``cfg.ent_schedule`` 'constant'; under 'linear', decayed linearly to 0 at ``cfg.iters``."""
    ent = jnp.asarray(ent_coef, jnp.float32)
    if cfg.ent_schedule == "constant":
        return ent
    frac = 1.0 - jnp.asarray(iteration, jnp.float32) / float(cfg.iters)
    return ent * jnp.clip(frac, 0.0, 1.0)


def adam_step(grads, opt, params, lr, weight_decay):
    """One optimiser step of METHOD §5: coupled L2 weight decay (``weight_decay · params`` added to the gradient
    *before* Adam, not AdamW), ``ADAM`` (β = (0.9, 0.999), ε = ``ADAM_EPS``), then ``−lr ·`` the update (constant
    lr, no gradient clipping). ``lr``, ``weight_decay``: float32 scalars, may be traced (the actor's decay is 0).
    Returns ``(params, opt)``."""
    grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
    updates, opt = ADAM.update(grads, opt, params)
    return optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates)), opt


# ---- Losses ----------------------------------------------------------------------------------------------


def actor_loss(logits, actions, old_logp, advantages, ent_coef, clip_eps: float):
    """Clipped-ratio policy loss (PPO, Schulman et al. 2017, eq. 7) minus an entropy bonus (METHOD §5).

    ``logits`` (..., n); ``actions``, ``old_logp``, ``advantages`` (...,). ``loss = −mean(min(r·Â, clip(r, 1−ε,
    1+ε)·Â)) − ent_coef · mean(H(π))`` with ``r = exp(logπ − old_logp)`` and ``Â = (A − mean) / (std + ADV_EPS)``
    over the whole minibatch. Returns ``(loss, aux)``, float scalars; aux has ``pg_loss``, ``entropy`` (nats),
    ``approx_kl`` (mean of (r−1) − log r) and ``clip_frac`` (fraction of steps with |r − 1| > ε).
    """
    logp = log_prob(logits, actions)
    adv = (advantages - advantages.mean()) / (advantages.std() + ADV_EPS)
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    surr1 = ratio * adv
    surr2 = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    pg_loss = -jnp.mean(jnp.minimum(surr1, surr2))
    all_logp = jax.nn.log_softmax(logits, axis=-1)
    entropy = jnp.mean(-jnp.sum(jnp.exp(all_logp) * all_logp, axis=-1))
    loss = pg_loss - ent_coef * entropy
    aux = {
        "pg_loss": pg_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }
    return loss, aux


def critic_loss(values, targets, vf_coef) -> jax.Array:
    """``vf_coef · mean((v − target)²)`` over all entries, no value clipping (METHOD §5)."""
    return vf_coef * jnp.mean(jnp.square(values - targets))


def categorical_kl(old_logits, new_logits) -> jax.Array:
    """Mean over all steps of KL(π_old ‖ π_new) = Σ_a π_old(a) (log π_old(a) − log π_new(a)), in nats."""
    old_logp = jax.nn.log_softmax(old_logits, axis=-1)
    new_logp = jax.nn.log_softmax(new_logits, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(old_logp) * (old_logp - new_logp), axis=-1))


def explained_variance(values, targets) -> jax.Array:
    """1 − Var(targets − values) / Var(targets) (0 when Var(targets) is 0)."""
    var_t = jnp.var(targets)
    return jnp.where(var_t > 0, 1.0 - jnp.var(targets - values) / jnp.where(var_t > 0, var_t, 1.0), 0.0)


# ---- One iteration ---------------------------------------------------------------------------------------


def make_batch(traj: Trajectory, values: jax.Array, cfg: TrainConfig, gae_lambda) -> Batch:
    """The training data of one iteration: the rollout with GAE advantages and value targets (``gae``)."""
    advantages, targets = gae(traj.rewards, values, cfg.gamma, gae_lambda)
    return Batch(traj.obs, traj.actions, traj.logp, advantages, targets)


def minibatches(batch: Batch, perm: jax.Array, cfg: TrainConfig) -> Batch:
    """The sequences of ``batch`` in the order ``perm`` (B,), as (num_minibatches, minibatch_envs, ...) leaves."""
    return jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_envs) + x.shape[1:]), batch)


def kl_check(cfg: TrainConfig, actor: ApplyFn, params, obs, old_logits) -> jax.Array:
    """Full-batch KL(π_old‖π_new) (float32 scalar) of ``obs`` (B, T, m): one forward pass, or ``cfg.kl_chunks``
    sequential passes over fixed (unshuffled) groups of sequences, so the memory peak is that of one group's pass."""
    n = cfg.kl_chunks
    if n == 1:
        return categorical_kl(old_logits, actor(params, obs)).astype(jnp.float32)
    groups = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), (obs, old_logits))
    return jnp.mean(jax.lax.map(lambda c: categorical_kl(c[1], actor(params, c[0])), groups)).astype(jnp.float32)


def update_actor(cfg: TrainConfig, actor: ApplyFn, params, opt, mbs: Batch, ent_coef, lr, obs, old_logits):
    """One actor epoch: an ``adam_step`` per minibatch of ``mbs`` (leaves (num_minibatches, b, ...)), then
    ``epoch_kl`` (``obs`` against π_old's ``old_logits``). Returns ``(params, opt, metrics, kl)``, metrics the
    float32 minibatch means of ``ACTOR_METRICS``."""

    def step(carry, mb: Batch):
        params, opt = carry

        def loss(p):
            return actor_loss(actor(p, mb.obs), mb.actions, mb.old_logp, mb.advantages, ent_coef, cfg.clip_eps)

        (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return adam_step(grads, opt, params, lr, jnp.zeros((), jnp.float32)), {"actor_loss": value, **aux}

    (params, opt), metrics = jax.lax.scan(step, (params, opt), mbs)
    means = {k: jnp.mean(metrics[k]).astype(jnp.float32) for k in ACTOR_METRICS}
    return params, opt, means, epoch_kl(cfg, actor, params, obs, old_logits, means)


def epoch_kl(cfg: TrainConfig, actor: ApplyFn, params, obs, old_logits, means: dict) -> jax.Array:
    """The KL early stop's measure after an actor epoch (float32 scalar; METHOD §5): ``kl_check``'s full-batch
    KL(π_old‖π_new) of the epoch's final ``params`` under ``cfg.kl_rule`` 'full'; under 'minibatch', or with no
    stop (``target_kl`` None), the epoch's mean per-minibatch ``approx_kl`` (``means``), with no forward pass."""
    if cfg.kl_rule == "full" and cfg.target_kl is not None:
        return kl_check(cfg, actor, params, obs, old_logits)
    return means["approx_kl"]


def update_shared(cfg: TrainConfig, joint: ApplyFn, actor: ApplyFn, ac: ActorCritic, mbs: Batch, ent_coef, lr,
                  weight_decay, obs, old_logits):
    """One epoch of the shared torso (``cfg.shared_torso``; METHOD §5): per minibatch one forward pass of
    ``joint((actor_params, critic_params), obs) -> (logits, values)``, the joint loss ``actor_loss + critic_loss``
    (purejaxrl's PPO-RNN), and an ``adam_step`` of each tree: together one Adam over their union (Adam is
    elementwise and both count the same steps), the coupled ``weight_decay`` on the critic's (value head's)
    parameters only. Then ``epoch_kl`` (``actor``: the logits alone). Returns ``(ac, metrics, kl, critic loss)``,
    metrics and critic loss float32 minibatch means."""

    def step(ac: ActorCritic, mb: Batch):
        def loss(params):
            logits, values = joint(params, mb.obs)
            a_loss, aux = actor_loss(logits, mb.actions, mb.old_logp, mb.advantages, ent_coef, cfg.clip_eps)
            c_loss = critic_loss(values, mb.targets, cfg.vf_coef)
            return a_loss + c_loss, {"actor_loss": a_loss, "critic_loss": c_loss, **aux}

        (_, aux), (g_a, g_c) = jax.value_and_grad(loss, has_aux=True)((ac.actor_params, ac.critic_params))
        a_p, a_s = adam_step(g_a, ac.actor_opt, ac.actor_params, lr, jnp.zeros((), jnp.float32))
        return ActorCritic(a_p, a_s, *adam_step(g_c, ac.critic_opt, ac.critic_params, lr, weight_decay)), aux

    ac, metrics = jax.lax.scan(step, ac, mbs)
    means = {k: jnp.mean(metrics[k]).astype(jnp.float32) for k in (*ACTOR_METRICS, "critic_loss")}
    c_loss = means.pop("critic_loss")
    return ac, means, epoch_kl(cfg, actor, ac.actor_params, obs, old_logits, means), c_loss


def update_critic(cfg: TrainConfig, critic: ApplyFn, params, opt, mbs: Batch, lr, weight_decay):
    """One critic epoch: an ``adam_step`` per minibatch. Returns ``(params, opt, mean loss (float32))``."""

    def step(carry, mb: Batch):
        params, opt = carry
        value, grads = jax.value_and_grad(lambda p: critic_loss(critic(p, mb.obs), mb.targets, cfg.vf_coef))(params)
        return adam_step(grads, opt, params, lr, weight_decay), value

    (params, opt), losses = jax.lax.scan(step, (params, opt), mbs)
    return params, opt, jnp.mean(losses).astype(jnp.float32)


def _epoch(cfg: TrainConfig, actor: ApplyFn, critic: ApplyFn, joint, ac: ActorCritic, active, kl, mbs: Batch,
           ent, hparams: HParams, traj: Trajectory):
    """One epoch of ``ppo_update``: the actor (``lax.cond`` on ``active`` when a KL stop is set; frozen: its
    metrics zero, ``kl`` kept) and the critic, or the shared torso as one. Returns ``(ac, metrics, kl, c_loss)``."""
    frozen = {k: jnp.zeros((), jnp.float32) for k in ACTOR_METRICS}
    if cfg.shared_torso:
        def train(a):
            return update_shared(cfg, joint, actor, a, mbs, ent, hparams.lr, hparams.critic_weight_decay,
                                 traj.obs, traj.logits)

        if cfg.target_kl is None:
            return train(ac)
        return jax.lax.cond(active, train, lambda a: (a, frozen, kl, jnp.zeros((), jnp.float32)), ac)
    op = (ac.actor_params, ac.actor_opt)
    if cfg.target_kl is None:
        a_p, a_s, a_metrics, kl = update_actor(cfg, actor, *op, mbs, ent, hparams.lr, traj.obs, traj.logits)
    else:
        a_p, a_s, a_metrics, kl = jax.lax.cond(
            active, lambda op: update_actor(cfg, actor, *op, mbs, ent, hparams.lr, traj.obs, traj.logits),
            lambda op: (*op, frozen, kl), op)
    c_p, c_s, c_loss = update_critic(cfg, critic, ac.critic_params, ac.critic_opt, mbs, hparams.lr,
                                     hparams.critic_weight_decay)
    return ActorCritic(a_p, a_s, c_p, c_s), a_metrics, kl, c_loss


def ppo_update(cfg: TrainConfig, actor: ApplyFn, critic: ApplyFn, key: jax.Array, ac: ActorCritic,
               hparams: HParams, traj: Trajectory, values: jax.Array, iteration, joint: ApplyFn | None = None
               ) -> tuple[ActorCritic, dict]:
    """One PPO iteration (METHOD §5); jittable with ``cfg``, ``actor``, ``critic`` and ``joint`` static. GAE once
    (``make_batch``), then ``cfg.epochs`` epochs, each shuffling the B sequences (key ``fold_in(key, epoch)``)
    into minibatches for ``update_actor`` and ``update_critic`` (``cfg.shared_torso``: ``update_shared`` with
    ``joint((actor_params, critic_params), obs) -> (logits (b, T, n), values (b, T))``; ``critic`` unused). Once
    the KL after an actor epoch (``epoch_kl``) is ≥ ``cfg.target_kl``, the actor is frozen (``lax.cond``) while
    the critic trains all epochs (shared torso: both are frozen); ``target_kl`` None: no stop, no cond. ``traj``:
    B whole sequences (axes (B, T)); ``values``: (B, T) float32, the critic's at rollout time; ``iteration``: PPO
    iterations done (the entropy schedule's clock).

    Returns ``(ac, metrics)``; metrics are fixed-shape float32 scalars (``actor_epochs`` int32): ``ACTOR_METRICS``
    (``approx_kl``: the per-minibatch ratio estimator) averaged over the minibatches of the epochs the actor
    trained; ``kl`` the stop's measure at the last check (``epoch_kl``); ``actor_epochs``; ``critic_loss`` averaged
    over all minibatches of the epochs the critic trained (all, or the shared torso's); ``explained_variance``,
    ``value_mean``, ``target_mean``, ``adv_mean``, ``adv_std`` of the rollout; ``ent_coef`` (scheduled);
    ``actor_lr`` and ``critic_lr`` (both ``hparams.lr``). Raises ValueError when the rollout's B is not
    ``cfg.num_envs``.
    """
    if traj.actions.shape[0] != cfg.num_envs:
        raise ValueError(f"the rollout has {traj.actions.shape[0]} sequences but num_envs={cfg.num_envs}")
    batch = make_batch(traj, values, cfg, hparams.gae_lambda)
    ent = entropy_coef(cfg, hparams.ent_coef, iteration)
    zero = jnp.zeros((), jnp.float32)

    def epoch(carry, i):
        ac, active, actor_epochs, kl, sums, critic_sum = carry
        mbs = minibatches(batch, jax.random.permutation(jax.random.fold_in(key, i), cfg.num_envs), cfg)
        ac, a_metrics, kl, c_loss = _epoch(cfg, actor, critic, joint, ac, active, kl, mbs, ent, hparams, traj)
        still = active if cfg.target_kl is None else jnp.logical_and(active, kl < cfg.target_kl)
        return (ac, still, actor_epochs + active.astype(jnp.int32), kl,
                {k: sums[k] + a_metrics[k] for k in ACTOR_METRICS}, critic_sum + c_loss), None

    init = (ac, jnp.asarray(True), jnp.zeros((), jnp.int32), zero, {k: zero for k in ACTOR_METRICS}, zero)
    ac, _, actor_epochs, kl, sums, critic_sum = jax.lax.scan(epoch, init, jnp.arange(cfg.epochs))[0]
    denom = jnp.maximum(actor_epochs, 1).astype(jnp.float32)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return ac, {k: sums[k] / denom for k in ACTOR_METRICS} | dict(
        kl=kl, actor_epochs=actor_epochs, critic_loss=critic_sum / (denom if cfg.shared_torso else cfg.epochs),
        explained_variance=f32(explained_variance(values, batch.targets)), value_mean=f32(jnp.mean(values)),
        target_mean=f32(jnp.mean(batch.targets)), adv_mean=f32(jnp.mean(batch.advantages)),
        adv_std=f32(jnp.std(batch.advantages)), ent_coef=f32(ent), actor_lr=f32(hparams.lr), critic_lr=f32(hparams.lr))
