"""The bundled example with no spec written: ``check_network(model, x=x)`` on the raw numpy
LeNet (NHWC, HWIO kernels, weights stored (in, out), HWC flatten) infers everything and ends
where the hand-written wrap (harness.examples.example.build) ends, for the correct network
and for each of its realistic mistakes; the conv written as a true convolution while the
other is a cross-correlation is ambiguous (never a silent pass)."""

from __future__ import annotations

import pytest

import harness as tg
from harness.adapters.arrays import fingerprint
from harness.examples import VARIANTS
from harness.examples.example import build


def _same_end(variant: str) -> None:
    ex = build(variant)
    before = {k: fingerprint(v) for k, v in vars(ex.model.conv1).items() if hasattr(v, "shape")}
    hand = tg.check_network(ex.net, x=ex.x)
    auto = tg.check_network(ex.model, x=ex.x)
    assert auto.inferred is not None
    assert [e.name for e in auto.layers] == [e.name for e in hand.layers]
    assert (auto.ok, auto.first_failure) == (hand.ok, hand.first_failure), (variant, str(auto))
    if hand.first_failure:
        assert auto.layer(hand.first_failure).verdict == hand.layer(hand.first_failure).verdict
    after = {k: fingerprint(v) for k, v in vars(ex.model.conv1).items() if k in before}
    assert after == before  # the user's parameters untouched


@pytest.mark.parametrize("variant", ["correct", *VARIANTS])
def test_the_bundled_example_ends_where_the_hand_written_wrap_does(variant: str) -> None:
    _same_end(variant)


def test_a_true_convolution_beside_a_cross_correlation_is_ambiguous() -> None:
    ex = build("conv1-true-convolution")
    inference = tg.infer(ex.model, ex.x)
    conv1, conv2 = inference.layer("conv1"), inference.layer("conv2")
    assert (conv1.status, conv2.status) == ("ambiguous", "exact")
    assert not conv1.layout.flip and conv1.ambiguous[0].layout.flip
    assert "true convolution (kernel flipped), the other way from conv2" in conv1.why[-1]
    # the correct network's convs agree: nothing to say
    assert tg.infer(build().model, build().x).status == "exact"
