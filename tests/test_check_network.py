"""check_network: every layer in isolation, then the user's own network end to end."""

from __future__ import annotations

import pytest
from test_adapters_network import LAYOUTS, NAMES, X_SHAPE, Linear, make_net, make_spec

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.network import wrap_network
from harness.check import check_network


def wrapped(nhwc: bool, layout, net=None):
    spec = make_spec()
    net = net or make_net(nhwc)
    w = wrap_network(dict(zip(NAMES, net.layers)), spec, forward=net.forward, backward=net.backward,
                     layout=layout, input_shape=X_SHAPE)
    w.set_params(S.init_params(spec, X_SHAPE, seed=3))
    return w, net


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_correct_network_passes_layer_by_layer_and_end_to_end(name: str) -> None:
    w, net = wrapped(*LAYOUTS[name])
    before = {k: fingerprint(v) for k, v in w.get_params().items()}
    report = check_network(w, input_shape=X_SHAPE, seed=1)
    assert report.ok, str(report)
    assert [l.name for l in report.layers] == NAMES + ["(network)"]
    assert {k: fingerprint(v) for k, v in w.get_params().items()} == before


class BadLinear(Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = dout[0]  # bias gradient not summed over the batch
        return dx


def test_the_buggy_layer_is_first_and_the_network_entry_is_downstream() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    net = make_net(nhwc)
    net.layers[4] = BadLinear(36, 10)
    w, _ = wrapped(nhwc, layout, net)
    report = check_network(w, input_shape=X_SHAPE, seed=2)
    assert report.first_failure == "fc1", str(report)
    assert report.layer("fc1").verdict == "backward"
    assert all(report.layer(n).ok for n in NAMES if n != "fc1")  # isolation: nothing else fails
    assert report.layer("(network)").downstream_of == "fc1"


def test_wiring_bug_is_reported_when_every_layer_passes() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    w, _ = wrapped(nhwc, layout, make_net(nhwc, skip=5))  # the network skips relu2
    report = check_network(w, input_shape=X_SHAPE, seed=3)
    assert all(report.layer(n).ok for n in NAMES)
    e2e = report.layer("(network)")
    assert not e2e.ok and e2e.downstream_of is None and "wiring between layers" in e2e.message
    assert report.first_failure == "(network)"


def test_needs_an_input() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    with pytest.raises(ValueError, match="check_network needs x= or input_shape="):
        check_network(w)
