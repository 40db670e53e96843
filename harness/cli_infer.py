"""``trigrad infer TARGET`` (:mod:`harness.cli`): infer the spec, layout and parameter names of
the user's layer or network and print them as Python to paste and pin.

TARGET is ``file.py:name`` or ``package.module:name`` naming a layer or network object, or a
function (or class) returning one, or returning ``(object, example_x)``. The example input is
that ``x``, else one drawn from ``--seed`` with ``--input-shape`` (in the code's own layout).
The user's code runs in a child process (:mod:`harness.isolate`), as for ``check``. Exit 0
when every layer is inferred exactly, 1 when one is ambiguous or unmatched (the Python is
printed all the same, with the doubt as a comment), 2 on a usage error (one line).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any


def parse_shape(text: str) -> tuple[int, ...]:
    """``"2,3,8,8"`` -> ``(2, 3, 8, 8)`` (``--input-shape``); positive integers only."""
    try:
        shape = tuple(int(v) for v in text.replace(" ", "").strip("()").split(","))
    except ValueError:
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive sizes in your code's layout, like 2,3,8,8, got {text!r}"
        )
    return shape


# ----------------------------------------------------------------------------- child side


def _target_object(request: dict) -> tuple[Any, Any, str]:
    """(the object, its example input or None, the source that names it in the printed Python)."""
    import numpy as np  # here, not at the top: the command line's parent imports this module

    from .target import call, load

    value = load(request["target"], debug=request["debug"], objects=True)
    name = request["target"].rpartition(":")[2]
    if not (inspect.isroutine(value) or isinstance(value, type)):
        return value, None, name  # the object itself (a layer called as layer(x) is callable too)
    got = call(value, seed=request["seed"], dtype=None, debug=request["debug"])
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], np.ndarray):
        return got[0], got[1], f"{name}()[0]"
    return got, None, f"{name}()"


def infer_request(request: dict) -> dict:
    """The child's job for ``trigrad infer``: ``{"status", "summary", "python"}``; a
    :class:`~harness.target.TargetError` (exit 2) for a target that is not a layer or network
    or has no example input."""
    from .inference.api import infer, inferable
    from .spec import SpecError
    from .target import TargetError

    obj, x, source = _target_object(request)
    from .warm import after_user_code

    after_user_code()
    if not inferable(obj):
        raise TargetError(
            f"{request['target']} gives a {type(obj).__name__}, which has no forward(): name a layer or network "
            "object (forward(x) / backward(dy)), or a function returning one or (object, example_x)"
        )
    shape = request["input_shape"]
    if x is not None and shape is not None:
        raise TargetError(
            f"{request['target']} returns its own example input {tuple(x.shape)}; drop --input-shape "
            f"{','.join(map(str, shape))} (or return the object alone)"
        )
    if x is None and shape is None:
        raise TargetError(
            f"no example input for the {type(obj).__name__}: pass --input-shape N,C,H,W (in your code's "
            "layout), or make the target a function returning (object, x)"
        )
    try:
        inference = infer(obj, x, input_shape=shape, seed=request["seed"])
    except SpecError as e:
        raise TargetError(str(e)) from e
    var = "obj" if source.endswith(")") or source.endswith("]") else source
    python = inference.to_python(var)
    if var != source:  # say where obj comes from
        python = python.replace("import harness as tg\n", f"import harness as tg\n\nobj = {source}\n", 1)
    return {"status": inference.status, "summary": str(inference), "python": python}


# ----------------------------------------------------------------------------- parent side


def _infer(args: argparse.Namespace) -> int:
    """``trigrad infer TARGET``: print what was inferred and the Python to pin it; the exit
    code says whether it was exact."""
    from .cli_commands import _ended, _say
    from .isolate import run_isolated
    from .server_client import wanted

    if args.seed < 0:
        return _say("infer", f"--seed must be a non-negative integer, got {args.seed}")
    if args.timeout is not None and not args.timeout > 0:
        return _say("infer", f"--timeout must be a positive number of seconds, got {args.timeout}")
    request = {
        "command": "infer",
        "target": args.target,
        "seed": args.seed,
        "debug": args.debug,
        "input_shape": list(args.input_shape) if args.input_shape else None,
    }
    outcome = run_isolated(request, timeout=args.timeout, server=wanted(args.no_server))
    if outcome.kind != "result":
        return _ended("infer", outcome)
    value = outcome.value
    if not args.quiet:
        print(value["summary"])
        print()
        print(value["python"], end="")
    sys.stdout.flush()
    return 0 if value["status"] == "exact" else 1


__all__ = ["infer_request", "parse_shape"]
