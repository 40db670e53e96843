"""One marked section of benchmarks/RESULTS.md, written by the script that measures it."""

from __future__ import annotations

from pathlib import Path


def write_section(name: str, text: str, path: Path) -> None:
    """Replace the section between ``<!-- name -->`` and ``<!-- /name -->`` in ``path`` with
    ``text`` (appended at the end when the markers are not there), leaving the rest."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old.split(start, 1)[0] + block + old.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
