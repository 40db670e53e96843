"""Shared by the test_autograd_* files (issue 18): custom torch autograd code written the
way tutorials and from-scratch repos write it — the "Extending PyTorch" docs' LinearFunction
and its realistic mistakes, modules and a plain object calling a Function, Tanh, LayerNorm
and BatchNorm Functions used by several files — and the helpers that check it. Kept out of
the test files so that no test file imports another (custom ops are defined once)."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import harness

F64 = torch.float64
BROADCAST_NOTE = "torch's autograd summed it over the broadcast dimensions"


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def entry(fn, spec, shape, seed: int = 0, **kw):
    return harness.check_layer(fn, spec, input_shape=shape, seed=seed, **kw).layers[0]


def bad_tensors(e) -> list[str]:
    return [t.name for t in e.tensors if not t.ok]


def said(e, *words: str) -> bool:
    text = " ".join([e.message, *e.diagnosis]).lower()
    return all(w.lower() in text for w in words)


# --------------------------------------------------------------------------- Linear, docs style


class LinearFunction(Function):
    """The "Extending PyTorch" docs' LinearFunction, needs_input_grad and all."""

    @staticmethod
    def forward(ctx, input, weight, bias=None):
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


def linear_variant(name: str, forward=None, backward=None) -> type[Function]:
    """LinearFunction with its forward or backward (``(ctx, grad_output) -> grads``) replaced."""
    body = {}
    if forward is not None:
        body["forward"] = staticmethod(forward)
    if backward is not None:
        body["backward"] = staticmethod(backward)
    return type(name, (LinearFunction,), body)


def _saves_output(ctx, input, weight, bias):
    output = input.mm(weight.t()) + bias
    ctx.save_for_backward(output, weight, bias)  # the output saved where the input belongs
    return output


def _bias_unreduced(ctx, g):
    input, weight, _ = ctx.saved_tensors
    return g.mm(weight), g.t().mm(input), g  # (N, F) for a (F,) bias


def _bias_sum_wrong_axis(ctx, g):
    input, weight, _ = ctx.saved_tensors
    return g.mm(weight), g.t().mm(input), g.sum(1)  # right shape only because N == F


def _bias_mean(ctx, g):
    input, weight, _ = ctx.saved_tensors
    return g.mm(weight), g.t().mm(input), g.mean(0)  # "the loss is a mean, so the bias gradient is too"


def _no_bias_forward(ctx, input, weight, bias):
    ctx.save_for_backward(input, weight, bias)
    return input.mm(weight.t())  # forgot the bias


def _double_bias_forward(ctx, input, weight, bias):
    ctx.save_for_backward(input, weight, bias)
    return input.mm(weight.t()) + 2 * bias


def _double_bias_backward(ctx, g):
    input, weight, _ = ctx.saved_tensors
    return g.mm(weight), g.t().mm(input), 2 * g.sum(0)  # follows the wrong forward faithfully


LinearSavesOutput = linear_variant("LinearSavesOutput", forward=_saves_output)
LinearBiasUnreduced = linear_variant("LinearBiasUnreduced", backward=_bias_unreduced)
LinearBiasWrongAxis = linear_variant("LinearBiasWrongAxis", backward=_bias_sum_wrong_axis)
LinearBiasMean = linear_variant("LinearBiasMean", backward=_bias_mean)
LinearNoBias = linear_variant("LinearNoBias", forward=_no_bias_forward)
LinearDoubleBias = linear_variant("LinearDoubleBias", forward=_double_bias_forward, backward=_double_bias_backward)
LinearNoBiasMean = linear_variant("LinearNoBiasMean", forward=_no_bias_forward, backward=_bias_mean)


class LinearOnce(LinearFunction):
    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return LinearFunction.backward(ctx, grad_output)


def fc_params(i: int = 6, o: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    return {"weight": randn(o, i, seed=seed), "bias": randn(o, seed=seed + 1)}


FC = harness.Linear("fc", 6, 4)
SQUARE = harness.Linear("fc", 6, 6)


class FnLinear(nn.Module):
    """A module whose forward calls a Function: no backward of its own."""

    def __init__(self, fn=LinearFunction, i: int = 6, o: int = 4, names=("weight", "bias")) -> None:
        super().__init__()
        self.fn, self.names = fn, names
        setattr(self, names[0], nn.Parameter(randn(o, i, seed=1)))
        setattr(self, names[1], nn.Parameter(randn(o, seed=2)))

    def forward(self, x):
        return self.fn.apply(x, getattr(self, self.names[0]), getattr(self, self.names[1]))


# --------------------------------------------------------------------------- shared by several files


class InOutLinear(Function):
    """TensorFlow habits: W stored (in, out), y = x @ W + b."""

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return x @ W + b

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        return g @ W.T, x.T @ g, g.sum(0)


class Wrapper(nn.Module):
    """Parameters held by an inner nn.Linear; the outer forward calls a Function on them."""

    def __init__(self, fn=LinearFunction) -> None:
        super().__init__()
        self.fn, self.lin = fn, nn.Linear(6, 4, dtype=F64)
        with torch.no_grad():
            self.lin.weight.copy_(randn(4, 6, seed=1))

    def forward(self, x):
        return self.fn.apply(x, self.lin.weight, self.lin.bias)


class Dense:
    """A plain object holding torch tensors, forward only: autograd is its backward."""

    def __init__(self, fn=InOutLinear) -> None:
        self.fn, self.W, self.b = fn, randn(6, 4, seed=1), randn(4, seed=2)

    def forward(self, x):
        return self.fn.apply(x, self.W, self.b)


class TanhFn(Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class LayerNormFn(Function):
    """Fused-kernel style: returns (y, mean, rstd), the statistics marked non-differentiable."""

    @staticmethod
    def forward(ctx, x, w, b, eps):
        mean = x.mean(-1, keepdim=True)
        rstd = (x.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat, rstd, w)
        ctx.mark_non_differentiable(mean, rstd)
        return xhat * w + b, mean, rstd

    @staticmethod
    def backward(ctx, g, _gmean, _grstd):
        xhat, rstd, w = ctx.saved_tensors
        dxhat = g * w
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        return dx, (g * xhat).sum(0), g.sum(0), None


LN = harness.LayerNorm("ln", (8,))


def ln_params() -> dict[str, torch.Tensor]:
    return {"weight": 1 + 0.1 * randn(8, seed=10), "bias": randn(8, seed=11)}


def batch_norm_forward(ctx, x, w, b, running_mean, running_var, momentum, eps, unbiased=False):
    dims = (0, 2, 3)
    mean, var = x.mean(dims), x.var(dims, unbiased=unbiased)  # unbiased=True: torch.var's default
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * x.var(dims, unbiased=True))
    rstd = (var + eps).rsqrt()
    xhat = (x - mean.view(1, -1, 1, 1)) * rstd.view(1, -1, 1, 1)
    ctx.save_for_backward(xhat, rstd, w)
    return xhat * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


class BatchNormFn(Function):
    """Training-mode batch norm; the running statistics updated in place, as custom kernels do."""

    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, momentum, eps):
        return batch_norm_forward(ctx, x, w, b, running_mean, running_var, momentum, eps)

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, w = ctx.saved_tensors
        dims = (0, 2, 3)
        dxhat = g * w.view(1, -1, 1, 1)
        mean_terms = dxhat.mean(dims, keepdim=True) + xhat * (dxhat * xhat).mean(dims, keepdim=True)
        return rstd.view(1, -1, 1, 1) * (dxhat - mean_terms), (g * xhat).sum(dims), g.sum(dims), None, None, None, None


def bn_params() -> dict[str, torch.Tensor]:
    return {
        "weight": 1 + 0.1 * randn(3, seed=12),
        "bias": randn(3, seed=13),
        "running_mean": torch.zeros(3, dtype=F64),
        "running_var": torch.ones(3, dtype=F64),
    }
