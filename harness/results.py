"""What a check finds, as plain data: per tensor, per layer, per report.

Everything here is numbers and strings, so ``Report.to_dict()`` is JSON-ready and other
tools (the CLI, the pytest plugin, snapshots) build on it. Rendering beyond the plain
``str(report)`` table lives in :mod:`harness.report`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "trigrad.report/1"  # what to_dict() writes: harness/report/schema.json describes it
ERROR_MAP_LIMIT = 20_000


def error_map(user: Any, ref: Any) -> list | None:
    """The ``TensorResult.error_map`` of ``user`` against ``ref`` (same shape), or None when
    the tensor is a scalar or vector or larger than :data:`ERROR_MAP_LIMIT`."""
    import numpy as np

    u, r = np.asarray(user, np.float64), np.asarray(ref, np.float64)
    if u.shape != r.shape or u.ndim < 2 or u.size > ERROR_MAP_LIMIT:
        return None
    scale = float(np.abs(r).max()) or 1.0
    err = np.abs(u - r) / scale
    err = np.where(np.isfinite(err), err, np.finfo(np.float64).max)
    return np.vectorize(lambda v: float(f"{v:.3g}"))(err).tolist()


@dataclass
class FDSummary:
    """Finite differences of the user's own forward against the user's backward, for one
    tensor: ``probes`` used, ``kinks`` discarded (the activation pattern changed), the worst
    relative disagreement, and ``consistent`` (None: the probes were not reliable). ``joint``:
    the figures are those of probes along the input and every parameter at once, which
    agreed; a disagreement is always followed up tensor by tensor."""

    probes: int
    kinks: int
    worst: float
    consistent: bool | None
    joint: bool = False  # probed along directions over the input and every parameter at once


@dataclass
class TensorResult:
    """One compared tensor: the layer's ``output`` (forward), its ``input`` gradient, or a
    parameter gradient (``weight``, ``bias`` ...). Errors are norm-wise relative (with a
    floor for tensors that are truly zero); ``worst_*`` locate the worst element."""

    name: str
    side: str  # "forward" or "backward"
    shape: tuple[int, ...]
    tolerance: float
    error_torch: float
    error_jax: float
    worst_index: tuple[int, ...]
    worst_user: float
    worst_ref: float
    ok: bool
    fd: FDSummary | None = None
    # for a failing tensor of rank >= 2 and at most ERROR_MAP_LIMIT elements: |user - torch|
    # per element over max|torch|, 3 significant digits, nested like the tensor (e.g. a
    # conv weight's (out, in, kh, kw)), so a border or channel pattern can be drawn
    error_map: list | None = None


@dataclass
class Boundary:
    """One layer as the user's own network pass saw it (the ``(network)`` entry): how many
    times the network called its forward and backward, and the relative error of the input,
    output and upstream gradient it saw against the reference (None: not recorded)."""

    name: str
    forward_calls: int
    backward_calls: int
    input_error: float | None
    output_error: float | None
    grad_error: float | None


@dataclass
class LayerResult:
    """The verdict for one layer (``pass``, ``forward``, ``backward``, ``both``,
    ``inconclusive``, ``reference`` or ``error``) and the figures behind it."""

    name: str
    kind: str
    verdict: str
    dtype: str
    tensors: list[TensorResult] = field(default_factory=list)
    refs_error: float = 0.0  # torch vs jax, worst over every compared tensor
    message: str = ""
    downstream_of: str | None = None  # in a network: fails only because of this earlier layer
    diagnosis: list[str] = field(default_factory=list)
    boundaries: list[Boundary] = field(default_factory=list)  # the (network) entry's layer boundaries
    # for the verdict "error": which side of the user's code raised or returned garbage —
    # "forward", "backward", or "setup" (building or wrapping the layer, its parameters as
    # given); None when no user code failed (the reference's values reaching it hold NaN/Inf)
    error_side: str | None = None
    # why no input gradient is compared: "not computed" (the code is declared input_grad=False)
    # or "not differentiable" (the input is integer indices, see harness.index_input); None: it is
    input_gradient: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"


@dataclass
class Report:
    """The result of a check. ``ok``: every layer passed; ``first_failure``: the layer to fix
    first (earliest in forward order whose own check failed), or None."""

    seed: int
    layers: list[LayerResult] = field(default_factory=list)
    # set when the spec was inferred from the code (harness.inference.api.report_note): status, lines, python
    inferred: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(layer.ok for layer in self.layers)

    @property
    def first_failure(self) -> str | None:
        for layer in self.layers:
            if not layer.ok and layer.downstream_of is None:
                return layer.name
        return None

    def layer(self, name: str) -> LayerResult:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer '{name}' in this report; layers: {[l.name for l in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """Every figure, JSON-ready."""
        return {
            "schema": SCHEMA,
            "seed": self.seed,
            "ok": self.ok,
            "first_failure": self.first_failure,
            "layers": [{**asdict(layer), "ok": layer.ok} for layer in self.layers],
            **({"inferred": self.inferred} if self.inferred is not None else {}),
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON: a non-finite number (an infinite relative error
        against a zero reference, a figure not computed) is written as ``null``."""
        return json.dumps(_finite(self.to_dict()), default=_jsonable, allow_nan=False, **kwargs)

    def __str__(self) -> str:
        from .report.safe_text import visible  # user strings may hold escape sequences: shown, not sent

        def name(value: Any) -> str:
            return visible(value, one_line=True)

        head = f"{'layer':<22} {'verdict':<13} {'tensor':<10} {'vs torch':>10} {'vs jax':>10} {'tol':>9} {'fd':>10}"
        lines = [
            f"trigrad report (seed {self.seed}): "
            + ("all layers pass" if self.ok else f"first failure: {name(self.first_failure)}"),
            head,
        ]
        for layer in self.layers:
            first = True
            rows: list[TensorResult | None] = [*layer.tensors] or [None]  # a layer without tensors: its message
            for t in rows:
                shown = (
                    f"{layer.verdict} ({layer.error_side})"
                    if layer.verdict == "error" and layer.error_side
                    else layer.verdict
                )
                label = f"{name(layer.name):<22} {name(shown):<13}" if first else " " * 36
                first = False
                if t is None:
                    lines.append(f"{label} {visible(layer.message)}")
                    continue
                fd = "-" if t.fd is None else ("kinks" if t.fd.consistent is None else f"{t.fd.worst:.1e}")
                lines.append(
                    f"{label} {name(t.name):<10} {t.error_torch:>10.2e} {t.error_jax:>10.2e} "
                    f"{t.tolerance:>9.1e} {fd:>10}"
                )
            if layer.message and layer.tensors:
                lines.append(" " * 36 + visible(layer.message))
            for d in layer.diagnosis:
                lines.append(" " * 36 + f"diagnosis: {visible(d)}")
        if self.inferred is not None:  # the spec came from inference: say so, and how sure it is
            lines.append(f"spec inferred from the code ({self.inferred['status']}):")
            lines += [f"  {visible(line)}" for line in self.inferred["layers"]]
        return "\n".join(lines)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


__all__ = ["ERROR_MAP_LIMIT", "SCHEMA", "Boundary", "FDSummary", "error_map", "LayerResult", "Report", "TensorResult"]
