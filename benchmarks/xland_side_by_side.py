"""Side by side (issue 20, item 5): xland-minigrid's own RL² trainer against ``rl3jax train --algo rl2 --model gru``
on the same work, env-steps/s after compilation, interleaved, written as JSON and a markdown table.

xland-minigrid's ``training/train_meta_task.py`` runs as it is, from a snapshot of its repository kept outside this
project (nothing of it is copied here), with its own Python (a venv with its requirements: pyrallis, distrax,
wandb, optax, orbax-checkpoint, xminigrid), wandb disabled through ``WANDB_MODE``. Its benchmark file is not
downloaded: the rule sets of ``rl3jax.envs.xland``'s training variant (the trivial preset, generated here) are
written in its file format into a folder given to it as ``XLAND_MINIGRID_DATA`` under the name of
``trivial-21k``. Matched: env id (XLand-MiniGrid-R1-9x9), rule-set preset, parallel envs N, rollout length =
meta-episode length H (its ``num_steps_per_env`` = ``num_steps_per_update`` = H: one PPO update per meta-episode
over whole sequences, as rl3jax), epochs, minibatches (rl3jax: N / minibatches whole sequences each), one GRU
layer of 256 units (rl3jax's ``GRU_HIDDEN``), its heads' hidden layer 64 (rl3jax's ``D_MODEL``). Its per-update
evaluation is switched off (``eval_num_envs`` 1, ``eval_num_episodes`` 0: one reset, no step), and rl3jax's KL
early stop (``target_kl`` 1e10: every epoch runs) and held-out evaluations (``eval_every`` 0). What still
differs in work per step is counted in ``work_per_step`` (multiply-adds per env step of each agent and iteration).

    .venv/bin/python benchmarks/xland_side_by_side.py --quick          # smoke run (minutes, loaded CPU)
    .venv/bin/python benchmarks/xland_side_by_side.py                  # the run for BENCHMARKS.md (quiet machine)

Steps/s: xland-minigrid's from its own "Training... Done in T s" (compiled before, ``lower().compile()``) over its
updates × N × H steps; rl3jax's the ``steps_per_second`` of its metrics rows after the first (which includes the
compilation), their median.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import pickle
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rl3jax.outputs import atomic_write, atomic_write_json  # noqa: E402

HIDDEN, HEAD = 256, 64  # rl3jax's GRU_HIDDEN and D_MODEL (rl3jax.networks)


def work_per_step(obs_dim: int, epochs: int, actions: int = 6) -> dict:
    """Multiply-adds per env step: ``forward`` one step of each agent, ``iteration`` all of one PPO iteration per
    env step (a backward pass counted as two forwards). rl3jax (rl2, gru): actor and critic, each Dense(obs_dim→64)
    → GRUCell(256) → Dense(n | 1); an iteration runs the actor in the rollout, the critic over the batch, and per
    epoch actor and critic forward + backward plus the actor's full-batch KL pass. xland-minigrid
    (ActorCriticRNN, img_obs False): embeddings 5×5×(16+16) → Conv 2×2 16, 32, 64 (valid) → 256, direction
    Dense(4→16), action embedding 16, reward 1 → one shared GRU(256) → actor and critic heads Dense(256→64) tanh →
    Dense(n | 1); an iteration runs it in the rollout and forward + backward per epoch."""
    gru = lambda i, h: 3 * h * i + 3 * h * h  # noqa: E731
    actor, critic = (obs_dim * HEAD + gru(HEAD, HIDDEN) + HIDDEN * k for k in (actions, 1))
    conv = 16 * 4 * 32 * 16 + 9 * 4 * 16 * 32 + 4 * 4 * 32 * 64
    shared = conv + 4 * 16 + gru(256 + 16 + 16 + 1, HIDDEN) + 2 * HIDDEN * HEAD + HEAD * (actions + 1)
    ours, theirs = actor + critic + epochs * (4 * actor + 3 * critic), shared * (1 + 3 * epochs)
    return {"forward": {"rl3jax": actor + critic, "xland_minigrid": shared},
            "iteration": {"rl3jax": ours, "xland_minigrid": theirs}, "ratio_iteration": ours / theirs}


def write_peer_benchmark(folder: str) -> None:
    """rl3jax's xland 'train' rule sets (training + held-out) as xland-minigrid's trivial-21k file."""
    from rl3jax.envs.xland import NUM_TEST, NUM_TRAIN, SEED
    from rl3jax.envs.xland_rulesets import rulesets
    train, test = rulesets("trivial", SEED, NUM_TRAIN, NUM_TEST)
    import numpy as np
    with bz2.open(os.path.join(folder, "trivial_21k"), "wb") as f:
        pickle.dump({k: np.concatenate([train[k], test[k]]) for k in train}, f)


def run_peer(a, data: str) -> dict:
    cmd = [a.peer_python, "train_meta_task.py", "--env_id", "XLand-MiniGrid-R1-9x9", "--benchmark_id", "trivial-21k",
           "--num_envs", str(a.num_envs), "--num_steps_per_env", str(a.horizon), "--num_steps_per_update",
           str(a.horizon), "--update_epochs", str(a.epochs), "--num_minibatches", str(a.minibatches),
           "--total_timesteps", str(a.num_envs * a.horizon * a.updates), "--rnn_hidden_dim", str(HIDDEN),
           "--rnn_num_layers", "1", "--head_hidden_dim", str(HEAD), "--eval_num_envs", "1", "--eval_num_episodes", "0"]
    env = {**os.environ, "WANDB_MODE": "disabled", "XLAND_MINIGRID_DATA": data, "JAX_PLATFORMS": a.platform}
    t = time.time()
    out = subprocess.run(cmd, cwd=os.path.join(a.peer_repo, "training"), env=env, capture_output=True, text=True)
    done = [float(x) for x in re.findall(r"Done in ([0-9.]+)s", out.stdout)]
    if out.returncode or len(done) < 2:
        raise RuntimeError(f"xland-minigrid's trainer failed ({out.returncode}): {out.stderr[-2000:]}")
    steps = a.num_envs * a.horizon * a.updates
    return {"compile_s": done[0], "train_s": done[1], "steps": steps, "steps_per_s": steps / done[1],
            "wall_s": time.time() - t}


def run_ours(a, cache: str) -> dict:
    out_dir = tempfile.mkdtemp(prefix="xland-sbs-")
    cmd = [sys.executable, "-m", "rl3jax", "train", "--env", "xland", "--algo", "rl2", "--model", "gru",
           "--horizon", str(a.horizon), "--num-envs", str(a.num_envs),
           "--minibatch-envs", str(a.num_envs // a.minibatches), "--iters", str(a.updates + 1), "--out", out_dir,
           "--no-progress", "--set", f"epochs={a.epochs}", "--set", "target_kl=1e10", "--set", "eval_every=0",
           "--set", "chunk_iters=1"]
    env = {**os.environ, "RL3JAX_XLAND_CACHE": cache, "JAX_PLATFORMS": a.platform}
    t = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"rl3jax train failed ({out.returncode}): {out.stderr[-2000:]}")
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    sps = [r["steps_per_second"] for r in rows[1:]]
    return {"steps_per_s": statistics.median(sps), "per_iteration": sps, "steps": a.num_envs * a.horizon * a.updates,
            "wall_s": time.time() - t, "run": out_dir}


def versions(a) -> dict:
    peer = subprocess.run([a.peer_python, "-c", "import jax, flax, xminigrid; print(jax.__version__, "
                           "flax.__version__, xminigrid.__version__)"], capture_output=True, text=True).stdout.split()
    import jax
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    return {"rl3jax_commit": git.strip(), "jax": jax.__version__, "peer_jax_flax_xminigrid": peer,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "device": str(jax.devices()[0]) if a.platform != "cpu" else "cpu"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-repo", default="/work/peers/xland", help="a work tree of xland-minigrid's repository")
    p.add_argument("--peer-python", default="/work/peers/xland/.venv310/bin/python",
                   help="its Python: a Python 3.10 venv with its uv.lock (Python >= 3.11 refuses its training/utils.py)")
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--horizon", type=int, default=256, help="meta-episode = rollout length H")
    p.add_argument("--updates", type=int, default=5, help="PPO updates timed (after one for compiling, rl3jax)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--minibatches", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each runs both, alternating order)")
    p.add_argument("--platform", default="cpu", help="JAX_PLATFORMS of both (cpu, cuda)")
    p.add_argument("--quick", action="store_true", help="smoke run: N=64, H=64, 2 updates, 1 round")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "xland", "side_by_side"))
    a = p.parse_args(argv)
    if a.quick:
        a.num_envs, a.horizon, a.updates, a.rounds, a.minibatches = 64, 64, 2, 1, 4
    if a.num_envs % a.minibatches:
        p.error(f"--num-envs {a.num_envs} must be a multiple of --minibatches {a.minibatches}")
    cache, data = tempfile.mkdtemp(prefix="xland-cache-"), tempfile.mkdtemp(prefix="xland-data-")
    os.environ["RL3JAX_XLAND_CACHE"] = cache
    write_peer_benchmark(data)
    rows = []
    for r in range(a.rounds):
        for side in (("peer", "ours") if r % 2 == 0 else ("ours", "peer")):
            res = run_peer(a, data) if side == "peer" else run_ours(a, cache)
            rows.append({"round": r, "side": side, **res})
            print(f"round {r} {side}: {res['steps_per_s']:,.0f} env-steps/s", flush=True)
    med = {s: statistics.median(x["steps_per_s"] for x in rows if x["side"] == s) for s in ("peer", "ours")}
    settings = {k: getattr(a, k) for k in ("num_envs", "horizon", "updates", "epochs", "minibatches", "rounds",
                                           "platform")}
    work = work_per_step(obs_dim=639, epochs=a.epochs)
    result = {"settings": settings, "versions": versions(a), "rows": rows, "median_steps_per_s": med,
              "ratio_ours_over_peer": med["ours"] / med["peer"], "work_per_step_macs": work}
    os.makedirs(a.out, exist_ok=True)
    atomic_write_json(os.path.join(a.out, "side_by_side.json"), result)
    atomic_write(os.path.join(a.out, "side_by_side.md"), "\n".join([
        f"Settings: {json.dumps(settings)}; versions: {json.dumps(result['versions'])}", "",
        "| trainer | env-steps/s after compile (median of rounds) | MACs per env step: forward / whole iteration |",
        "|---|---|---|",
        f"| xland-minigrid train_meta_task.py | {med['peer']:,.0f} | {work['forward']['xland_minigrid']:,} / "
        f"{work['iteration']['xland_minigrid']:,} |",
        f"| rl3jax train --algo rl2 --model gru | {med['ours']:,.0f} | {work['forward']['rl3jax']:,} / "
        f"{work['iteration']['rl3jax']:,} |",
        f"| ratio rl3jax / xland-minigrid | {med['ours'] / med['peer']:.2f} | {work['ratio_iteration']:.2f} |", ""]))
    print(f"rl3jax / xland-minigrid = {med['ours'] / med['peer']:.2f} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
