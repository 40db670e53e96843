"""The ``trigrad`` command.

* ``trigrad demo`` checks the bundled numpy LeNet, correct and with one mistake
  (``--bug NAME``, ``--list``);
* ``trigrad check TARGET`` checks the user's own code (see :mod:`harness.target`) and
  exits 0 when everything passes, 1 when a disagreement was found, 2 on a usage or
  configuration error (one clear line; ``--debug`` for the traceback);
* ``trigrad refs ARCH`` runs both references on a known architecture and prints how closely
  PyTorch and JAX agree on every layer: the foundation everything else is checked against.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Any, Sequence


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


DTYPES = ("float64", "float32", "float16", "bfloat16")


def _outputs(report: Any, args: argparse.Namespace) -> None:
    if args.json:
        from .report import write_json

        write_json(report, args.json)
    if args.html:
        from .report import write_html

        write_html(report, args.html)


def _console(args: argparse.Namespace) -> Any:
    """Where the human-readable output goes: stdout, or stderr when ``--json -`` takes stdout."""
    from rich.console import Console

    to_stderr = getattr(args, "json", None) == "-"
    return Console(no_color=args.no_color or None, highlight=False, stderr=to_stderr)


def _demo(args: argparse.Namespace) -> int:
    from .demo import list_bugs, run_demo

    console = _console(args)
    if args.list:
        list_bugs(console)
        return 0
    try:
        code, report = run_demo(console, bug=args.bug, seed=args.seed, full=args.full)
    except ValueError as e:
        print(f"trigrad demo: {e}", file=sys.stderr)
        return 2
    _outputs(report, args)
    return code


def _check(args: argparse.Namespace) -> int:
    from .demo import progress_bar, ticker
    from .target import TargetError, call, load, run

    console = _console(args)
    try:
        if args.fd_probes is not None and args.fd_probes < 1:
            raise TargetError(f"--fd-probes must be at least 1, got {args.fd_probes}")
        if args.tol_scale <= 0:
            raise TargetError(f"--tol-scale must be positive, got {args.tol_scale}")
        value = call(load(args.target, debug=args.debug), seed=args.seed, dtype=args.dtype, debug=args.debug)
        with progress_bar(console) if not args.quiet else _null() as bar:
            report = run(value, seed=args.seed, fd_probes=args.fd_probes, tol_scale=args.tol_scale,
                         progress=ticker(bar, "checking"))
        _outputs(report, args)
    except TargetError as e:
        if args.debug:
            traceback.print_exception(e)
        print(f"trigrad check: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --json / --html could not be written
        print(f"trigrad check: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    if not args.quiet:
        from .report import render_terminal

        render_terminal(report, console, full=args.full)
    return 0 if report.ok else 1


def _sweep(args: argparse.Namespace) -> int:
    """``trigrad sweep TARGET``: TARGET's function returns {"make": make_layer, "spec":
    spec_factory, "space": {...}, "options": {check kwargs}}; see :func:`harness.sweep`."""
    from .sweeper import sweep
    from .target import TargetError, call, load

    console = _console(args)
    try:
        value = call(load(args.target, debug=args.debug), seed=args.seed, dtype=None, debug=args.debug)
        if not isinstance(value, dict) or not {"make", "spec", "space"} <= set(value) or \
                set(value) - {"make", "spec", "space", "options"}:
            raise TargetError("the target must return {'make': make_layer, 'spec': spec_factory, 'space': {...}} "
                              f"(and optionally 'options': {{...}}), got {type(value).__name__}"
                              + (f" with keys {sorted(value)}" if isinstance(value, dict) else ""))
        try:
            result = sweep(value["make"], value["spec"], value["space"], seed=args.seed, max_examples=args.max_examples,
                           time_budget=args.time_budget, check_kwargs=value.get("options"),
                           progress=console if not args.quiet else False)
        except (ImportError, TypeError, ValueError) as e:
            raise TargetError(str(e)) from e
        if result.examples == 0 and result.skipped:
            raise TargetError(f"the spec rejected every configuration drawn ({result.skipped}); last: {result.last_rejection}")
        if result.report is not None and args.json:
            from .report import write_json

            write_json(result.report, args.json)
    except TargetError as e:
        if args.debug:
            traceback.print_exception(e)
        print(f"trigrad sweep: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --json could not be written
        print(f"trigrad sweep: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    if not args.quiet:
        console.print(str(result), markup=False, soft_wrap=True)  # the line to reproduce stays one line
        if result.report is not None:
            from .report import render_terminal

            render_terminal(result.report, console)
    return 0 if result.ok else 1


def _null() -> Any:
    from contextlib import nullcontext

    return nullcontext(None)


def _quiet_debug_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print nothing; the exit code tells")
    p.add_argument("--debug", action="store_true", help="show the traceback of a usage or configuration error")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed for inputs, upstream gradients and probes (default 0)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (schema: harness/report/schema.json); - for stdout")
    p.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    p.add_argument("--full", action="store_true", help="show every tensor of passing layers too")
    p.add_argument("--no-color", action="store_true", help="no colour in the terminal output")


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
    demo = sub.add_parser("demo", help="check the bundled numpy LeNet, correct and with one mistake")
    demo.add_argument("--bug", default=None, metavar="NAME", help="which mistake to show (default: a conv backward bug)")
    demo.add_argument("--list", action="store_true", help="list the mistakes --bug can show, and exit")
    _report_options(demo)
    check = sub.add_parser("check", help="check your own layer or network: TARGET is file.py:function or module:function",
                           description="Check the layer or network that TARGET's function returns (a wrapped layer "
                           "or network, or a dict with 'check', 'spec', 'x', 'y', 'loss', 'input_shape'). Exit codes: "
                           "0 all pass, 1 a disagreement was found, 2 usage or configuration error.")
    check.add_argument("target", help="path/to/file.py:function or package.module:function")
    check.add_argument("--dtype", choices=DTYPES, default=None,
                       help="passed to the function as dtype= (it must take one): the dtype to build the layer in")
    check.add_argument("--tol-scale", type=float, default=1.0, help="multiply every tolerance by this (default 1)")
    check.add_argument("--fd-probes", type=int, default=None,
                       help="finite-difference probes per tensor (default 3 for a layer, 2 per layer of a network)")
    _quiet_debug_options(check)
    _report_options(check)
    sw = sub.add_parser("sweep", help="search a layer's hyperparameters for the smallest configuration where its backprop is wrong",
                        description="TARGET's function returns {'make': make_layer, 'spec': spec_factory, 'space': "
                        "{name: [values, smallest first]}, 'options': {check kwargs}}. Exit codes: 0 no failing "
                        "configuration found, 1 one found (shrunk), 2 usage or configuration error.")
    sw.add_argument("target", help="path/to/file.py:function or package.module:function")
    sw.add_argument("--seed", type=int, default=0, help="seed for the search and every check (default 0)")
    sw.add_argument("--max-examples", type=int, default=100, help="configurations to check at most (default 100)")
    sw.add_argument("--time-budget", type=float, default=60.0,
                    help="seconds after which no new configuration is tried, unless shrinking a failure (default 60)")
    sw.add_argument("--json", metavar="FILE", help="write the shrunk failing configuration's report as JSON; - for stdout")
    sw.add_argument("--no-color", action="store_true", help="no colour in the terminal output")
    _quiet_debug_options(sw)
    args = parser.parse_args(argv)
    if args.command == "refs":
        return _refs(args)
    if args.command == "demo":
        from .demo import DEFAULT_BUG

        args.bug = args.bug or DEFAULT_BUG
        return _demo(args)
    if args.command == "check":
        return _check(args)
    if args.command == "sweep":
        return _sweep(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
