"""Checks too large for the machine are refused up front, before any user code or reference
runs, with the estimate and what is available (a SpecError: `trigrad check` exits 2)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

import harness
from harness import resources
from harness import spec as S
from harness.adapters.layouts import Layout
from harness.adapters.network import wrap_network
from harness.check import check_layer, check_network
from harness.resources import ResourceError
from harness.target import TargetError, run

from zoo.layers import Conv, Dense, ReLU

GiB = 2 ** 30


class Counting(Conv):
    calls = 0

    def forward(self, x):
        Counting.calls += 1
        return super().forward(x)


@pytest.fixture()
def one_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "available_bytes", lambda: 2 ** 20)


def test_the_estimate_of_the_issues_conv_is_terabytes_and_states_its_factor() -> None:
    spec = S.Conv2d("conv", 512, 512, 3, padding=1)
    shape = (64, 512, 512, 512)
    activations = 2 * int(np.prod(shape))  # input and output, same size
    needed = resources.layer_estimate(spec, shape)
    assert needed >= resources.LAYER_COPIES * 8 * activations  # at least the stated copies of every activation
    assert needed / GiB > 60 * 24  # the input alone is 64 GiB in float64


def test_check_layer_refuses_before_any_user_code_runs(one_mib) -> None:
    Counting.calls = 0
    with pytest.raises(ResourceError) as e:
        check_layer(Counting(), S.Conv2d("conv", 2, 3, 3, stride=2, padding=1), input_shape=(8, 2, 32, 32))
    message = str(e.value)
    assert "checking layer 'conv' on input (8, 2, 32, 32): this check needs about" in message
    assert "the machine has 0.0 GiB available" in message and "\n" not in message
    assert Counting.calls == 0


def test_check_layer_with_x_given_is_refused_too(one_mib) -> None:
    with pytest.raises(ResourceError, match=r"on input \(4096, 6\)"):
        check_layer(Dense(), S.Linear("fc", 6, 4), x=np.ones((4096, 6)), layout=Layout(linear="in_out"))


def test_check_network_refuses_before_any_user_code_runs(one_mib) -> None:
    Counting.calls = 0
    spec = S.Sequential([S.Conv2d("conv", 2, 3, 3, stride=2, padding=1), S.ReLU("relu")])
    net = wrap_network({"conv": Counting(), "relu": ReLU()}, spec)
    with pytest.raises(ResourceError, match=r"checking the network on input \(8, 2, 32, 32\): this check needs about"):
        check_network(net, input_shape=(8, 2, 32, 32))
    assert Counting.calls == 0


def test_a_check_that_fits_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, shape = S.Linear("fc", 6, 4), (5, 6)
    monkeypatch.setattr(resources, "available_bytes", lambda: resources.layer_estimate(spec, shape))
    assert check_layer(Dense(), spec, input_shape=shape, layout=Layout(linear="in_out")).ok


def test_unknown_memory_refuses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "available_bytes", lambda: None)
    resources.require(10 ** 18, "anything")


def test_trigrad_check_reports_it_as_a_configuration_error(one_mib) -> None:
    with pytest.raises(TargetError, match="this check needs about"):
        run({"check": Conv(), "spec": S.Conv2d("conv", 2, 3, 3, stride=2, padding=1), "input_shape": (8, 2, 32, 32)})


def test_resource_error_is_public_and_a_spec_error() -> None:
    assert harness.ResourceError is ResourceError and issubclass(ResourceError, harness.SpecError)


def test_available_memory_comes_from_meminfo_else_sysconf(monkeypatch: pytest.MonkeyPatch) -> None:
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert 0 < resources.available_bytes() <= total

    def no_proc(path, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(builtins, "open", no_proc)
    assert 0 < resources.available_bytes() <= total  # os.sysconf's free pages
