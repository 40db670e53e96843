"""Which layout does the user's code actually use? Try every candidate that fits the shapes.

For each candidate :class:`Layout` the user's forward runs on one random input and its
output is compared with the PyTorch reference fed the user's own parameters read under
that layout. The candidate that reproduces the reference is the layout; if none does, the
closest one is reported with its error (then the forward itself is wrong, or the layer is
not what the spec says).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

from ..spec import Conv1d, Flatten, Layer, Linear, Sequential, _Recurrent, example_input_shape
from . import sequences
from .inputs import AXES, as_shape, canonical_shape, refusal
from .kernel_layouts import KERNELED, kernel_user_shape
from .layer import WrappedLayer, wrap_layer
from .layouts import KERNEL_ORDERS, Layout, LayoutError, data_from_user, user_data_shape
from .refs import AdapterError

# a forward "matches" when it agrees with the reference to this relative error (by dtype)
MATCH_TOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


@dataclass(frozen=True)
class Candidate:
    """One layout tried: its relative (norm-wise) output error, or why it could not run."""

    layout: Layout
    error: float
    reason: str = ""


@dataclass(frozen=True)
class Detection:
    """Result of :func:`detect_layout`: ``best`` and whether it ``matched`` within ``tol``."""

    layer: str
    best: Layout
    error: float
    matched: bool
    tol: float
    candidates: list[Candidate] = field(default_factory=list)

    def __str__(self) -> str:
        tried = f"{len(self.candidates)} candidate layouts tried"
        if self.error == np.inf:
            return (
                f"layer '{self.layer}': the code ran under none of the {len(self.candidates)} candidate layouts; "
                f"first failure: {self.candidates[0].reason}"
            )
        if self.matched:
            others = [c for c in self.candidates[1:] if c.error <= self.tol]
            also = f"; {len(others)} other(s) match too, e.g. {others[0].layout}" if others else ""
            return f"layer '{self.layer}': the code uses {self.best} (rel error {self.error:.1e}; {tried}){also}"
        return (
            f"layer '{self.layer}': no layout reproduces the reference ({tried}); closest is {self.best}, "
            f"off by {self.error:.2e} relative: the forward itself disagrees with the spec"
        )

    def preferred(self, declared: Layout, spec: Layer) -> list[Layout]:
        """What to declare instead of ``declared`` (nothing when it matches too): :func:`suggest`
        for each candidate that matched, distinct, the fewest changed fields first and, among
        as few, those keeping the declared data order first (a network's layers share it: a
        Flatten that matches under NCHW, and under NHWC with an HWC flatten, in an NHWC
        network needs ``flatten='HWC'``)."""
        out: list[Layout] = []
        for c in (c for c in self.candidates if c.error <= self.tol):
            better = suggest(declared, c.layout, spec)
            if better is None:  # the declared layout matches too: nothing to change
                return []
            if better not in out:
                out.append(better)

        def cost(layout: Layout) -> tuple[int, bool]:
            changed = [f for f in _fields(spec) if getattr(layout, f) != getattr(declared, f)]
            return len(changed), "data" in changed

        return sorted(out, key=cost)


def candidate_layouts(spec: Layer, params: dict[str, tuple[int, ...]] | None = None) -> list[Layout]:
    """Layouts worth trying for ``spec``: data order always; kernel order x flip for a conv
    (only orders whose shape fits the user's weight, when its shape is given); Linear
    orientation; flatten order for a Flatten."""
    datas: tuple[str, ...] = ("NCHW", "NHWC")
    if isinstance(spec, KERNELED):  # Conv2d, ConvTranspose2d, Conv1d
        want = spec.local_params(())["weight"].shape  # a kernel's shape does not depend on the input's
        orders: dict[str, str] = {}
        for k in KERNEL_ORDERS:  # a Conv1d drops the H: several orders are one, tried once
            if not params or "weight" not in params or kernel_user_shape(spec, "weight", want, k) == params["weight"]:
                orders.setdefault(k.replace("H", "") if isinstance(spec, Conv1d) else k, k)
        datas = ("NCHW",) if isinstance(spec, Conv1d) else datas  # 3-D (N, C, L) data has one order
        return [Layout(data=d, kernel=k, flip=f) for d, k, f in product(datas, orders.values(), (False, True))]
    if isinstance(spec, Linear):
        return [Layout(linear=o) for o in ("out_in", "in_out")]
    if isinstance(spec, Flatten):
        return [Layout(data=d, flatten=f) for d, f in product(datas, ("CHW", "HWC"))]
    if isinstance(spec, _Recurrent):  # gate order x weight orientation x sequence order
        return sequences.candidates(spec, params)
    return [Layout(data=d) for d in datas]


def detect_layout(
    layer: Any,
    spec: Layer | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    **wrap_kwargs: Any,
) -> Detection:
    """Find the layout ``layer`` uses. ``layer`` is a :class:`WrappedLayer` (its declared
    layout is ignored while trying) or a raw object-style layer (wrapped with
    ``wrap_kwargs``). Parameters are only read; everything is restored afterwards.

    ``input_shape``: the shape of the input the code takes, read in each candidate layout's
    own data order (``(N, H, W, C)`` for an NHWC candidate, ``(N, C, H, W)`` for an NCHW one;
    2-D as it is: the rule of :mod:`harness.adapters.inputs`); the code is handed the same
    random array under every candidate. Candidates the shape does not fit read their way are
    skipped (listed with the reason); an :class:`AdapterError` when it fits none. Without
    it, a small input that fits the spec is chosen (a Conv2d's or Linear's)."""
    wrapped = layer if isinstance(layer, WrappedLayer) else wrap_layer(layer, spec, **wrap_kwargs)
    spec = wrapped.spec if spec is None else spec
    if spec is None:
        raise ValueError("detect_layout needs the spec layer the code implements")
    rng = np.random.default_rng(seed)
    if input_shape is None:
        shape = example_input_shape(spec)
        if shape is None:
            raise ValueError(f"layer '{spec.name}': pass input_shape= to detect_layout for a {type(spec).__name__}")
        x = rng.normal(size=shape)
        return _detect(wrapped, spec, lambda cand: x)
    x_user = rng.normal(size=as_shape(input_shape, "input_shape"))

    def read(cand: Layout) -> np.ndarray | str:  # the user's array in the candidate's data order, or why not
        why = refusal(spec, canonical_shape(x_user.shape, cand.data))
        return (
            data_from_user(x_user, cand)
            if why is None
            else (f"input_shape {x_user.shape} read as {cand.data} {AXES[cand.data]} does not fit: {why}")
        )

    found = _detect(wrapped, spec, read)
    if all(c.reason.startswith("input_shape ") for c in found.candidates):
        reasons = sorted({c.reason for c in found.candidates})
        raise AdapterError(
            f"detect_layout: layer '{wrapped.name}': the input_shape fits no candidate layout: " + "; ".join(reasons)
        )
    return found


def detect_canonical(wrapped: WrappedLayer, x_shape: tuple[int, ...], seed: int = 0) -> Detection:
    """:func:`detect_layout` at a canonical input shape (NCHW for every candidate): what the
    harness itself asks when a check finds a declared layout suspicious."""
    if wrapped.spec is None:
        raise ValueError("detect_layout needs the spec layer the code implements")
    x = np.random.default_rng(seed).normal(size=x_shape)
    return _detect(wrapped, wrapped.spec, lambda cand: x)


def _detect(wrapped: WrappedLayer, spec: Layer, x_for: Callable[[Layout], np.ndarray | str]) -> Detection:
    """Run ``wrapped`` under every candidate layout on ``x_for(candidate)`` (canonical; a
    string is why the candidate is skipped) and rank the candidates by output error."""
    from reference_models import build

    user_shapes = {k: tuple(np.shape(wrapped._get_user(k))) for k in wrapped._param_names()}
    ref = build("torch", Sequential([spec]))
    tol = MATCH_TOL.get(wrapped.dtype, 1e-4)
    declared = wrapped.layout
    results = []
    with wrapped.preserved():
        try:
            for cand in candidate_layouts(spec, user_shapes):
                x = x_for(cand)
                if isinstance(x, str):
                    results.append(Candidate(cand, np.inf, x))
                    continue
                wrapped.layout = cand
                try:
                    y = wrapped.forward(x)
                    params = {f"{spec.name}.{k}": v for k, v in wrapped.get_params().items()}
                    y_ref = ref.forward(params, x).output
                except Exception as e:  # this candidate does not even fit: record why
                    results.append(Candidate(cand, np.inf, f"{type(e).__name__}: {str(e).splitlines()[0]}"))
                    continue
                err = float(np.linalg.norm(y - y_ref) / max(np.linalg.norm(y_ref), 1e-300))
                results.append(Candidate(cand, err))
        finally:
            wrapped.layout = declared
    results.sort(key=lambda c: c.error)
    best = results[0]
    return Detection(wrapped.name, best.layout, best.error, best.error <= tol, tol, results)


def _fields(spec: Layer) -> tuple[str, ...]:
    """The :class:`Layout` fields :func:`candidate_layouts` varies for ``spec``."""
    if isinstance(spec, KERNELED):
        return ("data", "kernel", "flip")
    if isinstance(spec, Linear):
        return ("linear",)
    if isinstance(spec, Flatten):
        return ("data", "flatten")
    if isinstance(spec, _Recurrent):
        return sequences.fields(spec)
    return ("data",)


def suggest(declared: Layout, found: Layout, spec: Layer) -> Layout | None:
    """``declared`` with the fields that matter for ``spec`` taken from ``found`` (the rest —
    a network-wide layout's ``linear`` on a conv, say — kept), or None when they already agree."""
    changes = {f: getattr(found, f) for f in _fields(spec) if getattr(found, f) != getattr(declared, f)}
    return replace(declared, **changes) if changes else None


def layout_conflict(wrapped: WrappedLayer, x_shape: tuple[int, ...], exc: BaseException) -> LayoutError | None:
    """After the user's code raised ``exc`` under its declared layout on a canonical input of
    ``x_shape``: a :class:`LayoutError` naming the declared layout, the shapes and the layout
    under which the code runs and reproduces the reference, when there is one and the
    declared layout is not among those that match (the declaration, not the code, is then
    wrong); else None (detection that cannot run gives None too)."""
    spec = wrapped.spec
    if spec is None:  # nothing to detect against (detect_canonical would raise)
        return None
    try:
        found = detect_canonical(wrapped, x_shape)
    except Exception:  # detection is a second opinion: a layer it cannot run under other layouts gets none
        return None
    matching = [c.layout for c in found.candidates if c.error <= found.tol]
    better = [suggest(wrapped.layout, m, spec) for m in matching]
    if not matching or None in better:
        return None
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return LayoutError(
        f"layer '{wrapped.name}': the code raised {type(exc).__name__}{': ' + reason[:160] if reason else ''} when given "
        f"its input as {user_data_shape(x_shape, wrapped.layout)} in the declared {wrapped.layout} (canonical "
        f"{tuple(x_shape)}); under {found.preferred(wrapped.layout, spec)[0]} it runs and reproduces the reference: "
        "declare that layout"
    )


__all__ = [
    "Candidate",
    "Detection",
    "candidate_layouts",
    "detect_canonical",
    "detect_layout",
    "layout_conflict",
    "suggest",
]
