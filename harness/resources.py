"""Will a check fit in memory? Estimated from the spec's shapes, refused up front.

A check copies every activation many times: the canonical float64 input and output, the
copies handed to the user's code (and a guard copy to catch writes into them), the user's
output and gradients read back as float64, torch's and jax's forward and VJP (with what
autograd saves), the warm-up point for the stale-cache
test, and the finite-difference probes' perturbed points. Measured peak resident memory
over the float64 bytes of a layer's input plus output (in a fresh process, after a warm-up
check; ReLU, Linear and 3x3 Conv2d layers from 8 MiB to 128 MiB of activations) was 13 to
21; :data:`LAYER_COPIES` adds headroom. A network check also keeps both references'
activations and upstream gradients for every layer at once (:data:`NETWORK_COPIES` per
layer), and checks its layers one at a time: on conv-relu-conv-relu networks the estimate
was 1.3x and 1.4x the measured peak (448 MiB for 341 MiB, 2,018 MiB for 1,414 MiB).

:func:`require` compares the estimate with the memory the machine has available
(``MemAvailable`` in ``/proc/meminfo``, else ``os.sysconf``) and raises
:class:`ResourceError` — a :class:`~harness.spec.SpecError`, so ``trigrad check`` exits 2
— before any user code or reference runs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .spec import SpecError, layer_shapes, named_params, walk

BYTES = 8  # float64: the harness and both references compute in it
LAYER_COPIES = 24  # float64 copies of a layer's input + output one layer check holds at its peak (measured 13-21)
NETWORK_COPIES = 8  # per layer, held for the whole network check: both references' activations and gradients
PARAM_COPIES = 12  # of the parameters: the user's, canonical, both references', gradients, FD perturbations
GiB = 2**30


class ResourceError(SpecError):
    """The check would need more memory than the machine has available; the message gives the
    estimate and what is available."""


def available_bytes() -> int | None:
    """Memory available to a new allocation without swapping: ``MemAvailable`` from
    ``/proc/meminfo``, else free physical pages from ``os.sysconf``; None when neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _leaves(spec: Any, input_shape: tuple[int, ...]) -> list[int]:
    """Elements of each leaf layer's input plus output, in forward order."""
    shapes = layer_shapes(spec, tuple(input_shape))
    return [
        int(np.prod(shapes[path][0])) + int(np.prod(shapes[path][1]))
        for path, layer in walk(spec)
        if not layer.children() and path in shapes
    ]


def _params(spec: Any, input_shape: tuple[int, ...]) -> int:
    return sum(int(np.prod(info.shape)) for info in named_params(spec, tuple(input_shape)).values())


def layer_estimate(spec: Any, input_shape: tuple[int, ...]) -> int:
    """Bytes a :func:`~harness.check_layer` of ``spec`` (a layer or a span) on a canonical
    input of ``input_shape`` needs at its peak: ``BYTES * (LAYER_COPIES * sum over the
    leaves of (input + output elements) + PARAM_COPIES * parameter elements)``. Raises
    :class:`~harness.spec.SpecError` when the shape does not fit the spec."""
    return BYTES * (LAYER_COPIES * sum(_leaves(spec, input_shape)) + PARAM_COPIES * _params(spec, input_shape))


def network_estimate(spec: Any, input_shape: tuple[int, ...]) -> int:
    """Bytes a :func:`~harness.check_network` needs: every layer's activations held by the
    whole-network reference passes (``NETWORK_COPIES`` each), plus the largest single-layer
    check (``LAYER_COPIES``), plus the parameters."""
    leaves = _leaves(spec, input_shape) or [0]
    return BYTES * (
        NETWORK_COPIES * sum(leaves) + LAYER_COPIES * max(leaves) + PARAM_COPIES * _params(spec, input_shape)
    )


def require(needed: int, what: str) -> None:
    """Raise :class:`ResourceError` when ``needed`` bytes exceed the memory available now
    (nothing is refused when it cannot be read). ``what`` says which check, e.g.
    ``"checking layer 'conv1' on input (64, 512, 512, 512)"``."""
    available = available_bytes()
    if available is None or needed <= available:
        return
    raise ResourceError(
        f"{what}: this check needs about {needed / GiB:,.1f} GiB (about {LAYER_COPIES} float64 copies of every "
        f"activation it compares); the machine has {available / GiB:,.1f} GiB available. Check a smaller input: a "
        "batch of 2 and a few pixels test the same code paths (likely cause: the training shape passed as input_shape)"
    )


__all__ = [
    "BYTES",
    "LAYER_COPIES",
    "NETWORK_COPIES",
    "PARAM_COPIES",
    "ResourceError",
    "available_bytes",
    "layer_estimate",
    "network_estimate",
    "require",
]
