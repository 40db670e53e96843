"""`trigrad infer TARGET` and `trigrad check TARGET` with no spec (issue 15), run through
harness.cli.main in this process (the user's code runs in its child): the printed Python pins
what was inferred, exit codes 0 exact / 1 ambiguous or unmatched / 2 usage, and every usage
error is one clear line. Tests that need the layer inference (harness.inference.layer) skip
until it is there."""

from __future__ import annotations

import argparse
import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pytest

import harness as tg
from harness.cli import main
from harness.cli_infer import parse_shape

needs_network = pytest.mark.skipif(
    importlib.util.find_spec("harness.inference.network") is None, reason="harness.inference.network not here"
)
needs_layer = pytest.mark.skipif(
    importlib.util.find_spec("harness.inference.layer") is None, reason="harness.inference.layer (the layer inference) not here"
)

USER = '''
import numpy as np

class ReLU:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * (self.x > 0)

class ReLUBuggyBackward(ReLU):
    def backward(self, dy):
        return dy * (dy > 0)

class Pool:
    """2x2 max pool, stride 2."""
    def forward(self, x):
        n, c, h, w = x.shape
        self.x = x
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    def backward(self, dy):  # the gradient to each window's first maximum (ties after a relu)
        n, c, h, w = self.x.shape
        win = self.x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        hit = np.eye(4)[win.argmax(axis=-1)] * dy[..., None]
        return hit.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(self.x.shape)

class Squash:
    """Nothing any spec computes: relu times 1.5."""
    def forward(self, x):
        self.x = x
        return 1.5 * np.maximum(x, 0)

    def backward(self, dy):
        return 1.5 * dy * (self.x > 0)

relu = ReLU()

def make_relu():
    return ReLU()

def relu_with_x(seed=0):
    return ReLU(), np.random.default_rng(seed).normal(size=(2, 3, 4, 5))

def pool_with_x():
    return Pool(), np.random.default_rng(1).normal(size=(2, 3, 4, 6))

def buggy_with_x():
    return ReLUBuggyBackward(), np.random.default_rng(5).normal(size=(3, 4))  # not the check seed: its g would equal x

def squash_with_x():
    return Squash(), np.random.default_rng(0).normal(size=(3, 4))

class Net:
    """relu then pool, each its own object; forward and backward chain them."""
    def __init__(self):
        self.act, self.pool = ReLU(), Pool()

    def forward(self, x):
        return self.pool.forward(self.act.forward(x))

    def backward(self, dy):
        return self.act.backward(self.pool.backward(dy))

def net_with_x():
    return Net(), np.random.default_rng(2).normal(size=(2, 3, 4, 6))

def no_input():
    return ReLU()

def number():
    return 42

NUMBER = 7
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_code.py"
    path.write_text(textwrap.dedent(USER))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_input_shape_is_parsed_or_refused_clearly():
    assert parse_shape("2,3,8,8") == (2, 3, 8, 8) and parse_shape("(4, 6)") == (4, 6)
    for bad in ("2,x", "", "2,0"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated positive sizes"):
            parse_shape(bad)


def test_bad_input_shape_is_a_usage_error(user_file: Path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["infer", f"{user_file}:relu", "--input-shape", "2,x"])
    assert e.value.code == 2 and "comma-separated positive sizes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "target,args,message",
    [
        ("{file}:number", [], "my_code.py:number gives a int, which has no forward(): name a layer or network"),
        ("{file}:NUMBER", [], "my_code.py:NUMBER gives a int, which has no forward()"),
        ("{file}:relu", [], "no example input for the ReLU: pass --input-shape N,C,H,W"),
        ("{file}:no_input", [], "no example input for the ReLU: pass --input-shape N,C,H,W"),
        (
            "{file}:relu_with_x",
            ["--input-shape", "2,3"],
            "returns its own example input (2, 3, 4, 5); drop --input-shape",
        ),
        ("{file}:nothere", [], "has nothing named 'nothere'"),
        ("{file}:relu", ["--seed", "-1", "--input-shape", "2,3"], "--seed must be a non-negative integer"),
    ],
)
def test_infer_usage_errors_are_one_line_and_exit_2(user_file: Path, capsys, target, args, message):
    code, out, err = run(capsys, "infer", target.format(file=user_file), *args)
    assert code == 2, (out, err)
    assert err.startswith("trigrad infer: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1 and out == ""


@pytest.mark.parametrize(
    "target,args,message",
    [
        ("{file}:number", [], "the target returned a int: return a wrapped layer or network"),
        ("{file}:no_input", [], "no spec for the ReLU, so it is inferred from the code and an example input"),
    ],
)
def test_check_without_spec_usage_errors(user_file: Path, capsys, target, args, message):
    code, _out, err = run(capsys, "check", target.format(file=user_file), *args)
    assert code == 2 and err.startswith("trigrad check: ") and message in err, err
    assert "Traceback" not in err


def _pinned(python: str, **bound):
    ns = dict(bound)
    exec(compile(python, "<printed>", "exec"), ns)
    return ns


@needs_layer
@pytest.mark.parametrize(
    "target,args,spec",
    [
        ("{file}:relu", ["--input-shape", "2,3,4,5"], tg.ReLU),
        ("{file}:make_relu", ["--input-shape", "3,4"], tg.ReLU),
        ("{file}:ReLU", ["--input-shape", "3,4"], tg.ReLU),  # a class is a function returning an object
        ("{file}:relu_with_x", [], tg.ReLU),
        ("{file}:pool_with_x", [], tg.MaxPool2d),
    ],
)
def test_infer_prints_pinnable_python_and_exits_0(user_file: Path, capsys, target, args, spec):
    code, out, err = run(capsys, "infer", target.format(file=user_file), *args)
    assert code == 0, (out, err)
    assert out.startswith("inferred 1 layer(s)") and "exact" in out.splitlines()[0]
    python = out[out.index("# trigrad inferred this") :]
    assert "import harness as tg" in python and "tg.wrap_layer(" in python
    import importlib.util as iu

    mod_spec = iu.spec_from_file_location("my_code_for_pin", target.format(file=user_file).rpartition(":")[0])
    mod = iu.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    ns = _pinned(
        python,
        relu=mod.relu,
        make_relu=mod.make_relu,
        ReLU=mod.ReLU,
        relu_with_x=mod.relu_with_x,
        pool_with_x=mod.pool_with_x,
    )
    assert isinstance(ns["spec"], spec)
    if spec is tg.MaxPool2d:
        assert ns["spec"] == tg.MaxPool2d(ns["spec"].name, 2)


@needs_layer
def test_infer_unmatched_exits_1_with_the_doubt(user_file: Path, capsys):
    code, out, err = run(capsys, "infer", f"{user_file}:squash_with_x")
    assert code == 1, (out, err)
    assert "unmatched" in out and "# unmatched: " in out


@needs_layer
def test_check_infers_the_spec_and_says_so(user_file: Path, capsys):
    code, out, err = run(capsys, "check", f"{user_file}:relu_with_x")
    assert code == 0, (out, err)
    assert "spec inferred from the code: exact" in out
    code, out, err = run(capsys, "check", f"{user_file}:buggy_with_x")
    assert code == 1 and "spec inferred from the code" in out and "backward" in out


def test_check_still_takes_a_spec_tuple():
    # (obj, spec) keeps its meaning: an array second means (obj, x), a spec means (check, spec)
    from harness.target import _as_dict

    relu, x = object(), np.zeros((2, 3))
    assert _as_dict((relu, x)) == {"check": relu, "x": x}
    assert _as_dict((relu, tg.ReLU("r"))) == {"check": relu, "spec": tg.ReLU("r")}


@needs_layer
@needs_network
def test_a_network_is_inferred_printed_and_checked(user_file: Path, capsys):
    code, out, err = run(capsys, "infer", f"{user_file}:net_with_x")
    assert code == 0, (out, err)
    assert out.startswith("inferred 2 layer(s)") and "net = tg.wrap_network(" in out
    assert "forward=obj.forward" in out and "obj = net_with_x()[0]" in out
    code, out, err = run(capsys, "check", f"{user_file}:net_with_x")
    assert code == 0 and "spec inferred from the code: exact" in out and "(network)" in out, (out, err)


HABITS = """
import numpy as np


class Relu:  # called as relu(x)
    def __call__(self, x):
        self.m = x > 0
        return x * self.m

    def backward(self, d):
        return d * self.m


class FC:  # its passes named fprop / bprop
    def __init__(self):
        rng = np.random.default_rng(0)
        self.weights, self.bias = rng.normal(size=(3, 4)), np.zeros(3)

    def fprop(self, x):
        self.x = x
        return x @ self.weights.T + self.bias

    def bprop(self, dy):
        self.grad_weights, self.grad_bias = dy.T @ self.x, dy.sum(0)
        return dy @ self.weights


relu = Relu()


def make():
    return FC(), np.random.default_rng(1).normal(size=(5, 4))
"""


def test_layers_called_as_layer_x_or_with_fprop_are_targets(tmp_path: Path, capsys) -> None:
    path = tmp_path / "habits.py"
    path.write_text(HABITS)
    code, out, _ = run(capsys, "infer", f"{path}:relu", "--input-shape", "2,3")
    assert code == 0 and 'forward="__call__"' in out
    code, out, _ = run(capsys, "infer", f"{path}:make")
    assert code == 0 and 'forward="fprop"' in out and 'tg.Linear("fc", 4, 3)' in out
    code, out, _ = run(capsys, "check", f"{path}:make")
    assert code == 0 and "spec inferred from the code: exact" in out
