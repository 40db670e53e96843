"""Network inference (issue 15), the structure: which objects are layers, one watched
forward (and backward) of the network's own code, the data flow read from it (inline
operations, residual sums, objects called twice), the user's network never changed, and
every error path. ``infer_layer`` is the stand-in of tests/infer_standin.py throughout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import harness as tg
from harness.examples.example import build
from harness.inference import network as net_mod
from harness.inference.flow import spec_name
from harness.inference.network import infer_network, wrap_inferred
from harness.inference.structure import StructureError, layer_objects, watch_forward
from infer_nets import (
    BackwardRaises,
    CallAlias,
    Crossing,
    Dense,
    InlineMLP,
    InlineMLPLeaks,
    InlineNet,
    InlineResidual,
    Raising,
    ReLU,
    Scaled,
    SharedReLU,
    Uncopyable,
    UsesCall,
    WithDropout,
    WithSlotted,
    nn,
    params_of,
    same_params,
    xs,
)
from infer_standin import standin_infer_layer
from realcode import composite, keras_like


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net_mod, "infer_layer", standin_infer_layer)


def test_layer_objects_paths_in_attributes_lists_and_dicts() -> None:
    found = layer_objects(nn.resnet(batch=2, size=8, widths=((4, 1), (8, 2)), stem=4).net)
    assert list(found)[:3] == ["stem", "stem_relu", "blocks['b1']"]
    assert "blocks['b2'].down" in found and "blocks['b1'].conv1" in found
    assert list(layer_objects(composite.Net())) == [f"layers[{i}]" for i in range(5)]


def test_watch_records_calls_nesting_and_removes_hooks() -> None:
    block = composite.ResidualBlock(3)
    trace = watch_forward(block, xs(0, 2, 3, 5, 5))
    assert [c.path for c in trace.calls] == ["conv1", "bn1", "conv2", "relu1", "bn2", "relu"][:0] or [
        c.path for c in trace.calls
    ] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu"]
    assert all(c.parent is None for c in trace.calls) and trace.root_runs
    assert all("forward" not in vars(o) for o in layer_objects(block).values())
    assert trace.calls[0].obj is block.conv1  # the user's object, not the copy that ran


def test_watch_sees_call_aliased_to_forward_and_restores_the_class() -> None:
    net = UsesCall()
    trace = watch_forward(net, xs(0, 2, 3))
    assert [c.path for c in trace.calls] == ["a", "b"]
    assert type(net.a) is CallAlias and "forward" not in vars(net.a)


def test_spec_names_from_paths() -> None:
    assert spec_name("layers[0]") == "layers_0"
    assert spec_name("layers['conv1']") == "conv1"
    assert spec_name("down.conv") == "down_conv"


def test_inline_operations_become_parameter_free_layers(standin: None) -> None:
    inf = infer_network(InlineNet(), xs(0, 2, 2, 4, 4))
    kinds = [(li.spec.kind, li.target is None) for li in inf.layers]
    assert kinds == [("Conv2d", False), ("ReLU", True), ("Flatten", True), ("Linear", False)]
    assert inf.layers[1].name == "relu" and inf.layers[1].path == ""


def test_inline_residual_without_a_block_object(standin: None) -> None:
    inf = infer_network(InlineResidual(), xs(0, 2, 3, 5, 5))
    res = inf.spec
    assert isinstance(res, tg.Residual) and res.shortcut is None
    assert [l.name for l in res.block] == ["conv1", "relu", "conv2"] and [l.name for l in res.post] == ["out"]


def test_shared_object_called_twice_is_noted_and_mapped_twice(standin: None) -> None:
    m = SharedReLU()
    inf = infer_network(m, xs(0, 3, 4))
    assert [li.name for li in inf.layers] == ["fc1", "act", "fc2", "act_2"]
    assert inf.layer("act_2").target is m.act
    assert any("'act' is called 2 times" in n for n in inf.notes)


def test_a_plain_list_without_forward_runs_in_order(standin: None) -> None:
    layers = [Dense(4, 6), ReLU(), Dense(6, 2, seed=1)]
    inf = infer_network(layers, xs(0, 3, 4))
    assert [li.path for li in inf.layers] == ["[0]", "[1]", "[2]"] and inf.forward is None
    net = wrap_inferred(inf)
    assert not net.end_to_end and net.forward(xs(1, 3, 4)).shape == (3, 2)


def test_call_keywords_reach_the_layer_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def spy(target: Any, x: Any, *, name: str | None = None, seed: int = 0, **kw: Any) -> Any:
        seen[name] = kw
        if isinstance(target, keras_like.Dropout):
            return standin_infer_layer(Dense(1, 1), x, name=name)  # any answer: the keywords are under test
        return standin_infer_layer(target, x, name=name, seed=seed, **kw)

    monkeypatch.setattr(net_mod, "infer_layer", spy)
    np.random.seed(0)
    infer_network(WithDropout(), xs(0, 3, 4), dtype="float64")
    assert seen == {"fc": {"dtype": "float64"}, "drop": {"dtype": "float64", "forward_kwargs": {"training": True}}}


def test_inline_op_confirmed_by_the_network_backward(standin: None) -> None:
    inf = infer_network(InlineMLP(), xs(0, 5, 6))
    assert inf.exact and inf.layer("relu").spec == tg.ReLU("relu") and not inf.layer("relu").why


def test_inline_op_whose_backward_says_another_kind_is_ambiguous(standin: None) -> None:
    inf = infer_network(InlineMLPLeaks(), xs(0, 5, 6))
    li = inf.layers[1]
    assert li.status == "ambiguous" and li.spec.kind == "ReLU" and li.ambiguous[0].spec.kind == "LeakyReLU"
    assert "the forward and the backward disagree" in li.why[0]


def test_uncalled_layer_is_noted(standin: None) -> None:
    m = WithSlotted()
    m.odd = ReLU()  # watchable now
    inf = infer_network(m, xs(0, 2, 3))
    assert [li.path for li in inf.layers] == ["fc", "odd"]
    assert any("'unused' has a forward but the network's forward never called it" in n for n in inf.notes)


def test_parameters_unchanged_after_inference(standin: None) -> None:
    ex = build()
    before = params_of(ex.model)
    infer_network(ex.model, ex.x)
    assert same_params(before, ex.model)


def test_a_network_that_cannot_be_copied_is_refused_and_unchanged(standin: None) -> None:
    m = Uncopyable()
    before = params_of(m)
    with pytest.raises(StructureError, match=r"a Uncopyable cannot be copied \(TypeError.*make it copyable"):
        infer_network(m, xs(0, 3, 4))
    assert same_params(before, m) and all("forward" not in vars(o) for o in layer_objects(m).values())


@pytest.mark.parametrize("cls", [Raising], ids=["deep_copy"])
def test_parameters_restored_when_the_forward_raises(standin: None, cls: type) -> None:
    m = cls()
    before = params_of(m)
    w_obj = m.fc1.W
    with pytest.raises(RuntimeError, match="user forward failed"):
        infer_network(m, xs(0, 3, 4))
    assert same_params(before, m) and m.fc1.W is w_obj
    assert all("forward" not in vars(o) for o in layer_objects(m).values())


def test_running_statistics_unchanged_after_inference(standin: None) -> None:
    block = composite.ResidualBlock(3)
    before = params_of(block)
    infer_network(block, xs(0, 2, 3, 5, 5))
    assert same_params(before, block) and "running_mean" in "".join(before)


def test_a_backward_that_raises_is_noted_and_changes_nothing(standin: None) -> None:
    m = BackwardRaises()
    before = params_of(m)
    inf = infer_network(m, xs(0, 3, 4))
    assert [li.name for li in inf.layers] == ["fc1", "relu", "fc2"]
    assert any("backward raised ValueError: not written yet" in n for n in inf.notes)
    assert same_params(before, m) and all("backward" not in vars(o) for o in layer_objects(m).values())


def test_error_no_forward_and_not_a_list() -> None:
    with pytest.raises(StructureError, match="has no forward method and is not a list or dict"):
        infer_network(object(), xs(0, 2, 3))


def test_error_list_entry_without_forward() -> None:
    with pytest.raises(StructureError, match=r"\[1\] = 'relu', which has no forward method; every entry"):
        infer_network([Dense(3, 3), "relu"], xs(0, 2, 3))


def test_error_forward_calls_no_layer() -> None:
    with pytest.raises(StructureError, match=r"called no layer object.*infer_layer"):
        infer_network(Dense(3, 2), xs(0, 2, 3))


def test_error_unexplained_operation_names_where(standin: None) -> None:
    with pytest.raises(StructureError, match=r"turns \(2, 4\) into \(2, 2\).*no parameter-free layer"):
        infer_network(Scaled(), xs(0, 2, 3))


def test_error_crossing_residuals(standin: None) -> None:
    with pytest.raises(StructureError, match="a residual whose two paths cross"):
        infer_network(Crossing(), xs(0, 3, 4))


def test_error_an_unwatchable_layer_is_named(standin: None) -> None:
    with pytest.raises(StructureError, match=r"no parameter-free layer.*'odd' could not be watched"):
        infer_network(WithSlotted(), xs(0, 2, 3))
