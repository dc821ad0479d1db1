"""Short CPU learning runs: RL² and RL³ must clearly beat the random policy on held-out tasks.

Margins are stated per test; "clearly" means the gap is many standard errors (the eval s.e. is about 0.3 for
bandits at H=20 over 200 tasks, about 1 for MDPs). Bandit and a short grid run are in the default suite; MDP runs are slow.
"""

from __future__ import annotations

import jax
import pytest

from rl3jax.config import TrainConfig
from rl3jax.evaluate import evaluate
from rl3jax.trainer import jit_chunk, make_train


def _train_and_eval(env, algo, model, iters, horizon=20):
    cfg = TrainConfig(env=env, algo=algo, model=model, horizon=horizon, num_envs=64, minibatch_envs=16,
                      epochs=4, lr=3e-3, ent_coef=0.0, iters=iters)
    trainer = make_train(cfg)
    state, _ = jit_chunk(trainer)(jax.jit(trainer.init)(jax.random.key(0)), iters)
    learned = evaluate(trainer.meta_env, "network", 200, params=state.actor_params, model=trainer.actor)
    rand = evaluate(trainer.meta_env, "random", 200)
    return learned, rand


@pytest.mark.parametrize("algo, model", [("rl3", "markov"), ("rl2", "gru")])
def test_bandit_learning_beats_random(algo, model):
    learned, rand = _train_and_eval("bandit", algo, model, iters=40)
    # H=20, 5 arms: random ≈ 10, oracle ≈ 16.7; after 40 iterations both reach ≈ 13.
    assert learned["mean_return"] > rand["mean_return"] + 1.5, (learned, rand)


@pytest.mark.slow
@pytest.mark.parametrize("env, floor", [("bandit", 74.0), ("mdp", 147.0)])
def test_laptop_preset_reaches_its_published_level(env, floor):
    """What `make train ENV=bandit|mdp` runs (the cpu-* presets, RL³ Markov) reaches the README's level.

    README / BENCHMARKS.md: bandits 75.98 ± 0.53, MDPs 151.42 ± 0.80 on the first 1000 held-out tasks (Thompson
    sampling 75.6, OPSRL 140.7, random 50.3 / 99.3). The floors sit about 3.7 and 5.5 standard errors below those
    figures, so a change that breaks the preset fails while float rounding (this suite lowers XLA's optimisation
    level) does not."""
    from rl3jax.config import preset

    cfg = TrainConfig(**preset(f"cpu-{env}"))
    trainer = make_train(cfg)
    state, _ = jit_chunk(trainer)(jax.jit(trainer.init)(jax.random.key(cfg.seed)), cfg.iters)
    learned = evaluate(trainer.meta_env, "network", 1000, params=state.actor_params, model=trainer.actor)
    assert learned["mean_return"] > floor, learned


@pytest.mark.slow
@pytest.mark.parametrize("algo, model", [("rl3", "markov")])
def test_mdp_learning_beats_random(algo, model):
    """RL³ only: RL² (GRU) at this budget (100 iterations x 64 tasks x H=50 = 320 K steps) scores 49.75 against
    random's 48.71 on these 200 tasks (measured identically before and after the issue-10 redesign), about one
    standard error, as in the laptop study (docs/results/laptop: RL² 101.5 against random 99.3 at H=100 after
    320 K steps); the paper trains RL² on MDPs for 10 000 iterations of 32 000 steps."""
    learned, rand = _train_and_eval("mdp", algo, model, iters=100, horizon=50)
    # H=50 (five task episodes): random ≈ 50, oracle ≈ 108; acting greedily on the RL³ Q-estimates with
    # optimism for untried actions gets ≈ 141 at H=100, against 100 for random (see BENCHMARKS.md).
    assert learned["mean_return"] > rand["mean_return"] + 3.0, (learned, rand)


def test_grid_rl3_learning_beats_random():
    cfg = TrainConfig(env="grid11", algo="rl3", model="markov", horizon=60, num_envs=32, minibatch_envs=8,
                      epochs=4, lr=3e-3, ent_coef=0.0, iters=30)
    trainer = make_train(cfg)
    state, _ = jit_chunk(trainer)(jax.jit(trainer.init)(jax.random.key(0)), cfg.iters)
    learned = evaluate(trainer.meta_env, "network", 64, params=state.actor_params, model=trainer.actor)
    rand = evaluate(trainer.meta_env, "random", 64)
    # H=60 on 11x11 grids: random play walks into dangers (-100) and water and scores ≈ -148 ± 15; after
    # 30 short iterations the agent has learned to stay safe (≈ -60, one -1 per step), not yet to find goals.
    # Margin: 40, more than 2.5 standard errors of the random score.
    assert learned["mean_return"] > rand["mean_return"] + 40, (learned, rand)
