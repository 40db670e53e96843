"""Reading a custom module's forward for :func:`~reference_models.torch_bridge.from_torch`:
torch.fx traces it with its direct children kept as leaves, and :class:`Flow` reads the
nodes into spec layers (a chain becomes a Sequential, one ``a + b`` a Residual). The known
functions and tensor methods are listed here; modules are converted by the caller's
``convert``, so this module does not import the bridge back."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from harness import spec as S

from . import bridge_conv_norm, bridge_recurrent

if TYPE_CHECKING:
    import torch.fx as fx


def unsupported(m: nn.Module, path: str, why: str) -> S.SpecError:
    return S.SpecError(f"from_torch: module '{path or '<root>'}' ({type(m).__name__}) {why}")


def renamed(layer: S.Layer, name: str) -> S.Layer:
    """``layer`` under another name (rebuilt from its dict, so the spec checks it again)."""
    return cast(S.Layer, S.from_dict({**layer.to_dict(), "name": name}))  # a layer's dict gives a layer


FUNCTIONS: dict[Any, Any] = {
    F.relu: lambda n, a, k: S.ReLU(n),
    torch.relu: lambda n, a, k: S.ReLU(n),
    torch.sigmoid: lambda n, a, k: S.Sigmoid(n),
    torch.tanh: lambda n, a, k: S.Tanh(n),
    F.gelu: lambda n, a, k: S.GELU(n, k.get("approximate", "none")),
    torch.flatten: lambda n, a, k: S.Flatten(n),
    **bridge_conv_norm.FUNCTIONS,
}


def method(n: Any) -> S.Layer | None:
    """A tensor-method call in a traced forward (``x.mean((2, 3))``, ``x.flatten(1)``,
    ``x.view(x.size(0), -1)`` is not one: it needs shape arithmetic) as a spec layer."""
    args, kw = n.args[1:], n.kwargs
    if n.target in ("relu", "sigmoid", "tanh") and not args:
        return {"relu": S.ReLU, "sigmoid": S.Sigmoid, "tanh": S.Tanh}[n.target](n.name)
    if n.target == "flatten" and (args or (kw.get("start_dim", 0),))[0] == 1:
        return S.Flatten(n.name)
    if n.target == "mean":
        dims = args[0] if args else kw.get("dim")
        if isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]:
            keep = args[1] if len(args) > 1 else kw.get("keepdim", False)
            return S.GlobalAvgPool2d(n.name, keepdims=bool(keep))
    return None


def traced_nodes(m: nn.Module, path: str) -> list[fx.Node]:
    """The nodes of ``m``'s forward traced by torch.fx, its direct children kept as leaves."""
    import torch.fx as fx

    class Tracer(fx.Tracer):
        def is_leaf_module(self, mod: nn.Module, qualname: str) -> bool:
            return "." not in qualname

    try:
        graph = Tracer().trace(m)
    except Exception as e:  # fx cannot trace data-dependent control flow
        raise unsupported(m, path, f"could not be traced by torch.fx ({type(e).__name__}: {e})") from None
    return list(graph.nodes)


class Flow:
    """The data flow of a traced forward, read node by node: the spec layer of each node that
    is one, the ``nn.Identity`` calls to step over, and the one residual add (if any)."""

    def __init__(self, m: nn.Module, path: str, convert: Callable[[nn.Module, str, str], S.Layer]) -> None:
        self.m, self.path, self.convert = m, path, convert
        self.used: dict[str, int] = {}
        self.layers: dict[fx.Node, S.Layer] = {}
        self.skip: set[fx.Node] = set()  # nn.Identity calls (e.g. a stem without max-pool): no layer
        self.add: fx.Node | None = None

    def unique(self, base: str) -> str:
        # a parameter-free child applied twice (torchvision reuses one ReLU) gets a new name
        self.used[base] = self.used.get(base, 0) + 1
        return base if self.used[base] == 1 else f"{base}_{self.used[base]}"

    def read(self, n: fx.Node) -> None:
        m, path = self.m, self.path
        if n.op == "call_module" and isinstance(m.get_submodule(str(n.target)), nn.Identity):
            self.skip.add(n)
        elif n.op == "call_module":
            target = str(n.target)
            sub = m.get_submodule(target)
            new = self.unique(target)
            if new != target and any(True for _ in sub.parameters()):
                raise unsupported(m, path, f"applies child '{target}' twice (shared weights are not supported)")
            self.layers[n] = self.convert(sub, new, S.join_path(path, target))
        elif n.op == "call_function" and n.target in FUNCTIONS:
            if n.target is torch.flatten and (n.args[1:] or [n.kwargs.get("start_dim", 0)])[0] != 1:
                raise unsupported(m, path, "calls torch.flatten other than from dim 1")
            self.layers[n] = FUNCTIONS[n.target](self.unique(n.name), n.args, n.kwargs)
        elif n.op == "call_method" and (layer := method(n)) is not None:
            self.layers[n] = renamed(layer, self.unique(n.name))
        elif (item := bridge_recurrent.output_item(n, self.layers)) is not None:
            self.skip |= {n} if item == "alias" else set()  # out, _ = self.lstm(x): out is the layer's output
        elif n.op == "call_function" and n.target in (operator.add, torch.add, operator.iadd):
            if self.add is not None:
                raise unsupported(m, path, "adds more than once; only one residual add per module converts")
            self.add = n
        elif n.op not in ("placeholder", "output"):
            raise unsupported(m, path, f"uses {n.op} {n.target!r}, which the spec does not know")

    def chain(self, end: Any, start: Any) -> list[S.Layer]:
        """The layers from ``start`` (exclusive) to ``end`` (inclusive), following first arguments."""
        out: list[S.Layer] = []
        while end is not start:
            if end in self.skip:
                end = end.args[0]
                continue
            if end not in self.layers or len(end.args) < 1:
                raise unsupported(self.m, self.path, "has a data flow other than a chain with one residual add")
            out.append(self.layers[end])
            end = end.args[0]
        return out[::-1]

    def spec(self, name: str, x: fx.Node, result: Any) -> S.Layer:
        """The module as a Sequential (a plain chain from ``x`` to ``result``) or a Residual."""
        if self.add is None:
            return S.Sequential(self.chain(result, x), name=name)
        a, b = self.chain(self.add.args[0], x), self.chain(self.add.args[1], x)
        block, side = (a, b) if len(a) >= len(b) else (b, a)
        if len(side) > 1:
            raise unsupported(self.m, self.path, "has a shortcut of several modules; wrap them in one nn.Sequential")
        return S.Residual(name, block, side[0] if side else None, self.chain(result, self.add))
