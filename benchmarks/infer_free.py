"""Parameter-free layers inferred from their forward alone (harness.inference.free.free_fits): the
development zoo's and the real-code corpus's parameter-free layers, correct and buggy, against
the spec each is checked with today (the truth, name aside). Run from the repository root:

    python benchmarks/infer_free.py

A dropout's p is read from the object's attribute where the forward cannot show it
(``dropout_rate_hint``, for the layer inference to apply). Status as the layer inference reads the fits: ``exact`` one candidate within MATCH_TOL,
``ambiguous`` several, ``unmatched`` none. ``WRONG`` marks an exact answer that is not the
truth (kind, hyperparameters or layout). Timing: one free_fits call on three pairs, warm.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"), str(Path(__file__).resolve().parents[1])]

import harness as tg  # noqa: E402
from harness.adapters.detect import MATCH_TOL  # noqa: E402
from harness.inference.free import dropout_rate_hint, free_fits  # noqa: E402
from realcode import composite, cs231n, cs231n_norm, dlfs, keras_like, objects  # noqa: E402
from zoo import layers, ties  # noqa: E402


def _zoo() -> list[tuple[str, object, tg.Layer, tuple, tg.Layout, dict]]:
    out = []
    for entry in layers.CORRECT + ties.CORRECT + layers.MUTANTS + ties.MUTANTS:
        name, factory, spec, kw, shape = entry[:5]
        if spec.local_params(shape) and spec.kind != "Dropout":
            continue
        obj = factory()
        if hasattr(obj, "forward"):
            tag = "zoo" if len(entry) == 5 else "zoo mutant"
            out.append((f"{tag}: {name}", obj.forward, spec, shape, kw.get("layout", tg.Layout()), {}))
    return out


def _real() -> list[tuple[str, object, tg.Layer, tuple, tg.Layout, dict]]:
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    drop = {"p": 0.75, "mode": "train", "seed": 0}
    nhwc = tg.Layout(data="NHWC")
    return [
        ("real: cs231n relu pair", lambda x: cs231n.relu_forward(x)[0], tg.ReLU("relu"), (4, 6), tg.Layout(), {}),
        (
            "real: cs231n max pool pair",
            lambda x: cs231n.max_pool_forward_naive(x, pool)[0],
            tg.MaxPool2d("pool", 2),
            (2, 3, 6, 6),
            tg.Layout(),
            {},
        ),
        (
            "real: cs231n dropout pair",
            lambda x: cs231n_norm.dropout_forward(x, dict(drop))[0],
            tg.Dropout("drop", 0.25),
            (4, 6),
            tg.Layout(),
            {},
        ),
        ("real: relu, in-place backward", objects.ReLU().forward, tg.ReLU("relu"), (3, 6), tg.Layout(), {}),
        (
            "real: dropout object",
            objects.Dropout(0.25, seed=0).forward,
            tg.Dropout("drop", 0.25),
            (4, 6),
            tg.Layout(),
            {},
        ),
        (
            "real: dropout object, forward unscaled (bug)",
            objects.DropoutForwardUnscaled(0.25, seed=0).forward,
            tg.Dropout("drop", 0.25),
            (4, 6),
            tg.Layout(),
            {},
        ),
        (
            "real: dlfs dropout (not inverted)",
            dlfs.Dropout(0.25).forward,
            tg.Dropout("drop", 0.25, inverted=False),
            (4, 6),
            tg.Layout(),
            {},
        ),
        (
            "real: keras dropout NHWC",
            keras_like.Dropout(0.25).forward,
            tg.Dropout("drop", 0.25),
            (2, 4, 4, 3),
            nhwc,
            {"training": True},
        ),
        ("real: keras relu", keras_like.ReLU().forward, tg.ReLU("relu"), (2, 4, 4, 3), nhwc, {}),
        (
            "real: keras flatten NHWC",
            keras_like.Flatten().forward,
            tg.Flatten("flat"),
            (2, 4, 4, 3),
            tg.Layout(data="NHWC", flatten="HWC"),
            {},
        ),
        ("real: composite relu", composite.ReLU().forward, tg.ReLU("relu"), (2, 3, 6, 6), tg.Layout(), {}),
        (
            "real: composite max pool",
            composite.MaxPool2x2().forward,
            tg.MaxPool2d("pool", 2),
            (2, 3, 6, 6),
            tg.Layout(),
            {},
        ),
        ("real: composite flatten", composite.Flatten().forward, tg.Flatten("flat"), (2, 3, 3, 3), tg.Layout(), {}),
    ]


# the same function of the user's arrays under another layout: not wrong for a layer alone
SAME_ON_USER_ARRAYS = {("NHWC", "HWC"): ("NCHW", "CHW"), ("NHWC", "CHW"): ("NCHW", "HWC")}


def _right(fit: tg.Layer, layout: tg.Layout, truth: tg.Layer, truth_layout: tg.Layout) -> bool:
    if dataclasses.replace(fit, name=truth.name) != truth:
        return False
    if isinstance(truth, (tg.MaxPool2d, tg.AvgPool2d, tg.GlobalAvgPool2d)):
        return layout.data == truth_layout.data
    if isinstance(truth, tg.Flatten):
        t = (truth_layout.data, truth_layout.flatten)
        return (layout.data, layout.flatten) in (t, SAME_ON_USER_ARRAYS.get(t))
    return True  # elementwise: any data layout reads the same


def main() -> int:
    import torch

    torch.set_num_threads(1)
    rows, wrong, exact, total, times = [], 0, 0, 0, []
    for label, forward, truth, shape, lay, kw in _zoo() + _real():
        rng = np.random.default_rng(1)
        pairs = []
        for _ in range(3):
            x = rng.normal(size=shape)
            pairs.append((x, np.asarray(forward(x.copy(), **kw))))
        t = time.perf_counter()
        fits = free_fits("l", pairs[0][0], pairs[0][1], more=pairs[1:])
        owner = getattr(forward, "__self__", None)
        fits = dropout_rate_hint(owner, fits) if owner is not None else fits  # as the layer inference does
        times.append(time.perf_counter() - t)
        ok = [f for f in fits if f.error <= MATCH_TOL[np.dtype(np.float64)]]
        status = "exact" if len(ok) == 1 else "ambiguous" if ok else "unmatched"
        best = fits[0] if fits else None
        right = best is not None and _right(best.spec, best.layout, truth, lay)
        is_wrong = status == "exact" and not right
        total += 1
        exact += status == "exact" and right
        wrong += is_wrong
        got = f"{best.spec!r} {best.layout}" if best else "-"
        rows.append(f"{'WRONG ' if is_wrong else ''}{label}: {status}: {got} (truth {truth!r})")
    print("\n".join(rows))
    print(
        f"\n{exact}/{total} inferred exactly and right, {wrong} exact but not the truth; "
        f"free_fits per call: median {np.median(times) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
