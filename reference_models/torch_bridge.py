"""Both directions between a spec and real PyTorch modules.

* :func:`to_module` hands the reference out as an ``nn.Module`` carrying the user's weights
  (float64), so a port can be used in the PyTorch ecosystem. Its ``state_dict`` keys are
  exactly the canonical parameter names.
* :func:`from_torch` turns an ``nn.Sequential``, or a module built from supported layers
  (including torchvision-style residual blocks written as ``out = relu(f(x) + down(x))``),
  into ``(spec, params)``, so someone porting a torch model to their own code starts from it.

Round trip: ``from_torch(to_module(spec, params))`` gives back ``spec`` and ``params``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from harness import spec as S

from . import bridge_attention, bridge_caption, bridge_conv_norm, bridge_embedding, bridge_recurrent
from .bridge_trace import Flow, traced_nodes
from .bridge_trace import renamed as _renamed
from .bridge_trace import unsupported as _unsupported
from .torch_modules import FeatureBatchNorm, GlobalAvgPool2d, MaskedDropout, Residual, SamePadConv2d

if TYPE_CHECKING:
    pass

# --------------------------------------------------------------------------- spec -> module


# the layers whose module is built from the spec's hyperparameters alone
_SIMPLE: dict[type[S.Layer], Callable[[Any], nn.Module]] = {
    S.MaxPool2d: lambda L: nn.MaxPool2d(L.kernel_size, L.stride, L.padding, L.dilation),
    S.AvgPool2d: lambda L: nn.AvgPool2d(L.kernel_size, L.stride, L.padding, count_include_pad=L.count_include_pad),
    S.GlobalAvgPool2d: lambda L: GlobalAvgPool2d(L.keepdims),
    S.ReLU: lambda L: nn.ReLU(),
    S.LeakyReLU: lambda L: nn.LeakyReLU(L.negative_slope),
    S.ELU: lambda L: nn.ELU(L.alpha),
    S.Sigmoid: lambda L: nn.Sigmoid(),
    S.Tanh: lambda L: nn.Tanh(),
    S.GELU: lambda L: nn.GELU(L.approximate),
    S.Softmax: lambda L: nn.Softmax(L.axis),
    S.Flatten: lambda L: nn.Flatten(),
    S.Linear: lambda L: nn.Linear(L.in_features, L.out_features, L.bias),
    S.LayerNorm: lambda L: nn.LayerNorm(L.normalized_shape, L.eps, L.elementwise_affine),
    **bridge_conv_norm.TO_MODULE,
    **bridge_embedding.TO_MODULE,
}


def _module(layer: S.Layer, path: str, params: Mapping[str, np.ndarray]) -> nn.Module:
    """The module computing ``layer`` at ``path``, containers with their children (named as
    in the spec, so ``state_dict`` keys are the canonical names); ``params`` by canonical
    name, read for a dropout's mask and a feature batch norm's statistics' shape."""

    def child(c: S.Layer) -> tuple[str, nn.Module]:
        return c.name, _module(c, S.join_path(path, c.name), params)

    if isinstance(layer, S.Sequential):
        return nn.Sequential(OrderedDict(child(c) for c in layer.layers))
    if isinstance(layer, S.Residual):
        return Residual(
            [child(c) for c in layer.block],
            child(layer.shortcut) if layer.shortcut else None,
            [child(c) for c in layer.post],
        )
    if isinstance(layer, S.Conv2d):
        return _conv(layer)
    if type(layer) in bridge_attention.MODULES:
        return bridge_attention.MODULES[type(layer)](layer, path, params)
    if isinstance(layer, (S.Dropout, S.BatchNorm2d, S.BatchNorm1d)):
        return _stateful(layer, path, params)
    if isinstance(layer, S._Recurrent):
        return bridge_recurrent.module(layer, path, params)
    if isinstance(layer, S.Captioner):
        return bridge_caption.module(layer, path, params, _module)
    return _SIMPLE[type(layer)](layer)


def _conv(layer: S.Conv2d) -> nn.Module:
    """``nn.Conv2d`` for symmetric or no padding; :class:`SamePadConv2d` for "same" and
    asymmetric padding, which ``nn.Conv2d`` cannot express."""
    pad = layer.padding
    if pad == "valid":
        padding: int | tuple[int, int] = 0
    elif isinstance(pad, tuple) and pad[0][0] == pad[0][1] and pad[1][0] == pad[1][1]:
        padding = (pad[0][0], pad[1][0])
    else:
        return SamePadConv2d(layer)
    return nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        padding,
        layer.dilation,
        layer.groups,
        layer.bias,
    )


def _stateful(
    layer: S.Dropout | S.BatchNorm2d | S.BatchNorm1d, path: str, params: Mapping[str, np.ndarray]
) -> nn.Module:
    """A dropout (its mask from ``params``) or a batch norm, in the train / eval mode its spec says."""
    if isinstance(layer, S.Dropout):
        if not layer.training:
            return MaskedDropout(layer.p, torch.ones(0), layer.inverted).eval()
        return MaskedDropout(layer.p, torch.as_tensor(params[f"{path}.mask"]), layer.inverted)
    if layer.over == "feature":
        return FeatureBatchNorm(layer, tuple(np.shape(params[f"{path}.running_mean"])))
    cls = nn.BatchNorm2d if isinstance(layer, S.BatchNorm2d) else nn.BatchNorm1d
    return cls(layer.num_features, layer.eps, layer.momentum, layer.affine).train(layer.training)


def to_module(spec: S.Layer, params: Mapping[str, Any]) -> nn.Module:
    """An ``nn.Module`` computing ``spec`` in float64 with ``params`` loaded.

    ``state_dict()`` keys equal the canonical names (recurrent layers keep PyTorch's
    ``weight_ih_l0`` ...: see :mod:`.bridge_recurrent`); batch-norm and dropout modules are put
    in the train/eval mode their spec says (so do not call ``.train()`` / ``.eval()`` on the
    whole module unless you mean to change that). A training-mode dropout carries its mask
    and so only accepts inputs of the mask's shape.
    """
    root = _module(spec, spec.name, params)
    if spec.name:  # a named root owns names like "features.0.weight": keep that prefix
        root = nn.Sequential(OrderedDict([(spec.name, root)]))
    root = root.double()
    params = {**params, **bridge_recurrent.torch_values(root, params)}  # recurrent modules' own names
    state = root.state_dict()
    expected = [k for k in state if not k.endswith("num_batches_tracked")]
    missing = [k for k in expected if k not in params]
    if missing:
        raise S.SpecError(f"to_module: no values given for parameters {missing}")
    with torch.no_grad():
        for k in expected:
            state[k].copy_(torch.as_tensor(np.asarray(params[k], dtype=np.float64)))
    return root


# --------------------------------------------------------------------------- module -> spec

_ACTIVATIONS: dict[type, Any] = {
    nn.ReLU: lambda m, n: S.ReLU(n),
    nn.LeakyReLU: lambda m, n: S.LeakyReLU(n, m.negative_slope),
    nn.ELU: lambda m, n: S.ELU(n, m.alpha),
    nn.Sigmoid: lambda m, n: S.Sigmoid(n),
    nn.Tanh: lambda m, n: S.Tanh(n),
    nn.GELU: lambda m, n: S.GELU(n, m.approximate),
    nn.Softmax: lambda m, n: S.Softmax(n, -1 if m.dim is None else m.dim),
}


_FAMILIES: dict[type, Callable[[Any, str, str], S.Layer]] = {
    **bridge_conv_norm.FROM_MODULE,
    **bridge_embedding.FROM_MODULE,
    **bridge_attention.FROM_MODULE,
    **bridge_caption.FROM_MODULE,
}


def _pool(m: nn.Module, name: str, path: str) -> S.Layer | None:
    """The spec of a pooling module, or None if ``m`` is not one."""
    if type(m) is nn.MaxPool2d:
        if m.ceil_mode or m.return_indices:
            raise _unsupported(m, path, "uses ceil_mode or return_indices, which the spec does not support")
        return S.MaxPool2d(name, m.kernel_size, m.stride, m.padding, m.dilation)
    if type(m) is nn.AvgPool2d:
        if m.ceil_mode or m.divisor_override:
            raise _unsupported(m, path, "uses ceil_mode or divisor_override, which the spec does not support")
        return S.AvgPool2d(name, m.kernel_size, m.stride, m.padding, m.count_include_pad)
    if type(m) is nn.AdaptiveAvgPool2d:
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        if tuple(size) != (1, 1):
            raise _unsupported(m, path, f"has output_size={m.output_size}; only 1 (global pooling) is supported")
        return S.GlobalAvgPool2d(name, keepdims=True)
    if isinstance(m, GlobalAvgPool2d):
        return S.GlobalAvgPool2d(name, m.keepdims)
    return None


def _leaf(m: nn.Module, name: str, path: str) -> S.Layer | None:
    """The spec of a leaf module, or None if ``m`` is not a known leaf."""
    t = type(m)
    if isinstance(m, bridge_recurrent.TORCH_TYPES):
        return bridge_recurrent.spec_of(m, name, path)
    if t in _ACTIVATIONS:
        return _ACTIVATIONS[t](m, name)
    if t in _FAMILIES:  # the families with a bridge module of their own: (module, name, path) -> spec
        return _FAMILIES[t](m, name, path)
    if isinstance(m, SamePadConv2d):
        return m.layer if m.layer.name == name else _renamed(m.layer, name)
    if type(m) is nn.Conv2d:
        return bridge_conv_norm.from_conv(S.Conv2d, m, name, path)
    if type(m) is nn.Linear:
        return S.Linear(name, m.in_features, m.out_features, m.bias is not None)
    if (pool := _pool(m, name, path)) is not None:
        return pool
    if type(m) is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(m, path, "flattens other than (start_dim=1, end_dim=-1)")
        return S.Flatten(name)
    if type(m) is nn.BatchNorm2d or type(m) is nn.BatchNorm1d:
        if not m.track_running_stats:
            raise _unsupported(m, path, "has track_running_stats=False; the spec needs running statistics")
        cls = S.BatchNorm2d if type(m) is nn.BatchNorm2d else S.BatchNorm1d
        momentum = 0.1 if m.momentum is None else m.momentum
        return cls(name, m.num_features, m.eps, momentum, m.affine, m.training)
    if type(m) is nn.LayerNorm:
        if getattr(m, "bias", None) is None and m.elementwise_affine:
            raise _unsupported(m, path, "has a weight but no bias, which the spec does not support")
        return S.LayerNorm(name, tuple(m.normalized_shape), m.eps, m.elementwise_affine)
    if isinstance(m, FeatureBatchNorm):
        return _renamed(m.layer, name)
    if isinstance(m, MaskedDropout):
        return S.Dropout(name, m.p, m.training, m.inverted)
    if type(m) is nn.Dropout:
        # a random torch mask cannot be reproduced: an eval-mode dropout is exact
        return S.Dropout(name, m.p, training=False)
    return None


def _convert(m: nn.Module, name: str, path: str) -> S.Layer:
    leaf = _leaf(m, name, path)
    if leaf is not None:
        return leaf
    if isinstance(m, nn.Sequential):
        kids = [_convert(c, n, S.join_path(path, n)) for n, c in m.named_children() if not isinstance(c, nn.Identity)]
        return S.Sequential(kids, name=name)
    if isinstance(m, Residual):
        kid = lambda n: _convert(m.get_submodule(n), n, S.join_path(path, n))  # noqa: E731
        return S.Residual(
            name,
            [kid(n) for n in m.block_names],
            kid(m.shortcut_name) if m.shortcut_name else None,
            [kid(n) for n in m.post_names],
        )
    if not list(m.children()):
        raise _unsupported(m, path, "is not a layer the spec knows")
    return _trace(m, name, path)


def _trace(m: nn.Module, name: str, path: str) -> S.Layer:
    """Convert a custom module by tracing its forward with torch.fx, its direct children
    kept as leaves: a chain becomes a Sequential, one ``a + b`` a Residual."""
    nodes = traced_nodes(m, path)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise _unsupported(m, path, f"takes {len(placeholders)} inputs; only single-input modules convert")
    flow = Flow(m, path, _convert)
    for n in nodes:
        flow.read(n)
    return flow.spec(name, placeholders[0], next(n for n in nodes if n.op == "output").args[0])


def from_torch(module: nn.Module) -> tuple[S.Layer, dict[str, np.ndarray]]:
    """``(spec, params)`` for a torch module: the spec root is a ``Sequential`` named ``""``
    (a bare leaf module becomes a one-layer Sequential with its layer named ``"0"``), and
    ``params`` maps canonical names (= the module's ``state_dict`` keys, without
    ``num_batches_tracked``; a recurrent module's ``weight_ih_l0`` as ``weight_ih``) to float64
    arrays (see :mod:`.bridge_recurrent`: the spec is batch-first). Raises ``SpecError`` naming the module path
    of anything the spec cannot express."""
    leaf = _leaf(module, "0", "")
    if leaf is not None:
        spec: S.Layer = S.Sequential([leaf])
        state = {f"0.{k}": v for k, v in bridge_attention.state_dict(module).items()}
    else:
        spec = _convert(module, "", "")
        state = bridge_attention.state_dict(module)  # keys the spec spells otherwise renamed
    params = {
        k: v.detach().cpu().double().numpy().copy() for k, v in state.items() if not k.endswith("num_batches_tracked")
    }
    return spec, bridge_recurrent.canonical_values(module, params, "0" if leaf is not None else "")


__all__ = [
    "FeatureBatchNorm",
    "GlobalAvgPool2d",
    "MaskedDropout",
    "Residual",
    "SamePadConv2d",
    "from_torch",
    "to_module",
]
