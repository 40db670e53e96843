"""The README's blocks run as shown: the demo and `trigrad check` print what the README
shows (verdicts, names and structure exactly; numbers only against tolerances, so the test
passes on any machine), and its picture of the code stays true.

How blocks are run and compared: tests/docblocks.py. Install commands (pip, git, venv) are
not run here; .ci/run runs them on a fresh venv.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docblocks import blocks, map_paths, missing_paths, one_torch_thread, run_page, same_output, unmarked_skips


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@pytest.fixture
def ran(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    return run_page(README, tmp_path, capsys)


def test_readme_blocks_run_as_shown(ran) -> None:
    page, namespace = ran
    assert unmarked_skips(page) == []
    shown = [b.text for b in page if b.lang == "console" and b.ran]
    assert any("trigrad demo --bug fc1-bias-averaged" in t and "fix first: fc1 (backward)" in t for t in shown)
    assert any("trigrad check my_layers.py:dense" in t for t in shown)
    # the checked file is the one the README shows: no spec, and it passes from Python too, inferred exactly
    import harness as tg

    layer, x = namespace["dense"]()
    report = tg.check_layer(layer, x=x)
    assert [layer.verdict for layer in report.layers] == ["pass"]
    assert [t.name for t in report.layer("fc").tensors] == ["output", "input", "weight", "bias"]
    assert report.inferred is not None and report.inferred["status"] == "exact"
    assert "spec" not in namespace and "Layout" not in "".join(b.text for b in page if b.lang == "python")


def test_readme_stays_short_and_its_links_resolve() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 205
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (ROOT / target).is_file(), target


def test_readme_code_map_is_true() -> None:
    """Every path the README's code map names exists (its picture of the code stays true)."""
    block = next(b.text for b in blocks(README) if "harness/" in b.text and "reference_models/" in b.text)
    assert len(map_paths(block)) >= 25
    assert missing_paths(block, ROOT) == []


def test_same_output_is_tolerant_of_noise_not_of_verdicts() -> None:
    head = " layer   verdict   tensor   vs torch    vs jax     vs FD       tol\n"
    shown = head + " fc      pass      ~input    1.0e-16   0.0e+00   4.7e-13   2.5e-14\n"
    assert same_output(head + " fc   pass  ~output   4.5e-16   3.0e-16   9.1e-11   2.5e-14\n", shown)
    assert not same_output(head + " fc   backward  ~output  4.5e-16  3.0e-16   9.1e-11   2.5e-14\n", shown)
    assert not same_output(head + " fc      pass      ~input    4.5e-13   0.0e+00   4.7e-13   2.5e-14\n", shown)
    assert not same_output(head + " fc      pass      ~input    1.0e-16   0.0e+00   4.7e-05   2.5e-14\n", shown)
    row = " fc      back      bias      {}   7.5e-01   7.3e-01   2.8e-14\n"
    assert same_output(head + row.format("7.4e-01"), head + row.format("7.5e-01"))
    assert not same_output(head + row.format("6.4e-01"), head + row.format("7.5e-01"))
    assert same_output("rel error 1.3e-16; 2 tried\n", "rel error 4.4e-17; 2 tried\n")
    assert same_output("found in fc1 in 12.3 s. Other\n", "found in fc1 in 4.8 s. Other\n")
    assert same_output("a b c d e\n", "a ... e\n") and not same_output("a b c\n", "a ... d\n")
