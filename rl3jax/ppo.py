"""The outer learner: PPO over whole meta-episodes (METHOD §5), as small functions over small pytrees.

Independent of environments and networks: the forward passes (``Learner``) are static callables over whole
sequences. One iteration (``ppo_update``): ``make_batch`` (GAE once from the rollout values; the last step T is the
only terminal), then ``run_epochs``: each epoch shuffles the B sequences (key ``fold_in(key, epoch)``) into
``minibatches`` of whole sequences (time is never sliced) and trains the pair with an epoch rule: ``SEPARATE``
(``actor_epoch`` of ``actor_step``s, then ``kl_check``; ``critic_epoch`` of ``critic_step``s) or
``rl3jax.fused.Fused`` (one vmapped step for both). KL early stop: once the full-batch KL(π_old‖π_new) after an
actor epoch is ≥ ``cfg.target_kl``, the actor (params and optimiser state) is frozen for the rest of the iteration
while the critic trains all epochs (``lax.cond``: a frozen actor costs no compute; under ``vmap`` it is a select).

Where each setting lives (one home each): static (the jit cache key), the ``TrainConfig`` fields ``gamma``,
``clip_eps``, ``epochs``, ``num_envs``, ``minibatch_envs``, ``vf_coef``, ``target_kl``, ``ent_schedule`` with
``iters`` (the linear schedule's end) and ``kl_chunks``; traced and sweepable per run, ``hparams`` (keys
``HPARAMS``: ``ent_coef``, ``gae_lambda``; ``TrainState.hparams``, filled from the config's fields of those names);
the learning rate (``TrainConfig.lr``) and the critic's weight decay (``critic_weight_decay``) in the
``optax.inject_hyperparams`` optimiser states, put there by ``tx.init`` (``make_optimizers``), where a population
sweeps them. Adam's ε: ``ADAM_EPS``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rl3jax.config import PPO_HPARAMS, TrainConfig
from rl3jax.rollout import log_prob

#: added to the advantages' standard deviation in the per-minibatch normalisation
ADV_EPS = 1e-8
#: Adam's ε, actor and critic (METHOD §5; the original's main.jl)
ADAM_EPS = 1e-7
#: the traced, sweepable settings ``ppo_update`` reads from ``hparams`` (``TrainState.hparams``)
HPARAMS = PPO_HPARAMS
ACTOR_METRICS = ("actor_loss", "pg_loss", "entropy", "approx_kl", "clip_frac")

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


@struct.dataclass
class Rollout:
    """What one PPO iteration trains on: B whole sequences of T steps (leading axes (B, T))."""

    obs: jax.Array  # (B, T, m) float32 policy inputs
    actions: jax.Array  # (B, T) int32
    logp: jax.Array  # (B, T) float32, log π_old(a_t) at rollout time
    values: jax.Array  # (B, T) float32, the critic's values at rollout time
    rewards: jax.Array  # (B, T) float32
    logits: jax.Array | None = None  # (B, T, n) π_old (KL early stop); None: recomputed from the actor params


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
    """The four trees one PPO iteration changes (the names of ``TrainState``'s fields)."""

    actor_params: Params
    actor_opt: Any  # optax state of ``make_optimizers``' actor transformation
    critic_params: Params
    critic_opt: Any


class Learner(NamedTuple):
    """The static half of the learner (hashable): the forward passes and the optimisers (``make_optimizers``)."""

    actor: ApplyFn  # (params, obs (b, T, m)) -> logits (b, T, n)
    critic: ApplyFn  # (params, obs (b, T, m)) -> values (b, T)
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation


@dataclasses.dataclass(frozen=True)
class Context:
    """What the steps of one iteration share: static settings and functions, the (traced) entropy coefficient, the
    inputs and π_old logits (KL check), and the learner at the start (its shapes undo the fused pair's padding)."""

    cfg: TrainConfig
    fns: Learner
    ent_coef: jax.Array
    obs: jax.Array
    old_logits: jax.Array
    start: ActorCritic


@struct.dataclass
class EpochState:
    """The carry of the scan over epochs."""

    nets: Any  # what the epoch rule trains (``SEPARATE``: an ``ActorCritic``)
    active: jax.Array  # bool: the actor still trains (the KL target not yet reached)
    actor_epochs: jax.Array  # int32: epochs the actor trained
    kl: jax.Array  # float32: full-batch KL at the last check
    actor_sums: dict  # ACTOR_METRICS summed over the epochs the actor trained
    critic_sum: jax.Array  # float32: per-epoch mean critic losses, summed


class EpochRule(Protocol):
    """How the epochs hold and train the pair (``SEPARATE``, ``rl3jax.fused.Fused``)."""

    def pack(self, ac: ActorCritic) -> Any: ...  # -> nets, what the epochs carry
    # -> (nets, actor metrics (ACTOR_METRICS), full-batch KL after the epoch (kl_last if frozen), critic loss)
    def train(self, ctx: Context, nets, active, kl_last, minibatches: Batch) -> tuple: ...
    def unpack(self, ctx: Context, nets) -> ActorCritic: ...


# ---- GAE, schedule, optimisers ---------------------------------------------------------------------------


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
    """The entropy bonus coefficient (float32 scalar) at ``iteration`` (0-based PPO iterations done).

    ``cfg.ent_schedule`` (one of ``config.ENT_SCHEDULES``; a ``TrainConfig`` refuses others when it is
    constructed): 'constant' gives ``ent_coef``; 'linear' decays it linearly to 0 at ``cfg.iters`` (clamped at 0
    after). ``ent_coef`` may be traced."""
    ent = jnp.asarray(ent_coef, jnp.float32)
    if cfg.ent_schedule == "constant":
        return ent
    frac = 1.0 - jnp.asarray(iteration, jnp.float32) / float(cfg.iters)
    return ent * jnp.clip(frac, 0.0, 1.0)


def make_optimizers(cfg: TrainConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """``(actor_tx, critic_tx)`` of METHOD §5: Adam(``cfg.lr``, β=(0.9, 0.999), ε=``ADAM_EPS``), constant lr, no
    gradient clipping; the critic adds coupled L2 weight decay (``cfg.critic_weight_decay · params`` added to the
    gradient *before* Adam, not AdamW). One transformation for both (the actor's decay 0 adds exactly 0), so the
    states stack for the fused step. lr and decay are injected hyper-parameters: ``tx.init`` stores them (float32)
    in ``state.hyperparams['learning_rate' | 'weight_decay']`` and ``tx.update`` reads them from there."""

    def factory(learning_rate, weight_decay):
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.adam(learning_rate, b1=0.9, b2=0.999, eps=ADAM_EPS))

    lr, wd = (jnp.asarray(x, jnp.float32) for x in (cfg.lr, cfg.critic_weight_decay))  # float32 array leaves
    inject = optax.inject_hyperparams(factory)
    return inject(learning_rate=lr, weight_decay=jnp.asarray(0.0, jnp.float32)), inject(learning_rate=lr, weight_decay=wd)


# ---- Losses ----------------------------------------------------------------------------------------------


def _entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def normalize_advantages(advantages: jax.Array) -> jax.Array:
    """(A − mean) / (std + ``ADV_EPS``) over every entry of the (mini)batch."""
    return (advantages - advantages.mean()) / (advantages.std() + ADV_EPS)


def actor_loss(logits, actions, old_logp, advantages, ent_coef, clip_eps: float):
    """Clipped-ratio policy loss (PPO, Schulman et al. 2017, eq. 7) minus an entropy bonus (METHOD §5).

    ``logits`` (..., n); ``actions``, ``old_logp``, ``advantages`` (...,). ``loss = −mean(min(r·Â, clip(r, 1−ε,
    1+ε)·Â)) − ent_coef · mean(H(π))`` with ``r = exp(logπ − old_logp)`` and ``Â`` the advantages normalised over
    the whole minibatch. Returns ``(loss, aux)``, float scalars; aux has ``pg_loss``, ``entropy`` (nats),
    ``approx_kl`` (mean of (r−1) − log r) and ``clip_frac`` (fraction of steps with |r − 1| > ε).
    """
    logp = log_prob(logits, actions)
    adv = normalize_advantages(advantages)
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    surr1 = ratio * adv
    surr2 = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    pg_loss = -jnp.mean(jnp.minimum(surr1, surr2))
    entropy = jnp.mean(_entropy(logits))
    loss = pg_loss - ent_coef * entropy
    aux = {
        "pg_loss": pg_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }
    return loss, aux


def critic_loss(values, targets, vf_coef) -> jax.Array:
    """``vf_coef · mean((v − target)²)`` over all entries, no value clipping (METHOD §5: vf_coef 0.5, i.e.
    0.5·MSE). The critic has its own optimiser, so ``vf_coef`` only matters relative to Adam's ε and the coupled
    weight decay."""
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


# ---- The steps -------------------------------------------------------------------------------------------


def make_batch(rollout: Rollout, cfg: TrainConfig, gae_lambda) -> Batch:
    """The training data of one iteration: the rollout with GAE advantages and value targets (``gae``)."""
    advantages, targets = gae(rollout.rewards, rollout.values, cfg.gamma, gae_lambda)
    return Batch(rollout.obs, rollout.actions, rollout.logp, advantages, targets)


def minibatches(batch: Batch, perm: jax.Array, cfg: TrainConfig) -> Batch:
    """The sequences of ``batch`` in the order ``perm`` (B,), as (num_minibatches, minibatch_envs, ...) leaves."""
    return jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, cfg.minibatch_envs) + x.shape[1:]), batch)


def actor_terms(ctx: Context, logits: jax.Array, mb: Batch):
    """``actor_loss`` of a minibatch's logits with this iteration's settings."""
    return actor_loss(logits, mb.actions, mb.old_logp, mb.advantages, ctx.ent_coef, ctx.cfg.clip_eps)


def actor_step(ctx: Context, carry, mb: Batch):
    """One actor minibatch step: ``(params, opt), mb -> ((params, opt), {ACTOR_METRICS})``."""
    params, opt = carry
    (loss, aux), grads = jax.value_and_grad(
        lambda p: actor_terms(ctx, ctx.fns.actor(p, mb.obs), mb), has_aux=True)(params)
    updates, opt = ctx.fns.actor_tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), {"actor_loss": loss, **aux}


def critic_step(ctx: Context, carry, mb: Batch):
    """One critic minibatch step: ``(params, opt), mb -> ((params, opt), critic loss)``."""
    params, opt = carry
    loss, grads = jax.value_and_grad(
        lambda p: critic_loss(ctx.fns.critic(p, mb.obs), mb.targets, ctx.cfg.vf_coef))(params)
    updates, opt = ctx.fns.critic_tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), loss


def kl_check(ctx: Context, actor_params) -> jax.Array:
    """Full-batch KL(π_old‖π_new) (float32 scalar): one forward pass, or ``cfg.kl_chunks`` sequential passes over
    fixed (unshuffled) groups of sequences, so the memory peak is that of one group's pass."""
    n = ctx.cfg.kl_chunks
    if n == 1:
        return categorical_kl(ctx.old_logits, ctx.fns.actor(actor_params, ctx.obs)).astype(jnp.float32)
    groups = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), (ctx.obs, ctx.old_logits))
    kl = jnp.mean(jax.lax.map(lambda c: categorical_kl(c[1], ctx.fns.actor(actor_params, c[0])), groups))
    return kl.astype(jnp.float32)


def mean_metrics(mb_metrics: dict) -> dict:
    """Per-minibatch actor metrics (num_minibatches,) -> their float32 means."""
    return {k: jnp.mean(mb_metrics[k]).astype(jnp.float32) for k in ACTOR_METRICS}


def no_actor_metrics() -> dict:
    """The actor metrics of an epoch the actor did not train: zeros."""
    zero = jnp.zeros((), jnp.float32)
    return {k: zero for k in ACTOR_METRICS}


def actor_epoch(ctx: Context, params, opt, mbs: Batch):
    """The actor's minibatch steps of one epoch, then the KL check: ``-> (params, opt, metrics, kl)``."""
    (params, opt), mb_metrics = jax.lax.scan(functools.partial(actor_step, ctx), (params, opt), mbs)
    return params, opt, mean_metrics(mb_metrics), kl_check(ctx, params)


def critic_epoch(ctx: Context, params, opt, mbs: Batch):
    """The critic's minibatch steps of one epoch: ``-> (params, opt, mean loss (float32))``."""
    (params, opt), losses = jax.lax.scan(functools.partial(critic_step, ctx), (params, opt), mbs)
    return params, opt, jnp.mean(losses).astype(jnp.float32)


class _Separate:
    """Separate steps: an actor epoch (skipped once the actor is frozen), then a critic epoch."""

    def pack(self, ac: ActorCritic) -> ActorCritic:
        return ac

    def train(self, ctx: Context, ac: ActorCritic, active, kl_last, mbs: Batch):
        a_p, a_s, a_metrics, kl = jax.lax.cond(
            active, lambda op: actor_epoch(ctx, *op, mbs), lambda op: (*op, no_actor_metrics(), kl_last),
            (ac.actor_params, ac.actor_opt))
        c_p, c_s, c_loss = critic_epoch(ctx, ac.critic_params, ac.critic_opt, mbs)
        return ActorCritic(actor_params=a_p, actor_opt=a_s, critic_params=c_p, critic_opt=c_s), a_metrics, kl, c_loss

    def unpack(self, ctx: Context, ac: ActorCritic) -> ActorCritic:
        return ac


SEPARATE = _Separate()  # the default epoch rule: actor and critic in separate minibatch steps


def run_epochs(key: jax.Array, ctx: Context, batch: Batch, nets, rule: EpochRule) -> EpochState:
    """``cfg.epochs`` epochs over ``batch`` (shuffled with ``fold_in(key, epoch)``) with the KL early stop."""
    cfg = ctx.cfg

    def epoch(s: EpochState, epoch_idx):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch_idx), batch.actions.shape[0])
        nets, a_metrics, kl, c_loss = rule.train(ctx, s.nets, s.active, s.kl, minibatches(batch, perm, cfg))
        return EpochState(nets=nets, active=jnp.logical_and(s.active, kl < cfg.target_kl),
                          actor_epochs=s.actor_epochs + s.active.astype(jnp.int32), kl=kl,
                          actor_sums={k: s.actor_sums[k] + a_metrics[k] for k in ACTOR_METRICS},
                          critic_sum=s.critic_sum + c_loss), None

    zero = jnp.zeros((), jnp.float32)
    init = EpochState(nets, jnp.asarray(True), jnp.zeros((), jnp.int32), zero, no_actor_metrics(), zero)
    return jax.lax.scan(epoch, init, jnp.arange(cfg.epochs))[0]


def check_batch(cfg: TrainConfig, num_envs: int) -> None:
    """ValueError unless ``num_envs`` (a rollout's B) is ``cfg.num_envs`` (whose divisibility by minibatch_envs
    and kl_chunks a ``TrainConfig`` checks when it is constructed)."""
    if num_envs != cfg.num_envs:
        raise ValueError(f"the rollout has {num_envs} sequences but num_envs={cfg.num_envs}")


def ppo_update(key: jax.Array, ac: ActorCritic, rollout: Rollout, hparams: Mapping, iteration, cfg: TrainConfig,
               fns: Learner, rule: EpochRule = SEPARATE) -> tuple[ActorCritic, dict]:
    """One PPO iteration (METHOD §5); jittable with ``cfg``, ``fns`` and ``rule`` static (closed over).

    ``key``: PRNG key of the epochs' shuffles. ``ac``: the parameters and optimiser states. ``rollout``: B whole
    sequences of T steps (``Rollout``). ``hparams``: ``{"ent_coef", "gae_lambda"}`` (``HPARAMS``), float32 scalars,
    may be traced. ``iteration``: int PPO iterations done (the entropy schedule's clock). ``rule``: ``SEPARATE`` or
    ``rl3jax.fused.Fused(...)`` (one vmapped step for the pair; the same result up to float reassociation).

    Returns ``(ac, metrics)``; metrics are fixed-shape float32 scalars (``actor_epochs`` int32): actor metrics
    (``actor_loss``, ``pg_loss``, ``entropy``, ``approx_kl`` (per-minibatch ratio estimator), ``clip_frac``)
    averaged over the minibatches of the epochs the actor trained; ``kl`` the full-batch KL(π_old‖π_new) at the last
    check; ``actor_epochs``; ``critic_loss`` averaged over all minibatches of all epochs; ``explained_variance``,
    ``value_mean``, ``target_mean``, ``adv_mean``, ``adv_std`` of the rollout; ``ent_coef``; ``actor_lr``,
    ``critic_lr`` (read from the optimiser states).

    Raises ValueError when the rollout does not fit ``cfg`` (``check_batch``), when ``hparams`` has other keys than
    ``HPARAMS``, or (fused rule) when the pair cannot be stacked.
    """
    if set(hparams) != set(HPARAMS):
        raise ValueError(f"hparams must have the keys {', '.join(HPARAMS)}; got {', '.join(sorted(hparams))}")
    check_batch(cfg, rollout.actions.shape[0])
    old_logits = rollout.logits
    if old_logits is None:
        old_logits = jax.lax.stop_gradient(fns.actor(ac.actor_params, rollout.obs))
    batch = make_batch(rollout, cfg, hparams["gae_lambda"])
    ent = entropy_coef(cfg, hparams["ent_coef"], iteration)
    ctx = Context(cfg=cfg, fns=fns, ent_coef=ent, obs=rollout.obs, old_logits=old_logits, start=ac)

    s = run_epochs(key, ctx, batch, rule.pack(ac), rule)
    out = rule.unpack(ctx, s.nets)
    denom = jnp.maximum(s.actor_epochs, 1).astype(jnp.float32)
    metrics = {k: s.actor_sums[k] / denom for k in ACTOR_METRICS}
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    metrics.update(
        kl=s.kl, actor_epochs=s.actor_epochs, critic_loss=s.critic_sum / cfg.epochs,
        explained_variance=f32(explained_variance(rollout.values, batch.targets)),
        value_mean=f32(jnp.mean(rollout.values)), target_mean=f32(jnp.mean(batch.targets)),
        adv_mean=f32(jnp.mean(batch.advantages)), adv_std=f32(jnp.std(batch.advantages)), ent_coef=f32(ent),
        actor_lr=f32(out.actor_opt.hyperparams["learning_rate"]),
        critic_lr=f32(out.critic_opt.hyperparams["learning_rate"]))
    return out, metrics
