"""emit.to_python: the inferred spec, layout and wrap call as Python that, executed with the
user's object bound, rebuilds the same wrapped layer or network: same spec, same verdict.
The Inference objects are built by hand (inference itself is tested elsewhere)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import harness as tg
from harness.inference import Fit, Inference, LayerInference
from harness.inference.emit import layout_source, spec_source, to_python
from realcode import cs231n, keras_like, nets
from zoo import layers

IN_OUT = tg.Layout(linear="in_out")
CANONICAL = tg.Layout()


def _layer(target, spec, *, layout=CANONICAL, params=None, status="exact", **kw):
    best = Fit(spec=spec, layout=layout, params=params or {}, error=0.0)
    li = LayerInference(name=spec.name, target=target, best=best, status=status, tol=1e-9, candidates=[best], **kw)
    return li


def _inference(li, shape):
    return Inference(spec=li.spec, layout=li.layout, layers=[li], input_shape=shape)


def _run(source, **bound):
    ns = dict(bound)
    exec(compile(source, "<emitted>", "exec"), ns)  # the user's paste
    return ns


def _flat(src):
    """The source on one line, as a reader compares it (black-ish line breaks removed)."""
    s = re.sub(r"\s*\n\s*", " ", src)
    for a, b in (("( ", "("), (", )", ")"), (" )", ")"), ("{ ", "{"), (", }", "}"), ("[ ", "["), (", ]", "]")):
        s = s.replace(a, b)
    return s


def _verdicts(report):
    return [(e.name, e.verdict) for e in report.layers]


@pytest.mark.parametrize(
    "spec",
    [
        tg.Conv2d("conv", 3, 8, 3, stride=2, padding=1),
        tg.Conv2d("conv", 3, 8, (3, 1), stride=(2, 1), padding=(1, 0), dilation=2, groups=1, bias=False),
        tg.MaxPool2d("pool", 2),
        tg.MaxPool2d("pool", 3, stride=2),
        tg.AvgPool2d("pool", 3, 2, 1, count_include_pad=False),
        tg.LeakyReLU("act", 0.1),
        tg.GELU("g", "tanh"),
        tg.Dropout("drop", 0.25, inverted=False),
        tg.BatchNorm2d("bn", 3, eps=1e-6, over="feature"),
        tg.Sequential([tg.Conv2d("c", 2, 3, 3, padding=1), tg.ReLU("r"), tg.Flatten("f"), tg.Linear("fc", 12, 2)]),
        tg.Residual(
            "res", [tg.Conv2d("c1", 3, 3, 3, padding=1, bias=False), tg.BatchNorm2d("bn1", 3)], post=[tg.ReLU("relu")]
        ),
    ],
    ids=lambda s: s.kind,
)
def test_spec_source_round_trips_in_the_short_form(spec):
    src = spec_source(spec)
    assert eval(src, {"tg": tg}) == spec  # the emitted call builds the very spec
    assert "((" not in src and "dilation=(1, 1)" not in src  # normalised pairs written short


def test_spec_source_writes_only_non_defaults():
    assert (
        spec_source(tg.Conv2d("conv", 3, 8, 3, stride=2, padding=1))
        == 'tg.Conv2d("conv", 3, 8, 3, stride=2, padding=1)'
    )
    assert spec_source(tg.MaxPool2d("pool", 2, 2)) == 'tg.MaxPool2d("pool", 2)'
    assert spec_source(tg.ReLU("relu")) == 'tg.ReLU("relu")'
    assert layout_source(tg.Layout(data="NHWC", flatten="HWC")) == 'tg.Layout(data="NHWC", flatten="HWC")'


def test_object_layer_round_trips_with_the_same_verdict():
    obj = layers.Dense()
    li = _layer(
        obj,
        tg.Linear("fc", 6, 4),
        layout=IN_OUT,
        params={"weight": "W", "bias": "b"},
        grads={"weight": "dW", "bias": "db"},
    )
    src = to_python(_inference(li, (5, 6)))
    assert "# trigrad inferred this (exact" in src and "import harness as tg" in src
    assert 'layout = tg.Layout(linear="in_out")' in src
    wrapped = _run(src, obj=obj)["wrapped"]
    assert wrapped.spec == li.spec
    mine = tg.check_layer(wrapped, input_shape=(5, 6), seed=0)
    theirs = tg.check_layer(li.wrap(), input_shape=(5, 6), seed=0)
    assert _verdicts(mine) == _verdicts(theirs) == [("fc", "pass")]


def test_a_buggy_layer_keeps_its_verdict():
    obj = layers.DenseBiasNotSummed()
    li = _layer(obj, tg.Linear("fc", 6, 4), layout=IN_OUT)
    wrapped = _run(to_python(_inference(li, (5, 6))), obj=obj)["wrapped"]
    assert _verdicts(tg.check_layer(wrapped, input_shape=(5, 6))) == [("fc", "backward")]


def test_wrap_options_and_nhwc_layout_are_written():
    obj = keras_like.Dropout(0.25)
    li = _layer(
        obj, tg.Dropout("drop", 0.25), layout=tg.Layout(data="NHWC"), wrap_kwargs={"forward_kwargs": {"training": True}}
    )
    src = to_python(_inference(li, (2, 4, 4, 3)), obj="dropout")
    assert 'forward_kwargs={"training": True}' in src and "tg.wrap_layer(dropout, spec" in src
    wrapped = _run(src, dropout=obj)["wrapped"]
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3))
    assert _verdicts(tg.check_layer(wrapped, x=x)) == [("drop", "pass")]


def test_function_pair_names_its_functions_and_literal_args():
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    fwd, bwd = cs231n.max_pool_forward_naive, cs231n.max_pool_backward_naive
    li = _layer((fwd, bwd), tg.MaxPool2d("pool", 2), wrap_kwargs={"args": (pool_param,)})
    src = to_python(_inference(li, (2, 3, 6, 6)))
    assert "tg.wrap_functions(max_pool_forward_naive, max_pool_backward_naive, spec" in _flat(src)
    assert "'pool_height'" not in src and '"pool_height": 2' in src
    ns = _run(src, max_pool_forward_naive=fwd, max_pool_backward_naive=bwd)
    assert _verdicts(tg.check_layer(ns["wrapped"], input_shape=(2, 3, 6, 6))) == [("pool", "pass")]


def test_function_pair_arrays_are_left_to_bind_and_dtypes_named():
    w, b = np.ones((6, 4)), np.zeros(4)
    li = _layer(
        (cs231n.affine_forward, cs231n.affine_backward),
        tg.Linear("fc", 6, 4),
        layout=IN_OUT,
        wrap_kwargs={"params": [w, b], "dtype": np.float32},
    )
    src = to_python(_inference(li, (5, 6)))
    assert "# bind params: list of (6, 4) float64, (4,) float64" in src
    assert "import numpy as np" in src and "dtype=np.float32" in src
    ns = _run(src, affine_forward=cs231n.affine_forward, affine_backward=cs231n.affine_backward, params=[w, b])
    assert ns["wrapped"].spec == li.spec


def test_doubt_is_stated_in_a_comment():
    x_fit = Fit(spec=tg.ELU("act", 1.0), error=2e-3)
    li = _layer(
        layers.ReLU(),
        tg.ReLU("act"),
        status="ambiguous",
        ambiguous=[x_fit],
        why=["the class is named ReLU but the forward fits LeakyReLU better"],
    )
    src = to_python(_inference(li, (2, 3)))
    assert "(ambiguous, 1 layer(s))" in src
    assert "# ambiguous: act: the class is named ReLU but the forward fits LeakyReLU better; also fits ELU" in src
    li.status, li.ambiguous, li.why = "unmatched", [], []
    assert '# unmatched: act: ReLU("act"): rel error 0.0e+00' in to_python(_inference(li, (2, 3)))


def test_network_round_trips_with_the_same_verdicts():
    mlp = nets.MLP32(0)
    spec = tg.Sequential([tg.Linear("fc1", 6, 8), tg.LeakyReLU("act", 0.1), tg.Linear("fc2", 8, 3)])
    lis = [
        _layer(
            mlp.fc1, spec.layers[0], layout=IN_OUT, params={"weight": "W", "bias": "b"}, wrap_kwargs={"path": "fc1"}
        ),
        # a ReLU reads the arrays alike under any linear order: the network's layout is written once
        _layer(mlp.act, spec.layers[1], layout=CANONICAL, wrap_kwargs={"path": "act"}),
        _layer(mlp.fc2, spec.layers[2], layout=IN_OUT, wrap_kwargs={"path": "fc2", "grad_scale": None}),
    ]
    inf = Inference(
        spec=spec,
        layout=IN_OUT,
        layers=lis,
        input_shape=(4, 6),
        network=mlp,
        forward=mlp.forward,
        backward=mlp.backward,
    )
    src = to_python(inf, obj="mlp")
    assert '"act": mlp.act,' in src and "forward=mlp.forward" in src and "layout=layout" in src
    assert 'tg.wrap_layer(mlp.fc1, tg.Linear("fc1", 6, 8), params={"weight": "W", "bias": "b"}' in _flat(src)
    net = _run(src, mlp=mlp)["net"]
    hand = tg.wrap_network(
        {"fc1": mlp.fc1, "act": mlp.act, "fc2": mlp.fc2},
        spec,
        forward=mlp.forward,
        backward=mlp.backward,
        layout=IN_OUT,
    )
    mine, theirs = tg.check_network(net, input_shape=(4, 6)), tg.check_network(hand, input_shape=(4, 6))
    assert _verdicts(mine) == _verdicts(theirs) and mine.ok


def test_network_layer_under_a_list_index_path():
    from realcode import composite

    net_obj = composite.Net(0)
    lis = [
        _layer(
            net_obj.layers[0],
            tg.Conv2d("conv", 2, 3, 3, padding=1, bias=False),
            wrap_kwargs={"path": "layers[0]"},
            params={"weight": "W"},
        )
    ]
    inf = Inference(spec=lis[0].spec, layout=tg.Layout(), layers=lis, input_shape=(2, 2, 6, 6), network=net_obj)
    assert "tg.wrap_layer(obj.layers[0], " in _flat(to_python(inf))
