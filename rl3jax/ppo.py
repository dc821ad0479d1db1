"""The outer learner: PPO over whole meta-episodes (SPEC §5).

Pure math, independent of environments and networks: the actor and critic forward passes are passed in as
static callables that map a batch of whole sequences to per-step outputs::

    actor_apply(actor_params, obs)   # obs (b, T, m) -> logits (b, T, n)
    critic_apply(critic_params, obs) # obs (b, T, m) -> values (b, T)

One PPO iteration (``ppo_update``):

* GAE (γ, λ) is computed once from the rollout values; the only terminal is the last step T of every sequence,
  so there is no bootstrap after it. Value targets = values + advantages.
* ``epochs`` epochs; each epoch shuffles the B sequences and splits them into ``num_minibatches`` groups of
  whole sequences (time is never sliced).
* Actor and critic are separate networks with separate losses and optimisers: clipped-ratio policy loss with
  per-minibatch advantage normalisation and an entropy bonus; critic 0.5·MSE without clipping.
* KL early stop: after each actor epoch the full-batch KL(π_old‖π_new) is computed (π_old = the rollout
  logits); once it is ≥ ``target_kl`` the actor is frozen (params and optimiser state) for the rest of the
  iteration, while the critic trains all epochs. Implemented with ``lax.cond``, so a frozen actor costs no
  compute (under ``vmap`` the cond becomes a select, which is still correct).

Hyper-parameter sweeps: ``actor_lr``, ``critic_lr``, ``ent_coef``, ``gae_lambda`` and ``target_kl`` are pytree
leaves of ``PPOConfig``, so they may be traced arrays (e.g. ``vmap`` over a learning rate) and changing them does not
recompile ``jit(ppo_update)``. The learning rates live in the optimiser states (``optax.inject_hyperparams``):
the value used by ``ppo_update`` is the one stored by ``tx.init`` (see ``make_optimizers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

ENT_SCHEDULES = ("constant", "linear")
ADV_EPS = 1e-8

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


def _static(default):
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class PPOConfig:
    """PPO hyper-parameters (SPEC §5 defaults).

    Leaves (may be traced arrays, e.g. for a vmapped sweep): ``gae_lambda``, ``ent_coef``, ``target_kl``,
    ``actor_lr``, ``critic_lr``. Everything else is static metadata (part of the jit cache key).

    ``num_envs`` is optional: when given, ``num_envs % num_minibatches`` is checked here, at config time;
    ``ppo_update`` checks it again against the batch shape in any case.
    """

    gamma: float = _static(0.99)
    gae_lambda: float = 0.3
    clip_eps: float = _static(0.2)
    epochs: int = _static(8)
    num_minibatches: int = _static(1)
    vf_coef: float = _static(0.5)
    ent_coef: float = 0.01
    ent_schedule: str = _static("constant")
    total_iters: int = _static(0)
    target_kl: float = 0.01
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    critic_weight_decay: float = _static(0.01)
    adam_eps: float = _static(1e-7)
    num_envs: int | None = _static(None)

    def __post_init__(self):
        # Only static fields are validated: leaves may be tracers (or placeholders during tree unflattening).
        if self.ent_schedule not in ENT_SCHEDULES:
            raise ValueError(f"ent_schedule must be one of {ENT_SCHEDULES}, got {self.ent_schedule!r}")
        if self.ent_schedule == "linear" and self.total_iters <= 0:
            raise ValueError(f"ent_schedule='linear' needs total_iters > 0, got total_iters={self.total_iters}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.num_minibatches < 1:
            raise ValueError(f"num_minibatches must be >= 1, got {self.num_minibatches}")
        if self.num_envs is not None:
            check_minibatches(self.num_envs, self.num_minibatches)


def check_minibatches(num_envs: int, num_minibatches: int) -> int:
    """Return the number of sequences per minibatch; ValueError unless ``num_minibatches`` divides ``num_envs``."""
    if num_minibatches < 1 or num_envs % num_minibatches != 0:
        raise ValueError(
            f"num_envs={num_envs} is not divisible by num_minibatches={num_minibatches}: minibatches are groups "
            f"of whole sequences, so the number of envs must be a multiple of the number of minibatches"
        )
    return num_envs // num_minibatches


# ----------------------------------------------------------------------------------------------------------
# GAE, schedules, optimisers
# ----------------------------------------------------------------------------------------------------------


def gae(rewards: jax.Array, values: jax.Array, last_value=None, gamma: float = 0.99, lam: float = 0.3):
    """Generalised advantage estimation over whole sequences; returns ``(advantages, targets)``, both (B, T).

    ``rewards`` and ``values`` are (B, T) with time on the last axis. The last step T of every sequence is the
    (only) terminal: there is no bootstrap after it, so ``last_value`` is accepted for API symmetry and
    IGNORED (treated as zero). ``targets = values + advantages``. ``gamma`` and ``lam`` may be traced.
    """
    del last_value
    rewards = jnp.asarray(rewards)
    values = jnp.asarray(values)
    next_values = jnp.concatenate([values[..., 1:], jnp.zeros_like(values[..., :1])], axis=-1)
    deltas = rewards + gamma * next_values - values  # (B, T)
    decay = gamma * lam

    def step(carry, delta_t):
        adv = delta_t + decay * carry
        return adv, adv

    init = jnp.zeros(deltas.shape[:-1], deltas.dtype)
    _, adv_tm = jax.lax.scan(step, init, jnp.moveaxis(deltas, -1, 0), reverse=True)
    advantages = jnp.moveaxis(adv_tm, 0, -1)
    return advantages, values + advantages


def entropy_coef(cfg: PPOConfig, iteration) -> jax.Array:
    """Entropy bonus coefficient at ``iteration`` (0-based): constant, or linear decay to 0 at ``total_iters``."""
    ent = jnp.asarray(cfg.ent_coef, jnp.float32)
    if cfg.ent_schedule == "constant":
        return ent
    frac = 1.0 - jnp.asarray(iteration, jnp.float32) / float(cfg.total_iters)
    return ent * jnp.clip(frac, 0.0, 1.0)


def _as_hparam(x):
    # inject_hyperparams only treats int/float/Array as numeric hyper-parameters (not e.g. np.float32 scalars).
    return x if isinstance(x, jax.Array) else jnp.asarray(x, jnp.float32)


def make_optimizers(cfg: PPOConfig):
    """``(actor_tx, critic_tx)``: Adam(β=(0.9, 0.999), ε=adam_eps); the critic adds coupled L2 weight decay.

    Coupled decay: ``critic_weight_decay · params`` is added to the gradient *before* Adam (not AdamW). No
    gradient clipping, constant learning rates. The learning rates (and the critic's weight decay) are
    injected hyper-parameters: they are stored in the optimiser state by ``tx.init`` and read from there by
    ``tx.update`` (so a vmapped sweep over lr shares one compile; to change lr later, edit
    ``state.hyperparams['learning_rate']`` or re-init).
    """
    eps = cfg.adam_eps

    def actor_factory(learning_rate):
        return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=eps)

    def critic_factory(learning_rate, weight_decay):
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.adam(learning_rate, b1=0.9, b2=0.999, eps=eps),
        )

    actor_tx = optax.inject_hyperparams(actor_factory)(learning_rate=_as_hparam(cfg.actor_lr))
    critic_tx = optax.inject_hyperparams(critic_factory)(
        learning_rate=_as_hparam(cfg.critic_lr), weight_decay=_as_hparam(cfg.critic_weight_decay)
    )
    return actor_tx, critic_tx


# ----------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------


def _entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log π(a) for integer ``actions`` (...,) under ``logits`` (..., n)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def normalize_advantages(advantages: jax.Array) -> jax.Array:
    """(A − mean) / (std + 1e-8) over every entry of the (mini)batch."""
    return (advantages - advantages.mean()) / (advantages.std() + ADV_EPS)


def actor_loss(logits, actions, old_logp, advantages, ent_coef, clip_eps: float = 0.2):
    """Clipped-ratio policy loss with per-minibatch advantage normalisation and an entropy bonus.

    ``loss = −mean(min(r·Â, clip(r, 1−ε, 1+ε)·Â)) − ent_coef · mean(H(π))`` with ``r = exp(logπ − old_logp)``
    and ``Â`` the advantages normalised over the whole minibatch. Returns ``(loss, aux)``; aux has
    ``pg_loss``, ``entropy``, ``approx_kl`` (mean of (r−1) − log r) and ``clip_frac``.
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


def critic_loss(values, targets, coef: float = 0.5) -> jax.Array:
    """``coef · mean((v − target)²)``, no value clipping; the default ``coef = 0.5`` gives SPEC's 0.5·MSE.

    ``ppo_update`` passes ``cfg.vf_coef`` (default 0.5). The critic has its own optimiser, so the coefficient
    only matters relative to Adam's ε and the coupled weight decay.
    """
    return coef * jnp.mean(jnp.square(values - targets))


def categorical_kl(old_logits, new_logits) -> jax.Array:
    """Mean over all steps of KL(π_old ‖ π_new) = Σ_a π_old(a) (log π_old(a) − log π_new(a))."""
    old_logp = jax.nn.log_softmax(old_logits, axis=-1)
    new_logp = jax.nn.log_softmax(new_logits, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(old_logp) * (old_logp - new_logp), axis=-1))


def explained_variance(values, targets) -> jax.Array:
    """1 − Var(targets − values) / Var(targets) (0 when Var(targets) is 0)."""
    var_t = jnp.var(targets)
    return jnp.where(var_t > 0, 1.0 - jnp.var(targets - values) / jnp.where(var_t > 0, var_t, 1.0), 0.0)


# ----------------------------------------------------------------------------------------------------------
# The update
# ----------------------------------------------------------------------------------------------------------

ACTOR_METRICS = ("actor_loss", "pg_loss", "entropy", "approx_kl", "clip_frac")


def _get(batch, name):
    if isinstance(batch, Mapping):
        return batch[name] if name in batch else None
    return getattr(batch, name, None)


def ppo_update(
    key: jax.Array,
    actor_params,
    critic_params,
    actor_opt_state,
    critic_opt_state,
    batch,
    cfg: PPOConfig,
    iteration,
    actor_apply: ApplyFn,
    critic_apply: ApplyFn,
):
    """One PPO iteration (SPEC §5). Jittable: ``jax.jit(ppo_update, static_argnames=("actor_apply",
    "critic_apply"))`` with ``cfg`` a normal argument (its static fields are part of the cache key), or see
    ``make_ppo_update``.

    ``batch`` (a mapping or an object with attributes), leading axes (B envs, T steps):
    ``obs`` (B,T,m), ``actions`` (B,T) int, ``logp`` (B,T) rollout log-probs, ``values`` (B,T) rollout values,
    ``rewards`` (B,T), and ``logits`` (B,T,n) rollout logits (π_old for the KL early stop; if absent they are
    recomputed as ``actor_apply(actor_params, obs)``, which equals the rollout policy at the start of the
    update).

    Returns ``(actor_params, critic_params, actor_opt_state, critic_opt_state, metrics)``; metrics are fixed-
    shape float32 scalars: actor metrics (``actor_loss``, ``pg_loss``, ``entropy``, ``approx_kl`` (per-minibatch
    ratio estimator), ``clip_frac``) averaged over the minibatches of the epochs the actor trained;
    ``kl`` the full-batch KL(π_old‖π_new) at the last check (the early-stop statistic); ``actor_epochs``;
    ``critic_loss`` (vf_coef·MSE) averaged over all minibatches of all epochs; ``explained_variance``, ``value_mean``,
    ``target_mean``, ``adv_mean``, ``adv_std`` of the rollout; ``ent_coef``; ``actor_lr``, ``critic_lr``.
    """
    obs = _get(batch, "obs")
    actions = _get(batch, "actions")
    old_logp = _get(batch, "logp")
    values = _get(batch, "values")
    rewards = _get(batch, "rewards")
    old_logits = _get(batch, "logits")
    for name, x in (("obs", obs), ("actions", actions), ("logp", old_logp), ("values", values),
                    ("rewards", rewards)):
        if x is None:
            raise KeyError(f"ppo_update: batch is missing {name!r}")
    if old_logits is None:
        old_logits = jax.lax.stop_gradient(actor_apply(actor_params, obs))

    num_envs, num_steps = actions.shape[:2]
    num_mb = cfg.num_minibatches
    mb_size = check_minibatches(num_envs, num_mb)

    actor_tx, critic_tx = make_optimizers(cfg)
    advantages, targets = gae(rewards, values, None, cfg.gamma, cfg.gae_lambda)
    ent = entropy_coef(cfg, iteration)
    clip_eps = cfg.clip_eps
    target_kl = cfg.target_kl
    vf_coef = cfg.vf_coef

    # Per-sequence data, shuffled together every epoch.
    actor_data = (obs, actions, old_logp, advantages)
    critic_data = (obs, targets)
    # π_old split in the fixed (unshuffled) order used by the full-batch KL pass.
    kl_chunks = jax.tree.map(lambda x: x.reshape((num_mb, mb_size) + x.shape[1:]), (obs, old_logits))

    def split(x, perm):
        return x[perm].reshape((num_mb, mb_size) + x.shape[1:])

    def actor_loss_fn(params, mb):
        mb_obs, mb_act, mb_logp, mb_adv = mb
        logits = actor_apply(params, mb_obs)
        return actor_loss(logits, mb_act, mb_logp, mb_adv, ent, clip_eps)

    def critic_loss_fn(params, mb):
        mb_obs, mb_targets = mb
        return critic_loss(critic_apply(params, mb_obs), mb_targets, vf_coef)

    def full_batch_kl(params):
        # Chunked like the minibatches, so the memory peak stays that of a minibatch forward pass.
        def chunk_kl(chunk):
            c_obs, c_old = chunk
            return categorical_kl(c_old, actor_apply(params, c_obs))

        return jnp.mean(jax.lax.map(chunk_kl, kl_chunks))

    def actor_epoch(params, opt_state, shuffled):
        def mb_step(carry, mb):
            p, s = carry
            (loss, aux), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(p, mb)
            updates, s = actor_tx.update(grads, s, p)
            p = optax.apply_updates(p, updates)
            return (p, s), {"actor_loss": loss, **aux}

        (params, opt_state), mb_metrics = jax.lax.scan(mb_step, (params, opt_state), shuffled)
        ep_metrics = {k: jnp.mean(mb_metrics[k]).astype(jnp.float32) for k in ACTOR_METRICS}
        return params, opt_state, ep_metrics, full_batch_kl(params).astype(jnp.float32)

    def critic_epoch(params, opt_state, shuffled):
        def mb_step(carry, mb):
            p, s = carry
            loss, grads = jax.value_and_grad(critic_loss_fn)(p, mb)
            updates, s = critic_tx.update(grads, s, p)
            p = optax.apply_updates(p, updates)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(mb_step, (params, opt_state), shuffled)
        return params, opt_state, jnp.mean(losses).astype(jnp.float32)

    zero = jnp.zeros((), jnp.float32)

    def epoch(carry, epoch_idx):
        a_p, a_s, c_p, c_s, active, n_actor, kl_last, a_sums, c_sum = carry
        perm = jax.random.permutation(jax.random.fold_in(key, epoch_idx), num_envs)

        def train_actor(operand):
            p, s = operand
            shuffled = tuple(split(x, perm) for x in actor_data)
            return actor_epoch(p, s, shuffled)

        def skip_actor(operand):
            p, s = operand
            return p, s, {k: zero for k in ACTOR_METRICS}, kl_last

        a_p, a_s, a_metrics, kl = jax.lax.cond(active, train_actor, skip_actor, (a_p, a_s))
        a_sums = {k: a_sums[k] + a_metrics[k] for k in ACTOR_METRICS}
        n_actor = n_actor + active.astype(jnp.int32)
        active = jnp.logical_and(active, kl < target_kl)

        c_p, c_s, c_loss = critic_epoch(c_p, c_s, tuple(split(x, perm) for x in critic_data))
        return (a_p, a_s, c_p, c_s, active, n_actor, kl, a_sums, c_sum + c_loss), None

    init = (
        actor_params,
        actor_opt_state,
        critic_params,
        critic_opt_state,
        jnp.asarray(True),
        jnp.zeros((), jnp.int32),
        zero,
        {k: zero for k in ACTOR_METRICS},
        zero,
    )
    carry, _ = jax.lax.scan(epoch, init, jnp.arange(cfg.epochs))
    a_p, a_s, c_p, c_s, _, n_actor, kl, a_sums, c_sum = carry

    denom = jnp.maximum(n_actor, 1).astype(jnp.float32)
    metrics = {k: a_sums[k] / denom for k in ACTOR_METRICS}
    metrics.update(
        kl=kl,
        actor_epochs=n_actor,
        critic_loss=c_sum / cfg.epochs,
        explained_variance=explained_variance(values, targets).astype(jnp.float32),
        value_mean=jnp.mean(values).astype(jnp.float32),
        target_mean=jnp.mean(targets).astype(jnp.float32),
        adv_mean=jnp.mean(advantages).astype(jnp.float32),
        adv_std=jnp.std(advantages).astype(jnp.float32),
        ent_coef=ent.astype(jnp.float32),
        actor_lr=_lr(a_s, cfg.actor_lr),
        critic_lr=_lr(c_s, cfg.critic_lr),
    )
    return a_p, c_p, a_s, c_s, metrics


def _lr(opt_state, default) -> jax.Array:
    hp = getattr(opt_state, "hyperparams", None)
    lr = hp.get("learning_rate", default) if isinstance(hp, Mapping) else default
    return jnp.asarray(lr, jnp.float32)


def make_ppo_update(actor_apply: ApplyFn, critic_apply: ApplyFn, donate: bool = False):
    """A jitted ``f(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg, iteration)``
    with the apply functions closed over. ``donate=True`` donates the params and optimiser states (saves
    memory on accelerators; the passed-in buffers become invalid)."""

    def f(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg, iteration):
        return ppo_update(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg,
                          iteration, actor_apply, critic_apply)

    return jax.jit(f, donate_argnums=(1, 2, 3, 4) if donate else ())
