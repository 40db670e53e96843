"""The recurrent family in the JAX reference: RNN, LSTM, GRU over time with ``lax.scan`` (one
compiled step, whatever the sequence length), and their cells. Float64 under the caller's
``jax.enable_x64``; independent of the torch reference (imports neither torch nor
``torch_recurrent``). Merged into ``jax_ref._LAYERS`` through :data:`LAYERS`
(``(layer, path, x, ctx) -> y``, parameters in ``ctx.params[f"{path}.{local}"]``).

Layouts are the spec's: batch-first ``x (N, T, D)``; weights ``(G*H, D)`` / ``(G*H, H)`` whose
gate blocks follow PyTorch (LSTM ``i, f, g, o``; GRU ``r, z, n``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from harness import spec as S

_HI = lax.Precision.HIGHEST
Step = Callable[[jax.Array, Any], Any]


def _weights(layer: S._Recurrent, path: str, ctx: Any) -> dict[str, jax.Array | None]:
    """The layer's weights and biases by role; a fused bias counts as the input side's."""
    p = ctx.params
    get = lambda local: p[f"{path}.{local}"]  # noqa: E731
    w = {"wi": get("weight_ih"), "wh": get("weight_hh"), "bi": None, "bh": None}
    if layer.bias == "separate":
        w["bi"], w["bh"] = get("bias_ih"), get("bias_hh")
    elif layer.bias == "fused":
        w["bi"] = get("bias")
    return w


def _affine(v: jax.Array, weight: jax.Array | None, bias: jax.Array | None) -> jax.Array:
    y = jnp.matmul(v, weight.T, precision=_HI)  # type: ignore[union-attr]
    return y if bias is None else y + bias


def _step(layer: S._Recurrent, w: dict[str, Any]) -> Step:
    """``step(x_t, state) -> state``; the state is ``h``, or ``(h, c)`` for an LSTM."""
    hs = layer.hidden_size

    def rnn(x: jax.Array, h: jax.Array) -> jax.Array:
        pre = _affine(x, w["wi"], w["bi"]) + _affine(h, w["wh"], w["bh"])
        return jnp.where(pre > 0, pre, 0.0) if layer.nonlinearity == "relu" else jnp.tanh(pre)

    def lstm(x: jax.Array, hc: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        h, c = hc
        a = _affine(x, w["wi"], w["bi"]) + _affine(h, w["wh"], w["bh"])
        i, f, g, o = (a[:, k * hs : (k + 1) * hs] for k in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def gru(x: jax.Array, h: jax.Array) -> jax.Array:
        a, b = _affine(x, w["wi"], w["bi"]), _affine(h, w["wh"], w["bh"])
        r = jax.nn.sigmoid(a[:, :hs] + b[:, :hs])
        z = jax.nn.sigmoid(a[:, hs : 2 * hs] + b[:, hs : 2 * hs])
        n = jnp.tanh(a[:, 2 * hs :] + r * b[:, 2 * hs :])
        return (1.0 - z) * n + z * h

    return {"ifgo": lstm, "rzn": gru}.get(layer.gates, rnn)  # type: ignore[return-value]


def _sequence(layer: S._Recurrent, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    """``(N, T, D)`` -> ``(N, T, H)``: scan the step over the time axis."""
    zeros = jnp.zeros((x.shape[0], layer.hidden_size), x.dtype)
    h0 = ctx.params[f"{path}.h0"] if layer.initial_state else zeros
    state: Any = h0
    if isinstance(layer, S.LSTM):
        state = (h0, ctx.params[f"{path}.c0"] if layer.cell_state else zeros)
    step = _step(layer, _weights(layer, path, ctx))

    def body(carry: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
        new = step(x_t, carry)
        return new, new[0] if isinstance(new, tuple) else new

    _, hs = lax.scan(body, state, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def _cell(layer: S._Recurrent, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    step = _step(layer, _weights(layer, path, ctx))
    h = ctx.params[f"{path}.h"]
    if isinstance(layer, S.LSTMCell):
        return jnp.stack(step(x, (h, ctx.params[f"{path}.c"])), axis=1)  # (N, 2, H): [next_h, next_c]
    return step(x, h)


LAYERS: dict[type, Callable[..., jax.Array]] = {
    S.RNN: _sequence,
    S.LSTM: _sequence,
    S.GRU: _sequence,
    S.RNNCell: _cell,
    S.LSTMCell: _cell,
    S.GRUCell: _cell,
}

__all__ = ["LAYERS"]
