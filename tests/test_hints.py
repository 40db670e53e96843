"""The hints that name a missing declaration (harness/hints.py, harness/adapters/missing.py,
harness/hypotheses/fused.py, Detection.preferred): each is said when the evidence supports it,
confirmed or phrased as a likely cause, and never for a layer that is right or whose fault is a
real bug. The quirks themselves and their options: tests/test_real_code_messages.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

import harness as tg
from realcode import cs231n, keras_like, objects, quirks, single

IN_OUT = tg.Layout(linear="in_out")
W53 = np.random.default_rng(0).normal(size=(5, 3))


def _said(run) -> str:
    try:
        report = run()
    except (tg.AdapterError, tg.SpecError) as e:
        return f"{type(e).__name__}: {e}"
    return "\n".join(" ".join([e.message, *e.diagnosis]) for e in report.layers)


def _affine(backward, **options):
    return tg.wrap_functions(cs231n.affine_forward, backward, tg.Linear("fc", 5, 3), (W53, np.zeros(3)), layout=IN_OUT,
                             **options)


# =========================================================================== grad_scale='batch'


def test_gradients_divided_by_n_name_grad_scale_and_declaring_it_passes() -> None:
    report = tg.check_layer(_affine(cs231n.affine_backward_mean), input_shape=(4, 5))
    assert report.layers[0].verdict == "backward"
    assert any("weight, bias: every parameter gradient is the reference divided by the batch size 4" in line and
               "declare grad_scale='batch'" in line for line in report.layers[0].diagnosis), str(report)
    assert tg.check_layer(_affine(cs231n.affine_backward_mean, grad_scale="batch"), input_shape=(4, 5)).ok


@pytest.mark.parametrize("backward", [cs231n.affine_backward_db_averaged, cs231n.affine_backward_dw_averaged,
                                      cs231n.affine_backward], ids=["db_only", "dw_only", "correct"])
def test_no_grad_scale_hint_unless_every_parameter_gradient_is_divided(backward) -> None:
    report = tg.check_layer(_affine(backward), input_shape=(4, 5))
    assert report.ok == (backward is cs231n.affine_backward)
    assert "grad_scale" not in _said(lambda: report)


def test_grad_scale_declared_for_code_that_does_not_divide_says_drop_it() -> None:
    report = tg.check_layer(_affine(cs231n.affine_backward, grad_scale="batch"), input_shape=(4, 5))
    assert not report.ok
    assert "the code does not divide by the batch size; drop grad_scale=" in _said(lambda: report)


# =========================================================================== batched=False, channel_axis=False


def test_one_example_code_with_a_forward_bug_gets_a_likely_cause_only() -> None:
    layer = quirks.Conv3x3BiasTwice(4)
    before = layer.filters.copy(), layer.biases.copy()
    report = tg.check_layer(layer, tg.Conv2d("conv", 1, 4, 3), input_shape=(2, 1, 6, 6))
    entry = report.layers[0]
    assert entry.verdict == "error" and entry.error_side == "forward"
    assert ("likely cause: the code takes one example at a time, as (H, W) with no channel axis (run on each example "
            "alone, as (6, 6), it runs, but its output differs from the reference); declare batched=False, "
            "channel_axis=False if so") in entry.message
    assert np.array_equal(layer.filters, before[0]) and np.array_equal(layer.biases, before[1])  # restored


def test_a_confirmed_per_example_hint_leaves_the_parameters_as_they_were() -> None:
    layer = single.Conv3x3(4)
    before = layer.filters.copy(), layer.biases.copy()
    message = tg.check_layer(layer, tg.Conv2d("conv", 1, 4, 3), input_shape=(2, 1, 6, 6)).layers[0].message
    assert "it runs and reproduces the reference; declare batched=False, channel_axis=False" in message
    assert np.array_equal(layer.filters, before[0]) and np.array_equal(layer.biases, before[1])


def test_multi_channel_one_example_code_is_not_told_channel_axis_false() -> None:
    message = tg.check_layer(single.Conv3x3(4), tg.Conv2d("conv", 2, 4, 3), input_shape=(2, 2, 6, 6)).layers[0].message
    assert "ValueError" in message and "channel_axis" not in message and "batched" not in message


def test_code_that_raises_on_any_input_gets_no_per_example_hint() -> None:
    report = tg.check_layer(quirks.ReLUCacheFirst(), tg.ReLU("relu"), input_shape=(3, 6))
    entry = report.layers[0]
    assert entry.verdict == "error" and "AttributeError" in entry.message
    assert "batched" not in entry.message and "likely cause" not in entry.message


# =========================================================================== args= / forward_args= ...


def test_object_forward_missing_its_training_flag_names_forward_args() -> None:
    said = _said(lambda: tg.check_layer(quirks.DenseTraining(4, 6), tg.Linear("fc", 6, 4), layout=IN_OUT))
    assert said == ("AdapterError: layer 'fc': DenseTraining.forward() missing 1 required positional argument: "
                    "'training' (called as DenseTraining.forward(x)); pass it with forward_args=(training,) or "
                    "forward_kwargs={'training': ...}")
    layer = tg.wrap_layer(quirks.DenseTraining(4, 6), tg.Linear("fc", 6, 4), layout=IN_OUT, forward_args=(True,))
    assert tg.check_layer(layer).ok


def test_a_keyword_the_forward_does_not_take_names_kwargs() -> None:
    pair = tg.wrap_functions(cs231n.affine_forward, cs231n.affine_backward, tg.Linear("fc", 5, 3), (W53, np.zeros(3)),
                             layout=IN_OUT, kwargs={"mode": "train"})
    said = _said(lambda: tg.check_layer(pair, input_shape=(4, 5)))
    assert said.startswith("AdapterError: layer 'fc': affine_forward() got an unexpected keyword argument 'mode' "
                           "(called as affine_forward(x, weight, bias, mode=...)); it takes no keyword 'mode': check kwargs=")


def test_too_many_positional_arguments_names_params_and_args() -> None:
    pair = tg.wrap_functions(cs231n.affine_forward, cs231n.affine_backward, tg.Linear("fc", 5, 3), (W53, np.zeros(3)),
                             layout=IN_OUT, args=({"stride": 1},))
    said = _said(lambda: tg.check_layer(pair, input_shape=(4, 5)))
    assert said == ("AdapterError: layer 'fc': affine_forward() takes 3 positional arguments but 4 were given (called as "
                    "affine_forward(x, weight, bias, args[0])); it takes fewer positional arguments: check params= and "
                    "args=")


def test_another_call_of_the_same_phase_is_not_named_as_the_forward_or_backward() -> None:
    class DenseZeroGradNeedsArg(keras_like.Dense):
        def zero_grad(self, everything):  # the harness calls zero_grad() with no argument
            self.dW = self.db = None

    layer = tg.wrap_layer(DenseZeroGradNeedsArg(3, 5), tg.Linear("fc", 5, 3), layout=IN_OUT, zero_grad="zero_grad")
    entry = tg.check_layer(layer).layers[0]
    assert entry.verdict == "error" and "zero_grad() missing 1 required positional argument" in entry.message
    assert "backward_args" not in entry.message


def test_a_type_error_inside_the_users_code_stays_the_codes_fault() -> None:
    pair = tg.wrap_functions(quirks.affine_forward_helper_unbound, cs231n.affine_backward, tg.Linear("fc", 5, 3),
                             (W53, np.zeros(3)), layout=IN_OUT)
    entry = tg.check_layer(pair, input_shape=(4, 5)).layers[0]
    assert entry.verdict == "error" and "missing 1 required positional argument: 'b'" in entry.message
    assert "quirks.py" in entry.message and "args=" not in entry.message


# =========================================================================== sgd=


def test_sgd_hint_only_when_the_backward_changed_the_weights() -> None:
    sgd = _said(lambda: tg.check_layer(objects.DenseSGD(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT))
    assert "backward changed 'weight' itself (an SGD step inside backward?): declare sgd=(None, lr)" in sgd
    elsewhere = _said(lambda: tg.check_layer(objects.DenseGradsGW(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT))
    assert "cannot find the gradient of 'weight'" in elsewhere and "changed 'weight' itself" not in elsewhere


# =========================================================================== lazy=True


def test_lazy_hint_runs_a_copy_only() -> None:
    layer = keras_like.LazyDense(3)
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    said = _said(lambda: tg.wrap_layer(layer, tg.Linear("fc", 5, 3), layout=IN_OUT))
    assert ("the layer creates its parameters in its first forward (a copy of it, run forward once on an input of "
            "shape (3, 5), has 'weight' at W): declare lazy=True") in said
    assert layer.W is None and layer.x is None  # the user's object was not run
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state


def test_lazy_hint_is_a_likely_cause_when_a_copy_cannot_run() -> None:
    said = _said(lambda: tg.wrap_layer(quirks.LazyDenseTraining(3), tg.Linear("fc", 5, 3), layout=IN_OUT))
    assert "likely cause: the layer creates its parameters in its first forward (W is None until then); declare " \
           "lazy=True if so" in said


def test_parameters_under_other_names_get_no_lazy_hint() -> None:
    from realcode import numpyml

    said = _said(lambda: tg.wrap_layer(numpyml.BatchNorm1D(6), tg.BatchNorm1d("bn", 6)))
    assert "cannot find parameter 'weight'" in said and "lazy" not in said


# =========================================================================== a fused activation


def test_fused_leaky_relu_is_named_with_its_slope() -> None:
    report = tg.check_layer(quirks.DenseLeaky(4, 6), tg.Linear("fc", 6, 4), layout=IN_OUT)
    assert report.layers[0].verdict == "forward"
    assert ("output: the forward matches Linear followed by LeakyReLU(negative_slope=0.3): the code fuses an activation "
            "into the layer; check it as a span Sequential([Linear('fc', 6, 4), LeakyReLU('act', negative_slope=0.3)]"
            ) in _said(lambda: report)
    span = tg.Sequential([tg.Linear("fc", 6, 4), tg.LeakyReLU("act", negative_slope=0.3)], name="fc_act")
    assert tg.check_layer(quirks.DenseLeaky(4, 6), span, layout=IN_OUT, input_shape=(3, 6)).ok


@pytest.mark.parametrize("cls,ok", [(keras_like.Dense, True), (quirks.DenseBiasTwice, False)], ids=["correct", "bias_twice"])
def test_no_fused_activation_hint_without_an_activation(cls, ok: bool) -> None:
    report = tg.check_layer(cls(4, 6), tg.Linear("fc", 6, 4), layout=IN_OUT)
    assert report.ok == ok
    assert "fuses an activation" not in _said(lambda: report)


# =========================================================================== layout hints in a network


def test_nhwc_network_with_chw_flatten_is_told_flatten_hwc() -> None:
    # 6 channels of 6x6: the input shape reads the same in NCHW and in NHWC
    model = keras_like.Sequential([keras_like.Conv2D(4, 3, 6), keras_like.ReLU(), keras_like.Flatten(),
                                   keras_like.Dense(5, 64, seed=1)])
    spec = tg.Sequential([tg.Conv2d("conv", 6, 4, 3), tg.ReLU("relu"), tg.Flatten("flat"), tg.Linear("fc", 64, 5)])
    declared = tg.Layout(data="NHWC", kernel="HWIO", linear="in_out")
    net = tg.wrap_network(dict(zip(["conv", "relu", "flat", "fc"], model.layers)), spec, forward=model.forward,
                          backward=model.backward, layout=declared)
    flat = next(e for e in tg.check_network(net, input_shape=(2, 6, 6, 6)).layers if e.name == "flat")
    hints = [line for line in flat.diagnosis if line.startswith("layout:")]
    assert hints == [f"layout: the forward matches the reference under "
                     f"Layout(data='NHWC', kernel='HWIO', linear='in_out', flatten='HWC') (declared: {declared}); "
                     "declare that layout"], flat.diagnosis


# =========================================================================== a span with Flatten+Linear, object style

SPAN = tg.Sequential([tg.Conv2d("conv", 3, 4, 3), tg.ReLU("relu"), tg.Flatten("flat"), tg.Linear("fc", 64, 5)], name="net")
WHERE = {"conv.weight": "W1", "conv.bias": "b1", "fc.weight": "W2", "fc.bias": "b2"}
GRADS = {"conv.weight": "dW1", "conv.bias": "db1", "fc.weight": "dW2", "fc.bias": "db2"}


@pytest.mark.parametrize("seed", [0, 1])
def test_object_span_with_flatten_and_linear(seed: int) -> None:
    good = tg.check_layer(quirks.TinyConvNet(seed=seed), SPAN, params=WHERE, grads=GRADS, input_shape=(2, 3, 6, 6),
                          seed=seed)
    assert good.ok, str(good)
    bad = tg.check_layer(quirks.TinyConvNetDW2Averaged(seed=seed), SPAN, params=WHERE, grads=GRADS,
                         input_shape=(2, 3, 6, 6), seed=seed)
    assert bad.layers[0].verdict == "backward" and [t.name for t in bad.layers[0].tensors if not t.ok] == ["fc.weight"]
