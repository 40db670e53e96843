"""The verdict table (DESIGN.md), row by row, and the tolerance policy."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare import VERDICTS, relative_with_floor, tolerance, verdict

ROWS = [
    # forward_ok, backward_ok, fd_consistent -> verdict
    (True, True, True, "pass"),
    (True, False, False, "backward"),
    (False, True, False, "forward"),
    (False, True, True, "forward"),  # a forward off by a constant: the gradient is unchanged
    (False, False, True, "forward"),  # backward differentiates a wrong forward (or a layout)
    (False, False, False, "both"),
    (True, True, False, "inconclusive"),  # never a silent pass or a false failure
    (True, True, None, "inconclusive"),
    (True, False, None, "backward"),  # unreliable probes cannot rescue a wrong backward
    (True, False, True, "inconclusive"),  # contradiction only a kink explains: re-probe
    (False, False, None, "inconclusive"),
]


@pytest.mark.parametrize("forward_ok,backward_ok,fd,expected", ROWS)
def test_verdict_table(forward_ok: bool, backward_ok: bool, fd, expected: str) -> None:
    assert verdict(forward_ok=forward_ok, backward_ok=backward_ok, fd_consistent=fd) == expected


def test_fd_unreliable_only_because_of_kinks_is_no_witness_against_both_references() -> None:
    kw = {"fd_consistent": None, "fd_kinks_only": True}
    assert verdict(forward_ok=True, backward_ok=True, **kw) == "pass"
    assert verdict(forward_ok=True, backward_ok=False, **kw) == "backward"
    assert verdict(forward_ok=False, backward_ok=False, **kw) == "inconclusive"
    # a probe that disagreed is not a kink: still inconclusive
    assert verdict(forward_ok=True, backward_ok=True, fd_consistent=False, fd_kinks_only=True) == "inconclusive"


def test_errors_and_reference_disagreement_come_first() -> None:
    assert verdict(forward_ok=True, backward_ok=True, fd_consistent=True, error=True) == "error"
    assert verdict(forward_ok=False, backward_ok=False, fd_consistent=False, refs_agree=False) == "reference"
    outcomes = {verdict(forward_ok=f, backward_ok=b, fd_consistent=c, refs_agree=r, error=e)
                for f in (True, False) for b in (True, False) for c in (True, False, None)
                for r in (True, False) for e in (True, False)}
    assert outcomes == set(VERDICTS)


def test_tolerance_follows_dtype_and_reduction_size() -> None:
    assert tolerance(np.float32) / tolerance(np.float64) == pytest.approx(2.0**29)
    assert tolerance(np.float64, 400) == pytest.approx(20 * tolerance(np.float64, 1))
    assert tolerance(np.float32, 100, scale=10) == pytest.approx(10 * tolerance(np.float32, 100))
    assert 1e-6 < tolerance(np.float32, 27) < 1e-4  # a 3x3x3 conv in float32
    assert tolerance(np.float64, 27) < 1e-12


def test_relative_with_floor_for_true_zeros() -> None:
    noise = np.array([1e-17, -2e-17])
    assert relative_with_floor(noise, np.zeros(2)) == np.inf  # meaningless without a floor
    assert relative_with_floor(noise, np.zeros(2), floor=1.0) < 1e-16
    assert relative_with_floor(np.zeros(2), np.zeros(2)) == 0.0
    assert relative_with_floor([1.0, 2.0], [1.0, 2.5]) == pytest.approx(0.5 / np.sqrt(1 + 6.25))


def test_rel_error_reports_the_worst_element() -> None:
    from harness.compare import rel_error

    e = rel_error([[1.0, 2.0], [3.0, 4.5]], [[1.0, 2.0], [3.0, 4.0]])
    assert e.index == (1, 1) and e.actual == 4.5 and e.expected == 4.0
    assert e.worst == pytest.approx(0.5 / 4.0) and e.norm == pytest.approx(0.5 / np.sqrt(30))
    assert "worst 1.25e-01 at [1, 1]: 4.5 vs 4" in str(e)
    nan = rel_error([1.0, np.nan], [1.0, 2.0])
    assert nan.norm == np.inf and nan.index == (1,)
    assert rel_error(np.zeros(0), np.zeros(0)).norm == 0.0
    assert rel_error([0.0], [0.0]).norm == 0.0 and rel_error([1.0], [0.0]).norm == np.inf
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))
