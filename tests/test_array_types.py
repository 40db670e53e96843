"""Issue 13, decision 11: user code that computes with torch tensors, jax arrays or CuPy arrays
is handed its own array type (declared with ``array_type=``, or read off its parameters), in
its own dtype; what it returns is read back; its parameters are restored bit for bit and
torch's ``requires_grad`` / ``.grad`` are left as they were. Layers are written the way
such code is written: a conv by ``unfold`` and matmuls, a CS231n pair with torch ops, a
jax.numpy layer whose parameters are replaced, not written into."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_functions, wrap_layer
from harness.adapters.layouts import Layout
from harness.adapters.network import wrap_network
from harness.check import check_layer, check_network

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

CONV = S.Conv2d("conv", 2, 3, 3, padding=1)
X_CONV = (2, 2, 4, 4)

# --------------------------------------------------------------------------- torch code, written by hand


class TorchConv:
    """A conv as im2col in torch: ``F.unfold`` then a matmul; the backward by hand (``F.fold``)."""

    def __init__(self, cin=2, cout=3, k=3, pad=1, dtype=torch.float64, bug=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(cout, cin, k, k, generator=g, dtype=dtype) * 0.3
        self.b = torch.randn(cout, generator=g, dtype=dtype) * 0.1
        self.k, self.pad, self.bug, self.seen = k, pad, bug, []

    def forward(self, x):
        self.seen.append((type(x), x.dtype))
        n, _, h, w = x.shape
        self.x_hw = (h, w)
        self.cols = F.unfold(x, self.k, padding=self.pad)  # (N, C*k*k, L)
        out = self.W.reshape(self.W.shape[0], -1) @ self.cols + self.b[:, None]
        return out.reshape(n, -1, h + 2 * self.pad - self.k + 1, w + 2 * self.pad - self.k + 1)

    def backward(self, dy):
        n, f = dy.shape[:2]
        d = dy.reshape(n, f, -1)  # (N, F, L)
        self.dW = (d @ self.cols.transpose(1, 2)).sum(0).reshape(self.W.shape)
        if self.bug == "dW":  # the kernel's spatial axes swapped
            self.dW = self.dW.transpose(2, 3)
        self.db = d.sum((0, 2))
        return F.fold(self.W.reshape(f, -1).T @ d, self.x_hw, self.k, padding=self.pad)


class TorchReLU:
    """Parameter-free, torch-only ops: ``torch.clamp`` refuses a numpy array."""

    def __init__(self):
        self.seen = []

    def forward(self, x):
        self.seen.append((type(x), x.dtype))
        self.mask = x > 0
        return torch.clamp(x, min=0)

    def backward(self, dy):
        return torch.where(self.mask, dy, torch.zeros_like(dy))


class TorchFlatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


def affine_forward(x, w, b):
    """CS231n's affine layer, with torch ops: w is (in, out)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, torch.sum(dout, dim=0)


def affine_backward_bug(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, db / dout.shape[0]  # a mean where a sum is meant


def _torch_pair(dtype=torch.float64, backward=affine_backward, fin=48, fout=5):
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(fin, fout, generator=g, dtype=dtype) * 0.2, torch.randn(fout, generator=g, dtype=dtype)
    pair = wrap_functions(affine_forward, backward, S.Linear("fc", fin, fout), [w, b], layout=Layout(linear="in_out"))
    return pair, (w, b)


# --------------------------------------------------------------------------- jax code


class JaxDense:
    """jax.numpy, immutable arrays: y = x @ W.T + b, gradients as new arrays."""

    def __init__(self, fin=4, fout=3, bug=None, seed=0):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        self.W = jax.random.normal(k1, (fout, fin)) * 0.5  # float32: jax's default
        self.b = jax.random.normal(k2, (fout,)) * 0.1
        self.bug, self.seen = bug, []

    def forward(self, x):
        self.seen.append(type(x))
        self.x = x
        y = x @ self.W.T
        return y if self.bug == "no bias" else y + self.b

    def backward(self, dy):
        self.dW = dy.T @ self.x
        self.db = jnp.sum(dy, axis=0)
        return dy @ self.W


class JaxReLU:
    def __init__(self):
        self.seen = []

    def forward(self, x):
        self.seen.append(type(x))
        self.x = x
        return jnp.maximum(x, 0)

    def backward(self, dy):
        return jnp.where(self.x > 0, dy, 0.0)


def _prints(*arrays):
    return [fingerprint(a) for a in arrays]


# --------------------------------------------------------------------------- check_layer


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_conv_is_handed_tensors_in_its_dtype_passes_and_keeps_its_parameters(dtype) -> None:
    conv = TorchConv(dtype=dtype)
    objs, before = (conv.W, conv.b), _prints(conv.W, conv.b)
    layer = check_layer(conv, CONV, input_shape=X_CONV).layers[0]
    assert layer.verdict == "pass", layer.message
    assert layer.dtype == str(dtype).removeprefix("torch.")
    assert set(conv.seen) == {(torch.Tensor, dtype)}
    assert (conv.W, conv.b) == objs and _prints(conv.W, conv.b) == before


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_conv_with_a_wrong_kernel_gradient_fails_the_backward(dtype) -> None:
    conv = TorchConv(dtype=dtype, bug="dW")
    before = _prints(conv.W, conv.b)
    layer = check_layer(conv, CONV, input_shape=X_CONV).layers[0]
    assert layer.verdict == "backward"
    assert [t.name for t in layer.tensors if not t.ok] == ["weight"]
    assert _prints(conv.W, conv.b) == before


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_function_pair_passes_and_its_arrays_are_never_written(dtype) -> None:
    pair, (w, b) = _torch_pair(dtype)
    before = _prints(w, b)
    layer = check_layer(pair, input_shape=(3, 48)).layers[0]
    assert layer.verdict == "pass", layer.message
    assert _prints(w, b) == before and pair._get_user("weight") is w


def test_torch_function_pair_with_a_mean_bias_gradient_fails_the_backward() -> None:
    pair, (w, b) = _torch_pair(torch.float64, affine_backward_bug)
    layer = check_layer(pair, input_shape=(3, 48)).layers[0]
    assert layer.verdict == "backward"
    assert [t.name for t in layer.tensors if not t.ok] == ["bias"]


def test_jax_layer_is_handed_jax_arrays_and_its_parameters_are_replaced_then_put_back() -> None:
    dense = JaxDense()
    objs, before = (dense.W, dense.b), _prints(dense.W, dense.b)
    layer = check_layer(dense, S.Linear("fc", 4, 3), input_shape=(5, 4)).layers[0]
    assert layer.verdict == "pass", layer.message
    assert layer.dtype == "float32"
    assert all(issubclass(t, jax.Array) for t in dense.seen)
    assert dense.W is objs[0] and dense.b is objs[1] and _prints(dense.W, dense.b) == before


def test_jax_layer_without_its_bias_in_the_forward_fails_the_forward() -> None:
    dense = JaxDense(bug="no bias")
    layer = check_layer(dense, S.Linear("fc", 4, 3), input_shape=(5, 4)).layers[0]
    assert layer.verdict == "forward"


def test_parameter_free_torch_layer_takes_its_type_from_dtype_or_array_type() -> None:
    relu = TorchReLU()
    layer = check_layer(relu, S.ReLU("relu"), input_shape=(2, 3, 4, 4), dtype=torch.float32).layers[0]
    assert layer.verdict == "pass" and set(relu.seen) == {(torch.Tensor, torch.float32)}
    relu = TorchReLU()
    layer = check_layer(relu, S.ReLU("relu"), input_shape=(2, 3, 4, 4), array_type="torch").layers[0]
    assert layer.verdict == "pass" and set(relu.seen) == {(torch.Tensor, torch.float64)}


def test_per_example_torch_code_is_handed_tensors() -> None:
    relu = TorchReLU()
    layer = check_layer(relu, S.ReLU("relu"), input_shape=(2, 1, 4, 4), array_type="torch", batched=False,
                        channel_axis=False).layers[0]
    assert layer.verdict == "pass", layer.message
    assert relu.seen and all(t is torch.Tensor for t, _ in relu.seen)


def test_torch_forward_writing_into_its_input_is_a_forward_finding() -> None:
    class ClampInPlace(TorchReLU):
        def forward(self, x):
            self.mask = x > 0
            return x.clamp_(min=0)  # the caller's tensor is changed

    layer = check_layer(ClampInPlace(), S.ReLU("relu"), input_shape=(2, 3, 4, 4), array_type="torch").layers[0]
    assert layer.verdict == "forward"
    assert any("forward writes into its input array" in d for d in layer.diagnosis)


# --------------------------------------------------------------------------- requires_grad and .grad


class TorchLinear:
    """nn.Parameters (requires_grad=True), the passes by hand under torch.no_grad()."""

    def __init__(self, fin=48, fout=5, dtype=torch.float64, bug=False):
        g = torch.Generator().manual_seed(2)
        self.weight = torch.nn.Parameter(torch.randn(fout, fin, generator=g, dtype=dtype) * 0.2)
        self.bias = torch.nn.Parameter(torch.zeros(fout, dtype=dtype))
        self.bug = bug

    def forward(self, x):
        with torch.no_grad():
            self.x = x
            return x @ self.weight.T + self.bias

    def backward(self, dy):
        with torch.no_grad():
            self.dweight = dy.T @ self.x * (2 if self.bug else 1)
            self.dbias = dy.sum(0)
            return dy @ self.weight


class AutogradConv:
    """The backward runs torch autograd on the forward's graph and reads ``.grad``."""

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.W = torch.nn.Parameter(torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64) * 0.1)

    def forward(self, x):
        self.x = x.detach().requires_grad_()
        self.out = F.conv2d(self.x, self.W, self.b, padding=1)
        return self.out.detach()

    def backward(self, dy):
        self.W.grad = self.b.grad = None
        self.out.backward(dy)
        return self.x.grad


def test_autograd_inside_the_backward_passes_and_grad_and_requires_grad_are_left_as_they_were() -> None:
    conv = AutogradConv()
    sentinel = torch.full_like(conv.W, 7.0)
    conv.W.grad = sentinel
    before = _prints(conv.W, conv.b)
    layer = check_layer(conv, CONV, input_shape=X_CONV, grads={"weight": "W.grad", "bias": "b.grad"}).layers[0]
    assert layer.verdict == "pass", layer.message
    assert conv.W.grad is sentinel and bool((sentinel == 7.0).all())
    assert conv.b.grad is None
    assert conv.W.requires_grad and conv.b.requires_grad
    assert _prints(conv.W, conv.b) == before


# --------------------------------------------------------------------------- check_network


def _torch_net(dtype, conv_bug=None, pair_backward=affine_backward):
    pair, _ = _torch_pair(dtype, pair_backward)
    layers = {"conv": TorchConv(dtype=dtype, bug=conv_bug), "relu": TorchReLU(), "flat": TorchFlatten(), "fc": pair}
    spec = S.Sequential([CONV, S.ReLU("relu"), S.Flatten("flat"), S.Linear("fc", 48, 5)])
    return layers, spec


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_network_of_torch_layers_passes_and_its_relu_is_handed_tensors(dtype) -> None:
    layers, spec = _torch_net(dtype)
    report = check_network(layers, spec, input_shape=X_CONV)
    assert [(r.name, r.verdict) for r in report.layers] == [(p, "pass") for p in layers]
    assert layers["relu"].seen and all(t is torch.Tensor for t, _ in layers["relu"].seen)


@pytest.mark.parametrize("bug, failing", [("conv", "conv"), ("fc", "fc")])
def test_network_of_torch_layers_finds_the_buggy_layer(bug, failing) -> None:
    layers, spec = _torch_net(torch.float64, conv_bug="dW" if bug == "conv" else None,
                              pair_backward=affine_backward_bug if bug == "fc" else affine_backward)
    verdicts = {r.name: r.verdict for r in check_network(layers, spec, input_shape=X_CONV).layers}
    assert verdicts == {p: "backward" if p == failing else "pass" for p in layers}


@pytest.mark.parametrize("bug", [False, True])
def test_torch_network_own_passes_are_handed_tensors_and_requires_grad_is_kept(bug) -> None:
    layers = {"conv": TorchConv(), "relu": TorchReLU(), "flat": TorchFlatten(), "fc": TorchLinear(bug=bug)}
    spec = S.Sequential([CONV, S.ReLU("relu"), S.Flatten("flat"), S.Linear("fc", 48, 5)])
    handed = []

    def forward(x):
        handed.append(type(x))
        for layer in layers.values():
            x = layer.forward(x)
        return x

    def backward(g):
        handed.append(type(g))
        for layer in reversed(layers.values()):
            g = layer.backward(g)
        return g

    fc = layers["fc"]
    before = _prints(fc.weight, fc.bias)
    report = check_network(layers, spec, input_shape=X_CONV, forward=forward, backward=backward)
    verdicts = {r.name: r.verdict for r in report.layers}
    assert verdicts == {"conv": "pass", "relu": "pass", "flat": "pass", "fc": "backward" if bug else "pass",
                        "(network)": "backward" if bug else "pass"}
    assert handed and set(handed) == {torch.Tensor}
    assert fc.weight.requires_grad and fc.weight.grad is None and fc.bias.grad is None
    assert _prints(fc.weight, fc.bias) == before


@pytest.mark.parametrize("bug", [None, "no bias"])
def test_network_of_jax_layers_passes_or_finds_the_forward_bug(bug) -> None:
    layers = {"fc1": JaxDense(4, 6, seed=1), "relu": JaxReLU(), "fc2": JaxDense(6, 3, bug=bug, seed=2)}
    spec = S.Sequential([S.Linear("fc1", 4, 6), S.ReLU("relu"), S.Linear("fc2", 6, 3)])
    before = _prints(*(a for p in ("fc1", "fc2") for a in (layers[p].W, layers[p].b)))
    verdicts = {r.name: r.verdict for r in check_network(layers, spec, input_shape=(5, 4)).layers}
    assert verdicts == {"fc1": "pass", "relu": "pass", "fc2": "forward" if bug else "pass"}
    assert all(issubclass(t, jax.Array) for t in layers["relu"].seen)
    assert _prints(*(a for p in ("fc1", "fc2") for a in (layers[p].W, layers[p].b))) == before


def test_network_declared_torch_hands_its_parameter_free_layers_tensors() -> None:
    relu = TorchReLU()
    net = wrap_network({"relu": relu}, S.Sequential([S.ReLU("relu")]), array_type="torch")
    net.forward(np.ones((2, 3)))
    assert relu.seen == [(torch.Tensor, torch.float64)]


# --------------------------------------------------------------------------- errors and hints


def test_unknown_array_type_lists_the_valid_ones() -> None:
    valid = "expected one of 'numpy', 'torch', 'jax', 'cupy'"
    with pytest.raises(AdapterError, match=f"layer 'conv': array_type='pytorch' is not an array type; {valid}"):
        wrap_layer(TorchConv(), CONV, array_type="pytorch")
    with pytest.raises(AdapterError, match=f"layer 'fc': array_type='tf' is not an array type; {valid}"):
        _ = wrap_functions(affine_forward, affine_backward, S.Linear("fc", 4, 2), [np.ones((4, 2)), np.ones(2)],
                           array_type="tf")
    with pytest.raises(AdapterError, match=f"wrap_network: array_type='np' is not an array type; {valid}"):
        wrap_network({"relu": TorchReLU()}, S.Sequential([S.ReLU("relu")]), array_type="np")


def test_array_type_whose_library_is_not_installed_says_so(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # as when cupy is not installed (it may be)
    with pytest.raises(AdapterError, match="layer 'relu': array_type='cupy' declared, but cupy is not installed"):
        wrap_layer(TorchReLU(), S.ReLU("relu"), array_type="cupy")


def test_declared_type_its_parameters_do_not_have_is_an_error_naming_array_type() -> None:
    class NumpyDense:
        def __init__(self):
            self.W, self.b = np.ones((3, 4)), np.zeros(3)

        def forward(self, x):
            return x @ self.W.T + self.b

        def backward(self, dy):
            return dy @ self.W

    with pytest.raises(AdapterError, match=r"layer 'fc': array_type= declares torch arrays, but parameter 'weight' "
                                           r"is a numpy array .*declare array_type='numpy'"):
        wrap_layer(NumpyDense(), S.Linear("fc", 4, 3), array_type="torch")
    with pytest.raises(AdapterError, match=r"layer 'fc': array_type= declares jax arrays, but parameter 'weight' "
                                           r"is a torch array"):
        _torch_pair_declared = wrap_functions(affine_forward, affine_backward, S.Linear("fc", 48, 5),
                                              list(_torch_pair()[1]), layout=Layout(linear="in_out"), array_type="jax")
    with pytest.raises(AdapterError, match=r"layer 'relu': array_type='jax' but dtype= is a torch dtype"):
        wrap_layer(TorchReLU(), S.ReLU("relu"), array_type="jax", dtype=torch.float32)
    with pytest.raises(AdapterError, match=r"layer 'relu': dtype='f33' is not a dtype; expected a numpy, torch or jax"):
        wrap_layer(TorchReLU(), S.ReLU("relu"), dtype="f33")


def test_numpy_code_with_torch_parameters_is_told_to_declare_array_type_numpy() -> None:
    class NumpyMathTorchWeights:
        def __init__(self):
            self.W = torch.ones(3, 4, dtype=torch.float64)
            self.b = torch.zeros(3, dtype=torch.float64)

        def forward(self, x):
            self.x = x.copy()  # numpy's copy(): a tensor has clone()
            return x @ self.W.numpy().T + self.b.numpy()

        def backward(self, dy):
            self.dW, self.db = dy.T @ self.x, dy.sum(0)
            return dy @ self.W.numpy()

    layer = check_layer(NumpyMathTorchWeights(), S.Linear("fc", 4, 3), input_shape=(2, 4)).layers[0]
    assert layer.verdict == "error"
    assert ("it was handed torch tensors (torch.float64), read off its parameters' type; if it computes with numpy "
            "arrays, declare array_type='numpy'") in layer.message
    assert check_layer(NumpyMathTorchWeights(), S.Linear("fc", 4, 3), input_shape=(2, 4),
                       array_type="numpy").layers[0].verdict == "pass"


def test_torch_code_handed_numpy_is_told_to_declare_array_type_torch() -> None:
    layer = check_layer(TorchReLU(), S.ReLU("relu"), input_shape=(2, 3)).layers[0]
    assert layer.verdict == "error"
    assert "it was handed numpy arrays (float64); if it computes with torch tensors, declare array_type='torch'" \
        in layer.message


# --------------------------------------------------------------------------- CuPy, where installed


def test_cupy_layer_is_handed_cupy_arrays() -> None:
    cupy = pytest.importorskip("cupy")

    class CupyDense:
        def __init__(self):
            self.W = cupy.asarray(np.random.default_rng(0).normal(size=(3, 4)))
            self.b = cupy.zeros(3)

        def forward(self, x):
            assert isinstance(x, cupy.ndarray)
            self.x = x
            return x @ self.W.T + self.b

        def backward(self, dy):
            self.dW, self.db = dy.T @ self.x, dy.sum(0)
            return dy @ self.W

    dense = CupyDense()
    before = _prints(dense.W, dense.b)
    assert check_layer(dense, S.Linear("fc", 4, 3), input_shape=(2, 4)).layers[0].verdict == "pass"
    assert _prints(dense.W, dense.b) == before
