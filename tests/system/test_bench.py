"""``rl3jax bench``: records carry the documented fields, overrides reach the config, bad input is refused; the
population workloads; the peer benchmark's work count and refusals (benchmarks/peers)."""

import json

import pytest

from rl3jax.bench import run_bench
from rl3jax.cli import main as cli_main

FIELDS = ("workload", "env", "algo", "model", "horizon", "num_envs", "steps_per_second", "compile_seconds",
          "peak_memory_bytes", "chunk_memory_bytes", "device", "rollout_steps_per_second", "update_share")


def test_quick_bench_record_and_override(tmp_path, capsys):
    path = tmp_path / "b.json"
    recs = run_bench(quick=True, json_path=str(path), only="bandit-rl2-gru", repeats=1,
                     overrides={"epochs": 1})
    assert json.loads(path.read_text()) == recs and len(recs) == 1
    r = recs[0]
    assert all(k in r for k in FIELDS)
    assert (r["workload"], r["env"], r["algo"], r["model"], r["horizon"], r["num_envs"]) == \
        ("bandit-rl2-gru", "bandit", "rl2", "gru", 20, 32)
    assert "fused_update" not in r and r["epochs"] == 1 and r["overrides"] == {"epochs": 1}
    assert r["steps_per_second"] > 0 and r["compile_seconds"] > 0 and 0.0 <= r["update_share"] <= 1.0
    assert r["chunk_memory_bytes"] > 0 and r["device"].startswith("cpu")
    assert "bandit-rl2-gru" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--quick", "--set", "nonsense=1"], "unknown config field 'nonsense'"),
    (["bench", "--quick", "--set", "epochs"], "--set expects FIELD=VALUE"),
    (["bench", "--quick", "--set", "std_errors=maybe"], "expected true or false"),
    (["bench", "--quick", "--set", "fused_update=true"], "unknown config field 'fused_update'"),
    (["bench", "--quick", "--only", "mdp-rl4-transformer"], "unknown workloads"),
])
def test_bench_bad_input(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_population_bench_one_program_against_separate_runs(tmp_path, capsys):
    """K = 1 and 2 members of a tiny workload: one vmapped program against K separate processes; every record
    counts all members' steps and is written to the JSON as it is measured."""
    from rl3jax.bench import bench_population

    w = dict(env="bandit", algo="rl2", model="markov", horizon=4, num_envs=4, minibatch_envs=2, epochs=1, iters=2)
    path = tmp_path / "pop.json"
    recs = bench_population(members=[1, 2], repeats=1, json_path=str(path), workload=w)
    assert json.loads(path.read_text()) == recs
    assert [r["members"] for r in recs] == [1, 2]
    for r in recs:
        assert r["one_program_steps_per_second"] > 0 and r["separate_runs_steps_per_second"] > 0
        assert r["ratio"] == r["one_program_steps_per_second"] / r["separate_runs_steps_per_second"]
        assert r["separate_run_compile_seconds"] > 0 and r["device"].startswith("cpu") and r["num_envs"] == 4
    out = capsys.readouterr().out
    assert "population: bandit rl2 markov, H=4, 4 envs per member" in out


# ------------------------------------------------------------------------------------------ the peer benchmark
def _peers_module(name):
    """benchmarks/peers/NAME.py, a script (not a package), loaded as a module."""
    import importlib.util
    import os
    import sys

    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "peers", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"peers_{name}", path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_peer_work_per_step_by_hand():
    """CartPole (4 inputs), MLP 256-256 actor A (2 logits) and critic C (1 value), 4 epochs: rejax and ours
    (separate, KL stop off) do 13 (A + C) multiply-adds per env step; ours shared 14 A + 13 V (V: the value head)."""
    import flax.linen as nn
    import jax
    import numpy as np

    run, worker = _peers_module("run"), _peers_module("worker")
    mlp = {f"Dense_{i}": {"kernel": np.zeros(s), "bias": np.zeros(s[1])} for i, s in enumerate([(4, 256), (256, 256)])}
    actor = worker.kernel_macs({**mlp, "head": {"kernel": np.zeros((256, 2)), "bias": np.zeros(2)}})
    critic = worker.kernel_macs({**mlp, "head": {"kernel": np.zeros((256, 1)), "bias": np.zeros(1)}})
    assert (actor, critic) == (4 * 256 + 256 * 256 + 256 * 2, 4 * 256 + 256 * 256 + 256)  # 67072, 66816
    macs = {"actor": actor, "critic": critic}
    assert run.work_per_step(macs, run.PASSES["rejax"], 4) == 13 * (67072 + 66816) == 1740544
    # ours with the KL stop off: no full-batch KL pass, so the same passes as rejax on the same networks
    assert run.work_per_step(macs, run.PASSES["separate"], 4) == 13 * (67072 + 66816) == 1740544
    # shared: rollout A, values A + V, 4 epochs x 3 (A + V); V = Dense(256 -> 1) on the actor's features
    assert run.work_per_step({"actor": actor, "critic": 256}, run.PASSES["shared"], 4) == 14 * 67072 + 13 * 256
    # a flax GRUCell of 8 units on 3 inputs: 3 (3 x 8 + 8 x 8) = 264 multiply-adds per step
    params = nn.GRUCell(features=8).init(jax.random.PRNGKey(0), np.zeros((1, 8)), np.zeros((1, 3)))
    assert worker.kernel_macs(params) == 264
    assert run.work_per_step({"shared": 10}, [("shared", "fwd", 1), ("shared", "fwd+bwd", "E")], 4) == 130


@pytest.mark.parametrize("argv, message", [
    (["--only", "rejax-mlp-64"], "--only: unknown workloads ['rejax-mlp-64']; valid: rejax-mlp-32"),
    (["--variants", "fused"], "--variants: unknown ['fused']; valid: separate,"),
    (["--ours-set", "nonsense=1"], "unknown config field 'nonsense'"),
    (["--ours-set", "target_kl=0"], "target_kl must be in"),
    (["--pairs", "0"], "--pairs 0: expected a whole number >= 1"),
    (["--timeout", "0"], "--timeout 0.0: expected seconds > 0"),
    (["--only", "purejaxrl-gru-32", "--purejaxrl-git", "/nonexistent"], "--purejaxrl-git /nonexistent: no such"),
])
def test_peer_benchmark_refuses_bad_options(argv, message, capsys, tmp_path):
    run = _peers_module("run")
    assert run.main([*argv, "--peers-dir", str(tmp_path / "peers"), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "peers").exists() and not (tmp_path / "out").exists()  # nothing installed or written


def test_peer_benchmark_refuses_a_file_as_out_and_names_a_worker_past_its_timeout(tmp_path, capsys, monkeypatch):
    run = _peers_module("run")
    (tmp_path / "afile").write_text("x")
    assert run.main(["--only", "rejax-mlp-32", "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'afile'}: not a folder"

    def slow(cmd, timeout, **kw):
        raise run.subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(run.subprocess, "run", slow)
    with pytest.raises(SystemExit, match=r"^error: the ours worker of tiny ran past --timeout 5 s$"):
        run.run_process("python", "ours", {"name": "tiny"}, 5.0)


def test_peer_worker_runs_our_side():
    """Our side of a pair, tiny: the harness's config builds, compiles and runs through rl3jax's public API, and
    the forward multiply-adds are those of RL²'s MLP on CartPole (10 inputs: the observation's 4 and RL²'s
    meta-episode inputs) -> 256 -> 256 -> 2 logits / 1 value."""
    run, worker = _peers_module("run"), _peers_module("worker")
    w = run.Workload("tiny", "rejax", "markov", num_envs=4, iters=1, steps=4, epochs=1, minibatches=2)
    rec = worker.main("ours", {"repeats": 1, "config": run.ours_config(w, {"target_kl": None})})
    assert rec["forward_macs"] == {"actor": 10 * 256 + 256 * 256 + 256 * 2, "critic": 10 * 256 + 256 * 256 + 256}
    assert rec["compile_seconds"] > 0 and len(rec["run_seconds"]) == 1 and rec["run_cpu_seconds"][0] >= 0


def test_peer_gru_workloads_run_ours_at_purejaxrl_width():
    """purejaxrl's GRU is 128 wide: our side of its workloads sets gru_hidden=128 in both variants; ``--ours-set``
    items win over it; the rejax workloads keep our defaults; the table names the width."""
    run = _peers_module("run")
    by_name = {w.name: w for w in run.workloads(quick=True)}
    for name in ("purejaxrl-gru-32", "purejaxrl-gru-256"):
        for variant in run.OURS_VARIANTS:
            cfg = run.ours_config(by_name[name], {"target_kl": None, **run.variant_settings(variant)})
            assert (cfg["model"], cfg["gru_hidden"]) == ("gru", 128)
        assert run.ours_config(by_name[name], {"gru_hidden": 256})["gru_hidden"] == 256
    assert "gru_hidden" not in run.ours_config(by_name["rejax-mlp-32"], {})
    rec = {"forward_macs": {"actor": 1, "critic": 1, "shared": 1}, "steps_per_second": 1.0,
           "cpu_seconds_per_million_steps": 1.0, "compile_seconds": 1.0, "whole_process_seconds": 1.0}
    summary = run.summarise(by_name["purejaxrl-gru-32"], "shared", [(rec, rec)], {"gru_hidden": 128})
    assert summary["ours"] == "gru 128, shared"
