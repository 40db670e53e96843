"""Smoke tests of the JAX reference against numpy loops, closed forms and finite differences.

Deliberately no torch here: agreement with the torch reference is tested elsewhere, so
these checks stay independent of it.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from harness.spec import (
    ELU, GELU, MSE, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
    GlobalAvgPool2d, LayerNorm, LeakyReLU, Linear, MaxPool2d, Projection, ReLU, Residual,
    Sequential, Sigmoid, Softmax, SoftmaxCrossEntropy, Tanh, init_params, named_params, walk,
)
from reference_models.jax_ref import JaxReference

RNG = np.random.default_rng(1234)


# --------------------------------------------------------------------------- numpy oracles


def np_conv2d(x, w, b, stride, pads, dilation, groups):
    """Direct-loop cross-correlation (no kernel flip), NCHW / OIHW."""
    (t, bo), (l, r) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    n, cin, h, wd = xp.shape
    cout, cpg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    opg = cout // groups
    y = np.zeros((n, cout, oh, ow))
    for o in range(cout):
        g = o // opg
        for i in range(oh):
            for j in range(ow):
                for ki in range(kh):
                    for kj in range(kw):
                        patch = xp[:, g * cpg:(g + 1) * cpg, i * sh + ki * dh, j * sw + kj * dw]
                        y[:, o, i, j] += patch @ w[o, :, ki, kj]
    return y + (b[None, :, None, None] if b is not None else 0)


def np_pool(x, k, s, p, d, op, count_include_pad=True):
    n, c, h, w = x.shape
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    real = np.pad(np.ones((h, w)), ((p[0], p[0]), (p[1], p[1])))
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = i * s[0] + d[0] * np.arange(k[0])
            cols = j * s[1] + d[1] * np.arange(k[1])
            win = xp[:, :, rows][:, :, :, cols]
            if op == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = k[0] * k[1] if count_include_pad else real[np.ix_(rows, cols)].sum()
                y[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return y


def central_fd(f, a, idx, h=1e-6):
    """d f / d a[idx] by central differences (``a`` is restored afterwards)."""
    old = a[idx]
    a[idx] = old + h
    fp = f()
    a[idx] = old - h
    fm = f()
    a[idx] = old
    return (fp - fm) / (2 * h)


def one(layer, x, seed=0, jit=False):
    spec = Sequential((layer,))
    p = init_params(spec, x.shape, seed)
    return p, JaxReference(spec, jit=jit).forward(p, x).output


# --------------------------------------------------------------------------- forward vs numpy


@pytest.mark.parametrize(
    "conv",
    [
        Conv2d("c", 4, 6, (2, 3), stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2), groups=2),
        Conv2d("c", 3, 2, 3, stride=2, padding="same", bias=False),
        Conv2d("c", 3, 2, (3, 1), padding="valid"),
    ],
)
def test_conv_is_unflipped_cross_correlation(conv):
    x = RNG.normal(size=(2, conv.in_channels, 7, 6))
    p, out = one(conv, x)
    expect = np_conv2d(x, p["c.weight"], p.get("c.bias"), conv.stride, conv.pads(x.shape[2:]), conv.dilation, conv.groups)
    assert out.dtype == np.float64 and out.shape == expect.shape
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-13)  # float32 would miss by ~1e-7


@pytest.mark.parametrize(
    "pool",
    [
        MaxPool2d("p", 3, stride=2, padding=1, dilation=(1, 2)),
        AvgPool2d("p", 3, stride=2, padding=1, count_include_pad=True),
        AvgPool2d("p", (3, 2), stride=(1, 2), padding=(1, 1), count_include_pad=False),
    ],
)
def test_pools_match_numpy(pool):
    x = RNG.normal(size=(2, 3, 7, 8))
    _, out = one(pool, x)
    if isinstance(pool, MaxPool2d):
        expect = np_pool(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, "max")
    else:
        expect = np_pool(x, pool.kernel_size, pool.stride, pool.padding, (1, 1), "avg", pool.count_include_pad)
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-14)


def _gelu_erf(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@pytest.mark.parametrize(
    "layer, fn",
    [
        (ReLU("a"), lambda x: np.maximum(x, 0)),
        (LeakyReLU("a", 0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
        (ELU("a", 1.5), lambda x: np.where(x > 0, x, 1.5 * (np.exp(x) - 1))),
        (Sigmoid("a"), lambda x: 1 / (1 + np.exp(-x))),
        (Tanh("a"), np.tanh),
        (GELU("a"), _gelu_erf),
        (GELU("a", "tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
        (Softmax("a", axis=1), lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
        (Flatten("a"), lambda x: x.reshape(x.shape[0], -1)),
        (GlobalAvgPool2d("a"), lambda x: x.mean(axis=(2, 3))),
        (GlobalAvgPool2d("a", keepdims=True), lambda x: x.mean(axis=(2, 3), keepdims=True)),
    ],
)
def test_parameter_free_layers_match_numpy(layer, fn):
    x = RNG.normal(size=(2, 3, 4, 5)) * 3
    _, out = one(layer, x)
    np.testing.assert_allclose(out, fn(x), rtol=1e-13, atol=1e-14)


def test_parametrised_layers_match_numpy():
    x = RNG.normal(size=(2, 3, 4))
    p, out = one(Linear("a", 4, 5), x)  # leading axes pass through
    np.testing.assert_allclose(out, x @ p["a.weight"].T + p["a.bias"], rtol=1e-13, atol=1e-14)

    p, out = one(LayerNorm("a", (3, 4)), x)
    m, v = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (x - m) / np.sqrt(v + 1e-5) * p["a.weight"] + p["a.bias"], rtol=1e-12, atol=1e-13)

    p, out = one(Dropout("a", 0.25), x)
    assert 0 < p["a.mask"].sum() < p["a.mask"].size
    np.testing.assert_allclose(out, x * p["a.mask"] / 0.75, rtol=1e-14)
    _, out = one(Dropout("a", 0.25, training=False), x)
    np.testing.assert_array_equal(out, x)


def test_batchnorm_normalisation_and_running_stats():
    spec = Sequential((BatchNorm1d("a", 3, momentum=0.3), BatchNorm1d("b", 3, affine=False, training=False)))
    x = RNG.normal(size=(4, 3, 5)) * 2 + 1
    p = init_params(spec, x.shape, 3)
    res = JaxReference(spec).forward(p, x)

    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))  # batch stats, biased
    c = (1, 3, 1)
    a = (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + 1e-5) * p["a.weight"].reshape(c) + p["a.bias"].reshape(c)
    np.testing.assert_allclose(res.outputs["a"], a, rtol=1e-12, atol=1e-13)
    b = (a - p["b.running_mean"].reshape(c)) / np.sqrt(p["b.running_var"].reshape(c) + 1e-5)  # eval: running stats
    np.testing.assert_allclose(res.output, b, rtol=1e-12, atol=1e-13)

    n = 4 * 5
    assert list(res.state) == ["a.running_mean", "a.running_var"]  # eval-mode 'b' reports nothing
    np.testing.assert_allclose(res.state["a.running_mean"], 0.7 * p["a.running_mean"] + 0.3 * mean, rtol=1e-13)
    np.testing.assert_allclose(res.state["a.running_var"], 0.7 * p["a.running_var"] + 0.3 * var * n / (n - 1), rtol=1e-13)


# --------------------------------------------------------------------------- gradients


def _net():
    return Sequential((
        Conv2d("conv1", 2, 3, 3, padding=1),
        BatchNorm2d("bn1", 3),
        ReLU("relu1"),
        Residual(
            "res",
            block=(Conv2d("c1", 3, 4, 3, stride=2, padding=1), BatchNorm2d("bn", 4), ReLU("r"), Conv2d("c2", 4, 4, 3, padding=1)),
            shortcut=Sequential((Conv2d("conv", 3, 4, 1, stride=2, bias=False), BatchNorm2d("bn", 4)), name="downsample"),
            post=(ReLU("relu"),),
        ),
        MaxPool2d("pool", 2),
        Flatten("flat"),
        Linear("fc", 16, 3),
    ))


@pytest.fixture(scope="module")
def net():
    spec = _net()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 2, 8, 8))
    p = init_params(spec, x.shape, 5)
    g = rng.normal(size=spec.output_shape(x.shape))
    return spec, p, x, g, JaxReference(spec).vjp(p, x, g)


def test_result_keys_and_dtypes(net):
    spec, p, x, g, res = net
    paths = [path for path, _ in walk(spec)]
    assert list(res.inputs) == list(res.outputs) == list(res.output_grads) == paths
    info = named_params(spec, x.shape)
    assert list(res.param_grads) == [k for k, v in info.items() if v.trainable]
    assert not any("running" in k for k in res.param_grads)
    assert set(res.state) == {f"{b}.running_{s}" for b in ("bn1", "res.bn", "res.downsample.bn") for s in ("mean", "var")}
    for arr in (res.output, res.input_grad, res.cotangent, *res.param_grads.values(), *res.output_grads.values()):
        assert arr.dtype == np.float64
    np.testing.assert_array_equal(res.cotangent, g)
    np.testing.assert_array_equal(res.inputs["res"], res.outputs["relu1"])
    np.testing.assert_array_equal(res.outputs["fc"], res.output)


def test_input_and_param_grads_by_finite_differences(net):
    spec, p, x, g, res = net
    fwd = JaxReference(spec, jit=True)  # compiled forward keeps the many FD evaluations fast
    p = {k: v.copy() for k, v in p.items()}
    x = x.copy()
    obj = lambda: float(np.sum(fwd.forward(p, x).output * g))

    fd = np.array([central_fd(obj, x, i) for i in np.ndindex(x.shape)]).reshape(x.shape)
    np.testing.assert_allclose(res.input_grad, fd, rtol=1e-6, atol=1e-8)
    assert np.abs(res.input_grad).max() > 1e-2  # not trivially zero

    for name in ("conv1.weight", "bn1.bias", "res.c1.weight", "res.c2.bias", "res.downsample.conv.weight",
                 "res.downsample.bn.weight", "fc.weight", "fc.bias"):
        for idx in list(np.ndindex(p[name].shape))[:: max(1, p[name].size // 5)]:
            assert res.param_grads[name][idx] == pytest.approx(central_fd(obj, p[name], idx), rel=1e-6, abs=1e-8), (name, idx)


def test_output_grads(net):
    spec, p, x, g, res = net
    og = res.output_grads
    np.testing.assert_array_equal(og["fc"], g)  # the last layer receives g itself
    # a composite's output is its last child's, so both receive the same gradient
    np.testing.assert_array_equal(og["res"], og["res.relu"])
    np.testing.assert_array_equal(og["res.downsample"], og["res.downsample.bn"])
    # block and shortcut both feed the sum: both receive d/d(sum) = relu' * og["res"]
    np.testing.assert_allclose(og["res.c2"], og["res"] * (res.outputs["res"] > 0), rtol=1e-14)
    np.testing.assert_array_equal(og["res.downsample"], og["res.c2"])
    # one step of the chain rule through ReLU 'res.r'
    np.testing.assert_allclose(og["res.bn"], og["res.r"] * (res.outputs["res.bn"] > 0), rtol=1e-14)

    # og[L] = d objective / d (output of L): finite differences of the rest of the net
    layers = spec.layers
    for k in (2, 3):  # after 'relu1', after 'res'
        rest = Sequential(layers[k + 1:])
        h0 = res.outputs[layers[k].name].copy()
        rp = {n: p[n] for n in named_params(rest, h0.shape)}
        fwd = JaxReference(rest, jit=True)
        obj = lambda: float(np.sum(fwd.forward(rp, h0).output * g))
        # skip exact zeros (ReLU outputs): a max-pool window of tied zeros is a kink where
        # central differences see half a slope
        flat = [i for i in np.ndindex(h0.shape) if h0[i] != 0]
        for idx in flat[:: len(flat) // 12]:
            assert og[layers[k].name][idx] == pytest.approx(central_fd(obj, h0, idx), rel=1e-6, abs=1e-8)
    assert np.abs(og["relu1"]).max() > 1e-3


def test_relu_gradient_is_zero_at_zero():
    spec = Sequential((ReLU("r"),))
    x = np.array([[-1.0, 0.0, 2.0]])
    res = JaxReference(spec).vjp({}, x, np.ones_like(x))
    np.testing.assert_array_equal(res.input_grad, [[0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- losses


def _logsoftmax(o):
    z = o - o.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


LOGITS_SPEC = Sequential((Linear("fc", 4, 5),))


@pytest.mark.parametrize(
    "kind, reduction",
    [(k, r) for k in ("labels", "probs", "mse") for r in ("mean", "sum")] + [("projection", None)],
)
def test_loss_values_and_cotangent(kind, reduction):
    x = RNG.normal(size=(3, 4)) * 3
    p = init_params(LOGITS_SPEC, x.shape, 1)
    ref = JaxReference(LOGITS_SPEC)
    o = ref.forward(p, x).output
    div = 1.0
    if kind == "labels":
        t = np.array([0, 4, 2])
        loss, onehot = SoftmaxCrossEntropy(reduction), np.eye(5)[t]
        value, grad = -(_logsoftmax(o) * onehot).sum(), np.exp(_logsoftmax(o)) - onehot
        div = 3 if reduction == "mean" else 1
    elif kind == "probs":
        t = RNG.random((3, 5))
        t /= t.sum(axis=1, keepdims=True)
        loss = SoftmaxCrossEntropy(reduction)
        value, grad = -(_logsoftmax(o) * t).sum(), np.exp(_logsoftmax(o)) - t
        div = 3 if reduction == "mean" else 1
    elif kind == "mse":
        t = RNG.normal(size=o.shape)
        loss = MSE(reduction)
        value, grad = ((o - t) ** 2).sum(), 2 * (o - t)
        div = o.size if reduction == "mean" else 1
    else:
        t = RNG.normal(size=o.shape)
        loss, value, grad = Projection(), (o * t).sum(), t

    res = ref.loss_vjp(p, x, loss, t)
    assert isinstance(res.loss, float)
    assert res.loss == pytest.approx(value / div, rel=1e-13)
    np.testing.assert_allclose(res.cotangent, grad / div, rtol=1e-12, atol=1e-15)
    # the backward pass is driven by exactly that cotangent
    np.testing.assert_allclose(res.input_grad, ref.vjp(p, x, res.cotangent).input_grad, rtol=1e-13, atol=1e-16)


# --------------------------------------------------------------------------- jit and config


@pytest.mark.slow  # compiles the whole network; test_agreement's jitted VGG stays in the default run
def test_jit_matches_eager(net):
    spec, p, x, g, eager = net
    jitted = JaxReference(spec, jit=True).vjp(p, x, g)

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)

    close(jitted.output, eager.output)
    close(jitted.input_grad, eager.input_grad)
    assert list(jitted.param_grads) == list(eager.param_grads)
    assert list(jitted.output_grads) == list(eager.output_grads)
    assert list(jitted.state) == list(eager.state)
    for d in ("inputs", "outputs", "state", "param_grads", "output_grads"):
        for k, v in getattr(eager, d).items():
            close(getattr(jitted, d)[k], v)

    t = np.array([2, 0])
    le = JaxReference(spec).loss_vjp(p, x, SoftmaxCrossEntropy(), t)
    lj = JaxReference(spec, jit=True).loss_vjp(p, x, SoftmaxCrossEntropy(), t)
    assert lj.loss == pytest.approx(le.loss, rel=1e-14)
    close(lj.input_grad, le.input_grad)


def test_global_x64_flag_is_untouched():
    spec = Sequential((Conv2d("c", 1, 2, 2), BatchNorm2d("bn", 2), Flatten("f")))
    x = RNG.normal(size=(2, 1, 3, 3))
    p = init_params(spec, x.shape)
    g = RNG.normal(size=spec.output_shape(x.shape))
    before = jax.config.jax_enable_x64
    for jit in (False, True):
        ref = JaxReference(spec, jit=jit)
        assert ref.forward(p, x).output.dtype == np.float64
        assert ref.vjp(p, x, g).input_grad.dtype == np.float64
        ref.loss_vjp(p, x, MSE(), np.zeros_like(g))
        assert jax.config.jax_enable_x64 == before
    assert jax.numpy.ones(1).dtype == (np.float64 if before else np.float32)


def test_the_harness_reference_is_jitted_once_per_spec_and_matches_eager():
    """build("jax", spec) (what the checks use) is jitted; a reference built from an equal
    spec reuses the compiled pullback instead of compiling again; jit=False stays eager, and
    both give the same numbers to rounding."""
    from reference_models import build
    from reference_models.jax_ref import _JITTED

    def spec():
        # names no other test uses: the first pullback below is this spec's first compile
        return Sequential([Conv2d("once_c", 2, 3, 3, padding=1), ReLU("once_r"), Flatten("once_f"),
                           Linear("once_fc", 48, 4)], name="jit_once")

    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(2, 4))
    p = init_params(spec(), x.shape, seed=1)
    first = build("jax", spec())
    assert first.jit and not build("jax", spec(), jit=False).jit
    before = _JITTED[1]._cache_size()
    a = first.vjp(p, x, g)
    compiled = _JITTED[1]._cache_size()
    assert compiled == before + 1  # compiled once, as one program
    b = build("jax", spec()).vjp(p, x, g)
    assert _JITTED[1]._cache_size() == compiled  # the equal spec found the program compiled
    eager = build("jax", spec(), jit=False).vjp(p, x, g)
    for got in (a, b):
        np.testing.assert_allclose(got.output, eager.output, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(got.input_grad, eager.input_grad, rtol=1e-13, atol=1e-15)
        for k, v in eager.param_grads.items():
            np.testing.assert_allclose(got.param_grads[k], v, rtol=1e-13, atol=1e-15)
