"""Bug zoo (first batch): every mutant is detected, on the right side, with the expected
diagnosis; every correct layer passes; the user's parameters are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from harness.adapters.arrays import fingerprint
from harness.check import check_layer
from zoo.layers import CORRECT, MUTANTS


def _params(user) -> dict[str, str]:
    return {k: fingerprint(v) for k, v in vars(user).items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(name, make, spec, kwargs, shape, expected, diag) -> None:
    user = make()
    before = _params(user)  # the parameters (and buffers) it has before any call
    report = check_layer(user, spec, input_shape=shape, seed=0, **kwargs)
    assert {k: v for k, v in _params(user).items() if k in before} == before
    layer = report.layers[0]
    assert report.first_failure == layer.name
    assert layer.verdict == expected, str(report)
    if diag:
        assert any(diag in d for d in layer.diagnosis), (layer.diagnosis, str(report))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,make,spec,kwargs,shape", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_layers_pass_over_seeds(name, make, spec, kwargs, shape, dtype) -> None:
    for seed in range(20):
        try:
            user = make(seed=seed, dtype=dtype)
        except TypeError:  # parameter-free or float64-only layers
            user = make()
        report = check_layer(user, spec, input_shape=shape, seed=seed, **kwargs)
        assert report.ok, (seed, str(report))
