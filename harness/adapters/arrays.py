"""Array adapters: the users' arrays in, float64 numpy out, and back again.

The harness computes in float64 numpy. Users' layers take and return whatever they like:
numpy arrays of any float dtype, torch tensors (any device, ``requires_grad`` or not), jax
arrays, CuPy arrays, other objects exposing ``__array__`` or ``__dlpack__``, or nested lists
of numbers. This module is the single place the rest of the harness imports them from:

* :func:`to_float64` reads any of them into a float64 numpy **copy** plus an
  :class:`ArrayKind` recording how the user represents it (:mod:`.array_read`);
* :func:`from_float64` turns float64 values back into that representation;
* :func:`write_into` overwrites a mutable user array in place (how parameters are
  restored); immutable ones (jax arrays, lists) must be replaced by the caller instead
  (both :mod:`.array_write`);
* :func:`fingerprint` hashes an array's exact bits, to prove parameters were restored.

The family detection and dtype rules are :mod:`.array_kind`, the exact casts
:mod:`.array_cast`. Round trips are bit-for-bit: float16/float32 widen to float64 exactly
and narrow back exactly, and NaN payloads (signalling NaNs included, which the hardware
would quiet) are carried through by bit manipulation. bfloat16 torch NaNs come back as
torch's canonical NaN.

Torch, jax and CuPy are never imported at module import time, which keeps
``import harness`` light.
"""

from __future__ import annotations

# every name this module defined before it was split stays importable from it, private
# helpers included (feed.py reads _TORCH_NUMPY_NATIVE here)
from .array_cast import _IEEE, _cast, _cast_for_user, _nan_bits  # noqa: F401
from .array_kind import (  # noqa: F401
    _TORCH_NUMPY_NATIVE,
    FAMILIES,
    ArrayError,
    ArrayKind,
    _brief,
    _check_real,
    _is_cupy,
    _is_float_dtype,
    _is_jax,
    _is_real_numeric,
    _is_torch,
    _loaded_type,
    _type_name,
    is_float_dtype,
    require_float,
)
from .array_read import (  # noqa: F401
    NonFinite,
    _ragged_detail,
    _read,
    fingerprint,
    nonfinite,
    read_float64,
    same_bits,
    to_float64,
)
from .array_write import _import, from_float64, is_mutable, write_into  # noqa: F401

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
