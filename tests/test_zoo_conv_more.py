"""Bug zoo of the other convolutions and normalisations (issue 17): every mutant in
:mod:`zoo.conv_more` is caught on the right layer and side with its diagnosis, and every
correct layer passes at 20 seeds in float64 and float32 (seeds 0-1 by default, 2-19 under
``-m slow``) with no false alarm and no inconclusive verdict; the user's parameters are
untouched."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import seeds
from harness.check import check_layer
from test_zoo import _build, _params
from zoo import conv_more

CORRECT, MUTANTS = conv_more.CORRECT, conv_more.MUTANTS


def test_the_zoo_is_large_enough() -> None:
    assert len(MUTANTS) >= 6 and sum(m[6] is not None for m in MUTANTS) >= 6
    kinds = {m[2].kind for m in MUTANTS}
    assert kinds == {"Conv1d", "ConvTranspose2d", "Upsample", "GroupNorm", "RMSNorm"}


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", MUTANTS, ids=[m[0] for m in MUTANTS])
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


@seeds(20)  # seeds 0-1 in the default run, 2-19 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,make,spec,kwargs,shape", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_layers_pass_over_seeds(name, make, spec, kwargs, shape, dtype, seeds) -> None:
    for seed in seeds:
        user = _build(make, spec, kwargs, seed, dtype)
        assert user.dtype == np.dtype(dtype)
        report = check_layer(user, spec, input_shape=shape, seed=seed)
        assert report.ok, (seed, str(report))
