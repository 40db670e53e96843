"""The PyTorch reference: a spec run functionally through ``torch.nn.functional`` in float64.

Layouts are PyTorch's own (NCHW data, OIHW conv weight, cross-correlation), so every layer
maps onto one ``torch.nn.functional`` call. Written independently of ``jax_ref``.

Per-layer upstream gradients come from adding a zero tensor ``eps[path]`` to every layer's
output and differentiating with respect to it: that works the same eagerly and under
``torch.compile`` (where intermediate tensors are not reachable by ``autograd.grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import spec as S

from . import torch_attention, torch_caption, torch_conv_norm, torch_embedding, torch_recurrent
from ._result import Result, prepare, prepare_cotangent, prepare_target
from .torch_losses import loss_value as _loss

Tensor = torch.Tensor
_DT = torch.float64


def _conv(layer: S.Conv2d, x: Tensor, p: Callable[[str], Tensor]) -> Tensor:
    (t, b), (l, r) = layer.pads((x.shape[2], x.shape[3]))
    if t or b or l or r:
        x = F.pad(x, (l, r, t, b))  # F.pad lists the last axis first
    bias = p("bias") if layer.bias else None
    return F.conv2d(x, p("weight"), bias, layer.stride, 0, layer.dilation, layer.groups)


def _maxpool(layer: S.MaxPool2d, x: Tensor, p: Any) -> Tensor:
    return F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation)


def _avgpool(layer: S.AvgPool2d, x: Tensor, p: Any) -> Tensor:
    return F.avg_pool2d(x, layer.kernel_size, layer.stride, layer.padding, count_include_pad=layer.count_include_pad)


def _batchnorm(layer: S.BatchNorm2d | S.BatchNorm1d, x: Tensor, p: Callable[[str], Tensor], state: dict) -> Tensor:
    # F.batch_norm updates the running buffers in place: hand it copies and report them
    mean, var = p("running_mean").detach().clone(), p("running_var").detach().clone()
    w, b = (p("weight"), p("bias")) if layer.affine else (None, None)
    if layer.over == "feature":  # every (c, h, w) its own statistics: a 1-D batch norm of the flattened map
        shape = mean.shape
        flat = lambda t: None if t is None else t.reshape(-1)  # noqa: E731
        y = F.batch_norm(
            x.reshape(x.shape[0], -1),
            mean.view(-1),
            var.view(-1),
            flat(w),
            flat(b),
            layer.training,
            layer.momentum,
            layer.eps,
        ).reshape(x.shape)
        mean, var = mean.view(shape), var.view(shape)
    else:
        y = F.batch_norm(x, mean, var, w, b, layer.training, layer.momentum, layer.eps)
    if layer.training:
        state["running_mean"], state["running_var"] = mean, var
    return y


def _dropout(layer: S.Dropout, x: Tensor, p: Callable[[str], Tensor]) -> Tensor:
    if not layer.inverted:  # scaled at test time, not in training
        return x * p("mask") if layer.training else x * (1.0 - layer.p)
    return x * p("mask") / (1.0 - layer.p) if layer.training else x


_LEAVES: dict[type, Callable[..., Tensor]] = {
    S.Conv2d: _conv,
    S.MaxPool2d: _maxpool,
    S.AvgPool2d: _avgpool,
    S.GlobalAvgPool2d: lambda L, x, p: x.mean(dim=(2, 3), keepdim=L.keepdims),
    S.ReLU: lambda L, x, p: F.relu(x),
    S.LeakyReLU: lambda L, x, p: F.leaky_relu(x, L.negative_slope),
    S.ELU: lambda L, x, p: F.elu(x, L.alpha),
    S.Sigmoid: lambda L, x, p: torch.sigmoid(x),
    S.Tanh: lambda L, x, p: torch.tanh(x),
    S.GELU: lambda L, x, p: F.gelu(x, approximate=L.approximate),
    S.Softmax: lambda L, x, p: F.softmax(x, dim=L.axis),
    S.Flatten: lambda L, x, p: torch.flatten(x, 1),
    S.Linear: lambda L, x, p: F.linear(x, p("weight"), p("bias") if L.bias else None),
    S.LayerNorm: lambda L, x, p: F.layer_norm(
        x,
        L.normalized_shape,
        p("weight") if L.elementwise_affine else None,
        p("bias") if L.elementwise_affine else None,
        L.eps,
    ),
    S.Dropout: _dropout,
    **torch_conv_norm.LEAVES,
    **torch_embedding.LEAVES,
    **torch_recurrent.LEAVES,
    **torch_attention.LEAVES,
}


class _Run:
    """One traversal of the spec: records every layer's input and output (plus eps)."""

    def __init__(self, params: Mapping[str, Tensor], eps: Mapping[str, Tensor] | None):
        self.params, self.eps = params, eps
        self.inputs: dict[str, Tensor] = {}
        self.outputs: dict[str, Tensor] = {}
        self.state: dict[str, Tensor] = {}

    def layer(self, layer: S.Layer, x: Tensor, path: str) -> Tensor:
        if path:
            self.inputs[path] = x
            self.outputs[path] = x  # reserves the pre-order position; replaced below
        if isinstance(layer, S.Sequential):
            y = self.chain(layer.layers, x, path)
        elif isinstance(layer, S.Residual):
            main = self.chain(layer.block, x, path)
            side = self.layer(layer.shortcut, x, S.join_path(path, layer.shortcut.name)) if layer.shortcut else x
            y = self.chain(layer.post, main + side, path)
        elif isinstance(layer, S.Captioner):
            y = torch_caption.captioner(self, layer, x, path)
        elif isinstance(layer, (S.BatchNorm2d, S.BatchNorm1d)):
            local: dict[str, Tensor] = {}
            y = _batchnorm(layer, x, lambda n: self.params[f"{path}.{n}"], local)
            self.state.update({f"{path}.{k}": v for k, v in local.items()})
        else:
            y = _LEAVES[type(layer)](layer, x, lambda n: self.params[f"{path}.{n}"])
        if path:
            if self.eps is not None:
                y = y + self.eps[path]
            self.outputs[path] = y
        return y

    def chain(self, layers: tuple[S.Layer, ...], x: Tensor, path: str) -> Tensor:
        for child in layers:
            x = self.layer(child, x, S.join_path(path, child.name))
        return x


def _t(a: np.ndarray, grad: bool = False) -> Tensor:
    # torch.tensor refuses negative strides (a flipped view such as w[:, :, ::-1, ::-1]);
    # ascontiguousarray keeps them on axes of length 1 (a 1x1 kernel), a copy never does
    return torch.tensor(
        np.array(a, order="C", copy=True),
        dtype=torch.int64 if np.issubdtype(a.dtype, np.integer) else _DT,
        requires_grad=grad,
    )


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


class TorchReference:
    """PyTorch reference for ``spec``; ``jit=True`` runs the pass through ``torch.compile``."""

    name = "torch"

    def __init__(self, spec: S.Layer, *, jit: bool = False) -> None:
        self.spec = spec
        self.jit = jit
        self._forward = self._pass
        if jit:
            self._forward = torch.compile(self._pass, dynamic=False)

    def _pass(
        self, params: dict[str, Tensor], x: Tensor, eps: dict[str, Tensor] | None
    ) -> tuple[Tensor, dict, dict, dict]:
        run = _Run(params, eps)
        y = run.layer(self.spec, x, self.spec.name)
        return y, run.inputs, run.outputs, run.state

    def _result(self, y: Tensor, inputs: dict, outputs: dict, state: dict) -> Result:
        return Result(
            output=_np(y),
            inputs={k: _np(v) for k, v in inputs.items()},
            outputs={k: _np(v) for k, v in outputs.items()},
            state={k: _np(v) for k, v in state.items()},
        )

    def forward(self, params: Mapping[str, Any], x: Any) -> Result:
        """Forward only. ``x``: input (batch first); ``params``: canonical name -> array."""
        p, xn, _ = prepare(self.spec, params, x)
        with torch.no_grad():
            return self._result(*self._forward({k: _t(v) for k, v in p.items()}, _t(xn), None))

    def vjp(self, params: Mapping[str, Any], x: Any, g: Any) -> Result:
        """Forward, then backward of ``<output, g>``: ``g`` has the output's shape."""
        p, xn, out_shape = prepare(self.spec, params, x)
        return self._backward(p, xn, lambda y: (y * _t(prepare_cotangent(g, out_shape))).sum(), None)

    def loss_vjp(self, params: Mapping[str, Any], x: Any, loss: S.Loss, target: Any) -> Result:
        """Forward, ``loss(output, target)``, and its gradient w.r.t. input, parameters and
        every layer's output. ``Result.cotangent`` is d loss / d output."""
        p, xn, out_shape = prepare(self.spec, params, x)
        t = _t(prepare_target(loss, target, out_shape))
        return self._backward(p, xn, lambda y: _loss(loss, y, t), loss)

    def _backward(self, p: dict, xn: np.ndarray, objective: Callable, loss: S.Loss | None) -> Result:
        trainable = S.named_params(self.spec, xn.shape)
        tp = {k: _t(v, grad=trainable[k].trainable) for k, v in p.items()}
        indices = S.index_layer(self.spec) is not None  # integer input: not differentiable, no input gradient
        tx = _t(xn, grad=not indices)
        shapes = S.layer_shapes(self.spec, xn.shape)
        eps = {k: torch.zeros(out, dtype=_DT, requires_grad=True) for k, (_, out) in shapes.items()}
        y, inputs, outputs, state = self._forward(tp, tx, eps)
        obj = objective(y)
        names = [k for k in tp if trainable[k].trainable]
        wrt = [*([] if indices else [tx]), y, *(tp[k] for k in names), *eps.values()]
        found = torch.autograd.grad(obj, wrt, allow_unused=True)
        grads: tuple[Tensor | None, ...] = (None, *found) if indices else found  # the input's slot stays first
        res = self._result(y, inputs, outputs, state)
        zero = lambda t, g: torch.zeros_like(t) if g is None else g  # noqa: E731 - unused input
        res.input_grad = None if indices else _np(zero(tx, grads[0]))
        res.cotangent = _np(zero(y, grads[1]))
        res.param_grads = {k: _np(zero(tp[k], g)) for k, g in zip(names, grads[2 : 2 + len(names)])}
        res.output_grads = {k: _np(zero(eps[k], g)) for k, g in zip(eps, grads[2 + len(names) :])}
        if loss is not None:
            res.loss = float(obj.detach())
        return res


__all__ = ["TorchReference"]
