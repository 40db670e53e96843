"""Where a report may be written: checked before the check runs, so nothing is lost.

A report never replaces the code under check, a source or data file, or any file that is not
an earlier trigrad report of the same kind; ``--json`` and ``--html`` never name the same
file; a missing folder is said before minutes of checking. A symlink is written through
(the link stays, its target is replaced atomically); an existing report keeps its mode.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from ..results import SCHEMA

# names a report is never written to, even where no file exists yet: code, notebooks,
# weights and snapshots (any other existing file is refused unless it is a trigrad report)
PROTECTED_SUFFIXES = frozenset(
    {
        ".py",
        ".pyi",
        ".pyx",
        ".pxd",
        ".ipynb",
        ".c",
        ".cc",
        ".cpp",
        ".cxx",
        ".cu",
        ".cuh",
        ".h",
        ".hpp",
        ".rs",
        ".jl",
        ".sh",
        ".npz",
        ".npy",
        ".safetensors",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".pkl",
    }
)
HTML_MARKER = '<meta name="generator" content="trigrad">'


class ReportPathError(ValueError):
    """A report path that would lose the user's data or cannot be written: a usage error."""


# how write_json begins a report: read from the head, so a report of any size is recognised
_JSON_HEAD = re.compile(r'\A\s*\{\s*"schema"\s*:\s*"' + re.escape(SCHEMA) + '"')


def _is_report(path: Path, kind: str) -> bool:
    """Whether the existing file at ``path`` is a trigrad report of ``kind`` (json/html)."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    if kind == "html":
        # reports written before the marker existed carry the default title
        return HTML_MARKER in text or (text.startswith("<!DOCTYPE html>") and "<title>trigrad report</title>" in text)
    return bool(_JSON_HEAD.match(text))


def check_report_path(option: str, path: str, kind: str, protected: Iterable[Path] = ()) -> Path:
    """The file ``path`` resolves to (through symlinks), after checking that a ``kind``
    report (``json`` or ``html``) may be written there; :class:`ReportPathError` names the
    option, the path and why not. ``protected``: files that must survive (the code under check)."""
    if not path or path == "-":
        raise ReportPathError(f"{option} needs a file path, got {path!r}")
    real = Path(os.path.realpath(Path(path).expanduser()))
    via = f" (through the symlink {path})" if Path(path).is_symlink() else ""
    if real in {Path(os.path.realpath(p)) for p in protected}:
        raise ReportPathError(f"{option} {path}: that is the code under check{via}; refusing to overwrite it")
    if real.suffix.lower() in PROTECTED_SUFFIXES:
        raise ReportPathError(
            f"{option} {path}: refusing to write a report over a {real.suffix} file{via}; use a .{kind} name"
        )
    if real.is_dir():
        raise ReportPathError(
            f"{option} {path}: is a folder; give a file name such as {Path(path) / ('report.' + kind)}"
        )
    special = [str(q) for q in (real, Path(path).expanduser().absolute()) if str(q).startswith(("/dev/", "/proc/"))]
    if special or (real.exists() and not stat.S_ISREG(real.stat().st_mode)):
        raise ReportPathError(
            f"{option} {path}: not a regular file (a device, pipe or terminal); write the report "
            "to a file" + (", or --json - for standard output" if kind == "json" else "")
        )
    if not real.parent.is_dir():
        raise ReportPathError(f"{option} {path}: the folder {real.parent} does not exist; create it first")
    if not os.access(real.parent, os.W_OK):
        raise ReportPathError(f"{option} {path}: the folder {real.parent} is not writable")
    if real.exists() and not _is_report(real, kind):
        raise ReportPathError(
            f"{option} {path}: {real} exists and is not a trigrad {kind} report{via}; "
            "refusing to overwrite it (remove it or choose another path)"
        )
    return real


def check_report_paths(json_path: str | None, html_path: str | None, protected: Iterable[Path] = ()) -> dict[str, str]:
    """Both report options checked together (see :func:`check_report_path`); ``--json -``
    (standard output) is allowed. Returns the resolved paths by kind."""
    protected = list(protected)
    out: dict[str, str] = {}
    if json_path is not None:
        out["json"] = "-" if json_path == "-" else str(check_report_path("--json", json_path, "json", protected))
    if html_path is not None:
        out["html"] = str(check_report_path("--html", html_path, "html", protected))
    if "json" in out and out.get("html") == out["json"]:
        raise ReportPathError(f"--json {json_path} and --html {html_path} are the same file; give two paths")
    return out


__all__ = ["HTML_MARKER", "PROTECTED_SUFFIXES", "ReportPathError", "check_report_path", "check_report_paths"]
