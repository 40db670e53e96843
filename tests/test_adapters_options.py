"""What real handwritten code does, each behind a declared option of wrap_layer."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_layer
from harness.adapters.layouts import Layout
from reference_models import build

from handwritten import ConvReLU

SPEC = S.Linear("fc", 4, 3)
RNG = np.random.default_rng(0)
X, G = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 3))


def reference(layer):
    params = {f"fc.{k}": v for k, v in layer.get_params().items()}
    return build("torch", S.Sequential([SPEC])).vjp(params, X, G)


def assert_matches_reference(layer) -> None:
    y = layer.forward(X)
    dx = layer.backward(G)
    ref = reference(layer)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(dx, ref.input_grad, rtol=1e-12)
    for k, v in layer.param_grads().items():
        np.testing.assert_allclose(v, ref.param_grads[f"fc.{k}"], rtol=1e-12, err_msg=k)


class Dense:
    """y = x W + b, W (in, out); the base every quirk below modifies."""

    def __init__(self, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(0)
        return dy @ self.W.T


def fc(user, **options):
    return wrap_layer(user, SPEC, layout=Layout(linear="in_out"), **options)


def test_extra_forward_arguments() -> None:
    class WithFlag(Dense):
        def forward(self, x, training):
            assert training is True
            return super().forward(x)

    with pytest.raises(TypeError, match="training"):
        fc(WithFlag()).forward(X)
    assert_matches_reference(fc(WithFlag(), forward_kwargs={"training": True}))
    assert_matches_reference(fc(WithFlag(), forward_args=(True,)))


def test_parameters_created_on_first_forward() -> None:
    class Lazy:
        def forward(self, x):
            if not hasattr(self, "W"):
                rng = np.random.default_rng(2)
                self.W, self.b = rng.normal(size=(x.shape[1], 3)).astype(np.float32), np.zeros(3, np.float32)
            self.x = x
            return x @ self.W + self.b

        def backward(self, dy):
            self.dW, self.db = self.x.T @ dy, dy.sum(0)
            return dy @ self.W.T

    with pytest.raises(AdapterError, match="cannot find parameter 'weight' on Lazy"):
        fc(Lazy())
    layer = fc(Lazy(), lazy=True)
    layer.forward(X)
    assert layer.get_params()["weight"].shape == (3, 4)
    assert layer.dtype == np.float32  # known once the parameters exist


def test_gradients_accumulated_until_flushed() -> None:
    class Accumulates(Dense):
        def zero_grad(self):
            self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)

        def backward(self, dy):
            if not hasattr(self, "dW"):
                self.zero_grad()
            self.dW += self.x.T @ dy
            self.db += dy.sum(0)
            return dy @ self.W.T

    plain = fc(Accumulates())
    plain.forward(X)
    plain.backward(G)
    first = plain.param_grads()["weight"]
    plain.backward(G)
    np.testing.assert_allclose(plain.param_grads()["weight"], 2 * first)  # what happens unflushed
    flushed = fc(Accumulates(), zero_grad="zero_grad")
    for _ in range(2):
        assert_matches_reference(flushed)


@pytest.mark.parametrize("inside_backward", [False, True])
def test_gradients_only_through_sgd_step(inside_backward: bool) -> None:
    class SGDOnly(Dense):
        def backward(self, dy, lr=None):
            self._g = (self.x.T @ dy, dy.sum(0))
            dx = dy @ self.W.T
            if lr is not None:
                self.step(lr)
            return dx

        def step(self, lr=0.1):
            self.W -= lr * self._g[0]
            self.b -= lr * self._g[1]

    user = SGDOnly()
    before = (fingerprint(user.W), fingerprint(user.b))
    if inside_backward:
        layer = fc(user, sgd=(None, 0.1), backward_kwargs={"lr": 0.1})
    else:
        layer = fc(user, sgd=("step", 0.1))
    y = layer.forward(X)
    layer.backward(G)
    grads = layer.param_grads()
    assert (fingerprint(user.W), fingerprint(user.b)) == before  # the update was undone exactly
    ref = reference(layer)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(grads["weight"], ref.param_grads["fc.weight"], rtol=1e-9)  # (w - w')/lr rounding
    np.testing.assert_allclose(grads["bias"], ref.param_grads["fc.bias"], rtol=1e-9)


def test_gradients_already_divided_by_batch() -> None:
    class Averages(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dW, self.db = self.dW / len(dy), self.db / len(dy)
            return dx

    layer = fc(Averages())
    layer.forward(X)
    layer.backward(G)
    ref = reference(layer)
    np.testing.assert_allclose(layer.param_grads()["weight"] * len(X), ref.param_grads["fc.weight"], rtol=1e-12)
    assert_matches_reference(fc(Averages(), grad_scale="batch"))
    assert_matches_reference(fc(Averages(), grad_scale=len(X)))


def test_option_errors() -> None:
    with pytest.raises(AdapterError, match=r"unknown option\(s\) \['zerograd'\]; known: "):
        fc(Dense(), zerograd="zero_grad")
    with pytest.raises(AdapterError, match="grad_scale must be 'batch' or a number, got 'mean'"):
        fc(Dense(), grad_scale="mean")
    with pytest.raises(AdapterError, match=r"Dense has no method flush\(\) \(declared as an option\)"):
        fc(Dense(), zero_grad="flush")
    with pytest.raises(AdapterError, match=r"Dense has no method apply\(\)"):
        fc(Dense(), sgd=("apply", 0.1))


def test_activation_fused_into_the_layer_covers_a_span() -> None:
    span = S.Sequential([S.Conv2d("conv1", 2, 3, 1), S.ReLU("relu1")])
    layer = wrap_layer(ConvReLU(), span)
    assert set(layer.params) == {"conv1.weight", "conv1.bias"}
    x = np.random.default_rng(4).normal(size=(2, 2, 3, 3))
    g = np.random.default_rng(5).normal(size=(2, 3, 3, 3))
    y, dx = layer.forward(x), layer.backward(g)
    ref = build("torch", span).vjp(layer.get_params(), x, g)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(dx, ref.input_grad, rtol=1e-12)
    grads = layer.param_grads()
    for k in grads:
        np.testing.assert_allclose(grads[k], ref.param_grads[k], rtol=1e-12, atol=1e-15, err_msg=k)


def test_span_with_two_weights_must_declare_them() -> None:
    span = S.Sequential([S.Conv2d("a", 2, 3, 1), S.Conv2d("b", 3, 3, 1)])
    with pytest.raises(AdapterError, match=r"'a.weight' and 'b.weight' would both be read from W; pass params="):
        wrap_layer(ConvReLU(), span)


def test_layer_without_spec_is_wrapped_for_finite_differences_only() -> None:
    """A layer the spec does not know: no reference, but forward/backward and its declared
    parameters and gradients still go through the same canonical interface."""
    class Swish:
        def __init__(self):
            self.beta = np.array([1.3])

        def forward(self, x):
            self.x = x
            return x / (1 + np.exp(-self.beta * x))

        def backward(self, dy):
            s = 1 / (1 + np.exp(-self.beta * self.x))
            self.dbeta = np.array([(dy * self.x * self.x * s * (1 - s)).sum()])
            return dy * (s + self.beta * self.x * s * (1 - s))

    GX = np.random.default_rng(7).normal(size=X.shape)
    layer = wrap_layer(Swish(), None, params={"beta": "beta"}, grads={"beta": "dbeta"})
    assert layer.spec is None
    y = layer.forward(X)
    dx = layer.backward(GX)
    assert y.shape == dx.shape == X.shape
    # central differences of <f(x), g> along a random direction agree with the backward
    d, h = np.random.default_rng(6).normal(size=X.shape), 1e-6
    fd = ((layer.forward(X + h * d) * GX).sum() - (layer.forward(X - h * d) * GX).sum()) / (2 * h)
    layer.forward(X)
    assert abs(fd - (layer.backward(GX) * d).sum()) < 1e-7
    with layer.preserved():
        layer.set_params({"beta": np.array([2.0])})
        assert layer.get_params()["beta"][0] == 2.0
    assert layer.get_params()["beta"][0] == 1.3
    assert set(layer.param_grads()) == {"beta"}


class OneImageConv:
    """A 1x1 conv on a single (H, W) grayscale image, as in a first numpy course."""

    def __init__(self, seed: int = 8):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(1, 1, 1, 1)), rng.normal(size=1)

    def forward(self, img):
        assert img.ndim == 2, "one (H, W) image"
        self.img = img
        return img * self.W[0, 0, 0, 0] + self.b[0]

    def backward(self, dy):
        self.dW = np.full((1, 1, 1, 1), (dy * self.img).sum())
        self.db = np.array([dy.sum()])
        return dy * self.W[0, 0, 0, 0]


def test_single_examples_without_batch_or_channel_axis() -> None:
    spec = S.Conv2d("c", 1, 1, 1)
    layer = wrap_layer(OneImageConv(), spec, batched=False, channel_axis=False)
    x = np.random.default_rng(9).normal(size=(3, 1, 4, 5))
    g = np.random.default_rng(10).normal(size=(3, 1, 4, 5))
    y, dx = layer.forward(x), layer.backward(g)
    ref = build("torch", S.Sequential([spec])).vjp({f"c.{k}": v for k, v in layer.get_params().items()}, x, g)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(dx, ref.input_grad, rtol=1e-12)
    for k, v in layer.param_grads().items():  # summed over the examples, like a batched layer
        np.testing.assert_allclose(v, ref.param_grads[f"c.{k}"], rtol=1e-12)
    with pytest.raises(AssertionError, match=r"one \(H, W\) image"):
        wrap_layer(OneImageConv(), spec).forward(x)


def test_single_example_option_errors() -> None:
    with pytest.raises(AdapterError, match="channel_axis=False is for single examples: pass batched=False too"):
        wrap_layer(OneImageConv(), S.Conv2d("c", 1, 1, 1), channel_axis=False)
    # batched=False with sgd= is no longer refused: see tests/test_calling_styles.py
    layer = wrap_layer(OneImageConv(), S.Conv2d("c", 2, 2, 1), params={"weight": "W", "bias": "b"}, batched=False, channel_axis=False)
    with pytest.raises(AdapterError, match="channel_axis=False needs 1 channel, the input has 2"):
        layer.forward(np.ones((1, 2, 3, 3)))


class SpacedConv:
    """1-channel conv whose `spacing` counts the pixels *between* taps (0 = plain conv)."""

    def __init__(self, spacing: int, k: int = 2, seed: int = 11):
        rng = np.random.default_rng(seed)
        self.W, self.b, self.spacing = rng.normal(size=(1, 1, k, k)), np.zeros(1), spacing

    def forward(self, x):
        step, k = self.spacing + 1, self.W.shape[2]
        span = step * (k - 1) + 1
        oh, ow = x.shape[2] - span + 1, x.shape[3] - span + 1
        out = np.zeros((x.shape[0], 1, oh, ow))
        for u in range(k):
            for v in range(k):
                out += x[:, :, u * step:u * step + oh, v * step:v * step + ow] * self.W[0, 0, u, v]
        return out + self.b[0]

    def backward(self, dy):
        raise NotImplementedError


@pytest.mark.parametrize("spacing", [0, 1, 2])
def test_dilation_counted_from_zero(spacing: int) -> None:
    layout = Layout(dilation_base=0)
    dilation = layout.spec_dilation(spacing)
    assert dilation == spacing + 1 and layout.user_dilation(dilation) == spacing
    assert Layout().spec_dilation((2, 3)) == (2, 3) and layout.spec_dilation((0, 1)) == (1, 2)
    spec = S.Conv2d("c", 1, 1, 2, dilation=dilation)
    layer = wrap_layer(SpacedConv(spacing), spec, layout=layout)
    x = np.random.default_rng(12).normal(size=(2, 1, 8, 8))
    ref = build("torch", S.Sequential([spec])).forward({f"c.{k}": v for k, v in layer.get_params().items()}, x)
    np.testing.assert_allclose(layer.forward(x), ref.output, rtol=1e-12)
    if spacing:  # read as PyTorch's dilation the same code disagrees with the reference
        wrong = S.Conv2d("c", 1, 1, 2, dilation=spacing)
        with pytest.raises(AdapterError, match="forward returned shape"):
            wrap_layer(SpacedConv(spacing), wrong).forward(x)
    with pytest.raises(Exception, match="dilation_base must be 1"):
        Layout(dilation_base=2)


class OneImageFilters:
    """F 3x3 filters over one (H, W) grayscale image (a first numpy course's conv): the
    output keeps its filter axis, (F, H-2, W-2)."""

    def __init__(self, filters: int = 4, seed: int = 3):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(filters, 1, 3, 3)), rng.normal(size=filters)

    def forward(self, img):
        assert img.ndim == 2, "one (H, W) image"
        self.img = img
        h, w = img.shape
        out = np.empty((len(self.W), h - 2, w - 2))
        for i in range(h - 2):
            for j in range(w - 2):
                out[:, i, j] = (self.W[:, 0] * img[i:i + 3, j:j + 3]).sum(axis=(1, 2)) + self.b
        return out

    def backward(self, dy):
        assert dy.ndim == 3, "the upstream gradient has the output's filter axis"
        self.dW, self.db, dimg = np.zeros_like(self.W), dy.sum(axis=(1, 2)), np.zeros_like(self.img)
        for i in range(dy.shape[1]):
            for j in range(dy.shape[2]):
                self.dW[:, 0] += dy[:, i, j, None, None] * self.img[i:i + 3, j:j + 3]
                dimg[i:i + 3, j:j + 3] += (dy[:, i, j, None, None] * self.W[:, 0]).sum(axis=0)
        return dimg


def test_channel_axis_false_is_about_the_input_not_the_upstream_gradient() -> None:
    """A correct single-channel conv with 4 filters was refused with 'needs 1 channel, the
    input has 4' (the upstream gradient's channels): a false alarm."""
    from harness import check_layer

    report = check_layer(wrap_layer(OneImageFilters(), S.Conv2d("conv", 1, 4, 3), batched=False, channel_axis=False),
                            input_shape=(2, 1, 6, 7))
    assert report.ok, str(report)


def _affine_forward(x, w, b):
    return x @ w + b, (x, w)


def _affine_backward_per_example(dout, cache):
    """Gradients already divided by the batch size (the loss's 1/N folded in here)."""
    x, w = cache
    n = x.shape[0]
    return dout @ w.T, x.T @ dout / n, dout.sum(axis=0) / n


def _relu_forward(x):
    return np.maximum(x, 0), x


def _relu_backward(dout, x):
    return dout * (x > 0)


def test_function_pairs_take_grad_scale_and_dtype() -> None:
    """Options wrap_layer has, for CS231n pairs too (before: TypeError 'unexpected keyword')."""
    from harness import check_layer, wrap_functions

    rng = np.random.default_rng(0)
    spec, w, b = S.Linear("fc", 5, 3), rng.normal(size=(5, 3)), rng.normal(size=3)
    kw = dict(layout=Layout(linear="in_out"))
    scaled = wrap_functions(_affine_forward, _affine_backward_per_example, spec, [w, b], grad_scale="batch", **kw)
    assert check_layer(scaled, input_shape=(4, 5)).ok
    unscaled = check_layer(wrap_functions(_affine_forward, _affine_backward_per_example, spec, [w, b], **kw),
                           input_shape=(4, 5)).layers[0]
    assert unscaled.verdict == "backward" and any("1/the batch size 4" in d for d in unscaled.diagnosis)
    relu = wrap_functions(_relu_forward, _relu_backward, S.ReLU("relu"), dtype=np.float32)
    assert relu.dtype == np.float32
    report = check_layer(relu, input_shape=(2, 6))
    assert report.ok and report.layers[0].dtype == "float32"
    with pytest.raises(AdapterError, match="grad_scale must be 'batch' or a number, got 'mean'"):
        wrap_functions(_affine_forward, _affine_backward_per_example, spec, [w, b], grad_scale="mean", **kw)
