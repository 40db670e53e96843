"""Inference of a CS231n-style loss model: ``model.loss(X, y) -> (loss, grads)`` over
``model.params`` (``{'W1': ..., 'b1': ..., 'W2': ..., 'b2': ...}`` or dotted names
``{'fc1.weight': ..., 'fc1.bias': ...}``), a chain of fully connected layers.

The layers come from the parameters' names in order (``W1, W2 ...``: by number; dotted
prefixes: by number when each has one, else as the dict holds them), each weight's
orientation from the shapes along the chain (``x`` ``(N, D)``, or ``(N, C, H, W)`` flattened
as ``X.reshape(N, -1)`` does), and then, confirmed by the loss value, the activation between
layers (one kind for every gap: ReLU, LeakyReLU at the usual slopes, ELU, Tanh, Sigmoid, GELU)
and the loss (softmax cross-entropy for labels, MSE for targets; mean or sum). A candidate is
confirmed when the PyTorch reference network under it, fed the user's parameters, reproduces
the user's loss value on ``x`` and on a second input of another batch size.

A model whose ``loss(X)`` gives the scores (``y=None``) is wrapped as the object (its scores
are checked too); one whose ``loss`` requires ``y`` as the function ``model.loss`` over the
very arrays of ``model.params`` (:func:`~harness.wrap_loss_model` either way).
"""

from __future__ import annotations

import copy
import inspect
import re
import time
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from ..adapters.layouts import Layout
from ..adapters.refs import AdapterError
from ..spec import (
    ELU,
    GELU,
    MSE,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    Loss,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from .confirm import rel_error, tolerance
from .emit import spec_source
from .result import Fit, Inference, LayerInference

ACTIVATIONS: tuple[Layer, ...] = (
    ReLU("act"),
    Tanh("act"),
    Sigmoid("act"),
    *(LeakyReLU("act", s) for s in (0.01, 0.1, 0.2, 0.05, 0.3)),
    ELU("act"),
    GELU("act"),
)


def is_loss_model(target: Any) -> bool:
    """An object with a ``loss`` method and a ``params`` dict, and no ``forward`` of its own."""
    return (
        not isinstance(target, type)
        and callable(getattr(target, "loss", None))
        and isinstance(getattr(target, "params", None), Mapping)
        and not callable(getattr(target, "forward", None))
    )


class LossModelInference(Inference):
    """The :class:`Inference` of a loss model: ``spec`` the network, ``layers`` one entry for
    the whole model (its ``best`` the network spec; ``wrap_kwargs`` :func:`~harness.wrap_loss_model`'s)."""

    def wrap(self) -> Any:
        from ..adapters.loss_model import wrap_loss_model

        li = self.layers[0]
        kw = dict(li.wrap_kwargs)
        target = kw.pop("target")
        return wrap_loss_model(target, self.spec, layout=self.layout, **kw)

    def to_python(self, obj: str = "model") -> str:
        from .emit import layout_source

        li = self.layers[0]
        kw = li.wrap_kwargs
        if kw["target"] is self.network:
            params = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in kw["params"].items()) + "}"
            target = obj
        else:
            params = "{" + ", ".join(f"{k!r}: {obj}.params[{u!r}]" for k, u in li.grads.items()) + "}"
            target = f"{obj}.loss"
        lines = [f"# inferred: {self.status}", *(f"# {w}" for w in li.why), "import harness as tg", ""]
        lines += [f"spec = {spec_source(self.spec)}", f"layout = {layout_source(self.layout)}"]
        lines.append(
            f"net = tg.wrap_loss_model({target}, spec, loss={spec_source(kw['loss'])}, params={params}, layout=layout)"
        )
        return "\n".join(lines) + "\n"


def infer_loss_model(model: Any, x: Any, y: Any = None, *, seed: int = 0) -> LossModelInference:
    """Infer the network spec, the linear layout and the loss of a CS231n-style ``model``
    (see the module docstring) from an example input ``x`` ``(N, D)`` (or ``(N, C, H, W)``,
    flattened by the model) and targets ``y`` (labels drawn from ``seed`` when None; regression
    targets tried when labels do not run). The model runs on a copy; its arrays are not written."""
    start = time.perf_counter()
    what = type(model).__name__
    if not is_loss_model(model):
        raise AdapterError(
            f"infer_loss_model: a {what} is not a CS231n-style model: expected loss(X, y) -> (loss, grads) and a "
            "params dict of arrays"
        )
    if getattr(model, "reg", 0.0):
        raise AdapterError(
            f"infer_loss_model: {what}.reg = {model.reg!r}: set it to 0 (the references compute the bare loss)"
        )
    x64 = np.array(x, dtype=np.float64, copy=True)
    if x64.ndim < 2:
        raise AdapterError(f"infer_loss_model: {what}: x must be a batch (N, D) or (N, C, H, W), got shape {x64.shape}")
    chain = _chain(model.params, what)
    rng = np.random.default_rng(seed)
    x2 = rng.normal(scale=2.0, size=(x64.shape[0] + 2, *x64.shape[1:]))
    layouts = _orientations(chain, int(np.prod(x64.shape[1:])), what)  # the shapes first: the clearer error
    runs = _run(model, chain, (x64, x2), y, rng, what)
    fits: list[Fit] = []
    loss_of: dict[int, Loss] = {}
    run_of: dict[int, Any] = {}
    for lin in layouts:
        params = _canonical(model.params, chain, lin)
        for spec in _specs(chain, lin, x64.ndim > 2):
            for run in runs:
                kind, targets, values, _ = run
                for loss in _losses(kind):
                    fit = Fit(spec, Layout(linear=lin), error=_error(spec, params, (x64, x2), loss, targets, values))
                    fits.append(fit)
                    loss_of[id(fit)], run_of[id(fit)] = loss, run
    fits.sort(key=lambda f: (f.error, _red(loss_of[id(f)]) != "mean"))
    dtypes = {np.asarray(v).dtype for v in model.params.values()}
    tol = max(tolerance(d) if np.issubdtype(d, np.floating) else tolerance(np.dtype(np.float64)) for d in dtypes)
    li = LayerInference("model", model, fits[0], "exact", tol, candidates=fits)
    _decide(li, loss_of, lambda f: _grad_error(model, chain, f, loss_of[id(f)], x64, run_of[id(f)]))
    loss = loss_of[id(li.best)]
    li.wrap_kwargs = _wrap_kwargs(model, chain, loss)
    li.grads = {f"{name}.{local}": key for name, keys, _ in chain for local, key in keys.items()}
    li.why.insert(0, f"loss {spec_source(cast(Any, loss)).removeprefix('tg.')}")
    inference = LossModelInference(li.spec, li.layout, [li], tuple(x64.shape), network=model)
    inference.seconds = li.seconds = time.perf_counter() - start
    return inference


def _decide(li: LayerInference, loss_of: dict[int, Loss], grad_error: Any) -> None:
    """The status: the loss value decides; the gradients witness the reduction (a value that
    is a sum under a mean's gradients is ambiguous and checked as the mean, as for a loss)."""
    fits, tol = li.candidates, li.tol
    confirmed = [f for f in fits if f.error <= tol]
    if not confirmed:
        li.status = "unmatched"
        closest = spec_source(cast(Any, loss_of[id(fits[0])])).removeprefix("tg.")
        li.why.append(f"nothing reproduces the loss value: the closest is {fits[0].describe()} with {closest}")
        return
    if len(confirmed) > 1:
        li.status, li.ambiguous = "ambiguous", confirmed[1:]
        li.why.append(f"{len(confirmed)} readings reproduce the loss value; kept {confirmed[0].describe()}")
        return
    best, loss = li.best, loss_of[id(li.best)]
    other = next(
        (
            f
            for f in fits
            if f.spec == best.spec
            and f.layout == best.layout
            and _red(loss_of[id(f)]) != _red(loss)
            and loss_of[id(f)].kind == loss.kind
        ),
        None,
    )  # the same network under the other reduction
    btol = max(li.tol * 1e3, 1e-6)  # gradients go through more arithmetic than the value
    if other is None or grad_error(best) <= btol or grad_error(other) > btol:
        return  # the gradients agree, or fit neither reduction (a gradient bug: the check's backward says so)
    li.status = "ambiguous"
    red, other_red = _red(loss), _red(loss_of[id(other)])
    li.best = best if red == "mean" else other
    li.ambiguous = [best] if li.best is other else []
    li.why.append(
        f"the loss value is a {red} but the gradients are those of a {other_red}; checked as the mean, so the "
        "side that is not a mean fails"
    )


def _grad_error(model: Any, chain: Chain, fit: Fit, loss: Loss, x: np.ndarray, run: Any) -> float:
    """The user's gradients (first input) against the reference's under ``fit`` and ``loss``;
    inf when they cannot be read by the parameters' names."""
    from reference_models import build

    _, targets, _, grads = run
    lin = fit.layout.linear
    try:
        ref = build("torch", fit.spec).loss_vjp(_canonical(model.params, chain, lin), x, loss, targets[0])
        user = _canonical(grads, chain, lin)
    except Exception:
        return float("inf")
    return max(rel_error(user[k], v) for k, v in ref.param_grads.items())


def _red(loss: Loss) -> str:
    return str(getattr(loss, "reduction", ""))


Chain = list[
    tuple[str, dict[str, str], tuple[int, int]]
]  # (layer name, {"weight"/"bias": the user's key}, weight shape)


def _chain(params: Mapping[str, Any], what: str) -> Chain:
    """The fully connected layers in order, from the parameters' names."""
    groups: dict[str, dict[str, str]] = {}
    for key, value in params.items():
        m = re.fullmatch(r"([Wb])(\d+)", key) or re.fullmatch(r"(.+)\.(weight|bias)", key)
        if m is None or np.ndim(value) not in (1, 2):
            raise AdapterError(
                f"infer_loss_model: {what}.params[{key!r}] (shape {np.shape(value)}) is not a fully connected "
                "layer's weight or bias: only W1/b1, W2/b2 ... or 'fc1.weight' / 'fc1.bias' chains are inferred; "
                "write the spec by hand (harness.wrap_loss_model)"
            )
        a, b = m.groups()
        name, local = (f"fc{b}", "weight" if a == "W" else "bias") if a in "Wb" and b.isdigit() else (a, b)
        groups.setdefault(name, {})[local] = key
    names = list(groups)
    numbers = [re.search(r"(\d+)$", n) for n in names]
    if all(numbers):
        names.sort(key=lambda n: int(cast(Any, re.search(r"(\d+)$", n)).group(1)))
    for n in names:
        if "weight" not in groups[n] or np.ndim(params[groups[n]["weight"]]) != 2:
            raise AdapterError(
                f"infer_loss_model: {what}: layer '{n}' has no 2-D weight among {sorted(groups[n].values())}"
            )
    return [(n, groups[n], cast(tuple[int, int], np.shape(params[groups[n]["weight"]]))) for n in names]


def _orientations(chain: Chain, d_in: int, what: str) -> list[str]:
    """The linear layouts under which the weights chain from ``d_in`` features."""
    out = []
    for lin in ("out_in", "in_out"):
        d = d_in
        for _, _, shape in chain:
            w_in, w_out = (shape[1], shape[0]) if lin == "out_in" else shape
            if w_in != d:
                break
            d = w_out
        else:
            out.append(lin)
    if not out:
        raise AdapterError(
            f"infer_loss_model: {what}: the weights {[s for _, _, s in chain]} do not chain "
            f"from the input's {d_in} features in either orientation; is x the model's input?"
        )
    return out


def _specs(chain: Chain, lin: str, flatten: bool) -> list[Sequential]:
    """One network per activation kind (the same at every gap)."""
    out = []
    for act in ACTIVATIONS if len(chain) > 1 else ACTIVATIONS[:1]:
        layers: list[Layer] = [Flatten("flat")] if flatten else []
        for i, (name, keys, shape) in enumerate(chain):
            w_in, w_out = (shape[1], shape[0]) if lin == "out_in" else shape
            layers.append(Linear(name, w_in, w_out, bias="bias" in keys))
            if i < len(chain) - 1:
                suffix = str(i + 1) if len(chain) > 2 else ""
                layers.append(type(act)(**{**vars(act), "name": type(act).__name__.lower() + suffix}))
        out.append(Sequential(layers))
    return out


def _canonical(params: Mapping[str, Any], chain: Chain, lin: str) -> dict[str, np.ndarray]:
    out = {}
    for name, keys, _ in chain:
        for local, key in keys.items():
            v = np.asarray(params[key], dtype=np.float64)
            out[f"{name}.{local}"] = (
                v.T if local == "weight" and lin == "in_out" else v.reshape(-1) if local == "bias" else v
            )
    return out


def _run(model: Any, chain: Chain, xs: tuple[Any, Any], y: Any, rng: Any, what: str) -> list[Any]:
    """Per target kind that runs (labels: cross-entropy; regression targets: MSE): (kind, the
    targets of both inputs, the user's loss values on copies of them, its gradients on the first)."""
    last = chain[-1][2]
    sides = set(last)
    kinds: list[tuple[str, Any]] = []
    n1, n2 = xs[0].shape[0], xs[1].shape[0]
    if y is not None:
        y = np.array(y, copy=True)
        kinds.append(("labels" if y.ndim == 1 else "targets", (y, _like(y, n2, rng))))
    else:
        k = min(sides)  # the class count is one of the last weight's sides; the smaller runs under both
        kinds.append(("labels", (rng.integers(0, k, size=n1), rng.integers(0, k, size=n2))))
        kinds += [
            (f"targets (N, {c})", (rng.standard_normal((n1, c)), rng.standard_normal((n2, c)))) for c in sorted(sides)
        ]
    runs, errors = [], []
    for kind, targets in kinds:
        twin = copy.deepcopy(model)
        try:
            outs = [twin.loss(a.copy(), t.copy()) for a, t in zip(xs, targets)]
            values = [float(np.asarray(o[0])) for o in outs]
        except Exception as e:  # this target kind does not run; another may
            errors.append(f"{kind}: {type(e).__name__}: {str(e)[:120]}")
            continue
        runs.append((kind, targets, values, outs[0][1] if isinstance(outs[0][1], Mapping) else {}))
    if not runs:
        raise AdapterError(
            f"infer_loss_model: {what}.loss(X, y) raised on x of shape {xs[0].shape} under every target tried "
            f"({'; '.join(errors)}); pass x exactly as the model takes it"
        )
    return runs


def _like(y: np.ndarray, n: int, rng: Any) -> np.ndarray:
    if y.ndim == 1:
        return rng.integers(0, int(y.max()) + 1, size=n)
    return rng.standard_normal((n, *y.shape[1:]))


def _losses(kind: str) -> list[Loss]:
    if kind == "labels":
        return [SoftmaxCrossEntropy(), SoftmaxCrossEntropy(reduction="sum")]
    return [MSE(), MSE(reduction="sum")]


def _error(spec: Layer, params: dict[str, np.ndarray], xs: Any, loss: Loss, targets: Any, values: list[float]) -> float:
    from reference_models import build

    ref = build("torch", spec)
    try:
        refs = [float(ref.loss_vjp(params, a, loss, t).loss) for a, t in zip(xs, targets)]
    except Exception:  # the targets do not fit this network's output
        return float("inf")
    return max(abs(v - r) / max(abs(r), 1e-300) for v, r in zip(values, refs))


def _wrap_kwargs(model: Any, chain: Chain, loss: Loss) -> dict[str, Any]:
    """wrap_loss_model's options: the object when ``loss(X)`` gives the scores (``y`` has a
    default), else the bound ``model.loss`` over the very arrays of ``model.params``."""
    try:
        y_param = list(inspect.signature(model.loss).parameters.values())[1]
        scores = y_param.default is not inspect.Parameter.empty
    except (TypeError, ValueError, IndexError):
        scores = False
    places = {f"{name}.{local}": key for name, keys, _ in chain for local, key in keys.items()}
    if scores:
        return {"target": model, "loss": loss, "params": {k: f"params[{u!r}]" for k, u in places.items()}}
    return {"target": model.loss, "loss": loss, "params": {k: model.params[u] for k, u in places.items()}}


__all__ = ["LossModelInference", "infer_loss_model", "is_loss_model"]
