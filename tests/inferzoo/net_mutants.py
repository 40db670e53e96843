"""Wrong-kind mutants inside networks: a LeNet whose first pool object averages (named and
differentiated as a max pool), and an MLP whose inline activation leaks in the forward while
its backward uses the ReLU mask. Checked against the intended network, the first failure
is that pool (``forward``); for the inline activation, which has no object, it is the
network's own pass, and there trigrad says ``both`` (the network's backward runs on the
leaked activations, so its gradients leave the reference's too): the explicit API has no
per-layer entry to say ``forward`` at."""

from __future__ import annotations

import numpy as np

from harness.adapters.layouts import Layout

from .entry import Entry
from .mutants_free import MaxPool as AveragingMaxPool
from .nets import LENET, LENET_NAMES, MLP, MLP_SPEC, LeNet


class LeNetPoolAverages(LeNet):
    def __init__(self, seed=0, dtype=np.float64):
        super().__init__(seed, dtype)
        self.pool1 = AveragingMaxPool()  # its forward averages, its backward routes to the argmax


class MLPLeakyInline(MLP):
    def forward(self, x):
        z1 = self.fc1.forward(x)
        self.h1 = np.maximum(z1, 0.01 * z1)  # bug: leaks; the backward below masks as a ReLU
        self.h2 = np.maximum(self.fc2.forward(self.h1), 0)
        return self.fc3.forward(self.h2)


NETWORK_MUTANTS = [
    Entry(
        "lenet_pool_averages",
        LeNetPoolAverages,
        (2, 1, 12, 12),
        LENET,
        style="network",
        layers=lambda net: {n: getattr(net, n) for n in LENET_NAMES},
        verdict="forward",
        at="pool1",
        bug="AvgPool2d(2) fits pool1's forward",
    ),
    Entry(
        "mlp_inline_activation_leaks",
        MLPLeakyInline,
        (5, 6),
        MLP_SPEC,
        {"layout": Layout(linear="in_out")},
        style="network",
        layers=lambda m: {"fc1": m.fc1, "fc2": m.fc2, "fc3": m.fc3},
        verdict="both",
        at="(network)",
        bug="LeakyReLU(0.01) fits the first inline activation",
    ),
]
