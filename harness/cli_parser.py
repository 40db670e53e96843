"""The ``trigrad`` command line (:mod:`harness.cli`): every command's arguments, their help, and a
parser that suggests what a mistyped flag or command was probably meant to be."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import Any, NoReturn

DTYPES = ("float64", "float32", "float16", "bfloat16")


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
    p.add_argument(
        "--no-server",
        action="store_true",
        help="start the check in a fresh interpreter instead of forking it from trigrad's warm server "
        "(which keeps torch and jax imported for 15 idle minutes; also TRIGRAD_SERVER=0)",
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
            names = ", ".join(elsewhere[:-1]) + " and " + elsewhere[-1] if len(elsewhere) > 1 else elsewhere[0]
            return f"{flag} is an option of {names}" + (f", not of {command}" if command else "")
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


def _add_refs(sub: Any) -> None:
    refs = sub.add_parser("refs", help="run both reference networks on a known architecture and show their agreement")
    refs.add_argument("arch", help="lenet5, small_vgg, resnet18, resnet18_cifar")
    refs.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    refs.add_argument("--size", type=int, default=None, help="input height and width (default: the architecture's)")
    refs.add_argument("--seed", type=int, default=0, help="seed for weights, input and upstream gradient")


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="check a bundled network (LeNet, LSTM, custom autograd), correct and with one mistake"
    )
    demo.add_argument(
        "--example",
        default="lenet",
        metavar="NAME",
        help="which bundled network: lenet (default; NHWC CNN), lstm (CS231n-style language model) or "
        "autograd (torch custom autograd Functions)",
    )
    demo.add_argument(
        "--bug", default=None, metavar="NAME", help="which mistake to show (default: one chosen per example)"
    )
    demo.add_argument("--list", action="store_true", help="list the mistakes --bug can show, and exit")
    _report_options(demo)


def _add_check(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="check your own layer or network: TARGET is file.py:function or module:function",
        description="Check the layer or network that TARGET's function returns (a wrapped layer "
        "or network, a dict with 'check', 'spec', 'x', 'y', 'loss', 'input_shape', or an unwrapped "
        "(object, example_x) whose spec is then inferred). Exit codes: "
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


def _add_sweep(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="search the hyperparameters of a layer, loss, network or loss model for the smallest "
        "configuration where its backprop is wrong",
        description="TARGET's function returns {'make': make_layer, 'spec': spec_factory, 'space': "
        "{name: [values, smallest first]}, 'options': {check kwargs}}; make may return a layer, a loss, "
        "a network or a loss model. Exit codes: 0 no failing configuration found (inconclusive ones are "
        "said, not failures), 1 one found (shrunk), 2 usage or configuration error.",
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
        "--shrink-budget",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="seconds to shrink a failure once found; then the smallest found so far is reported (default 20)",
    )
    sw.add_argument(
        "--json", metavar="FILE", help="write the shrunk failing configuration's report as JSON; - for stdout"
    )
    sw.add_argument("--no-color", action="store_true", help="no colour in the terminal output")
    _quiet_debug_options(sw)


def _add_infer(sub: Any) -> None:
    from .cli_infer import parse_shape

    inf = sub.add_parser(
        "infer",
        help="infer the spec, layout and parameter names of your layer or network and print them as Python",
        description="TARGET names a layer or network object, or a function returning one (or "
        "(object, example_x)). Prints what was inferred and the Python (spec, layout, wrap call) to "
        "paste and pin it. Exit codes: 0 inferred exactly, 1 ambiguous or unmatched (the doubt is "
        "printed), 2 usage or configuration error.",
    )
    inf.add_argument("target", help="path/to/file.py:name or package.module:name (an object, or a function)")
    inf.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="N,C,H,W",
        help="the example input's shape in your code's layout (not needed when TARGET returns (object, x))",
    )
    inf.add_argument("--seed", type=int, default=0, help="seed for the example input and the probes (default 0)")
    _quiet_debug_options(inf)


def _add_server(sub: Any) -> None:
    srv = sub.add_parser(
        "server",
        help="show or stop the warm servers that keep torch and jax imported between checks",
        description="trigrad check, sweep and infer fork their child from a warm server that has "
        "torch, jax and trigrad imported (started on first use, one per environment, gone after "
        "15 idle minutes; TRIGRAD_SERVER_IDLE). --no-server or TRIGRAD_SERVER=0 runs without one.",
    )
    srv.add_argument("action", choices=("status", "stop"))


def build_parser(argv: Sequence[str]) -> _Parser:
    """The ``trigrad`` parser with its six commands; ``argv``: the arguments it will parse (its
    hints for a mistyped flag look at the command they name)."""
    from . import __version__

    parser = _Parser(prog="trigrad", description="Is my backward right? Three-way gradient checks.")
    parser.add_argument("--version", action="version", version=f"trigrad {__version__}")
    sub = parser.add_subparsers(dest="command")
    _add_refs(sub)
    _add_demo(sub)
    _add_check(sub)
    _add_sweep(sub)
    _add_infer(sub)
    _add_server(sub)
    parser.argv = list(argv)
    return parser
