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

import copy
import difflib
import math
import os
import re
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from .arrays import ArrayError, to_float64
from .layouts import CANONICAL, Layout, _squeezed, shape_hint
from ..spec import Layer, Shape, SpecError, named_params, walk

NameMapping = Union[Mapping[str, str], Sequence[tuple[str, str]], Callable[[str], Optional[str]], None]
Converter = Callable[[str, np.ndarray], Any]

SUPPORTED = ".npz, .npy, a folder of .npy files, .safetensors"


class WeightsError(SpecError):
    """A weight file that cannot be read, or weights that do not fit the spec."""


# --------------------------------------------------------------------------- reading

MAX_BYTES_ENV = "TRIGRAD_MAX_WEIGHT_BYTES"
# Far above any network worth checking by hand-written backprop (ResNet-50 is ~100 MB in
# float32) yet small enough that a zip bomb or a lying header cannot exhaust memory: every
# array is also copied to float64 and into the torch and jax references.
DEFAULT_MAX_BYTES = 1 << 30
_CHUNK = 1 << 22  # bytes inflated per read: bounds what one read of a compressed entry may allocate
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# what a corrupted file can raise from zipfile, zlib, numpy's header parser (ast, and tokenize for
# headers it takes for Python 2's) or a short read
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, TypeError, KeyError, IndexError,
            NotImplementedError, RuntimeError, OverflowError, struct.error, SyntaxError, tokenize.TokenError)


def max_weight_bytes(max_bytes: int | str | None = None) -> int:
    """The limit on the bytes of arrays one weight file may hold once read (inflated):
    ``max_bytes`` if given, else the environment variable ``TRIGRAD_MAX_WEIGHT_BYTES``, else
    :data:`DEFAULT_MAX_BYTES` (1 GiB). Either may be an integer or a size like ``"4GiB"``."""
    value, source = max_bytes, "max_bytes"
    if value is None:
        value, source = os.environ.get(MAX_BYTES_ENV), MAX_BYTES_ENV
    if value is None or value == "":
        return DEFAULT_MAX_BYTES
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.I)
    if isinstance(value, bool) or not m or int(m.group(1)) <= 0:
        raise WeightsError(f"{source}={value!r}: expected a positive number of bytes such as 4294967296 or '4GiB'")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _size(n: int) -> str:
    """A byte count for people: 2.0 GiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class _Budget:
    """What is left of the limit for one weight file (a folder shares one budget)."""

    def __init__(self, max_bytes: int | str | None) -> None:
        self.limit = max_weight_bytes(max_bytes)
        self.left = self.limit

    def why(self) -> str:
        return (f"more than the {_size(self.limit)} limit on a weight file (raise it with max_bytes= or the "
                f"environment variable {MAX_BYTES_ENV} if the weights really are this large)")

    def take(self, n: int, where: str, claim: str) -> None:
        """Count ``n`` more bytes against the limit, or raise naming ``where`` and ``claim``."""
        if n > self.left:
            before = self.limit - self.left
            total = f" ({_size(before + n)} with the entries before it)" if before else ""
            raise WeightsError(f"{where}: {claim}{total}, {self.why()}: a zip bomb, a corrupted header, "
                               "or weights far larger than a network checked by hand")
        self.left -= n


def read_weight_file(path: str | os.PathLike, *, max_bytes: int | str | None = None) -> dict[str, np.ndarray]:
    """Arrays by name from a ``.npz``, a ``.npy`` (named by its stem), a folder of ``.npy``
    files (``conv1/weight.npy`` -> ``conv1.weight``) or a ``.safetensors`` file.

    Pickled (object-dtype) arrays are refused, never loaded. Sizes are checked before anything
    is inflated or allocated: the zip directory's declared sizes, each ``.npy`` header's shape
    against the bytes that really follow it, and the total against ``max_bytes`` (see
    :func:`max_weight_bytes`; 1 GiB unless ``TRIGRAD_MAX_WEIGHT_BYTES`` says otherwise). A
    corrupted, truncated, oversized or otherwise unreadable file raises :class:`WeightsError`
    naming the file and the entry.
    """
    p = Path(path)
    budget = _Budget(max_bytes)
    if not p.exists():
        raise WeightsError(f"weights file '{p}' not found (supported: {SUPPORTED})")
    if p.is_dir():
        return _read_folder(p, budget)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _read_numpy(p, p.stem, budget)
    if suffix == ".safetensors":
        return _read_safetensors(p, budget)
    raise WeightsError(
        f"weights file '{p}': unknown extension {p.suffix or '(none)'!r}; supported: {SUPPORTED}"
    )


def _read_numpy(p: Path, name: str, budget: _Budget) -> dict[str, np.ndarray]:
    """A ``.npy`` as ``{name: array}`` or a ``.npz`` as its entries, told apart by content."""
    try:
        with open(p, "rb") as f:
            head = f.read(6)
            if head == b"\x93NUMPY":
                f.seek(0)
                return {name: _read_npy(f, os.fstat(f.fileno()).st_size, f"'{p}'", budget)}
        if head.startswith(b"PK"):
            return _read_npz(p, budget)
    except OSError as e:
        raise WeightsError(f"could not read '{p}': {e}") from None
    # np.load would treat anything else as a pickle; say what the file is instead of trying it
    raise WeightsError(
        f"'{p}' is not a NumPy .npy/.npz file (pickles, as written by pickle.dump or "
        "torch.save, are not read: unpickling can run code)"
    )


def _read_npz(p: Path, budget: _Budget) -> dict[str, np.ndarray]:
    """Every entry of a ``.npz``, each checked against the directory's declared size, the
    limit and its own header before a byte of it is inflated."""
    out: dict[str, np.ndarray] = {}
    entry = ""
    try:
        with zipfile.ZipFile(p) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            declared = copy.copy(budget)
            for info in infos:  # the directory's word first: refuse a bomb before inflating anything
                entry = info.filename[:-4] if info.filename.endswith(".npy") else info.filename  # as np.load
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    method = zipfile.compressor_names.get(info.compress_type, str(info.compress_type))
                    raise WeightsError(f"'{p}' (entry '{entry}'): compression method {method}; NumPy writes .npz "
                                       "files stored (np.savez) or deflated (np.savez_compressed) only")
                declared.take(info.file_size, f"'{p}' (entry '{entry}')", "the zip directory says it inflates "
                              f"from {_size(info.compress_size)} to {_size(info.file_size)}")
            for info in infos:
                entry = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if entry in out:
                    raise WeightsError(f"'{p}' holds two entries named '{entry}'; the file was not written by NumPy")
                with z.open(info) as f:  # zipfile never inflates past the declared size
                    out[entry] = _read_npy(f, info.file_size, f"'{p}' (entry '{entry}')", budget, npz=True)
                    while f.read(_CHUNK):  # to the end, so the CRC is checked
                        pass
    except WeightsError:
        raise
    except MemoryError:
        raise WeightsError(f"'{p}' (entry '{entry}'): not enough memory to read it") from None
    except _CORRUPT as e:
        where = f" (entry '{entry}')" if entry else ""
        raise _corrupt(f"'{p}'{where}", f"{type(e).__name__}: {e}") from None
    return out


def _read_npy(f: BinaryIO, available: int, where: str, budget: _Budget, npz: bool = False) -> np.ndarray:
    """One ``.npy`` from ``f`` (at its magic string), ``available`` bytes long at most: the
    header's shape is checked against those bytes and the limit before the array is allocated."""
    fmt = np.lib.format
    try:
        magic = f.read(fmt.MAGIC_LEN)
        if not magic.startswith(fmt.MAGIC_PREFIX):
            raise WeightsError(f"{where} is not a NumPy array" + ("; is this really a .npz?" if npz else ""))
        if len(magic) < fmt.MAGIC_LEN:
            raise _corrupt(where, "it ends inside the .npy magic string")
        version = tuple(magic[-2:])
        if version not in ((1, 0), (2, 0)):  # 3.0 only for non-Latin-1 field names: never float weights
            raise _corrupt(where, f".npy format version {version[0]}.{version[1]} is not read (only 1.0 and 2.0 "
                                  "hold plain arrays)")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise WeightsError(f"{where} holds a pickled object array; pickled arrays are not read because "
                               "unpickling can run code: save plain numeric arrays")
        if any(n < 0 for n in shape):
            raise _corrupt(where, f"the header's shape {shape} has a negative size")
        nbytes, follows = math.prod(shape) * dtype.itemsize, available - f.tell()
        what = f"the header claims shape {shape} {dtype} = {_size(nbytes)}"
        short = f" but only {_size(max(follows, 0))} follow the header" if nbytes > follows else ""
        budget.take(nbytes, where, what + short)
        if short:
            raise _corrupt(where, what + short)
        buf = bytearray(nbytes)
        view, done = memoryview(buf), 0
        while done < nbytes:
            n = f.readinto(view[done:done + _CHUNK])
            if not n:
                raise _corrupt(where, f"{what} but the data ends after {_size(done)}")
            done += n
        return np.ndarray(shape, dtype, buffer=buf, order="F" if fortran else "C")
    except WeightsError:
        raise
    except MemoryError:
        raise WeightsError(f"{where}: not enough memory to read it") from None
    except _CORRUPT as e:
        raise _corrupt(where, f"{type(e).__name__}: {e}") from None


def _corrupt(where: str, detail: str) -> WeightsError:
    return WeightsError(f"could not read {where} as a NumPy file: {detail}: the file is corrupted or truncated "
                        "(an interrupted download or copy?); write it again with np.save / np.savez")


def _read_folder(folder: Path, budget: _Budget) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for f in sorted(folder.rglob("*.npy")):
        # nested folders give dotted names: conv1/weight.npy -> conv1.weight
        name = ".".join(f.relative_to(folder).with_suffix("").parts)
        for key, arr in _read_numpy(f, name, budget).items():
            if key in out:
                raise WeightsError(
                    f"folder '{folder}': '{origin[key]}' and '{f}' both give the name '{key}'"
                )
            out[key], origin[key] = arr, f
    if not out:
        raise WeightsError(f"folder '{folder}' holds no .npy files (supported: {SUPPORTED})")
    return out


def _read_safetensors(p: Path, budget: _Budget) -> dict[str, np.ndarray]:
    try:  # optional dependency: only .safetensors users need it
        from safetensors.numpy import load_file
    except ImportError:
        raise WeightsError(
            f"'{p}' is a .safetensors file, which needs the 'safetensors' package: "
            "pip install safetensors (or save the weights as .npz)"
        ) from None
    # not compressed: the arrays are at most the file, and safetensors checks offsets against it
    budget.take(p.stat().st_size, f"'{p}'", f"the file holds {_size(p.stat().st_size)}")
    try:
        return dict(load_file(str(p)))
    except Exception as e:  # safetensors raises its own error type on a corrupt file
        raise WeightsError(f"could not read '{p}' as .safetensors: {e}") from None


# --------------------------------------------------------------------------- renaming


def map_names(
    arrays: Mapping[str, np.ndarray], mapping: NameMapping
) -> dict[str, np.ndarray]:
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
            raise WeightsError(
                f"mapping turned '{user}' into {new!r}; expected a canonical name or None to drop it"
            )
        if new in out:
            clashes.append(f"'{out[new][0]}' and '{user}' both map to '{new}'")
        else:
            out[new] = (user, arr)
    if clashes:
        raise WeightsError(
            "two weights map to one canonical name: " + "; ".join(clashes)
            + " (a mapping rule is too broad, or a name kept as it is collides with a renamed one)"
        )
    return out


def _renamer(mapping: NameMapping) -> Callable[[str], Optional[str]]:
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
    if isinstance(source, Mapping):
        arrays, where = source, "the weights"
    elif isinstance(source, (str, os.PathLike)):
        arrays, where = read_weight_file(source, max_bytes=max_bytes), f"the weights in '{source}'"
    else:
        raise WeightsError(
            f"weights source must be a path or a dict of name -> array, got {type(source).__name__}"
        )
    if layout is not None:
        if convert is not None:
            raise WeightsError("pass either layout= or convert=, not both")
        from .layouts import spec_converter

        convert = spec_converter(spec, input_shape, layout)
    entries = _rename(arrays, mapping)
    expected = named_params(spec, input_shape)
    layers = dict(walk(spec))
    missing = [n for n in expected if n not in entries]
    # one list per kind of problem, reported in this order
    problems: dict[str, list[str]] = {
        "unmatched (in the file, not in the spec)": [], "missing (in the spec, not in the file)": [],
        "mis-shaped": [], "not floating point": [], "convert failed": [],
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
        try:  # numpy, torch (even requires_grad or bfloat16), jax, lists ...
            arr, kind = to_float64(value, f"weights entry {label}")
        except ArrayError:
            try:
                found = f"dtype {np.asarray(value).dtype}"  # strings, objects ...
            except Exception:  # ragged lists and the like
                found = "not an array"
            problems["not floating point"].append(f"{label} ({found})")
            continue
        if not _dtype_ok(name, kind.dtype):
            problems["not floating point"].append(f"{label} (dtype {kind.dtype})")
            continue
        if convert is not None:
            try:
                arr = np.asarray(convert(name, arr))
            except Exception as e:  # a layout that does not fit this array: report, keep going
                problems["convert failed"].append(f"{label} of shape {arr.shape}: {e}")
                continue
        shape = expected[name].shape
        if arr.shape != shape:
            if _squeezed(arr.shape) != _squeezed(shape):
                hint = _shape_hint(arr.shape, shape, layers.get(name.rpartition(".")[0]), name.rpartition(".")[2],
                                   layout if layout is not None else CANONICAL)
                problems["mis-shaped"].append(f"{label} expected {shape}, found {arr.shape}{hint}")
                continue
            arr = arr.reshape(shape)  # a (1, C, 1, 1) or (C, 1) bias: same numbers, other layout
        out[name] = np.array(arr, dtype=np.float64)  # a copy: the caller's arrays stay theirs

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
    return {n: out[n] for n in expected}


def _dtype_ok(name: str, dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.floating):
        return True
    # dropout masks are 0/1 and naturally saved as bool or int
    return name.endswith(".mask") and (dtype == np.bool_ or np.issubdtype(dtype, np.integer))


def _shape_hint(found: tuple[int, ...], expected: tuple[int, ...], layer: Layer | None, local: str,
                layout: Layout) -> str:
    """The likely cause, for a parameter whose shape does not fit even up to size-1 axes."""
    hint = shape_hint(layer, local, found, expected, layout) if layer is not None else ""
    if hint:
        return hint
    if np.prod(found, dtype=np.int64) == np.prod(expected, dtype=np.int64):
        # reshaping beyond size-1 axes could silently scramble values, so it is not done
        return "; same number of values in another shape: reshape it (or pass convert=)"
    return ""


__all__ = ["DEFAULT_MAX_BYTES", "MAX_BYTES_ENV", "WeightsError", "load_weights", "map_names", "max_weight_bytes",
           "read_weight_file"]
