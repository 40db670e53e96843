"""Both references' answers at one point: torch's and jax's calls run side by side, jax's in
a second thread, when the work is large enough to pay for the thread.

Both frameworks release the GIL inside their kernels, so on two cores the two calls overlap
(a 1e7-parameter Linear layer: about 140 ms each, one after the other). Below
:data:`CONCURRENT_MIN` values the calls are mostly Python dispatch under the GIL and a
thread only adds its start-up; they then run one after the other, as before, except on a
process's first check: while torch is imported (1.5 s on 2 cores, mostly loading extension
modules) jax imports and compiles its program in the other thread (XLA's compiler runs
without the GIL). The callers build the references inside the calls for that. An exception
in either call is raised in the caller's thread, as if the calls had run in turn (torch's
first when both fail).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

# input + parameter values below which both calls run in the caller's thread
CONCURRENT_MIN = 100_000
# TRIGRAD_REFERENCE_THREADS=0 runs the references one after the other (measurements, debugging)
_ENV = "TRIGRAD_REFERENCE_THREADS"


def both(torch_call: Callable[[], Any], jax_call: Callable[[], Any], size: int) -> tuple[Any, Any]:
    """``(torch_call(), jax_call())``; concurrently (jax's in a second thread) when ``size``
    (the values of the input and the parameters involved) is at least :data:`CONCURRENT_MIN`
    or the torch reference is not imported yet, and ``TRIGRAD_REFERENCE_THREADS`` is not ``0``."""
    cold = "reference_models.torch_ref" not in sys.modules
    if (size < CONCURRENT_MIN and not cold) or os.environ.get(_ENV, "1") == "0":
        return torch_call(), jax_call()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = jax_call()
        except BaseException as e:  # handed to the caller's thread below
            box["error"] = e

    worker = threading.Thread(target=run, name="trigrad-jax-reference", daemon=True)
    worker.start()
    try:
        t = torch_call()
    finally:
        worker.join()  # never leave jax running behind an exception of torch's
    if "error" in box:
        raise box["error"]
    return t, box["value"]


def values_in(x: Any, params: dict[str, Any]) -> int:
    """How many values the references work on: the input's and the parameters'."""
    return int(getattr(x, "size", 0)) + sum(int(getattr(v, "size", 0)) for v in params.values())


__all__ = ["CONCURRENT_MIN", "both", "values_in"]
