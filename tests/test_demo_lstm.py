"""`trigrad demo --example NAME`: the bundled examples the demo can show."""

from __future__ import annotations

from harness.cli import main


def test_demo_unknown_example_is_a_usage_error(capsys) -> None:
    assert main(["demo", "--example", "gpt", "--list"]) == 2
    assert "unknown example 'gpt'; valid: lenet" in capsys.readouterr().err
    assert main(["demo", "--example", "gpt"]) == 2
    assert "unknown example 'gpt'" in capsys.readouterr().err


def test_demo_lists_the_lenet_by_default(capsys) -> None:
    assert main(["demo", "--example", "lenet", "--list"]) == 0
    assert "buggy variants of the example LeNet (trigrad demo --bug NAME)" in capsys.readouterr().out
