"""CS231n's gradient check: ``eval_numerical_gradient_array`` (coordinate-wise central
differences, h = 1e-5) over the input and every parameter, compared with the user's
backward by ``rel_error`` against 1e-7; a partial run is extrapolated linearly."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .problem import Problem, sample_slots
from .result import PeerResult, _first_line

CS231N_H = 1e-5
CS231N_THRESHOLD = 1e-7


def eval_numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, df: np.ndarray,
                                  h: float = CS231N_H, indices: np.ndarray | None = None) -> np.ndarray:
    """CS231n's numeric gradient of ``<f(x), df>`` with respect to ``x`` (central
    differences), every element, or only the flat positions ``indices`` (the rest 0)."""
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view: x is modified in place and restored, as CS231n does
    for ix in (range(x.size) if indices is None else indices):
        oldval = flat[ix]
        flat[ix] = oldval + h
        pos = f(x).copy()
        flat[ix] = oldval - h
        neg = f(x).copy()
        flat[ix] = oldval
        grad.reshape(-1)[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    """CS231n's relative error: the largest elementwise |x - y| / max(1e-8, |x| + |y|)."""
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def rel_error_normwise(x: np.ndarray, y: np.ndarray) -> float:
    """max|x - y| / max(|x| + |y|): the same with the maxima taken separately."""
    return float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x) + np.abs(y))), 1e-300))


def cs231n(problem: Problem, *, max_coords: int | None = None, seed: int = 0) -> PeerResult:
    """The CS231n gradient check: a random upstream gradient ``df``, the user's backward of it,
    and ``eval_numerical_gradient_array`` over the input and every parameter; a tensor whose
    ``rel_error`` exceeds 1e-7 fails. With ``max_coords``, a random subset of coordinates is
    differenced and the time extrapolated linearly in the number of coordinates."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    # the upstream gradient from its own stream: never equal to an input drawn from ``seed``
    df = np.random.default_rng([seed, 2]).standard_normal(problem.y_shape) if problem.y_shape else np.array(1.0)
    slots, covered = sample_slots(problem, max_coords, rng)
    errors: dict[str, tuple[float, float]] = {}
    try:
        problem.evaluate(dict(problem.base))
        analytic = problem.vjp(df)
        t_analytic = time.perf_counter() - t0
        for s in slots:
            def f(v: np.ndarray, name: str = s.name) -> np.ndarray:
                return problem.evaluate({**problem.base, name: v})

            # the user's own array perturbed in place, as CS231n does, when it can be reached
            target = problem.live[s.name] if problem.live and s.name in problem.live else problem.base[s.name].copy()
            num = eval_numerical_gradient_array(f, target, df, indices=s.index)
            a = analytic[s.name].reshape(-1)
            n = num.reshape(-1)
            if s.index is not None:
                a, n = a[s.index], n[s.index]
            errors[s.name] = (rel_error(n, a), rel_error_normwise(n, a))
        caught = any(e > CS231N_THRESHOLD for e, _ in errors.values())
        worst = max(errors, key=lambda k: errors[k][0])
        detail = f"worst rel_error {errors[worst][0]:.1e} ({worst}); normwise {max(e for _, e in errors.values()):.1e}"
    except Exception as e:  # the user's code raised
        caught, detail, t_analytic = True, _first_line(e), 0.0
    seconds = time.perf_counter() - t0
    result = PeerResult("cs231n", caught, detail, seconds, coords=covered, coords_total=problem.n_coords)
    result.normwise_caught = any(e > CS231N_THRESHOLD for _, e in errors.values()) if errors else caught
    result.errors = {k: e for k, (e, _) in errors.items()}
    if covered < problem.n_coords:
        result.extrapolated = t_analytic + (seconds - t_analytic) * problem.n_coords / covered
    return result
