"""The warm server (harness/server.py, harness/server_client.py): a check forked from it ends
exactly as a check in a fresh interpreter would (verdict, exit code, the user's sys.exit,
os._exit, a hang, an edited file), the client's death ends its child, anything wrong with
the server falls back to a fresh child, and the server goes away when idle or told to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import server_client

ROOT = Path(__file__).resolve().parent.parent
# not `python -m harness.cli`: that puts the working folder on sys.path, a server per folder
CLI = [sys.executable, "-c", "from harness.cli import main; raise SystemExit(main())"]

USER = """
import os, sys, time
import numpy as np
import harness as tg

class Dense:
    def __init__(self, bug=BUG):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.standard_normal((4, 3)), rng.standard_normal(3)
        self.bug = bug

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW = self.x.T @ dy
        self.db = 3 * dy.sum(axis=0) if self.bug else dy.sum(axis=0)
        return dy @ self.W.T

def layer():
    return tg.wrap_layer(Dense(), tg.Linear("fc", 4, 3), layout=tg.Layout(linear="in_out"))

def exits():
    sys.exit(0)

def os_exits():
    os._exit(0)

def hangs():
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(120)

def unseeded():
    print("draw", np.random.rand(), file=sys.stderr)
    return layer()
"""


def up(env: dict[str, str], timeout: float = 60) -> None:
    """Wait for the server a first run started after its check (its socket bound)."""
    deadline = time.monotonic() + timeout
    while not list(Path(env["TRIGRAD_SERVER_DIR"]).glob("*.sock")):
        assert time.monotonic() < deadline, "no server came up after the first run"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """An environment whose checks go through a server of their own (short folder: socket
    paths are limited to 108 bytes), up before the first test, stopped at the end."""
    folder = tempfile.mkdtemp(prefix="tgs-")
    env = {**os.environ, "TRIGRAD_SERVER": "1", "TRIGRAD_SERVER_DIR": folder, "TRIGRAD_SERVER_IDLE": "120",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    work = Path(folder) / "w"
    work.mkdir()
    (work / "user.py").write_text(USER.replace("BUG", "False"))
    first = _trigrad(env, "check", "user.py:layer", "--quiet", cwd=work)
    assert first.returncode == 0, first.stderr
    assert "child " not in _log(env)  # the first run ran fresh: no server was up
    up(env)
    yield env
    subprocess.run([sys.executable, "-m", "harness.cli", "server", "stop"], env=env, capture_output=True, timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


def _write(folder: Path, bug: bool) -> Path:
    path = folder / "user.py"
    path.write_text(USER.replace("BUG", str(bug)))
    return path


def _trigrad(env: dict[str, str], *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [*CLI, *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _log(env: dict[str, str]) -> str:
    return "".join(p.read_text() for p in Path(env["TRIGRAD_SERVER_DIR"]).glob("*.log"))


def test_served_checks_end_as_fresh_ones(served: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, bug=False)
    before = _log(served).count("child ")
    first = _trigrad(served, "check", "user.py:layer", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert _log(served).count("status 0") >= 1  # the child was forked by the server
    _write(tmp_path, bug=True)  # the edit is seen: the server never imported the user's code
    second = _trigrad(served, "check", "user.py:layer", cwd=tmp_path)
    assert second.returncode == 1, second.stderr
    assert "fc" in second.stdout and "backward" in second.stdout
    direct = _trigrad(served, "check", "user.py:layer", "--no-server", cwd=tmp_path)
    assert direct.returncode == 1 and _log(served).count("child ") == before + 2  # --no-server: not forked


@pytest.mark.parametrize("name,said", [("exits", "sys.exit(0)"), ("os_exits", "os._exit(0)")])
def test_served_child_exit_is_not_a_pass(served: dict[str, str], tmp_path: Path, name: str, said: str) -> None:
    _write(tmp_path, bug=False)
    done = _trigrad(served, "check", f"user.py:{name}", cwd=tmp_path)
    assert done.returncode == 2
    assert said in done.stderr


def test_served_timeout_ends_the_child(served: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, bug=False)
    env = {**served, "PID_FILE": str(tmp_path / "pid")}
    done = _trigrad(env, "check", "user.py:hangs", "--timeout", "3", cwd=tmp_path)
    assert done.returncode == 2 and "timeout" in done.stderr
    _gone(int((tmp_path / "pid").read_text()))


def test_a_killed_client_ends_its_child(served: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, bug=False)
    env = {**served, "PID_FILE": str(tmp_path / "pid")}
    client = subprocess.Popen(CLI + ["check", "user.py:hangs", "--quiet"], env=env,
                              cwd=tmp_path, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.05)
    client.kill()
    client.wait()
    _gone(int((tmp_path / "pid").read_text()))


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the served child {pid} outlived its client")


def test_served_children_draw_fresh_global_random_state(served: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, bug=False)
    draws = [_trigrad(served, "check", "user.py:unseeded", "--quiet", cwd=tmp_path) for _ in range(2)]
    lines = [next(line for line in d.stderr.splitlines() if line.startswith("draw")) for d in draws]
    assert lines[0] != lines[1]  # as two fresh interpreters would (numpy seeds from the OS)


def test_status_then_stop(served: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, bug=False)
    assert _trigrad(served, "check", "user.py:layer", "--quiet", cwd=tmp_path).returncode == 0
    status = _trigrad(served, "server", "status", cwd=tmp_path)
    assert status.returncode == 0 and "pid" in status.stdout
    stop = _trigrad(served, "server", "stop", cwd=tmp_path)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert "no trigrad server" in _trigrad(served, "server", "status", cwd=tmp_path).stdout
    assert not list(Path(served["TRIGRAD_SERVER_DIR"]).glob("*.sock"))


def test_idle_server_exits(tmp_path: Path) -> None:
    folder = tempfile.mkdtemp(prefix="tgs-")
    env = {**os.environ, "TRIGRAD_SERVER": "1", "TRIGRAD_SERVER_DIR": folder, "TRIGRAD_SERVER_IDLE": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    try:
        _write(tmp_path, bug=False)
        assert _trigrad(env, "check", "user.py:layer", "--quiet", cwd=tmp_path).returncode == 0
        up(env)  # started after the check, for the next run
        deadline = time.monotonic() + 20
        while list(Path(folder).glob("*.sock")) or list(Path(folder).glob("*.lock")):
            assert time.monotonic() < deadline, "the idle server did not exit"
            time.sleep(0.1)
    finally:
        subprocess.run([sys.executable, "-m", "harness.cli", "server", "stop"], env=env, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_unusable_server_folder_falls_back_to_a_fresh_child(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**os.environ, "TRIGRAD_SERVER": "1", "TRIGRAD_SERVER_DIR": str(blocker / "sub"), "PYTHONPATH": str(ROOT)}
    _write(tmp_path, bug=True)
    done = _trigrad(env, "check", "user.py:layer", "--quiet", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # checked all the same, without a server


def test_another_users_folder_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGRAD_SERVER_DIR", str(tmp_path))
    monkeypatch.setattr(server_client.os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    assert server_client.connect(list(sys.path)) is None
    assert not list(tmp_path.iterdir())  # no server started there


def test_key_follows_what_the_server_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    base = server_client.key(list(sys.path))
    assert server_client.key(list(sys.path)) == base
    assert server_client.key(["/elsewhere", *sys.path]) != base
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert server_client.key(list(sys.path)) != base
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setenv("UNRELATED_VARIABLE", "1")  # the shell's own variables do not matter
    assert server_client.key(list(sys.path)) == base
    monkeypatch.setattr(server_client, "_sources", lambda: [["harness/check.py", 1, 2]])  # trigrad edited
    assert server_client.key(list(sys.path)) != base


@pytest.mark.parametrize(
    "env,flag,expected",
    [({}, False, True), ({"CI": "true"}, False, False), ({"CI": "true", "TRIGRAD_SERVER": "1"}, False, True),
     ({"TRIGRAD_SERVER": "0"}, False, False), ({}, True, False), ({"CI": "false"}, False, True)],
)  # fmt: skip
def test_wanted(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flag: bool, expected: bool) -> None:
    for name in ("CI", "TRIGRAD_SERVER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert server_client.wanted(flag) is expected
