"""One timed training process of the peer benchmark, run by ``run.py`` with the side's own Python.

``python worker.py SIDE JSON``: SIDE is ``rejax``, ``purejaxrl`` (its ``ppo_rnn.py`` and ``wrappers.py`` in the
folder named by the JSON's ``peer_dir``) or ``ours`` (rl3jax's Python API); JSON the workload. It builds the side's
training function for ``iters`` PPO iterations of ``num_envs`` x ``steps`` env steps (init included, as each
peer's ``train(rng)`` does), compiles it ahead of time, runs it once (the first run ends the "whole process" the
parent measures from launch), then ``repeats`` more times, and prints one JSON line: compile seconds, the run
times, CPU seconds, and the forward multiply-adds per env step of each network (``kernel_macs``).
Imports only what the side has installed, so it runs in a peer's virtual environment.
"""

import json
import os
import resource
import sys
import time


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def kernel_macs(params) -> int:
    """Multiply-adds of one forward step of a network of Dense layers and GRU cells: the sum of its 2-D kernels'
    sizes (a Dense in -> out costs in x out; flax's GRUCell 3 (in h + h h)). Biases and activations not counted."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(params) if getattr(x, "ndim", 0) == 2))


def build_rejax(w: dict):
    """rejax 0.1.3's PPO as its own ``PPO.create`` builds it; its evaluation callback is replaced by a no-op
    (the peer's training code runs unchanged; the benchmark times training only, as on our side)."""
    import jax
    import jax.numpy as jnp
    from rejax import PPO

    total = w["iters"] * w["num_envs"] * w["steps"]
    algo = PPO.create(env="CartPole-v1", num_envs=w["num_envs"], num_steps=w["steps"], num_epochs=w["epochs"],
                      num_minibatches=w["minibatches"], total_timesteps=total, eval_freq=total,
                      skip_initial_evaluation=True, learning_rate=w["lr"], gamma=0.99, gae_lambda=0.95,
                      ent_coef=0.01, clip_eps=0.2, vf_coef=0.5, max_grad_norm=0.5,
                      agent_kwargs={"activation": "relu", "hidden_layer_sizes": list(w["hidden"])})
    algo = algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))
    ts = jax.eval_shape(algo.init_state, jax.random.PRNGKey(0))
    macs = {"actor": kernel_macs(ts.actor_ts.params), "critic": kernel_macs(ts.critic_ts.params)}
    return algo.train, jax.random.PRNGKey, macs


def build_purejaxrl(w: dict):
    """purejaxrl's ``ppo_rnn.make_train(config)`` (commit 31756b1), its own network (one GRU, actor and critic
    heads). Its wrappers.py imports brax and navix at the top for wrappers this workload never builds: run.py
    puts empty stand-ins for them on the path instead of installing both. ppo_rnn.py calls flax's GRUCell as
    flax did in 2023: an adapter subclass gives it that API here (same cell, same 128 units)."""
    import flax.linen as nn
    import jax

    class GRUCell(nn.GRUCell):
        """flax's GRUCell with the 2023 API ppo_rnn.py calls: ``GRUCell()`` (features from its carry: 128) and
        the static ``GRUCell.initialize_carry(rng, batch_dims, size)`` (zeros); flax 0.12 has neither."""

        features: int = 128

        @staticmethod
        def initialize_carry(rng, batch_dims, size):
            return jax.numpy.zeros((*batch_dims, size))

    nn.GRUCell = GRUCell  # in this process only; ppo_rnn.py itself is unmodified
    sys.path[:0] = [w["peer_dir"], os.path.join(w["peer_dir"], "stubs")]
    import ppo_rnn

    config = {"LR": w["lr"], "NUM_ENVS": w["num_envs"], "NUM_STEPS": w["steps"],
              "TOTAL_TIMESTEPS": w["iters"] * w["num_envs"] * w["steps"], "UPDATE_EPOCHS": w["epochs"],
              "NUM_MINIBATCHES": w["minibatches"], "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2,
              "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ENV_NAME": "CartPole-v1",
              "ANNEAL_LR": False, "DEBUG": False}
    train = ppo_rnn.make_train(config)
    net = ppo_rnn.ActorCriticRNN(2, config=config)
    x = (jax.numpy.zeros((1, w["num_envs"], 4)), jax.numpy.zeros((1, w["num_envs"])))
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), ppo_rnn.ScannedRNN.initialize_carry(w["num_envs"], 128),
                            x)
    return train, jax.random.PRNGKey, {"shared": kernel_macs(params)}


def build_ours(w: dict):
    """rl3jax: ``make_train(TrainConfig(**w["config"]))`` (``run.ours_config``), the init and ``iters``
    iterations in one function, as the peers' ``train(rng)``."""
    import jax

    from rl3jax.config import TrainConfig
    from rl3jax.trainer import make_train

    if w.get("compile_cache"):  # as `rl3jax train` runs: JAX's persistent compilation cache (rl3jax.compile_cache)
        os.environ["RL3JAX_COMPILE_CACHE"] = w["compile_cache"]
        from rl3jax.compile_cache import compile_cache

        compile_cache("train")
    cfg = TrainConfig(**w["config"])  # run.ours_config
    trainer = make_train(cfg)
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    macs = {"actor": kernel_macs(state.actor_params), "critic": kernel_macs(state.critic_params)}
    return (lambda key: trainer.chunk(trainer.init(key), cfg.iters)), jax.random.key, macs


def main(side: str, w: dict) -> dict:
    import jax

    t_imported = time.time()
    cache = w.get("compile_cache") if side == "ours" else None
    cache_warm = bool(cache and os.path.isdir(cache) and os.listdir(cache))  # programs of an earlier process
    train, make_key, macs = {"rejax": build_rejax, "purejaxrl": build_purejaxrl, "ours": build_ours}[side](w)
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(make_key(0)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(make_key(1)))
    first_s = time.perf_counter() - t0
    first_done, cpu_first = time.time(), cpu_seconds()
    times, cpus = [], []
    for r in range(w["repeats"]):
        t0, c0 = time.perf_counter(), cpu_seconds()
        jax.block_until_ready(compiled(make_key(2 + r)))
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return {"side": side, "imported_at": t_imported, "first_done_at": first_done, "compile_seconds": compile_s,
            "first_run_seconds": first_s, "cpu_seconds_to_first": cpu_first, "run_seconds": times,
            "run_cpu_seconds": cpus, "forward_macs": macs, "jax": jax.__version__, "compile_cache_warm": cache_warm,
            "device": f"{jax.devices()[0].platform}:{getattr(jax.devices()[0], 'device_kind', '')}"}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
