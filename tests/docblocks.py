"""Running a Markdown page's code blocks, and comparing shown output with real output
tolerantly (used by test_docs.py and test_readme.py).

A page's fenced blocks are read in order:

- ```` ```python ````: executed, in order, in one namespace per page; a block whose first line
  is ``# name.py`` is also written to ``name.py`` in the page's folder (a tmp_path), so the
  commands after it can use it. What it prints is its output.
- ```` ```console ```` / ```` ```bash ````: commands. ``$ trigrad ...`` (console) or
  ``trigrad ...`` (bash) runs through ``harness.cli.main`` in the page's folder; the lines
  after a console command, up to the next ``$``, are its shown output. ``; echo "exit $?"``
  after a command shows its exit code. Install and CI commands (pip, git, python -m venv, ``.``,
  cd, pytest, mkdocs) are not run here: ``.ci/run`` runs them on a fresh venv.
- ```` ```text ```` (or a bare fence): output. Right after a block that printed, it is that
  block's shown output and is compared with what it printed.

A block that is not run on purpose (an excerpt, a message quoted from elsewhere) carries
``<!-- not run: reason -->`` on the line(s) before its fence; every block that is neither run
nor compared must carry one.

Shown output is compared word by word (:func:`same_output`): the same words in the same order,
column widths and table rules ignored, ``...`` in the shown text standing for any run of
words. Numbers are compared only where they mean something: in a table row, two numbers
below the row's tolerance (its ``tol`` column), or in the FD column below max(tol, 1e-6)
(1e-6: the FD tolerance in float64), are both passing noise and match; outside tables two
numbers below 1e-12 (rounding) match; other numbers match within 5%; a
time (a number followed by ``s`` or ``ms``) matches any number. ``~name`` (a passing layer's
tensor closest to tolerance) matches any ``~name``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^```(\S*)(.*)$")
MARKER = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->", re.DOTALL)
RULES = {chr(c) for c in range(0x2500, 0x2580)} | {"-"}  # box drawing: table rules and borders
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(e[-+]?\d+)?$")
PUNCT = "()[],;:"
ROUNDING = 1e-12  # outside a table: errors at rounding level are noise
NOISE = 1e-6  # finite differences' tolerance in float64: an FD column below it passes
NOT_RUN_COMMANDS = ("pip", "git", "python3", "python", ".", "source", "cd", "pytest", "mkdocs")
SHELL = {"console", "bash", "sh", "shell"}
OUTPUT = {"text", ""}


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # the reason of a preceding <!-- not run: ... -->
    ran: bool = False
    output: str | None = None  # what a run block printed

    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'text'})"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their not-run markers."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        before = "\n".join(lines[max(0, start - 4):start])
        comments = MARKER.findall(before.split("```")[-1])
        out.append(Block(path.name, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                         comments[-1] if comments else None))
        i = j + 1
    return out


# --------------------------------------------------------------------------- running


def run_python(block: Block, namespace: dict, folder: Path) -> None:
    first = block.text.splitlines()[0] if block.text.strip() else ""
    m = re.match(r"#\s*([\w/]+\.py)\b", first)
    if m:
        (folder / m.group(1)).write_text(block.text)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(block.text, f"{block.page}:{block.line}", "exec"), namespace)  # noqa: S102 - our own docs
    block.ran, block.output = True, buf.getvalue()


def commands(block: Block) -> list[tuple[str, str]]:
    """(command, shown output) pairs of a shell block."""
    lines = block.text.splitlines()
    if block.lang == "console":
        pairs: list[tuple[str, list[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
        return [(cmd, "\n".join(shown)) for cmd, shown in pairs]
    return [(line.split("  #")[0].strip(), "") for line in lines if line.strip() and not line.lstrip().startswith("#")]


def runnable(command: str) -> bool:
    """A `trigrad` command runs here; an install or CI command is left to .ci/run; anything
    else is an error of the page (it must be marked)."""
    words = shlex.split(command.split("&&")[0], comments=True) if command.strip() else []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]  # VAR=value before the command
    if words and words[0] == "trigrad":
        return True
    if not words or words[0] in NOT_RUN_COMMANDS or words[0].endswith("pip"):
        return False
    raise AssertionError(f"a shell command that is neither trigrad nor an install/CI command: {command!r}")


def run_trigrad(command: str, capsys: Any) -> tuple[int, str]:
    """Run ``trigrad ...`` through harness.cli.main; its stdout, plus ``exit N`` if the
    command echoes its exit code."""
    from harness.cli import main

    echo = re.search(r';\s*echo\s+"exit \$\?"\s*$', command)
    argv = shlex.split(command[:echo.start()] if echo else command)[1:]
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr().out
    return code, out + (f"exit {code}\n" if echo else "")


def run_page(path: Path, folder: Path, capsys: Any) -> tuple[list[Block], dict]:
    """Run a page's blocks in order (cwd must be ``folder``); compare every shown output
    with the real one. Returns the blocks and the page's namespace."""
    page = blocks(path)
    namespace: dict = {"__name__": "__main__"}  # as in a script the reader runs
    previous: Block | None = None
    for block in page:
        if block.marker is not None:
            previous = None
            continue
        if block.lang in ("python", "py"):
            run_python(block, namespace, folder)
            previous = block if block.output else None
            continue
        if block.lang in SHELL:
            for command, shown in commands(block):
                if not runnable(command):
                    continue
                code, out = run_trigrad(command, capsys)
                block.ran = True
                if block.lang == "console" and shown.strip():
                    assert same_output(out, shown), f"{block.where()}: `{command}` printed\n{out}\nshown:\n{shown}"
                elif "exit" not in command:
                    assert code in (0, 1), f"{block.where()}: `{command}` exited {code}\n{out}"
            previous = None
            continue
        if block.lang in OUTPUT and previous is not None:
            assert same_output(previous.output or "", block.text), (
                f"{block.where()}: the block before printed\n{previous.output}\nshown:\n{block.text}")
            block.ran = True
        previous = None
    return page, namespace


def unmarked_skips(page: list[Block]) -> list[str]:
    """Blocks neither run nor compared nor marked: each must say why it is not run."""
    bad = []
    for block in page:
        if block.ran or block.marker is not None:
            continue
        if block.lang in SHELL and not any(runnable(c) for c, _ in commands(block)):
            continue  # install / CI commands: .ci/run runs them
        bad.append(block.where())
    return bad


# --------------------------------------------------------------------------- comparing


def _number(token: str) -> float | None:
    t = token.strip(PUNCT)
    return float(t) if NUMBER.match(t) else None


def _tokens(text: str) -> list[tuple[str, float]]:
    """Words, each with the level below which it is passing noise: in a table row, the row's
    ``tol`` (max(tol, 1e-6) in the FD column), columns found by the header's right-aligned
    ``tol`` and ``FD``; elsewhere rounding level (1e-12)."""
    out: list[tuple[str, float]] = []
    tol_end = fd_end = None
    for line in text.splitlines():
        spans = [(m.group(), m.end()) for m in re.finditer(r"\S+", line)
                 if not set(m.group()) <= RULES or m.group() == "-"]
        words = [w for w, _ in spans]
        if "tol" in words and ({"verdict", "status", "tensor"} & set(words)):
            tol_end = next(e for w, e in spans if w == "tol")
            fd_end = next((e for w, e in spans if w in ("FD", "fd")), None)
        tol = next((_number(w) for w, e in spans if tol_end is not None and abs(e - tol_end) <= 1
                    and _number(w) is not None), None)
        for w, e in spans:
            if tol is None:
                out.append((w, ROUNDING))
            elif fd_end is not None and abs(e - fd_end) <= 1:
                out.append((w, max(abs(tol), NOISE)))
            else:
                out.append((w, abs(tol)))
    return out


def _timed(tokens: list[tuple[str, float]], i: int) -> bool:
    return i + 1 < len(tokens) and tokens[i + 1][0].strip(PUNCT + ".") in ("s", "ms")


def _same_word(got: list, i: int, shown: list, j: int) -> bool:
    a, b = got[i][0], shown[j][0]
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        if _timed(got, i) and _timed(shown, j):
            return True
        noise = shown[j][1]
        if abs(x) <= noise and abs(y) <= noise:
            return True  # both passing noise: digits that differ from machine to machine
        return abs(x - y) <= 0.05 * max(abs(x), abs(y))
    return a.startswith("~") and b.startswith("~")


def same_output(got: str, shown: str) -> bool:
    """The same words in the same order, numbers compared against tolerances (see the module
    docstring); ``...`` in ``shown`` matches any run of words."""
    g, s = _tokens(got), _tokens(shown)
    # match[j] = the set of positions in g reachable after matching s[:j]
    reach = {0}
    for j in range(len(s)):
        if s[j][0] in ("...", "…"):
            lo = min(reach) if reach else len(g) + 1
            reach = set(range(lo, len(g) + 1))
            continue
        reach = {i + 1 for i in reach if i < len(g) and _same_word(g, i, s, j)}
        if not reach:
            return False
    return len(g) in reach


# --------------------------------------------------------------------------- code maps


def map_paths(text: str) -> list[str]:
    """The paths a code map names: each line's leading file or folder names (``x.py``,
    ``folder/``), nested under the folder above them by indentation."""
    out: list[str] = []
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        # the names column ends at the first run of two spaces (the description follows)
        names = []
        for word in re.split(r"\s{2,}", line.strip())[0].split(" "):
            if not re.fullmatch(r"[\w.]+(\.\w+|/)", word):
                break
            names.append(word)
        if not names:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prefix = stack[-1][1] if stack else ""
        out += [prefix + name for name in names]
        if names[0].endswith("/"):
            stack.append((indent, prefix + names[0]))
    return out


def missing_paths(text: str, root: Path) -> list[str]:
    """The paths of a code map that do not exist under ``root``."""
    return [p for p in map_paths(text) if not (root / p).exists()]


@contextlib.contextmanager
def one_torch_thread() -> Any:
    """The pages' tensors are tiny: torch's intra-op thread pool only costs time (several
    times per check on a loaded 2-core machine). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
