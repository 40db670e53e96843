"""The JAX reference for the other convolutions and normalisations, written from the
definitions (not from PyTorch's calls): Conv1d and ConvTranspose2d through
``lax.conv_general_dilated`` (the transposed conv as a conv of the input dilated by the
stride, with the kernel flipped and its in/out axes swapped per group), Upsample by explicit
index gathers and interpolation weights (``jax.image.resize`` has no ``align_corners=True``),
GroupNorm and RMSNorm from their formulas. ``LAYERS`` merges into ``jax_ref._LAYERS``:
``(layer, path, x, ctx) -> y`` with the parameters in ``ctx.params[f"{path}.{local}"]``;
float64 (the caller enables x64). Imports neither torch nor ``jax_ref``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness import spec as S

_HI = lax.Precision.HIGHEST


def _conv1d(l: S.Conv1d, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    y = lax.conv_general_dilated(
        x,
        ctx.params[f"{path}.weight"],
        window_strides=(l.stride,),
        padding=(l.pads(x.shape[2]),),
        rhs_dilation=(l.dilation,),
        dimension_numbers=("NCH", "OIH", "NCH"),
        feature_group_count=l.groups,
        precision=_HI,
    )
    return y + ctx.params[f"{path}.bias"][None, :, None] if l.bias else y


def _conv_transpose2d(l: S.ConvTranspose2d, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    """The gradient of a strided conv with respect to its input, as a forward conv: the input
    spread ``stride`` apart (lhs_dilation), padded by ``dilation*(k-1) - padding`` before and
    that plus ``output_padding`` after, correlated with the kernel rotated 180 degrees whose
    (in, out/groups) axes become (out, in/groups) group by group."""
    w = ctx.params[f"{path}.weight"]  # (in, out/g, kh, kw)
    g, (kh, kw) = l.groups, l.kernel_size
    cin, cout_g = w.shape[0], w.shape[1]
    w = w.reshape(g, cin // g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * cout_g, cin // g, kh, kw)
    w = w[:, :, ::-1, ::-1]
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, p, op, d in zip(l.kernel_size, l.padding, l.output_padding, l.dilation)
    ]
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding=pads,
        lhs_dilation=l.stride,
        rhs_dilation=l.dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=g,
        precision=_HI,
    )
    return y + ctx.params[f"{path}.bias"][None, :, None, None] if l.bias else y


def _source(size: int, scale: int, mode: str, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one axis upsampled from ``size`` by ``scale``: per output index, the two source
    indices and the weight of the second (``(i0, i1, lam)``; nearest: ``i1 == i0``, lam 0).
    Nearest: ``floor(dst / scale)``. Bilinear: ``src = dst * (size-1)/(out-1)`` with aligned
    corners (0 for a one-pixel output), else ``(dst + 0.5)/scale - 0.5`` clamped at 0;
    ``i0 = floor(src)``, ``i1 = min(i0 + 1, size - 1)``, ``lam = src - i0``."""
    out = size * scale
    dst = np.arange(out, dtype=np.float64)
    if mode == "nearest":
        i0 = np.arange(out) // scale
        return i0, i0, np.zeros(out)
    if align_corners:
        src = dst * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    else:
        src = np.maximum((dst + 0.5) * (1.0 / scale) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    return i0, np.minimum(i0 + 1, size - 1), src - i0


def _resize_axis(x: jax.Array, axis: int, scale: int, l: S.Upsample) -> jax.Array:
    i0, i1, lam = _source(x.shape[axis], scale, l.mode, l.align_corners)
    first = jnp.take(x, jnp.asarray(i0), axis=axis)
    if l.mode == "nearest":
        return first
    shape = [1] * x.ndim
    shape[axis] = len(lam)
    lam_j = jnp.asarray(lam).reshape(shape)
    return (1.0 - lam_j) * first + lam_j * jnp.take(x, jnp.asarray(i1), axis=axis)


def _upsample(l: S.Upsample, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    sh, sw = l.scale_factor
    return _resize_axis(_resize_axis(x, 2, sh, l), 3, sw, l)


def _group_norm(l: S.GroupNorm, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    n, c = x.shape[:2]
    grouped = x.reshape(n, l.num_groups, -1)
    mean = jnp.mean(grouped, axis=2, keepdims=True)
    var = jnp.mean((grouped - mean) ** 2, axis=2, keepdims=True)  # biased
    y = ((grouped - mean) / jnp.sqrt(var + l.eps)).reshape(x.shape)
    if l.affine:
        per_channel = (1, c) + (1,) * (x.ndim - 2)
        y = y * ctx.params[f"{path}.weight"].reshape(per_channel) + ctx.params[f"{path}.bias"].reshape(per_channel)
    return y


def _rms_norm(l: S.RMSNorm, path: str, x: jax.Array, ctx: Any) -> jax.Array:
    axes = tuple(range(x.ndim - len(l.normalized_shape), x.ndim))
    y = x / jnp.sqrt(jnp.mean(x * x, axis=axes, keepdims=True) + l.eps)
    return y * ctx.params[f"{path}.weight"] if l.elementwise_affine else y


LAYERS: dict[type, Callable[..., jax.Array]] = {
    S.Conv1d: _conv1d,
    S.ConvTranspose2d: _conv_transpose2d,
    S.Upsample: _upsample,
    S.GroupNorm: _group_norm,
    S.RMSNorm: _rms_norm,
}

__all__ = ["LAYERS"]
