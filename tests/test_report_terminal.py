"""The terminal report (rich) and the plain ``str(report)``: user strings are shown exactly as
written, never read as rich markup; escape sequences are shown, never sent to the terminal
(nor into the HTML page); names and verdicts survive narrow consoles whole."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from harness.report import findings, headline, render_html, render_terminal, table
from harness.report.safe_text import visible
from harness.results import FDSummary, LayerResult, Report, TensorResult

PWN = "\x1b]0;pwned\x07"  # OSC: retitles the terminal window
CLEAR = "\x1b[2J"  # CSI: clears the screen
LINK = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"  # OSC 8: a forged hyperlink


def tensor(name: str, ok: bool = True, fd: FDSummary | None = None) -> TensorResult:
    err = 1e-16 if ok else 0.5
    return TensorResult(name=name, side="backward", shape=(2, 3), tolerance=1e-12, error_torch=err, error_jax=err,
                        worst_index=(1, 2), worst_user=0.25, worst_ref=-0.75, ok=ok, fd=fd)


def long_names() -> Report:
    """Names as a real model has them (ResNet-style paths), every verdict that reads long."""
    return Report(seed=3, layers=[
        LayerResult("features.stage2.block1.conv2", "Conv2d", "pass", "float64", [tensor("output"), tensor("weight")]),
        LayerResult("features.stage2.block1.bn_after_conv2", "BatchNorm2d", "backward", "float64",
                    [tensor("output"), tensor("running_mean", False, FDSummary(5, 0, 0.3, False))],
                    diagnosis=["running_mean: off by a factor 4 (the batch size)"]),
        LayerResult("features.stage2.block1.relu_inplace", "ReLU", "inconclusive", "float32",
                    [tensor("input", fd=FDSummary(5, 3, math.nan, None))], message="kinks crossed at every probe"),
        LayerResult("classifier.head.fc_final", "Linear", "error", "float64", [],
                    message="Traceback (most recent call last):\n  File 'net.py', line 3\nValueError: not aligned"),
        LayerResult("features.stage3.block0.downsample.1", "BatchNorm2d", "reference", "float64",
                    [tensor("weight")], refs_error=1e-3),
        LayerResult("(network)", "network", "both", "float64", [tensor("input", False)],
                    downstream_of="features.stage2.block1.bn_after_conv2"),
    ])


def hostile() -> Report:
    """Markup and escape sequences in every string a user controls."""
    return Report(seed=5, layers=[
        LayerResult("fc[b]", "Linear[/i]", "pass", "float64", [tensor("weight[red]")]),
        LayerResult("conv[/2]", f"Conv{PWN}", "backward", "float64", [tensor(f"bias{CLEAR}", False)],
                    message=f"bad {PWN} value {CLEAR}[bold]loud[/bold]", diagnosis=[f"see {LINK}", "tab\there\r"]),
        LayerResult(f"relu{CLEAR}\n2", "ReLU", "error", "float64", [], message=f"crash{PWN}",
                    downstream_of="conv[/2]"),
    ])


def rendered(report, width: int = 120, *, full: bool = False) -> str:
    """What the terminal shows (no colour codes: force_terminal=False), and what was written."""
    console = Console(width=width, record=True, force_terminal=False, file=io.StringIO())
    render_terminal(report, console, full=full)
    return console.export_text()


def raw_output(report, width: int = 120) -> str:
    """Everything written to a colour terminal, styles included: no user escape may be in it."""
    out = io.StringIO()
    render_terminal(report, Console(width=width, file=out, force_terminal=True, color_system="truecolor"))
    return out.getvalue()


# ---------------------------------------------------------------------- markup


@pytest.mark.parametrize("source", ["report", "dict", "json"])
def test_markup_in_names_is_shown_as_written(source: str) -> None:
    report = hostile()
    data = {"report": report, "dict": report.to_dict(), "json": json.loads(report.to_json())}[source]
    text = rendered(data)  # today: MarkupError (closing tag '[/2]' ... doesn't match any open tag)
    assert "fix first: conv[/2] (backward)" in text
    for s in ("fc[b]", "conv[/2]", "weight[red]", "[bold]loud[/bold]"):
        assert s in text, s
    assert headline(data).startswith("fix first: conv[/2]")


def test_markup_first_failure_in_the_title_of_the_table() -> None:
    """``fc[b]`` as the first failure was silently turned into a bold "fc"."""
    report = Report(seed=0, layers=[LayerResult("fc[b]", "Linear", "backward", "float64", [tensor("weight", False)])])
    text = rendered(report)
    assert text.splitlines()[0].startswith("fix first: fc[b] (backward)")


# ---------------------------------------------------------------------- escape sequences


def test_escape_sequences_are_shown_never_sent() -> None:
    report = hostile()
    for width in (120, 60):
        for out in (raw_output(report, width), rendered(report, width)):
            assert "pwned" in out and "\x07" not in out and "]0;pwned" in out
            assert "\x1b]" not in out and "\x1b[2J" not in out and "evil.example" in out
            assert "\r" not in out
        text = rendered(report, width)
        assert "\\x1b]0;pwned\\x07" in text and "\\x1b[2J" in text and "\\x1b]8;;http://evil.example" in text
        assert "relu\\x1b[2J\\n2" in text  # a name stays on one line
    assert "here\\r" in rendered(report)  # a carriage return shown (rich expands the tab before it)


def test_plain_str_neutralises_escapes() -> None:
    text = str(hostile())
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "first failure: conv[/2]" in text and "\\x1b]0;pwned\\x07" in text and "\\x1b[2J" in text
    assert "relu\\x1b[2J\\n2" in text and "tab\there\\r" in text


def test_html_neutralises_escapes() -> None:
    for data in (hostile(), json.loads(hostile().to_json())):
        page = render_html(data, title=f"t{CLEAR}")
        assert "\x1b" not in page and "\x07" not in page and "\r" not in page
        assert "\\x1b]0;pwned\\x07" in page and "\\x1b[2J" in page and "t\\x1b[2J" in page


def test_visible() -> None:
    assert visible("a\x1b[2Jb\x00\x7f\x9b") == "a\\x1b[2Jb\\x00\\x7f\\x9b"
    assert visible("line\r\nnext\tx") == "line\nnext\tx"
    assert visible("a\nb\tc", one_line=True) == "a\\nb\\tc"
    assert visible("evil\u202etxt.exe \ud800") == "evil\\u202etxt.exe \\ud800"  # bidi override, lone surrogate
    assert visible("conv[/2] ünïcode ✓") == "conv[/2] ünïcode ✓"


def test_findings_are_escaped_too() -> None:
    lines = [line for _, _, line in findings(hostile())]
    assert all("\x1b" not in line for line in lines)
    assert any("\\x1b]0;pwned\\x07" in line for line in lines)


# ---------------------------------------------------------------------- widths


def _whole_words(text: str, report: Report) -> None:
    """Every layer's name and verdict appears whole in ``text``."""
    for layer in report.layers:
        assert layer.name in text and layer.verdict in text, (layer.name, layer.verdict)


def rendered_table(report, width: int, *, full: bool = False) -> str:
    """The table alone (the findings under it repeat names, which would hide a cut one)."""
    console = Console(width=width, record=True, force_terminal=False, file=io.StringIO())
    console.print(table(report, full=full, width=width))
    return console.export_text()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_long_names_and_verdicts_survive_every_width(width: int) -> None:
    report = long_names()
    for full in (False, True):
        text = rendered_table(report, width, full=full)  # today at 80: "features.stage2.block1.bn_af…", "bac…"
        for layer in report.layers:
            assert layer.name in text and layer.verdict in text, (layer.name, layer.verdict)
        assert text.count("…") == 1  # only the error's message is cut (the findings give it whole)
        _whole_words(rendered(report, width, full=full), report)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width
        for figure in ("5.0e-01", "3.0e-01", "kinks (3/5)", "1.0e-12"):
            assert figure in text, figure


def test_short_names_keep_one_table_and_the_worst_element_at_120() -> None:
    from harness.results import Report as R

    report = R(seed=0, layers=[LayerResult("conv2", "Conv2d", "backward", "float64",
                                           [tensor("output"), tensor("input", False)]),
                               LayerResult("fc1", "Linear", "pass", "float64", [tensor("weight")])])
    text = rendered(report, 120)
    header = next(line for line in text.splitlines() if "verdict" in line)
    assert header.split() == ["layer", "verdict", "tensor", "vs", "torch", "vs", "jax", "vs", "FD", "tol", "worst",
                              "element"]
    row = next(line for line in text.splitlines() if line.lstrip().startswith("conv2"))
    assert row.split()[:2] == ["conv2", "backward"]
    assert "[1,2] 0.25 vs -0.75" in text
    narrow = rendered_table(report, 80)
    assert "worst element" not in narrow and "verdict" in narrow and "1.0e-12" in narrow  # one table still


def test_narrow_console_stacks_the_name_over_its_rows() -> None:
    report = long_names()
    lines = rendered(report, 60).splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("features.stage2.block1.bn_after_conv2"))
    assert lines[i].split() == ["features.stage2.block1.bn_after_conv2", "backward", "<"]
    assert lines[i + 1].split()[0] == "output" and lines[i + 2].split()[0] == "running_mean"
    assert lines[i + 2].split()[1:] == ["5.0e-01", "5.0e-01", "3.0e-01", "1.0e-12"]


def test_table_accepts_the_dict_and_reports_the_worst_missing() -> None:
    """A figure JSON wrote as null (not finite) is shown as "-", not a crash formatting None."""
    data = json.loads(long_names().to_json())
    data["layers"][1]["tensors"][1]["worst_ref"] = None
    text = rendered(data)
    assert "[1,2] 0.25 vs -" in text
    assert table(data, width=60) is not None
