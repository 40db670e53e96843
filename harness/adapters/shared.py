"""One user object mapped at several places of a network.

A network that builds one ``ReLU()`` and calls it as ``relu1`` and ``relu2`` runs the
object's forward twice before its backward twice: the second forward overwrites what the
first stored for its backward (the input, the mask), so the first backward uses the second
call's cache. Each place checked alone passes; only the network's own pass fails, and it
fails because of the sharing, not because of how the calls are wired. Found by object
identity; an object that keeps nothing between its forward and its backward (a pure
function) can be shared harmlessly, so sharing is a finding only when the end-to-end pass
fails, and a note otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def shared_objects(layers: Mapping[str, Any]) -> list[list[str]]:
    """The groups of paths (forward order, two or more) whose wrapped layers are one user
    object (``is``); function pairs are not objects that keep a cache and are left out."""
    groups: dict[int, list[str]] = {}
    for path, w in layers.items():
        obj = getattr(w, "obj", None)
        if obj is not None:
            groups.setdefault(id(obj), []).append(path)
    return [paths for paths in groups.values() if len(paths) > 1]


def _named(paths: list[str]) -> str:
    quoted = [f"'{p}'" for p in paths]
    return " and ".join(quoted) if len(quoted) == 2 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def sharing_finding(paths: list[str], failed: bool) -> str:
    """The line for one group: the cause when the end-to-end pass failed, else a note."""
    same = f"{_named(paths)} are the same object"
    if failed:
        return (
            f"{same}: its second forward overwrites the cache the first backward needs; make one object per "
            "place (e.g. two ReLU() instances)"
        )
    return (
        f"note: {same}; harmless here (it keeps nothing between forward and backward), but one object per "
        "place is safer"
    )


def layer_note(path: str, paths: list[str]) -> str:
    """The line on an affected layer's own entry (which passes alone)."""
    others = [p for p in paths if p != path]
    shared_with = _named(others) if len(others) > 1 else f"'{others[0]}'"
    return (
        f"the network maps this object at {_named(paths)}: shared with {shared_with}; alone it passes, in the "
        "network its cache is overwritten (see (network))"
    )


__all__ = ["layer_note", "shared_objects", "sharing_finding"]
