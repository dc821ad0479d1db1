"""Shared torso against separate actor and critic networks (``TrainConfig.shared_torso``; METHOD §4-§5) on the
laptop presets: held-out return at equal env steps and at equal CPU time.

For each env (cpu-bandit, cpu-mdp), agent (RL³ Markov, the preset's; RL² GRU, its RL² twin) and seed, both
variants train with the preset's settings (``--iters`` overrides its length); every ``--eval-every``
iterations the stochastic policy is evaluated on the first ``--episodes`` held-out tasks (evaluation time is
not counted). CPU time is this process's (all threads) spent in training chunks after compilation; compile
seconds are shown beside. Writes ``OUT/shared_torso.json`` (every curve point) and ``OUT/shared_torso.md``:

- equal env steps: each variant's held-out return after the last iteration;
- equal CPU time: each variant's return at its last evaluation within the smaller of the two runs' CPU totals.

    .venv/bin/python scripts/shared_torso.py --out /tmp/shared_torso                  # the full comparison
    .venv/bin/python scripts/shared_torso.py --tiny --out /tmp/shared_torso_smoke     # a smoke run (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

from rl3jax.config import TrainConfig, preset
from rl3jax.evaluate import HeldOutEvaluator
from rl3jax.trainer import jit_chunk, make_train

AGENTS = {"rl3-markov": {"algo": "rl3", "model": "markov"}, "rl2-gru": {"algo": "rl2", "model": "gru"}}


def run_one(cfg: TrainConfig, eval_every: int, episodes: int) -> dict:
    """One training run: compile seconds and the curve [{iteration, env_steps, cpu_s, wall_s, return, stderr}]."""
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(cfg.seed))
    chunk = jit_chunk(trainer)
    t = time.perf_counter()
    compiled = chunk.lower(state, 1).compile()
    compile_s = time.perf_counter() - t
    evaluator = HeldOutEvaluator(trainer.meta_env, trainer.actor, episodes)
    cpu = wall = 0.0
    curve = []
    for it in range(1, cfg.iters + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        state, _ = compiled(state)
        jax.block_until_ready(state)
        cpu, wall = cpu + time.process_time() - c0, wall + time.perf_counter() - w0
        if it % eval_every == 0 or it == cfg.iters:
            ev = evaluator(state.actor_params, False)
            curve.append({"iteration": it, "env_steps": it * cfg.batch_steps, "cpu_s": cpu, "wall_s": wall,
                          "return": ev["mean_return"], "stderr": ev["stderr"]})
    return {"compile_s": compile_s, "curve": curve}


def at_cpu(curve: list[dict], budget: float) -> dict:
    """The last evaluation of ``curve`` within ``budget`` CPU seconds (the first one if none is)."""
    within = [p for p in curve if p["cpu_s"] <= budget + 1e-9]
    return within[-1] if within else curve[0]


def table(results: list[dict]) -> str:
    """Markdown rows per (env, agent, seed): both variants at equal env steps and at equal CPU time."""
    lines = ["| env | agent | seed | variant | compile s | train CPU s | env steps/CPU s | return at equal steps "
             "| return at equal CPU time (CPU s) |", "|" + "---|" * 9]
    keys = sorted({(r["env"], r["agent"], r["seed"]) for r in results})
    for env, agent, seed in keys:
        pair = {r["shared_torso"]: r for r in results if (r["env"], r["agent"], r["seed"]) == (env, agent, seed)}
        if len(pair) != 2:
            continue
        budget = min(r["curve"][-1]["cpu_s"] for r in pair.values())
        for shared, r in sorted(pair.items()):
            last, eq = r["curve"][-1], at_cpu(r["curve"], budget)
            lines.append(f"| {env} | {agent} | {seed} | {'shared' if shared else 'separate'} | {r['compile_s']:.1f} "
                         f"| {last['cpu_s']:.1f} | {last['env_steps'] / last['cpu_s']:,.0f} "
                         f"| {last['return']:.2f} ± {last['stderr']:.2f} "
                         f"| {eq['return']:.2f} ± {eq['stderr']:.2f} ({eq['cpu_s']:.1f}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--envs", default="bandit,mdp")
    ap.add_argument("--agents", default=",".join(AGENTS), help=f"comma-separated, of {', '.join(AGENTS)}")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=None, help="PPO iterations (default: the preset's)")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--tiny", action="store_true", help="smoke run: H = 20, 32 envs, 3 iterations, 1 seed")
    args = ap.parse_args(argv)
    unknown = set(args.agents.split(",")) - set(AGENTS)
    if unknown:
        ap.error(f"--agents: unknown {', '.join(sorted(unknown))}; valid: {', '.join(AGENTS)}")
    os.makedirs(args.out, exist_ok=True)
    results = []
    for env in args.envs.split(","):
        for agent in args.agents.split(","):
            for seed in range(1 if args.tiny else args.seeds):
                for shared in (False, True):
                    given = {**AGENTS[agent], "shared_torso": shared, "seed": seed}
                    if args.tiny:
                        given |= {"horizon": 20, "num_envs": 32, "minibatch_envs": 8, "iters": 3}
                    elif args.iters:
                        given["iters"] = args.iters
                    cfg = TrainConfig(**preset(f"cpu-{env}", given))
                    eval_every = 1 if args.tiny else args.eval_every
                    r = run_one(cfg, eval_every, 50 if args.tiny else args.episodes)
                    results.append({"env": env, "agent": agent, "seed": seed, "shared_torso": shared,
                                    "config": cfg.to_dict(), **r})
                    last = r["curve"][-1]
                    print(f"{env} {agent} seed {seed} {'shared' if shared else 'separate'}: return "
                          f"{last['return']:.2f} ± {last['stderr']:.2f} after {last['env_steps']:,} steps, "
                          f"{last['cpu_s']:.1f} CPU s (+{r['compile_s']:.1f} s compile)", flush=True)
    with open(os.path.join(args.out, "shared_torso.json"), "w") as f:
        json.dump({"device": jax.devices()[0].device_kind, "results": results}, f, indent=1)
    md = table(results)
    with open(os.path.join(args.out, "shared_torso.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
