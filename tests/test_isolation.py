"""`trigrad check` / `trigrad sweep` run the user's code in a child process: whatever that
code does (sys.exit, os._exit, a crash, prints, a hang, Ctrl-C), exit 0 comes only after a
complete report that passed, and anything else is one line and exit 2 (130 for Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli import main

USER = '''
import os, sys, time
import numpy as np
import harness as tg

print("user module imported")

class Dense:
    def __init__(self, action=None, bug=True):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.standard_normal((4, 3)), rng.standard_normal(3)
        self.action, self.bug = action, bug

    def forward(self, x):
        print("forward called")
        if self.action == "exit-forward":
            sys.exit(0)
        if self.action == "sleep":
            time.sleep(0.3)
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        if self.action == "exit-backward":
            sys.exit(3)
        if self.action == "os-exit":
            os._exit(0)
        if self.action == "kill":
            os.kill(os.getpid(), 9)
        self.dW = self.x.T @ dy
        self.db = 3 * dy.sum(axis=0) if self.bug else dy.sum(axis=0)  # the bug: a x3 bias gradient
        return dy @ self.W.T

SPEC = tg.Linear("fc", 4, 3)
LAYOUT = tg.Layout(linear="in_out")

def layer(action=None, bug=True):
    return tg.wrap_layer(Dense(action, bug), SPEC, layout=LAYOUT)

def good(): return layer(bug=False)
def bad(): return layer()
def exit_forward(): return layer("exit-forward")
def exit_backward(): return layer("exit-backward")
def os_exit(): return layer("os-exit")
def killed(): return layer("kill")
def sleepy(): return layer("sleep", bug=False)
def exit_bye(): sys.exit("bye")
def hangs(): time.sleep(60)
def empty(): return tg.Report(seed=0)
def touch():
    open(os.path.join(os.path.dirname(__file__), "called"), "w").close()
    return layer(bug=False)
def makes_a_file():  # a file appears at the report path while the check runs
    open(os.path.join(os.path.dirname(__file__), "results.json"), "w").write('{"my": "metrics"}')
    return layer(bug=False)
def links_to_itself():
    os.symlink(__file__, os.path.join(os.path.dirname(__file__), "link.json"))
    return layer(bug=False)
def escapes():
    raise ValueError("\x1b]0;TITLE\x07 and \x1b[2J")
def weird_verdict():
    return tg.Report(seed=0, layers=[tg.LayerResult("fc", "Linear", "weird", "float64")])
def passes_without_tensors():
    return tg.Report(seed=0, layers=[tg.LayerResult("fc", "Linear", "pass", "float64")])
def leaves_a_process():
    import subprocess
    proc = subprocess.Popen(["sleep", "60"])
    open(os.path.join(os.path.dirname(__file__), "pid"), "w").write(str(proc.pid))
    return layer(bug=False)
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_layers.py"
    path.write_text(textwrap.dedent(USER))
    return path


def check(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out = capfd.readouterr()
    return code, out.out, out.err


def line_of(code: str) -> int:
    """The line number of ``code`` in the user's file."""
    return next(i for i, line in enumerate(textwrap.dedent(USER).splitlines(), 1) if code in line)


@pytest.mark.parametrize("target, said", [
    ("exit_forward", "your code called sys.exit(0) in Dense.forward ({file}:{line})"),
    ("exit_backward", "your code called sys.exit(3) in Dense.backward ({file}:{line})"),
    ("os_exit", "your code called os._exit(0) in Dense.backward ({file}:{line})"),
    ("exit_bye", "your code called sys.exit('bye') in exit_bye ({file}:{line})"),
    ("killed", "the process running your code was killed by SIGKILL while checking 'fc'"),
])
def test_user_code_that_ends_the_process_is_exit_2_never_a_pass(user_file: Path, capfd, target: str, said: str) -> None:
    code, out, err = check(capfd, f"{user_file}:{target}")
    assert code == 2, err
    assert out == ""  # no table, no verdict: nothing passed
    line = next(line for line in err.splitlines() if line.startswith("trigrad check: "))
    call = {"exit_forward": "sys.exit(0)", "exit_backward": "sys.exit(3)", "os_exit": "os._exit(0)",
            "exit_bye": 'sys.exit("bye")'}.get(target, "")
    assert said.format(file=user_file, line=line_of(call) if call else 0) in line
    assert line.endswith("Nothing passed: no report") and "Traceback" not in err


def test_os_exit_at_import_is_exit_2(tmp_path: Path, capfd) -> None:
    path = tmp_path / "quits.py"
    path.write_text("import os\nos._exit(0)\ndef f():\n    pass\n")
    code, out, err = check(capfd, f"{path}:f")
    assert (code, out) == (2, "")
    assert f"your code called os._exit(0) at import of quits.py ({path}:2)" in err


def test_json_to_stdout_stays_pure_when_the_user_prints(user_file: Path, capfd) -> None:
    code, out, err = check(capfd, f"{user_file}:bad", "--json", "-")
    assert code == 1
    data = json.loads(out)  # every byte of stdout is the report
    assert data["first_failure"] == "fc"
    assert "user module imported" in err and "forward called" in err


def test_a_report_with_no_entries_is_not_a_pass(user_file: Path, capfd) -> None:
    code, out, err = check(capfd, f"{user_file}:empty")
    assert (code, out) == (2, "") and "nothing was checked" in err


def test_timeout_stops_the_check_and_exits_2(user_file: Path, capfd) -> None:
    start = time.perf_counter()
    code, out, err = check(capfd, f"{user_file}:hangs", "--timeout", "1.5")
    assert time.perf_counter() - start < 20
    assert (code, out) == (2, "")
    assert "stopped after the --timeout of 1.5 s; no entry checked. Nothing passed" in err


@pytest.mark.slow  # the user's forward sleeps until a progress line is due: seconds of waiting
def test_plain_progress_lines_when_stderr_is_not_a_terminal(user_file: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("TRIGRAD_PROGRESS_EVERY", "0.5")
    code, _, err = check(capfd, f"{user_file}:sleepy")
    assert code == 0
    assert "checking 'fc' (1 of 1)" in err  # the forward sleeps 0.3 s a call: several seconds in all


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_prints_one_line_and_exits_130(user_file: Path) -> None:
    proc = _cli("check", f"{user_file}:hangs", cwd=user_file.parent)
    time.sleep(3)  # the child is sleeping in the user's function by now
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "trigrad: interrupted; your parameters are restored and no file was written"


def test_the_sweep_runs_isolated_too(tmp_path: Path, capfd) -> None:
    path = tmp_path / "sweep_quits.py"
    path.write_text("import sys\ndef space():\n    sys.exit(0)\n")
    assert main(["sweep", f"{path}:space"]) == 2
    assert "your code called sys.exit(0) in space" in capfd.readouterr().err


# ----------------------------------------------------------------------- report paths


@pytest.mark.parametrize("args, said", [
    (["--html", "{file}"], "that is the code under check; refusing to overwrite it"),
    (["--json", "{dir}/other.py"], "refusing to write a report over a .py file"),
    (["--json", "{dir}/r.json", "--html", "{dir}/r.json"], "are the same file"),
    (["--json", "{dir}/notes.json"], "exists and is not a trigrad json report"),
    (["--html", "{dir}/missing/r.html"], "does not exist; create it first"),
    (["--json", "{dir}"], "is a folder"),
])
def test_report_paths_that_would_lose_data_are_refused_before_the_check(user_file: Path, capfd, args: list[str],
                                                                      said: str) -> None:
    folder = user_file.parent
    (folder / "other.py").write_text("x = 1\n")
    (folder / "notes.json").write_text('{"mine": true}\n')
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    code, out, err = check(capfd, f"{user_file}:touch", *(a.format(file=user_file, dir=folder) for a in args))
    assert (code, out) == (2, "")
    assert said in err and err.count("\n") == 1
    assert not (folder / "called").exists()  # refused before the user's code ran
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


@pytest.mark.slow  # two whole checks for a file-mode detail; the report paths' other checks stay fast
def test_an_existing_report_keeps_its_mode_and_a_symlink_is_written_through(user_file: Path, capfd) -> None:
    folder = user_file.parent
    report = folder / "private.json"
    assert check(capfd, f"{user_file}:bad", "--json", str(report), "--quiet")[0] == 1
    report.chmod(0o600)
    link = folder / "link.json"
    link.symlink_to(report)
    assert check(capfd, f"{user_file}:good", "--json", str(link), "--quiet")[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(report)
    assert json.loads(report.read_text())["ok"] is True  # the link's target holds the new report
    assert oct(report.stat().st_mode & 0o777) == oct(0o600)


def test_a_mistyped_flag_suggests_the_right_one(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["check", "x.py:f", "--jsn", "r.json"])
    assert e.value.code == 2
    assert "--jsn: did you mean --json?" in capsys.readouterr().err


def test_ctrl_c_inside_the_users_code_restores_the_parameters_bit_for_bit() -> None:
    import numpy as np

    import harness as tg

    class Interrupted:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.W, self.b, self.calls = rng.standard_normal((4, 3)), rng.standard_normal(3), 0

        def forward(self, x):
            self.x, self.calls = x, self.calls + 1
            if self.calls == 6:  # mid finite differences: W is perturbed right now
                raise KeyboardInterrupt
            return x @ self.W + self.b

        def backward(self, dy):
            self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
            return dy @ self.W.T

    layer = Interrupted()
    W, b = layer.W.copy(), layer.b.copy()
    with pytest.raises(KeyboardInterrupt):
        tg.check_layer(tg.wrap_layer(layer, tg.Linear("fc", 4, 3), layout=tg.Layout(linear="in_out")), input_shape=(2, 4))
    assert layer.calls == 6
    assert layer.W.tobytes() == W.tobytes() and layer.b.tobytes() == b.tobytes()


def test_a_grandchild_holding_the_pipe_does_not_keep_the_check_waiting(tmp_path: Path, capfd) -> None:
    path = tmp_path / "spawns.py"
    path.write_text("import os, subprocess\n"
                    "def f():\n"
                    "    subprocess.Popen(['sleep', '30'], close_fds=False)  # inherits every open fd\n"
                    "    os.kill(os.getpid(), 9)\n")
    start = time.perf_counter()
    code = main(["check", f"{path}:f"])
    assert time.perf_counter() - start < 20
    assert code == 2 and "killed by SIGKILL" in capfd.readouterr().err


@pytest.mark.parametrize("target, args, said", [
    ("makes_a_file", ["--json", "{dir}/results.json"], "exists and is not a trigrad json report"),
    ("links_to_itself", ["--json", "{dir}/link.json"], "that is the code under check"),
])
def test_report_paths_are_checked_again_when_writing(user_file: Path, capfd, target: str, args: list[str],
                                                     said: str) -> None:
    """The user's code ran between the first check of the path and the write."""
    code, out, err = check(capfd, f"{user_file}:{target}", *(a.format(dir=user_file.parent) for a in args))
    assert code == 2 and said in err
    assert "def links_to_itself" in user_file.read_text()  # the code under check is intact
    if target == "makes_a_file":
        assert (user_file.parent / "results.json").read_text() == '{"my": "metrics"}'


@pytest.mark.parametrize("target, said", [
    ("weird_verdict", "the report is malformed"),
    ("passes_without_tensors", "entry 'fc' passes without comparing any tensor"),
])
def test_a_report_that_cannot_be_trusted_is_exit_2(user_file: Path, capfd, target: str, said: str) -> None:
    code, out, err = check(capfd, f"{user_file}:{target}")
    assert (code, out) == (2, "") and said in err and "Traceback" not in err


def test_escape_sequences_in_a_one_line_message_are_shown_not_emitted(user_file: Path, capfd) -> None:
    code, _, err = check(capfd, f"{user_file}:escapes")
    assert code == 2
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;TITLE\\x07 and \\x1b[2J" in err


def test_what_the_users_code_leaves_running_ends_with_the_check(user_file: Path, capfd) -> None:
    assert check(capfd, f"{user_file}:leaves_a_process", "--quiet")[0] == 0
    pid = int((user_file.parent / "pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # killed, waiting for its new parent to reap it
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {pid} started by the user's code is still running after the check")


@pytest.mark.parametrize("args, said", [
    (["demo", "--timeout", "5"], "--timeout is an option of check, sweep and infer, not of demo"),
    (["chek", "x.py:f"], "did you mean 'check'?"),
    (["check", "x.py:f", "--seed", "-1"], None),
])
def test_flags_and_commands_get_suggestions_and_ranges(capsys, args: list[str], said: str | None) -> None:
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert said in err if said else err == "trigrad check: --seed must be a non-negative integer, got -1\n"


def test_a_large_earlier_report_may_be_replaced_and_a_device_may_not(tmp_path: Path) -> None:
    from harness.report.paths import ReportPathError, check_report_path
    from harness.results import SCHEMA

    big = tmp_path / "big.json"
    big.write_text(json.dumps({"schema": SCHEMA, "seed": 0, "layers": [{"pad": "x" * (3 << 20)}]}, indent=1))
    assert check_report_path("--json", str(big), "json") == big
    with pytest.raises(ReportPathError, match="not a regular file"):
        check_report_path("--html", "/dev/stdout", "html")
