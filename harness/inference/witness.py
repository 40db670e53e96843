"""The witnesses besides the forward: the code's own names and its backward. A forward that
fits one kind while the name (``class MaxPool``) or the backward (the exact gradient of
another reading) says another is ``ambiguous``, with ``best`` the kind they support, so a
forward bug is never explained by another kind; a backward that only runs on another output
shape says the forward returns the wrong shape.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace
from typing import Any, cast

import numpy as np

from ..adapters.layouts import data_from_user
from ..spec import Layer, walk
from .confirm import Scorer, refit_by_backward, same_reading
from .found import Observed
from .result import Fit, LayerInference
from .shaped import candidates, other_shapes

# the kinds a code's own name says: whole words (short names) or parts of the joined name
_NAMED = {
    "Conv2d": ("conv", "convolution", "conv2d", "convolutional", "im2col"),
    "Linear": ("dense", "linear", "fc", "affine", "fullyconnected", "innerproduct"),
    "BatchNorm": ("bn", "batchnorm", "batchnormalization", "spatialbatchnorm"),
    "LayerNorm": ("ln", "layernorm", "layernormalization"),
    "MaxPool2d": ("maxpool", "maxpooling", "maxpool2d"),
    "AvgPool2d": ("avgpool", "avgpooling", "averagepooling", "meanpool"),
    "GlobalAvgPool2d": ("globalavgpool", "globalaveragepooling", "gap"),
    "ReLU": ("relu",),
    "LeakyReLU": ("leakyrelu", "lrelu", "leaky"),
    "ELU": ("elu",),
    "GELU": ("gelu",),
    "Dropout": ("dropout",),
    "Flatten": ("flatten",),
    "Sigmoid": ("sigmoid",),
    "Tanh": ("tanh",),
    "Softmax": ("softmax",),
}
BACKWARD_TOL = {np.dtype(np.float16): 5e-2, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-6}


def same_interpretation(a: Fit, b: Fit, obs: Observed) -> bool:
    """Candidates that differ only in hyperparameters the data cannot tell apart (same kind,
    layout and parameter places), or whose layouts read every parameter identically, or
    that read the user's arrays in their own order either way (a flatten of NCHW data in
    any order, the weight's columns read in that order; a batch norm per flattened feature)."""
    if a.params == b.params and kinds(a.spec) == kinds(b.spec) and _natural(a) == _natural(b):
        return True
    shapes = {p: tuple(v.shape) for p, v in obs.params.items()}
    return same_reading(a, b, shapes, obs.pairs[0][0].shape)


def _natural(f: Fit) -> tuple:
    """The layout fields that change what ``f`` computes on the user's own arrays."""
    from ..spec import BatchNorm2d, Flatten

    lay = f.layout
    leaves = [s for _, s in walk(f.spec) if not s.children()]
    if isinstance(leaves[0], Flatten) and len(leaves) > 1:  # the weight's columns are read in the flatten's order
        return (lay.linear, "flattened")
    if isinstance(leaves[0], BatchNorm2d) and leaves[0].over == "feature":
        return ("per-element",)
    return (lay,)


def kinds(spec: Layer) -> tuple[str, ...]:
    return tuple(type(s).__name__ for _, s in walk(spec) if not s.children())


def _name_kind(hint: str) -> str | None:
    """The kind the code's own name says (``DenseLayer`` -> Linear), or None: the longest
    name found (``LayerNormBatchAxis`` is a LayerNorm)."""
    words = {w.lower() for w in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", hint)}
    joined = hint.lower().replace("_", "")
    found = [
        (len(n), kind) for kind, names in _NAMED.items() for n in names if n in words or (len(n) >= 4 and n in joined)
    ]
    return max(found)[1] if found else None


def _matches_name(spec: Layer, kind: str) -> bool:
    return any(k.startswith(kind) for k in kinds(spec))


def name_conflict(li: LayerInference, hint: str) -> None:
    """The code's name says another kind than the best fit's: ambiguous, best = the named kind."""
    kind = _name_kind(hint)
    if kind is None or _matches_name(li.best.spec, kind):
        return
    named = [f for f in li.candidates if _matches_name(f.spec, kind)]
    if not named:
        return
    # none of the named kind fits the values (else it would be best): the plainest reading is
    # what the code means (a 2x2 pool, not the 2x3 one with padding that happens to come closest)
    named.sort(key=lambda f: (f.error > li.tol, _plainness(f.spec), f.error))
    was = li.best
    li.best = named[0]
    if li.status == "exact" or li.status == "ambiguous":
        li.status = "ambiguous"
        li.ambiguous = [was, *[f for f in li.ambiguous if f is not was]]
    li.why.append(
        f"the code is named {hint!r} ({kind}) but its forward fits {'+'.join(kinds(was.spec))} "
        f"({was.describe()}); the closest {kind} is {named[0].describe()}"
    )


def _plainness(spec: Layer) -> int:
    """How far a spec is from the plain reading: padding, dilation, a stride other than the
    window (pools) or than 1, non-square windows, an eps or slope other than the default
    count against it."""
    score = 0
    for _, s in walk(spec):
        pad, dil = getattr(s, "padding", 0), getattr(s, "dilation", 1)
        score += sum(np.ravel(pad)) if not isinstance(pad, str) else 1
        score += sum(int(d) - 1 for d in np.ravel(dil))
        defaults = {f.name: f.default for f in fields(cast(Any, s))}
        score += sum(getattr(s, k) != defaults[k] for k in ("eps", "negative_slope", "alpha") if k in defaults)
        ks, st = getattr(s, "kernel_size", None), getattr(s, "stride", None)
        if ks is not None:
            score += len(set(np.ravel(ks))) - 1
            plain = tuple(np.ravel(ks)) if s.kind in ("MaxPool2d", "AvgPool2d") else (1,) * len(np.ravel(ks))
            score += st is not None and tuple(np.ravel(st)) != plain
    return int(score)


def backward_conflict(li: LayerInference, scorer: Scorer, obs: Observed, priors: dict[int, int]) -> None:
    """The user's backward reproduces another candidate's reference VJP, not the best's:
    ambiguous, best = the one the backward supports. A backward that cannot run is noted
    (with the option the adapters say is missing), and gradients found only by watching
    the backward are declared."""
    err, reason = scorer.backward_error(li.best)
    if err == float("inf") and "cannot find the gradient" in reason and obs.grads:
        li.grads = {loc: obs.grads[p] for loc, p in li.best.params.items() if p in obs.grads}
        scorer.kw["grads"] = li.grads
        err, reason = scorer.backward_error(li.best)
    if err == float("inf"):
        if "declare" not in reason and _shape_conflict(li, scorer, obs, reason):
            return
        ask = "; pass the option it names to infer_layer too (passed through)" if "declare" in reason else ""
        li.why.append(f"its backward was not compared while inferring: {reason}{ask}")
        return
    btol = BACKWARD_TOL.get(np.dtype(obs.dtype), 1e-3)
    if err <= btol or li.status == "ambiguous":
        return
    for f in [*_alternatives(li, priors, obs), *refit_by_backward(li.best, scorer)]:
        if _backward_bug_rather(li.best, f, obs.hint):
            continue
        e, _ = scorer.backward_error(f)
        if e <= btol:
            was = li.best
            li.best, li.status = f, "ambiguous"
            li.ambiguous = [was]
            li.why.append(
                f"the forward fits {was.describe()}, but the backward computes the gradient of {f.describe()}"
            )
            return


def _shape_conflict(li: LayerInference, scorer: Scorer, obs: Observed, reason: str) -> bool:
    """The backward cannot run on the forward's own output shape, but handed the output shape
    of the same layer with another padding or stride, it computes that layer's gradient: the
    forward's bug changed the shape (a conv that forgot its padding). Ambiguous, best = the
    layer the backward supports; True when found."""
    x = obs.pairs[0][0]
    btol = BACKWARD_TOL.get(np.dtype(obs.dtype), 1e-3)
    for shape in other_shapes(li.best, x.shape):
        for f, _ in candidates("layer", obs.params, obs.running, x.shape, shape):
            if type(f.spec) is not type(li.best.spec) or f.layout != li.best.layout or f.params != li.best.params:
                continue
            if scorer.backward_error(f, other_shape=True)[0] <= btol:
                was, out = li.best, f.spec.output_shape(data_from_user(x, f.layout).shape)
                li.best, li.status, li.ambiguous = (
                    replace(f, error=float("inf"), reason="the forward returns another shape"),
                    "ambiguous",
                    [was],
                )
                li.why.append(
                    f"the forward fits {was.describe()}, but its backward cannot run on that output ({reason[:100]}); "
                    f"handed an upstream gradient of shape {out} it computes the gradient of {f.describe()}: "
                    "the forward returns the wrong shape"
                )
                return True
    return False


def _backward_bug_rather(best: Fit, other: Fit, hint: str) -> bool:
    """A backward matching ``other`` is still a backward bug of ``best`` when the forward and
    the code's name agree on another kind than ``other``'s (a LeakyReLU whose backward is
    ReLU's), or when ``other`` is ``best`` without its fused activation (forgotten in the
    backward). Another reading of the same kind (layout, eps, slope) is the forward's doubt."""
    mine, theirs = kinds(best.spec), kinds(other.spec)
    if mine == theirs:
        return False
    if len(theirs) < len(mine) and all(k in mine for k in theirs):
        return True
    kind = _name_kind(hint)
    return kind is not None and _matches_name(best.spec, kind) and not _matches_name(other.spec, kind)


def _alternatives(li: LayerInference, priors: dict[int, int], obs: Observed, most: int = 8) -> list[Fit]:
    """Other interpretations whose gradient the user's backward may compute: the simplest
    first (another layout, eps or kind; one per reading), at most ``most``."""
    out: list[Fit] = []
    for f in sorted(li.candidates[1:], key=lambda f: (priors.get(id(f), 99), f.error)):
        if f.error == float("inf") or (same_interpretation(li.best, f, obs) and f.spec == li.best.spec):
            continue
        if any(f.spec == g.spec and f.layout == g.layout and f.params == g.params for g in out):
            continue
        out.append(f)
        if len(out) == most:
            break
    return out


__all__ = ["BACKWARD_TOL", "backward_conflict", "kinds", "name_conflict", "same_interpretation"]
