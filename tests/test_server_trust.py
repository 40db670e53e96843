"""The warm server cannot be less trustworthy than a fresh child: the client talks only to its
own user's server in its own user's folder; a served child takes on the client's umask,
limits and CPUs, and user code that sets an import-time variable gets a fresh interpreter;
a bad request leaks nothing in the server; `trigrad server stop` ends only servers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import server_client
from test_server import up  # waits for the server a first run starts afterwards

ROOT = Path(__file__).resolve().parent.parent
# not `python -m harness.cli`: that puts the working folder on sys.path, a server per folder
CLI = [sys.executable, "-c", "from harness.cli import main; raise SystemExit(main())"]

USER = """
import os, resource, sys
import numpy as np
import harness as tg

if os.environ.get("SET_FLAGS"):  # a user's module that configures XLA before importing jax
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"

class Dense:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.standard_normal((4, 3)), rng.standard_normal(3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T

def layer():
    import jax
    umask = os.umask(0); os.umask(umask)
    state = {"devices": jax.local_device_count(), "umask": umask,
             "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "cpus": sorted(os.sched_getaffinity(0))}
    print("STATE", __import__("json").dumps(state), file=sys.stderr)
    return tg.wrap_layer(Dense(), tg.Linear("fc", 4, 3), layout=tg.Layout(linear="in_out"))
"""


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    folder = tempfile.mkdtemp(prefix="tgt-")
    env = {**os.environ, "TRIGRAD_SERVER": "1", "TRIGRAD_SERVER_DIR": folder, "TRIGRAD_SERVER_IDLE": "120",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    yield env
    subprocess.run([sys.executable, "-m", "harness.cli", "server", "stop"], env=env, capture_output=True, timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


def _state(env: dict[str, str], folder: Path, *, limits: bool = False) -> dict:
    (folder / "user.py").write_text(USER)

    # what a user's shell may do (umask 077; ulimit -n 512; taskset -c 0), by a launcher that
    # then execs the command: no preexec_fn, which would fork this process (JAX warns of that)
    narrow = ("import os, resource, sys; os.umask(0o077); lim = resource.RLIMIT_NOFILE; "
              "resource.setrlimit(lim, (512, resource.getrlimit(lim)[1])); os.sched_setaffinity(0, {0}); "
              "os.execv(sys.executable, sys.argv[1:])")  # fmt: skip
    cmd = CLI + ["check", "user.py:layer", "--quiet"]
    if limits:
        cmd = [sys.executable, "-c", narrow, *cmd]
    done = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(next(line for line in done.stderr.splitlines() if line.startswith("STATE"))[6:])


def _served_children(env: dict[str, str]) -> int:
    return "".join(p.read_text() for p in Path(env["TRIGRAD_SERVER_DIR"]).glob("*.log")).count("child ")


def test_a_served_child_takes_the_clients_umask_limits_and_cpus(served: dict[str, str], tmp_path: Path) -> None:
    _state(served, tmp_path)  # fresh, and starts the server for the next runs
    up(served)
    before = _served_children(served)
    state = _state(served, tmp_path, limits=True)
    assert _served_children(served) == before + 1  # served, not a fallback
    assert state["umask"] == 0o077 and state["nofile"] == 512 and state["cpus"] == [0]


def test_user_code_setting_an_import_time_variable_gets_a_fresh_interpreter(served: dict[str, str],
                                                                               tmp_path: Path) -> None:  # fmt: skip
    assert _state(served, tmp_path)["devices"] == 1
    up(served)
    before = _served_children(served)
    state = _state({**served, "SET_FLAGS": "1"}, tmp_path)
    assert state["devices"] == 3  # as in a fresh interpreter: the user's XLA_FLAGS took effect
    assert _served_children(served) == before + 1  # the served child saw the change and asked for a rerun


def test_bad_requests_leak_nothing_and_the_server_still_serves(served: dict[str, str], tmp_path: Path) -> None:
    _state(served, tmp_path)
    up(served)
    folder = Path(served["TRIGRAD_SERVER_DIR"])
    sock_path = next(folder.glob("*.sock"))
    pid = int(sock_path.with_suffix(".lock").read_text())
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    r, w = os.pipe()
    for body in (b"{not json", b'{"request": {}}', b"[1, 2]"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock_path))
            socket.send_fds(s, [(len(body) + 5).to_bytes(8, "big")], [r, w])  # also truncated
            s.sendall(body)
    os.close(r)
    os.close(w)
    time.sleep(2.5)  # past the server's read timeout for the truncated ones
    assert len(os.listdir(f"/proc/{pid}/fd")) == fds
    assert _state(served, tmp_path)["devices"] == 1
    assert "dropped a request" in "".join(p.read_text() for p in folder.glob("*.log"))


def test_an_open_folder_is_closed_and_foreign_sockets_are_not_used(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    folder = tmp_path / "srv"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    monkeypatch.setenv("TRIGRAD_SERVER_DIR", str(folder))
    assert server_client._folder() == folder and stat.S_IMODE(folder.stat().st_mode) == 0o700
    fake = folder / "x.sock"
    fake.write_text("")  # not a socket
    assert server_client._connect(fake) is None
    link = folder / "y.sock"
    link.symlink_to(fake)
    assert server_client._connect(link) is None
    monkeypatch.setattr(server_client.os, "getuid", lambda: os.stat(folder).st_uid + 1)
    assert server_client._folder() is None  # another user's folder


def test_server_stop_ends_only_servers(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a server killed outright leaves its files; its pid now belongs to another process
        (tmp_path / "deadbeefdeadbeef.lock").write_text(str(bystander.pid))
        (tmp_path / "deadbeefdeadbeef.sock").write_text("")
        env = {**os.environ, "TRIGRAD_SERVER_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        status = subprocess.run([sys.executable, "-m", "harness.cli", "server", "status"], env=env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert "no trigrad server" in status.stdout
        stop = subprocess.run([sys.executable, "-m", "harness.cli", "server", "stop"], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert stop.returncode == 0 and bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
