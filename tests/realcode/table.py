"""The acceptance table of issue 13: every real-code shape, its calling style, the quirk it
shows, its correct code and its buggy variants (the entry that must fail first and that
entry's verdict). The wrapping of shape ``name`` is
``wrap_<name>(m, seed)`` in tests/test_real_code.py, where ``m`` is the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import composite, cs231n, cs231n_net, cs231n_norm, dlfs, frameworks, keras_like, nets, numpyml, objects, pairs, single


@dataclass
class Bug:
    name: str
    code: Any
    layer: str  # the entry that must fail first
    verdict: str  # its verdict: "forward", "backward", "both", or "error"


@dataclass
class Shape:
    name: str
    style: str  # "function pair", "object", "network", "loss-model", "loss"
    quirk: str
    code: Any
    bugs: list[Bug]
    dtype: str | None = None  # every layer entry must be checked in this dtype


SHAPES = [
    # CS231n function pairs
    Shape("cs231n_affine", "function pair", "x @ w + b, w (in, out), cache tuple", cs231n.AFFINE,
          [Bug("dw_averaged", cs231n.AFFINE_DW_AVERAGED, "fc", "backward")]),
    Shape("cs231n_affine_4d", "function pair", "Flatten+Linear span on 4-D input, positional params", cs231n.AFFINE, [Bug("db_averaged", cs231n.AFFINE_DB_AVERAGED, "affine", "backward")]),
    Shape("cs231n_conv_naive", "function pair", "four nested loops, conv_param dict, stride 2 pad 1", cs231n.CONV_NAIVE,
          [Bug("stride_ignored_in_backward", cs231n.CONV_NAIVE_STRIDE_IGNORED, "conv", "backward")]),
    Shape("cs231n_conv_im2col", "function pair", "im2col with fancy indexing, np.add.at col2im", cs231n.CONV_IM2COL,
          [Bug("fancy_index_iadd", cs231n.CONV_IM2COL_FANCY_IADD, "conv", "backward")]),
    Shape("cs231n_max_pool", "function pair", "naive loops, pool_param dict, argmax routing",
          cs231n.MAXPOOL, [Bug("stride_ignored_in_backward", cs231n.MAXPOOL_STRIDE_IGNORED, "pool", "backward")]),
    Shape("cs231n_batchnorm", "function pair", "bn_param dict creates the running stats lazily",
          cs231n_norm.BATCHNORM, [Bug("direct_path_only", cs231n_norm.BATCHNORM_DIRECT_PATH_ONLY, "bn", "backward")]),
    Shape("cs231n_spatial_batchnorm", "function pair", "NCHW transposed to (N*H*W, C) around batchnorm_forward", cs231n_norm.SPATIAL_BATCHNORM,
          [Bug("reshape_without_transpose", cs231n_norm.SPATIAL_BATCHNORM_NO_TRANSPOSE, "bn", "forward")]),
    Shape("bn_positional_eval", "function pair", "running stats positional, eval mode via kwargs", cs231n_norm.BN_POSITIONAL,
          [Bug("train_formula_in_eval", cs231n_norm.BN_POSITIONAL_IGNORES_MODE, "bn", "backward")]),
    Shape("cs231n_dropout", "function pair", "dropout_param with seed, mask kept in dropout_param['mask']", cs231n_norm.DROPOUT, [Bug("backward_unscaled", cs231n_norm.DROPOUT_UNSCALED, "drop", "backward")]),
    Shape("cs231n_softmax_loss", "loss", "softmax_loss(x, y) -> (loss, dx) checked alone",
          cs231n_net.SOFTMAX_LOSS, [Bug("dx_not_averaged", cs231n_net.SOFTMAX_LOSS_NOT_AVERAGED, "(loss)", "backward"),
                                Bug("value_summed", cs231n_net.SOFTMAX_LOSS_SUMMED, "(loss)", "forward")]),
    Shape("cs231n_two_layer_net", "loss-model", "model.loss(X, y) -> (loss, grads), params W1/b1/W2/b2", cs231n_net.TWO_LAYER_NET,
          [Bug("relu_mask_on_output", cs231n_net.TWO_LAYER_NET_MASK_ON_OUTPUT, "(network)", "backward")]),
    Shape("affine_mean_grads", "function pair", "gradients already divided by N (grad_scale='batch')", cs231n.AFFINE_MEAN,
          [Bug("db_not_divided", cs231n.AFFINE_MEAN_DB_SUMMED, "fc", "backward")]),
    Shape("relu_pair_float32", "function pair", "parameter-free pair run in float32 (dtype=)",
          cs231n.RELU, [Bug("dout_not_multiplied", cs231n.RELU_NO_DOUT, "relu", "backward")], dtype="float32"),
    Shape("first_affine_pair", "function pair", "first layer: backward returns (None, dw, db)",
          cs231n.FIRST_AFFINE, [Bug("db_averaged", cs231n.FIRST_AFFINE_DB_AVERAGED, "fc1", "backward")]),
    Shape("conv_returns_dict", "function pair", "sliding_window_view conv, stride kwarg, returns (dx, {'W', 'b'})", pairs.CONV_DICT,
          [Bug("kernel_grad_transposed", pairs.CONV_DICT_KERNEL_TRANSPOSED, "conv", "backward")]),
    Shape("true_convolution_pair", "function pair", "textbook convolution: the kernel flipped", pairs.TRUE_CONV,
          [Bug("kernel_grad_not_flipped_back", pairs.TRUE_CONV_NOT_FLIPPED_BACK, "conv", "backward")]),
    Shape("gray_conv_pair", "function pair", "one (H, W) image per call, kernels (F, k, k)",
          single.CONV_GRAY, [Bug("region_flipped_in_backward", single.CONV_GRAY_FLIPPED, "conv", "backward")]),
    # numpy-ml objects
    Shape("npml_fully_connected", "object", "parameters/gradients dicts, X list, flush_gradients, b (1, n_out)", numpyml.FULLY_CONNECTED,
          [Bug("dw_transposed", numpyml.FULLY_CONNECTED_TRANSPOSED_DW, "fc", "backward")]),
    Shape("npml_batchnorm", "object", "params named scaler/intercept, running stats in the parameters dict", numpyml.BATCHNORM1D,
          [Bug("missing_1_over_n", numpyml.BATCHNORM1D_MISSING_1_OVER_N, "bn", "backward")]),
    # Keras-like
    Shape("keras_conv_nhwc", "object", "NHWC data, HWIO kernel, x given in NHWC",
          keras_like.CONV2D, [Bug("dx_overwritten", keras_like.CONV2D_OVERWRITES_DX, "conv", "backward")]),
    Shape("keras_dense_relu", "object", "x @ W + b with a fused relu (a spec span)",
          keras_like.DENSE_RELU, [Bug("activation_ignored", keras_like.DENSE_RELU_IGNORES_ACTIVATION, "dense", "backward")]),
    Shape("keras_dropout_nhwc", "object", "training flag, NHWC mask drawn in forward, x sizes it", keras_like.DROPOUT,
          [Bug("mask_redrawn_in_backward", keras_like.DROPOUT_REDRAWN, "drop", "backward")]),
    Shape("keras_nhwc_net", "network", "NHWC network, HWC flatten, x and input_shape in NHWC",
          keras_like.MODEL, [Bug("dw_averaged", keras_like.MODEL_AVERAGED_DW, "fc", "backward")]),
    Shape("keras_lazy_dense", "object", "weights built by the first forward", keras_like.LAZY_DENSE,
          [Bug("input_cached_at_build_only", keras_like.LAZY_DENSE_CACHES_ONCE, "fc", "backward")]),
    # one example at a time
    Shape("gray_conv_object", "object", "batched=False, (H, W) input, (F, H', W') output",
          single.CONV3X3, [Bug("grads_accumulate_across_examples", single.CONV3X3_ACCUMULATES, "conv", "backward")]),
    Shape("fc_sgd_single", "object", "one vector per call, SGD step inside backprop(d, lr)",
          single.FC_SGD, [Bug("update_before_input_grad", single.FC_SGD_UPDATE_FIRST, "fc", "backward")]),
    Shape("first_conv_hwc_sgd", "object", "(H, W) in, (H', W', F) out, SGD in backprop, returns None", single.FIRST_CONV_HWC,
          [Bug("rows_and_columns_swapped", single.FIRST_CONV_HWC_SWAPPED, "conv", "backward")]),
    # objects with quirks
    Shape("bn_no_running_stats", "object", "training-only batch norm, no running stats, no input_shape", objects.BATCHNORM, [Bug("no_mean_path", objects.BATCHNORM_NO_MEAN_PATH, "bn", "backward")]),
    Shape("bn_rows", "object", "gamma, beta, running stats as (1, D) rows", objects.BATCHNORM_ROWS,
          [Bug("dgamma_forgets_xhat", objects.BATCHNORM_ROWS_DGAMMA_FORGETS_XHAT, "bn", "backward")]),
    Shape("conv_bias_column", "object", "im2col conv, bias (F, 1)", objects.CONV_IM2COL,
          [Bug("dout_reshaped_without_transpose", objects.CONV_IM2COL_FORGETS_TRANSPOSE, "conv", "backward")]),
    Shape("relu_inplace", "object", "dout *= mask in backward (declared)", objects.RELU_INPLACE,
          [Bug("mask_from_dout", objects.RELU_INPLACE_MASK_FROM_DOUT, "relu", "backward")]),
    Shape("dense_sgd_in_backward", "object", "weights updated in backward, no gradient kept", objects.DENSE_SGD, [Bug("bias_step_mean", objects.DENSE_SGD_BIAS_MEAN, "fc", "backward")]),
    Shape("first_conv_no_input_grad", "object", "first layer, loop over the batch, backward returns None", objects.FIRST_CONV,
          [Bug("dw_overwritten_in_loop", objects.FIRST_CONV_OVERWRITES, "conv1", "backward")]),
    Shape("linear_returns_list", "object", "backward returns (dx, [dW, db]), nothing stored", objects.LINEAR_RETURNS_LIST,
          [Bug("dx_transposed", objects.LINEAR_RETURNS_LIST_TRANSPOSED_DX, "fc", "backward")]),
    Shape("layernorm_returns_tuple", "object", "backward returns (dx, (dgamma, dbeta))",
          objects.LAYERNORM_RETURNS_TUPLE,
          [Bug("stats_over_batch_in_backward", objects.LAYERNORM_RETURNS_TUPLE_BATCH_AXIS, "ln", "backward")]),
    Shape("dropout_object", "object", "own generator, mask kept in self._mask",
          objects.DROPOUT_OBJECT, [Bug("backward_unscaled", objects.DROPOUT_OBJECT_UNSCALED, "drop", "backward"),
                                   Bug("forward_unscaled", objects.DROPOUT_OBJECT_FORWARD_UNSCALED, "drop", "forward")]),
    # "deep learning from scratch" conventions, declared
    Shape("dlfs_batchnorm", "object", "batch norm of conv maps as flattened features, eps written 10e-7 (eps=1e-06)",
          dlfs.BATCHNORM, [Bug("no_mean_path", dlfs.BATCHNORM_NO_MEAN_PATH, "bn", "backward")]),
    Shape("dlfs_dropout", "object", "non-inverted dropout: x * mask in training (inverted=False)", dlfs.DROPOUT,
          [Bug("mask_forgotten_in_backward", dlfs.DROPOUT_MASK_FORGOTTEN, "drop", "backward")]),
    Shape("dlfs_softmax_loss", "loss", "1e-7 inside the log, textbook gradient (log_eps=1e-07)", dlfs.SOFTMAX_LOSS,
          [Bug("not_averaged", dlfs.SOFTMAX_LOSS_NOT_AVERAGED, "(loss)", "backward")]),
    # composites, networks, losses
    Shape("residual_block", "object (composite)", "block with conv/bn/relu sub-objects as attributes", composite.RESIDUAL_BLOCK,
          [Bug("shortcut_grad_forgotten", composite.RESIDUAL_BLOCK_NO_SHORTCUT_GRAD, "res", "backward")]),
    Shape("layers_list", "object (composite)", "network object holding a .layers list",
          composite.LAYERS_LIST, [Bug("relu_mask_from_dy", composite.LAYERS_LIST_MASK_FROM_DY, "net", "backward")]),
    Shape("float32_net", "network", "float32 weights, parameter-free LeakyReLU between",
          nets.MLP_FLOAT32, [Bug("slope_dropped", nets.MLP_FLOAT32_NO_SLOPE, "act", "backward")], dtype="float32"),
    Shape("dotted_names_net", "loss-model", "loss(X, y) -> (loss, grads) keyed 'fc1.weight'",
          nets.TANH_NET, [Bug("tanh_derivative_1_minus_a", nets.TANH_NET_WRONG_DERIVATIVE, "(network)", "backward")]),
    Shape("loss_object_reg", "loss", "forward(scores, y, reg) then backward()", nets.LOSS_OBJECT,
          [Bug("not_averaged", nets.LOSS_OBJECT_NOT_AVERAGED, "(loss)", "backward")]),
    # torch, jax
    Shape("torch_linear", "object", "torch float64 tensors, handwritten backward",
          frameworks.TORCH_LINEAR, [Bug("dw_transposed", frameworks.TORCH_LINEAR_TRANSPOSED_DW, "fc", "backward")]),
    Shape("torch_conv_float32", "object", "torch float32, unfold/fold, stride 2 pad 1",
          frameworks.TORCH_CONV, [Bug("bias_first_example", frameworks.TORCH_CONV_BIAS_FIRST_EXAMPLE, "conv", "backward")],
          dtype="float32"),
    Shape("jax_dense", "object", "jax.numpy float32, immutable arrays", frameworks.JAX_DENSE,
          [Bug("db_mean", frameworks.JAX_DENSE_BIAS_MEAN, "fc", "backward")], dtype="float32"),
]

BY_NAME = {s.name: s for s in SHAPES}
