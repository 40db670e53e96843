"""Layers that compute with another framework's arrays, backward written by hand (no
autograd): torch tensors (a linear layer in float64, a conv through unfold/fold in float32),
jax.numpy (float32, immutable arrays: gradients kept as new arrays), CuPy (where installed).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


class TorchLinear:
    """weight (out, in) torch float64; y = x @ W.T + b."""

    transposed_dw = False

    def __init__(self, n_in, n_out, seed=0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / n_in ** 0.5
        self.bias = 0.1 * torch.randn(n_out, generator=g, dtype=torch.float64)

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, dy):
        self.grad_weight = self.x.T @ dy if self.transposed_dw else dy.T @ self.x  # bug variant: transposed
        self.grad_bias = dy.sum(dim=0)
        return dy @ self.weight


class TorchLinearTransposedDW(TorchLinear):
    transposed_dw = True


TORCH_LINEAR = NS(TorchLinear=TorchLinear)
TORCH_LINEAR_TRANSPOSED_DW = NS(TorchLinear=TorchLinearTransposedDW)


class TorchConv2d:
    """float32 conv through F.unfold / F.fold; weight (out, in, k, k), bias (out,)."""

    bias_first_example = False

    def __init__(self, in_channels, out_channels, k, stride=1, padding=0, seed=0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.weight = 0.3 * torch.randn(out_channels, in_channels, k, k, generator=g)
        self.bias = 0.1 * torch.randn(out_channels, generator=g)
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x):
        import torch.nn.functional as F

        n, _, h, w = x.shape
        self.in_size = (h, w)
        self.cols = F.unfold(x, self.k, padding=self.padding, stride=self.stride)  # (N, C*k*k, L)
        out = self.weight.reshape(len(self.weight), -1) @ self.cols + self.bias.reshape(1, -1, 1)
        ho = (h + 2 * self.padding - self.k) // self.stride + 1
        return out.reshape(n, len(self.weight), ho, -1)

    def backward(self, dy):
        import torch
        import torch.nn.functional as F

        dy = dy.reshape(dy.shape[0], dy.shape[1], -1)
        self.grad_weight = torch.einsum("nfl,nkl->fk", dy, self.cols).reshape(self.weight.shape)
        # bug variant: the bias gradient of the first example only
        self.grad_bias = dy[0].sum(dim=1) if self.bias_first_example else dy.sum(dim=(0, 2))
        dcols = self.weight.reshape(len(self.weight), -1).T @ dy
        return F.fold(dcols, self.in_size, self.k, padding=self.padding, stride=self.stride)


class TorchConv2dBiasFirstExample(TorchConv2d):
    bias_first_example = True


TORCH_CONV = NS(TorchConv2d=TorchConv2d)
TORCH_CONV_BIAS_FIRST_EXAMPLE = NS(TorchConv2d=TorchConv2dBiasFirstExample)


class JaxDense:
    """jax.numpy, float32 (jax's default); W (in, out)."""

    bias_mean = False

    def __init__(self, n_in, n_out, seed=0):
        import jax
        import jax.numpy as jnp

        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        self.W = jax.random.normal(k1, (n_in, n_out)) / jnp.sqrt(n_in)
        self.b = 0.1 * jax.random.normal(k2, (n_out,))

    def forward(self, x):
        import jax.numpy as jnp

        self.x = x
        return jnp.dot(x, self.W) + self.b

    def backward(self, dy):
        import jax.numpy as jnp

        self.dW = jnp.dot(self.x.T, dy)
        self.db = jnp.mean(dy, axis=0) if self.bias_mean else jnp.sum(dy, axis=0)  # bug variant: mean
        return jnp.dot(dy, self.W.T)


class JaxDenseBiasMean(JaxDense):
    bias_mean = True


JAX_DENSE = NS(JaxDense=JaxDense)
JAX_DENSE_BIAS_MEAN = NS(JaxDense=JaxDenseBiasMean)


class CupyDense:
    """CuPy arrays (GPU), W (in, out)."""

    def __init__(self, n_in, n_out, seed=0):
        import cupy as cp

        rng = np.random.default_rng(seed)
        self.W = cp.asarray(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        self.b = cp.asarray(0.1 * rng.standard_normal(n_out))

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


CUPY_DENSE = NS(CupyDense=CupyDense)
