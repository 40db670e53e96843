"""Inference of a loss: ``infer_loss(fn, scores, y)`` finds which loss a user's code computes
(:class:`~harness.SoftmaxCrossEntropy` or :class:`~harness.MSE`), its reduction (mean / sum),
the epsilon some code adds inside the log (``-log(p + 1e-7)``), the calling style (a function
``fn(scores, y) -> (loss, dscores)`` or an object ``forward(scores, y)`` / ``backward()``), the
target format it takes (labels ``(N,)`` or one-hot ``(N, K)``) and a regularisation argument
to switch off (``reg=0.0``).

Every candidate is confirmed: the PyTorch reference's loss value under it must reproduce the
user's value on the user's scores and on a second, wide-spread score array of another batch
size (which tells a mean from a sum even at N = 1, and shows an epsilon in the log). The
user's gradient is the witness: when the value fits one reduction and the gradient the other,
the loss is ``ambiguous`` and checked as the mean (the conventional reading), so the check
ends in the side whose reduction differs from it; when no value fits, ``unmatched`` with the
closest kept (the gradient's reading when it has one).
"""

from __future__ import annotations

import copy
import time
from typing import Any, cast

import numpy as np

from ..adapters.refs import AdapterError
from ..spec import MSE, Loss, SoftmaxCrossEntropy
from .confirm import rel_error, tolerance
from .loss_read import read_scores, readings, reg_kwargs, style_of
from .result import Fit, Inference, LayerInference
from .witness import BACKWARD_TOL

NICE_DIGITS = (1, 2, 3)  # an epsilon read from the value is written with this many digits, fewest first


class LossInference(LayerInference):
    """A :class:`LayerInference` whose ``best.spec`` is a :class:`~harness.spec.Loss`;
    ``wrap_kwargs`` are :func:`~harness.wrap_loss`'s (``style``, ``target_format``,
    ``forward_kwargs``, ``dtype``)."""

    def wrap(self) -> Any:
        from ..adapters.loss import wrap_loss

        return wrap_loss(self.target, cast(Loss, self.spec), **self.wrap_kwargs)

    def source(self, obj: str = "loss_fn") -> str:
        """The spec and the wrap call as Python a user can paste to pin it."""
        from .emit import spec_source

        kw = "".join(f", {k}={v!r}" for k, v in self.wrap_kwargs.items() if k != "dtype" or v != np.float64)
        head = [f"# inferred: {self.status}"] + [f"# {w}" for w in self.why]
        return (
            "\n".join([*head, "import harness as tg", "", f"loss = tg.wrap_loss({obj}, {spec_source(self.spec)}{kw})"])
            + "\n"
        )


class InferredLoss(Inference):
    """The :class:`Inference` of a loss: one :class:`LossInference`."""

    def wrap(self) -> Any:
        return self.layers[0].wrap()

    def to_python(self, obj: str = "loss_fn") -> str:
        return cast(LossInference, self.layers[0]).source(obj)


def infer_loss(fn: Any, scores: Any, y: Any = None, *, seed: int = 0, **wrap_kwargs: Any) -> LossInference:
    """Infer the loss spec and the wrapping of the user's loss ``fn`` (a function
    ``fn(scores, y) -> (loss, dscores)`` or an object with ``forward(scores, y)`` /
    ``backward()``) from example ``scores`` ``(N, K)`` and targets ``y`` (labels ``(N,)``,
    one-hot / probabilities or regression targets ``(N, K)``; labels drawn from ``seed`` when
    None). ``wrap_kwargs``: :func:`~harness.wrap_loss`'s options the code cannot show
    (``forward_kwargs=``, ``style=``, ``target_format=``, ``dtype=``); given ones are kept.
    The user's object runs on a copy; the user's arrays are never written."""
    start = time.perf_counter()
    what = getattr(fn, "__name__", type(fn).__name__)
    s = read_scores(scores, what)
    style = wrap_kwargs.get("style") or style_of(fn, what)
    user = fn if style == "function" else copy.deepcopy(fn)
    kw: dict[str, Any] = {"style": style, **{k: v for k, v in wrap_kwargs.items() if k != "style"}}
    why = reg_kwargs(user if style == "function" else user.forward, kw, what)
    dt = np.dtype(kw.get("dtype") or (s.dtype if s.dtype in (np.float32, np.float16) else np.float64))
    kw.pop("dtype", None)
    if dt != np.float64:  # the dtype the code computes in, written as wrap_loss takes it
        kw["dtype"] = dt.name
    rng = np.random.default_rng(seed)
    n, k = s.shape
    s2 = rng.normal(scale=6.0, size=(n + 2, k))  # wide: some p near 1e-7 show an epsilon in the log
    y0 = np.asarray(rng.integers(0, k, size=n) if y is None else np.array(y, copy=True))
    tried = readings(user, kw, s, y0, s2, rng, y is None, what)
    fits, place = _scored(tried, kw, s, s2)
    li = LossInference(what, fn, fits[0], "exact", tolerance(dt), candidates=fits, why=why)
    _settle(li, place, BACKWARD_TOL.get(dt, 1e-3))
    li.wrap_kwargs = {**place[id(li.best)][0], **kw}
    if li.wrap_kwargs.get("grad_scale") == "unbatch" and "grad_scale" not in kw:
        li.why.append(
            "the backward returns probs - y, N times the mean loss's gradient (a softmax layer's convention): "
            "grad_scale='unbatch'"
        )
    li.seconds = time.perf_counter() - start
    return li


def _scored(tried: list[Any], kw: dict[str, Any], s: np.ndarray, s2: np.ndarray) -> tuple[list[Fit], dict[int, Any]]:
    """Every candidate (kind, reduction, epsilon) of every reading that ran, scored against the
    torch reference: ``Fit.error`` the value's relative error (worst of the two arrays); the
    second map holds, per fit, (its wrap options, the gradient's relative error)."""
    from reference_models import build

    from ..spec import Flatten, Sequential

    ref = build("torch", Sequential([Flatten(name="scores")]))
    fits: list[tuple[Fit, float]] = []
    place: dict[int, Any] = {}
    tol = tolerance(np.dtype(kw.get("dtype", "float64")))
    ran = [r for r in tried if not any(isinstance(o, Exception) for o in r[3])]
    if not ran:
        errs = {f"{kind} {fmt}": next(o for o in outs if isinstance(o, Exception)) for kind, fmt, _, outs in tried}
        first = next(iter(errs.values()))
        raise AdapterError(
            f"infer_loss: the loss raised {type(first).__name__}: {str(first)[:200]} on scores {s.shape} under every "
            f"target reading tried ({', '.join(errs)}); is it a loss fn(scores, y) -> (loss, dscores) or an object "
            "with forward(scores, y) / backward()?"
        ) from first
    softmax = kw["style"] == "softmax"  # its value is the wrapper's, from the probabilities, at the spec's reduction
    scales = [kw["grad_scale"]] if "grad_scale" in kw else [None, "unbatch"] if softmax else [None]
    for kind, fmt, targets, outs in ran:
        for red in ("mean",) if softmax else ("mean", "sum"):
            for loss, scale in ((lo, sc) for lo in _specs(kind, red, outs, (s, s2), targets, tol) for sc in scales):
                refs = [ref.loss_vjp({}, a, loss, t) for a, t in zip((s, s2), targets)]
                verr = max(_rel(v, r.loss) for (v, _), r in zip(outs, refs))
                gerr = max(
                    rel_error(np.asarray(g) * _factor(scale, len(a)), r.input_grad)
                    for (_, g), r, a in zip(outs, refs, (s, s2))
                )
                opts = {
                    **({"target_format": fmt} if fmt != "labels" else {}),
                    **({"grad_scale": scale} if scale else {}),
                }
                why = "" if np.isfinite(verr) else "the loss value is not finite"
                fit = Fit(cast(Any, loss), error=verr, reason=why, note=f"{opts}, gradient rel error {gerr:.1e}")
                fits.append((fit, gerr))
                place[id(fit)] = (opts, gerr)
    fits.sort(key=lambda t: _rank(t[0], tol))
    return [f for f, _ in fits], place


def _factor(scale: Any, n: int) -> float:
    """wrap_loss's grad_scale as a number for a batch of ``n``."""
    return 1.0 if scale is None else float(n) if scale == "batch" else 1.0 / n if scale == "unbatch" else float(scale)


def _rank(f: Fit, tol: float) -> tuple[Any, ...]:
    """Confirmed first, the mean before the sum, the epsilon with fewest digits; the rest by error."""
    if f.error > tol:
        return (1, 0, 0, f.error)
    spec = cast(Any, f.spec)
    eps = getattr(spec, "log_eps", 0.0)
    digits = len(f"{eps:e}".split("e")[0].rstrip("0").replace(".", "")) if eps else 0
    return (0, spec.reduction != "mean", digits, f.error)


def _rel(v: float, ref: float) -> float:
    return abs(v - ref) / max(abs(ref), 1e-300) if np.isfinite(v) else float("inf")


def _specs(
    kind: str, red: str, outs: list[Any], arrays: tuple[Any, Any], targets: tuple[Any, Any], tol: float
) -> list[Loss]:
    """The loss specs tried for one reading and reduction: MSE; cross-entropy with no epsilon,
    and, when that is further than ``tol`` below the user's value on the wide array, with the
    epsilon that solves it there, written with few digits."""
    if kind == "MSE":
        return [MSE(reduction=red)]
    plain = SoftmaxCrossEntropy(reduction=red)
    value = outs[1][0]
    gap = _ce(arrays[1], targets[1], red, 0.0) - value
    if not np.isfinite(value) or gap <= tol * abs(value) or _ce(arrays[1], targets[1], red, 1e-3) > value:
        return [plain]  # no epsilon in (0, 1e-3] brings the reference down to the user's value
    lo, hi = -20.0, -3.0  # log10 of the epsilon: the value falls as it grows
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _ce(arrays[1], targets[1], red, 10**mid) > value else (lo, mid)
    eps = 10 ** ((lo + hi) / 2)
    nice = [float(f"{eps:.{d - 1}e}") for d in NICE_DIGITS]
    return [plain, *(SoftmaxCrossEntropy(reduction=red, log_eps=e) for e in dict.fromkeys(nice))]


def _ce(s: np.ndarray, t: np.ndarray, red: str, eps: float) -> float:
    """Cross-entropy -sum(t * log(softmax(s) + eps)), / N if mean (numpy; for fitting only)."""
    z = s - s.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(s.shape[1])[t] if np.ndim(t) == 1 else t
    total = -float((onehot * np.log(p + eps)).sum())
    return total / s.shape[0] if red == "mean" else total


def _settle(li: LossInference, place: dict[int, Any], btol: float) -> None:
    """The status (module docstring): the value decides, the gradient witnesses."""
    tol = li.tol
    fits = li.candidates
    value_ok = [f for f in fits if f.error <= tol]
    grad_ok = [f for f in fits if place[id(f)][1] <= btol]
    distinct = _distinct(value_ok)
    if not value_ok:
        li.status = "unmatched"
        li.best = _mean_first(grad_ok)[0] if grad_ok else fits[0]
        li.why.append(f"nothing reproduces the loss value: the closest is {fits[0].describe()}")
        if grad_ok:
            li.why.append(f"the gradient fits {_short(li.best)}: checked as that")
        return
    li.best = distinct[0]
    same = [f for f in grad_ok if f.spec == li.best.spec and f.error <= tol]
    if same:  # the same loss under the options (grad_scale, target format) the gradient fits
        li.best = same[0]
    if len(distinct) > 1:
        li.status, li.ambiguous = "ambiguous", distinct[1:]
        li.why.append(
            f"the value fits {' and '.join(_short(f) for f in distinct[:3])} alike; kept {_short(distinct[0])}"
        )
    if li.best in grad_ok or not grad_ok:
        return  # the gradient agrees, or fits nothing (a gradient bug: the check's backward says so)
    other = grad_ok[0]
    a, b = cast(Any, li.best.spec), cast(Any, other.spec)
    li.status = "ambiguous"
    if a.kind == b.kind and a.reduction != b.reduction:  # the conventional reading decides which side is off
        kept, dropped = (li.best, other) if a.reduction == "mean" else (other, li.best)
        li.why.append(
            f"the value is a {a.reduction} ({_short(li.best)}, value rel error {li.best.error:.1e}) but the gradient "
            f"is that of a {b.reduction} ({_short(other)}); checked as the mean, so the side that is not a mean fails"
        )
    else:
        kept, dropped = other, li.best
        li.why.append(f"the value fits {_short(li.best)} but the gradient fits {_short(other)}; checked as the latter")
    also = [dropped] if dropped.error <= tol else []  # "also fits" names only what fits the value
    li.best, li.ambiguous = kept, [*also, *(f for f in li.ambiguous if f is not dropped)]


def _distinct(fits: list[Fit]) -> list[Fit]:
    """One fit per different loss function (the same spec under another target format, or
    the same epsilon written with more digits, is the same function: the first kept)."""
    out: list[Fit] = []
    for f in fits:
        spec = cast(Any, f.spec)
        if not any(_same(spec, cast(Any, g.spec)) for g in out):
            out.append(f)
    return out


def _same(a: Any, b: Any) -> bool:
    if a.kind != b.kind or a.reduction != b.reduction:
        return False
    ea, eb = getattr(a, "log_eps", 0.0), getattr(b, "log_eps", 0.0)
    return ea == eb or (ea > 0 and eb > 0 and abs(ea - eb) <= 0.05 * max(ea, eb))


def _mean_first(fits: list[Fit]) -> list[Fit]:
    return sorted(fits, key=lambda f: cast(Any, f.spec).reduction != "mean")


def _short(f: Fit) -> str:
    """The spec as a user writes it, without the error."""
    return f.describe().rsplit(": ", 1)[0]


def inferred_loss(fn: Any, scores: np.ndarray, y: Any, seed: int, wrap_kwargs: dict[str, Any]) -> InferredLoss:
    """What :func:`~harness.check_loss` calls with no spec: the :class:`InferredLoss`."""
    li = infer_loss(fn, scores, y, seed=seed, **wrap_kwargs)
    from ..adapters.layouts import Layout

    inference = InferredLoss(cast(Any, li.spec), Layout(), [li], tuple(np.shape(scores)))
    inference.seconds = li.seconds
    return inference


__all__ = ["InferredLoss", "LossInference", "infer_loss", "inferred_loss"]
