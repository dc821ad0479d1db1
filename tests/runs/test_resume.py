"""rl3jax.runs.resume: a resumed run equals the uninterrupted one bit for bit; changed settings are refused."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from rl3jax.cli import main as cli_main
from rl3jax.config import TrainConfig
from rl3jax.runs.driver import train
from rl3jax.runs.runfiles import read_config
from tests.helpers import TINY, _leaves_equal, _metrics_rows, _tiny


def _train_resume_eval(tmp_path, cfg):
    full, _ = train(cfg, str(tmp_path / "full"), quiet=True)
    half = str(tmp_path / "half")
    train(cfg.replace(iters=1), half, quiet=True)
    assert read_config(half).semantics == "v4"
    resumed, _ = train(cfg, half, resume=True, quiet=True)
    for name in ("actor_params", "critic_params", "actor_opt", "critic_opt", "env_state"):
        assert _leaves_equal(getattr(full, name), getattr(resumed, name)), name
    out = str(tmp_path / "eval.json")
    assert cli_main(["eval", "--run", half, "--episodes", "8", "--greedy", "--json", out]) == 0
    with open(out) as f:
        res = json.load(f)
    assert res["policy"] == "greedy" and res["episodes"] == 8 and np.isfinite(res["mean_return"])


def test_paper_v4_preset_train_resume_eval(tmp_path):
    """The MDP preset shrunk, with the v4 Markov MLP (the transformer-v4 variant is the slow test below)."""
    _train_resume_eval(tmp_path, _tiny("paper-v4-mdp-h100", model="markov-v4"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper-v4-mdp-h100", "paper-v4-bandit-h100"])
def test_paper_v4_preset_train_resume_eval_transformer(tmp_path, name):
    _train_resume_eval(tmp_path, _tiny(name))


def test_exact_resume_equals_uninterrupted_run(tmp_path):
    cfg = TrainConfig(env="mdp", algo="rl3", iters=4, **TINY)
    full, _ = train(cfg, str(tmp_path / "full"), quiet=True)
    half_dir = str(tmp_path / "half")
    train(cfg.replace(iters=2), half_dir, quiet=True)
    resumed, _ = train(cfg, half_dir, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 4
    for name in ("actor_params", "critic_params", "actor_opt", "critic_opt", "env_state"):
        assert _leaves_equal(getattr(full, name), getattr(resumed, name)), name
    assert np.array_equal(jax.random.key_data(full.key), jax.random.key_data(resumed.key))
    assert _metrics_rows(str(tmp_path / "full")) == _metrics_rows(half_dir)


def test_resume_with_changed_settings_is_refused(tmp_path):
    cfg = TrainConfig(env="bandit", algo="rl2", iters=2, **TINY)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True)
    with pytest.raises(ValueError, match="lr"):
        train(cfg.replace(lr=1e-2, iters=4), run, resume=True, quiet=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg, run, quiet=True)


def test_gru_width_survives_resume_and_eval(tmp_path):
    """A run at gru_hidden=16 resumes and evaluates at that width: both rebuild the network from config.json."""
    cfg = TrainConfig(env="bandit", algo="rl2", iters=2, gru_hidden=16, **TINY)
    run = str(tmp_path / "run")
    train(cfg.replace(iters=1), run, quiet=True)
    assert read_config(run).gru_hidden == 16
    resumed, _ = train(cfg, run, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 2
    for params in (resumed.actor_params, resumed.critic_params):
        assert params["params"]["cell"]["hn"]["kernel"].shape[-2:] == (16, 16)
    out = str(tmp_path / "eval.json")
    assert cli_main(["eval", "--run", run, "--episodes", "4", "--json", out]) == 0
    with open(out) as f:
        assert np.isfinite(json.load(f)["mean_return"])
