"""Finite differences in the check of one layer: the user's backward against central
differences of the user's own forward ``<f_user(x; θ), g>`` (the third witness; the probes
themselves are :mod:`harness.fd`). Along one direction over the input and every parameter
at once, then per tensor when that does not settle it; the references' gradients ride
along when they are the forward's true ones, so a coarse tolerance cannot let a probe that
sides with them count as agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import fd
from .adapters.wrapped import WrappedLayer
from .compare import REFS_TOL, relative_with_floor
from .judge import Compared, row_tolerance
from .precision import Measured, of
from .results import FDSummary, LayerResult


def _true_grads(
    result: LayerResult,
    tensors: list[Compared],
    dtype: np.dtype,
    tol_scale: float,
    noise: dict[str, float],
    measured: Measured | None = None,
) -> dict[str, np.ndarray] | None:
    """For finite differences to side with: by tensor name (``input``, local parameter
    names), the references' gradient where they reject the user's, the user's own where they
    accept it. Only when the references' gradients are the true gradients of the user's
    forward too (the forward matches both, and they agree with each other), and some gradient
    is rejected; else None. ``noise``: what reading a gradient adds (``grad_noise``);
    ``measured``: torch's own error below float64 (the judge's tolerances: :func:`row_tolerance`)."""
    if result.refs_error > REFS_TOL:
        return None
    out, rejected = {}, False
    for row in tensors:
        name, side, user, tv, jv, _, floor = row
        tol = row_tolerance(row, dtype, tol_scale, noise, measured)
        wrong = max(relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)) > tol
        if side == "forward" and wrong:
            return None
        if side == "backward":
            out[name], rejected = np.asarray(tv if wrong else user, np.float64), rejected or wrong
    return out if rejected else None


@dataclass(frozen=True)
class _Probing:
    """What the probes of one check share: the wrapped layer at the point ``x`` (canonical
    layout) with upstream gradient ``g``, the user's gradients there (``dx_u`` None:
    input_grad=False), the parameters to put back, the random directions' source and count,
    the activation-pattern reader ``at``/``full`` (None: no kinks), and ``true`` (see
    :func:`_true_grads`)."""

    wrapped: WrappedLayer
    x: np.ndarray
    g: np.ndarray
    dx_u: np.ndarray | None
    grads_u: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    rng: np.random.Generator
    count: int
    at: Any
    full: Any
    true: dict[str, np.ndarray] | None
    held: dict[str, np.ndarray]

    def moved(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameter values of a probe point with the ``held`` entries (bool masks by name: an
        Embedding's padding row, whose gradient the spec defines as zero although the forward
        reads it) put back at the point's own: the probes then differentiate the spec's
        function, while the user's gradient is still dotted with the whole direction, so a
        gradient the code gives those entries shows as an inconsistency."""
        return {k: np.where(self.held[k], self.params[k], v) if k in self.held else v for k, v in values.items()}


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
    held: dict[str, np.ndarray] | None = None,
) -> dict[str, FDSummary]:
    """Finite differences of the user's own forward (its backward's consistency): first along
    directions over the input and every parameter at once; when that disagrees or is
    unreliable, or the references reject a gradient (``true``), per tensor to say which. ``dx_u`` None (input_grad=False): the parameters
    only. ``true``: the references' gradients when they are the forward's true ones (see
    :func:`_true_grads`): a probe that sides with them is no agreement, however coarse the
    tolerance. ``held``: entries the probes do not move (see :meth:`_Probing.moved`). The
    parameters are put back afterwards."""
    names = list(grads_u)
    probing = _Probing(wrapped, x, g, dx_u, grads_u, params, rng, count, at, full, true, held or {})
    try:
        # one direction over everything: an inconsistent backward would need a measure-zero
        # direction to hide. Not when the references reject a gradient (``true``): then the
        # question is that tensor's, and a joint direction dilutes it below the probes' noise
        # (1% off in one row of a float32 dh0 read as consistent)
        if names and true is None:
            together = _fd_joint(probing)
            if together.consistent:
                tensors = (*(["input"] if dx_u is not None else []), *names)
                return {name: replace(together, joint=True) for name in tensors}
            wrapped.set_params({k: params[k] for k in names})
        return _fd_each(probing)
    finally:
        wrapped.set_params({k: params[k] for k in names})


def _fd_joint(p: _Probing) -> FDSummary:
    """``count`` probes along directions over the input (unless ``dx_u`` is None) and every
    parameter at once: the tensors raveled and concatenated in that order, the user's
    gradients (and ``true``'s) likewise. Leaves the parameters at the last probe's values."""
    names, with_x = list(p.grads_u), p.dx_u is not None
    sizes = ([p.x.size] if with_x else []) + [p.params[k].size for k in names]
    cuts = np.cumsum(sizes)[:-1]

    def split(v: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        parts = np.split(v, cuts)
        xv = parts.pop(0).reshape(p.x.shape) if with_x else p.x
        return xv, {k: part.reshape(p.params[k].shape) for k, part in zip(names, parts)}

    def joint(v: np.ndarray) -> float:
        xv, pv = split(v)
        p.wrapped.set_params(p.moved(pv))
        return float((p.wrapped.forward(xv) * p.g).sum())

    def concat(first: np.ndarray | None, by_name: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate(
            [*([first.ravel()] if with_x and first is not None else []), *(by_name[k].ravel() for k in names)]
        )

    at, full = p.at, p.full
    pat = (lambda v: at(full({**p.params, **split(v)[1]}), split(v)[0])) if at else None
    ref = concat(p.true["input"] if with_x else None, p.true) if p.true is not None else None
    dtype = of(p.wrapped)  # the precision by name (bfloat16 is recorded as float32): its FD steps and tolerance
    return fd.summary(
        fd.probes(joint, concat(p.x, p.params), concat(p.dx_u, p.grads_u), p.rng, p.count, dtype, pat, ref), dtype
    )


def _fd_each(p: _Probing) -> dict[str, FDSummary]:
    """``count`` probes per tensor, in order: the input (unless ``dx_u`` is None), then each
    parameter, put back after its own probes."""
    wrapped, x, g, true, at, full = p.wrapped, p.x, p.g, p.true, p.at, p.full
    dtype = of(wrapped)
    fds = {}
    if p.dx_u is not None:
        x_pat = (lambda z: at(full(p.params), z)) if at else None
        f_x = lambda z: float((wrapped.forward(z) * g).sum())  # noqa: E731 - one expression, named for the call below
        x_true = true["input"] if true else None
        fds["input"] = fd.summary(fd.probes(f_x, x, p.dx_u, p.rng, p.count, dtype, x_pat, x_true), dtype)
    for k in p.grads_u:
        pat = (lambda v, k=k: at(full({**p.params, k: v}), x)) if at else None
        k_true = true[k] if true else None
        f_k = _along(wrapped, x, g, k, p.moved)
        fds[k] = fd.summary(fd.probes(f_k, p.params[k], p.grads_u[k], p.rng, p.count, dtype, pat, k_true), dtype)
        wrapped.set_params({k: p.params[k]})
    return fds


def _along(wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, k: str, moved: Any) -> Any:
    """``<f_user(x; θ), g>`` as a function of parameter ``k`` alone (the others as they are;
    ``moved`` puts held entries back, see :meth:`_Probing.moved`)."""

    def f(v: np.ndarray) -> float:
        wrapped.set_params(moved({k: v}))
        return float((wrapped.forward(x) * g).sum())

    return f
