"""Running the user's code in a child process, so that nothing it does can fake a pass.

``trigrad check`` and ``trigrad sweep`` import and run code they do not control. That code
may call ``sys.exit(0)`` or ``os._exit(0)``, crash the interpreter, print to stdout, or hang.
The parent process (:func:`run_isolated`) owns the exit code, standard output and every file
written; the child (``python -m harness.isolate``) only computes, and sends its progress and
its final result over a pipe as JSON lines. The parent trusts nothing but a complete
``result`` message: a child that exits, dies or times out before sending one is reported
with what happened and where, and the command exits 2.

In the child, standard output is the parent's standard error (so ``--json -`` stays pure
JSON whatever the user's code prints) and standard input is empty.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_REAL_EXIT = os._exit  # kept before the child guards os._exit, to end the child itself
PROGRESS_EVERY = 10.0  # seconds between plain progress lines when stderr is not a terminal


@dataclass
class Outcome:
    """What the child did. ``kind``: ``result`` (``value`` holds it), ``usage`` (a usage or
    configuration error), ``exit`` (the user's code ended the process), ``died``,
    ``timeout``, ``interrupted`` or ``internal`` (trigrad itself failed); ``message`` says
    what happened, ``done`` lists the entries checked before the end."""

    kind: str
    message: str = ""
    value: Any = None
    done: list[str] = field(default_factory=list)
    current: str | None = None


# ---------------------------------------------------------------------------- parent side


def _signal_name(status: int) -> str:
    try:
        return signal.Signals(-status).name
    except ValueError:
        return f"signal {-status}"


class _Lines:
    """JSON lines from the child's pipe, read without blocking past a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer, self.closed, self.idle = fd, b"", False, False

    def read(self, wait: float) -> list[dict]:
        """Complete lines read within ``wait`` seconds; ``idle``: nothing was there to read."""
        if self.closed:
            time.sleep(max(0.0, min(wait, 0.05)))
            return []
        ready, _, _ = select.select([self.fd], [], [], max(0.0, wait))
        self.idle = not ready
        if ready:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.closed = True
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:  # not ours (the user's code wrote to our pipe): ignore it
                continue
        return out


class _Seen:
    """The child's progress so far: entries done, the one being checked, where it stands."""

    def __init__(self, progress: Callable[[str, int, int], None] | None) -> None:
        self.progress, self.current, self.position = progress, None, (0, 0)
        self.done: list[str] = []

    def event(self, event: dict) -> Outcome | None:
        """Take one message; the final :class:`Outcome` when it is one."""
        if event.get("t") != "progress":
            return Outcome(event.get("t", "internal"), event.get("message", ""), event.get("value"))
        name, i, n = event["name"], int(event["done"]), int(event["total"])
        if self.current is not None and self.current != name and self.current not in self.done:
            self.done.append(self.current)
        self.current, self.position = name, (i, n)
        if self.progress:
            self.progress(name, i, n)
        return None

    def where(self) -> str:
        if self.current is None:
            return "loading your code"
        return f"checking '{self.current}' ({self.position[0] + 1} of {self.position[1]})"


def _spawn(request: dict, server: bool) -> tuple[Any, int]:
    """The child (a ``Popen``, or a :class:`~harness.server_client.ServedChild` forked by the
    warm server when ``server`` and one can be had) and the read end of its pipe."""
    read_fd, write_fd = os.pipe()
    request = {**request, "fd": write_fd, "sys_path": list(sys.path)}
    if server:
        from .server_client import spawn

        served = spawn(request, write_fd)
        if served is not None:
            os.close(write_fd)
            return served, read_fd
        # a server too slow to answer may still fork a child on this pipe: a new one for ours
        os.close(read_fd)
        os.close(write_fd)
        read_fd, write_fd = os.pipe()
        request = {**request, "fd": write_fd}
    try:
        # a session of its own: a terminal's Ctrl-C reaches only the parent, which ends the child
        # and everything the user's code started (no half-printed tracebacks from the child)
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.isolate", json.dumps(request)],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=2,
            start_new_session=True,
        )
    finally:
        os.close(write_fd)
    return proc, read_fd


def _stop(proc: Any) -> None:
    """End the child and whatever it started (its process group). Nothing of the user's is
    lost: the child only computes, and the parent writes every file."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone
        pass
    proc.wait()


def _finish(proc: Any, out: Outcome | None, done: list[str], current: str | None) -> Outcome:
    status = proc.wait()
    _stop(proc)  # what the user's code left running (a daemon process, a server) ends with the check
    if out is not None and (out.kind != "result" or status == 0):
        out.done, out.current = done, current
        return out
    where = f" while checking '{current}'" if current else " before the check began"
    if status < 0:
        what = f"was killed by {_signal_name(status)}"
    else:
        what = f"exited with status {status}"
    return Outcome(
        "died",
        f"the process running your code {what}{where}, before the report was complete",
        done=done,
        current=current,
    )


def run_isolated(
    request: dict,
    *,
    timeout: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    plain_progress: bool = False,
    server: bool = False,
) -> Outcome:
    """Run ``request`` (``{"command": "check" | "sweep" | "infer", ...}``, see :func:`_work`) in a
    child process and return its :class:`Outcome`. ``progress(name, done, total)`` is fed
    from the child's progress; ``plain_progress`` also prints a line to stderr every
    :data:`PROGRESS_EVERY` seconds (for CI logs, where no progress bar is drawn).
    ``timeout``: seconds after which the child is stopped (``kind="timeout"``).
    KeyboardInterrupt ends the child at once and is raised again. ``server``: have the warm
    server (:mod:`harness.server`) fork the child, if one can be had."""
    proc, read_fd = _spawn(request, server)
    lines = _Lines(read_fd)
    start = time.monotonic()
    every = float(os.environ.get("TRIGRAD_PROGRESS_EVERY", PROGRESS_EVERY))
    next_line = start + every
    seen = _Seen(progress)
    final = None
    try:
        while final is None:
            exited = proc.poll() is not None
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                _stop(proc)
                return Outcome(
                    "timeout", f"stopped after the --timeout of {timeout:g} s", done=seen.done, current=seen.current
                )
            wait = 0.0 if exited else min(next_line - now, (start + timeout - now) if timeout is not None else 0.5, 0.5)
            for event in lines.read(wait):
                final = final or seen.event(event)
            if exited and (lines.closed or lines.idle):  # drained (a grandchild may still hold the pipe open)
                break
            if plain_progress and time.monotonic() >= next_line:
                print(f"trigrad: {time.monotonic() - start:.0f} s, {seen.where()}", file=sys.stderr, flush=True)
                next_line += every
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        os.close(read_fd)
    outcome = _finish(proc, final, seen.done, seen.current)
    if server and isinstance(proc, subprocess.Popen):  # no server was up: one for the next run
        from .server_client import start as start_server

        start_server(list(sys.path))
    if outcome.kind == "rerun" and server:  # a served child that could not be a fresh one
        return run_isolated(request, timeout=timeout, progress=progress, plain_progress=plain_progress)
    return outcome


# ----------------------------------------------------------------------------- child side


class _Channel:
    """The child's end of the pipe: one JSON object per line."""

    def __init__(self, fd: int) -> None:
        self.file = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def send(self, t: str, **fields: Any) -> None:
        self.file.write(json.dumps({"t": t, **fields}) + "\n")
        self.file.flush()


def _watch_parent() -> None:
    """End the child when the parent is gone (killed by CI, say): nothing would read its report."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _REAL_EXIT(2)

    threading.Thread(target=watch, name="trigrad-parent-watch", daemon=True).start()


def _guard_os_exit(channel: _Channel) -> None:
    """``os._exit`` says who called it before the process goes (the parent would otherwise
    only see an exit status)."""
    from .frames import caller_location

    def _exit(status: int) -> None:
        where = caller_location(sys._getframe(1)) or "in code outside any file"
        channel.send("exit", message=f"your code called os._exit({status!r}) {where}")
        _REAL_EXIT(status)

    os._exit = _exit  # type: ignore[assignment]


def _child(argv: list[str]) -> int:
    from .frames import user_frame, user_location
    from .server_child import Rerun
    from .target import TargetError

    request = json.loads(argv[0])
    sys.path[:] = request["sys_path"]
    sys.argv = [request["target"]]
    channel = _Channel(request["fd"])
    _watch_parent()
    _guard_os_exit(channel)
    try:
        from .isolate_jobs import work

        channel.send("result", value=work(request, channel.send))
        return 0
    except Rerun as e:  # a served child that cannot be a fresh one: the parent starts one
        channel.send("rerun", message=str(e))
        return 0
    except TargetError as e:
        if request["debug"]:
            import traceback

            traceback.print_exception(e)
        channel.send("usage", message=str(e))
    except SystemExit as e:
        where = user_location(e.__traceback__) or "outside any file"
        channel.send("exit", message=f"your code called sys.exit({e.code!r}) {where}")
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the goodbye
        channel.send("interrupted")
        return 130
    except MemoryError as e:
        channel.send(
            "usage",
            message=f"ran out of memory {user_location(e.__traceback__) or 'in trigrad'}: the "
            "input or the network is too large for this machine; try a smaller batch",
        )
    except Exception as e:  # anything else is reported, never a silent exit
        import traceback

        traceback.print_exception(e)
        located = user_location(e.__traceback__)
        kind = "usage" if located else "internal"
        channel.send(
            kind,
            message=user_frame(e)
            if located
            else f"internal error in trigrad: {e!r} (please report it with the traceback above)",
        )
    return 2


if __name__ == "__main__":
    try:
        code = _child(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C outside the user's code (while starting or sending): quietly
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    _REAL_EXIT(code)  # not the guarded one; and skip the user's atexit handlers
