"""Tests for rl3jax.networks: cached step == full sequence, causality, shapes, tracing, parameter count."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax import networks
from rl3jax.config import MODELS
from rl3jax.networks import make_network

KINDS = ("transformer", "gru", "markov")


@functools.cache
def _setup(kind):
    """Model, params and inputs, built once per kind (compiles are the slow part on CPU)."""
    model = networks.make_network(kind, N_OUT, HORIZON)
    params = model.init(jax.random.PRNGKey(0), IN_DIM)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, IN_DIM))
    return model, params, xs


def _full_horizon_inputs():
    """H+1 timesteps: fills every slot of the transformer's key/value cache."""
    return jax.random.normal(jax.random.PRNGKey(3), (B, HORIZON + 1, IN_DIM))


@functools.cache
def _jit_sequence(model):
    return jax.jit(model.sequence)


def _rollout(model, params, xs, step_fn):
    carry = model.initial_carry(xs.shape[0])
    outs = []
    for t in range(xs.shape[1]):
        carry, out = step_fn(params, carry, xs[:, t])
        outs.append(out)
    return carry, jnp.stack(outs, axis=1)


def _scan_rollout(model, params, xs):
    def body(carry, x):
        return model.step(params, carry, x)

    carry, outs = jax.lax.scan(body, model.initial_carry(xs.shape[0]), jnp.swapaxes(xs, 0, 1))
    return carry, jnp.swapaxes(outs, 0, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_step_matches_sequence_jit(kind):
    model, params, xs = _setup(kind)
    seq = _jit_sequence(model)(params, xs)
    _, stepped = jax.jit(_scan_rollout, static_argnums=0)(model, params, xs)
    chex.assert_shape([seq, stepped], (B, T, N_OUT))
    chex.assert_tree_all_finite((seq, stepped))
    np.testing.assert_allclose(stepped, seq, atol=1e-5, rtol=1e-5)
    # Output init is small but not degenerate.
    assert 0 < float(jnp.abs(seq).max()) < 1.0


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_step_matches_sequence_no_jit(kind):
    model, params, xs = _setup(kind)
    xs = xs[:, :3]  # op-by-op execution is slow: keep it short
    with jax.disable_jit():
        seq = model.sequence(params, xs)
        _, stepped = _rollout(model, params, xs, model.step)
    np.testing.assert_allclose(stepped, seq, atol=1e-5, rtol=1e-5)


def test_transformer_causality():
    model, params, xs = _setup("transformer")
    seq = _jit_sequence(model)
    base = seq(params, xs)
    for t in (0, 3, T - 1):
        perturbed = xs.at[:, t:].add(10.0)
        out = seq(params, perturbed)
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert not np.allclose(out[:, t], base[:, t])


def test_gru_and_transformer_use_history():
    """Unlike markov, the recurrent models' later outputs depend on earlier inputs."""
    for kind, depends in (("transformer", True), ("gru", True), ("markov", False)):
        model, params, xs = _setup(kind)
        seq = _jit_sequence(model)
        base = seq(params, xs)
        out = seq(params, xs.at[:, 0].add(1.0))
        assert (not np.allclose(out[:, -1], base[:, -1], atol=1e-7)) == depends, kind


@pytest.mark.parametrize("kind", KINDS)
def test_carry_shapes_no_retrace_full_horizon(kind):
    """A jitted step traced once, stepped over all H+1 slots, matches the full sequence."""
    model, params, _ = _setup(kind)
    xs = _full_horizon_inputs()
    carry0 = model.initial_carry(B)
    chex.clear_trace_counter()  # the counter is keyed by function, shared across parametrizations

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, carry, x):
        return model.step(params, carry, x)

    carry, outs = carry0, []
    for t in range(HORIZON + 1):
        carry, out = step(params, carry, xs[:, t])
        chex.assert_shape(out, (B, N_OUT))
        chex.assert_trees_all_equal_shapes_and_dtypes(carry, carry0)
        outs.append(out)
        if kind == "transformer" and t == T - 1:
            np.testing.assert_array_equal(carry["k"][:, :, T:], 0.0)  # slots not yet written stay zero
    chex.assert_tree_all_finite(carry)
    np.testing.assert_allclose(jnp.stack(outs, 1), _jit_sequence(model)(params, xs), atol=1e-5, rtol=1e-5)
    if kind == "transformer":
        chex.assert_shape([carry["k"], carry["v"]], (2, B, HORIZON + 1, 4, 16))
        assert carry["t"].dtype == jnp.int32 and int(carry["t"]) == HORIZON + 1
    elif kind == "gru":
        chex.assert_shape(carry, (B, 256))
    else:
        chex.assert_shape(carry, ())


def test_model_is_hashable_static_arg():
    a = networks.make_network("transformer", 2, HORIZON)
    b = networks.make_network("transformer", 2, HORIZON)
    assert a == b and hash(a) == hash(b)
    assert a != networks.make_network("transformer", 2, HORIZON + 1)


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def test_transformer_param_count():
    n_out = N_OUT
    _, params, _ = _setup("transformer")
    d, ff, ln = 64, 256, 2 * 64
    block = 3 * _dense(d, d) + _dense(d, d) + ln + _dense(d, ff) + _dense(ff, d) + ln  # q,k,v, out, LN, FF, LN
    expected = (
        _dense(IN_DIM, 256) + _dense(256, d) + ln + (HORIZON + 1) * d + 2 * block + _dense(d, n_out)
    )
    count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    assert count == expected


def test_gru_and_markov_param_counts():
    n_out = N_OUT
    gru = _setup("gru")[1]
    h = 256
    # flax GRUCell: input kernels (3 gates, with bias on r, z and the candidate) + recurrent kernels
    # (bias only on the candidate's recurrent part).
    gru_cell = 3 * _dense(64, h) + 3 * h * h + h
    expected_gru = _dense(IN_DIM, 64) + gru_cell + _dense(h, n_out)
    assert sum(x.size for x in jax.tree_util.tree_leaves(gru)) == expected_gru
    mlp = _setup("markov")[1]
    expected_mlp = _dense(IN_DIM, 256) + _dense(256, 256) + _dense(256, n_out)
    assert sum(x.size for x in jax.tree_util.tree_leaves(mlp)) == expected_mlp


def test_gru_width_sets_parameters_carry_and_step_equals_sequence():
    """``gru_hidden`` w: the cell's kernels, the head's input, the carry (B, w) and ``feature_dim`` follow it, the
    parameter count is the formula of ``test_gru_and_markov_param_counts`` at h = w, and step == sequence."""
    w = 128
    model = make_network("gru", N_OUT, HORIZON, gru_hidden=w)
    assert model != make_network("gru", N_OUT, HORIZON) and model.feature_dim == w
    params = model.init(jax.random.PRNGKey(0), IN_DIM)
    cell = params["params"]["cell"]
    assert {k: v["kernel"].shape for k, v in cell.items()} == {
        **{g: (64, w) for g in ("ir", "iz", "in")}, **{g: (w, w) for g in ("hr", "hz", "hn")}}
    assert params["params"]["head"]["kernel"].shape == (w, N_OUT)
    count = _dense(IN_DIM, 64) + 3 * _dense(64, w) + 3 * w * w + w + _dense(w, N_OUT)
    assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == count
    carry = model.initial_carry(B)
    assert carry.shape == (B, w) and carry.dtype == jnp.float32
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, IN_DIM))
    seq = jax.jit(model.sequence)(params, xs)
    last, stepped = jax.jit(_scan_rollout, static_argnums=0)(model, params, xs)
    chex.assert_shape([seq, stepped], (B, T, N_OUT))
    assert last.shape == (B, w) and model.features(params, xs).shape == (B, T, w)
    np.testing.assert_allclose(stepped, seq, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_gru_hidden_sets_the_width_of_actor_and_critic(shared):
    """``TrainConfig.gru_hidden`` reaches both networks through ``make_train`` (eval, report and resume build the
    trainer from a run's config the same way); the shared torso's value head reads w features."""
    from rl3jax.config import TrainConfig
    from rl3jax.trainer import make_train

    cfg = TrainConfig(env="bandit", algo="rl2", model="gru", horizon=4, num_envs=4, minibatch_envs=2,
                      gru_hidden=32, shared_torso=shared)
    tr = make_train(cfg)
    state = jax.eval_shape(tr.init, jax.random.key(0))
    assert tr.actor.feature_dim == 32 and tr.actor.initial_carry(3).shape == (3, 32)
    assert state.actor_params["params"]["cell"]["hn"]["kernel"].shape == (32, 32)
    critic = state.critic_params["params"]
    assert critic["head"]["kernel"].shape == (32, 1) if shared else critic["cell"]["hn"]["kernel"].shape == (32, 32)
    default = jax.eval_shape(make_train(cfg.replace(gru_hidden=256)).init, jax.random.key(0))
    assert default.actor_params["params"]["cell"]["hn"]["kernel"].shape == (256, 256)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="lstm") as excinfo:
        networks.make_network("lstm", 2, HORIZON)
    for kind in MODELS:  # the error lists every model the config accepts
        assert kind in str(excinfo.value)


# ---------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("kind", ["transformer-v4", "markov-v4"])
def test_v4_network_step_matches_sequence(kind):
    net = make_network(kind, 3, 7)
    params = net.init(jax.random.key(0), 6)
    xs = jax.random.normal(jax.random.key(1), (2, 7, 6))
    full = net.sequence(params, xs)

    def body(c, x):
        return net.step(params, c, x)

    _, outs = jax.jit(lambda p: jax.lax.scan(body, net.initial_carry(2), jnp.swapaxes(xs, 0, 1)))(params)
    np.testing.assert_allclose(np.asarray(jnp.swapaxes(outs, 0, 1)), np.asarray(full), atol=2e-5)


def test_v4_network_shapes_and_init():
    m, n, d, ff = 17, 5, 64, 256
    net = make_network("transformer-v4", n, 100)
    p = net.init(jax.random.key(0), m)["params"]
    count = sum(x.size for x in jax.tree.leaves(p))
    block = (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * ff + ff) + (ff * d + d) + 2 * d
    assert count == m * d + 2 * d + 1024 * d + 2 * block + d * n + n
    assert set(p["embed"]) == {"kernel"}  # no bias
    # Glorot-uniform × √64: uniform on ±8·sqrt(6/(m+d)), std 8·sqrt(2/(m+d))
    k = np.asarray(p["embed"]["kernel"])
    assert np.abs(k).max() <= 8 * math.sqrt(6 / (m + d)) + 1e-6
    assert abs(k.std() / (8 * math.sqrt(2 / (m + d))) - 1) < 0.1
    assert abs(float(np.asarray(p["pos_embedding"]).std()) / 0.01 - 1) < 0.05
    mk = make_network("markov-v4", n, 100)
    pm = mk.init(jax.random.key(0), m)["params"]
    assert sum(x.size for x in jax.tree.leaves(pm)) == (m * d + d) + (d * d + d) + (d * n + n)
    with pytest.raises(ValueError, match="1024 positional slots"):
        make_network("transformer-v4", n, 1024)


B, T, HORIZON, IN_DIM, N_OUT = 3, 7, 8, 5, 4
