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
    # and so is the check_layer report's verdict and diagnosis
    report_text = str(namespace["report"])
    for line in report_text.splitlines():
        if "diagnosis" in line or line.startswith("fc "):
            assert line.rstrip() in README.read_text(), line
