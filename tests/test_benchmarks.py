"""The reference benchmark's timing step runs and measures something (the full run, which
writes benchmarks/RESULTS.md, takes minutes and is not part of the test suite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_references.py"


def _load(name: str):
    """A benchmark script loaded by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_child_times_a_vjp(backend: str) -> None:
    bench = _load("bench_references")
    r = bench._child("lenet5", backend, False, 2)
    assert r["repeats"] == 2
    assert 0 < r["min"] <= r["median"] and r["first"] > 0


def _time_to_verdict():
    return _load("time_to_verdict")


def test_time_to_verdict_measures_a_fresh_process_and_keeps_its_section(tmp_path: Path) -> None:
    """One fresh process is timed with its peak RSS; the RESULTS.md section gives ratios to
    gradcheck's fast mode and replaces itself between its markers, the rest of the file kept."""
    import sys

    bench = _time_to_verdict()
    wall, rss, code = bench.run([sys.executable, "-c", "import numpy; x = numpy.ones(5_000_000)"], str(tmp_path))
    assert code == 0 and wall > 0 and rss >= 40  # 40 MB of ones, at least
    results = {
        "trigrad check": {"first s": 4.0, "second s": 1.0, "MB": 300.0, "server MB": 420.0},
        "gradcheck fast": {"first s": 2.0, "second s": 2.0, "MB": 270.0},
    }
    text = bench.section(results, 3)
    assert "| trigrad check | 4.00 s | 1.00 s | 300 MB (+ server 420 MB) | 2.00x / 0.50x |" in text
    assert "| gradcheck fast | 2.00 s | 2.00 s | 270 MB | 1.00x / 1.00x |" in text
    out = tmp_path / "RESULTS.md"
    out.write_text("# before\n")
    bench.write(text, out)
    bench.write(text.replace("4.00 s", "5.00 s"), out)
    body = out.read_text()
    assert body.startswith("# before\n") and body.count("<!-- time-to-verdict -->") == 1 and "5.00 s" in body


def test_time_to_verdict_reads_the_served_childs_peak(tmp_path: Path) -> None:
    """The served check's memory is the forked child's (from the server's log: the client alone
    would hide it) and the server's own resident size, from /proc through the lock file's pid."""
    import os

    bench = _time_to_verdict()
    (tmp_path / "k.log").write_text("child 11: status 0, peak RSS 290 MB\nchild 12: status 1, peak RSS 301 MB\n")
    (tmp_path / "k.lock").write_text(str(os.getpid()))  # this process stands in for the server
    child, server = bench._served(tmp_path)
    assert child == 301.0 and server > 10
    assert bench._served(tmp_path / "empty") == (0.0, 0.0)


def _floor_ratios():
    return _load("floor_ratios")


def test_floor_ratios_quick_run_writes_its_table_between_markers(tmp_path: Path) -> None:
    """A quick run of one tiny workload in a child process: a row with the check's median, the
    floor and its three parts and the ratio, its RESULTS.md section replaced between its
    markers (the rest of the file kept). Structure only: timings on a shared machine vary."""
    bench = _floor_ratios()
    out = tmp_path / "RESULTS.md"
    out.write_text("# before\n")
    rows = bench.main(["--quick", "--only", "linear-1e3", "--out", str(out)])
    (row,) = rows
    assert row["workload"] == "linear-1e3" and row["ok"] and row["verdicts"] == ["pass"]
    assert row["check_s"] > 0 and row["ratio"] == pytest.approx(row["check_s"] / row["floor"]["total"])
    assert row["floor"]["total"] == pytest.approx(sum(row["floor"][k] for k in ("user", "torch", "jax")))
    bench.main(["--quick", "--only", "linear-1e3", "--out", str(out)])
    body = out.read_text()
    assert body.startswith("# before\n") and body.count("<!-- floor-ratios -->") == 1 and body.count("<!-- /floor-ratios -->") == 1
    lines = [line for line in body.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| workload | parameters | input | check (median) | floor | user / torch / jax | ratio |")
    assert len(lines) == 3 and lines[2].startswith("| linear-1e3 | 1,056 | (8, 32) |")
    assert lines[2].count("|") == lines[0].count("|")


def test_floor_ratios_table_says_whether_each_target_is_met() -> None:
    bench = _floor_ratios()
    row = {"workload": "lenet5", "params": 61706, "input": [8, 1, 32, 32], "check_s": 0.03, "ratio": 1.2,
           "floor": {"user": 0.003, "torch": 0.005, "jax": 0.017, "total": 0.025},
           "loadavg": {"before": [0.5, 0, 0], "after": [0.7, 0, 0]}}
    text = bench.table([row, {**row, "workload": "linear-1e7", "ratio": 3.5}])
    assert "| LeNet-5 | 61,706 | (8, 1, 32, 32) | 30.0 ms | 25.0 ms | 3.0 ms / 5.0 ms / 17.0 ms | 1.20x | 1.5x | yes |" in text
    assert "| Linear 1e7 |" in text and "| 3.50x | 3x | no | 0.5 / 0.7 |" in text
