"""Seeds and sweeps as a vmapped population (rl3jax.runs.population).

One tiny config throughout (and one chunk length), so the population program and the single-run program
are each compiled once and the persistent compilation cache serves the rest. Tolerance: vmapping batches
the matrix products, which may change float rounding; parameters agree to atol 1e-5, metrics to rtol 1e-4.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from rl3jax.cli import main as cli_main
from rl3jax.config import HParams
from rl3jax.runs.driver import train
from rl3jax.runs.load import expand_runs, load_run
from rl3jax.runs.population import member_state
from rl3jax.runs.runfiles import RunFolderError, read_config, read_metrics
from rl3jax.trainer import make_train
from tests.helpers import CFG, _tiny

ATOL = 1e-5


RTOL = 1e-4


def _f64(x):
    return np.asarray(x, np.float64)


def _assert_states_close(a, b):
    for x, y in zip(jax.tree.leaves((a.actor_params, a.critic_params, a.actor_opt, a.critic_opt, a.env_state)),
                    jax.tree.leaves((b.actor_params, b.critic_params, b.actor_opt, b.critic_opt, b.env_state))):
        np.testing.assert_allclose(_f64(x), _f64(y), rtol=RTOL, atol=ATOL)


def _restore(run_dir):
    return load_run(run_dir).restore()[0]


@pytest.fixture(scope="module")
def seeds4(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pop") / "seeds4")
    state, lasts = train(CFG, out, seeds=4, progress=False, quiet=True)
    return out, state, lasts


def test_a_population_folder_loads_as_its_members(seeds4):
    """``runs``: a population folder is not one run (the error names the member folders); ``expand_runs``
    gives the members in member order; each member is an ordinary run with its population's checkpoints."""
    out, _, _ = seeds4
    members = [os.path.join(out, f"seed{s}") for s in range(10, 14)]
    with pytest.raises(RunFolderError, match="holds a population") as e:
        load_run(out)
    assert all(m in str(e.value) for m in members) and "\n" not in str(e.value)
    assert expand_runs([out, members[2]]) == members  # a member listed again is not repeated
    run = load_run(members[1])
    assert run.cfg == CFG.replace(seed=11) and run.is_member and run.latest_step == 2
    assert [r["iteration"] for r in run.metrics()] == [1, 2]


def test_seeds_equal_separate_runs(seeds4, tmp_path):
    out, state, lasts = seeds4
    assert sorted(lasts) == [f"seed{s}" for s in range(10, 14)]
    spec = json.load(open(os.path.join(out, "population.json")))
    assert [m["seed"] for m in spec["members"]] == [10, 11, 12, 13]
    returns = []
    for i, seed in enumerate(range(10, 14)):
        member_dir = os.path.join(out, f"seed{seed}")
        assert read_config(member_dir) == CFG.replace(seed=seed)  # an ordinary run folder
        ref = member_state(train(CFG.replace(seed=seed), str(tmp_path / f"single{seed}"), progress=False,
                                 quiet=True)[0], 0)
        # the population's state, the member's own checkpoint and its metrics all equal the separate run
        _assert_states_close(member_state(state, i), ref)
        _assert_states_close(_restore(member_dir), ref)
        rows, ref_rows = read_metrics(member_dir), read_metrics(str(tmp_path / f"single{seed}"))
        assert [r["iteration"] for r in rows] == [1, 2]
        for r, q in zip(rows, ref_rows):
            for k in ("return_mean", "critic_loss", "entropy", "kl"):
                np.testing.assert_allclose(r[k], q[k], rtol=RTOL, atol=1e-6, err_msg=k)
        returns.append(rows[-1]["return_mean"])
    assert len(set(returns)) == 4  # kept per seed, never averaged


def test_population_resume_equals_straight_run(seeds4, tmp_path):
    out, state, _ = seeds4
    part = str(tmp_path / "part")
    train(CFG.replace(iters=1), part, seeds=4, progress=False, quiet=True)
    resumed, _ = train(CFG, part, resume=True, progress=False, quiet=True)  # seeds read from population.json
    for i in range(4):
        _assert_states_close(member_state(resumed, i), member_state(state, i))
        strip = lambda rows: [{k: v for k, v in r.items() if k != "steps_per_second"} for r in rows]  # noqa: E731
        assert strip(read_metrics(os.path.join(part, f"seed{10 + i}"))) == strip(read_metrics(os.path.join(out, f"seed{10 + i}")))


def test_sweep_members_have_their_settings(tmp_path):
    out = str(tmp_path / "sweep")
    # 2 x 2 settings: the same population size as seeds4, so the compiled chunk is shared
    rc = cli_main(["train", "--env", "mdp", "--algo", "rl3", "--model", "markov", "--horizon", "8", "--num-envs",
                   "8", "--minibatch-envs", "4", "--iters", "2", "--seed", "10", "--set", "epochs=1",
                   "--set", "chunk_iters=1", "--set", "checkpoint_every=1", "--sweep", "lr=0.001,0.0003",
                   "--sweep", "ent_coef=0,0.05", "--out", out, "--no-progress"])
    assert rc == 0
    spec = json.load(open(os.path.join(out, "population.json")))
    names = [m["name"] for m in spec["members"]]
    assert names == ["seed10-lr0.001-ent_coef0", "seed10-lr0.001-ent_coef0.05", "seed10-lr0.0003-ent_coef0",
                     "seed10-lr0.0003-ent_coef0.05"]
    finals = {}
    for m in spec["members"]:
        d = os.path.join(out, m["name"])
        cfg = read_config(d)
        assert (cfg.lr, cfg.ent_coef) == (m["settings"]["lr"], m["settings"]["ent_coef"])
        rows = read_metrics(d)
        for r in rows:
            np.testing.assert_allclose(r["actor_lr"], cfg.lr, rtol=1e-6)
            np.testing.assert_allclose(r["critic_lr"], cfg.lr, rtol=1e-6)
            np.testing.assert_allclose(r["ent_coef"], cfg.ent_coef, rtol=1e-6)
        finals[m["name"]] = _restore(d)
    # one member equals the separate run with its settings (the sweep is not an approximation)
    name = "seed10-lr0.0003-ent_coef0.05"
    ref = member_state(train(read_config(os.path.join(out, name)), str(tmp_path / "single"), progress=False,
                             quiet=True)[0], 0)
    _assert_states_close(finals[name], ref)
    # the settings matter: same seed, different lr -> different parameters
    a = jax.tree.leaves(finals["seed10-lr0.001-ent_coef0"].actor_params)[0]
    b = jax.tree.leaves(finals["seed10-lr0.0003-ent_coef0"].actor_params)[0]
    assert not np.allclose(a, b)
    # a population folder is not evaluated as a whole
    assert cli_main(["eval", "--run", out, "--episodes", "2"]) == 2


def test_sweepable_names_are_the_values_the_state_holds():
    """config.HParams (what --sweep accepts, also before JAX starts) is what a TrainState holds per run, each
    field a float32 scalar at the config's value."""
    cfg = CFG.replace(lr=2e-3, critic_weight_decay=0.25, ent_coef=0.125, gae_lambda=0.5)
    real = jax.jit(make_train(cfg).init)(jax.random.key(0)).hparams
    assert type(real) is HParams
    for name in HParams._fields:
        assert getattr(real, name).dtype == np.float32 and getattr(real, name).shape == ()
        np.testing.assert_allclose(getattr(real, name), getattr(cfg, name), rtol=1e-6)


def test_weight_decay_and_gae_lambda_sweep_member_equals_separate_run(tmp_path):
    """A sweep replaces ``HParams`` per member: each member holds its own values and equals its separate run."""
    sweep = {"critic_weight_decay": [0.0, 0.1], "gae_lambda": [0.9]}
    state, _ = train(CFG, str(tmp_path / "pop"), sweep=sweep, progress=False, quiet=True)
    ref = member_state(train(CFG.replace(critic_weight_decay=0.1, gae_lambda=0.9), str(tmp_path / "single"),
                             progress=False, quiet=True)[0], 0)
    _assert_states_close(member_state(state, 1), ref)
    np.testing.assert_allclose(state.hparams.critic_weight_decay, [0.0, 0.1])
    np.testing.assert_allclose(state.hparams.gae_lambda, [0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(state.hparams.lr, [CFG.lr] * 2, rtol=1e-6)


def test_paper_v4_population_member_equals_separate_run(tmp_path):
    """A 2-seed vmapped population of a shrunk paper-v4 preset: member 1 equals its separate run."""
    from rl3jax.runs.population import member_state

    cfg = _tiny("paper-v4-bandit-h100", model="markov-v4").replace(iters=1, seed=3)
    state, _ = train(cfg, str(tmp_path / "pop"), seeds=2, progress=False, quiet=True)
    assert read_config(str(tmp_path / "pop" / "seed4")).semantics == "v4"
    ref, _ = train(cfg.replace(seed=4), str(tmp_path / "single"), progress=False, quiet=True)
    a, b = member_state(state, 1), member_state(ref, 0)
    for x, y in zip(jax.tree.leaves((a.actor_params, a.critic_params, a.env_state)),
                    jax.tree.leaves((b.actor_params, b.critic_params, b.env_state))):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-4, atol=1e-5)
