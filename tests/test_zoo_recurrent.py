"""Recurrent bug zoo (issue 17): every mutant is caught with the right layer, verdict (side),
diagnosis and, for a sequence's input gradient, the first wrong timestep counting back from the
end; every correct layer (CS231n pairs, numpy-ml and GRU objects, step and sequence forms)
passes at 20 seeds in float64 and float32 with no false alarm and no inconclusive verdict; the
user's parameters are untouched."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import seeds
from test_zoo import _build

from harness.adapters.arrays import fingerprint
from harness.adapters.layer import WrappedLayer
from harness.check import check_layer
from zoo import recurrent as R


def _params(user) -> dict[str, str]:
    """Fingerprints of the user's parameters: a function pair's as given, an object's attributes and
    dicts (not its gradients, which its backward writes)."""
    if isinstance(user, WrappedLayer):
        return {k: fingerprint(v) for k, v in user._params.items()}
    found = {}
    for k, v in vars(user).items():
        if k.startswith(("d", "grad")):
            continue
        for name, a in (v.items() if isinstance(v, dict) else [(k, v)]):
            if isinstance(a, np.ndarray):
                found[f"{k}.{name}"] = fingerprint(a)
    return found


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", R.MUTANTS, ids=[m[0] for m in R.MUTANTS])
def test_mutant_is_caught(name, make, spec, kwargs, shape, expected, diag) -> None:
    user = make()
    before = _params(user)
    report = check_layer(user, spec, input_shape=shape, seed=0, **kwargs)
    assert {k: v for k, v in _params(user).items() if k in before} == before
    layer = report.layers[0]
    assert report.first_failure == layer.name == spec.name
    assert layer.verdict == expected, str(report)
    if diag:
        assert any(diag in d for d in layer.diagnosis), (layer.diagnosis, str(report))
    steps = [d for d in layer.diagnosis if d.startswith("input: wrong from timestep")]
    t = R.TIMESTEPS.get(name)
    if t is None:
        assert not steps, steps
    else:
        assert len(steps) == 1 and steps[0].startswith(f"input: wrong from timestep {t}"), layer.diagnosis


@seeds(20)  # seeds 0-1 in the default run, 2-19 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,make,spec,kwargs,shape", R.CORRECT, ids=[c[0] for c in R.CORRECT])
def test_correct_layers_pass_over_seeds(name, make, spec, kwargs, shape, dtype, seeds) -> None:
    for seed in seeds:
        user = _build(make, spec, kwargs, seed, dtype)
        assert user.dtype == np.dtype(dtype)
        report = check_layer(user, spec, input_shape=shape, seed=seed)
        assert report.ok, (seed, str(report))
        assert not report.layers[0].diagnosis, report.layers[0].diagnosis


def test_the_zoo_is_large_enough() -> None:
    assert len(R.MUTANTS) >= 8 and len({m[2].kind for m in R.MUTANTS}) >= 3
