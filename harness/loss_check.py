"""The checks of a user's loss: :func:`check_loss` (a loss alone, at random or given scores),
the ``(loss)`` entry :func:`~harness.network_check.check_network` adds at the reference's
output, and the ``(network)`` entry of a CS231n-style loss model (``model.loss(X, y)`` or a
``loss_and_grads(x, y)`` function).

Scores are ``(N, K)`` (2-D: the same in every data layout); targets are integer labels
``(N,)`` for cross-entropy (or probabilities ``(N, K)``), values of the scores' shape for
MSE. Exceptions follow :mod:`harness.faults`: the user's code's faults become the entry's
verdict ``error``; configuration errors propagate.

Tolerances here stay the table's (:func:`harness.compare.tolerance`) at every dtype: the
measured low-precision tolerances of :mod:`harness.precision` are for layers, whose spec
runs as a torch module at the user's dtype; a float16 loss is judged by the coarse table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .compare import relative_with_floor
from .end_to_end import _dtype_notes, _fault
from .fd import probes as _probes
from .fd import summary as _fd_summary
from .judge import FLOOR, Compared, _judge, refs_spread
from .kinks import pattern
from .results import LayerResult, Report
from .spec import Loss, Sequential, SoftmaxCrossEntropy, TemporalSoftmaxCrossEntropy, check_target


def loss_targets(loss: Loss, out_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Targets for ``loss`` from the seed: class labels ``(N,)`` for cross-entropy, else
    standard normal values of ``out_shape``."""
    if isinstance(loss, SoftmaxCrossEntropy):
        return rng.integers(0, out_shape[-1], size=out_shape[0])
    if isinstance(loss, TemporalSoftmaxCrossEntropy):
        return temporal_targets(loss, out_shape, rng)
    return rng.standard_normal(out_shape)


def temporal_targets(
    loss: TemporalSoftmaxCrossEntropy, out_shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Labels ``(N, T)`` in ``[0, V)`` for logits ``(N, T, V)``, about a quarter of them
    ``ignore_index`` (at least one position kept, and one ignored when there are two), so a
    check sees the mask at work."""
    if len(out_shape) != 3:  # check_target says why
        check_target(loss, out_shape, np.zeros(out_shape[:2], np.int64))
    n, t, v = out_shape
    y = rng.integers(0, v, size=(n, t))
    if 0 <= loss.ignore_index < v:  # a real token (CS231n's NULL): keep the drawn ones off it
        y = np.where(y == loss.ignore_index, (y + 1) % v, y)
    ignored = rng.random((n, t)) < 0.25
    cells = rng.permutation(n * t)
    ignored.flat[cells[0]] = False
    ignored.flat[cells[1:2]] = True
    return np.where(ignored, loss.ignore_index, y)


def check_loss(
    loss: Any,
    spec: Loss | None = None,
    *,
    scores: np.ndarray | None = None,
    y: Any = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    tol_scale: float = 1.0,
    fd_probes: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
    **wrap_kwargs: Any,
) -> Report:
    """Check a handwritten loss alone: its value (forward) and d loss / d scores (backward)
    against PyTorch and JAX, and finite differences of its own value.

    ``loss``: a :class:`~harness.adapters.loss.WrappedLoss` (:func:`harness.wrap_loss`), or
    the user's raw loss with ``spec`` (``SoftmaxCrossEntropy()``, ``MSE()``): a function
    ``fn(scores, y) -> (loss, dscores)`` (CS231n's ``softmax_loss``), or an object with
    ``forward(scores, y) -> loss`` and ``backward() -> dscores``, wrapped with
    :func:`harness.wrap_loss`'s defaults (labels as integers; for other conventions wrap it
    yourself). ``scores``: ``(N, K)``, else standard normal from ``seed`` with
    ``input_shape=(N, K)``. ``y``: targets, else generated from ``seed`` (labels in
    ``[0, K)`` for cross-entropy). Returns a :class:`~harness.results.Report` with one
    ``(loss)`` entry. Configuration mistakes raise :class:`~harness.adapters.layer.AdapterError`
    (or the :class:`~harness.spec.SpecError` the targets' check raises): among them an option
    :func:`harness.wrap_loss` does not take, and with an already-wrapped loss any of its
    options or another ``spec`` (:mod:`harness.check_options`).

    With no ``spec`` (a raw loss), the loss spec, the style, the target format and a
    regularisation argument to switch off are inferred from the code on the scores
    (:func:`harness.inference.loss.infer_loss`) and the report's ``inferred`` says what was
    inferred and how sure it is. ``wrap_kwargs``: :func:`harness.wrap_loss`'s options
    (``forward_kwargs=``, ``target_format=``, ``dtype=`` ...) for a raw loss.
    """
    from .adapters.loss import WrappedLoss
    from .check_options import loss_wrap_options, refuse_options

    # unknown options, raw or wrapped (wrap_loss's own with a wrapped loss: _as_wrapped refuses them)
    refuse_options(check_loss, "check_loss", wrap_kwargs, loss_wrap_options(), what="loss")
    inference = None
    rng = np.random.default_rng(seed)
    if spec is None and not isinstance(loss, WrappedLoss):  # no spec: infer it on the scores the check uses
        from .inference.loss import inferred_loss

        s0 = _scores(scores, input_shape, np.random.default_rng(seed))
        inference = inferred_loss(loss, s0 if scores is None else scores, y, seed, wrap_kwargs)
        loss, wrap_kwargs = inference.wrap(), {}
    wloss = _as_wrapped(loss, spec, wrap_kwargs)
    s = _scores(scores, input_shape, rng)
    target = loss_targets(wloss.spec, s.shape, rng) if y is None else np.asarray(y)
    check_target(wloss.spec, s.shape, target)  # a target that does not fit is a configuration error, raised here
    if progress:
        progress("(loss)", 0, 1)
    report = Report(seed=seed)
    report.layers.append(loss_entry(wloss, s, target, rng, fd_probes, tol_scale))
    if inference is not None:
        from .inference.api import attach

        attach(report, inference)
    return report


def _scores(scores: Any, input_shape: Any, rng: np.random.Generator) -> np.ndarray:
    """The scores checked: as given (float64), else standard normal of ``input_shape``."""
    if scores is None:
        if input_shape is None:
            raise _error("check_loss needs scores= (N, K) or input_shape=(N, K) to generate them")
        return rng.standard_normal(tuple(int(n) for n in input_shape))
    if input_shape is not None and tuple(np.shape(scores)) != tuple(input_shape):
        raise _error(
            f"check_loss: scores has shape {np.shape(scores)} but input_shape={tuple(input_shape)}; pass one of them"
        )
    return np.asarray(scores, dtype=np.float64)


def _error(message: str) -> Exception:
    from .adapters.refs import AdapterError

    return AdapterError(message)


def _as_wrapped(loss: Any, spec: Loss | None, wrap_kwargs: dict[str, Any]) -> Any:
    """``loss`` as a WrappedLoss: as given, or the raw function / object wrapped for ``spec``."""
    from .adapters.loss import WrappedLoss, wrap_loss

    if spec is not None and not isinstance(spec, Loss):
        raise _error(
            f"check_loss: spec must be a loss spec such as harness.SoftmaxCrossEntropy() or harness.MSE(), "
            f"got {type(spec).__name__}"
        )
    if isinstance(loss, WrappedLoss):
        if wrap_kwargs:
            raise _error(
                f"check_loss: the loss is already wrapped; {sorted(wrap_kwargs)} are harness.wrap_loss's options: "
                "pass them there"
            )
        if spec is not None and spec != loss.spec:
            from .hypotheses.conventions import declaration

            raise _error(
                f"check_loss: the loss was wrapped for {declaration(loss.spec)} but spec={declaration(spec)}; "
                "pass one of them"
            )
        return loss
    assert spec is not None  # check_loss infers it for a raw loss given without one
    is_object = callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None))
    if not is_object and not callable(loss):
        raise _error(
            f"check_loss: a {type(loss).__name__} is neither a function fn(scores, y) -> (loss, dscores) nor "
            "an object with forward(scores, y) and backward(); wrap it with harness.wrap_loss(..., style=)"
        )
    return wrap_loss(loss, spec, **{"style": "object" if is_object else "function", **wrap_kwargs})


def loss_entry(
    wloss: Any, scores: np.ndarray, target: np.ndarray, rng: np.random.Generator, fd_probes: int, tol_scale: float
) -> LayerResult:
    """The ``(loss)`` entry: the user's loss at ``scores`` (N, K), its value (forward) and
    d loss / d scores (backward) against both references, and finite differences of its own value."""
    from reference_models import build

    from .hypotheses.conventions import log_eps_part, loss_log_eps
    from .spec import Dropout, Flatten

    result = LayerResult(name="(loss)", kind=wloss.spec.kind, verdict="error", dtype=str(wloss.dtype))
    # the references' loss of the scores themselves: (N, K), or (N, T, V) kept whole by an identity
    identity = Sequential([Flatten(name="scores") if scores.ndim == 2 else Dropout("scores", 0.0, training=False)])
    try:
        value, dscores = wloss.loss_and_grad(scores, target)
        # a declared epsilon in the log is the value's only: its part is taken out before finite
        # differences, which then see the textbook gradient the code computes (SoftmaxCrossEntropy)
        value_f = lambda s: wloss.loss_and_grad(s, target)[0] - log_eps_part(wloss.spec, s, target)  # noqa: E731
        fds = {"scores": _fd_summary(_probes(value_f, scores, dscores, rng, fd_probes, wloss.dtype, None), wloss.dtype)}
    except Exception as e:
        result.message, result.error_side = _fault(e), wloss.running
        return result
    t = build("torch", identity).loss_vjp({}, scores, wloss.spec, target)
    j = build("jax", identity).loss_vjp({}, scores, wloss.spec, target)
    result.refs_error = max(
        relative_with_floor(np.array(t.loss), np.array(j.loss)), relative_with_floor(t.input_grad, j.input_grad)
    )
    n = scores.shape[0]
    tensors: list[Compared] = [
        ("value", "forward", np.array(value), np.array(t.loss), np.array(j.loss), scores.size, 0.0),
        ("scores", "backward", dscores, t.input_grad, j.input_grad, scores.size // n, 0.0),
    ]
    _judge(result, tensors, fds, wloss.dtype, tol_scale, batch=n, window=None)
    value_entry = next(tr for tr in result.tensors if tr.name == "value")
    if not value_entry.ok:
        result.diagnosis += loss_log_eps(wloss.spec, scores, target, float(value), float(t.loss), value_entry.tolerance)
    failing = {tr.name: tr.tolerance for tr in result.tensors if not tr.ok}
    if failing and isinstance(wloss.spec, TemporalSoftmaxCrossEntropy):
        from .hypotheses.temporal import temporal_loss

        user, ref = {"value": np.array(value), "scores": dscores}, {"value": np.array(t.loss), "scores": t.input_grad}
        result.diagnosis += temporal_loss(
            wloss.spec, scores, target, {k: user[k] for k in failing}, {k: ref[k] for k in failing}, failing
        )
    result.diagnosis += _dtype_notes(wloss.returned, wloss.dtype, f"the loss computes in {wloss.dtype}")
    return result


def loss_model_entry(
    model: Any, x: np.ndarray, target: np.ndarray, rng: np.random.Generator, fd_probes: int, tol_scale: float
) -> LayerResult:
    """A CS231n ``model.loss(X, y)`` (or a ``loss_and_grads(x, y)`` function) as one
    ``(network)`` entry: the scores (when the model gives them) and the loss (forward), every
    parameter's gradient (backward) against both references, and finite differences of the
    model's own loss along random parameter directions."""
    from reference_models import build

    result = LayerResult(name="(network)", kind="loss model", verdict="error", dtype=str(model.dtype))
    spec = model.spec
    bad_params = model.nonfinite_params()
    if bad_params:
        result.message = (
            "the user's parameters hold NaN/Inf before any call: "
            + "; ".join(f"{k}: {bad}" for k, bad in bad_params.items())
            + " (user layout)"
        )
        result.error_side = "setup"
        return result
    params = model.get_params()
    # model.loss(X) computes the scores; model.loss(X, y) the loss and the gradients; a
    # loss_and_grads function computes all at once: no side can be told apart
    side = "forward" if model.has_scores else None
    try:
        scores = model.scores(x) if model.has_scores else None
        side = "backward" if model.has_scores else None  # the scores came out: the gradients' part fails
        value, grads = model.loss_and_grads(x, target)
    except Exception as e:
        result.message, result.error_side = _fault(e), side
        return result
    bad_grads = dict(model.nonfinite_grads)
    torch_ref, jax_ref = build("torch", spec), build("jax", spec)
    t, j = torch_ref.loss_vjp(params, x, model.loss, target), jax_ref.loss_vjp(params, x, model.loss, target)
    fds = _param_fds(model, x, target, params, grads, rng, fd_probes, pattern(torch_ref, spec))
    if isinstance(fds, Exception):
        result.message, result.error_side = _fault(fds), "backward"
        return result
    n = x.shape[0]
    scale = FLOOR * max(float(np.linalg.norm(t.param_grads[k])) for k in grads) if grads else 0.0
    tensors: list[Compared] = (
        [("output", "forward", scores, t.output, j.output, x.size // n, 0.0)] if scores is not None else []
    )
    tensors.append(("loss", "forward", np.array(value), np.array(t.loss), np.array(j.loss), x.size, 0.0))
    tensors += [(k, "backward", v, t.param_grads[k], j.param_grads[k], x.size, scale) for k, v in grads.items()]
    result.refs_error = max(refs_spread(row) for row in tensors)  # each above the floor it is judged by
    # the scores and the loss value were refused if not finite (ValueFinding); the gradients are named here
    _judge(result, tensors, fds, model.dtype, tol_scale, batch=n, window=None, nonfinite_found=bad_grads)
    result.diagnosis += _dtype_notes(model.returned, model.dtype, f"the parameters are {model.dtype}")
    return result


def _param_fds(
    model: Any,
    x: np.ndarray,
    target: np.ndarray,
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    rng: np.random.Generator,
    fd_probes: int,
    at: Callable[..., Any] | None,
) -> dict[str, Any] | Exception:
    """Finite differences of the model's own loss along random directions of each parameter
    (each put back after its probes); the user's code's exception instead, when it raises."""
    fds = {}
    try:
        for k in grads:

            def f(v: np.ndarray, k: str = k) -> float:
                model.set_params({k: v})
                return model.loss_and_grads(x, target)[0]

            pat = (lambda v, k=k: at({**params, k: v}, x)) if at else None
            try:
                fds[k] = _fd_summary(_probes(f, params[k], grads[k], rng, fd_probes, model.dtype, pat), model.dtype)
            finally:
                model.set_params({k: params[k]})
    except Exception as e:
        return e
    return fds


__all__ = ["check_loss", "loss_entry", "loss_model_entry", "loss_targets"]
