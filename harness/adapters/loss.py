"""A user's loss in canonical terms: its value and its gradient w.r.t. the network output.

Handwritten code fuses softmax and cross-entropy in several ways; each is a ``style``:

* ``"function"``: ``fn(scores, y) -> (loss, dscores)`` (CS231n's ``softmax_loss``);
* ``"object"``: ``obj.forward(scores, y) -> loss`` then ``obj.backward() -> dscores``;
* ``"softmax"``: a softmax *layer* ``obj.forward(scores) -> probs`` whose "backward"
  ``obj.backward(y) -> probs - y`` passes the cross-entropy gradient straight through (its
  loss value is computed here from the probabilities).

Scores are ``(N, K)`` logits; ``y`` integer labels ``(N,)`` or one-hot / probabilities
``(N, K)``, handed to the user's code as ``target_format`` says. A temporal loss
(``TemporalSoftmaxCrossEntropy``) takes logits ``(N, T, V)`` and labels ``(N, T)``, and code
that takes a mask, ``fn(x, y, mask)``, is handed one (see :func:`wrap_loss`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..faults import call_user
from ..spec import Loss, SoftmaxCrossEntropy, TemporalSoftmaxCrossEntropy, check_target
from .layer import AdapterError, ValueFinding
from .network_parts import _returned

STYLES = ("function", "object", "softmax")


class WrappedLoss:
    """``loss_and_grad(scores, target) -> (loss value, d loss / d scores)``, canonical float64."""

    def __init__(
        self,
        user: Any,
        loss: Loss,
        *,
        style: str,
        forward: str,
        backward: str,
        target_format: str,
        grad_scale: float | str | None,
        dtype: Any,
        forward_kwargs: Mapping[str, Any] | None = None,
        mask: bool | None = None,
    ) -> None:
        if style not in STYLES:
            raise AdapterError(f"loss: style must be one of {STYLES}, got {style!r}")
        if target_format not in ("labels", "onehot"):
            raise AdapterError(f"loss: target_format must be 'labels' or 'onehot', got {target_format!r}")
        if style == "softmax" and not isinstance(loss, SoftmaxCrossEntropy):
            raise AdapterError(
                f"loss: style='softmax' is a softmax fused with cross-entropy; the spec says {loss.kind}"
            )
        if style == "function" and not callable(user):
            raise AdapterError(
                f"loss: style='function' needs a callable fn(scores, y) -> (loss, dscores), got {type(user).__name__}"
            )
        if style != "function":
            for method in (forward, backward):
                if not callable(getattr(user, method, None)):
                    raise AdapterError(f"loss: {type(user).__name__} has no method {method}()")
        if forward_kwargs is not None and not isinstance(forward_kwargs, Mapping):
            raise AdapterError(
                f"loss: forward_kwargs must be a dict of keyword arguments for the loss's forward, "
                f"e.g. forward_kwargs={{'reg': 0.0}}, got {type(forward_kwargs).__name__}"
            )
        if mask is not None and (not isinstance(mask, bool) or not isinstance(loss, TemporalSoftmaxCrossEntropy)):
            raise AdapterError(
                f"loss: mask= (True: the code takes (scores, y, mask)) is for a TemporalSoftmaxCrossEntropy and True "
                f"or False; got mask={mask!r} for {loss.kind}"
            )
        self.mask = mask
        self.user, self.spec, self.style = user, loss, style
        self.forward_kwargs: dict[str, Any] = dict(forward_kwargs or {})
        self._forward, self._backward = forward, backward
        self.target_format, self.grad_scale, self.dtype = target_format, grad_scale, np.dtype(dtype)
        self.returned: dict[str, np.dtype] = {}  # dtypes of what the user's loss last returned
        # the side whose code ran last (None: a loss function computing value and gradient in one call)
        self.running: str | None = None

    def _target(self, target: np.ndarray, k: int) -> np.ndarray:
        if self.target_format == "onehot" and target.ndim == 1:
            return np.eye(k, dtype=self.dtype)[target]
        return np.array(target, copy=True)  # a copy: code that fixes labels in place must not change the caller's

    def loss_and_grad(self, scores: np.ndarray, target: Any) -> tuple[float, np.ndarray]:
        """The user's loss value and gradient for ``scores`` (N, K) and ``target``."""
        scores = np.asarray(scores, dtype=np.float64)
        target = np.asarray(target)
        check_target(self.spec, scores.shape, target)
        n, k = scores.shape[0], scores.shape[-1]
        s_user, t_user = scores.astype(self.dtype), self._target(target, k)
        self.running = None if self.style == "function" else "forward"
        if self.style == "function":
            out = self._call_forward(self.user, *self._user_args(self.user, s_user, target))
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueFinding(f"loss: the function must return (loss, dscores), got {type(out).__name__}")
            value, grad = out
        elif self.style == "object":
            forward = getattr(self.user, self._forward)
            value = self._call_forward(forward, *self._user_args(forward, s_user, target))
            self.running = "backward"
            grad = call_user(getattr(self.user, self._backward))
        else:
            probs, _ = _returned(
                self._call_forward(getattr(self.user, self._forward), s_user), "loss: the softmax layer's output"
            )
            self.running = "backward"
            grad = call_user(getattr(self.user, self._backward), t_user)
            assert isinstance(self.spec, SoftmaxCrossEntropy)  # style="softmax" requires it (__init__)
            labels = target if target.ndim == 1 else None
            picked = probs[np.arange(n), labels] if labels is not None else None
            per = -np.log(picked) if picked is not None else -(target * np.log(probs)).sum(axis=1)
            value = per.sum() / (n if self.spec.reduction == "mean" else 1)
        self.running = "backward"  # what it returned is read: the gradient first, then the value
        g, self.returned["scores"] = _returned(grad, "loss: the gradient w.r.t. the scores")
        if g.shape != scores.shape:
            raise ValueFinding(f"loss: the gradient w.r.t. the scores has shape {g.shape}; expected {scores.shape}")
        self.running = "forward"
        v, self.returned["value"] = _returned(value, "loss: the loss value")
        if v.size != 1:
            raise ValueFinding(f"loss: the loss value must be a scalar, got shape {v.shape}")
        return float(v.reshape(())), g * self._scale(n)

    def _user_args(self, fn: Callable[..., Any], scores: Any, target: np.ndarray) -> tuple[Any, ...]:
        """What the user's loss is handed: ``(scores, y)``; for a temporal loss whose code takes
        a mask (CS231n's ``temporal_softmax_loss(x, y, mask)``: ``mask=True``, or undeclared a
        third positional parameter), ``(scores, y, mask)`` with mask = (y != ignore_index) and
        the ignored labels replaced by a valid one (see ``TemporalSoftmaxCrossEntropy``)."""
        if not isinstance(self.spec, TemporalSoftmaxCrossEntropy):
            return scores, self._target(target, scores.shape[-1])
        if not (self.mask if self.mask is not None else _positional(fn, self.forward_kwargs) >= 3):
            return scores, np.array(target, copy=True)  # a copy, as every input handed to the code
        return scores, self.spec.valid_labels(target, scores.shape[-1]), target != self.spec.ignore_index

    def _call_forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args, **forward_kwargs)``, the call checked against ``fn``'s signature first:
        arguments it needs and is not given are a missing declaration (AdapterError naming
        ``forward_kwargs``), not a fault of its code."""
        try:
            inspect.signature(fn).bind(*args, **self.forward_kwargs)
        except TypeError as e:
            name = getattr(fn, "__qualname__", type(fn).__name__)
            missing = re.findall(r"missing a required argument: '(\w+)'", str(e))
            fix = (
                f"pass it with wrap_loss(..., forward_kwargs={{'{missing[0]}': ...}})"
                if missing
                else "the call is fn(scores, y, **forward_kwargs) (a softmax layer: forward(scores, **forward_kwargs)); "
                "declare what it takes with wrap_loss(..., forward_kwargs=, style=)"
            )
            raise AdapterError(
                f"loss: {name}() cannot be called with (scores{', y' if len(args) > 1 else ''}"
                f"{''.join(f', {k}=' for k in self.forward_kwargs)}): {e}; {fix}"
            ) from None
        except ValueError:
            pass  # no signature to read (a builtin): call it and see
        return call_user(fn, *args, **self.forward_kwargs)

    def _scale(self, n: int) -> float:
        if self.grad_scale is None:
            return 1.0
        if self.grad_scale == "batch":
            return float(n)
        if self.grad_scale == "unbatch":
            return 1.0 / n
        return float(self.grad_scale)


def wrap_loss(
    user: Any | Callable,
    loss: Loss,
    *,
    style: str = "function",
    forward: str = "forward",
    backward: str = "backward",
    target_format: str = "labels",
    grad_scale: float | str | None = None,
    dtype: Any = np.float64,
    forward_kwargs: Mapping[str, Any] | None = None,
    mask: bool | None = None,
) -> WrappedLoss:
    """Wrap the user's loss (see the module docstring for the three ``style`` s).

    ``target_format``: what the user's code takes, ``"labels"`` (N,) or ``"onehot"`` (N, K).
    ``grad_scale``: multiply the user's score gradient by this to get d loss / d scores:
    ``"unbatch"`` for a softmax backward returning ``probs - y`` under a mean loss (it never
    divides by N), ``"batch"`` for one that divides although the loss is a sum, or a number.
    ``forward_kwargs``: extra keyword arguments the user's loss needs on every call, e.g.
    ``{"reg": 0.0}`` or ``{"reduction": "mean"}``; passed to the function (``"function"``),
    to ``obj.forward`` (``"object"``, ``"softmax"``). Regularisation must be off: the
    references compute the bare loss of the scores.
    ``mask``: for a ``TemporalSoftmaxCrossEntropy``, whether the code takes a mask as its third
    argument, ``fn(x, y, mask)`` (CS231n's ``temporal_softmax_loss``): it is then handed
    mask = (y != ignore_index) (bool) and y with the ignored labels replaced by a valid one.
    Undeclared (None): it does when it has a third positional parameter not in ``forward_kwargs``;
    without a mask it is handed y with ``ignore_index`` in place (PyTorch's convention).
    """
    if grad_scale is not None and grad_scale not in ("batch", "unbatch") and not isinstance(grad_scale, (int, float)):
        raise AdapterError(f"loss: grad_scale must be 'batch', 'unbatch' or a number, got {grad_scale!r}")
    return WrappedLoss(
        user,
        loss,
        style=style,
        forward=forward,
        backward=backward,
        target_format=target_format,
        grad_scale=grad_scale,
        dtype=dtype,
        forward_kwargs=forward_kwargs,
        mask=mask,
    )


def _positional(fn: Callable[..., Any], given: Mapping[str, Any]) -> int:
    """How many positional parameters ``fn`` takes that are not given by keyword (0 when it
    has no signature to read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.name not in given for p in params)


__all__ = ["STYLES", "WrappedLoss", "wrap_loss"]
