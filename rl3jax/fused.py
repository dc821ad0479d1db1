"""The fused actor–critic step: one vmapped minibatch step trains both networks (an epoch rule of ``rl3jax.ppo``).

Actor and critic are separate networks of the same shape (METHOD §4), so one minibatch step can train both at
once: the critic's parameters are zero-padded to the actor's shapes (only the output layer differs: 1 output
instead of n), the two trees are stacked on a leading axis of 2 (``stack_pair``), and one vmapped forward/backward
pass of the summed loss (actor loss + critic loss) plus one vmapped Adam step replace two of each. The padded
entries get zero gradient and zero weight decay, so Adam leaves them at exactly zero: the result is that of the
separate steps up to float reassociation. Once the KL early stop freezes the actor, the remaining epochs train
the critic alone, in its own shapes (``unpad`` / ``set_second``).

At the paper's batch a minibatch is 32 sequences, far too little work to fill a GPU, so halving the number of
sequential steps should nearly halve the update time there; ``TrainConfig.fused_update`` (default: on GPUs and
TPUs only) chooses it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from rl3jax.ppo import (
    ActorCritic,
    Batch,
    Context,
    actor_terms,
    critic_epoch,
    critic_loss,
    kl_check,
    mean_metrics,
    no_actor_metrics,
)

#: ``(stacked params, obs (b, T, m)) -> (logits (b, T, n), values (b, T))``: both networks' forward passes from
#: their parameters stacked on a leading axis of 2 (actor, then the zero-padded critic)
PairApply = Callable


def check_pairable(actor_params, critic_params) -> None:
    """ValueError unless the critic's tree has the actor's structure and each leaf its rank and no larger sizes."""
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


def stack_pair(actor_tree, critic_tree):
    """Leaves stacked on a new axis 0: (actor, critic zero-padded to the actor's shape, in the actor's dtype)."""
    return jax.tree.map(lambda a, c: jnp.stack([jnp.asarray(a), _pad_to(c, jnp.shape(a)).astype(a.dtype)]),
                        actor_tree, critic_tree)


def unpad(stacked, critic_like):
    """The critic (index 1) of a stacked pair, cut back to the shapes of ``critic_like``."""
    return jax.tree.map(lambda x, c: x[1][tuple(slice(0, n) for n in jnp.shape(c))], stacked, critic_like)


def set_second(stacked, critic_tree):
    """The stacked pair with its critic (index 1) replaced by ``critic_tree``, zero-padded."""
    return jax.tree.map(lambda x, c: x.at[1].set(_pad_to(c, x.shape[1:])), stacked, critic_tree)


def unstack_pair(stacked, critic_like):
    """``(actor tree, critic tree)`` of a stacked pair; the critic in the shapes of ``critic_like``."""
    return jax.tree.map(lambda x: x[0], stacked), unpad(stacked, critic_like)


def fused_step(ctx: Context, pair_apply: PairApply, carry, mb: Batch):
    """One minibatch step of both networks: gradient of actor loss + critic loss w.r.t. the stacked pair, then the
    critic's transformation vmapped over the pair (the actor's state holds weight decay 0).
    ``(P, S), mb -> ((P, S), (actor metrics, critic loss))``."""
    P, S = carry

    def loss_fn(P):
        logits, vals = pair_apply(P, mb.obs)
        a_loss, aux = actor_terms(ctx, logits, mb)
        c_loss = critic_loss(vals, mb.targets, ctx.cfg.vf_coef)
        return a_loss + c_loss, (a_loss, aux, c_loss)

    (_, (a_loss, aux, c_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(P)
    updates, S = jax.vmap(ctx.fns.critic_tx.update)(grads, S, P)
    return (optax.apply_updates(P, updates), S), ({"actor_loss": a_loss, **aux}, c_loss)


def fused_epoch(ctx: Context, pair_apply: PairApply, P, S, mbs: Batch):
    """The pair's minibatch steps of one epoch, then the KL check: ``-> (P, S, actor metrics, kl, critic loss)``."""
    (P, S), (mb_metrics, c_losses) = jax.lax.scan(functools.partial(fused_step, ctx, pair_apply), (P, S), mbs)
    kl = kl_check(ctx, jax.tree.map(lambda x: x[0], P))
    return P, S, mean_metrics(mb_metrics), kl, jnp.mean(c_losses).astype(jnp.float32)


def critic_only_epoch(ctx: Context, P, S, kl_last, mbs: Batch):
    """An epoch after the KL stop: the critic alone, in its own shapes; the actor's half of the pair is kept."""
    start = ctx.start
    c_p, c_s, c_loss = critic_epoch(ctx, unpad(P, start.critic_params), unpad(S, start.critic_opt), mbs)
    return set_second(P, c_p), set_second(S, c_s), no_actor_metrics(), kl_last, c_loss


@dataclasses.dataclass(frozen=True)
class Fused:
    """The fused epoch rule for ``rl3jax.ppo.ppo_update``: ``Fused(pair_apply)``, with ``pair_apply`` (see
    ``PairApply``) usually ``vmap`` of the actor's network over the stacked parameters. ``pack`` raises ValueError
    when the critic's leaves cannot be padded to the actor's (``check_pairable``)."""

    pair_apply: PairApply

    def pack(self, ac: ActorCritic):
        check_pairable(ac.actor_params, ac.critic_params)
        return stack_pair(ac.actor_params, ac.critic_params), stack_pair(ac.actor_opt, ac.critic_opt)

    def train(self, ctx: Context, nets, active, kl_last, mbs: Batch):
        P, S, a_metrics, kl, c_loss = jax.lax.cond(
            active, lambda op: fused_epoch(ctx, self.pair_apply, *op, mbs),
            lambda op: critic_only_epoch(ctx, *op, kl_last, mbs), nets)
        return (P, S), a_metrics, kl, c_loss

    def unpack(self, ctx: Context, nets) -> ActorCritic:
        (a_p, c_p), (a_s, c_s) = (unstack_pair(nets[0], ctx.start.critic_params),
                                  unstack_pair(nets[1], ctx.start.critic_opt))
        return ActorCritic(actor_params=a_p, actor_opt=a_s, critic_params=c_p, critic_opt=c_s)
