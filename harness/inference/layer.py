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

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..adapters.arrays import to_float64
from ..adapters.refs import AdapterError
from ..spec import Layer, Sequential, walk
from .confirm import Scorer, fused, named, refined_eps, tolerance
from .found import Observed, observe
from .free import dropout_rate_hint, free_fits
from .result import Fit, LayerInference
from .shaped import candidates
from .witness import BACKWARD_TOL, backward_conflict, kinds, name_conflict, same_interpretation

_DEFAULT_NAMES = {"Linear": "fc", "Conv2d": "conv", "BatchNorm1d": "bn", "BatchNorm2d": "bn", "LayerNorm": "ln"}


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
    x64, wrap_kwargs = _one_example(target, x64, dict(wrap_kwargs))
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
    final = name or _default_name(li.best.spec)
    li = _renamed(li, final)
    if obs.is_pair:  # the arrays themselves, by canonical name, in the code's positional order
        where = {path: local for local, path in li.best.params.items()}
        li.wrap_kwargs["params"] = {where[p]: a for p, a in obs.pristine.items() if p in where}
    li.seconds = time.perf_counter() - start
    return li


def _one_example(target: Any, x: np.ndarray, kw: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Code that takes one example at a time: ``batched=False`` declared, or a 2-D ``x`` that
    the code turns into a 3-D output (one grayscale image (H, W) -> (F, H', W')). Returns the
    example as a batch of one, canonical for the adapters' ``batched=False`` (``(1, C, H, W)``;
    ``(1, 1, H, W)`` with ``channel_axis=False``), and the options that say so."""
    if kw.get("batched") is not False:
        if x.ndim == 1:  # a vector is one example: a batch has at least two axes
            kw.update(batched=False)
        elif x.ndim != 2 or not _returns_3d(target, x, kw):
            return x, kw
        else:
            kw.update(batched=False, channel_axis=False)
    return as_batch(x, kw), kw


def as_batch(x: np.ndarray, kw: dict[str, Any]) -> np.ndarray:
    """One example as the code takes it (``(H, W)`` without a channel axis, ``(C, H, W)``) as
    the batch of one a ``batched=False`` wrapping reads (``(1, 1, H, W)``, ``(1, C, H, W)``);
    a batch given as such is kept."""
    if kw.get("channel_axis", True) is False:
        return x[None, None] if x.ndim == 2 else x[:, None] if x.ndim == 3 else x
    return x[None] if x.ndim in (1, 3) else x


def _returns_3d(target: Any, x: np.ndarray, kw: dict[str, Any]) -> bool:
    import copy

    try:
        if isinstance(target, tuple):  # a function pair: forward(x, *params, *args, **kwargs) -> (out, cache)
            given = kw.get("params", ())
            arrays = [np.copy(a) for a in (given.values() if isinstance(given, dict) else given)]
            y = target[0](x.copy(), *arrays, *kw.get("args", ()), **(kw.get("kwargs") or {}))
        else:
            y = getattr(copy.deepcopy(target), kw.get("forward", "forward"))(x.copy(), *kw.get("forward_args", ()))
    except Exception:  # it does not take x as one image either: leave it to the batched reading
        return False
    y = y[0] if isinstance(y, tuple) else y
    return np.ndim(y) == 3


def _read_x(x: Any, label: str, target: Any) -> np.ndarray:
    try:
        x64, _ = to_float64(x, f"layer '{label}' x")
    except Exception as e:
        raise AdapterError(f"infer_layer: layer '{label}': x must be an array (the example input); {e}") from None
    if x64.ndim not in (1, 2, 3, 4):
        raise AdapterError(
            f"infer_layer: layer '{label}': x has shape {x64.shape} ({x64.ndim}-D); expected the example input as the "
            "code takes it: a batch (N, F), (N, C, H, W) / (N, H, W, C), or one example (F,), (H, W), (C, H, W) "
            "(then pass batched=False, and channel_axis=False for an image without a channel axis)"
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
    li = LayerInference(
        label,
        target,
        fits[0],
        "exact",
        tol,
        candidates=fits,
        wrap_kwargs={k: v for k, v in kw.items() if k != "params"},
    )
    confirmed = [f for f in fits if f.error <= tol]
    if not confirmed:
        li.status = "unmatched"
        li.why.append(f"nothing reproduces the forward: the closest is {fits[0].describe()}")
    else:
        _settle(li, scorer, confirmed, obs)
    name_conflict(li, obs.hint)
    if li.status != "unmatched":
        backward_conflict(li, scorer, obs, {id(f): p for f, p in ranked})
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


def _settle(li: LayerInference, scorer: Scorer, confirmed: list[Fit], obs: Observed) -> None:
    """Among confirmed candidates: one interpretation (exact), or several told apart by the
    backward (exact), or not (ambiguous: stated, the simplest kept)."""
    best = confirmed[0]
    others = [f for f in confirmed[1:] if not same_interpretation(best, f, obs)]
    distinct: list[Fit] = []
    for f in others:
        if not any(same_interpretation(f, d, obs) for d in distinct):
            distinct.append(f)
    if not distinct:
        li.best = best
        return
    btol = BACKWARD_TOL.get(np.dtype(obs.dtype), 1e-3)
    contenders = [best, *distinct[:3]]
    scores = [scorer.backward_error(f) for f in contenders]
    matching = [f for f, (e, _) in zip(contenders, scores) if e <= btol]
    if len(matching) == 1:
        li.best = matching[0]
        li.why.append(
            f"the forward fits {len(contenders)} readings equally ({_diff(best, distinct[0])}); the backward "
            f"matches only {matching[0].layout}"
        )
    elif len(matching) > 1 and all(kinds(m.spec) == kinds(matching[0].spec) for m in matching):
        li.best = matching[0]  # the backward agrees under each too: the same computation, the simplest kept
    else:
        li.best, li.status = best, "ambiguous"
        li.ambiguous = [f for f in distinct if f is not best]
        li.why.append(
            f"{len(contenders)} readings fit the forward equally ({_diff(best, distinct[0])}) and the backward "
            f"does not tell them apart; kept the simplest, {best.layout}"
        )


def _diff(a: Fit, b: Fit) -> str:
    if kinds(a.spec) != kinds(b.spec):
        return f"{'+'.join(kinds(a.spec))} or {'+'.join(kinds(b.spec))}"
    return f"{a.layout} or {b.layout}"


def _free(obs: Observed, why: list[str]) -> list[tuple[Fit, int]]:
    """Parameter-free kinds (:mod:`.free`), a dropout's p from the object when it shows none."""
    (x, y), more = obs.pairs[0], obs.pairs[1:]
    dt = np.dtype(obs.dtype)
    fits = free_fits("layer", x.astype(dt), y.astype(dt), more=[(a.astype(dt), b.astype(dt)) for a, b in more])
    if not obs.is_pair:  # a dropout that does not scale shows no p: the object's own rate attribute says it
        fits = dropout_rate_hint(obs.target, fits)
    return [(f, i) for i, f in enumerate(fits)]


def _default_name(spec: Layer) -> str:
    if isinstance(spec, Sequential):
        return "dense" if "Linear" in kinds(spec) else "block"
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


__all__ = ["as_batch", "infer_layer"]
