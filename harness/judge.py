"""Judging one check's compared tensors: each tensor's result against its tolerance, the
verdict from the three witnesses (:func:`harness.compare.verdict`), the message for NaN/Inf
or unreliable finite differences, and the diagnosis of each failing tensor.

A compared tensor is a row ``(name, side, user, torch, jax, reduction size, absolute
floor)`` (:data:`Compared`): ``user``, ``torch`` and ``jax`` canonical float64 arrays of
one shape (batch first), built by :func:`_compared` for a layer and by
:mod:`harness.loss_check` for a loss. Used by :mod:`harness.check`,
:mod:`harness.check_crash`, :mod:`harness.loss_check` and :mod:`harness.end_to_end`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .adapters.arrays import NonFinite, nonfinite
from .compare import REFS_TOL, rel_error, relative_with_floor, tensor_tolerance, tolerance, verdict
from .diagnose import diagnose, window_overlap
from .hypotheses import counts
from .precision import Measured, allowance
from .results import FDSummary, LayerResult, TensorResult, error_map
from .spec import (
    AvgPool2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    GroupNorm,
    Layer,
    LayerNorm,
    Linear,
    MaxPool2d,
    Sequential,
    join_path,
    walk,
)

FLOOR = 1e-3  # a truly-zero gradient is judged against this fraction of the layer's other gradients
# torch and jax are two independent float64 computations of the same tensor: where they differ
# from each other by more than the table allows (a statistic over one or two values, a sum
# whose terms cancel), the user's float64 code, a third such computation, cannot be asked to
# do better, and its tolerance is at least this multiple of their relative difference (above
# the tensor's floor: refs_spread). Measured on correct numpy batch norms (CS231n pairs with
# the staged and the one-line backward, an object over (N, H, W)) at 2-4 values per channel,
# 21,000 checks: the table alone fails 52 (0.25%; the ratio of the user's error to the
# references' spread there: median 1.0, 90th percentile 2.9, worst 26); 1x the spread leaves
# 31, 2x 10, 3x 5, 4x 2, 8x 1. The tail is where torch and jax happen to round alike and the
# user's code does not (a division where they multiply by rsqrt): two witnesses understate
# what a third may do. 4 keeps the raise to where the table really is too tight (248 of those
# 84,000 tensors; 2 of 3,200 in the bug zoos, no verdict changed).
REFS_MULTIPLE = 4.0
Compared = tuple[str, str, np.ndarray, np.ndarray, np.ndarray, int, float]
NO_INPUT_GRAD = "note: input gradient not computed (input_grad=False); not compared"


def _nonfinite_message(found: Mapping[str, NonFinite], what: str) -> str:
    """``"the backward returned NaN/Inf: weight: 2 of 12 values ... (user layout); likely cause ..."``."""
    listed = "; ".join(f"{name}: {bad}" for name, bad in found.items())
    return (
        f"{what} returned NaN/Inf: {listed} (user layout); likely cause: a division by zero, a log or sqrt of a "
        "non-positive value, an overflow, or an uninitialised array (np.empty)"
    )


def _judge(
    result: LayerResult,
    tensors: list[Compared],
    fds: dict[str, FDSummary],
    dtype: np.dtype,
    tol_scale: float,
    *,
    batch: int,
    window: int | None = None,
    noise: dict[str, float] | None = None,
    nonfinite_found: Mapping[str, NonFinite] | None = None,
    measured: Measured | None = None,
    **hints: Any,
) -> tuple[bool, bool]:
    """Fill ``result`` from the compared tensors — (name, side, user, torch, jax, reduction
    size, absolute floor) — and the finite-difference summaries: per-tensor results, the
    verdict and the diagnosis of each failing tensor. ``noise``: absolute error the reading of
    a gradient adds (see ``WrappedLayer.grad_noise``). A user tensor holding NaN/Inf makes
    the verdict ``error`` with a message naming it, the count and the first index
    (``nonfinite_found``: those already located in the user's layout; else read off the
    compared arrays). ``measured``: torch's own error at the user's precision
    (:mod:`harness.precision`), which sets the tolerances below float64; at float16/bfloat16
    finite differences merely too noisy to witness do not stop a pass both references give.
    Returns (forward_ok, backward_ok)."""
    _tensor_results(result, tensors, fds, dtype, tol_scale, noise or {}, measured)
    forward_ok = all(tr.ok for tr in result.tensors if tr.side == "forward")
    backward_ok = all(tr.ok for tr in result.tensors if tr.side == "backward")
    consistency = [s.consistent for s in fds.values()]
    fd_consistent = False if False in consistency else (True if all(consistency) else None)
    bad = (
        dict(nonfinite_found)
        if nonfinite_found is not None
        else {name: found for name, _, user, *_ in tensors if (found := nonfinite(np.asarray(user, np.float64)))}
    )
    # unreliable only because every probe of some tensor crossed a kink (none was noisy or disagreed)
    kinks_only = all(s.consistent is not None or s.kinks == s.probes for s in fds.values())
    # in float16/bfloat16, probes too noisy (none disagreeing) are no witness against the references
    noisy_low = measured is not None and measured.low and fd_consistent is None
    result.verdict = verdict(
        forward_ok=forward_ok,
        backward_ok=backward_ok,
        fd_consistent=fd_consistent,
        refs_agree=result.refs_error <= REFS_TOL,
        error=bool(bad),
        fd_kinks_only=kinks_only or noisy_low,
    )
    _verdict_message(result, tensors, fds, bad, fd_consistent, measured.precision if noisy_low and measured else "")
    _diagnose_failing(result, tensors, bad, forward_ok, batch, window, hints)
    return forward_ok, backward_ok


def _tensor_results(
    result: LayerResult,
    tensors: list[Compared],
    fds: dict[str, FDSummary],
    dtype: np.dtype,
    tol_scale: float,
    noise: dict[str, float],
    measured: Measured | None = None,
) -> None:
    """One :class:`~harness.results.TensorResult` per compared tensor, in order: its errors
    against both references, its tolerance (:func:`row_tolerance`), its worst entry, its
    finite-difference summary (backward tensors), and an error map when it fails."""
    for row in tensors:
        name, side, user, tv, jv, _, floor = row
        tol = row_tolerance(row, dtype, tol_scale, noise, measured)
        fd = fds.get(name) if side == "backward" else None
        result.tensors.append(tensor_result(name, side, tuple(np.shape(user)), user, tv, jv, tol, floor, fd))
        if not result.tensors[-1].ok:
            result.tensors[-1].error_map = error_map(user, tv)


def row_tolerance(
    row: Compared, dtype: np.dtype, tol_scale: float, noise: Mapping[str, float], measured: Measured | None
) -> float:
    """The tolerance of one compared tensor, the one place it is set (the judge, the
    finite differences' :func:`harness.fd_check._true_grads` and the ``(network)`` entry all
    read it): the table for its precision and reduction (:func:`harness.compare.tolerance`), or
    below float64 the policy of :func:`harness.precision.allowance` on torch's own error
    (``measured``); at least :data:`REFS_MULTIPLE` times the references' own disagreement on it
    (:func:`refs_spread`: what two independent float64 computations of it can agree on); plus
    any error the reading of the gradient adds (``noise``: an SGD-step recovery), relative to
    the truth."""
    name, _, _, tv, _, reduction, floor = row
    table = tolerance(measured.precision if measured is not None else dtype, reduction, tol_scale)  # bf16's own eps
    base = max(allowance(table, measured, name, tol_scale), tol_scale * REFS_MULTIPLE * refs_spread(row))
    return tensor_tolerance(dtype, reduction, tol_scale, noise.get(name, 0.0), tv, floor, base=base)


def refs_spread(row: Compared) -> float:
    """torch's value of a compared tensor against jax's, relative above the tensor's floor
    (the measure the user's is judged by). Tiny in float64 (~eps) except where the value is
    itself mostly rounding: a statistic over one or two values, a cancelling sum. Above
    :data:`harness.compare.REFS_TOL` the verdict is ``reference`` whatever the tolerance."""
    _, _, _, tv, jv, _, floor = row
    return relative_with_floor(tv, jv, floor)


def tensor_result(
    name: str,
    side: str,
    shape: tuple[int, ...],
    user: np.ndarray,
    tv: np.ndarray,
    jv: np.ndarray,
    tol: float,
    floor: float,
    fd: FDSummary | None = None,
) -> TensorResult:
    """One compared tensor: the user's against torch's (``tv``) and jax's (``jv``) as relative
    errors above the absolute ``floor``, its worst entry against torch's, ``ok`` when both are
    within ``tol``."""
    et, ej = relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)
    worst = rel_error(user, tv)
    return TensorResult(
        name=name,
        side=side,
        shape=shape,
        tolerance=tol,
        error_torch=et,
        error_jax=ej,
        worst_index=worst.index,
        worst_user=worst.actual,
        worst_ref=worst.expected,
        ok=max(et, ej) <= tol,
        fd=fd,
    )


def _verdict_message(
    result: LayerResult,
    tensors: list[Compared],
    fds: dict[str, FDSummary],
    bad: dict[str, NonFinite],
    fd_consistent: bool | None,
    noisy_in: str = "",
) -> None:
    """The entry's message once the verdict is set: the NaN/Inf found (``bad``, and the side
    it was on), a pass finite differences could not witness (every probe crossed a kink, or
    ``noisy_in`` a low precision, e.g. ``"bfloat16"``, made them too noisy), or what made it
    inconclusive."""
    if bad:
        result.message = _nonfinite_message(bad, "the code")
        backward = any(side == "backward" for name, side, *_ in tensors if name in bad)
        result.error_side = "backward" if backward else "forward"
    if result.verdict == "pass" and fd_consistent is None and noisy_in:
        noisy = ", ".join(k for k, s in fds.items() if s.consistent is None)
        result.message = (
            f"note: finite differences were too noisy in {noisy_in} to witness this ({noisy}); "
            "both references agree with the gradients"
        )
    elif result.verdict == "pass" and fd_consistent is None:
        crossed = ", ".join(f"{k}: {s.kinks} of {s.probes}" for k, s in fds.items() if s.consistent is None)
        result.message = (
            "note: finite differences could not witness this (every probe crossed a kink; "
            + crossed
            + "); both references agree with the gradients"
        )
    if result.verdict == "inconclusive":
        unsure = [
            f"{k} ({s.kinks} of {s.probes} probes crossed a kink)" if s.kinks else f"{k} (probes too noisy)"
            for k, s in fds.items()
            if s.consistent is not True
        ]
        result.message = (
            (
                "inconclusive: the finite-difference probes were not reliable for "
                + ", ".join(unsure)
                + "; rerun with another --seed or more --fd-probes"
            )
            if unsure
            else result.message
        )


def _diagnose_failing(
    result: LayerResult,
    tensors: list[Compared],
    bad: dict[str, NonFinite],
    forward_ok: bool,
    batch: int,
    window: int | None,
    hints: dict[str, Any],
) -> None:
    """The hypotheses (:func:`harness.diagnose.diagnose`) for each failing tensor, prefixed
    with its name; none for a tensor holding NaN/Inf (no hypothesis explains a NaN)."""
    by_name = {name: (user, tv) for name, _, user, tv, _, _, _ in tensors}
    for tr in result.tensors:
        if not tr.ok and tr.name not in bad:  # no hypothesis explains a NaN
            user, ref = by_name[tr.name]
            sized = forward_ok or tr.side == "forward"  # a wrong forward's faithful gradient: no size to blame
            result.diagnosis += [
                f"{tr.name}: {h}"
                for h in diagnose(
                    tr.name,
                    user,
                    ref,
                    batch=batch if sized else None,
                    window=window if sized else None,
                    **{**hints, "counts": hints.get("counts") if sized else None},
                )
            ]


def _hints(spec: Layer, x: np.ndarray) -> dict[str, Any]:
    """What the diagnosis needs to know about the layer: its window size, groups, overlap."""
    layers = [layer for _, layer in walk(Sequential([spec]))]
    convs = [layer for layer in layers if isinstance(layer, (Conv2d, Conv1d, ConvTranspose2d, GroupNorm))]
    sequence = _sequence(spec, x)  # (N, T, D): a Linear or LayerNorm over 3-D data, an Embedding's (N, T) indices
    steps = {"the number of timesteps T": x.shape[1]} if sequence and x.ndim >= 2 else {}
    ncl = any(isinstance(layer, Conv1d) for layer in layers)  # (N, C, L): its border and channels have a meaning
    hints: dict[str, Any] = {
        "groups": getattr(convs[0], "groups", getattr(convs[0], "num_groups", 1)) if len(convs) == 1 else 1,
        "window": int(np.prod(spec.kernel_size)) if hasattr(spec, "kernel_size") else None,
        "counts": {**counts(spec, x), **steps},
        "axes": "NTD" if sequence else ("NCL" if ncl else None),
    }
    if isinstance(spec, (MaxPool2d, AvgPool2d)) and x.ndim == 4:
        hints["overlap"] = window_overlap(spec.kernel_size, spec.stride, spec.padding, spec._dilation(), x.shape[2:])
    return hints


def _sequence(spec: Layer, x: np.ndarray) -> bool:
    """Whether the layer's 3-D tensors are sequences ``(N, T, D)``: its first leaf is a Linear or
    LayerNorm over 3-D data, or it takes integer indices (an Embedding)."""
    first = next((layer for _, layer in walk(Sequential([spec])) if not layer.children()), spec)
    return first.index_input or (x.ndim == 3 and isinstance(first, (Linear, LayerNorm)))


def _compared(
    result: LayerResult,
    x: np.ndarray,
    y_u: np.ndarray,
    dx_u: np.ndarray | None,
    grads_u: dict[str, np.ndarray],
    t: Any,
    j: Any,
    spec: Layer,
    input_floor: float = 0.0,
) -> list[Compared]:
    """The user's output, input gradient and parameter gradients next to both references'
    values, with their reduction sizes and floors; sets ``result.refs_error`` (torch vs jax,
    each tensor above the floor it is judged with: :func:`refs_spread`). ``input_floor``: a
    floor for the input gradient besides the layer's (a normalisation's cancelled terms,
    :func:`harness.norm_scale.cancelled_scale`, below which torch and jax differ only by rounding)."""
    n, y_shape = x.shape[0], t.output.shape
    # no input gradient when the input is integer indices (Result.input_grad None)
    dx_refs = [] if t.input_grad is None else [t.input_grad]
    grad_scale = max(
        [float(np.linalg.norm(v)) for v in dx_refs] + [float(np.linalg.norm(v)) for v in t.param_grads.values()],
        default=0.0,
    )
    tensors: list[Compared] = [("output", "forward", y_u, t.output, j.output, x.size // n, 0.0)]
    input_floor = max(FLOOR * grad_scale, input_floor)
    # the references' input gradients are compared with each other even when the user's is not
    refs_err = [relative_with_floor(t.input_grad, j.input_grad, input_floor) for _ in dx_refs]
    if dx_u is not None and t.input_grad is not None:  # None: input_grad=False declared, or indices
        tensors.append(("input", "backward", dx_u, t.input_grad, j.input_grad, int(np.prod(y_shape)) // n, input_floor))
    for k, v in grads_u.items():
        name = join_path(spec.name, k)
        floor, reduction = FLOOR * grad_scale, n * int(np.prod(y_shape[2:]))
        tensors.append((k, "backward", v, t.param_grads[name], j.param_grads[name], reduction, floor))
    result.refs_error = max([*refs_err, *(refs_spread(row) for row in tensors)])
    return tensors
