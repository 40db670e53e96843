"""The warm server: a process that has already imported torch, jax and trigrad and forks a
fresh child for each ``trigrad check`` / ``sweep`` / ``infer``, so that from the second run
on a check costs the user's own code and the check, not 2-3 s of imports.

    python -m harness.server SOCKET      # started by the command line (harness.server_client)

Each child is a fork made after the imports and before anything else: it imports the user's
code itself (an edited file is read again), runs in its own session with the client's
working folder, environment, standard error and progress pipe, and is exactly the child
``python -m harness.isolate`` would be (:func:`harness.isolate._child`). The server never
imports user code and never initialises a JAX backend or a torch thread pool, so the fork
copies no running thread of theirs (numpy's BLAS handles fork itself).

The server exits after ``TRIGRAD_SERVER_IDLE`` seconds without a child (default 900), on
SIGTERM (``trigrad server stop``), or when another server holds its lock. It answers only
processes of its own user (the socket's folder is 0700, and the peer's uid is checked).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path

IDLE = 900.0  # seconds without a child before the server exits (TRIGRAD_SERVER_IDLE)
_ALIVE = [True]


def _preload() -> None:
    """Everything a check imports that is not the user's: torch here while jax loads in a
    thread (:func:`harness.warm.preload`, which also turns on the compilation cache)."""
    from .warm import preload, wait_preloaded

    preload()
    import reference_models.torch_ref  # noqa: F401

    from . import check, cli_infer, isolate_jobs, network_check, target  # noqa: F401
    from .inference import api  # noqa: F401

    wait_preloaded()


def _lock(path: Path) -> int | None:
    """Hold ``<socket>.lock`` for the server's life (it has the pid); None if another has it."""
    import fcntl

    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _listen(path: Path) -> socket.socket:
    if path.exists() or path.is_symlink():  # a server killed before it could clean up; we hold the lock now
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # never open to others, not even between bind and chmod
    try:
        listener.bind(str(path))
    finally:
        os.umask(umask)
    listener.listen(16)
    return listener


def _same_user(conn: socket.socket) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):  # not Linux: the 0700 folder is the guard
        return True
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: 8 bytes of length with two descriptors (progress pipe, standard error),
    then that many bytes of JSON (``request``, ``cwd``, ``env``, ``state``). The client sends
    it at once; 2 s covers a loaded machine without one stuck client stalling the others."""
    conn.settimeout(2.0)
    head, fds, _, _ = socket.recv_fds(conn, 8, 2)
    try:
        if len(head) != 8 or len(fds) != 2:
            raise ValueError("malformed request")
        length, body = int.from_bytes(head, "big"), b""
        while len(body) < length:
            chunk = conn.recv(min(1 << 20, length - len(body)))
            if not chunk:
                raise ValueError("truncated request")
            body += chunk
        message = json.loads(body)
        if not isinstance(message, dict) or not {"request", "cwd", "env", "state"} <= set(message):
            raise ValueError("malformed request")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _run_child(message: dict, fds: list[int], server_fds: list[int]) -> None:
    """In the forked child: become the isolated child the client asked for. Never returns."""
    from .isolate import _REAL_EXIT, _child
    from .server_child import Rerun, become, send_rerun

    code = 2
    try:
        become(message, fds, server_fds)
        code = _child([json.dumps({**message["request"], "fd": fds[0]})])
    except Rerun as e:
        send_rerun(fds[0], str(e))
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException as e:  # said on the client's stderr; the client reports the exit
        print(f"trigrad server: the child could not start: {e!r}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _REAL_EXIT(code)


def _serve_one(conn: socket.socket, server_fds: list[int], children: dict[int, socket.socket]) -> bool:
    """Fork a child for the request on ``conn``, record it in ``children`` and tell the
    client its pid; False when the request is refused (another user, malformed)."""
    if not _same_user(conn):
        return False
    fds: list[int] = []
    try:
        message, fds = _receive(conn)
        pid = os.fork()
        if pid == 0:
            _run_child(message, fds, [*server_fds, conn.fileno()])
    finally:  # the child has its own copies; here they would leak with every request
        for fd in fds:
            os.close(fd)
    children[pid] = conn  # before the reply: a client gone by now still has its child ended
    try:
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        os.killpg(pid, signal.SIGKILL)
    return True


def _reap(children: dict[int, socket.socket], sel: selectors.BaseSelector) -> None:
    """Send each finished child's status (``subprocess`` style: negative for a signal)."""
    while children:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        # the client measures only itself: the child's cost is said here (ru_maxrss is in kB)
        print(f"child {pid}: status {code}, peak RSS {usage.ru_maxrss / 1024:.0f} MB", flush=True)
        if conn in (key.fileobj for key in sel.get_map().values()):
            sel.unregister(conn)
        try:
            conn.sendall(json.dumps({"status": code}).encode() + b"\n")
        except OSError:
            pass
        conn.close()


def _client_gone(conn: socket.socket, children: dict[int, socket.socket], sel: selectors.BaseSelector) -> None:
    """The client closed its end (Ctrl-C, killed): end its child and all the child started."""
    try:
        if conn.recv(1, socket.MSG_PEEK):
            return
    except OSError:
        pass
    for pid, c in list(children.items()):
        if c is conn:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    sel.unregister(conn)


def serve(path: Path, idle: float) -> int:
    """Accept requests on ``path`` until ``idle`` seconds pass with no child running."""
    lock = _lock(path)
    if lock is None:
        return 0  # another server for this key is up (or starting): the client connects to it
    _preload()
    listener = _listen(path)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    # a child's exit wakes the loop at once (its client is waiting for the status), not at the next tick
    wake, woken = socket.socketpair()
    woken.setblocking(False)
    signal.set_wakeup_fd(woken.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel.register(wake, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: _ALIVE.__setitem__(0, False))
    try:
        while _ALIVE[0] and (children or time.monotonic() - last < idle):
            for event, _ in sel.select(timeout=1.0):
                if event.fileobj is wake:
                    wake.recv(4096)
                elif event.fileobj is listener:
                    conn, _ = listener.accept()
                    own = [listener.fileno(), wake.fileno(), woken.fileno(), lock, getattr(sel, "fileno", lambda: -1)()]
                    server_fds = [fd for fd in own if fd >= 0]
                    try:
                        served = _serve_one(conn, [*server_fds, *(c.fileno() for c in children.values())], children)
                    except (OSError, ValueError) as e:
                        print(f"trigrad server: dropped a request: {e!r}", file=sys.stderr, flush=True)
                        served = False
                    if not served:
                        conn.close()
                        continue
                    sel.register(conn, selectors.EVENT_READ)
                else:
                    _client_gone(event.fileobj, children, sel)  # type: ignore[arg-type]
            _reap(children, sel)
            if children:
                last = time.monotonic()
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        path.unlink(missing_ok=True)
        listener.close()
        path.with_suffix(".lock").unlink(missing_ok=True)
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.path[:] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] or sys.path
    sys.exit(serve(Path(sys.argv[1]), float(os.environ.get("TRIGRAD_SERVER_IDLE", IDLE))))
