"""Search the hyperparameters of a layer, a loss, a network or a loss model for a
configuration where its backprop is wrong, and shrink it to the smallest such configuration.

Many backprop bugs only show for some configurations: stride 2 with an odd input width,
overlapping pool windows, groups > 1, padding with dilation. :func:`sweep` draws
configurations from a space of hyperparameters, checks each with the check for the code's
calling style (:mod:`harness.sweep_styles`), and lets hypothesis shrink a failing one::

    def make_conv(kernel, stride, padding, width):          # the user's layer
        return MyConv(3, 4, kernel, stride=stride, padding=padding)

    def conv_spec(kernel, stride, padding, width):          # what it should compute
        return tg.Conv2d("conv", 3, 4, kernel, stride=stride, padding=padding), (2, 3, 5, width)

    result = sweep(make_conv, conv_spec, {"kernel": [1, 2, 3], "stride": [1, 2, 3],
                                          "padding": [0, 1], "width": range(3, 8)})
    assert result.ok, result     # prints the shrunk configuration and a line to reproduce it

One configuration is checked by :func:`check_config` (:mod:`harness.sweep_config`, re-exported
here); this module searches and shrinks. Inconclusive configurations are kept apart and the
search goes on; a usage error stops it at once (never shrunk). hypothesis is imported only
inside :func:`sweep` (it is in the ``[test]`` extra).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from .results import Report
from .spec import SpecError
from .sweep_config import MakeLayer, SpecFactory, check_config, evaluate
from .sweep_result import FAILING, Inconclusive, SweepResult, _name, failing_entry, format_config, reproduce_line

NEEDS_HYPOTHESIS = "trigrad sweep needs hypothesis: pip install hypothesis"


class _OutOfTime(BaseException):
    """Raised through hypothesis to end the search when the time budget is spent before any
    failure: a BaseException, so hypothesis lets it pass instead of shrinking it."""


class _Usage(BaseException):
    """Raised through hypothesis at a usage error (:class:`~harness.sweep_styles.UsageError`):
    a mistake in the sweep's setup to report at once, not a failure to shrink."""


class _Failing(Exception):
    """Raised inside the hypothesis test for a failing configuration; hypothesis shrinks it."""


# --------------------------------------------------------------------------- the search


def _strategies(space: Mapping[str, Any]) -> dict[str, Any]:
    """One hypothesis strategy per hyperparameter: lists, tuples, ranges and 1-D numpy arrays
    are sampled (shrinking toward their first element), strategies are used as they are."""
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy

    out = {}
    for name, values in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"sweep: hyperparameter names must be identifiers (they are keyword arguments), got {name!r}"
            )
        if isinstance(values, SearchStrategy):
            out[name] = values
        elif isinstance(values, (list, tuple, range)) or type(values).__name__ == "ndarray":
            if len(values) == 0:
                raise ValueError(f"sweep: no values for {name!r}")
            out[name] = st.sampled_from(list(values) if type(values).__name__ == "ndarray" else values)
        else:
            raise TypeError(
                f"sweep: {name!r} must be a list of values (smallest first), a range or a hypothesis "
                f"strategy, got {type(values).__name__}"
            )
    return out


def _check_signature(fn: Callable[..., Any], names: list[str], role: str) -> None:
    """Refuse, before any check runs, a function that cannot take the space's names."""
    if not callable(fn):
        raise TypeError(f"sweep: {role} must be a function, got {type(fn).__name__}")
    try:
        inspect.signature(fn).bind(**dict.fromkeys(names))
    except TypeError as e:
        raise TypeError(
            f"sweep: {role} {_name(fn)}() cannot take the hyperparameters {names} as keyword arguments: {e}"
        ) from None
    except ValueError:  # no signature (a builtin): find out when it is called
        pass


class _Search:
    """The state of one sweep: results by configuration (so hypothesis's replays and repeated
    shrink candidates cost nothing and can never disagree), counts, clocks."""

    def __init__(
        self,
        make_layer: MakeLayer,
        spec_factory: SpecFactory,
        seed: int,
        check_kwargs: Mapping[str, Any],
        time_budget: float,
        shrink_budget: float,
        tick: Callable[[_Search], None],
    ) -> None:
        self.make_layer, self.spec_factory, self.seed, self.check_kwargs = make_layer, spec_factory, seed, check_kwargs
        self.time_budget, self.shrink_budget, self.tick = time_budget, shrink_budget, tick
        self.start = time.monotonic()
        self.first_failure_at: float | None = None
        self.found_after: int | None = None
        self.results: dict[str, Report | None] = {}  # None: rejected by the spec
        self.configs: dict[str, dict[str, Any]] = {}
        self.examples = self.skipped = self.failures = 0
        self.timed_out = False
        self.last_rejection: str | None = None
        self.inconclusive: list[Inconclusive] = []
        self.usage: tuple[str, dict[str, Any]] | None = None  # (message, configuration)
        self.style: str | None = None

    def run(self, cfg: dict[str, Any]) -> None:
        """The body of the hypothesis test: raise _Failing for a failing configuration (an
        inconclusive one passes: the search goes on), _Usage at a usage error."""
        from hypothesis import assume

        key = repr(sorted(cfg.items()))
        if key not in self.results:
            self._budget()
            self.results[key], self.configs[key] = self._evaluate(cfg), cfg
            self.tick(self)
        report = self.results[key]
        assume(report is not None)
        if failing_entry(report) is not None:
            raise _Failing(key)

    def _budget(self) -> None:
        """Stop generating when the time budget is spent; once a failure is found, refuse new
        shrink candidates when the shrink budget is spent (hypothesis then reports the
        smallest failure it has)."""
        from hypothesis import assume

        now = time.monotonic()
        if self.first_failure_at is None:
            if now - self.start > self.time_budget:
                self.timed_out = True
                raise _OutOfTime
        elif now - self.first_failure_at > self.shrink_budget:
            self.timed_out = True
            assume(False)

    def _evaluate(self, cfg: dict[str, Any]) -> Report | None:
        """The configuration's Report (None: rejected); a usage error is kept and raised as _Usage."""
        from .sweep_styles import UsageError

        try:
            style, report = evaluate(self.make_layer, self.spec_factory, cfg, self.seed, self.check_kwargs)
        except UsageError as e:
            self.usage = (str(e), cfg)
            raise _Usage from e
        except SpecError as e:  # the spec refuses the configuration, or its input in the code's layout
            self.skipped += 1
            self.last_rejection = str(e)
            return None
        self.examples += 1
        self.style = style or self.style
        if failing_entry(report) is not None:
            self.failures += 1
            if self.first_failure_at is None:
                self.first_failure_at, self.found_after = time.monotonic(), self.examples
        elif not report.ok:  # nothing failed, something could not be decided
            entry = next(layer for layer in report.layers if not layer.ok)
            self.inconclusive.append(Inconclusive(dict(cfg), entry.name, entry.verdict, entry.message))
        return report


def _progress(progress: Any, max_examples: int) -> tuple[Any, Callable[[_Search], None]]:
    """A rich progress bar (a context manager) and the callback updating it, or a no-op
    pair when ``progress`` is False or the output is not a terminal."""
    from contextlib import nullcontext

    if progress is False:
        return nullcontext(), lambda s: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = progress if isinstance(progress, Console) else Console()
    if not console.is_terminal:
        return nullcontext(), lambda s: None
    bar = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("sweep", total=max_examples, status="")

    def tick(s: _Search) -> None:
        unsure = f", {len(s.inconclusive)} inconclusive" if s.inconclusive else ""
        status = f"{s.skipped} rejected{unsure}, {s.failures} failing" + (": shrinking" if s.failures else "")
        bar.update(task, completed=min(s.examples, max_examples), status=status)

    return bar, tick


def sweep(
    make_layer: MakeLayer,
    spec_factory: SpecFactory,
    space: Mapping[str, Any],
    *,
    seed: int = 0,
    max_examples: int = 100,
    time_budget: float = 60.0,
    shrink_budget: float = 20.0,
    check_kwargs: Mapping[str, Any] | None = None,
    progress: bool | Any = True,
) -> SweepResult:
    """Search ``space`` for a configuration where the user's backprop disagrees with the
    references, and shrink it to the smallest one.

    ``space``: hyperparameter name -> a list of values, smallest first (hypothesis shrinks
    toward the first), a ``range``, or a hypothesis strategy; earlier names are shrunk first.
    Each drawn configuration is passed as keyword arguments to ``make_layer``, which returns
    the user's code in any calling style (a layer, a loss, a network or a loss model, each
    checked by its own check: :mod:`harness.sweep_styles`), and to ``spec_factory``, which
    returns ``(spec, input shape)`` (the shape in the code's declared layout) or a dict with
    ``spec`` and that configuration's check options (``input_shape``, ``x``, ``y``, ``loss``,
    ``dtype``, ``input_scale``, ``input_shift``, ``tol_scale``, ``fd_probes``; any other key is
    a usage error). ``check_kwargs``: options for every configuration's check (``layout=``,
    ``params=`` ... for a raw object's wrap).

    A configuration the spec rejects (a SpecError from ``spec_factory``, an input that does
    not fit the spec) is skipped. One whose check gives a failing verdict (forward, backward,
    both, or error, including the user's code raising) is a failure, shrunk. One where nothing
    fails but something is inconclusive (or the references disagree) is kept in
    ``inconclusive`` and the search goes on. A usage error (``make_layer`` returned something
    no check takes, a declaration or option that does not fit, ``spec_factory`` raising or
    returning something else) stops the sweep at once: ``usage_error``, ``ok`` False, never shrunk.

    At most ``max_examples`` configurations are checked; none is started after ``time_budget``
    seconds unless a failure was found, which then gets ``shrink_budget`` more seconds of
    shrinking (``timed_out`` when cut short). The same ``seed`` gives the same result unless a
    budget cuts in. Nothing is written to disk (sweeps run under pytest-xdist). ``progress``: a
    rich progress bar on a terminal (or the rich Console to draw on). Inside a hypothesis test,
    suppress ``HealthCheck.nested_given``. A bad ``space`` is refused before any check.
    """
    try:
        import hypothesis  # noqa: F401  (only to say what is missing before anything else)
    except ImportError:
        raise ImportError(NEEDS_HYPOTHESIS) from None

    if max_examples < 1 or time_budget <= 0 or shrink_budget <= 0:
        raise ValueError(
            f"sweep: max_examples must be at least 1 and the budgets positive, got max_examples="
            f"{max_examples}, time_budget={time_budget}, shrink_budget={shrink_budget}"
        )
    check_kwargs = dict(check_kwargs or {})
    strategies = _strategies(space)
    _check_signature(make_layer, list(space), "make_layer")
    _check_signature(spec_factory, list(space), "spec_factory")
    bar, tick = _progress(progress, max_examples)
    search = _Search(make_layer, spec_factory, seed, check_kwargs, time_budget, shrink_budget, tick)
    with bar:
        failing_key = _explore(search, strategies, max_examples)
    return _result(search, failing_key, space)


def _explore(search: _Search, strategies: dict[str, Any], max_examples: int) -> str | None:
    """Run hypothesis over the configurations, seeded with the sweep's seed: the key of the
    shrunk failing configuration, or None when none failed (or the time ran out first)."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import strategies as st

    # the "default" profile as parent: a profile the caller's test suite loaded must not leak in
    config = settings(
        settings.get_profile("default"),
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )

    @hypothesis.seed(search.seed)
    @config
    @given(st.fixed_dictionaries(strategies))
    def search_space(cfg: dict[str, Any]) -> None:
        search.run(cfg)

    try:
        search_space()
    except (_OutOfTime, _Usage):  # _Usage: search.usage says what
        pass
    except _Failing as e:
        return e.args[0]
    except hypothesis.errors.Unsatisfiable:  # every configuration drawn was rejected by the spec
        pass
    return None


def _result(search: _Search, failing_key: str | None, space: Mapping[str, Any]) -> SweepResult:
    order = lambda cfg: {k: cfg[k] for k in space}  # noqa: E731  (in the space's order)
    result = SweepResult(
        ok=failing_key is None and search.usage is None,
        examples=search.examples,
        skipped=search.skipped,
        elapsed=time.monotonic() - search.start,
        seed=search.seed,
        timed_out=search.timed_out,
        last_rejection=search.last_rejection,
        inconclusive=[Inconclusive(order(u.config), u.entry, u.verdict, u.message) for u in search.inconclusive],
        style=search.style,
    )
    if search.usage is not None:
        result.usage_error, result.usage_config = search.usage[0], order(search.usage[1])
    elif failing_key is not None:
        result.found_after = search.found_after
        result.found_at = search.first_failure_at - search.start  # type: ignore[operator]
        result.failing = order(search.configs[failing_key])
        result.report = search.results[failing_key]
        result.imports, result.reproduce = reproduce_line(
            search.make_layer, search.spec_factory, result.failing, seed=search.seed, check_kwargs=search.check_kwargs
        )
    return result


__all__ = ["FAILING", "Inconclusive", "SweepResult", "check_config", "format_config", "reproduce_line", "sweep"]
