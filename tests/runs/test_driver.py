"""Held-out evaluation during training (``eval_every`` / ``eval_episodes``): schedule, rows, resume, loggers."""

from __future__ import annotations

import csv
import os
import sys
import types

import jax
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.evaluate import evaluate
from rl3jax.runs import driver
from rl3jax.runs.checkpoint import Checkpointer
from rl3jax.runs.driver import EVAL_FIELDS, ChunkLoop, HeldOutEvaluator, train
from rl3jax.runs.population import member_state
from rl3jax.runs.runfiles import command, read_metrics
from rl3jax.trainer import make_train

TINY = dict(env="bandit", algo="rl2", model="markov", horizon=6, num_envs=4, minibatch_envs=2, epochs=1,
            chunk_iters=3, checkpoint_every=3, eval_every=2, eval_episodes=8)


def _evals(rows):
    return {r["iteration"]: {k: r[k] for k in EVAL_FIELDS} for r in rows if "eval_return" in r}


def test_chunks_end_on_eval_and_checkpoint_iterations_from_a_resumed_start():
    """Hand-computed schedule: chunk_iters=5, checkpoint_every=7, eval_every=3, iters=12, resumed at 4:
    chunks 4->6 (eval), 6->7 (checkpoint), 7->9 (eval), 9->12 (eval, final checkpoint)."""
    cfg = TrainConfig(iters=12, chunk_iters=5, checkpoint_every=7, eval_every=3)
    chunks, evals, saves = [], [], []
    # the state is the iteration reached (each chunk adds its n), so evaluate(state) records where it ran
    loop = ChunkLoop(cfg, 4, evaluate=lambda st: evals.append(st) or {"eval_return": float(st)})
    seen = []

    def on_chunk(it, n, metrics, dt, ev):
        chunks.append((it, it + n))
        seen.append((it + n, ev))

    loop.run(lambda st, n: (st + n, {"m": np.zeros(n)}), 4, on_chunk, lambda it, st: saves.append((it, st)))
    assert chunks == [(4, 6), (6, 7), (7, 9), (9, 12)]
    assert evals == [6, 9, 12] and saves == [(7, 7), (12, 12)]
    assert seen == [(6, {"eval_return": 6.0}), (7, None), (9, {"eval_return": 9.0}), (12, {"eval_return": 12.0})]
    # eval_every = 0: no evaluation, chunks as before
    chunks.clear(), evals.clear(), saves.clear()
    ChunkLoop(cfg.replace(eval_every=0), 4, evaluate=lambda st: evals.append(st)).run(
        lambda st, n: (st, {"m": np.zeros(n)}), None, lambda it, n, *a: chunks.append((it, it + n)),
        lambda it, st: saves.append(it))
    assert chunks == [(4, 7), (7, 12)] and evals == [] and saves == [7, 12]


def test_evaluator_equals_evaluate_and_compiles_once():
    """``HeldOutEvaluator`` gives exactly ``evaluate``'s numbers (also over several task batches) and traces once
    per (batch shape, greedy), however many parameter sets it evaluates."""
    cfg = TrainConfig(**{**TINY, "iters": 1})
    trainer = make_train(cfg)
    init = jax.jit(trainer.init)
    params = [init(jax.random.key(s)).actor_params for s in range(3)]
    ev = HeldOutEvaluator(trainer.meta_env, trainer.actor, 10, batch=4)  # batches of 4, 4, 2 tasks
    for p in params:
        for greedy in (False, True):
            got = ev(p, greedy)
            ref = evaluate(trainer.meta_env, "network", 10, greedy=greedy, params=p, model=trainer.actor, batch=4)
            assert got["mean_return"] == ref["mean_return"] and got["stderr"] == ref["stderr"]
            np.testing.assert_array_equal(got["step_rewards"], ref["step_rewards"])
    assert ev.traces == 4  # shapes (4, 2) x greedy (False, True)


def test_eval_rows_resume_csv_and_loggers(tmp_path, monkeypatch):
    """eval_every=2: rows 2, 4, 6 carry the eval fields (= ``evaluate`` of the final params at 6); 3 + resumed
    to 6 gives the same eval rows as a straight 6; the CSV header holds the eval fields with empty cells
    elsewhere; TensorBoard / W&B receive them; the evaluation is compiled once for the whole run."""
    made = []

    class Recording(HeldOutEvaluator):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(driver, "HeldOutEvaluator", Recording)
    scalars, wb = [], []

    class Writer:
        def __init__(self, logdir):
            pass

        def add_scalar(self, tag, value, step):
            scalars.append((tag, float(value), int(step)))

        def close(self):
            pass

    class Run:
        def log(self, row, step):
            wb.append((dict(row), step))

        def finish(self):
            pass

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **k: Run()))
    cfg = TrainConfig(**{**TINY, "iters": 6})
    full = str(tmp_path / "full")
    state, _ = train(cfg, full, quiet=True, tensorboard=True, wandb_project="p")
    rows = read_metrics(full)
    evals = _evals(rows)
    assert sorted(evals) == [2, 4, 6]
    assert len(made) == 1 and made[0].traces == 2  # three evaluations, one trace per greedy mode
    trainer = make_train(cfg)
    for greedy, (m, s) in ((False, ("eval_return", "eval_stderr")), (True, ("eval_return_greedy",
                                                                           "eval_stderr_greedy"))):
        ref = evaluate(trainer.meta_env, "network", 8, greedy=greedy, params=member_state(state, 0).actor_params,
                       model=trainer.actor)
        assert evals[6][m] == ref["mean_return"] and evals[6][s] == ref["stderr"]
    assert all(e["eval_episodes"] == 8 for e in evals.values())
    # loggers: each eval field as a scalar at the row's env steps, and in the W&B row
    for it, e in evals.items():
        for k, v in e.items():
            assert (k, float(v), it * cfg.batch_steps) in scalars
    assert [r for r, _ in wb] == rows
    # CSV: union header, eval cells empty on other rows, equal values on eval rows
    with open(os.path.join(full, "metrics.csv")) as f:
        csv_rows = list(csv.DictReader(f))
    assert set(EVAL_FIELDS) <= set(csv_rows[0])
    for r, c in zip(rows, csv_rows):
        for k in EVAL_FIELDS:
            assert (c[k] == "") if k not in r else float(c[k]) == r[k]
    # 3 iterations, then resumed to 6: the same eval rows
    half = str(tmp_path / "half")
    train(cfg.replace(iters=3), half, quiet=True)
    assert sorted(_evals(read_metrics(half))) == [2]
    train(cfg, half, resume=True, quiet=True)
    resumed = read_metrics(half)
    assert _evals(resumed) == evals
    assert [r["iteration"] for r in resumed] == list(range(1, 7))
    with open(os.path.join(half, "metrics.csv")) as f:
        assert [float(c["eval_return"]) for c in csv.DictReader(f) if c["eval_return"]] == \
            [evals[i]["eval_return"] for i in (2, 4, 6)]


def test_population_evaluates_each_member(tmp_path, capsys):
    cfg = TrainConfig(**{**TINY, "iters": 2, "chunk_iters": 2})
    out = str(tmp_path / "pop")
    state, _ = train(cfg, out, seeds=2, progress=False)
    printed = capsys.readouterr().out
    assert f"report: {command('report', out)}\n" in printed and command("report", out).endswith(f"rl3jax report {out}")
    trainer = make_train(cfg)
    for i, name in enumerate(("seed0", "seed1")):
        ev = _evals(read_metrics(os.path.join(out, name)))
        assert sorted(ev) == [2]
        ref = evaluate(trainer.meta_env, "network", 8, greedy=True, params=member_state(state, i).actor_params,
                       model=trainer.actor)
        assert ev[2]["eval_return_greedy"] == ref["mean_return"]
    # the member's checkpoint is the evaluated state
    c = Checkpointer(os.path.join(out, "seed1", "checkpoints"))
    assert c.latest_step() == 2
    c.close()


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_bad_eval_every_is_refused_before_writing(value):
    """A TrainConfig validates itself: no config with a bad eval_every exists to train (nor a replaced one)."""
    with pytest.raises(ValueError, match=r"eval_every must be"):
        TrainConfig(**{**TINY, "iters": 2, "eval_every": value})
    with pytest.raises(ValueError, match=r"eval_every must be"):
        TrainConfig(**{**TINY, "iters": 2}).replace(eval_every=value)
