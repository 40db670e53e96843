"""Users' weight files -> canonical, spec-checked float64 parameters.

Users keep weights in their own files (``.npz``, ``.npy``, a folder of ``.npy``,
``.safetensors``) under their own names (``W1``, ``conv1_kernel``). This module reads them
without ever unpickling (a pickle can run arbitrary code), renames them to canonical names
(:func:`map_names`) and checks them against the spec (:func:`load_weights`). Every problem
goes into one error, so a user fixes the file in one go rather than one name per run.

Layout conversion (HWIO kernels, ``(in, out)`` linear weights) is not done here: the layout
module passes a ``convert`` hook, applied before the shape check.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..spec import Layer, Shape, named_params, walk
from .arrays import ArrayError, to_float64
from .layouts import CANONICAL, Layout, _squeezed, shape_hint
from .weight_files import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, WeightsError, max_weight_bytes, read_weight_file

NameMapping = Mapping[str, str] | Sequence[tuple[str, str]] | Callable[[str], str | None] | None
Converter = Callable[[str, np.ndarray], Any]

# --------------------------------------------------------------------------- renaming


def map_names(arrays: Mapping[str, np.ndarray], mapping: NameMapping) -> dict[str, np.ndarray]:
    """Rename user names to canonical names.

    ``mapping`` is a dict ``user -> canonical`` (other names kept), a sequence of
    ``(regex, replacement)`` rules (the first whose pattern matches the whole name wins,
    the replacement expanded as in ``re.sub``; unmatched names kept), a callable returning
    the canonical name or ``None`` to drop the array, or ``None`` (identity).
    Two names landing on one canonical name raise :class:`WeightsError`.
    """
    return {name: arr for name, (_, arr) in _rename(arrays, mapping).items()}


def _rename(arrays: Mapping[str, Any], mapping: NameMapping) -> dict[str, tuple[str, Any]]:
    """``{canonical: (user name, array)}``: the user name lets errors point into the file."""
    rename = _renamer(mapping)
    out: dict[str, tuple[str, Any]] = {}
    clashes = []
    for user, arr in arrays.items():
        new = rename(user)
        if new is None:
            continue
        if not isinstance(new, str) or not new:
            raise WeightsError(f"mapping turned '{user}' into {new!r}; expected a canonical name or None to drop it")
        if new in out:
            clashes.append(f"'{out[new][0]}' and '{user}' both map to '{new}'")
        else:
            out[new] = (user, arr)
    if clashes:
        raise WeightsError(
            "two weights map to one canonical name: "
            + "; ".join(clashes)
            + " (a mapping rule is too broad, or a name kept as it is collides with a renamed one)"
        )
    return out


def _renamer(mapping: NameMapping) -> Callable[[str], str | None]:
    if mapping is None:
        return lambda name: name
    if isinstance(mapping, Mapping):
        return lambda name: mapping.get(name, name)
    if callable(mapping):
        return mapping
    if isinstance(mapping, (str, bytes)) or not isinstance(mapping, Iterable):
        raise WeightsError(
            "mapping must be a dict, a list of (regex, replacement) rules, a callable or None; "
            f"got {type(mapping).__name__}"
        )
    rules = []
    for rule in mapping:
        try:
            pattern, repl = rule
            rules.append((re.compile(pattern), repl))
        except (TypeError, ValueError, re.error) as e:
            raise WeightsError(f"mapping rule {rule!r} is not a (regex, replacement) pair: {e}") from None

    def apply(name: str) -> str:
        for pattern, repl in rules:
            m = pattern.fullmatch(name)
            if m:
                try:
                    return m.expand(repl)
                except (re.error, IndexError) as e:
                    raise WeightsError(f"mapping rule ({pattern.pattern!r}, {repl!r}) on '{name}': {e}") from None
        return name

    return apply


# --------------------------------------------------------------------------- loading


def load_weights(
    source: str | os.PathLike | Mapping[str, Any],
    spec: Layer,
    input_shape: Shape,
    *,
    mapping: NameMapping = None,
    convert: Converter | None = None,
    layout: Any = None,
    strict: bool = True,
    max_bytes: int | str | None = None,
) -> dict[str, np.ndarray]:
    """``{canonical name: float64 array}`` for every entry of ``named_params(spec, input_shape)``.

    ``source`` is a path (see :func:`read_weight_file`) or a dict of name -> array-like;
    ``mapping`` renames as :func:`map_names`; ``convert(canonical_name, array)`` turns the
    user's layout into the canonical one before the shape check; ``layout`` (a
    :class:`~harness.adapters.layouts.Layout` for the whole network) builds that ``convert``
    for you (kernel axis order and flip, Linear orientation, HWC flatten). One :class:`WeightsError`
    lists every unmatched (only if ``strict``), missing, mis-shaped or non-float entry.
    ``max_bytes`` limits what a weight file may inflate to (see :func:`max_weight_bytes`).
    """
    arrays, where = _source(source, max_bytes)
    convert = _converter(spec, input_shape, layout, convert)
    entries = _rename(arrays, mapping)
    expected = named_params(spec, input_shape)
    layers = dict(walk(spec))
    missing = [n for n in expected if n not in entries]
    # one list per kind of problem, reported in this order
    problems: dict[str, list[str]] = {
        "unmatched (in the file, not in the spec)": [],
        "missing (in the spec, not in the file)": [],
        "mis-shaped": [],
        "not floating point": [],
        "convert failed": [],
    }
    out: dict[str, np.ndarray] = {}

    for name, (user, value) in entries.items():
        label = f"'{name}'" if user == name else f"'{name}' (from '{user}')"
        if name not in expected:
            if strict:
                close = difflib.get_close_matches(name, missing, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems["unmatched (in the file, not in the spec)"].append(label + hint)
            continue
        where_in_spec = (layers.get(name.rpartition(".")[0]), layout if layout is not None else CANONICAL)
        arr = _entry(name, label, value, expected[name].shape, convert, where_in_spec, problems)
        if arr is not None:
            out[name] = arr

    _raise_problems(problems, missing, expected, entries, where)
    return {n: out[n] for n in expected}


def _source(source: Any, max_bytes: int | str | None) -> tuple[Mapping[str, Any], str]:
    """The user's ``{name: array}`` and how errors name where they came from."""
    if isinstance(source, Mapping):
        return source, "the weights"
    if isinstance(source, (str, os.PathLike)):
        return read_weight_file(source, max_bytes=max_bytes), f"the weights in '{source}'"
    raise WeightsError(f"weights source must be a path or a dict of name -> array, got {type(source).__name__}")


def _converter(spec: Layer, input_shape: Shape, layout: Any, convert: Converter | None) -> Converter | None:
    """``convert`` as given, or built from ``layout`` for the whole network."""
    if layout is not None:
        if convert is not None:
            raise WeightsError("pass either layout= or convert=, not both")
        from .layouts import spec_converter

        convert = spec_converter(spec, input_shape, layout)
    return convert


def _entry(
    name: str,
    label: str,
    value: Any,
    shape: tuple[int, ...],
    convert: Converter | None,
    where_in_spec: tuple[Layer | None, Layout],
    problems: dict[str, list[str]],
) -> np.ndarray | None:
    """One entry as a canonical float64 copy of ``shape``, or None after adding what is wrong
    with it to ``problems``. ``where_in_spec``: (its layer, the layout) for shape hints."""
    try:  # numpy, torch (even requires_grad or bfloat16), jax, lists ...
        arr, kind = to_float64(value, f"weights entry {label}")
    except ArrayError:
        try:
            found = f"dtype {np.asarray(value).dtype}"  # strings, objects ...
        except Exception:  # ragged lists and the like
            found = "not an array"
        problems["not floating point"].append(f"{label} ({found})")
        return None
    if not _dtype_ok(name, kind.dtype):
        problems["not floating point"].append(f"{label} (dtype {kind.dtype})")
        return None
    if convert is not None:
        try:
            arr = np.asarray(convert(name, arr))
        except Exception as e:  # a layout that does not fit this array: report, keep going
            problems["convert failed"].append(f"{label} of shape {arr.shape}: {e}")
            return None
    if arr.shape != shape:
        if _squeezed(arr.shape) != _squeezed(shape):
            hint = _shape_hint(arr.shape, shape, where_in_spec[0], name.rpartition(".")[2], where_in_spec[1])
            problems["mis-shaped"].append(f"{label} expected {shape}, found {arr.shape}{hint}")
            return None
        arr = arr.reshape(shape)  # a (1, C, 1, 1) or (C, 1) bias: same numbers, other layout
    return np.array(arr, dtype=np.float64)  # a copy: the caller's arrays stay theirs


def _raise_problems(
    problems: dict[str, list[str]],
    missing: list[str],
    expected: Mapping[str, Any],
    entries: Mapping[str, Any],
    where: str,
) -> None:
    """One WeightsError listing every problem (the missing names last filled in), if any."""
    if missing:
        buffers = any(not expected[n].trainable for n in missing)
        note = " (buffers such as running_mean/running_var/mask are required too)" if buffers else ""
        names = [f"'{n}'" for n in missing]
        problems["missing (in the spec, not in the file)"] = [*names[:-1], names[-1] + note]
    if any(problems.values()):
        msg = "; ".join(f"{len(v)} {head}: {', '.join(v)}" for head, v in problems.items() if v)
        if entries and not any(n in expected for n in entries):
            msg += "; none of the names matched the spec: pass mapping= to rename them"
        raise WeightsError(f"{where} do not fit the spec: {msg}")


def _dtype_ok(name: str, dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.floating):
        return True
    # dropout masks are 0/1 and naturally saved as bool or int
    return name.endswith(".mask") and (dtype == np.bool_ or np.issubdtype(dtype, np.integer))


def _shape_hint(
    found: tuple[int, ...], expected: tuple[int, ...], layer: Layer | None, local: str, layout: Layout
) -> str:
    """The likely cause, for a parameter whose shape does not fit even up to size-1 axes."""
    hint = shape_hint(layer, local, found, expected, layout) if layer is not None else ""
    if hint:
        return hint
    if np.prod(found, dtype=np.int64) == np.prod(expected, dtype=np.int64):
        # reshaping beyond size-1 axes could silently scramble values, so it is not done
        return "; same number of values in another shape: reshape it (or pass convert=)"
    return ""


__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_BYTES_ENV",
    "WeightsError",
    "load_weights",
    "map_names",
    "max_weight_bytes",
    "read_weight_file",
]
