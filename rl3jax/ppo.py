"""The outer learner: PPO over whole meta-episodes (METHOD §5).

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
  compute (under ``vmap`` the cond becomes a select, which is still correct). The KL pass is one forward pass
  over the whole batch, or ``kl_chunks`` sequential passes over groups of sequences to bound its memory.

Fused actor-critic step (``fused_apply``): actor and critic are separate networks of the same shape, so one
minibatch step can train both at once: the critic's parameters are zero-padded to the actor's shapes (only the
output layer differs: 1 output instead of n), the two parameter trees are stacked on a leading axis of 2, and
one vmapped forward/backward pass plus one vmapped Adam step replace two of each. The padded entries get zero
gradient and zero weight decay, so Adam leaves them at exactly zero: the result is that of the separate
updates (up to float reassociation). At the paper's batch a minibatch is 32 sequences, far too little work to
fill a GPU, so halving the number of sequential steps should nearly halve the update time there (expected,
not yet measured on a GPU: BENCHMARKS.md). Once the KL stop freezes the actor, the remaining epochs train the
critic alone.

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
    """PPO hyper-parameters (METHOD §5 defaults).

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
    kl_chunks: int = _static(1)  # the full-batch KL pass runs over this many groups of sequences (memory bound)

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
        if self.kl_chunks < 1:
            raise ValueError(f"kl_chunks must be >= 1, got {self.kl_chunks}")
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


def gae(rewards: jax.Array, values: jax.Array, gamma: float = 0.99, lam: float = 0.3):
    """Generalised advantage estimation over whole sequences; returns ``(advantages, targets)``, both (B, T).

    ``rewards`` and ``values`` are (B, T) with time on the last axis. The last step T of every sequence is the
    (only) terminal: there is no bootstrap after it (the value after step T is zero, METHOD §5).
    ``targets = values + advantages``. ``gamma`` and ``lam`` may be traced.
    """
    rewards = jnp.asarray(rewards)
    values = jnp.asarray(values)
    next_values = jnp.concatenate([values[..., 1:], jnp.zeros_like(values[..., :1])], axis=-1)
    deltas = rewards + gamma * next_values - values  # (B, T)
    decay = jnp.broadcast_to(jnp.asarray(gamma * lam, deltas.dtype), deltas.shape)

    # A_t = δ_t + γλ·A_{t+1} as a parallel scan of affine maps x -> a·x + b (log T steps, not a T-step loop).
    def compose(later, earlier):
        a_l, b_l = later
        a_e, b_e = earlier
        return a_e * a_l, b_e + a_e * b_l

    _, advantages = jax.lax.associative_scan(compose, (decay, deltas), reverse=True, axis=deltas.ndim - 1)
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
    gradient clipping, constant learning rates. Both are the same transformation (the actor's weight decay is
    0, which adds exactly 0 to its gradient), so their states share one structure and can be stacked for the
    fused actor-critic step. The learning rates (and the critic's weight decay) are
    injected hyper-parameters: they are stored in the optimiser state by ``tx.init`` and read from there by
    ``tx.update`` (so a vmapped sweep over lr shares one compile; to change lr later, edit
    ``state.hyperparams['learning_rate']`` or re-init).
    """
    eps = cfg.adam_eps

    def factory(learning_rate, weight_decay):
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.adam(learning_rate, b1=0.9, b2=0.999, eps=eps),
        )

    actor_tx = optax.inject_hyperparams(factory)(learning_rate=_as_hparam(cfg.actor_lr),
                                                 weight_decay=_as_hparam(0.0))
    critic_tx = optax.inject_hyperparams(factory)(
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
    """``coef · mean((v − target)²)``, no value clipping; the default ``coef = 0.5`` gives METHOD §5's 0.5·MSE.

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
    fused_apply: Callable | None = None,
):
    """One PPO iteration (METHOD §5). Jittable: ``jax.jit(ppo_update, static_argnames=("actor_apply",
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

    ``fused_apply(stacked_params, obs) -> (logits (b,T,n), values (b,T))``, optional: the forward pass of both
    networks from their parameters stacked on a leading axis of 2 (actor, then the critic zero-padded to the
    actor's shapes), usually ``vmap`` of the actor's network. Given, actor and critic train in one step per
    minibatch (see the module docstring); the critic's leaves must have the actor's ranks and no larger sizes.
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
    if num_envs % cfg.kl_chunks:
        raise ValueError(f"num_envs={num_envs} is not divisible by kl_chunks={cfg.kl_chunks}")

    actor_tx, critic_tx = make_optimizers(cfg)
    advantages, targets = gae(rewards, values, cfg.gamma, cfg.gae_lambda)
    ent = entropy_coef(cfg, iteration)
    clip_eps = cfg.clip_eps
    target_kl = cfg.target_kl
    vf_coef = cfg.vf_coef

    # Per-sequence data, shuffled together every epoch.
    data = {"obs": obs, "actions": actions, "old_logp": old_logp, "adv": advantages, "targets": targets}

    def shuffle(perm):
        return jax.tree.map(lambda x: x[perm].reshape((num_mb, mb_size) + x.shape[1:]), data)

    def actor_terms(logits, mb):
        return actor_loss(logits, mb["actions"], mb["old_logp"], mb["adv"], ent, clip_eps)

    def full_batch_kl(params):
        n_kl = cfg.kl_chunks
        if n_kl == 1:
            return categorical_kl(old_logits, actor_apply(params, obs))
        # π_old in fixed (unshuffled) groups of sequences, so the memory peak is that of one group's pass
        groups = jax.tree.map(lambda x: x.reshape((n_kl, num_envs // n_kl) + x.shape[1:]), (obs, old_logits))
        return jnp.mean(jax.lax.map(lambda c: categorical_kl(c[1], actor_apply(params, c[0])), groups))

    def actor_metrics(mb_metrics):
        return {k: jnp.mean(mb_metrics[k]).astype(jnp.float32) for k in ACTOR_METRICS}

    def critic_epoch(params, opt_state, shuffled):
        def mb_step(carry, mb):
            p, s = carry
            loss, grads = jax.value_and_grad(
                lambda q: critic_loss(critic_apply(q, mb["obs"]), mb["targets"], vf_coef))(p)
            updates, s = critic_tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, opt_state), losses = jax.lax.scan(mb_step, (params, opt_state), shuffled)
        return params, opt_state, jnp.mean(losses).astype(jnp.float32)

    zero = jnp.zeros((), jnp.float32)
    no_actor = {k: zero for k in ACTOR_METRICS}

    if fused_apply is None:
        # Separate steps: an actor epoch (skipped once frozen), then a critic epoch.
        def actor_epoch(params, opt_state, shuffled):
            def mb_step(carry, mb):
                p, s = carry
                (loss, aux), grads = jax.value_and_grad(
                    lambda q: actor_terms(actor_apply(q, mb["obs"]), mb), has_aux=True)(p)
                updates, s = actor_tx.update(grads, s, p)
                return (optax.apply_updates(p, updates), s), {"actor_loss": loss, **aux}

            (params, opt_state), mb_metrics = jax.lax.scan(mb_step, (params, opt_state), shuffled)
            return params, opt_state, actor_metrics(mb_metrics), full_batch_kl(params).astype(jnp.float32)

        def train_epoch(nets, active, kl_last, shuffled):
            a_p, a_s, c_p, c_s = nets
            a_p, a_s, a_metrics, kl = jax.lax.cond(
                active, lambda op: actor_epoch(*op, shuffled), lambda op: (*op, no_actor, kl_last), (a_p, a_s))
            c_p, c_s, c_loss = critic_epoch(c_p, c_s, shuffled)
            return (a_p, a_s, c_p, c_s), a_metrics, kl, c_loss

        nets = (actor_params, actor_opt_state, critic_params, critic_opt_state)
    else:
        # Fused steps over the stacked pair (P, S); once the actor is frozen, the critic alone.
        _check_pairable(actor_params, critic_params)

        def fused_epoch(P, S, shuffled):
            def mb_step(carry, mb):
                P, S = carry

                def loss_fn(P):
                    logits, vals = fused_apply(P, mb["obs"])
                    a_loss, aux = actor_terms(logits, mb)
                    c_loss = critic_loss(vals, mb["targets"], vf_coef)
                    return a_loss + c_loss, (a_loss, aux, c_loss)

                (_, (a_loss, aux, c_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(P)
                updates, S = jax.vmap(critic_tx.update)(grads, S, P)
                return (optax.apply_updates(P, updates), S), ({"actor_loss": a_loss, **aux}, c_loss)

            (P, S), (mb_metrics, c_losses) = jax.lax.scan(mb_step, (P, S), shuffled)
            kl = full_batch_kl(jax.tree.map(lambda x: x[0], P)).astype(jnp.float32)
            return P, S, actor_metrics(mb_metrics), kl, jnp.mean(c_losses).astype(jnp.float32)

        def critic_only_epoch(P, S, kl_last, shuffled):
            c_p, c_s, c_loss = critic_epoch(_unpad(P, critic_params), _unpad(S, critic_opt_state), shuffled)
            return _set_second(P, c_p), _set_second(S, c_s), no_actor, kl_last, c_loss

        def train_epoch(nets, active, kl_last, shuffled):
            P, S, a_metrics, kl, c_loss = jax.lax.cond(
                active, lambda op: fused_epoch(*op, shuffled),
                lambda op: critic_only_epoch(*op, kl_last, shuffled), nets)
            return (P, S), a_metrics, kl, c_loss

        nets = (_stack_pair(actor_params, critic_params), _stack_pair(actor_opt_state, critic_opt_state))

    def epoch(carry, epoch_idx):
        nets, active, n_actor, kl_last, a_sums, c_sum = carry
        shuffled = shuffle(jax.random.permutation(jax.random.fold_in(key, epoch_idx), num_envs))
        nets, a_metrics, kl, c_loss = train_epoch(nets, active, kl_last, shuffled)
        a_sums = {k: a_sums[k] + a_metrics[k] for k in ACTOR_METRICS}
        n_actor = n_actor + active.astype(jnp.int32)
        active = jnp.logical_and(active, kl < target_kl)
        return (nets, active, n_actor, kl, a_sums, c_sum + c_loss), None

    init = (nets, jnp.asarray(True), jnp.zeros((), jnp.int32), zero, dict(no_actor), zero)
    carry, _ = jax.lax.scan(epoch, init, jnp.arange(cfg.epochs))
    nets, _, n_actor, kl, a_sums, c_sum = carry
    if fused_apply is None:
        a_p, a_s, c_p, c_s = nets
    else:
        (a_p, c_p), (a_s, c_s) = _unstack_pair(nets[0], critic_params), _unstack_pair(nets[1], critic_opt_state)

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


# ----------------------------------------------------------------------------------------------------------
# Stacking the actor-critic pair (fused step)
# ----------------------------------------------------------------------------------------------------------


def _check_pairable(actor_params, critic_params) -> None:
    a_def, c_def = jax.tree.structure(actor_params), jax.tree.structure(critic_params)
    if a_def != c_def:
        raise ValueError(f"fused actor-critic update needs one parameter structure; actor {a_def} != critic "
                         f"{c_def}")
    for a, c in zip(jax.tree.leaves(actor_params), jax.tree.leaves(critic_params)):
        if a.ndim != c.ndim or any(cs > as_ for cs, as_ in zip(c.shape, a.shape)):
            raise ValueError(f"fused actor-critic update: critic leaf of shape {c.shape} cannot be zero-padded "
                             f"to the actor's {a.shape}")


def _pad_to(x, shape):
    x = jnp.asarray(x)
    return jnp.pad(x, [(0, n - m) for m, n in zip(x.shape, shape)]) if x.shape != tuple(shape) else x


def _stack_pair(actor_tree, critic_tree):
    """Leaves stacked on a new axis 0: (actor, critic zero-padded to the actor's shape)."""
    return jax.tree.map(lambda a, c: jnp.stack([jnp.asarray(a), _pad_to(c, jnp.shape(a)).astype(a.dtype)]),
                        actor_tree, critic_tree)


def _unpad(stacked, critic_like):
    """The critic (index 1) of a stacked pair, cut back to its own shapes."""
    return jax.tree.map(lambda x, c: x[1][tuple(slice(0, n) for n in jnp.shape(c))], stacked, critic_like)


def _set_second(stacked, critic_tree):
    return jax.tree.map(lambda x, c: x.at[1].set(_pad_to(c, x.shape[1:])), stacked, critic_tree)


def _unstack_pair(stacked, critic_like):
    return jax.tree.map(lambda x: x[0], stacked), _unpad(stacked, critic_like)


def _lr(opt_state, default) -> jax.Array:
    hp = getattr(opt_state, "hyperparams", None)
    lr = hp.get("learning_rate", default) if isinstance(hp, Mapping) else default
    return jnp.asarray(lr, jnp.float32)


def make_ppo_update(actor_apply: ApplyFn, critic_apply: ApplyFn, donate: bool = False,
                    fused_apply: Callable | None = None):
    """A jitted ``f(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg, iteration)``
    with the apply functions closed over. ``donate=True`` donates the params and optimiser states (saves
    memory on accelerators; the passed-in buffers become invalid)."""

    def f(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg, iteration):
        return ppo_update(key, actor_params, critic_params, actor_opt_state, critic_opt_state, batch, cfg,
                          iteration, actor_apply, critic_apply, fused_apply)

    return jax.jit(f, donate_argnums=(1, 2, 3, 4) if donate else ())
