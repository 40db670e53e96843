"""What a handwritten backward returns, read the same way for both calling styles.

Real code returns its gradients in several shapes; each is recognised:

* ``dx`` alone (an object keeps its parameter gradients as attributes: ``self.dW``);
* ``(dx, dW, db)``: one gradient per trainable parameter, in the spec's order;
* ``(dx, [dW, db])`` or ``(dx, (dW, db))``: the same, grouped;
* ``(dx, {"W": dW, "b": db})``: by name. A key may be the parameter's canonical local name
  (``weight``), its path in a fused span (``fc.weight``) or in the network
  (``fc1.weight``), the name the user declared with ``params=`` (``"W"``,
  ``"params['W']"``), or one of the usual names (``W``/``w``/``weight``/``kernel``/``gamma``
  ..., ``b``/``bias``/``beta`` ...), each also with a gradient prefix or suffix (``dW``,
  ``d_W``, ``grad_W``, ``W_grad``);
* with ``input_grad=False`` (a first layer that computes no input gradient, an Embedding):
  ``None``, ``(None, dW, db)``, ``(None, [dW, db])`` ..., or the gradients without the
  ``dx`` slot (a function pair with one parameter: ``dW`` alone, CS231n's
  ``word_embedding_backward``).

Anything else is a :class:`~harness.adapters.refs.ValueFinding` naming the structure found
and the forms expected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .refs import PARAM_CANDIDATES, ValueFinding

_PREFIXES = ("", "d", "d_", "grad_")
_SUFFIXES = ("", "_grad")


def _is_array(value: Any) -> bool:
    """An array object (numpy, torch, jax, cupy ...), not a container of them."""
    return not isinstance(value, (list, tuple, dict, str)) and (hasattr(value, "shape") or hasattr(value, "__array__"))


def _is_group(value: Any) -> bool:
    """Gradients grouped in one container: a dict, or a list/tuple of arrays (or None). A
    nested list of numbers (a pure-Python gradient) is an array, not a group."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(v is None or _is_array(v) for v in value)


def describe(value: Any, depth: int = 0) -> str:
    """A short picture of a returned structure: ``"(ndarray (2, 5), list of 2 [ndarray (5, 3), ndarray (3,)])"``."""
    if value is None:
        return "None"
    if _is_array(value):
        shape = getattr(value, "shape", None)
        return f"{type(value).__name__} {tuple(shape)}" if shape is not None else type(value).__name__
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:6])
        return f"dict {{{keys}{', ...' if len(value) > 6 else ''}}}"
    if isinstance(value, (list, tuple)):
        if depth >= 1 or not value:
            return f"{type(value).__name__} of {len(value)}"
        inner = ", ".join(describe(v, depth + 1) for v in list(value)[:5]) + (", ..." if len(value) > 5 else "")
        return f"({inner})" if isinstance(value, tuple) else f"list [{inner}]"
    return type(value).__name__


def expected_forms(names: Sequence[str], input_grad: bool) -> str:
    """The accepted forms, spelled with the parameters' names."""
    if not names:
        return "dx" + ("" if input_grad else " or None")
    grads = ", ".join(f"d{k.rpartition('.')[2]}" for k in names)
    keyed = ", ".join(f"'{k}': d{k.rpartition('.')[2]}" for k in names)
    first = "dx" if input_grad else "None"
    forms = f"({first}, {grads}), ({first}, [{grads}]), ({first}, ({grads})) or ({first}, {{{keyed}}})"
    return forms + ("" if input_grad else f", or ({grads}) without the dx slot")


def numbered(names: Sequence[str]) -> dict[str, int]:
    """In a fused span, each parameter's layer numbered from 1 among the layers that have
    parameters (``fc1.weight`` -> 1, ``fc2.weight`` -> 2), for CS231n's ``W1``, ``b2`` keys."""
    owners = list(dict.fromkeys(k.rpartition(".")[0] for k in names if "." in k))
    return {k: owners.index(k.rpartition(".")[0]) + 1 for k in names if "." in k} if len(owners) > 1 else {}


def aliases(
    name: str, declared: str | None = None, full: str | None = None, number: int | None = None
) -> tuple[set[str], set[str]]:
    """(strong, weak) dict keys that name parameter ``name``'s gradient: strong ones say it
    exactly (its local name, its path, the user's declared name); weak ones are the usual
    names (``W``, ``kernel``, ``b`` ...; numbered in a span: ``W1``, ``b2``), which in a
    fused span may fit several parameters."""
    local = name.rpartition(".")[2]
    strong = {name, local} | ({full} if full else set())
    if declared:
        strong.add(declared)
        last = (
            declared.rstrip("]").rpartition("[")[2].strip("'\"")
            if declared.endswith("]")
            else declared.rpartition(".")[2]
        )
        strong.add(last)
    weak = set(PARAM_CANDIDATES.get(local, ()))
    weak |= {f"{w}{number}" for w in weak} if number is not None else set()

    def spelled(keys: set[str]) -> set[str]:
        return {f"{p}{k}{s}" for k in keys for p in _PREFIXES for s in _SUFFIXES}

    strong = spelled(strong)
    return strong, spelled(weak) - strong


def by_key(
    grads: Mapping[Any, Any], names: Sequence[str], alias: Callable[[str], tuple[set[str], set[str]]], owner: str
) -> dict[str, Any]:
    """Gradients returned in a dict -> ``{name: gradient}``; a key that names no parameter, or
    several, or a parameter named twice, is a :class:`ValueFinding`."""
    table = {k: alias(k) for k in names}
    out: dict[str, Any] = {}
    for key, value in grads.items():
        hits = [k for k, (strong, _) in table.items() if key in strong] or [
            k for k, (_, weak) in table.items() if key in weak
        ]
        if len(hits) != 1:
            why = "names no trainable parameter" if not hits else f"could mean any of {hits}"
            raise ValueFinding(
                f"{owner}: backward returned a gradient under the key {key!r}, which {why}; expected "
                f"keys naming {list(names)} (their names, the names given with params=, or W/b, "
                f"dW/db ...)"
            )
        if hits[0] in out:
            raise ValueFinding(
                f"{owner}: backward returned two gradients for '{hits[0]}' (keys "
                f"{[k for k in grads if k in table[hits[0]][0] | table[hits[0]][1]]})"
            )
        out[hits[0]] = value
    return out


def split(
    result: Any,
    names: Sequence[str],
    alias: Callable[[str], tuple[set[str], set[str]]],
    owner: str,
    *,
    input_grad: bool,
    tuple_only: bool,
) -> tuple[Any, dict[str, Any] | None]:
    """A backward's return value -> (dx, {trainable parameter name: gradient}, or None when it
    returned no gradients). ``names``: the trainable parameters in order. ``tuple_only``: only
    a tuple is a structure and gradients may be kept elsewhere (object style: a list is a
    pure-Python dx); function pairs must return their gradients and may use a list."""
    n = len(names)
    if not n:  # a parameter-free layer returns dx, perhaps as (dx,)
        return (result[0] if isinstance(result, tuple) and len(result) == 1 else result), None
    if isinstance(result, Mapping) and not input_grad:  # the gradients alone, by name
        return None, by_key(result, names, alias, owner)
    if not input_grad and not tuple_only and n == 1 and _is_array(result):  # CS231n's word_embedding_backward: dW
        return None, {names[0]: result}
    containers = (tuple,) if tuple_only else (tuple, list)
    if not (isinstance(result, containers) and _starts_like_pair(result)):
        if tuple_only or (result is None and not input_grad):  # gradients kept on the object, or none computed
            return result, None
        raise _unreadable(result, names, owner, input_grad, tuple_only)
    items = list(result)
    if len(items) == 1 and tuple_only:
        return items[0], None
    if len(items) == 2 and _is_group(items[1]) and (n > 1 or isinstance(items[1], Mapping) or len(items[1]) == 1):
        group = items[1]
        if isinstance(group, Mapping):
            return items[0], by_key(group, names, alias, owner)
        if len(group) == n:
            return items[0], dict(zip(names, group))
    elif len(items) == 1 + n:
        return items[0], dict(zip(names, items[1:]))
    elif not input_grad and len(items) == n and items[0] is not None and all(v is None or _is_array(v) for v in items):
        return None, dict(zip(names, items))  # no dx slot at all
    raise _unreadable(result, names, owner, input_grad, tuple_only)


def _unreadable(result: Any, names: Sequence[str], owner: str, input_grad: bool, tuple_only: bool) -> ValueFinding:
    count = f"{len(result)} values: " if isinstance(result, (tuple, list)) else ""
    kept = "; or dx alone, with the gradients kept on the object (grads= says where)" if tuple_only else ""
    return ValueFinding(
        f"{owner}: backward must return ({', '.join(['dx', *('d' + k for k in names)])}), got "
        f"{count}{describe(result)}; expected {expected_forms(names, input_grad)}{kept}"
    )


def _starts_like_pair(result: Any) -> bool:
    """A tuple/list whose first item is an array or None and the rest arrays or groups:
    (dx, dW, db), (dx, [dW, db]) ... rather than a nested list of numbers."""
    items = list(result)
    return (
        bool(items)
        and (items[0] is None or _is_array(items[0]))
        and all(v is None or _is_array(v) or _is_group(v) for v in items[1:])
    )


__all__ = ["aliases", "by_key", "describe", "expected_forms", "numbered", "split"]
