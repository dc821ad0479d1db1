"""Multi-device and multi-host training (rl3jax.distributed).

JAX fixes its device count when the backend starts, and the other test files start it with one CPU device,
so every check here runs in a fresh subprocess: fake CPU devices (``jax_num_cpu_devices``) for the
multi-device checks, and two processes on localhost with gloo CPU collectives for the multi-host ones.

Tolerances: the sharded program is the single-device program with a different float reduction order
(per-device gradient sums + one all-reduce per minibatch), so after two PPO iterations parameters agree
to atol 1e-5 (seen: ~6e-7) and metrics to rtol 1e-4; replicated copies on different devices agree bitwise.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from rl3jax.runs.driver import train
from tests.helpers import ROOT, child_env

WORKER = os.path.join(ROOT, "tests", "system", "distributed_worker.py")
PARAM_ATOL = 1e-5
METRIC_RTOL = 1e-4


def _run_script(code: str, timeout: int = 600) -> str:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=child_env(), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"subprocess failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    return p.stdout


SHARDED_VS_SINGLE = r"""
import jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from jax.sharding import PartitionSpec as P
from rl3jax import distributed as dist
from rl3jax.config import TrainConfig
from rl3jax.trainer import jit_chunk, make_train

assert len(jax.devices()) == 4
cfg = TrainConfig(env="mdp", algo="rl3", model="gru", horizon=8, num_envs=16, minibatch_envs=8, epochs=2,
                  iters=2, seed=5)

# the single-device run
tr1 = make_train(cfg)
s1, m1 = jit_chunk(tr1)(jax.jit(tr1.init)(jax.random.key(cfg.seed)), 2)

# the same global batch split over 4 devices
mesh = dist.make_mesh(4)
tr4 = make_train(cfg, mesh)
s4 = dist.init_sharded(lambda: tr4.init(jax.random.key(cfg.seed)), mesh, cfg.num_envs)
s4, m4 = jit_chunk(tr4)(s4, 2)

# equal within float tolerance
f64 = lambda x: np.asarray(x, np.float64)
for name in ("actor_params", "critic_params", "actor_opt", "critic_opt"):
    a, b = jax.tree.leaves(getattr(s1, name)), jax.tree.leaves(getattr(s4, name))
    err = max(float(np.max(np.abs(f64(x) - f64(y)))) if np.size(x) else 0.0 for x, y in zip(a, b))
    assert err < PARAM_ATOL, (name, err)
    print(name, "max abs diff", err)
for k in m1:
    np.testing.assert_allclose(f64(m4[k]), f64(m1[k]), rtol=METRIC_RTOL, atol=1e-6, err_msg=k)
for x, y in zip(jax.tree.leaves(s1.env_state), jax.tree.leaves(s4.env_state)):
    np.testing.assert_allclose(f64(y), f64(x), rtol=METRIC_RTOL, atol=1e-5)

# parameters (and optimiser states) stay identical on every device
for path, x in jax.tree_util.tree_leaves_with_path((s4.actor_params, s4.critic_params, s4.actor_opt, s4.critic_opt)):
    shards = [np.asarray(s.data) for s in x.addressable_shards]
    assert all(s.shape == shards[0].shape and np.array_equal(s, shards[0]) for s in shards), jax.tree_util.keystr(path)
for x in jax.tree.leaves((s4.actor_params, s4.critic_params, s4.actor_opt, s4.key, s4.iteration, s4.hparams)):
    assert x.sharding.is_fully_replicated, x.sharding

# the task axis is really split: env/estimator state and the trajectory hold E/4 tasks per device
for x in jax.tree.leaves(s4.env_state):
    assert x.sharding.spec == P("data"), x.sharding
    assert {s.data.shape[0] for s in x.addressable_shards} == {cfg.num_envs // 4}
    assert len({s.device for s in x.addressable_shards}) == 4
traj, final = jax.jit(tr4.collect)(s4.actor_params, jax.random.key(1))
for x in jax.tree.leaves((traj, final)):
    assert x.sharding.spec == P("data") and x.addressable_shards[0].data.shape[0] == cfg.num_envs // 4, x.sharding
# inside the compiled rollout no per-task array has the global task count (everything is per device)
import re
hlo = jax.jit(tr4.collect).lower(s4.actor_params, jax.random.key(1)).compile().as_text()
shapes = re.findall(r"\b(?:f32|s32|u32|pred)\[(\d+),", hlo)
assert str(cfg.num_envs) not in shapes and str(cfg.num_envs // 4) in shapes, sorted(set(shapes))

# clear errors
try:
    make_train(cfg.replace(num_envs=18, minibatch_envs=9), mesh)
    raise SystemExit("expected a ValueError for 18 envs on 4 devices")
except ValueError as e:
    assert "divisible" in str(e) and "4 devices" in str(e), e
try:
    dist.make_mesh(5)
    raise SystemExit("expected a ValueError for 5 of 4 devices")
except ValueError as e:
    assert "more devices" in str(e)
print("OK")
"""


def test_sharded_training_equals_single_device():
    """Training with the env axis split over 4 (fake CPU) devices equals the single-device run."""
    code = f"PARAM_ATOL = {PARAM_ATOL}\nMETRIC_RTOL = {METRIC_RTOL}\n" + SHARDED_VS_SINGLE
    assert _run_script(code).strip().endswith("OK")


def test_mesh_helpers_single_device():
    # the in-process (one CPU device) side: a 1-device mesh is the identity, bad sizes are clear errors

    from rl3jax import distributed as dist

    mesh = dist.make_mesh()
    assert dist.mesh_size(mesh) == len(jax.devices())
    assert dist.make_mesh(1) is None  # one device in all is "no mesh": the single-device program
    assert dist.describe(dist.make_mesh(1)) == f"1 device ({jax.devices()[0].platform})"
    x = np.zeros((6, 3))
    assert dist.split_leading(x, None) is x
    dist.check_divisible(6, None)
    # mesh=None: the helpers are plain jax.jit (num_iters static), so callers need not branch
    chunk = dist.sharded_chunk(lambda s, n: (s + n, s * 2.0), None, 6)
    new, metrics = chunk(jax.numpy.ones(2), 3)
    np.testing.assert_array_equal(new, [4.0, 4.0])
    np.testing.assert_array_equal(metrics, [2.0, 2.0])
    init = dist.init_sharded(lambda k: jax.random.key_data(k), None, 6, seed=7)
    np.testing.assert_array_equal(init, jax.random.key_data(jax.random.key(7)))
    with pytest.raises(ValueError, match="--devices must be >= 1"):
        dist.make_mesh(0)
    assert not dist.initialize()  # nothing asked for: single process
    with pytest.raises(ValueError, match="needs all of"):
        dist.initialize(coordinator_address="localhost:1")


# ---------------------------------------------------------------------------------------- multi-host
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(num_processes: int, local_devices: int, train_args: list[str], timeout: int = 600,
            extra: dict[int, list[str]] | None = None, status: int = 0) -> list[str]:
    """Every process's output; ``extra``: more arguments for some processes; ``status``: their exit status."""
    port = _free_port()
    procs = []
    try:
        for pid in range(num_processes):
            argv = [sys.executable, WORKER, str(local_devices), "--", *train_args, *(extra or {}).get(pid, []),
                    "--coordinator-address", f"localhost:{port}", "--num-processes", str(num_processes),
                    "--process-id", str(pid)]
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outs = []
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outs.append(out)
        for p, out in zip(procs, outs):
            assert p.returncode == status, f"process ended with {p.returncode}, not {status}:\n{out[-6000:]}"
        return outs
    finally:
        for p in procs:  # never leave a process (or its port) behind
            if p.poll() is None:
                p.kill()
                p.wait()


def _single_process_reference(run_dir: str, iters: int):
    """The same config trained in this (one-device) process, and the multi-process run's checkpoint."""
    from rl3jax.runs.load import load_run
    from rl3jax.runs.population import member_state

    run = load_run(run_dir)
    ref = member_state(train(run.cfg.replace(iters=iters), run_dir + "-single", progress=False, quiet=True)[0], 0)
    restored, _ = run.restore()
    return ref, restored


def _assert_same_run(ref, restored, run_dir: str):

    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    assert int(restored.iteration) == int(ref.iteration)
    for x, y in zip(jax.tree.leaves((ref.actor_params, ref.critic_params, ref.env_state)),
                    jax.tree.leaves((restored.actor_params, restored.critic_params, restored.env_state))):
        np.testing.assert_allclose(f64(y), f64(x), rtol=METRIC_RTOL, atol=PARAM_ATOL)
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    ref_rows = [json.loads(line) for line in open(os.path.join(run_dir + "-single", "metrics.jsonl"))]
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in ref_rows]
    for r, q in zip(rows, ref_rows):
        np.testing.assert_allclose(r["return_mean"], q["return_mean"], rtol=METRIC_RTOL)
        np.testing.assert_allclose(r["critic_loss"], q["critic_loss"], rtol=METRIC_RTOL)


def test_two_processes_equal_single_process(tmp_path):
    """Fast version: 2 processes x 1 CPU device, the smallest workload, one PPO iteration."""
    run = str(tmp_path / "mp")
    args = ["train", "--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "8",
            "--minibatch-envs", "4", "--iters", "1", "--set", "epochs=1", "--seed", "2", "--out", run,
            "--no-progress"]
    outs = _launch(2, 1, args)
    assert "done:" in outs[0] and "done:" not in outs[1]  # only process 0 reports
    assert os.path.exists(os.path.join(run, "metrics.jsonl")) and os.path.exists(os.path.join(run, "config.json"))
    ref, restored = _single_process_reference(run, 1)
    _assert_same_run(ref, restored, run)


def test_processes_started_with_different_settings_stop_at_once_naming_them(tmp_path):
    """Issue 17.3: two processes of one run with different --iters (and seeds) both exit 2 within seconds of
    joining, each with one line naming the fields; nothing is written."""
    import time

    run = str(tmp_path / "mp")
    args = ["train", "--env", "bandit", "--algo", "rl2", "--model", "markov", "--horizon", "4", "--num-envs", "8",
            "--minibatch-envs", "4", "--set", "epochs=1", "--out", run, "--no-progress"]
    start = time.time()
    outs = _launch(2, 1, args, extra={0: ["--iters", "20", "--seed", "1"], 1: ["--iters", "22", "--seed", "1"]},
                   status=2, timeout=300)
    for out in outs:
        lines = [ln for ln in out.splitlines() if "error" in ln]
        assert len(lines) == 1 and "Traceback" not in out, out
        assert "started with different settings: iters (20 on process 0, 22 on process 1)" in lines[0]
    assert time.time() - start < 120  # was ~75 s of waiting, then an anonymous abort
    assert not os.path.exists(run)


@pytest.mark.slow
def test_two_processes_sharded_resume(tmp_path):
    """2 processes x 2 CPU devices (4 in the mesh), RL³ on MDPs: train 2 iterations (checkpoint at 1 and 2),
    then resume from every process to 3; equals a single-process, single-device run of 3 iterations."""
    run = str(tmp_path / "mp")
    args = ["train", "--env", "mdp", "--algo", "rl3", "--model", "markov", "--horizon", "8", "--num-envs", "8",
            "--minibatch-envs", "4", "--set", "epochs=1", "--set", "chunk_iters=1", "--set", "checkpoint_every=1",
            "--seed", "3", "--out", run, "--no-progress"]
    _launch(2, 2, args + ["--iters", "2"])
    outs = _launch(2, 2, args + ["--iters", "3", "--resume"])
    assert "resumed" in outs[0] and "resumed" not in outs[1]
    ref, restored = _single_process_reference(run, 3)
    _assert_same_run(ref, restored, run)


@pytest.mark.slow
def test_two_processes_population(tmp_path):
    """--seeds 2 over 2 processes x 2 CPU devices: every member folder (metrics from process 0, checkpoint
    from both) equals the separate single-process run of that seed."""
    run = str(tmp_path / "pop")
    args = ["train", "--env", "mdp", "--algo", "rl3", "--model", "markov", "--horizon", "8", "--num-envs", "8",
            "--minibatch-envs", "4", "--iters", "2", "--set", "epochs=1", "--seed", "4", "--seeds", "2",
            "--out", run, "--no-progress"]
    _launch(2, 2, args)
    for seed in (4, 5):
        member = os.path.join(run, f"seed{seed}")
        ref, restored = _single_process_reference(member, 2)
        _assert_same_run(ref, restored, member)


SHARDED_V4 = r"""
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np
from rl3jax import distributed as dist
from rl3jax.config import TrainConfig, preset
from rl3jax.trainer import jit_chunk, make_train

cfg = TrainConfig(**{**preset("paper-v4-mdp-h100"), "iters": 1, "horizon": 6, "num_envs": 4, "minibatch_envs": 2,
                     "epochs": 1})
tr1 = make_train(cfg)
s1, m1 = jit_chunk(tr1)(jax.jit(tr1.init)(jax.random.key(0)), 1)
mesh = dist.make_mesh(2)
tr2 = make_train(cfg, mesh)
s2 = dist.init_sharded(lambda: tr2.init(jax.random.key(0)), mesh, cfg.num_envs)
s2, m2 = jit_chunk(tr2)(s2, 1)
# the attention key bias is left out: softmax is invariant to it, its true gradient is zero and Adam turns the
# float noise of that gradient into lr-sized steps
a = jax.tree_util.tree_flatten_with_path((s1.actor_params, s1.critic_params, s1.env_state))[0]
b = jax.tree.leaves((s2.actor_params, s2.critic_params, s2.env_state))
for (path, x), y in zip(a, b):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if "qkv" in jax.tree_util.keystr(path) and "bias" in jax.tree_util.keystr(path):
        d = x.shape[-1] // 3
        x, y = np.concatenate([x[:d], x[2 * d:]]), np.concatenate([y[:d], y[2 * d:]])
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)
print("OK")
"""


@pytest.mark.slow
def test_paper_v4_transformer_sharded_equals_single_device():
    """transformer-v4 with the env axis split over 2 (fake CPU) devices equals the single-device run."""
    p = subprocess.run([sys.executable, "-c", SHARDED_V4], cwd=ROOT, env=child_env(), capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), p.stderr[-4000:]
