"""rl3jax.runs.checkpoint: an interrupted save leaves the last checkpoint usable; a format-1 checkpoint
restores."""

from __future__ import annotations

import json
import os
import shutil

import chex
import numpy as np

from rl3jax.cli import main as cli_main
from rl3jax.config import HParams, TrainConfig
from rl3jax.runs.checkpoint import FORMAT_VERSION, Checkpointer
from rl3jax.runs.driver import train
from rl3jax.runs.load import load_run
from tests.helpers import TINY, _metrics_rows
from tests.system import behaviour_record


def test_interrupted_save_leaves_last_checkpoint_usable(tmp_path):
    cfg = TrainConfig(env="bandit", algo="rl2", iters=4, **TINY)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True)
    ckpts = os.path.join(run, "checkpoints")
    # simulate a kill in the middle of writing step 6: orbax writes into a temporary folder first
    os.makedirs(os.path.join(ckpts, "6.orbax-checkpoint-tmp-123", "state"))
    resumed, _ = train(cfg.replace(iters=6), run, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 6


V1_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "checkpoint_v1")


def test_format1_checkpoint_evaluates_and_resumes_like_the_base_commit(tmp_path):
    """A format-1 checkpoint (written at 22ec62c: tests/data/checkpoint_v1/README.md) restores into the new layout
    (lr and weight decay out of the optax ``inject_hyperparams`` states into ``HParams``), evaluates to the base
    commit's held-out returns and resumes to its metrics and parameters: bit for bit on the platform that wrote
    it, else to float noise (rtol 1e-4). Its config.json holds the dropped ``fused_update`` field."""
    with open(os.path.join(V1_DATA, "expected.json")) as f:
        expected = json.load(f)
    run = str(tmp_path / "run")
    shutil.copytree(os.path.join(V1_DATA, "run"), run)
    state, meta = load_run(run).restore()
    assert meta["format_version"] == 1 and int(state.iteration) == 1
    assert state.hparams == HParams(*(np.float32(v) for v in (1e-3, 0.01, 0.03, 0.3)))
    assert int(state.actor_opt.count) == 4 and int(state.critic_opt.count) == 4  # 2 epochs x 2 minibatches
    assert cli_main(["eval", "--run", run, "--episodes", "16", "--json", str(tmp_path / "eval.json")]) == 0
    assert cli_main(["train", "--resume", "--iters", "2", "--no-progress", "--out", run]) == 0
    with open(tmp_path / "eval.json") as f:
        ev = json.load(f)
    got = {"eval": {k: ev[k] for k in expected["eval"]}, "resumed_rows": _metrics_rows(run),
           "resumed_params": behaviour_record._params_digest(os.path.join(run, "checkpoints"))}
    if expected["fingerprint"] == behaviour_record.fingerprint():
        assert got == {k: expected[k] for k in got}
    else:
        chex.assert_trees_all_close(got["resumed_rows"], expected["resumed_rows"], rtol=1e-4, atol=1e-6)
        for leaf, want in expected["resumed_params"]["leaves"].items():
            np.testing.assert_allclose(got["resumed_params"]["leaves"][leaf]["sum"], want["sum"], rtol=1e-4,
                                       atol=1e-6)
    assert Checkpointer(os.path.join(run, "checkpoints")).meta(2)["format_version"] == FORMAT_VERSION == 2
