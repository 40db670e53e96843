"""Array adapters: the users' arrays in, float64 numpy out, and back again.

The harness computes in float64 numpy. Users' layers take and return whatever they like:
numpy arrays of any float dtype, torch tensors (any device, ``requires_grad`` or not), jax
arrays, CuPy arrays, other objects exposing ``__array__`` or ``__dlpack__``, or nested lists
of numbers. This module is the single place that crosses that border:

* :func:`to_float64` reads any of them into a float64 numpy **copy** plus an
  :class:`ArrayKind` recording how the user represents it;
* :func:`from_float64` turns float64 values back into that representation;
* :func:`write_into` overwrites a mutable user array in place (how parameters are
  restored); immutable ones (jax arrays, lists) must be replaced by the caller instead;
* :func:`fingerprint` hashes an array's exact bits, to prove parameters were restored.

Round trips are bit-for-bit: float16/float32 widen to float64 exactly and narrow back
exactly, and NaN payloads (signalling NaNs included, which the hardware would quiet) are
carried through by bit manipulation. bfloat16 torch NaNs come back as torch's canonical NaN.

Torch, jax and CuPy are never imported here at module import time: an array can only be a
torch tensor if torch is already in ``sys.modules``, so families are detected by looking
there, which keeps ``import harness`` light.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import SpecError

__all__ = [
    "ArrayError",
    "ArrayKind",
    "fingerprint",
    "from_float64",
    "NonFinite",
    "is_float_dtype",
    "is_mutable",
    "nonfinite",
    "require_float",
    "to_float64",
    "write_into",
]

FAMILIES = ("numpy", "torch", "jax", "cupy", "list", "array-like")

# IEEE binary formats whose NaN bits we carry across casts by hand (see _cast).
_IEEE = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}

# torch dtypes numpy can hold directly; others (bfloat16, float8 ...) pass through float32,
# which holds every one of their values exactly.
_TORCH_NUMPY_NATIVE = {
    "torch.float16", "torch.float32", "torch.float64", "torch.bool", "torch.uint8", "torch.int8",
    "torch.int16", "torch.int32", "torch.int64", "torch.uint16", "torch.uint32", "torch.uint64",
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


def _import(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ArrayError(
            f"{what}: cannot rebuild a {name} array: expected {name} to be importable, found {_brief(exc)}"
        ) from None


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
        f"{what}: unsupported dtype: expected a real floating-point array, found dtype {name} "
        f"(likely cause: {cause})"
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


# --------------------------------------------------------------------------- exact casts


def _nan_bits(src: np.ndarray, dst: np.dtype) -> np.ndarray:
    """Bits of ``dst`` NaNs carrying the sign and payload of the NaNs in ``src``.

    The hardware quiets signalling NaNs when it converts them, so a float32 signalling NaN
    would not survive float32 -> float64 -> float32; moving the mantissa by hand does (the
    payload is shifted left when widening and truncated back when narrowing, like the
    hardware does for quiet NaNs)."""
    s_fi, d_fi = np.finfo(src.dtype), np.finfo(dst)
    s_bits, d_bits = src.dtype.itemsize * 8, dst.itemsize * 8
    u = src.view(_IEEE[src.dtype]).astype(np.uint64)
    sign = (u >> np.uint64(s_bits - 1)) & np.uint64(1)
    mant = u & np.uint64((1 << s_fi.nmant) - 1)
    shift = d_fi.nmant - s_fi.nmant
    mant = mant << np.uint64(shift) if shift >= 0 else mant >> np.uint64(-shift)
    # a payload living only in truncated low bits would read as infinity: make it quiet
    mant = np.where(mant == 0, np.uint64(1 << (d_fi.nmant - 1)), mant)
    exp = np.uint64(((1 << (d_bits - 1 - d_fi.nmant)) - 1) << d_fi.nmant)
    out = (sign << np.uint64(d_bits - 1)) | exp | mant
    return out.astype(_IEEE[dst])


def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` as a new C-contiguous array of ``dtype`` (never a view), NaN bits preserved."""
    dtype = np.dtype(dtype)
    # overflow to inf and NaN casts are the honest IEEE results; numpy's warnings are noise
    with np.errstate(invalid="ignore", over="ignore"):
        out = x.astype(dtype, order="C", copy=True)
    if x.dtype != dtype and x.dtype in _IEEE and dtype in _IEEE:
        flat_x = np.ascontiguousarray(x).reshape(-1)
        nan = np.isnan(flat_x)
        if nan.any():
            out.reshape(-1).view(_IEEE[dtype])[nan] = _nan_bits(flat_x[nan], dtype)
    return out


def _cast_for_user(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """Cast float64 values to the user's dtype; refuse silent truncation into integers."""
    out = _cast(values, dtype)
    if not _is_float_dtype(np.dtype(dtype)):
        with np.errstate(invalid="ignore", over="ignore"):
            back = out.astype(np.float64)
        bad = ~(back == values)
        if bad.any():
            example = values.reshape(-1)[bad.reshape(-1)][0]
            raise ArrayError(
                f"{what}: values not representable in dtype {np.dtype(dtype)}: expected whole numbers "
                f"in range, found e.g. {float(example)!r} (likely cause: a float result written into "
                f"an integer or bool array)"
            )
    return out


# --------------------------------------------------------------------------- reading


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


def _read(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """A numpy array with the user's values (possibly sharing their memory: callers copy)
    and the kind. Torch dtypes numpy lacks come out as float32."""
    if isinstance(a, (np.ndarray, np.generic)):
        raw = np.asarray(a)
        return raw, ArrayKind("numpy", raw.dtype, tuple(raw.shape))

    if _is_torch(a):
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

    if _is_jax(a):
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

    if _is_cupy(a):
        # cupy's __array__ refuses implicit transfers on purpose; .get() is the explicit one
        raw = np.asarray(a.get())
        return raw, ArrayKind("cupy", raw.dtype, tuple(raw.shape), f"cuda:{a.device.id}", str(a.dtype))

    if isinstance(a, (list, tuple, bool, int, float, complex)):
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

    if hasattr(a, "__array__"):
        try:
            raw = np.asarray(a)
        except Exception as exc:
            raise ArrayError(
                f"{what}: {_type_name(a)}.__array__ failed: expected a numpy array, found error "
                f"{_brief(exc)} (likely cause: the array lives on a GPU; copy it to the host first)"
            ) from None
        return raw, ArrayKind("array-like", raw.dtype, tuple(raw.shape))

    if hasattr(a, "__dlpack__"):
        try:
            raw = np.from_dlpack(a)
        except Exception as exc:
            raise ArrayError(
                f"{what}: cannot read {_type_name(a)} through __dlpack__: expected CPU memory numpy can "
                f"read, found error {_brief(exc)} (likely cause: the array lives in GPU memory; copy it "
                f"to the host first)"
            ) from None
        return raw, ArrayKind("array-like", raw.dtype, tuple(raw.shape))

    cause = "the function forgot to return its result" if a is None else "an unsupported container"
    raise ArrayError(
        f"{what}: expected an array (numpy, torch, jax, cupy, an object with __array__ or __dlpack__, "
        f"or a nested list of numbers), found {_type_name(a)} (likely cause: {cause})"
    )


# --------------------------------------------------------------------------- public API


def to_float64(a: Any, what: str) -> tuple[np.ndarray, ArrayKind]:
    """A float64 numpy copy of ``a`` (never sharing memory with it) and its :class:`ArrayKind`.

    Integer and bool arrays are accepted (use :func:`require_float` where floats are
    required); complex, object, string and other non-numeric dtypes raise :class:`ArrayError`.
    ``what`` names the value in errors, e.g. ``"layer 'conv1' output"``."""
    raw, kind = _read(a, what)
    _check_real(raw.dtype, what, shown=kind.framework_dtype)
    return _cast(raw, np.float64), kind


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
        torch = _import("torch", what)
        t = torch.from_numpy(host)
        if kind.framework_dtype and str(t.dtype) != kind.framework_dtype:
            t = t.to(getattr(torch, kind.framework_dtype.removeprefix("torch.")))
        if kind.device and kind.device != "cpu":
            t = t.to(kind.device)
        return t
    if kind.family == "jax":
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
    if kind.family == "cupy":
        cupy = _import("cupy", what)
        if kind.device and kind.device.startswith("cuda:"):
            with cupy.cuda.Device(int(kind.device.split(":")[1])):
                return cupy.asarray(host)
        return cupy.asarray(host)
    raise ArrayError(f"{what}: unknown array family: expected one of {FAMILIES}, found {kind.family!r}")


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

    if _is_jax(target) or isinstance(target, (list, tuple, np.generic, bool, int, float)) or (
        isinstance(target, np.ndarray) and not target.flags.writeable
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

    shape = tuple(getattr(target, "shape", ()))
    if isinstance(target, np.ndarray) or _is_torch(target) or _is_cupy(target):
        if tuple(values.shape) != shape:
            raise ArrayError(
                f"{what}: shape mismatch: expected {shape}, found {tuple(values.shape)} "
                f"(likely cause: values computed for a different parameter)"
            )

    if isinstance(target, np.ndarray):
        _check_real(target.dtype, what)
        target[...] = _cast_for_user(values, target.dtype, what)
        return

    if _is_torch(target):
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
        return

    if _is_cupy(target):
        _check_real(np.dtype(target.dtype), what)
        cupy = sys.modules["cupy"]
        host = _cast_for_user(values, np.dtype(target.dtype), what)
        with cupy.cuda.Device(target.device.id):
            target[...] = cupy.asarray(host)
        return

    raise ArrayError(
        f"{what}: cannot write in place: expected a mutable numpy/torch/cupy array, found "
        f"{_type_name(target)}; the parameter must be replaced instead (assign from_float64(values, kind) "
        f"with setattr or dict assignment)"
    )


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


def is_float_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating-point dtype (numpy's, or ml_dtypes' bfloat16/float8)."""
    return _is_float_dtype(np.dtype(dtype))


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
