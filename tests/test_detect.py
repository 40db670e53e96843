"""Layout detection finds the convention the code really uses: all 24 kernel axis orders
x flip, both Linear orientations, both flatten orders, both data orders."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.detect import candidate_layouts, detect_layout
from harness.adapters.layer import wrap_layer
from harness.adapters.layouts import KERNEL_ORDERS, Layout


class AnyOrderConv:
    """Stores its kernel in ``order`` (and as a true convolution if ``flip``), NCHW data."""

    def __init__(self, order: str, flip: bool, o: int = 5, i: int = 3, k: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        canonical = rng.normal(size=(o, i, k, k))
        stored = canonical[:, :, ::-1, ::-1] if flip else canonical
        self.W = np.ascontiguousarray(stored.transpose(["OIHW".index(c) for c in order]))
        self.b = rng.normal(size=o)
        self.order, self.flip = order, flip

    def forward(self, x):
        w = self.W.transpose([self.order.index(c) for c in "OIHW"])
        if self.flip:
            w = w[:, :, ::-1, ::-1]
        k = w.shape[2]
        oh, ow = x.shape[2] - k + 1, x.shape[3] - k + 1
        out = np.zeros((x.shape[0], w.shape[0], oh, ow))
        for u in range(k):
            for v in range(k):
                out += np.einsum("nchw,oc->nohw", x[:, :, u:u + oh, v:v + ow], w[:, :, u, v])
        return out + self.b[None, :, None, None]

    def backward(self, dy):  # not needed for detection
        raise NotImplementedError


@pytest.mark.parametrize("order", KERNEL_ORDERS)
def test_every_kernel_order_and_flip_is_found(order: str) -> None:
    for flip in (False, True):
        user = AnyOrderConv(order, flip)
        before = fingerprint(user.W)
        found = detect_layout(user, S.Conv2d("conv", 3, 5, 3))
        assert found.matched and found.best == Layout(kernel=order, flip=flip), str(found)
        assert found.error < 1e-12
        # I = H = W = 3: six orders fit the shape; only the values tell them apart
        assert sum(c.error < np.inf for c in found.candidates) >= 6
        assert fingerprint(user.W) == before


class Dense:
    def __init__(self, orientation: str, n: int = 4, seed: int = 0):
        self.W = np.random.default_rng(seed).normal(size=(n, n))  # square: the shape cannot tell
        self.b = np.zeros(n)
        self.orientation = orientation

    def forward(self, x):
        return (x @ self.W if self.orientation == "in_out" else x @ self.W.T) + self.b

    def backward(self, dy):
        raise NotImplementedError


@pytest.mark.parametrize("orientation", ["out_in", "in_out"])
def test_linear_orientation_is_found(orientation: str) -> None:
    found = detect_layout(Dense(orientation), S.Linear("fc", 4, 4))
    assert found.matched and found.best.linear == orientation
    assert [c.layout.linear for c in found.candidates if c.error <= found.tol] == [orientation]


class Flat:
    def __init__(self, hwc: bool):
        self.hwc = hwc

    def forward(self, x):  # NCHW in; an HWC flatten transposes first (a TF port's habit)
        return (x.transpose(0, 2, 3, 1) if self.hwc else x).reshape(x.shape[0], -1)

    def backward(self, dy):
        raise NotImplementedError


@pytest.mark.parametrize("hwc", [False, True])
def test_flatten_order_is_found(hwc: bool) -> None:
    found = detect_layout(Flat(hwc), S.Flatten("flat"), input_shape=(2, 3, 4, 5))
    assert found.matched and found.best == Layout(flatten="HWC" if hwc else "CHW"), str(found)


class NHWCPool:
    def forward(self, x):  # 2x2 max pool over axes 1, 2: NHWC code
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    def backward(self, dy):
        raise NotImplementedError


def test_data_order_is_found() -> None:
    # input_shape is read in each candidate's own data order: (N, H, W, C) = (2, 4, 6, 3) for NHWC
    found = detect_layout(NHWCPool(), S.MaxPool2d("pool", 2), input_shape=(2, 4, 6, 3))
    assert found.matched and found.best == Layout(data="NHWC")


def test_a_wrong_forward_matches_no_layout_and_says_so() -> None:
    user = AnyOrderConv("HWIO", False)
    user.b = user.b + 0.5  # a bias the reference does not see: user forward adds it twice
    wrapped = wrap_layer(user, S.Conv2d("conv", 3, 5, 3), layout=Layout(kernel="HWIO"))
    real_forward = user.forward
    user.forward = lambda x: real_forward(x) + user.b[None, :, None, None]
    found = detect_layout(wrapped)
    assert not found.matched and found.error > 1e-3
    assert "no layout reproduces the reference" in str(found) and "closest is Layout(kernel='HWIO')" in str(found)
    assert wrapped.layout == Layout(kernel="HWIO")  # the declaration is left as it was


def test_candidates_fit_the_weight_shape() -> None:
    conv = S.Conv2d("c", 3, 8, (2, 5))
    cands = candidate_layouts(conv, {"weight": (2, 5, 3, 8)})
    assert {c.kernel for c in cands} == {"HWIO"} and len(cands) == 4  # x data order x flip
    assert len(candidate_layouts(conv)) == 2 * 24 * 2


def test_detect_needs_a_spec_and_an_input_shape() -> None:
    with pytest.raises(ValueError, match="pass input_shape= to detect_layout for a ReLU"):
        detect_layout(NHWCPool(), S.ReLU("r"))
