"""The self-contained HTML report: what the page says (unit tests on the markup) and that a
real browser renders it without a console error (headless Chromium, skipped without one)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import check_layer, check_network
from harness.examples import build
from harness.report.html import plotted_error, render_html, write_html
from harness.results import Boundary, FDSummary, LayerResult, Report, TensorResult
from zoo.layers import MUTANTS

INJECTION = "<script>alert(1)</script>"


def _network(variant: str) -> Report:
    ex = build(variant)
    return check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=0)


@pytest.fixture(scope="module")
def conv2_report() -> Report:
    """first_failure conv2 (its input gradient); the (network) entry fails downstream of it."""
    return _network("conv2-dx-kernel-not-rotated")


@pytest.fixture(scope="module")
def wiring_report() -> Report:
    """Every layer passes alone; the (network) entry fails, with boundaries and a diagnosis."""
    return _network("backward-skips-relu3")


@pytest.fixture(scope="module")
def conv_weight_report() -> Report:
    """A single conv layer whose weight gradient fails and carries a 4-D error map."""
    m = next(m for m in MUTANTS if m[0] == "conv stride ignored in dW")
    return check_layer(m[1](), m[2], input_shape=m[4], seed=0, **m[3])


def _hostile_report() -> Report:
    """User-chosen names and messages with markup in them, and every figure non-finite."""
    inf, nan = math.inf, math.nan
    bad = TensorResult(name="weight<i>", side="backward", shape=(2, 2, 3, 3), tolerance=1e-12, error_torch=inf,
                       error_jax=nan, worst_index=(1, 0, 2, 2), worst_user=nan, worst_ref=-inf, ok=False,
                       fd=FDSummary(probes=3, kinks=3, worst=nan, consistent=None),
                       error_map=[[[[0.0, 1e-3, inf], [nan, 0.5, 1.0], [1e-20, 2.0, 0.1]]] * 2] * 2)
    ok = TensorResult(name="output", side="forward", shape=(), tolerance=1e-12, error_torch=0.0, error_jax=nan,
                      worst_index=(), worst_user=1.0, worst_ref=1.0, ok=True)
    layers = [LayerResult(name='conv"<b>1</b>', kind="Conv2d", verdict="backward", dtype="float64", tensors=[ok, bad],
                          message=INJECTION, diagnosis=["weight: <img src=x onerror=alert(2)>"]),
              LayerResult(name="crash", kind="Custom", verdict="error", dtype="float64",
                          message="Traceback:\n  ValueError: <oops>"),
              LayerResult(name="(network)", kind="network", verdict="backward", dtype="float64", tensors=[bad],
                          downstream_of='conv"<b>1</b>',
                          boundaries=[Boundary("a&b", 1, 0, 0.0, None, inf), Boundary("c", 2, 1, nan, 1e-3, None)])]
    return Report(seed=7, layers=layers)


def _rows(page: str, layer: str) -> list[str]:
    """The class attributes of the table rows of one layer (its name as the page escapes it)."""
    return re.findall(r'<tr class="([^"]*)" data-layer="' + re.escape(layer) + '"', page)


# ---------------------------------------------------------------------- the markup


def test_page_names_every_layer_and_highlights_the_first_failure(conv2_report: Report) -> None:
    page = render_html(conv2_report)
    assert page.startswith("<!DOCTYPE html>") and 'id="trigrad-table"' in page
    for layer in conv2_report.layers:
        assert f'data-layer="{layer.name}"' in page
    assert "First failure:" in page and "conv2" in page and "seed 0" in page
    assert _rows(page, "conv2") and all("first-failure" in c for c in _rows(page, "conv2"))
    assert not any("first-failure" in c for name in ("conv1", "relu2", "(network)") for c in _rows(page, name))
    assert all("downstream" in c for c in _rows(page, "(network)"))
    assert not any("downstream" in c for c in _rows(page, "conv2"))
    assert "fails only because of <b>conv2</b>" in page
    assert "kernel not rotated 180 degrees" in page  # conv2's diagnosis is shown
    assert page.count('<svg id="error-bars"') == 1
    assert 'data-tensor="conv2.input"' in page  # the failing input gradient's heatmap


def test_network_entry_shows_boundaries_and_diagnosis(wiring_report: Report) -> None:
    page = render_html(wiring_report)
    assert wiring_report.first_failure == "(network)"
    assert all("first-failure" in c for c in _rows(page, "(network)"))
    assert 'class="boundaries"' in page and "backward calls" in page
    boundary_names = re.findall(r'<tr><td class="mono">([^<]*)</td>', page)
    assert boundary_names == [b.name for b in wiring_report.layer("(network)").boundaries]
    assert "is never called by the network&#x27;s backward" in page


def test_failing_conv_weight_gets_a_tiled_heatmap(conv_weight_report: Report) -> None:
    weight = next(t for t in conv_weight_report.layer("conv").tensors if t.name == "weight")
    assert not weight.ok and weight.error_map is not None
    page = render_html(conv_weight_report)
    figure = re.search(r'<figure class="heatmap" data-tensor="conv.weight">(.*?)</figure>', page, re.S)
    assert figure, "no heatmap for the failing conv weight gradient"
    assert "conv.weight (3, 2, 3, 3)" in figure.group(1) and "<svg" in figure.group(1)
    assert "rows: out channel, columns: in channel, each tile kh×kw" in figure.group(1)
    assert '<svg class="legend"' in page
    assert 'data-tensor="conv.bias"' not in page and 'data-tensor="conv.output"' not in page  # passing: no map


def test_page_is_self_contained(conv2_report: Report, conv_weight_report: Report) -> None:
    for report in (conv2_report, conv_weight_report, _hostile_report()):
        page = render_html(report)
        assert "http://" not in page and "https://" not in page
        assert not re.search(r'\b(src|href)="(?!#)', page)  # only in-page anchors
        assert "Content-Security-Policy" in page


def test_dict_from_json_and_report_object_render_alike(conv2_report: Report) -> None:
    from_json = render_html(json.loads(conv2_report.to_json()))
    assert from_json == render_html(conv2_report.to_dict())
    # the (network) entry's JAX figures are nan in the object and null in JSON: same page
    assert from_json == render_html(conv2_report)


def test_user_strings_are_escaped() -> None:
    page = render_html(_hostile_report(), title="<b>t</b>")
    assert INJECTION not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "<b>t</b>" not in page and "<b>1</b>" not in page
    assert "conv&quot;&lt;b&gt;1&lt;/b&gt;" in page and "weight&lt;i&gt;" in page and "a&amp;b" in page


def test_non_finite_figures_do_not_crash() -> None:
    report = _hostile_report()
    for data in (report, report.to_dict(), json.loads(report.to_json())):
        page = render_html(data)
        assert "kinks" in page and "n/a" in page
        assert 'data-tensor="conv&quot;&lt;b&gt;1&lt;/b&gt;.weight&lt;i&gt;"' in page  # its heatmap
    assert ">inf<" in render_html(report)  # a float inf says so; JSON null is "n/a"


def test_plotted_error_reads_missing_figures() -> None:
    assert plotted_error({"error_torch": 1e-3, "error_jax": 2e-3, "tolerance": 1e-2, "ok": True}) == 2e-3
    assert plotted_error({"error_torch": 1e-16, "error_jax": None, "tolerance": 1e-12, "ok": True}) == 1e-16
    assert plotted_error({"error_torch": 1e-16, "error_jax": math.nan, "tolerance": 1e-12, "ok": True}) == 1e-16
    assert plotted_error({"error_torch": math.inf, "error_jax": 1.0, "tolerance": 1e-12, "ok": False}) is None
    # JSON turned an infinite error into null: the remaining figure passes, so null was the failure
    assert plotted_error({"error_torch": None, "error_jax": 1e-16, "tolerance": 1e-12, "ok": False}) is None
    assert plotted_error({"error_torch": None, "error_jax": None, "tolerance": 1e-12, "ok": True}) is None


def test_large_maps_are_cut_and_pooled() -> None:
    t = dict(name="weight", side="backward", shape=[70, 2, 3, 3], tolerance=1e-12, error_torch=1.0, error_jax=1.0,
             worst_index=[69, 1, 2, 2], worst_user=0.0, worst_ref=1.0, ok=False, fd=None,
             error_map=[[[[1e-3] * 3] * 3] * 2] * 70)
    wide = dict(t, name="fc", shape=[4, 2000], worst_index=[3, 1999], error_map=[[0.5] * 2000] * 4)
    layer = dict(name="big", kind="Conv2d", verdict="backward", dtype="float64", tensors=[t, wide], refs_error=0.0,
                 message="", downstream_of=None, diagnosis=[], boundaries=[], ok=False)
    page = render_html({"schema": "trigrad.report/1", "seed": 0, "ok": False, "first_failure": "big",
                        "layers": [layer]})
    assert "showing the first 64 of 70 rows" in page
    assert "each cell is the worst of a 1×13 block" in page


def test_write_html_is_atomic(tmp_path: Path, conv2_report: Report) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    write_html(conv2_report, target)
    assert target.read_text(encoding="utf-8") == render_html(conv2_report)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


# ---------------------------------------------------------------------- a real browser


def console_errors(stderr: str) -> list[str]:
    """Console messages in Chromium's stderr. With --enable-logging=stderr --v=0 this build
    logs every console message at INFO whatever its level, e.g.
    ``[123:123:1127/100900.139958:INFO:CONSOLE:1] "Uncaught Error: boom", source: file:///p.html (1)``,
    console.error and Content-Security-Policy refusals alike, so the level cannot tell an
    error apart: the page logs nothing, hence any CONSOLE line (or "Uncaught") is a failure."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _chromium_dump(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM Chromium ends up with after loading ``page`` (scripts run), and its stderr."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed: the headless-browser check needs it")
    profile = tmp_path / f"profile-{page.stem}"  # fresh: nothing cached from another run
    cmd = ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_chromium_renders_the_page_without_console_errors(tmp_path: Path, conv2_report: Report) -> None:
    page = tmp_path / "report.html"
    write_html(conv2_report, page)
    dom, stderr = _chromium_dump(page, tmp_path)
    assert console_errors(stderr) == []
    assert 'id="trigrad-table"' in dom
    for layer in conv2_report.layers:
        assert f'data-layer="{layer.name}"' in dom
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the page's script did not run"


def test_chromium_detector_flags_a_script_error(tmp_path: Path) -> None:
    """The check above must be able to fail: a page that throws and logs an error is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("logged-oops");'
                    'throw new Error("boom")</script></body></html>', encoding="utf-8")
    _, stderr = _chromium_dump(page, tmp_path)
    errors = console_errors(stderr)
    assert any("Uncaught Error: boom" in line for line in errors), stderr[-2000:]
    assert any("logged-oops" in line for line in errors), stderr[-2000:]
