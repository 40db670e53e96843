"""What the command's child computes (:mod:`harness.isolate` contains it): ``check`` returns the
report's dict, ``sweep`` the sweep's summary, ``infer`` what was inferred. ``send(kind,
**fields)`` reports progress to the parent."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def _check(request: dict, send: Callable[..., None]) -> Any:
    from .target import call, load, run
    from .warm import after_user_code

    value = call(
        load(request["target"], debug=request["debug"]),
        seed=request["seed"],
        dtype=request["dtype"],
        debug=request["debug"],
    )
    after_user_code()
    report = run(
        value,
        seed=request["seed"],
        fd_probes=request["fd_probes"],
        tol_scale=request["tol_scale"],
        progress=lambda name, i, n: send("progress", name=name, done=i, total=n),
    )
    return json.loads(report.to_json())


def _sweep(request: dict) -> dict:
    """``trigrad sweep``: the target returns {"make", "spec", "space", "options"}; a usage
    error found by the sweep is a TargetError (exit 2), as one met before it."""
    from .sweeper import format_config, sweep
    from .target import TargetError, call, load
    from .warm import after_user_code

    value = call(
        load(request["target"], debug=request["debug"]), seed=request["seed"], dtype=None, debug=request["debug"]
    )
    after_user_code()
    if (
        not isinstance(value, dict)
        or not {"make", "spec", "space"} <= set(value)
        or set(value) - {"make", "spec", "space", "options"}
    ):
        raise TargetError(
            "the target must return {'make': make_layer, 'spec': spec_factory, 'space': {...}} "
            f"(and optionally 'options': {{...}}), got {type(value).__name__}"
            + (f" with keys {sorted(value)}" if isinstance(value, dict) else "")
        )
    bar: Any = False  # or the rich Console the sweep's progress bar draws on
    if request["progress"] and sys.stderr.isatty():
        from rich.console import Console

        bar = Console(stderr=True, no_color=request["no_color"] or None)
    try:
        result = sweep(
            value["make"],
            value["spec"],
            value["space"],
            seed=request["seed"],
            max_examples=request["max_examples"],
            time_budget=request["time_budget"],
            shrink_budget=request.get("shrink_budget", 20.0),
            check_kwargs=value.get("options"),
            progress=bar,
        )
    except (ImportError, TypeError, ValueError) as e:
        raise TargetError(str(e)) from e
    if result.usage_error is not None:  # nothing was judged: exit 2, one line
        raise TargetError(f"usage error at {format_config(result.usage_config or {})}: {result.usage_error}")
    if result.examples == 0 and result.skipped:
        raise TargetError(
            f"the spec rejected every configuration drawn ({result.skipped}); last: {result.last_rejection}"
        )
    report = json.loads(result.report.to_json()) if result.report is not None else None
    return {"text": str(result), "ok": result.ok, "report": report}


def work(request: dict, send: Callable[..., None]) -> Any:
    """The child's job: ``check`` returns the report's dict; ``sweep`` the sweep's summary;
    ``infer`` what was inferred (:func:`harness.cli_infer.infer_request`)."""
    if request["command"] == "check":
        return _check(request, send)
    if request["command"] == "infer":
        from .cli_infer import infer_request

        return infer_request(request)
    return _sweep(request)
