"""Time single-layer inference (issue 15: under 1 s per layer on 2 cores) over the corpus of
tests/zoo/inferable.py (the zoo's layers with parameters, tests/realcode's objects and
function pairs), each inferred ``--repeats`` times after one warm-up pass (imports, the first
torch call):

    python benchmarks/bench_infer_layer.py              # median and worst per layer, and overall
    python benchmarks/bench_infer_layer.py --repeats 1

Run from the repository root (it imports tests/zoo and tests/realcode). Inference only: the
check that follows is timed by the check's own benchmarks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from harness.inference.layer import infer_layer
    from zoo.inferable import ENTRIES

    for e in ENTRIES:  # warm-up: imports, torch's and jax's first calls
        target, x, kw = e.make(0, e.code)
        infer_layer(target, x, **kw)
    medians = []
    for e in ENTRIES:
        times = []
        for seed in range(args.repeats):
            target, x, kw = e.make(seed, e.code)
            t0 = time.perf_counter()
            infer_layer(target, x, **kw)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
        print(f"{e.name:28s} median {medians[-1] * 1e3:7.1f} ms   worst {max(times) * 1e3:7.1f} ms")
    print(
        f"{len(ENTRIES)} layers: median {statistics.median(medians) * 1e3:.1f} ms, worst median {max(medians) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
