"""``trigrad server status`` and ``trigrad server stop``: the warm servers of this user
(:mod:`harness.server`), one per environment (interpreter, paths, trigrad's files)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def servers(folder: Path) -> list[tuple[str, int | None]]:
    """(key, pid or None when its server is gone) for every lock file in ``folder``."""
    out = []
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        try:
            pid: int | None = int(lock.read_text() or "0") or None
        except (OSError, ValueError):
            pid = None
        if pid is not None and not _alive(pid, lock.with_suffix(".sock")):
            pid = None
        out.append((lock.stem, pid))
    return out


def _alive(pid: int, sock: Path) -> bool:
    """A server is alive when its lock is held and ``pid`` runs ``harness.server``: a server
    killed outright leaves its files, and its pid may be another process's by now."""
    from .server_client import lock_held

    if not lock_held(sock):
        return False
    try:
        return b"harness.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc (not Linux): the held lock says enough; else the pid is gone
        return not Path("/proc").is_dir()


def run(args: argparse.Namespace) -> int:
    """Print the servers (``status``) or end them (``stop``, SIGTERM, waiting up to 5 s)."""
    from .server_client import server_dir

    folder = server_dir()
    found = [(k, pid) for k, pid in servers(folder) if pid is not None]
    if args.action == "status":
        if not found:
            print(f"no trigrad server is running (folder {folder})")
        for k, pid in found:
            print(f"server {k}: pid {pid}, log {folder / (k + '.log')}")
        return 0
    for _, pid in found:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(pid, folder / f"{k}.sock") for k, pid in found):
        time.sleep(0.05)
    left = [pid for k, pid in found if _alive(pid, folder / f"{k}.sock")]
    if left:
        print(f"trigrad server: still running after 5 s: pid {', '.join(map(str, left))}", file=sys.stderr)
        return 1
    print(f"stopped {len(found)} trigrad server{'s' if len(found) != 1 else ''}")
    return 0
