"""Custom autograd code (issue 18): the user's model is never changed (values bit for bit,
parameter identity, ``.grad``, ``requires_grad``, in-place versions) whether the check
passes, fails or the backward raises midway; every misuse gets an error naming the layer and
the cause; Functions and modules as a network's layers; other devices and dtypes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import harness
from autograd_layers import (
    F64,
    FC,
    BatchNormFn,
    Dense,
    FnLinear,
    InOutLinear,
    LayerNormFn,
    LinearBiasMean,
    LinearFunction,
    TanhFn,
    Wrapper,
    bad_tensors,
    entry,
    fc_params,
    randn,
    said,
)

# --------------------------------------------------------------------------- the user's model is never changed


class RaisesOnSecondBackward(LinearFunction):
    calls = 0

    @staticmethod
    def backward(ctx, grad_output):
        RaisesOnSecondBackward.calls += 1
        if RaisesOnSecondBackward.calls == 2:
            raise RuntimeError("cuBLAS handle lost")  # fails midway through the check
        return LinearFunction.backward(ctx, grad_output)


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {
        k: (t, t.detach().clone(), t.grad if t.grad is None else t.grad.clone(), t.requires_grad)
        for k, t in tensors.items()
    }


def assert_unchanged(before: dict[str, tuple], now: dict[str, torch.Tensor]) -> None:
    for k, (obj, value, grad, requires_grad) in before.items():
        t = now[k]
        assert t is obj, f"{k}: replaced"
        assert torch.equal(t.detach(), value) and t.dtype == value.dtype, f"{k}: values changed"
        assert (t.grad is None) if grad is None else torch.equal(t.grad, grad), f"{k}: .grad changed"
        assert t.requires_grad == requires_grad, f"{k}: requires_grad changed"


@pytest.mark.parametrize(
    ("fn", "verdict"),
    [(LinearFunction, "pass"), (LinearBiasMean, "backward"), (RaisesOnSecondBackward, "error")],
)
def test_function_tensors_untouched(fn, verdict: str) -> None:
    RaisesOnSecondBackward.calls = 0
    w = randn(4, 6, seed=1).requires_grad_()  # a training leaf
    b = randn(4, seed=2)  # a plain tensor
    x = randn(5, 6, seed=3)
    before = snapshot({"w": w, "b": b, "x": x})
    e = harness.check_layer(fn, FC, params={"weight": w, "bias": b}, x=x).layers[0]
    assert e.verdict == verdict, e.message
    assert_unchanged(before, {"w": w, "b": b, "x": x})


@pytest.mark.parametrize(
    ("fn", "verdict"),
    [(LinearFunction, "pass"), (LinearBiasMean, "backward"), (RaisesOnSecondBackward, "error")],
)
def test_module_parameters_untouched(fn, verdict: str) -> None:
    RaisesOnSecondBackward.calls = 0
    m = FnLinear(fn)
    m.bias.grad = torch.full((4,), 0.5, dtype=F64)  # mid-training: a gradient already accumulated
    before = snapshot(dict(m.named_parameters()))
    ids = [id(p) for p in m.parameters()]
    e = entry(m, FC, (5, 6))
    assert e.verdict == verdict, e.message
    assert [id(p) for p in m.parameters()] == ids and m.training
    assert_unchanged(before, dict(m.named_parameters()))


@pytest.mark.parametrize("kind", ["Function", "module"])
def test_a_pending_user_backward_survives_a_check(kind: str) -> None:
    x = randn(5, 6, seed=3)
    if kind == "module":
        m = FnLinear()
        loss, tensors = (m(x) ** 2).sum(), dict(m.named_parameters())
        entry(m, FC, (5, 6))
    else:
        tensors = {"weight": randn(4, 6, seed=1).requires_grad_(), "bias": randn(4, seed=2)}
        loss = (LinearFunction.apply(x, tensors["weight"], tensors["bias"]) ** 2).sum()
        entry(LinearFunction, FC, (5, 6), params=tensors)
    assert all(t._version == 0 for t in tensors.values()), {k: t._version for k, t in tensors.items()}
    loss.backward()  # the user's training step, interrupted by the check, goes on


def test_plain_object_tensors_untouched() -> None:
    d = Dense(InOutLinear)
    before = snapshot({"W": d.W, "b": d.b})
    assert entry(d, FC, (5, 6), layout=harness.Layout(linear="in_out")).verdict == "pass"
    assert_unchanged(before, {"W": d.W, "b": d.b})


# --------------------------------------------------------------------------- misuse: errors naming the layer and the cause


def raises(match: str, fn, *args, **kw) -> str:
    with pytest.raises(harness.AdapterError, match=match) as err:
        harness.check_layer(fn, *args, **kw)
    return str(err.value)


def test_function_instance_instead_of_the_class() -> None:
    with pytest.warns(DeprecationWarning):
        fn = LinearFunction()
    msg = raises("instance of LinearFunction", fn, FC, params=fc_params(), input_shape=(5, 6))
    assert "layer 'fc'" in msg and "pass the class itself" in msg


def test_params_given_as_places_to_a_function() -> None:
    msg = raises("params=", LinearFunction, FC, params={"weight": "W", "bias": "b"}, input_shape=(5, 6))
    assert "layer 'fc'" in msg and "'W'" in msg and "tensors themselves" in msg


def test_module_parameter_not_found_lists_and_suggests() -> None:
    msg = raises("cannot find", Wrapper(), FC, input_shape=(5, 6))
    assert "layer 'fc'" in msg and "'weight'" in msg
    assert "lin.weight (4, 6)" in msg and "lin.bias (4,)" in msg  # what it holds
    assert "params={'weight': 'lin.weight'}" in msg  # the suggested fix
    msg = raises("holds no tensor there", Wrapper(), FC, params={"weight": "lin.W"}, input_shape=(5, 6))
    assert "'lin.W'" in msg and "lin.weight (4, 6)" in msg


def test_unknown_option_and_options_that_do_not_apply() -> None:
    msg = raises(
        r"unknown option\(s\) \['colour'\]", LinearFunction, FC, params=fc_params(), input_shape=(5, 6), colour=1
    )
    assert "layer 'fc'" in msg and "'inplace'" in msg  # the known ones listed
    msg = raises("grads= do not apply", FnLinear(), FC, grads={"weight": "dW"}, input_shape=(5, 6))
    assert "FnLinear" in msg and "autograd" in msg


def test_output_index_out_of_range() -> None:
    """output= naming an output the forward does not return is a configuration error (the
    CLI's exit 2), raised at wrap time when it cannot be right and at the first forward else."""
    raises("output= takes the index", LinearFunction, FC, params=fc_params(), input_shape=(5, 6), output=-1)
    raises(
        r"layer 'fc': output=1, but the forward returned one value",
        LinearFunction,
        FC,
        params=fc_params(),
        input_shape=(5, 6),
        output=1,
    )
    ln = {"weight": randn(8, seed=1), "bias": randn(8, seed=2)}
    raises(
        "output=3, but the forward returned 3 values",
        LayerNormFn,
        harness.LayerNorm("ln", (8,)),
        params=ln,
        input_shape=(5, 8),
        forward_args=(1e-5,),
        output=3,
    )


class Detaching(FnLinear):
    def forward(self, x):
        return super().forward(x).detach()


class NoGrad(FnLinear):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


@pytest.mark.parametrize("module", [Detaching, NoGrad])
def test_forward_without_a_graph(module) -> None:
    e = entry(module(), FC, (5, 6))
    assert e.verdict == "error"
    assert "layer 'fc'" in e.message and "no autograd graph" in e.message and "detached" in e.message


def test_forward_without_a_graph_through_wrap_autograd() -> None:
    def detached(x, w, b):
        return (x @ w.T + b).detach()

    layer = harness.wrap_autograd(detached, FC, fc_params())
    e = harness.check_layer(layer, input_shape=(5, 6)).layers[0]
    assert e.verdict == "error" and "no autograd graph" in e.message


class RaisingBackward(LinearFunction):
    @staticmethod
    def backward(ctx, grad_output):
        x, w, _ = ctx.saved_tensors
        return grad_output @ w, grad_output.T @ x, grad_output.sum(1)  # (N,): torch cannot reduce it to (F,)


class WrongShapeGradient(LinearFunction):
    @staticmethod
    def backward(ctx, grad_output):
        x, w, _ = ctx.saved_tensors
        return grad_output @ w, x.T @ grad_output, grad_output.sum(0)  # (in, out) for an (out, in) weight


class BackwardRaises(LinearFunction):
    @staticmethod
    def backward(ctx, grad_output):
        raise ValueError("shapes do not line up in my kernel")


def test_backward_raising_names_the_user_frame() -> None:
    e = entry(BackwardRaises, FC, (5, 6), params=fc_params())
    assert e.verdict == "error" and e.error_side == "backward"
    line = inspect.getsourcelines(BackwardRaises.backward)[1] + 2
    assert f"{__file__}:{line} in backward" in e.message and "shapes do not line up" in e.message


@pytest.mark.parametrize(
    ("fn", "shown"),
    [(WrongShapeGradient, "got [6, 4] but expected shape compatible with [4, 6]"), (RaisingBackward, "[5]")],
)
def test_gradient_of_a_shape_torch_cannot_reduce(fn, shown: str) -> None:
    e = entry(fn, FC, (5, 6), params=fc_params())
    assert e.verdict == "error" and e.error_side == "backward"
    assert "invalid gradient" in e.message and shown in e.message


NO_SPEC = [
    pytest.param(lambda: LinearFunction, {"params": fc_params()}, id="Function"),
    pytest.param(FnLinear, {}, id="module"),
    pytest.param(Wrapper, {}, id="module-nested-params"),
]


@pytest.mark.parametrize(("make", "kw"), NO_SPEC)
def test_without_a_spec_a_clear_error_or_a_check(make, kw) -> None:
    try:
        report = harness.check_layer(make(), input_shape=(5, 6), **kw)
    except harness.SpecError as err:
        msg = str(err)
        assert "spec" in msg and "not an instance" not in msg and "has no forward()" not in msg, msg
    else:
        assert report.layers[0].verdict == "pass"


def test_numpy_params_to_a_function() -> None:
    """numpy arrays for a torch Function: refused at wrap time, naming the conversion."""
    params = {k: v.numpy() for k, v in fc_params().items()}
    with pytest.raises(
        harness.AdapterError, match=r"runs on torch but its parameters include ndarray.*torch.from_numpy"
    ):
        entry(LinearFunction, FC, (5, 6), params=params)


# --------------------------------------------------------------------------- networks

NET = harness.Sequential([harness.Linear("fc1", 6, 5), harness.Tanh("act"), harness.Linear("fc2", 5, 3)])


def test_network_of_modules_calling_functions_pinpoints_the_layer() -> None:
    layers = {"fc1": FnLinear(LinearFunction, 6, 5), "fc2": FnLinear(LinearBiasMean, 5, 3)}
    report = harness.check_network(layers, NET, input_shape=(4, 6))
    assert [(e.name, e.verdict) for e in report.layers] == [("fc1", "pass"), ("fc2", "backward")]
    assert report.first_failure == "fc2"
    assert bad_tensors(report.layers[1]) == ["bias"] and said(report.layers[1], "off by a constant factor 1/4")


def test_network_of_wrapped_functions() -> None:
    fc1, _, fc2 = NET.layers
    layers = {
        "fc1": harness.wrap_autograd(LinearBiasMean, fc1, fc_params(6, 5)),
        "fc2": harness.wrap_autograd(LinearFunction, fc2, fc_params(5, 3)),
    }
    report = harness.check_network(layers, NET, input_shape=(4, 6))
    assert [(e.name, e.verdict) for e in report.layers] == [("fc1", "backward"), ("fc2", "pass")]
    assert report.first_failure == "fc1"


def test_network_function_class_without_its_tensors() -> None:
    """A Function class cannot carry its tensors in a network mapping: wrap it first."""
    with pytest.raises(
        harness.AdapterError, match=r"layer 'fc1': LinearFunction takes its parameters as arguments and none were given"
    ):
        harness.check_network({"fc1": LinearFunction, "fc2": FnLinear(LinearFunction, 5, 3)}, NET, input_shape=(4, 6))


def test_network_function_class_error_says_how_to_give_its_tensors() -> None:
    with pytest.raises(harness.AdapterError, match="wrap_autograd"):
        harness.check_network({"fc1": LinearFunction, "fc2": FnLinear(LinearFunction, 5, 3)}, NET, input_shape=(4, 6))


@pytest.mark.parametrize("act", [TanhFn, torch.nn.Tanh()], ids=["Function", "nn.Tanh"])
def test_network_with_a_parameter_free_autograd_layer(act) -> None:
    layers = {"fc1": FnLinear(LinearFunction, 6, 5), "act": act, "fc2": FnLinear(LinearBiasMean, 5, 3)}
    report = harness.check_network(layers, NET, input_shape=(4, 6))
    assert [(e.name, e.verdict) for e in report.layers] == [("fc1", "pass"), ("act", "pass"), ("fc2", "backward")]


# --------------------------------------------------------------------------- devices and dtypes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors() -> None:
    params = {k: v.cuda() for k, v in fc_params().items()}
    before = snapshot(params)
    assert entry(LinearFunction, FC, (5, 6), params=params).verdict == "pass"
    e = entry(LinearBiasMean, FC, (5, 6), params=params)
    assert e.verdict == "backward" and bad_tensors(e) == ["bias"]
    assert_unchanged(before, params)
    assert all(t.device.type == "cuda" for t in params.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_low_precision_smoke(dtype) -> None:
    e = entry(LinearFunction, FC, (5, 6), params={k: v.to(dtype) for k, v in fc_params().items()})
    assert e.verdict == "pass", e.message
    assert e.dtype == str(dtype).removeprefix("torch.")
    assert np.isfinite([t.error_torch for t in e.tensors]).all()


class BatchNormModule(torch.nn.Module):
    """A module with buffers, its forward calling a Function that updates them in place."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * randn(3, seed=1))
        self.bias = torch.nn.Parameter(randn(3, seed=2))
        self.register_buffer("running_mean", torch.zeros(3, dtype=F64))
        self.register_buffer("running_var", torch.ones(3, dtype=F64))

    def forward(self, x):
        return BatchNormFn.apply(x, self.weight, self.bias, self.running_mean, self.running_var, 0.1, 1e-5)


def test_module_buffers_and_mode_untouched() -> None:
    m = BatchNormModule()
    before = snapshot(dict(m.state_dict(keep_vars=True)))
    assert entry(m, harness.BatchNorm2d("bn", 3), (4, 3, 5, 5)).verdict == "pass"
    assert_unchanged(before, dict(m.state_dict(keep_vars=True)))
    m32 = FnLinear().float().eval()  # float32, eval mode: both kept
    e = entry(m32, FC, (5, 6))
    assert e.verdict == "pass" and e.dtype == "float32"
    assert not m32.training and m32.weight.dtype == torch.float32
