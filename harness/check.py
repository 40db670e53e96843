"""The three-way check of one layer: the user's code against PyTorch, JAX and finite
differences of the user's own forward.

For one point (input x, the user's parameters, a random upstream gradient g, all from one
seed) it compares the user's output with both references, the user's input and parameter
gradients with both references' VJPs, and the user's backward with central differences of
``<f_user(x; θ), g>`` along random directions; :func:`harness.compare.verdict` turns the
three answers into a verdict. The user's parameters are restored bit for bit afterwards.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np

from . import fd
from .adapters.layer import WrappedLayer, wrap_layer
from .compare import relative_with_floor, rel_error, tolerance, verdict
from .diagnose import accumulates, diagnose
from .results import FDSummary, LayerResult, Report, TensorResult
from .spec import ELU, Conv2d, Layer, LeakyReLU, Linear, ReLU, Sequential, join_path, walk

# finite differences of the user's forward must agree with its backward to this relative
# error (of the summed terms), by dtype; Richardson makes float64 probes good to ~1e-10
FD_TOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-2, np.dtype(np.float16): 1e-1}
REFS_TOL = 1e-10  # torch and jax, both float64, disagreeing beyond this blame the references
FLOOR = 1e-3  # a truly-zero gradient is judged against this fraction of the layer's other gradients
_KINKED = (ReLU, LeakyReLU, ELU)
_HARNESS = str(Path(__file__).resolve().parent)


def _default_input(spec: Layer, rng: np.random.Generator) -> tuple[int, ...]:
    first = next((layer for _, layer in walk(spec) if not layer.children()), spec)
    if isinstance(first, Conv2d):
        k = max(d * (s - 1) + 1 for d, s in zip(first.dilation, first.kernel_size))
        return (2, first.in_channels, k + 5, k + 4)  # odd and even, H != W
    if isinstance(first, Linear):
        return (3, first.in_features)
    raise ValueError(f"layer '{spec.name}': pass input_shape= or x= to check a {type(first).__name__}")


def _input(spec: Layer, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random input; for a layer with a kink at 0 (ReLU family) kept at least 0.1 away."""
    x = rng.standard_normal(shape)
    if isinstance(spec, _KINKED):
        x = np.sign(x) * (0.1 + np.abs(x))
    return x


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame outside trigrad: where the user's code failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_HARNESS)]
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _fd_summary(probes: list[tuple[fd.Probe, float, float]], dtype: np.dtype) -> FDSummary:
    """Summarise (probe, backward's <grad, d>, scale of the summed terms) triples."""
    tol = FD_TOL.get(dtype, FD_TOL[np.dtype(np.float32)])
    kinks = sum(p.kink for p, _, _ in probes)
    worst, verdicts = 0.0, []
    for p, bwd, scale in probes:
        if p.kink:
            continue
        err = abs(p.value - bwd) / max(scale, 1e-300)
        worst = max(worst, err)
        if err <= tol:
            verdicts.append(True)
        elif p.error / max(scale, 1e-300) > tol:  # the probe itself is that noisy: no evidence
            verdicts.append(None)
        else:
            verdicts.append(False)
    consistent = False if False in verdicts else (True if verdicts and all(verdicts) else None)
    return FDSummary(probes=len(probes), kinks=kinks, worst=worst, consistent=consistent)


def check_layer(layer: Any, spec_layer: Layer | None = None, *, input_shape: tuple[int, ...] | None = None,
                x: np.ndarray | None = None, seed: int = 0, fd_probes: int = 3, tol_scale: float = 1.0,
                **wrap_kwargs: Any) -> Report:
    """Check one handwritten layer against PyTorch, JAX and finite differences.

    ``layer``: a :class:`~harness.adapters.layer.WrappedLayer`, or an object-style layer
    wrapped with ``spec_layer`` and ``wrap_kwargs`` (``layout=``, ``params=`` ...).
    ``x``: the input (canonical NCHW, batch first), else generated from ``seed`` with
    ``input_shape`` (a default is chosen for a Conv2d or Linear). ``fd_probes``: random
    directions per tensor. Returns a :class:`~harness.results.Report` with one layer.
    """
    from reference_models import build

    wrapped = layer if isinstance(layer, WrappedLayer) else wrap_layer(layer, spec_layer, **wrap_kwargs)
    spec = wrapped.spec
    if spec is None:
        raise ValueError("check_layer needs the spec layer the code implements (FD-only checks come later)")
    rng = np.random.default_rng(seed)
    if x is None:
        x = _input(spec, tuple(input_shape) if input_shape is not None else _default_input(spec, rng), rng)
    x = np.asarray(x, dtype=np.float64)
    y_shape = spec.output_shape(x.shape)
    g = rng.standard_normal(y_shape)  # never all ones: that hides transposes and flips
    dtype = wrapped.dtype
    result = LayerResult(name=wrapped.name, kind=type(spec).__name__, verdict="error", dtype=str(dtype))
    report = Report(seed=seed, layers=[result])
    root = Sequential([spec])
    full = lambda p: {join_path(spec.name, k): v for k, v in p.items()}  # noqa: E731

    with wrapped.preserved():
        try:
            y_u = wrapped.forward(x)
            dx_u = wrapped.backward(g)
            grads_u = wrapped.param_grads()
            params = wrapped.get_params()
        except Exception as e:  # user code raised or returned garbage: report, never crash
            result.message = _user_frame(e)
            return report
        torch_ref, jax_ref = build("torch", root), build("jax", root)
        t, j = torch_ref.vjp(full(params), x, g), jax_ref.vjp(full(params), x, g)
        # which side of its kink each ReLU-family layer is on, read off the reference (so a
        # wrong user forward cannot hide a crossing); None when the spec has no such kink
        kinked = [p for p, lay in walk(root) if isinstance(lay, _KINKED)]
        pattern = (lambda z: b"".join((torch_ref.forward(full(params), z).inputs[p] > 0).tobytes() for p in kinked)
                   ) if kinked else None

        # ---- references: user vs torch and jax, torch vs jax
        n = x.shape[0]
        refs_err = [relative_with_floor(t.output, j.output), relative_with_floor(t.input_grad, j.input_grad)]
        grad_scale = max([float(np.linalg.norm(t.input_grad))] + [float(np.linalg.norm(v)) for v in t.param_grads.values()])
        tensors: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, int, float]] = [
            ("output", "forward", y_u, t.output, j.output, x.size // n, 0.0),
            ("input", "backward", dx_u, t.input_grad, j.input_grad, int(np.prod(y_shape)) // n, FLOOR * grad_scale),
        ]
        for k, v in grads_u.items():
            name = join_path(spec.name, k)
            refs_err.append(relative_with_floor(t.param_grads[name], j.param_grads[name], FLOOR * grad_scale))
            tensors.append((k, "backward", v, t.param_grads[name], j.param_grads[name], n * int(np.prod(y_shape[2:])),
                            FLOOR * grad_scale))
        result.refs_error = max(refs_err)

        # ---- finite differences of the user's own forward (its backward's consistency)
        def probe_x() -> list[tuple[fd.Probe, float, float]]:
            out = []
            for _ in range(fd_probes):
                d = fd.random_direction(x.shape, rng)
                p = fd.along(lambda z: float((wrapped.forward(z) * g).sum()), x, d, dtype=dtype, pattern=pattern)
                out.append((p, float((dx_u * d).sum()), float(np.abs(dx_u * d).sum())))
            return out

        def probe_param(k: str) -> list[tuple[fd.Probe, float, float]]:
            out = []
            base = params[k]
            for _ in range(fd_probes):
                d = fd.random_direction(base.shape, rng)

                def f(v: np.ndarray) -> float:
                    wrapped.set_params({k: v})
                    return float((wrapped.forward(x) * g).sum())

                pat = (lambda v: b"".join((torch_ref.forward(full({**params, k: v}), x).inputs[q] > 0).tobytes()
                                          for q in kinked)) if kinked else None
                p = fd.along(f, base, d, dtype=dtype, pattern=pat)
                out.append((p, float((grads_u[k] * d).sum()), float(np.abs(grads_u[k] * d).sum())))
            wrapped.set_params({k: base})
            return out

        try:
            fds = {"input": _fd_summary(probe_x(), dtype)}
            for k in grads_u:
                fds[k] = _fd_summary(probe_param(k), dtype)
            # a second backward at the same point must give the same gradients
            wrapped.forward(x)
            wrapped.backward(g)
            again = wrapped.param_grads()
        except Exception as e:
            result.message = _user_frame(e)
            return report

    # ---- verdict
    for name, side, user, tv, jv, reduction, floor in tensors:
        tol = tolerance(dtype, reduction, tol_scale)
        et, ej = relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)
        worst = rel_error(user, tv)
        result.tensors.append(TensorResult(
            name=name, side=side, shape=tuple(user.shape), tolerance=tol, error_torch=et, error_jax=ej,
            worst_index=worst.index, worst_user=worst.actual, worst_ref=worst.expected,
            ok=max(et, ej) <= tol, fd=fds.get(name) if side == "backward" else None,
        ))
    forward_ok = all(tr.ok for tr in result.tensors if tr.side == "forward")
    backward_ok = all(tr.ok for tr in result.tensors if tr.side == "backward")
    consistency = [s.consistent for s in fds.values()]
    fd_consistent = False if False in consistency else (True if all(consistency) else None)
    result.verdict = verdict(forward_ok=forward_ok, backward_ok=backward_ok, fd_consistent=fd_consistent,
                             refs_agree=result.refs_error <= REFS_TOL)
    window = int(np.prod(spec.kernel_size)) if hasattr(spec, "kernel_size") else None
    by_name = {name: (user, tv) for name, _, user, tv, _, _, _ in tensors}
    for tr in result.tensors:
        if not tr.ok:
            user, ref = by_name[tr.name]
            result.diagnosis += [f"{tr.name}: {h}" for h in diagnose(tr.name, user, ref, batch=x.shape[0], window=window)]
    for k, first in grads_u.items():
        if accumulates(first, again[k]):
            result.diagnosis.append(f"{k}: doubled on a second backward call: gradients accumulate instead of "
                                    "being overwritten (declare zero_grad= if the code expects a flush)")
            if result.verdict == "pass":
                result.verdict = "backward"
    if wrapped.input_mutated:
        result.message = "note: the forward writes into its input array"
    return report


__all__ = ["check_layer"]
