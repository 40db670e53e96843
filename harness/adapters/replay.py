"""The same random draws on every call of a layer that draws its own dropout mask.

Handwritten dropout draws a fresh mask on every forward (``self.mask = np.random.rand(*x.shape)
> p``, CS231n's ``np.random.rand(*x.shape) < p``). trigrad calls that forward many times at one
point (a warm-up, the point, finite-difference probes, a determinism check) and compares it with
references that must drop the same units. So every call of such a layer starts from one fixed
random state, per layer: numpy's global generator, Python's ``random``, torch's global generator
(when torch is already loaded), and any ``np.random.Generator`` / ``RandomState`` the user's
object holds (as an attribute or in a dict attribute). After the call every one of them is put
back as it was, so the user's random streams are not advanced by a check. A forward that draws
from a generator it creates unseeded (``np.random.default_rng()``) cannot be replayed: its
output then changes from call to call and the check says the forward is not deterministic.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np


def _generators(obj: Any) -> list[Any]:
    """The numpy generators an object holds: attributes, and values of dict attributes."""
    if obj is None:
        return []
    found = []
    for value in list(getattr(obj, "__dict__", {}).values()):
        values = list(value.values()) if isinstance(value, dict) else [value]
        found += [v for v in values if isinstance(v, (np.random.Generator, np.random.RandomState))]
    return found


def _get(gen: Any) -> Any:
    return gen.bit_generator.state if isinstance(gen, np.random.Generator) else gen.get_state()


def _set(gen: Any, state: Any) -> None:
    if isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state
    else:
        gen.set_state(state)


def _fresh(gen: Any, seed: int) -> Any:
    """A state for ``gen``'s kind of generator, seeded with ``seed``."""
    if isinstance(gen, np.random.Generator):
        return type(gen.bit_generator)(seed).state
    return np.random.RandomState(seed).get_state()


class Replay:
    """One layer's fixed random state (seeded from its name), entered around every call: one
    state for every forward, another for every backward (a backward that draws a mask of its
    own must not draw the forward's by construction)."""

    def __init__(self, name: str, obj: Any = None) -> None:
        seed = zlib.crc32(name.encode())
        self._seed = {False: seed, True: seed ^ 0x5BD1E995}  # by backward=
        self._np = {b: np.random.RandomState(s).get_state() for b, s in self._seed.items()}
        self._py = {b: random.Random(s).getstate() for b, s in self._seed.items()}
        self._obj = obj
        self._own: dict[int, Any] = {}  # the object's generators' states at the first forward

    @contextmanager
    def call(self, backward: bool = False) -> Iterator[None]:
        """Run the block from the fixed state of a forward (or of a backward); every random
        state is as before afterwards."""
        torch = sys.modules.get("torch")
        own = _generators(self._obj)
        saved_own = [(g, _get(g)) for g in own]
        with kept_random_state():
            try:  # from here on every state is put back, even if setting one of them fails
                np.random.set_state(self._np[backward])
                random.setstate(self._py[backward])
                if torch is not None:
                    torch.default_generator.manual_seed(self._seed[backward])
                for g in own:
                    _set(g, _fresh(g, self._seed[True]) if backward else self._own.setdefault(id(g), _get(g)))
                yield
            finally:
                for g, state in saved_own:
                    _set(g, state)


@contextmanager
def kept_random_state() -> Iterator[None]:
    """Python's, numpy's and (when loaded) torch's global generators as they were, after the
    block: what the user's code draws next is not changed by a check."""
    saved_np, saved_py = np.random.get_state(), random.getstate()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_rng_state() if torch is not None else None  # the CPU generator only
    try:
        yield
    finally:
        np.random.set_state(saved_np)
        random.setstate(saved_py)
        if torch is not None:
            torch.set_rng_state(saved_torch)


@contextmanager
def replaying(layers: Mapping[str, Any]) -> Iterator[None]:
    """While the user's own network runs: every object-style layer that draws a mask has its
    forward replayed from the same state as when it is checked alone (so the network drops the
    units the references drop). Hooks go in through a per-object subclass, removed on exit."""
    undo: list[Callable[[], None]] = []
    try:
        for w in layers.values():
            replay, obj = getattr(w, "replay", None), getattr(w, "obj", None)
            name = getattr(w, "_forward_name", "forward")
            if replay is not None and obj is not None and name not in getattr(obj, "__dict__", {}):
                undo.append(_hook(obj, name, replay))
        yield
    finally:
        for restore in reversed(undo):
            restore()


def _hook(obj: Any, name: str, replay: Replay) -> Callable[[], None]:
    cls = type(obj)
    forward = getattr(cls, name)

    def replayed(self: Any, *args: Any, **kwargs: Any) -> Any:
        with replay.call():
            return forward(self, *args, **kwargs)

    namespace: dict[str, Any] = {"__slots__": (), name: replayed}
    if getattr(cls, "__call__", None) is forward:  # noqa: B004 - identity with forward, not callability
        namespace["__call__"] = replayed
    try:
        obj.__class__ = type(cls.__name__, (cls,), namespace)
    except Exception:  # a class that refuses __class__ assignment: its draws are not replayed
        return lambda: None

    def undo() -> None:
        obj.__class__ = cls

    return undo


__all__ = ["Replay", "kept_random_state", "replaying"]
