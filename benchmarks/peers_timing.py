"""Measuring one workload, for ``peers.py`` (run in a child process): the floor (one user
forward+backward and one ``vjp`` of each reference), every peer's median time over warm
runs (a partial exhaustive run extrapolated to the full one) and calls, then one memory run
of each; and the cProfile of ``check_network`` on LeNet-5."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

from peer_checks import PEERS
from peers_memory import release_freed_memory
from peers_run import DATA_SEED, _progress, run_peer

SLOW_RUN = 30.0  # seconds: runs longer than this are repeated fewer times


def make_workload(key: str) -> Any:
    """``conv``, ``lenet5``, ``resnet``, ``conv-tiny`` (2, 3, 8, 8), or ``linear-P`` (P parameters)."""
    import numpy_nets as nn

    if key == "conv-tiny":
        return nn.conv_layer(batch=2, size=8)
    if key.startswith("linear-"):
        return nn.linear_layer(int(key.split("-", 1)[1]))
    return nn.WORKLOADS[key]()


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _floor(wl: Any, subject: Any, x: Any, g: Any, repeats: int) -> dict[str, float]:
    """Median seconds of one user forward+backward (the raw objects) and one ``vjp`` of each
    reference (built once, warm), and the user's forward and backward alone."""
    from peer_checks import _spec_of
    from reference_models import build

    user = wl.net if wl.is_network else next(iter(wl.layers.values()))
    spec = _spec_of(subject)
    prefix = "" if wl.is_network else f"{wl.spec.name}."
    params = {prefix + k: v for k, v in subject.get_params().items()}
    out: dict[str, float] = {}
    out["user_forward"] = _median(_timed(lambda: user.forward(x), repeats))
    out["user_backward"] = _median(_timed(lambda: user.backward(g), repeats))  # after a forward: its cache is set
    out["user"] = _median(_timed(lambda: (user.forward(x), user.backward(g)), repeats))
    for backend in ("torch", "jax"):
        ref = build(backend, spec)
        ref.vjp(params, x, g)  # warm-up: jax compiles its primitives on the first call
        out[backend] = _median(_timed(lambda: ref.vjp(params, x, g), repeats))
    out["total"] = out["user"] + out["torch"] + out["jax"]
    return out


def _budgets(problem: Any, g: Any, budget: float, max_coords: int) -> dict[str, int]:
    """How much a partial exhaustive run differences: about ``budget`` seconds of forwards
    (two per coordinate) and, for slow gradcheck, of backwards (two per output element),
    at least 50 coordinates / 10 outputs, at most ``max_coords``. Per-call costs are
    measured through the peers' own paths: the torch adapter writes every array before
    each forward, the CS231n loop perturbs the user's array in place."""
    import peer_checks as pc

    whole = [pc.Slot(k) for k in problem.names]
    values = [problem.base[k] for k in problem.names]
    with problem.subject.preserved():
        t_torch = _median(_timed(lambda: problem.evaluate_slots(whole, values), 3))
        t_forward = _median(_timed(lambda: problem.evaluate(dict(problem.base)), 3))
        t_backward = _median(_timed(lambda: problem.vjp(g), 3))

    def clamp(n: float, low: int) -> int:
        return int(min(max_coords, max(low, n)))
    return {"gradcheck_coords": clamp(budget / (2 * t_torch), 50), "gradcheck_outputs": clamp(budget / (2 * t_backward), 10),
            "cs231n_coords": clamp(budget / (2 * t_forward), 50)}


def _runs_for(first: float, repeats: int) -> int:
    return repeats if first <= SLOW_RUN else (min(repeats, 3) if first <= 4 * SLOW_RUN else 1)


def time_workload(key: str, repeats: int, budget: float, max_coords: int, peers: tuple[str, ...] = PEERS) -> dict:
    """Floor, then every peer: a warm-up run and timed runs; then one memory run of each
    peer (after all timings: :func:`release_freed_memory` would slow them). Runs in a child."""
    import numpy as np

    import peer_checks as pc

    load_before = os.getloadavg()
    wl = make_workload(key)
    rng = np.random.default_rng(DATA_SEED)  # a stream independent of the weights' (seeded 0)
    x = rng.standard_normal(wl.input_shape)
    subject = wl.wrap()
    g = rng.standard_normal(pc._spec_of(subject).output_shape(x.shape))
    floor = _floor(wl, subject, x, g, max(repeats, 5))
    problem = pc.Problem(subject, x)
    budgets = _budgets(problem, g, budget, max_coords)
    counts = pc.count_calls(subject)
    out: dict[str, Any] = {"workload": key, "params": wl.param_count(), "input_shape": list(wl.input_shape),
                           "coords": problem.n_coords, "outputs": problem.n_outputs, "floor": floor,
                           "budgets": budgets, "peers": {}}

    def run(peer: str, memory: bool = False) -> Any:
        coords = budgets["cs231n_coords"] if peer == "cs231n" else budgets["gradcheck_coords"]
        return run_peer(peer, subject, counts, x, coords, budgets["gradcheck_outputs"], memory=memory)

    for peer in peers:
        _progress(f"{key}: {peer}")
        first = run(peer)
        n = _runs_for(first.seconds, repeats)
        out["peers"][peer] = _timing_row([run(peer) for _ in range(n)], first, floor)
    release_freed_memory(pin=True)
    for peer in peers:
        _progress(f"{key}: {peer} (memory)")
        release_freed_memory()
        _memory_row(out["peers"][peer], run(peer, memory=True))
    out["loadavg"] = {"before": load_before, "after": os.getloadavg()}  # others' load on this (shared) machine
    return out


def _timing_row(results: list[Any], first: Any, floor: dict[str, float]) -> dict[str, Any]:
    """One peer's timings: the median of ``results`` (extrapolated to the full run when the
    runs were partial), the first (warm-up) run, what the last run said and counted."""
    last = results[-1]
    measured = [r.seconds for r in results]
    row = {"seconds": _median(measured), "measured_seconds": _median(measured), "runs": len(results),
           "first_seconds": first.seconds, "times": measured, "caught": last.caught, "detail": last.detail,
           "calls": last.calls, "coords": last.coords, "coords_total": last.coords_total,
           "outputs": last.outputs, "outputs_total": last.outputs_total, "extrapolated": False}
    if last.extrapolated is not None:
        row["seconds"] = _median([r.extrapolated for r in results])
        row["extrapolated"] = True
        row["extrapolated_from"] = _extrapolation_note(last)
    if last.peer == "trigrad":
        row["floor_ratio"] = row["seconds"] / floor["total"]
        row["verdicts"] = last.verdicts
    return row


def _memory_row(row: dict[str, Any], r: Any) -> None:
    """Add the memory run ``r`` to a peer's row; for a partial slow gradcheck also the full
    run's estimate: the two dense Jacobians it would hold (16 bytes x inputs x outputs)."""
    row["memory_mib"] = r.memory_mib
    if r.peer == "gradcheck" and r.memory_mib is not None and row["extrapolated"]:
        extra = 16 * (r.coords_total * r.outputs_total - r.coords * r.outputs) / 2**20
        row["memory_mib_full_estimate"] = r.memory_mib + extra


def _extrapolation_note(r: Any) -> str:
    note = f"extrapolated from {r.coords:,} of {r.coords_total:,} coordinates"
    if r.outputs is not None and r.outputs < r.outputs_total:
        note += f" and {r.outputs:,} of {r.outputs_total:,} output elements"
    return note


def profile_lenet(top: int = 15) -> str:
    """cProfile of ``check_network`` on the LeNet-5 workload (one warm run): the ``top``
    entries by cumulative time."""
    import cProfile
    import io
    import pstats

    import numpy as np

    import harness
    import numpy_nets as nn

    wl = nn.lenet5()
    x = np.random.default_rng(DATA_SEED).standard_normal(wl.input_shape)
    net = wl.wrap()
    harness.check_network(net, x=x)  # warm-up
    prof = cProfile.Profile()
    prof.enable()
    harness.check_network(net, x=x)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()
