"""A small torch network built from custom autograd Functions, each with a handwritten
backward, written the way people write them (PyTorch's "Extending PyTorch" tutorial for the
linear layer; im2col through ``F.unfold`` / ``F.fold`` for the convolution):

    x (N, 3, 6, 6) -> conv:  Conv2dFunction, im2col, 3 -> 4 channels, 3x3, padding 1
                   -> act1:  LeakyReLUFunction, negative slope 0.1
                   -> flat:  nn.Flatten (plain torch)                     -> (N, 144)
                   -> fc1:   LinearFunction 144 -> 16
                   -> norm:  LayerNormFunction over the 16 features
                   -> act2:  GELUTanhFunction (the tanh approximation)
                   -> fc2:   LinearFunction 16 -> 16                       -> (N, 16)

Each Function is used through a thin ``nn.Module`` holding its parameters, as in training
code. Nothing here knows about trigrad: this module is the "user's code" of the bundled
custom-autograd example and imports only torch (it is imported when the example is built).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

GELU_C = math.sqrt(2.0 / math.pi)  # the tanh approximation's constants
GELU_A = 0.044715

# --------------------------------------------------------------------------- the Functions


class LinearFunction(torch.autograd.Function):
    """y = x W^T + b; x (N, in), W (out, in), b (out,)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


class LeakyReLUFunction(torch.autograd.Function):
    """x where x > 0, else negative_slope * x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, negative_slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return torch.where(x > 0, x, x * negative_slope)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, grad_output, grad_output * ctx.negative_slope), None


class GELUTanhFunction(torch.autograd.Function):
    """0.5 x (1 + tanh(c (x + a x^3))): GELU's tanh approximation."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(GELU_C * (x + GELU_A * x**3))
        ctx.save_for_backward(x, t)
        return 0.5 * x * (1 + t)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        x, t = ctx.saved_tensors
        dt = (1 - t**2) * GELU_C * (1 + 3 * GELU_A * x**2)
        return grad_output * (0.5 * (1 + t) + 0.5 * x * dt)


class LayerNormFunction(torch.autograd.Function):
    """Normalise each row of x (N, D) (biased variance), then scale and shift: weight, bias (D,)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        rstd = 1 / torch.sqrt(var + eps)
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        xhat, rstd, weight = ctx.saved_tensors
        dxhat = grad_output * weight
        grad_input = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        return grad_input, (grad_output * xhat).sum(0), grad_output.sum(0), None


class Conv2dFunction(torch.autograd.Function):
    """A 2-D cross-correlation by im2col: F.unfold the input into columns (N, C*kh*kw, L),
    one matrix product with the weight (out, C, kh, kw) seen as (out, C*kh*kw); the
    backward folds the columns' gradient back with F.fold."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int) -> torch.Tensor:
        n, _, h, w = x.shape
        c_out, _, kh, kw = weight.shape
        cols = F.unfold(x, (kh, kw), padding=padding)
        out = weight.view(c_out, -1) @ cols + bias.view(1, -1, 1)
        ctx.save_for_backward(cols, weight)
        ctx.size, ctx.padding = (h, w), padding
        return out.view(n, c_out, h + 2 * padding - kh + 1, w + 2 * padding - kw + 1)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        cols, weight = ctx.saved_tensors
        c_out, _, kh, kw = weight.shape
        g = grad_output.flatten(2)  # (N, out, L)
        grad_weight = (g @ cols.transpose(1, 2)).sum(0).view_as(weight)
        grad_cols = weight.view(c_out, -1).t() @ g
        grad_input = F.fold(grad_cols, ctx.size, (kh, kw), padding=ctx.padding)
        return grad_input, grad_weight, g.sum((0, 2)), None


# --------------------------------------------------------------------------- the modules


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


class Linear(nn.Module):
    function: Any = LinearFunction

    def __init__(self, n_in: int, n_out: int, gen: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(_randn(gen, n_out, n_in) / math.sqrt(n_in))
        self.bias = nn.Parameter(0.1 * _randn(gen, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.weight, self.bias)


class LeakyReLU(nn.Module):
    function: Any = LeakyReLUFunction

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.negative_slope)


class GELUTanh(nn.Module):
    function: Any = GELUTanhFunction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x)


class LayerNorm(nn.Module):
    function: Any = LayerNormFunction

    def __init__(self, features: int, gen: torch.Generator, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(1 + 0.2 * _randn(gen, features))
        self.bias = nn.Parameter(0.2 * _randn(gen, features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.weight, self.bias, self.eps)


class Conv2d(nn.Module):
    function: Any = Conv2dFunction

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int, gen: torch.Generator) -> None:
        super().__init__()
        scale = 1 / math.sqrt(c_in * kernel * kernel)
        self.weight = nn.Parameter(scale * _randn(gen, c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(0.1 * _randn(gen, c_out))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.weight, self.bias, self.padding)


IN_CHANNELS, SIZE, CHANNELS, HIDDEN, SLOPE = 3, 6, 4, 16, 0.1
NAMES = ("conv", "act1", "flat", "fc1", "norm", "act2", "fc2")  # forward order


class CustomNet(nn.Module):
    """x (N, 3, 6, 6) -> (N, 16) through the Functions above, float64 parameters from
    ``seed``. ``functions`` replaces the Function of some layers by name (``{"fc1": MyLinear}``):
    the parameters are drawn the same way whatever the Functions."""

    def __init__(self, *, seed: int = 0, functions: dict[str, Any] | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = Conv2d(IN_CHANNELS, CHANNELS, 3, 1, gen)
        self.act1 = LeakyReLU(SLOPE)
        self.flat = nn.Flatten()
        self.fc1 = Linear(CHANNELS * SIZE * SIZE, HIDDEN, gen)
        self.norm = LayerNorm(HIDDEN, gen)
        self.act2 = GELUTanh()
        self.fc2 = Linear(HIDDEN, HIDDEN, gen)
        for name, function in (functions or {}).items():
            getattr(self, name).function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in NAMES:
            x = getattr(self, name)(x)
        return x


__all__ = [
    "NAMES",
    "Conv2dFunction",
    "CustomNet",
    "GELUTanhFunction",
    "LayerNormFunction",
    "LeakyReLUFunction",
    "LinearFunction",
]
