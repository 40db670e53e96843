"""Points off kinks: ReLU inputs kept away from 0, max-pool windows with a clear winner
(including overlapping, padded and dilated windows), and the reference's activation pattern."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from harness import spec as S
from harness.kinks import margin, off_kinks, pattern, random_input
from reference_models import build


def window_gaps(layer: S.MaxPool2d, x: np.ndarray) -> np.ndarray:
    """Max minus runner-up of every window, by unfolding with torch (padding as -inf)."""
    t = torch.from_numpy(x)
    ph, pw = layer.padding
    t = F.pad(t, (pw, pw, ph, ph), value=-float("inf"))
    cols = F.unfold(t.reshape(-1, 1, *t.shape[2:]), layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
    top2 = cols.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).numpy()


@given(k=st.integers(2, 3), s=st.integers(1, 3), p=st.integers(0, 1), d=st.integers(1, 2), h=st.integers(5, 9),
       seed=st.integers(0, 2**16), f32=st.booleans())
def test_every_pool_window_has_a_clear_winner(k, s, p, d, h, seed, f32) -> None:
    layer = S.MaxPool2d("pool", k, stride=s, padding=min(p, k // 2), dilation=d)
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((2, 3, h, h + 1)), 0)  # after a ReLU: windows of exact zeros
    dtype = np.float32 if f32 else np.float64
    moved = off_kinks(layer, x, rng, dtype)
    assert moved.shape == x.shape and moved is not x
    assert window_gaps(layer, moved).min() >= margin(x, dtype) * (1 - 1e-9)


def test_relu_inputs_keep_the_margin_and_their_sign() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 50)) * 1e-3
    x[0, 0] = 0.0
    for dtype in (np.float64, np.float32):
        moved = off_kinks(S.ReLU("r"), x, rng, dtype)
        assert np.abs(moved).min() >= margin(x, dtype)
        assert np.array_equal(np.sign(moved[x != 0]), np.sign(x[x != 0])) and moved[0, 0] > 0
        far = np.abs(x) >= margin(x, dtype)
        assert np.array_equal(moved[far], x[far])  # values already off the kink are kept
    assert np.abs(random_input(S.LeakyReLU("l", 0.1), (3, 40), rng)).min() >= 0.1


def test_other_layers_are_left_alone() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    assert off_kinks(S.Conv2d("c", 3, 2, 3), x, np.random.default_rng(0), np.float64) is x


def test_pattern_sees_a_relu_crossing_and_a_pool_winner_change() -> None:
    spec = S.Sequential([S.ReLU("r"), S.MaxPool2d("p", 2)])
    at = pattern(build("torch", spec), spec)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    base = at({}, x)
    assert at({}, x + 0.1) == base
    assert at({}, x * np.array([[[[1, 1], [1, -1]]]])) != base  # 4 -> -4: a ReLU crossing and a new winner
    assert pattern(build("torch", S.Sequential([S.Linear("fc", 2, 2)])), S.Sequential([S.Linear("fc", 2, 2)])) is None
