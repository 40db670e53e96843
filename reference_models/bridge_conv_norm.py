"""The bridge for the other convolutions and normalisations, both directions:
``nn.Conv1d``, ``nn.ConvTranspose2d``, ``nn.Upsample`` (and its ``UpsamplingNearest2d`` /
``UpsamplingBilinear2d`` forms), ``nn.GroupNorm``, ``nn.RMSNorm``, and ``F.interpolate`` in a
traced forward. :mod:`.torch_bridge` merges the three tables:

* ``TO_MODULE``: spec class -> ``layer -> nn.Module`` (what ``to_torch`` builds);
* ``FROM_MODULE``: module class -> ``(module, name, path) -> spec`` (what ``from_torch`` reads);
* ``FUNCTIONS``: function -> ``(name, args, kwargs) -> spec`` for ``torch.fx`` call nodes.

Every module's ``state_dict`` keys are the canonical local names (``weight``, ``bias``), so
no key map is needed. Conventions worth knowing:

* ``nn.Conv1d(padding="same")`` is PyTorch's rule (stride 1, the odd pixel on the right),
  which is the spec's ``"same"`` at stride 1. The spec's asymmetric ``(left, right)`` padding and
  its TensorFlow-style ``"same"`` at stride > 1, which ``nn.Conv1d`` cannot express, become a
  :class:`SamePadConv1d`, read back as the same spec.
* ``nn.Upsample`` converts when it is given a ``scale_factor`` of whole numbers; a ``size``
  (the factor then depends on the input) or a fractional factor is a ``SpecError``. Its
  ``align_corners=None`` is PyTorch's default, ``False``.
* ``nn.RMSNorm(eps=None)`` normalises with ``torch.finfo(x.dtype).eps`` of the input it is
  given. The spec needs a number: ``from_torch`` takes the eps of the module's own dtype (its
  weight's, else torch's default dtype): ``finfo(float32).eps = 1.19e-07`` for a float32 module,
  the value it computes with on inputs of its dtype. Run in float64 the same module would use
  ``2.2e-16``; convert a float64 module (``module.double()``) to get that. ``to_torch`` always
  writes the spec's eps explicitly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import spec as S


def _unsupported(m: Any, path: str, why: str) -> S.SpecError:
    return S.SpecError(f"from_torch: module '{path or '<root>'}' ({type(m).__name__}) {why}")


# --------------------------------------------------------------------------- spec -> module


class SamePadConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose padding is computed per input from the spec: asymmetric
    ``(left, right)`` padding, or "same" at a stride > 1 (TensorFlow's rule)."""

    def __init__(self, layer: S.Conv1d) -> None:
        super().__init__(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            0,
            layer.dilation,
            layer.groups,
            layer.bias,
        )
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.layer.pads(x.shape[-1])  # the last axis: an unbatched (C, L) input works too
        return F.conv1d(F.pad(x, (lo, hi)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv1d(layer: S.Conv1d) -> nn.Module:
    """``nn.Conv1d`` where it can express the padding, else :class:`SamePadConv1d`."""
    pad = layer.padding
    if pad == "same" and layer.stride == 1:
        padding: Any = "same"
    elif pad == "valid":
        padding = 0
    elif isinstance(pad, tuple) and pad[0] == pad[1]:
        padding = pad[0]
    else:
        return SamePadConv1d(layer)
    return nn.Conv1d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        padding,
        layer.dilation,
        layer.groups,
        layer.bias,
    )


def _upsample(layer: S.Upsample) -> nn.Module:
    scale = tuple(float(s) for s in layer.scale_factor)
    if layer.mode == "nearest":
        return nn.Upsample(scale_factor=scale, mode="nearest")
    return nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=layer.align_corners)


TO_MODULE: dict[type[S.Layer], Callable[[Any], nn.Module]] = {
    S.Conv1d: _conv1d,
    S.ConvTranspose2d: lambda L: nn.ConvTranspose2d(
        L.in_channels,
        L.out_channels,
        L.kernel_size,
        L.stride,
        L.padding,
        L.output_padding,
        L.groups,
        L.bias,
        L.dilation,
    ),
    S.Upsample: _upsample,
    S.GroupNorm: lambda L: nn.GroupNorm(L.num_groups, L.num_channels, L.eps, L.affine),
    S.RMSNorm: lambda L: nn.RMSNorm(L.normalized_shape, L.eps, L.elementwise_affine),
}


# --------------------------------------------------------------------------- module -> spec


def _from_conv1d(m: nn.Conv1d, name: str, path: str) -> S.Layer:
    return from_conv(S.Conv1d, m, name, path)


def from_conv(kind: type[S.Conv1d] | type[S.Conv2d], m: nn.Conv1d | nn.Conv2d, name: str, path: str) -> S.Layer:
    """The spec of a plain ``nn.Conv1d`` / ``nn.Conv2d`` (``kind``): zero padding only."""
    if m.padding_mode != "zeros":
        raise _unsupported(m, path, f"uses padding_mode={m.padding_mode!r}; only zero padding is supported")
    return kind(
        name,
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        m.groups,
        m.bias is not None,
    )


def _from_conv_transpose2d(m: nn.ConvTranspose2d, name: str, path: str) -> S.Layer:
    if m.padding_mode != "zeros":  # PyTorch refuses any other at construction; a hand-set one is no conv
        raise _unsupported(m, path, f"uses padding_mode={m.padding_mode!r}; only zero padding is supported")
    return S.ConvTranspose2d(
        name,
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.output_padding,
        m.groups,
        m.dilation,
        m.bias is not None,
    )


def _scale(value: Any, size: Any, mode: Any, align_corners: Any, why: Callable[[str], S.SpecError]) -> tuple:
    """``(scale_factor, mode, align_corners)`` of the spec for an upsampling given as
    ``nn.Upsample`` / ``F.interpolate`` arguments, or the error ``why(reason)``."""
    if size is not None or value is None:
        raise why(
            f"is given size={size!r}, not a scale_factor; only a scale_factor converts "
            "(pass scale_factor=, or the factor the size means for your input)"
        )
    if mode not in ("nearest", "bilinear"):
        raise why(f"uses mode={mode!r}; only 'nearest' and 'bilinear' are supported")
    factors = value if isinstance(value, (tuple, list)) else (value, value)
    if len(factors) != 2 or not all(isinstance(f, (int, float)) and f >= 1 and float(f).is_integer() for f in factors):
        raise why(f"has scale_factor={value!r}; only whole factors >= 1 over (H, W) are supported")
    return tuple(int(f) for f in factors), mode, bool(align_corners) if mode == "bilinear" else False


def _from_upsample(m: nn.Upsample, name: str, path: str) -> S.Layer:
    if getattr(m, "antialias", False):
        raise _unsupported(m, path, "uses antialias=True, which the spec does not support")
    factor, mode, aligned = _scale(m.scale_factor, m.size, m.mode, m.align_corners, lambda w: _unsupported(m, path, w))
    return S.Upsample(name, factor, mode, aligned)


def _from_group_norm(m: nn.GroupNorm, name: str, path: str) -> S.Layer:
    if m.affine and m.bias is None:
        raise _unsupported(m, path, "has a weight but no bias, which the spec does not support")
    return S.GroupNorm(name, m.num_groups, m.num_channels, m.eps, m.affine)


def _from_rms_norm(m: nn.RMSNorm, name: str, path: str) -> S.Layer:
    eps = m.eps
    if eps is None:  # PyTorch: finfo(input dtype).eps at run time; the module's own dtype here (module docstring)
        dtype = m.weight.dtype if m.weight is not None else torch.get_default_dtype()
        eps = float(torch.finfo(dtype).eps)
    return S.RMSNorm(name, tuple(m.normalized_shape), eps, m.elementwise_affine)


FROM_MODULE: dict[type, Callable[[Any, str, str], S.Layer]] = {
    nn.Conv1d: _from_conv1d,
    SamePadConv1d: lambda m, name, path: replace(m.layer, name=name),
    nn.ConvTranspose2d: _from_conv_transpose2d,
    nn.Upsample: _from_upsample,
    nn.UpsamplingNearest2d: _from_upsample,
    nn.UpsamplingBilinear2d: _from_upsample,
    nn.GroupNorm: _from_group_norm,
    nn.RMSNorm: _from_rms_norm,
}


# --------------------------------------------------------------------------- traced functions

_INTERPOLATE = inspect.signature(F.interpolate)


def _interpolate(name: str, args: tuple, kwargs: dict) -> S.Layer:
    """``F.interpolate(x, ...)`` in a traced forward, its arguments positional or by keyword."""
    try:
        bound = _INTERPOLATE.bind(*args, **kwargs)
    except TypeError as e:
        raise S.SpecError(f"from_torch: F.interpolate call '{name}' has arguments it cannot take: {e}") from None
    bound.apply_defaults()
    a = bound.arguments

    def why(reason: str) -> S.SpecError:
        return S.SpecError(f"from_torch: F.interpolate call '{name}' {reason}")

    if a["antialias"]:
        raise why("uses antialias=True, which the spec does not support")
    factor, mode, aligned = _scale(a["scale_factor"], a["size"], a["mode"], a["align_corners"], why)
    return S.Upsample(name, factor, mode, aligned)


FUNCTIONS: dict[Any, Callable[[str, tuple, dict], S.Layer]] = {F.interpolate: _interpolate}

__all__ = ["FROM_MODULE", "FUNCTIONS", "TO_MODULE", "SamePadConv1d"]
