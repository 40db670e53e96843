"""Hypotheses for the other convolutions and normalisations: a group or RMS norm's input
gradient missing a path through its statistics, a group norm's statistics over other groups
of channels, a nearest upsample's backward that reads
one copy of each pixel instead of summing them, a bilinear upsample following the other
``align_corners`` rule.

Tensors are canonical: data ``(N, C, *)``; a group norm's weight ``(C,)``, an RMS norm's
``normalized_shape``; an upsample's input ``(N, C, H, W)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..compare import relative_with_floor
from ..spec import GroupNorm, RMSNorm, Upsample
from .point import Point, _vjp


def norm_terms(p: Point) -> list[str]:
    """A group norm's input gradient without the path through the mean, the variance or
    both (as :func:`.backward._norm_terms` for batch and layer norms, per sample and group),
    or an RMS norm's without the path through the RMS: with ``xhat = x / rms``, ``d = g * w``
    and means over the normalised axes the gradient is ``(d - xhat * mean(d * xhat)) / rms``;
    without that path ``d / rms``."""
    spec, x = p.spec, p.x
    if isinstance(spec, GroupNorm):
        gamma = p.params.get("weight", np.ones(x.shape[1])).reshape((1, -1) + (1,) * (x.ndim - 2))
        xs, d = x.reshape(x.shape[0], spec.num_groups, -1), (p.g * gamma).reshape(x.shape[0], spec.num_groups, -1)
        mean = lambda a: a.mean(axis=2, keepdims=True)  # noqa: E731
        inv = 1 / np.sqrt(xs.var(axis=2, keepdims=True) + spec.eps)
        xhat = (xs - mean(xs)) * inv
        truth = inv * (d - mean(d) - xhat * mean(d * xhat))
        forms = [
            ("the path through the mean (the mean treated as a constant)", inv * (d - xhat * mean(d * xhat))),
            ("the path through the variance (the variance treated as a constant)", inv * (d - mean(d))),
            ("both the mean's and the variance's paths (the group statistics treated as constants)", inv * d),
        ]
    elif isinstance(spec, RMSNorm):
        axes = tuple(range(x.ndim - len(spec.normalized_shape), x.ndim))
        inv = 1 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + spec.eps)
        xhat, d = x * inv, p.g * p.params.get("weight", np.ones(spec.normalized_shape))
        truth = inv * (d - xhat * (d * xhat).mean(axis=axes, keepdims=True))
        forms = [("the path through the RMS (the RMS treated as a constant)", inv * d)]
    else:
        return []
    if relative_with_floor(truth.reshape(x.shape), p.ref["input"]) > p.tol["input"]:
        return []  # the closed form does not reproduce the reference: no claim from it
    return [
        f"input: the normalisation backward misses {what}"
        for what, value in forms
        if p.fits("input", value.reshape(x.shape))
    ]


def upsample_copies(p: Point) -> list[str]:
    """A nearest upsample's input gradient that is the upstream gradient at one copy of each
    pixel (a strided slice ``g[:, :, ::sh, ::sw]``, or any one position of each block),
    where the pixel's ``sh * sw`` copies are summed."""
    spec = p.spec
    if not isinstance(spec, Upsample) or spec.mode != "nearest" or p.g.ndim != 4:
        return []
    sh, sw = spec.scale_factor
    n, c, h, w = p.x.shape
    blocks = p.g.reshape(n, c, h, sh, w, sw)
    for i in range(sh):
        for j in range(sw):
            if p.fits("input", blocks[:, :, :, i, :, j]):
                return [
                    f"input: the upstream gradient of one copy of each pixel (offset ({i}, {j}) in its {sh}x{sw} "
                    "block, a strided slice), where the gradients of all its copies are summed"
                ]
    return []


def group_count(p: Point, failing: list[str]) -> list[str]:
    """A group norm whose forward takes its statistics over other groups of channels: per
    channel (``num_groups=C``, an instance norm: a mean over the positions only) or over all
    channels (``num_groups=1``, a layer norm over ``(C, *)``), or another divisor of ``C``."""
    spec = p.spec
    if not isinstance(spec, GroupNorm) or "output" not in failing:
        return []
    c = spec.num_channels
    for groups in sorted({c, 1, *(d for d in range(2, c) if c % d == 0)} - {spec.num_groups}, key=lambda d: -d):
        got = _vjp(replace(spec, num_groups=groups), p)
        if got is None or not p.fits("output", got["output"]):
            continue
        what = {c: "each channel alone (an instance norm)", 1: "all channels together (a layer norm over (C, *))"}
        names = ", ".join(n for n in failing if n in got and p.fits(n, got[n]))
        return [
            f"{names}: the forward normalises over {what.get(groups, f'{groups} groups')}: it matches the reference "
            f"with num_groups={groups} (declared {spec.num_groups}): statistics over the wrong axes"
        ]
    return []


def align_corners(p: Point, failing: list[str]) -> list[str]:
    """A bilinear upsample whose forward follows the other ``align_corners`` rule: the
    reference at that rule reproduces the output (and the tensors named with it)."""
    from .conventions import declaration

    spec = p.spec
    if not isinstance(spec, Upsample) or spec.mode != "bilinear" or "output" not in failing:
        return []
    other = not spec.align_corners
    got = _vjp(replace(spec, align_corners=other), p)
    if got is None or not p.fits("output", got["output"]):
        return []
    names = ", ".join(n for n in failing if n in got and p.fits(n, got[n]))
    rule = (
        "corner pixels aligned: src = dst * (in - 1)/(out - 1)"
        if other
        else "half-pixel centres: src = (dst + 0.5)/s - 0.5"
    )
    return [
        f"{names}: the forward matches the reference with align_corners={other} ({rule}); if the code means it, "
        f"declare {declaration(spec, align_corners=other)}"
    ]


__all__ = ["align_corners", "group_count", "norm_terms", "upsample_copies"]
