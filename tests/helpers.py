"""Helpers shared by several test modules (one copy each)."""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax import baselines as B
from rl3jax import cli
from rl3jax.config import TrainConfig, preset
from rl3jax.envs.grid import GridWorld
from rl3jax.envs.grid_generation import GridConfig
from rl3jax.envs.grid_geometry import (
    TILE_CHARS,
)
from rl3jax.envs.registry import make_env
from rl3jax.estimators import make_estimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.evaluate import held_out_tasks
from rl3jax.meta_episode import MetaEnv, make_meta_env
from rl3jax.rollout import rollout
from rl3jax.runs.runfiles import read_metrics
from tests.reference import RefConfig, meta_episode_inputs

#: the repository root (the working folder of child processes)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: the suite's persistent compilation cache (shared by the xdist workers and their child processes)
TEST_CACHE_DIR = os.environ.get("RL3JAX_TEST_JAX_CACHE_DIR",
                                os.path.join(os.path.expanduser("~"), ".cache", "rl3jax-test-xla"))
#: its size limit: any limit turns on JAX's file lock around each entry's read and write, without which a process
#: may read an entry another is still writing (a cache written without the lock lacks the access stamps the
#: limit needs, hence the folder's new name)
TEST_CACHE_BYTES = 8 << 30


def child_env(**overrides) -> dict:
    """Environment of a child Python process: this one's, the repository first on PYTHONPATH, the suite's
    persistent compilation cache, JAX_PLATFORMS unset; then ``overrides``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_COMPILATION_CACHE_DIR", TEST_CACHE_DIR)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    env.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(TEST_CACHE_BYTES))  # the cache's file lock (conftest)
    env.pop("JAX_PLATFORMS", None)
    return {**env, **overrides}



def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``rl3jax ARGV`` run in-process (``rl3jax.cli.main``); output captured
    before it is discarded."""
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err

def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- env statistics (envs/test_bandit.py, envs/test_mdp.py)

Z = 5.0  # tolerance in standard errors


def _close(x, expected, se, what):
    assert abs(x - expected) <= Z * se, f"{what}: {x:.5f} vs {expected:.5f} (> {Z} s.e. = {Z * se:.5f})"


def _var_check(samples, mean, var, fourth_central, what):
    """Sample variance around the *known* mean; s.e. = sqrt((μ4 − σ⁴)/n)."""
    d2 = (np.asarray(samples, np.float64) - mean) ** 2
    _close(d2.mean(), var, np.sqrt((fourth_central - var ** 2) / d2.size), what)


@functools.cache
def _step_many(name, variant):
    """jit(vmap over keys) of one task-env step from a given state: the sampling distribution of a step."""
    env = make_env(name, variant)
    return env, jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))


# --- the small grid and sampled grids (envs/, estimators/test_grid.py, test_meta_episode.py)

# (conftest.py lowers XLA's optimisation level for the suite: compile time dominates these short runs)
fast_jit = jax.jit


SAMPLES = 64


def to_codes(rows: list[str]) -> jnp.ndarray:
    return jnp.asarray([[TILE_CHARS.index(ch) for ch in row] for row in rows], jnp.int8)


def config(env: GridWorld) -> dict:
    return {k: getattr(env.config, k) for k in ("size", "num_obstacle_sets", "obstacle_len", "num_water_sets",
                                                "water_len", "num_dangers", "min_goal_dist", "slip")}


def grid_estimator(env: GridWorld, abstraction=None, mode="fresh"):
    """The family's estimator as training builds it (``make_estimator``) for H = the env's horizon."""
    cfg = TrainConfig(env="grid13", algo="rl3_coarse" if abstraction == "coarse" else "rl3",
                      semantics="rlc" if mode == "entered" else "fresh", horizon=env.horizon)
    return make_estimator(env, cfg)


# A 7x7 grid with every tile type next to the start (centre (3, 3)), obstacles and edges.
SMALL = ["O  W  G",
         " !    O",
         "!X!OW  ",
         " !WS   ",
         "   W O ",
         "O     X",
         " G  OO!"]


def small_env(slip=0.2):
    return GridWorld(GridConfig(size=7, num_obstacle_sets=2, obstacle_len=2, num_water_sets=1, water_len=2,
                                num_dangers=1, min_goal_dist=3, slip=slip), horizon=300)


def small_task(slip=0.2):
    env = small_env(slip)
    return env, env._task(to_codes(SMALL), 0.0)


@functools.cache
def sampled(family: str, variant: str):
    env = make_env(family, variant)
    tasks, draws = fast_jit(jax.vmap(env.sample_task_with_draws))(
        jax.random.split(jax.random.key(7), SAMPLES))
    return env, jax.tree.map(np.asarray, tasks), np.asarray(draws)


# --- paper-v4 presets through the driver

def _tiny(name, **kw):
    return TrainConfig(**{**preset(name), **kw, "iters": 2, "horizon": 10, "num_envs": 8, "minibatch_envs": 4,
                          "epochs": 1, "chunk_iters": 1, "checkpoint_every": 1})


# --- tiny training runs

TINY = dict(horizon=8, num_envs=16, minibatch_envs=4, epochs=2, model="gru", chunk_iters=2,
            checkpoint_every=2)


def _metrics_rows(path):
    rows = read_metrics(path)
    for r in rows:
        r.pop("steps_per_second")
    return rows


# --- meta-episode against the NumPy reference (tests/reference.py)

ATOL = 1e-5


_ROLLOUTS: dict = {}


def _cached_rollout(env_key, env, est, horizon):
    """One compiled rollout per (family, variant, estimator, H): compiles dominate the test time on CPU."""
    key = (env_key, est, horizon)
    if key not in _ROLLOUTS:
        menv = MetaEnv(env, horizon, est)
        _ROLLOUTS[key] = (menv, _rollout_fn(menv, horizon))
    return _ROLLOUTS[key]


def _rollout_fn(menv: MetaEnv, horizon: int):
    """jit(vmap) over tasks: (key, task, actions (H,)) -> obs (H+1, m) and per-step records."""
    env = menv.env

    def one(key, task, actions):
        k_reset, k_run = jax.random.split(key)
        obs0, st = menv.reset(k_reset, task)
        start = env.state_index(st.env_state, task)

        def body(st, xs):
            k, a = xs
            s = env.state_index(st.env_state, task)
            # re-step the task env exactly as MetaEnv does, to see s' before any reset
            k_step, _ = jax.random.split(k)
            _, env_st, r_env, term, _ = env.step_env(k_step, st.env_state, a, task)
            s_next = env.state_index(env_st, task)
            obs, st2, r, done, info = menv.step(k, st, a, task)
            rec = dict(obs=obs, s=s, a=a, r=r, r_env=jnp.asarray(r_env, jnp.float32), s_next=s_next,
                       term=jnp.asarray(term, bool), done=done, ret=st2.episode_return,
                       over=info["task_episode_over"],
                       sweeps=st2.est.sweeps if st2.est is not None else jnp.int32(0))
            return st2, rec

        keys = jax.random.split(k_run, horizon)
        _, rec = jax.lax.scan(body, st, (keys, actions))
        rec["obs"] = jnp.concatenate([obs0[None], rec["obs"]], axis=0)
        rec["start"] = start
        return rec

    return jax.jit(jax.vmap(one))


def _mixed_tasks(task_pool, family, num_tasks, seed):
    """Tasks from every variant of the family in equal shares (train first): a seed-dependent slice of the
    session's task pool (conftest), where each variant's tasks come from its own ``sample_task``.

    A variant only changes ``sample_task`` (the dynamics read everything from the task), so one compiled
    rollout of the family runs all its variants; that keeps the number of slow XLA compiles down.
    """
    pool = task_pool(family)
    envs = [make_env(family, v) for v in pool]
    assert all(type(e).step_env is type(envs[0]).step_env for e in envs)  # same dynamics code
    m = num_tasks // len(pool)
    assert m * len(pool) == num_tasks
    start = 7 * seed
    return jax.tree.map(lambda *xs: jnp.concatenate([x[start:start + m] for x in xs]), *pool.values())


def _task_obs_fn(num_states):
    return lambda s: np.eye(num_states)[s]


def _ref_cfg(q: QEstimator) -> RefConfig:
    return RefConfig(num_states=q.num_states, num_actions=q.num_actions, gamma=q.gamma, alpha=q.alpha_laplace,
                     epsilon=q.epsilon, max_sweeps=q.max_sweeps, warm_start=q.warm_start, mode=q.mode,
                     std_errors=q.std_errors, q_denom=q.q_denom, known_states=q.known_states)


def _run_and_compare(env, est: QEstimator | None, *, horizon, num_tasks, seed, tasks):
    menv, rollout = _cached_rollout(env.name, env, est, horizon)
    key = jax.random.PRNGKey(seed)
    k_act, k_run = jax.random.split(key)
    actions = jax.random.randint(k_act, (num_tasks, horizon), 0, env.num_actions)
    rec = jax.device_get(rollout(jax.random.split(k_run, num_tasks), tasks, actions))
    th = env.default_params.max_steps_in_episode
    assert rec["obs"].shape == (num_tasks, horizon + 1, menv.obs_dim)
    ref_cfg = _ref_cfg(est) if est is not None else None
    all_inputs, all_sweeps = [], []
    for i in range(num_tasks):
        # the recorded transition must be the one MetaEnv took
        np.testing.assert_allclose(rec["r"][i], rec["r_env"][i], atol=ATOL)
        transitions = [(int(rec["s"][i, t]), int(rec["a"][i, t]), float(rec["r_env"][i, t]),
                        int(rec["s_next"][i, t]), bool(rec["term"][i, t])) for t in range(horizon)]
        sweeps = []
        inputs, rewards, ret = meta_episode_inputs(
            int(rec["start"][i]), transitions, horizon=horizon, task_horizon=th, num_actions=env.num_actions,
            task_obs=_task_obs_fn(env.num_states), estimator_cfg=ref_cfg, sweeps_out=sweeps)
        np.testing.assert_allclose(rec["obs"][i], inputs, atol=ATOL, rtol=0,
                                   err_msg=f"task {i}: policy inputs differ from the reference")
        np.testing.assert_allclose(rec["r"][i], rewards, atol=ATOL)
        # return = running sum of rewards; only step H is terminal for the outer learner
        np.testing.assert_allclose(rec["ret"][i], np.cumsum(rewards), atol=1e-4)
        np.testing.assert_allclose(rec["ret"][i, -1], ret, atol=1e-4)
        assert list(rec["done"][i]) == [False] * (horizon - 1) + [True]
        # task-episode boundaries: terminal flag or TH steps
        tau, over = 0, []
        for t in range(horizon):
            tau += 1
            over.append(bool(rec["term"][i, t]) or tau >= th)
            tau = 0 if over[-1] else tau
        assert list(rec["over"][i]) == over
        if est is not None:  # same number of value-iteration sweeps (stop rule of METHOD §2.2)
            assert list(rec["sweeps"][i]) == sweeps, f"task {i}: sweeps {list(rec['sweeps'][i])} vs {sweeps}"
        all_inputs.append(inputs)
        all_sweeps.append(sweeps)
    rec["ref_sweeps"] = np.array(all_sweeps)
    return menv, rec, np.stack(all_inputs)


# --- the population config

CFG = TrainConfig(env="mdp", algo="rl3", model="markov", horizon=8, num_envs=8, minibatch_envs=4, epochs=1,
                  iters=2, chunk_iters=1, checkpoint_every=1, seed=10)


# --- baselines on held-out tasks

BANDIT_H, BANDIT_N = 10, 400


MDP_H, MDP_N = 40, 200


BANDIT_POLICIES = ("greedy", "epsilon-greedy", "ucb", "thompson", "gittins", "bayes-optimal", "model-greedy",
                   "model-epsilon-greedy")


MDP_POLICIES = ("psrl", "map-greedy", "model-greedy")  # the default suite; opsrl, model-epsilon-greedy: @slow


MDP_SLOW_POLICIES = ("opsrl", "model-epsilon-greedy", "beb", "mbie-eb", "rmax")


@functools.cache
def _meta(env: str, horizon: int, variant: str = "train"):
    return make_meta_env(TrainConfig(env=env, variant=variant, horizon=horizon, algo="rl2"))


@functools.cache
def _run(env: str, horizon: int, name: str, num: int, params: tuple = ()):
    """One meta-episode of baseline ``name`` on each of the first ``num`` held-out tasks, through the harness's
    rollout (as ``evaluate`` runs it). Returns (actions (N,H), rewards (N,H), obs (N,H,m), tasks) as NumPy."""
    menv, consts, build = B.make_policy(name, _meta(env, horizon), dict(params))
    tasks = held_out_tasks(menv, num)

    def go(consts, tasks, key):
        k_pol, k_roll = jax.random.split(key)
        step, carry = build(consts, tasks, k_pol)
        traj, _ = rollout(menv, step, carry, tasks, k_roll, greedy=name == "oracle")
        return traj.actions, traj.rewards, traj.obs

    a, r, o = jax.jit(go)(consts, tasks, jax.random.key(11))
    return np.asarray(a), np.asarray(r), np.asarray(o), jax.device_get(tasks)


# ------------------------------------------------------------------------------------- orderings
def _paired(a, b):
    """Mean and standard error of the per-task difference a − b (same held-out tasks)."""
    d = a.sum(1) - b.sum(1)
    return d.mean(), d.std(ddof=1) / math.sqrt(len(d))


# --- with and without jit (chex.variants): the same function, jitted and eager, gives the same values


def step_env_steps(step, env, seed=0, steps=8):
    """``(obs, reward, done)`` of ``steps`` steps of one task of ``env``, each by ``step`` (``env.step_env`` as
    given by ``chex.TestCase.variant``), the actions cycling through the action set."""
    key = jax.random.key(seed)
    task = env.sample_task(key)
    _, state = env.reset_env(key, task)
    out = []
    for t in range(steps):
        obs, state, reward, done, _ = step(jax.random.fold_in(key, t), state, jnp.int32(t % env.num_actions), task)
        out.append((obs, reward, done))
    return out


def estimator_features(update, features, est, env, seed=0, steps=8):
    """The estimator's features after each of ``steps`` transitions of one task of ``env`` (stepped eagerly,
    actions cycling), by ``update`` then ``features`` (``est.update`` and ``est.features`` as given by
    ``chex.TestCase.variant``)."""
    key = jax.random.key(seed)
    task = env.sample_task(key)
    _, state = env.reset_env(key, task)
    e, out = est.init(env.state_index(state, task)), []
    for t in range(steps):
        s, a = env.state_index(state, task), jnp.int32(t % env.num_actions)
        _, state, reward, done, _ = env.step_env(jax.random.fold_in(key, t), state, a, task)
        s_next = env.state_index(state, task)
        e = update(e, s, a, reward, s_next, done)
        out.append(features(e, s_next))
    return out
