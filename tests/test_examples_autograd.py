"""The bundled custom-autograd example (harness.examples.autograd_*): a torch network whose
layers are torch.autograd.Functions with handwritten backwards.

* Against an independent truth (plain torch ops differentiated by torch's own autograd,
  written here, and torch.autograd.gradcheck): every correct Function's output and gradients
  match to 1e-10 in float64, and every variant differs from the truth in the layer and on
  the side its AutogradVariant names, and nowhere else.
* trigrad on it: the correct network passes, the user's parameters untouched; every variant
  is found in its layer, with its verdict and diagnosis, at seeds 0-1 (more under -m slow).
* ``trigrad demo --example autograd``: what it prints and its exit codes.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conftest import seeds
from harness import check_network
from harness.cli import main
from harness.demo import DEFAULT_AUTOGRAD_BUG
from harness.results import Report

torch = pytest.importorskip("torch")
F = torch.nn.functional

from harness.examples import AUTOGRAD_VARIANTS, build_autograd  # noqa: E402  (imports torch)
from harness.examples.autograd_model import NAMES, SLOPE, CustomNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10


def rel_err(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-300))


# --------------------------------------------------------------------------- the truth

# each layer as plain torch ops, from its parameters by name: what torch's autograd differentiates
PLAIN = {
    "conv": lambda x, p: F.conv2d(x, p["weight"], p["bias"], padding=1),
    "act1": lambda x, p: F.leaky_relu(x, SLOPE),
    "flat": lambda x, p: x.flatten(1),
    "fc1": lambda x, p: F.linear(x, p["weight"], p["bias"]),
    "norm": lambda x, p: F.layer_norm(x, x.shape[-1:], p["weight"], p["bias"], eps=1e-5),
    "act2": lambda x, p: F.gelu(x, approximate="tanh"),
    "fc2": lambda x, p: F.linear(x, p["weight"], p["bias"]),
}


def grads(fn: Any, x: Any, params: dict[str, Any], dy: Any) -> dict[str, Any]:
    """``{"output", "input", <param>...}`` of ``fn(x, params)`` against upstream ``dy``, by
    torch.autograd on fresh leaves."""
    xl = x.detach().requires_grad_(True)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    y = fn(xl, leaves)
    got = torch.autograd.grad(y, [xl, *leaves.values()], dy)
    return {"output": y.detach(), "input": got[0], **dict(zip(leaves, got[1:]))}


def user_layer(model: CustomNet, name: str) -> Any:
    """The user's module as a function of (x, params): its own Function reached through autograd."""
    module = getattr(model, name)
    return lambda x, p: torch.func.functional_call(module, p, (x,))


@cache
def compared(variant: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per layer, per tensor: the relative error of ``variant``'s network against the truth,
    each layer fed the truth's own input to it and an upstream gradient drawn from ``seed``."""
    model, truth_model = build_autograd(variant, seed=seed).model, CustomNet(seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    x = torch.as_tensor(build_autograd(seed=seed).x)
    out: dict[str, dict[str, float]] = {}
    for name in NAMES:
        params = dict(getattr(truth_model, name).named_parameters())
        y = PLAIN[name](x, params).detach()
        dy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        want = grads(PLAIN[name], x, params, dy)
        got = grads(user_layer(model, name), x, params, dy)
        out[name] = {k: rel_err(got[k], want[k]) for k in want}
        x = y
    return out


def test_correct_functions_match_plain_torch_autograd() -> None:
    for seed in (0, 1):
        errors = compared("correct", seed)
        assert set(errors) == set(NAMES)
        assert all(e <= TOL for layer in errors.values() for e in layer.values()), errors


def test_correct_functions_pass_gradcheck() -> None:
    from harness.examples.autograd_model import (
        Conv2dFunction,
        GELUTanhFunction,
        LayerNormFunction,
        LeakyReLUFunction,
        LinearFunction,
    )

    gen = torch.Generator().manual_seed(0)

    def leaf(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(True)

    x = leaf(2, 5)
    assert torch.autograd.gradcheck(LinearFunction.apply, (x, leaf(3, 5), leaf(3)))
    assert torch.autograd.gradcheck(LeakyReLUFunction.apply, (x, SLOPE))
    assert torch.autograd.gradcheck(GELUTanhFunction.apply, (x,))
    assert torch.autograd.gradcheck(LayerNormFunction.apply, (x, leaf(5), leaf(5), 1e-5))
    assert torch.autograd.gradcheck(
        Conv2dFunction.apply, (leaf(1, 2, 3, 3), leaf(2, 2, 2, 2), leaf(2), 1)
    )  # small: fast


@pytest.mark.parametrize("name", list(AUTOGRAD_VARIANTS))
def test_variant_differs_from_the_truth_only_where_it_says(name: str) -> None:
    variant = AUTOGRAD_VARIANTS[name]
    for seed in (0, 1):
        errors = compared(name, seed)
        for layer, tensors in errors.items():
            if layer != variant.layer:
                assert all(e <= TOL for e in tensors.values()), (layer, tensors)
            elif variant.side == "forward":
                assert tensors["output"] > 1e-3, tensors
            else:
                assert tensors["output"] <= TOL and max(tensors.values()) > 1e-3, tensors


def test_gradcheck_cannot_see_the_forward_bug() -> None:
    """The unbiased-variance LayerNorm's backward is its forward's exact gradient: gradcheck
    passes it; only a reference of the layer's meaning (trigrad's) finds it."""
    from harness.examples.autograd_variants import LayerNormUnbiasedVariance

    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_(True) for s in ((2, 5), (5,), (5,))]
    assert torch.autograd.gradcheck(LayerNormUnbiasedVariance.apply, (*args, 1e-5))


# --------------------------------------------------------------------------- trigrad on it


def user_tensors(model: CustomNet) -> dict[str, tuple[bytes, bool, bool]]:
    """Each parameter's bits, requires_grad and whether it holds a .grad."""
    return {k: (v.detach().numpy().tobytes(), v.requires_grad, v.grad is not None) for k, v in model.named_parameters()}


def run(name: str, seed: int) -> tuple[Report, bool]:
    """The check of ``name`` at ``seed``, and whether the user's parameters came out untouched."""
    ex = build_autograd(name, seed=seed)
    before = user_tensors(ex.model)
    report = check_network(ex.net, x=ex.x, seed=seed)
    return report, user_tensors(ex.model) == before


@seeds(5)  # seeds 0-1 in the default run, 2-4 under -m slow (2-9 passed when written; cut for CI time)
def test_correct_example_passes(seeds: range) -> None:
    for seed in seeds:
        report, untouched = run("correct", seed)
        assert report.ok and [layer.name for layer in report.layers] == list(NAMES), (seed, str(report))
        assert untouched


@seeds(5)
def test_variants_are_found_where_they_say(seeds: range) -> None:
    for seed in seeds:
        for name, variant in AUTOGRAD_VARIANTS.items():
            report, untouched = run(name, seed)
            assert report.first_failure == variant.layer, (name, seed, str(report))
            found = report.layer(variant.layer)
            assert found.verdict == variant.side, (name, seed, str(report))
            assert all(layer.ok for layer in report.layers if layer.name != variant.layer), (name, str(report))
            assert untouched, name
            if variant.diagnosis:
                assert any(variant.diagnosis in line for line in found.diagnosis), (name, seed, found.diagnosis)


def test_unknown_variant_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown example variant 'nope'; valid: correct, fc2-weight-grad"):
        build_autograd("nope")


def test_importing_the_examples_loads_no_framework() -> None:
    code = "import harness.examples, sys; assert 'torch' not in sys.modules and 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --------------------------------------------------------------------------- the demo


def test_demo_lists_the_variants(capsys) -> None:
    assert main(["demo", "--example", "autograd", "--list", "--no-color"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "buggy variants of the example network of custom autograd Functions" in out
    assert "(trigrad demo --example autograd --bug NAME)" in out
    assert all(name in out for name in AUTOGRAD_VARIANTS)


def test_demo_finds_the_default_mistake(capsys, tmp_path: Path) -> None:
    import json

    assert main(["demo", "--example", "autograd", "--no-color", "--json", str(tmp_path / "demo.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the terminal's line wrapping undone
    assert "a torch network of custom autograd Functions" in out and "all 7 entries pass" in out
    assert "class LinearWeightGradTransposed(LinearFunction):" in out  # the mistake's code is shown
    assert "fix first: fc2 (backward)" in out and "fc2: weight: transposed" in out
    assert "the mistake is found in fc2 (backward)" in out and "trigrad demo --example autograd --list" in out
    assert json.loads((tmp_path / "demo.json").read_text())["first_failure"] == "fc2"
    assert AUTOGRAD_VARIANTS[DEFAULT_AUTOGRAD_BUG].layer == "fc2"


def test_demo_unknown_bug_is_a_usage_error(capsys) -> None:
    assert main(["demo", "--example", "autograd", "--bug", "fc1-bias-averaged"]) == 2
    err = capsys.readouterr().err
    assert "unknown bug 'fc1-bias-averaged'; trigrad demo --example autograd --list shows them" in err
