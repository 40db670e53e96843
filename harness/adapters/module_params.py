"""Where a torch module (or a forward-only object) keeps the parameters a spec names: the
place the user declared, else the name itself, else the usual names (``W``, ``w``,
``kernel`` ... for ``weight``; see :data:`~harness.adapters.refs.PARAM_CANDIDATES`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec import Layer, named_params
from .refs import PARAM_CANDIDATES, AdapterError, Ref
from .returns import _is_array
from .state import dummy_input


def spec_locals(spec: Layer) -> dict[str, bool]:
    """The spec's parameters by the names a wrapper uses (local ``weight`` for one layer,
    ``conv1.weight`` inside a span), each with whether it is trainable."""
    shape, _ = dummy_input(spec)
    prefix = f"{spec.name}." if spec.children() and spec.name else ""
    if not spec.children():
        return {k: info.trainable for k, info in spec.local_params(shape).items()}
    return {k.removeprefix(prefix): info.trainable for k, info in named_params(spec, shape).items()}


def locate_params(obj: Any, wanted: Mapping[str, bool], declared: Mapping[str, str], owner: str) -> dict[str, str]:
    """``{local: path on obj}`` for each parameter of ``wanted`` (local -> trainable):
    ``declared`` first, then the local name, then the usual names, as attribute paths
    (``"fc.weight"``: what ``torch.func.functional_call`` takes). A trainable parameter
    found nowhere is an AdapterError listing what the object holds; a missing buffer is left
    to the function pair's rules (running statistics kept or not)."""
    unknown = [k for k in declared if k not in wanted]
    if unknown:
        raise AdapterError(
            f"{owner}: params names {unknown} are not parameters of the spec; expected some of {list(wanted)}"
        )
    out: dict[str, str] = {}
    for local, trainable in wanted.items():
        if local in declared:
            if not Ref(declared[local]).exists(obj) or not _is_array(Ref(declared[local]).get(obj)):
                raise AdapterError(
                    f"{owner}: params declares '{local}' at {declared[local]!r}, but {type(obj).__name__} holds no "
                    f"tensor there; it holds {_held(obj)}"
                )
            out[local] = declared[local]
            continue
        owner_path, _, leaf = local.rpartition(".")
        names = list(dict.fromkeys((leaf, *PARAM_CANDIDATES.get(leaf, ()))))
        for name in names:
            path = f"{owner_path}.{name}" if owner_path else name
            if Ref(path).exists(obj) and _is_array(Ref(path).get(obj)):
                out[local] = path
                break
        else:
            if trainable:
                raise AdapterError(
                    f"{owner}: cannot find the spec's parameter '{local}' on {type(obj).__name__} (tried "
                    f"{', '.join(repr(n) for n in names)}); it holds {_held(obj)}; "
                    f"pass params={{'{local}': {_guess(obj, leaf)!r}}} with where it lives"
                )
    return out


def _guess(obj: Any, leaf: str) -> str:
    """A held tensor's path ending in ``leaf`` (``"lin.weight"``), for the error's example."""
    named = getattr(obj, "named_parameters", None)
    paths = [k for k, _ in named()] if callable(named) else []
    return next((p for p in paths if p.rpartition(".")[2] == leaf), "where")


def _held(obj: Any) -> str:
    """What tensors ``obj`` holds, by name, for an error message."""
    named = getattr(obj, "named_parameters", None)
    if callable(named):
        names = [f"{k} {tuple(v.shape)}" for k, v in named()]
    else:
        names = [f"{k} {tuple(v.shape)}" for k, v in vars(obj).items() if _is_array(v)]
    return ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "no tensors"


__all__ = ["locate_params", "spec_locals"]
