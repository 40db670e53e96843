"""Regression checks: the user's code now against a snapshot, or a new version against an old.

:func:`compare` re-runs every entry of a :class:`~harness.snapshot.Snapshot` (each layer
at its recorded input, upstream gradient and parameters; the network pass) through the
current code and says, per tensor, whether it changed beyond its tolerance and, if so,
whether it moved toward the reference recorded with it or away:

* ``same``: within tolerance of the snapshot;
* ``fixed``: now matches the reference, the snapshot did not;
* ``broken``: the snapshot matched the reference, now it does not;
* ``closer`` / ``further``: neither matches the reference; the error shrank / grew;
* ``error``: the code raised (the message says where).

:func:`check_equivalent` does the same for two versions of the code at one point: the old
version is recorded in memory, the new one compared with it. No reference is run at compare
time: the snapshot carries the reference's values, so comparing needs neither torch nor jax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .compare import rel_error, relative_with_floor
from .frames import user_frame
from .snapshot import Snapshot, SnapshotError, load, record

# a truly-zero tensor (a bias feeding batch norm) is rounding noise of sums whose terms are as
# large as the entry's other gradients; two versions' noise is compared against this fraction
# of them (check.py's 1e-3 judges one version against the reference; two noisy versions need more)
ZERO_FLOOR = 1e-2

STATUSES = ("same", "fixed", "closer", "further", "broken", "error")


@dataclass
class TensorChange:
    """One tensor, old (snapshot) against new: ``change`` is their relative difference,
    ``old_error`` / ``new_error`` each one's relative error against the reference (None
    without one); ``worst_index`` / ``old`` / ``new``: the element that changed most."""

    name: str
    status: str
    change: float
    tolerance: float
    old_error: float | None
    new_error: float | None
    worst_index: tuple[int, ...]
    old: float
    new: float
    changed: int  # elements that differ beyond the tolerance (relative to the tensor's scale)
    size: int


@dataclass
class EntryChange:
    """One snapshot entry (a layer, or ``(network)``) re-run through the current code."""

    name: str
    status: str
    tensors: list[TensorChange] = field(default_factory=list)
    message: str = ""


@dataclass
class Comparison:
    """Every entry of a snapshot against the current code; ``ok`` when every tensor is the same."""

    entries: list[EntryChange]
    title: str = "snapshot"

    @property
    def ok(self) -> bool:
        return all(e.status == "same" for e in self.entries)

    @property
    def wrong_when_recorded(self) -> list[str]:
        """``entry.tensor`` names that are ``same`` but were already off the reference when the
        snapshot was taken: unchanged, not correct (a snapshot pins behaviour, bugs included)."""
        return [
            f"{e.name}.{t.name}"
            for e in self.entries
            for t in e.tensors
            if t.status == "same" and t.old_error is not None and t.old_error > t.tolerance
        ]

    def entry(self, name: str) -> EntryChange:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no entry '{name}'; entries: {[e.name for e in self.entries]}")

    def __str__(self) -> str:
        changed = [e for e in self.entries if e.status != "same"]
        head = (
            f"trigrad {self.title}: all {len(self.entries)} entries the same"
            if not changed
            else f"trigrad {self.title}: {len(changed)} of {len(self.entries)} entries differ: "
            + ", ".join(f"{e.name} ({e.status})" for e in changed)
        )
        lines = [
            head,
            f"{'entry':<16} {'tensor':<14} {'status':<8} {'change':>9} {'old vs ref':>10} "
            f"{'new vs ref':>10} {'tol':>8}  first differing element",
        ]
        fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
        for e in self.entries:
            if e.message:
                lines.append(f"{e.name:<16} {'':<14} {e.status:<8} {e.message}")
            for t in e.tensors:
                where = (
                    f"{t.changed}/{t.size} differ, most at {list(t.worst_index)}: {t.old:.6g} -> {t.new:.6g}"
                    if t.status != "same"
                    else ""
                )
                lines.append(
                    f"{e.name:<16} {t.name:<14} {t.status:<8} {t.change:>9.1e} {fmt(t.old_error):>10} "
                    f"{fmt(t.new_error):>10} {t.tolerance:>8.1e}  {where}"
                )
        wrong = self.wrong_when_recorded
        if wrong:
            lines.append(
                f"note: {', '.join(wrong)} already disagreed with the reference when the snapshot was taken: "
                "'same' means unchanged, not correct (run trigrad check on it)"
            )
        return "\n".join(lines)


def _status(change: float, tol: float, old_err: float | None, new_err: float | None) -> str:
    if change <= tol or (old_err is not None and new_err is not None and max(old_err, new_err) <= tol):
        return "same"  # two values that both match the reference may differ by up to twice the tolerance
    if old_err is None or new_err is None:
        return "further"  # no reference to tell the direction: a change is a regression
    if new_err <= tol < old_err:
        return "fixed"
    if old_err <= tol < new_err:
        return "broken"
    return "closer" if new_err < old_err else "further"


def _tensor(
    name: str, old: np.ndarray, new: np.ndarray, ref: np.ndarray | None, tol: float, floor: float = 0.0
) -> TensorChange:
    """``floor``: the norm a truly-zero tensor (a bias feeding batch norm) is measured against,
    so that rounding noise around zero is not a change."""
    if new.shape != old.shape:
        return TensorChange(
            name, "further", float("inf"), tol, None, None, (), float("nan"), float("nan"), old.size, old.size
        )
    change = relative_with_floor(new, old, floor)
    worst = rel_error(new, old)
    scale = max(float(np.abs(old).max()) if old.size else 0.0, floor / max(np.sqrt(old.size), 1.0))
    changed = int(np.count_nonzero(np.abs(new - old) > tol * max(scale, 1e-300)))
    old_err = relative_with_floor(old, ref, floor) if ref is not None else None
    new_err = relative_with_floor(new, ref, floor) if ref is not None else None
    return TensorChange(
        name,
        _status(change, tol, old_err, new_err),
        change,
        tol,
        old_err,
        new_err,
        worst.index,
        worst.expected,
        worst.actual,
        changed,
        old.size,
    )


def _worst(statuses: list[str]) -> str:
    order = {"same": 0, "fixed": 1, "closer": 2, "further": 3, "broken": 4, "error": 5}
    return max(statuses, key=order.__getitem__, default="same")


def compare(
    target: Any, snapshot: Snapshot | str | Path, *, tol_scale: float = 1.0, title: str = "snapshot"
) -> Comparison:
    """Re-run every entry of ``snapshot`` (a :class:`Snapshot` or a path to one) through
    ``target`` (the current code, wrapped like the recorded one) at the recorded point and
    parameters; the user's parameters are restored bit for bit."""
    snap = snapshot if isinstance(snapshot, Snapshot) else load(snapshot)
    where = str(snap.source) if snap.source is not None else "the snapshot"
    snap.validate(where)  # one built or changed in memory gets the checks a loaded one had
    _check_entries(target, snap, where)
    spec = target.spec
    if snap.spec is not None and spec is not None and spec.to_dict() != snap.spec:
        raise SnapshotError(
            f"the snapshot was recorded for another spec ({snap.spec.get('kind')} "
            f"'{snap.spec.get('name')}'); this code implements {spec!r}: re-record it"
        )
    out = []
    with target.preserved():
        try:
            target.set_params(snap.params)
        except Exception as e:
            raise SnapshotError(f"the snapshot's parameters do not fit this code ({e}); re-record it") from e
        # code now in a coarser dtype than recorded (a float32 port of float64 code) is held
        # to that dtype's precision
        eps = lambda d: float(np.finfo(np.dtype(d)).eps) if np.issubdtype(np.dtype(d), np.floating) else 0.0  # noqa: E731
        coarser = max(1.0, eps(target.dtype) / max(eps(snap.dtype), 1e-300))
        for entry in snap.entries.values():
            out.append(_compare_entry(target, entry, tol_scale * coarser))
    return Comparison(entries=out, title=title)


def _check_entries(target: Any, snap: Snapshot, where: str) -> None:
    """Refuse a snapshot that lacks an entry the code produces: an emptied or edited entry
    list must not compare as "same" for want of anything to compare. (An entry the code no
    longer has is reported per entry, as an error.)"""
    from .adapters.layer import WrappedLayer

    have = {name: e.kind for name, e in snap.entries.items()}
    if isinstance(target, WrappedLayer):
        if list(have.values()) != ["layer"]:
            raise SnapshotError(
                f"{where}: has entries {have}, but this code is one layer and produces one layer "
                "entry; the snapshot was edited or recorded for other code: re-record it "
                "(pytest --trigrad-update)"
            )
        return
    produced = list(target.layers) + (["(network)"] if target.end_to_end else [])
    missing = [name for name in produced if name not in have]
    if missing:
        raise SnapshotError(
            f"{where}: has no entry for {missing[:5]}{' ...' if len(missing) > 5 else ''}, which this "
            f"code produces (the snapshot has {sorted(have)[:5]}); the entry list was emptied or "
            "edited, or the snapshot is of other code: re-record it (pytest --trigrad-update)"
        )


def _compare_entry(target: Any, entry: Any, tol_scale: float) -> EntryChange:
    from .adapters.layer import WrappedLayer

    a = entry.arrays
    try:
        if entry.kind == "network":
            y = target.forward(a["x"], mode="network")
            dx, grads = target.backward(a["g"]), target.param_grads()
        else:
            layer = target if isinstance(target, WrappedLayer) else target.layers.get(entry.name)
            if layer is None:
                return EntryChange(entry.name, "error", message=f"the code has no layer '{entry.name}' any more")
            y = layer.forward(a["x"])
            dx, grads = layer.backward(a["g"]), layer.param_grads()
    except Exception as e:  # the user's code raised: report where, keep comparing the rest
        return EntryChange(entry.name, "error", message=user_frame(e))
    new = {"output": y, **({"input": dx} if dx is not None else {}), **grads}  # None: input_grad=False
    known = {name for name, _, _ in entry.tensors()}
    extra = sorted(set(new) - known)
    # as check.py: a gradient that is truly zero is judged against the entry's other gradients
    floor = ZERO_FLOOR * max(
        [float(np.linalg.norm(a[r or k])) for n, k, r in entry.tensors() if n != "output"], default=0.0
    )
    tensors = []
    for name, key, ref_key in entry.tensors():
        if name not in new:
            tensors.append(
                TensorChange(name, "further", float("inf"), 0.0, None, None, (), float("nan"), float("nan"), 0, 0)
            )
            continue
        tol = entry.tolerances.get(name, 0.0) * tol_scale
        tensors.append(
            _tensor(
                name,
                a[key],
                np.asarray(new[name], np.float64),
                a.get(ref_key) if ref_key else None,
                tol,
                floor if name != "output" else 0.0,
            )
        )
    status = _worst([t.status for t in tensors] + ["further"] * bool(extra))
    return EntryChange(
        entry.name,
        status,
        tensors,
        message=f"new gradient(s) {extra} not in the snapshot: re-record it" if extra else "",
    )


def check_equivalent(
    old: Any,
    new: Any,
    spec_or_shape: Any = None,
    *,
    x: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    tol_scale: float = 1.0,
    **wrap_kwargs: Any,
) -> Comparison:
    """Two versions of the user's code at one point, against each other and the reference.

    ``old`` / ``new``: wrapped layers or networks, or raw layer objects wrapped with
    ``spec_or_shape`` (a spec layer) and ``wrap_kwargs`` (``layout=``...; the same for both,
    or wrap them yourself when their layouts differ). ``spec_or_shape`` may instead be the
    input shape, for already-wrapped code. ``new`` is run with ``old``'s parameters. ``x``
    and the input shape are in ``old``'s declared layout (4-D in ``layout.data``).
    """
    from .adapters.layer import WrappedLayer, wrap_layer
    from .spec import Layer

    spec = spec_or_shape if isinstance(spec_or_shape, Layer) else None
    if spec_or_shape is not None and spec is None:
        input_shape = tuple(spec_or_shape)

    def wrapped(code: Any, which: str) -> Any:
        if isinstance(code, WrappedLayer) or hasattr(code, "end_to_end"):
            return code
        if spec is None:
            raise TypeError(
                f"check_equivalent: {which} is a {type(code).__name__}; pass the spec layer it implements "
                "as spec_or_shape, or wrap it first"
            )
        return wrap_layer(code, spec, **wrap_kwargs)

    old_w, new_w = wrapped(old, "old"), wrapped(new, "new")
    snap = record(old_w, x=x, input_shape=input_shape, seed=seed)
    return compare(new_w, snap, tol_scale=tol_scale, title="old vs new")


__all__ = ["Comparison", "EntryChange", "STATUSES", "TensorChange", "check_equivalent", "compare"]
