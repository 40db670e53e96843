"""One canonical parameter kept as several arrays on the user's object: a multi-head
attention's ``in_proj_weight`` (3E, E) as separate query, key and value projections (CS231n's
``self.query``, ``self.key``, ``self.value``), declared as a tuple of places::

    params={"in_proj_weight": ("query.W", "key.W", "value.W"),
            "in_proj_bias": ("query.b", "key.b", "value.b"),
            "out_proj_weight": "proj.W", "out_proj_bias": "proj.b"}

:class:`JoinedRef` reads them joined along the output axis (axis 0, or the last axis of an
``(in, out)`` weight under ``Layout(linear="in_out")`` and of a bias) and writes a value back
split, into the user's own arrays in place; the conversion is a concatenation and its exact
inverse. A part may be a slice of a larger array (numpy-ml's LSTM keeps one matrix per gate
acting on ``hstack([A_prev, X_t])``: ``weight_ih`` is ``("parameters['Wu'][H:]", ...)``), its
gradient the same slice of the gradient's array.
:class:`ArgumentRef` is a place in the arguments every forward is handed (an attention's
padding mask passed as ``forward_kwargs={"mask": m}``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .composite import under
from .refs import _STEP, AdapterError, Ref, _grad_candidates


class JoinedRef(Ref):
    """Several places on the user's object read as one array (their concatenation along
    ``axis``, read-only so that writes come back through :meth:`set`), written split."""

    def __init__(self, paths: Sequence[str], axis: int) -> None:
        if len(paths) < 2 or not all(isinstance(p, str) for p in paths):
            raise AdapterError(
                f"a parameter kept in parts is declared as a tuple of two or more places such as "
                f"('query.W', 'key.W', 'value.W'), got {tuple(paths)!r}"
            )
        self.parts = [Ref(p) for p in paths]
        self.axis = axis
        self.path = "(" + ", ".join(paths) + ")"
        self.steps = []

    def get(self, obj: Any) -> Any:
        arrays = [np.asarray(p.get(obj)) for p in self.parts]
        try:
            joined = np.concatenate(arrays, axis=self.axis)
        except ValueError:
            shapes = ", ".join(f"{p.path} {a.shape}" for p, a in zip(self.parts, arrays))
            raise AdapterError(
                f"the parts of {self.path} cannot be joined along axis {self.axis}: {shapes}; they must differ only "
                "along the output axis"
            ) from None
        joined.flags.writeable = False
        return joined

    def set(self, obj: Any, value: Any) -> None:
        sizes = [np.shape(p.get(obj))[self.axis] for p in self.parts]
        pieces = np.split(np.asarray(value), np.cumsum(sizes)[:-1], axis=self.axis)
        for part, piece in zip(self.parts, pieces):
            current = part.get(obj)
            if isinstance(current, np.ndarray) and current.flags.writeable and current.shape == piece.shape:
                current[...] = piece  # the user's own array keeps its identity
            else:
                part.set(obj, piece.copy())

    def exists(self, obj: Any) -> bool:
        return all(p.exists(obj) for p in self.parts)

    def grad_places(self) -> list[list[str]]:
        """For each part, where its gradient usually lives: the usual names next to it
        (``query.W`` -> ``query.dW``, ``query.grads['W']`` ...), then at the object's root
        (numpy-ml: ``parameters['Wf']`` -> ``gradients['Wf']``); a sliced part's gradient is
        the same slice of its array's (``gradients['Wf'][5:]``)."""
        out = []
        for part in self.parts:
            whole, cut = _unsliced(part)
            parent, last = split_last(Ref(whole))
            names = _grad_candidates(last)
            out.append([under(parent, c) + cut for c in names] + ([c + cut for c in names] if parent else []))
        return out


def _unsliced(ref: Ref) -> tuple[str, str]:
    """``("parameters['Wf']", "[5:]")`` for ``parameters['Wf'][5:]``; ``(path, "")`` unsliced."""
    if ref.steps and isinstance(ref.steps[-1][1], tuple):
        whole, cut = split_last(ref)
        return whole, cut
    return ref.path, ""


def split_last(ref: Ref) -> tuple[str, str]:
    """The path of what holds the last step, and that step: ``("query", "W")`` for
    ``query.W``, ``("query.params", "['W']")`` for ``query.params['W']``."""
    starts, pos = [], 0
    while pos < len(ref.path):
        starts.append(pos)
        m = _STEP.match(ref.path, pos)
        assert m is not None  # a Ref's path parsed already
        pos = m.end()
    return ref.path[: starts[-1]], ref.path[starts[-1] :].lstrip(".")


class ArgumentRef(Ref):
    """A place in what the wrapper hands every forward (``"forward_kwargs['mask']"``,
    ``"forward_args[0]"``), not on the user's object: an attention's padding mask passed as
    an argument. ``wrapper``: the object-style wrapper that holds those arguments."""

    def __init__(self, path: str, wrapper: Any) -> None:
        super().__init__(path)
        self.wrapper = wrapper

    def get(self, obj: Any) -> Any:
        return super().get(self.wrapper)

    def set(self, obj: Any, value: Any) -> None:
        super().set(self.wrapper, value)

    def exists(self, obj: Any) -> bool:
        return super().exists(self.wrapper)


# the keyword arguments an attention's padding mask is usually handed as
MASK_ARGUMENTS = ("key_padding_mask", "padding_mask", "pad_mask", "attention_mask", "mask")


def argument_mask(wrapper: Any) -> ArgumentRef | None:
    """The padding mask among the keyword arguments every forward is handed (a 2-D array
    under one of :data:`MASK_ARGUMENTS`), or None."""
    kwargs = getattr(wrapper, "forward_kwargs", {})
    name = next((k for k in MASK_ARGUMENTS if k in kwargs and np.ndim(kwargs[k]) == 2), None)
    return None if name is None else ArgumentRef(f"forward_kwargs[{name!r}]", wrapper)


def declared_ref(place: str | Sequence[str], axis: int, wrapper: Any = None) -> Ref:
    """A declared place: one path (on the object, or in ``forward_kwargs`` / ``forward_args``
    of ``wrapper``), or a tuple / list of paths kept in parts (joined along ``axis``)."""
    if isinstance(place, str):
        if wrapper is not None and place.startswith(("forward_kwargs", "forward_args")):
            return ArgumentRef(place, wrapper)
        return Ref(place)
    if isinstance(place, (tuple, list)):
        return JoinedRef(place, axis)
    raise AdapterError(f'a parameter\'s place is a path such as "W" or a tuple of paths, got {place!r}')


def find_joined_grad(ref: JoinedRef, obj: Any) -> JoinedRef | None:
    """The gradient of a joined parameter: each part's found next to it, or None."""
    found = []
    for places in ref.grad_places():
        hit = next((c for c in places if Ref(c).exists(obj)), None)
        if hit is None:
            return None
        found.append(hit)
    return JoinedRef(found, ref.axis)


__all__ = [
    "ArgumentRef",
    "JoinedRef",
    "MASK_ARGUMENTS",
    "argument_mask",
    "declared_ref",
    "find_joined_grad",
    "split_last",
]
