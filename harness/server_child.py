"""A child forked by the warm server (:mod:`harness.server`) made into the process a fresh
``python -m harness.isolate`` would have been: the client's session, folder, environment,
standard streams, umask, resource limits, CPU affinity and niceness, none of the server's
descriptors, and fresh global random state.

What a fork cannot give is anything read at import time by the frameworks the server
imported. The server's key (:func:`harness.server_client.key`) covers the variables they read
when the client starts; :func:`env_changed` catches the user's own code setting one (say
``os.environ["JAX_ENABLE_X64"] = "1"`` before ``import jax``) after that, and the check is
then run again in a fresh interpreter (``rerun``), as are limits the server cannot apply.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

# resource limits a fresh process inherits from its parent and a check can run into
_LIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS", "RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_CPU", "RLIMIT_FSIZE",
           "RLIMIT_CORE", "RLIMIT_NPROC", "RLIMIT_MEMLOCK")  # fmt: skip
_FORKED: dict[str, str] = {}  # the import-time variables when this child was made (empty: not served)


class Rerun(Exception):
    """The served child cannot be what a fresh child would be; the message says why."""


def client_state() -> dict[str, Any]:
    """The client's process settings a child inherits, as JSON: umask, rlimits, affinity, nice."""
    import resource

    umask = os.umask(0o022)
    os.umask(umask)
    limits = {name: list(resource.getrlimit(getattr(resource, name))) for name in _LIMITS if hasattr(resource, name)}
    state: dict[str, Any] = {"umask": umask, "limits": limits, "nice": os.getpriority(os.PRIO_PROCESS, 0)}
    if hasattr(os, "sched_getaffinity"):
        state["affinity"] = sorted(os.sched_getaffinity(0))
    return state


def _apply(state: dict[str, Any]) -> None:
    """Take on the client's settings; :class:`Rerun` for one this process cannot reach (a
    higher hard limit or a lower niceness than the server's)."""
    import resource

    os.umask(int(state["umask"]))
    for name, (soft, hard) in state["limits"].items():
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (soft, hard))
            except (ValueError, OSError) as e:
                raise Rerun(f"the server cannot take on your {name} ({soft}, {hard}): {e}") from e
    nice = int(state["nice"]) - os.getpriority(os.PRIO_PROCESS, 0)
    if nice < 0:
        raise Rerun("your process runs at a higher priority than the server")
    if nice:
        os.nice(nice)
    if "affinity" in state and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, state["affinity"])
        except OSError as e:
            raise Rerun(f"the server cannot run on your CPUs {state['affinity']}: {e}") from e


def _streams(fds: list[int]) -> None:
    """Standard input empty, output and error the client's standard error; the received
    descriptors closed once copied (a daemon the user's code starts holds nothing of ours)."""
    _, err = fds
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(err, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    if hasattr(sys.stdout, "reconfigure"):  # line-buffered on a terminal, as a fresh one would be
        sys.stdout.reconfigure(line_buffering=os.isatty(1))


def become(message: dict, fds: list[int], server_fds: list[int]) -> None:
    """Turn this fork into the client's child (see the module docstring); ``server_fds``:
    the server's descriptors to close (listening socket, connections, lock, selector)."""
    from .server_client import watched_env

    os.setsid()  # its own session: the client ends it (and what it starts) by its pid
    signal.set_wakeup_fd(-1)
    for fd in server_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _streams(fds)
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    _FORKED.update(watched_env())
    _FORKED.setdefault("", "served")  # marks this process as served even with no watched variable
    import numpy as np

    np.random.seed()  # seeded once at the server's import; Python's random reseeds after a fork
    _apply(message["state"])


def env_changed() -> list[str]:
    """In a served child: the import-time variables the user's code has changed since the
    fork (empty in a fresh child, where nothing was imported before the user's code)."""
    if not _FORKED:
        return []
    from .server_client import watched_env

    now = watched_env()
    forked = {k: v for k, v in _FORKED.items() if k}
    return sorted(k for k in {*forked, *now} if forked.get(k) != now.get(k))


def send_rerun(progress_fd: int, why: str) -> None:
    """Tell the client to run the check in a fresh interpreter instead."""
    with os.fdopen(progress_fd, "w", encoding="utf-8") as channel:
        channel.write(json.dumps({"t": "rerun", "message": why}) + "\n")


__all__ = ["Rerun", "become", "client_state", "env_changed", "send_rerun"]
