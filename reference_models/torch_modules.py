"""The ``nn.Module`` s a spec needs beyond ``torch.nn``'s own: a convolution with asymmetric or
"same" padding, global average pooling, dropout with a fixed mask, batch norm per (c, h, w)
feature, and a residual block. :mod:`.torch_bridge` builds them (``to_module``) and reads
them back (``from_torch``); all work in whatever dtype their parameters have (float64 there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import spec as S


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose padding is computed per input from the spec (asymmetric or
    TensorFlow-style "same" padding, which ``nn.Conv2d`` cannot express)."""

    def __init__(self, layer: S.Conv2d) -> None:
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
        # the last two axes, like F.pad: an unbatched (C, H, W) input is a conv's input too
        (t, b), (l, r) = self.layer.pads((x.shape[-2], x.shape[-1]))
        return F.conv2d(F.pad(x, (l, r, t, b)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class GlobalAvgPool2d(nn.Module):
    """Mean over H, W: ``(N, C, H, W)`` -> ``(N, C)`` (``(N, C, 1, 1)`` with keepdims)."""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


class MaskedDropout(nn.Module):
    """Dropout with a fixed 0/1 ``mask`` buffer (full input shape): ``x * mask / (1 - p)``
    in training mode, the identity in eval mode; ``inverted=False``: ``x * mask`` in
    training, ``x * (1 - p)`` in eval mode."""

    mask: torch.Tensor

    def __init__(self, p: float, mask: torch.Tensor, inverted: bool = True) -> None:
        super().__init__()
        self.p, self.inverted = p, inverted
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.inverted:
            return x * self.mask if self.training else x * (1.0 - self.p)
        return x * self.mask / (1.0 - self.p) if self.training else x


class FeatureBatchNorm(nn.Module):
    """Batch norm with statistics and parameters per (c, h, w) feature (spec ``over="feature"``):
    a 1-D batch norm of the flattened map, parameters kept in the map's shape ``(C, H, W)``."""

    def __init__(self, layer: S.BatchNorm2d | S.BatchNorm1d, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.layer = layer
        if layer.affine:
            self.weight = nn.Parameter(torch.ones(feature_shape))
            self.bias = nn.Parameter(torch.zeros(feature_shape))
        self.register_buffer("running_mean", torch.zeros(feature_shape))
        self.register_buffer("running_var", torch.ones(feature_shape))
        self.train(layer.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = lambda t: t.view(-1) if t is not None else None  # noqa: E731 - views: updates land in the buffers
        w, b = (self.weight, self.bias) if self.layer.affine else (None, None)
        return F.batch_norm(
            x.reshape(x.shape[0], -1),
            flat(self.running_mean),
            flat(self.running_var),
            flat(w),
            flat(b),
            self.training,
            self.layer.momentum,
            self.layer.eps,
        ).reshape(x.shape)


class Residual(nn.Module):
    """``post(block(x) + shortcut(x))``; children are registered under their spec names."""

    def __init__(
        self,
        block: list[tuple[str, nn.Module]],
        shortcut: tuple[str, nn.Module] | None,
        post: list[tuple[str, nn.Module]],
    ) -> None:
        super().__init__()
        for name, m in [*block, *([shortcut] if shortcut else []), *post]:
            self.add_module(name, m)
        self.block_names = [n for n, _ in block]
        self.shortcut_name = shortcut[0] if shortcut else None
        self.post_names = [n for n, _ in post]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for n in self.block_names:
            y = self.get_submodule(n)(y)
        y = y + (self.get_submodule(self.shortcut_name)(x) if self.shortcut_name else x)
        for n in self.post_names:
            y = self.get_submodule(n)(y)
        return y


__all__ = ["FeatureBatchNorm", "GlobalAvgPool2d", "MaskedDropout", "Residual", "SamePadConv2d"]
