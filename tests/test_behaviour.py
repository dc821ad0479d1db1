"""Behaviour is unchanged by refactors: short runs re-run and compared with ``tests/data/behaviour.json``.

``tests/behaviour_record.py`` holds the cases and the comparison (bit for bit where the recording's platform
fingerprint matches this machine, else to its ``LOOSE_RTOL``). The default suite checks a representative
subset (the PPO step, every estimator, a population with a sweep, a resumed
run); ``-m slow`` checks all 38 runs, the 4-fake-device one included (about 10 minutes on 2 cores, cold cache).
"""

import pytest

from tests import behaviour_record

SUBSET = ["mdp-rl3-transformer", "bandit-rl3-gru", "grid11-rl3_coarse-markov", "bandit-rl3-v4",
          "mdp-rl3-rlc-stderr", "mdp-population-sweep", "bandit-rl3-gru-resumed"]


def test_subset_is_recorded():
    assert set(SUBSET) <= set(behaviour_record.cases())


def test_representative_runs_reproduce_the_recording():
    assert behaviour_record.check(SUBSET) == 0


@pytest.mark.slow
def test_every_recorded_run_reproduces():
    assert behaviour_record.check() == 0
