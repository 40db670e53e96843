"""Reading the users' arrays: numpy, torch, jax, CuPy, ``__array__`` / ``__dlpack__``
objects and nested lists into a float64 numpy **copy** plus the :class:`ArrayKind` that
converts values back (:mod:`.array_write`); what the values hold (:func:`nonfinite`) and
their exact bits (:func:`fingerprint`).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .array_cast import _cast
from .array_kind import (
    _TORCH_NUMPY_NATIVE,
    ArrayError,
    ArrayKind,
    _brief,
    _check_real,
    _is_cupy,
    _is_jax,
    _is_torch,
    _type_name,
)


def to_float64(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """A float64 numpy copy of ``a`` (never sharing memory with it) and its :class:`ArrayKind`.

    Integer and bool arrays are accepted (use :func:`require_float` where floats are
    required); complex, object, string and other non-numeric dtypes raise :class:`ArrayError`.
    ``what`` names the value in errors, e.g. ``"layer 'conv1' output"``."""
    raw, kind = _read(a, what)
    _check_real(raw.dtype, what, shown=kind.framework_dtype)
    return _cast(raw, np.float64), kind


def read_float64(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """:func:`to_float64` for reading only: a float64 numpy array that may share memory with
    ``a`` (no copy when ``a`` already is a float64 numpy array; never write into it)."""
    raw, kind = _read(a, what)
    _check_real(raw.dtype, what, shown=kind.framework_dtype)
    return (raw if raw.dtype == np.float64 else _cast(raw, np.float64)), kind


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two numpy arrays are equal bit for bit: same shape, dtype and bytes (-0.0
    differs from 0.0, NaN payloads count). Compares integer views in place: no copies, unlike
    ``tobytes`` (which also page-faults a fresh buffer the size of the array)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    if a.dtype.itemsize in (1, 2, 4, 8) and not a.dtype.hasobject:
        unsigned = np.dtype(f"u{a.dtype.itemsize}")
        return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))
    return a.tobytes() == b.tobytes()


def _read(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """A numpy array with the user's values (possibly sharing their memory: callers copy)
    and the kind. Torch dtypes numpy lacks come out as float32."""
    if isinstance(a, (np.ndarray, np.generic)):
        raw = np.asarray(a)
        return raw, ArrayKind("numpy", raw.dtype, tuple(raw.shape))
    if _is_torch(a):
        return _read_torch(a, what)
    if _is_jax(a):
        return _read_jax(a, what)
    if _is_cupy(a):
        # cupy's __array__ refuses implicit transfers on purpose; .get() is the explicit one
        raw = np.asarray(a.get())
        return raw, ArrayKind("cupy", raw.dtype, tuple(raw.shape), f"cuda:{a.device.id}", str(a.dtype))
    if isinstance(a, (list, tuple, bool, int, float, complex)):
        return _read_list(a, what)
    if hasattr(a, "__array__"):
        return _read_array_like(a, what)
    if hasattr(a, "__dlpack__"):
        return _read_dlpack(a, what)
    cause = "the function forgot to return its result" if a is None else "an unsupported container"
    raise ArrayError(
        f"{what}: expected an array (numpy, torch, jax, cupy, an object with __array__ or __dlpack__, "
        f"or a nested list of numbers), found {_type_name(a)} (likely cause: {cause})"
    )


def _read_torch(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    fdtype = str(a.dtype)
    device = str(a.device)
    try:
        t = a.detach()
        if t.is_complex():
            _check_real(np.dtype(np.complex128), what, shown=fdtype)
        if fdtype not in _TORCH_NUMPY_NATIVE:
            t = t.float()  # bfloat16/float8: exact in float32, which numpy has
        raw = t.cpu().resolve_conj().resolve_neg().numpy()
    except ArrayError:
        raise
    except Exception as exc:  # sparse, meta, quantized ... tensors
        raise ArrayError(
            f"{what}: cannot read torch tensor (dtype {fdtype}, device {device}): expected a dense "
            f"tensor with data, found error {_brief(exc)} (likely cause: a sparse, meta or quantized tensor)"
        ) from None
    return raw, ArrayKind("torch", raw.dtype, tuple(raw.shape), device, fdtype)


def _read_jax(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    try:
        raw = np.asarray(a)
        devices = list(a.devices())
    except Exception as exc:
        raise ArrayError(
            f"{what}: cannot read jax value {_type_name(a)}: expected a concrete jax array, found "
            f"error {_brief(exc)} (likely cause: a traced value inside jax.jit/grad/vmap; "
            f"call the layer outside jax transformations)"
        ) from None
    device = f"{devices[0].platform}:{devices[0].id}" if len(devices) == 1 else None
    return raw, ArrayKind("jax", raw.dtype, tuple(raw.shape), device, str(a.dtype))


def _read_list(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """A nested list (or tuple, or Python scalar) of numbers."""
    try:
        raw = np.asarray(a)
    except (ValueError, TypeError, OverflowError) as exc:
        detail = _ragged_detail(a)
        if detail:
            raise ArrayError(
                f"{what}: ragged nested list: expected equal lengths at every depth, found {detail} "
                f"(likely cause: a missing or extra element)"
            ) from None
        raise ArrayError(f"{what}: cannot read nested list: {_brief(exc)}") from None
    return raw, ArrayKind("list", raw.dtype, tuple(raw.shape))


def _ragged_detail(obj: Any, depth: int = 0) -> str | None:
    """Where a nested list stops being rectangular, for the error message."""
    if not isinstance(obj, (list, tuple)):
        return None
    lengths = {len(x) if isinstance(x, (list, tuple)) else None for x in obj}
    if len(lengths) > 1:
        shown = sorted("a number" if n is None else f"length {n}" for n in lengths)
        return f"items at depth {depth + 1} have {' and '.join(shown)}"
    for x in obj:
        detail = _ragged_detail(x, depth + 1)
        if detail:
            return detail
    return None


def _read_array_like(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """An object of another class with ``__array__``."""
    try:
        raw = np.asarray(a)
    except Exception as exc:
        raise ArrayError(
            f"{what}: {_type_name(a)}.__array__ failed: expected a numpy array, found error "
            f"{_brief(exc)} (likely cause: the array lives on a GPU; copy it to the host first)"
        ) from None
    return raw, ArrayKind("array-like", raw.dtype, tuple(raw.shape))


def _read_dlpack(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """An object of another class with ``__dlpack__`` (and no ``__array__``)."""
    try:
        raw = np.from_dlpack(a)
    except Exception as exc:
        raise ArrayError(
            f"{what}: cannot read {_type_name(a)} through __dlpack__: expected CPU memory numpy can "
            f"read, found error {_brief(exc)} (likely cause: the array lives in GPU memory; copy it "
            f"to the host first)"
        ) from None
    return raw, ArrayKind("array-like", raw.dtype, tuple(raw.shape))


# --------------------------------------------------------------------------- what the values hold


@dataclass(frozen=True)
class NonFinite:
    """How many values of an array are NaN or Inf (``count`` of ``size``) and the first one
    (``value`` at ``index``, in the array's own layout)."""

    count: int
    size: int
    index: tuple[int, ...]
    value: float

    def __str__(self) -> str:
        verb = "is" if self.count == 1 else "are"
        return f"{self.count} of {self.size} values {verb} NaN or Inf (the first, {self.value}, at {list(self.index)})"


def nonfinite(values: np.ndarray) -> NonFinite | None:
    """None when every value is finite, else a :class:`NonFinite` (str: ``"2 of 12 values are
    NaN or Inf (the first, nan, at [1, 2])"``); pass the user's layout to get its indices."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return NonFinite(int(np.count_nonzero(bad)), int(values.size), first, float(values[first]))


def fingerprint(a: Any) -> str:
    """sha256 hex digest of ``a``'s exact bits, dtype, shape and family (not its device), to
    assert bit-for-bit restoration of user parameters: -0.0 differs from 0.0, and NaNs with
    different payloads differ."""
    if _is_torch(a) and str(a.dtype) not in _TORCH_NUMPY_NATIVE:
        # hash bfloat16/float8 storage itself rather than its float32 widening
        torch = sys.modules["torch"]
        t = a.detach().cpu().contiguous().reshape(-1)
        as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        raw = t.view(as_int).numpy()
        kind = ArrayKind("torch", raw.dtype, tuple(a.shape), str(a.device), str(a.dtype))
    else:
        raw, kind = _read(a, "fingerprinted array")
        _check_real(raw.dtype, "fingerprinted array", shown=kind.framework_dtype)
    header = f"{kind.family}|{kind.framework_dtype or raw.dtype.str}|{kind.shape}|".encode()
    return hashlib.sha256(header + np.ascontiguousarray(raw).tobytes()).hexdigest()
