"""Scoring candidates against the reference: the user's forward ran once per input (see
:mod:`.found`); every candidate reads the user's parameters its way (through the adapters, so
unit axes, kernel orders and flattened features are read exactly as a check reads them), the
PyTorch reference built from its spec runs on the input read its way, and the error is the
relative norm-wise distance to the user's output read its way. The best few are scored on a
second input too. A candidate's backward is scored only when asked: the user's backward, run
through the candidate's wrapping, against the reference's VJP.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, cast

import numpy as np

from ..adapters.detect import MATCH_TOL
from ..adapters.layouts import Layout, data_from_user
from ..spec import Layer, Sequential
from .found import Observed
from .result import Fit


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    """Relative norm-wise error of ``y`` against ``ref`` (inf when the shapes differ)."""
    if y.shape != ref.shape:
        return float("inf")
    return float(np.linalg.norm(y - ref) / max(float(np.linalg.norm(ref)), 1e-300))


def tolerance(dtype: np.dtype) -> float:
    """The forward's match tolerance for code computing in ``dtype`` (detect's)."""
    return MATCH_TOL.get(np.dtype(dtype), 1e-4)


class Scorer:
    """Scores candidates for one observed layer; caches parameter readings and references."""

    def __init__(self, obs: Observed, wrap_kwargs: dict[str, Any], name: str) -> None:
        self.obs, self.kw, self.name = obs, wrap_kwargs, name
        self._params: dict[Any, dict[str, np.ndarray] | str] = {}
        self._refs: dict[Layer, Any] = {}

    # -- the pieces
    def wrapped(self, fit: Fit, target: Any | None = None) -> Any:
        """The user's layer wrapped as ``fit`` says (on ``target``: a copy by default)."""
        from ..adapters.layer import wrap_functions, wrap_layer

        # a lazy layer's copy here is taken after its first forward: its parameters are built
        kw = {k: v for k, v in self.kw.items() if k not in ("params", "lazy")}
        if self.obs.is_pair:
            fwd, bwd = self.obs.target
            arrays = {
                local: self.obs.pristine[path]
                for path in self.obs.pristine
                for local, p in fit.params.items()
                if p == path
            }
            return wrap_functions(fwd, bwd, fit.spec, arrays, layout=fit.layout, name=self.name, **kw)
        obj = copy.deepcopy(self.obs.pristine) if target is None else target
        grads = kw.pop("grads", None)
        return wrap_layer(obj, fit.spec, params=dict(fit.params), grads=grads, layout=fit.layout, name=self.name, **kw)

    def params(self, fit: Fit, x_canon_shape: tuple[int, ...]) -> dict[str, np.ndarray] | str:
        """Canonical parameters keyed for the reference (``<name>.<local>``), or why they cannot be read."""
        key = (type(fit.spec), _shapes(fit.spec, x_canon_shape), fit.layout, tuple(sorted(fit.params.items())))
        if key not in self._params:
            try:
                w = self.wrapped(fit, target=self.obs.pristine)
                w.expect_input(x_canon_shape)
                self._params[key] = w.get_params()
            except Exception as e:  # this reading does not fit: the candidate cannot run
                self._params[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        got = self._params[key]
        return got if isinstance(got, str) else {f"{fit.spec.name}.{k}": v for k, v in got.items()}

    def ref(self, spec: Layer) -> Any:
        from reference_models import build

        if spec not in self._refs:
            self._refs[spec] = build("torch", Sequential([spec]))
        return self._refs[spec]

    def score(self, fit: Fit, i: int) -> Fit:
        """``fit`` with its error on input ``i`` (the larger of the two after the second)."""
        x, y = self.obs.pairs[i]
        xc, yc = data_from_user(x, fit.layout), data_from_user(y, fit.layout)
        try:
            yc_shape = fit.spec.output_shape(xc.shape)
        except Exception as e:  # the input does not fit this reading: not a candidate
            return replace(fit, error=float("inf"), reason=str(e).splitlines()[0][:160])
        if tuple(yc_shape) != yc.shape:
            return replace(fit, error=float("inf"), reason=f"output shape {tuple(yc_shape)} != {yc.shape}")
        params = self.params(fit, xc.shape)
        if isinstance(params, str):
            return replace(fit, error=float("inf"), reason=params)
        try:
            out = self.ref(fit.spec).forward(params, xc).output
        except Exception as e:  # the reference refuses it: not a candidate
            return replace(fit, error=float("inf"), reason=f"{type(e).__name__}: {str(e)[:160]}")
        err = rel_error(yc, out)
        return replace(fit, error=err if i == 0 else max(err, fit.error))

    def rank(self, fits: list[tuple[Fit, int]], keep: int = 12) -> list[tuple[Fit, int]]:
        """Every candidate scored on the first input, the best ``keep`` (and every one within
        tolerance) on the second; best first (error, then prior)."""
        tol = tolerance(self.obs.dtype)
        first = sorted(((self.score(f, 0), p) for f, p in fits), key=lambda t: (t[0].error, t[1]))
        top = [t for i, t in enumerate(first) if i < keep or t[0].error <= tol]
        second = [(self.score(f, 1), p) for f, p in top]
        rest = first[len(top) :]  # scored on the first input only: far from the user's output already
        return sorted(second, key=lambda t: (_bucket(t[0].error, tol), t[1], t[0].error)) + rest

    # -- the backward, for a candidate in contention
    def backward_error(self, fit: Fit, seed: int = 7, *, other_shape: bool = False) -> tuple[float, str]:
        """Relative error (worst tensor) of the user's backward, wrapped as ``fit`` says,
        against the reference's VJP at the first input; (inf, why) when it cannot run.
        ``other_shape``: ``fit``'s output shape is not the one the user's forward returns (a
        forward bug that changes it); the forward still runs first (its caches), then the
        backward is handed an upstream gradient of ``fit``'s own output shape."""
        from ..adapters.refs import ValueFinding

        x = self.obs.pairs[0][0]
        xc = data_from_user(x, fit.layout)
        try:
            w = self.wrapped(fit)
            try:
                y = w.forward(xc)
            except ValueFinding:
                if not other_shape:
                    raise
                y = np.empty(fit.spec.output_shape(xc.shape))
                w.assume_output(y.shape)  # what the layer should have returned: the backward is asked about that
            dy = np.random.default_rng(seed).normal(size=y.shape)
            dx = w.backward(dy)
            grads = w.param_grads()
            params = {f"{fit.spec.name}.{k}": v for k, v in w.get_params().items()}
            res = self.ref(fit.spec).vjp(params, xc, dy)
        except Exception as e:  # the backward is evidence; why it could not run is kept
            return float("inf"), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        errs = [rel_error(g, res.param_grads[f"{fit.spec.name}.{k}"]) for k, g in grads.items()]
        if dx is not None:
            errs.append(rel_error(dx, res.input_grad))
        return max(errs, default=0.0), ""


def _bucket(err: float, tol: float) -> int:
    """Confirmed candidates rank by prior (they fit equally), the rest by error."""
    return 0 if err <= tol else 1


def _shapes(spec: Layer, x_shape: tuple[int, ...]) -> tuple:
    from ..spec import named_params

    try:
        return tuple((k, v.shape) for k, v in named_params(Sequential([spec]), x_shape).items())
    except Exception:  # a spec the input does not fit: its own key
        return (repr(spec),)


def fused(scorer: Scorer, ranked: list[tuple[Fit, int]], top: int = 4) -> list[tuple[Fit, int]]:
    """Spans ``Sequential([layer, activation])`` for the ``top`` candidates whose reference
    output, put through an elementwise activation (ReLU, Sigmoid, Tanh; :mod:`.free`'s kinds
    when it is there), is the user's output."""
    from ..spec import ReLU, Sigmoid, Tanh

    acts = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
    out = []
    for fit, prior in ranked[:top]:
        if fit.error == float("inf") or isinstance(fit.spec, Sequential):
            continue
        for word, kind in acts.items():
            inner = named(fit.spec, _inner_name(fit.spec))
            span = Sequential([inner, kind(word)], name=fit.spec.name)
            where = {f"{inner.name}.{k}": v for k, v in fit.params.items()}
            out.append((Fit(span, fit.layout, where, note=f"a {kind.__name__} fused after the {type(inner).__name__}"),
                        prior + 1))  # fmt: skip
    return scorer.rank(out, keep=4) if out else []


def named(spec: Layer, name: str) -> Layer:
    """``spec`` under another name (every spec layer is a frozen dataclass)."""
    return replace(cast(Any, spec), name=name)


def _inner_name(spec: Layer) -> str:
    return {"Linear": "fc", "Conv2d": "conv"}.get(type(spec).__name__, "inner")


# --------------------------------------------------------------------------- continuous hyperparameters

# log10 ranges searched for a hyperparameter no common value fits
_CONTINUOUS = {"negative_slope": (-4.0, 0.0), "alpha": (-3.0, 1.0), "eps": (-12.0, -1.0)}


def _log_search(err: Any, lo: float, hi: float) -> float:
    """The value (3 significant digits) minimising ``err(log10 value)`` on [lo, hi]: a grid,
    then a golden-section search around its best point."""
    grid = np.linspace(lo, hi, 23)
    i = int(np.argmin([err(g) for g in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(20):
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        lo, hi = (lo, b) if err(a) < err(b) else (a, hi)
    return float(f"{10 ** ((lo + hi) / 2):.3g}")


def _with(fit: Fit, **values: Any) -> Fit:
    return replace(fit, spec=replace(cast(Any, fit.spec), **values))


def refined_eps(scorer: Scorer, ranked: list[tuple[Fit, int]]) -> list[tuple[Fit, int]]:
    """An eps none of the common values fits (2e-5, say): the closest norm's eps searched on
    the small second input, where eps shows, then scored on both inputs."""
    best, prior = ranked[0]
    if not hasattr(best.spec, "eps") or best.error >= 1.0:
        return []
    eps = _log_search(lambda v: scorer.score(replace(_with(best, eps=10**v), error=0.0), 1).error, *_CONTINUOUS["eps"])
    return scorer.rank(
        [(replace(_with(best, eps=eps), note=f"eps {eps:g} fitted from the values"), prior + 20)], keep=1
    )


def refit_by_backward(best: Fit, scorer: Scorer) -> list[Fit]:
    """``best`` with its one continuous hyperparameter (a slope, an ELU's alpha, an eps) read
    from the user's backward instead of its forward: the value the backward differentiates,
    when it is not the forward's (else nothing)."""
    field = next((k for k in _CONTINUOUS if hasattr(best.spec, k)), None)
    if field is None:
        return []
    value = _log_search(lambda v: scorer.backward_error(_with(best, **{field: 10**v}))[0], *_CONTINUOUS[field])
    if np.isclose(value, getattr(best.spec, field), rtol=1e-2):
        return []
    return [replace(_with(best, **{field: value}), note=f"{field} {value:g} read from the backward")]


# --------------------------------------------------------------------------- readings


def same_reading(a: Fit, b: Fit, shapes: dict[str, tuple[int, ...]], x_shape: tuple[int, ...]) -> bool:
    """Whether ``a`` and ``b`` (both confirmed, of one kind) read any parameter values and
    gradients identically (a 1x1 kernel under two kernel orders): then they are one
    interpretation, not two."""
    from ..adapters.layouts import param_from_user

    if type(a.spec) is not type(b.spec) or a.params != b.params or a.layout.data != b.layout.data:
        return False
    if not a.params or a.layout.flatten != b.layout.flatten:  # nothing read, or the data read in another order
        return a.layout == b.layout
    rng = np.random.default_rng(3)
    for local, path in a.params.items():
        v = rng.normal(size=shapes[path])
        try:
            ea = param_from_user(a.spec, local, v, a.layout, _expected(a.spec, local, x_shape, a.layout))
            eb = param_from_user(b.spec, local, v, b.layout, _expected(b.spec, local, x_shape, b.layout))
        except Exception:  # spans and the like: compare as different readings
            return False
        if ea.shape != eb.shape or not np.array_equal(ea, eb):
            return False
    return True


def _expected(spec: Layer, local: str, x_shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    xc = data_from_user(np.empty(x_shape), layout).shape
    return tuple(spec.local_params(xc)[local].shape)


__all__ = ["Scorer", "fused", "named", "refined_eps", "refit_by_backward", "rel_error", "same_reading", "tolerance"]
