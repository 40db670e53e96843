"""The command line's side of the warm server (:mod:`harness.server`): whether to use one,
which one (a key over everything that decides what the server has imported), starting it,
and a child process run by it that looks to :func:`harness.isolate.run_isolated` like a
``subprocess.Popen``.

Nothing here may make a check less trustworthy than the direct child: any trouble with the
server (it cannot start, its folder is unusable, it dies) returns None, and the caller runs
the child directly as before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# environment variables read when torch, jax or numpy are imported (threads, platforms,
# flags, the x64 default) or by trigrad's caches: a server imported under other values is
# another server
_ENV_PREFIXES = ("JAX_", "XLA_", "TF_", "TORCH", "PYTORCH", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "CUDA", "NVIDIA",
                 "LD_", "PYTHON", "NUMPY", "NPY_", "VECLIB", "LANG", "LC_", "TRIGRAD_CACHE", "TRIGRAD_NO_CACHE",
                 "XDG_CACHE_HOME", "HOME")  # fmt: skip
# the packages a server imports (and the ones they import at import time): an upgrade is another server
_PACKAGES = ("numpy", "torch", "jax", "jaxlib", "ml_dtypes", "rich", "scipy", "opt_einsum", "sympy", "typing_extensions",
             "filelock", "networkx", "fsspec", "jinja2")  # fmt: skip
START_TIMEOUT = 120.0  # seconds a new server may take to import torch and jax before it is given up
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes on Linux


def wanted(no_server: bool = False) -> bool:
    """Use the warm server? Not with ``--no-server``, ``TRIGRAD_SERVER=0``, on a platform
    without ``fork`` and Unix sockets, or when ``CI`` is set (a single run there would only
    pay for starting it) unless ``TRIGRAD_SERVER=1``."""
    if no_server or not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX") or not hasattr(socket, "send_fds"):
        return False
    flag = os.environ.get("TRIGRAD_SERVER", "")
    if flag in ("0", "1"):
        return flag == "1"
    return os.environ.get("CI", "").lower() in ("", "0", "false")


def server_dir() -> Path:
    """Where sockets and lock files live: ``$TRIGRAD_SERVER_DIR``, else
    ``$XDG_RUNTIME_DIR/trigrad``, else ``<cache>/run`` (:func:`harness.warm.cache_dir`)."""
    from .warm import cache_dir

    if os.environ.get("TRIGRAD_SERVER_DIR"):
        return Path(os.environ["TRIGRAD_SERVER_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "trigrad"
    return cache_dir() / "run"


def _stamp(path: str | None) -> list[Any]:
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    return [path, st.st_mtime_ns, st.st_size] if st else [path]


def _sources() -> list[Any]:
    """trigrad's own source files, with modification times and sizes: an edited or reinstalled
    trigrad must not be served by a process that imported the old one."""
    out = []
    for name in ("harness", "reference_models"):
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for root, _, files in os.walk(folder):
                out += [_stamp(os.path.join(root, f)) for f in sorted(files) if f.endswith(".py")]
    return out


def watched_env() -> dict[str, str]:
    """The environment variables read at import by what a server imports (see the key)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def key(sys_path: list[str]) -> str:
    """16 hex digits naming the server this process may use: the interpreter, ``sys_path``,
    the frameworks' and trigrad's files, and the environment variables they read."""
    packages = []
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)  # no import: finds the package's __init__
        packages.append(_stamp(spec.origin if spec else None))
    env = sorted(watched_env().items())
    blob = json.dumps([sys.executable, sys.version, os.getuid(), sys_path, packages, _sources(), env])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ServedChild:
    """A child forked by the server, seen through the connection that asked for it: ``pid``,
    ``poll()`` and ``wait()`` as on ``subprocess.Popen`` (a negative status is a signal).
    The server ends the child when this connection closes."""

    def __init__(self, conn: socket.socket, pid: int, buffer: bytes) -> None:
        self.conn, self.pid, self.buffer = conn, pid, buffer
        self.returncode: int | None = None

    def _read(self, timeout: float | None) -> None:
        self.conn.settimeout(timeout)
        while b"\n" not in self.buffer:
            try:
                chunk = self.conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                return
            except OSError:
                chunk = b""
            if not chunk:  # the server went away without a status: report it as killed
                self.buffer += b'{"status": -9}\n'
                break
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.returncode = int(json.loads(line)["status"])
        self.conn.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._read(None)
        return self.returncode


def _peer_uid(sock: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(uid)


def _connect(path: Path) -> socket.socket | None:
    """A connection to the server at ``path``, only if the socket and the process listening
    on it are this user's: anyone else's would receive the environment and could fake the
    report."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        if _peer_uid(sock) not in (None, os.getuid()):
            raise OSError("the server is another user's")
        return sock
    except OSError:
        sock.close()
        return None


def _folder() -> Path | None:
    """The server folder, made and kept 0700 and this user's; None if it cannot be."""
    folder = server_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():  # a symlink or another user's folder
            return None
        if st.st_mode & 0o077:  # ours but open to others (made by hand, an old umask): close it
            folder.chmod(0o700)
    except OSError:
        return None
    return folder


def lock_held(path: Path) -> bool:
    """Does a live server hold ``path``'s lock (so that it is starting or serving)?"""
    import fcntl

    try:
        fd = os.open(path.with_suffix(".lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _start(path: Path, sys_path: list[str]) -> subprocess.Popen | None:
    """Start a server for ``path`` in a session of its own, outliving this process; its log
    goes next to the socket."""
    try:
        log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115  handed to the server, closed below
    except OSError:
        return None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys_path)}
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.server", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",  # holds no user folder
            env=env,
            start_new_session=True,
        )
    except OSError:
        return None
    finally:
        log.close()


def _path(sys_path: list[str]) -> Path | None:
    """This environment's socket path, in a usable folder; None when there is none."""
    folder = _folder()
    path = folder / f"{key(sys_path)}.sock" if folder is not None else None
    return path if path is not None and len(str(path)) <= MAX_SOCKET_PATH else None


def connect(sys_path: list[str]) -> socket.socket | None:
    """A connection to this environment's server, waiting for one that is starting (its lock
    held); None when there is none: the caller runs the check without it and starts one
    afterwards (:func:`start`), so a first run does not share the CPU with the server's
    imports."""
    path = _path(sys_path)
    if path is None:
        return None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None or not lock_held(path):
            return sock
        time.sleep(0.02)
    return None


def start(sys_path: list[str]) -> bool:
    """Start this environment's server in the background unless one is up or starting; True
    when one was started (it outlives this process)."""
    path = _path(sys_path)
    if path is None or lock_held(path):
        return False
    return _start(path, sys_path) is not None


def spawn(request: dict, progress_fd: int) -> ServedChild | None:
    """Ask the server to fork a child running ``python -m harness.isolate`` on ``request``:
    its standard output and error are this process's standard error, its input is empty,
    ``progress_fd`` is its pipe. None when there is no server to ask."""
    sock = connect(request["sys_path"])
    if sock is None:
        return None
    try:
        from .server_child import client_state

        state = client_state()
        message = json.dumps({"request": request, "cwd": os.getcwd(), "env": dict(os.environ), "state": state}).encode()
        socket.send_fds(sock, [len(message).to_bytes(8, "big")], [progress_fd, 2])
        sock.sendall(message)
        sock.settimeout(30.0)
        buffer = b""
        while b"\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("the server closed the connection")
            buffer += chunk
        line, _, rest = buffer.partition(b"\n")
        return ServedChild(sock, int(json.loads(line)["pid"]), rest)
    except (OSError, ValueError, KeyError):
        sock.close()
        return None


__all__ = ["ServedChild", "connect", "key", "lock_held", "server_dir", "spawn", "start", "wanted", "watched_env"]
