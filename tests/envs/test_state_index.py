"""State indexes (issue 18, item 3): the gymnax envs whose state is plainly discrete, a user's family through
``registry.register(..., state_index=...)``, RL²'s extra state input (``state_obs``) and the refusals."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs import catalog
from rl3jax.envs.base import DISCOVERY_DEFAULTS
from rl3jax.envs.catalog import GYMNAX_ENVS
from rl3jax.envs.registry import make_env, spec_of
from rl3jax.evaluate import evaluate
from rl3jax.meta_episode import MetaEnv, make_meta_env
from rl3jax.rollout import sample_tasks
from rl3jax.trainer import jit_chunk, make_train
from tests.probes import register_corridors

register_corridors()

INDEXED = [n for n, s in GYMNAX_ENVS.items() if s.state_fields is not None]
#: the discovery estimator (another part of issue 18) trains RL³ on families without num_states
DISCOVERY = importlib.util.find_spec("rl3jax.estimators.discovery") is not None
needs_discovery = pytest.mark.skipif(not DISCOVERY, reason="rl3jax.estimators.discovery is not there yet (issue 18: "
                                                           "RL³ on families without num_states)")


def test_catalog_knows_which_envs_take_rl3_without_jax():
    """The issue's two envs and every other plainly discrete one; continuous states and MinAtar have none."""
    assert set(INDEXED) == {"Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
                            "DiscountingChain-bsuite", "SimpleBandit-bsuite", "FourRooms-misc", "MetaMaze-misc",
                            "BernoulliBandit-misc", "GaussianBandit-misc", "FrozenLake-misc"}
    for name, g in GYMNAX_ENVS.items():
        if g.kind == "refused":
            continue
        spec = catalog.spec(name)
        assert spec.algos == (("rl2", "rl3") if name in INDEXED else ("rl2",)), name
        assert spec.semantics == (catalog.SEMANTICS_ALL if name in INDEXED else ()), name
    assert TrainConfig(env="MetaMaze-misc", algo="rl3").algo == "rl3"


@pytest.mark.parametrize("name", ["CartPole-v1", "Breakout-MinAtar", "corridor-no-index"])
def test_rl3_without_an_index_says_how_to_give_one(name):
    with pytest.raises(ValueError) as e:
        TrainConfig(env=name, algo="rl3")
    msg = str(e.value)
    assert msg.startswith(f"algo 'rl3' does not apply to env {name!r} (valid: rl2); it has no state index: give "
                          "it one with ") and msg.endswith("or use algo rl2") and "\n" not in msg
    assert ("GYMNAX_ENVS" if name in GYMNAX_ENVS else f"register({name!r}, ..., state_index=...)") in msg


@pytest.mark.parametrize("name", INDEXED)
def test_gymnax_index_packs_the_state_fields_and_is_markov(name):
    """Over meta-episodes of random actions on one task (task episodes reset inside): every entry but the first
    lies in [0, size), the index is the mixed-radix packing (NumPy), ``state_features`` the entries / sizes, and
    the index is Markov: swapping every state field it leaves out (not a task field) between the states changes
    neither the next state's index nor the reward of the same step (same key, same action)."""
    env = make_env(name)
    fields = env.state_fields
    assert env.has_state_index and env.rl3_defaults == DISCOVERY_DEFAULTS
    assert spec_of(env, catalog.spec(name).entry, ("train",), 100, {"name": name}) == catalog.spec(name)
    meta = MetaEnv(env, min(env.task_horizon + 5, 60))
    num = 8

    @jax.jit
    def run(key):
        task = jax.tree.map(lambda x: x[0], sample_tasks(meta, key, 1))
        tasks = jax.tree.map(lambda x: jnp.stack([x] * num), task)
        _, st = jax.vmap(meta.reset)(jax.random.split(key, num), tasks)

        def step(st, k):
            a = jax.random.randint(k, (num,), 0, meta.num_actions)
            _, st, _, _, _ = jax.vmap(meta.step)(jax.random.split(k, num), st, a, tasks)
            return st, st.env_state

        _, states = jax.lax.scan(step, st, jax.random.split(key, meta.horizon))
        states = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), states)  # (H * num, ...)
        n = meta.horizon * num
        left_out = {f.name for f in dataclasses.fields(states)} - {f for f, _ in fields} - set(env.task_fields)
        perm = jax.random.permutation(key, n)
        swapped = states.replace(**{f: getattr(states, f)[perm] for f in left_out})
        keys, acts = jax.random.split(key, n), jax.random.randint(key, (n,), 0, meta.num_actions)
        index = jax.vmap(lambda s: env.state_index(s, task))

        def next_of(s):
            _, s2, r, _, _ = jax.vmap(lambda k, s, a: env.step_env(k, s, a, task))(keys, s, acts)
            return index(s2), r

        feats = jax.vmap(lambda s: env.state_features(s, task))(states) if fields else jnp.zeros((n, 0))
        return states, index(states), feats, next_of(states), next_of(swapped)

    states, index, feats, (i1, r1), (i2, r2) = run(jax.random.key(1))
    assert index.dtype == jnp.int32 and index.shape == (meta.horizon * num,)
    entries = [(size, np.asarray(getattr(states, f)).reshape(len(index), -1)) for f, size in fields]
    packed = np.zeros(len(index), np.int64)
    for k, (size, v) in enumerate(entries):
        assert (v < size).all() and (v >= (0 if k else -1)).all(), (name, size, v.min(), v.max())
        for j in range(v.shape[1]):
            packed = packed * size + v[:, j]
    np.testing.assert_array_equal(np.asarray(index), packed)
    assert len(np.unique(packed)) >= (2 if fields else 1)  # the rollouts saw several states (bandits: the one)
    if fields:
        np.testing.assert_allclose(np.asarray(feats), np.concatenate([v / s for s, v in entries], axis=1), rtol=1e-6)
    assert feats.shape == (len(index), env.state_dim)
    np.testing.assert_array_equal(np.asarray(i1), np.asarray(i2))
    np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2))


def test_deepsea_and_metamaze_index_by_hand():
    """DeepSea (size 8): the start (0, 0) is 0; the right action of the start cell leads to (1, 1) = 1 * 8 + 1.
    MetaMaze: the start is the centre (5, 5) of the 11×11 map, index 5 * 11 + 5 = 60, shown as (5/11, 5/11)."""
    ds = make_env("DeepSea-bsuite")
    task = ds.sample_task(jax.random.key(0))
    _, st = ds.reset_env(jax.random.key(1), task)
    right = int(task.fields["action_mapping"][0, 0])
    _, st2, _, _, _ = ds.step_env(jax.random.key(2), st, right, task)
    assert (int(ds.state_index(st, task)), int(ds.state_index(st2, task))) == (0, 9)
    np.testing.assert_allclose(ds.state_features(st2, task), [1 / 9, 1 / 8])
    mm = make_env("MetaMaze-misc")
    task = mm.sample_task(jax.random.key(0))
    _, st = mm.reset_env(jax.random.key(1), task)
    assert int(mm.state_index(st, task)) == 60
    np.testing.assert_allclose(mm.state_features(st, task), [5 / 11, 5 / 11])


def test_state_obs_block_holds_the_normalised_state():
    """``state_obs``: MetaMaze's input gets the block ``state`` = its cell (row/11, col/11) after the 3×3 view
    (task_obs), at every step, task-episode resets included; without it the input is unchanged."""
    cfg = TrainConfig(env="MetaMaze-misc", algo="rl2", horizon=250, state_obs=True)
    meta, plain = make_meta_env(cfg), make_meta_env(cfg.replace(state_obs=False))
    lay = meta.layout
    assert lay.names == plain.layout.names[:6] + ("state",) and lay["state"].offset == lay["task_obs"].stop
    assert lay["state"].size == 2 and meta.obs_dim == plain.obs_dim + 2

    @jax.jit
    def run(key):
        task = meta.sample_task(key)
        obs, st = meta.reset(key, task)

        def step(st, k):
            obs, st, _, _, info = meta.step(k, st, jax.random.randint(k, (), 0, 4), task)
            return st, (obs, st.env_state.pos, info["task_episode_over"])

        _, (obs_t, pos, over) = jax.lax.scan(step, st, jax.random.split(key, 250))
        return obs, st.env_state.pos, obs_t, pos, over

    obs0, pos0, obs, pos, over = run(jax.random.key(4))
    np.testing.assert_allclose(obs0[lay["state"].slice], [5 / 11, 5 / 11])
    np.testing.assert_allclose(np.asarray(obs)[:, lay["state"].slice], np.asarray(pos) / 11, rtol=1e-6)
    assert int(over.sum()) >= 1 and len({tuple(p) for p in np.asarray(pos)}) > 3


@pytest.mark.parametrize("env", ["bandit", "mdp", "CartPole-v1", "BernoulliBandit-misc", "corridor"])
def test_state_obs_refused_without_state_fields(env):
    with pytest.raises(ValueError, match=f"state_obs shows a gymnax env's state_fields; env '{env}' has none "
                                         r"\(valid: Catch-bsuite, DeepSea-bsuite, "):
        TrainConfig(env=env, algo="rl2", state_obs=True)
    with pytest.raises(ValueError, match="state_obs: .* has no state features"):
        MetaEnv(make_env(env), 4, state_obs=True)


def test_register_with_a_state_index_hook():
    """A user's family without its own index gets one from ``register``: RL³ applies (``DISCOVERY_DEFAULTS``), the
    hook is its ``state_index``; without the hook it stays RL²-only."""
    spec, plain = catalog.FAMILIES["corridor"], catalog.FAMILIES["corridor-no-index"]
    assert (spec.algos, spec.semantics, spec.horizon) == (("rl2", "rl3"), catalog.SEMANTICS_ALL, 8)
    assert (plain.algos, plain.semantics) == (("rl2",), ())
    env = make_env("corridor")
    assert env.rl3_defaults == DISCOVERY_DEFAULTS and type(env).__name__ == "Corridor"
    assert make_env("corridor-no-index").rl3_defaults is None
    task = env.default_params  # right = 1
    _, st = env.reset_env(jax.random.key(0), task)
    _, st, _, _, _ = env.step_env(jax.random.key(0), st, 1, task)
    assert int(jax.jit(env.state_index)(st, task)) == 1


def test_readme_register_example_runs():
    """The README's Python block (registering a family with a state_index hook) runs as shown."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", open(os.path.join(root, "README.md")).read(), re.S)
                if "state_index=" in b]
    scope = {}
    exec(block, scope)
    assert scope["cfg"].algo == "rl3" and catalog.FAMILIES["corridor"].algos == ("rl2", "rl3")


def test_a_failing_hook_is_named():
    env = make_env("corridor-broken-index")
    _, st = env.reset_env(jax.random.key(0), env.default_params)
    with pytest.raises(AttributeError, match="position") as e:
        jax.jit(env.state_index)(st, env.default_params)
    assert any("state_index hook" in n and "'corridor-broken-index'" in n for n in e.value.__notes__)


@needs_discovery
def test_a_non_integer_index_is_a_type_error_at_trace_time():
    meta = make_meta_env(TrainConfig(env="corridor-float-index", algo="rl3", horizon=8))
    with pytest.raises(TypeError, match="state_index hook"):
        jax.jit(meta.reset)(jax.random.key(0), meta.env.default_params)


@needs_discovery
@pytest.mark.parametrize("env", ["corridor", "DeepSea-bsuite", "MetaMaze-misc"])
def test_rl3_trains_one_tiny_iteration(env):
    """RL³ on a user's family with a hook and on the issue's two gymnax envs: one PPO iteration, then a
    held-out evaluation (finite returns)."""
    cfg = TrainConfig(env=env, algo="rl3", model="markov", horizon=12, num_envs=4, minibatch_envs=2, epochs=1,
                      iters=1)
    trainer = make_train(cfg)
    assert "rl3" in trainer.meta_env.layout
    state, metrics = jit_chunk(trainer)(jax.jit(trainer.init)(jax.random.key(0)), 1)
    assert bool(jnp.isfinite(metrics["return_mean"]).all())
    res = evaluate(trainer.meta_env, "network", 4, params=state.actor_params, model=trainer.actor)
    assert np.isfinite(res["mean_return"]) and res["episodes"] == 4
