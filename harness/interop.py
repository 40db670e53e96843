"""PyTorch interop for users: a torch model in, a spec out; a spec and weights in, a torch
module out. Thin lazy wrappers over :mod:`reference_models.torch_bridge`, so that
``import harness`` does not import torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .spec import Layer


def from_torch(module: Any) -> tuple[Layer, dict[str, np.ndarray]]:
    """``(spec, params)`` for a torch ``nn.Sequential`` or a module built from supported
    layers (residual blocks included). ``params`` maps canonical names (the module's
    ``state_dict`` keys; a recurrent module's ``weight_ih_l0`` as ``weight_ih``) to float64 arrays
    in PyTorch layouts. ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (one layer, one direction) become
    batch-first specs whatever their ``batch_first``; a cell's state (``h``, ``c``: the step's
    input) has no value in ``params``: add one of shape ``(N, H)``."""
    from reference_models.torch_bridge import from_torch as _from_torch

    return _from_torch(module)


def to_torch(spec: Layer, params: Mapping[str, Any]) -> Any:
    """The reference network as a float64 ``torch.nn.Module`` carrying ``params``; its
    ``state_dict`` keys are the canonical names (a recurrent layer's are PyTorch's: ``weight_ih_l0``
    ...; its h0 / c0 are parameters of the module)."""
    from reference_models.torch_bridge import to_module

    return to_module(spec, params)
