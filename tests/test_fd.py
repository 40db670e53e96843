"""Finite-difference probes: accuracy by dtype, Richardson's error estimate, kink flags,
step scaling, and coordinate sampling that covers channels and borders."""

from __future__ import annotations

import numpy as np
import pytest

from harness.fd import (STEP, Probe, along, directional, random_direction, step_for, stratified_coordinates,
                        unit)


def test_richardson_is_exact_for_quartics_and_reports_its_error() -> None:
    # phi(t) = t^4 - 2t^3 + 5t: phi'(0) = 5; central differences with Richardson cancel h^2
    phi = lambda t: t**4 - 2 * t**3 + 5 * t  # noqa: E731
    p = directional(phi, 0.1)
    assert abs(p.value - 5.0) < 1e-12
    assert p.error > 0  # plain central differences at h and h/2 differ by O(h^2)
    assert p.evals == 4 and not p.kink


def test_float64_smooth_function_to_1e10() -> None:
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    f = lambda z: float((np.tanh(z) * g).sum())  # noqa: E731
    grad = (1 - np.tanh(x) ** 2) * g
    for _ in range(5):
        d = random_direction(x.shape, rng)
        p = along(f, x, d)
        assert abs(p.value - (grad * d).sum()) <= 1e-10 * np.abs(grad * d).sum()
        assert p.error < 1e-6


def test_float32_code_is_probed_with_a_float32_step() -> None:
    """A float32 function probed with the float64 step is noise; with the float32 step the
    estimate holds to ~1e-4 relative, and the error estimate says how much to trust it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=50).astype(np.float32)
    f = lambda z: float(np.sum(np.sin(z.astype(np.float32)) ** 2, dtype=np.float32))  # noqa: E731
    grad = np.sin(2 * x.astype(np.float64))
    d = random_direction(x.shape, rng)
    exact = float((grad * d).sum())
    good = along(f, x, d, dtype=np.float32)
    bad = along(f, x, d, dtype=np.float64)
    assert abs(good.value - exact) < 1e-3 * np.abs(grad * d).sum()
    assert abs(bad.value - exact) > 10 * abs(good.value - exact)
    assert step_for(x, d, np.float32) / step_for(x, d, np.float64) == pytest.approx(STEP[np.dtype(np.float32)] / 1e-4)


def test_kink_crossing_is_flagged_by_the_pattern() -> None:
    x = np.array([1e-6, -2.0, 3.0])  # the first ReLU input sits next to its kink
    f = lambda z: float(np.maximum(z, 0).sum())  # noqa: E731
    mask = lambda z: (z > 0).tobytes()  # noqa: E731
    crossing = along(f, x, np.array([1.0, 0.0, 0.0]), pattern=mask)
    assert crossing.kink
    assert abs(crossing.value - 1.0) > 0.1  # and its value is indeed wrong: discard it
    safe = along(f, x, np.array([0.0, 1.0, 1.0]), pattern=mask)
    assert not safe.kink and safe.value == pytest.approx(1.0, abs=1e-10)


def test_step_scales_with_the_values_and_inputs_are_untouched() -> None:
    x = np.full(10, 1000.0)
    d = unit(x.shape, (3,))
    assert step_for(x, d) == pytest.approx(1e-4 * 1000.0)
    assert step_for(np.zeros(4), np.ones(4)) == pytest.approx(1e-4 * 1e-2)  # floor for all-zero tensors
    assert step_for(x, 2 * d) == pytest.approx(step_for(x, d) / 2)
    before_x, before_d = x.copy(), d.copy()
    along(lambda z: float(z.sum()), x, d)
    assert np.array_equal(x, before_x) and np.array_equal(d, before_d)
    with pytest.raises(ValueError, match=r"direction shape \(3,\) differs from the point's \(10,\)"):
        along(lambda z: 0.0, x, np.ones(3))


def test_stratified_coordinates_cover_channels_and_kernel_positions() -> None:
    rng = np.random.default_rng(2)
    coords = stratified_coordinates((16, 8, 3, 3), 24, rng)
    assert len(coords) == len(set(coords)) == 24
    assert {c[0] for c in coords} == set(range(16))  # every output channel
    assert {c[2] for c in coords} == {0, 1, 2} and {c[3] for c in coords} == {0, 1, 2}  # borders included
    assert sorted(stratified_coordinates((2, 3), 100, rng)) == [(i, j) for i in range(2) for j in range(3)]
    assert stratified_coordinates((), 5, rng) == [()]


def test_random_direction_is_unit_rms_and_seeded() -> None:
    a = random_direction((4, 5), np.random.default_rng(3))
    b = random_direction((4, 5), np.random.default_rng(3))
    assert np.array_equal(a, b) and np.sqrt(np.mean(a**2)) == pytest.approx(1.0)
    assert isinstance(directional(lambda t: t, 1.0), Probe)
