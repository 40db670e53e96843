"""Reading users' weight files, bounded and without pickle: ``.npz``, ``.npy``, a folder of
``.npy`` files, ``.safetensors`` -> arrays by name.

Sizes are checked before anything is inflated or allocated (zip directories, ``.npy``
headers against the bytes that follow them, a total per file), so a zip bomb or a lying
header is a :class:`WeightsError`, never a MemoryError; so is every corrupted file.
"""

from __future__ import annotations

import copy
import math
import os
import re
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ..spec import SpecError

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
_CORRUPT = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    SyntaxError,
    tokenize.TokenError,
)


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
        return (
            f"more than the {_size(self.limit)} limit on a weight file (raise it with max_bytes= or the "
            f"environment variable {MAX_BYTES_ENV} if the weights really are this large)"
        )

    def take(self, n: int, where: str, claim: str) -> None:
        """Count ``n`` more bytes against the limit, or raise naming ``where`` and ``claim``."""
        if n > self.left:
            before = self.limit - self.left
            total = f" ({_size(before + n)} with the entries before it)" if before else ""
            raise WeightsError(
                f"{where}: {claim}{total}, {self.why()}: a zip bomb, a corrupted header, "
                "or weights far larger than a network checked by hand"
            )
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
    suffix = p.suffix.lower()
    if p.is_dir():
        arrays = _read_folder(p, budget)
    elif suffix in (".npy", ".npz"):
        arrays = _read_numpy(p, p.stem, budget)
    elif suffix == ".safetensors":
        arrays = _read_safetensors(p, budget)
    else:
        raise WeightsError(f"weights file '{p}': unknown extension {p.suffix or '(none)'!r}; supported: {SUPPORTED}")
    if not arrays:  # an empty archive would otherwise surface later as every parameter missing
        raise WeightsError(
            f"weights file '{p}' holds no arrays: was it saved before the weights were added, "
            "or truncated to an empty archive?"
        )
    return arrays


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
                    names = getattr(zipfile, "compressor_names", {})  # undocumented (not in typeshed)
                    method = names.get(info.compress_type, str(info.compress_type))
                    raise WeightsError(
                        f"'{p}' (entry '{entry}'): compression method {method}; NumPy writes .npz "
                        "files stored (np.savez) or deflated (np.savez_compressed) only"
                    )
                declared.take(
                    info.file_size,
                    f"'{p}' (entry '{entry}')",
                    f"the zip directory says it inflates from {_size(info.compress_size)} to {_size(info.file_size)}",
                )
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


def _read_npy(f: IO[bytes], available: int, where: str, budget: _Budget, npz: bool = False) -> np.ndarray:
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
            raise _corrupt(
                where, f".npy format version {version[0]}.{version[1]} is not read (only 1.0 and 2.0 hold plain arrays)"
            )
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise WeightsError(
                f"{where} holds a pickled object array; pickled arrays are not read because "
                "unpickling can run code: save plain numeric arrays"
            )
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
            n = f.readinto(view[done : done + _CHUNK])  # type: ignore[attr-defined]  # files and zip entries have it; typing.IO lacks it
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
    return WeightsError(
        f"could not read {where} as a NumPy file: {detail}: the file is corrupted or truncated "
        "(an interrupted download or copy?); write it again with np.save / np.savez"
    )


def _read_folder(folder: Path, budget: _Budget) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for f in sorted(folder.rglob("*.npy")):
        # nested folders give dotted names: conv1/weight.npy -> conv1.weight
        name = ".".join(f.relative_to(folder).with_suffix("").parts)
        for key, arr in _read_numpy(f, name, budget).items():
            if key in out:
                raise WeightsError(f"folder '{folder}': '{origin[key]}' and '{f}' both give the name '{key}'")
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


__all__ = ["DEFAULT_MAX_BYTES", "MAX_BYTES_ENV", "SUPPORTED", "WeightsError", "max_weight_bytes", "read_weight_file"]
