"""harness.sweep (harness/sweeper.py) and `trigrad sweep`: a conv whose backward is wrong only for stride 2 with
an odd size is found and shrunk to its smallest failing configuration, deterministically;
the correct conv passes; the time budget, spec rejections and user errors are handled; the
CLI's exit codes; `import harness.sweeper` loads no framework."""

from __future__ import annotations

import inspect
import io
import itertools
import json
import re
import subprocess
import sys
import textwrap
import time
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import slow

import harness as tg
from harness.cli import main
from harness.report import load_schema
from harness.spec import SpecError
from harness.sweeper import SweepResult, check_config, sweep


class Conv:
    """A handwritten conv: NCHW data, OIHW kernel, stride, padding, dilation. With
    ``bug=True`` its stride-2 fast path crops the spare row/column from the wrong end,
    which only matters when (size + 2 * padding - dilated kernel) is even on an axis: for
    kernels 1 and 3, an odd width (or height)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 seed: int = 0, bug: bool = False):
        rng = np.random.default_rng(seed)
        self.W = rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)
        self.b = rng.standard_normal(cout)
        self.s, self.p, self.d, self.bug = stride, padding, dilation, bug

    def _sizes(self, H, W):
        dk = self.d * (self.W.shape[2] - 1) + 1
        return dk, (H + 2 * self.p - dk) // self.s + 1, (W + 2 * self.p - dk) // self.s + 1

    def _taps(self, a, oh, ow):
        """The input rows/columns that kernel tap ``a`` (row and column) reads, as slices."""
        s, d = self.s, self.d
        return slice(a[0] * d, a[0] * d + s * (oh - 1) + 1, s), slice(a[1] * d, a[1] * d + s * (ow - 1) + 1, s)

    def forward(self, x):
        self.x = x
        N, C, H, W = x.shape
        k, p = self.W.shape[2], self.p
        _, oh, ow = self._sizes(H, W)
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        y = np.zeros((N, self.W.shape[0], oh, ow)) + self.b[None, :, None, None]
        for a in itertools.product(range(k), range(k)):
            y += np.einsum("nchw,oc->nohw", xp[(..., *self._taps(a, oh, ow))], self.W[:, :, a[0], a[1]])
        return y

    def backward(self, dy):
        N, C, H, W = self.x.shape
        k, p, d = self.W.shape[2], self.p, self.d
        dk, oh, ow = self._sizes(H, W)
        xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.db = dy.sum(axis=(0, 2, 3))
        self.dW = np.zeros_like(self.W)
        for a in itertools.product(range(k), range(k)):
            self.dW[:, :, a[0], a[1]] = np.einsum("nohw,nchw->oc", dy, xp[(..., *self._taps(a, oh, ow))])
        if self.s == 2:  # fast path: upsample dy once, then scatter as for stride 1
            up = np.zeros((N, dy.shape[1], 2 * oh, 2 * ow))
            up[:, :, ::2, ::2] = dy
            dxp = np.zeros((N, C, 2 * oh + dk - 1, 2 * ow + dk - 1))  # one spare row/column when size+2p-dk is even
            for a in itertools.product(range(k), range(k)):
                dxp[:, :, a[0] * d: a[0] * d + 2 * oh, a[1] * d: a[1] * d + 2 * ow] += \
                    np.einsum("nohw,oc->nchw", up, self.W[:, :, a[0], a[1]])
            hp, wp = H + 2 * p, W + 2 * p
            dxp = dxp[:, :, -hp:, -wp:] if self.bug else dxp[:, :, :hp, :wp]
        else:
            dxp = np.zeros_like(xp)
            for a in itertools.product(range(k), range(k)):
                dxp[(..., *self._taps(a, oh, ow))] += np.einsum("nohw,oc->nchw", dy, self.W[:, :, a[0], a[1]])
        return dxp[:, :, p: p + H, p: p + W]


def buggy_conv(kernel, stride, padding, height, width, batch, in_channels, out_channels):
    return Conv(in_channels, out_channels, kernel, stride=stride, padding=padding, bug=True)


def good_conv(kernel, stride, padding, height, width, batch, in_channels, out_channels):
    return Conv(in_channels, out_channels, kernel, stride=stride, padding=padding)


def conv_spec(kernel, stride, padding, height, width, batch, in_channels, out_channels):
    return tg.Conv2d("conv", in_channels, out_channels, kernel, stride=stride, padding=padding), \
        (batch, in_channels, height, width)


# smallest first: hypothesis shrinks toward the first value; height and width start at 2 so
# that the smallest failing width (3, odd) is not simply the smallest allowed one
SPACE: dict[str, Any] = dict(kernel=[1, 2, 3], stride=[1, 2, 3], padding=[0, 1], height=range(2, 8),
                             width=range(2, 8), batch=[1, 2], in_channels=[1, 2], out_channels=[1, 2])


@pytest.fixture(scope="module")
def found() -> SweepResult:
    return sweep(buggy_conv, conv_spec, SPACE, seed=0, max_examples=100, progress=False)


@pytest.mark.parametrize("s", [2, pytest.param(1, marks=slow), pytest.param(3, marks=slow)])
def test_the_test_conv_is_right_and_its_bug_is_where_it_says(s: int) -> None:
    """Over the whole space, one stride per test (against torch autograd directly, without
    trigrad): the correct conv is right everywhere; the buggy one differs only in dx,
    exactly for stride 2 with an even size + 2p - k on some axis."""
    import torch

    for k, p, h, w in itertools.product(SPACE["kernel"], SPACE["padding"], SPACE["height"], SPACE["width"]):
        if min(h, w) + 2 * p < k:
            continue
        x = np.random.default_rng(1).standard_normal((2, 2, h, w))
        good, bad = Conv(2, 2, k, s, p), Conv(2, 2, k, s, p, bug=True)
        y = good.forward(x)
        g = np.random.default_rng(2).standard_normal(y.shape)
        dx, dx_bad = good.backward(g), (bad.forward(x), bad.backward(g))[1]
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, good.W, good.b))
        yt = torch.nn.functional.conv2d(xt, wt, bt, stride=s, padding=p)
        (yt * torch.tensor(g)).sum().backward()
        for mine, ref in ((y, yt), (dx, xt.grad), (good.dW, wt.grad), (good.db, bt.grad)):
            np.testing.assert_allclose(mine, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
        assert np.array_equal(bad.dW, good.dW) and np.array_equal(bad.db, good.db)
        shows = s == 2 and ((h + 2 * p - k) % 2 == 0 or (w + 2 * p - k) % 2 == 0)
        assert (not np.allclose(dx_bad, dx)) == shows, (k, s, p, h, w)


def test_the_bug_is_found_and_shrunk_to_the_smallest_configuration(found: SweepResult) -> None:
    assert not found.ok and found.report is not None and not found.report.ok
    cfg = found.failing
    assert cfg is not None and list(cfg) == list(SPACE)
    assert cfg["stride"] == 2 and cfg["width"] % 2 == 1
    assert found.report.layer("conv").verdict == "backward"
    assert not next(t for t in found.report.layer("conv").tensors if t.name == "input").ok
    # and the diagnosis names the off-by-one of the crop
    assert any("shifted by one column" in d for d in found.report.layer("conv").diagnosis), found.report.layer("conv").diagnosis
    # minimal: any one parameter lowered to any smaller allowed value passes, or is rejected
    for name, values in SPACE.items():
        for smaller in list(values)[:list(values).index(cfg[name])]:
            try:
                report = check_config(buggy_conv, conv_spec, {**cfg, name: smaller})
            except SpecError:
                continue
            assert report.ok, (name, smaller, str(report))
    assert found.examples > 0 and found.found_after is not None and found.found_after <= found.examples
    text = str(found)
    assert "stride=2" in text and "conv: backward" in text and found.reproduce in text


def test_the_line_to_reproduce_reruns_the_failing_check(found: SweepResult) -> None:
    assert found.reproduce is not None and found.imports is not None
    assert "\n" not in found.reproduce and f"{__name__}.buggy_conv" in found.reproduce
    namespace: dict[str, Any] = {}
    exec(found.imports, namespace)
    report = eval(found.reproduce, namespace)
    assert not report.ok and report.layer("conv").verdict == "backward"


def test_check_kwargs_and_numpy_values_reach_the_line_to_reproduce() -> None:
    space = dict(SPACE, kernel=[1], stride=[2], padding=[0], height=[2], width=np.arange(2, 5))
    options = {"layout": tg.Layout(), "fd_probes": 2}
    result = sweep(buggy_conv, conv_spec, space, seed=1, check_kwargs=options, progress=False)
    assert result.failing is not None and result.failing["width"] == 3
    assert "'width': 3" in result.reproduce and "seed=1, layout=harness.Layout(" in result.reproduce
    namespace: dict[str, Any] = {}
    exec(result.imports, namespace)
    report = eval(result.reproduce, namespace)
    assert not report.ok and report.seed == 1


def test_the_same_seed_gives_the_same_shrunk_configuration(found: SweepResult) -> None:
    again = sweep(buggy_conv, conv_spec, SPACE, seed=0, max_examples=100, progress=False)
    assert again.failing == found.failing and again.examples == found.examples and again.skipped == found.skipped


@pytest.mark.parametrize("examples", [10, pytest.param(60, marks=slow)])
def test_the_correct_conv_passes_the_same_sweep(examples: int) -> None:
    result = sweep(good_conv, conv_spec, SPACE, seed=0, max_examples=examples, progress=False)
    assert result.ok and result.examples > 0 and result.failing is None and result.report is None
    assert not result.timed_out and "no failing configuration" in str(result)


def test_the_time_budget_stops_the_search() -> None:
    big = dict(SPACE, height=range(8, 24), width=range(8, 24), batch=[2, 3], in_channels=[2, 3])
    t0 = time.monotonic()
    result = sweep(good_conv, conv_spec, big, seed=0, max_examples=1000, time_budget=1.5, progress=False)
    assert time.monotonic() - t0 < 6
    assert result.ok and result.timed_out and 0 < result.examples < 1000


def test_the_shrink_budget_reports_the_smallest_failure_so_far(found: SweepResult) -> None:
    t0 = time.monotonic()
    result = sweep(buggy_conv, conv_spec, SPACE, seed=0, shrink_budget=1e-6, progress=False)
    assert time.monotonic() - t0 < 5
    assert not result.ok and result.timed_out and result.failing != found.failing
    assert result.examples == result.found_after  # no shrink candidate was checked
    assert not check_config(buggy_conv, conv_spec, result.failing).ok
    assert "found before the shrink budget ran out" in str(result)


def test_configurations_the_spec_rejects_are_skipped_not_failures() -> None:
    space = dict(kernel=[5, 1], stride=[1], padding=[0], height=[2, 3], width=[3], batch=[1], in_channels=[1],
                 out_channels=[1])
    result = sweep(buggy_conv, conv_spec, space, seed=0, progress=False)
    assert result.ok and result.skipped == 2 and result.examples == 2
    rejected = sweep(good_conv, conv_spec, dict(space, kernel=[5]), seed=0, progress=False)
    assert rejected.ok and rejected.examples == 0 and rejected.skipped == 2
    assert "smaller than the dilated kernel" in (rejected.last_rejection or "")


def test_user_code_that_raises_is_a_failing_configuration() -> None:
    def picky(kernel, stride, **rest):
        if stride == 3:
            raise NotImplementedError("stride 3")
        return good_conv(kernel, stride, **rest)

    result = sweep(picky, conv_spec, SPACE, seed=0, max_examples=60, progress=False)
    assert not result.ok and result.failing is not None and result.failing["stride"] == 3
    assert result.failing["kernel"] == 1 and result.failing["width"] == 2
    assert result.report is not None and result.report.layer("conv").verdict == "error"
    assert "NotImplementedError: stride 3" in result.report.layer("conv").message
    assert "picky" in result.reproduce  # a local function: named, to be defined where it is pasted


def test_a_bad_space_or_function_is_refused_before_any_check() -> None:
    with pytest.raises(TypeError, match="'kernel' must be a list"):
        sweep(good_conv, conv_spec, dict(SPACE, kernel=3), progress=False)
    with pytest.raises(ValueError, match="no values for 'kernel'"):
        sweep(good_conv, conv_spec, dict(SPACE, kernel=[]), progress=False)
    with pytest.raises(TypeError, match="make_layer good_conv.. cannot take"):
        sweep(good_conv, conv_spec, dict(SPACE, groups=[1]), progress=False)

    def broken(**cfg):
        return {}["conv"]

    result = sweep(good_conv, broken, SPACE, progress=False)  # the factory's own mistake: a usage error, at once
    assert not result.ok and result.examples == 0 and result.failing is None
    assert re.search(r"broken\(kernel=1, .*\) raised KeyError: 'conv'", result.usage_error or "")


def test_without_hypothesis_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match="pip install hypothesis"):
        sweep(good_conv, conv_spec, SPACE, progress=False)


def test_a_progress_bar_on_a_terminal_only() -> None:
    from rich.console import Console

    space = dict(SPACE, kernel=[1], stride=[1], padding=[0], height=[2], width=[2, 3], batch=[1], in_channels=[1],
                 out_channels=[1])
    out = io.StringIO()
    sweep(good_conv, conv_spec, space, progress=Console(file=out, force_terminal=True, width=100))
    assert "sweep" in out.getvalue() and "rejected" in out.getvalue()
    out = io.StringIO()
    sweep(good_conv, conv_spec, space, progress=Console(file=out, force_terminal=False))
    assert out.getvalue() == ""


# --------------------------------------------------------------------------- trigrad sweep


USER_FILE = "import itertools\nimport numpy as np\nimport harness as tg\n\n\n" + inspect.getsource(Conv) + textwrap.dedent('''

    def make(kernel, stride, width, bug=False):
        return Conv(1, 1, kernel, stride=stride, bug=bug)


    def spec(kernel, stride, width):
        return {"spec": tg.Conv2d("conv", 1, 1, kernel, stride=stride), "input_shape": (1, 1, 2, width)}


    SPACE = {"kernel": [1, 3], "stride": [1, 2], "width": [2, 3, 4]}


    def good():
        return {"make": make, "spec": spec, "space": SPACE}


    def bad():
        return {"make": lambda **cfg: make(bug=True, **cfg), "spec": spec, "space": SPACE}


    def buggy(kernel, stride, width):
        return make(kernel, stride, width, bug=True)


    def named():
        return {"make": buggy, "spec": spec, "space": SPACE, "options": {"fd_probes": 2}}


    def rejected():
        return {"make": make, "spec": spec, "space": {"kernel": [5], "stride": [1], "width": [2, 3]}}


    def not_a_dict():
        return make, spec, SPACE


    def scalar_space():
        return {"make": make, "spec": spec, "space": {"kernel": 1, "stride": [1], "width": [3]}}
''')


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("user") / "my_sweep.py"
    path.write_text(USER_FILE)
    return str(path)


@slow  # a whole sweep in a child process (~7 s); the finding path (exit 1) stays in the default run
def test_cli_exit_0_when_nothing_fails(user_file: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["sweep", f"{user_file}:good"]) == 0
    assert "no failing configuration" in capsys.readouterr().out
    # --json -: stdout is still JSON, a report with no failing entry (not empty, not stale)
    assert main(["sweep", f"{user_file}:good", "--max-examples", "3", "--json", "-", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, load_schema())
    assert data["ok"] is True and data["layers"] == [] and data["first_failure"] is None


def test_cli_exit_1_prints_the_configuration_the_line_and_the_table(user_file: str, tmp_path, capsys) -> None:
    out_json = tmp_path / "shrunk.json"
    assert main(["sweep", f"{user_file}:named", "--seed", "3", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "kernel=1, stride=2, width=3" in out
    assert "import harness, my_sweep" in out
    assert "harness.check_config(my_sweep.buggy, my_sweep.spec, {'kernel': 1, 'stride': 2, 'width': 3}, " \
           "seed=3, fd_probes=2)" in out
    assert "fix first: conv (backward)" in out  # the report table
    data = json.loads(out_json.read_text())
    jsonschema.validate(data, load_schema())
    assert data["seed"] == 3 and data["first_failure"] == "conv"
    assert main(["sweep", f"{user_file}:bad", "--quiet"]) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("target, message", [
    ("nowhere.py:good", "no file"),
    ("{file}:missing", "named 'missing'"),
    ("{file}:not_a_dict", "must return {'make'"),
    ("{file}:scalar_space", "'kernel' must be a list"),
    ("{file}:rejected", "the spec rejected every configuration"),
])
def test_cli_exit_2_on_a_usage_or_configuration_error(user_file: str, target: str, message: str, capsys) -> None:
    assert main(["sweep", target.format(file=user_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trigrad sweep: ") and message in err and err.count("\n") == 1


def test_importing_harness_sweep_loads_no_framework() -> None:
    code = ("import sys, harness.sweeper; "
            "print(sorted(m for m in ('torch', 'jax', 'hypothesis', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class GlobalRNGDense:
    """Weights from numpy's global RNG, as most handwritten code; a backward that clips large
    weights (a leftover of gradient clipping), so whether it fails depends on the draw."""

    def __init__(self, n_in, n_out):
        self.W = np.random.randn(n_out, n_in) * 0.5
        self.b = np.zeros(n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        self.dW, self.db = dy.T @ self.x, dy.sum(0)
        return dy @ np.clip(self.W, -1.0, 1.0)


def test_the_reproduce_line_sees_the_same_global_rng_as_the_sweep() -> None:
    def make(n_in, n_out):
        return GlobalRNGDense(n_in, n_out)

    def spec(n_in, n_out):
        return tg.Linear("fc", n_in, n_out), (2, n_in)

    state = np.random.get_state()
    found = sweep(make, spec, {"n_in": [2, 3, 4, 6, 8], "n_out": [1, 2, 3]}, seed=0, progress=False,
                  check_kwargs={"params": {"weight": "W", "bias": "b"}})
    assert np.array_equal(np.random.get_state()[1], state[1])  # the user's global state is put back
    assert not found.ok
    np.random.seed(12345)  # whatever state the user's session is in when pasting the line
    ns: dict = {}
    exec(found.imports, ns)
    ns.update(make=make, spec=spec)
    again = eval(found.reproduce, ns)  # noqa: S307 - our own line
    assert [l.verdict for l in again.layers] == [l.verdict for l in found.report.layers]
    # the same weights give the same (large) error; a different draw would be far off
    assert again.layer("fc").tensors[1].error_torch == pytest.approx(found.report.layer("fc").tensors[1].error_torch,
                                                                     rel=1e-9)
