"""Buggy variants of the example LSTM language model: each is one realistic mistake from
CS231n-style code, written as a small override of the correct code in
:mod:`harness.examples.lstm`, and says where trigrad must find it.

Read a bug next to the function it replaces: the difference is the bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .lstm import (
    LSTM,
    LSTMLanguageModel,
    TemporalAffine,
    WordEmbedding,
    lstm_step_backward,
    sigmoid,
    temporal_affine_backward,
)

# ---------------------------------------------------------------------- the mistakes


def lstm_backward_no_carry(dh: np.ndarray, cache: tuple, step: Callable = lstm_step_backward) -> tuple:
    N, T, H = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((N, T, x0.shape[1]), dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dh.dtype)
    dprev_h = np.zeros((N, H), dh.dtype)
    dprev_c = np.zeros((N, H), dh.dtype)
    for t in reversed(range(T)):
        # the gradient from step t + 1 (dprev_h) is dropped: only the loss's dh[:, t] goes in
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step(dh[:, t, :], dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def lstm_backward_skips_first_step(dh: np.ndarray, cache: tuple, step: Callable = lstm_step_backward) -> tuple:
    N, T, H = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((N, T, x0.shape[1]), dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dh.dtype)
    dprev_h = np.zeros((N, H), dh.dtype)
    dprev_c = np.zeros((N, H), dh.dtype)
    for t in range(T - 1, 0, -1):  # stops at t = 1: timestep 0 is never backpropagated
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step(dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def lstm_step_backward_forget_uses_next_c(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple:
    x, prev_h, _, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dc * g
    df = dc * next_c  # next_c = f * prev_c + i * g: the forget gate multiplies prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)))
    return da.dot(Wx.T), da.dot(Wh.T), dprev_c, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_step_backward_gates_ifgo(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple:
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    # stacked in PyTorch's order i, f, g, o, while the forward slices i, f, o, g
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)))
    return da.dot(Wx.T), da.dot(Wh.T), dprev_c, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_step_backward_sigmoid_grad(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple:
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dc * g
    df = dc * prev_c
    dg = dc * i
    dprev_c = dc * f
    da = np.hstack((di * i * (1 - i), df * f * (1 - f), do * o * (1 + o), dg * (1 - g**2)))  # o * (1 - o)
    return da.dot(Wx.T), da.dot(Wh.T), dprev_c, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_step_forward_all_sigmoid(
    x: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple:
    H = prev_h.shape[1]
    a = sigmoid(x.dot(Wx) + prev_h.dot(Wh) + b)  # all four gates squashed at once: g should be a tanh
    i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward_all_sigmoid(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: tuple) -> tuple:
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    gates = np.hstack((i, f, o, g))
    dgates = np.hstack((dc * g, dc * prev_c, do, dc * i))
    da = dgates * gates * (1 - gates)  # every gate is a sigmoid here, so one derivative serves all four
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


class LSTMNoCarry(LSTM):
    def backward(self, dh: np.ndarray) -> np.ndarray:
        dx, self.dh0, self.dWx, self.dWh, self.db = lstm_backward_no_carry(dh, self.cache)
        return dx


class LSTMSkipsFirstStep(LSTM):
    def backward(self, dh: np.ndarray) -> np.ndarray:
        dx, self.dh0, self.dWx, self.dWh, self.db = lstm_backward_skips_first_step(dh, self.cache)
        return dx


class LSTMForgetUsesNextC(LSTM):
    step_backward = staticmethod(lstm_step_backward_forget_uses_next_c)


class LSTMBackwardGatesIFGO(LSTM):
    step_backward = staticmethod(lstm_step_backward_gates_ifgo)


class LSTMSigmoidGrad(LSTM):
    step_backward = staticmethod(lstm_step_backward_sigmoid_grad)


class LSTMAllSigmoid(LSTM):
    step_forward = staticmethod(lstm_step_forward_all_sigmoid)
    step_backward = staticmethod(lstm_step_backward_all_sigmoid)


class EmbeddingGradOverwritten(WordEmbedding):
    def backward(self, dout: np.ndarray) -> None:
        x, w_shape = self.cache
        self.dW = np.zeros(w_shape, dout.dtype)
        self.dW[x] = dout  # a repeated token keeps only its last row's gradient: np.add.at sums them


class AffineDwReshaped(TemporalAffine):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, w, b = self.cache
        N, T, D = x.shape
        M = b.shape[0]
        dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
        self.dW = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).reshape(D, M)  # (M, D) needs .T, not reshape
        self.db = dout.sum(axis=(0, 1))
        return dx


class AffineBiasNotSummedOverTime(TemporalAffine):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, self.dW, self.db = temporal_affine_backward(dout, self.cache)
        self.db = dout[:, -1, :].sum(axis=0)  # the last timestep's only, as in a non-temporal affine
        return dx


def temporal_softmax_loss_grad_unmasked(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N  # `dx_flat *= mask_flat[:, None]` missing: padding positions get a gradient
    return float(loss), dx_flat.reshape(N, T, V)


# ---------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class LSTMVariant:
    """One bug and what trigrad must say about it.

    name:      short kebab-case id.
    summary:   one line for a person.
    layer:     the spec layer trigrad must blame first (``"embed"``, ``"lstm"``,
               ``"vocab"``), or ``"(loss)"`` for a bug in the loss.
    side:      the verdict that layer must get: ``"forward"``, ``"backward"`` or ``"both"``.
    timestep:  for a bug in the LSTM's backward, the timestep trigrad names: where the input
               gradient first goes wrong as BPTT runs from t = T - 1 down to 0 (the largest t
               whose ``dx[:, t]`` is wrong: T - 1 when the step's own backward is wrong, less
               when only what is carried across steps is); None for a bug outside BPTT.
    diagnosis: a substring of one of trigrad's diagnosis lines for that layer, or ``""``.
    layers / loss: how the example is made: buggy layer classes by name, the loss function.
    code:      the functions that make the mistake, when a layer class only plugs them in
               (what the demo shows; else the layer classes).
    """

    name: str
    summary: str
    layer: str
    side: str
    timestep: int | None = None
    diagnosis: str = ""
    layers: tuple[tuple[str, type], ...] = field(default=(), repr=False)
    network: type[LSTMLanguageModel] = field(default=LSTMLanguageModel, repr=False)
    loss: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, np.ndarray]] | None = field(
        default=None, repr=False
    )
    code: tuple[Callable, ...] = field(default=(), repr=False)


STEPS = 5  # T of the example's batches: the BPTT variants' timesteps depend on it

_ALL = [
    LSTMVariant(
        "lstm-bptt-no-carry",
        "BPTT uses only the loss's dh[:, t] at each step, dropping the gradient carried back from step t + 1",
        "lstm",
        "backward",
        timestep=STEPS - 2,
        diagnosis="not carried back across steps",
        layers=(("lstm", LSTMNoCarry),),
        code=(lstm_backward_no_carry,),
    ),
    LSTMVariant(
        "lstm-bptt-skips-t0",
        "the BPTT loop runs t = T-1 ... 1 (range(T - 1, 0, -1)): timestep 0 is never backpropagated",
        "lstm",
        "backward",
        timestep=0,
        diagnosis="timestep 0 is never backpropagated",
        layers=(("lstm", LSTMSkipsFirstStep),),
        code=(lstm_backward_skips_first_step,),
    ),
    LSTMVariant(
        "lstm-forget-grad-next-c",
        "the forget gate's gradient multiplies by c_t instead of c_{t-1}",
        "lstm",
        "backward",
        timestep=STEPS - 1,
        layers=(("lstm", LSTMForgetUsesNextC),),
        code=(lstm_step_backward_forget_uses_next_c,),
    ),
    LSTMVariant(
        "lstm-backward-gates-ifgo",
        "the backward stacks the gate gradients as i, f, g, o while the forward slices i, f, o, g",
        "lstm",
        "backward",
        timestep=STEPS - 1,
        diagnosis="stacked as i,f,g,o",
        layers=(("lstm", LSTMBackwardGatesIFGO),),
        code=(lstm_step_backward_gates_ifgo,),
    ),
    LSTMVariant(
        "lstm-sigmoid-grad-plus",
        "the output gate's sigmoid derivative is written o * (1 + o)",
        "lstm",
        "backward",
        timestep=STEPS - 1,
        layers=(("lstm", LSTMSigmoidGrad),),
        code=(lstm_step_backward_sigmoid_grad,),
    ),
    LSTMVariant(
        "lstm-g-gate-sigmoid",
        "the forward squashes all four gates with a sigmoid (g should be a tanh); "
        "the backward is that forward's exact gradient",
        "lstm",
        "forward",
        layers=(("lstm", LSTMAllSigmoid),),
        code=(lstm_step_forward_all_sigmoid, lstm_step_backward_all_sigmoid),
    ),
    LSTMVariant(
        "embed-grad-overwritten",
        "the embedding's gradient is written dW[x] = dout: a repeated token keeps one row's gradient",
        "embed",
        "backward",
        diagnosis="overwritten instead of accumulated for repeated tokens",
        layers=(("embed", EmbeddingGradOverwritten),),
    ),
    LSTMVariant(
        "vocab-dw-reshaped",
        "the temporal affine's weight gradient (V, H) is reshaped to (H, V) instead of transposed",
        "vocab",
        "backward",
        layers=(("vocab", AffineDwReshaped),),
    ),
    LSTMVariant(
        "vocab-bias-last-step",
        "the temporal affine's bias gradient sums over the batch at the last timestep only",
        "vocab",
        "backward",
        layers=(("vocab", AffineBiasNotSummedOverTime),),
    ),
    LSTMVariant(
        "loss-grad-ignores-mask",
        "the temporal softmax loss masks padding in the loss value but not in its gradient",
        "(loss)",
        "backward",
        diagnosis="the mask is ignored in the gradient",
        loss=temporal_softmax_loss_grad_unmasked,
    ),
]

LSTM_VARIANTS: dict[str, LSTMVariant] = {v.name: v for v in _ALL}

__all__ = ["LSTM_VARIANTS", "STEPS", "LSTMVariant"]
