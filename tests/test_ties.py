"""Ties and kinks as evidence (harness/ties.py): the user's gradient at exact max-pool ties
and exact ReLU-family zeros must be a valid subgradient; any valid tie-breaking passes,
for overlapping, padded and dilated windows too; FD spoiled only by kinks is no witness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import wrap_layer
from harness.check import check_layer
from harness.kinks import margin, random_input
from harness.ties import one_sided, probe, tied_input
from test_kinks import window_gaps


class TorchPool:
    """A max pool whose backward routes each window's gradient by a rule at ties, built on
    torch's unfold (handles padding and dilation): ``first``, ``last``, ``split``, ``all``
    (copies to every tie) or ``none`` (only a unique maximum gets it)."""

    def __init__(self, layer: S.MaxPool2d, rule: str) -> None:
        self.layer, self.rule = layer, rule

    def _cols(self, x: np.ndarray) -> torch.Tensor:
        ph, pw = self.layer.padding
        t = F.pad(torch.from_numpy(x), (pw, pw, ph, ph), value=-float("inf"))
        return F.unfold(t.reshape(-1, 1, *t.shape[2:]), self.layer.kernel_size, dilation=self.layer.dilation,
                        stride=self.layer.stride)  # (N*C, k*k, L)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x.copy()
        n, c = x.shape[:2]
        oh, ow = self.layer.output_shape(x.shape)[2:]
        return self._cols(x).max(dim=1).values.reshape(n, c, oh, ow).numpy()

    def backward(self, dy: np.ndarray) -> np.ndarray:
        cols = self._cols(self.x)
        mask = cols == cols.max(dim=1, keepdim=True).values
        k = mask.sum(dim=1, keepdim=True)
        idx = torch.arange(cols.shape[1])[None, :, None]
        if self.rule == "first":
            share = idx == torch.where(mask, idx, 10**6).min(dim=1, keepdim=True).values
        elif self.rule == "last":
            share = idx == torch.where(mask, idx, -1).max(dim=1, keepdim=True).values
        else:
            share = {"split": mask.double() / k, "all": mask, "none": mask & (k == 1)}[self.rule]
        g = share * torch.from_numpy(dy).reshape(dy.shape[0] * dy.shape[1], 1, -1)
        ph, pw = self.layer.padding
        h, w = self.x.shape[2] + 2 * ph, self.x.shape[3] + 2 * pw
        dx = F.fold(g.to(torch.float64), (h, w), self.layer.kernel_size, dilation=self.layer.dilation,
                    stride=self.layer.stride)
        return dx[:, 0, ph:h - ph, pw:w - pw].reshape(self.x.shape).numpy()


POOLS = [S.MaxPool2d("p", 2), S.MaxPool2d("p", 3, stride=1), S.MaxPool2d("p", 3, stride=2, padding=1),
         S.MaxPool2d("p", 2, stride=1, dilation=2), S.MaxPool2d("p", (3, 2), stride=(2, 1), padding=(1, 0))]


@pytest.mark.parametrize("layer", POOLS, ids=lambda p: f"k{p.kernel_size}s{p.stride}p{p.padding}d{p.dilation}")
def test_every_valid_tie_breaking_passes_and_every_invalid_one_is_named(layer) -> None:
    shape = (2, 3, 7, 8)
    for rule in ("first", "last", "split"):
        assert probe(wrap_layer(TorchPool(layer, rule), layer), shape, np.random.default_rng(1)) == [], rule
    copied = probe(wrap_layer(TorchPool(layer, "all"), layer), shape, np.random.default_rng(1))
    assert len(copied) == 1 and "copied to each of the k ties: k times too large" in copied[0], copied
    lost = probe(wrap_layer(TorchPool(layer, "none"), layer), shape, np.random.default_rng(1))
    assert len(lost) == 1 and "no gradient is routed (the upstream value is lost)" in lost[0], lost


def test_tied_input_has_whole_windows_of_zeros_and_tied_pairs() -> None:
    x = tied_input((2, 2, 6, 6), np.random.default_rng(0))
    assert (x[0, 0] == 0).all()
    wins = x[:, :, :, :].reshape(2, 2, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 3, 3, 4)
    ties = (wins == wins.max(axis=-1, keepdims=True)).sum(axis=-1)
    assert (ties == 2).any() and (ties == 4).any() and (ties == 1).any()


class Leaky:
    """LeakyReLU whose gradient at exactly 0 is ``at_zero`` (a fraction of the upstream value)."""

    def __init__(self, slope: float, at_zero: float) -> None:
        self.slope, self.at_zero = slope, at_zero

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.slope * x)

    def backward(self, dy):
        return dy * np.where(self.x > 0, 1.0, np.where(self.x < 0, self.slope, self.at_zero))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_family_at_zero_between_the_one_sided_derivatives(dtype) -> None:
    for slope in (0.0, 0.2, -0.5, 2.0):
        spec = S.LeakyReLU("l", slope)
        lo, hi = sorted(one_sided(spec))
        for at_zero, ok in ((lo, True), (hi, True), ((lo + hi) / 2, True), (hi + 0.1, False), (lo - 0.1, False)):
            found = probe(wrap_layer(Leaky(slope, at_zero), spec, dtype=dtype), (3, 40), np.random.default_rng(2))
            assert (found == []) == ok, (slope, at_zero, found)
            if not ok:
                assert f"LeakyReLU at exactly 0 passes a gradient outside [{lo:g}, {hi:g}]" in found[0]
    assert one_sided(S.ELU("e", 0.3)) == (0.3, 1.0) and one_sided(S.ReLU("r")) == (0.0, 1.0)


def test_other_layers_and_spans_are_not_probed() -> None:
    class Ident:
        def forward(self, x):
            raise AssertionError("not called")

        backward = forward

    assert probe(wrap_layer(Ident(), S.Sigmoid("s")), (2, 3), np.random.default_rng(0)) == []
    span = S.Sequential([S.ReLU("r")], name="span")
    assert probe(wrap_layer(Ident(), span), (2, 3), np.random.default_rng(0)) == []


class Overwrites(TorchPool):
    """Correct, but its forward writes over its input array after reading it."""

    seen: list

    def forward(self, x):
        self.seen.append(x.copy())
        y = super().forward(x)
        x[...] = 7.0
        return y


def test_every_call_gets_a_fresh_copy_of_the_tied_input() -> None:
    layer = S.MaxPool2d("p", 3, stride=1)  # 9 classes of disjoint windows: 9 forward calls
    user = Overwrites(layer, "split")
    user.seen = []
    assert probe(wrap_layer(user, layer), (2, 2, 6, 6), np.random.default_rng(0)) == []
    assert len(user.seen) == 9 and all(np.array_equal(s, user.seen[0]) for s in user.seen)
    assert not (user.seen[0] == 7.0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_random_pool_input_keeps_every_window_a_margin_in_its_dtype(dtype) -> None:
    for layer in POOLS:
        x = random_input(layer, (2, 3, 7, 8), np.random.default_rng(3), dtype)
        assert window_gaps(layer, x).min() >= margin(x, dtype) * 0.5
    relu = random_input(S.ReLU("r"), (4, 500), np.random.default_rng(3), dtype)
    assert np.abs(relu).min() >= max(0.1, margin(relu, dtype) * 0.9)


def test_fd_spoiled_only_by_kinks_passes_with_a_note_when_both_references_agree() -> None:
    from zoo.layers import ReLU, ReLUMaskFromGradient

    x = np.random.default_rng(5).standard_normal((2, 30)) * 1e-7  # every element next to the kink
    report = check_layer(ReLU(), S.ReLU("relu"), x=x, seed=0)
    layer = report.layers[0]
    assert layer.verdict == "pass", str(report)
    assert "every probe crossed a kink" in layer.message and "both references agree" in layer.message
    assert report.to_dict()["layers"][0]["message"] == layer.message
    bad = check_layer(ReLUMaskFromGradient(), S.ReLU("relu"), x=x, seed=0).layers[0]
    assert bad.verdict == "backward"  # the references still decide against a wrong gradient
