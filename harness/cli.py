"""The ``trigrad`` command.

``trigrad refs ARCH`` builds a known architecture's spec, runs both references on random
weights, input and upstream gradient (one seed), and prints how closely PyTorch and JAX
agree on every layer: the foundation everything else is checked against.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence


def _refs(args: argparse.Namespace) -> int:
    import numpy as np

    from reference_models import architectures, build

    from .compare import rel_error
    from .spec import SpecError, init_params, layer_shapes

    make = architectures.ARCHITECTURES.get(args.arch)
    if make is None:
        print(f"trigrad: unknown architecture {args.arch!r}; known: {', '.join(architectures.ARCHITECTURES)}", file=sys.stderr)
        return 2
    spec = make()
    channels, height, width = architectures.INPUT_SHAPES[args.arch]
    shape = (args.batch, channels, args.size or height, args.size or width)
    try:
        shapes = layer_shapes(spec, shape)
    except SpecError as e:
        print(f"trigrad: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=shape)
    params = init_params(spec, shape, seed=args.seed)
    g = rng.normal(size=spec.output_shape(shape))
    timings = {}
    results = {}
    for backend in ("torch", "jax"):
        t0 = time.perf_counter()
        results[backend] = build(backend, spec).vjp(params, x, g)
        timings[backend] = time.perf_counter() - t0
    a, b = results["torch"], results["jax"]
    n_params = sum(v.size for v in params.values())
    print(f"{args.arch}: input {shape}, {n_params:,} parameter values, seed {args.seed}")
    print(f"torch forward+backward {timings['torch']:.2f} s, jax {timings['jax']:.2f} s (eager, float64, first call)")
    print(f"{'layer':<28} {'output shape':<20} {'output (torch vs jax)':<24} {'upstream grad':<14}")
    worst = 0.0
    for path, (_, out_shape) in shapes.items():
        e_out = rel_error(a.outputs[path], b.outputs[path]).norm
        e_grad = rel_error(a.output_grads[path], b.output_grads[path]).norm
        worst = max(worst, e_out, e_grad)
        print(f"{path:<28} {str(out_shape):<20} {e_out:<24.2e} {e_grad:<14.2e}")
    for name in a.param_grads:
        worst = max(worst, rel_error(a.param_grads[name], b.param_grads[name]).norm)
    e_dx = rel_error(a.input_grad, b.input_grad)
    print(f"input gradient: {e_dx}")
    print(f"worst relative error over outputs, upstream and parameter gradients: {worst:.2e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trigrad`` console script; returns the exit code."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="trigrad", description="Is my backward right? Three-way gradient checks.")
    parser.add_argument("--version", action="version", version=f"trigrad {__version__}")
    sub = parser.add_subparsers(dest="command")
    refs = sub.add_parser("refs", help="run both reference networks on a known architecture and show their agreement")
    refs.add_argument("arch", help="lenet5, small_vgg, resnet18, resnet18_cifar")
    refs.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    refs.add_argument("--size", type=int, default=None, help="input height and width (default: the architecture's)")
    refs.add_argument("--seed", type=int, default=0, help="seed for weights, input and upstream gradient")
    args = parser.parse_args(argv)
    if args.command == "refs":
        return _refs(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
