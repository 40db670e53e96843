"""Comparing an inference with the corpus's truth: specs ignoring layer names (recursing
into Sequential / Residual; nested Sequentials and a one-layer Sequential read as what they
contain), floats to 1e-3 relative, a stride-1 ``'same'`` padding read as explicit pads, a
softmax axis read modulo the input's rank; layouts on the fields that matter for the kinds
present (and, where two spellings are the same function, by that function: a 1x1 kernel's
H/W axes and flip, a flatten's plain-reshape-or-transpose, an elementwise layer's data order)."""

from __future__ import annotations

import math
from typing import Any

from harness import spec as S
from harness.adapters.layouts import Layout

ELEMENTWISE = ("ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh", "Dropout")


def _leaves(layer: S.Layer) -> list[S.Layer]:
    """Sequential children in order, nested Sequentials expanded."""
    if isinstance(layer, S.Sequential):
        return [leaf for child in layer.layers for leaf in _leaves(child)]
    return [layer]


def _key(layer: S.Layer, ndim: int | None, hw: tuple[int, int] | None = None) -> Any:
    """A name-free, normalised description of ``layer`` (nested dicts and lists); ``ndim`` /
    ``hw``: the rank / canonical (H, W) of a top-level layer's input, where known."""
    if isinstance(layer, S.Sequential):
        inner = _leaves(layer)
        return _key(inner[0], ndim, hw) if len(inner) == 1 else ["seq", [_key(c, None) for c in inner]]
    if isinstance(layer, S.Residual):
        short = None if layer.shortcut is None else _key(layer.shortcut, None)
        block = [_key(c, None) for c in _leaves(S.Sequential(list(layer.block)))]
        post = [_key(c, None) for c in _leaves(S.Sequential(list(layer.post)))] if layer.post else []
        return ["res", block, short, post]
    if isinstance(layer, S.LeakyReLU) and layer.negative_slope == 0:
        layer = S.ReLU(layer.name)  # the same function
    if isinstance(layer, S.AvgPool2d) and hw is not None and layer.kernel_size == hw and layer.padding == (0, 0):
        layer = S.GlobalAvgPool2d(layer.name, keepdims=True)  # one window over the whole map
    d = {k: v for k, v in layer.to_dict().items() if k != "name"}
    if isinstance(layer, S.BatchNorm1d) and ndim == 2:
        d["over"] = "channel"  # on (N, D) per channel and per feature are the same statistics
    if isinstance(layer, S.Conv2d) and layer.padding == "same" and layer.stride == (1, 1):
        tot = [dl * (k - 1) for k, dl in zip(layer.kernel_size, layer.dilation)]
        d["padding"] = [[t // 2, t - t // 2] for t in tot]
    if isinstance(layer, S.Softmax) and ndim is not None:
        d["axis"] = layer.axis % ndim
    return d


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-3)
    return a == b


def same_spec(truth: S.Layer, got: S.Layer, ndim: int | None = None, hw: tuple[int, int] | None = None) -> bool:
    """Equal up to layer names and equivalent spellings; ``ndim`` / ``hw``: the rank and the
    canonical (H, W) of a top-level layer's input (a softmax's negative axis, a batch norm's
    ``over`` on 2-D input, an average pool over the whole map)."""
    return _close(_key(truth, ndim, hw), _key(got, ndim, hw))


def _all_leaves(layer: S.Layer) -> list[S.Layer]:
    return [leaf for _, leaf in S.walk(layer) if not leaf.children()] or [layer]


def layout_fields(layer: S.Layer, truth: Layout, got: Layout, ndim: int) -> list[str]:
    """The layout fields on which ``got`` differs from ``truth`` in a way that changes what
    ``layer`` (a leaf, a span or a network) computes on an input of rank ``ndim``."""
    out = []
    leaves = _all_leaves(layer)
    data_matters = ndim == 4 and any(
        leaf.kind not in (*ELEMENTWISE, "Flatten", "Linear", "LayerNorm", "BatchNorm1d") for leaf in leaves
    )
    if data_matters and truth.data != got.data:
        out.append(f"data {got.data!r} (truth {truth.data!r})")
    for leaf in leaves:
        if isinstance(leaf, S.Conv2d):
            if leaf.kernel_size == (1, 1):
                if truth.kernel.replace("H", "").replace("W", "") != got.kernel.replace("H", "").replace("W", ""):
                    out.append(f"{leaf.name}: kernel {got.kernel!r} (truth {truth.kernel!r})")
            elif (truth.kernel, truth.flip) != (got.kernel, got.flip):
                out.append(
                    f"{leaf.name}: kernel {got.kernel!r} flip={got.flip} (truth {truth.kernel!r} flip={truth.flip})"
                )
        elif isinstance(leaf, S.Linear) and truth.linear != got.linear:
            out.append(f"{leaf.name}: linear {got.linear!r} (truth {truth.linear!r})")
        elif isinstance(leaf, S.Flatten):
            plain_t = (truth.data == "NCHW") == (truth.flatten == "CHW")
            plain_g = (got.data == "NCHW") == (got.flatten == "CHW")
            if plain_t != plain_g:
                out.append(
                    f"{leaf.name}: flatten {got.flatten!r} of {got.data} (truth {truth.flatten!r} of {truth.data})"
                )
    return sorted(set(out))


def disagreements(entry: Any, inference: Any) -> list[str]:
    """What an ``exact`` inference of ``entry`` gets wrong against the truth (empty: agrees).
    Specs: the whole inferred spec; layouts: the inference's data order (4-D inputs) and each
    inferred layer's layout on the fields its own kinds depend on."""
    truth_layout = entry.wrap.get("layout", Layout())
    ndim = len(entry.x_shape)
    hw = None
    if ndim == 4:
        hw = entry.x_shape[2:] if truth_layout.data == "NCHW" else entry.x_shape[1:3]
    out = []
    if not same_spec(entry.spec, inference.spec, ndim, hw):
        out.append(f"spec {inference.spec!r} (truth {entry.spec!r})")
    if inference.network is None:
        for li in inference.layers:
            out += layout_fields(li.spec, truth_layout, li.layout, ndim)
        return out
    if ndim == 4 and inference.layout.data != truth_layout.data:
        out.append(f"network data {inference.layout.data!r} (truth {truth_layout.data!r})")
    for li in inference.layers:
        out += [f"{li.name}: {d}" for d in layout_fields(li.spec, truth_layout, li.layout, ndim)]
    return out
