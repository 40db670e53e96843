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
    ``state_dict`` keys) to float64 arrays in PyTorch layouts."""
    from reference_models.torch_bridge import from_torch as _from_torch

    return _from_torch(module)


def to_torch(spec: Layer, params: Mapping[str, Any]) -> Any:
    """The reference network as a float64 ``torch.nn.Module`` carrying ``params``; its
    ``state_dict`` keys are the canonical names."""
    from reference_models.torch_bridge import to_module

    return to_module(spec, params)
