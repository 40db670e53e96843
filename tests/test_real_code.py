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

Cases that need an API the issue-13 contract (/work/i13/CONTRACT.md) adds are strict xfails
naming the contract item; they turn red when the feature lands, and the marker goes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import harness as tg
from realcode import composite, cs231n, frameworks, keras_like, nets, numpyml, objects, pairs, single

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


# =========================================================================== the table


SAME = "as the correct version"


def item(number: str, what: str) -> str:
    """The xfail reason for a case that needs contract item ``number`` (``"1"``, ``"4, 5"``)."""
    return f"issue 13: item {number}: {what}"


@dataclass
class Bug:
    name: str
    code: Any
    layer: str  # the entry that must fail first
    verdict: str  # its verdict: "forward", "backward", "both", or "error"
    missing: str | None = SAME  # xfail reason while the contract's API is missing (SAME: the shape's)


@dataclass
class Shape:
    name: str
    style: str  # "function pair", "object", "network", "loss-model", "loss"
    quirk: str
    wrap: Callable
    code: Any
    bugs: list[Bug]
    missing: str | None = None  # xfail reason for the correct version while the API is missing
    dtype: str | None = None  # every layer entry must be checked in this dtype

    def __post_init__(self) -> None:
        for bug in self.bugs:
            bug.missing = self.missing if bug.missing == SAME else bug.missing


SHAPES = [
    # CS231n function pairs
    Shape("cs231n_affine", "function pair", "x @ w + b, w (in, out), cache tuple", wrap_cs231n_affine, cs231n.AFFINE,
          [Bug("dw_averaged", cs231n.AFFINE_DW_AVERAGED, "fc", "backward")]),
    Shape("cs231n_affine_4d", "function pair", "Flatten+Linear span on 4-D input, positional params",
          wrap_cs231n_affine_4d, cs231n.AFFINE, [Bug("db_averaged", cs231n.AFFINE_DB_AVERAGED, "affine", "backward")],
          missing=item("3", "a Flatten+Linear span with positional params on 4-D input (today: \"layer 'affine.flat': expects input (N, ...), got shape (1,)\")")),
    Shape("cs231n_conv_naive", "function pair", "four nested loops, conv_param dict, stride 2 pad 1",
          wrap_cs231n_conv_naive, cs231n.CONV_NAIVE,
          [Bug("stride_ignored_in_backward", cs231n.CONV_NAIVE_STRIDE_IGNORED, "conv", "backward")]),
    Shape("cs231n_conv_im2col", "function pair", "im2col with fancy indexing, np.add.at col2im",
          wrap_cs231n_conv_im2col, cs231n.CONV_IM2COL,
          [Bug("fancy_index_iadd", cs231n.CONV_IM2COL_FANCY_IADD, "conv", "backward")]),
    Shape("cs231n_max_pool", "function pair", "naive loops, pool_param dict, argmax routing", wrap_cs231n_max_pool,
          cs231n.MAXPOOL, [Bug("stride_ignored_in_backward", cs231n.MAXPOOL_STRIDE_IGNORED, "pool", "backward")]),
    Shape("cs231n_batchnorm", "function pair", "bn_param dict creates the running stats lazily", wrap_cs231n_batchnorm,
          cs231n.BATCHNORM, [Bug("direct_path_only", cs231n.BATCHNORM_DIRECT_PATH_ONLY, "bn", "backward")],
          missing=item("2, 3", "positional (gamma, beta) with running stats created lazily in bn_param (today: \"got 2 parameter arrays for [weight, bias, running_mean, running_var]\")")),
    Shape("cs231n_spatial_batchnorm", "function pair", "NCHW transposed to (N*H*W, C) around batchnorm_forward",
          wrap_cs231n_spatial_batchnorm, cs231n.SPATIAL_BATCHNORM,
          [Bug("reshape_without_transpose", cs231n.SPATIAL_BATCHNORM_NO_TRANSPOSE, "bn", "forward")],
          missing=item("2, 3", "positional (gamma, beta) with running stats created lazily in bn_param (today: \"got 2 parameter arrays for [weight, bias, running_mean, running_var]\")")),
    Shape("bn_positional_eval", "function pair", "running stats positional, eval mode via kwargs",
          wrap_bn_positional_eval, cs231n.BN_POSITIONAL,
          [Bug("train_formula_in_eval", cs231n.BN_POSITIONAL_IGNORES_MODE, "bn", "backward")],
          missing=item("3", "positional running stats, backward returns gradients of the trainable ones only (today: \"backward must return (dx, dweight, dbias, drunning_mean, drunning_var), got 3 values\")")),
    Shape("cs231n_dropout", "function pair", "dropout_param with seed, mask kept in dropout_param['mask']",
          wrap_cs231n_dropout, cs231n.DROPOUT, [Bug("backward_unscaled", cs231n.DROPOUT_UNSCALED, "drop", "backward")],
          missing=item("2", "the mask drawn by the forward, kept in dropout_param['mask'] (today: \"call forward once before reading its parameters\")")),
    Shape("cs231n_softmax_loss", "loss", "softmax_loss(x, y) -> (loss, dx) checked alone", wrap_cs231n_softmax_loss,
          cs231n.SOFTMAX_LOSS, [Bug("dx_not_averaged", cs231n.SOFTMAX_LOSS_NOT_AVERAGED, "(loss)", "backward"),
                                Bug("value_summed", cs231n.SOFTMAX_LOSS_SUMMED, "(loss)", "forward")],
          missing=item("8", "public check_loss (today: no harness.check_loss)")),
    Shape("cs231n_two_layer_net", "loss-model", "model.loss(X, y) -> (loss, grads), params W1/b1/W2/b2",
          wrap_cs231n_two_layer_net, cs231n.TWO_LAYER_NET,
          [Bug("relu_mask_on_output", cs231n.TWO_LAYER_NET_MASK_ON_OUTPUT, "(network)", "backward")]),
    Shape("affine_mean_grads", "function pair", "gradients already divided by N (grad_scale='batch')",
          wrap_affine_mean_grads, cs231n.AFFINE_MEAN,
          [Bug("db_not_divided", cs231n.AFFINE_MEAN_DB_SUMMED, "fc", "backward")]),
    Shape("relu_pair_float32", "function pair", "parameter-free pair run in float32 (dtype=)", wrap_relu_pair_float32,
          cs231n.RELU, [Bug("dout_not_multiplied", cs231n.RELU_NO_DOUT, "relu", "backward")], dtype="float32"),
    Shape("first_affine_pair", "function pair", "first layer: backward returns (None, dw, db)", wrap_first_affine_pair,
          cs231n.FIRST_AFFINE, [Bug("db_averaged", cs231n.FIRST_AFFINE_DB_AVERAGED, "fc1", "backward")],
          missing=item("5", "input_grad=False on wrap_functions (today: TypeError, unexpected keyword argument)")),
    Shape("conv_returns_dict", "function pair", "sliding_window_view conv, stride kwarg, returns (dx, {'W', 'b'})",
          wrap_conv_returns_dict, pairs.CONV_DICT,
          [Bug("kernel_grad_transposed", pairs.CONV_DICT_KERNEL_TRANSPOSED, "conv", "backward")],
          missing=item("3, 4", "forward_kwargs= on wrap_functions and a (dx, {'W': dW, 'b': db}) return (today: TypeError, unexpected keyword argument)")),
    Shape("gray_conv_pair", "function pair", "one (H, W) image per call, kernels (F, k, k)", wrap_gray_conv_pair,
          single.CONV_GRAY, [Bug("region_flipped_in_backward", single.CONV_GRAY_FLIPPED, "conv", "backward")],
          missing=item("3", "batched=False / channel_axis=False on wrap_functions (today: TypeError, unexpected keyword argument)")),
    # numpy-ml objects
    Shape("npml_fully_connected", "object", "parameters/gradients dicts, X list, flush_gradients, b (1, n_out)",
          wrap_npml_fully_connected, numpyml.FULLY_CONNECTED,
          [Bug("dw_transposed", numpyml.FULLY_CONNECTED_TRANSPOSED_DW, "fc", "backward")],
          missing=item("7", "flush= called before every forward (today: \"unknown option(s) ['flush']\")")),
    Shape("npml_batchnorm", "object", "params named scaler/intercept, running stats in the parameters dict",
          wrap_npml_batchnorm, numpyml.BATCHNORM1D,
          [Bug("missing_1_over_n", numpyml.BATCHNORM1D_MISSING_1_OVER_N, "bn", "backward")],
          missing=item("7", "flush= called before every forward (today: \"unknown option(s) ['flush']\")")),
    # Keras-like
    Shape("keras_conv_nhwc", "object", "NHWC data, HWIO kernel, x given in NHWC", wrap_keras_conv_nhwc,
          keras_like.CONV2D, [Bug("dx_overwritten", keras_like.CONV2D_OVERWRITES_DX, "conv", "backward")],
          missing=item("1", "x= read in the declared NHWC layout (today: \"in_channels=3 but the input has 6 channels\")")),
    Shape("keras_dense_relu", "object", "x @ W + b with a fused relu (a spec span)", wrap_keras_dense_relu,
          keras_like.DENSE_RELU, [Bug("activation_ignored", keras_like.DENSE_RELU_IGNORES_ACTIVATION, "dense", "backward")]),
    Shape("keras_dropout_nhwc", "object", "training flag, NHWC mask drawn in forward, x sizes it",
          wrap_keras_dropout_nhwc, keras_like.DROPOUT,
          [Bug("mask_redrawn_in_backward", keras_like.DROPOUT_REDRAWN, "drop", "backward")],
          missing=item("1, 2", "a Dropout mask drawn by the forward, in NHWC, sized by x= (today: \"Dropout needs its input shape to list its parameters\")")),
    Shape("keras_nhwc_net", "network", "NHWC network, HWC flatten, x and input_shape in NHWC", wrap_keras_nhwc_net,
          keras_like.MODEL, [Bug("dw_averaged", keras_like.MODEL_AVERAGED_DW, "fc", "backward")],
          missing=item("1", "x= and input_shape= of a network read in NHWC (today: \"in_channels=3 but the input has 6 channels\")")),
    # one example at a time
    Shape("gray_conv_object", "object", "batched=False, (H, W) input, (F, H', W') output", wrap_gray_conv_object,
          single.CONV3X3, [Bug("grads_accumulate_across_examples", single.CONV3X3_ACCUMULATES, "conv", "backward")]),
    Shape("fc_sgd_single", "object", "one vector per call, SGD step inside backprop(d, lr)", wrap_fc_sgd_single,
          single.FC_SGD, [Bug("update_before_input_grad", single.FC_SGD_UPDATE_FIRST, "fc", "backward")],
          missing=item("6", "batched=False with sgd= (today: \"batched=False and sgd= cannot be combined\")")),
    Shape("first_conv_hwc_sgd", "object", "(H, W) in, (H', W', F) out, SGD in backprop, returns None",
          wrap_first_conv_hwc_sgd, single.FIRST_CONV_HWC,
          [Bug("rows_and_columns_swapped", single.FIRST_CONV_HWC_SWAPPED, "conv", "backward")],
          missing=item("1, 5, 6", "input_grad=False, batched=False with sgd=, input_shape in NHWC (today: \"unknown option(s) ['input_grad']\")")),
    # objects with quirks
    Shape("bn_no_running_stats", "object", "training-only batch norm, no running stats, no input_shape",
          wrap_bn_no_running_stats, objects.BATCHNORM, [Bug("no_mean_path", objects.BATCHNORM_NO_MEAN_PATH, "bn", "backward")],
          missing=item("2", "a training-mode batch norm without running stats, no input_shape (today: \"cannot find parameter 'running_mean'\")")),
    Shape("bn_rows", "object", "gamma, beta, running stats as (1, D) rows", wrap_bn_rows, objects.BATCHNORM_ROWS,
          [Bug("dgamma_forgets_xhat", objects.BATCHNORM_ROWS_DGAMMA_FORGETS_XHAT, "bn", "backward")]),
    Shape("conv_bias_column", "object", "im2col conv, bias (F, 1)", wrap_conv_bias_column, objects.CONV_IM2COL,
          [Bug("dout_reshaped_without_transpose", objects.CONV_IM2COL_FORGETS_TRANSPOSE, "conv", "backward")]),
    Shape("relu_inplace", "object", "dout *= mask in backward (declared)", wrap_relu_inplace, objects.RELU_INPLACE,
          [Bug("mask_from_dout", objects.RELU_INPLACE_MASK_FROM_DOUT, "relu", "backward")]),
    Shape("dense_sgd_in_backward", "object", "weights updated in backward, no gradient kept",
          wrap_dense_sgd_in_backward, objects.DENSE_SGD, [Bug("bias_step_mean", objects.DENSE_SGD_BIAS_MEAN, "fc", "backward")]),
    Shape("first_conv_no_input_grad", "object", "first layer, loop over the batch, backward returns None",
          wrap_first_conv_no_input_grad, objects.FIRST_CONV,
          [Bug("dw_overwritten_in_loop", objects.FIRST_CONV_OVERWRITES, "conv1", "backward")],
          missing=item("5", "input_grad=False (today: \"unknown option(s) ['input_grad']\")")),
    Shape("linear_returns_list", "object", "backward returns (dx, [dW, db]), nothing stored",
          wrap_linear_returns_list, objects.LINEAR_RETURNS_LIST,
          [Bug("dx_transposed", objects.LINEAR_RETURNS_LIST_TRANSPOSED_DX, "fc", "backward")],
          missing=item("4", "gradients returned as (dx, [dW, db]) (today: \"ragged nested list\" read as dx)")),
    Shape("layernorm_returns_tuple", "object", "backward returns (dx, (dgamma, dbeta))", wrap_layernorm_returns_tuple,
          objects.LAYERNORM_RETURNS_TUPLE,
          [Bug("stats_over_batch_in_backward", objects.LAYERNORM_RETURNS_TUPLE_BATCH_AXIS, "ln", "backward")],
          missing=item("4", "gradients returned as (dx, (dgamma, dbeta)) (today: \"ragged nested list\" read as dx)")),
    Shape("dropout_object", "object", "own generator, mask kept in self._mask", wrap_dropout_object,
          objects.DROPOUT_OBJECT, [Bug("backward_unscaled", objects.DROPOUT_OBJECT_UNSCALED, "drop", "backward"),
                                   Bug("forward_unscaled", objects.DROPOUT_OBJECT_FORWARD_UNSCALED, "drop", "forward")],
          missing=item("2", "a Dropout mask drawn by the forward into self._mask, sized by input_shape (today: \"Dropout needs its input shape to list its parameters\")")),
    # composites, networks, losses
    Shape("residual_block", "object (composite)", "block with conv/bn/relu sub-objects as attributes",
          wrap_residual_block, composite.RESIDUAL_BLOCK,
          [Bug("shortcut_grad_forgotten", composite.RESIDUAL_BLOCK_NO_SHORTCUT_GRAD, "res", "backward")],
          missing=item("9", "a composite finds its sub-objects' parameters and gradients (today: \"cannot find parameter 'conv1.weight'\")")),
    Shape("layers_list", "object (composite)", "network object holding a .layers list", wrap_layers_list,
          composite.LAYERS_LIST, [Bug("relu_mask_from_dy", composite.LAYERS_LIST_MASK_FROM_DY, "net", "backward")],
          missing=item("9", "a composite holding .layers, with Flatten+Linear in its span (today: \"in_features=27 but the input has 3072 features\" from a 64x64 dummy input)")),
    Shape("float32_net", "network", "float32 weights, parameter-free LeakyReLU between", wrap_float32_net,
          nets.MLP_FLOAT32, [Bug("slope_dropped", nets.MLP_FLOAT32_NO_SLOPE, "act", "backward", missing=None)], dtype="float32",
          missing=item("10", "a parameter-free layer of a float32 network checked in float32 (today: 'act' is checked in float64)")),
    Shape("dotted_names_net", "loss-model", "loss(X, y) -> (loss, grads) keyed 'fc1.weight'", wrap_dotted_names_net,
          nets.TANH_NET, [Bug("tanh_derivative_1_minus_a", nets.TANH_NET_WRONG_DERIVATIVE, "(network)", "backward")],
          missing=item("8", "wrap_loss_model taking loss_and_grads(x, y) with dotted names and params= arrays (today: \"method has no method loss()\")")),
    Shape("loss_object_reg", "loss", "forward(scores, y, reg) then backward()", wrap_loss_object_reg, nets.LOSS_OBJECT,
          [Bug("not_averaged", nets.LOSS_OBJECT_NOT_AVERAGED, "(loss)", "backward")],
          missing=item("8", "wrap_loss(forward_kwargs=) and check_loss (today: TypeError, unexpected keyword argument)")),
    # torch, jax
    Shape("torch_linear", "object", "torch float64 tensors, handwritten backward", wrap_torch_linear,
          frameworks.TORCH_LINEAR, [Bug("dw_transposed", frameworks.TORCH_LINEAR_TRANSPOSED_DW, "fc", "backward")],
          missing=item("11", "torch tensors fed to code whose parameters are torch (today: \"unsupported operand type(s) for @: 'numpy.ndarray' and 'Tensor'\")")),
    Shape("torch_conv_float32", "object", "torch float32, unfold/fold, stride 2 pad 1", wrap_torch_conv_float32,
          frameworks.TORCH_CONV, [Bug("bias_first_example", frameworks.TORCH_CONV_BIAS_FIRST_EXAMPLE, "conv", "backward")],
          dtype="float32",
          missing=item("11", "torch tensors fed to code whose parameters are torch (today: \"im2col(): argument 'input' must be Tensor, not numpy.ndarray\")")),
    Shape("jax_dense", "object", "jax.numpy float32, immutable arrays", wrap_jax_dense, frameworks.JAX_DENSE,
          [Bug("db_mean", frameworks.JAX_DENSE_BIAS_MEAN, "fc", "backward")], dtype="float32"),
]

BY_NAME = {s.name: s for s in SHAPES}


def _marked(reason: str | None) -> list:
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


CORRECT = [pytest.param(s, id=s.name, marks=_marked(s.missing)) for s in SHAPES]
BUGGY = [pytest.param(s, b, id=f"{s.name}-{b.name}", marks=_marked(b.missing)) for s in SHAPES for b in s.bugs]


def _entries(report: tg.Report) -> list:
    return list(report.layers)


def test_enough_shapes_and_every_wrap_is_used() -> None:
    assert len(SHAPES) >= 28
    assert len(BY_NAME) == len(SHAPES)
    wraps = {name for name, fn in globals().items() if name.startswith("wrap_") and callable(fn)}
    assert wraps == {s.wrap.__name__ for s in SHAPES}


@pytest.mark.parametrize("shape", [pytest.param(s, id=s.name) for s in SHAPES])
def test_wrapping_is_at_most_five_lines(shape: Shape) -> None:
    body = inspect.getsource(shape.wrap).rstrip().splitlines()[1:]  # without the def line
    assert len(body) <= 5, "\n".join(body)


@pytest.mark.parametrize("shape", CORRECT)
def test_correct_version_passes_at_20_seeds(shape: Shape) -> None:
    for seed in SEEDS:
        report = shape.wrap(shape.code, seed)
        assert report.ok, (seed, str(report))
        assert all(entry.verdict == "pass" for entry in _entries(report)), (seed, str(report))
        if shape.dtype:
            named = [e for e in _entries(report) if not e.name.startswith("(")]
            assert all(e.dtype == shape.dtype for e in named), (seed, [(e.name, e.dtype) for e in named])


@pytest.mark.parametrize("shape,bug", BUGGY)
def test_buggy_version_is_found(shape: Shape, bug: Bug) -> None:
    report = shape.wrap(bug.code, 0)
    assert not report.ok, str(report)
    assert report.first_failure == bug.layer, str(report)
    assert report.layer(bug.layer).verdict == bug.verdict, str(report)


# =========================================================================== a missing declaration names its option
# Each quirk wrapped without the declaration that handles it: the error, or the failing
# entry's message and diagnosis, names the option (docs/wrapping-real-code.md lists them).


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
BUG_MESSAGE = "BUG: no contract item: the message does not name the option"
MISSING = [
    ("NHWC data, HWIO kernel", "Layout(data='NHWC', kernel='HWIO')", None,
     lambda: tg.check_layer(keras_like.Conv2D(4, 3, 3), tg.Conv2d("conv", 3, 4, 3), input_shape=(2, 3, 6, 6))),
    ("weights (in, out)", "Layout(linear='in_out')", None,
     lambda: tg.check_layer(keras_like.Dense(3, 5), tg.Linear("fc", 5, 3))),
    ("HWC flatten", "input_shape=", None, _keras_net_without_input_shape),
    ("parameters under other names", "params=", None,
     lambda: tg.wrap_layer(numpyml.BatchNorm1D(6), tg.BatchNorm1d("bn", 6))),
    ("gradients under other names", "grads=", None,
     lambda: tg.check_layer(objects.DenseGradsGW(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT)),
    ("methods under other names", "backward=", None, lambda: tg.wrap_layer(single.FC(6, 4), tg.Linear("fc", 6, 4), layout=IN_OUT)),
    ("in-place *= in backward", "inplace={'upstream'}", None,
     lambda: tg.check_layer(objects.ReLU(), tg.ReLU("relu"), input_shape=(3, 6))),
    ("gradients already divided by N", "grad_scale=", f"{BUG_MESSAGE} grad_scale='batch' (it says 'an extra division by it')",
     lambda: tg.check_layer(tg.wrap_functions(cs231n.affine_forward, cs231n.affine_backward_mean, tg.Linear("fc", 5, 3),
                                              (W53, np.zeros(3)), layout=IN_OUT), input_shape=(4, 5))),
    ("one example at a time", "batched=False", f"{BUG_MESSAGE} batched=False (the user's 'too many values to unpack')",
     lambda: tg.check_layer(single.Conv3x3(4), tg.Conv2d("conv", 1, 4, 3), input_shape=(2, 1, 6, 6))),
    ("(H, W) examples", "channel_axis=False", f"{BUG_MESSAGE} channel_axis=False (the user's 'too many values to unpack')",
     lambda: tg.check_layer(single.Conv3x3(4), tg.Conv2d("conv", 1, 4, 3), batched=False, input_shape=(2, 1, 6, 6))),
    ("SGD step inside backward", "sgd=", f"{BUG_MESSAGE} sgd= (it says 'cannot find the gradient ... pass grads=')",
     lambda: tg.check_layer(objects.DenseSGD(5, 3), tg.Linear("fc", 5, 3), layout=IN_OUT)),
    ("a parameter dict argument", "args=", f"{BUG_MESSAGE} args= (the user's 'missing 1 required positional argument')",
     lambda: tg.check_layer(tg.wrap_functions(cs231n.conv_forward_naive, cs231n.conv_backward_naive,
                                              tg.Conv2d("conv", 3, 4, 3, stride=2, padding=1), (W4333, np.zeros(4))),
                            input_shape=(2, 3, 7, 7))),
    ("an activation fused into the layer", "Sequential(", f"{BUG_MESSAGE} (a span): verdict forward, no diagnosis",
     lambda: tg.check_layer(keras_like.Dense(4, 6, activation="relu"), tg.Linear("fc", 6, 4), layout=IN_OUT)),
    ("a flush that clears the cached input", "flush=", item("7", "zero_grad= emptying the cache suggests flush="),
     lambda: tg.check_layer(numpyml.FullyConnected(5, 5), tg.Linear("fc", 5, 5), layout=IN_OUT, zero_grad="flush_gradients")),
    ("a first layer returning None", "input_grad=False", item("5", "a None dx names input_grad=False"),
     lambda: tg.check_layer(objects.FirstConv(3, 4, 3), tg.Conv2d("conv1", 3, 4, 3, padding=1), input_shape=(2, 3, 5, 5))),
]


@pytest.mark.parametrize("quirk,option,run", [pytest.param(q, o, r, id=q, marks=_marked(x)) for q, o, x, r in MISSING])
def test_a_missing_declaration_names_its_option(quirk: str, option: str, run: Callable[[], Any]) -> None:
    assert option in _said(run)


# =========================================================================== inputs in the user's layout elsewhere


@pytest.mark.xfail(strict=True, reason=item("1", "detect_layout(input_shape=) read in each candidate's own data order"))
def test_detect_layout_reads_input_shape_in_each_candidate_layout() -> None:
    found = tg.detect_layout(keras_like.Conv2D(4, 3, 3), tg.Conv2d("conv", 3, 4, 3), input_shape=(2, 6, 6, 3))
    assert found.matched and (found.best.data, found.best.kernel) == ("NHWC", "HWIO"), str(found)


# =========================================================================== CuPy, where installed


@pytest.mark.parametrize("seed", [0, 1])
def test_cupy_layer(seed: int) -> None:
    pytest.importorskip("cupy")
    report = tg.check_layer(frameworks.CupyDense(5, 3, seed=seed), tg.Linear("fc", 5, 3), layout=IN_OUT, seed=seed)
    assert report.ok, str(report)
