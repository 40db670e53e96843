"""Wrapping handwritten layers: object style and CS231n function pairs, in several layouts
and dtypes; canonical results equal the reference's; parameters restored bit for bit;
every error path."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, Ref, wrap_functions, wrap_layer
from harness.adapters.layouts import Layout, LayoutError
from reference_models import build

# --------------------------------------------------------------------------- handwritten layers


class TFConv:
    """NHWC data, HWIO kernel, 'valid' padding with an explicit pad: how TensorFlow ports look."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, dtype=np.float64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(k, k, cin, cout)) * 0.3).astype(dtype)
        self.b = rng.normal(size=cout).astype(dtype)
        self.stride, self.pad = stride, pad

    def forward(self, x):
        self.x = x
        s, k = self.stride, self.W.shape[0]
        xp = np.pad(x, ((0, 0), (self.pad, self.pad), (self.pad, self.pad), (0, 0)))
        self.xp = xp
        oh, ow = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
        out = np.zeros((x.shape[0], oh, ow, self.W.shape[3]), x.dtype)
        for u in range(k):
            for v in range(k):
                out += np.einsum("nhwc,co->nhwo", xp[:, u:u + s * oh:s, v:v + s * ow:s], self.W[u, v])
        return out + self.b

    def backward(self, dout):
        s, k = self.stride, self.W.shape[0]
        oh, ow = dout.shape[1:3]
        dxp = np.zeros_like(self.xp)
        self.dW = np.zeros_like(self.W)
        for u in range(k):
            for v in range(k):
                dxp[:, u:u + s * oh:s, v:v + s * ow:s] += np.einsum("nhwo,co->nhwc", dout, self.W[u, v])
                self.dW[u, v] = np.einsum("nhwc,nhwo->co", self.xp[:, u:u + s * oh:s, v:v + s * ow:s], dout)
        self.db = dout.sum(axis=(0, 1, 2))
        p = self.pad
        return dxp[:, p:dxp.shape[1] - p, p:dxp.shape[2] - p]


class DictLinear:
    """y = x @ w + b with params and grads in dicts (in_out weights), as in many courses."""

    def __init__(self, fin: int, fout: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"w": rng.normal(size=(fin, fout)), "b": rng.normal(size=(1, fout))}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, dy):
        self.grads["w"] = self.x.T @ dy
        self.grads["b"] = dy.sum(axis=0, keepdims=True)
        return dy @ self.params["w"].T


def conv_forward_naive(x, w, b, conv_param):
    """CS231n: x (N, C, H, W), w (F, C, HH, WW), b (F,)."""
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    f, _, hh, ww = w.shape
    oh, ow = (xp.shape[2] - hh) // s + 1, (xp.shape[3] - ww) // s + 1
    out = np.zeros((x.shape[0], f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * s:i * s + hh, j * s:j * s + ww]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    _, _, hh, ww = w.shape
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            patch = xp[:, :, i * s:i * s + hh, j * s:j * s + ww]
            dw += np.tensordot(dout[:, :, i, j], patch, axes=([0], [0]))
            dxp[:, :, i * s:i * s + hh, j * s:j * s + ww] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, p:xp.shape[2] - p, p:xp.shape[3] - p], dw, dout.sum(axis=(0, 2, 3))


def reference(spec_layer: S.Layer, params: dict, x: np.ndarray, g: np.ndarray):
    full = {f"{spec_layer.name}.{k}": v for k, v in params.items()}
    return build("torch", S.Sequential([spec_layer])).vjp(full, x, g)


def check_against_reference(layer, x: np.ndarray, rtol: float) -> None:
    g = np.random.default_rng(9).normal(size=layer.spec.output_shape(x.shape))
    y = layer.forward(x)
    dx = layer.backward(g)
    ref = reference(layer.spec, layer.get_params(), x, g)
    np.testing.assert_allclose(y, ref.output, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx, ref.input_grad, rtol=rtol, atol=rtol)
    for k, v in layer.param_grads().items():
        np.testing.assert_allclose(v, ref.param_grads[f"{layer.spec.name}.{k}"], rtol=rtol, atol=rtol, err_msg=k)


X = np.random.default_rng(1).normal(size=(2, 3, 7, 7))

# --------------------------------------------------------------------------- the three styles


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_object_style_tf_layout_matches_reference(dtype, rtol) -> None:
    user = TFConv(3, 4, 3, stride=2, pad=1, dtype=dtype)
    conv = wrap_layer(user, S.Conv2d("conv1", 3, 4, 3, stride=2, padding=1),
                      layout=Layout(data="NHWC", kernel="HWIO"))
    assert conv.dtype == np.dtype(dtype)
    assert conv.get_params()["weight"].shape == (4, 3, 3, 3)
    check_against_reference(conv, X, rtol)


def test_object_style_dicts_found_without_declaration() -> None:
    user = DictLinear(5, 3)
    fc = wrap_layer(user, S.Linear("fc", 5, 3), layout=Layout(linear="in_out"))
    assert fc.params["weight"].path == "params['w']" and fc.params["bias"].path == "params['b']"
    check_against_reference(fc, np.random.default_rng(0).normal(size=(4, 5)), 1e-12)
    assert fc.grads["weight"].path == "grads['w']"


def test_function_pair_style_matches_reference() -> None:
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    conv = wrap_functions(conv_forward_naive, conv_backward_naive, S.Conv2d("conv", 3, 4, 3, stride=2, padding=1),
                          (w, b), args=({"stride": 2, "pad": 1},))
    check_against_reference(conv, X, 1e-12)


def test_a_wrong_layout_declaration_is_caught_by_the_comparison() -> None:
    """Declaring OIHW for HWIO code: the shapes cannot fit, and the error says what does."""
    conv = wrap_layer(TFConv(3, 4, 3), S.Conv2d("conv1", 3, 4, 3), layout=Layout(data="NHWC"))
    with pytest.raises(LayoutError, match=r"has shape \(3, 3, 3, 4\) in the declared Layout\(data='NHWC'\); expected \(4, 3, 3, 3\) there; looks like HWIO"):
        conv.get_params()


# --------------------------------------------------------------------------- never change the user's model


def test_set_params_writes_user_layout_and_preserved_restores_bits_even_on_error() -> None:
    user = TFConv(3, 4, 3, dtype=np.float32)
    conv = wrap_layer(user, S.Conv2d("conv1", 3, 4, 3), layout=Layout(data="NHWC", kernel="HWIO"))
    w_obj, before = user.W, {k: fingerprint(getattr(user, k)) for k in ("W", "b")}
    new = {k: v + 1.0 for k, v in conv.get_params().items()}
    with pytest.raises(RuntimeError, match="user code failed"):
        with conv.preserved():
            conv.set_params(new)
            assert user.W is w_obj and user.W.dtype == np.float32  # written in place, user dtype
            np.testing.assert_array_equal(conv.get_params()["weight"], new["weight"].astype(np.float32))
            raise RuntimeError("user code failed")
    assert user.W is w_obj
    assert {k: fingerprint(getattr(user, k)) for k in ("W", "b")} == before


def test_function_pair_arrays_are_never_written() -> None:
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    fw, fb = fingerprint(w), fingerprint(b)
    conv = wrap_functions(conv_forward_naive, conv_backward_naive, S.Conv2d("conv", 3, 4, 3), {"weight": w, "bias": b},
                          args=({"stride": 1, "pad": 0},))
    with conv.preserved():
        conv.set_params({"weight": np.zeros((4, 3, 3, 3))})
        assert conv.forward(X).any()  # the zero kernel is used: only the bias remains
        np.testing.assert_allclose(conv.forward(X), np.broadcast_to(b[None, :, None, None], (2, 4, 5, 5)))
    assert fingerprint(w) == fw and fingerprint(b) == fb
    np.testing.assert_array_equal(conv.get_params()["weight"], w)


def test_forward_that_mutates_its_input_is_reported() -> None:
    class Inplace(DictLinear):
        def forward(self, x):
            x *= 1.0 + 1e-3  # an in-place "normalisation" people write
            return super().forward(x)

    fc = wrap_layer(Inplace(5, 3), S.Linear("fc", 5, 3), layout=Layout(linear="in_out"))
    x = np.ones((2, 5))
    fc.forward(x)
    assert fc.input_mutated
    assert np.array_equal(x, np.ones((2, 5)))  # the caller's array was a copy
    clean = wrap_layer(DictLinear(5, 3), S.Linear("fc", 5, 3), layout=Layout(linear="in_out"))
    clean.forward(x)
    assert not clean.input_mutated


# --------------------------------------------------------------------------- references into objects


def test_ref_paths() -> None:
    class Box:
        pass

    obj = Box()
    obj.params = {"W1": np.zeros(2)}
    obj.layers = [Box()]
    obj.layers[0].kernel = np.ones(3)
    assert Ref("params['W1']").get(obj) is obj.params["W1"]
    assert Ref('params["W1"]').exists(obj) and not Ref("params['W2']").exists(obj)
    assert Ref("layers[0].kernel").get(obj) is obj.layers[0].kernel
    Ref("layers[0].kernel").set(obj, 5)
    assert obj.layers[0].kernel == 5
    with pytest.raises(AdapterError, match=r"cannot parse the parameter reference \"params\['\" at position 6"):
        Ref("params['")


# --------------------------------------------------------------------------- every error path


class NoBackward:
    W = np.zeros((3, 2))

    def forward(self, x):
        return x


def _fc(user, **kw):
    return wrap_layer(user, S.Linear("fc", 5, 3), layout=Layout(linear="in_out"), **kw)


def test_error_missing_method() -> None:
    with pytest.raises(AdapterError, match=r"layer 'fc': NoBackward has no method backward\(\)"):
        _fc(NoBackward())


def test_error_parameter_not_found() -> None:
    class Bare:
        def forward(self, x):
            return x

        def backward(self, d):
            return d

    with pytest.raises(AdapterError, match=r"cannot find parameter 'weight' on Bare \(tried W, params\['W'\]"):
        _fc(Bare())


def test_error_declared_parameter_missing_and_unknown_name() -> None:
    with pytest.raises(AdapterError, match=r"parameter 'weight' declared at params\['W'\], but DictLinear has nothing there"):
        _fc(DictLinear(5, 3), params={"weight": "params['W']"})
    with pytest.raises(AdapterError, match=r"params names \['gamma'\] are not parameters of Linear"):
        _fc(DictLinear(5, 3), params={"gamma": "params['w']"})


def test_error_output_shape_with_data_layout_hint() -> None:
    class Transposes(DictLinear):
        def forward(self, x):
            return np.ones((2, 4, 4, 3))

    conv2 = wrap_layer(Transposes(5, 3), S.Conv2d("c", 3, 3, 1), params={"weight": "params['w']", "bias": "params['b']"})
    with pytest.raises(AdapterError, match=r"expects \(2, 3, 4, 4\) in the declared Layout\(\); looks like NHWC: pass Layout\(data='NHWC'\)"):
        conv2.forward(np.ones((2, 3, 4, 4)))


def test_error_backward_results() -> None:
    class Broken(DictLinear):
        mode = "none"

        def backward(self, dy):
            dx = super().backward(dy)
            if self.mode == "none":
                return None
            if self.mode == "shape":
                return dx[:, :2]
            if self.mode == "nan":
                dx[0, 1] = np.nan
                return dx
            if self.mode == "nograd":
                del self.grads["b"]
            if self.mode == "gradshape":
                self.grads["w"] = self.grads["w"][:2]
            return dx

    x, g = np.ones((2, 5)), np.ones((2, 3))
    expectations = {
        "none": r"backward returned None; it must return the input gradient dx",
        "shape": r"backward returned an input gradient of shape \(2, 2\); expected \(2, 5\)",
        "nan": r"backward's input gradient has a non-finite value nan at \[0, 1\]",
        "nograd": r"cannot find the gradient of 'bias'",
        "gradshape": r"gradient of 'weight' has shape \(2, 3\) but the parameter has \(5, 3\)",
    }
    for mode, message in expectations.items():
        user = Broken(5, 3)
        user.mode = mode
        fc = _fc(user)
        fc.forward(x)
        with pytest.raises(AdapterError, match=message):
            fc.backward(g)
            fc.param_grads()


def test_error_call_order_and_upstream_shape() -> None:
    fc = _fc(DictLinear(5, 3))
    with pytest.raises(AdapterError, match="backward called before forward"):
        fc.backward(np.ones((2, 3)))
    fc.forward(np.ones((2, 5)))
    with pytest.raises(AdapterError, match=r"upstream gradient shape \(3, 2\) differs from the output shape \(2, 3\)"):
        fc.backward(np.ones((3, 2)))
    with pytest.raises(AdapterError, match="layout must be a harness.Layout"):
        wrap_layer(DictLinear(5, 3), S.Linear("fc", 5, 3), layout="NHWC")


def test_error_function_pair_contracts() -> None:
    spec = S.Conv2d("conv", 3, 4, 3)
    w, b = np.zeros((4, 3, 3, 3)), np.zeros(4)
    with pytest.raises(AdapterError, match=r"got 1 parameter arrays for \['weight', 'bias'\]"):
        wrap_functions(conv_forward_naive, conv_backward_naive, spec, (w,))
    with pytest.raises(AdapterError, match=r"params lack \['bias'\]"):
        wrap_functions(conv_forward_naive, conv_backward_naive, spec, {"weight": w}, order=["weight", "bias"])
    no_cache = wrap_functions(lambda x, w, b, p: conv_forward_naive(x, w, b, p)[0], conv_backward_naive, spec, (w, b),
                              args=({"stride": 1, "pad": 0},))
    with pytest.raises(AdapterError, match=r"forward must return \(out, cache\), got ndarray"):
        no_cache.forward(X)
    short = wrap_functions(conv_forward_naive, lambda d, c: conv_backward_naive(d, c)[:2], spec, (w, b),
                           args=({"stride": 1, "pad": 0},))
    short.forward(X)
    with pytest.raises(AdapterError, match=r"backward must return \(dx, dweight, dbias\), got 2 values"):
        short.backward(np.ones((2, 4, 5, 5)))


def test_error_remaining_paths() -> None:
    class NoneOut(DictLinear):
        def forward(self, x):
            return None

    with pytest.raises(AdapterError, match="layer 'fc': forward output is None"):
        _fc(NoneOut(5, 3)).forward(np.ones((2, 5)))
    fc = _fc(DictLinear(5, 3), grads={"weight": "grads['dw']"})
    fc.forward(np.ones((2, 5)))
    fc.backward(np.ones((2, 3)))
    with pytest.raises(AdapterError, match=r"gradient of 'weight' declared at grads\['dw'\] is missing after backward"):
        fc.param_grads()
    drop = wrap_layer(DictLinear(5, 5), S.Dropout("d", 0.5))  # a mask may be drawn by the forward: looked for then
    with pytest.raises(AdapterError, match="layer 'd': its dropout mask is drawn by its forward, which has not run, and "
                                           "its input shape is not known: pass x= or input_shape="):
        drop.get_params()
    drop.forward(np.ones((2, 5)))
    with pytest.raises(AdapterError, match=r"layer 'd': cannot find its dropout mask 'mask' on DictLinear after the "
                                           r"forward \(tried mask, _mask, .*; pass params=\{'mask': "):
        drop.get_params()
    spec = S.Linear("fc", 4, 2)
    pair = wrap_functions(lambda x, w, b: (x @ w.T + b, (x, w)), lambda d, c: (d @ c[1], None, d.sum(0)), spec,
                          (np.ones((2, 4)), np.zeros(2)))
    pair.forward(np.ones((3, 4)))
    pair.backward(np.ones((3, 2)))
    with pytest.raises(AdapterError, match="layer 'fc': no gradient for parameter 'weight' after backward"):
        pair.param_grads()


def test_torch_and_jax_parameters_are_written_and_restored() -> None:
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")

    class TorchDense:
        def __init__(self):
            self.W = torch.nn.Parameter(torch.randn(3, 5, dtype=torch.float32))  # (out, in)
            self.b = jnp.zeros(3, dtype=jnp.float32)  # an immutable jax array

        def forward(self, x):
            return x @ self.W.detach().numpy().T + np.asarray(self.b)

        def backward(self, dy):
            return dy @ self.W.detach().numpy()

    user = TorchDense()
    fc = wrap_layer(user, S.Linear("fc", 5, 3))
    w_obj, b_obj = user.W, user.b
    before = (fingerprint(user.W), fingerprint(user.b))
    with fc.preserved():
        fc.set_params({"weight": np.zeros((3, 5)), "bias": np.ones(3)})
        assert user.W is w_obj and float(user.W.abs().sum()) == 0.0  # torch: written in place
        assert user.b is not b_obj and float(user.b.sum()) == 3.0  # jax: replaced, same dtype
        assert user.b.dtype == jnp.float32
    assert user.W is w_obj and user.b is b_obj
    assert (fingerprint(user.W), fingerprint(user.b)) == before
    assert fc.dtype == np.float32
