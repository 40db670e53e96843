"""Both references refuse bad input with a SpecError that names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from reference_models import build

SPEC = S.Sequential([S.Conv2d("conv", 2, 3, 3), S.Flatten("flat"), S.Linear("fc", 12, 4)])
X = np.ones((2, 2, 4, 4))


@pytest.fixture(params=["torch", "jax"])
def ref(request):
    return build(request.param, SPEC)


def params() -> dict[str, np.ndarray]:
    return S.init_params(SPEC, X.shape)


def test_wrong_input_shape(ref) -> None:
    with pytest.raises(S.SpecError, match=r"layer 'conv': in_channels=2 but the input has 3 channels"):
        ref.forward(params(), np.ones((2, 3, 4, 4)))


def test_missing_and_misshaped_parameters(ref) -> None:
    p = params()
    del p["fc.bias"]
    p["conv.weight"] = np.ones((3, 2, 2, 2))
    with pytest.raises(S.SpecError, match=r"missing \['fc.bias'\].*conv.weight: expected \(3, 2, 3, 3\), found \(3, 2, 2, 2\)"):
        ref.vjp(p, X, np.ones((2, 4)))


def test_wrong_cotangent_shape(ref) -> None:
    with pytest.raises(S.SpecError, match=r"cotangent shape \(4, 2\) must equal the network's output shape \(2, 4\)"):
        ref.vjp(params(), X, np.ones((4, 2)))


def test_wrong_target(ref) -> None:
    with pytest.raises(S.SpecError, match=r"labels must be integers in \[0, 4\)"):
        ref.loss_vjp(params(), X, S.SoftmaxCrossEntropy(), np.array([0, 4]))


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown reference backend 'tf'"):
        build("tf", SPEC)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_inputs_and_running_stats_are_not_modified(backend: str) -> None:
    spec = S.Sequential([S.Conv2d("conv", 2, 3, 3), S.BatchNorm2d("bn", 3), S.Flatten("flat")])
    p = S.init_params(spec, X.shape)
    before = {k: v.copy() for k, v in p.items()}
    x = X.copy()
    res = build(backend, spec).vjp(p, x, np.ones((2, 12)))
    assert np.array_equal(x, X) and all(np.array_equal(p[k], before[k]) for k in p)
    assert not np.array_equal(res.state["bn.running_mean"], p["bn.running_mean"])  # reported, not written


@pytest.mark.parametrize("k", [3, 1])  # 1: ascontiguousarray keeps negative strides on length-1 axes
def test_views_with_negative_strides_are_accepted(k: int) -> None:
    import numpy as np

    from harness import spec as S
    from reference_models import build

    spec = S.Sequential([S.Conv2d("c", 2, 3, k)])
    w = np.random.default_rng(0).standard_normal((3, 2, k, k))
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5))
    params = {"c.weight": w[:, :, ::-1, ::-1], "c.bias": np.zeros(3)}
    copy = {k: v.copy() for k, v in params.items()}
    for backend in ("torch", "jax"):
        ref = build(backend, spec)
        assert np.array_equal(ref.forward(params, x[:, :, ::-1]).output, ref.forward(copy, x[:, :, ::-1].copy()).output)
