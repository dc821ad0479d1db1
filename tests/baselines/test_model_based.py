"""rl3jax.baselines.mdp / posterior: BEB, MBIE-EB, R-MAX and MAP-greedy decisions on hand-built posteriors (values
computed by hand), the sparse supports of grids and DeepSea and their 'done' slot, OPSRL with m = 1 equal to PSRL,
the per-family tuned defaults, and bad input (an unknown parameter, a family a policy does not fit)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax import baselines as B
from rl3jax.baselines.mdp import optimistic_q
from rl3jax.baselines.posterior import (
    MDPPosterior,
    Support,
    deepsea_support,
    grid_support,
    mdp_posterior_update,
    plan_q,
)
from tests.helpers import _meta, _run

PRIOR = {"alpha0": 1.0, "mu0": 0.0, "tau0": 1e-6, "tau": 1.0}  # a flat reward prior: the mean is the sample mean


def _post(n_sa, r_mean, n_sas=None, width=2):
    """One task (B = 1) on 2 states × 2 actions: visits n(s,a), mean rewards, transition counts."""
    n_sa, r_mean = np.asarray(n_sa, np.float32), np.asarray(r_mean, np.float32)
    n_sas = np.zeros((2, 2, width), np.float32) if n_sas is None else np.asarray(n_sas, np.float32)
    z = jnp.zeros((1,), jnp.int32)
    return MDPPosterior(key=None, n_sas=jnp.asarray(n_sas)[None], r_n=jnp.asarray(n_sa)[None],
                        r_sum=jnp.asarray(n_sa * r_mean)[None], prev_s=z, prev_tau=z, q_tab=None)


# state 0: action 0 tried 9 times (mean 1.0), action 1 once (mean 0.8); one step left
ONE_STEP = _post([[9, 1], [1, 1]], [[1.0, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize("kind,beta,q0,q1", [
    ("beb", 1.0, 1.0 + 1 / 10, 0.8 + 1 / 2),  # β/(1+n): 1.1 < 1.3, the rarely tried action
    ("beb", 0.1, 1.0 + 0.1 / 10, 0.8 + 0.1 / 2),  # 1.01 > 0.85
    ("mbie-eb", 0.4, 1.0 + 0.4 / 3, 0.8 + 0.4),  # β/sqrt(n): 1.133 < 1.2
    ("mbie-eb", 0.2, 1.0 + 0.2 / 3, 0.8 + 0.2),  # 1.067 > 1.0
    ("map-greedy", 0.0, 1.0, 0.8),
])
def test_bonus_methods_q_by_hand(kind, beta, q0, q1):
    q = optimistic_q(kind, ONE_STEP, Support(2), {**PRIOR, "beta": beta}, 1)[0, 0, 0]
    np.testing.assert_allclose(q, [q0, q1], rtol=1e-5)


def test_unvisited_pair_takes_the_full_bonus_and_the_prior_mean():
    """n = 0: BEB β/(1+0) = β, MBIE-EB β (n counted as 1), reward μ0."""
    post = _post([[0, 4], [0, 0]], [[0.0, 1.0], [0.0, 0.0]])
    for kind, expect in (("beb", [0.5 + 2.0, 1.0 + 2.0 / 5]), ("mbie-eb", [0.5 + 2.0, 1.0 + 2.0 / 2])):
        q = optimistic_q(kind, post, Support(2), {**PRIOR, "mu0": 0.5, "beta": 2.0}, 1)[0, 0, 0]
        np.testing.assert_allclose(q, expect, rtol=1e-4)


def test_two_steps_follow_the_posterior_mean_model():
    """Q_2(0, a) = R̄ + β/(1+n) + Σ T̄·V_1 with T̄ = (α0 + counts) / Σ: action 0 went to state 1 (3 times), whose
    best action pays 2 (n = 4); action 1 stayed (once)."""
    n_sas = [[[0, 3], [1, 0]], [[0, 4], [0, 0]]]
    post = _post([[3, 1], [4, 0]], [[0.0, 0.0], [2.0, 0.0]], n_sas)
    beta = 1.0
    q = optimistic_q("beb", post, Support(2), {**PRIOR, "beta": beta}, 2)[0]
    v1 = np.array([max(0 + beta / 4, 0 + beta / 2), max(2 + beta / 5, 0 + beta / 1)])  # Q_1 = R̄ + bonus
    t0, t1 = np.array([1, 4]) / 5, np.array([2, 1]) / 3
    np.testing.assert_allclose(q[1, 0], [beta / 4 + t0 @ v1, beta / 2 + t1 @ v1], rtol=1e-5)


def test_rmax_threshold():
    """Pairs tried fewer than m times are worth k·r_max with k steps left; at m tries the empirical model."""
    post = _post([[2, 3], [3, 3]], [[5.0, 1.0], [0.5, 0.25]], [[[2, 0], [0, 3]], [[3, 0], [0, 3]]])
    q = optimistic_q("rmax", post, Support(2), {"m": 3, "r_max": 10.0}, 2)[0]
    np.testing.assert_allclose(q[0, 0], [10.0, 1.0], rtol=1e-5)  # (0,0) tried twice < 3: unknown
    np.testing.assert_allclose(q[1, 0], [20.0, 1.0 + 0.5], rtol=1e-5)  # (0,1) → state 1, V_1(1) = 0.5
    q = optimistic_q("rmax", post, Support(2), {"m": 2, "r_max": 10.0}, 1)[0]
    np.testing.assert_allclose(q[0, 0], [5.0, 1.0], rtol=1e-5)  # m = 2: every pair known


def test_grid_support_slots_and_the_done_value():
    """3×3 grid: slots stay, N, E, S, W, done; border moves repeat the cell (no prior mass); 'done' has the
    start cell's value with one step fewer (the task restarts)."""
    sup = grid_support(3)
    assert sup.start == 4 and sup.width == 6
    np.testing.assert_array_equal(sup.succ[0], [0, 0, 1, 3, 0, 9])  # corner: N and W stay
    np.testing.assert_array_equal(sup.prior[0], [1, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(sup.prior[4], [1, 1, 1, 1, 1, 0])
    t = np.zeros((9, 1, 6), np.float32)
    t[:, 0, 0] = 1.0  # every cell stays ...
    t[0, 0] = [0, 0, 0, 0, 0, 1]  # ... but cell 0 ends the episode
    r = np.zeros((9, 1), np.float32)
    r[0], r[4] = 100.0, 1.0
    q = plan_q(jnp.asarray(t), jnp.asarray(r), 3, sup)
    np.testing.assert_allclose(q[:, 0, 0], [100, 100 + 1, 100 + 2])  # then the start cell pays 1 per step
    np.testing.assert_allclose(q[:, 4, 0], [1, 2, 3])


def test_deepsea_support():
    sup = deepsea_support(3)
    np.testing.assert_array_equal(sup.succ[:3], [[3, 4], [3, 5], [4, 5]])  # row 0 → row 1, col ∓ 1 clipped
    np.testing.assert_array_equal(sup.succ[6:], [[9, 9]] * 3)  # the last row ends the episode


def test_update_counts_done_only_when_the_episode_ended_before_th():
    """tau = 0 after a step: a termination ('done' slot) when the previous τ + 1 < TH, else a truncation (not
    counted, METHOD §1); rewards count either way."""
    sup = grid_support(3)
    post = dataclasses.replace(_post(np.zeros((2, 2)), np.zeros((2, 2))), n_sas=jnp.zeros((1, 9, 5, 6)),
                               r_n=jnp.zeros((1, 9, 5)), r_sum=jnp.zeros((1, 9, 5)), prev_s=jnp.array([1]))

    @dataclasses.dataclass
    class State:
        t: jnp.ndarray
        tau: jnp.ndarray
        prev_action: jnp.ndarray
        prev_reward: jnp.ndarray

    for prev_tau, th, slot in ((3, 10, 5), (9, 10, None)):
        st = State(jnp.array([5]), jnp.array([0]), jnp.array([2]), jnp.array([100.0]))
        new = mdp_posterior_update(dataclasses.replace(post, prev_tau=jnp.array([prev_tau])), st, jnp.array([4]),
                                   sup, th)
        expect = np.zeros(6)
        if slot is not None:
            expect[slot] = 1
        np.testing.assert_array_equal(new.n_sas[0, 1, 2], expect)
        assert float(new.r_sum[0, 1, 2]) == 100.0 and float(new.r_n[0, 1, 2]) == 1.0
    st = State(jnp.array([5]), jnp.array([4]), jnp.array([1]), jnp.array([-1.0]))  # 1 → N → 1 (border: stay)
    new = mdp_posterior_update(dataclasses.replace(post, prev_tau=jnp.array([3])), st, jnp.array([1]), sup, 10)
    np.testing.assert_array_equal(new.n_sas[0, 1, 1], [1, 0, 0, 0, 0, 0])  # the first slot naming cell 1


@pytest.mark.parametrize("env,horizon", [("mdp", 20), ("deepsea", 30)])
def test_opsrl_with_one_sample_is_psrl(env, horizon):
    a_psrl = _run(env, horizon, "psrl", 8)[0]
    a_opsrl = _run(env, horizon, "opsrl", 8, (("m", 1),))[0]
    np.testing.assert_array_equal(a_psrl, a_opsrl)


def test_tuned_defaults_per_family():
    """A parameter's ``tuned`` value is its default on that family; elsewhere (and in ``describe``) the plain
    default; a value given wins."""
    for name in ("beb", "mbie-eb", "opsrl", "rmax"):
        b = B.get_baseline(name)
        for p in b.params:
            for fam, v in p.tuned:
                assert B.validate_params(name, None, fam)[p.name] == v
                assert B.validate_params(name, {p.name: p.default}, fam)[p.name] == p.default
    assert B.validate_params("beb", None)["beta"] == B.get_baseline("beb").params[-1].default


def test_unknown_param_names_the_policys_params():
    with pytest.raises(ValueError) as e:
        B.validate_params("beb", {"gamma": "1"})
    assert str(e.value) == ("policy 'beb' has no parameter 'gamma'; valid: alpha0 (float, > 0; default 1), mu0 "
                            "(float; default 0), tau0 (float, > 0; default 1), tau (float, > 0; default 1), beta "
                            f"(float, >= 0; default {B.get_baseline('beb').params[-1].default:g})")
    with pytest.raises(ValueError, match=r"policy 'rmax': parameter m='0' is not valid; expected m \(int, >= 1"):
        B.validate_params("rmax", {"m": "0"})


@pytest.mark.parametrize("name", ["beb", "mbie-eb", "rmax", "opsrl"])
def test_family_it_does_not_fit_lists_those_that_fit(name):
    meta = _meta("bandit", 10)
    with pytest.raises(ValueError) as e:
        B.check_fits(name, meta)
    assert str(e.value) == (f"policy {name!r} does not fit env {meta.env.family!r}; policies for it: "
                            + ", ".join(B.baseline_names(meta)))
    assert name not in B.baseline_names(meta)
