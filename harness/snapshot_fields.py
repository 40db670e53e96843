"""Snapshot manifest fields: what each may hold, and the check of every field.

A manifest says how to read and judge a snapshot (its dtype scales every tolerance, its
entries say what is compared), so every field is checked before anything trusts it:
:func:`validate` refuses a missing, mistyped or out-of-range field with a
:class:`SnapshotError` naming the file, the field, what was expected and what was found.
The lowest of the snapshot modules: :mod:`harness.snapshot_manifest` (hashing and reading
the manifest text) re-exports everything here that it exported before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

FORMAT = "trigrad.snapshot/2"
CONTAINERS = ("npz", "safetensors")
HASH_FIELD = "manifest_sha256"
# the dtypes the user's code may compute in; anything else (int64, bool) would make the
# precision ratio of regress.compare multiply every tolerance by ~1e284
KNOWN_DTYPES = ("float16", "float32", "float64", "float96", "float128")  # the last two: long double
KINDS = ("layer", "network")
REQUIRED_ARRAYS = ("x", "g", "output")  # and "input", except for code declared input_grad=False
# room above the tolerance this trigrad would compute, for a later trigrad's tolerance
# policy; far below what would hide a real bug (a factor 3 on a gradient)
TOL_SLACK = 4.0
RERECORD = "re-record it (pytest --trigrad-update, or harness.record_snapshot(...).save(path))"
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_ELEMENTS = 2**62  # more than any array numpy can hold


class SnapshotError(Exception):
    """A snapshot file is missing, corrupted, tampered with, or of another format or spec."""


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Raises a SnapshotError naming the file, the field, what was expected and found."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, expected: str, found: Any) -> None:
        raise SnapshotError(
            f"{self.where}: field '{path}' is {_short(found)}, expected {expected}; the manifest was "
            f"edited or written by another program: {RERECORD}"
        )

    def get(self, obj: dict, key: str, path: str, kind: type | tuple, expected: str) -> Any:
        if key not in obj:
            raise SnapshotError(f"{self.where}: field '{path}' is missing (expected {expected}); {RERECORD}")
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            self.fail(path, expected, value)
        return value


def _tuple(kind: type | tuple) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def validate(manifest: Any, where: str) -> None:
    """Refuse a manifest with a missing, mistyped or out-of-range field (``where`` names the
    file in the message). Checks the format, container, dtype, seed, the params and arrays
    tables and every entry (kind, arrays, tolerances); the hashes are checked by the loader."""
    f = _Fields(where)
    if not isinstance(manifest, dict):
        raise SnapshotError(
            f"{where}: the manifest is a JSON {type(manifest).__name__}, expected an object; {RERECORD}"
        )
    fmt = manifest.get("format")
    if fmt != FORMAT:
        old = " (written by an older trigrad)" if isinstance(fmt, str) and fmt.startswith("trigrad.snapshot/") else ""
        raise SnapshotError(f"{where}: format {fmt!r}{old}, expected {FORMAT!r}; {RERECORD}")
    if f.get(manifest, "container", "container", str, f"one of {CONTAINERS}") not in CONTAINERS:
        f.fail("container", f"one of {CONTAINERS}", manifest["container"])
    dtype = f.get(manifest, "dtype", "dtype", str, f"one of {KNOWN_DTYPES}")
    if dtype not in KNOWN_DTYPES:
        f.fail("dtype", f"a floating dtype, one of {KNOWN_DTYPES}", dtype)
    f.get(manifest, "seed", "seed", int, "an integer")
    versions = f.get(manifest, "versions", "versions", dict, "an object of package versions")
    for k, v in versions.items():
        if not isinstance(v, str):
            f.fail(f"versions.{k}", "a version string", v)
    f.get(manifest, "spec", "spec", (dict, type(None)), "an object or null")
    replaces = manifest.get("replaces")  # absent in snapshots of earlier trigrads of this format
    if replaces is not None and not (isinstance(replaces, str) and _HEX64.fullmatch(replaces)):
        f.fail("replaces", "null or the 64 hex digits of the manifest this save replaced", replaces)
    params = _names(f, manifest, "params")
    arrays = _arrays_table(f, manifest)
    entries = f.get(manifest, "entries", "entries", dict, "an object of entries")
    if not entries:
        f.fail("entries", "at least one entry (a layer, or the network pass)", entries)
    keys = {f"params/{p}" for p in params}
    for name, entry in entries.items():
        keys |= _entry(f, name, entry, dtype, arrays)
    missing, extra = sorted(keys - set(arrays)), sorted(set(arrays) - keys)
    if missing or extra:
        f.fail(
            "arrays",
            f"one row per parameter and entry array (missing {missing[:5]}, unexpected {extra[:5]})",
            sorted(arrays)[:5],
        )
    if not isinstance(manifest.get(HASH_FIELD), str) or not _HEX64.fullmatch(manifest[HASH_FIELD]):
        f.fail(HASH_FIELD, "64 hex digits", manifest.get(HASH_FIELD))


def _names(f: _Fields, obj: dict, key: str, path: str | None = None) -> list[str]:
    path = path or key
    names = f.get(obj, key, path, list, "a list of names")
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        f.fail(path, "a list of distinct non-empty names", names)
    return names


def _arrays_table(f: _Fields, manifest: dict) -> dict[str, dict]:
    table = f.get(manifest, "arrays", "arrays", dict, "an object: array name -> shape, dtype, sha256")
    for key, info in table.items():
        path = f"arrays.{key}"
        if not isinstance(info, dict):
            f.fail(path, "an object with shape, dtype and sha256", info)
        shape = f.get(info, "shape", f"{path}.shape", list, "a list of sizes")
        if (
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
            or len(shape) > 64
            or math.prod(shape) > MAX_ELEMENTS
        ):
            f.fail(
                f"{path}.shape", f"a list of at most 64 non-negative sizes, of at most {MAX_ELEMENTS} elements", shape
            )
        dtype = f.get(info, "dtype", f"{path}.dtype", str, "a numeric array dtype such as '<f8'")
        if not re.fullmatch(r"[<>|=][fiub]\d{1,2}", dtype):
            f.fail(f"{path}.dtype", "a numeric array dtype such as '<f8'", dtype)
        if not _HEX64.fullmatch(f.get(info, "sha256", f"{path}.sha256", str, "64 hex digits")):
            f.fail(f"{path}.sha256", "64 hex digits", info["sha256"])
    return table


def _entry(f: _Fields, name: str, entry: Any, dtype: str, arrays: dict[str, dict]) -> set[str]:
    """Check one entry; returns the array-table keys it needs."""
    path = f"entries.{name}"
    if not isinstance(entry, dict):
        f.fail(path, "an object with kind, arrays and tolerances", entry)
    kind = f.get(entry, "kind", f"{path}.kind", str, f"one of {KINDS}")
    if kind not in KINDS or (kind == "network") != (name == "(network)"):
        f.fail(f"{path}.kind", "'network' for the entry '(network)', 'layer' for every other", kind)
    names = _names(f, entry, "arrays", f"{path}.arrays")
    grads = [k[len("grad/") :] for k in names if k.startswith("grad/")]
    has_input = "input" in names  # absent: the code was declared input_grad=False
    allowed = {
        *REQUIRED_ARRAYS,
        "ref/output",
        *(["input", "ref/input"] if has_input else []),
        *(f"grad/{g}" for g in grads),
        *(f"ref/grad/{g}" for g in grads),
    }
    if not set(REQUIRED_ARRAYS) <= set(names) or not set(names) <= allowed:
        f.fail(
            f"{path}.arrays",
            f"{[*REQUIRED_ARRAYS, 'input']} ('input' not for code declared input_grad=False), "
            "'grad/NAME' per parameter and optionally 'ref/...'",
            names,
        )
    tols = f.get(entry, "tolerances", f"{path}.tolerances", dict, "an object: tensor -> tolerance")
    tensors = ["output", *(["input"] if has_input else []), *grads]
    if sorted(tols) != sorted(tensors):
        f.fail(f"{path}.tolerances", f"one tolerance per tensor {tensors}", sorted(tols))
    largest = max((math.prod(arrays.get(f"entries/{name}/{k}", {}).get("shape", [])) for k in names), default=1)
    ceiling = TOL_SLACK * _tolerance(dtype, largest)
    for tensor, tol in tols.items():
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 <= tol <= ceiling:
            f.fail(
                f"{path}.tolerances.{tensor}",
                f"a finite number between 0 and {ceiling:.1e} (the most a {dtype} tensor of {largest} elements gets)",
                tol,
            )
    return {f"entries/{name}/{k}" for k in names}


def _tolerance(dtype: str, reduction: int) -> float:
    """The largest tolerance :func:`harness.compare.tolerance` gives ``dtype`` for sums of at
    most ``reduction`` terms (no reduction in an entry exceeds its largest array)."""
    import numpy as np

    from .compare import tolerance

    try:
        np_dtype = np.dtype(dtype)
    except TypeError:  # float96 / float128 exist on some platforms only
        np_dtype = np.dtype(np.longdouble)
    return tolerance(np_dtype, max(int(reduction), 1))


__all__ = [
    "CONTAINERS",
    "FORMAT",
    "HASH_FIELD",
    "KINDS",
    "KNOWN_DTYPES",
    "MAX_ELEMENTS",
    "REQUIRED_ARRAYS",
    "RERECORD",
    "TOL_SLACK",
    "SnapshotError",
    "validate",
]
