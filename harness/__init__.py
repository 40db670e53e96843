"""trigrad: is my backward right? The public API, re-exported; nothing else lives here."""

from .adapters.arrays import ArrayError
from .adapters.detect import Detection, detect_layout
from .adapters.layer import AdapterError, wrap_functions, wrap_layer
from .adapters.layouts import Layout, LayoutError
from .adapters.loss import wrap_loss
from .adapters.network import LossModel, WrappedNetwork, wrap_loss_model, wrap_network
from .adapters.weights import WeightsError, load_weights, read_weight_file
from .check import check_layer, check_network
from .inference.api import infer
from .inference.result import Inference, LayerInference
from .interop import from_torch, to_torch
from .loss_check import check_loss
from .regress import Comparison, check_equivalent
from .regress import compare as compare_snapshot
from .report.validate import ReportError
from .resources import ResourceError
from .results import FDSummary, LayerResult, Report, TensorResult
from .snapshot import Snapshot, SnapshotError
from .snapshot import load as load_snapshot
from .snapshot import record as record_snapshot
from .snapshot_manifest import SnapshotWarning
from .spec import (
    ELU,
    GELU,
    MSE,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    Loss,
    MaxPool2d,
    ParamInfo,
    Projection,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    SpecError,
    Tanh,
    init_params,
    layer_shapes,
    named_params,
    walk,
)
from .sweeper import SweepResult, check_config, sweep

__version__ = "0.1.0"

__all__ = [
    "check_layer",
    "check_network",
    "check_loss",
    "infer",
    "Inference",
    "LayerInference",
    "Report",
    "LayerResult",
    "TensorResult",
    "FDSummary",
    "check_equivalent",
    "compare_snapshot",
    "record_snapshot",
    "load_snapshot",
    "Snapshot",
    "SnapshotError",
    "SnapshotWarning",
    "ReportError",
    "Comparison",
    "sweep",
    "SweepResult",
    "check_config",
    "AdapterError",
    "ArrayError",
    "Detection",
    "Layout",
    "detect_layout",
    "LayoutError",
    "WeightsError",
    "load_weights",
    "read_weight_file",
    "ResourceError",
    "wrap_functions",
    "wrap_layer",
    "wrap_loss",
    "wrap_network",
    "wrap_loss_model",
    "WrappedNetwork",
    "LossModel",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "ELU",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSE",
    "MaxPool2d",
    "ParamInfo",
    "Projection",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "SpecError",
    "Tanh",
    "from_torch",
    "init_params",
    "layer_shapes",
    "named_params",
    "to_torch",
    "walk",
]
