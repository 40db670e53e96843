"""The three-way check of one layer: the user's code against PyTorch, JAX and finite
differences of the user's own forward.

For one point (input x, the user's parameters, a random upstream gradient g, all from one
seed) it compares the user's output with both references, the user's input and parameter
gradients with both references' VJPs, and the user's backward with central differences of
``<f_user(x; θ), g>`` along random directions; :func:`harness.compare.verdict` turns the
three answers into a verdict. The user's parameters are restored bit for bit afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from . import fd
from .adapters.layer import WrappedLayer, wrap_layer
from .compare import relative_with_floor, rel_error, tolerance, verdict
from .diagnose import accumulates, diagnose, window_overlap
from .frames import user_frame
from .kinks import off_kinks, pattern, random_input
from .results import Boundary, FDSummary, LayerResult, Report, TensorResult, error_map
from .spec import AvgPool2d, Conv2d, Layer, MaxPool2d, Residual, Sequential, example_input_shape, join_path, walk

# finite differences of the user's forward must agree with its backward to this relative
# error (of the summed terms), by dtype; Richardson makes float64 probes good to ~1e-10
FD_TOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-2, np.dtype(np.float16): 1e-1}
REFS_TOL = 1e-10  # torch and jax, both float64, disagreeing beyond this blame the references
FLOOR = 1e-3  # a truly-zero gradient is judged against this fraction of the layer's other gradients


def _layout_hint(wrapped: WrappedLayer, x: np.ndarray) -> list[str]:
    """When the forward disagrees, ask whether another declared layout would reproduce the
    reference: a layout mismatch looks exactly like a forward bug."""
    from .adapters.detect import detect_layout

    try:
        found = detect_layout(wrapped, input_shape=x.shape)
    except Exception:  # detection is a hint; a layer it cannot run under other layouts gets none
        return []
    if found.matched and found.best != wrapped.layout:
        return [f"layout: the forward matches the reference under {found.best} (declared: {wrapped.layout}); "
                "declare that layout"]
    return []


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


def _probes(f: Any, base: np.ndarray, grad: np.ndarray, rng: np.random.Generator, count: int, dtype: np.dtype,
            pattern: Any) -> list[tuple[fd.Probe, float, float]]:
    """``count`` finite-difference probes of ``f`` at ``base`` along random directions, as
    (probe, backward's <grad, d>, scale of the summed terms); a probe that crosses a kink is
    kept (it is counted) and replaced by another, up to ``3 * count`` draws in all."""
    out: list[tuple[fd.Probe, float, float]] = []
    tol = FD_TOL.get(np.dtype(dtype), FD_TOL[np.dtype(np.float32)])
    for _ in range(3 * count):
        d = fd.random_direction(base.shape, rng)
        bwd, scale = float((grad * d).sum()), float(np.abs(grad * d).sum())
        # a plain central difference that already agrees settles the probe; Richardson otherwise
        p = fd.along(f, base, d, dtype=dtype, pattern=pattern,
                     accept=lambda v: abs(v - bwd) <= 0.5 * tol * max(scale, 1e-300))
        out.append((p, bwd, scale))
        if sum(not q.kink for q, _, _ in out) >= count:
            break
    return out


Compared = tuple[str, str, np.ndarray, np.ndarray, np.ndarray, int, float]


def _judge(result: LayerResult, tensors: list[Compared], fds: dict[str, FDSummary], dtype: np.dtype,
           tol_scale: float, *, batch: int, window: int | None = None, noise: dict[str, float] | None = None,
           **hints: Any) -> tuple[bool, bool]:
    """Fill ``result`` from the compared tensors — (name, side, user, torch, jax, reduction
    size, absolute floor) — and the finite-difference summaries: per-tensor results, the
    verdict and the diagnosis of each failing tensor. ``noise``: absolute error the reading of
    a gradient adds (see ``WrappedLayer.grad_noise``). Returns (forward_ok, backward_ok)."""
    noise = noise or {}
    for name, side, user, tv, jv, reduction, floor in tensors:
        # plus any error the reading of the gradient adds (an SGD-step recovery), relative to the truth
        tol = tolerance(dtype, reduction, tol_scale)
        if noise.get(name):
            tol += noise[name] / max(float(np.linalg.norm(tv)), floor, 1e-300)
        et, ej = relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)
        worst = rel_error(user, tv)
        result.tensors.append(TensorResult(
            name=name, side=side, shape=tuple(np.shape(user)), tolerance=tol, error_torch=et, error_jax=ej,
            worst_index=worst.index, worst_user=worst.actual, worst_ref=worst.expected,
            ok=max(et, ej) <= tol, fd=fds.get(name) if side == "backward" else None,
        ))
        if not result.tensors[-1].ok:
            result.tensors[-1].error_map = error_map(user, tv)
    forward_ok = all(tr.ok for tr in result.tensors if tr.side == "forward")
    backward_ok = all(tr.ok for tr in result.tensors if tr.side == "backward")
    consistency = [s.consistent for s in fds.values()]
    fd_consistent = False if False in consistency else (True if all(consistency) else None)
    result.verdict = verdict(forward_ok=forward_ok, backward_ok=backward_ok, fd_consistent=fd_consistent,
                             refs_agree=result.refs_error <= REFS_TOL)
    if result.verdict == "inconclusive":
        unsure = [f"{k} ({s.kinks} of {s.probes} probes crossed a kink)" if s.kinks else f"{k} (probes too noisy)"
                  for k, s in fds.items() if s.consistent is not True]
        result.message = ("inconclusive: the finite-difference probes were not reliable for " + ", ".join(unsure) +
                          "; rerun with another --seed or more --fd-probes") if unsure else result.message
    by_name = {name: (user, tv) for name, _, user, tv, _, _, _ in tensors}
    for tr in result.tensors:
        if not tr.ok:
            user, ref = by_name[tr.name]
            result.diagnosis += [f"{tr.name}: {h}" for h in diagnose(tr.name, user, ref, batch=batch, window=window, **hints)]
    return forward_ok, backward_ok


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
    wrapped = layer if isinstance(layer, WrappedLayer) else wrap_layer(layer, spec_layer, **wrap_kwargs)
    spec = wrapped.spec
    if spec is None:
        raise ValueError("check_layer needs the spec layer the code implements (FD-only checks come later)")
    rng = np.random.default_rng(seed)
    if x is None:
        shape = tuple(input_shape) if input_shape is not None else example_input_shape(spec)
        if shape is None:
            raise ValueError(f"layer '{spec.name}': pass input_shape= or x= to check a {type(spec).__name__}")
        x = random_input(spec, shape, rng)
    x = np.asarray(x, dtype=np.float64)
    g = rng.standard_normal(spec.output_shape(x.shape))  # never all ones: that hides transposes and flips
    return Report(seed=seed, layers=[check_point(wrapped, x, g, rng, fd_probes=fd_probes, tol_scale=tol_scale)])


def check_point(wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, rng: np.random.Generator, *,
                fd_probes: int = 3, tol_scale: float = 1.0, name: str | None = None,
                refs: tuple[Any, Any] | None = None) -> LayerResult:
    """The three-way check of ``wrapped`` at input ``x`` (canonical) with upstream gradient
    ``g``; finite-difference directions come from ``rng``. ``refs``: the torch and jax
    values at exactly this point (``output``, ``input_grad``, ``param_grads`` by full name),
    when the caller already has them from a whole-network pass."""
    from reference_models import build

    spec = wrapped.spec
    y_shape = spec.output_shape(x.shape)
    dtype = wrapped.dtype
    result = LayerResult(name=name or wrapped.name, kind=type(spec).__name__, verdict="error", dtype=str(dtype))
    root = Sequential([spec])
    full = lambda p: {join_path(spec.name, k): v for k, v in p.items()}  # noqa: E731

    # a forward at another point first: a backward that uses a cache from an earlier call
    # (not the latest forward) then shows up as wrong
    x_warm = x + rng.standard_normal(x.shape) * (float(np.std(x)) or 1.0)
    with wrapped.preserved():
        try:
            wrapped.forward(x_warm)
            y_u = wrapped.forward(x)
            dx_u = wrapped.backward(g)
            grads_u = wrapped.param_grads()
            params = wrapped.get_params()
            y_again = wrapped.forward(x)
        except Exception as e:  # user code raised or returned garbage: report, never crash
            result.message = user_frame(e)
            return result
        torch_ref = build("torch", root)
        t, j = refs if refs is not None else (torch_ref.vjp(full(params), x, g), build("jax", root).vjp(full(params), x, g))
        # the activation pattern read off the reference (so a wrong user forward cannot hide
        # a crossing); None when the spec has no kinks
        at = pattern(torch_ref, root)
        x_pattern = (lambda z: at(full(params), z)) if at else None

        # ---- references: user vs torch and jax, torch vs jax
        n = x.shape[0]
        refs_err = [relative_with_floor(t.output, j.output), relative_with_floor(t.input_grad, j.input_grad)]
        grad_scale = max([float(np.linalg.norm(t.input_grad))] + [float(np.linalg.norm(v)) for v in t.param_grads.values()])
        tensors: list[Compared] = [
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
            return _probes(lambda z: float((wrapped.forward(z) * g).sum()), x, dx_u, rng, fd_probes, dtype, x_pattern)

        def probe_param(k: str) -> list[tuple[fd.Probe, float, float]]:
            def f(v: np.ndarray) -> float:
                wrapped.set_params({k: v})
                return float((wrapped.forward(x) * g).sum())

            pat = (lambda v: at(full({**params, k: v}), x)) if at else None
            try:
                return _probes(f, params[k], grads_u[k], rng, fd_probes, dtype, pat)
            finally:
                wrapped.set_params({k: params[k]})

        def probe_joint() -> list[tuple[fd.Probe, float, float]]:
            # one direction over the input and every parameter at once: a consistent backward
            # agrees along it, and an inconsistent one would need a measure-zero direction to hide
            names = list(grads_u)
            blocks = [x, *(params[k] for k in names)]
            cuts = np.cumsum([b.size for b in blocks])[:-1]

            def split(v: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
                parts = np.split(v, cuts)
                return parts[0].reshape(x.shape), {k: p.reshape(params[k].shape) for k, p in zip(names, parts[1:])}

            def f(v: np.ndarray) -> float:
                xv, pv = split(v)
                wrapped.set_params(pv)
                return float((wrapped.forward(xv) * g).sum())

            pat = None
            if at:
                pat = lambda v: at(full({**params, **split(v)[1]}), split(v)[0])  # noqa: E731
            base = np.concatenate([b.ravel() for b in blocks])
            grad = np.concatenate([dx_u.ravel(), *(grads_u[k].ravel() for k in names)])
            try:
                return _probes(f, base, grad, rng, fd_probes, dtype, pat)
            finally:
                wrapped.set_params({k: params[k] for k in names})

        try:
            joint = _fd_summary(probe_joint(), dtype) if grads_u else None
            if joint is not None and joint.consistent:
                fds = {name: replace(joint, joint=True) for name in ("input", *grads_u)}
            else:  # disagreement or unreliable: probe each tensor to say which
                fds = {"input": _fd_summary(probe_x(), dtype)}
                for k in grads_u:
                    fds[k] = _fd_summary(probe_param(k), dtype)
            # a second backward at the same point must give the same gradients
            wrapped.forward(x)
            wrapped.backward(g)
            again = wrapped.param_grads()
        except Exception as e:
            result.message = user_frame(e)
            return result

    # ---- verdict
    window = int(np.prod(spec.kernel_size)) if hasattr(spec, "kernel_size") else None
    convs = [layer for _, layer in walk(root) if isinstance(layer, Conv2d)]
    hints: dict[str, Any] = {"groups": convs[0].groups if len(convs) == 1 else 1}
    if isinstance(spec, (MaxPool2d, AvgPool2d)) and x.ndim == 4:
        hints["overlap"] = window_overlap(spec.kernel_size, spec.stride, spec.padding, spec._dilation(), x.shape[2:])
    forward_ok, backward_ok = _judge(result, tensors, fds, dtype, tol_scale, batch=x.shape[0], window=window,
                                     noise=wrapped.grad_noise(), **hints)
    by_name = {name: (user, tv) for name, _, user, tv, _, _, _ in tensors}
    if not np.array_equal(y_u, y_again):
        result.diagnosis.append(f"output: the forward is not deterministic (two calls at the same input differ by "
                                f"{relative_with_floor(y_again, y_u):.1e} relative)")
    if not backward_ok:
        # stale cache: every failing gradient is what the reference gives at the earlier input
        stale = torch_ref.vjp(full(params), x_warm, g)
        stale_values = {"input": stale.input_grad, **{k: stale.param_grads[join_path(spec.name, k)] for k in grads_u}}
        failing = [tr for tr in result.tensors if tr.side == "backward" and not tr.ok]
        if all(relative_with_floor(by_name[tr.name][0], stale_values[tr.name]) <= tr.tolerance for tr in failing):
            names = ", ".join(tr.name for tr in failing)
            result.diagnosis.append(f"{names}: the backward uses a stale cache: it matches the gradient at the input "
                                    "of an earlier forward call, not the latest")
    if isinstance(spec, Conv2d) and forward_ok and not next(tr.ok for tr in result.tensors if tr.name == "input"):
        rotated = {**params, "weight": params["weight"][:, :, ::-1, ::-1]}
        tol = next(tr.tolerance for tr in result.tensors if tr.name == "input")
        if relative_with_floor(dx_u, torch_ref.vjp(full(rotated), x, g).input_grad) <= tol:
            result.diagnosis.append("input: computed with the kernel not rotated 180 degrees (the input gradient "
                                    "correlates the upstream gradient with the kernel rotated; this used it as is)")
    if not forward_ok and result.verdict in ("forward", "both"):
        result.diagnosis += _layout_hint(wrapped, x)
    for k, first in grads_u.items():
        if accumulates(first, again[k]):
            result.diagnosis.append(f"{k}: doubled on a second backward call: gradients accumulate instead of "
                                    "being overwritten (declare zero_grad= if the code expects a flush)")
            if result.verdict == "pass":
                result.verdict = "backward"
    if wrapped.input_mutated:
        result.message = "note: the forward writes into its input array"
    return result




def check_network(net: Any, spec: Layer | None = None, x: np.ndarray | None = None, y: Any = None, *,
                  loss: Any = None, input_shape: tuple[int, ...] | None = None, seed: int = 0, fd_probes: int = 2,
                  tol_scale: float = 1.0, progress: Callable[[str, int, int], None] | None = None,
                  **wrap_kwargs: Any) -> Report:
    """Check a handwritten network layer by layer, then end to end.

    ``net``: a :class:`~harness.adapters.network.WrappedNetwork`, a mapping from spec layer
    names to the user's layers (wrapped with ``spec`` and ``wrap_kwargs``), or a CS231n
    :class:`~harness.adapters.network.LossModel` (``model.loss(X, y)``: checked as one
    ``(network)`` entry under its loss). ``x``: canonical input (N, C, H, W) or (N, F), else
    generated from ``seed`` with ``input_shape``. ``loss``: the user's loss from
    :func:`~harness.wrap_loss`, checked as a ``(loss)`` entry at the reference's output
    with targets ``y`` (generated from ``seed`` when None: labels for cross-entropy).

    Every layer is checked in isolation at the reference's own input to it and the
    reference's own upstream gradient (random, never all ones), so one layer's bug cannot
    make another fail. If the network has its own ``forward`` / ``backward``, the whole
    network is then compared with the references too (a ``(network)`` entry), boundary by
    boundary where its layers can be watched: when every layer passes alone and the network
    does not, the wiring between layers is at fault, and the first boundary where the
    network's values leave the reference's says where.
    """
    from reference_models import build

    from .adapters.loss import WrappedLoss
    from .adapters.network import LossModel, WrappedNetwork, wrap_network

    if loss is not None and not isinstance(loss, WrappedLoss):
        raise TypeError(f"check_network: loss= takes the user's loss wrapped with harness.wrap_loss(fn, "
                        f"SoftmaxCrossEntropy(), ...), got {type(loss).__name__}")
    if y is not None and loss is None and not isinstance(net, LossModel):
        raise TypeError("check_network: y= (targets) needs loss= (the user's loss, from harness.wrap_loss)")
    if isinstance(net, LossModel):
        wrapped: Any = net
    else:
        wrapped = net if isinstance(net, WrappedNetwork) else wrap_network(net, spec, **wrap_kwargs)
    spec = wrapped.spec
    rng = np.random.default_rng(seed)
    if x is None:
        if input_shape is None:
            raise ValueError("check_network needs x= or input_shape=")
        x = rng.standard_normal(tuple(input_shape))
    x = np.asarray(x, dtype=np.float64)
    out_shape = spec.output_shape(x.shape)
    g = rng.standard_normal(out_shape)
    report = Report(seed=seed)
    if isinstance(net, LossModel):
        target = y if y is not None else _target(net.loss, out_shape, rng)
        if progress:
            progress("(network)", 0, 1)
        with net.preserved():
            report.layers.append(_check_loss_model(net, x, target, rng, fd_probes, tol_scale))
        return report
    total = len(wrapped.layers) + (loss is not None) + wrapped.end_to_end
    tick = progress or (lambda name, done, total: None)
    with wrapped.preserved():
        params = wrapped.get_params()
        ref = build("torch", spec).vjp(params, x, g)
        jax_ref = build("jax", spec).vjp(params, x, g)
        feeds = _sequence_inputs(spec)
        for path, layer in wrapped.layers.items():
            tick(path, len(report.layers), total)
            x_layer = off_kinks(layer.spec, ref.inputs[path], rng, layer.dtype)
            # a layer checked at the network's own point already has both references' values
            refs = None if x_layer is not ref.inputs[path] or path not in feeds else tuple(
                _layer_values(r, path, feeds[path], layer.spec.name) for r in (ref, jax_ref))
            report.layers.append(check_point(layer, x_layer, ref.output_grads[path], rng, fd_probes=fd_probes,
                                             tol_scale=tol_scale, name=path, refs=refs))
        if loss is not None:
            tick("(loss)", len(report.layers), total)
            target = y if y is not None else _target(loss.spec, out_shape, rng)
            report.layers.append(_check_loss(loss, ref.output, target, rng, fd_probes, tol_scale))
        if wrapped.end_to_end:
            tick("(network)", len(report.layers), total)
            # the network runs on g, not the loss's gradient: only a layer that really fails explains it
            first = next((layer.name for layer in report.layers[:len(wrapped.layers)]
                          if layer.verdict in ("forward", "backward", "both", "error")), None)
            report.layers.append(_end_to_end(wrapped, x, g, ref, jax_ref, tol_scale, first))
    return report


def _sequence_inputs(spec: Layer) -> dict[str, str | None]:
    """``{leaf path: the path whose output is the leaf's input and feeds nothing else, or None
    for the network's input}``: for these leaves the whole network's reference pass holds
    the isolated layer's values too (its input gradient is the upstream gradient of what
    feeds it). Left out: leaves whose input is shared (the first layer of a residual block
    and of its shortcut, which both read the block's input)."""
    out: dict[str, str | None] = {}

    def seq(nodes: Any, prefix: str, feed: str | None, shared: bool) -> str | None:
        for i, node in enumerate(nodes):
            feed = visit(node, join_path(prefix, node.name), feed, shared and i == 0)
        return feed

    def visit(node: Layer, path: str, feed: str | None, shared: bool) -> str | None:
        if isinstance(node, Residual):
            last = seq(node.block, path, feed, True)
            if node.shortcut is not None:
                visit(node.shortcut, join_path(path, node.shortcut.name), feed, True)
            # d objective / d (block + shortcut) is the gradient at the block's last output
            return seq(node.post, path, last, False) if node.post else path
        if node.children():
            seq(node.children(), path, feed, shared)
            return path
        if not shared:
            out[path] = feed
        return path

    if isinstance(spec, Sequential):
        seq(spec.children(), spec.name, None, False)
    return out


def _layer_values(result: Any, path: str, feed: str | None, name: str) -> Any:
    """One layer's reference values, read off a whole-network result, with its parameter
    gradients keyed as a reference of that layer alone names them (``name.weight``, where
    ``name`` is the layer's own spec name and ``path`` its place in the network)."""
    from types import SimpleNamespace

    return SimpleNamespace(output=result.outputs[path],
                           input_grad=result.input_grad if feed is None else result.output_grads[feed],
                           param_grads={join_path(name, k[len(path) + 1:]): v for k, v in result.param_grads.items()
                                        if k.startswith(path + ".")})


def _target(loss: Any, out_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Targets for ``loss`` from the seed: class labels for cross-entropy, else values."""
    from .spec import SoftmaxCrossEntropy

    if isinstance(loss, SoftmaxCrossEntropy):
        return rng.integers(0, out_shape[-1], size=out_shape[0])
    return rng.standard_normal(out_shape)


def _check_loss(wloss: Any, scores: np.ndarray, target: np.ndarray, rng: np.random.Generator, fd_probes: int,
                tol_scale: float) -> LayerResult:
    """The user's loss at ``scores`` (N, K): its value (forward) and d loss / d scores
    (backward) against both references, and finite differences of its own value."""
    from reference_models import build

    from .spec import Flatten

    result = LayerResult(name="(loss)", kind=wloss.spec.kind, verdict="error", dtype=str(wloss.dtype))
    identity = Sequential([Flatten(name="scores")])  # the references' loss of the scores themselves
    try:
        value, dscores = wloss.loss_and_grad(scores, target)
        value_f = lambda s: wloss.loss_and_grad(s, target)[0]  # noqa: E731
        fds = {"scores": _fd_summary(_probes(value_f, scores, dscores, rng, fd_probes, wloss.dtype, None), wloss.dtype)}
    except Exception as e:
        result.message = user_frame(e)
        return result
    t = build("torch", identity).loss_vjp({}, scores, wloss.spec, target)
    j = build("jax", identity).loss_vjp({}, scores, wloss.spec, target)
    result.refs_error = max(relative_with_floor(np.array(t.loss), np.array(j.loss)),
                            relative_with_floor(t.input_grad, j.input_grad))
    n = scores.shape[0]
    tensors: list[Compared] = [
        ("value", "forward", np.array(value), np.array(t.loss), np.array(j.loss), scores.size, 0.0),
        ("scores", "backward", dscores, t.input_grad, j.input_grad, scores.size // n, 0.0),
    ]
    _judge(result, tensors, fds, wloss.dtype, tol_scale, batch=n, window=None)
    return result


def _check_loss_model(model: Any, x: np.ndarray, target: np.ndarray, rng: np.random.Generator, fd_probes: int,
                      tol_scale: float) -> LayerResult:
    """A CS231n ``model.loss(X, y)`` as one ``(network)`` entry: the scores and the loss
    (forward), every parameter's gradient (backward) against both references, and finite
    differences of the model's own loss along random parameter directions."""
    from reference_models import build

    result = LayerResult(name="(network)", kind="loss model", verdict="error", dtype=str(model.dtype))
    spec = model.spec
    try:
        params = model.get_params()
        scores = model.scores(x)
        value, grads = model.loss_and_grads(x, target)
    except Exception as e:
        result.message = user_frame(e)
        return result
    torch_ref, jax_ref = build("torch", spec), build("jax", spec)
    t, j = torch_ref.loss_vjp(params, x, model.loss, target), jax_ref.loss_vjp(params, x, model.loss, target)
    at = pattern(torch_ref, spec)

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
        result.message = user_frame(e)
        return result
    result.refs_error = max([relative_with_floor(t.output, j.output), relative_with_floor(np.array(t.loss), np.array(j.loss))]
                            + [relative_with_floor(t.param_grads[k], j.param_grads[k]) for k in grads])
    n = x.shape[0]
    scale = FLOOR * max(float(np.linalg.norm(t.param_grads[k])) for k in grads) if grads else 0.0
    tensors: list[Compared] = [
        ("output", "forward", scores, t.output, j.output, x.size // n, 0.0),
        ("loss", "forward", np.array(value), np.array(t.loss), np.array(j.loss), x.size, 0.0),
    ]
    tensors += [(k, "backward", v, t.param_grads[k], j.param_grads[k], x.size, scale) for k, v in grads.items()]
    _judge(result, tensors, fds, model.dtype, tol_scale, batch=n, window=None)
    return result


def _end_to_end(net: Any, x: np.ndarray, g: np.ndarray, ref: Any, jax_ref: Any, tol_scale: float,
                first_failure: str | None) -> LayerResult:
    """The user's own network forward/backward against both references, as one entry, with
    the activation and gradient at every watched layer boundary."""
    result = LayerResult(name="(network)", kind="network", verdict="error", dtype=str(net.dtype))
    try:
        for w in net.layers.values():  # code that accumulates until flushed: flush, as the isolated checks do
            if getattr(w, "zero_grad", None):
                getattr(w.obj, w.zero_grad)()
        with net.recording() as calls:
            y = net.forward(x, mode="network")
            dx = net.backward(g)
        grads = net.param_grads()
    except Exception as e:
        result.message = user_frame(e)
        return result
    n = x.shape[0]
    pairs = [("output", "forward", y, ref.output, jax_ref.output), ("input", "backward", dx, ref.input_grad,
                                                                     jax_ref.input_grad)]
    pairs += [(k, "backward", v, ref.param_grads[k], jax_ref.param_grads[k]) for k, v in grads.items()]
    scale = FLOOR * max(float(np.linalg.norm(p[3])) for p in pairs[1:])
    for name, side, user, r, rj in pairs:
        tol = tolerance(net.dtype, max(x.size // n, int(np.prod(r.shape)) // max(r.shape[0], 1)), tol_scale)
        floor = scale if side == "backward" else 0.0
        err, err_j = relative_with_floor(user, r, floor), relative_with_floor(user, rj, floor)
        worst = rel_error(user, r)
        result.tensors.append(TensorResult(name=name, side=side, shape=tuple(r.shape), tolerance=tol, error_torch=err,
                                           error_jax=err_j, worst_index=worst.index, worst_user=worst.actual,
                                           worst_ref=worst.expected, ok=max(err, err_j) <= tol))
    result.refs_error = max(relative_with_floor(p[3], p[4], scale if p[1] == "backward" else 0.0) for p in pairs)
    forward_ok = all(t.ok for t in result.tensors if t.side == "forward")
    backward_ok = all(t.ok for t in result.tensors if t.side == "backward")
    result.verdict = "pass" if forward_ok and backward_ok else ("both" if not (forward_ok or backward_ok)
                                                                 else "forward" if not forward_ok else "backward")
    if result.refs_error > REFS_TOL:
        result.verdict = "reference"
    tol = max(t.tolerance for t in result.tensors)
    result.boundaries, where = _boundaries(calls, ref, tol)
    if not result.ok and first_failure is None:
        result.message = ("every layer passes alone but the network's own forward/backward does not: the wiring "
                          "between layers is at fault (a skipped, repeated or reordered call)")
        result.diagnosis += where
    elif not result.ok:
        result.downstream_of = first_failure  # explained by the failing layer: fix that first
    return result


def _boundaries(calls: dict[str, Any], ref: Any, tol: float) -> tuple[list[Boundary], list[str]]:
    """Per watched layer: how often the user's network called it and how far the input,
    output and upstream gradient it saw (its last call) are from the reference's; and the
    findings a person needs: layers not called or called twice, and the first boundary
    where the forward, and the backward, leave the reference."""
    def err(values: list, expected: np.ndarray) -> float | None:
        if not values or values[-1] is None:
            return None
        return relative_with_floor(values[-1], expected) if values[-1].shape == expected.shape else float("inf")

    rows = [Boundary(name=p, forward_calls=len(c.inputs), backward_calls=len(c.grads),
                     input_error=err(c.inputs, ref.inputs[p]), output_error=err(c.outputs, ref.outputs[p]),
                     grad_error=err(c.grads, ref.output_grads[p])) for p, c in calls.items()]
    found = []
    for b in rows if any(b.forward_calls for b in rows) else []:  # nothing seen at all: the watch failed, not the net
        for what, count in (("forward", b.forward_calls), ("backward", b.backward_calls)):
            if count != 1:
                found.append(f"'{b.name}' is {'never called' if count == 0 else f'called {count} times'} by the "
                             f"network's {what}")
    bad = lambda e: e is not None and e > tol  # noqa: E731
    prev = None
    for b in rows:
        if bad(b.input_error):
            after = f" although '{prev.name}' produced the right output" if prev and not bad(prev.output_error) else ""
            found.append(f"forward: '{b.name}' receives a wrong input ({b.input_error:.1e} relative){after}")
            break
        prev = b if b.forward_calls else prev
    nxt = None
    for b in reversed(rows):
        if bad(b.grad_error):
            after = f" although '{nxt.name}' received the right one" if nxt and not bad(nxt.grad_error) else ""
            found.append(f"backward: '{b.name}' receives a wrong upstream gradient ({b.grad_error:.1e} relative){after}")
            break
        nxt = b if b.backward_calls else nxt
    return rows, found


__all__ = ["check_layer", "check_network", "check_point"]
