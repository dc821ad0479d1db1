"""Baselines on the garnet and deepsea families: which fit (the ``fits`` mechanism and the dense posterior's
refusal beyond 256 states), and on garnet s64 random < PSRL, MAP-greedy < oracle (3 standard errors of the paired
per-task difference, as tests/baselines/test_generic.py)."""

from __future__ import annotations

import pytest

from rl3jax import baselines as B
from rl3jax.baselines.mdp import DENSE_MAX_STATES
from tests.helpers import _meta, _paired, _run

GARNET_H, GARNET_N = 100, 100


def test_baselines_that_fit():
    """garnet: the generic ones and the MDP posteriors; deepsea: the generic ones (no PSRL entry fits it)."""
    generic = ["random", "oracle", "model-greedy", "model-epsilon-greedy"]
    assert B.baseline_names(_meta("garnet", GARNET_H)) == generic + ["psrl", "opsrl", "map-greedy"]
    assert B.baseline_names(_meta("deepsea", 300)) == generic
    with pytest.raises(ValueError, match="'psrl' does not fit env 'deepsea-n10'"):
        B.make_policy("psrl", _meta("deepsea", 300))


@pytest.mark.parametrize("name", ["psrl", "opsrl", "map-greedy"])
def test_dense_posterior_refused_beyond_256_states(name):
    """Beyond ``DENSE_MAX_STATES`` the posterior baselines fit (same family) but refuse at preparation with
    IntractableError (``rl3jax baselines`` lists them as skipped with the reason); s256 is accepted."""
    assert DENSE_MAX_STATES == 256
    with pytest.raises(B.IntractableError, match="S·A·S = 83,886,080 counts per task at S=4096; tractable for S <= 256"):
        B.make_policy(name, _meta("garnet", GARNET_H, "s4096"))
    assert B.make_policy(name, _meta("garnet", GARNET_H, "s256"))[1] == 256


@pytest.mark.parametrize("name", ["psrl", "map-greedy"])
def test_random_below_posterior_baselines_below_oracle(name):
    rand = _run("garnet", GARNET_H, "random", GARNET_N)[1]
    oracle = _run("garnet", GARNET_H, "oracle", GARNET_N)[1]
    r = _run("garnet", GARNET_H, name, GARNET_N)[1]
    d, se = _paired(r, rand)
    assert d > 3 * se, (name, "not above random", d, se)
    d, se = _paired(oracle, r)
    assert d > 3 * se, (name, "not below the oracle", d, se)
