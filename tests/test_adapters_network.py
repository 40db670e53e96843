"""Wrapping whole handwritten networks: chained layers and the user's own network code agree
with the PyTorch reference (NCHW/in_out and NHWC/HWIO/HWC-flatten, Residual); a CS231n
TwoLayerNet's loss(X, y); bit-for-bit restoration; a wiring bug; every error path."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, WrappedLayer, wrap_functions, wrap_layer
from harness.adapters.layouts import Layout, flattened_inputs
from harness.adapters.network import LossModel, WrappedNetwork, wrap_loss_model, wrap_network
from reference_models import build

TOL = 1e-10

# --------------------------------------------------------------------------- handwritten numpy layers


class Conv:
    """Cross-correlation, stride 1, zero padding; NCHW + OIHW, or NHWC + HWIO."""

    def __init__(self, cin: int, cout: int, k: int, pad: int, nhwc: bool = False):
        self.nhwc, self.pad, self.k = nhwc, pad, k
        self.W = np.zeros((k, k, cin, cout) if nhwc else (cout, cin, k, k))
        self.b = np.zeros(cout)

    def _oihw(self, w):
        return w.transpose(3, 2, 0, 1) if self.nhwc else w

    def forward(self, x):
        x = x.transpose(0, 3, 1, 2) if self.nhwc else x
        p, k, w = self.pad, self.k, self._oihw(self.W)
        self.xp = xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        oh, ow = xp.shape[2] - k + 1, xp.shape[3] - k + 1
        out = sum(np.einsum("nchw,oc->nohw", xp[:, :, u:u + oh, v:v + ow], w[:, :, u, v])
                  for u in range(k) for v in range(k)) + self.b[None, :, None, None]
        return out.transpose(0, 2, 3, 1) if self.nhwc else out

    def backward(self, dout):
        dout = dout.transpose(0, 3, 1, 2) if self.nhwc else dout
        p, k, w = self.pad, self.k, self._oihw(self.W)
        oh, ow = dout.shape[2:]
        dxp, dw = np.zeros_like(self.xp), np.zeros_like(w)
        for u in range(k):
            for v in range(k):
                dxp[:, :, u:u + oh, v:v + ow] += np.einsum("nohw,oc->nchw", dout, w[:, :, u, v])
                dw[:, :, u, v] = np.einsum("nchw,nohw->oc", self.xp[:, :, u:u + oh, v:v + ow], dout)
        self.dW = dw.transpose(2, 3, 1, 0) if self.nhwc else dw
        self.db = dout.sum(axis=(0, 2, 3))
        dx = dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]
        return dx.transpose(0, 2, 3, 1) if self.nhwc else dx


class ReLU:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class MaxPool2:
    """2x2, stride 2, gradient to the first maximum of each window (as PyTorch: ties after a
    ReLU are common); ``nhwc`` pools axes 1, 2 instead of 2, 3."""

    def __init__(self, nhwc: bool = False):
        self.nhwc = nhwc

    def forward(self, x):
        x = x.transpose(0, 3, 1, 2) if self.nhwc else x
        n, c, h, w = x.shape
        win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        self.onehot = np.eye(4)[win.argmax(axis=-1)]
        out = win.max(axis=-1)
        return out.transpose(0, 2, 3, 1) if self.nhwc else out

    def backward(self, dout):
        dout = dout.transpose(0, 3, 1, 2) if self.nhwc else dout
        n, c, h2, w2, _ = self.onehot.shape
        dwin = self.onehot * dout[..., None]
        dx = dwin.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)
        return dx.transpose(0, 2, 3, 1) if self.nhwc else dx


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


class Linear:
    """y = x @ W + b (in_out)."""

    def __init__(self, fin: int, fout: int):
        self.W, self.b = np.zeros((fin, fout)), np.zeros(fout)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T


class Net:
    """The user's own network: calls its layers in order, with a wiring bug if asked."""

    def __init__(self, layers: list, skip: int | None = None):
        self.layers, self.skip = layers, skip

    def _used(self):
        return [l for i, l in enumerate(self.layers) if i != self.skip]

    def forward(self, x):
        for layer in self._used():
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self._used()):
            dout = layer.backward(dout)
        return dout


NAMES = ["conv1", "relu1", "pool1", "flat", "fc1", "relu2", "fc2"]
X_SHAPE = (2, 3, 6, 6)


def make_spec() -> S.Sequential:
    return S.Sequential([
        S.Conv2d("conv1", 3, 4, 3, padding=1), S.ReLU("relu1"), S.MaxPool2d("pool1", 2), S.Flatten("flat"),
        S.Linear("fc1", 36, 10), S.ReLU("relu2"), S.Linear("fc2", 10, 5),
    ])


def make_net(nhwc: bool = False, skip: int | None = None) -> Net:
    return Net([Conv(3, 4, 3, 1, nhwc), ReLU(), MaxPool2(nhwc), Flatten(), Linear(36, 10), ReLU(), Linear(10, 5)], skip)


@pytest.fixture(scope="module")
def case():
    spec = make_spec()
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=X_SHAPE), rng.normal(size=(2, 5))
    params = S.init_params(spec, X_SHAPE, seed=3)
    return spec, x, g, params, build("torch", spec).vjp(params, x, g)


def assert_close(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
    assert err < TOL, f"{what}: rel error {err:.2e}"


def check_against(net: WrappedNetwork, ref, x, g, mode=None):
    assert_close(net.forward(x, mode=mode), ref.output, "output")
    assert_close(net.backward(g), ref.input_grad, "input grad")
    grads = net.param_grads()
    assert set(grads) == set(ref.param_grads)
    for k, v in ref.param_grads.items():
        assert_close(grads[k], v, k)


# --------------------------------------------------------------------------- agreement with the reference


LAYOUTS = {
    "nchw": (False, Layout(linear="in_out")),
    "nhwc": (True, Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_chained_and_end_to_end_match_reference(case, name) -> None:
    spec, x, g, params, ref = case
    nhwc, layout = LAYOUTS[name]
    user = make_net(nhwc)
    # input_shape in the declared layout: (N, H, W, C) under NHWC; forward/backward stay canonical
    shape = (X_SHAPE[0], *X_SHAPE[2:], X_SHAPE[1]) if nhwc else X_SHAPE
    net = wrap_network(dict(zip(NAMES, user.layers)), spec, forward=user.forward, backward=user.backward,
                       layout=layout, input_shape=shape)
    assert net.covered == NAMES and net.missing == [] and net.end_to_end and net.input_shape == shape
    net.set_params(params)
    got = net.get_params()
    assert list(got) == list(params)  # forward order, canonical names
    for k in params:
        assert_close(got[k], params[k], k)
    check_against(net, ref, x, g)  # end to end (the default with forward/backward)
    check_against(net, ref, x, g, mode="chain")
    outs, ogs = net.layer_outputs(), net.layer_output_grads()
    assert list(outs) == NAMES
    for p in NAMES:
        assert_close(outs[p], ref.outputs[p], p)
        assert_close(ogs[p], ref.output_grads[p], p)
    if nhwc:  # the HWC flatten really reorders: fc1 got its (C, H, W)
        assert net.layers["fc1"].features_in == (4, 3, 3) == flattened_inputs(spec, X_SHAPE)["fc1"]
        assert not np.allclose(user.layers[4].W.T, params["fc1.weight"])


def test_hwc_features_as_the_network_output() -> None:
    spec = S.Sequential([S.Conv2d("conv1", 2, 3, 3), S.ReLU("relu"), S.Flatten("flat"), S.ReLU("relu2")])
    x_shape = (2, 2, 5, 4)  # H != W: a wrong (C, H, W) would show
    rng = np.random.default_rng(5)
    x, g = rng.normal(size=x_shape), rng.normal(size=(2, 3 * 3 * 2))
    params = S.init_params(spec, x_shape, seed=2)
    ref = build("torch", spec).vjp(params, x, g)
    user = Net([Conv(2, 3, 3, 0, nhwc=True), ReLU(), Flatten(), ReLU()])
    net = wrap_network(dict(zip(["conv1", "relu", "flat", "relu2"], user.layers)), spec, forward=user.forward,
                       backward=user.backward, layout=Layout(data="NHWC", kernel="HWIO", flatten="HWC"),
                       input_shape=(2, 5, 4, 2))  # NHWC, as declared
    net.set_params(params)
    for mode in ("network", "chain"):
        check_against(net, ref, x, g, mode=mode)
    with pytest.raises(AdapterError, match=r"input shape \(2, 4, 5, 2\) differs from input_shape=\(2, 5, 4, 2\) "
                                           r"given to wrap_network \(both in the declared Layout\(data='NHWC'"):
        net.forward(x.transpose(0, 1, 3, 2))


def test_chained_only_without_network_passes(case) -> None:
    spec, x, g, params, ref = case
    user = make_net()
    net = wrap_network(dict(zip(NAMES, user.layers)), spec, layout=Layout(linear="in_out"))
    assert not net.end_to_end and "chained" in repr(net)
    net.set_params(params)
    check_against(net, ref, x, g)


def test_prewrapped_function_layer_is_used_as_is(case) -> None:
    spec, x, g, params, ref = case

    def affine_forward(x, w, b):
        return x @ w + b, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)

    user = make_net()
    fc2 = wrap_functions(affine_forward, affine_backward, spec.layers[-1], {"weight": np.zeros((10, 5)), "bias": np.zeros(5)},
                         layout=Layout(linear="in_out"))
    layers = {**dict(zip(NAMES[:-1], user.layers[:-1])), "fc2": fc2}
    net = wrap_network(layers, spec, layout=Layout(linear="in_out"))
    assert net.layers["fc2"] is fc2
    net.set_params(params)
    check_against(net, ref, x, g)


def test_uncovered_parameter_free_layers_need_the_network(case) -> None:
    spec, x, g, params, ref = case

    class InlineNet:  # ReLUs and the flatten done inline: no objects for them
        def __init__(self):
            self.conv, self.pool, self.fc1, self.fc2 = Conv(3, 4, 3, 1), MaxPool2(), Linear(36, 10), Linear(10, 5)

        def forward(self, x):
            self.a1 = self.conv.forward(x)
            p = self.pool.forward(np.maximum(self.a1, 0))
            self.a2 = self.fc1.forward(p.reshape(len(p), -1))
            return self.fc2.forward(np.maximum(self.a2, 0))

        def backward(self, d):
            d = self.fc1.backward(self.fc2.backward(d) * (self.a2 > 0))
            return self.conv.backward(self.pool.backward(d.reshape(-1, 4, 3, 3)) * (self.a1 > 0))

    m = InlineNet()
    layers = {"conv1": m.conv, "pool1": m.pool, "fc1": m.fc1, "fc2": m.fc2}
    net = wrap_network(layers, spec, forward=m.forward, backward=m.backward, layout=Layout(linear="in_out"))
    assert net.covered == ["conv1", "pool1", "fc1", "fc2"] and net.missing == ["relu1", "flat", "relu2"]
    net.set_params(params)
    check_against(net, ref, x, g)
    with pytest.raises(AdapterError, match=r"cannot chain the layers: no user layer for \['relu1', 'flat', 'relu2'\]"):
        net.forward(x, mode="chain")
    with pytest.raises(AdapterError, match="needs a chained forward"):
        net.layer_outputs()


def test_residual_spec_chains_through_block_and_shortcut() -> None:
    spec = S.Sequential([
        S.Conv2d("stem", 2, 3, 3, padding=1),
        S.Residual("res", block=[S.Conv2d("conv1", 3, 3, 3, padding=1), S.ReLU("relu")],
                   shortcut=S.Conv2d("down", 3, 3, 1), post=[S.ReLU("out")]),
    ])
    x_shape = (2, 2, 5, 5)
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=x_shape), rng.normal(size=(2, 3, 5, 5))
    params = S.init_params(spec, x_shape, seed=1)
    ref = build("torch", spec).vjp(params, x, g)
    layers = {"stem": Conv(2, 3, 3, 1), "res.conv1": Conv(3, 3, 3, 1), "res.relu": ReLU(), "res.down": Conv(3, 3, 1, 0),
              "res.out": ReLU()}
    net = wrap_network(layers, spec)
    net.set_params(params)
    check_against(net, ref, x, g)
    assert list(net.layer_outputs()) == [p for p, _ in S.walk(spec)]
    for p, v in net.layer_outputs().items():
        assert_close(v, ref.outputs[p], p)


def test_wiring_bug_shows_end_to_end_only(case) -> None:
    spec, x, g, params, ref = case
    user = make_net(skip=5)  # the network forgets relu2 (forward and backward alike)
    net = wrap_network(dict(zip(NAMES, user.layers)), spec, forward=user.forward, backward=user.backward,
                       layout=Layout(linear="in_out"))
    net.set_params(params)
    chained = net.forward(x, mode="chain")
    assert_close(chained, ref.output, "chained")  # every layer is right on its own
    e2e = net.forward(x)
    assert np.max(np.abs(e2e - chained)) > 1e-3


def test_preserved_restores_every_parameter_bit_for_bit(case) -> None:
    spec, x, g, params, ref = case
    user = make_net()
    net = wrap_network(dict(zip(NAMES, user.layers)), spec, forward=user.forward, backward=user.backward,
                       layout=Layout(linear="in_out"))
    net.set_params(params)
    user.layers[0].W[0, 0, 0, 0] = -0.0  # sign bits count
    arrays = [a for l in user.layers for a in (getattr(l, "W", None), getattr(l, "b", None)) if a is not None]
    before = [fingerprint(a) for a in arrays]
    with pytest.raises(RuntimeError, match="boom"):
        with net.preserved():
            net.set_params({k: v + 1.0 for k, v in params.items()})
            user.layers[4].W *= 3  # the user's own code writing in place
            net.forward(x)
            net.backward(g)
            raise RuntimeError("boom")
    assert [fingerprint(a) for a in arrays] == before
    assert [fingerprint(getattr(l, n)) for l in user.layers for n in ("W", "b") if hasattr(l, n)] == before


# --------------------------------------------------------------------------- CS231n loss model


class TwoLayerNet:
    """CS231n assignment 1/2 style: params dict, loss(X, y) -> (loss, grads), loss(X) -> scores."""

    def __init__(self, d: int, h: int, c: int):
        rng = np.random.default_rng(0)
        self.params = {"W1": rng.normal(size=(d, h)), "b1": np.zeros(h), "W2": rng.normal(size=(h, c)), "b2": np.zeros(c)}
        self.reg = 0.0

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        x = X.reshape(len(X), -1)
        h = np.maximum(0, x @ W1 + b1)
        scores = h @ W2 + b2
        if y is None:
            return scores
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = len(X)
        loss = -np.log(p[np.arange(n), y]).mean() + 0.5 * self.reg * ((W1 ** 2).sum() + (W2 ** 2).sum())
        ds = p.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        dh = (ds @ W2.T) * (h > 0)
        return loss, {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ ds, "b2": ds.sum(0)}


@pytest.mark.parametrize("declared", [False, True])
def test_two_layer_net_loss_matches_reference(declared) -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 7), S.ReLU("relu"), S.Linear("fc2", 7, 4)])
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 6)), rng.integers(0, 4, size=5)
    params = S.init_params(spec, x.shape, seed=4)
    model = TwoLayerNet(6, 7, 4)
    where = {"fc1.weight": "params['W1']", "fc1.bias": "params['b1']", "fc2.weight": "params['W2']",
             "fc2.bias": "params['b2']"} if declared else None
    lm = wrap_loss_model(model, spec, loss=S.SoftmaxCrossEntropy(), params=where, layout=Layout(linear="in_out"))
    assert isinstance(lm, LossModel) and {k: r.path for k, r in lm.params.items()}["fc2.bias"] == "params['b2']"
    lm.set_params(params)
    assert np.array_equal(model.params["W1"], params["fc1.weight"].T)
    for k, v in lm.get_params().items():
        assert_close(v, params[k], k)
    ref = build("torch", spec).loss_vjp(params, x, S.SoftmaxCrossEntropy(), y)
    loss, grads = lm.loss_and_grads(x, y)
    assert abs(loss - ref.loss) < TOL * abs(ref.loss)
    assert set(grads) == set(ref.param_grads)
    for k, v in ref.param_grads.items():
        assert_close(grads[k], v, k)
    assert_close(lm.scores(x), ref.output, "scores")


def test_loss_model_preserved_bit_for_bit() -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 7), S.ReLU("relu"), S.Linear("fc2", 7, 4)])
    model = TwoLayerNet(6, 7, 4)
    model.params["b1"] = model.params["b1"].astype(np.float32)  # dtype kept too
    lm = wrap_loss_model(model, spec, loss=S.SoftmaxCrossEntropy(), layout=Layout(linear="in_out"))
    originals = dict(model.params)
    before = {k: fingerprint(v) for k, v in model.params.items()}
    with pytest.raises(ValueError, match="inside"):
        with lm.preserved():
            lm.set_params({k: v * 0 + 2 for k, v in lm.get_params().items()})
            model.params["W2"] = np.ones((7, 4))  # replaced, not written into
            raise ValueError("inside")
    assert {k: fingerprint(v) for k, v in model.params.items()} == before
    assert all(model.params[k] is originals[k] for k in originals)


# --------------------------------------------------------------------------- error paths


class NoParamsLayer:
    def forward(self, x):
        return x

    def backward(self, d):
        return d


def _net_errors(spec):
    user = make_net()
    full = dict(zip(NAMES, user.layers))
    fwd = user.forward
    return [
        (dict(full, conv_1=Conv(3, 4, 3, 1)), {}, r"'conv_1' is not a layer of the spec \(did you mean 'conv1'\?\); its layers are \[conv1,"),
        ({"fc2": user.layers[6], "conv1": user.layers[0]}, {}, r"not in forward order: 'conv1' comes after 'fc2'"),
        ({k: v for k, v in full.items() if k != "fc1"}, {}, r"no layer given for \['fc1'\], which have parameters"),
        (full, {"forward": fwd}, "pass both forward= and backward="),
        (full, {"forward": 1, "backward": 2}, "forward= must be callable"),
        (full, {"layout": "NHWC"}, "layout must be a harness.Layout"),
        (list(full.items()), {}, "layers must be a mapping"),
        (dict(full, fc1=wrap_layer(user.layers[4], S.Linear("fc1", 36, 11), layout=Layout(linear="in_out"))), {},
         "the layer given for 'fc1' was wrapped with spec"),
        # wrapped without a spec: refused here, not a "layers holds None" SpecError deep in check_network
        (dict(full, fc1=wrap_layer(user.layers[4], None, layout=Layout(linear="in_out"))), {},
         r"the layer given for 'fc1' was wrapped with spec None, but the network's spec has Linear"),
        (full, {"layout": Layout(linear="in_out", flatten="HWC")}, "pass input_shape="),
    ]


def test_network_construction_errors(case) -> None:
    spec = case[0]
    for layers, kw, message in _net_errors(spec):
        with pytest.raises(AdapterError, match=message):
            wrap_network(layers, spec, **{"layout": Layout(linear="in_out"), **kw})
    with pytest.raises(AdapterError, match="spec must be a layer spec"):
        wrap_network({}, "conv")  # type: ignore[arg-type]
    res = S.Sequential([S.Residual("res", block=[S.ReLU("a")]), S.ReLU("b")])
    with pytest.raises(AdapterError, match=r"'res' is a Residual, not a leaf layer; map its layers instead: \[res.a\]"):
        wrap_network({"res": NoParamsLayer()}, res)


def test_network_runtime_errors(case) -> None:
    spec, x, g, params, ref = case
    user = make_net()
    full = dict(zip(NAMES, user.layers))
    chained = wrap_network(full, spec, layout=Layout(linear="in_out"))
    with pytest.raises(AdapterError, match="backward called before forward"):
        chained.backward(g)
    with pytest.raises(AdapterError, match="mode='network' needs the network's own passes"):
        chained.forward(x, mode="network")
    with pytest.raises(AdapterError, match="mode must be 'network' or 'chain'"):
        chained.forward(x, mode="layers")
    chained.forward(x)
    with pytest.raises(AdapterError, match=r"upstream gradient shape \(2, 4\) differs from the output shape \(2, 5\)"):
        chained.backward(g[:, :4])
    with pytest.raises(AdapterError, match=r"\['fc1.wieght'\] are not parameters .*did you mean 'fc1.weight'"):
        chained.set_params({"fc1.wieght": params["fc1.weight"]})

    def bad(forward=None, backward=None):
        return wrap_network(full, spec, forward=forward or user.forward, backward=backward or user.backward,
                            layout=Layout(linear="in_out"))

    with pytest.raises(AdapterError, match=r"network forward returned shape \(2, 10\); the spec expects \(2, 5\)"):
        bad(forward=lambda x: Net(user.layers[:-1]).forward(x)).forward(x)
    with pytest.raises(AdapterError, match="network forward output is None"):
        bad(forward=lambda x: None).forward(x)
    with pytest.raises(AdapterError, match=r"network forward output has a non-finite value nan at \[0, 0\]"):
        bad(forward=lambda x: np.full((2, 5), np.nan)).forward(x)
    net = bad(backward=lambda d: d)
    net.forward(x)
    with pytest.raises(AdapterError, match=r"input gradient of shape \(2, 5\); expected \(2, 3, 6, 6\)"):
        net.backward(g)
    mutating = bad(forward=lambda x: (x.__setitem__((0, 0, 0, 0), 9.0), user.forward(x))[1])
    mutating.forward(x)
    assert mutating.input_mutated


def test_loss_model_errors() -> None:
    spec = S.Sequential([S.Linear("fc1", 6, 7), S.ReLU("relu"), S.Linear("fc2", 7, 4)])
    ce, lay = S.SoftmaxCrossEntropy(), Layout(linear="in_out")
    model = TwoLayerNet(6, 7, 4)
    cases = [
        (dict(loss="ce"), "loss must be a loss spec"),
        (dict(method="compute_loss"), r"has no method compute_loss\(\)"),
        (dict(params={"fc1.wieght": "params['W1']"}), r"'fc1.wieght' is not a parameter of the spec \(did you mean 'fc1.weight'\?\)"),
        (dict(params={"fc1.weight": "params['W9']"}), r"declared at \"params\['W9'\]\", but TwoLayerNet has nothing there"),
        (dict(params={"fc1.weight": "params['W1']"}), r"no location given for \['fc1.bias', 'fc2.weight', 'fc2.bias'\]"),
        (dict(layout="in_out"), "layout must be a harness.Layout"),
    ]
    for kw, message in cases:
        with pytest.raises(AdapterError, match=message):
            wrap_loss_model(model, spec, **{"loss": ce, "layout": lay, **kw})

    class Bare:
        W1 = np.zeros((6, 7))

        def loss(self, X, y=None):
            return 0.0

    with pytest.raises(AdapterError, match=r"cannot find 'fc1.bias' on Bare \(tried params\['b1'\], b1\)"):
        wrap_loss_model(Bare(), spec, loss=ce, layout=lay)
    conv = S.Sequential([S.Conv2d("c", 1, 2, 3), S.Flatten("f"), S.Linear("fc", 8, 2)])
    with pytest.raises(AdapterError, match="pass input_shape="):
        wrap_loss_model(model, conv, loss=ce, params={}, layout=Layout(flatten="HWC"))

    lm = wrap_loss_model(model, spec, loss=ce, layout=lay)
    x, y = np.ones((3, 6)), np.array([0, 1, 2])
    with pytest.raises(AdapterError, match=r"set_params: 'fc3.weight' is not a parameter .*did you mean"):
        lm.set_params({"fc3.weight": np.zeros((4, 7))})
    real = model.loss
    for result, message in [
        (1.0, r"must return \(loss, grads\), got float"),
        ((np.nan, {}), "expected one finite number"),
        ((1.0, [1]), "must return grads as a dict"),
        ((1.0, {"W1": np.zeros((6, 7))}), r"grads has no 'b1' \(the gradient of 'fc1.bias'\); it has \['W1'\]"),
        ((1.0, {"W1": np.zeros((6, 8))}), r"gradient of 'fc1.weight' \(grads\['W1'\]\) has shape \(6, 8\) but the parameter has \(6, 7\)"),
    ]:
        model.loss = lambda X, y=None, r=result: r
        with pytest.raises(AdapterError, match=message):
            lm.loss_and_grads(x, y)
    model.loss = lambda X, y=None: np.zeros((3, 5))
    with pytest.raises(AdapterError, match=r"returned shape \(3, 5\); the spec expects \(3, 4\)"):
        lm.scores(x)
    model.loss = real
    assert isinstance(lm.loss_and_grads(x, y)[0], float)


def test_wrapped_layers_are_wrapped_layers(case) -> None:
    spec = case[0]
    user = make_net()
    net = wrap_network(dict(zip(NAMES, user.layers)), spec, layout=Layout(linear="in_out"))
    assert all(isinstance(w, WrappedLayer) for w in net.layers.values())
    assert net.layers["fc1"].name == "fc1" and net.layers["fc1"].obj is user.layers[4]
