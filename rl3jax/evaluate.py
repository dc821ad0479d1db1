"""Evaluation of a trained actor or a ``rl3jax.baselines`` policy on fixed held-out test tasks (``TEST_SEED``):
one meta-episode per task, mean return ± standard error."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import numpy as np

from rl3jax.baselines import BASELINES, IntractableError, baseline_names, check_fits, make_policy, validate_params
from rl3jax.config import TrainConfig
from rl3jax.memory import check_eval_memory
from rl3jax.meta_episode import MetaEnv, make_meta_env
from rl3jax.rollout import EVAL_BATCH, rollout

TEST_SEED = 2_147_480_000  # far from any training seed; tasks are a pure function of (env, variant, index)


def held_out_tasks(meta_env: MetaEnv, num: int):
    """The first ``num`` held-out test tasks of a family (the same for every run and policy): a task pytree
    with leading axis ``num``, drawn (``sample_test_task``) from ``fold_in(key(TEST_SEED), stable hash of the env's
    name)``."""
    h = 0
    for ch in meta_env.env.name.encode():
        h = (h * 131 + ch) % 1_000_003
    key = jax.random.fold_in(jax.random.key(TEST_SEED), h)
    return jax.vmap(meta_env.env.sample_test_task)(jax.random.split(key, num))


def evaluate(meta_env: MetaEnv, policy: str, episodes: int, greedy: bool = False, params=None, model=None,
             batch: int = EVAL_BATCH, policy_params: dict | None = None) -> dict:
    """``summarize`` of the first ``episodes`` test tasks (one meta-episode each) played by ``policy``: "network"
    (``params`` and ``model`` of a trained actor; ``greedy``: argmax actions) or a baseline with its
    ``policy_params`` (``make_policy``); ``batch``: tasks per jitted call. ValueError for a policy that does not
    fit the family, an unknown parameter or a bad value."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if policy == "network":
        if policy_params:
            raise ValueError(f"policy 'network' takes no parameters, got {sorted(policy_params)}")
        return summarize(HeldOutEvaluator(meta_env, model, episodes, batch).rewards(params, greedy))
    meta_env, consts, build = make_policy(policy, meta_env, policy_params)

    def run(consts, tasks, key):
        k_pol, k_roll = jax.random.split(key)
        step, carry = build(consts, tasks, k_pol)
        traj, _ = rollout(meta_env, step, carry, tasks, k_roll, greedy=greedy or policy == "oracle")
        return traj.rewards

    return summarize(batched_rewards(jax.jit(run), consts, held_out_tasks(meta_env, episodes), episodes, batch))


def batched_rewards(run, consts, all_tasks, episodes: int, batch: int) -> np.ndarray:
    """``run(consts, tasks, key) -> rewards (B, H)`` over ``all_tasks`` in batches of ``batch`` tasks, batch i
    with the key ``fold_in(fold_in(key(TEST_SEED + 1), 0), i)``; returns the rewards, shape (episodes, H)."""
    key = jax.random.fold_in(jax.random.key(TEST_SEED + 1), 0)
    out = []
    for i, start in enumerate(range(0, episodes, batch)):
        tasks = jax.tree.map(lambda x, start=start: x[start:start + batch], all_tasks)
        out.append(np.asarray(run(consts, tasks, jax.random.fold_in(key, i))))
    return np.concatenate(out)


def summarize(rewards: np.ndarray) -> dict:
    """{"mean_return", "stderr" (std/√n, NaN for one task), "episodes", "step_rewards"} of per-step rewards of
    shape (episodes, H); "step_rewards" is the mean reward at each step t over the tasks (the adaptation curve)."""
    r = rewards.sum(axis=1)
    return {"mean_return": float(r.mean()),
            "stderr": float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"),
            "episodes": int(len(r)), "step_rewards": rewards.mean(axis=0)}


class HeldOutEvaluator:
    """A trained actor on the first ``episodes`` held-out tasks, compiled once per (batch shape, greedy)
    (``traces`` counts them); the parameters are an argument."""

    def __init__(self, meta_env, actor, episodes: int, batch: int = EVAL_BATCH):
        self.episodes, self.batch = int(episodes), int(batch)
        self.tasks = held_out_tasks(meta_env, self.episodes)
        self.traces = 0

        def run(params, tasks, key, greedy):
            self.traces += 1
            carry = actor.initial_carry(jax.tree.leaves(tasks)[0].shape[0])
            step = lambda c, o, _: actor.step(params, c, o)  # noqa: E731  (reads only the policy input)
            return rollout(meta_env, step, carry, tasks, key, greedy=greedy)[0].rewards

        self._run = jax.jit(run, static_argnums=3)

    def rewards(self, actor_params, greedy: bool) -> np.ndarray:
        """(episodes, H) float32 per-step rewards of the actor (``greedy``: argmax actions)."""
        params = jax.device_get(actor_params)  # host copy: independent of the training state's sharding
        run = lambda p, tasks, key: self._run(p, tasks, key, bool(greedy))  # noqa: E731
        return batched_rewards(run, params, self.tasks, self.episodes, self.batch)

    def __call__(self, actor_params, greedy: bool) -> dict:
        """``summarize`` of the actor's rewards (``greedy``: argmax actions)."""
        return summarize(self.rewards(actor_params, greedy))

    def row_fields(self, actor_params) -> dict:
        """The metrics-row fields of one evaluation: stochastic and greedy held-out mean return ± s.e."""
        s, g = self(actor_params, False), self(actor_params, True)
        return {"eval_return": s["mean_return"], "eval_stderr": s["stderr"], "eval_return_greedy": g["mean_return"],
                "eval_stderr_greedy": g["stderr"], "eval_episodes": s["episodes"]}


def evaluate_baseline(cfg: TrainConfig, policy: str, episodes: int, items: list[str]) -> tuple[dict, dict]:
    """``rl3jax eval --policy``: (``evaluate``'s result, the validated params) of baseline ``policy`` with its
    ``--param KEY=VALUE`` ``items``. ValueError before any work: an unknown name or parameter, a family it does
    not fit, tasks that do not fit in memory."""
    validate_params(policy, None)  # an unknown name first: the error lists the valid ones
    meta_env = make_meta_env(cfg)
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"--param expects KEY=VALUE, got {bad[0]!r}")
    params = validate_params(policy, {k.strip(): v.strip() for k, v in (item.split("=", 1) for item in items)},
                             meta_env.env.family)
    check_fits(policy, meta_env)
    check_eval_memory(meta_env, episodes)
    return evaluate(meta_env, policy, episodes, policy_params=params), params


def baselines_table(rows: list[dict]) -> str:
    """``run_baselines``' rows as the text table of ``rl3jax baselines``."""
    lines = [f"{'policy':22s} {'mean':>9s}   {'s.e.':>6s} {'normalised':>10s} {'seconds':>8s}  parameters"]
    for r in rows:
        norm = "" if r["normalised"] is None else f"{r['normalised']:.3f}"
        shown = " ".join(f"{k}={v:g}" for k, v in (r.get("params") or {}).items())
        lines.append(f"{r['policy']:22s} skipped: {r['skipped']}" if r.get("skipped") else
                     f"{r['policy']:22s} {r['mean_return']:9.2f} ± {r['stderr']:6.2f} {norm:>10s} {r['seconds']:8.1f}"
                     f"  {shown}".rstrip())
    return "\n".join(lines)


def run_baselines(env: str, variant: str | None, horizon: int, episodes: int, names: list[str] | None = None,
                  batch: int = EVAL_BATCH, progress: Callable[[dict], None] | None = None, known: dict | None = None):
    """Baselines on the first ``episodes`` held-out tasks of ``env``/``variant`` at H=``horizon``: ``names`` (a
    ValueError for one that does not fit or is intractable) or every one that fits (one intractable at this H is
    skipped); ``known``: {policy: result} taken instead of evaluating. One row per policy, in registry order:
    {"policy", "mean_return", "stderr", "episodes", "step_rewards" (H floats), "params", "actions", "skipped"
    (None, or why), "seconds" (incl. compile), "source", "normalised"}; ``progress(row)`` after each."""
    meta_env = make_meta_env(TrainConfig(env=env, variant=variant or "train", horizon=horizon, algo="rl2"))
    for n in names or []:
        check_fits(n, meta_env)
    rows = []
    for name in [n for n in BASELINES if n in (baseline_names(meta_env) if names is None else names)]:
        t0 = time.perf_counter()
        row = {"policy": name, "mean_return": None, "stderr": None, "episodes": 0, "step_rewards": None,
               "params": validate_params(name, None, meta_env.env.family), "actions": BASELINES[name].actions, "skipped": None,
               "source": "evaluated"}
        try:
            res = (known or {}).get(name) or evaluate(meta_env, name, episodes, batch=batch)
            row.update({k: res[k] for k in ("mean_return", "stderr", "episodes", "step_rewards")},
                       source=res.get("source", "evaluated"))
            row["step_rewards"] = None if res["step_rewards"] is None else [float(x) for x in res["step_rewards"]]
        except IntractableError as e:
            if names is not None:
                raise
            row["skipped"] = str(e)
        rows.append({**row, "seconds": time.perf_counter() - t0})
        if progress:
            progress(rows[-1])
    ref = {r["policy"]: r["mean_return"] for r in rows if r["skipped"] is None}
    for r in rows:
        r["normalised"] = normalise(r["mean_return"], ref)
    return rows


def normalise(x: float | None, ref: dict) -> float | None:
    """(x − random) / (oracle − random); None without both references."""
    lo, hi = ref.get("random"), ref.get("oracle")
    if x is None or lo is None or hi is None or hi == lo or not math.isfinite(x):
        return None
    return (x - lo) / (hi - lo)
