"""The training loop: probes, exact resume, determinism, checkpoints, CLI errors, short learning runs."""

from __future__ import annotations

import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.cli import main as cli_main
from rl3jax.config import HParams, TrainConfig
from rl3jax.distributed import sharded_chunk
from rl3jax.runs.checkpoint import FORMAT_VERSION, Checkpointer
from rl3jax.runs.driver import train
from rl3jax.runs.load import load_run
from rl3jax.runs.runfiles import read_metrics
from rl3jax.trainer import jit_chunk, make_train
from tests import behaviour_record
from tests.probes import register_probes

register_probes()

TINY = dict(horizon=8, num_envs=16, minibatch_envs=4, epochs=2, model="gru", chunk_iters=2,
            checkpoint_every=2)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _train_probe(kind, iters=40, **kw):
    cfg = TrainConfig(env=f"probe-{kind}", algo="rl2", model="markov", horizon=4, num_envs=32,
                      minibatch_envs=8, epochs=4, lr=3e-3, ent_coef=0.0, iters=iters, **kw)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    state, metrics = jit_chunk(trainer)(state, iters)
    return trainer, state, metrics


def test_probe_constant_reward_critic_learns_returns_to_go():
    trainer, state, _ = _train_probe("constant", iters=60)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    values = trainer.critic.sequence(state.critic_params, traj.obs)[..., 0]
    # reward 1 every step, H=4, only step H terminal: V(t) = sum_{k < H-t} 0.99^k
    expected = np.array([sum(0.99 ** k for k in range(4 - t)) for t in range(4)])
    np.testing.assert_allclose(np.asarray(values).mean(0), expected, atol=0.15)


def test_probe_action_dependent_reward_actor_prefers_rewarded_action():
    trainer, state, metrics = _train_probe("action", iters=30)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    assert float(jnp.mean(traj.actions == 0)) > 0.9  # starts at 0.5
    assert float(metrics["return_mean"][-1]) > 0.9 * 4


def test_probe_observation_dependent_reward_actor_reads_observation():
    trainer, state, _ = _train_probe("observation", iters=40)
    traj, _ = jax.jit(trainer.collect)(state.actor_params, jax.random.key(3))
    assert float(traj.rewards.mean()) > 0.9  # random policy: 0.5


def test_iteration_shapes_finite_and_no_retrace():
    cfg = TrainConfig(env="mdp", algo="rl3", iters=4, **TINY)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def it(s):
        return trainer.iteration(s)

    for _ in range(3):
        state, metrics = it(state)
    chex.assert_tree_all_finite((state.actor_params, state.critic_params, metrics))
    for v in metrics.values():
        chex.assert_shape(v, ())
    assert int(state.iteration) == 3
    traj, env_state = jax.jit(trainer.collect)(state.actor_params, jax.random.key(1))
    chex.assert_shape(traj.obs, (16, 8, trainer.meta_env.obs_dim))
    chex.assert_shape(traj.rewards, (16, 8))
    np.testing.assert_allclose(np.asarray(env_state.episode_return), np.asarray(traj.rewards.sum(1)), rtol=1e-5)


def test_same_seed_same_result_and_chunking_does_not_matter():
    cfg = TrainConfig(env="bandit", algo="rl3", iters=4, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    init = jax.jit(trainer.init)
    a, ma = jax.jit(trainer.chunk, static_argnums=1)(init(jax.random.key(5)), 4)
    s = init(jax.random.key(5))
    s, m1 = jax.jit(trainer.chunk, static_argnums=1)(s, 1)
    s, m3 = jax.jit(trainer.chunk, static_argnums=1)(s, 3)
    assert _leaves_equal(a.actor_params, s.actor_params)
    assert _leaves_equal(a.critic_params, s.critic_params)
    np.testing.assert_array_equal(np.asarray(ma["return_mean"]),
                                  np.concatenate([np.asarray(m1["return_mean"]), np.asarray(m3["return_mean"])]))
    c, _ = jax.jit(trainer.chunk, static_argnums=1)(init(jax.random.key(6)), 4)
    assert not _leaves_equal(a.actor_params, c.actor_params)


def test_eager_init_states_can_be_donated_to_the_jitted_chunk():
    """The documented Python path without jitting ``init``: ``trainer.init`` -> ``jit_chunk`` (which donates the
    state). Two eagerly built states share no buffer, so donating one leaves the other usable, and both give the jitted init's result bit for bit."""
    cfg = TrainConfig(env="bandit", algo="rl3", iters=2, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    chunk = jit_chunk(trainer)
    first, second = trainer.init(jax.random.key(3)), trainer.init(jax.random.key(3))
    a, _ = chunk(first, 2)
    b, _ = chunk(second, 2)  # failed before: its lr buffer had been donated with ``first``
    ref, _ = chunk(jax.jit(trainer.init)(jax.random.key(3)), 2)
    assert _leaves_equal(a.actor_params, b.actor_params) and _leaves_equal(a.actor_params, ref.actor_params)
    assert _leaves_equal(a.critic_opt, ref.critic_opt)


def _metrics_rows(path):
    rows = read_metrics(path)
    for r in rows:
        r.pop("steps_per_second")
    return rows


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


def test_interrupted_save_leaves_last_checkpoint_usable(tmp_path):
    cfg = TrainConfig(env="bandit", algo="rl2", iters=4, **TINY)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True)
    ckpts = os.path.join(run, "checkpoints")
    # simulate a kill in the middle of writing step 6: orbax writes into a temporary folder first
    os.makedirs(os.path.join(ckpts, "6.orbax-checkpoint-tmp-123", "state"))
    resumed, _ = train(cfg.replace(iters=6), run, resume=True, quiet=True)
    assert int(resumed.iteration[0]) == 6


def test_resume_with_changed_settings_is_refused(tmp_path):
    cfg = TrainConfig(env="bandit", algo="rl2", iters=2, **TINY)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True)
    with pytest.raises(ValueError, match="lr"):
        train(cfg.replace(lr=1e-2, iters=4), run, resume=True, quiet=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg, run, quiet=True)


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "nope", "--out", "X"], "unknown env 'nope'"),
    (["train", "--env", "mdp", "--variant", "bogus", "--out", "X"], "variant 'bogus'"),
    (["train", "--num-envs", "10", "--minibatch-envs", "4", "--out", "X"], "not divisible"),
    (["train", "--set", "lr=abc", "--out", "X"], "expected a float"),
    (["train", "--set", "nofield=1", "--out", "X"], "unknown config field"),
    (["train", "--set", "fused_update=true", "--out", "X"], "--set: unknown config field 'fused_update'"),
    (["train", "--preset", "nope", "--out", "X"], "unknown preset"),
    (["eval", "--run", "/nonexistent/run", "--episodes", "2"], "not a run folder"),
])
def test_cli_bad_input_gives_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_bad_int_flag_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--horizon", "0", "--out", "X"])
    assert e.value.code == 2
    assert "expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_cli_corrupt_checkpoint_gives_clear_error(tmp_path, capsys):
    run = str(tmp_path / "run")
    cfg = TrainConfig(env="bandit", algo="rl2", iters=2, **TINY)
    train(cfg, run, quiet=True)
    step_dir = os.path.join(run, "checkpoints", "2", "state")
    for root, _, files in os.walk(step_dir):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint step 2:" in err and "is truncated or resized" in err and "Traceback" not in err
    # a step whose checksum manifest was lost is refused in one line; one written before manifests (no "sealed"
    # in its meta) still fails in one line, from orbax's own error, after a note
    os.remove(os.path.join(run, "checkpoints", "2", "rl3jax_manifest.json"))
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "lost its checksum file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    meta_path = os.path.join(run, "checkpoints", "2", "meta", "metadata")
    meta = json.load(open(meta_path))
    del meta["sealed"]
    json.dump(meta, open(meta_path, "w"))
    assert cli_main(["eval", "--run", run, "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not be restored" in err[-1] and "has no checksums" in err[0] and len(err) == 2


def test_cli_train_eval_roundtrip(tmp_path):
    run = str(tmp_path / "run")
    assert cli_main(["train", "--env", "bandit", "--algo", "rl3", "--model", "markov", "--horizon", "8",
                     "--iters", "2", "--num-envs", "8", "--minibatch-envs", "4", "--out", run,
                     "--no-progress"]) == 0
    out = str(tmp_path / "eval.json")
    assert cli_main(["eval", "--run", run, "--episodes", "20", "--greedy", "--json", out]) == 0
    with open(out) as f:
        res = json.load(f)
    for k in ("env", "variant", "algo", "policy", "horizon", "episodes", "mean_return", "stderr"):
        assert k in res
    assert res["episodes"] == 20 and res["policy"] == "greedy" and 0 <= res["mean_return"] <= 8


V1_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checkpoint_v1")


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


def test_chunk_traces_once_over_two_calls():
    """The jitted chunk (``distributed.sharded_chunk`` of ``Trainer.chunk``, as ``jit_chunk``) compiles once:
    a second call, with other hyper-parameter values in the state, does not retrace."""
    cfg = TrainConfig(env="bandit", algo="rl3", iters=4, **{**TINY, "model": "markov"})
    trainer = make_train(cfg)
    chunk = sharded_chunk(chex.assert_max_traces(trainer.chunk, n=1), None, cfg.num_envs)
    state, m1 = chunk(jax.jit(trainer.init)(jax.random.key(0)), 2)
    state, m2 = chunk(state.replace(hparams=HParams(*(jnp.float32(v) for v in (1e-2, 0.0, 0.1, 0.9)))), 2)
    assert int(state.iteration) == 4
    np.testing.assert_allclose(m2["actor_lr"], [1e-2, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(m2["ent_coef"], [0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(m1["actor_lr"], [cfg.lr] * 2, rtol=1e-6)


def test_config_json_of_older_versions_loads():
    """``fused_update`` (the deleted fused actor-critic step) is dropped when a config is read; ``--set`` refuses
    it as an unknown field."""
    old = {**TrainConfig().to_dict(), "fused_update": True}
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ValueError, match="unknown config fields"):
        TrainConfig.from_dict({**old, "fused": 1})


def test_tensorboard_and_wandb_receive_every_metrics_row(tmp_path, monkeypatch):
    """The optional loggers (not installed here) are replaced by recording fakes: every row written to
    metrics.jsonl reaches TensorBoard as scalars and W&B as one log call, at step = env steps."""
    import sys
    import types

    calls = {"scalars": [], "wb_rows": [], "closed": 0, "finished": 0}

    class Writer:
        def __init__(self, logdir):
            calls["logdir"] = logdir

        def add_scalar(self, tag, value, step):
            calls["scalars"].append((tag, float(value), int(step)))

        def close(self):
            calls["closed"] += 1

    class Run:
        def log(self, row, step):
            calls["wb_rows"].append((dict(row), step))

        def finish(self):
            calls["finished"] += 1

    def init(project, config, dir):
        calls["wb_init"] = (project, config, dir)
        return Run()

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    cfg = TrainConfig(env="bandit", algo="rl2", iters=4, **TINY)
    run = str(tmp_path / "run")
    train(cfg, run, quiet=True, tensorboard=True, wandb_project="proj")
    rows = read_metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert calls["logdir"] == os.path.join(run, "tb")
    assert calls["wb_init"] == ("proj", cfg.to_dict(), run)
    assert [(r, r["env_steps"]) for r in rows] == calls["wb_rows"]
    expected = [(k, float(v), r["env_steps"]) for r in rows for k, v in r.items()]
    assert calls["scalars"] == expected
    assert calls["closed"] == 1 and calls["finished"] == 1

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # not installed: a clear exit, not a traceback
    with pytest.raises(SystemExit, match=r"--tensorboard needs tensorboardX"):
        train(cfg, str(tmp_path / "run2"), quiet=True, tensorboard=True)
