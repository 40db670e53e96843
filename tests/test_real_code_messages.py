"""Issue 13 acceptance, the messages: each real-code quirk run *without* the declaration that
handles it must get a message naming that option (docs/wrapping/ lists the
quirk, the declaration and the message). Companion of tests/test_real_code.py (the shapes
themselves). The hints behind the messages, and that they are not given where they do not apply:
tests/test_hints.py.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import harness as tg
from realcode import cs231n, frameworks, keras_like, numpyml, objects, pairs, single

IN_OUT = tg.Layout(linear="in_out")
KERAS = tg.Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
KERAS_NET = tg.Sequential([tg.Conv2d("conv", 3, 4, 3), tg.ReLU("relu"), tg.Flatten("flat"), tg.Linear("fc", 64, 5)])


def _said(run: Callable[[], Any]) -> str:
    """What trigrad tells the user: a configuration error's text, or the failing entries'
    messages and diagnoses."""
    try:
        report = run()
    except (tg.AdapterError, tg.SpecError, ValueError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    assert not report.ok, f"the check passed although a declaration is missing:\n{report}"
    return "\n".join(" ".join([e.message, *e.diagnosis]) for e in report.layers if not e.ok)


def _keras_net_without_input_shape():
    model = keras_like.MODEL.model(0)
    tg.wrap_network(dict(zip(["conv", "relu", "flat", "fc"], model.layers)), KERAS_NET, forward=model.forward,
                    backward=model.backward, layout=KERAS)


W53 = np.random.default_rng(0).normal(size=(5, 3))
W4333 = np.random.default_rng(0).normal(size=(4, 3, 3, 3))
MISSING = [
    ("NHWC data, HWIO kernel", "Layout(data='NHWC', kernel='HWIO')",
     lambda: tg.check_layer(keras_like.Conv2D(4, 3, 3), tg.Conv2d("conv", 3, 4, 3), input_shape=(2, 3, 6, 6))),
    ("weights (in, out)", "Layout(linear='in_out')",
     lambda: tg.check_layer(keras_like.Dense(3, 5), tg.Linear("fc", 5, 3))),
    ("HWC flatten", "input_shape=", _keras_net_without_input_shape),
    ("parameters under other names", "params=",
     lambda: tg.wrap_layer(numpyml.BatchNorm1D(6), tg.BatchNorm1d("bn", 6))),
    ("gradients under other names", "grads=",
     lambda: tg.check_layer(objects.DenseGradsGW(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT)),
    ("methods under other names", "backward=", lambda: tg.wrap_layer(single.FC(6, 4), tg.Linear("fc", 6, 4), layout=IN_OUT)),
    ("in-place *= in backward", "inplace={'upstream'}",
     lambda: tg.check_layer(objects.ReLU(), tg.ReLU("relu"), input_shape=(3, 6))),
    ("gradients already divided by N", "grad_scale=",
     lambda: tg.check_layer(tg.wrap_functions(cs231n.affine_forward, cs231n.affine_backward_mean, tg.Linear("fc", 5, 3),
                                              (W53, np.zeros(3)), layout=IN_OUT), input_shape=(4, 5))),
    ("one example at a time", "batched=False",
     lambda: tg.check_layer(single.Conv3x3(4), tg.Conv2d("conv", 1, 4, 3), input_shape=(2, 1, 6, 6))),
    ("(H, W) examples", "channel_axis=False",
     lambda: tg.check_layer(single.Conv3x3(4), tg.Conv2d("conv", 1, 4, 3), batched=False, input_shape=(2, 1, 6, 6))),
    ("SGD step inside backward", "sgd=",
     lambda: tg.check_layer(objects.DenseSGD(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT)),
    ("a parameter dict argument", "args=",
     lambda: tg.check_layer(tg.wrap_functions(cs231n.conv_forward_naive, cs231n.conv_backward_naive,
                                              tg.Conv2d("conv", 3, 4, 3, stride=2, padding=1), (W4333, np.zeros(4))),
                            input_shape=(2, 3, 7, 7))),
    ("an activation fused into the layer", "Sequential(",
     lambda: tg.check_layer(keras_like.Dense(4, 6, activation="relu"), tg.Linear("fc", 6, 4), layout=IN_OUT)),
    ("weights built by the first forward", "lazy=True",
     lambda: tg.check_layer(keras_like.LazyDense(3), tg.Linear("fc", 5, 3), layout=IN_OUT)),
    ("a true convolution", "Layout(flip=True)",
     lambda: tg.check_layer(tg.wrap_functions(pairs.conv_forward_true, pairs.conv_backward_true, tg.Conv2d("conv", 2, 3, 3),
                                              (W4333[:3, :2], np.zeros(3))), input_shape=(2, 2, 6, 5))),
    ("a flush that clears the cached input", "flush=",
     lambda: tg.check_layer(numpyml.FullyConnected(5, 5), tg.Linear("fc", 5, 5), layout=IN_OUT, zero_grad="flush_gradients")),
    ("a first layer returning None", "input_grad=False",
     lambda: tg.check_layer(objects.FirstConv(3, 4, 3), tg.Conv2d("conv1", 3, 4, 3, padding=1), input_shape=(2, 3, 5, 5))),
]


@pytest.mark.parametrize("quirk,option,run", [pytest.param(q, o, r, id=q) for q, o, r in MISSING])
def test_a_missing_declaration_names_its_option(quirk: str, option: str, run: Callable[[], Any]) -> None:
    assert option in _said(run)


# =========================================================================== inputs in the user's layout elsewhere


def test_detect_layout_reads_input_shape_in_each_candidate_layout() -> None:
    found = tg.detect_layout(keras_like.Conv2D(4, 3, 3), tg.Conv2d("conv", 3, 4, 3), input_shape=(2, 6, 6, 3))
    assert found.matched and (found.best.data, found.best.kernel) == ("NHWC", "HWIO"), str(found)


# =========================================================================== CuPy, where installed


@pytest.mark.parametrize("seed", [0, 1])
def test_cupy_layer(seed: int) -> None:
    pytest.importorskip("cupy")
    report = tg.check_layer(frameworks.CupyDense(5, 3, seed=seed), tg.Linear("fc", 5, 3), layout=IN_OUT, seed=seed)
    assert report.ok, str(report)
