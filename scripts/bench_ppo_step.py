"""Micro-benchmark of one PPO minibatch step on issue 22's matched workload (MLP 256-256 relu, CartPole-v1 through
the gymnax bridge, RL², separate critic; 32 envs x H = 100, 4 minibatches of 8 sequences): the critic step as
``ppo.update_critic`` runs it and variants that each drop one suspect, the actor epoch with and without the KL
pass, and the shared torso's joint epoch. Times are medians of jitted epochs (4 minibatch steps each) per step.

    .venv/bin/python scripts/bench_ppo_step.py [--envs 32] [--repeats 50]

A speed claim, never a timed test: run it on a quiet machine (other processes skew every row alike).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rl3jax import ppo
from rl3jax.config import TrainConfig
from rl3jax.trainer import make_train


def _interleaved(fns: dict, rounds: int) -> dict:
    """name -> median seconds of ``fn()`` over ``rounds`` rounds, each calling every fn once in turn (so load
    from other processes falls on every row alike), after one warm-up call each (compilation)."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def _critic_variants(critic, cfg: TrainConfig):
    """name -> jitted (params, opt, mbs, lr, wd) -> (params, opt, loss): ``update_critic`` and its variants."""
    def scan_steps(loss_fn, update):
        def epoch(params, opt, mbs, lr, wd):
            def step(carry, mb):
                value, grads = jax.value_and_grad(lambda p: loss_fn(p, mb))(carry[0])
                return update(grads, carry[1], carry[0], lr, wd), value
            (params, opt), losses = jax.lax.scan(step, (params, opt), mbs)
            return params, opt, losses.mean()
        return jax.jit(epoch)

    mse = lambda p, mb: ppo.critic_loss(critic(p, mb.obs), mb.targets, cfg.vf_coef)  # noqa: E731

    def flat(p, mb):  # the MLP on (b·T, m) rows, as rejax's batch of transitions
        obs = mb.obs.reshape(-1, mb.obs.shape[-1])
        return ppo.critic_loss(critic(p, obs), mb.targets.reshape(-1), cfg.vf_coef)

    def no_decay(grads, opt, params, lr, wd):
        updates, opt = ppo.ADAM.update(grads, opt, params)
        return optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates)), opt

    adam = optax.adam(3e-4, eps=ppo.ADAM_EPS)

    def rejax_like(p, o, mbs, lr, wd):  # rejax 0.1.3's critic step: flat rows, clipped value loss, optax.adam
        def step(carry, mb):
            obs, tgt = mb.obs.reshape(-1, mb.obs.shape[-1]), mb.targets.reshape(-1)
            old = tgt - mb.advantages.reshape(-1)

            def loss(q):
                v = critic(q, obs)
                clipped = old + jnp.clip(v - old, -cfg.clip_eps, cfg.clip_eps)
                return cfg.vf_coef * 0.5 * jnp.maximum(jnp.square(v - tgt), jnp.square(clipped - tgt)).mean()
            updates, opt = adam.update(jax.grad(loss)(carry[0]), carry[1], carry[0])
            return (optax.apply_updates(carry[0], updates), opt), 0.0
        (p, o), _ = jax.lax.scan(step, (p, adam.init(p)), mbs)
        return p, o

    return {"rejax-like step": jax.jit(rejax_like),
            "update_critic (ours)": jax.jit(lambda p, o, mbs, lr, wd: ppo.update_critic(cfg, critic, p, o, mbs, lr, wd)),
            "same, as a plain scan": scan_steps(mse, ppo.adam_step),
            "no weight decay": scan_steps(mse, no_decay),
            "flat (b*T, m) rows": scan_steps(flat, ppo.adam_step),
            "flat, no weight decay": scan_steps(flat, no_decay)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    cfg = TrainConfig(env="CartPole-v1", algo="rl2", model="markov", horizon=100, num_envs=args.envs,
                      minibatch_envs=args.envs // 4, epochs=4)
    tr = make_train(cfg)
    state = jax.jit(tr.init)(jax.random.key(0))
    m, b = tr.meta_env.obs_dim, cfg.num_envs
    k = jax.random.split(jax.random.key(1), 4)
    obs = jax.random.normal(k[0], (b, cfg.horizon, m))
    logits = tr.actor.sequence(state.actor_params, obs)
    actions = jax.random.categorical(k[1], logits).astype(jnp.int32)
    batch = ppo.Batch(obs, actions, ppo.log_prob(logits, actions), jax.random.normal(k[2], actions.shape),
                      jax.random.normal(k[3], actions.shape))
    mbs = ppo.minibatches(batch, jnp.arange(b), cfg)
    lr, wd, steps = jnp.float32(3e-4), jnp.float32(0.01), cfg.num_minibatches
    critic = lambda p, x: tr.critic.sequence(p, x)[..., 0]  # noqa: E731
    print(f"CartPole-v1 rl2 markov (m = {m}), {b} envs x H = {cfg.horizon}, {steps} minibatches of "
          f"{cfg.minibatch_envs} sequences; {jax.devices()[0].device_kind}; ms per minibatch step (median of "
          f"{args.repeats} interleaved rounds)")
    fns = {f"critic  {name}": functools.partial(fn, state.critic_params, state.critic_opt, mbs, lr, wd)
           for name, fn in _critic_variants(critic, cfg).items()}
    for rule, c in (("epoch + full-batch KL pass", cfg), ("epoch, no KL pass", cfg.replace(target_kl=None))):
        fn = jax.jit(lambda p, o, c=c: ppo.update_actor(c, tr.actor.sequence, p, o, mbs, 0.01, lr, obs, logits))
        fns[f"actor   {rule}"] = functools.partial(fn, state.actor_params, state.actor_opt)
    free = cfg.replace(target_kl=None)

    def pair(p, one_scan: bool):  # actor (no KL pass) and critic epochs: two scans (ours), or one scan of both
        def both(c, mbs):
            a = ppo.update_actor(free, tr.actor.sequence, c[0], c[1], mbs, 0.01, lr, obs, logits)
            return (*a[:2], *ppo.update_critic(free, critic, c[2], c[3], mbs, lr, wd)[:2])
        if not one_scan:
            return both(p, mbs)
        return jax.lax.scan(lambda c, mb: (both(c, jax.tree.map(lambda x: x[None], mb)), None), p, mbs)[0]

    params = (state.actor_params, state.actor_opt, state.critic_params, state.critic_opt)
    for name, one in (("actor+critic: two scans (ours)", False), ("actor+critic: one scan (rejax)", True)):
        fns[name] = functools.partial(jax.jit(pair, static_argnums=1), params, one)
    for name, t in _interleaved(fns, args.repeats).items():
        print(f"  {name:38s} {1e3 * t / steps:8.2f}")

if __name__ == "__main__":
    main()
