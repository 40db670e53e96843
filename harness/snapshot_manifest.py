"""Snapshot manifests: their own hash, and reading their text.

A manifest says how to read and judge a snapshot (its dtype scales every tolerance, its
entries say what is compared), so it is guarded like the arrays: it carries
``manifest_sha256``, the sha256 of its canonical JSON without that field, and every field is
validated before anything trusts it (:func:`validate`, in :mod:`harness.snapshot_fields`,
re-exported here). A manifest that fails is refused with a :class:`SnapshotError` naming the
field, what was expected and what was found.

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
from collections.abc import Callable
from typing import Any

from .snapshot_fields import (
    CONTAINERS,
    FORMAT,
    HASH_FIELD,
    KNOWN_DTYPES,
    RERECORD,
    SnapshotError,
    _short,
    validate,
)

# re-exported: names this module held before the field checks moved to snapshot_fields
from .snapshot_fields import KINDS as KINDS
from .snapshot_fields import MAX_ELEMENTS as MAX_ELEMENTS
from .snapshot_fields import REQUIRED_ARRAYS as REQUIRED_ARRAYS
from .snapshot_fields import TOL_SLACK as TOL_SLACK

MAX_DEPTH = 100  # a manifest nests 4 levels, its spec 2 per nested block; JSON's parser recurses
MAX_DIGITS = 40  # no seed or size is longer (2**128 has 39 digits); Python refuses 4300+
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


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
