"""The README's Python examples run as written (so its picture of the API stays true)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["spec"].output_shape((2, 3, 32, 32)) == (2, 10)
    assert set(namespace["module"].state_dict()) == set(namespace["params"])
    # the detection line the README shows is what the code prints
    shown = str(namespace["tg"].detect_layout(namespace["Dense"](4, 3), namespace["tg"].Linear("fc", 4, 3)))
    assert shown in README.read_text()
    # the sweep's finding and its reproduce line (the first line holds timings)
    for line in str(namespace["found"]).splitlines()[1:]:
        assert line.rstrip() in README.read_text(), line
    # and the old-vs-new comparison, line for line
    for line in str(namespace["result"]).splitlines():
        assert line.rstrip() in README.read_text(), line
    # and so is the check_layer report's verdict and diagnosis
    report_text = str(namespace["report"])
    for line in report_text.splitlines():
        if "diagnosis" in line or line.startswith("fc "):
            assert line.rstrip() in README.read_text(), line


def _block_after(marker: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    return text[text.index("```\n", start) + 4:text.index("\n```", text.index("```\n", start) + 4)]


def test_readme_check_walkthrough_runs_as_shown(tmp_path: Path, capsys, monkeypatch) -> None:
    """The file of the three calling styles, run with `trigrad check` as the README shows."""
    from harness.cli import main

    source = re.search(r"```py\n(# my_layers\.py.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "my_layers.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    shown = README.read_text()
    assert main(["check", "my_layers.py:dense"]) == 0
    assert capsys.readouterr().out.splitlines()[0].strip() == "the entry passes (seed 0)"
    assert main(["check", "my_layers.py:affine"]) == 1
    out = capsys.readouterr().out
    for line in out.splitlines():
        assert line.rstrip() in shown, line
    assert main(["check", "my_layers.py:mlp", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_readme_demo_output_is_real(capsys, monkeypatch) -> None:
    from harness.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    assert main(["demo", "--bug", "fc1-bias-averaged"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    shown = _block_after("Real output of `trigrad demo --bug fc1-bias-averaged`").splitlines()
    assert len(lines) == len(shown)
    for got, expected in zip(lines[:-2], shown[:-2]):  # the last two lines hold the time taken
        assert same_line(got, expected), (got, expected)


RULES = set("─━═│┃┼╇╈┿┡┩┬┴╋╍┄")
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(e[-+]?\d+)?$")


def same_line(got: str, expected: str) -> bool:
    """The same words in the same order (column widths aside); figures equal to the digits
    that mean something: errors at rounding level (below 1e-12) are noise and match any such."""
    a, b = got.split(), expected.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if NUMBER.match(x.strip("()[],")) and NUMBER.match(y.strip("()[],")):
            u, v = float(x.strip("()[],")), float(y.strip("()[],"))
            if not (abs(u) < 1e-12 and abs(v) < 1e-12) and abs(u - v) > 0.05 * max(abs(u), abs(v)):
                return False
        elif x != y and not (set(x) <= RULES and set(y) <= RULES) and not (x[0] == y[0] == "~"):
            return False  # rules follow the column widths; "~name": a passing layer's nearest-to-tolerance tensor
    return True
