"""rl3jax.envs.catalog: names and variants answered without importing a family."""

from __future__ import annotations

import pytest

from rl3jax.envs import catalog


def test_catalog_answers_without_the_families():
    assert catalog.check_variant("grid13", None) == "train"
    with pytest.raises(ValueError, match="valid variants: train, ood"):
        catalog.check_variant("bandit", "dense")
    with pytest.raises(ValueError, match="continuous"):
        catalog.check_env("Pendulum-v1")
    assert catalog.is_gymnax("CartPole-v1") and not catalog.is_gymnax("mdp")
