"""No silent pass, nothing lost (issue 11): NaN/Inf and dtypes the user's code returns are
named with the tensor, the count and the first index; configuration mistakes propagate as
SpecErrors (exit 2) instead of becoming a layer's verdict "error" (exit 1); the user's
parameters are restored bit for bit whichever way a check ends."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_layer
from harness.adapters.layouts import Layout, LayoutError
from harness.adapters.loss import wrap_loss
from harness.adapters.network import wrap_network
from harness.check import check_layer, check_network
from harness.fd import Probe, summary
from harness.spec import SpecError
from harness.target import TargetError, run

from zoo.layers import Conv, ReLU

LIN = S.Linear("fc", 4, 3)
IN_OUT = Layout(linear="in_out")


class Dense:
    """y = x W + b, W (in, out); counts its forward calls."""

    def __init__(self, dtype=np.float64):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=3).astype(dtype)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


def _check(user, spec=LIN, **kw):
    """check_layer with the user's parameters fingerprinted before and after."""
    before = {k: fingerprint(v) for k, v in vars(user).items() if isinstance(v, np.ndarray)}
    try:
        return check_layer(user, spec, **{"layout": IN_OUT, **kw})
    finally:  # restored bit for bit, however the check ended (a raise included)
        assert {k: fingerprint(getattr(user, k)) for k in before} == before


# --------------------------------------------------------------------------- NaN / Inf


class NanWeightGrad(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = self.dW.copy()
        self.dW[1, 2], self.dW[3, 0] = np.nan, -np.inf
        return dx


def test_nan_in_a_parameter_gradient_names_the_tensor_the_count_and_the_first_index() -> None:
    report = _check(NanWeightGrad())
    layer = report.layer("fc")
    assert layer.verdict == "error", str(report)
    assert "weight: 2 of 12 values are NaN or Inf (the first, nan, at [1, 2])" in layer.message
    assert "bias" not in layer.message  # only the tensor that has them
    weight = next(t for t in layer.tensors if t.name == "weight")
    assert not weight.ok and math.isnan(weight.fd.worst)  # the FD column shows nan, not a max() that dropped it
    assert weight.fd.consistent is False
    assert next(t for t in layer.tensors if t.name == "bias").ok  # the other tensors are still compared
    assert not any("weight" in d for d in layer.diagnosis)  # no hypothesis claims to explain a NaN
    assert json.loads(report.to_json())["layers"][0]["verdict"] == "error"  # strict JSON: NaN written as null


def test_nan_and_inf_in_a_weight_name_the_weight_before_any_call() -> None:
    user = Dense()
    user.W[0, 1], user.W[2, 2] = np.nan, np.inf
    layer = _check(user).layer("fc")
    assert layer.verdict == "error"
    assert "parameters hold NaN/Inf before any call: weight: 2 of 12 values are NaN or Inf (the first, nan, at [0, 1])" \
        in layer.message
    assert user.calls == 0  # the user's code never ran on NaN weights


class NanOutput(Dense):
    def forward(self, x):
        y = super().forward(x).copy()
        y[0, 1] = y[2, 2] = np.nan
        return y


class InfInputGrad(Dense):
    def backward(self, dy):
        dx = super().backward(dy).copy()
        dx[1, 3] = np.inf
        return dx


@pytest.mark.parametrize("user,expected", [
    (NanOutput(), "forward output has a non-finite value nan at [0, 1] (user layout; 2 of 9 NaN or Inf)"),
    (InfInputGrad(), "backward's input gradient has a non-finite value inf at [1, 3] (user layout; 1 of 12 NaN or Inf)"),
])
def test_nan_in_the_output_or_input_gradient_is_an_error_with_count_and_index(user, expected: str) -> None:
    layer = _check(user).layer("fc")
    assert layer.verdict == "error" and expected in layer.message and "layer 'fc'" in layer.message


def _mlp(forward_dtype=None):
    """fc1 (4 -> 3), relu, fc2 (3 -> 2), with the network's own forward/backward."""
    spec = S.Sequential([S.Linear("fc1", 4, 3), S.ReLU("relu"), S.Linear("fc2", 3, 2)])
    fc1, relu, fc2 = Dense(), ReLU(), Dense()
    fc2.W, fc2.b = np.random.default_rng(1).normal(size=(3, 2)), np.zeros(2)

    def forward(x):
        y = fc2.forward(relu.forward(fc1.forward(x)))
        return y.astype(forward_dtype) if forward_dtype else y

    def backward(g):
        return fc1.backward(relu.backward(fc2.backward(g)))

    return wrap_network({"fc1": fc1, "relu": relu, "fc2": fc2}, spec, forward=forward, backward=backward,
                        layout=IN_OUT), (fc1, fc2)


def test_nan_in_a_networks_weight_is_named_once_and_later_entries_are_downstream() -> None:
    net, (fc1, _) = _mlp()
    fc1.b[1] = np.nan
    report = check_network(net, input_shape=(3, 4), seed=0)
    assert report.first_failure == "fc1", str(report)
    assert "bias: 1 of 3 values is NaN or Inf (the first, nan, at [1])" in report.layer("fc1").message
    for name in ("relu", "fc2", "(network)"):
        assert report.layer(name).verdict == "error" and report.layer(name).downstream_of == "fc1"
        assert "reference's values reaching it hold NaN/Inf (see 'fc1')" in report.layer(name).message


def test_nan_in_a_losss_gradient_names_the_scores() -> None:
    def softmax_loss(s, y):
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        d[2, 1] = np.nan
        return -np.log(p[np.arange(len(y)), y]).mean(), d / len(y)

    net, _ = _mlp()
    entry = check_network(net, input_shape=(3, 4), loss=wrap_loss(softmax_loss, S.SoftmaxCrossEntropy())).layer("(loss)")
    assert entry.verdict == "error" and "scores: 1 of 6 values is NaN or Inf (the first, nan, at [2, 1])" in entry.message


def test_the_fd_figure_keeps_a_nan() -> None:
    probe = Probe(value=1.0, error=0.0, h=1e-4)
    found = summary([(probe, float("nan"), 1.0), (probe, 3.0, 1.0)], np.float64)
    assert math.isnan(found.worst) and found.consistent is False
    assert summary([(probe, 1.5, 1.0), (probe, 1.0, 1.0)], np.float64).worst == 0.5


# --------------------------------------------------------------------------- dtypes


def test_a_networks_own_float32_output_is_said_in_its_entry() -> None:
    net, _ = _mlp(np.float32)
    entry = check_network(net, input_shape=(3, 4), seed=0).layer("(network)")
    assert any("output: is float32 while the parameters are float64: a silent downcast" in d
               for d in entry.diagnosis), entry.diagnosis


class Float32Output(Dense):
    def forward(self, x):
        return super().forward(x).astype(np.float32)


class Float16WeightGrad(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = self.dW.astype(np.float16)
        return dx


class Float64Output(Dense):
    def forward(self, x):
        return super().forward(x).astype(np.float64)


class IntOutput(Dense):
    def forward(self, x):
        return np.rint(super().forward(x) * 100).astype(np.int64)


class IntBiasGrad(Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = self.db.astype(np.int32)
        return dx


@pytest.mark.parametrize("user,dtype,expected", [
    (Float32Output(), np.float64, "output: is float32 while the parameters are float64: a silent downcast"),
    (Float16WeightGrad(np.float32), np.float32, "weight: is float16 while the parameters are float32: a silent downcast"),
    (Float64Output(np.float32), np.float32, "output: is float64 while the parameters are float32: a silent upcast"),
])
def test_another_float_dtype_than_the_parameters_is_said(user, dtype, expected: str) -> None:
    layer = _check(user).layer("fc")
    assert layer.dtype == np.dtype(dtype).name
    assert any(expected in d for d in layer.diagnosis), layer.diagnosis


def test_a_matching_dtype_says_nothing() -> None:
    assert not any("silent" in d for d in _check(Dense(np.float32)).layer("fc").diagnosis)


@pytest.mark.parametrize("user,expected", [
    (IntOutput(), "forward output is int64 while the parameters are float64: integer values cannot carry a gradient"),
    (IntBiasGrad(), "gradient of 'bias' is int32 while the parameters are float64"),
])
def test_an_integer_output_or_gradient_is_an_error(user, expected: str) -> None:
    layer = _check(user).layer("fc")
    assert layer.verdict == "error" and expected in layer.message, layer.message


# --------------------------------------------------------------------------- configuration vs the code's fault

CONV = S.Conv2d("conv", 2, 3, 3, stride=2, padding=1)


def test_nchw_code_declared_nhwc_is_a_layout_error_naming_layout_and_shapes() -> None:
    user = Conv()
    with pytest.raises(LayoutError) as e:  # input_shape in the declared NHWC: (N, H, W, C)
        _check(user, CONV, layout=Layout(data="NHWC"), input_shape=(2, 7, 6, 2))
    message = str(e.value)
    assert "layer 'conv'" in message and "declared Layout(data='NHWC')" in message
    assert "input as (2, 7, 6, 2)" in message and "canonical (2, 2, 7, 6)" in message
    assert "under Layout() it runs and reproduces the reference: declare that layout" in message
    assert "\n" not in message  # one line for `trigrad check`'s exit 2


def test_a_network_layout_declares_the_other_fields_kept_in_the_suggestion() -> None:
    with pytest.raises(LayoutError, match=r"under Layout\(linear='in_out'\) it runs"):
        _check(Conv(), CONV, layout=Layout(data="NHWC", linear="in_out"), input_shape=(2, 7, 6, 2))


def test_a_wrong_gradient_location_propagates() -> None:
    with pytest.raises(AdapterError, match=r"gradient of 'weight' declared at dWW is missing after backward"):
        _check(Dense(), grads={"weight": "dWW"})


def test_a_wrong_lazy_parameter_name_propagates() -> None:
    class Lazy(Dense):
        def __init__(self):
            self.calls = 0

        def forward(self, x):
            if not hasattr(self, "W"):
                rng = np.random.default_rng(0)
                self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)
            return super().forward(x)

    with pytest.raises(AdapterError, match=r"parameter 'weight' declared at Wt, but Lazy has nothing there"):
        _check(Lazy(), lazy=True, params={"weight": "Wt", "bias": "b"})


def test_a_kernel_declared_in_another_order_propagates() -> None:
    with pytest.raises(LayoutError, match=r"parameter 'weight' has shape .* in the declared Layout\(kernel='HWIO'\)"):
        _check(Conv(), CONV, layout=Layout(kernel="HWIO"), input_shape=(2, 2, 7, 6))


class ReturnsNHWC(Conv):
    """NCHW code that hands back its output transposed to NHWC."""

    def forward(self, x):
        return super().forward(x).transpose(0, 2, 3, 1)


class CropsTheOutput(Conv):
    def forward(self, x):
        return super().forward(x)[:, :, 1:]


def test_an_output_shape_another_layout_explains_is_a_configuration_error() -> None:
    with pytest.raises(AdapterError, match=r"looks like NHWC: pass Layout\(data='NHWC'\)"):
        _check(ReturnsNHWC(), CONV, input_shape=(2, 2, 7, 6))


def test_an_output_shape_no_layout_explains_is_the_codes_error() -> None:
    layer = _check(CropsTheOutput(), CONV, input_shape=(2, 2, 7, 6)).layer("conv")
    assert layer.verdict == "error"
    assert "forward returned shape (2, 3, 3, 3); the spec expects (2, 3, 4, 3)" in layer.message


def test_the_users_own_exception_stays_a_verdict_with_its_frame_and_declared_layout() -> None:
    class Raises(Conv):
        def backward(self, dy):
            raise IndexError("index 7 is out of bounds")

    layer = _check(Raises(), CONV, input_shape=(2, 2, 7, 6), layout=Layout(flip=True)).layer("conv")
    assert layer.verdict == "error"
    assert "IndexError: index 7 is out of bounds at " in layer.message and "test_check_faults.py" in layer.message
    assert "given its input as (2, 2, 7, 6) in the declared Layout(flip=True)" in layer.message


def test_a_wrong_layout_in_a_network_propagates_from_check_network() -> None:
    spec = S.Sequential([CONV, S.ReLU("relu")])
    conv = Conv()
    before = fingerprint(conv.W)
    net = wrap_network({"conv": conv, "relu": ReLU()}, spec, layout=Layout(data="NHWC"))
    with pytest.raises(LayoutError, match=r"layer 'conv'.*declared Layout\(data='NHWC'\)"):
        check_network(net, input_shape=(2, 7, 6, 2))
    assert fingerprint(conv.W) == before


def test_trigrad_check_turns_a_configuration_error_into_a_target_error() -> None:
    """What `trigrad check` exits 2 on (target.run wraps SpecError in TargetError); the
    user's own bug stays a report (exit 1)."""
    with pytest.raises(TargetError, match=r"declare that layout"):
        run({"check": Conv(), "spec": CONV, "layout": Layout(data="NHWC"), "input_shape": (2, 7, 6, 2)})
    report = run({"check": CropsTheOutput(), "spec": CONV, "input_shape": (2, 2, 7, 6)})
    assert report.layer("conv").verdict == "error"
    assert issubclass(LayoutError, SpecError) and issubclass(AdapterError, SpecError)


def test_wrapped_layers_used_alone_keep_their_exception_types() -> None:
    fc = wrap_layer(NanOutput(), LIN, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"non-finite value nan at \[0, 1\]"):
        fc.forward(np.ones((3, 4)))
