"""Layer specs: the one description of an architecture that both references are built from.

A spec is a tree of frozen dataclasses. Leaves are layers (``Conv2d``, ``ReLU`` ...);
``Sequential`` and ``Residual`` nest them. Every layer has a ``name``; the canonical
name of a parameter is the dotted path of its layer plus the parameter's local name,
exactly as in a PyTorch ``state_dict`` (``conv1.weight``, ``layer1.0.bn1.running_mean``).

Conventions are PyTorch's throughout: data NCHW, conv weight ``(out, in/groups, kh, kw)``,
cross-correlation, Linear weight ``(out, in)``, Flatten in C,H,W order.

Shapes always include the batch axis: ``Conv2d.output_shape((N, C, H, W))``.
Mistakes raise :class:`SpecError` with a one-line message that names the layer.

This package needs only numpy (for :func:`init_params`), so ``import harness`` stays light.
It re-exports everything; the parts, one job each:

- :mod:`~harness.spec.base`: ``SpecError``, ``ParamInfo``, the ``Layer`` base, argument and shape helpers
- one module per layer family: :mod:`~harness.spec.convolution`, :mod:`~harness.spec.pooling`,
  :mod:`~harness.spec.activations`, :mod:`~harness.spec.linear`, :mod:`~harness.spec.normalization`,
  :mod:`~harness.spec.dropout`, :mod:`~harness.spec.embedding`, :mod:`~harness.spec.attention`,
  :mod:`~harness.spec.containers`, :mod:`~harness.spec.recurrent`, :mod:`~harness.spec.captioning`;
  and :mod:`~harness.spec.losses`
- :mod:`~harness.spec.tree`: walking a tree, its shapes, parameter names, checks and initial values
- :mod:`~harness.spec.serial`: ``from_dict`` and the registry of kinds it reads (a new family registers there)
"""

from .activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .activations import _Elementwise as _Elementwise
from .attention import MultiheadAttention, ScaledDotProductAttention
from .base import _NAME_RE as _NAME_RE
from .base import Layer, ParamInfo, SpecError, join_path
from .base import PaddingArg as PaddingArg
from .base import Pads as Pads
from .base import Shape as Shape
from .base import _check_name as _check_name
from .base import _expect_rank as _expect_rank
from .base import _jsonable as _jsonable
from .base import _padding as _padding
from .base import _pair as _pair
from .base import _shape as _shape
from .base import _window_out as _window_out
from .captioning import Captioner
from .containers import Residual, Sequential
from .containers import _layers as _layers
from .convolution import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Flatten, Linear
from .losses import MSE, Loss, Projection, SoftmaxCrossEntropy, TemporalSoftmaxCrossEntropy, check_target
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm
from .normalization import _BatchNorm as _BatchNorm
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d, Upsample
from .pooling import _Pool2d as _Pool2d
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .recurrent import _Recurrent as _Recurrent
from .serial import LAYER_KINDS as LAYER_KINDS
from .serial import LOSS_KINDS as LOSS_KINDS
from .serial import _tuplify as _tuplify
from .serial import from_dict
from .tree import (
    check_params,
    example_input_shape,
    index_layer,
    init_params,
    layer_shapes,
    named_params,
    no_grad_masks,
    read_input,
    walk,
)

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "Dropout",
    "ELU",
    "Embedding",
    "Flatten",
    "GELU",
    "GRU",
    "GRUCell",
    "GlobalAvgPool2d",
    "GroupNorm",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LSTM",
    "LSTMCell",
    "Linear",
    "Loss",
    "MSE",
    "MaxPool2d",
    "MultiheadAttention",
    "ParamInfo",
    "Projection",
    "RNN",
    "RNNCell",
    "RMSNorm",
    "ReLU",
    "Residual",
    "ScaledDotProductAttention",
    "Captioner",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "SpecError",
    "Tanh",
    "Upsample",
    "TemporalSoftmaxCrossEntropy",
    "check_params",
    "check_target",
    "from_dict",
    "example_input_shape",
    "index_layer",
    "init_params",
    "join_path",
    "layer_shapes",
    "named_params",
    "no_grad_masks",
    "read_input",
    "walk",
]
