"""Finite differences in the check of one layer: the user's backward against central
differences of the user's own forward ``<f_user(x; θ), g>`` (the third witness; the probes
themselves are :mod:`harness.fd`). Along one direction over the input and every parameter
at once, then per tensor when that does not settle it; the references' gradients ride
along when they are the forward's true ones, so a coarse tolerance cannot let a probe that
sides with them count as agreement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from . import fd
from .adapters.wrapped import WrappedLayer
from .compare import REFS_TOL, relative_with_floor, tensor_tolerance
from .judge import Compared
from .results import FDSummary, LayerResult


def _true_grads(
    result: LayerResult, tensors: list[Compared], dtype: np.dtype, tol_scale: float, noise: dict[str, float]
) -> dict[str, np.ndarray] | None:
    """For finite differences to side with: by tensor name (``input``, local parameter
    names), the references' gradient where they reject the user's, the user's own where they
    accept it. Only when the references' gradients are the true gradients of the user's
    forward too (the forward matches both, and they agree with each other), and some gradient
    is rejected; else None. ``noise``: what reading a gradient adds (``grad_noise``)."""
    if result.refs_error > REFS_TOL:
        return None
    out, rejected = {}, False
    for name, side, user, tv, jv, reduction, floor in tensors:
        tol = tensor_tolerance(dtype, reduction, tol_scale, noise.get(name, 0.0), tv, floor)
        wrong = max(relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)) > tol
        if side == "forward" and wrong:
            return None
        if side == "backward":
            out[name], rejected = np.asarray(tv if wrong else user, np.float64), rejected or wrong
    return out if rejected else None


def _fd_all(
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    dx_u: np.ndarray | None,
    grads_u: dict[str, np.ndarray],
    params: dict[str, np.ndarray],
    rng: np.random.Generator,
    count: int,
    at: Any,
    full: Any,
    true: dict[str, np.ndarray] | None = None,
) -> dict[str, FDSummary]:
    """Finite differences of the user's own forward (its backward's consistency): first along
    directions over the input and every parameter at once; when that disagrees or is
    unreliable, per tensor to say which. ``dx_u`` None (input_grad=False): the parameters
    only. ``true``: the references' gradients when they are the forward's true ones (see
    :func:`_true_grads`): a probe that sides with them is no agreement, however coarse the
    tolerance. The parameters are put back afterwards."""
    names = list(grads_u)
    try:
        if names:  # one direction over everything: an inconsistent backward would need a measure-zero direction to hide
            together = _fd_joint(wrapped, x, g, dx_u, grads_u, params, rng, count, at, full, true)
            if together.consistent:
                tensors = (*(["input"] if dx_u is not None else []), *names)
                return {name: replace(together, joint=True) for name in tensors}
            wrapped.set_params({k: params[k] for k in names})
        return _fd_each(wrapped, x, g, dx_u, grads_u, params, rng, count, at, full, true)
    finally:
        wrapped.set_params({k: params[k] for k in names})


def _fd_joint(
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    dx_u: np.ndarray | None,
    grads_u: dict[str, np.ndarray],
    params: dict[str, np.ndarray],
    rng: np.random.Generator,
    count: int,
    at: Any,
    full: Any,
    true: dict[str, np.ndarray] | None,
) -> FDSummary:
    """``count`` probes along directions over the input (unless ``dx_u`` is None) and every
    parameter at once: the tensors raveled and concatenated in that order, the user's
    gradients (and ``true``'s) likewise. Leaves the parameters at the last probe's values."""
    dtype, names = wrapped.dtype, list(grads_u)
    with_x = dx_u is not None
    sizes = ([x.size] if with_x else []) + [params[k].size for k in names]
    cuts = np.cumsum(sizes)[:-1]

    def split(v: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        parts = np.split(v, cuts)
        xv = parts.pop(0).reshape(x.shape) if with_x else x
        return xv, {k: p.reshape(params[k].shape) for k, p in zip(names, parts)}

    def joint(v: np.ndarray) -> float:
        xv, pv = split(v)
        wrapped.set_params(pv)
        return float((wrapped.forward(xv) * g).sum())

    pat = (lambda v: at(full({**params, **split(v)[1]}), split(v)[0])) if at else None
    base = np.concatenate([*([x.ravel()] if with_x else []), *(params[k].ravel() for k in names)])
    grad = np.concatenate([*([dx_u.ravel()] if dx_u is not None else []), *(grads_u[k].ravel() for k in names)])
    ref = (
        np.concatenate([*([true["input"].ravel()] if with_x else []), *(true[k].ravel() for k in names)])
        if true is not None
        else None
    )
    return fd.summary(fd.probes(joint, base, grad, rng, count, dtype, pat, ref), dtype)


def _fd_each(
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    dx_u: np.ndarray | None,
    grads_u: dict[str, np.ndarray],
    params: dict[str, np.ndarray],
    rng: np.random.Generator,
    count: int,
    at: Any,
    full: Any,
    true: dict[str, np.ndarray] | None,
) -> dict[str, FDSummary]:
    """``count`` probes per tensor, in order: the input (unless ``dx_u`` is None), then each
    parameter, put back after its own probes."""
    dtype = wrapped.dtype
    fds = {}
    if dx_u is not None:
        x_pat = (lambda z: at(full(params), z)) if at else None
        fds["input"] = fd.summary(
            fd.probes(
                lambda z: float((wrapped.forward(z) * g).sum()),
                x,
                dx_u,
                rng,
                count,
                dtype,
                x_pat,
                true["input"] if true else None,
            ),
            dtype,
        )
    for k in grads_u:
        pat = (lambda v, k=k: at(full({**params, k: v}), x)) if at else None
        fds[k] = fd.summary(
            fd.probes(
                _along(wrapped, x, g, k), params[k], grads_u[k], rng, count, dtype, pat, true[k] if true else None
            ),
            dtype,
        )
        wrapped.set_params({k: params[k]})
    return fds


def _along(wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, k: str) -> Any:
    """``<f_user(x; θ), g>`` as a function of parameter ``k`` alone (the others as they are)."""

    def f(v: np.ndarray) -> float:
        wrapped.set_params({k: v})
        return float((wrapped.forward(x) * g).sum())

    return f
