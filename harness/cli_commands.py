"""``trigrad demo``, ``trigrad check`` and ``trigrad sweep`` (:mod:`harness.cli`): run the command,
write the report files and decide the exit code. ``check`` and ``sweep`` run the user's code in a
child process (:mod:`harness.isolate`) and trust only a complete, well-formed report; everything
that stops them is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any


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
    try:
        if args.list:
            list_bugs(console, args.example)
            return 0
        outputs = check_report_paths(args.json, args.html)
        code, report = run_demo(console, bug=args.bug, seed=args.seed, full=args.full, example_name=args.example)
        _outputs(report, outputs)
    except (ValueError, OSError) as e:  # an unknown --example or --bug, a report path refused or unwritable
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


def _server(args: argparse.Namespace) -> bool:
    from .server_client import wanted

    return wanted(args.no_server)


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
    if hasattr(args, "shrink_budget") and not (args.shrink_budget > 0 and finite(args.shrink_budget)):
        return f"--shrink-budget must be a positive number of seconds, got {args.shrink_budget}"
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
                server=_server(args),
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
    spec_factory, "space": {...}, "options": {check kwargs}} (make in any calling style); see
    :func:`harness.sweep`. Exit 1 on a failing configuration, 2 on a usage error (one line,
    from the child), 0 otherwise: inconclusive configurations alone are said, not failures."""
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
            shrink_budget=args.shrink_budget,
            progress=not args.quiet,
            no_color=args.no_color,
        )
        outcome = run_isolated(
            request,
            timeout=args.timeout,
            plain_progress=not args.quiet and not sys.stderr.isatty(),
            server=_server(args),
        )
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
