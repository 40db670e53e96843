"""The peer benchmark's smoke run (``python benchmarks/peers.py --quick``): the JSON it
writes has the documented structure, and on its tiny zoo sample trigrad catches a forward
bug whose backward is consistent with it, which gradcheck (slow and fast) lets through.
The full run (minutes) is not part of the test suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a subprocess running every peer tool (~40 s); test_benchmarks.py stays fast

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "peers.py"
PEERS = {"gradcheck", "gradcheck_fast", "jax_check_grads", "cs231n", "trigrad"}
FORWARD_BUG = "dense wrong forward, consistent backward"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("peers")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out / "r.json"), "--plot",
                           str(out / "p.svg")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trigrad" in proc.stdout and "detection:" in proc.stdout  # the printed tables
    return json.loads((out / "r.json").read_text()), out


def _check_workload(w: dict) -> None:
    assert w["params"] > 0 and w["coords"] >= w["params"] and w["outputs"] > 0
    floor = w["floor"]
    assert floor["total"] == pytest.approx(floor["user"] + floor["torch"] + floor["jax"])
    assert set(w["peers"]) == PEERS
    for peer, r in w["peers"].items():
        assert r["seconds"] > 0 and r["runs"] >= 1 and len(r["times"]) == r["runs"], peer
        assert isinstance(r["caught"], bool)
        assert r["calls"]["forward"] >= 1 and r["calls"]["backward"] >= 1, peer
        assert r["memory_mib"] is None or r["memory_mib"] >= 0
        if r["extrapolated"]:
            assert peer in ("gradcheck", "cs231n")
            assert r["coords"] < r["coords_total"] or r["outputs"] < r["outputs_total"]
            assert r["extrapolated_from"].startswith("extrapolated from")
            assert r["seconds"] > r["measured_seconds"]
    assert w["peers"]["trigrad"]["floor_ratio"] == pytest.approx(w["peers"]["trigrad"]["seconds"] / floor["total"])
    # slow gradcheck differences every coordinate it covers twice; fast mode a handful of times
    slow, fast = w["peers"]["gradcheck"], w["peers"]["gradcheck_fast"]
    assert slow["calls"]["forward"] >= 2 * slow["coords"]
    assert fast["calls"]["forward"] < slow["calls"]["forward"]


def test_json_structure(quick: tuple[dict, Path]) -> None:
    results, out = quick
    assert results["meta"]["quick"] is True and results["meta"]["repeats"] == 1
    assert {"machine", "code", "memory", "seconds"} <= set(results["meta"])
    assert results["workloads"] and results["scaling"]
    for w in [*results["workloads"].values(), *results["scaling"]]:
        _check_workload(w)
    params = [w["params"] for w in results["scaling"]]
    assert params == sorted(params) and len(set(params)) == len(params)
    summary = results["detection"]["summary"]
    assert set(summary) == PEERS
    for row in summary.values():
        assert 0 <= row["mutants_caught"] <= row["mutants"] and 0 <= row["false_alarms"] <= row["correct"]
    assert (out / "p.svg").read_text().startswith("<svg")


def test_trigrad_catches_a_forward_bug_gradcheck_misses(quick: tuple[dict, Path]) -> None:
    results, _ = quick
    entry = next(e for e in results["detection"]["mutants"] if e["name"] == FORWARD_BUG)
    peers = entry["peers"]
    assert peers["trigrad"]["caught"] and peers["trigrad"]["verdicts"] == {"fc": "forward"}
    assert not peers["gradcheck"]["caught"] and not peers["gradcheck_fast"]["caught"]
    assert peers["gradcheck"]["detail"] == "passed"
    # and the same gradcheck does catch a backward bug in the same run
    backward = next(e for e in results["detection"]["mutants"] if e["expected"] == "backward")
    assert backward["peers"]["gradcheck"]["caught"] and backward["peers"]["trigrad"]["caught"]
