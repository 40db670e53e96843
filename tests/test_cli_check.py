"""`trigrad check TARGET` on user files in a temp dir: every exit code (0 pass, 1 a
disagreement, 2 usage or configuration error with one clear line), every option, the JSON
report validated against the schema in the repo; `trigrad demo` and its options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

from harness.cli import main
from harness.report import load_schema

DENSE = '''
import numpy as np
import harness as tg

class Dense:
    def __init__(self, n_in=4, n_out=3, dtype=np.float64, bug=False):
        rng = np.random.default_rng(0)
        self.W = rng.standard_normal((n_in, n_out)).astype(dtype)
        self.b = rng.standard_normal(n_out).astype(dtype)
        self.bug = bug

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW = self.x.T @ dy
        self.db = dy.mean(axis=0) if self.bug else dy.sum(axis=0)
        return dy @ self.W.T

SPEC = tg.Linear("fc", 4, 3)
LAYOUT = tg.Layout(linear="in_out")

def good():
    return tg.wrap_layer(Dense(), SPEC, layout=LAYOUT)

def bad():
    return {"check": Dense(bug=True), "spec": SPEC, "layout": LAYOUT, "input_shape": (5, 4)}

def typed(dtype):
    return tg.wrap_layer(Dense(dtype=dtype), SPEC, layout=LAYOUT)

def seeded(seed):
    print("seed", seed)
    return tg.wrap_layer(Dense(), SPEC, layout=LAYOUT), SPEC, np.random.default_rng(seed).standard_normal((2, 4))

def raises():
    return {}["nope"]

def nothing():
    return 42

def wrong_orientation():
    return {"check": Dense(), "spec": SPEC, "layout": tg.Layout(linear="out_in"), "input_shape": (5, 4)}

def huge():
    return {"check": Dense(), "spec": SPEC, "layout": LAYOUT, "input_shape": (10**9, 4)}

def unknown_key():
    return {"check": Dense(), "spec": SPEC, "layuot": LAYOUT}

def network_without_input():
    relu = type("R", (), {"forward": lambda s, x: x, "backward": lambda s, g: g})()
    return {"check": {"fc": Dense(), "relu": relu}, "spec": tg.Sequential([SPEC, tg.ReLU("relu")])}
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_layers.py"
    path.write_text(textwrap.dedent(DENSE))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_exit_0_when_everything_passes(user_file: Path, capsys) -> None:
    code, out, err = run(capsys, f"{user_file}:good")
    assert code == 0 and err == ""
    assert "the entry passes (seed 0)" in out and "fc" in out


def test_exit_1_with_the_layer_and_diagnosis(user_file: Path, capsys, tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "report.json"
    report_path.parent.mkdir()
    code, out, _ = run(capsys, f"{user_file}:bad", "--json", str(report_path), "--seed", "3", "--full")
    assert code == 1
    assert "fix first: fc (backward)" in out and "1/the batch size 5" in out
    data = json.loads(report_path.read_text())
    jsonschema.validate(data, load_schema(), cls=jsonschema.Draft202012Validator)
    assert data["seed"] == 3 and data["first_failure"] == "fc" and not data["ok"]
    assert [t["name"] for t in data["layers"][0]["tensors"] if not t["ok"]] == ["bias"]


def test_options_reach_the_check(user_file: Path, capsys) -> None:
    code, out, _ = run(capsys, f"{user_file}:typed", "--dtype", "float32", "--fd-probes", "5", "--tol-scale", "2",
                       "--json", "-", "--quiet")
    assert code == 0
    data = json.loads(out)
    layer = data["layers"][0]
    assert layer["dtype"] == "float32"
    assert all(t["fd"]["probes"] >= 5 for t in layer["tensors"] if t["fd"])
    code, out, _ = run(capsys, f"{user_file}:seeded", "--seed", "7", "--quiet")
    assert code == 0 and out == ""  # the user's own prints go to stderr (see test_isolation.py)


def test_module_target_from_the_current_folder(user_file: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(user_file.parent)
    code, _, err = run(capsys, "my_layers:good", "--quiet")
    assert (code, err) == (0, "")


@pytest.mark.parametrize("target,args,message", [
    ("my_layers.py", [], "TARGET must be path/to/file.py:function or package.module:function, got"),
    ("missing.py:good", [], "no file 'missing.py'"),
    ("no_such_module_xyz:good", [], "no module 'no_such_module_xyz'"),
    ("{file}:goood", [], "has nothing named 'goood'; did you mean 'good'?"),
    ("{file}:SPEC", [], "has a Linear, not a function named 'SPEC'"),
    ("{file}:raises", [], "raises() raised KeyError: 'nope' at "),
    ("{file}:nothing", [], "the target returned a int: return a wrapped layer or network"),
    ("{file}:unknown_key", [], "unknown key(s) ['layuot']; known: check, spec"),
    ("{file}:network_without_input", [], "a network needs an input"),
    ("{file}:good", ["--dtype", "float32"], "--dtype float32 given, but good() takes no 'dtype' argument"),
    ("{file}:good", ["--fd-probes", "0"], "--fd-probes must be at least 1, got 0"),
    ("{file}:wrong_orientation", [], "layer 'fc'"),
    ("{file}:huge", [], "GiB"),
    ("{file}:good", ["--tol-scale", "-1"], "--tol-scale must be positive"),
    ("{file}:good", ["--json", "/no/such/dir/r.json"], "the folder /no/such/dir does not exist"),
])
def test_exit_2_with_one_clear_line(user_file: Path, capsys, target: str, args: list[str], message: str) -> None:
    code, out, err = run(capsys, target.format(file=user_file), *args)
    assert code == 2, (out, err)
    assert err.startswith("trigrad check: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_import_error_in_the_user_file_and_debug(tmp_path: Path, capfd) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import numpy as np\nx = 1 / 0\ndef f():\n    pass\n")
    code = main(["check", f"{path}:f"])
    err = capfd.readouterr().err
    assert code == 2 and "importing" in err and "ZeroDivisionError: division by zero" in err and "broken.py:2" in err
    assert "Traceback" not in err
    code = main(["check", f"{path}:f", "--debug"])  # --debug: the real traceback, from the process that ran it
    err = capfd.readouterr().err
    assert code == 2 and "Traceback (most recent call last)" in err and 'broken.py", line 2, in <module>' in err


def test_usage_errors_from_argparse_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["check"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["check", "x.py:f", "--dtype", "float128"])
    assert e.value.code == 2


# --------------------------------------------------------------------------- demo


def test_demo_finds_the_default_bug(capsys, tmp_path: Path) -> None:
    assert main(["demo", "--json", str(tmp_path / "demo.json")]) == 0
    out = capsys.readouterr().out
    assert "1. the correct network" in out and "all 12 entries pass" in out
    assert "fix first: conv2 (backward)" in out and "kernel not rotated 180 degrees" in out
    assert "class ConvDxKernelNotRotated(Conv2D):" in out  # the mistake's code is shown
    data = json.loads((tmp_path / "demo.json").read_text())
    jsonschema.validate(data, load_schema(), cls=jsonschema.Draft202012Validator)
    assert data["first_failure"] == "conv2"


def test_demo_list_and_bug(capsys) -> None:
    from harness.examples import VARIANTS

    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in VARIANTS)
    assert main(["demo", "--bug", "loss-grad-not-averaged", "--no-color"]) == 0
    assert "fix first: (loss) (backward)" in capsys.readouterr().out
    assert main(["demo", "--bug", "nope"]) == 2
    assert "unknown bug 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # a timing target for a fresh process; the demo itself runs in-process below
def test_demo_from_another_folder_in_a_fresh_process_under_15_seconds(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "demo"], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=120)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "the mistake is found in conv2" in out.stdout
    assert elapsed < 15, elapsed


def test_html_report_is_written_and_readable_by_others(user_file: Path, capsys, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, _ = run(capsys, f"{user_file}:bad", "--html", str(page), "--quiet")
    assert code == 1
    text = page.read_text()
    assert 'id="trigrad-table"' in text and "fc" in text and "batch size" in text
    assert page.stat().st_mode & 0o044  # group/other may read it (umask permitting), unlike mkstemp's 0600


def test_demo_on_a_terminal_draws_a_progress_bar() -> None:
    import io

    from rich.console import Console

    from harness.demo import run_demo

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    code, report = run_demo(console, bug="relu2-mask-from-gradient")
    assert code == 0 and report.first_failure == "relu2"
    out = buf.getvalue()
    assert "\x1b[" in out  # colour on a terminal
    assert "relu2-mask-from-gradient: " in out or "correct: " in out  # the bar's label, drawn then cleared


def test_json_to_stdout_keeps_stdout_pure_json(user_file: Path, capsys) -> None:
    code, out, err = run(capsys, f"{user_file}:bad", "--json", "-")
    assert code == 1
    assert json.loads(out)["first_failure"] == "fc"  # stdout is the JSON alone
    assert "fix first: fc (backward)" in err  # the table went to stderr
