"""Writing float64 values back in the user's representation: a new array of the user's
family, dtype and device (:func:`from_float64`), or the user's own array overwritten in
place (:func:`write_into`, how parameters are restored). Immutable kinds (jax arrays,
lists) must be replaced by the caller instead.

Torch, jax and CuPy are imported only when values go back into one of their arrays.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import numpy as np

from .array_cast import _cast_for_user
from .array_kind import (
    _TORCH_NUMPY_NATIVE,
    FAMILIES,
    ArrayError,
    ArrayKind,
    _brief,
    _check_real,
    _is_cupy,
    _is_jax,
    _is_torch,
    _type_name,
)


def from_float64(a: np.ndarray, kind: ArrayKind, what: str = "array") -> Any:
    """``a`` in the user's representation described by ``kind``: same family, dtype, shape
    and (when known) device. Values are rounded to the user's dtype; integer dtypes refuse
    values they cannot hold exactly.

    "list" gives nested Python lists (a Python scalar for 0-d), "numpy" an ndarray (also for
    numpy scalars), "array-like" an ndarray (a foreign class cannot be rebuilt). Torch
    tensors come back without ``requires_grad``."""
    values = np.asarray(a, dtype=np.float64)
    if tuple(values.shape) != tuple(kind.shape):
        raise ArrayError(
            f"{what}: shape mismatch: expected {tuple(kind.shape)}, found {tuple(values.shape)} "
            f"(likely cause: values computed for a different array)"
        )
    host = _cast_for_user(values, kind.dtype, what)

    if kind.family in ("numpy", "array-like"):
        return host
    if kind.family == "list":
        return host.tolist()
    if kind.family == "torch":
        return _to_torch(host, kind, what)
    if kind.family == "jax":
        return _to_jax(host, kind, what)
    if kind.family == "cupy":
        return _to_cupy(host, kind, what)
    raise ArrayError(f"{what}: unknown array family: expected one of {FAMILIES}, found {kind.family!r}")


def _import(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ArrayError(
            f"{what}: cannot rebuild a {name} array: expected {name} to be importable, found {_brief(exc)}"
        ) from None


def _to_torch(host: np.ndarray, kind: ArrayKind, what: str) -> Any:
    torch = _import("torch", what)
    t = torch.from_numpy(host)
    if kind.framework_dtype and str(t.dtype) != kind.framework_dtype:
        t = t.to(getattr(torch, kind.framework_dtype.removeprefix("torch.")))
    if kind.device and kind.device != "cpu":
        t = t.to(kind.device)
    return t


def _to_jax(host: np.ndarray, kind: ArrayKind, what: str) -> Any:
    jax = _import("jax", what)
    device = None
    if kind.device:
        platform, _, index = kind.device.partition(":")
        try:
            device = next((d for d in jax.devices(platform) if str(d.id) == index), None)
        except RuntimeError:  # that backend is gone: fall back to the default device
            device = None
    # float64/int64 jax arrays only exist under x64; enable it for this call alone,
    # never globally (the arrays keep their dtype after the context exits)
    if host.dtype.itemsize == 8:
        with jax.enable_x64(True):
            return jax.device_put(host, device)
    return jax.device_put(host, device)


def _to_cupy(host: np.ndarray, kind: ArrayKind, what: str) -> Any:
    cupy = _import("cupy", what)
    if kind.device and kind.device.startswith("cuda:"):
        with cupy.cuda.Device(int(kind.device.split(":")[1])):
            return cupy.asarray(host)
    return cupy.asarray(host)


# --------------------------------------------------------------------------- in place


def is_mutable(a: Any) -> bool:
    """Whether :func:`write_into` can update ``a`` in place."""
    if isinstance(a, np.ndarray):
        return bool(a.flags.writeable)
    if _is_torch(a):
        return not a.is_inference()
    return _is_cupy(a)


def write_into(target: Any, values: np.ndarray, what: str) -> None:
    """Write ``values`` into the user's existing array in place, cast to its dtype.

    Works for writeable numpy arrays, torch tensors (under ``torch.no_grad()``, so leaves
    that require grad can be written and nothing is recorded) and CuPy arrays. Immutable
    kinds raise :class:`ArrayError`; the caller must then replace the parameter with
    ``from_float64(values, kind)`` by setattr or dict assignment."""
    values = np.asarray(values, dtype=np.float64)
    _refuse_immutable(target, what)
    shape = tuple(getattr(target, "shape", ()))
    if (isinstance(target, np.ndarray) or _is_torch(target) or _is_cupy(target)) and tuple(values.shape) != shape:
        raise ArrayError(
            f"{what}: shape mismatch: expected {shape}, found {tuple(values.shape)} "
            f"(likely cause: values computed for a different parameter)"
        )
    if isinstance(target, np.ndarray):
        _check_real(target.dtype, what)
        # float64 into float64 needs no cast: copied as it is (the bits, NaN payloads included)
        target[...] = values if target.dtype == np.float64 else _cast_for_user(values, target.dtype, what)
    elif _is_torch(target):
        _write_torch(target, values, what)
    elif _is_cupy(target):
        _write_cupy(target, values, what)
    else:
        raise ArrayError(
            f"{what}: cannot write in place: expected a mutable numpy/torch/cupy array, found "
            f"{_type_name(target)}; the parameter must be replaced instead (assign from_float64(values, kind) "
            f"with setattr or dict assignment)"
        )


def _refuse_immutable(target: Any, what: str) -> None:
    """Raise for the kinds that cannot be written in place: jax arrays, lists, scalars,
    read-only numpy arrays."""
    if (
        _is_jax(target)
        or isinstance(target, (list, tuple, np.generic, bool, int, float))
        or (isinstance(target, np.ndarray) and not target.flags.writeable)
    ):
        if _is_jax(target):
            found = "a jax array (jax arrays are immutable)"
        elif isinstance(target, np.ndarray):
            found = "a read-only numpy array (e.g. a view of a jax array or np.broadcast_to)"
        else:
            found = f"a {_type_name(target)}, which the harness does not update in place"
        raise ArrayError(
            f"{what}: cannot write in place: expected a mutable numpy/torch/cupy array, found {found}; "
            f"the parameter must be replaced instead (assign from_float64(values, kind) with setattr "
            f"or dict assignment)"
        )


def _write_torch(target: Any, values: np.ndarray, what: str) -> None:
    torch = sys.modules["torch"]
    fdtype = str(target.dtype)
    if target.is_complex():
        _check_real(np.dtype(np.complex128), what, shown=fdtype)
    # cast in numpy first (exact NaN bits); bfloat16 etc. go through float32
    host_dtype = np.dtype(fdtype.removeprefix("torch.") if fdtype in _TORCH_NUMPY_NATIVE else "float32")
    src = torch.from_numpy(_cast_for_user(values, host_dtype, what))
    try:
        with torch.no_grad():
            target.copy_(src)
    except Exception as exc:  # inference tensors, meta tensors ...
        raise ArrayError(
            f"{what}: cannot write into torch tensor (dtype {fdtype}, device {target.device}): "
            f"{_brief(exc)}; the parameter must be replaced instead"
        ) from None


def _write_cupy(target: Any, values: np.ndarray, what: str) -> None:
    _check_real(np.dtype(target.dtype), what)
    cupy = sys.modules["cupy"]
    host = _cast_for_user(values, np.dtype(target.dtype), what)
    with cupy.cuda.Device(target.device.id):
        target[...] = cupy.asarray(host)
