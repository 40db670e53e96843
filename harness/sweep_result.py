"""What a sweep found, as the user reads it: :class:`SweepResult`, the failing configuration
as keyword arguments, its verdict lines, and the line that reruns it (the imports and one
:func:`harness.check_config` call, written as Python a user can paste: functions by their
importable names, trigrad's own objects and numpy values as literals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .results import Report

MakeLayer = Callable[..., Any]
SpecFactory = Callable[..., Any]


@dataclass(frozen=True)
class Inconclusive:
    """A configuration the check could not decide (no entry failed, but one was
    ``inconclusive``, or the two references disagreed: ``reference``): not a failure; the
    search went on. ``config``: the configuration; ``entry``: the report entry, ``verdict``
    its verdict and ``message`` why."""

    config: dict[str, Any]
    entry: str
    verdict: str
    message: str

    def __str__(self) -> str:
        message = self.message.removeprefix(f"{self.verdict}: ")  # the judge's own messages say it first
        why = f": {message}" if message else ""
        return f"{format_config(self.config)}: {self.entry}: {self.verdict}{why}"


@dataclass
class SweepResult:
    """What :func:`sweep` found.

    ``ok``: no failing configuration was found and no usage error stopped the sweep
    (inconclusive configurations do not count); ``examples``: configurations checked;
    ``skipped``: configurations the spec rejected; ``elapsed``: seconds; ``failing``: the
    shrunk failing configuration (None when ok); ``report``: its :class:`~harness.Report`;
    ``reproduce``: one line of Python that reruns that check (it needs ``imports`` first);
    ``timed_out``: the time budget stopped the search, or the shrinking, early;
    ``found_after``: configurations checked when the first failure was found, and
    ``found_at``: seconds until then (the rest of ``elapsed`` was shrinking).
    ``inconclusive``: the configurations no witness could decide (:class:`Inconclusive`), in
    the order met. ``usage_error``: why the sweep stopped without judging the user's code
    (``make`` returned something no check takes, a declaration or option does not fit, the
    spec factory returned an unknown key ...), at ``usage_config``; never shrunk.
    ``style``: the calling style checked (``"layer"``, ``"loss"``, ``"network"``, ``"loss model"``).
    """

    ok: bool
    examples: int
    skipped: int
    elapsed: float
    failing: dict[str, Any] | None = None
    report: Report | None = None
    reproduce: str | None = None
    imports: str | None = None
    seed: int = 0
    timed_out: bool = False
    last_rejection: str | None = None  # the spec's message for the last rejected configuration
    found_after: int | None = None
    found_at: float | None = None
    inconclusive: list[Inconclusive] = field(default_factory=list)
    usage_error: str | None = None
    usage_config: dict[str, Any] | None = None
    style: str | None = None

    def __str__(self) -> str:
        unsure = f", {len(self.inconclusive)} inconclusive" if self.inconclusive else ""
        tried = (
            f"{_count(self.examples, 'configuration')} checked, {self.skipped} rejected by the spec{unsure}, "
            f"{self.elapsed:.1f} s, seed {self.seed}"
        )
        if self.usage_error is not None:
            return "\n".join(
                [
                    f"sweep: usage error, nothing judged ({tried}); at {format_config(self.usage_config or {})}:",
                    f"  {self.usage_error}",
                    "  (a mistake in how the sweep is set up, not a failing configuration: fix it and rerun)",
                ]
            )
        if self.ok:
            stop = "; stopped by the time budget" if self.timed_out else ""
            return "\n".join([f"sweep: no failing configuration ({tried}{stop})", *self._unsure_lines()])
        shrunk = "smallest failing configuration" + (
            " found before the shrink budget ran out" if self.timed_out else ""
        )
        found = f"; the first failure came after {_count(self.found_after, 'configuration')}, {self.found_at:.1f} s"
        lines = [f"sweep: {shrunk} ({tried}{found}):", f"  {format_config(self.failing or {})}"]
        lines += [f"  {line}" for line in _verdict_lines(self.report)]
        lines += ["reproduce:", f"  {self.imports}", f"  {self.reproduce}"]
        return "\n".join(lines + self._unsure_lines())

    def _unsure_lines(self) -> list[str]:
        """The first two inconclusive configurations with their reasons, and how many more."""
        if not self.inconclusive:
            return []
        n = len(self.inconclusive)
        lines = [f"inconclusive (not failures; {_count(n, 'configuration')} no witness could decide):"]
        lines += [f"  {one}" for one in self.inconclusive[:2]]
        return lines + ([f"  ... and {n - 2} more"] if n > 2 else [])


def _count(n: int | None, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_config(cfg: Mapping[str, Any]) -> str:
    """``kernel=3, stride=2, width=5``: a configuration as keyword arguments."""
    return ", ".join(f"{k}={_literal(v)}" for k, v in cfg.items())


# the verdicts that say the user's code is wrong; "inconclusive" and "reference" (the two
# references disagree) say no witness could decide
FAILING = ("forward", "backward", "both", "error")


def failing_entry(report: Report | None) -> Any:
    """The entry to fix first: the earliest failing one not failing only because of an
    earlier one (else the earliest failing one); None when none fails."""
    failing = [layer for layer in (report.layers if report else []) if layer.verdict in FAILING]
    return next((layer for layer in failing if layer.downstream_of is None), failing[0] if failing else None)


def _verdict_lines(report: Report | None) -> list[str]:
    """The failing layer's verdict, its message and diagnosis, or its worst failing tensor."""
    layer = failing_entry(report)
    if layer is None:
        return []
    out = [f"{layer.name}: {layer.verdict}" + (f": {layer.message}" if layer.message else "")]
    out += layer.diagnosis
    if not layer.diagnosis:
        out += [
            f"{t.name}: relative error {max(t.error_torch, t.error_jax):.1e} (tolerance {t.tolerance:.1e}), worst "
            f"element {list(t.worst_index)}: {t.worst_user:.4g} vs {t.worst_ref:.4g} (yours vs torch)"
            for t in layer.tensors
            if not t.ok
        ]
    return out


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _module_path(fn: Any) -> str | None:
    """An importable module name for ``fn``'s module, or None (``__main__``, a function
    defined inside another one)."""
    module = getattr(fn, "__module__", None)
    if not module or module == "__main__" or "<" in _name(fn):
        return None
    if module.startswith("trigrad_target_"):  # a file `trigrad check/sweep` loaded by path: its stem
        stem = module[len("trigrad_target_") :]
        return stem if stem.isidentifier() else None
    return module


def _literal(value: Any) -> str:
    """``repr(value)`` as Python that evaluates to it after ``import harness, numpy``
    (trigrad's own objects such as a Layout, numpy dtypes and scalars)."""
    import numpy as np

    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.dtype):
        return f"numpy.dtype({str(value)!r})"
    if isinstance(value, type) and issubclass(value, np.generic):  # np.float32
        return f"numpy.{value.__name__}"
    text = repr(value)
    if type(value).__module__.split(".")[0] == "harness" and text.startswith(type(value).__name__ + "("):
        return "harness." + text
    return text


def reproduce_line(
    make_layer: MakeLayer,
    spec_factory: SpecFactory,
    config: Mapping[str, Any],
    *,
    seed: int,
    check_kwargs: Mapping[str, Any],
) -> tuple[str, str]:
    """(imports, call): a line of imports and one :func:`check_config` call that reruns the
    check of ``config``; the call returns the Report."""
    modules, names = ["harness"], []
    for fn, role in ((make_layer, "make_layer"), (spec_factory, "spec_factory")):
        module = _module_path(fn)
        local = _name(fn).rpartition(".")[2]
        # a local function or a lambda: named as written (or by its role), to be defined where the line is pasted
        names.append(f"{module}.{_name(fn)}" if module else local if local.isidentifier() else role)
        if module and module not in modules:
            modules.append(module)
    literals = [_literal(v) for v in (*config.values(), *check_kwargs.values())]
    if any("numpy." in t for t in literals):
        modules.append("numpy")
    kwargs = "".join(f", {k}={_literal(v)}" for k, v in check_kwargs.items())
    call = (
        f"harness.check_config({names[0]}, {names[1]}, "
        f"{{{', '.join(f'{k!r}: {_literal(v)}' for k, v in config.items())}}}, seed={seed}{kwargs})"
    )
    return "import " + ", ".join(modules), call


__all__ = ["FAILING", "Inconclusive", "SweepResult", "failing_entry", "format_config", "reproduce_line"]
