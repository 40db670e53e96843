"""trigrad on a ResNet-18-sized network: numpy layers (benchmarks/numpy_layers.py) for the
spec of torchvision's ResNet-18 (11,699,112 parameter values, float64), checked by
``harness.check_network`` layer by layer, next to the floor (one forward+backward of the
numpy code and one ``vjp`` of each reference) measured in the same process.

    python benchmarks/bench_resnet18.py [--batch 2] [--size 224] [--runs 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _median(f, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)

    import numpy as np

    from harness import check_network
    from numpy_layers import wrap
    from reference_models import build
    from reference_models.architectures import resnet18

    spec = resnet18()
    shape = (args.batch, 3, args.size, args.size)
    net = wrap(spec, shape)
    x = np.random.default_rng(0).standard_normal(shape)
    g = np.random.default_rng(1).standard_normal(spec.output_shape(shape))
    params = net.get_params()
    torch_ref, jax_ref = build("torch", spec), build("jax", spec)

    start = time.perf_counter()
    first = check_network(net, x=x, seed=0)  # includes JAX's per-primitive compilation
    first_s = time.perf_counter() - start
    assert first.ok, str(first)
    user, _ = _median(lambda: (net.forward(x, mode="chain"), net.backward(g)), args.runs)
    torch_s, _ = _median(lambda: torch_ref.vjp(params, x, g), args.runs)
    jax_s, _ = _median(lambda: jax_ref.vjp(params, x, g), args.runs)
    trigrad_s, times = _median(lambda: check_network(net, x=x, seed=0), args.runs)
    floor = user + torch_s + jax_s
    out = {"params": int(sum(v.size for v in params.values())), "input": list(shape), "runs": args.runs,
           "first_check_s": first_s, "check_s": trigrad_s, "check_times_s": times, "floor_s": floor,
           "user_s": user, "torch_s": torch_s, "jax_s": jax_s, "ratio": trigrad_s / floor, "ok": first.ok}
    print(f"ResNet-18 ({out['params']:,} parameter values, input {tuple(shape)}, float64): check_network "
          f"{trigrad_s:.1f} s median of {args.runs} (first call {first_s:.1f} s); floor {floor:.2f} s "
          f"(numpy {user:.2f} + torch {torch_s:.2f} + jax {jax_s:.2f}); {out['ratio']:.1f}x the floor")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
