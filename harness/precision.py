"""Tolerances for low-precision code, measured from the framework's own error at that precision.

A float16 or bfloat16 layer cannot be judged by a float64 threshold, nor by a fixed table
(``64 * eps * sqrt(K)`` is ~0.5 for float16 at K = 64: blind). So the check runs the torch
reference *at the user's dtype and device* — the spec as an ``nn.Module``
(:func:`reference_models.torch_bridge.to_module`) cast with ``.to(dtype, device)``, fed the
same input, parameters and upstream gradient the user's code is handed (the float64 values
rounded to that dtype) — and measures each compared tensor's relative error against the
float64 references the check already has (with the judge's floors). The user's tensor may
then be a stated multiple of what torch itself gets wrong (:func:`allowance`).

float64 needs no measurement: :func:`measure` returns None at once, with no torch call.
Where the measurement cannot run (a spec the module cannot compute, an op torch lacks at
that dtype) the table stays and the entry's note says so: never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .adapters.array_kind import ArrayKind, _brief
from .compare import relative_with_floor, tolerance
from .spec import Layer, Sequential, join_path

if TYPE_CHECKING:
    from .adapters.wrapped import WrappedLayer

# The policy. For a tensor of code computing in precision P below float64:
#     tol = tol_scale * max(MULTIPLE * torch's own error at P, MIN_ULPS * eps(P))
# which replaces the table for float16 and bfloat16 and raises it (max) for float32.
# Measured (ratio = the user's error / torch's own at P, per tensor), correct code written as
# people write it, torch bfloat16 and float16 and numpy float16, 20 seeds: Linear 16->8 (batch
# 4), Conv2d 3->4 3x3 via F.conv2d / unfold, LayerNorm(16) with its statistics in the dtype,
# Softmax, ReLU, Tanh, Sigmoid, GELU(tanh), MaxPool2d: worst 3.1 (float16 LayerNorm output);
# Linear 256->64 (batch 32), Conv2d 16->16, LayerNorm(128), 10 seeds: worst 3.8 (numpy float16
# bias gradient: numpy's sum over axis 0 accumulates in float16). A Linear weight gradient
# accumulated example by example in a float16 tensor: median (min) ratio 6.1 (5.7) over 256
# examples, 8.9 (7.3) over 512, 14.1 (11.0) over 1024; bfloat16 6.3 (4.5), 9.4 (7.7), 13.0
# (11.3). 8 keeps 2x room over correct code and fails that bug from ~512 examples on.
MULTIPLE = 8.0
# an error floor in units of the precision's eps: a tensor torch computes exactly (a ReLU's
# output, a bias gradient summing few terms) still allows a rounding or two of the user's
MIN_ULPS = 2.0
LOW = ("float16", "bfloat16")  # the table is replaced; for float32 it is a lower bound
MEASURED = ("float32", *LOW)  # float64 is not measured: the references are float64 themselves
EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}  # torch.finfo(...).eps


@dataclass(frozen=True)
class Measured:
    """Torch's own error at the user's precision, at one point of one check.

    ``precision``: ``"float32"``, ``"float16"`` or ``"bfloat16"``; ``errors``: relative error
    (norm-wise, above the judge's floor) by compared tensor name (``output``, ``input``, local
    parameter names), empty when the measurement could not run; ``device``: where it ran;
    ``note``: why it did not run, or a remark on the device (CuPy arrays: run on the CPU)."""

    precision: str
    errors: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    note: str = ""

    @property
    def low(self) -> bool:
        """float16 / bfloat16: the table is replaced, and FD too noisy to witness is no verdict."""
        return self.precision in LOW


def precision_of(kind: ArrayKind) -> str:
    """The precision the code computes in, by name: ``"float64"``, ``"float32"``,
    ``"float16"``, ``"bfloat16"`` (torch and jax bfloat16 are recorded as float32 numpy values:
    the framework dtype tells), or the numpy dtype's name for anything else."""
    framework = (kind.framework_dtype or "").removeprefix("torch.").removeprefix("jax.numpy.")
    return "bfloat16" if framework == "bfloat16" else np.dtype(kind.dtype).name


def of(wrapped: Any) -> str:
    """:func:`precision_of` the arrays a wrapped layer is handed (its FD steps, ties, tolerances)."""
    return precision_of(wrapped.feed_kind())


def eps(precision: str) -> float:
    """The machine epsilon of ``precision`` (a :func:`precision_of` name); float32's for others."""
    return EPS.get(precision, EPS["float32"])


def round_to(values: np.ndarray, precision: str) -> np.ndarray:
    """Float64 ``values`` rounded to ``precision`` (to nearest, ties to even) and back to
    float64: what code computing in it is handed. bfloat16 by its bits (the top 16 of a
    float32), numpy having no such dtype; finite values only."""
    if precision != "bfloat16":
        return np.asarray(values, dtype=np.float64).astype(precision).astype(np.float64)
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    kept = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) & np.uint64(0xFFFF0000)
    return kept.astype(np.uint32).view(np.float32).astype(np.float64)


def allowance(table: float, measured: Measured | None, name: str, scale: float) -> float:
    """The relative tolerance of tensor ``name`` before any reading noise: ``table`` (the
    :func:`harness.compare.tolerance` of its dtype and reduction, scaled) when nothing was
    measured for it; else ``scale * max(MULTIPLE * error, MIN_ULPS * eps)``, which replaces
    the table at float16/bfloat16 and is at least the table at float32."""
    if measured is None or name not in measured.errors:
        return table
    own = scale * max(MULTIPLE * measured.errors[name], MIN_ULPS * EPS[measured.precision])
    return own if measured.low else max(table, own)


def measure(
    wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, params: dict[str, np.ndarray], tensors: list[Any]
) -> Measured | None:
    """Torch's own error at the user's precision for each compared row of ``tensors``
    (:data:`harness.judge.Compared`: name, side, user, torch's float64 value, jax's, reduction,
    floor). ``x``: the canonical input (N, ...) (int64 indices for an Embedding: no input
    gradient); ``g``: the upstream gradient, the output's shape; ``params``: the user's, by
    local name, float64. None for float64 code (nothing to measure, nothing run); a
    :class:`Measured` with no errors and a note when the measurement could not run."""
    spec = wrapped.spec
    assert spec is not None  # check_point's wrappers have one
    rows = [(r[0], r[3], r[6]) for r in tensors]
    full = {join_path(spec.name, k): v for k, v in params.items()}
    return _measured(wrapped.feed_kind(), (Sequential([spec]), spec.name), (x, g), full, rows)


def measure_network(
    net: Any, x: np.ndarray, g: np.ndarray, rows: list[tuple[str, np.ndarray, float]]
) -> Measured | None:
    """:func:`measure` for the user's own network pass (a ``WrappedNetwork``): ``rows`` are
    (name, float64 reference value, floor) with parameters by full name; the network's spec
    runs at the precision its own passes are handed (:func:`harness.adapters.feed.network_kind`)."""
    from .adapters.feed import network_kind

    kind = network_kind(net.layers, getattr(net, "array_type", None), net.dtype)
    return _measured(kind, (net.spec, ""), (x, g), net.get_params(), rows)


def _measured(
    kind: ArrayKind,
    root: tuple[Layer, str],
    point: tuple[np.ndarray, np.ndarray],
    params: dict[str, np.ndarray],
    rows: list[tuple[str, np.ndarray, float]],
) -> Measured | None:
    """The measurement for code handed arrays of ``kind``: ``root`` (the spec to run, the
    prefix of the rows' parameter names), ``point`` (input, upstream gradient), ``params`` by
    full name, ``rows`` (name, reference, floor). Failures become a note, never an exception."""
    precision = precision_of(kind)
    if precision not in MEASURED:  # float64 (or a dtype with no policy): the table, at no cost
        return None
    device, remark = _device(kind)
    try:
        errors = _errors(root, precision, device, kind, point, params, rows)
    except Exception as e:  # a kind the module cannot compute, an op missing at this dtype
        why = f"torch could not run the reference in {precision} ({type(e).__name__}: {_brief(e)})"
        return Measured(precision, {}, device, f"note: {precision} tolerances from the table: {why}")
    bad = [k for k, v in errors.items() if not np.isfinite(v)]
    if bad:  # torch's own value overflowed: no measure of rounding; the table, said
        why = f"torch's own {precision} {', '.join(bad)} not finite"
        return Measured(precision, {}, device, f"note: {precision} tolerances from the table: {why}")
    return Measured(precision, errors, device, remark)


def _device(kind: ArrayKind) -> tuple[str, str]:
    """Where the reference at the user's precision runs, and a remark when it cannot follow
    the user's arrays: torch CUDA tensors -> their device; anything else -> the CPU."""
    device = kind.device or "cpu"
    if kind.family == "torch" or device == "cpu":
        return device, ""
    return "cpu", f"note: the {kind.family} arrays are on {device}; torch's own error was measured on the CPU"


def _errors(
    root: tuple[Layer, str],
    precision: str,
    device: str,
    kind: ArrayKind,
    point: tuple[np.ndarray, np.ndarray],
    params: dict[str, np.ndarray],
    rows: list[tuple[str, np.ndarray, float]],
) -> dict[str, float]:
    """Run ``root``'s spec as a torch module at ``precision`` on ``device`` and return each
    row's relative error against its float64 reference value above its floor. Rows the module
    has no gradient for (no parameter by that name) are left out."""
    import torch

    from reference_models.torch_bridge import to_module

    (spec, prefix), (x, g), dtype = root, point, getattr(torch, precision)
    module = to_module(spec, params).to(dtype=dtype, device=device)
    indices = np.issubdtype(x.dtype, np.integer)
    tx = torch.as_tensor(x if indices else _rounded(x, kind), device=device)
    tx = tx if indices else tx.to(dtype).requires_grad_(True)
    full = {r[0]: join_path(prefix, r[0]) for r in rows if r[0] not in ("output", "input")}
    named = _canonical_parameters(module, list(full.values()))
    wanted = {k: named[v] for k, v in full.items() if v in named}
    with torch.enable_grad():
        y = module(tx)
        tg = torch.as_tensor(_rounded(g, kind), device=device).to(dtype)
        grads = torch.autograd.grad(y, ([] if indices else [tx]) + list(wanted.values()), tg, allow_unused=True)
    got = {"output": y, **({} if indices else {"input": grads[0]}), **dict(zip(wanted, grads[0 if indices else 1 :]))}
    out = {}
    for name, ref, floor in rows:
        if got.get(name) is not None:
            value = got[name].detach().to(device="cpu", dtype=torch.float64).numpy()
            out[name] = relative_with_floor(value.reshape(np.shape(ref)), ref, floor)
    return out


def _canonical_parameters(module: Any, names: list[str]) -> dict[str, Any]:
    """``module``'s parameters by canonical name (``names``, full): the state-dict key, except
    for the modules that keep PyTorch's own names (a recurrent layer's ``weight_ih_l0`` is
    ``weight_ih``, a fused bias is ``bias_ih_l0``; attention's ``out_proj.weight`` is
    ``out_proj_weight``). Names with no parameter are left out."""
    from reference_models import bridge_attention, bridge_recurrent

    named = dict(module.named_parameters())
    out = {k: named[k] for k in names if k in named}
    # torch_values maps canonical names onto the module's keys: fed the names as values, it returns them
    renamed = bridge_recurrent.torch_values(module, {k: k for k in names})
    out.update({ours: named[key] for key, ours in renamed.items() if isinstance(ours, str) and key in named})
    for key, p in named.items():
        for theirs, ours in bridge_attention.RENAMES.items():
            if key == theirs or key.endswith("." + theirs):
                out[key[: len(key) - len(theirs)] + ours] = p
    return {k: v for k, v in out.items() if k in names}


def _rounded(values: np.ndarray, kind: ArrayKind) -> np.ndarray:
    """Float64 ``values`` through the numpy dtype the user's arrays pass through (float16;
    float32 for torch's bfloat16, then rounded by torch; jax's bfloat16, held in float32), as
    :func:`harness.adapters.feed.hand` does."""
    rounded = np.ascontiguousarray(values, dtype=np.float64).astype(kind.dtype)
    return rounded if rounded.dtype.kind == "f" else rounded.astype(np.float32)  # ml_dtypes' bfloat16: exact


def note(measured: Measured | None, reductions: dict[str, int], scale: float) -> str:
    """What the tolerances were based on, for the entry's message: at float16/bfloat16 always
    (``note: bfloat16 tolerances are 8x torch's own bfloat16 error at this point, ... (output
    3.1e-03, ...)``), at float32 only where the measurement raised one above the table (of
    each tensor's reduction size in ``reductions``, times ``scale``); the fallback's reason
    when the measurement could not run; "" for float64."""
    if measured is None or not measured.errors:
        return measured.note if measured is not None else ""
    tables = {k: tolerance(measured.precision, r, scale) for k, r in reductions.items()}
    raised = [k for k, t in tables.items() if allowance(t, measured, k, scale) > t]
    if not measured.low and not raised:
        return measured.note
    where = "" if measured.device == "cpu" else f" on {measured.device}"
    listed = ", ".join(f"{k} {v:.1e}" for k, v in measured.errors.items())
    floor = f"at least {MIN_ULPS:g} eps = {MIN_ULPS * EPS[measured.precision]:.1e}"
    base = "" if measured.low else "the table's or "
    text = (
        f"note: {measured.precision} tolerances are {base}{MULTIPLE:g}x torch's own {measured.precision} error "
        f"at this point{where}, {floor} ({listed})"
    )
    unmeasured = [k for k in tables if k not in measured.errors]
    if unmeasured:
        text += f"; the table's for {', '.join(unmeasured)} (torch's module has no gradient by that name)"
    return "; ".join(filter(None, [text, measured.note]))
