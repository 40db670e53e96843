"""trigrad against torch.autograd.gradcheck on custom autograd Functions (issue 18).

For the bundled example's Functions (harness/examples/autograd_model.py) and their seven
mistakes (autograd_variants.py): which checker flags each variant, and how long one check of
the variant's layer takes (median of --repeat runs, the two checkers interleaved in one
process, warm). Then the correct Functions in float32 and bfloat16, where gradcheck's
float64 finite differences cannot judge them and trigrad uses the dtype's own measured error.

    python benchmarks/autograd_vs_gradcheck.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import harness
from harness.examples.autograd_example import autograd_spec
from harness.examples.autograd_model import CustomNet
from harness.examples.autograd_variants import AUTOGRAD_VARIANTS

BATCH = 4


def _layer(model: CustomNet, spec: harness.Sequential, name: str):
    layer = next(layer for layer in spec.layers if layer.name == name)
    return getattr(model, name), layer


def _input_shape(spec: harness.Sequential, name: str) -> tuple[int, ...]:
    shapes = harness.layer_shapes(spec, (BATCH, 3, 6, 6))
    return tuple(shapes[name][0])


def _trigrad(module, layer, shape, dtype=None) -> tuple[str, float]:
    t0 = time.perf_counter()
    extra = {} if dtype is None or any(True for _ in module.parameters()) else {"dtype": dtype}
    report = harness.check_layer(module, layer, input_shape=shape, seed=0, **extra)
    return report.layers[0].verdict, time.perf_counter() - t0


def _gradcheck(module, shape, dtype=torch.float64) -> tuple[str, float]:
    x = torch.randn(*shape, dtype=torch.float64).to(dtype).requires_grad_()
    params = [p.detach().to(dtype).requires_grad_() for p in module.parameters()]
    names = [n for n, _ in module.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ok = torch.autograd.gradcheck(f, (x, *params), raise_exception=False)
        except Exception:  # gradcheck raises for some inputs whatever raise_exception says
            ok = False
    return ("pass" if ok else "fail"), time.perf_counter() - t0


def variants(repeat: int) -> None:
    spec = autograd_spec()
    print("| variant | layer | trigrad | gradcheck | trigrad ms | gradcheck ms |")
    print("|---|---|---|---|---|---|")
    for name, variant in [("correct", None), *AUTOGRAD_VARIANTS.items()]:
        model = CustomNet(seed=0, functions=dict(variant.layers) if variant else None).double()
        layer_name = variant.layer if variant else "fc2"
        module, layer = _layer(model, spec, layer_name)
        shape = _input_shape(spec, layer_name)
        t_times, g_times = [], []
        for _ in range(repeat):
            tv, tt = _trigrad(module, layer, shape)
            gv, gt = _gradcheck(module, shape)
            t_times.append(tt)
            g_times.append(gt)
        print(
            f"| {name} | {layer_name} | {tv} | {gv} | {1e3 * statistics.median(t_times):.1f} "
            f"| {1e3 * statistics.median(g_times):.1f} |"
        )


def low_precision() -> None:
    spec = autograd_spec()
    print("\n| correct layer | dtype | trigrad | gradcheck |")
    print("|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for name in ("conv", "fc1", "norm", "act2"):
            model = CustomNet(seed=0).to(dtype)
            module, layer = _layer(model, spec, name)
            shape = _input_shape(spec, name)
            tv, _ = _trigrad(module, layer, shape, dtype)
            gv, _ = _gradcheck(module, shape, dtype)
            print(f"| {name} | {str(dtype).removeprefix('torch.')} | {tv} | {gv} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    variants(args.repeat)
    low_precision()


if __name__ == "__main__":
    main()
