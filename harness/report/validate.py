"""A report handed to a renderer, checked against ``schema.json`` first.

The renderers accept a :class:`~harness.results.Report` or its ``to_dict()`` read back from
JSON, which a person may have edited. A field of the wrong type would otherwise surface as an
AttributeError or TypeError deep inside the rendering; here it becomes one :class:`ReportError`
naming the field's JSON path, what the schema expects and what was found.

jsonschema is only a test dependency, so this walks the schema itself, knowing the keywords
``schema.json`` uses: ``$ref``, ``type``, ``const``, ``enum``, ``required``, ``properties``,
``items``, ``oneOf`` and ``minimum``. Keys the schema does not list are ignored (they cannot
break a renderer); numbers may be NaN or infinite (``to_dict()`` keeps them; JSON has null).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .files import SCHEMA_PATH
from .safe_text import visible

# Report.to_json() writes a non-finite error-map cell as null, which schema.json's "nested" does
# not list (its cells are numbers); such a report is the renderers' to draw, so null is let in
NULL_CELLS = "nested"
MAX_DEPTH = 64  # far deeper than a report (an error map of a rank-4 tensor is ~12 levels down)
CAUSE = (
    "was the JSON edited by hand, or written by another version of trigrad? `trigrad check --json` "
    "writes one that follows harness/report/schema.json"
)


class ReportError(ValueError):
    """A report (or its dict) that does not follow ``schema.json``: names the JSON path of the
    bad field, what was expected and what was found."""


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def report_data(report: Any) -> dict:
    """The report's dict (``report.to_dict()`` for a Report), checked against the schema;
    raises :class:`ReportError` at the first field that does not fit."""
    if hasattr(report, "to_dict"):
        try:
            data = report.to_dict()
        except (TypeError, ValueError, AttributeError) as e:  # a Report built by hand from the wrong parts
            raise ReportError(
                f"report.to_dict() failed ({type(e).__name__}: {e}): its layers should be "
                "LayerResult objects holding TensorResult objects"
            ) from None
    elif isinstance(report, Mapping):
        data = report
    else:
        raise ReportError(
            f"expected a trigrad Report or its to_dict() (a dict, e.g. read from the JSON report), "
            f"found {type(report).__name__}"
        )
    _check(data, _schema(), "$", 0)
    return data if isinstance(data, dict) else dict(data)


def _resolve(schema: Mapping) -> Mapping:
    while "$ref" in schema:  # only local references: "#/$defs/name"
        schema = _schema()["$defs"][schema["$ref"].rpartition("/")[2]]
    return schema


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too
    if isinstance(value, bool):  # True is an int to Python, not a number to JSON
        return False
    if kind in ("integer", "number"):
        if not isinstance(value, numbers.Integral if kind == "integer" else numbers.Real):
            return False
        try:  # an integer beyond float range breaks formatting it (and str() past 4300 digits)
            return isinstance(float(value), float)
        except OverflowError:
            return False
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, (list, tuple))
    return kind == "object" and isinstance(value, Mapping)


_NAMES = {
    "null": "null",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "an object",
}


def _expected(schema: Mapping) -> str:
    """What ``schema`` asks for, in words."""
    schema = _resolve(schema)
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else repr(v) for v in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_expected(s) for s in schema["oneOf"])
    kinds = schema.get("type", [])
    return " or ".join(_NAMES[k] for k in ([kinds] if isinstance(kinds, str) else kinds)) or "anything"


def _found(value: Any) -> str:
    """A short, safe description of what was found."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"the string '{visible(value if len(value) <= 40 else value[:40] + '...', one_line=True)}'"
    if isinstance(value, Mapping):
        return "an object with keys " + ", ".join(f"'{visible(k, one_line=True)}'" for k in list(value)[:6])
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, numbers.Integral) and int(value).bit_length() > 64:
        bits = int(value).bit_length()
        return f"an integer of {bits} bits" + (" (beyond float range)" if bits > 1024 else "")
    if isinstance(value, numbers.Number):
        text = repr(value)
        return f"{type(value).__name__} {text if len(text) <= 40 else text[:40] + '...'}"
    return f"a {type(value).__name__}"


def _fail(path: str, expected: str, value: Any) -> ReportError:
    return ReportError(f"report field {path}: expected {expected}, found {_found(value)} ({CAUSE})")


def _type_ok(value: Any, schema: Mapping) -> bool:
    kinds = schema.get("type")
    return kinds is None or any(_is(value, k) for k in ([kinds] if isinstance(kinds, str) else kinds))


def _check(value: Any, schema: Mapping, path: str, depth: int) -> None:
    """Raise :class:`ReportError` for the first place where ``value`` does not fit ``schema``."""
    schema = _resolve(schema)
    if depth > MAX_DEPTH:
        raise ReportError(f"report field {path}: nested more than {MAX_DEPTH} levels deep ({CAUSE})")
    if "oneOf" in schema:  # the alternative of the right type says what is wrong inside it
        fits = [s for s in map(_resolve, schema["oneOf"]) if _type_ok(value, s)]
        if not fits:
            raise _fail(path, _expected(schema), value)
        return _check(value, fits[0], path, depth + 1)
    if "const" in schema and not (isinstance(value, str) and value == schema["const"]):
        raise _fail(path, _expected(schema), value)
    if "enum" in schema and not ((isinstance(value, str) or value is None) and value in schema["enum"]):
        raise _fail(path, _expected(schema), value)
    if not _type_ok(value, schema):
        raise _fail(path, _expected(schema), value)
    if "minimum" in schema and value < schema["minimum"]:
        raise _fail(path, f"{_expected(schema)} of at least {schema['minimum']}", value)
    if isinstance(value, Mapping):
        for key in schema.get("required", []):
            if key not in value:
                expected = _expected(schema.get("properties", {}).get(key, {}))
                raise ReportError(f"report field {path}: the required field '{key}' ({expected}) is missing ({CAUSE})")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)) and "items" in schema:
        items = _resolve(schema["items"])
        nulls = schema is _schema()["$defs"][NULL_CELLS]
        if _takes_numbers(items) and all(_is(v, "number") or (nulls and v is None) for v in value):
            return  # the common case (a row of an error map), without a call per element
        for i, item in enumerate(value):
            if not (nulls and item is None):
                _check(item, items, f"{path}[{i}]", depth + 1)


def _takes_numbers(schema: Mapping) -> bool:
    """Whether every number fits ``schema`` (no bound): ``{"type": "number"}`` or a ``oneOf`` with it."""
    alternatives = [schema, *map(_resolve, schema.get("oneOf", []))]
    return any(s.get("type") == "number" and "minimum" not in s for s in alternatives)


__all__ = ["ReportError", "report_data"]
