"""How a user's loss is called, read for :mod:`.loss`: its style (a function
``fn(scores, y) -> (loss, dscores)`` or an object ``forward(scores, y)`` / ``backward()``), the
arguments its forward requires beyond (scores, y) (a regularisation strength, set to 0.0), the
target readings it is run under (labels ``(N,)``, one-hot ``(N, K)``, regression targets) and
what it returns on each. Scores are ``(N, K)``; the user's arrays are only ever passed as copies.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np

from ..adapters.refs import AdapterError
from ..spec import MSE, SoftmaxCrossEntropy

# regularisation strengths a loss's forward may require: switched off (the references compute
# the bare loss of the scores), and said so
REG_NAMES = ("reg", "reg_strength", "lam", "lmbda", "lambda_", "l2", "l2_reg", "weight_decay")


def read_scores(scores: Any, what: str) -> np.ndarray:
    try:
        s = np.array(scores, copy=True)
    except Exception as e:
        raise AdapterError(f"infer_loss: {what}: scores must be an array (N, K); {e}") from None
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.floating) or 0 in s.shape:
        raise AdapterError(
            f"infer_loss: {what}: scores must be a float array (N, K), one row of class scores per example; got "
            f"shape {s.shape}, dtype {s.dtype} "
            + (
                "(a loss over a sequence, logits (N, T, V), is not inferred: pass its spec, "
                "tg.TemporalSoftmaxCrossEntropy())"
                if s.ndim == 3
                else "(a network's 4-D output is flattened before its loss)"
            )
        )
    return s


def style_of(fn: Any, what: str) -> str:
    if isinstance(fn, type):
        raise AdapterError(f"infer_loss: got the class {fn.__name__}, not an instance: pass {fn.__name__}()")
    if callable(getattr(fn, "forward", None)) and callable(getattr(fn, "backward", None)):
        if required(fn.forward) == 1:  # forward(scores) -> probs, backward(y) -> probs - y: a softmax layer
            return "softmax"
        return "object"
    if callable(fn) and not hasattr(fn, "forward"):
        return "function"
    raise AdapterError(
        f"infer_loss: a {type(fn).__name__} is not a loss: pass a function fn(scores, y) -> (loss, dscores) or an "
        "object with forward(scores, y) -> loss and backward() -> dscores"
    )


def required(f: Any) -> int | None:
    """How many positional arguments ``f`` requires (None: no signature to read)."""
    try:
        ps = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return None
    return sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in ps)


TARGET_NAMES = re.compile(r"(y|t|gt)(_\w+)?|targets?|labels?|truth|onehot|one_hot")


def takes_targets(f: Any) -> bool:
    """Whether ``f``'s second positional argument is named like targets (``y``, ``t``,
    ``labels``, ``y_onehot`` ...), not a flag (``training``, ``mode``)."""
    try:
        ps = [
            p
            for p in inspect.signature(f).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(ps) >= 2 and TARGET_NAMES.fullmatch(ps[1].name.lower()) is not None


def reg_kwargs(f: Any, kw: dict[str, Any], what: str) -> list[str]:
    """Required arguments after (scores, y) that name a regularisation strength: set to 0.0
    in ``kw['forward_kwargs']`` (said in the returned lines); any other is an error naming it."""
    given = dict(kw.get("forward_kwargs") or {})
    try:
        params = list(inspect.signature(f).parameters.values())[2:]
    except (TypeError, ValueError):
        return []
    why, other = [], []
    for p in params:
        if p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in given:
            continue
        if p.name.lower() in REG_NAMES:
            given[p.name] = 0.0
            why.append(
                f"forward_kwargs={{'{p.name}': 0.0}}: the regularisation is off (the references compute the bare loss)"
            )
        else:
            other.append(p.name)
    if other:
        raise AdapterError(
            f"infer_loss: {what} requires {other} after (scores, y), which inference cannot choose; pass them: "
            f"forward_kwargs={{{', '.join(repr(o) + ': ...' for o in other)}}}"
        )
    if given:
        kw["forward_kwargs"] = given
    return why


def readings(
    user: Any, kw: dict[str, Any], s: np.ndarray, y: np.ndarray, s2: np.ndarray, rng: Any, drawn: bool, what: str
) -> list[tuple[str, str, tuple[Any, Any], list[Any]]]:
    """The target readings the code is run under: (loss kind, target_format, the targets of
    the two score arrays, what the code returned on each: (value, dscores) or the exception)."""
    n2, k = s2.shape
    labels2 = rng.integers(0, k, size=n2)
    out: list[tuple[str, str, tuple[Any, Any]]] = []
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer) or y.shape[0] != s.shape[0] or y.min() < 0 or y.max() >= k:
            raise AdapterError(
                f"infer_loss: {what}: y of shape {y.shape} ({y.dtype}) is neither labels in [0, {k}) for {s.shape[0]} "
                f"examples nor targets of the scores' shape {s.shape}"
            )
        out += [("SCE", "labels", (y, labels2)), ("SCE", "onehot", (y, labels2))]
    elif y.shape == s.shape:
        probs = bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0))
        if probs:
            onehot = bool(np.all((y == 0) | (y == 1)))
            y2 = np.eye(k)[labels2] if onehot else rng.dirichlet(np.ones(k), size=n2)
            out.append(("SCE", "onehot", (y, y2)))
        out.append(("MSE", "labels", (y, rng.standard_normal(s2.shape))))
    else:
        raise AdapterError(
            f"infer_loss: {what}: y has shape {y.shape}; expected labels ({s.shape[0]},) or targets {s.shape}"
        )
    if drawn:  # no targets given: a regression loss is tried on normal targets too
        out.append(("MSE", "labels", (rng.standard_normal(s.shape), rng.standard_normal(s2.shape))))
    if kw["style"] == "softmax":  # a softmax layer fused with cross-entropy: no regression reading
        out = [r for r in out if r[0] == "SCE"]
    return [(kind, fmt, ts, [_run(user, kw, kind, fmt, a, t) for a, t in zip((s, s2), ts)]) for kind, fmt, ts in out]


def _run(user: Any, kw: dict[str, Any], kind: str, fmt: str, s: np.ndarray, t: np.ndarray) -> Any:
    """What the user's loss returns on copies of ``s`` and ``t``: (value, dscores), or the exception."""
    from ..adapters.loss import wrap_loss

    loss = SoftmaxCrossEntropy() if kind == "SCE" else MSE()
    # the gradient as the code returns it: a grad_scale is applied when it is scored
    opts = {k: v for k, v in kw.items() if k in ("style", "dtype", "forward_kwargs", "forward", "backward")}
    try:
        wrapped = wrap_loss(user, loss, **{**opts, "target_format": kw.get("target_format", fmt)})
        return wrapped.loss_and_grad(s.copy(), t.copy())
    except AdapterError:
        raise
    except Exception as e:  # this reading does not run; another may
        return e


__all__ = ["REG_NAMES", "read_scores", "readings", "reg_kwargs", "required", "style_of", "takes_targets"]
