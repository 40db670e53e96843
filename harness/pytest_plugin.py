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
  per test and ``name``; workers of pytest-xdist never share one); a missing snapshot is recorded and the test fails once, asking for
  a look (as pytest-regressions does); ``--trigrad-update`` rewrites snapshots instead. A
  folder that cannot be written fails the test with a message naming it and what to do.
* ``backprop.equivalent(old, new, spec, ...)``: two versions of the code, one report.

Options: ``--trigrad-update``, ``--trigrad-seed N`` (every check's seed),
``--trigrad-html DIR`` (an HTML page per check, named after the test).
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT_DIR = "__trigrad__"


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
        self.html_dir: str | None = config.getoption("trigrad_html")
        self._calls = 0

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
        folder = Path(self.html_dir)
        folder.mkdir(parents=True, exist_ok=True)
        module = re.sub(r"[^\w-]+", "_", str(Path(self._request.node.nodeid.split("::")[0]).with_suffix("")))
        write_html(report, folder / f"{module}.{self._stem(None)}.{self._calls}.html")

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
        try:
            report = run(value, seed=self._seed(seed), fd_probes=fd_probes, tol_scale=tol_scale)
        except TargetError as e:
            pytest.fail(f"trigrad: {e}", pytrace=False)
        self._html(report)
        if not report.ok:
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
        from .frames import user_frame
        from .regress import compare
        from .snapshot import SnapshotError, paths, record

        folder = Path(str(self._request.node.path)).parent / SNAPSHOT_DIR / Path(str(self._request.node.path)).stem
        path = folder / self._stem(name)
        exists = all(p.is_file() for p in paths(path))
        if self.update or not exists:
            try:
                snap = record(code, x=x, input_shape=input_shape, seed=self._seed(seed))
            except Exception as e:  # the user's code raised while being recorded: say where
                pytest.fail(f"trigrad: recording the snapshot failed: {user_frame(e)}", pytrace=False)
            try:
                snap.save(path)
            except SnapshotError as e:  # a read-only or misplaced folder: say which and what to do
                pytest.fail(
                    f"trigrad: {e}, or record the snapshots with --trigrad-update in a checkout where it is "
                    "writable and commit them.",
                    pytrace=False,
                )
            if not self.update:
                pytest.fail(
                    f"trigrad: no snapshot yet; recorded {paths(path)[0]} and {paths(path)[1].name}. Look at "
                    "them (or at the check) and rerun: later runs compare with it.",
                    pytrace=False,
                )
            return None
        try:
            result = compare(code, path, tol_scale=tol_scale)
        except SnapshotError as e:
            pytest.fail(f"trigrad: {e}", pytrace=False)
        if not result.ok:
            pytest.fail(
                f"{result}\n(snapshot {paths(path)[0]}; rerun with --trigrad-update if the change is intended)",
                pytrace=False,
            )
        if result.wrong_when_recorded:  # unchanged is a pass, but the summary should say what is pinned
            import warnings

            warnings.warn(
                f"trigrad: {', '.join(result.wrong_when_recorded)} in {paths(path)[0].name} disagreed with "
                "the reference when recorded; the snapshot pins that behaviour",
                stacklevel=2,
            )
        return result

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
        if not result.ok:
            pytest.fail(str(result), pytrace=False)
        return result


@pytest.fixture
def backprop(request: pytest.FixtureRequest) -> Backprop:
    """trigrad's checks for this test: ``backprop.check``, ``.snapshot``, ``.equivalent``."""
    return Backprop(request)
