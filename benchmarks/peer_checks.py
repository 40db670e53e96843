"""The gradient checkers compared in ``peers.py``, each run on the same handwritten numpy code.

Every peer calls the user's code through trigrad's adapter (a ``WrappedLayer`` or
``WrappedNetwork``: canonical float64 in and out, whatever the user's layout or calling
style), so all of them check exactly the same code at the same point; new parameter
values are copied straight into the user's own arrays where they are canonical float64
(see :class:`Problem`), as a hand-written adapter would:

``gradcheck`` / ``gradcheck_fast``
    ``torch.autograd.gradcheck`` (default eps 1e-6, atol 1e-5, rtol 1e-3) on a
    ``torch.autograd.Function`` whose forward calls the user's forward and whose backward
    calls the user's backward; the input and every trainable parameter are float64 inputs
    of the Function, written into the user's object before each forward. The user's layer
    caches only its latest forward, so the Function's backward re-runs the user's forward at
    its own inputs first when another forward came in between (gradcheck's perturbations).
``jax_check_grads``
    ``jax.test_util.check_grads(f, (arrays,), order=1, modes=["rev"])`` with ``f`` a
    ``jax.custom_vjp`` whose forward and backward call the user's code through
    ``jax.pure_callback``, float64 inside ``with jax.enable_x64(True)``. JAX calls the
    backward after other evaluations, so the backward re-runs the user's forward at the
    residual point first; JAX may run callbacks concurrently on its worker threads, so
    each callback holds a lock (the user's layer is stateful), and float64 crosses the
    callback as uint32 bit pairs (see :func:`jax_function`).
``cs231n``
    CS231n's ``eval_numerical_gradient_array`` (central differences, h = 1e-5) over every
    coordinate of the input and every parameter against the user's backward with a random
    upstream gradient ``df``; CS231n's ``rel_error`` (elementwise, floored at 1e-8) above
    1e-7 for any tensor is a failure.
``trigrad``
    ``harness.check_layer`` / ``harness.check_network`` with the default ``fd_probes``.

Each returns a :class:`PeerResult`: the verdict (caught a problem or not), wall time and the
number of calls into the user's forward and backward (see :func:`count_calls`). The two
exhaustive peers (slow gradcheck, CS231n) can be run on a random subset of coordinates
(``max_coords``; slow gradcheck also ``max_outputs``) and their full cost extrapolated
linearly (:attr:`PeerResult.extrapolated`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

PEERS = ("gradcheck", "gradcheck_fast", "jax_check_grads", "cs231n", "trigrad")
FAILING = ("forward", "backward", "both", "error")  # trigrad verdicts that report a problem


# ---------------------------------------------------------------------------- counting calls


@dataclass
class CallCounts:
    """Calls into the user's code: ``forward`` / ``backward`` of its layers (every layer
    object or function pair, summed), ``net_forward`` / ``net_backward`` of the network's
    own passes (which call the layers in turn)."""

    forward: int = 0
    backward: int = 0
    net_forward: int = 0
    net_backward: int = 0

    def reset(self) -> None:
        self.forward = self.backward = self.net_forward = self.net_backward = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


def _counted(fn: Callable, counts: CallCounts, what: str) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        setattr(counts, what, getattr(counts, what) + 1)
        return fn(*args, **kwargs)
    return call


def _count_object(obj: Any, forward: str, backward: str, counts: CallCounts) -> None:
    """Count ``obj``'s forward/backward through a subclass made for it (as trigrad's own
    watcher does), so the methods stay class attributes and the watcher still works."""
    cls = type(obj)
    fwd, bwd = getattr(cls, forward), getattr(cls, backward)
    obj.__class__ = type(cls.__name__, (cls,), {forward: _counted(fwd, counts, "forward"),
                                                 backward: _counted(bwd, counts, "backward")})


def count_calls(subject: Any) -> CallCounts:
    """Install counters on every user layer of ``subject`` (a wrapped layer or network) and
    on the network's own forward/backward; returns the live :class:`CallCounts`."""
    from harness.adapters.layer import FunctionLayer, ObjectLayer
    from harness.adapters.network import WrappedNetwork

    counts = CallCounts()
    layers = list(subject.layers.values()) if isinstance(subject, WrappedNetwork) else [subject]
    for w in layers:
        if isinstance(w, ObjectLayer):
            _count_object(w.obj, w._forward_name, w._backward_name, counts)
        elif isinstance(w, FunctionLayer):
            w._f, w._b = _counted(w._f, counts, "forward"), _counted(w._b, counts, "backward")
    if isinstance(subject, WrappedNetwork) and subject.end_to_end:
        subject._net_forward = _counted(subject._net_forward, counts, "net_forward")
        subject._net_backward = _counted(subject._net_backward, counts, "net_backward")
    return counts


# ---------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class Slot:
    """One input of a peer's function: the array ``name`` ("x" or a parameter's canonical
    name), whole (``index`` None) or only the flat positions ``index``."""

    name: str
    index: np.ndarray | None = None


class Problem:
    """The user's code at one point, as the peers see it.

    ``subject``: a ``WrappedLayer`` or ``WrappedNetwork``; ``x``: canonical input (N, ...).
    ``loss`` / ``target``: the user's wrapped loss and its targets, for a network checked
    under its loss (the output is then the scalar loss). ``base``: ``{"x": x, parameter:
    value}`` for every trainable parameter, canonical float64; :meth:`evaluate` runs the
    user's forward at any point, :meth:`vjp` its backward at the point of the last
    evaluation. ``token`` counts evaluations (a cache made by an earlier one is stale).

    Values reach the user's object the cheapest exact way: copied straight into its own
    arrays (``live``) when they are canonical float64 (what a hand-written adapter does:
    one ``np.copyto`` per changed array), else through the adapter's ``set_params``
    (layout conversion, SGD-step recovery ...). Only arrays that differ from what the
    object holds are written.
    """

    def __init__(self, subject: Any, x: np.ndarray, *, loss: Any = None, target: Any = None) -> None:
        self.subject, self.loss, self.target = subject, loss, target
        self.x = np.asarray(x, dtype=np.float64)
        params = subject.get_params()
        self.names = ["x", *[k for k in _trainable(subject, self.x.shape) if k in params]]
        self.base = {"x": self.x, **{k: np.array(params[k]) for k in self.names[1:]}}
        self.y_shape: tuple[int, ...] = () if loss is not None else tuple(_spec_of(subject).output_shape(self.x.shape))
        self.live = _live_arrays(subject, self.names[1:], self.base)
        self.token = 0
        self._dscores: np.ndarray | None = None
        self._off_base: set[str] = set()  # parameters whose value in the user's object may not be base

    @property
    def n_coords(self) -> int:
        """Coordinates of the input and every trainable parameter."""
        return sum(v.size for v in self.base.values())

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.y_shape))

    def assemble(self, slots: list[Slot], values: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The base point with ``values`` written into the slots."""
        arrays = dict(self.base)
        for s, v in zip(slots, values):
            if s.index is None:
                arrays[s.name] = np.asarray(v).reshape(self.base[s.name].shape)
            else:
                a = self.base[s.name].copy()
                a.flat[s.index] = v
                arrays[s.name] = a
        return arrays

    def evaluate(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Write the parameters into the user's object, run its forward at ``arrays["x"]``:
        the output (``y_shape``), or the scalar loss of it. ``arrays``: every name of
        ``names``; pass ``base[k]`` itself for a parameter at its base value, or
        ``live[k]`` for one perturbed in place (CS231n's way)."""
        write = {k: v for k, v in arrays.items() if k != "x" and (v is not self.base[k] or k in self._off_base)}
        if self.live is None:
            self.subject.set_params(write)
        else:
            for k, v in write.items():
                if v is not self.live[k]:
                    np.copyto(self.live[k], np.asarray(v).reshape(self.live[k].shape))
        self._off_base = {k for k, v in write.items() if v is not self.base[k]}
        return self._forward(arrays["x"])

    def evaluate_slots(self, slots: list[Slot], values: list[np.ndarray]) -> np.ndarray:
        """:meth:`evaluate` at the base point with ``values`` in the slots (the torch
        adapter's path: every slot is written on every call)."""
        if self.live is None or any(k in self._off_base for k in self.live if k not in {s.name for s in slots}):
            return self.evaluate(self.assemble(slots, values))
        x = self.x
        for s, v in zip(slots, values):
            v = np.asarray(v)
            if s.name == "x":
                x = self.assemble([s], [v])["x"]
            elif s.index is None:
                np.copyto(self.live[s.name], v.reshape(self.live[s.name].shape))
                self._off_base.add(s.name)
            else:  # the whole array is written, as a full run writes it on every call
                np.copyto(self.live[s.name], self.base[s.name])
                self.live[s.name].flat[s.index] = v
                self._off_base.add(s.name)
        return self._forward(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self.token += 1
        y = self.subject.forward(x)
        if self.loss is None:
            return y
        value, self._dscores = self.loss.loss_and_grad(y, self.target)
        return np.array(value, dtype=np.float64)

    def vjp(self, g: np.ndarray) -> dict[str, np.ndarray]:
        """The user's backward of <output, g> at the last evaluated point: ``{name: gradient}``
        for "x" and every trainable parameter, canonical."""
        dy = self._dscores * float(g) if self.loss is not None else g
        dx = self.subject.backward(dy)
        grads = self.subject.param_grads()
        return {"x": dx, **{k: grads[k] for k in self.names[1:]}}


def _live_arrays(subject: Any, names: list[str], base: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The user's own parameter arrays by canonical name, when writing canonical values into
    them is exact: object-style layers in the canonical layout, float64 arrays of the
    canonical shape holding the base values, gradients read as they are (no SGD-step
    recovery, no rescaling, batched); else None."""
    from harness.adapters.layer import ObjectLayer
    from harness.adapters.layouts import CANONICAL
    from harness.adapters.network import WrappedNetwork

    network = isinstance(subject, WrappedNetwork)
    layers = subject.layers if network else {"": subject}
    live = {}
    for name in names:
        path, _, local = name.rpartition(".") if network else ("", "", name)
        w = layers.get(path)
        if (not isinstance(w, ObjectLayer) or w.params is None or w.layout != CANONICAL or w.sgd
                or w.grad_scale is not None or not w.batched):
            return None
        a = w.params[local].get(w.obj)
        if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == base[name].shape
                and a.flags.writeable and np.array_equal(a, base[name])):
            return None
        live[name] = a
    return live


def _spec_of(subject: Any) -> Any:
    from harness.spec import Sequential

    from harness.adapters.network import WrappedNetwork

    return subject.spec if isinstance(subject, WrappedNetwork) else Sequential([subject.spec])


def _trainable(subject: Any, x_shape: tuple[int, ...]) -> list[str]:
    """Trainable parameter names as ``subject.param_grads()`` keys them."""
    from harness.adapters.network import WrappedNetwork
    from harness.spec import named_params

    if isinstance(subject, WrappedNetwork):
        return [k for k, info in named_params(subject.spec, x_shape).items() if info.trainable]
    return [k for k in subject._param_names() if k in subject._trainable()]


def sample_slots(problem: Problem, max_coords: int | None, rng: np.random.Generator) -> tuple[list[Slot], int]:
    """Whole arrays when the problem has at most ``max_coords`` coordinates; else about
    ``max_coords`` random flat positions spread over the arrays by size (at least one
    each). Returns (slots, number of coordinates covered)."""
    total = problem.n_coords
    if max_coords is None or total <= max_coords:
        return [Slot(k) for k in problem.names], total
    slots = []
    for k in problem.names:
        size = problem.base[k].size
        m = min(size, max(1, round(max_coords * size / total)))
        slots.append(Slot(k, np.sort(rng.choice(size, m, replace=False))))
    return slots, sum(len(s.index) for s in slots)


# ---------------------------------------------------------------------------- results


@dataclass
class PeerResult:
    """One peer's answer on one subject.

    caught:   True when the peer reported a problem (a failed comparison or an error raised
              by the user's code), False when it passed.
    detail:   the peer's message (first line), or what trigrad blamed.
    seconds:  wall time of the run; ``calls``: :class:`CallCounts` of the run.
    coords / coords_total: coordinates the run covered, of all (exhaustive peers).
    outputs / outputs_total: output elements slow gradcheck differentiated, of all.
    extrapolated: the estimated full-run seconds when only part was run (else None).
    verdicts: trigrad only: ``{entry: verdict}`` of the report; ``inconclusive``: whether
              one of them is ``inconclusive``.
    normwise_caught: CS231n only: the verdict had the relative error been norm-wise
              (max|a - b| / max(|a| + |b|)) rather than CS231n's elementwise one.
    errors:   CS231n only: CS231n's rel_error per tensor ("x" and each parameter), what its
              notebooks print (a person reads which tensor failed off them).
    memory_mib: peak RSS growth during the run, when measured (set by the caller).
    """

    peer: str
    caught: bool
    detail: str = ""
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    coords: int | None = None
    coords_total: int | None = None
    outputs: int | None = None
    outputs_total: int | None = None
    extrapolated: float | None = None
    verdicts: dict[str, str] | None = None
    inconclusive: bool = False
    normwise_caught: bool | None = None
    errors: dict[str, float] | None = None
    memory_mib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


# ---------------------------------------------------------------------------- torch.autograd.gradcheck


class _Timer:
    """Wall time spent inside the adapter's backward (the user's backward and any re-run
    forward), for the extrapolation of a partial slow gradcheck."""

    def __init__(self) -> None:
        self.backward = 0.0
        self.backward_calls = 0


def torch_function(problem: Problem, slots: list[Slot], out_index: np.ndarray | None, timer: _Timer) -> Callable:
    """``fn(*tensors) -> tensor``: the user's code as a ``torch.autograd.Function``.

    ``tensors``: one float64 tensor per slot (a whole array, or its positions
    ``slot.index`` flattened); the output is the user's output (``problem.y_shape``), or its
    flat positions ``out_index``."""
    import torch
    from torch.autograd.function import once_differentiable

    class UserCode(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *tensors: torch.Tensor) -> torch.Tensor:
            y = problem.evaluate_slots(slots, [t.detach().numpy() for t in tensors])
            ctx.tensors, ctx.token = tensors, problem.token  # gradcheck restores perturbed entries in place
            return torch.from_numpy(np.array(y.reshape(-1)[out_index] if out_index is not None else y))

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, ...]:
            t0 = time.perf_counter()
            if problem.token != ctx.token:  # another forward ran since: the user's cache is stale
                problem.evaluate_slots(slots, [t.detach().numpy() for t in ctx.tensors])
                ctx.token = problem.token
            g = gy.detach().numpy()
            if out_index is not None:
                full = np.zeros(problem.n_outputs)
                full[out_index] = g
                g = full.reshape(problem.y_shape)
            grads = problem.vjp(g)
            out = tuple(torch.from_numpy(np.ascontiguousarray(
                grads[s.name].reshape(-1)[s.index] if s.index is not None else grads[s.name])) for s in slots)
            timer.backward += time.perf_counter() - t0
            timer.backward_calls += 1
            return out

    return UserCode.apply


def gradcheck(problem: Problem, *, fast: bool, max_coords: int | None = None, max_outputs: int | None = None,
              seed: int = 0) -> PeerResult:
    """``torch.autograd.gradcheck`` (``fast_mode=fast``) of the user's backward against finite
    differences of its forward. With ``max_coords`` / ``max_outputs`` (slow mode) only a
    random subset of input coordinates / output elements is differentiated and the full
    time is extrapolated: numerical Jacobian time x (all coordinates / checked ones) plus
    analytical Jacobian time (one backward per output element) x (all outputs / checked)."""
    import torch

    rng = np.random.default_rng(seed)
    slots, covered = sample_slots(problem, max_coords, rng)
    out_index = None
    if max_outputs is not None and problem.n_outputs > max_outputs:
        out_index = np.sort(rng.choice(problem.n_outputs, max_outputs, replace=False))
    timer = _Timer()
    fn = torch_function(problem, slots, out_index, timer)
    inputs = tuple(torch.tensor(problem.base[s.name].reshape(-1)[s.index] if s.index is not None else problem.base[s.name],
                                dtype=torch.float64, requires_grad=True) for s in slots)
    t0 = time.perf_counter()
    try:
        torch.autograd.gradcheck(fn, inputs, fast_mode=fast, raise_exception=True)
        caught, detail = False, "passed"
    except Exception as e:  # GradcheckError, or the user's code raised
        caught, detail = True, _first_line(e)
    seconds = time.perf_counter() - t0
    n_out = len(out_index) if out_index is not None else problem.n_outputs
    result = PeerResult("gradcheck_fast" if fast else "gradcheck", caught, detail, seconds, coords=covered,
                        coords_total=problem.n_coords, outputs=n_out, outputs_total=problem.n_outputs)
    if covered < problem.n_coords or n_out < problem.n_outputs:
        numerical = seconds - timer.backward
        result.extrapolated = (numerical * problem.n_coords / covered + timer.backward * problem.n_outputs / n_out)
    return result


# ---------------------------------------------------------------------------- jax check_grads


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


# ---------------------------------------------------------------------------- the CS231n loop

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


# ---------------------------------------------------------------------------- trigrad


def trigrad(subject: Any, *, x: np.ndarray | None = None, input_shape: tuple[int, ...] | None = None,
            loss: Any = None, target: Any = None, seed: int = 0, **wrap_kwargs: Any) -> PeerResult:
    """``harness.check_layer`` / ``check_network`` (default ``fd_probes``); caught when any
    entry's verdict is forward, backward, both or error (``inconclusive`` is reported, not
    counted as caught)."""
    import harness
    from harness.adapters.network import WrappedNetwork

    from harness.adapters.layouts import data_to_user

    if x is not None:  # the peers' x is canonical; trigrad reads x in the code's declared layout
        x = data_to_user(np.asarray(x, dtype=np.float64), subject.layout)
    t0 = time.perf_counter()
    if isinstance(subject, WrappedNetwork):
        report = harness.check_network(subject, x=x, y=target, loss=loss, seed=seed)
    else:
        report = harness.check_layer(subject, x=x, input_shape=input_shape, seed=seed, **wrap_kwargs)
    seconds = time.perf_counter() - t0
    verdicts = {layer.name: layer.verdict for layer in report.layers}
    failing = [k for k, v in verdicts.items() if v in FAILING]
    detail = f"{failing[0]}: {verdicts[failing[0]]}" if failing else "passed"
    return PeerResult("trigrad", bool(failing), detail, seconds, verdicts=verdicts,
                      inconclusive=any(v == "inconclusive" for v in verdicts.values()))


__all__ = ["PEERS", "CallCounts", "PeerResult", "Problem", "Slot", "count_calls", "cs231n", "eval_numerical_gradient_array",
           "gradcheck", "jax_check_grads", "rel_error", "sample_slots", "trigrad"]
