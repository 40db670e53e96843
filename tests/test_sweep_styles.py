"""harness.sweep over every calling style (harness/sweep_styles.py): a layer, a CS231n function pair, a
loss, a network (a {name: layer} mapping) and a CS231n loss model, each with a latent bug that only
some hyperparameters show, written the way from-scratch code is. Each sweep starts from a benign
configuration (the first value of every list is one where the code is right), searches a generic
space for its kind, and must shrink to a configuration consistent with the true trigger; the
correct twin swept over the same space reports nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import harness as tg
from conftest import slow
from harness.sweeper import SweepResult, check_config, sweep
from scratch_layers import ReLU, softmax_loss


def swept(make: Any, spec: Any, space: dict[str, Any], **kwargs: Any) -> SweepResult:
    return sweep(make, spec, space, seed=0, progress=False, **{"max_examples": 30, **kwargs})


def benign(make: Any, spec: Any, space: dict[str, Any], **check_kwargs: Any) -> None:
    """The sweep's start, every first value, is a configuration where the buggy code is right."""
    assert check_config(make, spec, {k: v[0] for k, v in space.items()}, **check_kwargs).ok


def no_failure(result: SweepResult) -> None:
    assert result.ok and result.failing is None and result.usage_error is None, result
    assert result.examples > 0


# --------------------------------------------------------------------------- a layer: a max pool's fast path


class MaxPool:
    """NCHW max pool: loops over the outputs for overlapping windows, CS231n's reshape trick when
    stride == kernel. The trick's gradient goes back to the input's size with ``np.resize``: right
    when the size divides the kernel (it is a reshape then); otherwise numpy fills the larger array
    by repeating the flat gradient, and every row after the first lands in the wrong place."""

    def __init__(self, k: int, s: int, bug: bool = False) -> None:
        self.k, self.s, self.bug = k, s, bug

    def forward(self, x):
        N, C, H, W = x.shape
        k, s = self.k, self.s
        oh, ow = (H - k) // s + 1, (W - k) // s + 1
        self.x = x
        if s == k:  # non-overlapping windows: the reshape trick
            self.xr = x[:, :, : oh * k, : ow * k].reshape(N, C, oh, k, ow, k)
            self.out = self.xr.max(axis=(3, 5))
            return self.out
        out = np.empty((N, C, oh, ow))
        for i in range(oh):
            for j in range(ow):
                out[:, :, i, j] = x[:, :, i * s : i * s + k, j * s : j * s + k].max(axis=(2, 3))
        return out

    def backward(self, dy):
        N, C, H, W = self.x.shape
        k, s = self.k, self.s
        dx = np.zeros_like(self.x)
        if s == k:
            mask = self.xr == self.out[:, :, :, None, :, None]
            dxr = mask * dy[:, :, :, None, :, None] / mask.sum(axis=(3, 5), keepdims=True)  # ties share
            if self.bug:
                return np.resize(dxr, self.x.shape)  # back to the input's size
            oh, ow = dy.shape[2] * k, dy.shape[3] * k
            dx[:, :, :oh, :ow] = dxr.reshape(N, C, oh, ow)
            return dx
        for i in range(dy.shape[2]):
            for j in range(dy.shape[3]):
                win = self.x[:, :, i * s : i * s + k, j * s : j * s + k]
                mask = win == win.max(axis=(2, 3), keepdims=True)
                dx[:, :, i * s : i * s + k, j * s : j * s + k] += (
                    mask * dy[:, :, i : i + 1, j : j + 1] / mask.sum(axis=(2, 3), keepdims=True)
                )
        return dx


POOL_SPACE = {
    "kernel": [2, 3],
    "stride": [2, 1, 3],
    "height": [4, 5, 6, 7],
    "width": [4, 5, 6, 7],
    "batch": [1, 2],
    "channels": [1, 2],
}


def pool_spec(kernel, stride, height, width, batch, channels):
    return tg.MaxPool2d("pool", kernel, stride=stride), (batch, channels, height, width)


def buggy_pool(kernel, stride, **rest):
    return MaxPool(kernel, stride, bug=True)


def good_pool(kernel, stride, **rest):
    return MaxPool(kernel, stride)


def test_a_pool_whose_fast_path_is_wrong_when_the_size_does_not_divide() -> None:
    found = swept(buggy_pool, pool_spec, POOL_SPACE)
    cfg = found.failing
    assert not found.ok and cfg is not None and found.style == "layer", found
    assert cfg["stride"] == cfg["kernel"] and (cfg["height"] % cfg["kernel"] or cfg["width"] % cfg["kernel"]), cfg
    assert found.report.layer("pool").verdict == "backward"
    benign(buggy_pool, pool_spec, POOL_SPACE)


# --------------------------------------------------------------------------- a function pair: CS231n conv


def conv_forward(x, w, b, conv_param):
    """CS231n's naive conv: x (N, C, H, W), w (F, C, HH, WW); ``conv_param`` stride and pad."""
    s, p = conv_param["stride"], conv_param["pad"]
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (xp.shape[2] - HH) // s + 1, (xp.shape[3] - WW) // s + 1
    out = np.zeros((x.shape[0], F, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", xp[:, :, i * s : i * s + HH, j * s : j * s + WW], w) + b
    return out, (x, w, conv_param)


def _backward(dout, cache, bug):
    """dw and db scattered per output; dx gathered per input position: the output ``i`` a kernel
    tap ``kh`` at padded row ``h`` came from is (h - kh) / stride, when that is a whole number. The
    buggy test of "a whole number" takes the row before padding: the same whenever pad = 0 or
    stride = 1, wrong for padding with stride > 1."""
    x, w, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    F, C, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dw, db = np.zeros_like(w), dout.sum(axis=(0, 2, 3))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dw += np.einsum("nf,nchw->fchw", dout[:, :, i, j], xp[:, :, i * s : i * s + HH, j * s : j * s + WW])
    dxp, (oh, ow) = np.zeros_like(xp), dout.shape[2:]
    for h in range(xp.shape[2]):
        for c in range(xp.shape[3]):
            for kh in range(HH):
                for kw in range(WW):
                    rh, rw = (h - p - kh, c - p - kw) if bug else (h - kh, c - kw)  # bug: before padding
                    i, j = (h - kh) // s, (c - kw) // s
                    if rh % s or rw % s or h < kh or c < kw or i >= oh or j >= ow:
                        continue
                    dxp[:, :, h, c] += dout[:, :, i, j] @ w[:, :, kh, kw]
    return dxp[:, :, p : xp.shape[2] - p, p : xp.shape[3] - p], dw, db


def conv_backward(dout, cache):
    return _backward(dout, cache, bug=False)


def conv_backward_buggy(dout, cache):
    return _backward(dout, cache, bug=True)


CONV_SPACE = {
    "stride": [1, 2, 3],
    "pad": [0, 1],
    "kernel": [1, 3],
    "height": [4, 5, 6],
    "width": [4, 5, 6],
    "batch": [1, 2],
    "channels": [1, 2],
    "filters": [1, 2],
}


def conv_spec(stride, pad, kernel, height, width, batch, channels, filters):
    return tg.Conv2d("conv", channels, filters, kernel, stride=stride, padding=pad), (batch, channels, height, width)


def conv_pair(backward):
    def make(stride, pad, kernel, height, width, batch, channels, filters):
        rng = np.random.default_rng(0)
        w, b = rng.standard_normal((filters, channels, kernel, kernel)), rng.standard_normal(filters)
        spec = conv_spec(stride, pad, kernel, height, width, batch, channels, filters)[0]
        return tg.wrap_functions(conv_forward, backward, spec, (w, b), args=({"stride": stride, "pad": pad},))

    return make


def test_a_conv_function_pair_wrong_only_for_stride_above_one_with_padding() -> None:
    found = swept(conv_pair(conv_backward_buggy), conv_spec, CONV_SPACE)
    cfg = found.failing
    assert not found.ok and cfg is not None and found.style == "layer", found
    assert cfg["stride"] > 1 and cfg["pad"] > 0, cfg
    assert (cfg["stride"], cfg["pad"], cfg["kernel"]) == (2, 1, 1)  # smallest: every other one lowered passes
    assert found.report.layer("conv").verdict == "backward"
    benign(conv_pair(conv_backward_buggy), conv_spec, CONV_SPACE)


# --------------------------------------------------------------------------- a loss: softmax cross-entropy


def softmax_loss_undivided(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(log_p)
    dx[np.arange(n), y] -= 1
    return -log_p[np.arange(n), y].mean(), dx  # the mean's 1/n forgotten in the gradient


LOSS_SPACE = {"batch": [1, 2, 3, 4], "classes": [2, 3, 5]}


def loss_spec(batch, classes):
    return tg.SoftmaxCrossEntropy(), (batch, classes)  # a tuple holding a loss spec


def test_a_loss_whose_gradient_forgets_the_batch_size() -> None:
    found = swept(lambda batch, classes: softmax_loss_undivided, loss_spec, LOSS_SPACE)
    assert not found.ok and found.style == "loss", found
    assert found.failing == {"batch": 2, "classes": 2}
    assert found.report.layer("(loss)").verdict == "backward"
    assert any("batch size" in d for d in found.report.layer("(loss)").diagnosis)
    benign(lambda batch, classes: softmax_loss_undivided, loss_spec, LOSS_SPACE)


# --------------------------------------------------------------------------- a network: a {name: layer} mapping


class Affine:
    """CS231n's affine: W (in, out). The buggy gradient is computed as (out, in) and turned by
    its shape to fit W: right whenever the layer is not square, transposed when it is."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, bug: bool) -> None:
        self.W, self.b, self.bug = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in), rng.standard_normal(n_out), bug

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        if self.bug:
            self.dW = dy.T @ self.x
            if self.dW.shape != self.W.shape:
                self.dW = self.dW.T
        else:
            self.dW = self.x.T @ dy
        self.db = dy.sum(axis=0)
        return dy @ self.W.T


NET_SPACE = {"batch": [1, 2, 3], "features": [2, 3, 4], "hidden": [3, 4, 5], "classes": [2, 3, 4]}


def net_spec(batch, features, hidden, classes):
    spec = tg.Sequential([tg.Linear("fc1", features, hidden), tg.ReLU("relu"), tg.Linear("fc2", hidden, classes)])
    return spec, (batch, features)


def two_layer_net(bug: bool):
    def make(batch, features, hidden, classes):
        rng = np.random.default_rng(0)
        return {"fc1": Affine(features, hidden, rng, bug), "relu": ReLU(), "fc2": Affine(hidden, classes, rng, bug)}

    return make


def test_a_network_whose_affine_backward_is_wrong_only_when_square() -> None:
    options = {"layout": tg.Layout(linear="in_out")}
    found = swept(two_layer_net(True), net_spec, NET_SPACE, check_kwargs=options)
    cfg = found.failing
    assert not found.ok and cfg is not None and found.style == "network", found
    first = found.report.first_failure
    assert (first == "fc1" and cfg["features"] == cfg["hidden"]) or (first == "fc2" and cfg["hidden"] == cfg["classes"])
    assert found.report.layer(first).verdict == "backward"
    benign(two_layer_net(True), net_spec, NET_SPACE, **options)


# --------------------------------------------------------------------------- a loss model: CS231n's TwoLayerNet


class TwoLayerNet:
    """CS231n's: params W1 (D, H), b1, W2 (H, C), b2; ``loss(X, y) -> (loss, grads)``. The buggy
    b2 gradient takes the batch mean of scores' gradients already divided by the batch size."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, bug: bool = False) -> None:
        rng = np.random.default_rng(0)
        self.params = {
            "W1": rng.standard_normal((input_dim, hidden_dim)) / np.sqrt(input_dim),
            "b1": rng.standard_normal(hidden_dim) * 0.1,
            "W2": rng.standard_normal((hidden_dim, num_classes)) / np.sqrt(hidden_dim),
            "b2": rng.standard_normal(num_classes) * 0.1,
        }
        self.bug = bug

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        h = np.maximum(X @ W1 + b1, 0)
        scores = h @ W2 + b2
        if y is None:
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        n = X.shape[0]
        loss = -np.log(p[np.arange(n), y]).mean()
        dscores = p.copy()
        dscores[np.arange(n), y] -= 1
        dscores /= n
        dh = dscores @ W2.T * (h > 0)
        db2 = dscores.mean(axis=0) if self.bug else dscores.sum(axis=0)
        return loss, {"W1": X.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ dscores, "b2": db2}


MODEL_SPACE = {"batch": [1, 2, 3, 4], "hidden": [3, 4, 6], "classes": [2, 3]}


def model_spec(batch, hidden, classes):
    spec = tg.Sequential([tg.Linear("fc1", 5, hidden), tg.ReLU("relu"), tg.Linear("fc2", hidden, classes)])
    return {"spec": spec, "input_shape": (batch, 5), "loss": tg.SoftmaxCrossEntropy()}


def test_a_loss_model_whose_bias_gradient_is_averaged_twice() -> None:
    found = swept(
        lambda batch, hidden, classes: TwoLayerNet(5, hidden, classes, bug=True),
        model_spec,
        MODEL_SPACE,
        check_kwargs={"layout": tg.Layout(linear="in_out")},
    )
    assert not found.ok and found.style == "loss model", found
    assert found.failing == {"batch": 2, "hidden": 3, "classes": 2}
    entry = found.report.layer("(network)")
    assert entry.verdict == "backward" and [t.name for t in entry.tensors if not t.ok] == ["fc2.bias"]
    benign(
        lambda batch, hidden, classes: TwoLayerNet(5, hidden, classes, bug=True),
        model_spec,
        MODEL_SPACE,
        layout=tg.Layout(linear="in_out"),
    )


def wrapped_model(batch, hidden, classes):  # the correct one, wrapped: the loss is the wrap's
    spec = model_spec(batch, hidden, classes)["spec"]
    return tg.wrap_loss_model(
        TwoLayerNet(5, hidden, classes), spec, loss=tg.SoftmaxCrossEntropy(), layout=tg.Layout(linear="in_out")
    )


def model_spec_only(batch, hidden, classes):
    return model_spec(batch, hidden, classes)["spec"], (batch, 5)


# --------------------------------------------------------------------------- the correct twins


IN_OUT = {"layout": tg.Layout(linear="in_out")}
TWINS = {
    "layer": (good_pool, pool_spec, POOL_SPACE, {}),
    "function pair": (conv_pair(conv_backward), conv_spec, CONV_SPACE, {}),
    "loss": (lambda batch, classes: tg.wrap_loss(softmax_loss, tg.SoftmaxCrossEntropy()), loss_spec, LOSS_SPACE, {}),
    "network": (two_layer_net(False), net_spec, NET_SPACE, IN_OUT),
    "loss model": (wrapped_model, model_spec_only, MODEL_SPACE, {}),
}


@pytest.mark.parametrize("examples", [6, pytest.param(40, marks=slow)])
@pytest.mark.parametrize("style", list(TWINS))
def test_the_correct_twin_swept_over_the_same_space_reports_nothing(style: str, examples: int) -> None:
    make, spec, space, options = TWINS[style]
    result = swept(make, spec, space, max_examples=examples, check_kwargs=options)
    no_failure(result)
    assert result.style == style.replace("function pair", "layer") and not result.inconclusive
