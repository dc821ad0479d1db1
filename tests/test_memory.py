"""rl3jax.memory: the lower bound of a training command's memory, checked before anything compiles."""

from __future__ import annotations

import pytest

from rl3jax import memory
from rl3jax.config import TrainConfig
from rl3jax.trainer import make_train


def test_train_memory_bound_counts_a_transformer_attention_matrix(monkeypatch):
    """The bound adds 4·minibatch_envs·(H+1)² bytes for a transformer (one head's attention scores) and nothing for
    a Markov model: with the limit at exactly that term, the transformer is refused naming it, the MLP is not."""
    cfg = TrainConfig(env="garnet", algo="rl3", model="transformer", horizon=2000, num_envs=2, minibatch_envs=2)
    monkeypatch.setattr(memory, "memory_limit", lambda: (4 * 2 * 2001 ** 2, "a test limit"))
    with pytest.raises(ValueError, match=r"horizon=2000 needs at least .*trajectory and attention"):
        memory.check_train_memory(make_train(cfg))
    memory.check_train_memory(make_train(cfg.replace(model="markov")))


def test_a_gru_too_wide_for_the_memory_is_told_to_narrow(monkeypatch):
    """Where the networks take more than the trajectory (a very wide GRU), the refusal names gru_hidden, not the
    batch; a batch too large for the limit still names --num-envs."""
    wide = TrainConfig(env="bandit", algo="rl2", model="gru", horizon=10, num_envs=2, minibatch_envs=2,
                       gru_hidden=2048)  # ~12.6 M parameters per network: ~200 MB of state with Adam's moments
    monkeypatch.setattr(memory, "memory_limit", lambda: (50 * 2 ** 20, "a test limit"))
    with pytest.raises(ValueError, match=r"use a smaller --set gru_hidden \(now 2048\) or fewer seeds$"):
        memory.check_train_memory(make_train(wide))
    long = wide.replace(gru_hidden=8, horizon=100000, num_envs=64, minibatch_envs=64)
    with pytest.raises(ValueError, match=r"use fewer --num-envs, a shorter --horizon or fewer seeds$"):
        memory.check_train_memory(make_train(long))
