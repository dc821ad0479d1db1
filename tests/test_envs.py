"""Task families (METHOD §3), vmap/jit behaviour of the meta-episode wrapper, and the env registry.

Statistical checks draw many independent samples and allow 5 standard errors of the estimate (stated at each
check): with fixed seeds they are deterministic, and a correct sampler would fail one with probability ~6e-7.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs import catalog, registry
from rl3jax.envs.bandit import BanditState, BanditTask
from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import variants
from rl3jax.envs.mdp import VARIANTS as MDP_VARIANTS
from rl3jax.envs.mdp import MDPState
from rl3jax.envs.registry import make_env
from rl3jax.estimators import Estimator, make_estimator
from rl3jax.estimators.grid import GridQEstimator
from rl3jax.estimators.tabular import QEstimator
from rl3jax.estimators.v4 import V4Estimator
from rl3jax.layout import Layout, policy_input, rl3_features, v4_features
from rl3jax.meta_episode import MetaEnv, make_meta_env

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


# ------------------------------------------------------------------------------------------------ bandits
def test_bandit_arm_probabilities_uniform(task_pool):
    p = task_pool("bandit")["train"].probs
    assert p.shape == (20000, 5) and p.min() >= 0.0 and p.max() < 1.0
    n = p.size
    _close(p.mean(), 0.5, np.sqrt(1 / 12 / n), "U(0,1) mean")
    _var_check(p, 0.5, 1 / 12, 1 / 80, "U(0,1) variance 1/12")  # μ4 of U(0,1) = 1/80
    # arms are independent: correlation between arm 0 and arm 1 ~ 0 (s.e. 1/sqrt(n_tasks))
    _close(np.corrcoef(p[:, 0], p[:, 1])[0, 1], 0.0, 1 / np.sqrt(p.shape[0]), "arm correlation")


def test_bandit_ood_probabilities_normal_unclipped(task_pool):
    p = task_pool("bandit")["ood"].probs
    n = p.size
    _close(p.mean(), 0.5, 0.5 / np.sqrt(n), "N(0.5, 0.5) mean")
    _var_check(p, 0.5, 0.25, 3 * 0.25 ** 2, "N(0.5, 0.5) variance 0.25")  # μ4 = 3σ⁴
    outside = ((p < 0) | (p > 1)).mean()
    q = 0.31731  # P(|Z| > 1)
    _close(outside, q, np.sqrt(q * (1 - q) / n), "fraction outside [0, 1]")
    assert p.min() < -0.5 and p.max() > 1.5  # unclipped


def test_bandit_bernoulli_rewards():
    env, step = _step_many("bandit", "ood")
    probs = jnp.array([-0.3, 0.0, 0.25, 0.8, 1.0], jnp.float32)
    task = BanditTask(probs=probs, num_arms=5)
    state = BanditState(time=jnp.int32(0), pos=jnp.int32(0))
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    for arm, p in enumerate([-0.3, 0.0, 0.25, 0.8, 1.0]):
        obs, nxt, r, done, _ = jax.device_get(step(keys, state, arm, task))
        assert set(np.unique(r)) <= {0.0, 1.0}
        assert done.all() and (nxt.pos == 1).all()
        np.testing.assert_array_equal(obs, np.broadcast_to([0.0, 1.0], (n, 2)))
        if p <= 0.0:
            assert r.sum() == 0, "p <= 0 never pays"
        elif p >= 1.0:
            assert r.min() == 1.0, "p >= 1 always pays"
        else:
            _close(r.mean(), p, np.sqrt(p * (1 - p) / n), f"Bernoulli({p}) frequency")
    # p > 1 (OOD) always pays
    task = BanditTask(probs=jnp.full((5,), 1.4), num_arms=5)
    _, _, r, _, _ = step(keys[:1000], state, 3, task)
    assert float(r.min()) == 1.0
    # the family's layout: reset shows 'ready' (one-hot state 0), state 1 is absorbing
    obs, st = env.reset_env(jax.random.PRNGKey(0), task)
    np.testing.assert_array_equal(obs, [1.0, 0.0])
    assert int(env.state_index(st, task)) == 0 and not bool(env.is_terminated(st, task))
    assert env.default_params.max_steps_in_episode == 1 and env.num_states == 2 and env.num_actions == 5


# --------------------------------------------------------------------------------------------------- MDPs
def _dirichlet_check(t, alpha, what):
    s = t.shape[-1]
    assert t.min() >= 0.0
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-5, err_msg=f"{what}: rows sum to 1")
    rows = t.reshape(-1, s).astype(np.float64)
    n_rows = rows.shape[0]
    a0 = alpha * s
    var = alpha * (a0 - alpha) / (a0 ** 2 * (a0 + 1))  # per-entry variance of Dirichlet(α·1_S)
    # mean of each entry across rows: 1/S, s.e. sqrt(var / n_rows)
    for j in range(s):
        _close(rows[:, j].mean(), 1 / s, np.sqrt(var / n_rows), f"{what}: mean of entry {j}")
    # per-row mean squared deviation from 1/S has expectation var; rows are independent, so its s.e. is
    # its own std / sqrt(n_rows)
    per_row = ((rows - 1 / s) ** 2).mean(-1)
    _close(per_row.mean(), var, per_row.std() / np.sqrt(n_rows), f"{what}: entry variance {var:.5f}")
    return rows, var


def test_mdp_dirichlet_transitions(task_pool):
    t = task_pool("mdp")["train"].transitions
    assert t.shape[1:] == (10, 5, 10) and t.shape[0] >= 200
    rows, var = _dirichlet_check(t, 1.0, "Dirichlet(1)")
    assert np.isclose(var, 1 * 9 / (10 ** 2 * 11))
    t25 = task_pool("mdp")["alpha0.25"].transitions
    rows25, var25 = _dirichlet_check(t25, 0.25, "Dirichlet(0.25)")
    assert np.isclose(var25, 0.25 * 2.25 / (2.5 ** 2 * 3.5)) and var25 > 2 * var
    # sparser rows: more near-zero entries and a larger largest entry
    assert (rows25 < 0.01).mean() > (rows < 0.01).mean() + 0.2
    assert rows25.max(-1).mean() > rows.max(-1).mean() + 0.1
    chex.assert_tree_all_finite((t, t25))


def test_mdp_mean_rewards_and_noise(task_pool):
    tasks = task_pool("mdp")["train"]
    r = tasks.mean_rewards.astype(np.float64)
    assert r.shape[1:] == (10, 5) and r.shape[0] >= 200
    _close(r.mean(), 1.0, 1 / np.sqrt(r.size), "R = 1 + N(0,1): mean")
    _var_check(r, 1.0, 1.0, 3.0, "R = 1 + N(0,1): variance")
    np.testing.assert_array_equal(tasks.reward_noise, 1.0)
    # alpha0.25 changes only the transitions
    t25 = task_pool("mdp")["alpha0.25"]
    _close(t25.mean_rewards.mean(), 1.0, 1 / np.sqrt(r.size), "alpha0.25: reward mean")
    np.testing.assert_array_equal(t25.reward_noise, 1.0)


def test_mdp_det_rewards_uniform_noiseless(task_pool):
    tasks = task_pool("mdp")["det-rewards"]
    r = tasks.mean_rewards.astype(np.float64)
    assert r.min() >= 0.0 and r.max() <= 2.0
    _close(r.mean(), 1.0, np.sqrt(1 / 3 / r.size), "U(0,2) mean")
    _var_check(r, 1.0, 1 / 3, 1 / 5, "U(0,2) variance 1/3")  # U(-1,1): μ4 = 1/5
    np.testing.assert_array_equal(tasks.reward_noise, 0.0)
    np.testing.assert_allclose(tasks.transitions.sum(-1), 1.0, atol=1e-5)
    # observed rewards are exactly the means
    env, step = _step_many("mdp", "det-rewards")
    task = jax.tree.map(lambda x: x[0], tasks)
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    for s, a in [(0, 0), (4, 3)]:
        _, _, rew, _, _ = step(keys, MDPState(time=jnp.int32(0), pos=jnp.int32(s)), a, task)
        np.testing.assert_allclose(np.asarray(rew), task.mean_rewards[s, a], rtol=1e-6)


@pytest.mark.parametrize("variant", ["train", "alpha0.25"])
def test_mdp_step_distribution(variant, task_pool):
    """Next-state frequencies match T[s,a] and observed rewards are R(s,a) + N(0,1)."""
    env, step = _step_many("mdp", variant)
    task = jax.tree.map(lambda x: x[3], task_pool("mdp")[variant])
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    for s, a in [(0, 1), (7, 4)]:
        obs, nxt, r, done, _ = jax.device_get(step(keys, MDPState(time=jnp.int32(0), pos=jnp.int32(s)), a, task))
        assert not done.any()
        np.testing.assert_array_equal(obs, np.eye(10)[nxt.pos])
        freq = np.bincount(nxt.pos, minlength=10) / n
        p = np.asarray(task.transitions[s, a], np.float64)
        for j in range(10):  # binomial s.e.; + 1/n so that a p ≈ 0 entry may show one stray count
            assert abs(freq[j] - p[j]) <= Z * np.sqrt(p[j] * (1 - p[j]) / n) + 1 / n, (s, a, j, freq[j], p[j])
        assert (freq[p == 0] == 0).all()
        noise = r.astype(np.float64) - float(task.mean_rewards[s, a])
        _close(noise.mean(), 0.0, 1 / np.sqrt(n), "reward noise mean")
        _var_check(noise, 0.0, 1.0, 3.0, "reward noise variance 1")
        # the noise is independent of the next state (separate keys)
        _close(np.corrcoef(noise, nxt.pos)[0, 1], 0.0, 1 / np.sqrt(n), "noise vs next state correlation")
    _, st = env.reset_env(jax.random.PRNGKey(0), task)
    assert int(st.pos) == 0  # every task episode starts in state 1 (index 0)


# ------------------------------------------------------------------------------------ MetaEnv under vmap/jit
H_VMAP, N_VMAP = 13, 6


def _meta_env_rl3():
    env = make_env("mdp")
    # std errors are compared under vmap against the reference in test_reference_equivalence.py; off here to
    # keep this compile (x2: vmapped and single) small
    est = QEstimator(num_states=10, num_actions=5, gamma=0.95, max_sweeps=10, std_errors=False, q_denom=10.0,
                     mode="entered", known_states="visited", warm_start=True)
    return env, MetaEnv(env, H_VMAP, est)


def _mixed_mdp_tasks(task_pool, n):
    """Tasks from all three MDP variants (their dynamics share one step function; only sampling differs)."""
    assert n % len(MDP_VARIANTS) == 0
    m = n // len(MDP_VARIANTS)
    parts = [jax.tree.map(lambda x: x[-m:], task_pool("mdp")[v]) for v in MDP_VARIANTS]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def test_vmap_equals_loop_no_retrace_finite(task_pool):
    env, menv = _meta_env_rl3()
    tasks = _mixed_mdp_tasks(task_pool, N_VMAP)
    assert tasks.transitions.shape[0] == N_VMAP
    assert set(np.unique(tasks.reward_noise)) == {0.0, 1.0}
    keys = jax.random.split(jax.random.PRNGKey(1), (N_VMAP, H_VMAP + 1))
    actions = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (N_VMAP, H_VMAP), 0, 5))

    chex.clear_trace_counter()
    v_reset = jax.jit(chex.assert_max_traces(lambda k, p: jax.vmap(menv.reset)(k, p), n=1))
    # retracing (e.g. a state field changing dtype or weak type between reset and step) would raise
    v_step = jax.jit(chex.assert_max_traces(lambda *args: jax.vmap(menv.step)(*args), n=1))
    obs, st = v_reset(keys[:, 0], tasks)
    v_obs, v_rew = [obs], []
    for t in range(H_VMAP):
        obs, st, r, done, info = v_step(keys[:, t + 1], st, jnp.asarray(actions[:, t]), tasks)
        chex.assert_tree_all_finite((obs, st, r))
        v_obs.append(obs)
        v_rew.append(r)
        assert bool(done.all()) == (t == H_VMAP - 1)
    v_obs, v_rew = np.stack(v_obs, 1), np.stack(v_rew, 1)
    np.testing.assert_allclose(np.asarray(st.episode_return), v_rew.sum(1), rtol=1e-5, atol=1e-5)
    assert v_obs.shape == (N_VMAP, H_VMAP + 1, menv.obs_dim)

    # a Python loop over single tasks (jit, no vmap) gives the same meta-episodes
    s_reset, s_step = jax.jit(menv.reset), jax.jit(menv.step)
    for i in range(N_VMAP):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        obs, sst = s_reset(keys[i, 0], task)
        np.testing.assert_allclose(obs, v_obs[i, 0], atol=1e-5)
        for t in range(H_VMAP):
            obs, sst, r, _, _ = s_step(keys[i, t + 1], sst, actions[i, t], task)
            np.testing.assert_allclose(obs, v_obs[i, t + 1], atol=1e-5, err_msg=f"task {i} step {t}")
            np.testing.assert_allclose(r, v_rew[i, t], atol=1e-5)
        chex.assert_trees_all_close(sst, jax.tree.map(lambda x, i=i: x[i], st), atol=1e-5)


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert make_env("bandit").name == "bandit5" and make_env("mdp").name == "mdp"
    assert set(variants("bandit")) == {"train", "ood"}
    assert set(variants("mdp")) == {"train", "alpha0.25", "det-rewards"}
    for v in variants("mdp"):
        assert make_env("mdp", v).variant == v
    assert make_env("mdp", None).variant == "train"
    with pytest.raises(ValueError) as e:
        make_env("no-such-env")
    msg = str(e.value)
    assert "no-such-env" in msg and "bandit" in msg and "mdp" in msg and "CartPole-v1" in msg
    with pytest.raises(ValueError) as e:
        make_env("mdp", "alpha0.3")
    assert all(v in str(e.value) for v in ("train", "alpha0.25", "det-rewards"))
    with pytest.raises(ValueError) as e:
        make_env("bandit", "alpha0.25")
    assert "ood" in str(e.value)
    with pytest.raises(ValueError):
        make_env("CartPole-v1", "ood")


def test_family_hooks_declared_on_the_base_class():
    """Every family answers every hook (no probing): defaults for what it lacks, its own values otherwise."""
    bandit, mdp, grid, cart = (make_env(n) for n in ("bandit", "mdp", "grid13", "CartPole-v1"))
    assert all(isinstance(e, TaskEnv) for e in (bandit, mdp, grid, cart))
    assert [e.family for e in (bandit, mdp, grid, cart)] == ["bandit", "mdp", "grid13", "CartPole-v1"]
    assert [e.task_horizon for e in (bandit, mdp, grid, cart)] == [1, 10, 350, 500]
    assert [e.has_true_model for e in (bandit, mdp, grid, cart)] == [True, True, True, False]
    assert [e.grid_side for e in (bandit, mdp, grid, cart)] == [None, None, 13, None]
    assert (bandit.v4_defaults.q_denom, mdp.v4_defaults.q_denom) == (1.0, 100.0)
    assert bandit.v4_defaults.drop_task_obs and not mdp.v4_defaults.drop_task_obs
    assert grid.v4_defaults is None and cart.rl3_defaults is None and cart.num_states is None
    assert mdp.with_horizon(500) is mdp and grid.with_horizon(500).task_horizon == 500
    with pytest.raises(NotImplementedError, match="no known model"):
        cart.true_model(cart.default_params)
    with pytest.raises(NotImplementedError, match="no discrete states"):
        cart.state_index(None, cart.default_params)


def test_layout_offsets_by_hand():
    """METHOD §1: n + 4 + m entries for RL², 4n + 6 + m for RL³ (bandit: n = 5 arms, m = 2), blocks in order;
    the v4 layout of the paper's code for RL³ on bandits (task observation dropped): 4n - 1 + 4 = 19."""
    rl3 = make_meta_env(TrainConfig(env="bandit", algo="rl3", horizon=7)).layout
    expect = {"prev_action": (0, 5), "prev_reward": (5, 1), "first": (6, 1), "meta_time": (7, 1),
              "task_time": (8, 1), "task_obs": (9, 2), "rl3": (11, 17), "advantages": (11, 5), "value": (16, 1),
              "std_errors": (17, 6), "counts": (23, 5)}
    assert {b.name: (b.offset, b.size) for b in rl3.all_blocks()} == expect and rl3.size == 28
    rl2 = make_meta_env(TrainConfig(env="bandit", algo="rl2", horizon=7)).layout
    assert rl2.size == 5 + 4 + 2 and "rl3" not in rl2 and rl2.names == rl3.names[:-1]
    v4 = make_meta_env(TrainConfig(env="bandit", algo="rl3", horizon=7, semantics="v4")).layout
    assert [(b.name, b.offset, b.size) for b in v4.all_blocks()] == [
        ("prev_action", 0, 5), ("prev_reward", 5, 1), ("first", 6, 1), ("rl3", 7, 10), ("shown_q", 7, 5),
        ("counts", 12, 5), ("task_time", 17, 1), ("meta_time", 18, 1)]
    assert rl3_features(3).size == 3 * 3 + 2 and v4_features(3).size == 6
    assert policy_input("method", 3, 4, None)["task_obs"].slice == slice(7, 11)
    with pytest.raises(KeyError, match="no block 'nope'"):
        rl3["nope"]
    with pytest.raises(ValueError, match="repeated"):
        Layout.of(("a", 1), ("a", 2))
    with pytest.raises(ValueError, match="not one of"):
        policy_input("paper", 3, 4)


def test_make_estimator_follows_the_family_hooks():
    """One ``make_estimator``: the estimator class from ``grid_side`` / ``v4_defaults``, settings from
    ``rl3_defaults`` (METHOD §2) with at most min(TH, H) sweeps, and refusals naming the fix."""
    def est(env, **kw):
        return make_estimator(make_env(env).with_horizon(kw.get("horizon", 100)), TrainConfig(env=env, **kw))

    bandit, mdp, mdp5, grid = est("bandit"), est("mdp"), est("mdp", horizon=5), est("grid11", horizon=250)
    assert type(bandit) is QEstimator and (bandit.max_sweeps, bandit.q_denom, bandit.alpha_laplace) == (1, 1.0, 0.1)
    assert type(mdp) is QEstimator and (mdp.max_sweeps, mdp.q_denom, mdp5.max_sweeps) == (10, 10.0, 5)
    assert type(grid) is GridQEstimator and (grid.max_sweeps, grid.grid_side, grid.mode) == (250, 11, "fresh")
    assert est("grid11", horizon=250, semantics="rlc").mode == "entered"
    v4b, v4m = est("bandit", semantics="v4"), est("mdp", semantics="v4")
    assert type(v4b) is V4Estimator and (v4b.q_denom, v4b.gamma, v4m.q_denom, v4m.max_sweeps) == (1.0, 0.99, 100.0, 10)
    assert all(isinstance(e, Estimator) for e in (bandit, grid, v4b))
    assert est("mdp", algo="rl2") is None
    with pytest.raises(ValueError, match="use algo rl2"):
        make_estimator(make_env("CartPole-v1"), TrainConfig(env="mdp"))
    with pytest.raises(ValueError, match="semantics 'v4' is implemented for envs bandit, mdp, not 'grid11'"):
        TrainConfig(env="grid11", semantics="v4")  # the config refuses it first, naming the env
    # make_estimator's own check, by hook, for a family the config's name tables do not describe
    with pytest.raises(ValueError, match="semantics 'v4' is not implemented for grid11 .it has no v4_defaults"):
        make_estimator(make_env("grid11"), TrainConfig(env="mdp", semantics="v4"))


@pytest.mark.parametrize("name", registry.BUILT_IN)
def test_every_family_spec_matches_its_family_hooks(name):
    """A family's JAX-free spec (algos, semantics: what the config checks before JAX starts) is what its hooks
    say (rl3_defaults, grid_side, v4_defaults), every variant builds, and its module's variants are the spec's."""
    spec = catalog.FAMILIES[name]
    envs = [make_env(name, v) for v in spec.variants]
    assert registry.spec_of(envs[0], spec.entry, spec.variants, spec.horizon, spec.kwargs) == spec
    assert {env.family for env in envs} == {name} and len({env.name for env in envs}) == len(envs)
    assert expected_spec_fields[name] == (spec.variants[0], spec.horizon, spec.algos, spec.semantics)


#: hand-written from METHOD §3 and §6 (the training variant, H, the algos and semantics that apply)
expected_spec_fields = {
    "bandit": ("train", 100, ("rl2", "rl3"), ("fresh", "rlc", "v4")),
    "mdp": ("train", 100, ("rl2", "rl3"), ("fresh", "rlc", "v4")),
    "grid11": ("train", 250, ("rl2", "rl3", "rl3_coarse"), ("fresh", "rlc")),
    "grid13": ("train", 350, ("rl2", "rl3", "rl3_coarse"), ("fresh", "rlc")),
}


def test_family_modules_take_their_variants_from_the_specs():
    from rl3jax.envs import bandit, grid_generation, mdp

    assert catalog.FAMILIES["bandit"].variants == bandit.VARIANTS and catalog.FAMILIES["mdp"].variants == mdp.VARIANTS
    for name in ("grid11", "grid13"):
        assert catalog.FAMILIES[name].variants == tuple(grid_generation.GRID_FAMILIES[name][1])
        assert make_env(name).horizon == catalog.FAMILIES[name].horizon
    assert catalog.spec("CartPole-v1").algos == ("rl2",)  # a served gymnax env: RL² only


def test_registry_imports_no_family_until_one_is_built():
    """The registry builds a family from its spec's entry point, imported by name (a fresh interpreter)."""
    code = ("import sys; from rl3jax.envs import registry; "
            "print(sorted(m for m in sys.modules if m.startswith('rl3jax.envs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["rl3jax.envs.base", "rl3jax.envs.catalog", "rl3jax.envs.registry"]


def test_catalog_answers_without_the_families():
    assert catalog.check_variant("grid13", None) == "train"
    with pytest.raises(ValueError, match="valid variants: train, ood"):
        catalog.check_variant("bandit", "dense")
    with pytest.raises(ValueError, match="continuous"):
        catalog.check_env("Pendulum-v1")
    assert catalog.is_gymnax("CartPole-v1") and not catalog.is_gymnax("mdp")


def test_gymnax_env_in_meta_env_rl2_and_rl3_rejected():
    env = make_env("CartPole-v1")
    horizon = 6
    menv = MetaEnv(env, horizon)
    n = env.num_actions
    lay = menv.layout  # METHOD §1, RL²: no rl3 block; CartPole's observation has m = 4 entries
    assert "rl3" not in lay and lay["task_obs"].size == 4 and menv.obs_dim == lay.size

    def head(obs):  # prev reward, first flag, t/H, τ/TH
        return np.concatenate([np.asarray(obs)[lay[b].slice] for b in ("prev_reward", "first", "meta_time",
                                                                         "task_time")])

    params = menv.sample_task(jax.random.PRNGKey(0))
    step = jax.jit(lambda k, s, a: menv.step(k, s, a, params))
    obs, st = jax.jit(lambda k: menv.reset(k, params))(jax.random.PRNGKey(0))
    np.testing.assert_allclose(obs[lay["prev_action"].slice], [0.0] * n)
    np.testing.assert_allclose(head(obs), [0.0, 1.0, 0.0, 0.0])
    total = 0.0
    for t in range(horizon):
        a = t % n
        obs, st, r, done, _ = step(jax.random.PRNGKey(t + 1), st, a)
        chex.assert_tree_all_finite(obs)
        total += float(r)
        np.testing.assert_allclose(obs[lay["prev_action"].slice], np.eye(n)[a])
        np.testing.assert_allclose(head(obs), [float(r), 0.0, (t + 1) / horizon, (t + 1) / 500], atol=1e-6)
        assert bool(done) == (t == horizon - 1)
    assert total == horizon  # CartPole pays 1 per step and cannot fall within 6 steps
    np.testing.assert_allclose(float(st.episode_return), total)
    with pytest.raises(ValueError, match="RL³ needs a tabular"):
        MetaEnv(env, horizon, QEstimator(num_states=2, num_actions=n, gamma=0.95))


def test_gymnax_env_meta_env_params_as_jit_argument():
    env = make_env("CartPole-v1")
    menv = MetaEnv(env, 6)
    params = menv.sample_task(jax.random.PRNGKey(0))
    obs, st = jax.jit(menv.reset)(jax.random.PRNGKey(0), params)
    obs, st, r, done, _ = jax.jit(menv.step)(jax.random.PRNGKey(1), st, 0, params)
    assert obs.shape == (menv.obs_dim,)
    # and vmapped over a batch of tasks, as the trainer runs it
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), params)
    obs, st = jax.jit(jax.vmap(menv.reset))(jax.random.split(jax.random.PRNGKey(0), 2), batch)
    assert obs.shape == (2, menv.obs_dim)


@pytest.mark.parametrize("name", ["mdp", "grid13", "CartPole-v1"])
def test_register_refuses_to_replace_a_built_in_family(name):
    """A user's family cannot silently take the name of a built-in family or a gymnax env."""
    with pytest.raises(ValueError, match=f"register: '{name}' is a built-in"):
        registry.register(name, lambda variant: make_env("bandit"), ("train",))
    assert make_env(name).family == name  # still the built-in one
    assert type(make_env("mdp")).__name__ == "RandomMDP"


def test_register_adds_a_spec_from_the_family_hooks():
    """A user's family gets a spec read from its hooks: an RL²-only probe, and a bandit under another name (RL³
    and v4 apply, no RL³-coarse); the config then checks both before JAX work, like the built-in families."""
    from tests.probes import register_probes

    register_probes()
    probe = catalog.FAMILIES["probe-action"]
    assert (probe.variants, probe.horizon, probe.algos, probe.semantics) == (("train",), 100, ("rl2",), ())
    with pytest.raises(ValueError, match="algo 'rl3' does not apply to env 'probe-action' .valid: rl2.; RL³ needs"):
        TrainConfig(env="probe-action", algo="rl3")
    try:
        spec = registry.register("bandit-alias", lambda variant: make_env("bandit", variant), ("train", "ood"), 50)
        assert (spec.algos, spec.semantics, spec.horizon) == (("rl2", "rl3"), ("fresh", "rlc", "v4"), 50)
        assert make_env("bandit-alias", "ood").variant == "ood"
        with pytest.raises(ValueError, match="variant 'dense' is not valid for env 'bandit-alias'"):
            TrainConfig(env="bandit-alias", variant="dense")
    finally:
        catalog.FAMILIES.pop("bandit-alias", None)
