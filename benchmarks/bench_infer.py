"""What inference costs and how often it is exact: ``harness.infer`` on every correct layer of
the development zoo (tests/zoo: layers, ties; tests/inferzoo when present) and on the
networks of benchmarks/numpy_nets.py (LeNet-5) and the bundled example.

    python benchmarks/bench_infer.py              # prints the table, writes RESULTS-infer.json
    python benchmarks/bench_infer.py --repeats 5

Per layer: the median wall time of ``infer(obj, x)`` over the repeats (the first call, which
warms torch, is not counted), the status and whether kind, hyperparameters and layout equal
the truth the zoo declares. Per network: the median time divided by its number of layers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]


def same_spec(a: Any, b: Any) -> bool:
    """Two spec layers are the same up to their names (recursing into containers)."""
    from dataclasses import fields

    if type(a) is not type(b):
        return False
    for f in fields(a):
        if f.name == "name":
            continue
        u, v = getattr(a, f.name), getattr(b, f.name)
        if isinstance(u, (list, tuple)) and u and hasattr(u[0], "kind"):
            if len(u) != len(v) or not all(same_spec(p, q) for p, q in zip(u, v)):
                return False
        elif hasattr(u, "kind"):
            if not same_spec(u, v):
                return False
        elif u != v:
            return False
    return True


def _zoo_layers() -> list[tuple[str, Any, Any, dict, tuple[int, ...]]]:
    from zoo import layers, ties

    return [(name, make, spec, kw, shape) for name, make, spec, kw, shape in layers.CORRECT + ties.CORRECT]


def _time(fn: Any, repeats: int) -> tuple[float, Any]:
    out = fn()  # warm-up (torch's first call), not counted
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def layers_table(repeats: int) -> list[dict[str, Any]]:
    """One row per zoo layer: name, seconds (median), status, exact against the truth."""
    import harness as tg

    rows = []
    for name, make, spec, kw, shape in _zoo_layers():
        obj = make()
        x = np.random.default_rng(0).standard_normal(shape)
        target = getattr(obj, "target", obj)  # a wrapped function pair keeps its functions
        if isinstance(obj, tg.adapters.layer.WrappedLayer):
            continue  # function pairs are wrapped by the zoo's factory: no raw target to infer from
        seconds, inf = _time(lambda o=target, x=x: tg.infer(o, x), repeats)
        layout = kw.get("layout", tg.Layout()) if isinstance(kw, dict) else tg.Layout()
        right = same_spec(inf.spec, spec) and inf.layers[0].layout == layout
        rows.append({"layer": name, "seconds": seconds, "status": inf.status, "truth": right})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "RESULTS-infer.json"))
    args = ap.parse_args(argv)
    rows = layers_table(args.repeats)
    for r in rows:
        print(f"{r['layer']:<28} {r['seconds'] * 1e3:8.1f} ms  {r['status']:<10} {'truth' if r['truth'] else 'DIFFERS'}")
    secs = [r["seconds"] for r in rows]
    wrong = [r["layer"] for r in rows if r["status"] == "exact" and not r["truth"]]
    print(
        f"{len(rows)} layers: median {statistics.median(secs) * 1e3:.0f} ms, max {max(secs) * 1e3:.0f} ms per layer; "
        f"{sum(r['status'] == 'exact' and r['truth'] for r in rows)} exact and right, {len(wrong)} exact but wrong {wrong}"
    )
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
