"""The embedding hypotheses (harness.hypotheses.embedding) on code written the way it is
written from scratch: ``dW[x] = dout`` and loops with ``=`` (last or first occurrence kept),
with and without the padding row, the padding row given a gradient; and nothing on code that
is right, or wrong another way. Also: a sequence's (N, T) positions scrambled by a reshape
are named with the axes N, T, D."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Layout, check_layer, wrap_functions
from harness import spec as S


def forward(x, W):
    return W[x], (x, W)


def fancy_overwrite(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] = dout
    return dW


def loop_first_wins(dout, cache):
    """A loop that skips a token already seen: the first occurrence's gradient is kept."""
    x, W = cache
    dW, seen = np.zeros_like(W), set()
    for n in range(x.shape[0]):
        for t in range(x.shape[1]):
            if x[n, t] not in seen:
                dW[x[n, t]] = dout[n, t]
                seen.add(x[n, t])
    return dW


def padded(backward, pad):
    def b(dout, cache):
        dW = backward(dout, cache)
        dW[pad] = 0.0
        return dW

    return b


def accumulated(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def halved(dout, cache):
    return accumulated(dout, cache) / 2


def _entry(backward, pad=None, seed=0):
    W = np.random.default_rng(seed).standard_normal((6, 3))
    return check_layer(
        wrap_functions(forward, backward, S.Embedding("emb", 6, 3, padding_idx=pad), [W]), seed=seed
    ).layers[0]


def _overwrites(entry) -> list[str]:
    return [d for d in entry.diagnosis if "overwritten instead of accumulated" in d]


@pytest.mark.parametrize("seed", [0, 1])
def test_fancy_assignment_keeps_the_last_occurrence(seed) -> None:
    entry = _entry(fancy_overwrite, seed=seed)
    assert entry.verdict == "backward"
    (line,) = _overwrites(entry)
    assert "hold only the last occurrence's upstream gradient" in line and "np.add.at(dW, x, dout)" in line


def test_the_rows_named_are_the_repeated_tokens() -> None:
    W = np.random.default_rng(0).standard_normal((6, 3))
    x = np.array([[1, 4, 1, 2], [5, 5, 3, 5]])
    entry = check_layer(wrap_functions(forward, fancy_overwrite, S.Embedding("emb", 6, 3), [W]), x=x).layers[0]
    assert _overwrites(entry) and "rows 1, 5 (tokens that occur more than once)" in _overwrites(entry)[0]


def test_a_loop_keeping_the_first_occurrence() -> None:
    (line,) = _overwrites(_entry(loop_first_wins))
    assert "hold only the first occurrence's upstream gradient" in line


def test_overwritten_with_the_padding_row_zeroed_or_not() -> None:
    (line,) = _overwrites(_entry(padded(fancy_overwrite, 0), pad=0))
    assert "receives a gradient too" not in line
    (line,) = _overwrites(_entry(fancy_overwrite, pad=0))
    assert line.endswith("the padding row (padding_idx=0) receives a gradient too")


def test_the_padding_row_given_a_gradient() -> None:
    entry = _entry(accumulated, pad=2)
    assert entry.verdict == "backward"
    assert any(
        d.startswith("weight: the padding row (padding_idx=2) receives a gradient: the upstream gradients of its")
        for d in entry.diagnosis
    )
    assert not _overwrites(entry)


def test_no_embedding_hypothesis_on_right_code_or_another_bug() -> None:
    assert _entry(padded(accumulated, 1), pad=1).verdict == "pass"
    entry = _entry(halved)
    assert entry.verdict == "backward" and not _overwrites(entry)
    assert any("off by a constant factor 1/2" in d for d in entry.diagnosis)


def test_a_reshape_that_scrambles_batch_and_time_is_named_in_sequence_axes() -> None:
    def affine_forward(x, w, b):
        return x @ w + b, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        n, t, d = x.shape
        dx = dout.transpose(1, 0, 2).reshape(t * n, -1).dot(w.T).reshape(n, t, d)  # (T, N) rows read as (N, T)
        return dx, x.reshape(n * t, d).T @ dout.reshape(n * t, -1), dout.sum(axis=(0, 1))

    rng = np.random.default_rng(0)
    pair = wrap_functions(
        affine_forward,
        affine_backward,
        S.Linear("proj", 4, 5),
        [rng.standard_normal((4, 5)), rng.standard_normal(5)],
        layout=Layout(linear="in_out"),
    )
    entry = check_layer(pair, input_shape=(3, 7, 4)).layers[0]
    assert entry.verdict == "backward" and [t.name for t in entry.tensors if not t.ok] == ["input"]
    assert (
        "input: values in the wrong order: the user's value is the reference laid out as (T, N, D) and reshaped as (N, T, D) (a reshape that does not undo a transpose)"
        in entry.diagnosis
    )
