"""The PyTorch reference for the other convolutions and normalisations: Conv1d,
ConvTranspose2d, Upsample, GroupNorm, RMSNorm, each one ``torch.nn.functional`` call in the
spec's (PyTorch's) layouts. ``LEAVES`` merges into ``torch_ref._LEAVES``: ``(layer, x, p) ->
y`` with ``p(local)`` the parameter tensor. Independent of the JAX side (``jax_conv_norm``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness import spec as S

Tensor = torch.Tensor
Params = Callable[[str], Tensor]


def _conv1d(layer: S.Conv1d, x: Tensor, p: Params) -> Tensor:
    lo, hi = layer.pads(x.shape[2])
    if lo or hi:
        x = F.pad(x, (lo, hi))  # asymmetric and TensorFlow-style "same" padding, which F.conv1d cannot take
    bias = p("bias") if layer.bias else None
    return F.conv1d(x, p("weight"), bias, layer.stride, 0, layer.dilation, layer.groups)


def _conv_transpose2d(layer: S.ConvTranspose2d, x: Tensor, p: Params) -> Tensor:
    bias = p("bias") if layer.bias else None
    return F.conv_transpose2d(
        x, p("weight"), bias, layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation
    )


def _upsample(layer: S.Upsample, x: Tensor, p: Params) -> Tensor:
    # the scale factor given (not a size) is what PyTorch's source-index rule divides by
    scale = tuple(float(s) for s in layer.scale_factor)
    if layer.mode == "nearest":
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=layer.align_corners)


def _group_norm(layer: S.GroupNorm, x: Tensor, p: Params) -> Tensor:
    w, b = (p("weight"), p("bias")) if layer.affine else (None, None)
    return F.group_norm(x, layer.num_groups, w, b, layer.eps)


def _rms_norm(layer: S.RMSNorm, x: Tensor, p: Params) -> Tensor:
    w = p("weight") if layer.elementwise_affine else None
    return F.rms_norm(x, layer.normalized_shape, w, layer.eps)


LEAVES: dict[type, Callable[..., Tensor]] = {
    S.Conv1d: _conv1d,
    S.ConvTranspose2d: _conv_transpose2d,
    S.Upsample: _upsample,
    S.GroupNorm: _group_norm,
    S.RMSNorm: _rms_norm,
}

__all__ = ["LEAVES"]
