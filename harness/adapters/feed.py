"""Feeding the user's code its own array type: numpy, torch, jax or CuPy.

A layer written with torch tensors (a handwritten backward with ``torch.nn.functional.unfold``
and matmuls), with ``jax.numpy`` or with CuPy cannot compute on numpy arrays: ``x @ self.W``
with ``x`` numpy and ``W`` a tensor raises "unsupported operand type(s) for @". So the input
and the upstream gradient are handed in the code's own array type, dtype and device, and
what it returns is read back by :func:`~harness.adapters.arrays.to_float64` (any type).

Which type (:func:`resolve`), first match wins:

1. ``array_type=`` declared on ``wrap_layer`` / ``wrap_functions`` (a torch, jax or CuPy
   layer's parameters must be of that type: a numpy parameter under ``array_type="torch"``
   is an error naming it; numpy code may keep tensors as weights and convert them itself);
2. the type of the layer's parameters (a torch tensor parameter -> torch tensors);
3. a framework dtype declared with ``dtype=`` (``dtype=torch.float32`` -> torch);
4. for a parameter-free layer inside a network, the network's type (``wrap_network``'s
   ``array_type=``, else its first layer with parameters);
5. numpy.

Torch, jax and CuPy are imported only when an array of theirs is built (``import harness``
stays light); a declared library that is not installed is an error at wrap time.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .arrays import _TORCH_NUMPY_NATIVE, ArrayKind, from_float64

ARRAY_TYPES = ("numpy", "torch", "jax", "cupy")

# the module a declared type's arrays come from (what must be importable)
_LIBRARY = {"numpy": "numpy", "torch": "torch", "jax": "jax", "cupy": "cupy"}


def _error(message: str) -> Exception:
    from .refs import AdapterError  # refs imports arrays; importing it lazily keeps this module a leaf

    return AdapterError(message)


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: an import known to fail
    return importlib.util.find_spec(module) is not None


def parse_array_type(value: Any, owner: str) -> str | None:
    """The ``array_type=`` option: None (undeclared) or one of :data:`ARRAY_TYPES`, whose
    library must be installed; anything else is an AdapterError naming ``owner``."""
    if value is None:
        return None
    if value not in ARRAY_TYPES:
        raise _error(
            f"{owner}: array_type={value!r} is not an array type; expected one of "
            f"{', '.join(repr(t) for t in ARRAY_TYPES)} (the arrays the code computes with)"
        )
    if not _installed(_LIBRARY[value]):
        raise _error(
            f"{owner}: array_type={value!r} declared, but {_LIBRARY[value]} is not installed (import "
            f"{_LIBRARY[value]} fails): install it to check this code, or declare the array type the "
            "code computes with"
        )
    return value


def read_dtype(value: Any, owner: str) -> tuple[np.dtype | None, str | None, str | None]:
    """The ``dtype=`` option as (numpy dtype, array type it implies, framework dtype):
    ``np.float32`` -> (float32, None, None); ``torch.float32`` -> (float32, "torch",
    "torch.float32"); ``torch.bfloat16`` -> (float32, "torch", "torch.bfloat16") (numpy has
    no bfloat16: values pass through float32, which holds them exactly); ``jnp.float32`` ->
    (float32, "jax", "float32")."""
    if value is None:
        return None, None, None
    module = type(value).__module__
    if module.startswith("torch"):
        name = str(value).removeprefix("torch.")
        try:
            dtype = np.dtype(name)
        except TypeError:  # bfloat16, float8 ...: exact in float32
            return np.dtype(np.float32), "torch", str(value)
        # once jax is imported, ml_dtypes registers "bfloat16" with numpy: torch cannot take those arrays
        native = not dtype.type.__module__.startswith("ml_dtypes")
        return (dtype if native else np.dtype(np.float32)), "torch", str(value)
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise _error(
            f"{owner}: dtype={value!r} is not a dtype; expected a numpy, torch or jax dtype such as "
            "np.float32 or torch.float32 (the dtype to hand the code)"
        ) from None
    if module.startswith("jax"):
        return dtype, "jax", dtype.name
    return dtype, None, None


def default_dtype(opts: FeedOptions) -> np.dtype:
    """The dtype to hand parameter-free code that declares none: float64, except for jax code
    when jax's x64 mode is off (jax would silently compute a float64 input in float32, and the
    check would hold float32 results to float64 tolerances)."""
    if (opts.declared or opts.inherited) == "jax":
        import jax  # declared or inherited jax code: jax is what it runs on

        if not jax.config.read("jax_enable_x64"):
            return np.dtype(np.float32)
    return np.dtype(np.float64)


def family(kind: ArrayKind) -> str:
    """The array type of a parameter: its library, numpy for lists and other array-likes."""
    return kind.family if kind.family in ARRAY_TYPES else "numpy"


def framework_name(array_type: str, dtype: np.dtype) -> str | None:
    """How ``array_type`` names ``dtype``: ``"torch.float32"``, ``"float32"``; None for numpy."""
    if array_type == "numpy":
        return None
    return f"torch.{np.dtype(dtype).name}" if array_type == "torch" else np.dtype(dtype).name


@dataclass
class FeedOptions:
    """What a wrapped layer was told about its array type (see the module docstring):
    ``array_type`` declared, ``implied`` by a framework ``dtype=`` (whose exact name is
    ``framework_dtype``), ``inherited`` from the network (for a parameter-free layer)."""

    array_type: str | None = None
    implied: str | None = None
    framework_dtype: str | None = None
    inherited: str | None = None

    @property
    def declared(self) -> str | None:
        return self.array_type or self.implied


def resolve(owner: str, opts: FeedOptions, params: Iterable[tuple[str, ArrayKind]], dtype: np.dtype) -> ArrayKind:
    """The kind of array (shape left empty) to hand the code: its type by the rules of the
    module docstring, ``dtype``, and the device and framework dtype of a parameter of that
    type and dtype. A declared type that its parameters do not have is an AdapterError."""
    params = list(params)
    if opts.array_type and opts.implied and opts.array_type != opts.implied:
        raise _error(
            f"{owner}: array_type={opts.array_type!r} but dtype= is a {opts.implied} dtype "
            f"({opts.framework_dtype}); declare a dtype of the array type the code computes with"
        )
    declared = opts.declared
    # numpy code may keep its weights as tensors and convert them itself: only a declared
    # framework type must be the parameters' (torch code cannot compute with numpy weights)
    wrong = [(name, family(k)) for name, k in params if declared not in (None, "numpy") and family(k) != declared]
    if wrong:
        name, found = wrong[0]
        said = "array_type=" if opts.array_type else f"dtype={opts.framework_dtype}"
        raise _error(
            f"{owner}: {said} declares {declared} arrays, but parameter '{name}' is a {found} array "
            f"(likely cause: a wrong declaration, or parameters not converted); declare "
            f"array_type={found!r} or store the parameters as {declared} arrays"
        )
    array_type = declared or (family(params[0][1]) if params else None) or opts.inherited or "numpy"
    like = [k for _, k in params if family(k) == array_type]
    same = next((k for k in like if k.dtype == np.dtype(dtype)), None)
    fdtype = (
        same.framework_dtype
        if same is not None
        else opts.framework_dtype
        if opts.implied == array_type
        else framework_name(array_type, dtype)
    )
    device = like[0].device if like and array_type != "numpy" else None
    return ArrayKind(array_type, np.dtype(dtype), (), device, fdtype)


def hand(values: np.ndarray, kind: ArrayKind, what: str) -> Any:
    """``values`` (float64, any layout) as a new array of ``kind``'s type, dtype and device:
    what the user's code is handed (a copy: it may write into it)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    return from_float64(values, replace(kind, shape=tuple(values.shape)), what)


def snapshot(a: Any) -> np.ndarray | None:
    """A host copy of ``a``'s values in its own dtype, to see later whether the code wrote
    into it; None for arrays nothing can write into (jax arrays are immutable) and for
    values that are not arrays."""
    if isinstance(a, np.ndarray):
        return a.copy()
    module = type(a).__module__
    if module.startswith("torch"):
        t = a.detach()
        t = t if str(t.dtype) in _TORCH_NUMPY_NATIVE else t.float()  # bfloat16, float8: exact in float32
        return t.cpu().clone().numpy()
    if module.startswith(("jax", "jaxlib")):
        return None
    if module.startswith("cupy"):
        return np.array(a.get(), copy=True)
    try:
        return np.array(a, copy=True)
    except Exception:  # not an array: a finding elsewhere
        return None


def network_kind(layers: Mapping[str, Any], declared: str | None, dtype: np.dtype) -> ArrayKind:
    """What the user's own network forward/backward is handed: ``declared``, else the type
    of its first layer with parameters, in ``dtype`` (the network's)."""
    kinds = [w.feed_kind() for w in layers.values() if w._param_names()]
    array_type = declared or (kinds[0].family if kinds else "numpy")
    like = [k for k in kinds if k.family == array_type]
    same = next((k for k in like if k.dtype == np.dtype(dtype)), None)
    fdtype = same.framework_dtype if same is not None else framework_name(array_type, dtype)
    return ArrayKind(array_type, np.dtype(dtype), (), like[0].device if like else None, fdtype)


def adopt(layers: Mapping[str, Any], declared: str | None) -> str | None:
    """Tell every wrapped layer the network's array type (``declared``, else its first layer
    with parameters'), which a parameter-free one without a declaration of its own is then
    handed (a ReLU in a network of torch layers). Returns ``declared``."""
    with_params = (w for w in layers.values() if w._param_names())
    array_type = declared or next((w.feed_kind().family for w in with_params), None)
    for w in layers.values():
        w.feed_options.inherited = array_type
    return declared


def typed(net: Any, array_type: Any) -> Any:
    """``net`` (a WrappedNetwork) with ``wrap_network``'s ``array_type=`` option, which its
    parameter-free layers adopt (see :func:`adopt`); an unknown type is an AdapterError."""
    net.array_type = adopt(net.layers, parse_array_type(array_type, "wrap_network"))
    return net


def hand_network(net: Any, values: np.ndarray, what: str) -> Any:
    """``values`` (in the user's layout) as the array the user's own network pass is handed:
    the network's array type and dtype (see :func:`network_kind`)."""
    declared = getattr(net, "array_type", None)  # set by typed(); None for a network built directly
    adopt(net.layers, declared)  # a lazy layer's parameters may exist by now
    return hand(values, network_kind(net.layers, declared, net.dtype), f"network {what}")


def fault_hint(wrapped: Any, exc: BaseException) -> str:
    """A clause for the message of the code raising a TypeError / AttributeError that names
    an array type (``"unsupported operand type(s) for @: 'numpy.ndarray' and 'Tensor'"``):
    what it was handed and why, and the declaration that changes it; else ``""``."""
    text = str(exc)
    if not isinstance(exc, (TypeError, AttributeError)) or wrapped.feed_options.array_type:
        return ""
    if not any(word in text for word in ("Tensor", "ndarray", "numpy", "jax", "Array", "cupy")):
        return ""
    kind = wrapped.feed_kind()
    handed = f"it was handed {_NAMES[kind.family]} ({kind.framework_dtype or kind.dtype})"
    if kind.family != "numpy":
        why = "read off its parameters' type" if wrapped._param_names() else "from its dtype= or the network's type"
        return f" ({handed}, {why}; if it computes with numpy arrays, declare array_type='numpy')"
    wanted = (
        "torch"
        if "Tensor" in text
        else "cupy"
        if "cupy" in text
        else "jax"
        if "jax" in text or "Array" in text
        else None
    )
    if wanted is None:
        return ""
    return f" ({handed}; if it computes with {_NAMES[wanted]}, declare array_type={wanted!r})"


_NAMES = {"numpy": "numpy arrays", "torch": "torch tensors", "jax": "jax arrays", "cupy": "CuPy arrays"}


__all__ = [
    "ARRAY_TYPES",
    "FeedOptions",
    "adopt",
    "default_dtype",
    "fault_hint",
    "hand",
    "hand_network",
    "network_kind",
    "parse_array_type",
    "read_dtype",
    "resolve",
    "snapshot",
    "typed",
]
