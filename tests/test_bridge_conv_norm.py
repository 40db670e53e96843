"""to_torch / from_torch for Conv1d, ConvTranspose2d, Upsample, GroupNorm and RMSNorm (issue
17), both ways: the module computes the reference exactly, the round trip gives back the
spec and the parameters, torch.nn modules written by hand convert, F.interpolate in a traced
forward converts, and what the spec cannot express is a SpecError naming the module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harness as tg
from harness import spec as S
from reference_models import build
from reference_models.bridge_conv_norm import SamePadConv1d


def net() -> S.Sequential:
    return S.Sequential(
        [
            S.Conv1d("c1", 3, 4, 3, padding=1),
            S.Conv1d("c2", 4, 4, 4, padding="same", groups=2),
            S.Conv1d("c3", 4, 6, 3, stride=2, padding=(0, 2), dilation=2),  # asymmetric: SamePadConv1d
            S.Conv1d("c4", 6, 6, 3, stride=2, padding="same", bias=False),  # "same" at stride 2: SamePadConv1d
            S.GroupNorm("gn", 3, 6),
            S.RMSNorm("rms", 3, eps=1e-5),
        ]
    )


def net2d() -> S.Sequential:
    return S.Sequential(
        [
            S.ConvTranspose2d("up1", 2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
            S.Upsample("near", (2, 3)),
            S.GroupNorm("gn", 2, 4, affine=False),
            S.Upsample("bil", 2, "bilinear"),
            S.Upsample("bil_ac", 3, "bilinear", align_corners=True),
            S.ConvTranspose2d("up2", 4, 2, (2, 3), dilation=2, bias=False),
            S.RMSNorm("rms", (74, 76), elementwise_affine=False),  # for an input (N, 2, 3, 2)
        ]
    )


@pytest.mark.parametrize("make,shape", [(net, (2, 3, 13)), (net2d, (1, 2, 3, 2))], ids=["1d", "2d"])
def test_to_torch_computes_the_reference_and_round_trips(make, shape) -> None:
    spec = make()
    x = np.random.default_rng(0).normal(size=shape)
    params = S.init_params(spec, shape, seed=1)
    module = tg.to_torch(spec, params)
    assert list(module.state_dict()) == list(S.named_params(spec, shape))
    y = module(torch.tensor(x)).detach().numpy()
    assert np.array_equal(y, build("torch", spec).forward(params, x).output)
    back, back_params = tg.from_torch(module)
    assert back == spec
    assert set(back_params) == set(params) and all(np.array_equal(back_params[k], params[k]) for k in params)
    if make is net:
        assert type(module.c1) is nn.Conv1d and module.c2.padding == "same"
        assert isinstance(module.c3, SamePadConv1d) and isinstance(module.c4, SamePadConv1d)


def test_hand_written_torch_modules_convert() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=1),
        nn.Conv1d(4, 4, (3,), padding="same", dilation=(2,), groups=4),
        nn.GroupNorm(2, 4, eps=1e-3),
        nn.RMSNorm([7], eps=1e-6),
    )
    spec, params = tg.from_torch(model)
    assert spec.layers == (
        S.Conv1d("0", 2, 4, 3, 2, 1),
        S.Conv1d("1", 4, 4, 3, 1, "same", 2, 4),
        S.GroupNorm("2", 2, 4, 1e-3),
        S.RMSNorm("3", (7,), 1e-6),
    )
    x = np.random.default_rng(1).normal(size=(3, 2, 13))
    want = model.double()(torch.tensor(x)).detach().numpy()
    for backend in ("torch", "jax"):
        np.testing.assert_allclose(build(backend, spec).forward(params, x).output, want, rtol=1e-12, atol=1e-12)


def test_hand_written_2d_modules_convert() -> None:
    model = nn.Sequential(
        nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0), bias=False, dilation=1),
        nn.Upsample(scale_factor=2.0),
        nn.UpsamplingNearest2d(scale_factor=(1, 2)),
        nn.Upsample(scale_factor=3, mode="bilinear"),  # align_corners=None is False
        nn.UpsamplingBilinear2d(scale_factor=2),  # align_corners=True
    )
    spec, params = tg.from_torch(model)
    assert spec.layers == (
        S.ConvTranspose2d("0", 3, 4, (3, 2), (2, 1), (1, 0), (1, 0), bias=False),
        S.Upsample("1", 2),
        S.Upsample("2", (1, 2)),
        S.Upsample("3", 3, "bilinear", False),
        S.Upsample("4", 2, "bilinear", True),
    )
    x = np.random.default_rng(2).normal(size=(1, 3, 2, 3))
    want = model.double()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(build("jax", spec).forward(params, x).output, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "dtype,eps",
    [(torch.float32, float(np.finfo(np.float32).eps)), (torch.float64, float(np.finfo(np.float64).eps))],
)
def test_rms_norm_eps_none_is_the_eps_of_the_modules_dtype(dtype, eps) -> None:
    spec, _ = tg.from_torch(nn.RMSNorm(4, dtype=dtype))
    assert spec.layers[0].eps == eps
    # what the module computes on inputs of its dtype: x / sqrt(mean(x^2) + finfo(dtype).eps)
    x = torch.full((1, 4), 1e-4, dtype=dtype)
    expect = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    torch.testing.assert_close(nn.RMSNorm(4, dtype=dtype)(x), expect)
    without_weight, _ = tg.from_torch(nn.RMSNorm(4, elementwise_affine=False))  # torch's default dtype
    assert without_weight.layers[0].eps == float(torch.finfo(torch.get_default_dtype()).eps)


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.norm = nn.GroupNorm(1, 2)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        x = self.conv(x)
        x = F.interpolate(x, None, (1, 3))  # positional: size, scale_factor (nearest)
        return torch.relu(self.norm(x))


def test_interpolate_in_a_traced_forward() -> None:
    model = Decoder()
    spec, params = tg.from_torch(model)
    assert spec.layers[0] == S.Upsample("interpolate", 2, "bilinear", True)
    assert spec.layers[2] == S.Upsample("interpolate_1", (1, 3))
    x = np.random.default_rng(3).normal(size=(2, 2, 3, 2))
    want = model.double()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(build("torch", spec).forward(params, x).output, want, rtol=1e-12, atol=1e-12)


class Sized(nn.Module):
    def __init__(self, **interpolate) -> None:
        super().__init__()
        self.act, self.interpolate = nn.ReLU(), interpolate  # a child: a module without any is no model

    def forward(self, x):
        return F.interpolate(self.act(x), **self.interpolate)


@pytest.mark.parametrize(
    "module,message",
    [
        (nn.Conv1d(2, 3, 3, padding_mode="reflect"), "module '<root>' (Conv1d) uses padding_mode='reflect'"),
        (nn.Sequential(nn.Upsample(size=8)), "module '0' (Upsample) is given size=8, not a scale_factor"),
        (nn.Sequential(nn.Upsample(scale_factor=1.5)), "module '0' (Upsample) has scale_factor=1.5; only whole"),
        (nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic")), "(Upsample) uses mode='bicubic'"),
        (
            nn.Sequential(nn.Upsample(scale_factor=(2, 2, 2))),
            "has scale_factor=(2.0, 2.0, 2.0); only whole factors >= 1 over (H, W)",
        ),
        (nn.Sequential(nn.GroupNorm(2, 4, bias=False)), "module '0' (GroupNorm) has a weight but no bias"),
        (Sized(size=(4, 4)), "from_torch: F.interpolate call 'interpolate' is given size=(4, 4), not a scale_factor"),
        (Sized(scale_factor=2, mode="bicubic"), "F.interpolate call 'interpolate' uses mode='bicubic'"),
    ],
)
def test_what_the_spec_cannot_express_names_the_module(module, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        tg.from_torch(module)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
