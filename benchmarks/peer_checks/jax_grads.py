"""``jax.test_util.check_grads`` (rev mode, order 1) on the user's code: the user's forward
and backward behind a ``jax.custom_vjp`` that calls numpy through ``jax.pure_callback``,
float64 crossing the callback as uint32 bit pairs."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np

from .problem import Problem
from .result import PeerResult, _first_line


def _np_from_bits(u: np.ndarray) -> np.ndarray:
    """(..., 2) uint32 -> (...) float64, bit for bit."""
    u = np.array(u, dtype=np.uint32, order="C")
    return u.reshape(-1).view(np.float64).reshape(u.shape[:-1])


def _np_to_bits(a: np.ndarray) -> np.ndarray:
    """(...) float64 -> (..., 2) uint32, bit for bit (0-d arrays included)."""
    a = np.array(a, dtype=np.float64, order="C")
    return a.reshape(-1).view(np.uint32).reshape(a.shape + (2,))


def jax_function(problem: Problem) -> Callable:
    """``f(arrays) -> output``: the user's code as a ``jax.custom_vjp`` calling numpy through
    ``jax.pure_callback``; ``arrays`` is a tuple in ``problem.names`` order. Build and call
    inside ``jax.enable_x64(True)``.

    JAX casts a callback's operands and results under the x64 setting of the thread that
    runs it; with asynchronous CPU dispatch that is a JAX worker thread, outside the
    caller's ``enable_x64`` context, and float64 silently becomes float32 there. So float64
    crosses the callback as uint32 bit pairs (``lax.bitcast_convert_type``), exact both
    ways, whichever thread runs it."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    names = problem.names
    bits = lambda a: lax.bitcast_convert_type(a, jnp.uint32)  # noqa: E731  (...) f64 -> (..., 2) u32
    unbits = lambda u: lax.bitcast_convert_type(u, jnp.float64)  # noqa: E731
    out_struct = jax.ShapeDtypeStruct((*problem.y_shape, 2), jnp.uint32)
    grad_structs = tuple(jax.ShapeDtypeStruct((*problem.base[k].shape, 2), jnp.uint32) for k in names)
    lock = threading.Lock()  # JAX may run callbacks on worker threads, concurrently: one at a time

    def forward_np(*arrays: np.ndarray) -> np.ndarray:
        with lock:
            return _np_to_bits(problem.evaluate(dict(zip(names, map(_np_from_bits, arrays)))))

    def backward_np(*arrays_and_g: np.ndarray) -> tuple[np.ndarray, ...]:
        *arrays, g = map(_np_from_bits, arrays_and_g)
        with lock:
            problem.evaluate(dict(zip(names, arrays)))  # JAX may have evaluated elsewhere since
            grads = problem.vjp(g)
        return tuple(_np_to_bits(grads[k]) for k in names)

    @jax.custom_vjp
    def f(arrays: tuple) -> Any:
        return unbits(jax.pure_callback(forward_np, out_struct, *map(bits, arrays)))

    def f_fwd(arrays: tuple) -> tuple[Any, tuple]:
        return f(arrays), arrays

    def f_bwd(arrays: tuple, g: Any) -> tuple[tuple]:
        grads = jax.pure_callback(backward_np, grad_structs, *map(bits, arrays), bits(g))
        return (tuple(map(unbits, grads)),)

    f.defvjp(f_fwd, f_bwd)
    return f


def jax_check_grads(problem: Problem) -> PeerResult:
    """``jax.test_util.check_grads(f, args, order=1, modes=["rev"])`` on the user's code:
    one random direction, finite differences with eps 1e-4, tolerance 1e-5 in float64."""
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    t0 = time.perf_counter()
    with jax.enable_x64(True):
        f = jax_function(problem)
        args = (tuple(jnp.asarray(problem.base[k]) for k in problem.names),)
        try:
            check_grads(f, args, order=1, modes=["rev"])
            caught, detail = False, "passed"
        except Exception as e:  # AssertionError, or the user's code raised
            caught, detail = True, _first_line(e)
    return PeerResult("jax_check_grads", caught, detail, time.perf_counter() - t0)
