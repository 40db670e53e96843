"""The forward and backward of a function pair made of custom autograd code: the forward
runs the user's call with the input and the trainable parameters as fresh leaves (torch) or
under ``jax.vjp`` (jax) and keeps what the backward needs; the backward asks the framework's
autograd for the gradients, which reach the user's backward as in training. Used by
:func:`harness.adapters.autograd.wrap_autograd`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..faults import Declared
from .refs import AdapterError


class OutputIndexError(AdapterError, Declared):
    """``output=`` names an output the forward does not return: the declaration's fault."""


def _first(out: Any, output: int, owner: str) -> Any:
    """The checked output of a forward that may return a tuple (``output``: its index)."""
    if isinstance(out, (tuple, list)):
        if output >= len(out):
            raise OutputIndexError(f"{owner}: output={output}, but the forward returned {len(out)} values")
        return out[output]
    if output:
        raise OutputIndexError(f"{owner}: output={output}, but the forward returned one value")
    return out


class NoGraph(RuntimeError):
    """The forward's output carries no autograd graph: nothing can reach the user's backward."""


def torch_pair(call: Callable[..., Any], holder: list[Any], output: int, owner: str) -> tuple[Any, Any]:
    """A function pair over torch tensors: the forward makes the input and the trainable
    parameters leaves and keeps the graph; the backward is ``torch.autograd.grad``."""

    def forward(x: Any, *rest: Any, **kw: Any) -> tuple[Any, Any]:
        import torch

        layer = holder[0]
        names, trainable = layer._positional, set(layer._trainable_names())
        xl = _torch_leaf(x) if x.is_floating_point() and layer.input_grad else x
        # a forward declared to write into its input (ctx.mark_dirty) is handed a non-leaf copy:
        # torch refuses an in-place write into a leaf that requires grad
        x_in = xl.clone() if xl.requires_grad and "input" in layer.inplace else xl
        values = [
            _torch_leaf(v) if k in trainable and getattr(v, "is_floating_point", lambda: False)() else v
            for k, v in zip(names, rest)
        ]
        with torch.enable_grad():
            y = _first(call(x_in, *values, *rest[len(names) :], **kw), output, owner)
        leaves = {k: v for k, v in zip(names, values) if k in trainable}
        return y, (y, xl, leaves, {"input": x, **dict(zip(names, values))})

    def backward(dout: Any, cache: Any) -> Any:
        import torch

        y, xl, leaves, passed = cache
        if not isinstance(y, torch.Tensor) or y.grad_fn is None:
            raise NoGraph(
                f"{owner}: the forward's output carries no autograd graph (requires_grad=False), so no backward "
                "can be reached: it detached the result, ran under torch.no_grad(), or went through numpy"
            )
        wrt = ([xl] if xl.requires_grad else []) + list(leaves.values())
        got = torch.autograd.grad(y, wrt, grad_outputs=dout.to(y.dtype), retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(got, wrt)]  # unused: a zero gradient
        _broadcast_notes(holder[0], call, passed)
        dx = grads.pop(0) if xl.requires_grad else None
        return _returned(dx, dict(zip(leaves, grads)))

    return forward, backward


def watched(fn: Any) -> Any:
    """``fn`` with its backward's returned shapes recorded (on the class, read by
    :func:`_broadcast_notes`): torch's engine sums a gradient of a broadcast shape down to its
    input's without a word, which another caller of the same formula would not."""

    def backward(ctx: Any, *grads: Any) -> Any:
        out = fn.backward(ctx, *grads)
        outs = out if isinstance(out, tuple) else (out,)
        cls.returned = [None if o is None else tuple(getattr(o, "shape", ())) for o in outs]
        return out

    cls: Any = type(fn.__name__, (fn,), {"backward": staticmethod(backward), "returned": None})
    return cls


def _broadcast_notes(layer: Any, call: Any, wrt: dict[str, Any]) -> None:
    """A note per gradient a Function's backward returned in another shape than its input
    (``wrt``: what ``apply`` was handed, by name in call order, ``"input"`` first)."""
    returned = getattr(getattr(call, "__self__", None), "returned", None)
    if not returned:
        return
    for (name, leaf), shape in zip(wrt.items(), returned):
        if shape is not None and hasattr(leaf, "shape") and shape != tuple(leaf.shape):
            note = (
                f"note: {name}: the backward returned a gradient of shape {shape} for a {tuple(leaf.shape)} input; "
                "torch's autograd summed it over the broadcast dimensions (right here, but the formula is missing that "
                "reduction for any other caller)"
            )
            if note not in layer.autograd_notes:
                layer.autograd_notes.append(note)


def _where(fn: Any) -> str | None:
    """``"the bwd rule lin_bwd (file.py:12)"`` for a function, None when it cannot be told."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    return f"the bwd rule {getattr(fn, '__qualname__', code.co_name)} ({code.co_filename}:{code.co_firstlineno})"


def _returned(dx: Any, grads: dict[str, Any]) -> Any:
    """What a function pair's backward returns: ``(dx, {name: grad})``, or ``dx`` alone for
    a layer without trainable parameters (a pair of dx and an empty dict would read as dx)."""
    return (dx, grads) if grads else dx


def _torch_leaf(t: Any) -> Any:
    return t.detach().requires_grad_(True)


def jax_pair(call: Callable[..., Any], holder: list[Any], output: int, owner: str) -> tuple[Any, Any]:
    """A function pair over jax arrays: the forward is ``jax.vjp`` over the input and the
    trainable parameters; the backward its pullback."""

    def forward(x: Any, *rest: Any, **kw: Any) -> tuple[Any, Any]:
        import jax
        import jax.numpy as jnp

        layer = holder[0]
        names, trainable = layer._positional, set(layer._trainable_names())
        differentiated = [k for k in names if k in trainable]
        with_x = layer.input_grad and jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        fixed = dict(zip(names, rest))
        extra = rest[len(names) :]

        def f(*diff: Any) -> Any:
            xs, ps = (diff[0], diff[1:]) if with_x else (x, diff)
            vals = {**fixed, **dict(zip(differentiated, ps))}
            return _first(call(xs, *(vals[k] for k in names), *extra, **kw), output, owner)

        primals = ([x] if with_x else []) + [fixed[k] for k in differentiated]
        y, pullback = jax.vjp(f, *primals)
        return y, (pullback, with_x, differentiated, y)

    def backward(dout: Any, cache: Any) -> Any:
        import jax.numpy as jnp

        pullback, with_x, differentiated, y = cache
        try:
            cts = list(pullback(jnp.asarray(dout, dtype=y.dtype)))
        except Exception as e:  # jax checks a bwd rule's outputs after it returned: name the rule
            where = _where(getattr(call, "bwd", None))
            if where is None or "bwd" not in str(e):
                raise
            e.args = (f"{e.args[0] if e.args else e} (returned by {where})", *e.args[1:])
            raise
        dx = cts.pop(0) if with_x else None
        return _returned(dx, dict(zip(differentiated, cts)))

    return forward, backward


__all__ = ["NoGraph", "jax_pair", "torch_pair", "watched"]
