"""Hostile and careless input, generated: whatever a layer, its arrays, a weight file, a
snapshot manifest or a report path looks like, trigrad answers with a report or its own
clear error (the CLI's exit 1 or 2), never a raw exception, and leaves the user's arrays
and files bit for bit as they were."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness as tg
from harness.report.paths import ReportPathError, check_report_paths
from harness.target import TargetError, run
from conftest import scaled

FLAWS = ["none", "wrong-out-shape", "out-none", "out-list", "out-int", "out-float32", "out-nan", "out-scalar",
         "dx-wrong-shape", "dx-none", "dx-tuple", "dx-inf", "grad-missing", "grad-wrong-shape", "grad-nan",
         "raises", "writes-input", "writes-upstream", "bias-x3"]


class Flawed:
    """A Dense layer (x @ W + b, W of shape (in, out)) with one flaw chosen by name."""

    def __init__(self, flaw: str, n_in: int, n_out: int, dtype: np.dtype) -> None:
        rng = np.random.default_rng(0)
        self.W = rng.standard_normal((n_in, n_out)).astype(dtype)
        self.b = rng.standard_normal(n_out).astype(dtype)
        self.flaw = flaw

    def forward(self, x: np.ndarray):  # noqa: ANN201 - returns garbage on purpose
        self.x = x
        y = x @ self.W + self.b
        if self.flaw == "writes-input":
            x *= 2.0
        return {"wrong-out-shape": y[:, :-1] if y.shape[1] > 1 else y[:, None], "out-none": None,
                "out-list": y.tolist(), "out-int": y.astype(np.int64), "out-float32": y.astype(np.float32),
                "out-nan": np.where(y > 0, np.nan, y), "out-scalar": float(y.sum())}.get(self.flaw, y)

    def backward(self, dy: np.ndarray):  # noqa: ANN201
        if self.flaw == "raises":
            raise ValueError("shapes do not align")
        self.dW = self.x.T @ dy
        self.db = dy.sum(axis=0) * (3 if self.flaw == "bias-x3" else 1)
        if self.flaw == "grad-missing":
            del self.dW
        elif self.flaw == "grad-wrong-shape":
            self.dW = self.dW.T.copy()
        elif self.flaw == "grad-nan":
            self.dW[0, 0] = np.nan
        dx = dy @ self.W.T
        if self.flaw == "writes-upstream":
            dy *= 0.5
        with np.errstate(divide="ignore", invalid="ignore"):  # the Inf is the flaw
            inf = dx / 0.0
        return {"dx-wrong-shape": dx.T, "dx-none": None, "dx-tuple": (dx, None), "dx-inf": inf}.get(self.flaw, dx)


@settings(max_examples=scaled(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flaw=st.sampled_from(FLAWS), n_in=st.integers(1, 5), n_out=st.integers(1, 4),
       dtype=st.sampled_from([np.float64, np.float32]), layout=st.sampled_from(["in_out", "out_in"]),
       spec_in=st.integers(1, 5), batch=st.integers(1, 3))
def test_a_malformed_layer_gets_a_report_or_a_clear_error(flaw, n_in, n_out, dtype, layout, spec_in, batch) -> None:
    layer = Flawed(flaw, n_in, n_out, np.dtype(dtype))
    before = {k: v.copy() for k, v in vars(layer).items() if isinstance(v, np.ndarray)}
    value = {"check": layer, "spec": tg.Linear("fc", spec_in, n_out), "layout": tg.Layout(linear=layout),
             "input_shape": (batch, spec_in)}
    try:
        report = run(value, seed=0)
    except TargetError as e:  # exit 2: a usage or configuration error, one clear line
        assert str(e) and "Traceback" not in str(e)
    else:  # exit 0 or 1: a complete report
        assert report.layers and all(layer.verdict in ("pass", "forward", "backward", "both", "inconclusive",
                                                       "reference", "error") for layer in report.layers)
        # a real flaw is never a pass (a list or a (dx, None) tuple are accepted ways to return
        # the values; a float32 output of float64 code is judged at float32 precision)
        harmless = ("none", "out-list", "out-float32", "dx-tuple", "writes-input", "writes-upstream")
        if flaw not in harmless and spec_in == n_in and layout == "in_out":
            assert not report.ok, (flaw, str(report))
        json.loads(report.to_json())  # and it can be written
    after = {k: v for k, v in vars(layer).items() if k in before}
    for k, v in before.items():
        assert after[k].tobytes() == v.tobytes() and after[k].dtype == v.dtype, f"{k} changed ({flaw})"


@settings(max_examples=scaled(60), deadline=None)
@given(json_name=st.sampled_from([None, "-", "r.json", "r.html", "code.py", "notes.json", "old.json", "sub",
                                  "missing/r.json", "link.json", "w.npz", ""]),
       html_name=st.sampled_from([None, "r.html", "r.json", "code.py", "notes.json", "old.html", "sub",
                                  "missing/r.html", "-"]))
def test_report_paths_are_accepted_or_refused_and_nothing_is_touched(tmp_path_factory, json_name, html_name) -> None:
    root = tmp_path_factory.mktemp("paths")
    (root / "code.py").write_text("def f():\n    pass\n")
    (root / "notes.json").write_text('{"mine": 1}')
    (root / "old.json").write_text(json.dumps({"schema": "trigrad.report/1", "layers": []}))
    (root / "old.html").write_text('<!DOCTYPE html>\n<html><head><meta name="generator" content="trigrad">')
    (root / "w.npz").write_bytes(b"PK\x03\x04")
    (root / "sub").mkdir()
    (root / "link.json").symlink_to(root / "notes.json")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        paths = check_report_paths(json_name, html_name, [Path("code.py")])
    except ReportPathError as e:
        assert str(e).startswith(("--json", "--html"))
    else:
        for kind, path in paths.items():
            if path != "-":
                p = Path(path)
                assert p.name not in ("code.py", "notes.json", "w.npz") and not p.is_dir()
                assert p.parent.is_dir() and (not p.exists() or p.name.startswith("old."))
        if "json" in paths and "html" in paths:
            assert paths["json"] != paths["html"]
    finally:
        os.chdir(cwd)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"PK\x05\x06" + b"\x00" * 18, b"\x93NUMPY\x01\x00{'descr':"])
def test_garbage_weight_files_are_weights_errors(tmp_path: Path, garbage: bytes) -> None:
    for suffix in (".npz", ".npy", ".safetensors"):
        path = tmp_path / f"w{suffix}"
        path.write_bytes(garbage)
        with pytest.raises(tg.WeightsError) as e:
            tg.read_weight_file(path)
        assert path.name in str(e.value)
        assert path.read_bytes() == garbage
