"""Snapshot manifests: their own hash, and a check of every field.

A manifest says how to read and judge a snapshot (its dtype scales every tolerance, its
entries say what is compared), so it is guarded like the arrays: it carries
``manifest_sha256``, the sha256 of its canonical JSON without that field, and every field is
validated before anything trusts it. A manifest that fails here is refused with a
:class:`SnapshotError` naming the field, what was expected and what was found.

Manifest text is read with :func:`parse`, never bare ``json.loads``: text no trigrad writes
(nesting deeper than a manifest needs, lone surrogates that cannot be hashed, NaN and
infinities, keys given twice, integers of thousands of digits) is refused naming the field,
instead of escaping as a RecursionError or UnicodeEncodeError.

``replaces`` (a sealed field) is the hash of the manifest embedded in the data file a save
replaced, or null: a JSON that differs from the data file next to it is a save killed between
its two renames only when it names that data file's manifest here (see :mod:`harness.snapshot`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
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
MAX_DEPTH = 100  # a manifest nests 4 levels, its spec 2 per nested block; JSON's parser recurses
MAX_DIGITS = 40  # no seed or size is longer (2**128 has 39 digits); Python refuses 4300+
MAX_ELEMENTS = 2**62  # more than any array numpy can hold
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class SnapshotError(Exception):
    """A snapshot file is missing, corrupted, tampered with, or of another format or spec."""


class SnapshotWarning(UserWarning):
    """A snapshot was usable but something about its files needs a look (an interrupted write)."""


def canonical(manifest: dict[str, Any]) -> str:
    """The manifest's canonical JSON (sorted keys, no spaces) without its own hash."""
    body = {k: v for k, v in manifest.items() if k != HASH_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(manifest: dict[str, Any], where: str = "the snapshot (in memory)") -> str:
    """The sha256 of the manifest's canonical JSON; a SnapshotError naming ``where`` and the
    field when a string in it is no Unicode text (a lone surrogate cannot be encoded, so
    cannot be hashed)."""
    text = canonical(manifest)
    try:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        check_tree(manifest, where)  # raises, naming the field
        raise


def seal(manifest: dict[str, Any], where: str = "the snapshot (in memory)") -> dict[str, Any]:
    """``manifest`` with ``manifest_sha256`` set to the hash of its canonical JSON (``where``
    names it in an error)."""
    sealed = {k: v for k, v in manifest.items() if k != HASH_FIELD}
    sealed[HASH_FIELD] = digest(sealed, where)
    return sealed


def is_sealed(manifest: Any) -> bool:
    """Whether ``manifest`` is an object whose ``manifest_sha256`` matches the rest of it."""
    return isinstance(manifest, dict) and manifest.get(HASH_FIELD) == digest(manifest)


def successor(manifest: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``manifest`` sealed with ``replaces``: the hash of ``previous`` (the sealed manifest in
    the data file this save replaces; None when there is none). A save of the very content
    already there keeps its ``replaces``, so re-recording an unchanged snapshot leaves both
    files byte for byte as they were (no churn in a checked-in snapshot)."""
    replaces = None if previous is None else previous[HASH_FIELD]
    if previous is not None and "replaces" in previous:
        strip = lambda m: {k: v for k, v in m.items() if k not in ("replaces", HASH_FIELD)}  # noqa: E731
        if canonical(strip(manifest)) == canonical(strip(previous)):
            replaces = previous["replaces"]
    return seal({**manifest, "replaces": replaces})


def differences(found: Any, truth: Any, where: str = "") -> list[str]:
    """Field paths (``entries.conv.tolerances.bias``) where ``found`` differs from ``truth``,
    each with both values, for an error message."""
    if isinstance(found, dict) and isinstance(truth, dict):
        out = []
        for key in sorted(set(found) | set(truth), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in truth:
                out.append(f"field '{path}' was added ({_short(found[key])})")
            elif key not in found:
                out.append(f"field '{path}' was removed (recorded: {_short(truth[key])})")
            else:
                out += differences(found[key], truth[key], path)
        return out
    if json.dumps(found, sort_keys=True) == json.dumps(truth, sort_keys=True):
        return []
    return [f"field '{where}' is {_short(found)} here, {_short(truth)} as recorded"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- parsing


class _Repeated(dict):
    """A JSON object in which the keys ``repeated`` were given more than once."""

    repeated: list[str]


class _LongInteger:
    """Stands for a JSON integer of ``digits`` digits (more than MAX_DIGITS): never converted."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    marked = _Repeated(out)
    marked.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return marked


def _integer(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > MAX_DIGITS else int(text)


def parse(text: Any, where: str) -> dict[str, Any]:
    """The manifest object in ``text``; a SnapshotError naming ``where`` (the file) and the
    field for anything that is no JSON object trigrad could have written (see the module
    docstring). Checks only the JSON itself: :func:`validate` checks the fields."""
    cause = f"the file is corrupted or was edited: {RERECORD}"
    if not isinstance(text, str):
        raise SnapshotError(f"{where}: the manifest is a {type(text).__name__}, expected JSON text; {cause}")
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer)
    except RecursionError:
        raise SnapshotError(
            f"{where}: nested more than {MAX_DEPTH} levels deep (deeper than the JSON parser "
            f"follows), not a manifest; {cause}"
        ) from None
    except ValueError as e:
        raise SnapshotError(f"{where}: not a valid JSON manifest ({e}); {cause}") from e
    if not isinstance(value, dict):
        raise SnapshotError(
            f"{where}: the manifest is a JSON {_JSON_TYPES.get(type(value), '?')}, expected an object; {cause}"
        )
    check_tree(value, where)
    return value


def _safe(text: str) -> str:
    """``text`` printable: a lone surrogate shown as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _path(path: tuple) -> str:
    parts = [_safe(str(p)) for p in path]
    return ".".join(parts) if len(parts) <= 8 else ".".join(parts[:5]) + "..."


def check_tree(value: Any, where: str) -> None:
    """Refuse, naming the field, nesting deeper than MAX_DEPTH, a string or key that is no
    Unicode text, a NaN or infinite number, an integer of more than MAX_DIGITS digits, or a
    key given twice. Iterative: a deep tree cannot exhaust the stack here."""

    def fail(path: tuple, what: str) -> None:
        raise SnapshotError(
            f"{where}: field '{_path(path)}' {what}; the manifest was edited or written by another program: {RERECORD}"
        )

    stack: list[tuple[Any, tuple]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            fail(path, f"is nested more than {MAX_DEPTH} levels deep (a manifest needs a few)")
        if isinstance(node, _Repeated):
            fail((*path, node.repeated[0]), "is given twice in one object (JSON readers disagree on which counts)")
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(key, (*path, key), fail, "(a key) ")
                stack.append((item, (*path, key)))
        elif isinstance(node, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(node))
        elif isinstance(node, str):
            _check_text(node, path, fail)
        elif isinstance(node, float) and not math.isfinite(node):
            fail(
                path,
                "is NaN, expected a finite number"
                if node != node
                else "is infinite (beyond 1.8e308, or the literal Infinity), expected a finite number",
            )
        elif isinstance(node, _LongInteger):
            fail(path, f"is an integer of {node.digits} digits, expected at most {MAX_DIGITS}")


def _check_text(text: str, path: tuple, fail: Callable[[tuple, str], None], what: str = "") -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        fail(
            path,
            f"{what}is not Unicode text: a lone surrogate '{_safe(text[e.start])}' at character {e.start}, "
            "which cannot be encoded, so not hashed",
        )


# --------------------------------------------------------------------------- validation


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
    "KNOWN_DTYPES",
    "SnapshotError",
    "SnapshotWarning",
    "canonical",
    "check_tree",
    "differences",
    "digest",
    "is_sealed",
    "parse",
    "seal",
    "successor",
    "validate",
]
