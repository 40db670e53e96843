"""The ``trigrad`` command.

* ``trigrad demo`` checks the bundled numpy LeNet, correct and with one mistake
  (``--bug NAME``, ``--list``);
* ``trigrad check TARGET`` checks the user's own code (see :mod:`harness.target`) and
  exits 0 when everything passes, 1 when a disagreement was found, 2 on a usage or
  configuration error (one clear line; ``--debug`` for the traceback) or when the check
  did not end with a complete report (the user's code exited, crashed or timed out), 130
  on Ctrl-C. The user's code runs in a child process (:mod:`harness.isolate`); report
  paths are checked before it starts (:mod:`harness.report.paths`);
* ``trigrad sweep TARGET`` searches a layer's hyperparameters (:func:`harness.sweep`), isolated the same way;
* ``trigrad refs ARCH`` runs both references on a known architecture and prints how closely
  PyTorch and JAX agree on every layer: the foundation everything else is checked against.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

INTERRUPTED = "trigrad: interrupted; your parameters are restored and no file was written"


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
    print(f"torch forward+backward {timings['torch']:.2f} s, jax {timings['jax']:.2f} s (eager, float64, first call)")
    print(f"{'layer':<28} {'output shape':<20} {'output (torch vs jax)':<24} {'upstream grad':<14}")
    worst = 0.0
    for path, (_, out_shape) in shapes.items():
        e_out = rel_error(a.outputs[path], b.outputs[path]).norm
        e_grad = rel_error(a.output_grads[path], b.output_grads[path]).norm
        worst = max(worst, e_out, e_grad)
        print(f"{path:<28} {out_shape!s:<20} {e_out:<24.2e} {e_grad:<14.2e}")
    for name in a.param_grads:
        worst = max(worst, rel_error(a.param_grads[name], b.param_grads[name]).norm)
    e_dx = rel_error(a.input_grad, b.input_grad)
    print(f"input gradient: {e_dx}")
    print(f"worst relative error over outputs, upstream and parameter gradients: {worst:.2e}")
    return 0


DTYPES = ("float64", "float32", "float16", "bfloat16")


def _outputs(report: Any, paths: dict[str, str]) -> None:
    """Write the report files (paths already checked by :func:`check_report_paths`)."""
    if "json" in paths:
        from .report import write_json

        write_json(report, paths["json"])
    if "html" in paths:
        from .report import write_html

        write_html(report, paths["html"])


def _console(args: argparse.Namespace) -> Any:
    """Where the human-readable output goes: stdout, or stderr when ``--json -`` takes stdout."""
    from rich.console import Console

    to_stderr = getattr(args, "json", None) == "-"
    return Console(no_color=args.no_color or None, highlight=False, stderr=to_stderr)


def _demo(args: argparse.Namespace) -> int:
    from .demo import list_bugs, run_demo
    from .report.paths import check_report_paths

    console = _console(args)
    if args.list:
        list_bugs(console)
        return 0
    try:
        outputs = check_report_paths(args.json, args.html)
        code, report = run_demo(console, bug=args.bug, seed=args.seed, full=args.full)
        _outputs(report, outputs)
    except (ValueError, OSError) as e:  # an unknown --bug, a report path refused or unwritable
        print(f"trigrad demo: {e}", file=sys.stderr)
        return 2
    return code


def _say(command: str, message: str) -> int:
    """One line on stderr (escape sequences from the user's strings shown, never emitted); exit 2."""
    from .report.safe_text import visible

    print(f"trigrad {command}: {visible(message, one_line=True)}", file=sys.stderr)
    return 2


def _ended(command: str, outcome: Any) -> int:
    """A check that did not end with a report: one line saying what happened; exit 2 (130
    for an interrupt). Nothing passed."""
    if outcome.kind == "interrupted":
        raise KeyboardInterrupt
    message = outcome.message
    if outcome.kind in ("timeout", "died", "exit"):
        done = (
            f"{len(outcome.done)} entries checked ({', '.join(outcome.done)})" if outcome.done else "no entry checked"
        )
        now = f", stopped in '{outcome.current}'" if outcome.current and outcome.kind != "died" else ""
        message += f"; {done}{now}. Nothing passed: no report"
    return _say(command, message)


def _unsound(report: Any) -> str | None:
    """Why the child's report cannot be trusted for an exit code, or None: it must follow the
    schema, hold at least one entry, and no entry may pass without comparing a tensor."""
    from .report.validate import ReportError, report_data

    try:
        report_data(report)
    except ReportError as e:
        return f"the report is malformed ({e}); nothing passed"
    if not report["layers"]:
        return "nothing was checked (the report has no entries); nothing passed"
    empty = [layer["name"] for layer in report["layers"] if layer["verdict"] == "pass" and not layer["tensors"]]
    if empty:
        return f"entry '{empty[0]}' passes without comparing any tensor; nothing passed"
    return None


def _request(command: str, args: argparse.Namespace, **fields: Any) -> dict:
    return {"command": command, "target": args.target, "seed": args.seed, "debug": args.debug, **fields}


def _paths(args: argparse.Namespace, html: bool = True) -> dict[str, str]:
    """The report paths, checked (:func:`check_report_paths`): before the check, and again
    just before writing, since the user's code ran in between and may have made files."""
    from .report.paths import check_report_paths
    from .target import target_file

    code = target_file(args.target)  # a report must never replace the code under check
    return check_report_paths(args.json, args.html if html else None, [code] if code else [])


def _number_problems(args: argparse.Namespace) -> str | None:
    """A numeric option out of range, said with its name (NaN and infinity are out of range)."""
    finite = lambda v: v == v and v not in (float("inf"), float("-inf"))  # noqa: E731
    if args.seed < 0:
        return f"--seed must be a non-negative integer, got {args.seed}"
    if getattr(args, "fd_probes", None) is not None and args.fd_probes < 1:
        return f"--fd-probes must be at least 1, got {args.fd_probes}"
    if hasattr(args, "tol_scale") and not (args.tol_scale > 0 and finite(args.tol_scale)):
        return f"--tol-scale must be positive and finite, got {args.tol_scale}"
    if args.timeout is not None and not (args.timeout > 0 and finite(args.timeout)):
        return f"--timeout must be a positive number of seconds, got {args.timeout}"
    if hasattr(args, "time_budget") and not (args.time_budget > 0 and finite(args.time_budget)):
        return f"--time-budget must be a positive number of seconds, got {args.time_budget}"
    return None


def _check(args: argparse.Namespace) -> int:
    from .demo import progress_bar, ticker
    from .isolate import run_isolated
    from .report.paths import ReportPathError

    console = _console(args)
    try:
        problem = _number_problems(args)
        if problem:
            return _say("check", problem)
        _paths(args)
        request = _request("check", args, dtype=args.dtype, fd_probes=args.fd_probes, tol_scale=args.tol_scale)
        with progress_bar(console) if not args.quiet else _null() as bar:
            outcome = run_isolated(
                request,
                timeout=args.timeout,
                progress=ticker(bar, "checking"),
                plain_progress=not args.quiet and not sys.stderr.isatty(),
            )
        if outcome.kind != "result":
            return _ended("check", outcome)
        report = outcome.value
        problem = _unsound(report)
        if problem:
            return _say("check", problem)
        if not args.quiet:
            from .report import render_terminal

            render_terminal(report, console, full=args.full)
        _outputs(report, _paths(args))
    except ReportPathError as e:
        return _say("check", str(e))
    except OSError as e:
        return _say("check", f"cannot write {e.filename}: {e.strerror}")
    # the verdicts decide, not a flag the child set
    return 0 if all(layer["verdict"] == "pass" for layer in report["layers"]) else 1


def _sweep(args: argparse.Namespace) -> int:
    """``trigrad sweep TARGET``: TARGET's function returns {"make": make_layer, "spec":
    spec_factory, "space": {...}, "options": {check kwargs}}; see :func:`harness.sweep`."""
    from .isolate import run_isolated
    from .report.paths import ReportPathError

    console = _console(args)
    try:
        problem = _number_problems(args)
        if problem:
            return _say("sweep", problem)
        _paths(args, html=False)
        request = _request(
            "sweep",
            args,
            max_examples=args.max_examples,
            time_budget=args.time_budget,
            progress=not args.quiet,
            no_color=args.no_color,
        )
        outcome = run_isolated(request, timeout=args.timeout, plain_progress=not args.quiet and not sys.stderr.isatty())
        if outcome.kind != "result":
            return _ended("sweep", outcome)
        result = outcome.value
        if result["report"] is not None and (why := _unsound(result["report"])):
            return _say("sweep", why)
        if not args.quiet:
            console.print(result["text"], markup=False, soft_wrap=True)  # the line to reproduce stays one line
            if result["report"] is not None:
                from .report import render_terminal

                render_terminal(result["report"], console)
        # no failing configuration: the JSON says so (an empty report that passes), rather
        # than leaving stdout empty or an older report in place
        from .results import SCHEMA

        empty = {"schema": SCHEMA, "seed": args.seed, "ok": True, "first_failure": None, "layers": []}
        _outputs(result["report"] if result["report"] is not None else empty, _paths(args, html=False))
    except ReportPathError as e:
        return _say("sweep", str(e))
    except OSError as e:
        return _say("sweep", f"cannot write {e.filename}: {e.strerror}")
    return 0 if result["ok"] else 1


def _null() -> Any:
    from contextlib import nullcontext

    return nullcontext(None)


def _quiet_debug_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print nothing; the exit code tells")
    p.add_argument("--debug", action="store_true", help="show the traceback of a usage or configuration error")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds, say how far it got, and exit 2 (default: no limit)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse that suggests what a mistyped flag or command was probably meant to be."""

    argv: Sequence[str] = ()  # the arguments being parsed: which command's flags apply

    def _commands(self) -> dict[str, argparse.ArgumentParser]:
        return next((dict(a.choices) for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})

    def _flags(self, parser: argparse.ArgumentParser) -> list[str]:
        return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]

    def _hint(self, token: str) -> str | None:
        commands = self._commands()
        command = next((a for a in self.argv if a in commands), None)
        mine = self._flags(self) + (self._flags(commands[command]) if command else [])
        flag = token.split("=")[0]
        close = difflib.get_close_matches(flag, mine, n=1)
        if close:
            return f"{token}: did you mean {close[0]}?"
        elsewhere = [name for name, p in commands.items() if flag in self._flags(p)]
        if elsewhere:
            return f"{flag} is an option of {' and '.join(elsewhere)}" + (f", not of {command}" if command else "")
        return None

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        hints = [self._hint(t) for t in unknown.group(1).split() if t.startswith("-")] if unknown else []
        choice = re.search(r"invalid choice: '([^']*)'", message)
        if choice and self._commands():
            close = difflib.get_close_matches(choice.group(1), list(self._commands()), n=1)
            hints += [f"did you mean {close[0]!r}?"] if close else []
        message += "".join(f"\n  {h}" for h in hints if h)
        super().error(message)


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed for inputs, upstream gradients and probes (default 0)")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the report as JSON (schema: harness/report/schema.json); - for stdout",
    )
    p.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    p.add_argument("--full", action="store_true", help="show every tensor of passing layers too")
    p.add_argument("--no-color", action="store_true", help="no colour in the terminal output")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trigrad`` console script; returns the exit code."""
    from . import __version__

    parser = _Parser(prog="trigrad", description="Is my backward right? Three-way gradient checks.")
    parser.add_argument("--version", action="version", version=f"trigrad {__version__}")
    sub = parser.add_subparsers(dest="command")
    refs = sub.add_parser("refs", help="run both reference networks on a known architecture and show their agreement")
    refs.add_argument("arch", help="lenet5, small_vgg, resnet18, resnet18_cifar")
    refs.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    refs.add_argument("--size", type=int, default=None, help="input height and width (default: the architecture's)")
    refs.add_argument("--seed", type=int, default=0, help="seed for weights, input and upstream gradient")
    demo = sub.add_parser("demo", help="check the bundled numpy LeNet, correct and with one mistake")
    demo.add_argument(
        "--bug", default=None, metavar="NAME", help="which mistake to show (default: a conv backward bug)"
    )
    demo.add_argument("--list", action="store_true", help="list the mistakes --bug can show, and exit")
    _report_options(demo)
    check = sub.add_parser(
        "check",
        help="check your own layer or network: TARGET is file.py:function or module:function",
        description="Check the layer or network that TARGET's function returns (a wrapped layer "
        "or network, or a dict with 'check', 'spec', 'x', 'y', 'loss', 'input_shape'). Exit codes: "
        "0 all pass, 1 a disagreement was found, 2 usage or configuration error.",
    )
    check.add_argument("target", help="path/to/file.py:function or package.module:function")
    check.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="passed to the function as dtype= (it must take one): the dtype to build the layer in",
    )
    check.add_argument("--tol-scale", type=float, default=1.0, help="multiply every tolerance by this (default 1)")
    check.add_argument(
        "--fd-probes",
        type=int,
        default=None,
        help="finite-difference probes per tensor (default 3 for a layer, 2 per layer of a network)",
    )
    _quiet_debug_options(check)
    _report_options(check)
    sw = sub.add_parser(
        "sweep",
        help="search a layer's hyperparameters for the smallest configuration where its backprop is wrong",
        description="TARGET's function returns {'make': make_layer, 'spec': spec_factory, 'space': "
        "{name: [values, smallest first]}, 'options': {check kwargs}}. Exit codes: 0 no failing "
        "configuration found, 1 one found (shrunk), 2 usage or configuration error.",
    )
    sw.add_argument("target", help="path/to/file.py:function or package.module:function")
    sw.add_argument("--seed", type=int, default=0, help="seed for the search and every check (default 0)")
    sw.add_argument("--max-examples", type=int, default=100, help="configurations to check at most (default 100)")
    sw.add_argument(
        "--time-budget",
        type=float,
        default=60.0,
        help="seconds after which no new configuration is tried, unless shrinking a failure (default 60)",
    )
    sw.add_argument(
        "--json", metavar="FILE", help="write the shrunk failing configuration's report as JSON; - for stdout"
    )
    sw.add_argument("--no-color", action="store_true", help="no colour in the terminal output")
    _quiet_debug_options(sw)
    parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
