"""Exact casts between float64 and the user's dtypes: bit-for-bit round trips.

float16/float32 widen to float64 exactly and narrow back exactly; NaN payloads (signalling
NaNs included, which the hardware would quiet) are carried through by bit manipulation.
Casting into an integer or bool dtype refuses values it cannot hold exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .array_kind import ArrayError, _is_float_dtype

# IEEE binary formats whose NaN bits we carry across casts by hand (see _cast).
_IEEE = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


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


def _cast(x: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
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
