"""Hypotheses about a recurrent layer's wrong gradients (or forward), each confirmed the usual
way: a value computed under the named mistake reproduces the user's tensor within its
tolerance and differs from the truth (:meth:`~.point.Point.fits`).

- **Where in time.** BPTT runs from the last step back, so the first wrong timestep counting
  back from the end tells which part is wrong: wrong already at the last step, the step's own
  backward; right there and wrong from step ``t`` back, what is carried from step ``t + 1``.
- **Truncated BPTT.** The reference's VJP with the recurrent path cut (the hidden / cell state
  entering each step as a constant: the gradient not carried across steps), with only the last
  step backpropagated, or with only the last output's upstream gradient.
- **A tanh derivative written with its input** (``1 - a**2`` for ``1 - tanh(a)**2``).
- **W_hh's gradient with the step's output** ``h_t`` where its input ``h_{t-1}`` is meant.
- **Gate blocks permuted** in a weight or bias gradient (the backward stacks the gate
  gradients in another order than the forward slices them).
- **A GRU's update gate the other way round** (Cho et al.'s ``h = z * n + (1 - z) * h_prev``).

The variants run on the torch reference (:func:`reference_models.torch_recurrent.variant_vjp`);
tensors are canonical (batch-first sequences, PyTorch's gate order).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import numpy as np

from ..spec import _Recurrent
from .point import Point, _vjp

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "bias")


def recurrent(p: Point, failing: list[str]) -> list[str]:
    """Every confirmed hypothesis for a recurrent layer's failing tensors ``failing``."""
    spec = p.spec
    if not isinstance(spec, _Recurrent):
        return []
    found: list[str] = []
    grads = [n for n in failing if n != "output"]
    if not spec.step and "input" in failing and "output" not in failing and p.x.ndim == 3:
        found += _first_timestep(p)  # (a wrong forward makes every gradient wrong from the start)
    if not spec.step and grads:
        found += _variants(spec, p, grads)
    found += _gate_swaps(spec, p, [n for n in grads if n in _WEIGHTS] if "output" not in failing else [])
    if "output" in failing and spec.gates == "rzn":
        found += _update_gate_swapped(spec, p)
    return found


def _first_timestep(p: Point) -> list[str]:
    """The first timestep, counting back from the end, at which the input gradient is wrong
    (a step matches when its error is within the tensor's tolerance of the whole tensor)."""
    u, r, steps = p.user["input"], p.ref["input"], p.x.shape[1]
    scale = p.tol["input"] * float(np.linalg.norm(r))
    bad = [t for t in range(steps) if float(np.linalg.norm(u[:, t] - r[:, t])) > scale]
    if not bad:
        return []
    t = max(bad)
    if t == steps - 1:
        return [
            f"input: wrong from timestep {t}, the last one (t = 0..{steps - 1}), where BPTT starts: the step's own "
            "backward is wrong, not only what one step passes back to the one before"
        ]
    right = f"timestep {t + 1} matches" if t + 2 == steps else f"timesteps {t + 1}..{steps - 1} match"
    where = f"input: wrong from timestep {t} backwards, {steps - 1 - t} step(s) before the end ({right}; t = 0..{steps - 1})"
    skipped = r.copy()
    skipped[:, 0] = 0
    if t == 0 and p.fits("input", skipped):  # step 0's own backward never ran: nothing was passed to it
        return [
            f"{where}: zero at timestep 0: timestep 0 is never backpropagated (the loop over t stops at t = 1: "
            "range(T - 1, 0, -1) where range(T - 1, -1, -1) is meant)"
        ]
    return [
        f"{where}: the steps are right on their own, what step {t + 1} passes back to step {t} (the "
        "hidden-state gradient carried across steps) is not"
    ]


def _variants(spec: _Recurrent, p: Point, names: list[str]) -> list[str]:
    """The reference's gradients under a truncated BPTT or a tanh derivative of the input."""
    from reference_models.torch_recurrent import Variant, variant_vjp

    last = np.zeros_like(p.g)
    last[:, -1] = p.g[:, -1]
    both = frozenset({"h", "c"})
    cases: list[tuple[str, Variant, np.ndarray]] = [
        (
            "the recurrent path cut: the gradient is not carried from step t+1 back to step t (BPTT not "
            "accumulating the hidden-state gradient across steps: dh[:, t] where dh[:, t] + dprev_h is meant)",
            Variant(cut=both),
            p.g,
        ),
        (
            "only the last timestep backpropagated (gradient through the last step only: the loop over t stops "
            "after t = T-1)",
            Variant(cut=both),
            last,
        ),
        (
            "only the last timestep's upstream gradient used (dh[:, -1] alone, as in a many-to-one backward)",
            Variant(),
            last,
        ),
    ]
    if isinstance(spec.gates, str) and spec.gates == "ifgo":
        cases += [
            (
                "the cell-state gradient dprev_c not carried back across steps (dprev_h is)",
                Variant(cut=frozenset("c")),
                p.g,
            ),
            (
                "the hidden-state gradient dprev_h not carried back across steps (dprev_c is)",
                Variant(cut=frozenset("h")),
                p.g,
            ),
        ]
    if getattr(spec, "nonlinearity", "tanh") == "tanh":
        cases.append(
            (
                "every tanh's derivative written with its input a (1 - a**2 where 1 - tanh(a)**2 is meant)",
                Variant(tanh_of_input=True),
                p.g,
            )
        )
    found = []
    for what, variant, g in cases:
        got = variant_vjp(spec, p.params, p.x, g, variant)
        explained = [n for n in names if n in got and p.fits(n, got[n])]
        if explained:
            found.append(f"{', '.join(explained)}: equal the reference's gradient with {what}")
    if "weight_hh" in names:
        found += _dwhh_from_output(spec, p, variant_vjp(spec, p.params, p.x, p.g, Variant()))
    return found


def _dwhh_from_output(spec: _Recurrent, p: Point, plain: dict[str, np.ndarray]) -> list[str]:
    """``sum_t dgh_t^T h_t`` (the step's output) where ``sum_t dgh_t^T h_{t-1}`` is W_hh's gradient."""
    dgh, h = plain["dgh"], plain["output"]
    if dgh.ndim != 3 or dgh.shape[1] != h.shape[1]:
        return []
    value = np.einsum("ntg,nth->gh", dgh, h)
    if p.fits("weight_hh", value):
        return [
            "weight_hh: equals sum over t of dgates_t^T h_t: its gradient taken with the step's output h_t where "
            "the step's input h_{t-1} is meant"
        ]
    return []


def _gate_swaps(spec: _Recurrent, p: Point, names: list[str]) -> list[str]:
    """A weight or bias gradient whose gate blocks are the reference's, permuted."""
    g, h = spec.num_gates, spec.hidden_size
    if g < 2 or not names:
        return []
    canon = spec.gates
    declared = getattr(p.layout, "gates", "") or ""
    user = declared if sorted(declared) == sorted(canon) else canon
    found = []
    for perm in permutations(range(g)):
        if perm == tuple(range(g)):
            continue
        moved = [n for n in names if p.fits(n, _permute(p.ref[n], perm, g, h))]
        if not moved and not spec.step:  # over time: the restacked gradient also flows into earlier steps
            from reference_models.torch_recurrent import Variant, variant_vjp

            got = variant_vjp(spec, p.params, p.x, p.g, Variant(gates=perm))
            moved = [n for n in p.user if n != "output" and n in got and p.fits(n, got[n])]
        if not moved:
            continue
        # the user's stacking position k (in its declared order) holds the gradient of this gate
        stacked = "".join(canon[perm[canon.index(c)]] for c in user)
        swapped = " and ".join(a for a, b in zip(stacked, user) if a != b)
        found.append(
            f"{', '.join(moved)}: the gate gradients are stacked as {','.join(stacked)} where the forward slices the "
            f"gates as {','.join(user)} ({swapped} swapped): equal the reference's with its gate blocks in that order; "
            f"stack them as the forward slices them (Layout(gates={user!r}) is the forward's order)"
        )
    return found


def _permute(value: np.ndarray, perm: tuple[int, ...], g: int, h: int) -> np.ndarray:
    """``value`` (first axis ``G*H``) with block ``j`` taken from the reference's block ``perm[j]``."""
    blocks = value.reshape(g, h, *value.shape[1:])
    return blocks[list(perm)].reshape(value.shape)


def _update_gate_swapped(spec: _Recurrent, p: Point) -> list[str]:
    """A GRU output computed as ``z * n + (1 - z) * h_prev``: the reference with the update gate's
    pre-activation negated (``1 - sigmoid(a) = sigmoid(-a)``) reproduces it."""
    h = spec.hidden_size
    flipped: dict[str, Any] = dict(p.params)
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if k in flipped:
            v = np.array(flipped[k], dtype=np.float64)
            v[h : 2 * h] *= -1
            flipped[k] = v
    got = _vjp(spec, p, params=flipped, forward_only=True)
    if got and p.fits("output", got["output"]):
        return [
            "output: matches the reference with z and 1 - z exchanged: h = z * n + (1 - z) * h_prev (Cho et al.'s "
            "convention) where the spec, as PyTorch, has h = (1 - z) * n + z * h_prev"
        ]
    return []


__all__ = ["recurrent"]
