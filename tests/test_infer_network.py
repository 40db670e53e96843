"""Network inference (issue 15): the structure read from one watched forward, the spec and
layout assembled from the layers' inferences, and the inferred wrap checked like the
hand-written one.

Most tests put a stand-in for ``infer_layer`` (tests/infer_standin.py: what a correct
inference of each known layer class gives) over ``harness.infer.network``'s reference, so
the structure is tested alone; the last part runs with the real ``harness.infer.layer``
and is skipped until it exists.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import harness as tg
from conftest import slow
from harness.examples import VARIANTS
from harness.examples.example import LAYOUT, build, lenet_spec
from harness.infer import network as net_mod
from harness.infer.flow import fallback_fits, spec_name
from harness.infer.network import infer_network, wrap_inferred, wrap_inferred_layer
from harness.infer.result import Fit
from harness.infer.structure import StructureError, layer_objects, watch_forward
from harness.spec import walk
from infer_standin import register, standin_infer_layer
from realcode import composite, keras_like, nets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import numpy_nets as nn

REAL = importlib.util.find_spec("harness.infer.layer") is not None


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net_mod, "infer_layer", standin_infer_layer)


def unnamed(spec: Any) -> list[tuple[str, str]]:
    """The spec's layers in walk order, names aside: (kind, hyperparameters)."""
    out = []
    roots = spec.layers if isinstance(spec, tg.Sequential) else (spec,)  # the root's own name aside too
    for _, layer in [pl for root in roots for pl in walk(tg.Sequential([root]))]:
        fields = {k: v for k, v in vars(layer).items() if k not in ("name", "layers", "block", "shortcut", "post")}
        out.append((layer.kind, repr(sorted(fields.items()))))
    return out


def params_of(obj: Any) -> dict[str, np.ndarray]:
    return {
        f"{p}.{k}": v.copy()
        for p, o in layer_objects(obj).items()
        for k, v in vars(o).items()
        if isinstance(v, np.ndarray)
    }


def same_params(before: dict[str, np.ndarray], obj: Any) -> bool:
    after = params_of(obj)
    return before.keys() <= after.keys() and all(
        np.array_equal(v, after[k]) and v.dtype == after[k].dtype for k, v in before.items()
    )


# --------------------------------------------------------------------------- the user's code the tests use


class Dense:  # docs/wrapping/networks.md
    def __init__(self, n_in: int, n_out: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)), np.zeros(n_out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class ReLU:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * self.mask


class DocsMLP:  # its backward skips the relu: a wiring bug only the (network) entry sees
    def __init__(self) -> None:
        self.fc1, self.relu, self.fc2 = Dense(4, 8), ReLU(), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2.forward(self.relu.forward(self.fc1.forward(x)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.fc2.backward(dy))


class InlineNet:
    """conv, then ReLU and flatten done by the network's own code, then a dense layer."""

    def __init__(self) -> None:
        self.conv, self.fc = composite.Conv(2, 3), composite.Linear(3 * 4 * 4, 5)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.h = self.conv.forward(x)
        self.shape = self.h.shape
        return self.fc.forward(np.maximum(self.h, 0).reshape(len(x), -1))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d = self.fc.backward(dy).reshape(self.shape) * (self.h > 0)
        return self.conv.backward(d)


class InlineResidual:
    """relu(conv2(relu(conv1(x))) + x) written in the network's forward, no block object."""

    def __init__(self) -> None:
        self.conv1, self.relu, self.conv2, self.out = (
            composite.Conv(3, 3, 0),
            composite.ReLU(),
            composite.Conv(3, 3, 1),
            composite.ReLU(),
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.out.forward(self.conv2.forward(self.relu.forward(self.conv1.forward(x))) + x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d = self.out.backward(dy)
        return self.conv1.backward(self.relu.backward(self.conv2.backward(d))) + d


class SharedReLU:
    def __init__(self) -> None:
        self.fc1, self.act, self.fc2 = Dense(4, 6), ReLU(), Dense(6, 6, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.act.forward(self.fc2.forward(self.act.forward(self.fc1.forward(x))))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.act.backward(self.fc2.backward(self.act.backward(dy))))


class Raising(DocsMLP):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.fc1.W += 1.0  # a write into a parameter, then a crash
        self.fc1.b[0] = 7.0
        self.fc1.forward(x)
        raise RuntimeError("user forward failed")


class Uncopyable(Raising):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()  # deepcopy refuses a lock: the network itself runs, then is put back


class CallAlias:
    def __init__(self) -> None:
        self.W = np.eye(3)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W

    __call__ = forward

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy @ self.W.T


class UsesCall:
    def __init__(self) -> None:
        self.a, self.b = CallAlias(), CallAlias()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.b(self.a(x))


register(
    Dense, lambda o, x, name: (tg.Linear(name, *o.W.shape), tg.Layout(linear="in_out"), {"weight": "W", "bias": "b"})
)
register(CallAlias, lambda o, x, name: (tg.Linear(name, 3, 3, bias=False), tg.Layout(), {"weight": "W"}))
register(ReLU, lambda o, x, name: (tg.ReLU(name), None, {}))


def _x(seed: int, *shape: int, dtype: Any = np.float64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


# =========================================================================== structure


def test_layer_objects_paths_in_attributes_lists_and_dicts() -> None:
    found = layer_objects(nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4).net)
    assert list(found)[:3] == ["stem", "stem_relu", "blocks['b1']"]
    assert "blocks['b2'].down" in found and "blocks['b1'].conv1" in found
    assert list(layer_objects(composite.Net())) == [f"layers[{i}]" for i in range(5)]


def test_watch_records_calls_nesting_and_removes_hooks() -> None:
    block = composite.ResidualBlock(3)
    trace = watch_forward(block, _x(0, 2, 3, 5, 5))
    assert [c.path for c in trace.calls] == ["conv1", "bn1", "conv2", "relu1", "bn2", "relu"][:0] or [
        c.path for c in trace.calls
    ] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu"]
    assert all(c.parent is None for c in trace.calls) and trace.root_runs
    assert all("forward" not in vars(o) for o in layer_objects(block).values())
    assert trace.calls[0].obj is block.conv1  # the user's object, not the copy that ran


def test_watch_sees_call_aliased_to_forward_and_restores_the_class() -> None:
    net = UsesCall()
    trace = watch_forward(net, _x(0, 2, 3))
    assert [c.path for c in trace.calls] == ["a", "b"]
    assert type(net.a) is CallAlias and "forward" not in vars(net.a)


def test_spec_names_from_paths() -> None:
    assert spec_name("layers[0]") == "layers_0"
    assert spec_name("layers['conv1']") == "conv1"
    assert spec_name("down.conv") == "down_conv"


def test_fallback_fits_flatten_and_relu() -> None:
    x = _x(0, 2, 3, 4, 4)
    fits = fallback_fits("f", x, x.reshape(2, -1))
    assert {f.layout.data for f in fits} == {"NCHW", "NHWC"} and fits[0].error == 0
    assert fallback_fits("r", x, np.maximum(x, 0))[0].error == 0
    assert fallback_fits("r", x, np.tanh(x))[0].error > 1e-3


# =========================================================================== specs and layouts (stand-in)


def test_lenet_spec_and_layout(standin: None) -> None:
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert inf.spec == lenet_spec() and inf.layout == LAYOUT and inf.exact
    assert [li.name for li in inf.layers] == [p for p, _ in walk(lenet_spec())]
    assert [li.path for li in inf.layers] == [p for p, _ in walk(lenet_spec())]
    assert inf.layer("fc1").target is ex.model.fc1 and inf.input_shape == ex.x.shape


@pytest.mark.parametrize(
    "make,x,hand",
    [
        (lambda: keras_like.MODEL.model(0), _x(0, 2, 6, 6, 3), "KERAS_NET"),
        (lambda: composite.ResidualBlock(3), _x(0, 2, 3, 5, 5), "RES_BLOCK"),
        (lambda: composite.Net(0), _x(0, 2, 2, 6, 6), "LIST_NET"),
        (lambda: nets.MLP32(0), _x(0, 4, 6, dtype=np.float32), "MLP32"),
    ],
    ids=["keras_nhwc", "residual_block", "layers_list", "mlp_float32"],
)
def test_real_code_networks_give_the_hand_written_spec(standin: None, make: Any, x: np.ndarray, hand: str) -> None:
    import test_real_code as trc

    inf = infer_network(make(), x)
    assert unnamed(inf.spec) == unnamed(getattr(trc, hand)) and inf.exact


def test_keras_layout_and_residual_names(standin: None) -> None:
    inf = infer_network(keras_like.MODEL.model(0), _x(0, 2, 6, 6, 3))
    assert inf.layout == tg.Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
    assert [li.path for li in inf.layers] == [f"layers[{i}]" for i in range(4)]
    res = infer_network(composite.ResidualBlock(3), _x(0, 2, 3, 5, 5))
    import test_real_code as trc

    assert res.spec == trc.RES_BLOCK  # names too: the block's own attribute names


def _register_numpy_nets() -> None:
    def conv(o: Any, x: Any, name: str) -> tuple:
        co, ci, k, _ = o.W.shape
        return tg.Conv2d(name, ci, co, k, stride=o.stride, padding=o.pad), tg.Layout(), {"weight": "W", "bias": "b"}

    register(nn.Conv2d, conv)
    register(
        nn.Linear,
        lambda o, x, name: (tg.Linear(name, o.W.shape[1], o.W.shape[0]), tg.Layout(), {"weight": "W", "bias": "b"}),
    )
    for cls, kind in ((nn.ReLU, tg.ReLU), (nn.Tanh, tg.Tanh), (nn.Flatten, tg.Flatten)):
        register(cls, lambda o, x, name, kind=kind: (kind(name), None, {}))
    register(nn.AvgPool2, lambda o, x, name: (tg.AvgPool2d(name, 2), tg.Layout(), {}))
    register(nn.GlobalAvgPool, lambda o, x, name: (tg.GlobalAvgPool2d(name), tg.Layout(), {}))


def test_benchmark_resnet_and_lenet5_specs(standin: None) -> None:
    _register_numpy_nets()
    w = nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4)
    inf = infer_network(w.net, _x(0, 2, 3, 8, 8))
    assert unnamed(inf.spec) == unnamed(w.spec)
    assert [li.name for li in inf.layers][2:6] == ["b1.conv1", "b1.relu1", "b1.conv2", "b1.relu2"]
    assert inf.layer("b2.down").path == "blocks['b2'].down"
    w = nn.lenet5(batch=2)
    inf = infer_network(w.net, _x(0, 2, 1, 32, 32))
    assert inf.spec == w.spec  # dict keys are the names


def test_inline_operations_become_parameter_free_layers(standin: None) -> None:
    inf = infer_network(InlineNet(), _x(0, 2, 2, 4, 4))
    kinds = [(li.spec.kind, li.target is None) for li in inf.layers]
    assert kinds == [("Conv2d", False), ("ReLU", True), ("Flatten", True), ("Linear", False)]
    assert inf.layers[1].name == "relu" and inf.layers[1].path == ""


def test_inline_residual_without_a_block_object(standin: None) -> None:
    inf = infer_network(InlineResidual(), _x(0, 2, 3, 5, 5))
    res = inf.spec
    assert isinstance(res, tg.Residual) and res.shortcut is None
    assert [l.name for l in res.block] == ["conv1", "relu", "conv2"] and [l.name for l in res.post] == ["out"]


def test_shared_object_called_twice_is_noted_and_mapped_twice(standin: None) -> None:
    m = SharedReLU()
    inf = infer_network(m, _x(0, 3, 4))
    assert [li.name for li in inf.layers] == ["fc1", "act", "fc2", "act_2"]
    assert inf.layer("act_2").target is m.act
    assert any("'act' is called 2 times" in n for n in inf.notes)


def test_a_plain_list_without_forward_runs_in_order(standin: None) -> None:
    layers = [Dense(4, 6), ReLU(), Dense(6, 2, seed=1)]
    inf = infer_network(layers, _x(0, 3, 4))
    assert [li.path for li in inf.layers] == ["[0]", "[1]", "[2]"] and inf.forward is None
    net = wrap_inferred(inf)
    assert not net.end_to_end and net.forward(_x(1, 3, 4)).shape == (3, 2)


# =========================================================================== never changing the user's network


def test_parameters_unchanged_after_inference(standin: None) -> None:
    ex = build()
    before = params_of(ex.model)
    infer_network(ex.model, ex.x)
    assert same_params(before, ex.model)


@pytest.mark.parametrize("cls", [Raising, Uncopyable], ids=["deep_copy", "run_in_place"])
def test_parameters_restored_when_the_forward_raises(standin: None, cls: type) -> None:
    m = cls()
    before = params_of(m)
    w_obj = m.fc1.W
    with pytest.raises(RuntimeError, match="user forward failed"):
        infer_network(m, _x(0, 3, 4))
    assert same_params(before, m) and m.fc1.W is w_obj
    assert all("forward" not in vars(o) for o in layer_objects(m).values())


# =========================================================================== errors


def test_error_no_forward_and_not_a_list() -> None:
    with pytest.raises(StructureError, match="has no forward method and is not a list or dict"):
        infer_network(object(), _x(0, 2, 3))


def test_error_list_entry_without_forward() -> None:
    with pytest.raises(StructureError, match=r"\[1\] = 'relu', which has no forward method; every entry"):
        infer_network([Dense(3, 3), "relu"], _x(0, 2, 3))


def test_error_forward_calls_no_layer() -> None:
    with pytest.raises(StructureError, match=r"called no layer object.*infer_layer"):
        infer_network(Dense(3, 2), _x(0, 2, 3))


class Scaled:
    def __init__(self) -> None:
        self.fc = Dense(3, 4)
        self.M = np.ones((4, 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc.forward(x) @ self.M  # arithmetic with its own array: no parameter-free layer


def test_error_unexplained_operation_names_where(standin: None) -> None:
    with pytest.raises(StructureError, match=r"turns \(2, 4\) into \(2, 2\).*no parameter-free layer"):
        infer_network(Scaled(), _x(0, 2, 3))


def test_error_span_cannot_be_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def span(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        li = standin_infer_layer(target, x, name=name, seed=seed, **kw)
        if isinstance(target, Dense):
            li.best = Fit(tg.Sequential([tg.Linear("fc", *target.W.shape), tg.ReLU("relu")], name=name))
        return li

    monkeypatch.setattr(net_mod, "infer_layer", span)
    inf = infer_network(DocsMLP(), _x(0, 3, 4))
    with pytest.raises(StructureError, match="a span of several spec layers"):
        wrap_inferred(inf)


# =========================================================================== checked like the hand-written wrap (stand-in)


def test_lenet_inferred_wrap_passes(standin: None) -> None:
    ex = build()
    report = tg.check_network(infer_network(ex.model, ex.x).wrap(), x=ex.x)
    assert report.ok and [e.name for e in report.layers][-1] == "(network)"


def test_docs_mlp_backward_skipping_a_layer_is_found_by_the_network_entry(standin: None) -> None:
    m, x = DocsMLP(), _x(0, 5, 4)
    report = tg.check_network(infer_network(m, x).wrap(), x=x)
    assert [(e.name, e.verdict) for e in report.layers] == [
        ("fc1", "pass"),
        ("relu", "pass"),
        ("fc2", "pass"),
        ("(network)", "backward"),
    ]
    assert "'relu' is never called by the network's backward" in report.layer("(network)").diagnosis[0]


@slow
@pytest.mark.parametrize("bug", list(VARIANTS))
def test_lenet_variants_fail_where_the_hand_written_wrap_does(standin: None, bug: str) -> None:
    ex = build(bug)
    hand = tg.check_network(ex.net, x=ex.x)
    got = tg.check_network(infer_network(ex.model, ex.x).wrap(), x=ex.x)
    assert (got.ok, got.first_failure) == (hand.ok, hand.first_failure)
    if hand.first_failure:
        assert got.layer(hand.first_failure).verdict == hand.layer(hand.first_failure).verdict


@slow
@pytest.mark.parametrize(
    "make,x,first",
    [
        (keras_like.MODEL.model, _x(0, 2, 6, 6, 3), None),
        (keras_like.MODEL_AVERAGED_DW.model, _x(0, 2, 6, 6, 3), ("layers_3", "backward")),
        (lambda s: composite.ResidualBlock(3, s), _x(0, 2, 3, 5, 5), None),
        (lambda s: composite.ResidualBlockNoShortcutGrad(3, s), _x(0, 2, 3, 5, 5), ("(network)", "backward")),
        (composite.Net, _x(0, 2, 2, 6, 6), None),
        (composite.NetMaskFromDy, _x(0, 2, 2, 6, 6), ("layers_1", "backward")),
        (nets.MLP32, _x(0, 4, 6, dtype=np.float32), None),
        (nets.MLP32NoSlope, _x(0, 4, 6, dtype=np.float32), ("act", "backward")),
        (lambda s: InlineNet(), _x(0, 2, 2, 4, 4), None),
        (lambda s: InlineResidual(), _x(0, 2, 3, 5, 5), None),
    ],
    ids=[
        "keras",
        "keras-dw_averaged",
        "res",
        "res-shortcut_grad_forgotten",
        "list",
        "list-relu_mask_from_dy",
        "mlp32",
        "mlp32-slope_dropped",
        "inline_ops",
        "inline_residual",
    ],
)
def test_real_code_networks_checked(standin: None, make: Any, x: np.ndarray, first: Any) -> None:
    report = tg.check_network(infer_network(make(0), x).wrap(), x=x)
    assert report.ok == (first is None), str(report)
    if first:
        assert (report.first_failure, report.layer(first[0]).verdict) == first, str(report)


@slow
def test_benchmark_resnet_checked(standin: None) -> None:
    _register_numpy_nets()
    w = nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4)
    x = _x(0, 2, 3, 8, 8)
    assert tg.check_network(infer_network(w.net, x).wrap(), x=x).ok


# =========================================================================== with the real infer_layer

real = pytest.mark.skipif(not REAL, reason="harness.infer.layer (H1) is not merged yet")


@real
def test_real_lenet_spec_layout_and_check() -> None:
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert unnamed(inf.spec) == unnamed(lenet_spec()) and inf.layout.data == "NHWC", str(inf)
    assert tg.check_network(inf.wrap(), x=ex.x).ok


@real
def test_real_docs_mlp_network_entry() -> None:
    m, x = DocsMLP(), _x(0, 5, 4)
    inf = infer_network(m, x)
    assert unnamed(inf.spec) == unnamed(tg.Sequential([tg.Linear("a", 4, 8), tg.ReLU("b"), tg.Linear("c", 8, 3)]))
    report = tg.check_network(inf.wrap(), x=x)
    assert report.first_failure == "(network)" and report.layer("(network)").verdict == "backward"


@real
@slow
@pytest.mark.parametrize(
    "make,x,hand",
    [
        (lambda: keras_like.MODEL.model(0), _x(0, 2, 6, 6, 3), "KERAS_NET"),
        (lambda: composite.ResidualBlock(3), _x(0, 2, 3, 5, 5), "RES_BLOCK"),
        (lambda: composite.Net(0), _x(0, 2, 2, 6, 6), "LIST_NET"),
        (lambda: nets.MLP32(0), _x(0, 4, 6, dtype=np.float32), "MLP32"),
    ],
    ids=["keras_nhwc", "residual_block", "layers_list", "mlp_float32"],
)
def test_real_infer_layer_on_real_code_networks(make: Any, x: np.ndarray, hand: str) -> None:
    import test_real_code as trc

    inf = infer_network(make(), x)
    assert unnamed(inf.spec) == unnamed(getattr(trc, hand)), str(inf)
    assert tg.check_network(inf.wrap(), x=x).ok


# =========================================================================== more structure (stand-in)


class WithDropout:
    """A layer called with a training flag: the flag goes to its inference as forward_kwargs."""

    def __init__(self) -> None:
        self.fc, self.drop = Dense(4, 5), keras_like.Dropout(0.5)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.drop.forward(self.fc.forward(x), training=True)


def test_call_keywords_reach_the_layer_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def spy(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        seen[name] = kw
        if isinstance(target, keras_like.Dropout):
            return standin_infer_layer(Dense(1, 1), x, name=name)  # any answer: the keywords are under test
        return standin_infer_layer(target, x, name=name, seed=seed, **kw)

    monkeypatch.setattr(net_mod, "infer_layer", spy)
    np.random.seed(0)
    infer_network(WithDropout(), _x(0, 3, 4), dtype="float64")
    assert seen == {"fc": {"dtype": "float64"}, "drop": {"dtype": "float64", "forward_kwargs": {"training": True}}}


def test_running_statistics_unchanged_after_inference(standin: None) -> None:
    block = composite.ResidualBlock(3)
    before = params_of(block)
    infer_network(block, _x(0, 2, 3, 5, 5))
    assert same_params(before, block) and "running_mean" in "".join(before)


def test_layout_ambiguity_settled_by_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def amb(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        li = standin_infer_layer(target, x, name=name, seed=seed, **kw)
        if len(li.candidates) == 2:  # parameter-free on 4-D: say the two layouts are different functions
            li.status, li.ambiguous = "ambiguous", li.candidates[1:]
        return li

    monkeypatch.setattr(net_mod, "infer_layer", amb)
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert inf.exact and inf.layer("relu1").layout.data == "NHWC" and inf.layer("flat").layout.flatten == "HWC"


class Crossing:
    """Two residual connections that cross: z = h(g(f(x)) + x) + f(x)."""

    def __init__(self) -> None:
        self.f, self.g, self.h = Dense(4, 4), Dense(4, 4, seed=1), Dense(4, 4, seed=2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x1 = self.f.forward(x)
        return self.h.forward(self.g.forward(x1) + x) + x1


def test_error_crossing_residuals(standin: None) -> None:
    with pytest.raises(StructureError, match="a residual whose two paths cross"):
        infer_network(Crossing(), _x(0, 3, 4))


class Slotted:
    __slots__ = ("W",)

    def __init__(self) -> None:
        self.W = np.ones((4, 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W


class WithSlotted:
    def __init__(self) -> None:
        self.fc, self.odd, self.unused = Dense(3, 4), Slotted(), ReLU()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.odd.forward(self.fc.forward(x))


def test_error_an_unwatchable_layer_is_named(standin: None) -> None:
    with pytest.raises(StructureError, match=r"no parameter-free layer.*'odd' could not be watched"):
        infer_network(WithSlotted(), _x(0, 2, 3))


def test_uncalled_layer_is_noted(standin: None) -> None:
    m = WithSlotted()
    m.odd = ReLU()  # watchable now
    inf = infer_network(m, _x(0, 2, 3))
    assert [li.path for li in inf.layers] == ["fc", "odd"]
    assert any("'unused' has a forward but the network's forward never called it" in n for n in inf.notes)


def test_layers_disagreeing_on_the_data_layout_are_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    def odd(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        li = standin_infer_layer(target, x, name=name, seed=seed, **kw)
        if name == "conv2":
            li.best = replace(li.best, layout=tg.Layout())
            li.candidates = [li.best]
        return li

    monkeypatch.setattr(net_mod, "infer_layer", odd)
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert inf.layout.data == "NHWC" and any("do not agree on one data layout" in n for n in inf.notes)


class InlineMLP:
    """Two Dense objects, the activation np.maximum in the network's own passes."""

    leak = 0.0

    def __init__(self) -> None:
        self.fc1, self.fc2 = Dense(6, 8), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.fc1.forward(x)
        self.z = z
        return self.fc2.forward(np.maximum(z, self.leak * z))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.fc2.backward(dy) * (self.z > 0))  # a ReLU's mask


class InlineMLPLeaks(InlineMLP):
    leak = 0.01  # bug: the forward leaks, the backward masks as a ReLU


def test_inline_op_confirmed_by_the_network_backward(standin: None) -> None:
    inf = infer_network(InlineMLP(), _x(0, 5, 6))
    assert inf.exact and inf.layer("relu").spec == tg.ReLU("relu") and not inf.layer("relu").why


def test_inline_op_whose_backward_says_another_kind_is_ambiguous(standin: None) -> None:
    inf = infer_network(InlineMLPLeaks(), _x(0, 5, 6))
    li = inf.layers[1]
    assert li.status == "ambiguous" and li.spec.kind == "ReLU" and li.ambiguous[0].spec.kind == "LeakyReLU"
    assert "the forward and the backward disagree" in li.why[0]


@slow
def test_inline_leak_ends_in_forward(standin: None) -> None:
    x = _x(0, 5, 6)
    report = tg.check_network(infer_network(InlineMLPLeaks(), x).wrap(), x=x)
    assert report.first_failure == "(network)" and report.layer("(network)").verdict in ("forward", "both")


class BackwardRaises(DocsMLP):
    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise ValueError("not written yet")


class ForwardOnly:
    def __init__(self) -> None:
        self.fc1, self.relu, self.fc2 = Dense(4, 8), ReLU(), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2.forward(self.relu.forward(self.fc1.forward(x)))


def test_a_backward_that_raises_is_noted_and_changes_nothing(standin: None) -> None:
    m = BackwardRaises()
    before = params_of(m)
    inf = infer_network(m, _x(0, 3, 4))
    assert [li.name for li in inf.layers] == ["fc1", "relu", "fc2"]
    assert any("backward raised ValueError: not written yet" in n for n in inf.notes)
    assert same_params(before, m) and all("backward" not in vars(o) for o in layer_objects(m).values())


def test_a_network_without_backward_is_chained(standin: None) -> None:
    inf = infer_network(ForwardOnly(), _x(0, 3, 4))
    assert inf.forward is None and any("has no backward" in n for n in inf.notes)
    net = wrap_inferred(inf)
    assert not net.end_to_end and net.forward(_x(1, 3, 4)).shape == (3, 3)


# =========================================================================== a composite object as one layer


@slow
@pytest.mark.parametrize(
    "make,x,first",
    [
        (lambda: composite.ResidualBlock(3), _x(0, 2, 3, 5, 5), None),
        (lambda: composite.ResidualBlockNoShortcutGrad(3), _x(0, 2, 3, 5, 5), ("res", "backward")),
        (lambda: composite.Net(0), _x(0, 2, 2, 6, 6), None),
        (lambda: composite.NetMaskFromDy(0), _x(0, 2, 2, 6, 6), ("net", "backward")),
    ],
    ids=["res", "res-shortcut_grad_forgotten", "list", "list-relu_mask_from_dy"],
)
def test_composite_checked_as_one_layer_like_the_hand_written_wrap(
    standin: None, make: Any, x: np.ndarray, first: Any
) -> None:
    report = tg.check_layer(wrap_inferred_layer(infer_network(make(), x)), x=x)
    assert report.ok == (first is None), str(report)
    if first:
        assert (report.first_failure, report.layer(first[0]).verdict) == first, str(report)


def test_composite_as_one_layer_reads_the_sub_layers_parameters(standin: None) -> None:
    block = composite.ResidualBlock(3)
    w = wrap_inferred_layer(infer_network(block, _x(0, 2, 3, 5, 5)))
    import test_real_code as trc

    assert w.spec == trc.RES_BLOCK and np.array_equal(w.get_params()["conv2.weight"], block.conv2.W)


def test_error_a_list_is_not_one_layer(standin: None) -> None:
    with pytest.raises(StructureError, match="a list of layers has no forward of its own"):
        wrap_inferred_layer(infer_network([Dense(4, 6), ReLU()], _x(0, 3, 4)))


def test_error_sub_layers_in_different_orders_are_not_one_layer(standin: None) -> None:
    class TwoOrders(DocsMLP):
        def __init__(self) -> None:
            super().__init__()
            self.fc2 = nn.Linear(8, 3, rng=np.random.default_rng(0))  # W (out, in)

    _register_numpy_nets()
    with pytest.raises(StructureError, match="'fc2' needs a layout or options of its own"):
        wrap_inferred_layer(infer_network(TwoOrders(), _x(0, 3, 4)))
