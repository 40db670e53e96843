"""Inputs in the user's own layout (issue 13, contract decisions 1 and 10).

Every ``x`` / ``input_shape`` the user gives is read in the declared ``layout.data``: an
NHWC layer or network takes ``(N, H, W, C)``; ``detect_layout`` reads its ``input_shape``
in each candidate's data order; an input that does not fit says which layout it was read in
and how to fix it. And float32 reaches every layer: a parameter-free layer inside a float32
network is handed float32 and judged with float32's tolerances.

The layers are written the way TensorFlow-habit numpy code is: NHWC data, HWIO kernels,
im2col by fancy indexing with ``np.add.at`` in the backward, a max pool looping over the
batch, ``x @ W`` dense layers, an HWC flatten.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import harness
from harness import AdapterError, Layout, check_layer, check_network, detect_layout, wrap_layer, wrap_network
from harness import spec as S
from harness.compare import tolerance
from harness.target import TargetError, run

NHWC = Layout(data="NHWC", kernel="HWIO")
NET_LAYOUT = Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
X_NHWC = (2, 6, 4, 3)  # (N, H, W, C); H != W so a transposed reading cannot pass unnoticed
X_NCHW = (2, 3, 6, 4)  # the same input laid out canonically
CONV = S.Conv2d("conv1", 3, 4, 3, padding=1)


# --------------------------------------------------------------------------- the user's code


class ConvNHWC:
    """Stride-1 'same' conv on NHWC data with an HWIO kernel, by im2col with fancy indexing."""

    def __init__(self, cin: int = 3, cout: int = 4, k: int = 3, pad: int = 1, seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(cout)).astype(dtype)
        self.k, self.pad = k, pad

    def _index(self, h: int, w: int):
        ho, wo = h + 2 * self.pad - self.k + 1, w + 2 * self.pad - self.k + 1
        i = np.arange(ho)[:, None, None, None] + np.arange(self.k)[None, None, :, None]
        j = np.arange(wo)[None, :, None, None] + np.arange(self.k)[None, None, None, :]
        return i, j, ho, wo

    def forward(self, x):
        n, h, w, c = x.shape
        p = self.pad
        self.x_shape = x.shape
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        i, j, ho, wo = self._index(h, w)
        self.cols = xp[:, i, j, :].reshape(n * ho * wo, -1)  # (kh, kw, cin) raster: HWIO's first axes
        out = self.cols @ self.W.reshape(-1, self.W.shape[3]) + self.b
        return out.reshape(n, ho, wo, -1)

    def backward(self, dout):
        n, h, w, c = self.x_shape
        p, k, f = self.pad, self.k, dout.shape[3]
        i, j, ho, wo = self._index(h, w)
        d = dout.reshape(-1, f)
        self.dW = (self.cols.T @ d).reshape(self.W.shape)
        self.db = d.sum(axis=0)
        dcols = (d @ self.W.reshape(-1, f).T).reshape(n, ho, wo, k, k, c)
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=dout.dtype)
        np.add.at(dxp, (slice(None), i, j, slice(None)), dcols)
        return dxp[:, p:p + h, p:p + w, :]


class ReLU:
    """Float32 code's ReLU: every result cast back to float32; records the dtypes it is handed."""

    def __init__(self, cast=None):
        self.cast, self.seen = cast, []

    def forward(self, x):
        self.seen.append(("forward", x.dtype))
        self.mask = x > 0
        out = x * self.mask
        return out.astype(self.cast) if self.cast else out

    def backward(self, dout):
        self.seen.append(("backward", dout.dtype))
        dx = dout * self.mask
        return dx.astype(self.cast) if self.cast else dx


class MaxPoolNHWC:
    """2x2 max pool on NHWC data, one image at a time; the gradient goes to each window's argmax."""

    def _windows(self, image):  # (H, W, C) -> (H/2, W/2, C, 4)
        h, w, c = image.shape
        return image.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 4, 1, 3).reshape(h // 2, w // 2, c, 4)

    def forward(self, x):
        self.x = x
        n, h, w, c = x.shape
        out = np.zeros((n, h // 2, w // 2, c), dtype=x.dtype)
        for b in range(n):
            out[b] = self._windows(x[b]).max(axis=-1)
        return out

    def backward(self, dout):
        n, h, w, c = self.x.shape
        dx = np.zeros_like(self.x)
        for b in range(n):
            win = self._windows(self.x[b])
            dwin = np.zeros_like(win)
            np.put_along_axis(dwin, win.argmax(axis=-1)[..., None], dout[b][..., None], axis=-1)
            dx[b] = dwin.reshape(h // 2, w // 2, c, 2, 2).transpose(0, 3, 1, 4, 2).reshape(h, w, c)
        return dx


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)  # NHWC flattened: H, W, C order

    def backward(self, dout):
        return dout.reshape(self.shape)


class Dense:
    def __init__(self, fin: int, fout: int, seed: int = 1, dtype=np.float64, averaged: bool = False):
        rng = np.random.default_rng(seed)
        self.W = (rng.standard_normal((fin, fout)) / np.sqrt(fin)).astype(dtype)
        self.b = np.zeros(fout, dtype=dtype)
        self.averaged = averaged

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        if self.averaged:  # the bug: a mean over the batch where the loss already averaged
            self.dW /= dout.shape[0]
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class Net:
    def __init__(self, dtype=np.float64, averaged: bool = False, relu=None):
        self.layers = [ConvNHWC(dtype=dtype), relu or ReLU(), MaxPoolNHWC(), Flatten(),
                       Dense(3 * 2 * 4, 5, dtype=dtype, averaged=averaged)]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


NET_SPEC = S.Sequential([CONV, S.ReLU("relu1"), S.MaxPool2d("pool1", 2), S.Flatten("flat"), S.Linear("fc", 24, 5)])
NAMES = ["conv1", "relu1", "pool1", "flat", "fc"]


def wrapped_net(user: Net, input_shape=X_NHWC):
    return wrap_network(dict(zip(NAMES, user.layers)), NET_SPEC, forward=user.forward, backward=user.backward,
                        layout=NET_LAYOUT, input_shape=input_shape)


def nhwc_input(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(X_NHWC)


# --------------------------------------------------------------------------- one layer


def test_nhwc_conv_takes_its_input_in_nhwc() -> None:
    user = ConvNHWC()
    before = user.W.copy()
    report = check_layer(user, CONV, x=nhwc_input(), layout=NHWC)
    assert report.ok and report.layer("conv1").verdict == "pass", report.layer("conv1").message
    assert np.array_equal(user.W, before)


def test_nhwc_conv_input_shape_is_nhwc() -> None:
    report = check_layer(ConvNHWC(), CONV, input_shape=X_NHWC, layout=NHWC)
    assert report.layer("conv1").verdict == "pass"
    assert check_layer(wrap_layer(ConvNHWC(), CONV, layout=NHWC), input_shape=X_NHWC).ok  # the wrapped layer's layout


def test_an_nhwc_conv_with_a_wrong_weight_gradient_is_still_found() -> None:
    class Bugged(ConvNHWC):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dW = self.dW[::-1, ::-1]  # the kernel gradient rotated: a convolution/correlation mix-up
            return dx

    layer = check_layer(Bugged(), CONV, x=nhwc_input(), layout=NHWC).layer("conv1")
    assert layer.verdict == "backward"
    assert [t.name for t in layer.tensors if not t.ok] == ["weight"]


def test_an_nchw_x_given_to_an_nhwc_layer_says_how_it_was_read_and_how_to_fix_it() -> None:
    user = ConvNHWC()
    x = np.random.default_rng(0).standard_normal(X_NCHW)
    with pytest.raises(AdapterError) as e:
        check_layer(user, CONV, x=x, layout=NHWC)
    message = str(e.value)
    assert message.startswith("x has shape (2, 3, 6, 4), read as NHWC (N, H, W, C) as declared by "
                              "layout=Layout(data='NHWC', kernel='HWIO'): 4 channels, but 'conv1' expects 3")
    assert "pass x in NHWC (x.transpose(0, 2, 3, 1))" in message
    assert "if the code takes NCHW data, declare layout=Layout(kernel='HWIO') (data='NCHW', the default)" in message
    assert not hasattr(user, "cols")  # refused before any user code ran


def test_an_nchw_input_shape_given_to_an_nhwc_layer_names_the_shape_to_pass() -> None:
    with pytest.raises(AdapterError, match=re.escape("input_shape (2, 3, 6, 4), read as NHWC (N, H, W, C)")) as e:
        check_layer(ConvNHWC(), CONV, input_shape=X_NCHW, layout=NHWC)
    assert "pass input_shape in NHWC: (2, 6, 4, 3)" in str(e.value)


def test_an_nhwc_x_given_under_the_default_layout_suggests_declaring_nhwc() -> None:
    with pytest.raises(AdapterError) as e:
        check_layer(ConvNHWC(), CONV, x=nhwc_input(), layout=Layout(kernel="HWIO"))
    message = str(e.value)
    assert "read as NCHW (N, C, H, W), the default data order" in message
    assert "6 channels, but 'conv1' expects 3" in message
    assert ("pass x in NCHW (x.transpose(0, 3, 1, 2)), or, if the code takes NHWC data, declare "
            "layout=Layout(data='NHWC', kernel='HWIO')") in message


def test_an_input_that_fits_no_data_order_says_what_is_expected() -> None:
    with pytest.raises(AdapterError) as e:
        check_layer(ConvNHWC(), CONV, input_shape=(2, 5, 6, 7), layout=NHWC)
    message = str(e.value)
    assert "7 channels, but 'conv1' expects 3; expected (N, H, W, 3) in the declared NHWC" in message
    assert "transpose" not in message
    with pytest.raises(AdapterError, match=r"input_shape must be a tuple of ints such as \(2, 3, 8, 8\), got 7"):
        check_layer(ConvNHWC(), CONV, input_shape=7, layout=NHWC)


def test_two_dimensional_inputs_are_taken_as_they_are() -> None:
    dense = Dense(6, 3)
    report = check_layer(dense, S.Linear("fc", 6, 3), x=np.random.default_rng(1).standard_normal((4, 6)),
                         layout=Layout(data="NHWC", linear="in_out"))
    assert report.layer("fc").verdict == "pass"


# --------------------------------------------------------------------------- networks


def test_check_network_takes_x_in_the_networks_layout() -> None:
    user = Net()
    report = check_network(wrapped_net(user), x=nhwc_input())
    assert report.ok, [(l.name, l.verdict, l.message) for l in report.layers]
    assert [l.name for l in report.layers] == NAMES + ["(network)"]


def test_check_network_input_shape_is_nhwc_and_a_bug_is_still_placed() -> None:
    report = check_network(wrapped_net(Net(averaged=True)), input_shape=X_NHWC)
    assert report.first_failure == "fc" and report.layer("fc").verdict == "backward"
    assert all(report.layer(n).verdict == "pass" for n in NAMES[:-1])


def test_check_network_on_a_mapping_reads_x_in_the_declared_layout() -> None:
    user = Net()
    report = check_network(dict(zip(NAMES, user.layers)), NET_SPEC, x=nhwc_input(), layout=NET_LAYOUT)
    assert report.ok  # the mapping is wrapped told x's shape: the HWC flatten's (C, H, W) comes from it
    with pytest.raises(AdapterError, match=re.escape("x has shape (2, 3, 6, 4), read as NHWC (N, H, W, C)")):
        check_network(dict(zip(NAMES, Net().layers)), NET_SPEC, x=np.zeros(X_NCHW), layout=NET_LAYOUT)


def test_wrap_network_input_shape_in_nchw_for_an_nhwc_network_is_refused() -> None:
    with pytest.raises(AdapterError) as e:
        wrapped_net(Net(), input_shape=X_NCHW)
    message = str(e.value)
    assert "input_shape (2, 3, 6, 4), read as NHWC (N, H, W, C) as declared by layout=" in message
    assert "4 channels, but 'conv1' expects 3; pass input_shape in NHWC: (2, 6, 4, 3)" in message


def test_check_network_refuses_an_nchw_x_for_an_nhwc_network() -> None:
    user = Net()
    before = user.layers[0].W.copy()
    with pytest.raises(AdapterError, match=re.escape("x has shape (2, 3, 6, 4), read as NHWC (N, H, W, C)")):
        check_network(wrapped_net(user), x=np.zeros(X_NCHW))
    assert np.array_equal(user.layers[0].W, before)


def test_the_wrapped_network_keeps_input_shape_as_given() -> None:
    net = wrapped_net(Net())
    assert net.input_shape == X_NHWC
    with pytest.raises(AdapterError, match=re.escape("input shape (2, 4, 6, 3) differs from input_shape=(2, 6, 4, 3)")):
        net.forward(np.zeros((2, 3, 4, 6)))  # the low-level forward is canonical


class LossNet(Net):
    """A CS231n-style model around the NHWC network: ``loss(X)`` -> scores, ``loss(X, y)`` ->
    (mean softmax loss, grads by W1/b1/W2/b2), the arrays shared with the layers."""

    def __init__(self):
        super().__init__()
        conv, fc = self.layers[0], self.layers[4]
        self.params = {"W1": conv.W, "b1": conv.b, "W2": fc.W, "b2": fc.b}

    def loss(self, X, y=None):
        scores = self.forward(X)
        if y is None:
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        n = X.shape[0]
        loss = -np.log(probs[np.arange(n), y]).mean()
        dscores = probs.copy()
        dscores[np.arange(n), y] -= 1
        self.backward(dscores / n)
        conv, fc = self.layers[0], self.layers[4]
        return loss, {"W1": conv.dW, "b1": conv.db, "W2": fc.dW, "b2": fc.db}


def test_a_loss_model_takes_x_and_input_shape_in_its_layout() -> None:
    model = LossNet()
    lm = harness.wrap_loss_model(model, NET_SPEC, loss=S.SoftmaxCrossEntropy(), layout=NET_LAYOUT, input_shape=X_NHWC)
    assert lm.input_shape == X_NHWC
    report = check_network(lm, x=nhwc_input())
    assert report.ok and report.layers[0].name == "(network)", report.layers[0].message
    with pytest.raises(AdapterError, match=re.escape("input_shape (2, 3, 6, 4), read as NHWC (N, H, W, C)")):
        harness.wrap_loss_model(model, NET_SPEC, loss=S.SoftmaxCrossEntropy(), layout=NET_LAYOUT, input_shape=X_NCHW)


# --------------------------------------------------------------------------- detect_layout


def test_detect_layout_reads_input_shape_in_each_candidates_data_order() -> None:
    found = detect_layout(ConvNHWC(), CONV, input_shape=X_NHWC, layout=NHWC)
    assert found.matched and found.best == Layout(data="NHWC", kernel="HWIO"), str(found)
    skipped = [c for c in found.candidates if c.layout.data == "NCHW"]
    assert skipped and all("read as NCHW (N, C, H, W) does not fit: 6 channels, but 'conv1' expects 3" in c.reason
                           for c in skipped)


def test_detect_layout_with_a_shape_no_candidate_fits() -> None:
    with pytest.raises(AdapterError, match=r"detect_layout: layer 'conv1': the input_shape fits no candidate layout: "
                                           r"input_shape \(2, 5, 6, 7\) read as NCHW"):
        detect_layout(ConvNHWC(), CONV, input_shape=(2, 5, 6, 7), layout=NHWC)


# --------------------------------------------------------------------------- trigrad check's target dict


def test_the_target_dicts_x_and_input_shape_are_in_the_declared_layout() -> None:
    layer = run({"check": ConvNHWC(), "spec": CONV, "layout": NHWC, "x": nhwc_input()})
    assert layer.layer("conv1").verdict == "pass"
    assert run({"check": wrapped_net(Net()), "input_shape": X_NHWC}).ok
    assert run({"check": wrapped_net(Net())}).ok  # the wrapped network's own input_shape, as given
    with pytest.raises(TargetError, match=r"x has shape \(2, 3, 6, 4\), read as NHWC .*x\.transpose\(0, 2, 3, 1\)"):
        run({"check": ConvNHWC(), "spec": CONV, "layout": NHWC, "x": np.zeros(X_NCHW)})


def test_a_snapshot_records_the_canonical_input_of_an_nhwc_x() -> None:
    wrapped = wrap_layer(ConvNHWC(), CONV, layout=NHWC)
    x = nhwc_input()
    snap = harness.record_snapshot(wrapped, x=x)
    assert np.array_equal(snap.entries["conv1"].arrays["x"], x.transpose(0, 3, 1, 2))  # the file format is unchanged
    assert harness.compare_snapshot(wrap_layer(ConvNHWC(), CONV, layout=NHWC), snap).ok
    by_shape = harness.record_snapshot(wrapped, input_shape=X_NHWC)
    assert by_shape.entries["conv1"].arrays["x"].shape == X_NCHW


def test_a_sweep_reads_the_spec_factorys_shape_in_the_codes_layout() -> None:
    def spec_factory(k):
        return S.Conv2d("conv1", 3, 4, k, padding=1), X_NHWC

    def make_layer(k):
        return wrap_layer(ConvNHWC(k=k), spec_factory(k)[0], layout=NHWC)  # pre-wrapped: its own layout

    assert harness.check_config(make_layer, spec_factory, {"k": 3}).ok
    result = harness.sweep(make_layer, spec_factory, {"k": [3, 9]}, max_examples=8, progress=False)
    assert result.ok and result.examples == 1 and result.skipped >= 1  # k=9 does not fit a 6x4 image padded by 1

    def nchw_factory(k):  # the shape laid out canonically: it does not fit the NHWC code
        return spec_factory(k)[0], X_NCHW

    result = harness.sweep(make_layer, nchw_factory, {"k": [3]}, max_examples=4, progress=False)
    assert result.examples == 0 and result.skipped >= 1
    assert result.last_rejection.startswith("input_shape (2, 3, 6, 4), read as NHWC (N, H, W, C) as declared by ")
    assert "pass input_shape in NHWC: (2, 6, 4, 3)" in result.last_rejection


# --------------------------------------------------------------------------- float32 reaches every layer


def test_a_parameter_free_layer_in_a_float32_network_is_handed_and_judged_in_float32() -> None:
    relu = ReLU(cast=np.float32)  # float32 code: casts its results to float32, right only when handed float32
    user = Net(dtype=np.float32, relu=relu)
    net = wrapped_net(user)
    assert net.dtype == np.float32 and net.layers["relu1"].dtype == np.float32
    assert net.layers["pool1"].dtype == np.float32 and net.layers["flat"].dtype == np.float32
    report = check_network(net, x=nhwc_input().astype(np.float32))
    assert report.ok, [(l.name, l.verdict, l.message, l.diagnosis) for l in report.layers]
    assert {dtype for _, dtype in relu.seen} == {np.dtype(np.float32)}
    result = report.layer("relu1")
    assert result.dtype == "float32"
    per_example = 6 * 4 * 4  # the ReLU's input and output: (H, W, C) per example
    for t in result.tensors:
        assert t.tolerance == pytest.approx(tolerance(np.float32, per_example))
        assert t.tolerance > 1e3 * tolerance(np.float64, per_example)


def test_a_float32_networks_relu_bug_is_found_in_float32() -> None:
    class NoMask(ReLU):
        def backward(self, dout):
            super().backward(dout)
            return dout.astype(np.float32)  # the mask forgotten: gradient flows where x < 0 too

    report = check_network(wrapped_net(Net(dtype=np.float32, relu=NoMask(cast=np.float32))), input_shape=X_NHWC)
    assert report.first_failure == "relu1" and report.layer("relu1").verdict == "backward"
    assert report.layer("relu1").dtype == "float32"


def test_a_declared_dtype_wins_and_a_layer_alone_stays_float64() -> None:
    user = Net(dtype=np.float32)
    own = wrap_layer(user.layers[1], S.ReLU("relu1"), dtype=np.float64)
    layers = {**dict(zip(NAMES, user.layers)), "relu1": own}
    net = wrap_network(layers, NET_SPEC, layout=NET_LAYOUT, input_shape=X_NHWC)
    assert net.layers["relu1"].dtype == np.float64 and net.layers["pool1"].dtype == np.float32
    assert wrap_layer(ReLU(), S.ReLU("r")).dtype == np.float64  # no network to take a dtype from
    free = wrap_network({"relu": ReLU()}, S.Sequential([S.ReLU("relu")]))
    assert free.dtype == np.float64 and free.layers["relu"].dtype == np.float64
