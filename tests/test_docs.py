"""Every code block of docs/*.md runs, and prints what the page shows.

Per page, in order and in one namespace: ```python blocks are executed (a block starting
``# name.py`` is also written to that file in a tmp_path, the page's working folder);
``trigrad ...`` commands in ```console / ```bash blocks run through ``harness.cli.main``;
a ```text block right after a block that printed is compared with what it printed. The
comparison is by words (verdicts, names and structure exactly; numbers only against their
tolerances; see tests/docblocks.py), so it holds on any machine. Install commands (pip, git,
venv) and CI commands (pytest, mkdocs) are not run here: .ci/run runs them on a fresh venv.
A block that is not run on purpose carries ``<!-- not run: reason -->`` before it, and the
test checks that every block neither run nor compared carries one. After a page has run,
a few checks on its namespace pin the structure the page describes (verdicts, entry names,
shapes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docblocks import blocks, map_paths, missing_paths, one_torch_thread, run_page, unmarked_skips

DOCS = Path(__file__).resolve().parents[1] / "docs"
@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield


PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
# pages whose blocks take 10 s or more (a demo, `trigrad refs`, a sweep, whole-network references):
# run by `pytest -m slow` and .ci/run
SLOW = {"cli.md", "report.md", "spec.md", "sweeps.md"}


def _verdicts(report) -> list[tuple[str, str]]:
    return [(layer.name, layer.verdict) for layer in report.layers]


def _check_getting_started(ns: dict) -> None:
    assert _verdicts(ns["report"]) == [("fc", "backward")]
    assert [t.name for t in ns["report"].layer("fc").tensors] == ["output", "input", "weight", "bias"]
    assert [t.name for t in ns["report"].layer("fc").tensors if not t.ok] == ["weight"]


def _check_layouts(ns: dict) -> None:
    assert ns["found"].matched and ns["found"].best.linear == "in_out"


def _check_objects(ns: dict) -> None:
    assert ns["dx"].shape == (5, 4) and ns["y"].shape == (5, 3)
    # the last example: a first layer returning no input gradient, undeclared
    assert _verdicts(ns["report"]) == [("fc1", "error")] and ns["report"].layer("fc1").error_side == "backward"


def _check_functions(ns: dict) -> None:
    assert _verdicts(ns["report"]) == [("fc", "backward")]


def _check_networks(ns: dict) -> None:
    assert _verdicts(ns["report"]) == [("fc1", "pass"), ("relu", "pass"), ("fc2", "pass"), ("(network)", "backward")]
    assert set(ns["weights"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def _check_losses(ns: dict) -> None:
    assert _verdicts(ns["report"]) == [("(loss)", "backward")]
    assert _verdicts(ns["model_report"]) == [("(network)", "pass")]


def _check_arrays(ns: dict) -> None:
    assert _verdicts(ns["report"]) == [("fc", "pass")]
    assert [t.name for t in ns["report"].layer("fc").tensors] == ["output", "input", "weight", "bias"]


def _check_autograd(ns: dict) -> None:
    # the last example: a bias gradient of the broadcast shape, summed by torch: a pass with a note
    assert _verdicts(ns["report"]) == [("fc", "pass")] and ns["report"].layer("fc").message.startswith("note: bias:")
    assert {type(ns[k]).__name__ for k in ("ln", "conv")} == {"AutogradLayer"}
    assert ns["ln"].framework == "torch"


def _check_regression(ns: dict) -> None:
    assert [(e.name, e.status) for e in ns["result"].entries] == [("fc", "broken")]
    assert ns["later"].ok and (Path.cwd() / "fc_snapshot.npz").is_file() and (Path.cwd() / "fc_snapshot.json").is_file()


def _check_report(ns: dict) -> None:
    assert ns["data"]["layers"][0]["verdict"] == "pass"
    assert (Path.cwd() / "demo.json").is_file() and (Path.cwd() / "demo.html").is_file()


def _check_sweeps(ns: dict) -> None:
    assert ns["found"].failing == {"kernel": 2, "stride": 1, "width": 4}
    styles = {k: ns[k].style for k in ("found", "pair", "loss", "net", "model", "overflow")}
    assert styles == {"found": "layer", "pair": "layer", "loss": "loss", "net": "network", "model": "loss model",
                      "overflow": "loss"}
    assert ns["usage"].usage_error is not None and ns["usage"].examples == 0 and ns["usage"].failing is None


def _check_spec(ns: dict) -> None:
    assert ns["spec"].output_shape((8, 3, 32, 32)) == (8, 10)
    assert ns["res"].output.shape == (8, 10) and ns["res"].input_grad.shape == (8, 3, 32, 32)
    assert set(ns["module"].state_dict()) == set(ns["params"])


CHECKS = {
    "getting-started.md": _check_getting_started,
    "wrapping/layouts.md": _check_layouts,
    "wrapping/objects.md": _check_objects,
    "wrapping/functions.md": _check_functions,
    "wrapping/networks.md": _check_networks,
    "wrapping/losses.md": _check_losses,
    "wrapping/arrays.md": _check_arrays,
    "wrapping/autograd.md": _check_autograd,
    "regression.md": _check_regression,
    "report.md": _check_report,
    "sweeps.md": _check_sweeps,
    "spec.md": _check_spec,
}


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW else p for p in PAGES])
def test_page_blocks_run_as_shown(page, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    blocks, namespace = run_page(DOCS / page, tmp_path, capsys)
    assert unmarked_skips(blocks) == [], "blocks neither run nor marked <!-- not run: reason -->"
    if page in CHECKS:
        CHECKS[page](namespace)


def test_every_page_is_in_the_site() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    for page in PAGES:
        assert page in nav, page


def test_architecture_module_map_is_true() -> None:
    """Every module the architecture page's map names exists."""
    page = DOCS / "architecture.md"
    block = next(b.text for b in blocks(page) if "reference_models/" in b.text)
    assert len(map_paths(block)) >= 80
    assert missing_paths(block, DOCS.parent) == []


def test_a_wrong_page_fails(tmp_path, capsys, monkeypatch) -> None:
    """The runner is a real check: a shown verdict that is not the real one fails, and a block
    that is neither run nor marked is reported."""
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "wrong.md"
    page.write_text('```python\nprint("fc pass")\n```\n\n```text\nfc backward\n```\n')
    with pytest.raises(AssertionError, match="the block before printed"):
        run_page(page, tmp_path, capsys)
    page.write_text("```text\nquoted, not run\n```\n\n<!-- not run: an excerpt -->\n```python\nimport nothing_here\n```\n")
    blocks_, _ = run_page(page, tmp_path, capsys)
    assert unmarked_skips(blocks_) == ["wrong.md:1 (text)"]
