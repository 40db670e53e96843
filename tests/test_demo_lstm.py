"""`trigrad demo --example NAME`: the bundled examples the demo can show; the LSTM
language model's demo finds its default BPTT mistake with the timestep."""

from __future__ import annotations

import json
from pathlib import Path

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
