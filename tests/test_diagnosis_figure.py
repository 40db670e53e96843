"""Diagnoses on the bug zoo (issue 12, item 5): most mutants get a line naming their mistake
and none gets a wrong one; correct layers get no line at all.

A mutant declares the substrings its diagnosis may contain (``zoo.diagnosable``: its own
mutants and ``LAYERS_ACCEPT`` for ``zoo.layers``). Outcome of one mutant: **wrong** when any
of its diagnosis lines contains none of them (a line that contradicts the declared mistake,
or any line at all for a mutant declaring none), else **correct** when it has a line, else
**none**. The figure: ``python -m pytest -q -p no:cacheprovider -s tests/test_diagnosis_figure.py -k figure``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from conftest import seeds, slow

from harness.adapters.arrays import fingerprint
from harness.check import check_layer
from zoo import diagnosable, layers

ALL = [(m[0], m[1], m[2], m[3], m[4], m[5], diagnosable.LAYERS_ACCEPT[m[0]]) for m in layers.MUTANTS] + \
    list(diagnosable.MUTANTS)
BY_NAME = {m[0]: m for m in ALL}


def _arrays(user) -> dict[str, str]:
    return {k: fingerprint(v) for k, v in vars(user).items() if isinstance(v, np.ndarray)}


@lru_cache(maxsize=None)
def _checked(name: str) -> tuple[str, tuple[str, ...], bool]:
    """(verdict, diagnosis lines, the user's arrays untouched) of the mutant ``name`` at seed 0."""
    _, make, spec, kwargs, shape, _, _ = BY_NAME[name]
    user = make()
    before = _arrays(user)
    layer = check_layer(user, spec, input_shape=shape, seed=0, **kwargs).layers[0]
    return layer.verdict, tuple(layer.diagnosis), {k: v for k, v in _arrays(user).items() if k in before} == before


def outcome(lines: tuple[str, ...], accept: tuple[str, ...]) -> str:
    """``wrong``, ``correct`` or ``none`` (see the module's docstring)."""
    if any(not any(a in line for a in accept) for line in lines):
        return "wrong"
    return "correct" if lines else "none"


def test_outcome_rule() -> None:
    assert outcome((), ("x",)) == "none" and outcome((), ()) == "none"
    assert outcome(("a: x here",), ("x",)) == "correct"
    assert outcome(("a: x here", "b: y"), ("x",)) == "wrong"
    assert outcome(("a: x",), ()) == "wrong"


def test_every_zoo_mutant_declares_its_diagnosis() -> None:
    assert set(diagnosable.LAYERS_ACCEPT) == {m[0] for m in layers.MUTANTS}
    assert len(BY_NAME) == len(ALL)


@pytest.mark.parametrize("name", [m[0] for m in diagnosable.MUTANTS])
def test_diagnosable_mutant_is_named(name: str) -> None:
    verdict, lines, untouched = _checked(name)
    assert untouched
    assert verdict == BY_NAME[name][5], (verdict, lines)
    assert outcome(lines, BY_NAME[name][6]) == "correct", lines


@slow  # the whole zoo; each diagnosable mutant is also a test of its own below
def test_figure_at_least_80_percent_correct_and_none_wrong() -> None:
    results = {m[0]: outcome(_checked(m[0])[1], m[6]) for m in ALL}
    wrong = [n for n, r in results.items() if r == "wrong"]
    counts = {k: sum(r == k for r in results.values()) for k in ("correct", "wrong", "none")}
    print(f"\ndiagnoses on the zoo: {len(ALL)} mutants, {counts['correct']} correct "
          f"({counts['correct'] / len(ALL):.0%}), {counts['wrong']} wrong, {counts['none']} none")
    for n, r in results.items():
        if r != "correct":
            print(f"  {r}: {n}")
    assert not wrong, {n: _checked(n)[1] for n in wrong}
    assert counts["correct"] >= 0.8 * len(ALL), results


@seeds(3, quick=1)  # seed 0 in the default run, 1-2 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correct_layers_get_no_diagnosis(dtype, seeds: range) -> None:
    for name, make, spec, kwargs, shape in layers.CORRECT + diagnosable.CORRECT:
        for seed in seeds:
            try:
                user = make(seed=seed, dtype=dtype)
            except TypeError:  # parameter-free or float64-only layers
                user = make()
            layer = check_layer(user, spec, input_shape=shape, seed=seed, **kwargs).layers[0]
            assert layer.ok and layer.diagnosis == [], (name, seed, layer.diagnosis)


@pytest.mark.parametrize("name", ["dense: dW, db = in a loop over the batch", "max pool: average pooling's backward",
                                  "batch norm backward without the mean's path", "im2col: col2im with H and W swapped",
                                  "layer norm backward without the variance's path"])
def test_float32_mutants_keep_their_diagnosis(name: str) -> None:
    _, make, spec, kwargs, shape, verdict, accept = BY_NAME[name]
    try:
        user = make(dtype=np.float32)
    except TypeError:
        user = make()
    layer = check_layer(user, spec, input_shape=shape, seed=1, **kwargs).layers[0]
    assert layer.verdict == verdict and outcome(tuple(layer.diagnosis), accept) == "correct", layer.diagnosis


class PatchOrderAndBiasHalved(diagnosable.ConvIm2colPatchOrder):
    def backward(self, dy):
        dx = super().backward(dy)
        self.db = self.db / 2
        return dx


def test_layout_hint_only_when_that_layout_reproduces_every_tensor() -> None:
    spec, shape = diagnosable.CONV, diagnosable.X4
    lines = check_layer(diagnosable.ConvIm2colPatchOrder(), spec, input_shape=shape).layers[0].diagnosis
    assert any(d.startswith("layout: the forward matches the reference under Layout(kernel='OIWH')") for d in lines)
    # the same forward, so detection still finds OIWH; the bias gradient is wrong under every layout
    lines = check_layer(PatchOrderAndBiasHalved(), spec, input_shape=shape).layers[0].diagnosis
    assert not any(d.startswith("layout:") for d in lines), lines
    assert any("reads the weight's values in (O, I, kw, kh) order" in d for d in lines), lines
