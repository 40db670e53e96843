"""free_fits: parameter-free layers inferred from their forward (issue 15), on the zoo's and
the real-code corpus's layers: kind and hyperparameters equal to the truth, confirmed on
more pairs, equal functions collapsed, nothing confidently wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import harness as tg
from harness.adapters.detect import MATCH_TOL
from harness.inference.free import free_fits
from harness.inference.free_kinds import nice
from realcode import dlfs, keras_like, objects
from zoo import layers, ties

FREE = [
    (name, factory, spec, shape)
    for name, factory, spec, _, shape in layers.CORRECT + ties.CORRECT
    if (not spec.local_params(shape) or spec.kind == "Dropout") and hasattr(factory(), "forward")
]


def _pairs(obj, shape, n=3, seed=1, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=shape)
        out.append((x, obj.forward(x.copy(), **kw)))
    return out


def _fits(obj, shape, name="l", **kw):
    (x, y), *more = _pairs(obj, shape, **kw)
    return free_fits(name, x, y, more=more)


def _same(spec, truth):
    return dataclasses.replace(spec, name=truth.name) == truth


@pytest.mark.parametrize("name,factory,truth,shape", FREE, ids=[f[0] for f in FREE])
def test_zoo_parameter_free_layers_are_inferred_exactly(name, factory, truth, shape):
    fits = _fits(factory(), shape, name=truth.name)
    tol = MATCH_TOL[np.dtype(np.float64)]
    assert fits[0].error <= tol and _same(fits[0].spec, truth), fits[0].describe()
    assert fits[0].layout == tg.Layout()
    # nothing else confirmed: the answer is unique
    assert all(f.error > tol for f in fits[1:]), [f.describe() for f in fits[1:] if f.error <= tol]


def test_fits_are_sorted_and_named():
    fits = _fits(layers.LeakyReLU(0.2), (2, 3, 4, 5), name="act")
    assert [f.error for f in fits] == sorted(f.error for f in fits)
    assert all(f.spec.name == "act" for f in fits)
    assert fits[0].spec == tg.LeakyReLU("act", 0.2) and "fitted" in fits[0].note


def test_float32_slope_is_read_as_the_short_decimal():
    x32 = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    fits = free_fits("act", x32, np.where(x32 > 0, x32, np.float32(0.1) * x32))
    assert fits[0].spec == tg.LeakyReLU("act", 0.1) and fits[0].error <= MATCH_TOL[np.dtype(np.float32)]


def test_gelu_variants_are_told_apart():
    from math import erf

    x = np.random.default_rng(0).normal(size=(4, 7))
    exact = x * 0.5 * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    tanh = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert free_fits("g", x, exact)[0].spec == tg.GELU("g")
    assert free_fits("g", x, tanh)[0].spec == tg.GELU("g", "tanh")


def test_softmax_axis_of_a_4d_input():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    e = np.exp(x - x.max(axis=2, keepdims=True))
    fits = free_fits("s", x, e / e.sum(axis=2, keepdims=True))
    assert fits[0].spec == tg.Softmax("s", 2) and fits[1].error > 1e-3


def test_flatten_order_hwc_and_chw():
    fits = _fits(layers.FlattenHWC(), (2, 3, 2, 4), name="flat")
    assert fits[0].spec == tg.Flatten("flat") and fits[0].layout == tg.Layout(flatten="HWC")
    assert fits[1].error > 1e-3  # the C,H,W reading is refuted by the values
    fits = _fits(keras_like.Flatten(), (2, 4, 4, 3), name="flat")
    assert fits[0].layout == tg.Layout() and "NHWC" in fits[0].note


def test_max_pool_nhwc_read_from_the_shape():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3))  # NHWC
    y = x.reshape(2, 3, 2, 3, 2, 3).max(axis=(2, 4))
    fits = free_fits("pool", x, y)
    assert fits[0].spec == tg.MaxPool2d("pool", 2) and fits[0].layout == tg.Layout(data="NHWC")


def test_avg_pool_count_include_pad_is_read_from_the_values():
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(0).normal(size=(2, 2, 5, 5))
    for include in (True, False):
        y = F.avg_pool2d(torch.as_tensor(x), 3, 2, 1, count_include_pad=include).numpy()
        best = free_fits("p", x, y)[0]
        assert best.spec == tg.AvgPool2d("p", 3, 2, 1, count_include_pad=include), best.describe()


def test_equal_functions_collapse_to_the_simplest():
    # a 1x1 pool, an eval-mode dropout and the identity are one function: one is kept
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    fits = free_fits("i", x, x.copy())
    ok = [f for f in fits if f.error <= 1e-9]
    assert len(ok) == 1 and ok[0].spec == tg.Dropout("i", training=False)
    assert "same function as" in ok[0].note


def test_dropout_p_and_inversion_from_the_mask():
    fits = _fits(objects.Dropout(0.25, seed=0), (4, 6), name="drop")
    assert fits[0].spec == tg.Dropout("drop", 0.25) and fits[0].error == 0.0
    np.random.seed(0)  # the code draws its mask from numpy's global generator
    fits = _fits(dlfs.Dropout(0.25), (40, 60), name="drop")  # p only from the fraction dropped
    assert fits[0].spec.kind == "Dropout" and not fits[0].spec.inverted
    assert abs(fits[0].spec.p - 0.25) < 0.03 and "fraction dropped" in fits[0].note
    # the inverted reading of the same mask is tried too (refuted by the values), for the
    # backward to be compared with: a forward that forgot its scale is then told from one that never had it
    twin = next(f for f in fits if f.spec.kind == "Dropout" and f.spec.inverted)
    assert twin.spec.p == fits[0].spec.p and twin.error > 0.1 and "inverted reading" in twin.note


def test_relu_pattern_is_not_read_as_a_dropout_mask():
    fits = _fits(layers.ReLU(), (2, 3, 4, 5))
    assert not any(f.spec.kind == "Dropout" for f in fits)
    x = np.random.default_rng(0).normal(size=(4, 6))
    x[0, :3] = 0.0  # exact zeros (a relu before it) do not make the relu pattern a mask
    fits = free_fits("r", x, np.maximum(x, 0))
    assert fits[0].spec == tg.ReLU("r") and fits[1].error > 1e-3


def test_dropout_after_a_relu_keeps_its_mask():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(8, 10)), 0)  # half the inputs exactly 0
    mask = rng.random(x.shape) >= 0.2
    fits = free_fits("d", x, x * mask / 0.8)
    assert fits[0].spec == tg.Dropout("d", 0.2) and fits[0].error == 0.0


def test_more_pairs_refute_what_one_pair_allows():
    # a "LeakyReLU" whose slope changes between calls fits the first pair only
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y1, y2 = np.where(x1 > 0, x1, 0.1 * x1), np.where(x2 > 0, x2, 0.2 * x2)
    assert free_fits("a", x1, y1)[0].error == 0.0
    assert free_fits("a", x1, y1, more=[(x2, y2)])[0].error > 1e-3


def test_unmatched_forward_keeps_the_closest():
    x = np.random.default_rng(0).normal(size=(3, 4))
    fits = free_fits("a", x, np.maximum(x, 0) * 1.5)  # no kind computes this
    assert fits and fits[0].error > 1e-3


def test_no_candidate_for_foreign_shapes_or_integer_data():
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert free_fits("a", x, np.zeros((3, 5))) == []
    assert free_fits("a", np.arange(12).reshape(3, 4), np.arange(12).reshape(3, 4)) == []


def test_nice():
    assert nice(0.010000000298, 1e-6) == 0.01 and nice(0.123456789, 1e-12) == 0.123456789


def test_dropout_rate_from_the_objects_attribute():
    from harness.inference.free import dropout_rate_hint

    obj = dlfs.Dropout(0.25)
    np.random.seed(1)
    fits = dropout_rate_hint(obj, _fits(obj, (4, 6), name="drop"))  # 24 units: the fraction says little
    assert fits[0].spec == tg.Dropout("drop", 0.25, inverted=False) and "self.dropout_ratio" in fits[0].note
    inverted = objects.Dropout(0.25, seed=0)
    fits = _fits(inverted, (4, 6), name="drop")
    assert dropout_rate_hint(inverted, fits)[0].spec == tg.Dropout("drop", 0.25)
    inverted.p = 0.5  # an attribute that disagrees with the scale is said, not believed
    assert "disagrees" in dropout_rate_hint(inverted, fits)[0].note
    assert dropout_rate_hint(object(), fits) == fits
