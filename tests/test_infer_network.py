"""Network inference (issue 15): the spec and layout assembled from the layers' inferences,
and the inferred wrap checked like the hand-written one (the bundled LeNet and its variants,
tests/realcode's networks, benchmarks/numpy_nets.py, the docs' MLP), a composite block as
one layer. Most tests use the stand-in ``infer_layer`` (tests/infer_standin.py); the last
part runs with the real ``harness.inference.layer`` and is skipped until it exists.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import harness as tg
from conftest import slow
from harness.examples import VARIANTS
from harness.examples.example import LAYOUT, build, lenet_spec
from harness.inference import network as net_mod
from harness.inference.network import infer_network, wrap_inferred, wrap_inferred_layer
from harness.inference.result import Fit
from harness.inference.structure import StructureError
from harness.spec import walk
from infer_nets import (
    Dense,
    DocsMLP,
    ForwardOnly,
    InlineMLPLeaks,
    InlineNet,
    InlineResidual,
    ReLU,
    nn,
    register_numpy_nets,
    unnamed,
    xs,
)
from infer_standin import standin_infer_layer
from realcode import composite, keras_like, nets

REAL = importlib.util.find_spec("harness.inference.layer") is not None
real = pytest.mark.skipif(not REAL, reason="harness.inference.layer (H1) is not merged yet")


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net_mod, "infer_layer", standin_infer_layer)


def test_lenet_spec_and_layout(standin: None) -> None:
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert inf.spec == lenet_spec() and inf.layout == LAYOUT and inf.exact
    assert [li.name for li in inf.layers] == [p for p, _ in walk(lenet_spec())]
    assert [li.path for li in inf.layers] == [p for p, _ in walk(lenet_spec())]
    assert inf.layer("fc1").target is ex.model.fc1 and inf.input_shape == ex.x.shape


# real-code networks and the name of the spec their hand-written wrap uses (tests/test_real_code.py)
HAND_WRITTEN = [
    (lambda: keras_like.MODEL.model(0), xs(0, 2, 6, 6, 3), "KERAS_NET"),
    (lambda: composite.ResidualBlock(3), xs(0, 2, 3, 5, 5), "RES_BLOCK"),
    (lambda: composite.Net(0), xs(0, 2, 2, 6, 6), "LIST_NET"),
    (lambda: nets.MLP32(0), xs(0, 4, 6, dtype=np.float32), "MLP32"),
]


@pytest.mark.parametrize(
    "make,x,hand",
    HAND_WRITTEN,
    ids=["keras_nhwc", "residual_block", "layers_list", "mlp_float32"],
)
def test_real_code_networks_give_the_hand_written_spec(standin: None, make: Any, x: np.ndarray, hand: str) -> None:
    import test_real_code as trc

    inf = infer_network(make(), x)
    assert unnamed(inf.spec) == unnamed(getattr(trc, hand)) and inf.exact


def test_keras_layout_and_residual_names(standin: None) -> None:
    inf = infer_network(keras_like.MODEL.model(0), xs(0, 2, 6, 6, 3))
    assert inf.layout == tg.Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
    assert [li.path for li in inf.layers] == [f"layers[{i}]" for i in range(4)]
    res = infer_network(composite.ResidualBlock(3), xs(0, 2, 3, 5, 5))
    import test_real_code as trc

    assert res.spec == trc.RES_BLOCK  # names too: the block's own attribute names


def test_benchmark_resnet_and_lenet5_specs(standin: None) -> None:
    register_numpy_nets()
    w = nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4)
    inf = infer_network(w.net, xs(0, 2, 3, 8, 8))
    assert unnamed(inf.spec) == unnamed(w.spec)
    assert [li.name for li in inf.layers][2:6] == ["b1.conv1", "b1.relu1", "b1.conv2", "b1.relu2"]
    assert inf.layer("b2.down").path == "blocks['b2'].down"
    w = nn.lenet5(batch=2)
    inf = infer_network(w.net, xs(0, 2, 1, 32, 32))
    assert inf.spec == w.spec  # dict keys are the names


def test_error_span_cannot_be_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def span(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        li = standin_infer_layer(target, x, name=name, seed=seed, **kw)
        if isinstance(target, Dense):
            li.best = Fit(tg.Sequential([tg.Linear("fc", *target.W.shape), tg.ReLU("relu")], name=name))
        return li

    monkeypatch.setattr(net_mod, "infer_layer", span)
    inf = infer_network(DocsMLP(), xs(0, 3, 4))
    with pytest.raises(StructureError, match="a span of several spec layers"):
        wrap_inferred(inf)


def test_lenet_inferred_wrap_passes(standin: None) -> None:
    ex = build()
    report = tg.check_network(infer_network(ex.model, ex.x).wrap(), x=ex.x)
    assert report.ok and [e.name for e in report.layers][-1] == "(network)"


def test_docs_mlp_backward_skipping_a_layer_is_found_by_the_network_entry(standin: None) -> None:
    m, x = DocsMLP(), xs(0, 5, 4)
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
        (keras_like.MODEL.model, xs(0, 2, 6, 6, 3), None),
        (keras_like.MODEL_AVERAGED_DW.model, xs(0, 2, 6, 6, 3), ("layers_3", "backward")),
        (lambda s: composite.ResidualBlock(3, s), xs(0, 2, 3, 5, 5), None),
        (lambda s: composite.ResidualBlockNoShortcutGrad(3, s), xs(0, 2, 3, 5, 5), ("(network)", "backward")),
        (composite.Net, xs(0, 2, 2, 6, 6), None),
        (composite.NetMaskFromDy, xs(0, 2, 2, 6, 6), ("layers_1", "backward")),
        (nets.MLP32, xs(0, 4, 6, dtype=np.float32), None),
        (nets.MLP32NoSlope, xs(0, 4, 6, dtype=np.float32), ("act", "backward")),
        (lambda s: InlineNet(), xs(0, 2, 2, 4, 4), None),
        (lambda s: InlineResidual(), xs(0, 2, 3, 5, 5), None),
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
    register_numpy_nets()
    w = nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4)
    x = xs(0, 2, 3, 8, 8)
    assert tg.check_network(infer_network(w.net, x).wrap(), x=x).ok


@real
def test_real_lenet_spec_layout_and_check() -> None:
    ex = build()
    inf = infer_network(ex.model, ex.x)
    assert unnamed(inf.spec) == unnamed(lenet_spec()) and inf.layout.data == "NHWC", str(inf)
    assert tg.check_network(inf.wrap(), x=ex.x).ok


@real
def test_real_docs_mlp_network_entry() -> None:
    m, x = DocsMLP(), xs(0, 5, 4)
    inf = infer_network(m, x)
    assert unnamed(inf.spec) == unnamed(tg.Sequential([tg.Linear("a", 4, 8), tg.ReLU("b"), tg.Linear("c", 8, 3)]))
    report = tg.check_network(inf.wrap(), x=x)
    assert report.first_failure == "(network)" and report.layer("(network)").verdict == "backward"


@real
@slow
@pytest.mark.parametrize(
    "make,x,hand",
    HAND_WRITTEN,
    ids=["keras_nhwc", "residual_block", "layers_list", "mlp_float32"],
)
def test_real_infer_layer_on_real_code_networks(make: Any, x: np.ndarray, hand: str) -> None:
    import test_real_code as trc

    inf = infer_network(make(), x)
    assert unnamed(inf.spec) == unnamed(getattr(trc, hand)), str(inf)
    assert tg.check_network(inf.wrap(), x=x).ok


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


@slow
def test_inline_leak_ends_in_forward(standin: None) -> None:
    x = xs(0, 5, 6)
    report = tg.check_network(infer_network(InlineMLPLeaks(), x).wrap(), x=x)
    assert report.first_failure == "(network)" and report.layer("(network)").verdict in ("forward", "both")


def test_a_network_without_backward_is_chained(standin: None) -> None:
    inf = infer_network(ForwardOnly(), xs(0, 3, 4))
    assert inf.forward is None and any("has no backward" in n for n in inf.notes)
    net = wrap_inferred(inf)
    assert not net.end_to_end and net.forward(xs(1, 3, 4)).shape == (3, 3)


@slow
@pytest.mark.parametrize(
    "make,x,first",
    [
        (lambda: composite.ResidualBlock(3), xs(0, 2, 3, 5, 5), None),
        (lambda: composite.ResidualBlockNoShortcutGrad(3), xs(0, 2, 3, 5, 5), ("res", "backward")),
        (lambda: composite.Net(0), xs(0, 2, 2, 6, 6), None),
        (lambda: composite.NetMaskFromDy(0), xs(0, 2, 2, 6, 6), ("net", "backward")),
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
    w = wrap_inferred_layer(infer_network(block, xs(0, 2, 3, 5, 5)))
    import test_real_code as trc

    assert w.spec == trc.RES_BLOCK and np.array_equal(w.get_params()["conv2.weight"], block.conv2.W)


def test_error_a_list_is_not_one_layer(standin: None) -> None:
    with pytest.raises(StructureError, match="a list of layers has no forward of its own"):
        wrap_inferred_layer(infer_network([Dense(4, 6), ReLU()], xs(0, 3, 4)))


def test_error_sub_layers_in_different_orders_are_not_one_layer(standin: None) -> None:
    class TwoOrders(DocsMLP):
        def __init__(self) -> None:
            super().__init__()
            self.fc2 = nn.Linear(8, 3, rng=np.random.default_rng(0))  # W (out, in)

    register_numpy_nets()
    with pytest.raises(StructureError, match="'fc2' needs a layout or options of its own"):
        wrap_inferred_layer(infer_network(TwoOrders(), xs(0, 3, 4)))


def test_the_networks_layout_never_turns_a_kind_conflict_into_an_exact_other_kind() -> None:
    """A layer named MaxPool whose forward averages is ambiguous, best = the MaxPool (read
    NHWC here); settling the network's NCHW layout moves the reading to NCHW, keeps the
    MaxPool and the doubt, and never makes the AvgPool that fits an exact answer."""
    from harness.inference.network import _settle
    from harness.inference.result import Fit, LayerInference

    nhwc, nchw = tg.Layout(data="NHWC"), tg.Layout()
    named = Fit(tg.MaxPool2d("pool", 2), nhwc, error=0.9)
    fits = Fit(tg.AvgPool2d("pool", 2), nchw, error=0.0)
    li = LayerInference("pool", object(), named, "ambiguous", 1e-9, [fits, named], [fits], why=["named 'MaxPool'"])
    _settle(li, "NCHW", None, True)
    assert li.status == "ambiguous" and isinstance(li.spec, tg.MaxPool2d) and li.ambiguous
