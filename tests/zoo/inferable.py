"""Single layers WITH parameters for inference (issue 15): the zoo's and tests/realcode's
objects and function pairs, each with the spec and layout the existing tests wrap it with
(the truth), the options inference cannot see, and its buggy variants with the verdict the
existing tests expect. ``ENTRIES``: :class:`Entry` (``make(seed) -> (target, x, options)``:
the user's code, an example input in its own layout, the pass-through options)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout
from realcode import cs231n, cs231n_norm, dlfs, frameworks, keras_like, numpyml, objects, pairs, single

from . import layers as Z

IN_OUT = Layout(linear="in_out")


@dataclass
class Entry:
    name: str
    make: Callable[[int, Any], tuple[Any, np.ndarray, dict]]  # (seed, code) -> (target, x, options)
    spec: Any
    layout: Layout
    code: Any = None
    bugs: list[tuple[str, Any, str]] = field(default_factory=list)  # (name, code, verdict)


def _x(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).normal(size=shape)


def _obj(cls_of: Callable, *shape: int, **opts: Any) -> Callable:
    def make(seed: int, code: Any) -> tuple[Any, np.ndarray, dict]:
        return cls_of(code, seed), _x(seed, *shape), dict(opts)

    return make


def _pair(fwd: str, bwd: str, shapes: Any, *shape: int, **opts: Any) -> Callable:
    def make(seed: int, code: Any) -> tuple[Any, np.ndarray, dict]:
        rng = np.random.default_rng(seed)
        if isinstance(shapes, dict):
            arrays: Any = {k: rng.normal(size=s) for k, s in shapes.items()}
        else:
            arrays = [rng.uniform(0.5, 1.5, size=s) for s in shapes]
        return (getattr(code, fwd), getattr(code, bwd)), _x(seed, *shape), {"params": arrays, **opts}

    return make


class _NS:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _zoo(cls: type, *shape: int, **opts: Any) -> Callable:
    return _obj(lambda code, seed: code(seed=seed), *shape, **opts)


def _zoo_bugs(spec: Any, base: type) -> list[tuple[str, Any, str]]:
    """The zoo's mutants of one base class that inference can run without extra options."""
    out = []
    for name, cls, sp, kw, _shape, verdict, _ in Z.MUTANTS:
        if sp is spec and issubclass(cls, base) and not set(kw) - {"layout", "params", "grads"} and verdict != "error":
            out.append((name, cls, verdict))
    return out


ZOO = [
    Entry(
        "zoo dense",
        _zoo(Z.Dense, 5, 6),
        Z.LIN,
        IN_OUT,
        Z.Dense,
        [b for b in _zoo_bugs(Z.LIN, Z.Dense) if b[1] is not Z.DenseNoisyForward],
    ),
    Entry("zoo conv", _zoo(Z.Conv, 2, 2, 7, 6), Z.CONV, Layout(), Z.Conv, _zoo_bugs(Z.CONV, Z.Conv)),
    Entry("zoo batchnorm", _zoo(Z.BatchNorm, 4, 3, 3, 2), Z.BN, Layout(), Z.BatchNorm, _zoo_bugs(Z.BN, Z.BatchNorm)),
    Entry(
        "zoo dense sgd step",
        _zoo(Z.DenseSGD, 5, 6, sgd=(None, 1e-3), backward_args=(1e-3,)),
        Z.LIN,
        IN_OUT,
        Z.DenseSGD,
        [("weight update averaged", Z.DenseSGDMeanWeight, "backward")],
    ),
    Entry(
        "zoo affine pair",
        _pair("affine_forward", "affine_backward", [(5, 5), (5,)], 4, 5),
        Z.SQ,
        IN_OUT,
        _NS(affine_forward=Z.affine_forward, affine_backward=Z.affine_backward),
        [
            (
                "bias grad averaged",
                _NS(affine_forward=Z.affine_forward, affine_backward=Z.affine_backward_mean_bias),
                "backward",
            )
        ],
    ),
]

LR = 0.05
REAL = [
    Entry("cs231n_affine", _pair("affine_forward", "affine_backward", [(5, 3), (3,)], 4, 5), S.Linear("fc", 5, 3),
          IN_OUT, cs231n.AFFINE, [("dw_averaged", cs231n.AFFINE_DW_AVERAGED, "backward")]),
    Entry("cs231n_affine_4d", _pair("affine_forward", "affine_backward", [(32, 3), (3,)], 3, 2, 4, 4),
          S.Sequential([S.Flatten("flat"), S.Linear("fc", 32, 3)], name="affine"), IN_OUT, cs231n.AFFINE,
          [("db_averaged", cs231n.AFFINE_DB_AVERAGED, "backward")]),
    Entry("cs231n_conv_naive", _pair("conv_forward_naive", "conv_backward_naive", [(4, 3, 3, 3), (4,)], 2, 3, 7, 7,
                                     args=({"stride": 2, "pad": 1},)),
          S.Conv2d("conv", 3, 4, 3, stride=2, padding=1), Layout(), cs231n.CONV_NAIVE,
          [("stride_ignored_in_backward", cs231n.CONV_NAIVE_STRIDE_IGNORED, "backward")]),
    Entry("cs231n_conv_im2col", _pair("conv_forward", "conv_backward", [(4, 3, 3, 3), (4,)], 2, 3, 6, 6,
                                      args=({"stride": 1, "pad": 1},)),
          S.Conv2d("conv", 3, 4, 3, padding=1), Layout(), cs231n.CONV_IM2COL,
          [("fancy_index_iadd", cs231n.CONV_IM2COL_FANCY_IADD, "backward")]),
    Entry("cs231n_batchnorm", _pair("batchnorm_forward", "batchnorm_backward", [(5,), (5,)], 4, 5,
                                    args=({"mode": "train"},)),
          S.BatchNorm1d("bn", 5), Layout(), cs231n_norm.BATCHNORM,
          [("direct_path_only", cs231n_norm.BATCHNORM_DIRECT_PATH_ONLY, "backward")]),
    Entry("cs231n_spatial_batchnorm", _pair("spatial_batchnorm_forward", "spatial_batchnorm_backward", [(3,), (3,)],
                                            2, 3, 4, 4, args=({"mode": "train"},)),
          S.BatchNorm2d("bn", 3), Layout(), cs231n_norm.SPATIAL_BATCHNORM,
          [("reshape_without_transpose", cs231n_norm.SPATIAL_BATCHNORM_NO_TRANSPOSE, "forward")]),
    Entry("bn_positional_eval", _pair("bn_forward", "bn_backward", [(5,)] * 4, 4, 5, kwargs={"train": False}),
          S.BatchNorm1d("bn", 5, training=False), Layout(), cs231n_norm.BN_POSITIONAL,
          [("train_formula_in_eval", cs231n_norm.BN_POSITIONAL_IGNORES_MODE, "backward")]),
    Entry("affine_mean_grads", _pair("affine_forward", "affine_backward", [(5, 3), (3,)], 4, 5, grad_scale="batch"),
          S.Linear("fc", 5, 3), IN_OUT, cs231n.AFFINE_MEAN, [("db_not_divided", cs231n.AFFINE_MEAN_DB_SUMMED, "backward")]),
    Entry("first_affine_pair", _pair("affine_forward", "affine_backward", [(5, 3), (3,)], 4, 5, input_grad=False),
          S.Linear("fc1", 5, 3), IN_OUT, cs231n.FIRST_AFFINE,
          [("db_averaged", cs231n.FIRST_AFFINE_DB_AVERAGED, "backward")]),
    Entry("conv_returns_dict", _pair("conv_forward", "conv_backward", {"weight": (3, 2, 3, 3), "bias": (3,)}, 2, 2, 7, 7,
                                     forward_kwargs={"stride": 2}),
          S.Conv2d("conv", 2, 3, 3, stride=2), Layout(), pairs.CONV_DICT,
          [("kernel_grad_transposed", pairs.CONV_DICT_KERNEL_TRANSPOSED, "backward")]),
    Entry("true_convolution_pair", _pair("conv_forward", "conv_backward", [(3, 2, 3, 3), (3,)], 2, 2, 6, 5),
          S.Conv2d("conv", 2, 3, 3), Layout(flip=True), pairs.TRUE_CONV,
          [("kernel_grad_not_flipped_back", pairs.TRUE_CONV_NOT_FLIPPED_BACK, "backward")]),
    Entry("npml_fully_connected", _obj(lambda m, s: m.FullyConnected(5, 5, seed=s), 4, 5, flush="flush_gradients"),
          S.Linear("fc", 5, 5), IN_OUT, numpyml.FULLY_CONNECTED,
          [("dw_transposed", numpyml.FULLY_CONNECTED_TRANSPOSED_DW, "backward")]),
    Entry("npml_batchnorm", _obj(lambda m, s: m.BatchNorm1D(6, seed=s), 4, 6, flush="flush_gradients"),
          S.BatchNorm1d("bn", 6), Layout(), numpyml.BATCHNORM1D,
          [("missing_1_over_n", numpyml.BATCHNORM1D_MISSING_1_OVER_N, "backward")]),
    Entry("keras_conv_nhwc", _obj(lambda m, s: m.Conv2D(4, 3, 3, seed=s), 2, 6, 6, 3), S.Conv2d("conv", 3, 4, 3),
          Layout(data="NHWC", kernel="HWIO"), keras_like.CONV2D,
          [("dx_overwritten", keras_like.CONV2D_OVERWRITES_DX, "backward")]),
    Entry("keras_dense_relu", _obj(lambda m, s: m.Dense(4, 6, activation="relu", seed=s), 3, 6),
          S.Sequential([S.Linear("fc", 6, 4), S.ReLU("relu")], name="dense"), IN_OUT, keras_like.DENSE_RELU,
          [("activation_ignored", keras_like.DENSE_RELU_IGNORES_ACTIVATION, "backward")]),
    Entry("keras_lazy_dense", _obj(lambda m, s: m.LazyDense(3, seed=s), 4, 5, lazy=True), S.Linear("fc", 5, 3), IN_OUT,
          keras_like.LAZY_DENSE, [("input_cached_at_build_only", keras_like.LAZY_DENSE_CACHES_ONCE, "backward")]),
    Entry("fc_sgd_single", _obj(lambda m, s: m.FC(6, 4, seed=s), 3, 6, backward="backprop", backward_args=(LR,),
                                batched=False, sgd=(None, LR)),
          S.Linear("fc", 6, 4), IN_OUT, single.FC_SGD, [("update_before_input_grad", single.FC_SGD_UPDATE_FIRST, "backward")]),
    Entry("bn_no_running_stats", _obj(lambda m, s: m.BatchNorm(3, seed=s), 4, 3, 3, 3), S.BatchNorm2d("bn", 3), Layout(),
          objects.BATCHNORM, [("no_mean_path", objects.BATCHNORM_NO_MEAN_PATH, "backward")]),
    Entry("bn_rows", _obj(lambda m, s: m.BatchNormRows(5, seed=s), 4, 5), S.BatchNorm1d("bn", 5), Layout(),
          objects.BATCHNORM_ROWS, [("dgamma_forgets_xhat", objects.BATCHNORM_ROWS_DGAMMA_FORGETS_XHAT, "backward")]),
    Entry("conv_bias_column", _obj(lambda m, s: m.ConvIm2col(3, 4, 3, seed=s), 2, 3, 5, 5),
          S.Conv2d("conv", 3, 4, 3, padding=1), Layout(), objects.CONV_IM2COL,
          [("dout_reshaped_without_transpose", objects.CONV_IM2COL_FORGETS_TRANSPOSE, "backward")]),
    Entry("dense_sgd_in_backward", _obj(lambda m, s: m.DenseSGD(5, 3, lr=LR, seed=s), 4, 5, sgd=(None, LR)),
          S.Linear("fc", 5, 3), IN_OUT, objects.DENSE_SGD, [("bias_step_mean", objects.DENSE_SGD_BIAS_MEAN, "backward")]),
    Entry("first_conv_no_input_grad", _obj(lambda m, s: m.FirstConv(3, 4, 3, seed=s), 2, 3, 5, 5, input_grad=False),
          S.Conv2d("conv1", 3, 4, 3, padding=1), Layout(), objects.FIRST_CONV,
          [("dw_overwritten_in_loop", objects.FIRST_CONV_OVERWRITES, "backward")]),
    Entry("linear_returns_list", _obj(lambda m, s: m.Linear(5, 5, seed=s), 4, 5), S.Linear("fc", 5, 5), Layout(),
          objects.LINEAR_RETURNS_LIST, [("dx_transposed", objects.LINEAR_RETURNS_LIST_TRANSPOSED_DX, "backward")]),
    Entry("layernorm_returns_tuple", _obj(lambda m, s: m.LayerNorm(6, seed=s), 4, 6), S.LayerNorm("ln", 6), Layout(),
          objects.LAYERNORM_RETURNS_TUPLE,
          [("stats_over_batch_in_backward", objects.LAYERNORM_RETURNS_TUPLE_BATCH_AXIS, "backward")]),
    Entry("dlfs_batchnorm", _obj(lambda m, s: m.BatchNormalization(*np.random.default_rng(s).normal(size=(2, 48)) + [[1], [0]]),
                                 4, 3, 4, 4),
          S.BatchNorm2d("bn", 3, eps=1e-6, over="feature"), Layout(), dlfs.BATCHNORM,
          [("no_mean_path", dlfs.BATCHNORM_NO_MEAN_PATH, "backward")]),
    Entry("torch_linear", _obj(lambda m, s: m.TorchLinear(5, 5, seed=s), 4, 5), S.Linear("fc", 5, 5), Layout(),
          frameworks.TORCH_LINEAR, [("dw_transposed", frameworks.TORCH_LINEAR_TRANSPOSED_DW, "backward")]),
    Entry("torch_conv_float32", _obj(lambda m, s: m.TorchConv2d(3, 4, 3, stride=2, padding=1, seed=s), 2, 3, 7, 7),
          S.Conv2d("conv", 3, 4, 3, stride=2, padding=1), Layout(), frameworks.TORCH_CONV,
          [("bias_first_example", frameworks.TORCH_CONV_BIAS_FIRST_EXAMPLE, "backward")]),
    Entry("jax_dense", _obj(lambda m, s: m.JaxDense(5, 3, seed=s), 4, 5), S.Linear("fc", 5, 3), IN_OUT,
          frameworks.JAX_DENSE, [("db_mean", frameworks.JAX_DENSE_BIAS_MEAN, "backward")]),
]  # fmt: skip

# the realcode shapes not here: one example at a time with kernels lacking their channel axis
# (gray_conv_pair, gray_conv_object, first_conv_hwc_sgd: (F, k, k) kernels), parameter-free
# layers (free.py's), composites and networks (structure.py's), losses.
ENTRIES = ZOO + REAL


def spec_equal(a: Any, b: Any) -> bool:
    """Two spec layers equal in every field but their names (containers: child by child)."""
    from dataclasses import fields

    if type(a) is not type(b):
        return False
    for f in fields(a):
        if f.name == "name":
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, (list, tuple)) and va and isinstance(va[0], S.Layer):
            if len(va) != len(vb) or not all(spec_equal(x, y) for x, y in zip(va, vb)):
                return False
        elif va != vb:
            return False
    return True
