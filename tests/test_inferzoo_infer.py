"""Inference acceptance on the inference corpus (tests/inferzoo, issue 15): code written the
way public from-scratch repositories write it, whose truth tests/test_inferzoo_truth.py
checks with the explicit API.

- correct layers and networks: ``infer(obj, x=x)`` is ``exact`` with the truth's spec (layer
  names ignored) and layout (the fields that matter for the kinds), or says ``ambiguous`` /
  ``unmatched`` with a reason: never ``exact`` and wrong; at least 90% are ``exact``;
  ``check_layer(obj, x=x)`` / ``check_network(net, x=x)`` with no spec pass and say that
  the spec was inferred;
- wrong-kind mutants: never ``exact``, the doubt stated, the best candidate of the intended
  kind, and the no-spec check ends in ``forward`` (inside a network: the first failure is on
  the forward side).

A representative part runs by default (under ~40 s); the rest, and the 90% figure over the
whole corpus, under ``-m slow``."""

from __future__ import annotations

import pytest

api = pytest.importorskip("harness.inference.api")

import harness as tg  # noqa: E402
from inferzoo import LAYERS, MUTANTS, NETWORK_MUTANTS, NETWORKS, SHAPE_MUTANTS, Entry  # noqa: E402
from inferzoo.compare import disagreements  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered")

QUICK = {
    "conv_im2col_stride2_pad1",
    "conv_nhwc_hwio_same5",
    "fc_out_in",
    "dense_bias_row_returns_list",
    "bn2d_params_dict_eps1e-3",
    "leaky_relu_0.2",
    "gelu_tanh",
    "maxpool_overlap_3_2",
    "flatten_nhwc",
    "dropout_inverted_0.3",
    "mlp_inline_maximum",
    "maxpool_forward_averages",
    "relu_forward_leaks",
    "dense_square_forgets_transpose",
    "conv_forward_flips_kernel",
}


def _params(entries: list[Entry]) -> list:
    """The entries as pytest params: the QUICK ones in the default run, the rest slow."""
    return [pytest.param(e, id=e.name, marks=() if e.name in QUICK else pytest.mark.slow) for e in entries]


_INFERRED: dict[str, object] = {}


def inferred(entry: Entry):
    """``infer`` on the entry's object at seed 0 (once per entry and run)."""
    if entry.name not in _INFERRED:
        _INFERRED[entry.name] = api.infer(entry.make(seed=0), x=entry.x(0))
    return _INFERRED[entry.name]


def _reasons(inference) -> list[str]:
    """What the inference says about each layer that is not exact (empty if one says nothing)."""
    out = []
    for li in inference.layers:
        if li.status != "exact":
            said = li.why or [f.describe() for f in li.ambiguous]
            out.append(f"{li.name}: {said}" if said else "")
    return out


def _assert_never_wrong(entry: Entry) -> None:
    inference = inferred(entry)
    assert inference.status in ("exact", "ambiguous", "unmatched"), inference.status
    if inference.status == "exact":
        wrong = disagreements(entry, inference)
        assert not wrong, f"{entry.name}: exact but wrong: {wrong}\n{inference}"
    else:
        assert all(_reasons(inference)), f"{entry.name}: {inference.status} without a reason\n{inference}"


@pytest.mark.parametrize("entry", _params(LAYERS))
def test_layer_inference_is_exact_and_right_or_says_why(entry: Entry) -> None:
    _assert_never_wrong(entry)


@pytest.mark.parametrize("entry", _params(NETWORKS))
def test_network_inference_is_exact_and_right_or_says_why(entry: Entry) -> None:
    _assert_never_wrong(entry)


@pytest.mark.slow
def test_at_least_90_percent_of_the_corpus_is_inferred_exactly() -> None:
    """Layers and networks alike (a network counts when all its layers are exact)."""
    entries = LAYERS + NETWORKS
    exact = [e.name for e in entries if inferred(e).status == "exact"]
    missed = sorted({e.name for e in entries} - set(exact))
    assert len(exact) >= 0.9 * len(entries), f"{len(exact)}/{len(entries)} exact; not: {missed}"
    for e in entries:  # and none of the exact ones is wrong (the per-entry tests say which)
        if e.name in exact:
            assert not disagreements(e, inferred(e)), e.name


def _check_without_spec(entry: Entry):
    obj, x = entry.make(seed=0), entry.x(0)
    if entry.style == "object" or entry.layers is None:  # a layer, or a composite block object
        return tg.check_layer(obj, x=x)
    return tg.check_network(obj, x=x)


@pytest.mark.parametrize("entry", _params(LAYERS + NETWORKS))
def test_correct_code_checks_with_no_spec_written(entry: Entry) -> None:
    report = _check_without_spec(entry)
    assert report.ok, str(report)
    assert "infer" in str(report).lower(), f"the report does not say the spec was inferred:\n{report}"


@pytest.mark.parametrize("entry", _params(MUTANTS))
def test_wrong_kind_mutant_is_not_explained_by_the_kind_that_fits(entry: Entry) -> None:
    """The bug makes another kind fit the forward better (``entry.fits``): inference must not
    call that ``exact``; it states the doubt, keeps the intended kind as the best (what the
    name and the backward support), and the check without a spec says ``forward``."""
    inference = inferred(entry)
    assert inference.status in ("ambiguous", "unmatched"), f"{entry.name} ({entry.bug}):\n{inference}"
    assert all(_reasons(inference)), f"{entry.name}: the doubt is not stated\n{inference}"
    assert inference.layers[0].spec.kind == entry.spec.kind, f"{entry.name}: best is not the intended kind\n{inference}"
    report = _check_without_spec(entry)
    assert report.layers[0].verdict == "forward", f"{entry.name} ({entry.bug}):\n{report}"


@pytest.mark.slow
@pytest.mark.parametrize("entry", NETWORK_MUTANTS, ids=[e.name for e in NETWORK_MUTANTS])
def test_wrong_kind_inside_a_network_is_blamed_on_the_forward(entry: Entry) -> None:
    """A pool object that averages, an inline activation that leaks: the network's inference
    is not ``exact`` (the doubt stated), and the check without a spec fails first at the
    forward side (``forward``, or ``both`` for the network's own pass as the explicit check
    says), never ``backward``: the better-fitting kind must not move the blame."""
    inference = inferred(entry)
    assert inference.status != "exact", f"{entry.name} ({entry.bug}):\n{inference}"
    assert all(_reasons(inference)), str(inference)
    report = _check_without_spec(entry)
    first = report.layer(report.first_failure)
    assert first.verdict in ("forward", "both"), f"{entry.name} ({entry.bug}):\n{report}"


@pytest.mark.slow
@pytest.mark.parametrize("entry", SHAPE_MUTANTS, ids=[e.name for e in SHAPE_MUTANTS])
def test_shape_changing_forward_bug_is_not_exact(entry: Entry) -> None:
    """A conv meant with padding 1 whose forward does not pad: Conv2d(padding=0) fits the
    forward exactly, the backward is the padding-1 one; not ``exact``, and the check fails on
    the forward side (``forward``, or ``error`` as the explicit check against the intended
    spec says: the output's shape is not the intended one)."""
    inference = inferred(entry)
    assert inference.status != "exact", str(inference)
    assert all(_reasons(inference)), str(inference)
    report = _check_without_spec(entry)
    assert report.layers[0].verdict in ("forward", "error"), str(report)
    assert not report.ok
