"""check_layer: the verdict table on real handwritten layers, and the user's model untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layouts import Layout
from harness.check import check_layer

from handwritten import ConvReLU


class Dense:
    """y = x W + b with W (in, out): correct, unless a subclass says otherwise."""

    def __init__(self, n_in=4, n_out=3, dtype=np.float64, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)).astype(dtype), rng.normal(size=n_out).astype(dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class BiasNotSummed(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = dy[0]  # forgot to sum over the batch
        return dx


class ScaledForward(Dense):
    """Forward uses 2W, and the backward faithfully differentiates that wrong forward."""

    def forward(self, x):
        self.x = x
        return x @ (2 * self.W) + self.b

    def backward(self, dy):
        self.dW, self.db = 2 * self.x.T @ dy, dy.sum(axis=0)
        return dy @ (2 * self.W).T


class OffsetForward(Dense):
    def forward(self, x):
        return super().forward(x) + 1.0  # a constant offset: the gradient is still right


class BothWrong(ScaledForward):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = -self.dW
        return dx


class Raises(Dense):
    def backward(self, dy):
        raise IndexError("index 7 is out of bounds")


def check(user, **kw):
    before = {k: fingerprint(getattr(user, k)) for k in ("W", "b")}
    report = check_layer(user, S.Linear("fc", 4, 3), layout=Layout(linear="in_out"), **kw)
    assert {k: fingerprint(getattr(user, k)) for k in ("W", "b")} == before  # never change the user's model
    return report


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correct_layer_passes(dtype) -> None:
    report = check(Dense(dtype=dtype))
    assert report.ok and report.first_failure is None, str(report)
    layer = report.layer("fc")
    assert {t.name for t in layer.tensors} == {"output", "input", "weight", "bias"}
    assert all(t.fd is not None and t.fd.consistent for t in layer.tensors if t.side == "backward")
    assert layer.refs_error < 1e-12


@pytest.mark.parametrize("user,expected", [
    (BiasNotSummed(), "backward"),
    (ScaledForward(), "forward"),
    (OffsetForward(), "forward"),
    (BothWrong(), "both"),
])
def test_verdicts_on_buggy_layers(user, expected: str) -> None:
    report = check(user)
    assert report.layer("fc").verdict == expected, str(report)
    assert report.first_failure == "fc" and not report.ok


def test_bias_bug_is_located_in_the_bias() -> None:
    layer = check(BiasNotSummed()).layer("fc")
    bad = {t.name for t in layer.tensors if not t.ok}
    assert bad == {"bias"}
    bias = next(t for t in layer.tensors if t.name == "bias")
    assert bias.fd.consistent is False and bias.error_torch > 0.1


def test_user_exception_becomes_an_error_verdict_with_the_users_frame() -> None:
    report = check(Raises())
    layer = report.layer("fc")
    assert layer.verdict == "error"
    assert "IndexError: index 7 is out of bounds at " in layer.message and "test_check_layer.py" in layer.message
    assert "in backward" in layer.message


def test_relu_conv_span_and_report_serialisation() -> None:
    span = S.Sequential([S.Conv2d("conv", 2, 3, 1), S.ReLU("relu")], name="block")
    report = check_layer(ConvReLU(), span, input_shape=(2, 2, 5, 4), seed=4)
    assert report.ok, str(report)
    data = json.loads(report.to_json())
    assert data["ok"] and data["layers"][0]["verdict"] == "pass" and data["seed"] == 4
    assert "block" in str(report) and "pass" in str(report)


class OverlapPool:
    """3x3 max pool, stride 2 (overlapping windows), NCHW; ``assign`` is the classic bug of
    writing the window's gradient with = where overlapping windows need +=."""

    def __init__(self, assign: bool = False):
        self.assign = assign

    def forward(self, x):
        self.x = x
        n, c, h, w = x.shape
        oh, ow = (h - 3) // 2 + 1, (w - 3) // 2 + 1
        out = np.empty((n, c, oh, ow))
        for i in range(oh):
            for j in range(ow):
                out[:, :, i, j] = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
        return out

    def backward(self, dy):
        dx = np.zeros_like(self.x)
        n, c = dy.shape[:2]
        for i in range(dy.shape[2]):
            for j in range(dy.shape[3]):
                win = self.x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(n, c, 9)
                k = win.argmax(axis=2)
                for a in range(n):
                    for b in range(c):
                        u, v = divmod(int(k[a, b]), 3)
                        if self.assign:
                            dx[a, b, 2 * i + u, 2 * j + v] = dy[a, b, i, j]
                        else:
                            dx[a, b, 2 * i + u, 2 * j + v] += dy[a, b, i, j]
        return dx


@pytest.mark.parametrize("assign,expected", [(False, "pass"), (True, "backward")])
def test_overlapping_max_pool(assign: bool, expected: str) -> None:
    report = check_layer(OverlapPool(assign), S.MaxPool2d("pool", 3, 2), input_shape=(2, 2, 9, 8), seed=5)
    assert report.layer("pool").verdict == expected, str(report)


def test_a_layout_mismatch_is_named_when_the_forward_disagrees() -> None:
    """Kernel stored (O, I, W, H) but declared OIHW: the shapes fit, the values do not; the
    verdict is 'forward' and the diagnosis names the layout that reproduces the reference."""
    from test_detect import AnyOrderConv

    class OrderConv(AnyOrderConv):  # with a backward, in the same stored order
        def forward(self, x):
            self.x = x
            return super().forward(x)

        def backward(self, dy):
            w = self.W.transpose([self.order.index(c) for c in "OIHW"])
            k, (oh, ow) = w.shape[2], dy.shape[2:]
            dx, dw = np.zeros_like(self.x), np.zeros_like(w)
            for u in range(k):
                for v in range(k):
                    dx[:, :, u:u + oh, v:v + ow] += np.einsum("nohw,oc->nchw", dy, w[:, :, u, v])
                    dw[:, :, u, v] = np.einsum("nohw,nchw->oc", dy, self.x[:, :, u:u + oh, v:v + ow])
            self.dW, self.db = dw.transpose(["OIHW".index(c) for c in self.order]), dy.sum((0, 2, 3))
            return dx

    report = check_layer(OrderConv("OIWH", False), S.Conv2d("conv", 3, 5, 3), input_shape=(2, 3, 8, 7))
    layer = report.layer("conv")
    assert layer.verdict in ("forward", "both"), str(report)
    assert any("Layout(kernel='OIWH')" in d and d.startswith("layout:") for d in layer.diagnosis), layer.diagnosis
    assert check_layer(OrderConv("OIWH", False), S.Conv2d("conv", 3, 5, 3), input_shape=(2, 3, 8, 7),
                       layout=Layout(kernel="OIWH")).ok


def test_json_is_strict_non_finite_figures_become_null() -> None:
    from harness.results import LayerResult, Report, TensorResult

    t = TensorResult(name="bias", side="backward", shape=(3,), tolerance=1e-12, error_torch=float("inf"),
                     error_jax=float("nan"), worst_index=(np.int64(2),), worst_user=np.float64(1.0), worst_ref=0.0,
                     ok=False)
    report = Report(seed=1, layers=[LayerResult(name="fc", kind="Linear", verdict="backward", dtype="float64",
                                                tensors=[t])])
    text = report.to_json()
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text)  # strict: the standard json module's parse_constant is never hit
    tensor = data["layers"][0]["tensors"][0]
    assert tensor["error_torch"] is None and tensor["error_jax"] is None
    assert tensor["worst_index"] == [2] and tensor["worst_user"] == 1.0 and tensor["shape"] == [3]


def test_an_input_drawn_with_the_checks_own_seed_is_not_the_upstream_gradient() -> None:
    """x = default_rng(0).normal(...) and seed=0 would give g == x: a ReLU mask taken from the
    gradient would then equal the right one and pass; the check draws g from another stream."""
    from zoo.layers import ReLUMaskFromGradient

    from harness.kinks import upstream

    x = np.random.default_rng(0).normal(size=(3, 6))
    assert not np.array_equal(upstream(np.random.default_rng(0), x.shape, x, 0), x)
    report = check_layer(ReLUMaskFromGradient(), S.ReLU("relu"), x=x, seed=0)
    assert report.layers[0].verdict == "backward", str(report)
