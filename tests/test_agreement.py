"""torch and jax references agree to <= 1e-12 relative error in float64 — forward, input
gradient, every parameter gradient, every layer's input/output/upstream gradient and the
batch-norm state — over generated layer configurations and whole known architectures, and
both agree with the spec's shape inference.

The "ci" hypothesis profile runs 120 + 50 + 60 + 40 = 270 generated configurations under
`pytest -m slow`, and 8 + 6 + 10 + 2 of them in the default run; the large architectures
(VGG with batch norm, both ResNet-18s) and torch.compile are slow too.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from conftest import budget, slow
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import spec as S
from harness.compare import rel_error
from reference_models import architectures as A
from reference_models import build

TOL = 1e-12
# A gradient that is truly zero (a conv bias feeding batch norm) comes out as rounding
# noise of the terms summed into it, and batch norm's backward sums terms far larger than
# its result. Parameter gradients are therefore judged against the larger of their own norm
# and FLOOR times the largest L1 norm of any upstream gradient in the pass (the size of the
# terms backprop sums): an absolute error of ~1e-14 of the problem's scale, never noise
# measured against noise.
FLOOR = 1e-2
# Training batch norm (or layer norm) over 2-3 values outputs nearly +-1 whatever its input,
# so the input gradient below it is pure cancellation residue (~1e-4 of its terms): correct
# in both references, but only to ~1e-11 relative. Such cases test conditioning, not
# agreement, so generated ones normalise over at least this many values.
MIN_BN_VALUES = 8


def _pairs(a: Any, b: Any):
    yield "output", a.output, b.output
    if a.input_grad is not None:
        yield "input_grad", a.input_grad, b.input_grad
        yield "cotangent", a.cotangent, b.cotangent
    for field in ("param_grads", "output_grads", "inputs", "outputs", "state"):
        da, db = getattr(a, field), getattr(b, field)
        assert list(da) == list(db), f"{field}: keys differ {list(da)} vs {list(db)}"
        for k in da:
            yield f"{field}[{k}]", da[k], db[k]


def assert_agree(a, b, spec: S.Layer, x_shape: tuple[int, ...], tol: float = TOL) -> None:
    """Every field of two Results agrees; every recorded shape matches the spec's."""
    shapes = S.layer_shapes(spec, x_shape)
    assert a.output.shape == b.output.shape == spec.output_shape(x_shape)
    for r in (a, b):
        assert {k: (v.shape, r.outputs[k].shape) for k, v in r.inputs.items()} == shapes
        if r.input_grad is not None:
            assert list(r.output_grads) == list(shapes)
            assert set(r.param_grads) == {k for k, i in S.named_params(spec, x_shape).items() if i.trainable}
    scale = FLOOR * max((float(np.abs(g).sum()) for g in b.output_grads.values()), default=0.0)
    worst = []
    for name, u, v in _pairs(a, b):
        assert u.shape == v.shape, f"{name}: shape {u.shape} vs {v.shape}"
        denom = float(np.linalg.norm(v))
        if name.startswith("param_grads["):
            denom = max(denom, scale)
        diff = float(np.linalg.norm(u - v))
        err = diff / denom if denom > 0 else diff
        worst.append((err, name, rel_error(u, v)))
    err, name, detail = max(worst, key=lambda t: t[0])
    assert err <= tol, f"torch vs jax disagree on {name}: {err:.3e} > {tol:g}; {detail}"


def run_both(spec: S.Layer, x_shape: tuple[int, ...], seed: int, loss: S.Loss | None = None, jit: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape)
    params = S.init_params(spec, x_shape, seed=seed + 1)
    torch_ref, jax_ref = build("torch", spec), build("jax", spec, jit=jit)
    if loss is None:
        g = rng.normal(size=spec.output_shape(x_shape))
        return torch_ref.vjp(params, x, g), jax_ref.vjp(params, x, g)
    out_shape = spec.output_shape(x_shape)
    if isinstance(loss, S.SoftmaxCrossEntropy):
        target = rng.integers(0, out_shape[1], size=out_shape[0])
    else:
        target = rng.normal(size=out_shape)
    return torch_ref.loss_vjp(params, x, loss, target), jax_ref.loss_vjp(params, x, loss, target)


# ------------------------------------------------------------------ strategies

ints = st.integers
pair = lambda lo, hi: st.one_of(ints(lo, hi), st.tuples(ints(lo, hi), ints(lo, hi)))  # noqa: E731


@st.composite
def conv_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(ints(1, 3)), groups * draw(ints(1, 3))
    k = draw(pair(1, 5))
    stride, dilation = draw(pair(1, 3)), draw(pair(1, 3))
    padding = draw(
        st.one_of(
            pair(0, 3),
            st.tuples(st.tuples(ints(0, 3), ints(0, 3)), st.tuples(ints(0, 3), ints(0, 3))),
            st.sampled_from(["same", "valid"]),
        )
    )
    conv = S.Conv2d("conv", cin, cout, k, stride, padding, dilation, groups, draw(st.booleans()))
    if conv.padding == "same":
        lo_h = lo_w = 1
    else:
        pads = conv.pads((1, 1))
        lo_h, lo_w = (max(1, conv.dilation[i] * (conv.kernel_size[i] - 1) + 1 - sum(pads[i])) for i in (0, 1))
    h, w = lo_h + draw(ints(0, 6)), lo_w + draw(ints(0, 6))  # odd and even sizes alike
    return conv, (draw(ints(1, 4)), cin, h, w)


@st.composite
def pool_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    k = draw(pair(1, 4))
    kh, kw = (k, k) if isinstance(k, int) else k
    padding = draw(st.tuples(ints(0, kh // 2), ints(0, kw // 2)))
    stride = draw(st.one_of(st.none(), pair(1, 3)))
    if draw(st.booleans()):
        dil = draw(pair(1, 2))
        layer: S.Layer = S.MaxPool2d("pool", k, stride, padding, dil)
        dh, dw = (dil, dil) if isinstance(dil, int) else dil
    else:
        layer = S.AvgPool2d("pool", k, stride, padding, draw(st.booleans()))
        dh = dw = 1
    h = max(1, dh * (kh - 1) + 1 - 2 * padding[0]) + draw(ints(0, 5))
    w = max(1, dw * (kw - 1) + 1 - 2 * padding[1]) + draw(ints(0, 5))
    shape = (draw(ints(1, 4)), draw(ints(1, 3)), h, w)
    try:
        layer.output_shape(shape)
    except S.SpecError:  # a dilated window wholly in the padding: the spec refuses it
        assume(False)
    return layer, shape


@st.composite
def other_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    n, c = draw(ints(1, 4)), draw(ints(1, 4))
    hw = (draw(ints(1, 5)), draw(ints(1, 5)))
    kind = draw(
        st.sampled_from(
            [
                "relu",
                "leaky",
                "elu",
                "sigmoid",
                "tanh",
                "gelu",
                "softmax",
                "flatten",
                "linear",
                "bn2d",
                "bn-feature",
                "bn1d",
                "layernorm",
                "dropout",
                "gap",
            ]
        )
    )
    shape4 = (n, c, *hw)
    if kind == "relu":
        return S.ReLU("a"), shape4
    if kind == "leaky":
        return S.LeakyReLU("a", draw(st.floats(0.0, 0.5))), shape4
    if kind == "elu":
        return S.ELU("a", draw(st.floats(0.1, 2.0))), shape4
    if kind == "sigmoid":
        return S.Sigmoid("a"), shape4
    if kind == "tanh":
        return S.Tanh("a"), shape4
    if kind == "gelu":
        return S.GELU("a", draw(st.sampled_from(["none", "tanh"]))), shape4
    if kind == "softmax":
        return S.Softmax("a", draw(ints(-4, 3))), shape4
    if kind == "flatten":
        return S.Flatten("a"), shape4
    if kind == "linear":
        fin = draw(ints(1, 6))
        lead = draw(st.sampled_from([(n,), (n, c)]))
        return S.Linear("a", fin, draw(ints(1, 6)), draw(st.booleans())), (*lead, fin)
    # training batch norm gets >= 8 values per channel: see MIN_BN_VALUES
    if kind == "bn2d":
        n = max(n, -(-MIN_BN_VALUES // (hw[0] * hw[1])))
        return S.BatchNorm2d(
            "a", c, draw(st.sampled_from([1e-5, 1e-3])), 0.1, draw(st.booleans()), draw(st.booleans())
        ), (n, c, *hw)
    if kind == "bn-feature":  # statistics per (c, h, w) over the batch: N >= 8 for the same reason
        return S.BatchNorm2d("a", c, 1e-5, 0.1, draw(st.booleans()), draw(st.booleans()), "feature"), (
            MIN_BN_VALUES + n,
            c,
            *hw,
        )
    if kind == "bn1d":
        shape = draw(st.sampled_from([(MIN_BN_VALUES + n, c), (n, c, -(-MIN_BN_VALUES // n))]))
        return S.BatchNorm1d("a", c, 1e-5, draw(st.floats(0.05, 0.5)), True, draw(st.booleans())), shape
    if kind == "layernorm":  # normalised over >= MIN_BN_VALUES values, for the same reason
        lead = draw(st.sampled_from([(), (hw[0],), (c, hw[0])]))
        w = max(hw[1], -(-MIN_BN_VALUES // int(np.prod(lead, dtype=int))))
        return S.LayerNorm("a", (*lead, w), 1e-5, draw(st.booleans())), (n, c, hw[0], w)
    if kind == "dropout":
        return S.Dropout("a", draw(st.floats(0.0, 0.9)), draw(st.booleans())), shape4
    return S.GlobalAvgPool2d("a", draw(st.booleans())), shape4


@st.composite
def net_case(draw) -> tuple[S.Layer, tuple[int, ...]]:
    """Small CNNs: conv stages (optionally batch norm, a residual block, pooling), then
    flatten and a linear head, as the harness will meet them in users' networks."""
    n, c = draw(ints(1, 3)), draw(ints(1, 3))
    size = draw(ints(6, 11))
    act = lambda name: draw(st.sampled_from([S.ReLU(name), S.Tanh(name), S.ELU(name), S.GELU(name, "tanh")]))  # noqa: E731
    layers: list[S.Layer] = []
    ch, hw = c, size
    for i in range(draw(ints(1, 2))):
        out = draw(ints(2, 4))
        stride = draw(ints(1, 2))
        conv = S.Conv2d(f"conv{i}", ch, out, 3, stride, draw(st.sampled_from([1, "same", ((0, 1), (1, 0))])))
        layers.append(conv)
        ch, hw = out, conv.output_shape((n, ch, hw, hw))[2]
        if draw(st.booleans()):
            layers.append(S.BatchNorm2d(f"bn{i}", ch))
        layers.append(act(f"act{i}"))
        if draw(st.booleans()):
            sc = S.Conv2d("sc", ch, ch, 1) if draw(st.booleans()) else None
            layers.append(
                S.Residual(f"res{i}", [S.Conv2d("conv", ch, ch, 3, padding=1), act("act")], sc, [act("post")])
            )
        if hw >= 4 and draw(st.booleans()):
            layers.append(draw(st.sampled_from([S.MaxPool2d(f"pool{i}", 2), S.AvgPool2d(f"pool{i}", 3, 2, 1)])))
            hw = layers[-1].output_shape((n, ch, hw, hw))[2]
    layers.append(S.Flatten("flatten"))
    layers.append(S.Linear("fc", ch * hw * hw, draw(ints(2, 5))))
    if draw(st.booleans()):
        layers.append(S.Softmax("softmax"))
    spec = S.Sequential(layers)
    try:
        shapes = S.layer_shapes(spec, (n, c, size, size))
    except S.SpecError:  # e.g. training batch norm on one value per channel
        assume(False)
    for path, layer in S.walk(spec):
        if isinstance(layer, S.BatchNorm2d):
            n_, c_, h_, w_ = shapes[path][0]
            assume(n_ * h_ * w_ >= MIN_BN_VALUES)
    return spec, (n, c, size, size)


# ------------------------------------------------------------------ property tests


def _property(case, examples: int) -> None:
    """Run the agreement check over ``examples`` generated (layer, input shape) cases, then
    drop JAX's compiled kernels: JAX keeps one per operation and shape, ~20 MB per case here,
    and the full counts would keep ~4 GB for the rest of the run."""

    @settings(max_examples=examples)
    @given(case, ints(0, 2**16))
    def agree(case, seed: int) -> None:
        spec, shape = case
        a, b = run_both(spec, shape, seed)
        assert_agree(a, b, spec, shape)

    try:
        agree()
    finally:
        jax.clear_caches()


@budget(8, 120)
def test_conv_agrees(examples: int) -> None:
    _property(conv_case(), examples)


@budget(6, 50)
def test_pool_agrees(examples: int) -> None:
    _property(pool_case(), examples)


@budget(10, 60)
def test_other_layers_agree(examples: int) -> None:
    _property(other_case(), examples)


@budget(2, 40)
def test_small_networks_agree(examples: int) -> None:
    _property(net_case(), examples)


# ------------------------------------------------------------------ losses and jit

LOSSES = [S.SoftmaxCrossEntropy("mean"), S.SoftmaxCrossEntropy("sum"), S.MSE("mean"), S.MSE("sum"), S.Projection()]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: f"{l.kind}-{getattr(l, 'reduction', '')}")
def test_losses_agree(loss: S.Loss) -> None:
    spec = A.lenet5(activation="relu", pool="max")
    a, b = run_both(spec, (3, 1, 32, 32), seed=7, loss=loss)
    assert abs(a.loss - b.loss) <= TOL * abs(b.loss)
    assert_agree(a, b, spec, (3, 1, 32, 32))


def test_probability_targets_agree() -> None:
    spec = S.Sequential([S.Linear("fc", 5, 4)])
    rng = np.random.default_rng(0)
    x, probs = rng.normal(size=(3, 5)), rng.dirichlet(np.ones(4), size=3)
    params = S.init_params(spec, x.shape)
    a = build("torch", spec).loss_vjp(params, x, S.SoftmaxCrossEntropy(), probs)
    b = build("jax", spec).loss_vjp(params, x, S.SoftmaxCrossEntropy(), probs)
    assert abs(a.loss - b.loss) <= TOL * abs(b.loss)
    assert_agree(a, b, spec, x.shape)


def test_jitted_jax_agrees_with_torch() -> None:
    spec = A.small_vgg(widths=(4, 8), batch_norm=True, input_size=16)
    a, b = run_both(spec, (2, 3, 16, 16), seed=3, jit=True)
    assert_agree(a, b, spec, (2, 3, 16, 16))


# ------------------------------------------------------------------ known architectures

ARCHS = [
    ("lenet5-tanh-avg", A.lenet5(), (4, 1, 32, 32)),
    ("lenet5-relu-max", A.lenet5(activation="relu", pool="max"), (4, 1, 32, 32)),
    pytest.param("small_vgg-bn", A.small_vgg(batch_norm=True), (2, 3, 32, 32), marks=slow),
    pytest.param("resnet18-cifar", A.resnet18(num_classes=10, stem="cifar"), (2, 3, 32, 32), marks=slow),
    pytest.param("resnet18-imagenet-stem", A.resnet18(stem="imagenet"), (2, 3, 64, 64), marks=slow),
]


@pytest.mark.parametrize(
    "name,spec,shape",
    ARCHS,
    ids=["lenet5-tanh-avg", "lenet5-relu-max", "small_vgg-bn", "resnet18-cifar", "resnet18-imagenet-stem"],
)
def test_known_architectures_agree(name: str, spec: S.Layer, shape) -> None:
    a, b = run_both(spec, shape, seed=11)
    assert_agree(a, b, spec, shape)


# ------------------------------------------------------------------ conventions


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_conv_is_cross_correlation(backend: str) -> None:
    """A delta input reproduces the kernel point-reflected (cross-correlation); a true
    convolution would reproduce it unflipped. Checked against a direct loop too."""
    w = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    spec = S.Sequential([S.Conv2d("c", 1, 1, 3, padding=1, bias=False)])
    y = build(backend, spec).forward({"c.weight": w}, x).output[0, 0]
    np.testing.assert_array_equal(y[1:4, 1:4], w[0, 0, ::-1, ::-1])
    # and the definition y[i, j] = sum_uv x[i+u-1, j+v-1] w[u, v] on random data
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(1, 1, 5, 6)), rng.normal(size=(1, 1, 3, 3))
    xp = np.pad(x[0, 0], 1)
    loop = np.array([[np.sum(xp[i : i + 3, j : j + 3] * w[0, 0]) for j in range(6)] for i in range(5)])
    np.testing.assert_allclose(build(backend, spec).forward({"c.weight": w}, x).output[0, 0], loop, rtol=1e-13)


def test_agreement_check_catches_a_wrong_reference() -> None:
    """The comparison itself can fail: a perturbed gradient is reported with its name."""
    spec = S.Sequential([S.Conv2d("c", 2, 3, 3), S.ReLU("r")])
    a, b = run_both(spec, (2, 2, 6, 6), seed=0)
    a.param_grads["c.weight"] = a.param_grads["c.weight"] * (1 + 1e-9)
    with pytest.raises(AssertionError, match=r"param_grads\[c.weight\]"):
        assert_agree(a, b, spec, (2, 2, 6, 6))


@pytest.mark.parametrize(
    "layer",
    [S.ReLU("a"), S.LeakyReLU("a", 0.2), S.ELU("a", 0.7), S.GELU("a"), S.MaxPool2d("a", 2, 1)],
    ids=lambda l: l.kind,
)
def test_conventions_at_exact_kinks_agree(layer: S.Layer) -> None:
    """At an exact 0 (after a ReLU, or a sum of two zeros) and at max-pool ties, both
    references use PyTorch's one-sided conventions (ELU's slope at 0 is alpha, not the 1/2
    that jnp.minimum's tie rule would give)."""
    spec = S.Sequential([layer])
    x = np.array([[[[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [2.0, 0.0, 0.0]]]])
    g = np.random.default_rng(0).normal(size=spec.output_shape(x.shape))
    a, b = build("torch", spec).vjp({}, x, g), build("jax", spec).vjp({}, x, g)
    np.testing.assert_allclose(a.output, b.output, rtol=1e-15, atol=0)
    np.testing.assert_allclose(a.input_grad, b.input_grad, rtol=1e-15, atol=0)


@slow
def test_compiled_torch_matches_eager_torch() -> None:
    """torch.compile (jit=True) gives the same Result as eager, per-layer gradients included
    (they come from the eps inputs, which compiled graphs keep)."""
    spec = S.Sequential(
        [S.Conv2d("c", 2, 3, 3, padding=1), S.BatchNorm2d("bn", 3), S.ReLU("r"), S.Flatten("f"), S.Linear("fc", 48, 2)]
    )
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(2, 2))
    params = S.init_params(spec, x.shape)
    eager = build("torch", spec).vjp(params, x, g)
    compiled = build("torch", spec, jit=True).vjp(params, x, g)
    for name, u, v in _pairs(compiled, eager):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14, err_msg=name)


def test_a_padded_strided_conv_over_a_one_pixel_wide_input_does_not_abort_xla() -> None:
    """XLA's CPU compiler aborted the whole process (a failed check in its algebraic simplifier)
    on this conv's weight-gradient program while its padding went through the conv: found by
    hypothesis at 80 examples of test_conv_agrees. The JAX reference pads explicitly now."""
    spec, shape = S.Sequential([S.Conv2d("conv", 3, 3, 2, stride=2, padding=1, bias=False)]), (2, 3, 4, 1)
    assert_agree(*run_both(spec, shape, 4), spec, shape)
