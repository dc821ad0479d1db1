"""rl3jax.runs.metrics: TensorBoard and W&B receive every metrics row."""

from __future__ import annotations

import os

import pytest

from rl3jax.config import TrainConfig
from rl3jax.runs.driver import train
from rl3jax.runs.runfiles import read_metrics
from tests.helpers import TINY


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
