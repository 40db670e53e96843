"""The pytest plugin, run inside pytest (pytester): the `backprop` fixture fails a test with
the report table, snapshots are recorded, compared and updated, options reach the checks,
and loading the plugin imports neither torch nor jax."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

# pytester's in-process runs unload every module imported during them; torch cannot be
# imported twice in one process, so the frameworks (and trigrad's references) are loaded here
import jax  # noqa: F401,E402
import torch  # noqa: F401,E402

import reference_models.jax_ref  # noqa: F401,E402
import reference_models.torch_ref  # noqa: F401,E402

USER_CODE = '''
import numpy as np
import harness as tg

class Dense:
    def __init__(self, bug=False, scale=1.0):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.standard_normal((4, 3)) * scale, rng.standard_normal(3)
        self.bug = bug

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW = self.x.T @ dy
        self.db = dy.mean(axis=0) if self.bug else dy.sum(axis=0)
        return dy @ self.W.T

SPEC = tg.Linear("fc", 4, 3)
IN_OUT = tg.Layout(linear="in_out")
'''


@pytest.fixture()
def project(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    pytester.makepyfile(user_code=USER_CODE)
    return pytester


def args(request: pytest.FixtureRequest, *more: str) -> list[str]:
    # the entry point registers the plugin when trigrad is installed; else name it
    loaded = request.config.pluginmanager.has_plugin("trigrad")
    return [*([] if loaded else ["-p", "harness.pytest_plugin"]), "-p", "no:cacheprovider", *more]


def test_check_passes_and_fails_with_the_table(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_layers='''
from user_code import Dense, SPEC, IN_OUT

def test_good(backprop):
    report = backprop.check(Dense(), SPEC, layout=IN_OUT)
    assert report.ok and report.seed == 0

def test_bad(backprop):
    backprop.check(Dense(bug=True), SPEC, layout=IN_OUT, input_shape=(5, 4))

def test_not_a_layer(backprop):
    backprop.check(42)
''')
    result = project.runpytest(*args(request))
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*fix first: fc (backward); 1 of 1 entries fail (seed 0)*",
                                 "*bias*8.0e-01*", "*off by a constant factor 1/5 (= 1/the batch size 5*"])
    result.stdout.fnmatch_lines(["*trigrad: the target returned a int: return a wrapped layer*",
                                 "trigrad: 3 checks (2 failed)"])
    assert "Traceback" not in result.stdout.str()  # the table is the message


def test_seed_and_html_options(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_seed='''
from user_code import Dense, SPEC, IN_OUT

def test_seed(backprop):
    assert backprop.check(Dense(), SPEC, layout=IN_OUT, seed=3).seed == 11
''')
    result = project.runpytest(*args(request, "--trigrad-seed", "11", "--trigrad-html", "pages"))
    result.assert_outcomes(passed=1)
    pages = list((project.path / "pages").glob("*.html"))
    assert len(pages) == 1 and re.fullmatch(r"test_seed\.test_seed-[0-9a-f]{8}\.1\.html", pages[0].name), pages
    assert 'id="trigrad-table"' in pages[0].read_text()
    result.stdout.fnmatch_lines([f"trigrad: 1 check; 1 HTML page in {project.path / 'pages'}"])


def test_a_relative_html_dir_does_not_follow_a_test_that_changes_directory(project: pytest.Pytester,
                                                                           request) -> None:
    project.makepyfile(test_cd='''
from user_code import Dense, SPEC, IN_OUT

def test_elsewhere(backprop, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backprop.check(Dense(), SPEC, layout=IN_OUT)
''')
    project.runpytest(*args(request, "--trigrad-html", "pages")).assert_outcomes(passed=1)
    assert len(list((project.path / "pages").glob("test_cd.test_elsewhere-*.1.html"))) == 1


def test_snapshot_is_recorded_then_compared_then_updated(project: pytest.Pytester, request, monkeypatch) -> None:
    project.makepyfile(test_snap='''
import os
import harness as tg
from user_code import Dense, SPEC, IN_OUT

def test_dense(backprop):
    layer = Dense(scale=float(os.environ.get("SCALE", "1")))
    backprop.snapshot(tg.wrap_layer(layer, SPEC, layout=IN_OUT), input_shape=(5, 4))
''')
    first = project.runpytest(*args(request))
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*no snapshot yet; recorded*test_dense-*.npz and test_dense-*.json*"])
    folder = project.path / "__trigrad__" / "test_snap"
    manifest = json.loads(next(folder.glob("test_dense-*.json")).read_text())
    assert manifest["format"] == "trigrad.snapshot/2" and set(manifest["entries"]) == {"fc"}

    project.runpytest(*args(request)).assert_outcomes(passed=1)  # same code: the same

    # the snapshot stores its parameters, so different weights are not a change...
    monkeypatch.setenv("SCALE", "2")
    project.runpytest(*args(request)).assert_outcomes(passed=1)
    # ...but different code is
    (project.path / "user_code.py").write_text(USER_CODE.replace("dy.sum(axis=0)", "dy.sum(axis=0) * 1.01"))
    changed = project.runpytest(*args(request))
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*1 of 1 entries differ: fc (broken)*", "*bias*broken*",
                                  "*rerun with --trigrad-update if the change is intended*"])
    changed.stdout.fnmatch_lines(["trigrad: 1 snapshot: 1 changed"])
    updated = project.runpytest(*args(request, "--trigrad-update"))
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines(["trigrad: 1 snapshot: 1 rewritten (--trigrad-update)"])
    project.runpytest(*args(request)).assert_outcomes(passed=1)


def test_tampered_snapshot_fails_the_test_clearly(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_snap='''
import harness as tg
from user_code import Dense, SPEC, IN_OUT

def test_dense(backprop):
    backprop.snapshot(tg.wrap_layer(Dense(), SPEC, layout=IN_OUT), input_shape=(5, 4))
''')
    project.runpytest(*args(request, "--trigrad-update")).assert_outcomes(passed=1)
    manifest = next((project.path / "__trigrad__" / "test_snap").glob("test_dense-*.json"))
    data = json.loads(manifest.read_text())
    key = next(iter(data["arrays"]))
    data["arrays"][key]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    result = project.runpytest(*args(request))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*trigrad: *test_dense-*.json: edited or tampered manifest (*): field 'arrays.{key}.sha256' is*",
                                 "trigrad: 1 snapshot: 1 refused (unreadable or edited)"])


def test_equivalent(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_eq='''
from user_code import Dense, SPEC, IN_OUT

def test_same(backprop):
    assert backprop.equivalent(Dense(), Dense(), SPEC, layout=IN_OUT).ok

def test_differs(backprop):
    backprop.equivalent(Dense(), Dense(bug=True), SPEC, layout=IN_OUT)
''')
    result = project.runpytest(*args(request))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*trigrad old vs new: 1 of 1 entries differ: fc (broken)*",
                                 "trigrad: 2 old-vs-new comparisons (1 differ)"])


def test_options_are_listed(project: pytest.Pytester, request) -> None:
    result = project.runpytest(*args(request, "--help"))
    result.stdout.fnmatch_lines(["*--trigrad-update*", "*--trigrad-seed*", "*--trigrad-html*"])


def test_loading_the_plugin_is_light() -> None:
    code = ("import sys, harness.pytest_plugin; "
            "assert not {'torch', 'jax', 'rich'} & set(sys.modules), sorted({'torch', 'jax', 'rich'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_test_gets_its_own_snapshot(project: pytest.Pytester, request) -> None:
    """Same function name in two classes, parameter ids that sanitise alike, a suffix-like id,
    and a named second snapshot in one test: all distinct files, all passing on the rerun."""
    project.makepyfile(test_many='''
import pytest
import harness as tg
from user_code import Dense, SPEC, IN_OUT

def layer(scale=1.0):
    return tg.wrap_layer(Dense(scale=scale), SPEC, layout=IN_OUT)

class TestOld:
    def test_fc(self, backprop):
        backprop.snapshot(layer(), input_shape=(5, 4))

class TestNew:
    def test_fc(self, backprop):
        backprop.snapshot(layer(), input_shape=(3, 4), seed=1)

@pytest.mark.parametrize("v", ["a/b", "a_b", "v.json"])
def test_ids(backprop, v):
    backprop.snapshot(layer(), input_shape=(2 + len(v), 4))

def test_two(backprop):
    backprop.snapshot(layer(), input_shape=(5, 4))
    backprop.snapshot(layer(), "second", input_shape=(6, 4))
''')
    project.runpytest(*args(request, "--trigrad-update")).assert_outcomes(passed=6)
    files = sorted(p.name for p in (project.path / "__trigrad__" / "test_many").glob("*.json"))
    assert len(files) == 7, files
    project.runpytest(*args(request)).assert_outcomes(passed=6)


def test_user_code_raising_while_recording_fails_clearly(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_raise='''
import harness as tg
from user_code import Dense, SPEC, IN_OUT

class Broken(Dense):
    def backward(self, dy):
        raise IndexError("off by one")

def test_broken(backprop):
    backprop.snapshot(tg.wrap_layer(Broken(), SPEC, layout=IN_OUT), input_shape=(5, 4))
''')
    result = project.runpytest(*args(request))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*trigrad: recording the snapshot failed: IndexError: off by one at *test_raise.py*",
                                 "trigrad: 1 snapshot: 1 not recorded (an error)"])


READ_ONLY_TESTS = '''
import harness as tg
from user_code import Dense, SPEC, IN_OUT

def test_dense(backprop):
    backprop.snapshot(tg.wrap_layer(Dense(), SPEC, layout=IN_OUT), input_shape=(5, 4))

def test_other(backprop):
    assert backprop.equivalent(Dense(), Dense(), SPEC, layout=IN_OUT).ok
'''


def test_a_snapshot_folder_that_cannot_be_a_folder_fails_with_a_trigrad_message(project: pytest.Pytester,
                                                                                 request) -> None:
    """Root ignores chmod, so the unwritable folder is one whose parent is a regular file."""
    project.makepyfile(test_snap=READ_ONLY_TESTS)
    (project.path / "__trigrad__").write_text("not a folder")
    for more in ((), ("--trigrad-update",)):
        result = project.runpytest(*args(request, *more))
        result.assert_outcomes(failed=1, passed=1)  # the other test is unaffected
        result.stdout.fnmatch_lines([
            "*trigrad: cannot write the snapshot test_dense-*.npz into the folder *__trigrad__/test_snap "
            "(NotADirectoryError: Not a directory): *__trigrad__ is a file, not a folder; make *__trigrad__/test_snap "
            "a writable folder, or record the snapshots with --trigrad-update in a checkout where it is writable and "
            "commit them."])
        out = result.stdout.str()
        assert "Traceback" not in out and "pathlib" not in out and "snapshot_files.py" not in out
        result.stdout.fnmatch_lines(["trigrad: 1 snapshot: 1 not recorded (an error); 1 old-vs-new comparison"])
    assert (project.path / "__trigrad__").read_text() == "not a folder"


def test_a_read_only_snapshot_folder_still_compares_and_refuses_updates_clearly(project: pytest.Pytester, request,
                                                                                 monkeypatch) -> None:
    """A read-only folder (simulated: renames into it are denied, as on a read-only mount):
    existing snapshots still compare; recording fails naming the folder, leaving no
    temporaries and the previous snapshot intact."""
    project.makepyfile(test_snap=READ_ONLY_TESTS)
    project.makeconftest('''
import errno, os, pytest

@pytest.fixture(autouse=True)
def read_only(monkeypatch):
    if os.environ.get("READ_ONLY"):
        def denied(src, dst, *a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        monkeypatch.setattr(os, "replace", denied)
''')
    project.runpytest(*args(request, "--trigrad-update")).assert_outcomes(passed=2)
    folder = project.path / "__trigrad__" / "test_snap"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setenv("READ_ONLY", "1")
    project.runpytest(*args(request)).assert_outcomes(passed=2)  # reading needs no write
    result = project.runpytest(*args(request, "--trigrad-update"))
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*trigrad: cannot write the snapshot test_dense-*.npz into the folder *__trigrad__/"
                                 "test_snap (PermissionError: Permission denied): *__trigrad__/test_snap is read-only;*"])
    assert "Traceback" not in result.stdout.str()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporaries, nothing changed
    monkeypatch.delenv("READ_ONLY")
    project.runpytest(*args(request)).assert_outcomes(passed=2)


def test_a_snapshot_of_buggy_code_passes_with_a_warning(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_pinned='''
import harness as tg
from user_code import Dense, SPEC, IN_OUT

def test_dense(backprop):
    backprop.snapshot(tg.wrap_layer(Dense(bug=True), SPEC, layout=IN_OUT), input_shape=(5, 4))
''')
    project.runpytest(*args(request)).assert_outcomes(failed=1)  # recorded
    result = project.runpytest(*args(request))
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*trigrad: fc.bias in test_dense-*.npz disagreed with the reference when recorded*",
                                 "trigrad: 1 snapshot: 1 unchanged, 1 pinning a disagreement recorded with it"])


def test_the_summary_line_names_only_what_happened() -> None:
    from collections import Counter

    from harness.pytest_plugin import summary

    assert summary(Counter()) is None and summary(Counter({"other": 3})) is None
    counts = Counter({"check": 1, "snapshot recorded": 2, "snapshot updated": 1, "old-vs-new comparison": 3})
    assert summary(counts) == ("trigrad: 1 check; 3 snapshots: 2 recorded (new: rerun to compare), 1 rewritten "
                               "(--trigrad-update); 3 old-vs-new comparisons")


def test_the_summary_ignores_other_user_properties(project: pytest.Pytester, request) -> None:
    project.makepyfile(test_props='''
from user_code import Dense, SPEC, IN_OUT

def test_props(backprop, record_property, request):
    record_property("trigrad", "no such event")  # a property of that name the plugin did not add: not shown
    request.node.user_properties.append(("odd",))  # malformed: ignored
    backprop.equivalent(Dense(), Dense(), SPEC, layout=IN_OUT)
''')
    result = project.runpytest(*args(request))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["trigrad: 1 old-vs-new comparison"])
