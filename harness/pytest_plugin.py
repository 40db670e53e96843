"""trigrad's pytest plugin (registered through the ``pytest11`` entry point as ``trigrad``).

It adds the ``backprop`` fixture and three options; it imports nothing heavy until a test
uses the fixture::

    def test_my_conv(backprop):
        backprop.check(MyConv(), harness.Conv2d("conv", 3, 8, 3), layout=harness.Layout(kernel="HWIO"))

    def test_my_conv_did_not_change(backprop):
        backprop.snapshot(harness.wrap_layer(MyConv(), spec))   # __trigrad__/<module>/<test>.npz + .json

* ``backprop.check(...)``: the three-way check; a failing check fails the test with the
  report table as the message. Returns the :class:`~harness.Report`.
* ``backprop.snapshot(code, name=None, ...)``: compares the code with the snapshot stored
  next to the test file (``__trigrad__/<module>/<class_function_params>-<hash>.npz``, one
  per test and ``name``); a missing snapshot is recorded and the test fails once, asking for
  a look (as pytest-regressions does); ``--trigrad-update`` rewrites snapshots instead. A
  folder that cannot be written fails the test with a message naming it and what to do.
* ``backprop.equivalent(old, new, spec, ...)``: two versions of the code, one report.

Options: ``--trigrad-update``, ``--trigrad-seed N`` (every check's seed),
``--trigrad-html DIR`` (an HTML page per check, named after the test; a relative DIR is
read from where pytest was started, not from a test's working directory).

Under pytest-xdist (``pytest -n auto``): every test has its own snapshot and HTML files, so
workers share only folders; snapshot writes are atomic and locked per folder
(:mod:`harness.snapshot_files`), HTML pages are written atomically. The plugin keeps no
state of its own across tests: what each test did travels in its report's
``user_properties`` (``("trigrad", event)``), which xdist sends to the controller, and the
``trigrad:`` line at the end of the session is counted from the reports there, so it is the
same with and without ``-n``. Without ``fcntl`` (Windows) snapshot writes are not locked:
harmless while each test runs once, so ``--dist each`` gets a warning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT_DIR = "__trigrad__"
PROPERTY = "trigrad"  # the user_properties name of what a test's fixture did (see _note)
OWN_PACKAGES = ("harness", "reference_models")  # never assertion-rewritten (see _not_rewritten)


def _not_rewritten() -> None:
    """Take trigrad's packages off pytest's assertion-rewriting list (pytest puts every
    package of a plugin's distribution on it). Their asserts are internal invariants, and a
    rewritten import parses the source with ``ast.parse``, which CPython 3.11 cannot run in
    two threads at once ("SystemError: AST constructor recursion depth mismatch"): a
    process's first check imports the torch and jax references side by side
    (:mod:`harness.reference_pair`)."""
    import sys

    for hook in sys.meta_path:
        marked, cache = getattr(hook, "_must_rewrite", None), getattr(hook, "_marked_for_rewrite_cache", None)
        if isinstance(marked, set):
            marked.difference_update(OWN_PACKAGES)
        if isinstance(cache, dict):
            for name in [n for n in cache if n.split(".")[0] in OWN_PACKAGES]:
                del cache[name]


_not_rewritten()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trigrad", "trigrad backprop checks")
    group.addoption(
        "--trigrad-update",
        action="store_true",
        default=False,
        help="record trigrad snapshots anew instead of comparing with them",
    )
    group.addoption(
        "--trigrad-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for every trigrad check (default: each call's own, else 0)",
    )
    group.addoption(
        "--trigrad-html", default=None, metavar="DIR", help="write one HTML report per trigrad check into DIR"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Count what the fixture did on the process that prints the summary (pytest-xdist's
    controller, or the only process), and warn where parallel snapshot writes are unlocked."""
    if hasattr(config, "workerinput"):  # an xdist worker: its reports go to the controller
        return
    config.pluginmanager.register(Summary(_html_dir(config)), "trigrad-summary")
    if config.getoption("dist", "no") == "each" and not _can_lock():
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                "trigrad: this platform has no fcntl, so snapshot writes are not locked, and --dist each runs "
                "every test on every worker: two workers recording the same snapshot at once can leave its .npz "
                "and .json from different writes, which the next run refuses. Record snapshots without -n "
                "(or without --dist each)."
            ),
            stacklevel=2,
        )


def _can_lock() -> bool:
    """Whether snapshot writes are serialised (:mod:`harness.snapshot_files` uses ``fcntl.flock``);
    asked without importing numpy, as loading the plugin imports nothing heavy."""
    return importlib.util.find_spec("fcntl") is not None


def _html_dir(config: pytest.Config) -> Path | None:
    """``--trigrad-html DIR``, a relative DIR read from where pytest was started (a test that
    changes its working directory must not move the pages; xdist workers start there too)."""
    given = config.getoption("trigrad_html")
    return Path(config.invocation_params.dir, given) if given else None


_EVENTS = (  # (event, how the summary names it), per kind, in the summary's order
    ("check", [("check failed", "failed")]),
    (
        "snapshot",
        [
            ("snapshot unchanged", "unchanged"),
            ("snapshot changed", "changed"),
            ("snapshot refused", "refused (unreadable or edited)"),
            ("snapshot recorded", "recorded (new: rerun to compare)"),
            ("snapshot updated", "rewritten (--trigrad-update)"),
            ("snapshot error", "not recorded (an error)"),
        ],
    ),
    ("old-vs-new comparison", [("equivalent differs", "differ")]),
)


def summary(counts: Counter[str], html_dir: Path | None = None) -> str | None:
    """The session's ``trigrad:`` line from the events the tests reported (see
    :class:`Summary`), or None when no test used the fixture."""
    parts = []
    for kind, events in _EVENTS:
        total = counts[kind] if kind != "snapshot" else sum(counts[e] for e, _ in events)
        if not total:
            continue
        shown = [f"{counts[e]} {what}" for e, what in events if counts[e]]
        if kind == "snapshot":
            pinned = counts["snapshot pinned"]
            shown += [f"{pinned} pinning a disagreement recorded with it"] if pinned else []
            parts.append(f"{total} snapshot{'s' * (total != 1)}: {', '.join(shown)}")
        else:
            parts.append(f"{total} {kind}{'s' * (total != 1)}" + (f" ({', '.join(shown)})" if shown else ""))
    if counts["html"]:
        parts.append(f"{counts['html']} HTML page{'s' * (counts['html'] != 1)} in {html_dir}")
    return "trigrad: " + "; ".join(parts) if parts else None


class Summary:
    """Counts the fixture's events from the test reports and prints :func:`summary` at the end.

    Each test's events travel in its report's ``user_properties``, which pytest-xdist sends
    from the workers to the controller, where this plugin runs: so the counts cover every
    worker, and are the same with and without ``-n``. No state is shared between processes."""

    def __init__(self, html_dir: Path | None) -> None:
        self.counts: Counter[str] = Counter()
        self.html_dir = html_dir

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":  # it carries every property the test added, once per test
            self.counts.update(
                str(p[1])
                for p in report.user_properties
                if isinstance(p, (tuple, list)) and len(p) == 2 and p[0] == PROPERTY
            )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        line = summary(self.counts, self.html_dir)
        if line:
            terminalreporter.write_line(line)


def _table(report: Any) -> str:
    from rich.console import Console

    from .report import render_terminal

    buf = io.StringIO()
    render_terminal(report, Console(file=buf, width=120, no_color=True, highlight=False))
    return buf.getvalue()


class Backprop:
    """The ``backprop`` fixture: checks that fail the test with their report."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        config = request.config
        self.update: bool = config.getoption("trigrad_update")
        self.seed: int | None = config.getoption("trigrad_seed")
        self.html_dir: Path | None = _html_dir(config)
        self._calls = 0

    def _note(self, event: str) -> None:
        """Add ``event`` to this test's report, for :class:`Summary` (on xdist's controller)."""
        self._request.node.user_properties.append((PROPERTY, event))

    # -- helpers
    def _seed(self, seed: int | None) -> int:
        return self.seed if self.seed is not None else (seed if seed is not None else 0)

    def _stem(self, name: str | None) -> str:
        """A file name unique to this test (class, function and parameters) and ``name``:
        readable, with a short hash of the exact test id so ``a/b`` and ``a_b`` differ."""
        node = self._request.node.nodeid.split("::", 1)[-1]
        key = f"{node}|{name or ''}"
        readable = re.sub(r"[^\w-]+", "_", node + (f"-{name}" if name else "")).strip("_")[:80]
        return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"

    def _html(self, report: Any) -> None:
        if not self.html_dir:
            return
        from .report import write_html

        self._calls += 1
        self.html_dir.mkdir(parents=True, exist_ok=True)
        module = re.sub(r"[^\w-]+", "_", str(Path(self._request.node.nodeid.split("::")[0]).with_suffix("")))
        write_html(report, self.html_dir / f"{module}.{self._stem(None)}.{self._calls}.html")
        self._note("html")

    # -- the checks
    def check(
        self,
        code: Any,
        spec: Any = None,
        *,
        x: Any = None,
        y: Any = None,
        loss: Any = None,
        input_shape: tuple[int, ...] | None = None,
        seed: int | None = None,
        tol_scale: float = 1.0,
        fd_probes: int | None = None,
        **wrap_kwargs: Any,
    ) -> Any:
        """Check ``code`` (a wrapped layer or network, a CS231n model, or a raw layer object
        or ``{name: layer}`` mapping with its ``spec``) and fail the test if it disagrees."""
        from .target import TargetError, run

        value = {
            "check": code,
            "spec": spec,
            "x": x,
            "y": y,
            "loss": loss,
            "input_shape": input_shape,
            "options": wrap_kwargs,
        }
        self._note("check")
        try:
            report = run(value, seed=self._seed(seed), fd_probes=fd_probes, tol_scale=tol_scale)
        except TargetError as e:
            self._note("check failed")
            pytest.fail(f"trigrad: {e}", pytrace=False)
        self._html(report)
        if not report.ok:
            self._note("check failed")
            pytest.fail(_table(report), pytrace=False)
        return report

    def snapshot(
        self,
        code: Any,
        name: str | None = None,
        *,
        x: Any = None,
        input_shape: tuple[int, ...] | None = None,
        seed: int | None = None,
        tol_scale: float = 1.0,
    ) -> Any:
        """Compare wrapped ``code`` with its snapshot in ``__trigrad__/<test module>/`` next to
        the test file; record it when missing (failing once) or under ``--trigrad-update``."""
        from .regress import compare
        from .snapshot import SnapshotError, paths

        folder = Path(str(self._request.node.path)).parent / SNAPSHOT_DIR / Path(str(self._request.node.path)).stem
        path = folder / self._stem(name)
        if self.update or not all(p.is_file() for p in paths(path)):
            return self._record(code, path, x=x, input_shape=input_shape, seed=seed)
        try:
            result = compare(code, path, tol_scale=tol_scale)
        except SnapshotError as e:
            self._note("snapshot refused")
            pytest.fail(f"trigrad: {e}", pytrace=False)
        if not result.ok:
            self._note("snapshot changed")
            pytest.fail(
                f"{result}\n(snapshot {paths(path)[0]}; rerun with --trigrad-update if the change is intended)",
                pytrace=False,
            )
        self._note("snapshot unchanged")
        if result.wrong_when_recorded:  # unchanged is a pass, but the summary should say what is pinned
            import warnings

            self._note("snapshot pinned")
            warnings.warn(
                f"trigrad: {', '.join(result.wrong_when_recorded)} in {paths(path)[0].name} disagreed with "
                "the reference when recorded; the snapshot pins that behaviour",
                stacklevel=2,
            )
        return result

    def _record(self, code: Any, path: Path, *, x: Any, input_shape: Any, seed: int | None) -> None:
        """Record ``code``'s snapshot at ``path``; fail the test when it was missing (it needs a
        look) or could not be recorded. Under pytest-xdist two workers run one test only with
        ``--dist each``; their writes of the same pair are then serialised by
        :func:`harness.snapshot_files.write_pair`, and the last one wins whole."""
        from .frames import user_frame
        from .snapshot import SnapshotError, paths, record

        try:
            snap = record(code, x=x, input_shape=input_shape, seed=self._seed(seed))
        except Exception as e:  # the user's code raised while being recorded: say where
            self._note("snapshot error")
            pytest.fail(f"trigrad: recording the snapshot failed: {user_frame(e)}", pytrace=False)
        try:
            snap.save(path)
        except SnapshotError as e:  # a read-only or misplaced folder: say which and what to do
            self._note("snapshot error")
            pytest.fail(
                f"trigrad: {e}, or record the snapshots with --trigrad-update in a checkout where it is "
                "writable and commit them.",
                pytrace=False,
            )
        if self.update:
            self._note("snapshot updated")
            return
        self._note("snapshot recorded")
        pytest.fail(
            f"trigrad: no snapshot yet; recorded {paths(path)[0]} and {paths(path)[1].name}. Look at "
            "them (or at the check) and rerun: later runs compare with it.",
            pytrace=False,
        )

    def equivalent(
        self,
        old: Any,
        new: Any,
        spec_or_shape: Any = None,
        *,
        x: Any = None,
        input_shape: tuple[int, ...] | None = None,
        seed: int | None = None,
        tol_scale: float = 1.0,
        **wrap_kwargs: Any,
    ) -> Any:
        """Fail unless ``new`` computes what ``old`` does (see :func:`harness.check_equivalent`)."""
        from .regress import check_equivalent

        result = check_equivalent(
            old,
            new,
            spec_or_shape,
            x=x,
            input_shape=input_shape,
            seed=self._seed(seed),
            tol_scale=tol_scale,
            **wrap_kwargs,
        )
        self._note("old-vs-new comparison")
        if not result.ok:
            self._note("equivalent differs")
            pytest.fail(str(result), pytrace=False)
        return result


@pytest.fixture
def backprop(request: pytest.FixtureRequest) -> Backprop:
    """trigrad's checks for this test: ``backprop.check``, ``.snapshot``, ``.equivalent``."""
    return Backprop(request)
