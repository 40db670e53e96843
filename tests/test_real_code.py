"""Issue 13 acceptance: real code as it is, wrapped in at most 5 lines, no shim.

Every shape in ``tests/realcode`` (written the way public from-scratch repositories write
layers) is wrapped by one ``wrap_<shape>(m, seed)`` below: only trigrad declarations (the
spec, ``layout=``, ``params=``, options) and the check call, at most 5 lines, no shim class,
no subclass, no lambda restructuring the user's API. ``m`` is the user's code: the correct
version or a buggy variant. The spec of a multi-layer architecture is a module constant (it
describes the architecture, which every check needs, and is not a wrapping of the code).

* the correct version passes at 20 seeds (every entry's verdict "pass");
* every buggy variant is found: the report fails, its first failure is the expected layer and
  that entry's verdict names the expected side;
* every wrapping is at most 5 lines.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import pytest
from conftest import seeds

import harness as tg
from realcode.table import SHAPES, Bug, Shape

SEEDS = range(20)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The references' tensors are tiny: torch's intra-op thread pool only costs time here
    (5-10x per check on a loaded 2-core machine). Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

IN_OUT = tg.Layout(linear="in_out")
NHWC = tg.Layout(data="NHWC")
KERAS = tg.Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
LR = 0.05

KERAS_NET = tg.Sequential([tg.Conv2d("conv", 3, 4, 3), tg.ReLU("relu"), tg.Flatten("flat"), tg.Linear("fc", 64, 5)])
MLP32 = tg.Sequential([tg.Linear("fc1", 6, 8), tg.LeakyReLU("act", 0.1), tg.Linear("fc2", 8, 3)])
TWO_LAYER = tg.Sequential([tg.Linear("fc1", 6, 8), tg.ReLU("relu"), tg.Linear("fc2", 8, 4)])
TANH_NET = tg.Sequential([tg.Linear("fc1", 5, 7), tg.Tanh("tanh"), tg.Linear("fc2", 7, 3)])
RES_BLOCK = tg.Residual("res", [
    tg.Conv2d("conv1", 3, 3, 3, padding=1, bias=False), tg.BatchNorm2d("bn1", 3), tg.ReLU("relu1"),
    tg.Conv2d("conv2", 3, 3, 3, padding=1, bias=False), tg.BatchNorm2d("bn2", 3)], post=[tg.ReLU("relu")])
LIST_NET = tg.Sequential([tg.Conv2d("conv", 2, 3, 3, padding=1, bias=False), tg.ReLU("relu"), tg.MaxPool2d("pool", 2),
                          tg.Flatten("flat"), tg.Linear("fc", 27, 4)], name="net")


def _x(seed: int, *shape: int) -> np.ndarray:
    """An input in the user's own layout (what the user would pass)."""
    return np.random.default_rng(seed).normal(size=shape)


# =========================================================================== the wrappings
# --------------------------------------------------------------------------- CS231n function pairs


def wrap_cs231n_affine(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(5, 3)), np.zeros(3)
    layer = tg.wrap_functions(m.affine_forward, m.affine_backward, tg.Linear("fc", 5, 3), (w, b), layout=IN_OUT)
    return tg.check_layer(layer, input_shape=(4, 5), seed=seed)


def wrap_cs231n_affine_4d(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(32, 3)), np.zeros(3)
    span = tg.Sequential([tg.Flatten("flat"), tg.Linear("fc", 32, 3)], name="affine")
    layer = tg.wrap_functions(m.affine_forward, m.affine_backward, span, (w, b), layout=IN_OUT)
    return tg.check_layer(layer, input_shape=(3, 2, 4, 4), seed=seed)


def wrap_cs231n_conv_naive(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(4, 3, 3, 3)), np.zeros(4)
    spec = tg.Conv2d("conv", 3, 4, 3, stride=2, padding=1)
    layer = tg.wrap_functions(m.conv_forward_naive, m.conv_backward_naive, spec, (w, b), args=({"stride": 2, "pad": 1},))
    return tg.check_layer(layer, input_shape=(2, 3, 7, 7), seed=seed)


def wrap_cs231n_conv_im2col(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(4, 3, 3, 3)), np.zeros(4)
    spec = tg.Conv2d("conv", 3, 4, 3, padding=1)
    layer = tg.wrap_functions(m.conv_forward, m.conv_backward, spec, (w, b), args=({"stride": 1, "pad": 1},))
    return tg.check_layer(layer, input_shape=(2, 3, 6, 6), seed=seed)


def wrap_cs231n_max_pool(m, seed):
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    layer = tg.wrap_functions(m.max_pool_forward_naive, m.max_pool_backward_naive, tg.MaxPool2d("pool", 2), args=(pool_param,))
    return tg.check_layer(layer, input_shape=(2, 3, 6, 6), seed=seed)


def wrap_cs231n_batchnorm(m, seed):
    gamma, beta = np.random.default_rng(seed).uniform(0.5, 1.5, size=(2, 5))
    layer = tg.wrap_functions(m.batchnorm_forward, m.batchnorm_backward, tg.BatchNorm1d("bn", 5), (gamma, beta),
                              args=({"mode": "train"},))
    return tg.check_layer(layer, input_shape=(4, 5), seed=seed)


def wrap_cs231n_spatial_batchnorm(m, seed):
    gamma, beta = np.random.default_rng(seed).uniform(0.5, 1.5, size=(2, 3))
    layer = tg.wrap_functions(m.spatial_batchnorm_forward, m.spatial_batchnorm_backward, tg.BatchNorm2d("bn", 3),
                              (gamma, beta), args=({"mode": "train"},))
    return tg.check_layer(layer, input_shape=(2, 3, 4, 4), seed=seed)


def wrap_bn_positional_eval(m, seed):
    gamma, beta, mean, var = np.random.default_rng(seed).uniform(0.5, 1.5, size=(4, 5))
    spec = tg.BatchNorm1d("bn", 5, training=False)
    layer = tg.wrap_functions(m.bn_forward, m.bn_backward, spec, [gamma, beta, mean, var], kwargs={"train": False})
    return tg.check_layer(layer, input_shape=(4, 5), seed=seed)


def wrap_cs231n_dropout(m, seed):
    dropout_param = {"p": 0.75, "mode": "train", "seed": seed}
    layer = tg.wrap_functions(m.dropout_forward, m.dropout_backward, tg.Dropout("drop", p=0.25), args=(dropout_param,))
    return tg.check_layer(layer, input_shape=(4, 6), seed=seed)


def wrap_cs231n_softmax_loss(m, seed):
    return tg.check_loss(m.softmax_loss, tg.SoftmaxCrossEntropy(), input_shape=(4, 5), seed=seed)


def wrap_cs231n_two_layer_net(m, seed):
    model = m.TwoLayerNet(input_dim=6, hidden_dim=8, num_classes=4, seed=seed)
    net = tg.wrap_loss_model(model, TWO_LAYER, loss=tg.SoftmaxCrossEntropy(), layout=IN_OUT)
    return tg.check_network(net, input_shape=(4, 6), seed=seed)


def wrap_affine_mean_grads(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(5, 3)), np.zeros(3)
    spec = tg.Linear("fc", 5, 3)
    layer = tg.wrap_functions(m.affine_forward, m.affine_backward, spec, (w, b), layout=IN_OUT, grad_scale="batch")
    return tg.check_layer(layer, input_shape=(4, 5), seed=seed)


def wrap_relu_pair_float32(m, seed):
    layer = tg.wrap_functions(m.relu_forward, m.relu_backward, tg.ReLU("relu"), dtype=np.float32)
    return tg.check_layer(layer, input_shape=(4, 6), seed=seed)


def wrap_first_affine_pair(m, seed):
    w, b = np.random.default_rng(seed).normal(size=(5, 3)), np.zeros(3)
    spec = tg.Linear("fc1", 5, 3)
    layer = tg.wrap_functions(m.affine_forward, m.affine_backward, spec, (w, b), layout=IN_OUT, input_grad=False)
    return tg.check_layer(layer, input_shape=(4, 5), seed=seed)


def wrap_conv_returns_dict(m, seed):
    W, b = np.random.default_rng(seed).normal(size=(3, 2, 3, 3)), np.zeros(3)
    spec = tg.Conv2d("conv", 2, 3, 3, stride=2)
    layer = tg.wrap_functions(m.conv_forward, m.conv_backward, spec, {"weight": W, "bias": b}, forward_kwargs={"stride": 2})
    return tg.check_layer(layer, input_shape=(2, 2, 7, 7), seed=seed)


def wrap_true_convolution_pair(m, seed):
    K, b = np.random.default_rng(seed).normal(size=(3, 2, 3, 3)), np.zeros(3)
    layer = tg.wrap_functions(m.conv_forward, m.conv_backward, tg.Conv2d("conv", 2, 3, 3), (K, b), layout=tg.Layout(flip=True))
    return tg.check_layer(layer, input_shape=(2, 2, 6, 5), seed=seed)


def wrap_gray_conv_pair(m, seed):
    kernels, bias = np.random.default_rng(seed).normal(size=(4, 3, 3)), np.zeros(4)
    layer = tg.wrap_functions(m.conv_gray_forward, m.conv_gray_backward, tg.Conv2d("conv", 1, 4, 3), (kernels, bias),
                              batched=False, channel_axis=False)
    return tg.check_layer(layer, input_shape=(2, 1, 6, 6), seed=seed)


# --------------------------------------------------------------------------- numpy-ml objects


def wrap_npml_fully_connected(m, seed):
    layer = tg.wrap_layer(m.FullyConnected(5, 5, seed=seed), tg.Linear("fc", 5, 5), layout=IN_OUT, flush="flush_gradients")
    return tg.check_layer(layer, seed=seed)


def wrap_npml_batchnorm(m, seed):
    where = {"weight": "parameters['scaler']", "bias": "parameters['intercept']"}
    layer = tg.wrap_layer(m.BatchNorm1D(6, seed=seed), tg.BatchNorm1d("bn", 6), params=where, flush="flush_gradients")
    return tg.check_layer(layer, input_shape=(4, 6), seed=seed)


# --------------------------------------------------------------------------- Keras-like NHWC


def wrap_keras_conv_nhwc(m, seed):
    layout = tg.Layout(data="NHWC", kernel="HWIO")
    layer = tg.wrap_layer(m.Conv2D(4, 3, 3, seed=seed), tg.Conv2d("conv", 3, 4, 3), layout=layout)
    return tg.check_layer(layer, x=_x(seed, 2, 6, 6, 3), seed=seed)


def wrap_keras_dense_relu(m, seed):
    span = tg.Sequential([tg.Linear("fc", 6, 4), tg.ReLU("relu")], name="dense")
    return tg.check_layer(m.Dense(4, 6, activation="relu", seed=seed), span, layout=IN_OUT, input_shape=(3, 6), seed=seed)


def wrap_keras_lazy_dense(m, seed):
    return tg.check_layer(m.LazyDense(3, seed=seed), tg.Linear("fc", 5, 3), layout=IN_OUT, lazy=True, seed=seed)


def wrap_keras_dropout_nhwc(m, seed):
    layer = tg.wrap_layer(m.Dropout(0.25), tg.Dropout("drop", p=0.25), layout=NHWC, forward_kwargs={"training": True})
    return tg.check_layer(layer, x=_x(seed, 2, 4, 4, 3), seed=seed)


def wrap_keras_nhwc_net(m, seed):
    model = m.model(seed)
    layers = dict(zip(["conv", "relu", "flat", "fc"], model.layers))
    net = tg.wrap_network(layers, KERAS_NET, forward=model.forward, backward=model.backward, layout=KERAS, input_shape=(2, 6, 6, 3))
    return tg.check_network(net, x=_x(seed, 2, 6, 6, 3), seed=seed)


# --------------------------------------------------------------------------- one example at a time


def wrap_gray_conv_object(m, seed):
    layer = tg.wrap_layer(m.Conv3x3(4, seed=seed), tg.Conv2d("conv", 1, 4, 3), batched=False, channel_axis=False)
    return tg.check_layer(layer, input_shape=(2, 1, 6, 6), seed=seed)


def wrap_fc_sgd_single(m, seed):
    layer = tg.wrap_layer(m.FC(6, 4, seed=seed), tg.Linear("fc", 6, 4), layout=IN_OUT, backward="backprop",
                          backward_args=(LR,), batched=False, sgd=(None, LR))
    return tg.check_layer(layer, input_shape=(3, 6), seed=seed)


def wrap_first_conv_hwc_sgd(m, seed):
    spec = tg.Conv2d("conv", 1, 8, 3, bias=False)
    layer = tg.wrap_layer(m.Conv3x3HWC(8, seed=seed), spec, layout=NHWC, backward="backprop", backward_args=(LR,),
                          batched=False, channel_axis=False, sgd=(None, LR), input_grad=False)
    return tg.check_layer(layer, input_shape=(2, 6, 6, 1), seed=seed)


# --------------------------------------------------------------------------- objects with quirks


def wrap_bn_no_running_stats(m, seed):
    return tg.check_layer(m.BatchNorm(3, seed=seed), tg.BatchNorm2d("bn", 3), seed=seed)


def wrap_bn_rows(m, seed):
    return tg.check_layer(m.BatchNormRows(5, seed=seed), tg.BatchNorm1d("bn", 5), input_shape=(4, 5), seed=seed)


def wrap_conv_bias_column(m, seed):
    return tg.check_layer(m.ConvIm2col(3, 4, 3, seed=seed), tg.Conv2d("conv", 3, 4, 3, padding=1), seed=seed)


def wrap_relu_inplace(m, seed):
    return tg.check_layer(m.ReLU(), tg.ReLU("relu"), inplace={"upstream"}, input_shape=(3, 6), seed=seed)


def wrap_dense_sgd_in_backward(m, seed):
    return tg.check_layer(m.DenseSGD(5, 3, lr=LR, seed=seed), tg.Linear("fc", 5, 3), layout=IN_OUT, sgd=(None, LR), seed=seed)


def wrap_first_conv_no_input_grad(m, seed):
    spec = tg.Conv2d("conv1", 3, 4, 3, padding=1)
    return tg.check_layer(m.FirstConv(3, 4, 3, seed=seed), spec, input_grad=False, input_shape=(2, 3, 5, 5), seed=seed)


def wrap_linear_returns_list(m, seed):
    return tg.check_layer(m.Linear(5, 5, seed=seed), tg.Linear("fc", 5, 5), seed=seed)


def wrap_layernorm_returns_tuple(m, seed):
    return tg.check_layer(m.LayerNorm(6, seed=seed), tg.LayerNorm("ln", 6), input_shape=(4, 6), seed=seed)


def wrap_dropout_object(m, seed):
    return tg.check_layer(m.Dropout(0.25, seed=seed), tg.Dropout("drop", p=0.25), input_shape=(4, 6), seed=seed)


# --------------------------------------------------------------------------- "deep learning from scratch" conventions


def wrap_dlfs_batchnorm(m, seed):
    rng = np.random.default_rng(seed)
    bn = m.BatchNormalization(rng.normal(size=48) + 1, rng.normal(size=48))
    spec = tg.BatchNorm2d("bn", 3, eps=1e-6, over="feature")
    return tg.check_layer(bn, spec, input_shape=(4, 3, 4, 4), seed=seed)


def wrap_dlfs_dropout(m, seed):
    return tg.check_layer(m.Dropout(0.25), tg.Dropout("drop", 0.25, inverted=False), input_shape=(4, 6), seed=seed)


def wrap_dlfs_softmax_loss(m, seed):
    loss = tg.wrap_loss(m.SoftmaxWithLoss(), tg.SoftmaxCrossEntropy(log_eps=1e-7), style="object")
    return tg.check_loss(loss, input_shape=(8, 10), seed=seed)


# --------------------------------------------------------------------------- composites, networks, losses


def wrap_residual_block(m, seed):
    return tg.check_layer(m.ResidualBlock(3, seed=seed), RES_BLOCK, input_shape=(2, 3, 5, 5), seed=seed)


def wrap_layers_list(m, seed):
    return tg.check_layer(m.Net(seed), LIST_NET, layout=IN_OUT, input_shape=(2, 2, 6, 6), seed=seed)


def wrap_float32_net(m, seed):
    mlp = m.MLP32(seed)
    layers = {"fc1": mlp.fc1, "act": mlp.act, "fc2": mlp.fc2}
    net = tg.wrap_network(layers, MLP32, forward=mlp.forward, backward=mlp.backward, layout=IN_OUT)
    return tg.check_network(net, input_shape=(4, 6), seed=seed)


def wrap_dotted_names_net(m, seed):
    net = m.TanhNet(seed=seed)
    model = tg.wrap_loss_model(net.loss, TANH_NET, loss=tg.SoftmaxCrossEntropy(), params=net.params)
    return tg.check_network(model, input_shape=(4, 5), seed=seed)


def wrap_loss_object_reg(m, seed):
    loss = tg.wrap_loss(m.SoftmaxCrossEntropyLoss(), tg.SoftmaxCrossEntropy(), style="object", forward_kwargs={"reg": 0.0})
    return tg.check_loss(loss, input_shape=(4, 5), seed=seed)


# --------------------------------------------------------------------------- torch, jax


def wrap_torch_linear(m, seed):
    return tg.check_layer(m.TorchLinear(5, 5, seed=seed), tg.Linear("fc", 5, 5), seed=seed)


def wrap_torch_conv_float32(m, seed):
    spec = tg.Conv2d("conv", 3, 4, 3, stride=2, padding=1)
    return tg.check_layer(m.TorchConv2d(3, 4, 3, stride=2, padding=1, seed=seed), spec, input_shape=(2, 3, 7, 7), seed=seed)


def wrap_jax_dense(m, seed):
    return tg.check_layer(m.JaxDense(5, 3, seed=seed), tg.Linear("fc", 5, 3), layout=IN_OUT, seed=seed)


# =========================================================================== the checks


def _wrap(shape: Shape) -> Callable[[Any, int], tg.Report]:
    return globals()[f"wrap_{shape.name}"]


CORRECT = [pytest.param(s, id=s.name) for s in SHAPES]
BUGGY = [pytest.param(s, b, id=f"{s.name}-{b.name}") for s in SHAPES for b in s.bugs]


def test_enough_shapes_each_wrapped_once() -> None:
    assert len(SHAPES) >= 28
    assert len({s.name for s in SHAPES}) == len(SHAPES)
    wraps = {name for name, fn in globals().items() if name.startswith("wrap_") and callable(fn)}
    assert wraps == {f"wrap_{s.name}" for s in SHAPES}


@pytest.mark.parametrize("shape", [pytest.param(s, id=s.name) for s in SHAPES])
def test_wrapping_is_at_most_five_lines(shape: Shape) -> None:
    body = inspect.getsource(_wrap(shape)).rstrip().splitlines()[1:]  # without the def line
    assert len(body) <= 5, "\n".join(body)


@seeds(len(SEEDS), quick=1)  # seed 0 in the default run, 1-19 under -m slow
@pytest.mark.parametrize("shape", CORRECT)
def test_correct_version_passes_at_20_seeds(shape: Shape, seeds: range) -> None:
    for seed in seeds:
        report = _wrap(shape)(shape.code, seed)
        assert report.ok, (seed, str(report))
        assert all(entry.verdict == "pass" for entry in report.layers), (seed, str(report))
        if shape.dtype:  # every layer entry computed in the code's dtype (the "(network)" entry aside)
            named = [e for e in report.layers if not e.name.startswith("(")]
            assert all(e.dtype == shape.dtype for e in named), (seed, [(e.name, e.dtype) for e in named])


@pytest.mark.parametrize("shape,bug", BUGGY)
def test_buggy_version_is_found(shape: Shape, bug: Bug) -> None:
    report = _wrap(shape)(bug.code, 0)
    assert not report.ok, str(report)
    assert report.first_failure == bug.layer, str(report)
    assert report.layer(bug.layer).verdict == bug.verdict, str(report)
