"""The bundled example (harness.examples): the correct NHWC/HWIO numpy LeNet matches the
PyTorch reference and passes check_network; every buggy variant is found where its
Variant says, with the verdict and diagnosis it names, and the user's arrays untouched."""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from conftest import seeds, slow

from harness import check_network
from harness.adapters.arrays import fingerprint
from harness.examples import VARIANTS, Example, Variant, build
from harness.examples.lenet import LeNet
from harness.results import Report
from reference_models import build as reference

ROOT = Path(__file__).resolve().parents[1]


def assert_close(a: np.ndarray, b: np.ndarray, what: str, tol: float = 1e-10) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
    assert err < tol, f"{what}: rel error {err:.2e}"


def user_arrays(model: LeNet) -> dict[str, str]:
    """Fingerprints of the raw numpy parameters on the user's layers."""
    return {f"{name}.{attr}": fingerprint(getattr(layer, attr))
            for name, layer in model.layers().items() for attr in ("W", "b") if hasattr(layer, attr)}


def run(ex: Example, seed: int = 0) -> Report:
    if ex.variant is not None and ex.variant.layer == "(loss)":
        return check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed)
    return check_network(ex.net, x=ex.x, seed=seed)


@lru_cache(maxsize=None)
def checked(name: str) -> tuple[Variant, Report, dict[str, str], dict[str, str]]:
    """One check of a variant at seed 0 (shared by the tests below): its report and the
    user's parameter fingerprints before and after."""
    ex = build(name)
    before = user_arrays(ex.model)
    report = run(ex)
    return ex.variant, report, before, user_arrays(ex.model)


# --------------------------------------------------------------------------- the correct example


def test_correct_example_matches_the_pytorch_reference() -> None:
    ex = build()
    assert ex.name == "correct" and ex.variant is None
    # x in the code's own NHWC, as check_network takes it; the wrapped network's forward is canonical
    assert ex.x.shape == (4, 16, 16, 3) and ex.x.dtype == np.float64 and ex.y.shape == (4,)
    assert ex.net.input_shape == ex.x.shape
    x = ex.x.transpose(0, 3, 1, 2)
    g = np.random.default_rng(7).standard_normal(ex.spec.output_shape(x.shape))
    params = ex.net.get_params()
    ref = reference("torch", ex.spec).vjp(params, x, g)
    assert_close(ex.net.forward(x), ref.output, "output")
    assert_close(ex.net.backward(g), ref.input_grad, "input grad")
    grads = ex.net.param_grads()
    assert set(grads) == set(ref.param_grads)
    for k, v in ref.param_grads.items():
        assert_close(grads[k], v, k)
    # the numpy code really is NHWC / HWIO / (in, out): the layout conversion is exercised
    assert ex.model.conv1.W.shape == (5, 5, 3, 6) and params["conv1.weight"].shape == (6, 3, 5, 5)
    assert ex.model.fc1.W.shape == (64, 32) and params["fc1.weight"].shape == (32, 64)


def test_correct_loss_matches_the_reference() -> None:
    ex = build()
    ref = reference("torch", ex.spec).loss_vjp(ex.net.get_params(), ex.x.transpose(0, 3, 1, 2), ex.loss.spec, ex.y)
    value, dscores = ex.loss.loss_and_grad(ref.output, ex.y)
    assert abs(value - ref.loss) <= 1e-12 * abs(ref.loss)
    assert_close(dscores, ref.cotangent, "dscores")


@seeds(20)  # seeds 0-1 in the default run, 2-19 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correct_example_passes_over_20_seeds(dtype, seeds: range) -> None:
    """No false alarm: fresh weights, data and probes for each seed, the loss included."""
    for seed in seeds:
        ex = build(seed=seed, dtype=dtype)
        before = user_arrays(ex.model)
        report = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=seed)
        assert report.ok, (seed, str(report))
        assert [l.name for l in report.layers] == [*ex.model.layers(), "(loss)", "(network)"]
        assert user_arrays(ex.model) == before


def test_correct_example_with_its_loss_passes() -> None:
    ex = build()
    report = check_network(ex.net, x=ex.x, y=ex.y, loss=ex.loss, seed=0)
    assert report.ok and report.layer("(loss)").ok, str(report)


def test_float32_example_passes_check_network() -> None:
    ex = build(dtype=np.float32)
    assert ex.model.conv1.W.dtype == np.float32 and ex.net.dtype == np.float32
    report = check_network(ex.net, x=ex.x, seed=0)
    assert report.ok, str(report)


# --------------------------------------------------------------------------- the variants


def test_variants_are_well_formed() -> None:
    assert len(VARIANTS) >= 7 and "correct" not in VARIANTS
    layers = {*build().model.layers(), "(network)", "(loss)"}
    for name, v in VARIANTS.items():
        assert v.name == name and name == name.lower() and " " not in name
        assert v.layer in layers and v.side in ("forward", "backward", "both") and v.summary
    # identical weights whatever the bug: only the code differs
    base = build().net.get_params()
    for name in VARIANTS:
        got = build(name).net.get_params()
        assert all(np.array_equal(got[k], base[k]) for k in base), name


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_is_found_where_it_says(name: str) -> None:
    variant, report, before, after = checked(name)
    assert report.first_failure == variant.layer, str(report)
    found = report.layer(variant.layer)
    assert found.verdict == variant.side, str(report)
    assert after == before  # the user's parameters restored bit for bit
    if variant.layer == "(network)":
        assert all(layer.ok for layer in report.layers if layer.name != "(network)"), str(report)
        assert "wiring" in found.message


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.diagnosis])
def test_variant_diagnosis(name: str) -> None:
    variant, report, _, _ = checked(name)
    lines = report.layer(variant.layer).diagnosis
    assert any(variant.diagnosis in line for line in lines), str(report)


def test_unknown_variant_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown example variant 'fc1-bias'; valid: correct, fc1-bias-averaged"):
        build("fc1-bias")


def test_importing_the_examples_loads_no_framework() -> None:
    code = "import harness.examples, sys; assert 'torch' not in sys.modules and 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@slow  # a timing target: meaningful on an idle machine, with the long tests
def test_a_lenet5_sized_network_is_checked_end_to_end_in_under_5_seconds() -> None:
    """The issue's speed target: ~61k parameters (here 73,022: 32x32x1 input, fc1 576->120),
    batch 8, every layer in isolation + the loss + the network end to end, after warm-up."""
    import time

    from harness import SoftmaxCrossEntropy, wrap_loss, wrap_network
    from harness.examples.example import LAYOUT, lenet_spec
    from harness.examples.lenet import softmax_loss

    model = LeNet(1, 32, 120, 10, seed=0)
    assert sum(np.size(v) for layer in model.layers().values() for k, v in vars(layer).items() if k in "Wb") == 73022
    x = np.random.default_rng(1).standard_normal((8, 32, 32, 1))  # NHWC, the code's (and LAYOUT's) data order
    net = wrap_network(model.layers(), lenet_spec(1, 32, 120, 10), forward=model.forward, backward=model.backward,
                       layout=LAYOUT, input_shape=x.shape)
    loss = wrap_loss(softmax_loss, SoftmaxCrossEntropy())
    check_network(net, x=x, loss=loss, seed=0)  # warm-up: framework start-up and JAX tracing
    times = []
    for seed in range(3):
        start = time.perf_counter()
        report = check_network(net, x=x, loss=loss, seed=seed)
        times.append(time.perf_counter() - start)
        assert report.ok, str(report)
    assert sorted(times)[1] < 5.0, times


def test_a_conv_forward_bug_gets_no_backward_diagnoses() -> None:
    """A true convolution with its exact gradient: the verdict is forward, and nothing says
    the backward forgot a rotation or that the weight's outer taps are a padding border."""
    _, report, _, _ = checked("conv1-true-convolution")
    diagnosis = report.layer("conv1").diagnosis
    assert not any("not rotated" in d or "border" in d for d in diagnosis), diagnosis
    assert any("flip=True" in d for d in diagnosis), diagnosis
