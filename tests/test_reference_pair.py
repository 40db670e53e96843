"""harness/reference_pair.py: torch's and jax's calls side by side in two threads when the work
is large or torch is still to be imported (a process's first check), one after the other
otherwise; results in order, and an exception raised in the caller as if run in turn."""

from __future__ import annotations

import sys
import threading

import pytest

from harness import reference_pair as rp


def _where() -> str:
    return threading.current_thread().name


@pytest.fixture()
def warm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "reference_models.torch_ref", sys.modules.get("reference_models.torch_ref", object())
    )
    monkeypatch.delenv("TRIGRAD_REFERENCE_THREADS", raising=False)


def test_small_work_runs_in_the_callers_thread(warm: None) -> None:
    assert rp.both(_where, _where, rp.CONCURRENT_MIN - 1) == (_where(), _where())


def test_large_work_runs_jax_in_a_second_thread(warm: None) -> None:
    torch_side, jax_side = rp.both(_where, _where, rp.CONCURRENT_MIN)
    assert torch_side == _where() and jax_side == "trigrad-jax-reference"


def test_a_first_check_overlaps_jax_with_torchs_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "reference_models.torch_ref", raising=False)
    monkeypatch.delenv("TRIGRAD_REFERENCE_THREADS", raising=False)
    assert rp.both(_where, _where, 10)[1] == "trigrad-jax-reference"


def test_the_switch_turns_threads_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "reference_models.torch_ref", raising=False)
    monkeypatch.setenv("TRIGRAD_REFERENCE_THREADS", "0")
    assert rp.both(_where, _where, 10**9) == (_where(), _where())


def _raises(message: str):
    def call() -> None:
        raise ValueError(message)

    return call


@pytest.mark.parametrize("size", [10, 10**9])
def test_errors_reach_the_caller_torchs_first(warm: None, size: int) -> None:
    with pytest.raises(ValueError, match="jax"):
        rp.both(lambda: 1, _raises("jax"), size)
    with pytest.raises(ValueError, match="torch"):
        rp.both(_raises("torch"), _raises("jax"), size)


def test_values_in_counts_input_and_parameters() -> None:
    import numpy as np

    assert rp.values_in(np.zeros((2, 3)), {"a": np.zeros(4), "b": np.zeros((2, 2))}) == 14
