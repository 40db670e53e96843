"""Every calling style takes every option (issue 13, contract decisions 3-7): function pairs
with wrap_layer's options, backward return structures, input_grad=False, batched=False
with sgd=, and flush= for numpy-ml style layers. The layers are written the way public
from-scratch code is: CS231n pairs, loops over the batch, im2col with fancy indexing,
numpy-ml's cached-input lists, gradients returned as lists and dicts."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Layout, check_layer, check_network, spec as S, wrap_functions, wrap_layer, wrap_network
from harness.adapters.arrays import fingerprint
from harness.adapters.refs import AdapterError

IN_OUT = Layout(linear="in_out")


def verdict(report) -> str:
    return report.layers[0].verdict


# --------------------------------------------------------------------------- CS231n pairs


def affine_forward(x, w, b):
    """CS231n: x (N, d_1, ..., d_k) flattened to (N, D); w (D, M)."""
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_batch_mixed(dout, cache):
    """A bug: the rows of x are paired with the wrong rows of dout."""
    x, w, b = cache
    dx, _, db = affine_backward(dout, cache)
    return dx, x.reshape(x.shape[0], -1)[::-1].T.dot(dout), db


RETURNS = {
    "tuple": lambda dx, dw, db: (dx, dw, db),
    "list": lambda dx, dw, db: (dx, [dw, db]),
    "nested tuple": lambda dx, dw, db: (dx, (dw, db)),
    "dict W/b": lambda dx, dw, db: (dx, {"W": dw, "b": db}),
    "dict dw/db": lambda dx, dw, db: (dx, {"dw": dw, "db": db}),
    "dict canonical": lambda dx, dw, db: (dx, {"fc.weight": dw, "fc.bias": db}),
}
HEAD = S.Sequential([S.Flatten("flat"), S.Linear("fc", 48, 5)], name="head")


def _affine_params(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(48, 5)) * 0.2, rng.normal(size=5)]


def test_flatten_linear_span_with_positional_params() -> None:
    """Before: "layer 'flat': expects input (N, ...), got shape (1,)" at wrap time."""
    pair = wrap_functions(affine_forward, affine_backward, HEAD, _affine_params(), layout=IN_OUT)
    assert pair._param_names() == ["fc.weight", "fc.bias"]
    assert check_layer(pair, input_shape=(3, 3, 4, 4)).ok
    bad = wrap_functions(affine_forward, affine_backward_batch_mixed, HEAD, _affine_params(), layout=IN_OUT)
    report = check_layer(bad, input_shape=(3, 3, 4, 4))
    assert verdict(report) == "backward"
    assert [t.name for t in report.layers[0].tensors if not t.ok] == ["fc.weight"]


@pytest.mark.parametrize("form", list(RETURNS))
def test_function_pair_return_structures(form: str) -> None:
    def backward(dout, cache):
        return RETURNS[form](*affine_backward(dout, cache))

    def buggy(dout, cache):
        return RETURNS[form](*affine_backward_batch_mixed(dout, cache))

    spec = S.Linear("fc", 48, 5)
    ok = check_layer(wrap_functions(affine_forward, backward, spec, _affine_params(), layout=IN_OUT), input_shape=(4, 48))
    assert ok.ok, str(ok)
    bad = check_layer(wrap_functions(affine_forward, buggy, spec, _affine_params(), layout=IN_OUT), input_shape=(4, 48))
    assert verdict(bad) == "backward" and not bad.layers[0].tensors[2].ok  # the weight's row


def conv_forward_im2col(x, w, b, conv_param):
    """A CS231n conv through im2col with fancy indexing (stride 1, zero padding)."""
    pad = conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    c, i, j = _im2col_indices(x.shape[1], xp.shape[2], xp.shape[3], w.shape[2])
    cols = xp[:, c, i, j]  # (N, C*k*k, OH*OW)
    oh, ow = xp.shape[2] - w.shape[2] + 1, xp.shape[3] - w.shape[3] + 1
    out = np.einsum("fk,nkp->nfp", w.reshape(w.shape[0], -1), cols) + b[None, :, None]
    return out.reshape(x.shape[0], w.shape[0], oh, ow), (x, w, cols, pad)


def _im2col_indices(channels, h, w, k):
    oh, ow = h - k + 1, w - k + 1
    i0, j0 = np.tile(np.repeat(np.arange(k), k), channels), np.tile(np.arange(k), k * channels)
    i = i0[:, None] + np.repeat(np.arange(oh), ow)[None, :]
    j = j0[:, None] + np.tile(np.arange(ow), oh)[None, :]
    return np.repeat(np.arange(channels), k * k)[:, None], i, j


def conv_backward_im2col(dout, cache, *, accumulate=True):
    x, w, cols, pad = cache
    d = dout.reshape(dout.shape[0], dout.shape[1], -1)
    dw = np.einsum("nfp,nkp->fk", d, cols).reshape(w.shape)
    db = d.sum(axis=(0, 2))
    dcols = np.einsum("fk,nfp->nkp", w.reshape(w.shape[0], -1), d)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    c, i, j = _im2col_indices(x.shape[1], dxp.shape[2], dxp.shape[3], w.shape[2])
    if accumulate:
        np.add.at(dxp, (slice(None), c, i, j), dcols)
    else:  # the classic fancy-indexing bug: overlapping windows overwrite instead of adding up
        dxp[:, c, i, j] += dcols
    return dxp[:, :, pad:dxp.shape[2] - pad, pad:dxp.shape[3] - pad], [dw, db]


def test_im2col_pair_returning_a_list_of_gradients() -> None:
    rng = np.random.default_rng(1)
    spec = S.Conv2d("conv", 2, 3, 3, padding=1)
    params = {"weight": rng.normal(size=(3, 2, 3, 3)), "bias": rng.normal(size=3)}
    args = ({"stride": 1, "pad": 1},)
    ok = check_layer(wrap_functions(conv_forward_im2col, conv_backward_im2col, spec, params, args=args),
                     input_shape=(2, 2, 5, 5))
    assert ok.ok, str(ok)
    buggy = wrap_functions(conv_forward_im2col, lambda d, c: conv_backward_im2col(d, c, accumulate=False), spec, params,
                           args=args)
    report = check_layer(buggy, input_shape=(2, 2, 5, 5))
    assert verdict(report) == "backward"
    assert [t.name for t in report.layers[0].tensors if not t.ok] == ["input"]


# --------------------------------------------------------------------------- function pairs: wrap_layer's options


def conv_single_forward(x, w, b):
    """One image (C, H, W), loops over the output (a first numpy course)."""
    f, _, k, _ = w.shape
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((f, oh, ow))
    for r in range(oh):
        for s in range(ow):
            out[:, r, s] = np.tensordot(w, x[:, r:r + k, s:s + k], axes=3) + b
    return out, (x, w)


def conv_single_backward(dout, cache, *, overwrite=False):
    x, w = cache
    k = w.shape[2]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for r in range(dout.shape[1]):
        for s in range(dout.shape[2]):
            patch = np.tensordot(dout[:, r, s], w, axes=1)
            if overwrite:  # a bug: overlapping windows overwrite each other's share
                dx[:, r:r + k, s:s + k] = patch
            else:
                dx[:, r:r + k, s:s + k] += patch
            dw += dout[:, r, s, None, None, None] * x[None, :, r:r + k, s:s + k]
    return dx, dw, dout.sum(axis=(1, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_function_pair_written_for_one_example(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = S.Conv2d("conv", 2, 3, 3)
    params = [rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)]
    pair = wrap_functions(conv_single_forward, conv_single_backward, spec, params, batched=False)
    assert check_layer(pair, input_shape=(3, 2, 5, 6), seed=seed).ok
    buggy = wrap_functions(conv_single_forward, lambda d, c: conv_single_backward(d, c, overwrite=True), spec, params,
                           batched=False)
    report = check_layer(buggy, input_shape=(3, 2, 5, 6), seed=seed)
    assert verdict(report) == "backward" and [t.name for t in report.layers[0].tensors if not t.ok] == ["input"]


def test_function_pair_on_one_grayscale_image() -> None:
    def fwd(img, w, b):  # (H, W) in, (F, H-2, W-2) out
        return conv_single_forward(img[None], w, b)

    def bwd(dout, cache):
        dx, dw, db = conv_single_backward(dout, cache)
        return dx[0], dw, db

    rng = np.random.default_rng(4)
    params = [rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4)]
    pair = wrap_functions(fwd, bwd, S.Conv2d("conv", 1, 4, 3), params, batched=False, channel_axis=False)
    assert check_layer(pair, input_shape=(2, 1, 6, 5)).ok
    with pytest.raises(AdapterError, match="layer 'conv': channel_axis=False is for single examples: pass batched=False"):
        wrap_functions(fwd, bwd, S.Conv2d("conv", 1, 4, 3), params, channel_axis=False)


def leaky_relu_forward(x, *, slope):
    return np.where(x > 0, x, slope * x), (x, slope)


def leaky_relu_backward(dout, cache):
    x, slope = cache
    return dout * np.where(x > 0, 1.0, slope)


def test_function_pair_forward_kwargs() -> None:
    spec = S.LeakyReLU("act", 0.1)
    for option in ("kwargs", "forward_kwargs"):
        pair = wrap_functions(leaky_relu_forward, leaky_relu_backward, spec, **{option: {"slope": 0.1}})
        assert check_layer(pair, input_shape=(3, 7)).ok
    wrong = wrap_functions(leaky_relu_forward, leaky_relu_backward, spec, forward_kwargs={"slope": 0.2})
    assert verdict(check_layer(wrong, input_shape=(3, 7))) == "forward"  # another slope, faithfully differentiated
    with pytest.raises(AdapterError, match=r"layer 'act': kwargs= and forward_kwargs= are the same option .*pass one of "
                                           r"them, got kwargs=\{'slope': 0.1\} and forward_kwargs=\{'slope': 0.1\}"):
        wrap_functions(leaky_relu_forward, leaky_relu_backward, spec, kwargs={"slope": 0.1},
                       forward_kwargs={"slope": 0.1})
    with pytest.raises(AdapterError, match="layer 'act': forward_kwargs= takes a dict of keyword arguments, got 0.1"):
        wrap_functions(leaky_relu_forward, leaky_relu_backward, spec, forward_kwargs=0.1)


# --------------------------------------------------------------------------- unreadable return structures


def test_unreadable_backward_structures_are_named() -> None:
    spec = S.Linear("fc", 48, 5)
    cases = {
        "(dx, [dW]) for two parameters": (lambda d, c: (affine_backward(d, c)[0], [affine_backward(d, c)[1]]),
                                          r"backward must return \(dx, dweight, dbias\), got 2 values: \(ndarray "
                                          r"\(4, 48\), list of 1\); expected \(dx, dweight, dbias\), \(dx, \[dweight, "
                                          r"dbias\]\), \(dx, \(dweight, dbias\)\) or \(dx, \{'weight': dweight, "
                                          r"'bias': dbias\}\)"),
        "a key naming nothing": (lambda d, c: (affine_backward(d, c)[0], {"W": affine_backward(d, c)[1], "gamma2": 0}),
                                 r"backward returned a gradient under the key 'gamma2', which names no trainable "
                                 r"parameter; expected keys naming \['weight', 'bias'\]"),
        "dx alone": (lambda d, c: affine_backward(d, c)[0],
                     r"backward must return \(dx, dweight, dbias\), got ndarray \(4, 48\)"),
    }
    for name, (backward, message) in cases.items():
        report = check_layer(wrap_functions(affine_forward, backward, spec, _affine_params(), layout=IN_OUT),
                             input_shape=(4, 48))
        entry = report.layers[0]
        assert (entry.verdict, entry.error_side) == ("error", "backward"), name
        assert __import__("re").search(message, entry.message), (name, entry.message)
        assert entry.message.startswith("layer 'fc': "), name


# --------------------------------------------------------------------------- object style: returned gradients


class Dense:
    """y = x W + b with W (in, out); backward returns its gradients instead of keeping them."""

    def __init__(self, n_in=6, n_out=4, seed=0, form="list", bug=False):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)) * 0.3, rng.normal(size=n_out)
        self.form, self.bug = form, bug

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        dW = (self.x if not self.bug else self.x[::-1]).T @ dy
        db = dy.sum(axis=0)
        dx = dy @ self.W.T
        return {"list": (dx, [dW, db]), "tuple": (dx, dW, db), "dict": (dx, {"dW": dW, "db": db}),
                "params dict": (dx, {"W": dW, "b": db})}[self.form]


@pytest.mark.parametrize("form", ["list", "tuple", "dict", "params dict"])
def test_object_backward_returning_its_gradients(form: str) -> None:
    layer = Dense(form=form)
    assert not hasattr(layer, "dW")  # nothing stored: the gradients come from what backward returned
    report = check_layer(wrap_layer(layer, S.Linear("fc", 6, 4), layout=IN_OUT), input_shape=(5, 6))
    assert report.ok, str(report)
    bad = check_layer(wrap_layer(Dense(form=form, bug=True), S.Linear("fc", 6, 4), layout=IN_OUT), input_shape=(5, 6))
    assert verdict(bad) == "backward" and [t.name for t in bad.layers[0].tensors if not t.ok] == ["weight"]


class KeepsStaleCopy(Dense):
    """Returns the right gradients and keeps their batch mean too (for logging): the returned
    ones are what it hands its optimiser."""

    def backward(self, dy):
        dx, (dW, db) = super().backward(dy)
        self.dW, self.db = dW / len(dy), db / len(dy)
        return dx, [dW, db]


def test_returned_gradients_win_over_stored_ones_unless_grads_declared() -> None:
    spec = S.Linear("fc", 6, 4)
    assert check_layer(wrap_layer(KeepsStaleCopy(), spec, layout=IN_OUT), input_shape=(5, 6)).ok
    declared = check_layer(wrap_layer(KeepsStaleCopy(), spec, layout=IN_OUT, grads={"weight": "dW", "bias": "db"}),
                           input_shape=(5, 6))
    assert verdict(declared) == "backward"  # grads= says where to read: the stale copy there is judged


def test_object_backward_with_a_dict_key_naming_nothing() -> None:
    class Odd(Dense):
        def backward(self, dy):
            dx, (dW, db) = super().backward(dy)
            return dx, {"dW": dW, "dbeta_gamma": db}

    report = check_layer(wrap_layer(Odd(), S.Linear("fc", 6, 4), layout=IN_OUT), input_shape=(5, 6))
    entry = report.layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert "layer 'fc': backward returned a gradient under the key 'dbeta_gamma', which names no trainable" in entry.message


def test_span_dict_keys_that_fit_two_parameters() -> None:
    def backward(dout, cache):
        dx, dw, db = affine_backward(dout, cache)
        return dx, {"weight": dw, "bias": db}

    spec = S.Sequential([S.Linear("fc1", 48, 5), S.ReLU("r")], name="blk")
    pair = wrap_functions(affine_forward, backward, spec, _affine_params(), layout=IN_OUT)
    x = np.random.default_rng(0).normal(size=(3, 48))
    pair.forward(x)
    assert pair.backward(np.ones((3, 5))).shape == (3, 48)
    assert set(pair.param_grads()) == {"fc1.weight", "fc1.bias"}  # one Linear: "weight" is unambiguous


def mlp_forward(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1 + b1, 0)
    return h @ w2 + b2, (x, h, w1, w2)


def mlp_backward(dout, cache):
    x, h, w1, w2 = cache
    dh = (dout @ w2.T) * (h > 0)
    return dh @ w1.T, {"W": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ dout, "b2": dout.sum(0)}


def test_span_dict_key_that_could_mean_two_parameters() -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 4), S.ReLU("relu"), S.Linear("fc2", 4, 3)], name="mlp")
    rng = np.random.default_rng(7)
    params = [rng.normal(size=(6, 4)), rng.normal(size=4), rng.normal(size=(4, 3)), rng.normal(size=3)]
    entry = check_layer(wrap_functions(mlp_forward, mlp_backward, spec, params, layout=IN_OUT),
                        input_shape=(5, 6)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert entry.message.startswith("layer 'mlp': backward returned a gradient under the key 'W', which could mean "
                                    "any of ['fc1.weight', 'fc2.weight']; expected keys naming ['fc1.weight', "
                                    "'fc1.bias', 'fc2.weight', 'fc2.bias']")

    def by_path(dout, cache):
        dx, g = mlp_backward(dout, cache)
        return dx, {"fc1.weight": g["W"], "fc1.bias": g["b1"], "fc2.weight": g["W2"], "fc2.bias": g["b2"]}

    assert check_layer(wrap_functions(mlp_forward, by_path, spec, params, layout=IN_OUT), input_shape=(5, 6)).ok

    def numbered(dout, cache):  # CS231n's TwoLayerNet names: W1, b1, W2, b2
        dx, g = mlp_backward(dout, cache)
        return dx, {"W1": g["W"], "b1": g["b1"], "W2": g["W2"], "b2": g["b2"]}

    assert check_layer(wrap_functions(mlp_forward, numbered, spec, params, layout=IN_OUT), input_shape=(5, 6)).ok


def test_object_backward_returning_too_few_gradients() -> None:
    class Short(Dense):
        def backward(self, dy):
            dx, (dW, db) = super().backward(dy)
            return dx, dW

    entry = check_layer(wrap_layer(Short(), S.Linear("fc", 6, 4), layout=IN_OUT), input_shape=(5, 6)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert entry.message == (
        "layer 'fc': backward must return (dx, dweight, dbias), got 2 values: (ndarray (5, 6), ndarray (6, 4)); "
        "expected (dx, dweight, dbias), (dx, [dweight, dbias]), (dx, (dweight, dbias)) or (dx, {'weight': dweight, "
        "'bias': dbias}); or dx alone, with the gradients kept on the object (grads= says where)")


def test_flags_take_booleans() -> None:
    for option in ("batched", "channel_axis", "input_grad"):
        with pytest.raises(AdapterError, match=f"layer 'fc': {option}= takes True or False, got 'no'"):
            wrap_layer(Dense(), S.Linear("fc", 6, 4), layout=IN_OUT, **{option: "no"})


# --------------------------------------------------------------------------- input_grad=False


class FirstConv:
    """The network's first conv: loops over the batch, computes no input gradient."""

    def __init__(self, seed=0, returns="none", bug=False):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(3, 2, 3, 3)) * 0.3, rng.normal(size=3)
        self.returns, self.bug = returns, bug

    def forward(self, x):
        self.x = x
        n, _, h, w = x.shape
        out = np.zeros((n, 3, h - 2, w - 2))
        for i in range(n):
            for r in range(h - 2):
                for s in range(w - 2):
                    out[i, :, r, s] = np.tensordot(self.W, x[i, :, r:r + 3, s:s + 3], axes=3) + self.b
        return out

    def backward(self, dout):
        self.dW = np.zeros_like(self.W)
        for i in range(dout.shape[0]):
            for r in range(dout.shape[2]):
                for s in range(dout.shape[3]):
                    self.dW += dout[i, :, r, s, None, None, None] * self.x[i, None, :, r:r + 3, s:s + 3]
        self.db = dout.sum(axis=(0, 2, 3)) * (2.0 if self.bug else 1.0)
        return None if self.returns == "none" else (None, self.dW, self.db)


@pytest.mark.parametrize("returns", ["none", "tuple"])
def test_first_layer_without_input_gradient(returns: str) -> None:
    spec = S.Conv2d("conv1", 2, 3, 3)
    report = check_layer(wrap_layer(FirstConv(returns=returns), spec, input_grad=False), input_shape=(2, 2, 5, 5))
    entry = report.layers[0]
    assert entry.verdict == "pass", str(report)
    assert [t.name for t in entry.tensors] == ["output", "weight", "bias"]  # the input gradient is not compared
    assert "input gradient not computed (input_grad=False)" in entry.message
    assert "input gradient not computed (input_grad=False)" in str(report)
    bad = check_layer(wrap_layer(FirstConv(returns=returns, bug=True), spec, input_grad=False), input_shape=(2, 2, 5, 5))
    assert verdict(bad) == "backward" and [t.name for t in bad.layers[0].tensors if not t.ok] == ["bias"]
    assert "input_grad=False" in bad.layers[0].message


def test_missing_input_gradient_without_declaration_names_the_option() -> None:
    report = check_layer(wrap_layer(FirstConv(), S.Conv2d("conv1", 2, 3, 3)), input_shape=(2, 2, 5, 5))
    entry = report.layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert entry.message == ("layer 'conv1': backward returned None; it must return the input gradient dx (a first "
                             "layer that computes none: declare input_grad=False)")


def test_function_pair_without_input_gradient() -> None:
    def backward(dout, cache):
        _, dw, db = affine_backward(dout, cache)
        return None, dw, db

    spec = S.Linear("fc", 48, 5)
    report = check_layer(wrap_functions(affine_forward, backward, spec, _affine_params(), layout=IN_OUT,
                                        input_grad=False), input_shape=(4, 48))
    assert report.ok and "input_grad=False" in report.layers[0].message
    undeclared = check_layer(wrap_functions(affine_forward, backward, spec, _affine_params(), layout=IN_OUT),
                             input_shape=(4, 48)).layers[0]
    assert undeclared.verdict == "error" and "declare input_grad=False" in undeclared.message
    with pytest.raises(AdapterError, match="layer 'fc': input_grad= takes True or False, got 'no'"):
        wrap_functions(affine_forward, backward, spec, _affine_params(), input_grad="no")


class Relu:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


def _first_layer_network(end_to_end: bool):
    spec = S.Sequential([S.Conv2d("conv1", 2, 3, 3), S.ReLU("relu"), S.Flatten("flat"), S.Linear("fc", 27, 4)])
    conv, relu = FirstConv(), Relu()
    fc = Dense(27, 4, seed=3, form="tuple")
    layers = {"conv1": wrap_layer(conv, spec.layers[0], input_grad=False), "relu": relu,
              "fc": wrap_layer(fc, spec.layers[3], layout=IN_OUT)}

    def forward(x):
        h = relu.forward(conv.forward(x))
        fc.shape = h.shape
        return fc.forward(h.reshape(h.shape[0], -1))

    def backward(dy):
        dh, _, _ = fc.backward(dy)
        return conv.backward(relu.backward(dh.reshape(fc.shape)))

    if not end_to_end:
        layers["flat"] = wrap_functions(lambda x: (x.reshape(x.shape[0], -1), x.shape),
                                        lambda d, shape: d.reshape(shape), spec.layers[2])
        layers = {k: layers[k] for k in ("conv1", "relu", "flat", "fc")}
        return wrap_network(layers, spec)
    return wrap_network(layers, spec, forward=forward, backward=backward)


@pytest.mark.parametrize("end_to_end", [True, False])
def test_network_whose_first_layer_computes_no_input_gradient(end_to_end: bool) -> None:
    net = _first_layer_network(end_to_end)
    assert net.input_grad is False
    report = check_network(net, input_shape=(2, 2, 5, 5))
    assert report.ok, str(report)
    assert "input_grad=False" in report.layer("conv1").message
    if end_to_end:
        entry = report.layer("(network)")
        assert "input" not in [t.name for t in entry.tensors]
        assert "input gradient not computed (input_grad=False on the first layer)" in entry.message


def test_input_grad_false_only_on_the_first_layer() -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 4), S.ReLU("relu"), S.Linear("fc2", 4, 3)])
    layers = {"fc1": wrap_layer(Dense(6, 4), spec.layers[0], layout=IN_OUT), "relu": Relu(),
              "fc2": wrap_layer(Dense(4, 3), spec.layers[2], layout=IN_OUT, input_grad=False)}
    with pytest.raises(AdapterError, match=r"wrap_network: 'fc2' is declared input_grad=False, but only the network's "
                                           r"first layer \('fc1'\) may compute no input gradient"):
        wrap_network(layers, spec)


# --------------------------------------------------------------------------- batched=False with sgd=


class OneExampleDense:
    """Written for one example x (D,); backward applies its own SGD step and keeps nothing."""

    def __init__(self, lr=0.05, seed=2, bug=False):
        rng = np.random.default_rng(seed)
        self.W, self.b, self.lr, self.bug = rng.normal(size=(6, 4)) * 0.3, rng.normal(size=4), lr, bug

    def forward(self, x):
        assert x.ndim == 1, "one example"
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        dx = self.W @ dy
        self.W -= self.lr * np.outer(self.x, dy) * (0.5 if self.bug else 1.0)
        self.b -= self.lr * dy
        return dx


@pytest.mark.parametrize("seed", [0, 3])
def test_one_example_at_a_time_with_sgd_inside_backward(seed: int) -> None:
    user = OneExampleDense()
    before = fingerprint(user.W), fingerprint(user.b)
    layer = wrap_layer(user, S.Linear("fc", 6, 4), layout=IN_OUT, batched=False, sgd=(None, 0.05))
    assert check_layer(layer, input_shape=(4, 6), seed=seed).ok
    assert (fingerprint(user.W), fingerprint(user.b)) == before  # every step undone bit for bit
    bad = check_layer(wrap_layer(OneExampleDense(bug=True), S.Linear("fc", 6, 4), layout=IN_OUT, batched=False,
                                 sgd=(None, 0.05)), input_shape=(4, 6), seed=seed)
    assert verdict(bad) == "backward" and [t.name for t in bad.layers[0].tensors if not t.ok] == ["weight"]


def test_one_example_sgd_restores_the_weights_when_a_later_example_raises() -> None:
    class FailsOnSecond(OneExampleDense):
        calls = 0

        def backward(self, dy):
            FailsOnSecond.calls += 1
            dx = super().backward(dy)  # the step has been taken
            if FailsOnSecond.calls == 2:
                raise RuntimeError("boom")
            return dx

    user = FailsOnSecond()
    before = fingerprint(user.W), fingerprint(user.b)
    entry = check_layer(wrap_layer(user, S.Linear("fc", 6, 4), layout=IN_OUT, batched=False, sgd=(None, 0.05)),
                        input_shape=(3, 6)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward") and entry.message.startswith("RuntimeError: boom")
    assert (fingerprint(user.W), fingerprint(user.b)) == before


class OneImageConvWithStep:
    """One (C, H, W) image; the gradients are applied by step(), never exposed."""

    def __init__(self, lr=0.1, seed=5):
        rng = np.random.default_rng(seed)
        self.W, self.b, self.lr = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), lr

    def forward(self, x):
        out, self.cache = conv_single_forward(x, self.W, self.b)
        return out

    def backward(self, dout):
        dx, self._dW, self._db = conv_single_backward(dout, self.cache)
        return dx

    def step(self):
        self.W -= self.lr * self._dW
        self.b -= self.lr * self._db


def test_one_image_at_a_time_with_a_step_method() -> None:
    user = OneImageConvWithStep()
    before = fingerprint(user.W)
    layer = wrap_layer(user, S.Conv2d("conv", 2, 3, 3), batched=False, sgd=("step", 0.1))
    assert check_layer(layer, input_shape=(3, 2, 5, 5)).ok
    assert fingerprint(user.W) == before


# --------------------------------------------------------------------------- flush= (numpy-ml style)


class NumpyMLDense:
    """numpy-ml's FullyConnected: every forward appends its input to self.X, backward loops
    over the cached inputs and accumulates; flush_gradients() clears both."""

    def __init__(self, n_in=5, n_out=3, seed=6):
        rng = np.random.default_rng(seed)
        self.parameters = {"W": rng.normal(size=(n_in, n_out)) * 0.4, "b": rng.normal(size=n_out)}
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}
        self.X = []

    def forward(self, X, retain_derived=True):
        if retain_derived:
            self.X.append(X)
        return X @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dLdy, retain_grads=True):
        dLdy = dLdy if isinstance(dLdy, list) else [dLdy]
        dX = []
        for dy, x in zip(dLdy, self.X):
            dX.append(dy @ self.parameters["W"].T)
            if retain_grads:
                self.gradients["W"] += x.T @ dy
                self.gradients["b"] += dy.sum(axis=0)
        return dX[0] if len(self.X) == 1 else dX

    def flush_gradients(self):
        self.X = []
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}


def test_numpy_ml_flush_before_every_forward() -> None:
    spec = S.Linear("fc", 5, 3)
    user = NumpyMLDense()
    report = check_layer(wrap_layer(user, spec, layout=IN_OUT, flush="flush_gradients"), input_shape=(4, 5))
    assert report.ok, str(report)
    entry = check_layer(wrap_layer(NumpyMLDense(), spec, layout=IN_OUT, zero_grad="flush_gradients"),
                        input_shape=(4, 5)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert "backward returned an input gradient of shape (0,)" in entry.message
    assert ("flush_gradients() also empties what the forward cached (the input), as numpy-ml's flush_gradients() "
            "does; declare flush='flush_gradients' instead of zero_grad= (called before every forward)") in entry.message


def test_zero_grad_that_empties_the_cache_then_an_index_error() -> None:
    class LastInput(NumpyMLDense):
        def backward(self, dLdy):
            x = self.X[-1]  # IndexError once the cache is empty
            self.gradients["W"] += x.T @ dLdy
            self.gradients["b"] += dLdy.sum(axis=0)
            return dLdy @ self.parameters["W"].T

    spec = S.Linear("fc", 5, 3)
    entry = check_layer(wrap_layer(LastInput(), spec, layout=IN_OUT, zero_grad="flush_gradients"),
                        input_shape=(4, 5)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "backward")
    assert entry.message.startswith("layer 'fc': backward raised IndexError: list index out of range at ")
    assert "right after flush_gradients() (zero_grad='flush_gradients'); likely cause" in entry.message
    assert "declare flush='flush_gradients' instead of zero_grad=" in entry.message
    assert check_layer(wrap_layer(LastInput(), spec, layout=IN_OUT, flush="flush_gradients"), input_shape=(4, 5)).ok


def test_flush_option_errors() -> None:
    spec = S.Linear("fc", 5, 3)
    with pytest.raises(AdapterError, match=r"layer 'fc': NumpyMLDense has no method flush\(\) \(declared as an option\)"):
        wrap_layer(NumpyMLDense(), spec, layout=IN_OUT, flush="flush")
    with pytest.raises(AdapterError, match="layer 'fc': flush= takes the name of a method of NumpyMLDense, e.g. "
                                           "flush=\"flush_gradients\", got True"):
        wrap_layer(NumpyMLDense(), spec, layout=IN_OUT, flush=True)


def test_network_flushes_numpy_ml_layers_before_its_own_pass() -> None:
    spec = S.Sequential([S.Linear("fc1", 5, 3), S.ReLU("relu"), S.Linear("fc2", 3, 2)])
    fc1, relu, fc2 = NumpyMLDense(5, 3, seed=1), Relu(), NumpyMLDense(3, 2, seed=2)

    def forward(x):
        return fc2.forward(relu.forward(fc1.forward(x)))

    def backward(dy):
        return fc1.backward(relu.backward(fc2.backward(dy)))

    layers = {"fc1": wrap_layer(fc1, spec.layers[0], layout=IN_OUT, flush="flush_gradients"), "relu": relu,
              "fc2": wrap_layer(fc2, spec.layers[2], layout=IN_OUT, flush="flush_gradients")}
    report = check_network(wrap_network(layers, spec, forward=forward, backward=backward), input_shape=(4, 5))
    assert report.ok, str(report)


def test_network_reads_gradients_its_layers_returned() -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 4), S.ReLU("relu"), S.Linear("fc2", 4, 3)])
    fc1, relu, fc2 = Dense(6, 4, seed=1, form="dict"), Relu(), Dense(4, 3, seed=2, form="list")

    def forward(x):
        return fc2.forward(relu.forward(fc1.forward(x)))

    def backward(dy):
        dh, _ = fc2.backward(dy)
        dx, _ = fc1.backward(relu.backward(dh))
        return dx

    layers = {"fc1": wrap_layer(fc1, spec.layers[0], layout=IN_OUT), "relu": relu,
              "fc2": wrap_layer(fc2, spec.layers[2], layout=IN_OUT)}
    report = check_network(wrap_network(layers, spec, forward=forward, backward=backward), input_shape=(4, 6))
    assert report.ok, str(report)


def test_snapshot_of_a_network_whose_first_layer_computes_no_input_gradient(tmp_path) -> None:
    from harness import compare_snapshot, load_snapshot, record_snapshot

    net = _first_layer_network(end_to_end=True)
    json_path, _ = record_snapshot(net, input_shape=(2, 2, 5, 5)).save(tmp_path / "net")
    snap = load_snapshot(json_path)  # the manifest without an input gradient validates
    assert "input" not in snap.entries["conv1"].arrays and "input" not in snap.entries["(network)"].arrays
    assert "input" in snap.entries["fc"].arrays
    same = compare_snapshot(net, snap)
    assert same.ok, str(same)
    net.layers["conv1"].obj.bug = True  # a change of the code is still seen, in the gradients there are
    changed = compare_snapshot(net, snap)
    assert {t.name: t.status for t in changed.entry("conv1").tensors} == {"output": "same", "weight": "same",
                                                                           "bias": "broken"}


# --------------------------------------------------------------------------- a missing declaration names its option


def test_missing_declarations_name_their_option() -> None:
    rng = np.random.default_rng(0)
    conv = S.Conv2d("conv", 2, 3, 3)
    params = [rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)]
    entry = check_layer(wrap_functions(conv_single_forward, conv_single_backward, conv, params),
                        input_shape=(3, 2, 5, 6)).layers[0]
    # confirmed by a run on each example alone (harness.hints), so said once, without a question mark
    assert entry.message.endswith("the code takes one example at a time: run on each example alone, as (2, 5, 6), it "
                                  "runs and reproduces the reference; declare batched=False"), entry.message
    assert entry.message.count("batched=False") == 1, entry.message

    def gray_forward(img, w, b):
        return conv_single_forward(img[None], w, b)

    gray = [rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4)]
    entry = check_layer(wrap_functions(gray_forward, conv_single_backward, S.Conv2d("conv", 1, 4, 3), gray, batched=False),
                        input_shape=(2, 1, 6, 5)).layers[0]
    assert (entry.verdict, entry.error_side) == ("error", "forward")
    # confirmed by a run on each example as (H, W) (harness.hints): said once, as a finding
    assert entry.message.endswith("the code takes its single-channel examples as (H, W), with no channel axis: run on "
                                  "each example alone, as (6, 5), it runs and reproduces the reference; declare "
                                  "channel_axis=False"), entry.message
    assert entry.message.count("channel_axis=False") == 1, entry.message

    # an argument missing at the call itself is a configuration error naming the option
    with pytest.raises(AdapterError, match=r"leaky_relu_forward\(\) missing 1 required keyword-only argument: 'slope' "
                                           r"\(called as leaky_relu_forward\(x\)\); pass it with kwargs=\{'slope': \.\.\.\}"):
        check_layer(wrap_functions(leaky_relu_forward, leaky_relu_backward, S.LeakyReLU("act", 0.1)), input_shape=(3, 7))

    class NeedsLr(Dense):
        def backward(self, dy, lr):
            return super().backward(dy)

    with pytest.raises(AdapterError, match=r"backward\(\) missing 1 required positional argument: 'lr'.*backward_args="):
        check_layer(wrap_layer(NeedsLr(), S.Linear("fc", 6, 4), layout=IN_OUT), input_shape=(5, 6))

    with pytest.raises(AdapterError, match=r"cannot find the gradient of 'weight' .* or, if it is only applied to the "
                                           r"weights, declare sgd=\('step', lr\) \(its step\(\) applies it\) or "
                                           r"sgd=\(None, lr\) \(backward applies it\)"):
        check_layer(wrap_layer(OneImageConvWithStep(), conv, batched=False), input_shape=(3, 2, 5, 5))

    entry = check_layer(wrap_layer(NumpyMLDense(), S.Linear("fc", 5, 3), layout=IN_OUT), input_shape=(4, 5)).layers[0]
    assert entry.message.endswith("it is a list of 1 array: one input gradient per input cached by earlier forwards "
                                  "(the forward appends its input to a list until flushed, as numpy-ml's layers do): "
                                  "declare flush='flush_gradients' (called before every forward)")
