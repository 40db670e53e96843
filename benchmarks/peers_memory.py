"""Peak memory of one run, for ``peers.py``: the growth of this process's peak RSS (``VmHWM``
reset through ``/proc/self/clear_refs``), and glibc set up first so a run cannot silently
reuse memory that earlier runs freed. Includes torch's and XLA's allocations, which
``tracemalloc`` would not see."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Callable

MMAP_THRESHOLD = 65536  # bytes: glibc serves larger blocks by mmap during the memory runs
M_MMAP_THRESHOLD = -3  # mallopt's parameter number


def _status(field: str) -> int:
    """``VmHWM`` / ``VmRSS`` of this process in bytes (0 where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def release_freed_memory(pin: bool = False) -> None:
    """Before a memory run: give memory freed by earlier runs back to the OS
    (``malloc_trim``), and with ``pin`` make glibc serve every block of 64 KiB or more by
    mmap from now on (``mallopt(M_MMAP_THRESHOLD)``, which also stops it raising that
    threshold), so a run's peak RSS growth counts its own allocations instead of reusing
    memory freed before. Pinned, large allocations get slower (fresh pages every time):
    timings are taken before. A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if pin:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.malloc_trim(0)


def peak_rss_growth(fn: Callable[[], Any]) -> tuple[Any, float | None]:
    """Run ``fn``; return (its result, peak RSS growth in MiB during the run, or None where
    the high-water mark cannot be reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return fn(), None
    before = _status("VmRSS")
    result = fn()
    return result, max(0, _status("VmHWM") - before) / 2**20
