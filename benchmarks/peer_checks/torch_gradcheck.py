"""``torch.autograd.gradcheck`` (slow and fast mode) on the user's code: the user's forward
and backward inside a ``torch.autograd.Function`` whose inputs are the input and every
trainable parameter; a partial slow run is extrapolated to the full run's time."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .problem import Problem, Slot, sample_slots
from .result import PeerResult, _first_line


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
