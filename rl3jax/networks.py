"""Actor / critic sequence models of METHOD §4 (a causal transformer, a GRU, a Markov MLP) and the paper's own
code's (``transformer-v4``, ``markov-v4``).

Each model is a ``SequenceModel`` (``make_network``); ``step`` unrolled equals ``sequence`` to float tolerance.
Inputs: float32 policy inputs of size ``in`` (METHOD §1: m); outputs: float32, n = ``num_outputs``.

METHOD §4 init: hidden Dense layers keep flax's default (LeCun normal, zero bias); the output layer is
orthogonal with gain ``OUTPUT_SCALE`` (0.01: near-uniform logits, near-zero values); positional embedding
N(0, 1) like ``torch.nn.Embedding``; exact (erf) GELU and LayerNorm eps 1e-5 as PyTorch's. The v4 models
follow RL3 commit f8121786 (main_helper_fns.jl, Flux 0.13, Transformers.jl ba20957): every Dense Glorot-uniform
with zero bias (Flux's default), NNlib 0.8's tanh-approximate gelu.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl3jax.config import MODELS, V4_POS_SLOTS

# Sizes of METHOD §4.
ENC_HIDDEN = 256  # first input layer (transformer), MLP width (markov)
D_MODEL = 64  # transformer width; GRU input embedding; v4 MLP width
NUM_HEADS = 4
HEAD_DIM = D_MODEL // NUM_HEADS
FF_DIM = 256
NUM_LAYERS = 2
GRU_HIDDEN = 256
LN_EPS = 1e-5
OUTPUT_SCALE = 0.01  # orthogonal gain of the METHOD §4 output layers
V4_POS_STD = 0.01  # init std of transformer-v4's V4_POS_SLOTS learned positions (``LearnedPositionalEncoder``)

_NEG_INF = jnp.finfo(jnp.float32).min
_glorot = nn.initializers.xavier_uniform()


def _output_dense(num_outputs: int) -> nn.Dense:
    return nn.Dense(num_outputs, kernel_init=nn.initializers.orthogonal(OUTPUT_SCALE), name="head")


class _DecoderBlock(nn.Module):
    """Post-LN causal decoder block: x = LN(x + MHA(x)); x = LN(x + FF(x)), FF = Dense(64→256, gelu) →
    Dense(256→64); no dropout. ``v4``: Transformers.jl's ``DecoderLayer(no_encoder=true)`` (Glorot, tanh gelu)."""

    v4: bool = False

    def setup(self):
        init = {"kernel_init": _glorot} if self.v4 else {}  # Flux's default for v4, else flax's
        self.qkv = nn.Dense(3 * D_MODEL, name="qkv", **init)  # fused q, k, v projections
        self.out = nn.Dense(D_MODEL, name="out", **init)
        self.ln1 = nn.LayerNorm(epsilon=LN_EPS, name="ln1")
        self.ff1 = nn.Dense(FF_DIM, name="ff1", **init)
        self.ff2 = nn.Dense(D_MODEL, name="ff2", **init)
        self.ln2 = nn.LayerNorm(epsilon=LN_EPS, name="ln2")

    def _split_qkv(self, x):
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, NUM_HEADS, HEAD_DIM)
        return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

    def _finish(self, x, attn):
        x = self.ln1(x + self.out(attn.reshape(x.shape)))
        return self.ln2(x + self.ff2(nn.gelu(self.ff1(x), approximate=self.v4)))

    def __call__(self, x):
        """Full causal pass: x (B, T, d) -> (B, T, d)."""
        q, k, v = self._split_qkv(x)  # (B, T, h, hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(HEAD_DIM)
        t = x.shape[-2]
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        weights = jax.nn.softmax(jnp.where(causal, logits, _NEG_INF), axis=-1)
        return self._finish(x, jnp.einsum("bhqk,bkhd->bqhd", weights, v))

    def step(self, x, k_all, v_all, layer: int, t):
        """One timestep: x (B, d); caches (L, B, S, h, hd) for all layers. Writes this layer's slot t in
        place (no per-step copy of the caches) and attends to slots <= t."""
        q, k, v = self._split_qkv(x)  # (B, h, hd)
        k_all = jax.lax.dynamic_update_slice(k_all, k[None, :, None], (layer, 0, t, 0, 0))
        v_all = jax.lax.dynamic_update_slice(v_all, v[None, :, None], (layer, 0, t, 0, 0))
        k_cache, v_cache = k_all[layer], v_all[layer]
        logits = jnp.einsum("bhd,bshd->bhs", q, k_cache) / math.sqrt(HEAD_DIM)
        visible = jnp.arange(k_cache.shape[1]) <= t
        weights = jax.nn.softmax(jnp.where(visible, logits, _NEG_INF), axis=-1)
        return self._finish(x, jnp.einsum("bhs,bshd->bhd", weights, v_cache)), k_all, v_all


class Transformer(nn.Module):
    """METHOD §4 transformer: Dense 256 → Dense 64 → LN → + pos-emb (H+1 slots) → 2 post-LN blocks → relu →
    Dense. ``v4``: the paper's code's (``model == "transformer"``): Dense(in→64, no bias, weights Glorot × √64) →
    LN → + learned positional encoding (1024 slots, N(0, 0.01²)) → 2 v4 blocks → Dense(64→n), no relu.
    ``__call__``: the full causal pass; ``step``: one timestep with a key/value cache carry (``SequenceModel``)."""

    num_outputs: int
    horizon: int
    v4: bool = False

    def setup(self):
        if self.v4:
            self.embed = nn.Dense(D_MODEL, use_bias=False, name="embed",  # Glorot × √d
                                  kernel_init=lambda *args: _glorot(*args) * math.sqrt(D_MODEL))
            pos = nn.initializers.normal(stddev=V4_POS_STD), (V4_POS_SLOTS, D_MODEL)
            self.head = nn.Dense(self.num_outputs, kernel_init=_glorot, name="head")
        else:
            self.enc1 = nn.Dense(ENC_HIDDEN, name="enc1")
            self.enc2 = nn.Dense(D_MODEL, name="enc2")
            pos = nn.initializers.normal(stddev=1.0), (self.horizon + 1, D_MODEL)
            self.head = _output_dense(self.num_outputs)
        self.ln_in = nn.LayerNorm(epsilon=LN_EPS, name="ln_in")
        self.pos_embedding = self.param("pos_embedding", *pos)
        self.blocks = [_DecoderBlock(v4=self.v4, name=f"block{i}") for i in range(NUM_LAYERS)]

    def _embed(self, x):
        return self.ln_in(self.embed(x) if self.v4 else nn.relu(self.enc2(nn.relu(self.enc1(x)))))

    def _head(self, h):
        return self.head(h if self.v4 else nn.relu(h))

    def features(self, xs):
        """xs (B, T, in), T <= H + 1 -> (B, T, 64): what the output layer reads (after the relu)."""
        if xs.shape[-2] > self.horizon + 1:
            raise ValueError(f"sequence length {xs.shape[-2]} exceeds horizon + 1 = {self.horizon + 1}")
        h = self._embed(xs) + self.pos_embedding[: xs.shape[-2]]
        for block in self.blocks:
            h = block(h)
        return h if self.v4 else nn.relu(h)

    def __call__(self, xs):
        """xs (B, T, in), T <= H + 1 -> (B, T, n)."""
        return self.head(self.features(xs))

    def step(self, carry, x):
        """x (B, in) at position ``carry['t']`` (the same for all B; < H + 1) -> (carry, (B, n))."""
        t = carry["t"]
        h = self._embed(x) + jax.lax.dynamic_index_in_dim(self.pos_embedding, t, axis=0, keepdims=False)
        k_all, v_all = carry["k"], carry["v"]
        for i, block in enumerate(self.blocks):
            h, k_all, v_all = block.step(h, k_all, v_all, i, t)
        return {"k": k_all, "v": v_all, "t": t + 1}, self._head(h)


class GRU(nn.Module):
    """METHOD §4 GRU: Dense 64 (relu) → GRUCell(``hidden``: w, 256 as the paper) → Dense."""

    num_outputs: int
    hidden: int = GRU_HIDDEN

    def setup(self):
        self.enc = nn.Dense(D_MODEL, name="enc")
        self.cell = nn.GRUCell(features=self.hidden, name="cell")
        self.head = _output_dense(self.num_outputs)

    def features(self, xs):
        """xs (B, T, in) -> hidden states (B, T, w), from a zero hidden state; the input layer batched over T."""
        e = nn.relu(self.enc(xs))
        h0 = jnp.zeros((xs.shape[0], self.hidden), e.dtype)
        scan = nn.scan(lambda cell, c, x: cell(c, x), variable_broadcast="params", split_rngs={"params": False},
                       in_axes=1, out_axes=1)
        return scan(self.cell, h0, e)[1]

    def __call__(self, xs):
        """xs (B, T, in) -> (B, T, n) (``features``, then the output layer batched over T)."""
        return self.head(self.features(xs))

    def step(self, carry, x):
        """x (B, in), hidden state carry (B, w) -> (new hidden state, (B, n))."""
        h, _ = self.cell(carry, nn.relu(self.enc(x)))
        return h, self.head(h)


class Markov(nn.Module):
    """METHOD §4 RL³ (Markov): MLP 256-256 (relu) on the current input only. ``v4``: the paper's code's
    (``model == "markov"``): 64-64, all Glorot."""

    num_outputs: int
    v4: bool = False

    def setup(self):
        width, init = (D_MODEL, {"kernel_init": _glorot}) if self.v4 else (ENC_HIDDEN, {})
        self.fc1 = nn.Dense(width, name="fc1", **init)
        self.fc2 = nn.Dense(width, name="fc2", **init)
        self.head = (nn.Dense(self.num_outputs, name="head", **init) if self.v4
                     else _output_dense(self.num_outputs))

    def _hidden(self, rows):
        """rows (N, in) -> (N, 256) (v4: 64), the second hidden layer."""
        return nn.relu(self.fc2(nn.relu(self.fc1(rows))))

    def features(self, x):
        """x (..., in) -> (..., 256) (v4: 64), the second hidden layer, computed on the steps as rows."""
        return self._hidden(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def __call__(self, x):
        """x (..., in) -> (..., n), each step on its own. Every layer runs on the steps as rows (N, in), N the
        product of the leading axes: the same sums as on (B, T, in), and on XLA:CPU the gradient of a 2-D matmul
        ran 15% faster than that of a 3-D one (issue 22; only the float summation order differs)."""
        return self.head(self._hidden(x.reshape(-1, x.shape[-1]))).reshape(*x.shape[:-1], -1)

    def step(self, carry, x):
        return carry, self(x)


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """A linen module plus pure ``init`` / ``initial_carry`` / ``step`` / ``sequence`` (hashable, jit-static):
    ``kind`` (``MODELS``), ``num_outputs`` n (logits) or 1 (value), ``horizon`` H (sequences of up to H + 1 steps,
    all B in lockstep)."""

    kind: str
    num_outputs: int
    horizon: int
    module: nn.Module

    @functools.partial(jax.jit, static_argnames=("self", "input_dim"))
    def init(self, key: jax.Array, input_dim: int) -> Any:
        """Parameters (a float32 pytree) for inputs of size ``input_dim``, created through ``step`` (which
        touches every parameter); jitted (cached per model and input size): op-by-op initialisation is slow."""
        x = jnp.zeros((1, input_dim), jnp.float32)
        return self.module.init(key, self.initial_carry(1), x, method=self.module.step)

    def initial_carry(self, batch_size: int) -> Any:
        """Transformer: {'k','v': (L, B, H+1, heads, d/heads) zeros, 't': int32 0}; GRU: (B, w); markov: int32 0."""
        if self.kind in ("transformer", "transformer-v4"):
            shape = (NUM_LAYERS, batch_size, self.horizon + 1, NUM_HEADS, HEAD_DIM)
            return {"k": jnp.zeros(shape, jnp.float32), "v": jnp.zeros(shape, jnp.float32),
                    "t": jnp.zeros((), jnp.int32)}
        if self.kind == "gru":
            return jnp.zeros((batch_size, self.module.hidden), jnp.float32)
        return jnp.zeros((), jnp.int32)

    def step(self, params: Any, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """One timestep for B sequences (acting): x (B, in) float32 -> (new carry, out (B, n) float32). Stepping
        past H + 1 steps is not checked (the transformer's cache write is clamped by ``dynamic_update_slice``)."""
        return self.module.apply(params, carry, x, method=self.module.step)

    def sequence(self, params: Any, xs: jax.Array) -> jax.Array:
        """Full causal pass from the initial carry (training): xs (B, T, in) float32 -> (B, T, n) float32.
        ValueError (transformers) when T > H + 1."""
        return self.module.apply(params, xs)

    def features(self, params: Any, xs: jax.Array) -> jax.Array:
        """``sequence`` up to its output layer: xs (B, T, in) -> (B, T, ``feature_dim``) float32."""
        return self.module.apply(params, xs, method="features")

    def head(self, params: Any, h: jax.Array) -> jax.Array:
        """The output layer on ``features``: (..., ``feature_dim``) -> (..., n); ``head(p, features(p, xs))``
        is ``sequence(p, xs)``."""
        return self.module.apply(params, h, method=lambda m, h: m.head(h))

    @property
    def feature_dim(self) -> int:
        """The width of ``features``: 64 (transformers, markov-v4), 256 (markov) or the GRU's width w (gru)."""
        return self.module.hidden if self.kind == "gru" else ENC_HIDDEN if self.kind == "markov" else D_MODEL


class ValueHead(nn.Module):
    """The shared torso's critic (``TrainConfig.shared_torso``, METHOD §4): the METHOD §4 output layer Dense(d→1)
    on the actor's ``features`` (d = ``SequenceModel.feature_dim``), a model of one step (like ``Markov``)."""

    @nn.compact
    def __call__(self, h):
        return _output_dense(1)(h)

    def step(self, carry, h):
        return carry, self(h)


def make_value_head(horizon: int) -> SequenceModel:
    """The shared torso's critic as a ``SequenceModel`` (kind 'value-head', n = 1) over the actor's features:
    ``init(key, actor.feature_dim)``, ``sequence(params, actor.features(actor_params, xs))`` -> (B, T, 1)."""
    return SequenceModel(kind="value-head", num_outputs=1, horizon=horizon, module=ValueHead())


def make_network(kind: str, num_outputs: int, horizon: int, gru_hidden: int = GRU_HIDDEN) -> SequenceModel:
    """The network ``kind`` (one of ``rl3jax.config.MODELS``) with ``num_outputs`` n action logits (actor) or 1
    (critic), for horizon H (the transformers' positions: H + 1); ``gru_hidden``: the GRU's width w (``TrainConfig.
    gru_hidden``; other kinds ignore it). ValueError for an unknown kind, or transformer-v4 with H + 1 >
    ``V4_POS_SLOTS``."""
    v4 = kind.endswith("-v4")
    if kind in ("transformer", "transformer-v4"):
        if v4 and horizon + 1 > V4_POS_SLOTS:
            raise ValueError(f"transformer-v4 has {V4_POS_SLOTS} positional slots (as the original); horizon "
                             f"{horizon} needs {horizon + 1}")
        module = Transformer(num_outputs=num_outputs, horizon=horizon, v4=v4)
    elif kind == "gru":
        module = GRU(num_outputs=num_outputs, hidden=gru_hidden)
    elif kind in ("markov", "markov-v4"):
        module = Markov(num_outputs=num_outputs, v4=v4)
    else:
        raise ValueError(f"unknown network kind {kind!r}; valid kinds are {', '.join(MODELS)}")
    return SequenceModel(kind=kind, num_outputs=num_outputs, horizon=horizon, module=module)
