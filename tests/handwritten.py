"""Handwritten layers shared by several test modules (written the way users write them)."""

from __future__ import annotations

import numpy as np


class ConvReLU:
    """One user layer computing conv (1x1, NCHW) then ReLU: a fused span of two spec layers."""

    def __init__(self, seed: int = 3):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(3, 2, 1, 1)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        self.z = np.einsum("nchw,oc->nohw", x, self.W[:, :, 0, 0]) + self.b[None, :, None, None]
        return np.maximum(self.z, 0)

    def backward(self, dy):
        dz = dy * (self.z > 0)
        self.dW = np.einsum("nohw,nchw->oc", dz, self.x)[:, :, None, None]
        self.db = dz.sum((0, 2, 3))
        return np.einsum("nohw,oc->nchw", dz, self.W[:, :, 0, 0])
