"""rl3jax.baselines (the registry): names, sources and families of the baselines."""

from __future__ import annotations

from rl3jax import baselines as B
from tests.helpers import BANDIT_POLICIES, MDP_POLICIES, MDP_SLOW_POLICIES, _meta


def test_registry_names_the_source_and_families():
    assert set(BANDIT_POLICIES) | {"random", "oracle"} == set(B.baseline_names(_meta("bandit", 5)))
    assert set(MDP_POLICIES + MDP_SLOW_POLICIES) | {"random", "oracle"} == set(B.baseline_names(_meta("mdp", 5)))
    for name, b in B.BASELINES.items():
        assert b.doc and b.families, name
    assert B.baseline_names(_meta("mdp", 5)) == ["random", "oracle", "model-greedy", "model-epsilon-greedy", "psrl",
                                                 "opsrl", "map-greedy", "beb", "mbie-eb", "rmax"]
