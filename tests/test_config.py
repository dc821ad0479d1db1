"""rl3jax.config: settings that do not apply are refused, presets, and configs of older versions load."""

from __future__ import annotations

import pytest

from rl3jax import config
from rl3jax.config import PRESETS, TrainConfig, preset
from rl3jax.estimators import make_estimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.meta_episode import make_meta_env


# ----------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw,message", [
    (dict(semantics="v5"), "semantics 'v5' is not one of fresh, rlc, v4"),
    (dict(semantics="v4", env="CartPole-v1", algo="rl2"),
     "semantics 'v4' is implemented for envs bandit, mdp, grid11, grid13, not 'CartPole-v1'"),
    (dict(semantics="v4", env="grid11", algo="rl3_coarse"), "algo rl3_coarse is not implemented with semantics 'v4'"),
    (dict(semantics="v4", std_errors=True), "std_errors does not apply"),
    (dict(semantics="v4", alpha_laplace=0.1), "alpha_laplace does not apply"),
    (dict(semantics="v4", vi_carry_over=True), "vi_carry_over=true is not supported"),
    (dict(vi_carry_over=True), "vi_carry_over=true is not supported"),
    (dict(gru_hidden=128), "gru_hidden=128 applies only to --model gru .* not 'transformer'"),
    (dict(model="markov-v4", gru_hidden=64), "gru_hidden=64 applies only to --model gru"),
    (dict(model="gru", gru_hidden=0), "gru_hidden must be >= 1, got 0"),
    (dict(model="gru", gru_hidden=12.5), "gru_hidden must be a whole number, got 12.5"),
    (dict(model="gru", gru_hidden=True), "gru_hidden must be a whole number, got True"),
    (dict(estimator_mode="stale"), "estimator_mode 'stale' is not one of fresh, entered"),
    (dict(estimator_mode="entered", semantics="v4"), "conflicts with semantics 'v4'"),
    (dict(model="transformer-v4", horizon=1024), "transformer-v4 has 1024 positional slots .* horizon 1024 needs "
                                                  "1025"),
])
def test_config_refuses_what_does_not_apply(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(kw)  # the legacy estimator_mode exists only in config.json files


def test_config_v4_slots_allow_horizon_1023():
    assert TrainConfig(model="transformer-v4", horizon=config.V4_POS_SLOTS - 1).horizon == 1023


def test_legacy_estimator_mode_and_old_config_json_load():
    assert TrainConfig.from_dict({"env": "mdp", "estimator_mode": "entered"}).semantics == "rlc"
    old = TrainConfig.from_dict({"env": "mdp", "estimator_mode": "fresh", "gamma_obj": 0.95})
    assert old.semantics == "fresh" and "estimator_mode" not in old.to_dict()  # translated, not kept
    assert TrainConfig.from_dict(old.to_dict()) == old
    assert TrainConfig().semantics == "fresh" and TrainConfig().gamma_obj_value == 0.95
    assert TrainConfig(semantics="v4").gamma_obj_value == 0.99
    rlc = make_estimator(make_meta_env(TrainConfig(semantics="rlc")).env, TrainConfig(semantics="rlc"))
    assert isinstance(rlc, QEstimator) and rlc.mode == "entered" and rlc.gamma == 0.95


def test_paper_v4_presets():
    for env, h, iters, ent in (("bandit", 100, 3000, 0.001), ("bandit", 500, 6000, 0.01), ("mdp", 100, 10000, 0.01),
                               ("mdp", 500, 24000, 0.01)):
        c = TrainConfig(**preset(f"paper-v4-{env}-h{h}"))
        assert (c.env, c.horizon, c.iters, c.ent_coef, c.lr, c.semantics, c.model) == (
            env, h, iters, ent, 3e-4, "v4", "transformer-v4")
        assert c.num_envs * c.horizon == 32000 and c.ent_schedule == "constant"
    # grids (the original's README commands and main.jl: nenvs = 32000 ÷ H; minibatches of whole sequences)
    for env, h, envs, mb in (("grid11", 250, 128, 16), ("grid13", 350, 91, 7)):
        c = TrainConfig(**preset(f"paper-v4-{env}"))
        assert (c.env, c.horizon, c.iters, c.ent_coef, c.lr, c.semantics, c.model, c.gamma_obj_value) == (
            env, h, 20000, 0.04, 2e-4, "v4", "transformer-v4", 0.99)
        assert (c.num_envs, c.minibatch_envs, c.algo, c.ent_schedule) == (envs, mb, "rl3", "constant")
        assert TrainConfig(**preset(f"paper-v4-{env}", {"algo": "rl2"})).semantics == "v4"
        with pytest.raises(ValueError, match="algo rl3_coarse is not implemented with semantics 'v4'"):
            TrainConfig(**preset(f"paper-v4-{env}", {"algo": "rl3_coarse"}))
    assert sum(k.startswith("paper-v4-") for k in PRESETS) == 6


def test_config_json_of_older_versions_loads():
    """``fused_update`` (the deleted fused actor-critic step) is dropped when a config is read; ``--set`` refuses
    it as an unknown field."""
    old = {**TrainConfig().to_dict(), "fused_update": True}
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({**old, "fused": 1})


def test_rl2_on_a_laptop_preset_says_it_trains_a_gru_with_untuned_settings():
    from rl3jax.config import build, notes

    (line,) = notes(build({"env": "bandit", "algo": "rl2"}))
    assert "rl2 on the laptop preset cpu-bandit trains a gru" in line and "not for it" in line
    assert build({"env": "bandit", "algo": "rl2"}).model == "gru"
    assert notes(build({"env": "mdp"})) == []  # RL³ on its own preset: nothing to say
    assert notes(build({"env": "mdp", "algo": "rl2", "model": "transformer"})) == []  # chosen explicitly


@pytest.mark.parametrize("field,value", [(n, {"estimator": "discovery", "std_errors": True, "vi_max_sweeps": 3,
                                                "vi_sweep_block": 2}.get(n, 0.2))
                                         for n in config.RL3_ONLY])
def test_rl3_estimator_settings_are_refused_with_rl2(field, value):
    """Every field of the RL³ estimator is refused with algo rl2 (it would do nothing), naming field and value;
    the same value is accepted with rl3."""
    with pytest.raises(ValueError, match=f"{field}={value!r}: configures the RL³ estimator, and algo 'rl2' has none"):
        TrainConfig(env="mdp", algo="rl2", **{field: value})
    TrainConfig(env="mdp", algo="rl3", **{field: value})


def test_gru_hidden_defaults_to_the_papers_width_and_loads_from_old_configs():
    from rl3jax.networks import GRU_HIDDEN

    assert TrainConfig.gru_hidden == GRU_HIDDEN == 256  # METHOD §4
    assert TrainConfig.from_dict({"env": "mdp"}).gru_hidden == 256  # a config.json without the field
    saved = TrainConfig(model="transformer").to_dict()  # carries gru_hidden=256: a transformer run still loads
    assert saved["gru_hidden"] == 256 and TrainConfig.from_dict(saved).model == "transformer"
    assert TrainConfig(model="gru", gru_hidden=128).gru_hidden == 128


def test_gru_hidden_is_refused_on_the_command_line_for_other_models(tmp_path, capsys):
    from rl3jax.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--env", "bandit", "--model", "markov", "--set", "gru_hidden=128", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "gru_hidden=128 applies only to --model gru" in err[0], err
    assert "Traceback" not in err[0] and not out.exists()
