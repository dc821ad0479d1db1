"""Tests for rl3jax.networks: cached step == full sequence, causality, shapes, tracing, parameter count."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl3jax import networks

B, T, HORIZON, IN_DIM, N_OUT = 3, 7, 8, 5, 4
KINDS = ("transformer", "gru", "markov")


def _setup(kind, num_outputs=N_OUT):
    model = networks.make_network(kind, num_outputs, HORIZON)
    params = model.init(jax.random.PRNGKey(0), IN_DIM)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, IN_DIM))
    return model, params, xs


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
    seq = jax.jit(model.sequence)(params, xs)
    _, stepped = jax.jit(_scan_rollout, static_argnums=0)(model, params, xs)
    chex.assert_shape([seq, stepped], (B, T, N_OUT))
    chex.assert_tree_all_finite((seq, stepped))
    np.testing.assert_allclose(stepped, seq, atol=1e-5, rtol=1e-5)
    # Output init is small but not degenerate.
    assert 0 < float(jnp.abs(seq).max()) < 1.0


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_step_matches_sequence_no_jit(kind):
    model, params, xs = _setup(kind)
    with jax.disable_jit():
        seq = model.sequence(params, xs)
        _, stepped = _rollout(model, params, xs, model.step)
    np.testing.assert_allclose(stepped, seq, atol=1e-5, rtol=1e-5)


def test_full_horizon_sequence_matches_steps():
    """The cache holds H+1 slots; a sequence that fills them all still agrees."""
    model = networks.make_network("transformer", 1, HORIZON)
    params = model.init(jax.random.PRNGKey(2), IN_DIM)
    xs = jax.random.normal(jax.random.PRNGKey(3), (2, HORIZON + 1, IN_DIM))
    carry, stepped = _scan_rollout(model, params, xs)
    np.testing.assert_allclose(stepped, model.sequence(params, xs), atol=1e-5, rtol=1e-5)
    assert int(carry["t"]) == HORIZON + 1


def test_transformer_causality():
    model, params, xs = _setup("transformer")
    seq = jax.jit(model.sequence)
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
        base = model.sequence(params, xs)
        out = model.sequence(params, xs.at[:, 0].add(1.0))
        assert (not np.allclose(out[:, -1], base[:, -1], atol=1e-7)) == depends, kind


@pytest.mark.parametrize("kind", KINDS)
def test_carry_shapes_and_no_retrace(kind):
    model, params, xs = _setup(kind)
    carry0 = model.initial_carry(B)
    chex.clear_trace_counter()  # the counter is keyed by function, shared across parametrizations

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, carry, x):
        return model.step(params, carry, x)

    carry = carry0
    for t in range(T):
        carry, out = step(params, carry, xs[:, t])
        chex.assert_shape(out, (B, N_OUT))
        chex.assert_trees_all_equal_shapes_and_dtypes(carry, carry0)
    chex.assert_tree_all_finite(carry)
    if kind == "transformer":
        chex.assert_shape([carry["k"], carry["v"]], (2, B, HORIZON + 1, 4, 16))
        assert carry["t"].dtype == jnp.int32 and int(carry["t"]) == T
        # Slots not yet written stay zero.
        np.testing.assert_array_equal(carry["k"][:, :, T:], 0.0)
    elif kind == "gru":
        chex.assert_shape(carry, (B, 256))


def test_model_is_hashable_static_arg():
    a = networks.make_network("transformer", 2, HORIZON)
    b = networks.make_network("transformer", 2, HORIZON)
    assert a == b and hash(a) == hash(b)
    assert a != networks.make_network("transformer", 2, HORIZON + 1)


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def test_transformer_param_count():
    n_out = 3
    model = networks.make_network("transformer", n_out, HORIZON)
    params = model.init(jax.random.PRNGKey(0), IN_DIM)
    d, ff, ln = 64, 256, 2 * 64
    block = 3 * _dense(d, d) + _dense(d, d) + ln + _dense(d, ff) + _dense(ff, d) + ln  # q,k,v, out, LN, FF, LN
    expected = (
        _dense(IN_DIM, 256) + _dense(256, d) + ln + (HORIZON + 1) * d + 2 * block + _dense(d, n_out)
    )
    count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    assert count == expected


def test_gru_and_markov_param_counts():
    n_out = 1
    gru = networks.make_network("gru", n_out, HORIZON).init(jax.random.PRNGKey(0), IN_DIM)
    h = 256
    # flax GRUCell: input kernels (3 gates, with bias on r, z and the candidate) + recurrent kernels
    # (bias only on the candidate's recurrent part).
    gru_cell = 3 * _dense(64, h) + 3 * h * h + h
    expected_gru = _dense(IN_DIM, 64) + gru_cell + _dense(h, n_out)
    assert sum(x.size for x in jax.tree_util.tree_leaves(gru)) == expected_gru
    mlp = networks.make_network("markov", n_out, HORIZON).init(jax.random.PRNGKey(0), IN_DIM)
    expected_mlp = _dense(IN_DIM, 256) + _dense(256, 256) + _dense(256, n_out)
    assert sum(x.size for x in jax.tree_util.tree_leaves(mlp)) == expected_mlp


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="lstm") as excinfo:
        networks.make_network("lstm", 2, HORIZON)
    for kind in KINDS:
        assert kind in str(excinfo.value)
