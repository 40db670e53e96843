"""``trigrad refs ARCH``: both references on a known architecture, and how closely PyTorch and JAX
agree on every layer's output, upstream gradient and parameter gradient (the foundation every
check is measured against). Run by :mod:`harness.cli`."""

from __future__ import annotations

import argparse
import sys
import time


def _refs(args: argparse.Namespace) -> int:
    import numpy as np

    from reference_models import architectures, build

    from .compare import rel_error
    from .spec import SpecError, init_params, layer_shapes

    make = architectures.ARCHITECTURES.get(args.arch)
    if make is None:
        print(
            f"trigrad: unknown architecture {args.arch!r}; known: {', '.join(architectures.ARCHITECTURES)}",
            file=sys.stderr,
        )
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
    print(
        f"torch forward+backward {timings['torch']:.2f} s, jax {timings['jax']:.2f} s (torch eager, jax jitted; float64; first call, compiling included)"
    )
    print(f"{'layer':<28} {'output shape':<20} {'output (torch vs jax)':<24} {'upstream grad':<14}")
    worst = 0.0
    for path, (_, out_shape) in shapes.items():
        e_out = rel_error(a.outputs[path], b.outputs[path]).norm
        e_grad = rel_error(a.output_grads[path], b.output_grads[path]).norm
        worst = max(worst, e_out, e_grad)
        print(f"{path:<28} {out_shape!s:<20} {e_out:<24.2e} {e_grad:<14.2e}")
    for name in a.param_grads:
        worst = max(worst, rel_error(a.param_grads[name], b.param_grads[name]).norm)
    # None: the input is integer indices (an Embedding first), which has no gradient
    e_dx = "none (integer indices)" if a.input_grad is None else rel_error(a.input_grad, b.input_grad)
    print(f"input gradient: {e_dx}")
    print(f"worst relative error over outputs, upstream and parameter gradients: {worst:.2e}")
    return 0
