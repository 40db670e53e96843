"""The reference benchmark's timing step runs and measures something (the full run, which
writes benchmarks/RESULTS.md, takes minutes and is not part of the test suite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_references.py"


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_child_times_a_vjp(backend: str) -> None:
    spec = importlib.util.spec_from_file_location("bench_references", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench._child("lenet5", backend, False, 2)
    assert r["repeats"] == 2
    assert 0 < r["min"] <= r["median"] and r["first"] > 0
