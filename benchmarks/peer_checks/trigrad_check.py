"""trigrad itself as a peer: ``harness.check_layer`` / ``check_network`` with the defaults,
its report's verdicts turned into a :class:`PeerResult`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .result import PeerResult

FAILING = ("forward", "backward", "both", "error")  # trigrad verdicts that report a problem


def trigrad(subject: Any, *, x: np.ndarray | None = None, input_shape: tuple[int, ...] | None = None,
            loss: Any = None, target: Any = None, seed: int = 0, **wrap_kwargs: Any) -> PeerResult:
    """``harness.check_layer`` / ``check_network`` (default ``fd_probes``); caught when any
    entry's verdict is forward, backward, both or error (``inconclusive`` is reported, not
    counted as caught)."""
    import harness
    from harness.adapters.network import WrappedNetwork

    from harness.adapters.layouts import data_to_user

    if x is not None:  # the peers' x is canonical; trigrad reads x in the code's declared layout
        x = data_to_user(np.asarray(x, dtype=np.float64), subject.layout)
    t0 = time.perf_counter()
    if isinstance(subject, WrappedNetwork):
        report = harness.check_network(subject, x=x, y=target, loss=loss, seed=seed)
    else:
        report = harness.check_layer(subject, x=x, input_shape=input_shape, seed=seed, **wrap_kwargs)
    seconds = time.perf_counter() - t0
    verdicts = {layer.name: layer.verdict for layer in report.layers}
    failing = [k for k, v in verdicts.items() if v in FAILING]
    detail = f"{failing[0]}: {verdicts[failing[0]]}" if failing else "passed"
    return PeerResult("trigrad", bool(failing), detail, seconds, verdicts=verdicts,
                      inconclusive=any(v == "inconclusive" for v in verdicts.values()))
