"""What inference costs and how often it is exact (issue 15): ``harness.infer`` end to end on
every correct layer and network of the development corpora, against the truth the existing
tests declare by hand, and on the wrong-kind mutants (which must never come out ``exact``).

    python benchmarks/bench_infer.py               # the table and the summary
    python benchmarks/bench_infer.py --repeats 3   # timing: the median of 3 (after a warm-up)

Corpora: tests/zoo/inferable.py (the zoo's and tests/realcode's layers with parameters,
objects and function pairs), the zoo's and real code's parameter-free objects
(benchmarks/infer_free.py's table), tests/inferzoo (layers, networks, wrong-kind mutants),
the bundled example LeNet (NHWC) and benchmarks/numpy_nets.py (LeNet-5, a small ResNet).
A row is ``right`` when the status is ``exact`` and the spec and the layout fields that
matter equal the truth (tests/inferzoo/compare.py); ``WRONG`` is exact and not the truth.
Per-layer time: the median wall time of one ``infer`` divided by its number of layers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

Row = tuple[str, str, Callable[[], tuple[Any, Any, dict]], Any, Any]  # corpus, name, make, spec, layout


def _inferable() -> Iterator[Row]:
    from zoo.inferable import ENTRIES

    for e in ENTRIES:
        yield "with parameters (zoo, real code)", e.name, (lambda e=e: e.make(0, e.code)), e.spec, e.layout


def _free() -> Iterator[Row]:
    from infer_free import _real, _zoo

    for label, forward, spec, shape, layout, kw in _zoo() + _real():
        owner = getattr(forward, "__self__", None)
        if owner is None or "mutant" in label or "(bug)" in label or kw:
            continue  # function pairs without parameters, mutants, forward keywords: elsewhere
        x = np.random.default_rng(1).normal(size=shape)
        yield "parameter-free (zoo, real code)", label, (lambda o=owner, x=x: (o, x, {})), spec, layout


def _inferzoo() -> Iterator[Row]:
    from inferzoo import LAYERS, NETWORKS

    for e in LAYERS + NETWORKS:
        kind = "inferzoo networks" if e in NETWORKS else "inferzoo layers"
        yield kind, e.name, (lambda e=e: (e.make(0), e.x(0), {})), e, None


def _networks() -> Iterator[Row]:
    from harness.examples.example import LAYOUT, build
    from numpy_nets import lenet5, resnet

    ex = build()
    yield "networks", "bundled example LeNet (NHWC)", (lambda: (build().model, ex.x, {})), ex.spec, LAYOUT
    for w in (lenet5(), resnet(batch=2, size=16, widths=((8, 1), (16, 2)), stem=8)):
        x = np.random.default_rng(0).normal(size=w.input_shape)
        yield "networks", f"numpy_nets {w.name}", (lambda w=w, x=x: (w.net, x, {})), w.spec, None


def _judge(spec: Any, layout: Any, inference: Any, x: Any) -> bool:
    """Exact and the truth: same spec (names aside) and the layout fields that matter."""
    from inferzoo.compare import disagreements, layout_fields, same_spec
    from inferzoo.entry import Entry

    if inference.status != "exact":
        return False
    if isinstance(spec, Entry):
        return not disagreements(spec, inference)
    ndim = np.ndim(x)
    if not same_spec(spec, inference.spec, ndim):
        return False
    got = inference.layers[0].layout if len(inference.layers) == 1 else inference.layout
    return layout is None or not layout_fields(spec, layout, got, ndim)


def _time(make: Callable, repeats: int) -> tuple[float, Any, Any]:
    import harness as tg

    times, inference, x = [], None, None
    for _ in range(repeats):
        target, x, kw = make()
        t0 = time.perf_counter()
        inference = tg.infer(target, x, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), inference, x


def _mutants() -> tuple[int, int, list[str]]:
    """(mutants, not exact, names of those exact): a wrong-kind forward must never be exact."""
    import harness as tg
    from inferzoo import MUTANTS, NETWORK_MUTANTS, SHAPE_MUTANTS

    entries = MUTANTS + SHAPE_MUTANTS + NETWORK_MUTANTS
    exact = [e.name for e in entries if tg.infer(e.make(0), e.x(0)).status == "exact"]
    return len(entries), len(entries) - len(exact), exact


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    rows = [*_inferable(), *_free(), *_inferzoo(), *_networks()]
    _time(rows[0][2], 1)  # warm-up: torch's first call and imports, not counted
    per_layer, table = [], {}
    for corpus, name, make, spec, layout in rows:
        seconds, inference, x = _time(make, args.repeats)
        right = _judge(spec, layout, inference, x)
        wrong = inference.status == "exact" and not right
        n = len(inference.layers)
        per_layer.append(seconds / n)
        stats = table.setdefault(corpus, [0, 0, 0, 0, []])
        stats[0] += 1
        stats[1] += right
        stats[2] += inference.status != "exact"
        stats[3] += wrong
        stats[4].append(seconds / n)
        flag = "WRONG" if wrong else ("right" if right else inference.status)
        print(f"{corpus[:26]:<26} {name[:44]:<44} {n:>3} layer(s) {seconds * 1e3:8.1f} ms  {flag}")
    print()
    for corpus, (count, right, doubt, wrong, secs) in table.items():
        print(
            f"{corpus:<34} {count:>3} entries: {right:>3} exact and right, {doubt} ambiguous/unmatched, "
            f"{wrong} WRONG; per layer median {statistics.median(secs) * 1e3:.0f} ms, max {max(secs) * 1e3:.0f} ms"
        )
    total = sum(s[0] for s in table.values())
    print(
        f"all: {total} entries, {sum(s[1] for s in table.values())} exact and right "
        f"({100 * sum(s[1] for s in table.values()) / total:.0f}%), {sum(s[3] for s in table.values())} WRONG; "
        f"per layer median {statistics.median(per_layer) * 1e3:.0f} ms, max {max(per_layer) * 1e3:.0f} ms"
    )
    count, caught, exact = _mutants()
    print(f"wrong-kind and shape mutants: {caught}/{count} not exact{'; exact: ' + ', '.join(exact) if exact else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
