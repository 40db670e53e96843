"""The diagnosis of 1-D conv tensors (issue 17): border and channel hypotheses apply to a
Conv1d's (N, C, L) data and (O, I/groups, k) weight when the layer says so (``axes="NCL"``), never
to a sequence's (N, T, D), whose axes are not channels and positions."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.diagnose import diagnose
from harness.hypotheses import counts


def test_border_of_ncl_data_is_named_only_for_a_1d_conv() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(2, 3, 9))
    u = r.copy()
    u[:, :, 0] += 1.0  # wrong at the first position only: a padding mistake
    assert any("only on the border" in d for d in diagnose("output", u, r, axes="NCL"))
    assert not any("border" in d or "channel" in d for d in diagnose("output", u, r))  # (N, T, D): no claim


def test_groups_of_a_1d_conv_weight() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(4, 2, 3))
    u = r.copy()
    u[2:] *= 1.5  # output channels 2, 3: the second of two groups
    assert any("only in group(s) 1 of 2" in d for d in diagnose("weight", u, r, groups=2, axes="NCL"))


def test_counts_for_conv1d_and_nearest_upsample() -> None:
    x = np.zeros((2, 3, 9))
    assert counts(S.Conv1d("c", 3, 4, 3, stride=2), x)["the number of windows (output positions)"] == 4
    assert counts(S.Upsample("u", (2, 3)), np.zeros((1, 1, 2, 2)))["the number of copies of each pixel"] == 6
    assert "the number of copies of each pixel" not in counts(S.Upsample("u", 2, "bilinear"), np.zeros((1, 1, 2, 2)))
