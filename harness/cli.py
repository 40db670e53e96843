"""The ``trigrad`` command.

* ``trigrad demo`` checks a bundled network (``--example lenet|lstm|autograd``), correct and with one mistake
  (``--bug NAME``, ``--list``);
* ``trigrad check TARGET`` checks the user's own code (see :mod:`harness.target`) and
  exits 0 when everything passes, 1 when a disagreement was found, 2 on a usage or
  configuration error (one clear line; ``--debug`` for the traceback) or when the check
  did not end with a complete report (the user's code exited, crashed or timed out), 130
  on Ctrl-C. The user's code runs in a child process (:mod:`harness.isolate`); report
  paths are checked before it starts (:mod:`harness.report.paths`);
* ``trigrad sweep TARGET`` searches a layer's hyperparameters (:func:`harness.sweep`), isolated the same way;
* ``trigrad infer TARGET`` infers the spec of the user's layer or network and prints it as
  Python to pin (:mod:`harness.cli_infer`): exit 0 exact, 1 ambiguous or unmatched, 2 usage;
* ``trigrad server status|stop`` shows or ends the warm servers check, sweep and infer fork
  their child from (:mod:`harness.server`; ``--no-server`` runs without one);
* ``trigrad refs ARCH`` runs both references on a known architecture and prints how closely
  PyTorch and JAX agree on every layer: the foundation everything else is checked against.

This module parses and dispatches; the arguments are in :mod:`harness.cli_parser`, the commands
in :mod:`harness.cli_commands` (demo, check, sweep) and :mod:`harness.cli_refs`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cli_parser import DTYPES, build_parser

INTERRUPTED = "trigrad: interrupted; your parameters are restored and no file was written"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trigrad`` console script; returns the exit code."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the command ``args`` names (each command's module imported only when it runs)."""
    if args.command == "refs":
        from .cli_refs import _refs

        return _refs(args)
    if args.command == "demo":
        from .cli_commands import _demo

        return _demo(args)
    if args.command == "check":
        from .cli_commands import _check

        return _check(args)
    if args.command == "server":
        from .cli_server import run

        return run(args)
    if args.command == "infer":
        from .cli_infer import _infer

        return _infer(args)
    if args.command == "sweep":
        from .cli_commands import _sweep

        return _sweep(args)
    parser.print_help()
    return 2


__all__ = ["DTYPES", "INTERRUPTED", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
