"""``rl3jax bench``: records carry the documented fields, overrides reach the config, bad input is refused."""

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
