"""The pytest plugin under pytest-xdist (`pytest -n 2`), for real: two worker processes run
the `backprop` fixture on several layers whose snapshots share one folder, first recording
them (the workers write into that folder at once), then comparing with them, then refusing
an edited manifest; `--dist each` makes both workers write the same snapshot; the
`trigrad:` summary line is counted on the controller from every worker's reports."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

# pytester's in-process runs unload every module imported during them; torch cannot be
# imported twice in one process, so the frameworks (and trigrad's references) are loaded here
import jax  # noqa: F401
import pytest
import torch  # noqa: F401

import reference_models.jax_ref
import reference_models.torch_ref  # noqa: F401
from harness import pytest_plugin, snapshot_files
from harness.snapshot import SnapshotWarning, load

pytest.importorskip("xdist", reason="needs pytest-xdist (the test extra)")

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
import os
import numpy as np
import harness as tg

class Dense:  # W stored (in, out)
    def __init__(self, n_in, n_out, seed=None):
        rng = np.random.default_rng(seed)  # seed None (SEEDLESS=1): every process its own weights
        self.W, self.b = rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T

class Tanh:
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1 - self.y ** 2)

def dense(n_in, n_out):
    seed = None if os.environ.get("SEEDLESS") else n_in * 100 + n_out
    return tg.wrap_layer(Dense(n_in, n_out, seed), tg.Linear("fc", n_in, n_out), layout=tg.Layout(linear="in_out"))

def tanh():
    return tg.wrap_layer(Tanh(), tg.Tanh("act"))
"""

SNAPSHOT_TESTS = """
import pytest
from user_code import dense, tanh

@pytest.mark.parametrize("n_in,n_out", [(4, 3), (6, 2), (3, 5), (8, 4), (2, 2), (5, 7)])
def test_dense(backprop, n_in, n_out):
    backprop.snapshot(dense(n_in, n_out), input_shape=(3, n_in))

def test_tanh(backprop):
    backprop.snapshot(tanh(), input_shape=(2, 5))

def test_two_layers(backprop):
    backprop.snapshot(dense(4, 3), "fc", input_shape=(3, 4))
"""
N_TESTS = 8


@pytest.fixture()
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # the workers are new processes: they must import this checkout's harness, not an installed one
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("SEEDLESS", raising=False)
    pytester.makepyfile(user_code=USER_CODE)
    return pytester


def run(project: pytest.Pytester, request: pytest.FixtureRequest, *more: str) -> pytest.RunResult:
    # the entry point registers the plugin when trigrad is installed; else name it.
    # -p no:benchmark: pytest-benchmark, where installed, warns that xdist disables it
    loaded = request.config.pluginmanager.has_plugin("trigrad")
    plugin = [] if loaded else ["-p", "harness.pytest_plugin"]
    return project.runpytest(*plugin, "-p", "no:cacheprovider", "-p", "no:benchmark", *more)


def snapshots(folder: Path) -> dict[str, list[str]]:
    """Every file of the snapshot folder, by suffix (temporaries under 'tmp')."""
    out: dict[str, list[str]] = {"json": [], "npz": [], "tmp": []}
    for p in sorted(folder.iterdir()):
        out["tmp" if "trigrad-tmp" in p.name else p.suffix[1:]].append(p.name)
    return out


def load_quietly(path: Path) -> None:
    """Load a snapshot; an interrupted-write warning is a failure here (no writer was killed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnapshotWarning)
        load(path)


def test_snapshots_recorded_by_two_workers_compare_and_an_edited_manifest_fails(project, request) -> None:
    project.makepyfile(test_snaps=SNAPSHOT_TESTS)
    first = run(project, request, "-n", "2", "-v")
    first.assert_outcomes(failed=N_TESTS)  # every snapshot is new: recorded, the test asks for a look
    out = first.stdout.str()
    assert "[gw0]" in out and "[gw1]" in out, "both workers ran tests (so both wrote into the folder)"
    # one failure section each; the short summary repeats the message, cut to the terminal's
    # width except when pytest sees CI set, so count only the sections' lines
    assert len(re.findall(r"^trigrad: no snapshot yet; recorded /", out, re.M)) == N_TESTS
    first.stdout.fnmatch_lines([f"trigrad: {N_TESTS} snapshots: {N_TESTS} recorded (new: rerun to compare)"])
    folder = project.path / "__trigrad__" / "test_snaps"
    files = snapshots(folder)
    assert (len(files["json"]), len(files["npz"]), files["tmp"]) == (N_TESTS, N_TESTS, []), files
    for name in files["json"]:
        load_quietly(folder / name)

    for more in (("-n", "2"), ()):  # recorded under xdist, compared with and without it: the same line
        again = run(project, request, *more)
        again.assert_outcomes(passed=N_TESTS)
        again.stdout.fnmatch_lines([f"trigrad: {N_TESTS} snapshots: {N_TESTS} unchanged"])
    assert snapshots(folder) == files  # comparing writes nothing

    edited = next(folder.glob("test_dense_4-3-*.json"))
    manifest = json.loads(edited.read_text())
    manifest["entries"]["fc"]["tolerances"]["bias"] = 1.0  # a looser tolerance, hash left alone
    edited.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    refused = run(project, request, "-n", "2")
    refused.assert_outcomes(passed=N_TESTS - 1, failed=1)
    refused.stdout.fnmatch_lines(
        [
            "*trigrad: *test_dense_4-3-*.json: edited or tampered manifest (*): field 'entries.fc.tolerances.bias' *",
            f"trigrad: {N_TESTS} snapshots: {N_TESTS - 1} unchanged, 1 refused (unreadable or edited)",
        ]
    )


def test_two_workers_writing_the_same_snapshots_leave_each_pair_whole(project, request, monkeypatch) -> None:
    """``--dist each`` runs every test on both workers: both write every snapshot, with
    different weights (unseeded). Their writes are made to overlap: each starts on the next
    0.4 s tick, gw1 renames its two files 0.05 s in, gw0 its .json at once and its .npz
    0.2 s in. Unlocked, most pairs end with gw1's .json and gw0's .npz (7 of 8, twice,
    measured with fcntl switched off); locked, gw1 waits and every pair is one worker's."""
    project.makepyfile(test_snaps=SNAPSHOT_TESTS)
    project.makeconftest("""
import os, time
from harness import snapshot_files

WORKER = os.environ.get("PYTEST_XDIST_WORKER")

def pause(step):
    if step == "locked":
        time.sleep(0.4 - time.time() % 0.4)
    if (WORKER, step) == ("gw0", "json-renamed"):
        time.sleep(0.2)
    if (WORKER, step) == ("gw1", "json-temp"):
        time.sleep(0.05)

snapshot_files._step_hook = pause
""")
    monkeypatch.setenv("SEEDLESS", "1")
    run(project, request, "-n", "2", "--dist", "each", "--trigrad-update").assert_outcomes(passed=2 * N_TESTS)
    folder = project.path / "__trigrad__" / "test_snaps"
    files = snapshots(folder)
    assert (len(files["json"]), files["tmp"]) == (N_TESTS, []), files
    for name in files["json"]:  # each .json and .npz from one write (a mixed pair is refused here)
        load_quietly(folder / name)


CHECK_TESTS = """
from user_code import Dense, dense, tanh
import harness as tg

class Averaged(Dense):  # the bias gradient averaged over the batch: a backward bug
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = dy.mean(axis=0)
        return dx

def test_checks(backprop, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --trigrad-html DIR must not follow the test
    backprop.check(dense(4, 3))
    backprop.check(tanh(), input_shape=(2, 3))

def test_check_fails(backprop):
    backprop.check(Averaged(4, 3, seed=0), tg.Linear("fc", 4, 3), layout=tg.Layout(linear="in_out"))

def test_equivalent(backprop):
    backprop.equivalent(dense(3, 2), dense(3, 2), input_shape=(2, 3))
"""


@pytest.mark.slow  # two runs of six checks (~17 s); the snapshot test above compares the line with and without -n
def test_the_summary_counts_every_workers_tests(project, request) -> None:
    project.makepyfile(test_checks=CHECK_TESTS)
    lines = {}
    for more in (("-n", "2"), ()):
        result = run(project, request, "--trigrad-html", "pages", *more)
        result.assert_outcomes(passed=2, failed=1)
        lines[more] = [line for line in result.stdout.lines if line.startswith("trigrad:")]
    pages = project.path / "pages"
    assert (
        lines[("-n", "2")]
        == lines[()]
        == [f"trigrad: 3 checks (1 failed); 1 old-vs-new comparison; 3 HTML pages in {pages}"]
    )
    names = sorted(p.name for p in pages.iterdir())
    assert len(names) == 3 and all(re.fullmatch(r"test_checks\.test_check\w*-[0-9a-f]{8}\.\d\.html", n) for n in names)


def test_dist_each_without_fcntl_warns_that_snapshot_writes_are_unlocked(project, request, monkeypatch) -> None:
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    monkeypatch.setattr(pytest_plugin, "_can_lock", lambda: False)
    warned = run(project, request, "-n", "2", "--dist", "each")
    warned.assert_outcomes(passed=2, warnings=1)
    warned.stdout.fnmatch_lines(["*trigrad: this platform has no fcntl, so snapshot writes are not locked*"])
    quiet = run(project, request)  # each test runs once (as under -n's default --dist load): no warning
    quiet.assert_outcomes(passed=1)
    assert "no fcntl" not in quiet.stdout.str() and "trigrad:" not in quiet.stdout.str()  # nor a summary line
    monkeypatch.undo()
    assert pytest_plugin._can_lock() == (snapshot_files.fcntl is not None)
