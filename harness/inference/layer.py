"""Inference of one layer: ``infer_layer(target, x)`` watches the user's code on a copy
(:mod:`.found`), proposes candidates from the parameters' shapes (:mod:`.shaped`; the
parameter-free kinds from :mod:`.free`), confirms them against the PyTorch reference
(:mod:`.confirm`) and states the outcome honestly:

* ``exact``: one interpretation is confirmed (candidates computing the same function, such as
  a 1x1 kernel's dilation, collapse to the simplest, silently);
* ``ambiguous``: interpretations that are different functions (or read the gradients
  differently) fit equally and the backward does not tell them apart, or the forward fits one
  kind while the code's name or its backward says another (``best`` is then the kind the
  name / backward supports, so the check ends in ``forward``);
* ``unmatched``: nothing reproduces the forward; the closest is kept with its error.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..adapters.arrays import to_float64
from ..adapters.refs import AdapterError
from ..spec import Layer, Sequential, walk
from .confirm import Scorer, fused, named, refined_eps, refit_by_backward, same_reading, tolerance
from .found import Observed, observe
from .result import Fit, LayerInference
from .shaped import candidates

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
_DEFAULT_NAMES = {"Linear": "fc", "Conv2d": "conv", "BatchNorm1d": "bn", "BatchNorm2d": "bn", "LayerNorm": "ln"}
_BACKWARD_TOL = {np.dtype(np.float16): 5e-2, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-6}


def infer_layer(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **wrap_kwargs: Any) -> LayerInference:
    """Infer the spec layer, layout and parameter places of one layer.

    ``target``: an object with ``forward(x)`` / ``backward(dy)`` (parameters as attributes or
    dict entries), or a ``(forward, backward)`` function pair with ``params=`` (a list or a
    dict of arrays) and ``args=`` / ``kwargs=`` as for :func:`~harness.wrap_functions`.
    ``x``: an example input exactly as the code takes it (the user's layout: NCHW or NHWC
    4-D, (N, F) 2-D). ``wrap_kwargs``: options inference cannot see (``sgd=(None, lr)``,
    ``flush=``, ``lazy=True`` ...), passed through to the wrapping. The user's object and
    arrays are never changed (everything runs on copies)."""
    start = time.perf_counter()
    label = name or "layer"
    x64 = _read_x(x, label, target)
    # the second input is small: a norm's eps then weighs against the variance, so even
    # float32 tells 1e-5 from 2e-5 (every other kind is scored by relative error alike)
    scale = 1e-3 * (float(np.std(x64)) or 1.0)
    x2 = np.random.default_rng(seed + 1).normal(scale=scale, size=x64.shape)
    try:
        obs = observe(target, x64, x2, seed + 2, dict(wrap_kwargs))
    except AdapterError as e:
        raise AdapterError(f"infer_layer: layer '{label}': {e}") from None
    except Exception as e:  # the user's code raised on the example input: say where and on what
        raise AdapterError(
            f"infer_layer: layer '{label}': the code raised {type(e).__name__}: {str(e)[:200]} when given the "
            f"example input of shape {x64.shape}; pass x exactly as the code takes it (its layout, batch first)"
        ) from e
    kw = dict(wrap_kwargs)
    if any("lazy=True" in n for n in obs.notes):
        kw["lazy"] = True
    li = _decide(obs, kw, label, target)
    final = name or _default_name(li.best.spec, obs.hint)
    li = _renamed(li, final)
    if obs.is_pair:  # the arrays themselves, by canonical name, in the code's positional order
        where = {path: local for local, path in li.best.params.items()}
        li.wrap_kwargs["params"] = {where[p]: a for p, a in obs.pristine.items() if p in where}
    li.seconds = time.perf_counter() - start
    return li


def _read_x(x: Any, label: str, target: Any) -> np.ndarray:
    try:
        x64, _ = to_float64(x, f"layer '{label}' x")
    except Exception as e:
        raise AdapterError(f"infer_layer: layer '{label}': x must be an array (the example input); {e}") from None
    if x64.ndim not in (2, 3, 4):
        raise AdapterError(
            f"infer_layer: layer '{label}': x has shape {x64.shape} ({x64.ndim}-D); expected a batch as the code takes "
            "it: (N, F) or (N, C, H, W) / (N, H, W, C) (one example at a time: add the batch axis and pass batched=False)"
        )
    if isinstance(target, tuple) and len(target) != 2:
        raise AdapterError(
            f"infer_layer: layer '{label}': a function pair is (forward, backward); got {len(target)} items"
        )
    return x64


def _decide(obs: Observed, kw: dict[str, Any], label: str, target: Any) -> LayerInference:
    """Score the candidates and state the outcome (see the module docstring)."""
    tol = tolerance(obs.dtype)
    scorer = Scorer(obs, kw, label)
    x, y = obs.pairs[0]
    ranked = _ranked(scorer, candidates("layer", obs.params, obs.running, x.shape, y.shape), tol)
    if ranked and ranked[0][0].error > tol:
        more = fused(scorer, ranked) + refined_eps(scorer, ranked)
        ranked = sorted(ranked + more, key=lambda t: (t[0].error > tol, t[1], t[0].error))
    why: list[str] = list(obs.notes)
    if not ranked:
        ranked = _free(obs, why)
        if obs.params and not (ranked and ranked[0][0].error <= tol):
            ranked = []  # arrays no kind uses, and no parameter-free kind explains it either
        elif obs.params:
            why.append(f"holds {sorted(obs.params)}, which no layer with parameters uses as they are")
    if not ranked:
        shapes = {p: tuple(v.shape) for p, v in obs.params.items()}
        raise AdapterError(
            f"infer_layer: layer '{label}': no layer kind fits what {obs.hint or 'the code'} holds ({shapes or 'no arrays'}) "
            f"for an input of shape {x.shape} giving {y.shape}; write the spec by hand (harness.wrap_layer)"
        )
    fits = [f for f, _ in ranked]
    li = LayerInference(label, target, fits[0], "exact", tol, candidates=fits, wrap_kwargs=_wrap_kwargs(obs, kw))
    confirmed = [f for f in fits if f.error <= tol]
    if not confirmed:
        li.status = "unmatched"
        li.why.append(f"nothing reproduces the forward: the closest is {fits[0].describe()}")
    else:
        _settle(li, scorer, confirmed, obs)
    _name_conflict(li, obs.hint)
    if li.status != "unmatched":
        _backward_conflict(li, scorer, obs, {id(f): p for f, p in ranked})
    li.why = why + li.why
    return li


def _ranked(scorer: Scorer, cands: list[tuple[Fit, int]], tol: float) -> list[tuple[Fit, int]]:
    """Candidates scored, the plain ones first: a dilated kernel only when no undilated
    candidate is confirmed (a dilated one fitting too computes the same function)."""
    plain = [c for c in cands if not _dilated(c[0].spec)]
    if len(plain) < len(cands):
        first = scorer.rank(plain)
        if first and first[0][0].error <= tol:
            return first
    return scorer.rank(cands)


def _dilated(spec: Layer) -> bool:
    return any(getattr(s, "dilation", (1, 1)) != (1, 1) for _, s in walk(spec))


def _wrap_kwargs(obs: Observed, kw: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kw.items() if k != "params"}
    return out


def _same_interpretation(a: Fit, b: Fit, obs: Observed) -> bool:
    """Candidates that differ only in hyperparameters the data cannot tell apart (same kind,
    layout and parameter places), or whose layouts read every parameter identically, or
    that read the user's arrays in their own order either way (a flatten of NCHW data in
    any order, the weight's columns read in that order; a batch norm per flattened feature)."""
    if a.params == b.params and _kinds(a.spec) == _kinds(b.spec) and _natural(a) == _natural(b):
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


def _settle(li: LayerInference, scorer: Scorer, confirmed: list[Fit], obs: Observed) -> None:
    """Among confirmed candidates: one interpretation (exact), or several told apart by the
    backward (exact), or not (ambiguous: stated, the simplest kept)."""
    best = confirmed[0]
    others = [f for f in confirmed[1:] if not _same_interpretation(best, f, obs)]
    distinct: list[Fit] = []
    for f in others:
        if not any(_same_interpretation(f, d, obs) for d in distinct):
            distinct.append(f)
    if not distinct:
        li.best = best
        return
    btol = _BACKWARD_TOL.get(np.dtype(obs.dtype), 1e-3)
    contenders = [best, *distinct[:3]]
    scores = [scorer.backward_error(f) for f in contenders]
    matching = [f for f, (e, _) in zip(contenders, scores) if e <= btol]
    if len(matching) == 1:
        li.best = matching[0]
        li.why.append(
            f"the forward fits {len(contenders)} readings equally ({_diff(best, distinct[0])}); the backward "
            f"matches only {matching[0].layout}"
        )
    elif len(matching) > 1 and all(_kinds(m.spec) == _kinds(matching[0].spec) for m in matching):
        li.best = matching[0]  # the backward agrees under each too: the same computation, the simplest kept
    else:
        li.best, li.status = best, "ambiguous"
        li.ambiguous = [f for f in distinct if f is not best]
        li.why.append(
            f"{len(contenders)} readings fit the forward equally ({_diff(best, distinct[0])}) and the backward "
            f"does not tell them apart; kept the simplest, {best.layout}"
        )


def _diff(a: Fit, b: Fit) -> str:
    if _kinds(a.spec) != _kinds(b.spec):
        return f"{'+'.join(_kinds(a.spec))} or {'+'.join(_kinds(b.spec))}"
    return f"{a.layout} or {b.layout}"


def _kinds(spec: Layer) -> tuple[str, ...]:
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
    return any(k.startswith(kind) for k in _kinds(spec))


def _name_conflict(li: LayerInference, hint: str) -> None:
    """The code's name says another kind than the best fit's: ambiguous, best = the named kind."""
    kind = _name_kind(hint)
    if kind is None or _matches_name(li.best.spec, kind):
        return
    named = [f for f in li.candidates if _matches_name(f.spec, kind)]
    if not named:
        return
    was = li.best
    li.best = named[0]
    if li.status == "exact" or li.status == "ambiguous":
        li.status = "ambiguous"
        li.ambiguous = [was, *[f for f in li.ambiguous if f is not was]]
    li.why.append(
        f"the code is named {hint!r} ({kind}) but its forward fits {'+'.join(_kinds(was.spec))} "
        f"({was.describe()}); the closest {kind} is {named[0].describe()}"
    )


def _backward_conflict(li: LayerInference, scorer: Scorer, obs: Observed, priors: dict[int, int]) -> None:
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
        ask = "; pass the option it names to infer_layer too (passed through)" if "declare" in reason else ""
        li.why.append(f"its backward was not compared while inferring: {reason}{ask}")
        return
    btol = _BACKWARD_TOL.get(np.dtype(obs.dtype), 1e-3)
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


def _backward_bug_rather(best: Fit, other: Fit, hint: str) -> bool:
    """A backward matching ``other`` is still a backward bug of ``best`` when the forward and
    the code's name agree on another kind than ``other``'s (a LeakyReLU whose backward is
    ReLU's), or when ``other`` is ``best`` without its fused activation (forgotten in the
    backward). Another reading of the same kind (layout, eps, slope) is the forward's doubt."""
    mine, theirs = _kinds(best.spec), _kinds(other.spec)
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
        if f.error == float("inf") or (_same_interpretation(li.best, f, obs) and f.spec == li.best.spec):
            continue
        if any(f.spec == g.spec and f.layout == g.layout and f.params == g.params for g in out):
            continue
        out.append(f)
        if len(out) == most:
            break
    return out


def _free(obs: Observed, why: list[str]) -> list[tuple[Fit, int]]:
    """Parameter-free kinds (:mod:`.free`, when present; else ReLU alone)."""
    (x, y), more = obs.pairs[0], obs.pairs[1:]
    dt = np.dtype(obs.dtype)
    try:
        from .free import free_fits  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # not merged yet: the one kind this module knows itself
        return _relu_only(obs)
    fits = free_fits("layer", x.astype(dt), y.astype(dt), more=[(a.astype(dt), b.astype(dt)) for a, b in more])
    return [(f, i) for i, f in enumerate(fits)]


def _relu_only(obs: Observed) -> list[tuple[Fit, int]]:
    from ..spec import ReLU
    from .confirm import rel_error

    errs = [rel_error(y, np.maximum(x, 0)) for x, y in obs.pairs]
    return [(Fit(ReLU("layer"), error=max(errs)), 0)] if obs.pairs[0][1].shape == obs.pairs[0][0].shape else []


def _default_name(spec: Layer, hint: str) -> str:
    if isinstance(spec, Sequential):
        return "dense" if "Linear" in _kinds(spec) else "block"
    return _DEFAULT_NAMES.get(type(spec).__name__, type(spec).__name__.lower())


def _renamed(li: LayerInference, name: str) -> LayerInference:
    """Every candidate's spec named ``name`` (the layer's name)."""

    def ren(f: Fit) -> Fit:
        return replace(f, spec=named(f.spec, name))

    li.name = name
    li.why = [w.replace("name='layer'", f"name={name!r}").replace('("layer"', f'("{name}"') for w in li.why]
    li.best = ren(li.best)
    li.candidates = [ren(f) for f in li.candidates]
    li.ambiguous = [ren(f) for f in li.ambiguous]
    return li


__all__ = ["infer_layer"]
