"""What a user's array is: its family (numpy, torch, jax, CuPy, list, array-like), its
:class:`ArrayKind`, and the dtype rules every conversion applies.

Torch, jax and CuPy are never imported here: an array can only be a torch tensor if torch
is already in ``sys.modules``, so families are detected by looking there, which keeps
``import harness`` light. Reading is :mod:`.array_read`, writing back :mod:`.array_write`;
:mod:`.arrays` gathers them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import SpecError

FAMILIES = ("numpy", "torch", "jax", "cupy", "list", "array-like")

# torch dtypes numpy can hold directly; others (bfloat16, float8 ...) pass through float32,
# which holds every one of their values exactly.
_TORCH_NUMPY_NATIVE = {
    "torch.float16",
    "torch.float32",
    "torch.float64",
    "torch.bool",
    "torch.uint8",
    "torch.int8",
    "torch.int16",
    "torch.int32",
    "torch.int64",
    "torch.uint16",
    "torch.uint32",
    "torch.uint64",
}


class ArrayError(SpecError):
    """A user's array cannot be read, converted or written; the message names the value."""


@dataclass(frozen=True)
class ArrayKind:
    """How the user represents an array: enough to convert float64 values back.

    ``dtype`` is the numpy dtype the values pass through: the user's own dtype, except for
    torch dtypes numpy lacks (bfloat16, float8), recorded as float32; ``framework_dtype`` is
    then exact (``"torch.bfloat16"``). ``device`` is e.g. ``"cpu"``, ``"cuda:0"``.
    """

    family: str  # one of FAMILIES
    dtype: np.dtype
    shape: tuple[int, ...]
    device: str | None = None
    framework_dtype: str | None = None  # "torch.float32", jax/cupy dtype name; None for numpy/list


# --------------------------------------------------------------------------- detection


def _loaded_type(module: str, attr: str) -> type | None:
    """``module.attr`` if the module is already imported, else None: a value cannot be a
    torch tensor unless torch was imported, so this never needs to import anything."""
    mod = sys.modules.get(module)
    return getattr(mod, attr, None) if mod is not None else None


def _is_torch(a: Any) -> bool:
    tensor = _loaded_type("torch", "Tensor")
    return tensor is not None and isinstance(a, tensor)


def _is_jax(a: Any) -> bool:
    array = _loaded_type("jax", "Array")
    return array is not None and isinstance(a, array)


def _is_cupy(a: Any) -> bool:
    array = _loaded_type("cupy", "ndarray")
    return array is not None and isinstance(a, array)


def _type_name(a: Any) -> str:
    t = type(a)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _brief(exc: BaseException) -> str:
    """The first line of an exception's message, shortened: our messages stay one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------- dtype rules


def _is_float_dtype(dt: np.dtype) -> bool:
    if np.issubdtype(dt, np.floating):
        return True
    # jax's bfloat16/float8 come as ml_dtypes extension dtypes, which numpy files under kind "V"
    return dt.type.__module__.startswith("ml_dtypes") and "float" in dt.name


def _is_real_numeric(dt: np.dtype) -> bool:
    if dt.kind in "biuf":
        return True
    return dt.type.__module__.startswith("ml_dtypes") and ("float" in dt.name or "int" in dt.name)


def _check_real(dt: np.dtype, what: str, shown: str | None = None) -> None:
    if _is_real_numeric(dt):
        return
    name = shown or str(dt)
    if dt.kind == "c":
        cause = "a complex value reached a real layer (e.g. an FFT without .real)"
    elif dt.kind == "O":
        cause = "a list mixing numbers with None, strings or arrays of different shapes"
    elif dt.kind in "US":
        cause = "strings were parsed as data"
    else:
        cause = "a structured, datetime or other non-numeric array"
    raise ArrayError(
        f"{what}: unsupported dtype: expected a real floating-point array, found dtype {name} (likely cause: {cause})"
    )


def require_float(kind: ArrayKind, what: str) -> None:
    """Raise :class:`ArrayError` unless the user's dtype is floating point (for parameters,
    which are trained, so integer or bool storage would silently round every update)."""
    if _is_float_dtype(kind.dtype):  # torch bfloat16/float8 are recorded as float32
        return
    raise ArrayError(
        f"{what}: expected a real floating-point array (float16/bfloat16/float32/float64), "
        f"found dtype {kind.framework_dtype or kind.dtype} "
        f"(likely cause: created from integer literals such as np.array([1, 2]); use floats or .astype(np.float32))"
    )


def is_float_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating-point dtype (numpy's, or ml_dtypes' bfloat16/float8)."""
    return _is_float_dtype(np.dtype(dtype))
