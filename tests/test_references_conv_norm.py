"""The references of Conv1d, ConvTranspose2d, Upsample, GroupNorm and RMSNorm (issue 17):
torch and jax agree to 1e-12 in float64 (output, input gradient, every parameter gradient,
every recorded value) across their hyperparameters, and both agree with the torch.nn
modules run directly (nn.Conv1d, nn.ConvTranspose2d, nn.Upsample, nn.GroupNorm, nn.RMSNorm).

Generated configurations: 6 in the default run, 45 under ``-m slow``; the slow run also
takes the rest of the listed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import budget, slow
from harness import spec as S
from reference_models import build
from test_agreement import MIN_BN_VALUES, assert_agree, run_both

CASES = [
    pytest.param(S.Conv1d("c", 3, 4, 3), (2, 3, 9), marks=slow),
    (S.Conv1d("c", 4, 6, 3, stride=2, padding=(1, 2), dilation=2, groups=2), (2, 4, 11)),
    (S.Conv1d("c", 3, 5, 4, padding="same", bias=False), (3, 3, 8)),
    (S.Conv1d("c", 2, 2, 3, stride=3, padding="same"), (1, 2, 10)),
    pytest.param(S.Conv1d("c", 6, 3, 1, groups=3), (2, 6, 5), marks=slow),
    pytest.param(S.ConvTranspose2d("t", 2, 3, 3), (2, 2, 4, 5), marks=slow),
    pytest.param(S.ConvTranspose2d("t", 2, 3, 3, stride=2, padding=1, output_padding=1), (2, 2, 4, 5), marks=slow),
    (
        S.ConvTranspose2d("t", 4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2),
        (2, 4, 5, 4),
    ),
    (S.ConvTranspose2d("t", 2, 3, 3, dilation=2, output_padding=1, bias=False), (2, 2, 4, 3)),
    (S.ConvTranspose2d("t", 2, 3, 3, padding=3), (2, 2, 7, 8)),  # padding beyond the kernel: a crop
    (S.ConvTranspose2d("t", 3, 6, 4, stride=2, padding=1, groups=3), (1, 3, 3, 3)),
    pytest.param(S.Upsample("u", 2), (2, 3, 4, 5), marks=slow),
    pytest.param(S.Upsample("u", (3, 2)), (2, 2, 3, 5), marks=slow),
    pytest.param(S.Upsample("u", 2, "bilinear"), (2, 3, 4, 5), marks=slow),
    (S.Upsample("u", 3, "bilinear"), (2, 2, 5, 3)),
    (S.Upsample("u", (2, 3), "bilinear", align_corners=True), (2, 3, 4, 5)),
    (S.Upsample("u", 3, "bilinear", align_corners=True), (1, 2, 1, 3)),  # a one-pixel input axis
    (S.GroupNorm("g", 3, 6), (2, 6, 4, 3)),
    (S.GroupNorm("g", 2, 6, eps=1e-3, affine=False), (2, 6, 5)),
    (S.GroupNorm("g", 1, 4), (3, 4, 3, 3)),  # one group: a layer norm over (C, H, W)
    pytest.param(S.GroupNorm("g", 4, 4), (2, 4, 3, 3), marks=slow),  # a group per channel: instance norm
    pytest.param(S.GroupNorm("g", 2, 8), (4, 8), marks=slow),  # no spatial axes
    pytest.param(S.RMSNorm("r", 5), (3, 5), marks=slow),
    (S.RMSNorm("r", (3, 4), eps=1e-8), (2, 5, 3, 4)),
    pytest.param(S.RMSNorm("r", 6, elementwise_affine=False), (2, 4, 6), marks=slow),
]


def _ids(cases: list) -> list[str]:
    return [f"{(c.values if hasattr(c, 'values') else c)[0].kind}-{i}" for i, c in enumerate(cases)]


@pytest.mark.parametrize("layer,shape", CASES, ids=_ids(CASES))
def test_torch_and_jax_agree(layer: S.Layer, shape: tuple[int, ...]) -> None:
    spec = S.Sequential([layer])
    assert_agree(*run_both(spec, shape, seed=3), spec, shape)


def test_in_a_network_with_a_loss() -> None:
    spec = S.Sequential(
        [
            S.Conv1d("c1", 2, 4, 3, padding=1),
            S.GroupNorm("gn", 2, 4),
            S.ReLU("r"),
            S.RMSNorm("rms", 9),
            S.Flatten("f"),
            S.Linear("fc", 36, 3),
        ]
    )
    shape = (4, 2, 9)
    assert_agree(*run_both(spec, shape, seed=5, loss=S.SoftmaxCrossEntropy()), spec, shape)
    up = S.Sequential(
        [S.ConvTranspose2d("t", 2, 3, 2, stride=2), S.Upsample("u", 2, "bilinear"), S.GroupNorm("g", 3, 3)]
    )
    assert_agree(*run_both(up, (2, 2, 3, 2), seed=6, loss=S.MSE()), up, (2, 2, 3, 2))


# ------------------------------------------------------------------ generated configurations

ints = st.integers


@st.composite
def conv1d_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(ints(1, 3)), groups * draw(ints(1, 3))
    k, s, d = draw(ints(1, 5)), draw(ints(1, 3)), draw(ints(1, 3))
    padding = draw(st.one_of(ints(0, 3), st.tuples(ints(0, 3), ints(0, 3)), st.sampled_from(["same", "valid"])))
    conv = S.Conv1d("conv", cin, cout, k, s, padding, d, groups, draw(st.booleans()))
    lo = 1 if conv.padding == "same" else max(1, d * (k - 1) + 1 - sum(conv.pads(1)))
    return conv, (draw(ints(1, 3)), cin, lo + draw(ints(0, 7)))


@st.composite
def transpose_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(ints(1, 3)), groups * draw(ints(1, 3))
    k = (draw(ints(1, 4)), draw(ints(1, 4)))
    s, d = (draw(ints(1, 3)), draw(ints(1, 3))), (draw(ints(1, 2)), draw(ints(1, 2)))
    op = tuple(draw(ints(0, max(a, b) - 1)) for a, b in zip(s, d))
    p = (draw(ints(0, 2)), draw(ints(0, 2)))
    layer = S.ConvTranspose2d("t", cin, cout, k, s, p, op, groups, d, draw(st.booleans()))
    hw = tuple(1 + 2 * q + draw(ints(0, 4)) for q in p)  # room for the crop
    return layer, (draw(ints(1, 3)), cin, *hw)


@st.composite
def resample_norm_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    n, c, h, w = draw(ints(1, 3)), draw(ints(1, 4)), draw(ints(1, 6)), draw(ints(1, 6))
    kind = draw(st.sampled_from(["nearest", "bilinear", "group", "rms"]))
    if kind in ("nearest", "bilinear"):
        factor = draw(st.one_of(ints(1, 3), st.tuples(ints(1, 3), ints(1, 3))))
        aligned = kind == "bilinear" and draw(st.booleans())
        return S.Upsample("u", factor, kind, aligned), (n, c, h, w)
    if kind == "group":
        groups = draw(ints(1, 3))
        per = draw(ints(1, 3))
        spatial = -(-MIN_BN_VALUES // per)  # >= MIN_BN_VALUES values per group (see test_agreement)
        return S.GroupNorm("g", groups, groups * per, draw(st.sampled_from([1e-5, 1e-3])), draw(st.booleans())), (
            n,
            groups * per,
            spatial,
            draw(ints(1, 3)),
        )
    w = max(w, MIN_BN_VALUES)  # over 1-2 values an RMS norm is ~sign(x): its gradient is cancellation residue
    trailing = draw(st.sampled_from([(w,), (h, w)]))
    return S.RMSNorm("r", trailing, draw(st.sampled_from([1e-6, 1e-8])), draw(st.booleans())), (n, c, h, w)


@budget(2, 15)  # 45 generated configurations under -m slow: CI's 15-minute budget
@pytest.mark.parametrize(
    "case", [conv1d_case, transpose_case, resample_norm_case], ids=["conv1d", "transpose", "other"]
)
def test_generated_configurations_agree(case, examples: int) -> None:
    @settings(max_examples=examples)
    @given(case(), ints(0, 2**16))
    def check(layer_shape, seed) -> None:
        layer, shape = layer_shape
        spec = S.Sequential([layer])
        assert_agree(*run_both(spec, shape, seed), spec, shape)

    check()


# ------------------------------------------------------------------ the torch.nn modules themselves


def _module(layer: S.Layer) -> nn.Module:
    """The torch.nn module a user would write for ``layer``, built from its own arguments."""
    if isinstance(layer, S.Conv1d):
        lo, hi = layer.pads(10) if layer.padding != "same" else (0, 0)
        assert lo == hi, "nn.Conv1d pads both ends alike"
        pad = "same" if layer.padding == "same" else lo
        return nn.Conv1d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            pad,
            layer.dilation,
            layer.groups,
            layer.bias,
        )
    if isinstance(layer, S.ConvTranspose2d):
        return nn.ConvTranspose2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.output_padding,
            layer.groups,
            layer.bias,
            layer.dilation,
        )
    if isinstance(layer, S.Upsample):
        aligned = layer.align_corners if layer.mode == "bilinear" else None
        return nn.Upsample(
            scale_factor=tuple(float(s) for s in layer.scale_factor), mode=layer.mode, align_corners=aligned
        )
    if isinstance(layer, S.GroupNorm):
        return nn.GroupNorm(layer.num_groups, layer.num_channels, layer.eps, layer.affine)
    assert isinstance(layer, S.RMSNorm)
    return nn.RMSNorm(layer.normalized_shape, layer.eps, layer.elementwise_affine)


MODULE_CASES = [
    (S.Conv1d("c", 4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (2, 4, 11)),
    (S.Conv1d("c", 3, 5, 4, padding="same"), (2, 3, 9)),  # PyTorch's own "same": stride 1, odd pad on the right
    (
        S.ConvTranspose2d("t", 4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2),
        (2, 4, 5, 4),
    ),
    (S.ConvTranspose2d("t", 2, 3, 3, stride=2, padding=2, dilation=2, output_padding=1), (2, 2, 5, 6)),
    (S.Upsample("u", (2, 3)), (2, 3, 4, 5)),
    pytest.param(S.Upsample("u", 3), (1, 2, 7, 2), marks=slow),
    (S.Upsample("u", 2, "bilinear"), (2, 3, 4, 5)),
    pytest.param(S.Upsample("u", (3, 2), "bilinear"), (2, 3, 5, 4), marks=slow),
    (S.Upsample("u", 2, "bilinear", align_corners=True), (2, 3, 4, 5)),
    (S.Upsample("u", (3, 2), "bilinear", align_corners=True), (2, 3, 5, 1)),
    (S.GroupNorm("g", 3, 6, eps=1e-3), (2, 6, 4, 3)),
    pytest.param(S.GroupNorm("g", 2, 4, affine=False), (2, 4, 7), marks=slow),
    (S.RMSNorm("r", (3, 4), eps=1e-8), (2, 5, 3, 4)),
    (S.RMSNorm("r", 6, elementwise_affine=False), (2, 4, 6)),
]


@pytest.mark.parametrize("layer,shape", MODULE_CASES, ids=_ids(MODULE_CASES))
def test_both_references_agree_with_the_torch_module(layer: S.Layer, shape: tuple[int, ...]) -> None:
    spec = S.Sequential([layer], name="")
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape)
    g = rng.normal(size=spec.output_shape(shape))
    params = S.init_params(spec, shape, seed=12)
    module = _module(layer).double()
    with torch.no_grad():
        for local, tensor in module.named_parameters():
            tensor.copy_(torch.as_tensor(params[f"{layer.name}.{local}"]))
    tx = torch.tensor(x, requires_grad=True)
    y = module(tx)
    (y * torch.as_tensor(g)).sum().backward()
    truth = {"output": y.detach().numpy(), "input": tx.grad.numpy()}
    truth.update({f"{layer.name}.{k}": v.grad.numpy() for k, v in module.named_parameters()})
    assert set(truth) - {"output", "input"} == set(params)
    for backend in ("torch", "jax"):
        res = build(backend, spec).vjp(params, x, g)
        got = {"output": res.output, "input": res.input_grad, **res.param_grads}
        for name, want in truth.items():
            np.testing.assert_allclose(
                got[name], want, rtol=1e-12, atol=1e-12 * np.abs(want).max(), err_msg=f"{backend} {name}"
            )
