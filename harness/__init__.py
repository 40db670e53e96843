"""trigrad: is my backward right? The public API, re-exported; nothing else lives here.

The names load on first use (PEP 562), so that ``import harness`` (the ``trigrad`` command, the
pytest plugin) costs no numpy until a check needs it: 0.23 s less on every command-line run.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of a plugin's package; trigrad's own are
internal invariants, and a package imported before a nested pytest run (pytester) would
otherwise be warned about as "already imported"."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and readers
    from .adapters.arrays import ArrayError
    from .adapters.autograd import AutogradLayer, wrap_autograd
    from .adapters.captioning import CaptioningModel, wrap_captioning
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
        GRU,
        LSTM,
        MSE,
        RNN,
        AvgPool2d,
        BatchNorm1d,
        BatchNorm2d,
        Captioner,
        Conv1d,
        Conv2d,
        ConvTranspose2d,
        Dropout,
        Embedding,
        Flatten,
        GlobalAvgPool2d,
        GroupNorm,
        GRUCell,
        Layer,
        LayerNorm,
        LeakyReLU,
        Linear,
        Loss,
        LSTMCell,
        MaxPool2d,
        MultiheadAttention,
        ParamInfo,
        Projection,
        ReLU,
        Residual,
        RMSNorm,
        RNNCell,
        ScaledDotProductAttention,
        Sequential,
        Sigmoid,
        Softmax,
        SoftmaxCrossEntropy,
        SpecError,
        Tanh,
        TemporalSoftmaxCrossEntropy,
        Upsample,
        init_params,
        layer_shapes,
        named_params,
        walk,
    )
    from .sweeper import SweepResult, check_config, sweep

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "ArrayError": (".adapters.arrays", "ArrayError"),
    "AutogradLayer": (".adapters.autograd", "AutogradLayer"),
    "wrap_autograd": (".adapters.autograd", "wrap_autograd"),
    "CaptioningModel": (".adapters.captioning", "CaptioningModel"),
    "wrap_captioning": (".adapters.captioning", "wrap_captioning"),
    "Detection": (".adapters.detect", "Detection"),
    "detect_layout": (".adapters.detect", "detect_layout"),
    "AdapterError": (".adapters.layer", "AdapterError"),
    "wrap_functions": (".adapters.layer", "wrap_functions"),
    "wrap_layer": (".adapters.layer", "wrap_layer"),
    "Layout": (".adapters.layouts", "Layout"),
    "LayoutError": (".adapters.layouts", "LayoutError"),
    "wrap_loss": (".adapters.loss", "wrap_loss"),
    "LossModel": (".adapters.network", "LossModel"),
    "WrappedNetwork": (".adapters.network", "WrappedNetwork"),
    "wrap_loss_model": (".adapters.network", "wrap_loss_model"),
    "wrap_network": (".adapters.network", "wrap_network"),
    "WeightsError": (".adapters.weights", "WeightsError"),
    "load_weights": (".adapters.weights", "load_weights"),
    "read_weight_file": (".adapters.weights", "read_weight_file"),
    "check_layer": (".check", "check_layer"),
    "check_network": (".check", "check_network"),
    "infer": (".inference.api", "infer"),
    "Inference": (".inference.result", "Inference"),
    "LayerInference": (".inference.result", "LayerInference"),
    "from_torch": (".interop", "from_torch"),
    "to_torch": (".interop", "to_torch"),
    "check_loss": (".loss_check", "check_loss"),
    "Comparison": (".regress", "Comparison"),
    "check_equivalent": (".regress", "check_equivalent"),
    "compare_snapshot": (".regress", "compare"),
    "ReportError": (".report.validate", "ReportError"),
    "ResourceError": (".resources", "ResourceError"),
    "FDSummary": (".results", "FDSummary"),
    "LayerResult": (".results", "LayerResult"),
    "Report": (".results", "Report"),
    "TensorResult": (".results", "TensorResult"),
    "Snapshot": (".snapshot", "Snapshot"),
    "SnapshotError": (".snapshot", "SnapshotError"),
    "load_snapshot": (".snapshot", "load"),
    "record_snapshot": (".snapshot", "record"),
    "SnapshotWarning": (".snapshot_manifest", "SnapshotWarning"),
    "ELU": (".spec", "ELU"),
    "GELU": (".spec", "GELU"),
    "GRU": (".spec", "GRU"),
    "GRUCell": (".spec", "GRUCell"),
    "LSTM": (".spec", "LSTM"),
    "LSTMCell": (".spec", "LSTMCell"),
    "RNN": (".spec", "RNN"),
    "RNNCell": (".spec", "RNNCell"),
    "MSE": (".spec", "MSE"),
    "AvgPool2d": (".spec", "AvgPool2d"),
    "BatchNorm1d": (".spec", "BatchNorm1d"),
    "BatchNorm2d": (".spec", "BatchNorm2d"),
    "Captioner": (".spec", "Captioner"),
    "Conv1d": (".spec", "Conv1d"),
    "Conv2d": (".spec", "Conv2d"),
    "ConvTranspose2d": (".spec", "ConvTranspose2d"),
    "Dropout": (".spec", "Dropout"),
    "Embedding": (".spec", "Embedding"),
    "Flatten": (".spec", "Flatten"),
    "GlobalAvgPool2d": (".spec", "GlobalAvgPool2d"),
    "GroupNorm": (".spec", "GroupNorm"),
    "Layer": (".spec", "Layer"),
    "LayerNorm": (".spec", "LayerNorm"),
    "LeakyReLU": (".spec", "LeakyReLU"),
    "Linear": (".spec", "Linear"),
    "Loss": (".spec", "Loss"),
    "MaxPool2d": (".spec", "MaxPool2d"),
    "MultiheadAttention": (".spec", "MultiheadAttention"),
    "ParamInfo": (".spec", "ParamInfo"),
    "Projection": (".spec", "Projection"),
    "RMSNorm": (".spec", "RMSNorm"),
    "ReLU": (".spec", "ReLU"),
    "Residual": (".spec", "Residual"),
    "ScaledDotProductAttention": (".spec", "ScaledDotProductAttention"),
    "Sequential": (".spec", "Sequential"),
    "Sigmoid": (".spec", "Sigmoid"),
    "Softmax": (".spec", "Softmax"),
    "SoftmaxCrossEntropy": (".spec", "SoftmaxCrossEntropy"),
    "SpecError": (".spec", "SpecError"),
    "Tanh": (".spec", "Tanh"),
    "Upsample": (".spec", "Upsample"),
    "TemporalSoftmaxCrossEntropy": (".spec", "TemporalSoftmaxCrossEntropy"),
    "init_params": (".spec", "init_params"),
    "layer_shapes": (".spec", "layer_shapes"),
    "named_params": (".spec", "named_params"),
    "walk": (".spec", "walk"),
    "SweepResult": (".sweeper", "SweepResult"),
    "check_config": (".sweeper", "check_config"),
    "sweep": (".sweeper", "sweep"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'harness' has no attribute {name!r}") from None
    # looked up every time, not cached here: a module unloaded and imported again (pytest's
    # pytester does that between its in-process runs) must not leave a stale class behind
    return getattr(importlib.import_module(module, __name__), attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "wrap_autograd",
    "AutogradLayer",
    "wrap_layer",
    "wrap_loss",
    "wrap_network",
    "wrap_loss_model",
    "wrap_captioning",
    "WrappedNetwork",
    "LossModel",
    "CaptioningModel",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Captioner",
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
    "LSTM",
    "LSTMCell",
    "GroupNorm",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
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
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "SpecError",
    "Tanh",
    "Upsample",
    "TemporalSoftmaxCrossEntropy",
    "from_torch",
    "init_params",
    "layer_shapes",
    "named_params",
    "to_torch",
    "walk",
]
