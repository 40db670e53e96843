"""`trigrad demo --example NAME`: the bundled examples the demo can show; the LSTM
language model's demo finds its default BPTT mistake with the timestep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main


def test_demo_unknown_example_is_a_usage_error(capsys) -> None:
    assert main(["demo", "--example", "gpt", "--list"]) == 2
    assert "unknown example 'gpt'; valid: lenet, lstm" in capsys.readouterr().err
    assert main(["demo", "--example", "gpt"]) == 2
    assert "unknown example 'gpt'" in capsys.readouterr().err


def test_demo_lists_each_examples_variants(capsys) -> None:
    from harness.examples import LSTM_VARIANTS, VARIANTS

    assert main(["demo", "--example", "lenet", "--list"]) == 0
    out = capsys.readouterr().out
    assert "buggy variants of the example LeNet (trigrad demo --bug NAME)" in out
    assert all(name in out for name in VARIANTS) and not any(name in out for name in LSTM_VARIANTS)
    assert main(["demo", "--example", "lstm", "--list", "--no-color"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "buggy variants of the example LSTM language model (trigrad demo --example lstm --bug NAME)" in out
    assert all(name in out for name in LSTM_VARIANTS)


def test_demo_lstm_bug_of_another_example_is_refused(capsys) -> None:
    assert main(["demo", "--example", "lstm", "--bug", "fc1-bias-averaged"]) == 2
    err = capsys.readouterr().err
    assert "unknown bug 'fc1-bias-averaged'; trigrad demo --example lstm --list shows them: lstm-bptt-no-carry" in err


def test_demo_lstm_finds_the_bptt_mistake_at_its_timestep(capsys, tmp_path: Path) -> None:
    assert main(["demo", "--example", "lstm", "--no-color", "--json", str(tmp_path / "demo.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the terminal's line wrapping undone
    assert "a handwritten numpy LSTM language model" in out and "1. the correct network" in out
    assert "all 5 entries pass" in out
    assert "def lstm_backward_no_carry(" in out  # the mistake's code is shown
    assert "fix first: lstm (backward)" in out and "wrong from timestep 3 backwards" in out
    assert "the mistake is found in lstm (backward)" in out and "trigrad demo --example lstm --list" in out
    assert json.loads((tmp_path / "demo.json").read_text())["first_failure"] == "lstm"


def test_demo_shows_a_summary_with_brackets_as_written(capsys, monkeypatch) -> None:
    """A summary's ``dW[x]`` is text: rich read it as a markup tag and printed ``dW = dout``
    (in ``--list`` and in the heading of the buggy network's check)."""
    from rich.console import Console

    import harness.check
    from harness.demo import run_demo
    from harness.results import Report

    assert main(["demo", "--example", "lstm", "--list", "--no-color"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "written dW[x] = dout" in out and "dh[:, t]" in out
    calls: list[int] = []

    def check_network(*args: object, **kwargs: object) -> Report:  # the correct network "passes"; then stop
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("stop")
        return Report(seed=0)

    monkeypatch.setattr(harness.check, "check_network", check_network)
    console = Console(no_color=True, width=300, record=True)
    with pytest.raises(RuntimeError, match="stop"):
        run_demo(console, bug="embed-grad-overwritten", example_name="lstm")
    assert "one mistake: the embedding's gradient is written dW[x] = dout" in console.export_text()
