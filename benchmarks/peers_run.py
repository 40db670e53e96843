"""One run of one peer on one subject, for ``peers.py``: the peer dispatched by name, the
user's parameters restored afterwards, its calls counted and (optionally) its peak memory
measured; and what every measuring step shares (the data seed, progress lines on stderr)."""

from __future__ import annotations

import sys
from typing import Any

from peers_memory import peak_rss_growth

DATA_SEED = [0, 1]  # inputs and upstream gradients: independent of the user's weights (drawn from seed 0)


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def run_peer(peer: str, subject: Any, counts: Any, x: Any, coords: int | None, outputs: int | None, *,
             loss: Any = None, target: Any = None, seed: int = 0, trigrad_kwargs: dict | None = None,
             memory: bool = False) -> Any:
    """One run of ``peer`` on ``subject`` at ``x``; the result carries the call counts and,
    with ``memory``, the peak RSS growth during the run (:func:`peak_rss_growth`)."""
    counts.reset()
    with subject.preserved():  # the user's parameters back bit for bit: every run starts at the same point
        run = lambda: _run_peer(peer, subject, x, coords, outputs, loss=loss, target=target, seed=seed,  # noqa: E731
                                trigrad_kwargs=trigrad_kwargs)
        r, mib = peak_rss_growth(run) if memory else (run(), None)
    r.calls, r.memory_mib = counts.snapshot(), mib
    return r


def _run_peer(peer: str, subject: Any, x: Any, coords: int | None, outputs: int | None, *, loss: Any, target: Any,
              seed: int, trigrad_kwargs: dict | None) -> Any:
    import peer_checks as pc

    if peer == "trigrad":
        r = pc.trigrad(subject, x=x, loss=loss, target=target, seed=seed, **(trigrad_kwargs or {}))
    else:
        problem = pc.Problem(subject, x, loss=loss, target=target)
        if peer == "gradcheck":
            r = pc.gradcheck(problem, fast=False, max_coords=coords, max_outputs=outputs, seed=seed)
        elif peer == "gradcheck_fast":
            r = pc.gradcheck(problem, fast=True, seed=seed)
        elif peer == "jax_check_grads":
            r = pc.jax_check_grads(problem)
        elif peer == "cs231n":
            r = pc.cs231n(problem, max_coords=coords, seed=seed)
        else:
            raise ValueError(f"unknown peer {peer!r}")
    return r
