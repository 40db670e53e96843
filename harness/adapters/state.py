"""Optional state and where it lives: batch norm's running statistics and dropout's mask.

- **Running statistics.** A training-mode batch norm normalises with the batch's own
  statistics, so code that keeps no ``running_mean`` / ``running_var`` is checked without them:
  the references are handed PyTorch's initial values (0 and 1), which the output and every
  gradient do not depend on, and the report notes that they were not checked. Where the code
  keeps them (an attribute, ``params['running_mean']``, a CS231n ``bn_param`` dict) they are
  read as before. An eval-mode batch norm (``training=False``) normalises with them: missing,
  they are an :class:`AdapterError` naming ``params=``.
- **Dropout's mask** (spec buffer ``mask``, the input's shape, 0/1): found on the object
  (``mask``, ``_mask``, ``params['mask']``, ``cache['mask']``, ``dropout_param['mask']``) at
  construction or after the forward that draws it; for a function pair in a dict argument
  (``dropout_param['mask']``) or in the cache the forward returns (CS231n's ``(dropout_param,
  mask)``). It may hold 0 and the ``1/(1-p)`` scale (CS231n's ``(rand < p) / p``) or be bool;
  in the user's data layout (NHWC). A forward that draws it is replayed from one random state
  per layer (see :mod:`.replay`), so every witness drops the same units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from ..spec import Dropout, Layer, _BatchNorm, walk
from . import attention
from .inputs import canonical_shape
from .refs import AdapterError, Ref, _copy

RUNNING = ("running_mean", "running_var")


def optional(leaf: Layer, local: str) -> bool:
    """A buffer the code may keep or not: a training-mode batch norm's running statistics."""
    return isinstance(leaf, _BatchNorm) and leaf.training and local in RUNNING


def deferred(leaf: Layer, local: str) -> bool:
    """A buffer that may appear only once the forward ran: a training-mode dropout's mask."""
    return isinstance(leaf, Dropout) and leaf.training and local == "mask"


def shape_dependent(leaf: Layer, local: str) -> bool:
    """A parameter whose shape is the input's: a dropout mask, a per-feature batch norm's, an
    attention's padding mask (and a scaled dot-product attention's key and value)."""
    return (
        deferred(leaf, local)
        or (isinstance(leaf, _BatchNorm) and leaf.over == "feature")
        or attention.shape_dependent(leaf, local)
    )


def draws(spec: Layer | None) -> bool:
    """Whether the layer (or a span of layers) holds a training-mode dropout."""
    return spec is not None and any(isinstance(l, Dropout) and l.training for _, l in walk(spec))


def default(local: str, shape: tuple[int, ...]) -> np.ndarray:
    """PyTorch's initial running statistics: mean 0, variance 1."""
    return np.zeros(shape) if local.endswith("running_mean") else np.ones(shape)


def absent_note(names: Iterable[str]) -> str:
    """The report's note for training-mode running statistics the code does not keep."""
    names = list(names)
    return (
        f"note: {' and '.join(names)} {'is' if len(names) == 1 else 'are'} not kept by the code (none found), so "
        "not checked; a training-mode batch norm's output and gradients use the batch's own statistics"
    )


def eval_error(layer: str, kind: str, missing: Sequence[str], tried: str, option: str) -> AdapterError:
    """An eval-mode batch norm whose running statistics cannot be found."""
    return AdapterError(
        f"layer '{layer}': an eval-mode {kind} (training=False) normalises with its running statistics, but "
        f"{', '.join(missing)} {'was' if len(missing) == 1 else 'were'} not found ({tried}); {option}"
    )


def dummy_input(spec: Layer) -> tuple[tuple[int, ...], bool]:
    """An input shape to list a layer's (or span's) parameters with, and whether their shapes
    are then exact: those of conv, linear and batch-norm layers do not depend on N, H, W (the
    first sizing layer tells the rest, past shape-preserving ones); a dropout's mask and a
    per-feature batch norm's parameters have the input's shape, which this cannot know."""
    from ..spec import Conv2d, Linear

    leaves = [layer for _, layer in walk(spec) if not layer.children()] or [spec]
    exact = not any(shape_dependent(l, "mask") or attention.input_sized(l) for l in leaves)
    for layer in leaves:
        if (shape := attention.dummy_input(layer)) is not None:
            return shape, exact
        if layer.index_input:  # integer indices (N, T): an Embedding's parameters do not depend on them
            return (2, 3), exact
        if isinstance(layer, Conv2d):  # spatial size large enough for any kernel a span holds
            return (2, layer.in_channels, 64, 64), exact
        if isinstance(layer, Linear):
            return (2, layer.in_features), exact
        if isinstance(layer, _BatchNorm):
            return (2, layer.num_features, *([64, 64] if layer.kind == "BatchNorm2d" else [])), exact
    return (1,), exact  # no sizing layer: parameters none, or LayerNorm's (which do not depend on the input)


def candidates(local: str) -> list[str]:
    """Where object-style code keeps a parameter: the usual places, and for running statistics
    also a CS231n-style ``bn_param`` dict the object hands its batchnorm function."""
    from .refs import PARAM_CANDIDATES, _candidates

    leaf_local = local.rpartition(".")[2]
    extra = [f"bn_param[{n!r}]" for n in PARAM_CANDIDATES[leaf_local]] if leaf_local in RUNNING else []
    return _candidates(local) + extra


def _present(ref: Ref, obj: Any) -> tuple[bool, Any]:
    """(whether something is at ``ref`` on ``obj``, None included, and its value)."""
    try:
        return True, ref.get(obj)
    except (AttributeError, KeyError, IndexError, TypeError):
        return False, None


def remember(obj: Any, names: Iterable[str]) -> list[tuple[Ref, bool, Any]]:
    """What is at the usual places of running statistics the object did not keep, before a
    check: (place, whether it was there, None included, its value). See :func:`restore_slots`."""
    return [(ref, *_present(ref, obj)) for local in names for ref in map(Ref, candidates(local))]


def restore_slots(obj: Any, remembered: list[tuple[Ref, bool, Any]]) -> None:
    """Put those places back as they were: what the user's forward created during a check is
    removed (CS231n's batchnorm creates its statistics in ``bn_param`` on its first call), and
    what was there before (``self.running_mean = None`` until the first forward) is set back."""
    for ref, existed, value in remembered:
        now, current = _present(ref, obj)
        if existed and (not now or current is not value):
            ref.set(obj, value)
        elif not existed and now:
            parent, (kind, key) = ref._parent(obj), ref.steps[-1]
            delattr(parent, key) if kind == "attr" else parent.pop(key)


# --------------------------------------------------------------------------- dropout masks


UNREPLAYABLE = (
    "likely cause: the dropout mask is drawn from a generator the forward creates unseeded (e.g. "
    "np.random.default_rng()), which trigrad cannot replay; draw it from np.random or from a generator "
    "kept on the object (self.rng), or keep the mask fixed, so every call drops the same units"
)


def mask_from_user(value: np.ndarray, what: str, where: str, option: str) -> np.ndarray:
    """A mask as the code keeps it (0/1, bool, or 0 and one scale such as ``1/(1-p)``) -> 0/1
    float64; :class:`AdapterError` when the array holds anything else (then it is not a mask)."""
    kept = value[value != 0]
    if kept.size and (np.any(kept < 0) or float(np.ptp(kept)) > 1e-6 * float(np.max(kept))):
        shown = np.unique(kept)[:4].tolist()
        raise AdapterError(
            f"{what}: the array read as its dropout mask at {where} holds values other than 0 and one constant "
            f"(e.g. {shown}); a mask is 0 where a unit is dropped and 1 (or the 1/(1-p) scale) where it is kept; "
            f"{option}"
        )
    return (value != 0).astype(np.float64)


def mask_scale(value: Any) -> float:
    """The constant a kept unit holds in the code's mask (1, or the folded-in scale)."""
    v = np.asarray(value, dtype=np.float64)
    kept = v[v != 0]
    return float(kept.max()) if kept.size else 1.0


MASK_NAMES = ("mask", "_mask", "dropout_mask", "drop_mask")
MASK_CONTAINERS = ("", "params", "cache", "_cache", "dropout_param", "param")


def mask_candidates() -> list[str]:
    """Where object-style dropout code keeps its mask, in the order tried."""
    return [f"{c}[{n!r}]" if c else n for c in MASK_CONTAINERS for n in MASK_NAMES]


def _is_mask(value: Any, shape: tuple[int, ...] | None) -> bool:
    if not isinstance(value, np.ndarray) and type(value).__module__.split(".")[0] not in ("torch", "jax", "cupy"):
        return False
    if type(value).__module__.startswith("cupy"):
        v = value.get()  # CuPy refuses np.asarray: an explicit copy to the host
    else:
        v = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if (shape is not None and v.shape != tuple(shape)) or v.dtype.kind not in "biuf" or v.size == 0:
        return False
    kept = v[v != 0].astype(np.float64)
    return not kept.size or (kept.min() > 0 and float(np.ptp(kept)) <= 1e-6 * float(kept.max()))


def find_mask(root: Any, shape: tuple[int, ...] | None) -> str | None:
    """The path of the mask in a function pair's ``root`` (attributes ``cache``: what its
    forward returned second, ``args`` / ``kwargs``: the copies it was handed): a ``mask`` key
    in a dict (the cache, one of its items, a dict argument such as ``dropout_param``), else
    the one array in the cache of the input's shape that holds 0 and one constant (CS231n's
    ``cache = (dropout_param, mask)``)."""
    spots: list[str] = []
    for top in ("cache", "args", "kwargs"):
        value = getattr(root, top, None)
        items = (
            list(enumerate(value))
            if isinstance(value, (tuple, list))
            else list(value.items())
            if isinstance(value, dict) and top != "cache"
            else []
        )
        for prefix, item in [(top, value), *((f"{top}[{k!r}]", v) for k, v in items)]:
            if isinstance(item, dict):
                spots += [f"{prefix}[{k!r}]" for k in MASK_NAMES if k in item and _is_mask(item[k], shape)]
    if spots:
        return spots[0]
    cache = getattr(root, "cache", None)
    if _is_mask(cache, shape):
        return "cache"
    found = (
        [f"cache[{i}]" for i, v in enumerate(cache) if _is_mask(v, shape)] if isinstance(cache, (tuple, list)) else []
    )
    return found[0] if len(found) == 1 else None


# --------------------------------------------------------------------------- function pairs' arguments


def fresh(value: Any) -> Any:
    """What a function pair's forward is handed for one argument: dicts (``bn_param``) and
    arrays copied, so the forward's writes (CS231n stores the running statistics into
    ``bn_param``, creating them on the first call) never reach the user's own objects."""
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) or type(value).__module__.split(".")[0] == "torch":
        return _copy(value)
    return value


def in_dicts(args: Sequence[Any], kwargs: dict[str, Any], keys: Sequence[str]) -> str | None:
    """The path (``"args[0]['running_mean']"``) of the first of ``keys`` held by a dict
    argument, or None."""
    places = [(f"args[{i}]", a) for i, a in enumerate(args)] + [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for key in keys:
        for where, value in places:
            if isinstance(value, dict) and value.get(key) is not None:
                return f"{where}[{key!r}]"
    return None


def place(root: Any, path: str) -> Any:
    """The value at ``path`` in ``root``, or None when there is nothing there."""
    ref = Ref(path)
    return ref.get(root) if ref.exists(root) else None


def expect_inputs(net: Any, input_shape: tuple[int, ...] | None) -> None:
    """Tell every layer of a wrapped network the canonical input shape it will see (for a
    network input of ``input_shape``; None: not known yet), so a mask its forward draws can be
    read before any pass."""
    from ..spec import layer_shapes

    if input_shape is None:
        return
    shapes = layer_shapes(net.spec, tuple(input_shape))
    for path, w in net.layers.items():
        w.expect_input(shapes[path][0])


class OptionalState:
    """For :class:`~harness.adapters.wrapped.WrappedLayer`: the input shape when known before
    any forward, the replayed random state of code that draws its mask, and the notes on what
    was not checked. Expects the wrapper's ``spec``, ``layout``, ``replay``, ``_absent``,
    ``_x_shape``, ``_expected_input``, ``_y_shape``, ``_peek`` and ``_call_forward``."""

    _expected_input: tuple[int, ...] | None

    def _input_shape(self) -> tuple[int, ...] | None:
        """The canonical input shape when known: the last forward's, one given
        (:meth:`expect_input`), or what a dropout mask kept at construction implies."""
        if self._x_shape or self._expected_input:  # type: ignore[attr-defined]
            return self._x_shape or self._expected_input  # type: ignore[attr-defined]
        return self.kept_mask_input()

    def kept_mask_input(self) -> tuple[int, ...] | None:
        """The canonical input shape a dropout mask kept at construction implies (or the batch a
        recurrent layer's kept state ``(N, H)`` does, see :func:`.steps.state_input`, or an
        attention's key or padding mask), or None (a check's default input: never the shape of
        an earlier check)."""
        from .steps import state_input

        if (kept := state_input(self.spec, self._peek)) is not None:  # type: ignore[attr-defined]
            return kept
        mask = self._peek("mask") if isinstance(self.spec, Dropout) else None  # type: ignore[attr-defined]
        if mask is None:
            return attention.implied_input(self.spec, self._peek)  # type: ignore[attr-defined]
        return canonical_shape(tuple(np.shape(mask)), self.layout.data)  # type: ignore[attr-defined]

    def expect_input(self, shape: tuple[int, ...]) -> None:
        """The canonical input shape this layer will see (a network tells it before any forward)."""
        self._expected_input = tuple(shape)

    def _place(self, name: str) -> str:
        """Where the user's code keeps a parameter, for messages."""
        return "the value given"

    def _replaying(self, backward: bool = False) -> AbstractContextManager[None]:
        replay = self.replay  # type: ignore[attr-defined]
        return replay.call(backward) if replay is not None else nullcontext()

    def _prime(self) -> None:
        """Before the first forward: a layer that draws its dropout mask in its forward runs it
        once (replayed, on a random input of the known shape) so the mask it draws can be read."""
        from .layouts import data_to_user

        if self.replay is None or self._y_shape is not None or getattr(self, "_primed", False):  # type: ignore[attr-defined]
            return
        shape = self._x_shape or self._expected_input  # type: ignore[attr-defined]
        if shape is None:
            return  # a mask kept at construction is read as it is
        self._primed = True
        x = np.random.default_rng(0).standard_normal(shape)
        x_user = data_to_user(x, self.layout, self.features_in).astype(self.dtype)  # type: ignore[attr-defined]
        with self._replaying():
            self._call_forward(np.ascontiguousarray(x_user))  # type: ignore[attr-defined]

    def mask_conflict(self, x_shape: tuple[int, ...]) -> Exception | None:
        """When the forward raised on a canonical input of ``x_shape``: a dropout mask kept at
        construction for another input shape explains it (a configuration error), or None."""
        from .layouts import LayoutError, user_data_shape

        mask = self._peek("mask") if isinstance(self.spec, Dropout) else None  # type: ignore[attr-defined]
        found, given = tuple(np.shape(mask)) if mask is not None else (), user_data_shape(tuple(x_shape), self.layout)  # type: ignore[attr-defined]
        if mask is None or found == given:
            return None
        return LayoutError(
            f"layer '{self.name}': its forward raised on an input of shape {given} (in the declared "  # type: ignore[attr-defined]
            f"{self.layout}) while the dropout mask it keeps at {self._place('mask')} has shape {found}: a mask kept "  # type: ignore[attr-defined]
            f"at construction fixes the input's shape; check it on an input of that shape (x= or input_shape=), or "
            "let its forward draw the mask"
        )

    def notes(self) -> list[str]:
        """Lines for the report about what was not checked (running statistics not kept)."""
        return [absent_note(self._absent)] if self._absent else []  # type: ignore[attr-defined]


__all__ = [
    "OptionalState",
    "UNREPLAYABLE",
    "expect_inputs",
    "RUNNING",
    "absent_note",
    "default",
    "deferred",
    "draws",
    "eval_error",
    "find_mask",
    "fresh",
    "in_dicts",
    "mask_candidates",
    "mask_from_user",
    "mask_scale",
    "optional",
    "place",
]
