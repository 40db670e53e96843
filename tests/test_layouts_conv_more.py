"""Kernel orders of ConvTranspose2d and Conv1d (issue 17): ``Layout.kernel`` names the
canonical weight's axes by position (a transposed conv's ``O`` is its input channels; a
Conv1d drops the ``H``), conversions round-trip bit for bit under every order and flip, a
kernel stored in another order gets a hint naming the declaration, and detect_layout finds it."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg
from harness import spec as S
from harness.adapters.layouts import KERNEL_ORDERS, Layout, LayoutError, param_from_user, param_to_user
from harness.check import check_layer
from zoo.conv_more import Conv1DKIO, DeconvHWIO

LAYERS = [S.ConvTranspose2d("t", 4, 6, (2, 3), groups=2), S.Conv1d("c", 4, 6, 5, groups=2)]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.kind)
@pytest.mark.parametrize("flip", [False, True])
def test_every_order_round_trips_exactly(layer, flip: bool) -> None:
    expected = layer.local_params(())["weight"].shape
    w = np.random.default_rng(0).normal(size=expected)
    for kernel in KERNEL_ORDERS:
        layout = Layout(kernel=kernel, flip=flip)
        canon = "OIHW" if w.ndim == 4 else "OIW"
        user_shape = tuple(expected[canon.index(c)] for c in kernel if c in canon)
        user = param_to_user(layer, "weight", w, layout, user_shape)
        assert user.shape == user_shape
        assert np.array_equal(param_from_user(layer, "weight", user, layout, expected), w)


def test_the_letters_are_positions_of_the_canonical_weight() -> None:
    t = S.ConvTranspose2d("t", 2, 3, (4, 5))  # canonical (in=2, out=3, kh=4, kw=5)
    w = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert param_to_user(t, "weight", w, Layout(kernel="HWIO"), (4, 5, 3, 2)).shape == (
        4,
        5,
        3,
        2,
    )  # TF: (kh, kw, out, in)
    c = S.Conv1d("c", 2, 3, 4)  # canonical (out=3, in=2, k=4)
    v = np.arange(24.0).reshape(3, 2, 4)
    kio = param_to_user(c, "weight", v, Layout(kernel="HWIO"), (4, 2, 3))
    assert np.array_equal(kio, v.transpose(2, 1, 0))  # (k, in, out)
    flipped = param_to_user(c, "weight", v, Layout(flip=True), (3, 2, 4))
    assert np.array_equal(flipped, v[:, :, ::-1])


@pytest.mark.parametrize(
    "make,spec,message",
    [
        (
            Conv1DKIO,
            S.Conv1d("conv1d", 3, 4, 3),
            "layer 'conv1d': parameter 'weight' has shape (3, 3, 4) in the declared Layout(); expected (4, 3, 3) there; "
            "looks like HWIO (k, in/groups, out): pass Layout(kernel='HWIO') (also fits IHWO",
        ),
        (
            DeconvHWIO,
            S.ConvTranspose2d("deconv", 2, 3, 2, stride=2),
            "layer 'deconv': parameter 'weight' has shape (2, 2, 3, 2) in the declared Layout(); expected (2, 3, 2, 2) "
            "there; looks like HWIO (kh, kw, out/groups, in): pass Layout(kernel='HWIO')",
        ),
    ],
)
def test_a_kernel_in_another_order_is_named(make, spec, message: str) -> None:
    with pytest.raises(LayoutError) as err:
        tg.check_layer(make(), spec)
    assert message in str(err.value)


def test_detect_layout_finds_the_kernel_order() -> None:
    found = tg.detect_layout(Conv1DKIO(), S.Conv1d("conv1d", 3, 4, 3))
    assert found.matched and found.best.kernel.replace("H", "") == "WIO"
    assert len(found.candidates) == 4  # the 1-D orders that fit (3, 3, 4), each tried once, with and without flip
    found = tg.detect_layout(DeconvHWIO(), S.ConvTranspose2d("deconv", 2, 3, 2, stride=2))
    assert found.matched and found.best == Layout(kernel="HWIO")


class _NumpyMLConv1D:
    """numpy-ml's Conv1D habits: X (n_ex, l_in, in_ch), W (kernel_width, in_ch, out_ch) and
    b (1, 1, out_ch) in a ``parameters`` dict, gradients in ``gradients``, a loop over positions."""

    def __init__(self, stride: int = 2, pad: int = 1, seed: int = 0, bug: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.parameters = {"W": rng.normal(size=(3, 3, 4)) * 0.3, "b": rng.normal(size=(1, 1, 4)) * 0.1}
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}
        self.stride, self.pad, self.bug = stride, pad, bug

    def forward(self, X):
        W, b, s, p = self.parameters["W"], self.parameters["b"], self.stride, self.pad
        self.X = Xp = np.pad(X, ((0, 0), (p, p), (0, 0)))
        l_out = (Xp.shape[1] - W.shape[0]) // s + 1
        Y = np.zeros((X.shape[0], l_out, W.shape[2]))
        for i in range(l_out):
            Y[:, i, :] = np.einsum("nkc,kco->no", Xp[:, i * s : i * s + W.shape[0], :], W) + b[0]
        return Y

    def backward(self, dLdy):
        W, s, p = self.parameters["W"], self.stride, self.pad
        dXp, dW = np.zeros_like(self.X), np.zeros_like(W)
        for i in range(dLdy.shape[1]):
            dW += np.einsum("nkc,no->kco", self.X[:, i * s : i * s + W.shape[0], :], dLdy[:, i, :])
            dXp[:, i * s : i * s + W.shape[0], :] += np.einsum("kco,no->nkc", W, dLdy[:, i, :])
        self.gradients["W"] = dW * (0.5 if self.bug else 1.0)
        self.gradients["b"] = dLdy.sum(axis=(0, 1)).reshape(1, 1, -1)
        return dXp[:, p:-p, :] if p else dXp


def test_numpy_ml_channels_last_conv1d_checks_under_a_declared_nlc_layout() -> None:
    """(N, L, C) data is Layout(sequence="NLC"), its (k, in, out) kernel kernel="HWIO"; the
    input shape is given as the code takes it, channels last."""
    spec, layout = S.Conv1d("conv", 3, 4, 3, stride=2, padding=1), Layout(sequence="NLC", kernel="HWIO")
    for seed in (0, 1):
        good = check_layer(_NumpyMLConv1D(seed=seed), spec, input_shape=(2, 9, 3), layout=layout, seed=seed)
        assert good.layers[0].verdict == "pass", str(good)
    bad = check_layer(_NumpyMLConv1D(bug=True), spec, input_shape=(2, 9, 3), layout=layout).layers[0]
    assert bad.verdict == "backward" and [t.name for t in bad.tensors if not t.ok] == ["weight"], str(bad)
    with pytest.raises(LayoutError, match="'NLC'"):
        Layout(sequence="NCL")
