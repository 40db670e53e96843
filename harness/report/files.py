"""Report files: strict JSON written atomically, and the JSON Schema it follows."""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the
    same folder and a rename, so a reader never sees half a file. A symlink at ``path`` is
    written through (the link stays); an existing file keeps its permission bits."""
    path = Path(os.path.realpath(Path(path).expanduser()))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:  # name the file the user asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)  # a report kept private (0600) stays private
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # as open() would make it: mkstemp's 0600 would hide a shared report
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(report: Any, path: str | os.PathLike) -> None:
    """``report.to_json()`` (strict JSON: non-finite figures as null; or a report's dict as
    read back from such JSON) written atomically;
    ``"-"`` writes it to standard output."""
    text = (
        report.to_json(indent=1) if hasattr(report, "to_json") else json.dumps(report, indent=1, allow_nan=False)
    ) + "\n"  # a Report, or its dict read back
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(path, text)


def load_schema() -> dict:
    """The JSON Schema (draft 2020-12) of ``Report.to_dict()`` as written by :func:`write_json`."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


__all__ = ["SCHEMA_PATH", "load_schema", "write_atomic", "write_json"]
