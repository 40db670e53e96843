"""The recurrent diagnosis of a BPTT loop that stops before timestep 0 (range(T - 1, 0, -1)):
named on a CS231n rnn pair, and not on a backward whose step 0 is wrong in another way."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    h, cache, prev_h = np.zeros((x.shape[0], x.shape[1], h0.shape[1])), [], h0
    for t in range(x.shape[1]):
        prev_h, cache_t = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(cache_t)
    return h, cache


def make_backward(stop: int, halve_first: bool = False):
    def rnn_backward(dh, cache):
        N, T, H = dh.shape
        dx, dprev_h = np.zeros((N, T, cache[0][0].shape[1])), np.zeros((N, H))
        dWx, dWh, db = 0, 0, 0
        for t in range(T - 1, stop, -1):
            dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
            dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
        if halve_first:
            dx[:, 0, :] *= 0.5  # step 0 wrong, but not skipped
        return dx, dprev_h, dWx, dWh, db

    return rnn_backward


@pytest.mark.parametrize(("stop", "halve", "named"), [(0, False, True), (-1, True, False)])
def test_first_step_skipped_is_named(stop: int, halve: bool, named: bool) -> None:
    rng = np.random.default_rng(0)
    N, T, D, H = 3, 5, 4, 6
    params = [rng.normal(size=(N, H)), rng.normal(size=(D, H)) / 2, rng.normal(size=(H, H)) / 3, rng.normal(size=H) / 4]
    rnn = tg.wrap_functions(
        rnn_forward,
        make_backward(stop, halve),
        tg.RNN("rnn", D, H, bias="fused"),
        params,
        layout=tg.Layout(linear="in_out"),
    )
    found = tg.check_layer(rnn, input_shape=(N, T, D), seed=0).layer("rnn")
    assert found.verdict == "backward"
    assert any(line.startswith("input: wrong from timestep 0 backwards") for line in found.diagnosis), found.diagnosis
    assert any("timestep 0 is never backpropagated" in line for line in found.diagnosis) == named, found.diagnosis
