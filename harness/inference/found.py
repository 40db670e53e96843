"""What a layer holds and what its code does with it, watched on a copy: the arrays an object
keeps (attributes, dict entries ``params['W']``, one level of lists ``weights[0]``; paths in
:func:`~harness.wrap_layer`'s ``params=`` syntax), which of them the forward creates or changes
(caches, running statistics) and which the backward changes (gradients), and the user's
output on two inputs. A function pair's parameters are its given arrays, named by position
(``"0"``) or by their key.

The user's code runs through the existing adapters with no spec (:func:`~harness.wrap_layer`
/ :func:`~harness.wrap_functions` with ``spec=None``), so every calling option (``flush=``,
``lazy=``, ``array_type``, ``forward_kwargs`` ...) and array type works as it does for a check.
Inputs and outputs here are in the user's own layout, as float64 numpy.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapters.arrays import fingerprint, to_float64
from ..adapters.refs import AdapterError, Ref


@dataclass
class Observed:
    """The user's layer as watched: ``params`` (path -> float64 value in the user's shape:
    arrays no forward changed), ``running`` (arrays a forward changed that existed before:
    running statistics), ``grads`` (parameter path -> the path of an array the backward
    created or changed with its shape, found by diffing), ``pairs`` ([(x, y)] in the user's
    layout, float64), ``dtype`` (what the code computes in), ``hint`` (the class or function
    name), ``pristine`` (a copy of the object before any forward; for a function pair, its
    parameter arrays by name in positional order), ``notes`` (what was noticed on the way)."""

    target: Any
    is_pair: bool
    params: dict[str, np.ndarray]
    running: dict[str, np.ndarray]
    pairs: list[tuple[np.ndarray, np.ndarray]]
    dtype: np.dtype
    hint: str
    pristine: Any
    grads: dict[str, str] = field(default_factory=dict)
    returned_grads: bool = False
    notes: list[str] = field(default_factory=list)


def _array(value: Any) -> bool:
    """A floating array of at least one axis (numpy, torch, jax ...), not a list or a scalar."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype") or len(getattr(value, "shape", ())) == 0:
        return False
    try:
        _v, kind = to_float64(value, "candidate")
    except Exception:  # not an array the harness reads: not a parameter
        return False
    return kind.dtype is not None and np.issubdtype(kind.dtype, np.floating)


def arrays_of(obj: Any) -> dict[str, Any]:
    """Every array ``obj`` holds, by path: attributes, entries of dict attributes, items of
    list / tuple attributes (one level), as :class:`~harness.adapters.refs.Ref` paths."""
    out: dict[str, Any] = {}
    try:
        items = list(vars(obj).items())
    except TypeError:  # __slots__ or a builtin: nothing to enumerate
        return out
    for name, value in items:
        if _array(value):
            out[name] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and "'" not in k and _array(v):
                    out[f"{name}[{k!r}]"] = v
        elif isinstance(value, (list, tuple)) and len(value) <= 64:
            for i, v in enumerate(value):
                if _array(v):
                    out[f"{name}[{i}]"] = v
    return out


def _prints(arrays: dict[str, Any]) -> dict[str, Any]:
    return {k: fingerprint(v) for k, v in arrays.items()}


def hint_of(target: Any) -> str:
    """The name the user gave the code: the class's, or the forward function's."""
    if isinstance(target, tuple):
        return getattr(target[0], "__name__", "")
    return type(target).__name__


def observe(target: Any, x: np.ndarray, x2: np.ndarray, dy_seed: int, wrap_kwargs: dict[str, Any]) -> Observed:
    """Run the user's layer (a copy) forward on ``x`` then ``x2`` (user layout) and backward
    once, and sort what it holds. Raises :class:`AdapterError` when the code cannot run."""
    if isinstance(target, tuple):
        return _observe_pair(target, x, x2, wrap_kwargs)
    return _observe_object(target, x, x2, dy_seed, wrap_kwargs)


def _read(v: Any) -> np.ndarray:
    return to_float64(v, "parameter")[0]


def _observe_pair(target: tuple, x: np.ndarray, x2: np.ndarray, kw: dict[str, Any]) -> Observed:
    from ..adapters.layer import wrap_functions

    if len(target) != 2 or not all(callable(f) for f in target):
        raise AdapterError(f"infer_layer: a function pair is (forward, backward), two callables; got {target!r}")
    opts = dict(kw)
    given = opts.pop("params", ())
    named = dict(given) if isinstance(given, dict) else {str(i): a for i, a in enumerate(given)}
    runner = wrap_functions(target[0], target[1], None, named, **opts)
    pairs = [(x, runner.forward(x)), (x2, runner.forward(x2))]
    params = {k: _read(v) for k, v in named.items()}
    return Observed(target, True, params, {}, pairs, runner.dtype, hint_of(target), named)


def _observe_object(target: Any, x: np.ndarray, x2: np.ndarray, seed: int, kw: dict[str, Any]) -> Observed:
    from ..adapters.layer import wrap_layer

    fwd = kw.get("forward", "forward")
    if not callable(getattr(target, fwd, None)):
        raise AdapterError(
            f"infer_layer: {type(target).__name__} has no method {fwd}(); pass a layer object with forward/backward, "
            "a (forward, backward) function pair, or forward=/backward= with the methods' names"
        )
    try:
        obj = copy.deepcopy(target)
    except Exception as e:  # inference runs the code on a copy only: one is needed
        raise AdapterError(
            f"{type(target).__name__} cannot be copied ({type(e).__name__}: {e}); inference runs the code on a copy "
            "so the object is never changed: make it copyable (copy.deepcopy) or write the spec by hand"
        ) from None
    before = arrays_of(obj)
    notes: list[str] = []
    if not before:
        before = _lazy_arrays(target, x, x2, kw)
        if before and not kw.get("lazy"):
            kw = {**kw, "lazy": True}
            notes.append("its parameters are created by the first forward: lazy=True")
    pristine = copy.deepcopy(obj)
    runner = wrap_layer(obj, None, params={p: p for p in before}, **kw)
    p0 = _prints(before)
    y1 = runner.forward(x)
    a1 = arrays_of(obj)
    y2 = runner.forward(x2)
    a2 = arrays_of(obj)
    p1, p2 = _prints(a1), _prints(a2)
    if kw.get("lazy"):  # built by the first forward: compare the two forwards only
        p0 = {k: p1[k] for k in before if k in p1}
        pristine = _after_first_forward(target, x, kw) or pristine
    kept = [k for k in p0 if p1.get(k) == p0[k] and p2.get(k) == p0[k]]
    changed = [k for k in p0 if k not in kept and k in p2]
    obs = Observed(target, False, {}, {}, [(x, y1), (x2, y2)], runner.dtype, hint_of(target), pristine, notes=notes)
    obs.running = {k: _read(a2[k]) for k in changed}
    values = {k: _read(a2[k]) for k in kept}  # read now: a backward may step them in place
    after = _backward_arrays(runner, obj, y2, seed, kw, obs)
    grads_by_diff(obs, values, p2, after)
    return obs


def _lazy_arrays(target: Any, x: np.ndarray, x2: np.ndarray, kw: dict[str, Any]) -> dict[str, Any]:
    """Arrays the first forward creates and a second one (on another input) leaves alone:
    parameters built lazily (a cache of the input changes)."""
    from ..adapters.layer import wrap_layer

    probe = copy.deepcopy(target)
    try:
        runner = wrap_layer(probe, None, params={}, **kw)
        runner.forward(x)
        first = _prints(arrays_of(probe))
        runner.forward(x2)
    except Exception:  # a probe only: the runner's own forward reports the failure properly
        return {}
    held = {k: v for k, v in arrays_of(probe).items() if first.get(k) == fingerprint(v)}
    return {k: v for k, v in held.items() if not _same_values(v, x)}  # an input cached once is no parameter


def _same_values(a: Any, x: np.ndarray) -> bool:
    v = _read(a)
    return v.shape == x.shape and bool(np.allclose(v, x, rtol=1e-3, atol=1e-6))


def _after_first_forward(target: Any, x: np.ndarray, kw: dict[str, Any]) -> Any:
    """A copy of ``target`` after one forward on ``x`` (its lazily built parameters in it)."""
    from ..adapters.layer import wrap_layer

    probe = copy.deepcopy(target)
    opts = {k: v for k, v in kw.items() if k != "lazy"}
    try:
        wrap_layer(probe, None, params={}, **opts).forward(x)
    except Exception:  # a probe only: the runner's own forward reports the failure properly
        return None
    return probe


def _backward_arrays(runner: Any, obj: Any, y: np.ndarray, seed: int, kw: dict[str, Any], obs: Observed) -> Any:
    """The object's arrays after one backward on a random upstream gradient (None when the
    backward cannot run: then gradients are left to the adapters and a note says why)."""
    dy = np.random.default_rng(seed).normal(size=y.shape)
    try:
        if kw.get("batched") is False:  # one example at a time: its own backward, on that example's gradient
            raw = getattr(obj, kw.get("backward", "backward"))(dy[0], *kw.get("backward_args", ()))
        else:
            raw = runner._call_backward(runner._hand(dy, "upstream gradient"))
    except Exception as e:  # the backward is evidence only; the check reports its failure properly
        obs.notes.append(f"its backward could not run while inferring ({type(e).__name__}: {str(e)[:120]})")
        return None
    obs.returned_grads = isinstance(raw, (tuple, list)) and len(raw) > 1
    return arrays_of(obj)


def grads_by_diff(obs: Observed, kept: dict[str, np.ndarray], prints: dict[str, Any], after: Any) -> None:
    """Sort the arrays no forward changed into parameters and gradient buffers: an array the
    backward changed (or created) with the shape of one it left alone is that one's gradient
    (paired by name: ``dW``/``W``, ``grads['W']``/``params['W']``, ``gW``, else by shape);
    one the backward changed with no such partner is a parameter (an SGD step inside backward)."""
    if after is None:
        obs.params = kept
        return
    moved = {k for k in after if k not in prints or fingerprint(after[k]) != prints[k]}
    still = {k: v for k, v in kept.items() if k not in moved}
    buffers = {k: _read(after[k]) for k in moved if k not in obs.running}
    for p, v in still.items():
        same = [g for g, gv in buffers.items() if gv.shape == v.shape and g not in obs.grads.values()]
        if same:
            obs.grads[p] = max(same, key=lambda g: _affinity(p, g))
    used = set(obs.grads.values())
    obs.params = {**still, **{k: v for k, v in kept.items() if k in moved and k not in used}}


def _leaf_name(path: str) -> str:
    steps = Ref(path).steps
    return str(steps[-1][1])


def _affinity(param: str, grad: str) -> int:
    """How well a gradient's path names a parameter's: ``dW``/``W`` (3), the same key in
    another dict (2), a name containing it (1)."""
    p, g = _leaf_name(param).lower(), _leaf_name(grad).lower()
    core = re.sub(r"^(d|grad_?|g|delta_?)|(_?grad)$", "", g)
    if core == p:
        return 3
    if g == p:
        return 2
    return 1 if p in g else 0


__all__ = ["Observed", "arrays_of", "hint_of", "observe"]
