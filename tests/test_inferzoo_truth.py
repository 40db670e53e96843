"""The inference corpus's truth (tests/inferzoo) holds with trigrad's explicit API: every
correct layer and network passes against its declared spec and wrapping, every wrong-kind
mutant ends in its expected verdict against the intended spec, and the kind each mutant's
forward really computes is what the corpus says. Also: the comparison helpers the inference
acceptance tests use (tests/test_inferzoo_infer.py) say equal exactly when they should."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg
from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layouts import Layout
from inferzoo import LAYERS, MUTANTS, NETWORK_MUTANTS, NETWORKS, SHAPE_MUTANTS, Entry
from inferzoo.compare import layout_fields, same_spec

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered")


def _arrays(obj) -> dict[str, str]:
    """Fingerprints of the arrays an object holds (attributes and one level of dicts)."""
    out = {}
    for k, v in vars(obj).items():
        if isinstance(v, np.ndarray):
            out[k] = fingerprint(v)
        elif isinstance(v, dict):
            out.update({f"{k}[{kk}]": fingerprint(vv) for kk, vv in v.items() if isinstance(vv, np.ndarray)})
    return out


def check_truth(entry: Entry, obj, x: np.ndarray):
    """The explicit check a human would write for ``entry``."""
    if entry.style == "object" or entry.layers is None:
        return tg.check_layer(obj, entry.spec, x=x, **entry.wrap)
    passes = {"forward": obj.forward, "backward": obj.backward} if entry.own_passes else {}
    net = tg.wrap_network(entry.layers(obj), entry.spec, input_shape=entry.x_shape, **passes, **entry.wrap)
    return tg.check_network(net, x=x)


@pytest.mark.parametrize("entry", LAYERS, ids=[e.name for e in LAYERS])
def test_correct_layer_passes_against_its_truth(entry: Entry) -> None:
    obj = entry.make(seed=0)
    before = _arrays(obj)
    report = check_truth(entry, obj, entry.x(0))
    assert report.ok, str(report)
    assert {k: v for k, v in _arrays(obj).items() if k in before} == before


@pytest.mark.parametrize("entry", NETWORKS, ids=[e.name for e in NETWORKS])
def test_correct_network_passes_against_its_truth(entry: Entry) -> None:
    report = check_truth(entry, entry.make(seed=0), entry.x(0))
    assert report.ok, str(report)
    assert all(layer.verdict == "pass" for layer in report.layers)


# float32 residual block with conv biases feeding batch norm, then ReLU: trigrad says
# "inconclusive" (FD probes cross kinks, the conv biases' true-zero gradients are "too noisy")
# although both references agree with the user to ~1e-7 (tol 5e-5); DESIGN.md says
# inconclusive is not for that case. Reported to the coordinator; accepted here until fixed.
FD_ONLY_INCONCLUSIVE = {("residual_identity", "float32")}


@pytest.mark.slow
@pytest.mark.parametrize("entry", LAYERS + NETWORKS, ids=[e.name for e in LAYERS + NETWORKS])
def test_correct_entries_pass_at_other_seeds_and_in_float32(entry: Entry) -> None:
    for seed, dtype in ((1, np.float64), (2, np.float32)):
        obj = entry.make(seed=seed, dtype=dtype)
        if not (_arrays(obj) or entry.style == "network"):  # parameter-free layers take the input's dtype
            continue
        report = check_truth(entry, obj, entry.x(seed, dtype))
        if (entry.name, np.dtype(dtype).name) in FD_ONLY_INCONCLUSIVE and not report.ok:
            layer = report.layers[0]
            assert layer.verdict == "inconclusive", str(report)
            assert all(t.ok for t in layer.tensors), str(report)  # both references agree with the user
            continue
        assert report.ok, (seed, dtype, str(report))


ALL_MUTANTS = MUTANTS + SHAPE_MUTANTS


@pytest.mark.parametrize("entry", ALL_MUTANTS, ids=[e.name for e in ALL_MUTANTS])
def test_mutant_gets_its_verdict_against_the_intended_spec(entry: Entry) -> None:
    report = check_truth(entry, entry.make(seed=0), entry.x(0))
    layer = report.layers[0]
    assert layer.verdict == entry.verdict, str(report)
    if entry.verdict == "forward":
        assert next(t.name for t in layer.tensors if not t.ok) == "output", str(report)


@pytest.mark.parametrize("entry", NETWORK_MUTANTS, ids=[e.name for e in NETWORK_MUTANTS])
def test_network_mutant_fails_first_where_the_bug_is(entry: Entry) -> None:
    report = check_truth(entry, entry.make(seed=0), entry.x(0))
    assert report.first_failure == entry.at, str(report)
    assert report.layer(entry.at).verdict == entry.verdict, str(report)
    assert all(layer.verdict == "pass" for layer in report.layers if layer.name not in (entry.at, "(network)"))


FITTED = [e for e in ALL_MUTANTS if e.fits is not None]


@pytest.mark.parametrize("entry", FITTED, ids=[e.name for e in FITTED])
def test_mutant_forward_is_the_kind_the_corpus_says(entry: Entry) -> None:
    """Against the better-fitting kind the output matches the reference and the check fails
    anyway (the backward is the intended layer's): the bug really makes that kind fit."""
    spec, wrap = entry.fits
    report = tg.check_layer(entry.make(seed=0), spec, x=entry.x(0), **wrap)
    layer = report.layers[0]
    assert [t.ok for t in layer.tensors if t.name == "output"] == [True], str(report)
    assert layer.verdict in ("backward", "error"), str(report)


def test_mutants_are_all_told_apart_from_their_fit() -> None:
    """Every mutant but the edge-padded conv (which no kind fits) names its better fit, and
    the fit is a different spec or layout from the intended one."""
    assert {e.name for e in ALL_MUTANTS if e.fits is None} == {"conv_forward_edge_padding"}
    for e in FITTED:
        spec, wrap = e.fits
        layout = wrap.get("layout", Layout())
        assert not same_spec(e.spec, spec, len(e.x_shape)) or layout != e.wrap.get("layout", Layout()), e.name


def test_corpus_shape() -> None:
    """About 40 layers and 6 networks, names unique, every style present."""
    names = [e.name for e in LAYERS + NETWORKS + ALL_MUTANTS + NETWORK_MUTANTS]
    assert len(names) == len(set(names))
    assert len(LAYERS) >= 40 and len(NETWORKS) >= 6 and len(ALL_MUTANTS) >= 10
    assert {e.style for e in NETWORKS} == {"network"} and {e.style for e in LAYERS} == {"object"}
    kinds = {e.spec.kind for e in LAYERS}
    assert kinds >= {
        "Conv2d",
        "Linear",
        "BatchNorm1d",
        "BatchNorm2d",
        "LayerNorm",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "GELU",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "MaxPool2d",
        "AvgPool2d",
        "GlobalAvgPool2d",
        "Flatten",
        "Dropout",
        "Sequential",
    }


# ---------------------------------------------------------------- the comparison helpers


def test_same_spec_ignores_names_and_equivalent_spellings() -> None:
    conv = S.Conv2d("conv", 2, 3, 3, padding=1)
    assert same_spec(conv, S.Conv2d("c0", 2, 3, (3, 3), padding=(1, 1)))
    assert same_spec(conv, S.Conv2d("c0", 2, 3, 3, padding="same"))
    assert not same_spec(conv, S.Conv2d("conv", 2, 3, 3, padding=0))
    assert not same_spec(conv, S.Conv2d("conv", 2, 3, 3, padding=1, bias=False))
    assert same_spec(S.Softmax("s", axis=-1), S.Softmax("t", axis=1), ndim=2)
    assert not same_spec(S.Softmax("s", axis=0), S.Softmax("t", axis=1), ndim=2)
    assert same_spec(S.LeakyReLU("a", 0.2), S.LeakyReLU("b", 0.2000001))
    assert not same_spec(S.LeakyReLU("a", 0.2), S.LeakyReLU("b", 0.1))
    assert same_spec(S.BatchNorm2d("bn", 3, eps=1e-3), S.Sequential([S.BatchNorm2d("x", 3, eps=1.0000002e-3)]))
    assert not same_spec(S.BatchNorm2d("bn", 3, eps=1e-3), S.BatchNorm2d("bn", 3))
    assert not same_spec(S.MaxPool2d("p", 2), S.AvgPool2d("p", 2))
    assert same_spec(S.ReLU("r"), S.LeakyReLU("r", 0.0))
    assert not same_spec(S.ReLU("r"), S.LeakyReLU("r", 0.01))
    gap = S.GlobalAvgPool2d("g", keepdims=True)
    assert same_spec(gap, S.AvgPool2d("p", (3, 4)), ndim=4, hw=(3, 4))
    assert not same_spec(gap, S.AvgPool2d("p", 3), ndim=4, hw=(3, 4))
    assert not same_spec(S.GlobalAvgPool2d("g"), S.AvgPool2d("p", (3, 4)), ndim=4, hw=(3, 4))  # shapes differ
    assert same_spec(S.BatchNorm1d("bn", 5), S.BatchNorm1d("bn", 5, over="feature"), ndim=2)
    net = S.Sequential([S.Linear("fc1", 4, 5), S.ReLU("r"), S.Linear("fc2", 5, 2)])
    assert same_spec(net, S.Sequential([S.Sequential([S.Linear("a", 4, 5), S.ReLU("b")]), S.Linear("c", 5, 2)]))
    assert not same_spec(net, S.Sequential([S.Linear("a", 4, 5), S.Linear("c", 5, 2)]))


def test_same_spec_recurses_into_residuals() -> None:
    def res(name, stride):
        return S.Residual(
            name,
            [S.Conv2d("c1", 2, 4, 3, stride=stride, padding=1), S.ReLU("r")],
            shortcut=S.Conv2d("p", 2, 4, 1, stride=stride),
            post=[S.ReLU("out")],
        )

    assert same_spec(res("block", 2), res("other", 2))
    assert same_spec(S.Sequential([res("block", 2)]), res("b", 2))
    assert not same_spec(res("block", 2), res("block", 1))


def test_layout_fields_compare_only_what_the_kind_depends_on() -> None:
    conv3, conv1 = S.Conv2d("c", 2, 3, 3), S.Conv2d("c", 2, 3, 1)
    assert layout_fields(conv3, Layout(), Layout(kernel="OHWI"), 4)
    assert not layout_fields(conv1, Layout(), Layout(kernel="OHWI", flip=True), 4)
    assert layout_fields(conv1, Layout(), Layout(kernel="IOHW"), 4)
    assert layout_fields(conv3, Layout(), Layout(flip=True), 4)
    assert layout_fields(conv3, Layout(), Layout(data="NHWC"), 4)
    assert not layout_fields(S.ReLU("r"), Layout(), Layout(data="NHWC", linear="in_out"), 4)
    assert layout_fields(S.Linear("fc", 5, 5), Layout(), Layout(linear="in_out"), 2)
    assert not layout_fields(S.Linear("fc", 5, 5), Layout(), Layout(kernel="HWIO"), 2)
    flat = S.Flatten("f")
    assert not layout_fields(flat, Layout(data="NHWC", flatten="HWC"), Layout(), 4)  # both a plain reshape
    assert layout_fields(flat, Layout(), Layout(flatten="HWC"), 4)
    assert layout_fields(S.MaxPool2d("p", 2), Layout(data="NHWC"), Layout(), 4)
