"""Diagnosis names the mistake: factors (batch, window), sign, transpose, flip, border,
channels, accumulation — and says nothing when nothing simple explains the error."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout
from harness.check import check_layer
from harness.diagnose import accumulates, diagnose, window_overlap

R = np.random.default_rng(0).normal(size=(4, 3, 5, 5))


def test_constant_factors_are_named() -> None:
    assert "off by a constant factor 1/4 (= 1/the batch size 4: an extra division by it)" in diagnose("weight", R / 4, R, batch=4)
    assert any("(= the window size 9" in h for h in diagnose("input", 9 * R, R, batch=4, window=9))
    assert diagnose("bias", -R, R) == ["wrong sign: the user's value is exactly -1 times the reference"]
    assert diagnose("x", 0 * R, R)[0].startswith("zero:")
    assert "off by a constant factor 3/2" in diagnose("x", 1.5 * R, R)
    assert diagnose("bias", R / 5, R, batch=5)[0].startswith("off by a constant factor 1/5 (= 1/the batch size 5")
    assert diagnose("x", 0.123456789 * R, R) == ["off by a constant factor 0.123457"]  # not a small fraction


def test_transpose_flip_border_channel() -> None:
    m = np.random.default_rng(1).normal(size=(4, 4))
    assert "transposed" in diagnose("weight", m.T, m)[0]
    assert "kernel flipped" in diagnose("weight", R[:, :, ::-1, ::-1], R)[0]
    border = R.copy()
    border[:, :, 0, :] += 1.0
    assert any("only on the border" in h for h in diagnose("input", border, R))
    chan = R.copy()
    chan[:, 2] *= 3
    assert any("only in 1 of 3 channel(s) (2)" in h for h in diagnose("input", chan, R))


def test_no_story_when_nothing_simple_fits() -> None:
    noise = R + np.random.default_rng(2).normal(size=R.shape)
    assert diagnose("input", noise, R) == []
    assert diagnose("input", R, R) == []


def test_accumulation() -> None:
    assert accumulates(R, 2 * R) and not accumulates(R, R) and not accumulates(0 * R, 0 * R)


class Accumulating:
    def __init__(self):
        rng = np.random.default_rng(3)
        self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)
        self.dW, self.db = np.zeros((4, 3)), np.zeros(3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW += self.x.T @ dy  # += without a reset
        self.db += dy.sum(0)
        return dy @ self.W.T


class BatchMean(Accumulating):
    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy / len(dy), dy.sum(0) / len(dy)
        return dy @ self.W.T


def test_check_layer_reports_accumulation_and_batch_factor() -> None:
    report = check_layer(Accumulating(), S.Linear("fc", 4, 3), layout=Layout(linear="in_out"))
    layer = report.layer("fc")
    assert layer.verdict == "backward"
    assert any("doubled on a second backward call" in d for d in layer.diagnosis), layer.diagnosis
    report = check_layer(BatchMean(), S.Linear("fc", 4, 3), layout=Layout(linear="in_out"))
    layer = report.layer("fc")
    assert layer.verdict == "backward"
    assert any(d.startswith("weight: off by a constant factor 1/3 (= 1/the batch size 3") for d in layer.diagnosis), layer.diagnosis


def test_error_confined_to_overlapping_pool_windows() -> None:
    overlap = window_overlap((3, 3), (2, 2), (0, 0), (1, 1), (5, 5))
    assert overlap[2].all() and overlap[:, 2].all() and not overlap[0, 0] and overlap.sum() == 9
    r = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    u = r.copy()
    u[:, :, overlap] *= 0.5  # the second window's share lost where windows overlap
    assert any(h.startswith("only where pooling windows overlap") for h in diagnose("input", u, r, overlap=overlap))
    u[0, 0, 0, 0] += 1.0  # an error outside the overlap too: not this hypothesis
    assert not any(h.startswith("only where pooling windows overlap") for h in diagnose("input", u, r, overlap=overlap))
    assert not window_overlap((2, 2), (2, 2), (0, 0), (1, 1), (4, 4)).any()  # non-overlapping windows: nothing to say


def test_error_confined_to_whole_groups_is_named_by_group() -> None:
    r = np.random.default_rng(2).standard_normal((6, 2, 3, 3))  # conv weight, groups=3: 2 output channels per group
    u = r.copy()
    u[2:4] += 1.0  # output channels 2, 3: group 1
    found = diagnose("weight", u, r, groups=3)
    assert found == diagnose("conv.weight", u, r, groups=3)  # the same weight inside a fused span
    assert "only in group(s) 1 of 3: the other groups match (group offsets or slicing)" in found, found
    u = r.copy()
    u[2] += 1.0  # one channel, not a whole group
    found = diagnose("weight", u, r, groups=3)
    assert any(h.startswith("only in 1 of 6 output channel(s) (2)") for h in found), found
    data = np.random.default_rng(3).standard_normal((4, 6, 5, 5))  # activations: channels on axis 1
    bad = data.copy()
    bad[:, 4:6] *= 2
    assert "only in group(s) 2 of 3: the other groups match (group offsets or slicing)" in diagnose(
        "input", bad, data, groups=3)


def test_a_one_column_or_row_shift_is_named() -> None:
    r = np.random.default_rng(4).standard_normal((2, 3, 5, 6))
    right = np.zeros_like(r)
    right[..., 1:] = r[..., :-1]  # everything one column to the right; the first column lost
    assert any(h.startswith("shifted by one column right") for h in diagnose("input", right, r))
    up = np.zeros_like(r)
    up[:, :, :-1] = r[:, :, 1:]
    assert any(h.startswith("shifted by one row up") for h in diagnose("input", up, r))
    assert not any(h.startswith("shifted") for h in diagnose("input", 2 * r, r))
    both = np.zeros_like(r)
    both[:, :, :-1, :-1] = r[:, :, 1:, 1:]
    assert any(h.startswith("shifted by one row up and one column left") for h in diagnose("input", both, r))


def test_channel_hint_only_for_at_most_half_the_channels() -> None:
    data = np.random.default_rng(5).standard_normal((2, 6, 4, 4))
    bad = data.copy()
    bad[:, :4] += 1.0  # 4 of 6 channels wrong: "channels" explains nothing
    assert not any(h.startswith("only in") for h in diagnose("input", bad, data))
    bad = data.copy()
    bad[:, [1, 4, 5]] += 1.0  # exactly half
    assert "only in 3 of 6 channel(s) (1, 4, 5): the others match (groups or channel indexing)" in diagnose(
        "input", bad, data)


def test_axes_swapped_and_values_in_the_wrong_order() -> None:
    r = np.random.default_rng(6).standard_normal((2, 3, 4, 4))
    found = diagnose("input", r.transpose(0, 1, 3, 2), r)
    assert found == ["axes H and W swapped: the user's value is the reference with its axes in (N, C, W, H) order "
                     "(an index order mixed up, e.g. H and W in col2im)"], found
    w = np.random.default_rng(7).standard_normal((3, 3, 2, 2))
    assert any(h.startswith("axes O and I swapped") for h in diagnose("weight", w.transpose(1, 0, 2, 3), w))
    hwc = r.transpose(0, 2, 3, 1).reshape(r.shape)  # NHWC values read back as NCHW
    assert any(h.startswith("values in the wrong order: the user's value is the reference laid out as (N, H, W, C)")
               for h in diagnose("input", hwc, r))
    assert not any("axes" in h or "order" in h for h in diagnose("input", r + 0.1, r))


def test_factor_named_by_windows_or_channels_and_every_equal_size() -> None:
    sizes = {"the number of windows (output positions)": 12, "the number of channels": 3}
    assert "off by a constant factor 12 (= the number of windows (output positions) 12: a missing division by it, " \
           "or a sum where a mean is meant)" in diagnose("weight", 12 * R, R, batch=4, counts=sizes)
    assert "off by a constant factor 1/3 (= 1/the number of channels 3: an extra division by it)" in diagnose(
        "weight", R / 3, R, batch=4, counts=sizes)
    both = diagnose("weight", 3 * R, R, batch=3, counts=sizes)[0]
    assert "(= the batch size 3 or the number of channels 3:" in both, both  # the value cannot tell them apart
