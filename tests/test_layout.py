"""rl3jax.layout: the policy-input offsets, by hand."""

from __future__ import annotations

import pytest

from rl3jax.config import TrainConfig
from rl3jax.layout import Layout, policy_input, rl3_features, v4_features
from rl3jax.meta_episode import make_meta_env


def test_layout_offsets_by_hand():
    """METHOD §1: n + 4 + m entries for RL², 4n + 6 + m for RL³ (bandit: n = 5 arms, m = 2), blocks in order;
    the v4 layout of the paper's code for RL³ on bandits (task observation dropped): 4n - 1 + 4 = 19."""
    rl3 = make_meta_env(TrainConfig(env="bandit", algo="rl3", horizon=7)).layout
    expect = {"prev_action": (0, 5), "prev_reward": (5, 1), "first": (6, 1), "meta_time": (7, 1),
              "task_time": (8, 1), "task_obs": (9, 2), "rl3": (11, 17), "advantages": (11, 5), "value": (16, 1),
              "std_errors": (17, 6), "counts": (23, 5)}
    assert {b.name: (b.offset, b.size) for b in rl3.all_blocks()} == expect and rl3.size == 28
    rl2 = make_meta_env(TrainConfig(env="bandit", algo="rl2", horizon=7)).layout
    assert rl2.size == 5 + 4 + 2 and "rl3" not in rl2 and rl2.names == rl3.names[:-1]
    v4 = make_meta_env(TrainConfig(env="bandit", algo="rl3", horizon=7, semantics="v4")).layout
    assert [(b.name, b.offset, b.size) for b in v4.all_blocks()] == [
        ("prev_action", 0, 5), ("prev_reward", 5, 1), ("first", 6, 1), ("rl3", 7, 10), ("shown_q", 7, 5),
        ("counts", 12, 5), ("task_time", 17, 1), ("meta_time", 18, 1)]
    assert rl3_features(3).size == 3 * 3 + 2 and v4_features(3).size == 6
    assert policy_input("method", 3, 4, None)["task_obs"].slice == slice(7, 11)
    with pytest.raises(KeyError, match="no block 'nope'"):
        rl3["nope"]
    with pytest.raises(ValueError, match="repeated"):
        Layout.of(("a", 1), ("a", 2))
    with pytest.raises(ValueError, match="not one of"):
        policy_input("paper", 3, 4)
