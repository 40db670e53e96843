"""The `trigrad` command as it stands: `refs` shows torch-vs-jax agreement per layer."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness.cli import main


def test_refs_reports_agreement_for_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refs", "lenet5", "--batch", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "input (2, 1, 32, 32), 61,706 parameter values, seed 3" in out
    for layer in ("conv1", "pool2", "flatten", "fc3"):
        assert re.search(rf"^{layer}\s", out, re.M), layer
    worst = float(re.search(r"parameter gradients: ([0-9.e+-]+)", out).group(1))
    assert 0 <= worst <= 1e-12


def test_refs_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refs", "alexnet"]) == 2
    assert "unknown architecture 'alexnet'; known: lenet5" in capsys.readouterr().err
    assert main(["refs", "lenet5", "--size", "8"]) == 2
    assert "layer 'conv2'" in capsys.readouterr().err
    assert main([]) == 2


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "trigrad 0.1.0"
