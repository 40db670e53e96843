"""Layout conversions are exact both ways for every declared layout, and mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scaled
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import spec as S
from harness.adapters.layouts import (
    KERNEL_ORDERS, Layout, LayoutError, data_from_user, data_to_user, param_from_user, param_to_user,
    user_data_shape,
)

layouts = st.builds(
    Layout,
    data=st.sampled_from(["NCHW", "NHWC"]),
    kernel=st.sampled_from(KERNEL_ORDERS),
    flip=st.booleans(),
    linear=st.sampled_from(["out_in", "in_out"]),
    flatten=st.sampled_from(["CHW", "HWC"]),
)
dims = st.integers(1, 5)


@settings(max_examples=scaled(100))
@given(layouts, dims, dims, dims, dims, st.integers(0, 2**16))
def test_round_trips_are_exact(layout: Layout, o: int, i: int, kh: int, kw: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    conv = S.Conv2d("c", i, o, (kh, kw))
    w = rng.normal(size=(o, i, kh, kw))
    user_shape = tuple((o, i, kh, kw)["OIHW".index(c)] for c in layout.kernel)
    w_user = param_to_user(conv, "weight", w, layout, user_shape)
    assert w_user.shape == user_shape
    assert np.array_equal(param_from_user(conv, "weight", w_user, layout, w.shape), w)

    lin = S.Linear("fc", i * kh * kw, o)
    wl = rng.normal(size=(o, i * kh * kw))
    shape_l = (o, i * kh * kw) if layout.linear == "out_in" else (i * kh * kw, o)
    for features_from in (None, (i, kh, kw)):
        back = param_from_user(lin, "weight", param_to_user(lin, "weight", wl, layout, shape_l, features_from),
                               layout, wl.shape, features_from)
        assert np.array_equal(back, wl)

    x = rng.normal(size=(2, i, kh, kw))
    assert data_to_user(x, layout).shape == user_data_shape(x.shape, layout)
    assert np.array_equal(data_from_user(data_to_user(x, layout), layout), x)
    flat = x.reshape(2, -1)
    assert np.array_equal(data_from_user(data_to_user(flat, layout, (i, kh, kw)), layout, (i, kh, kw)), flat)

    for bias_shape in ((o,), (1, o, 1, 1), (o, 1), (1, o)):
        b = rng.normal(size=o)
        b_user = param_to_user(conv, "bias", b, layout, bias_shape)
        assert b_user.shape == bias_shape
        assert np.array_equal(param_from_user(conv, "bias", b_user, layout, (o,)), b)


def test_kernel_orders_mean_what_they_say() -> None:
    w = np.random.default_rng(0).normal(size=(4, 3, 2, 5))  # O, I, H, W
    hwio = param_to_user(S.Conv2d("c", 3, 4, (2, 5)), "weight", w, Layout(kernel="HWIO"), (2, 5, 3, 4))
    assert hwio[1, 4, 2, 3] == w[3, 2, 1, 4]
    flipped = param_to_user(S.Conv2d("c", 3, 4, (2, 5)), "weight", w, Layout(flip=True), (4, 3, 2, 5))
    assert flipped[3, 2, 0, 0] == w[3, 2, 1, 4]  # rotated 180 degrees in (H, W)


def test_nhwc_and_hwc_flatten_mean_what_they_say() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)  # N C H W
    nhwc = data_to_user(x, Layout(data="NHWC"))
    assert nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]
    hwc = data_to_user(x.reshape(2, -1), Layout(flatten="HWC"), (3, 4, 5))
    assert np.array_equal(hwc, nhwc.reshape(2, -1))  # what flattening NHWC data gives
    w = np.random.default_rng(0).normal(size=(7, 60))
    lin = S.Linear("fc", 60, 7)
    w_user = param_to_user(lin, "weight", w, Layout(linear="in_out", flatten="HWC"), (60, 7), (3, 4, 5))
    # the same affine map, whichever layout computes it
    np.testing.assert_allclose(hwc @ w_user, x.reshape(2, -1) @ w.T, rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(data="CHWN"), "data must be 'NCHW' or 'NHWC'"),
        (dict(kernel="OIHH"), "kernel must be a permutation of 'OIHW'"),
        (dict(linear="row"), "linear must be 'out_in' or 'in_out'"),
        (dict(flatten="WHC"), "flatten must be 'CHW' or 'HWC'"),
        (dict(flip=1), "flip must be True or False"),
    ],
)
def test_layout_declaration_errors(kwargs, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        Layout(**kwargs)


def test_misfit_shapes_get_hints() -> None:
    conv = S.Conv2d("conv1", 3, 8, 5)
    with pytest.raises(LayoutError) as err:
        param_from_user(conv, "weight", np.zeros((5, 5, 3, 8)), Layout(), (8, 3, 5, 5))
    assert "layer 'conv1': parameter 'weight' has shape (5, 5, 3, 8)" in str(err.value)
    assert "expected (8, 3, 5, 5) there; looks like HWIO: pass Layout(kernel='HWIO')" in str(err.value)
    lin = S.Linear("fc", 10, 4)
    with pytest.raises(LayoutError, match=r"looks transposed: pass Layout\(linear='in_out'\)"):
        param_from_user(lin, "weight", np.zeros((10, 4)), Layout(), (4, 10))
    with pytest.raises(LayoutError, match=r"expected \(4,\) there$"):
        param_from_user(lin, "bias", np.zeros(5), Layout(), (4,))
    square = S.Conv2d("sq", 3, 5, 3)  # I = H = W: several orders fit; all are named, none guessed
    with pytest.raises(LayoutError, match=r"looks like HWIO: .*also fits IHWO.*detect_layout tells them apart"):
        param_from_user(square, "weight", np.zeros((3, 3, 3, 5)), Layout(), (5, 3, 3, 3))


def test_layout_str_names_only_what_differs() -> None:
    assert str(Layout()) == "Layout()"
    assert str(Layout(kernel="HWIO", data="NHWC")) == "Layout(data='NHWC', kernel='HWIO')"


def test_flattened_inputs_finds_linears_fed_by_a_4d_flatten() -> None:
    from harness.adapters.layouts import flattened_inputs

    spec = S.Sequential([
        S.Conv2d("c", 2, 3, 3), S.Flatten("f"), S.Dropout("d", 0.5), S.Linear("fc1", 27, 4),
        S.ReLU("r"), S.Linear("fc2", 4, 2), S.Flatten("f2"), S.Linear("fc3", 2, 2),
    ])
    assert flattened_inputs(spec, (2, 2, 5, 5)) == {"fc1": (3, 3, 3)}


def test_hwc_flatten_through_batch_norm_into_a_square_linear_means_the_same_network() -> None:
    """Not just round trips: user-layout numpy code fed converted parameters computes the
    reference's function (features in H, W, C order through a BatchNorm1d and a square
    Linear, whose output — unlike its input — is not a flattened map)."""
    from harness.adapters.layer import wrap_layer
    from harness.adapters.layouts import feature_orders, spec_converter
    from reference_models import build

    c, h, w, n = 2, 3, 2, 6
    d = c * h * w
    spec = S.Sequential([S.Flatten("flat"), S.BatchNorm1d("bn", d), S.Linear("fc", d, d)])
    shape = (n, c, h, w)
    assert feature_orders(spec, shape) == ({"bn": (c, h, w), "fc": (c, h, w)}, None)
    params = S.init_params(spec, shape, seed=1)
    layout = Layout(data="NHWC", linear="in_out", flatten="HWC")
    layers = dict(S.walk(spec))
    user = {k: param_to_user(layers[k.split(".")[0]], k.split(".")[1], v, layout,
                             v.shape[::-1] if k == "fc.weight" else v.shape, (c, h, w)) for k, v in params.items()}
    assert not np.array_equal(user["bn.weight"], params["bn.weight"])  # per-feature params reordered
    np.testing.assert_array_equal(user["fc.bias"], params["fc.bias"])  # the output side is not
    convert = spec_converter(spec, shape, layout)
    assert all(np.array_equal(convert(k, v), params[k]) for k, v in user.items())

    x = np.random.default_rng(2).normal(size=shape)
    u = data_to_user(x, layout).reshape(n, -1)  # what flattening NHWC data gives
    z = (u - u.mean(0)) / np.sqrt(u.var(0) + 1e-5) * user["bn.weight"] + user["bn.bias"]
    out = z @ user["fc.weight"] + user["fc.bias"]
    ref = build("torch", spec).forward(params, x)
    np.testing.assert_allclose(out, ref.output, rtol=1e-12, atol=1e-12)

    class Dense:  # the square Linear alone, wrapped, fed the HWC-ordered features
        W, b = user["fc.weight"], user["fc.bias"]

        def forward(self, v):
            return v @ self.W + self.b

        def backward(self, dy):
            raise NotImplementedError

    fc = wrap_layer(Dense(), layers["fc"], layout=layout)
    fc.features_in = (c, h, w)
    np.testing.assert_allclose(fc.forward(ref.inputs["fc"]), ref.outputs["fc"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data", ["NCHW", "NHWC"])
def test_batch_norm_over_flattened_features_with_flat_parameters(data: str) -> None:
    """Code that batch-normalises flattened conv maps keeps gamma as (C*H*W,) in its own
    data order; the spec's over='feature' parameters are (C, H, W)."""
    from reference_models import build

    bn = S.BatchNorm2d("bn", 2, over="feature")
    shape = (8, 2, 3, 4)
    params = S.init_params(S.Sequential([bn]), shape, seed=3)
    layout = Layout(data=data)
    user = {k.split(".")[1]: param_to_user(bn, k.split(".")[1], v, layout, (24,)) for k, v in params.items()}
    for k, v in user.items():
        np.testing.assert_array_equal(param_from_user(bn, k, v, layout, (2, 3, 4)), params[f"bn.{k}"])
    x = np.random.default_rng(4).normal(size=shape)
    u = data_to_user(x, layout).reshape(8, -1)  # the user's flattened features
    y = (u - u.mean(0)) / np.sqrt(u.var(0) + 1e-5) * user["weight"] + user["bias"]
    ref = build("torch", S.Sequential([bn])).forward(params, x).output
    np.testing.assert_allclose(data_from_user(y.reshape(data_to_user(x, layout).shape), layout), ref, rtol=1e-12, atol=1e-12)
