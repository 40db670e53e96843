"""A report dict that does not follow schema.json (a hand-edited JSON report) gets one clear
ReportError from every renderer, naming the field's JSON path, what was expected and what was
found; any mutation of a valid report either renders or raises ReportError, nothing else."""

from __future__ import annotations

import copy
import io
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from conftest import scaled
from harness.report import ReportError, findings, headline, render_html, render_terminal, report_data, table, write_html
from harness.results import Boundary, FDSummary, LayerResult, Report, TensorResult


def sample() -> Report:
    """Every part of the schema: figures, fd, an error map, boundaries, a downstream layer."""
    bad = TensorResult(name="weight", side="backward", shape=(2, 1, 2, 2), tolerance=1e-12, error_torch=0.5,
                       error_jax=0.5, worst_index=(1, 0, 1, 1), worst_user=0.25, worst_ref=-0.75, ok=False,
                       fd=FDSummary(probes=4, kinks=1, worst=0.2, consistent=False),
                       error_map=[[[[0.0, 1e-3], [0.5, 1.0]]], [[[1e-9, 0.25], [0.0, 1.0]]]])
    ok = TensorResult(name="output", side="forward", shape=(2, 2), tolerance=1e-12, error_torch=0.0,
                      error_jax=math.nan, worst_index=(0, 0), worst_user=1.0, worst_ref=1.0, ok=True)
    return Report(seed=7, layers=[
        LayerResult("conv1", "Conv2d", "backward", "float64", [ok, bad], diagnosis=["weight: off by a factor 2"]),
        LayerResult("crash", "Custom", "error", "float32", [], message="ValueError: shapes"),
        LayerResult("(network)", "network", "backward", "float64", [bad], downstream_of="conv1",
                    boundaries=[Boundary("conv1", 1, 1, 0.0, None, math.inf)]),
    ])


def render_all(data: Any) -> None:
    """Every renderer and helper that takes a report or its dict."""
    render_html(data)
    render_terminal(data, Console(width=80, file=io.StringIO(), record=True))
    render_terminal(data, Console(width=50, file=io.StringIO()))
    table(data, width=120)
    headline(data)
    findings(data)


RENDERERS = {
    "html": render_html,
    "terminal": lambda d: render_terminal(d, Console(width=80, file=io.StringIO())),
    "table": table, "headline": headline, "findings": findings,
}


def test_valid_reports_render() -> None:
    report = sample()
    for data in (report, report.to_dict(), json.loads(report.to_json())):
        render_all(data)
        assert report_data(data)["seed"] == 7


@pytest.mark.parametrize("renderer", list(RENDERERS))
@pytest.mark.parametrize("edit, message", [
    (lambda d: d["layers"][0]["tensors"][1].__setitem__("error_torch", "0.5"),
     r"report field \$\.layers\[0\]\.tensors\[1\]\.error_torch: expected a number or null, found the string '0\.5'"),
    (lambda d: d["layers"][0].__delitem__("verdict"),
     r"report field \$\.layers\[0\]: the required field 'verdict' \(one of 'pass', 'forward'.*\) is missing"),
    (lambda d: d["layers"][1].__setitem__("verdict", "crashed"),
     r"\$\.layers\[1\]\.verdict: expected one of 'pass', 'forward', .*'error', found the string 'crashed'"),
    (lambda d: d["layers"][0].__setitem__("tensors", {"weight": 1}),
     r"\$\.layers\[0\]\.tensors: expected a list, found an object with keys 'weight'"),
    (lambda d: d["layers"][0]["tensors"][1]["fd"].__setitem__("probes", None),
     r"\$\.layers\[0\]\.tensors\[1\]\.fd\.probes: expected an integer, found null"),
    (lambda d: d["layers"][0]["tensors"][1]["error_map"][1][0][0].__setitem__(1, "x"),
     r"\$\.layers\[0\]\.tensors\[1\]\.error_map\[1\]\[0\]\[0\]\[1\]: expected a number or null or a list"),
    (lambda d: d["layers"][2]["boundaries"][0].__setitem__("forward_calls", -1),
     r"\$\.layers\[2\]\.boundaries\[0\]\.forward_calls: expected an integer of at least 0, found int -1"),
    (lambda d: d.__setitem__("seed", "7"), r"\$\.seed: expected an integer, found the string '7'"),
    (lambda d: d.__setitem__("seed", 10 ** 400), r"\$\.seed: expected an integer, found an integer of 1329 bits"),
    (lambda d: d["layers"][0]["diagnosis"].append(3),
     r"\$\.layers\[0\]\.diagnosis\[1\]: expected a string, found int 3"),
    (lambda d: d.__delitem__("schema"), r"report field \$: the required field 'schema' \('trigrad\.report/1'\)"),
    (lambda d: d.__setitem__("layers", None), r"\$\.layers: expected a list, found null"),
    (lambda d: d["layers"][0].__setitem__("name", ["conv1"]), r"\$\.layers\[0\]\.name: expected a string"),
])
def test_bad_field_names_its_path_and_what_was_expected(renderer: str, edit, message: str) -> None:
    data = json.loads(sample().to_json())
    edit(data)
    with pytest.raises(ReportError, match=message) as e:  # today: TypeError, KeyError, AttributeError ...
        RENDERERS[renderer](data)
    assert "edited by hand" in str(e.value)  # the likely cause
    assert isinstance(e.value, ValueError)


def test_not_a_report_at_all() -> None:
    for renderer in RENDERERS.values():
        with pytest.raises(ReportError, match="expected a trigrad Report or its to_dict.*found list"):
            renderer([1, 2])
        with pytest.raises(ReportError, match=r"the required field 'schema'"):
            renderer({})


def test_hand_built_report_object_with_a_wrong_type() -> None:
    report = sample()
    report.layers[0].name = None
    with pytest.raises(ReportError, match=r"\$\.layers\[0\]\.name: expected a string, found null"):
        render_html(report)
    report.layers[0] = "conv1"  # not a LayerResult: to_dict() itself fails
    with pytest.raises(ReportError, match=r"report\.to_dict\(\) failed"):
        render_terminal(report, Console(file=io.StringIO()))


def test_write_html_writes_nothing_for_a_bad_report(tmp_path) -> None:
    data = json.loads(sample().to_json())
    data["ok"] = "yes"
    with pytest.raises(ReportError, match=r"\$\.ok: expected true or false"):
        write_html(data, tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_null_error_map_cells_from_to_json_are_drawn() -> None:
    """to_json writes a non-finite cell as null; schema.json's cells are numbers, but such a
    report (a hand-built one with inf in its map) still renders."""
    report = sample()
    report.layers[0].tensors[1].error_map[0][0][0][0] = math.inf
    data = json.loads(report.to_json())
    assert data["layers"][0]["tensors"][1]["error_map"][0][0][0][0] is None
    assert 'data-tensor="conv1.weight"' in render_html(data)


# ---------------------------------------------------------------------- fuzz

JUNK = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1.5, math.nan, math.inf, -math.inf, 10 ** 400, -(10 ** 30), "",
                     "[/bold]", "\x1b[2J", "x" * 20_000, [], {}, [1, "a"], [[1.0], [2.0, 3.0]], {"a": 1},
                     "pass", "trigrad.report/1", [None], [[[math.nan]]]]),
    st.text(max_size=30), st.integers(), st.floats(), st.lists(st.integers(-3, 3), max_size=5),
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a nested dict/list, as a path of keys and indices."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, path + (i,))
    return out


def _mutate(data: Any, path: tuple, action: str, junk: Any) -> Any:
    if not path:
        return junk
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if action == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk
    return data


@settings(max_examples=scaled(300))
@given(st.data())
def test_mutated_reports_render_or_raise_report_error(data) -> None:
    base = [sample().to_dict(), json.loads(sample().to_json())][data.draw(st.integers(0, 1), label="source")]
    report = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _paths(report)
        path = data.draw(st.sampled_from(paths), label="path")
        action = data.draw(st.sampled_from(["drop", "set"]) if path else st.just("set"), label="action")
        report = _mutate(report, path, action, data.draw(JUNK, label="value"))
    try:
        render_all(report)
    except ReportError as e:
        assert str(e).startswith(("report field $", "expected a trigrad Report")), str(e)
