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
from docblocks import blocks, map_paths, missing_paths, run_page, unmarked_skips

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
# pages whose blocks take 10 s or more (a demo, `trigrad refs`, a sweep, whole-network references):
# run by `pytest -m slow` and .ci/run
SLOW = {"cli.md", "report.md", "spec.md", "sweeps.md"}


def _check_getting_started(ns: dict) -> None:
    assert ns["report"].first_failure == "fc"
    assert [t.name for t in ns["report"].layer("fc").tensors] == ["output", "input", "weight", "bias"]


CHECKS = {
    "getting-started.md": _check_getting_started,
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
