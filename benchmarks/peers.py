"""trigrad against its peers: how fast each gradient checker answers, what it costs, and
whether its answer can be trusted, on the same handwritten numpy code.

    python benchmarks/peers.py            # everything: writes benchmarks/peers_results.json
                                          # and benchmarks/cost_vs_params.svg, prints tables
    python benchmarks/peers.py --quick    # smoke run: tiny workloads, 1 repeat, a few zoo
                                          # entries; writes only where --out / --plot say
    python benchmarks/peers.py --profile  # cProfile of check_network on the LeNet-5 workload

Peers (see ``peer_checks.py``): ``torch.autograd.gradcheck`` slow and fast mode,
``jax.test_util.check_grads`` (rev, order 1), CS231n's coordinate-wise central difference
loop, and trigrad (``check_layer`` / ``check_network``).

Workloads (``numpy_nets.py``): one conv layer (8, 3, 32, 32) -> 16 channels, 3x3, stride 2,
pad 1; LeNet-5 (61,706 parameters, batch 8); a ResNet-style network without batch norm
(~0.9M parameters, batch 4, 32x32); and a scaling series of square Linear layers of 1e3 ..
1e7 parameters (batch 8).

Measures, per workload and peer, in one fresh process per workload (so ratios compare
numbers from the same process):

- time: median wall time over ``--repeats`` runs after one warm-up run (fewer runs when a
  run takes over 30 s: 3, or 1 over 120 s; the count is recorded). Slow gradcheck and the
  CS231n loop are run on a random subset of coordinates when the full run would be long
  (about ``--budget`` seconds of differencing, at most ``--max-coords`` coordinates; slow
  gradcheck also differentiates a subset of output elements) and their full time is
  extrapolated linearly; the output says "extrapolated from N of n coordinates".
- calls: calls into the user's layer ``forward`` / ``backward`` (summed over layers) and
  the network's own passes, counted by wrapping the user's methods.
- memory: peak RSS growth during one more (warm) run of each peer, after all timings:
  ``VmHWM`` reset through ``/proc/self/clear_refs`` just before, minus ``VmRSS`` at that
  moment; memory freed by earlier runs is first given back to the OS and glibc's mmap
  threshold pinned (:func:`release_freed_memory`), so a run cannot silently reuse it. It
  includes torch's and XLA's allocations, which ``tracemalloc`` would not see. For a
  partial slow gradcheck the full run's two dense Jacobians (16 bytes x inputs x outputs)
  are added as an estimate.
- threads: numpy, torch and XLA run single-threaded in the measuring processes by default
  (``--threads``): the peers' costs are compared, not the libraries' parallel speedups, and
  on a shared 2-core machine a busy core stalls OpenMP barriers (a 32x32 float64 torch
  backward measured 48 ms instead of 0.05 ms while another process held one core).
- floor: one forward+backward of the user's code plus one ``vjp`` of each reference
  (torch, jax; eager, warm) on the same workload; trigrad's time is given as a multiple.

Detection (one run each, nothing extrapolated): the bug zoo's 31 layer mutants
(``tests/zoo/layers.py``), the 9 network variants of the bundled example LeNet
(``harness/examples/variants.py``, checked with the user's loss), the zoo's correct layers
and the correct example network (false alarms), and three correct layers at kinks (inputs
with exact zeros or tied max-pool windows, as a network feeds them).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT), str(ROOT / "tests")):  # numpy_nets / peer_checks, harness, the zoo
    if p not in sys.path:
        sys.path.insert(0, p)

from peer_checks import PEERS  # noqa: E402  (after the path set-up; imports only numpy)

LABELS = {"gradcheck": "gradcheck (slow)", "gradcheck_fast": "gradcheck (fast)", "jax_check_grads": "jax check_grads",
          "cs231n": "CS231n loop", "trigrad": "trigrad"}
# forward bugs whose backward is the exact gradient of the wrong forward: a peer that only
# compares the backward with finite differences of the same forward cannot see them, so
# an alarm it raises there comes from something else (a kink, a strict tolerance) and is
# not counted as a detection (it is kept as ``caught``; ``counted`` is False). Likewise an
# alarm on a network variant that the peer also raises on the correct network (see
# ``_attributable``).
CONSISTENT_FORWARD = ("dense wrong forward, consistent backward", "conv bias added twice, consistently",
                      "conv1-true-convolution")
SLOW_RUN = 30.0  # seconds: runs longer than this are repeated fewer times
DATA_SEED = [0, 1]  # inputs and upstream gradients: independent of the user's weights (drawn from seed 0)
MMAP_THRESHOLD = 65536  # bytes: glibc serves larger blocks by mmap during the memory runs
M_MMAP_THRESHOLD = -3  # mallopt's parameter number

MAIN_WORKLOADS = ("conv", "lenet5", "resnet")
SCALING = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_WORKLOADS = ("conv-tiny",)
QUICK_SCALING = (100, 1_000)


# ---------------------------------------------------------------------------- workloads


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


# ---------------------------------------------------------------------------- memory


def _status(field: str) -> int:
    """``VmHWM`` / ``VmRSS`` of this process in bytes (0 where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def release_freed_memory(pin: bool = False) -> None:
    """Before a memory run: give memory freed by earlier runs back to the OS
    (``malloc_trim``), and with ``pin`` make glibc serve every block of 64 KiB or more by
    mmap from now on (``mallopt(M_MMAP_THRESHOLD)``, which also stops it raising that
    threshold), so a run's peak RSS growth counts its own allocations instead of reusing
    memory freed before. Pinned, large allocations get slower (fresh pages every time):
    timings are taken before. A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if pin:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.malloc_trim(0)


def peak_rss_growth(fn: Callable[[], Any]) -> tuple[Any, float | None]:
    """Run ``fn``; return (its result, peak RSS growth in MiB during the run, or None where
    the high-water mark cannot be reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return fn(), None
    before = _status("VmRSS")
    result = fn()
    return result, max(0, _status("VmHWM") - before) / 2**20


# ---------------------------------------------------------------------------- one workload (child process)


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


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- detection (child process)


def _zoo_entries(quick: bool) -> tuple[list, list]:
    """(mutants, correct) from the bug zoo, as (name, make_subject, input_shape, expected)."""
    from zoo.layers import CORRECT, MUTANTS

    from harness.adapters.layer import WrappedLayer

    def maker(make: Callable, spec: Any, kwargs: dict) -> Callable[[], Any]:
        def build() -> Any:
            import harness

            user = make()
            return user if isinstance(user, WrappedLayer) else harness.wrap_layer(user, spec, **kwargs)
        return build

    mutants = [(m[0], maker(m[1], m[2], m[3]), m[4], m[5]) for m in MUTANTS]
    correct = [(c[0], maker(c[1], c[2], c[3]), c[4], "pass") for c in CORRECT]
    if quick:
        keep = ("dense wrong forward, consistent backward", "dense weight grad averaged over the batch", "dense")
        mutants = [m for m in mutants if m[0] in keep]
        correct = [c for c in correct if c[0] in keep]
    return mutants, correct


def _kink_entries() -> list:
    """Correct layers at points where the function has a kink, as a network feeds them:
    (name, make_subject, x)."""
    import numpy as np
    from zoo import layers as Z

    import harness
    from harness.examples.lenet import MaxPool2D

    rng = np.random.default_rng(DATA_SEED)
    relu_in = np.maximum(rng.standard_normal((2, 3, 4, 5)), 0)  # a ReLU after a ReLU: exact zeros
    pool_in = np.maximum(rng.standard_normal((4, 6, 8, 8)), 0)  # max pool after a ReLU: all-zero windows tie
    return [
        ("relu on an input with exact zeros", lambda: harness.wrap_layer(Z.ReLU(), harness.ReLU("relu")), relu_in),
        ("leaky relu on an input with exact zeros",
         lambda: harness.wrap_layer(Z.LeakyReLU(), harness.LeakyReLU("lrelu", 0.01)), relu_in),
        ("max pool 2x2 after a ReLU (tied all-zero windows)",
         lambda: harness.wrap_layer(MaxPool2D(), harness.MaxPool2d("pool", 2), layout=harness.Layout(data="NHWC")),
         pool_in),
    ]


def _detect_layer(name: str, make: Callable[[], Any], x: Any, input_shape: Any, trigrad_own_input: bool) -> dict[str, dict]:
    """Every peer on a fresh copy of one layer: ``{peer: result dict}``."""
    import peer_checks as pc

    out = {}
    for peer in PEERS:
        subject = make()
        counts = pc.count_calls(subject)
        kwargs = {}
        if peer == "trigrad" and trigrad_own_input:  # trigrad's documented use: it draws the input itself
            kwargs = {"input_shape": input_shape}
        r = run_peer(peer, subject, counts, None if kwargs else x, None, None, trigrad_kwargs=kwargs)
        out[peer] = _brief(r, name)
    return out


def _brief(r: Any, name: str = "") -> dict:
    """The result of one detection run as JSON; ``counted``: whether a catch counts as a
    detection of the bug (see :data:`CONSISTENT_FORWARD`)."""
    counted = r.caught and (r.peer == "trigrad" or name not in CONSISTENT_FORWARD)
    d = {"caught": r.caught, "counted": counted, "detail": r.detail, "seconds": r.seconds, "calls": r.calls}
    if r.verdicts is not None:
        d["verdicts"] = {k: v for k, v in r.verdicts.items() if v != "pass"}
        d["inconclusive"] = r.inconclusive
    if r.normwise_caught is not None:
        d["normwise_caught"] = r.normwise_caught
    if r.errors is not None:
        d["errors"] = r.errors
    return d


def _attributable(peer: str, result: dict, baseline: dict) -> bool:
    """Whether a peer's alarm on a network variant can be told from what it says about the
    correct network (the variant differs from it by one bug): always when it passes the
    correct network; for CS231n, whose per-tensor errors a person reads, when some tensor
    fails by more than ten times its error on the correct network; otherwise not."""
    from peer_checks import CS231N_THRESHOLD

    if not baseline["caught"]:
        return True
    if peer == "cs231n" and result.get("errors") and baseline.get("errors"):
        return any(e > CS231N_THRESHOLD and e > 10 * baseline["errors"].get(k, 0.0) for k, e in result["errors"].items())
    return False


def detection(quick: bool) -> dict:
    """Every peer on the bug zoo, the example network's variants, correct layers and networks,
    and correct layers at kinks. Runs in a child."""
    import numpy as np

    import peer_checks as pc
    from harness.adapters.layouts import data_from_user
    from harness.examples.example import build as build_example
    from harness.examples.variants import VARIANTS

    mutants, correct = _zoo_entries(quick)
    out: dict[str, list] = {"mutants": [], "correct": [], "kinks": [], "variants": []}
    for group, entries in (("mutants", mutants), ("correct", correct)):
        for name, make, shape, expected in entries:
            _progress(f"zoo: {name}")
            x = np.random.default_rng(DATA_SEED).standard_normal(shape)
            peers = _detect_layer(name, make, x, shape, trigrad_own_input=True)
            tr = peers["trigrad"].get("verdicts", {})
            located = (expected == "pass" and not tr) or (expected in tr.values())
            out[group].append({"name": name, "expected": expected, "trigrad_located": located, "peers": peers})
    for name, make, x in ([] if quick else _kink_entries()):
        _progress(f"kinks: {name}")
        out["kinks"].append({"name": name, "expected": "pass", "peers": _detect_layer(name, make, x, None, False)})
    names = [] if quick else ["correct", *VARIANTS]  # the networks take minutes under the exhaustive peers
    for name in names:
        _progress(f"variant: {name}")
        peers = {}
        for peer in PEERS:
            ex = build_example(name, batch=4)
            counts = pc.count_calls(ex.net)
            x = data_from_user(ex.x, ex.net.layout)  # the peers take canonical NCHW; ex.x is the code's NHWC
            r = run_peer(peer, ex.net, counts, x, None, None, loss=ex.loss, target=ex.y)
            peers[peer] = _brief(r, name)
        v = VARIANTS.get(name)
        if v is None:
            baseline = peers
        else:
            for peer, r in peers.items():
                r["attributable"] = _attributable(peer, r, baseline[peer]) if r["caught"] else None
                r["counted"] = bool(r["counted"] and r["attributable"])
        tr = peers["trigrad"].get("verdicts", {})
        entry = {"name": name, "expected": f"{v.layer}: {v.side}" if v else "pass", "peers": peers,
                 "trigrad_located": (v is None and not tr) or (v is not None and tr.get(v.layer) == v.side)}
        out["correct" if v is None else "variants"].append(entry)
    out["summary"] = _summary(out)
    return out


def _summary(d: dict) -> dict:
    """Per peer: caught / total for mutants and variants, alarms on correct code and at kinks."""
    out = {}
    for peer in PEERS:
        def count(group: str, key: str = "caught") -> int:
            return sum(bool(e["peers"][peer].get(key)) for e in d[group])
        row = {"mutants_caught": count("mutants", "counted"), "mutants": len(d["mutants"]),
               "variants_caught": count("variants", "counted"), "variants": len(d["variants"]),
               "alarms_on_consistent_forward_bugs": sum(bool(e["peers"][peer]["caught"]) for e in d["mutants"] + d["variants"]
                                                        if e["name"] in CONSISTENT_FORWARD),
               "false_alarms": count("correct"), "correct": len(d["correct"]),
               "kink_alarms": count("kinks"), "kinks": len(d["kinks"])}
        total = row["mutants"] + row["variants"]
        row["detection_fraction"] = (row["mutants_caught"] + row["variants_caught"]) / total if total else None
        if peer == "trigrad":
            row["inconclusive_on_correct"] = count("correct", "inconclusive") + count("kinks", "inconclusive")
            row["located"] = sum(e["trigrad_located"] for e in d["mutants"] + d["variants"])
        if peer == "cs231n":
            row["false_alarms_normwise"] = count("correct", "normwise_caught")
            row["kink_alarms_normwise"] = count("kinks", "normwise_caught")
        out[peer] = row
    return out


# ---------------------------------------------------------------------------- the parent


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that cap numpy's, torch's and XLA's threads at ``threads``
    (none for 0: the libraries' defaults)."""
    if threads <= 0:
        return {}
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={n}"}


def _child(args: list[str], threads: int = 0) -> dict:
    """Run ``peers.py --child ...`` in a fresh process; its last stdout line is JSON."""
    env = {**os.environ, **thread_env(threads)}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed with exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    import jax
    import numpy
    import torch

    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__, "jax": jax.__version__}


def _code_state() -> dict:
    """Which trigrad was measured: the commit, files changed since it under harness/ and
    reference_models/, and a hash of harness/check.py (the engine changes often)."""
    import hashlib

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    dirty = [line[3:] for line in git("status", "--porcelain", "harness", "reference_models").splitlines()]
    check = (ROOT / "harness" / "check.py").read_bytes()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": dirty,
            "check_py_sha256": hashlib.sha256(check).hexdigest()[:16]}


def run_all(args: argparse.Namespace) -> dict:
    workloads = QUICK_WORKLOADS if args.quick else MAIN_WORKLOADS
    scaling = QUICK_SCALING if args.quick else SCALING
    common = ["--repeats", str(args.repeats), "--budget", str(args.budget), "--max-coords", str(args.max_coords)]
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {"command": " ".join(["python", "benchmarks/peers.py", *sys.argv[1:]]), "quick": args.quick,
                 "repeats": args.repeats, "budget_seconds": args.budget, "max_coords": args.max_coords,
                 "threads": args.threads or "library defaults",
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": _machine(), "code": _code_state(),
                 "memory": "peak RSS growth (MiB) during one warm run: VmHWM reset via /proc/self/clear_refs, "
                           f"minus VmRSS then; after all timings, freed memory trimmed and glibc's mmap threshold "
                           f"pinned at {MMAP_THRESHOLD} bytes"},
        "workloads": {}, "scaling": [],
    }
    for key in workloads:
        _progress(f"workload {key}")
        results["workloads"][key] = _child(["workload", key, *common], args.threads)
    for p in scaling:
        _progress(f"scaling: linear layer with ~{p:.0e} parameters")
        results["scaling"].append(_child(["workload", f"linear-{p}", *common], args.threads))
    if not args.skip_detection:
        _progress("detection")
        results["detection"] = _child(["detection", *(["--quick"] if args.quick else [])], args.threads)
    results["meta"]["seconds"] = time.perf_counter() - t0
    return results


# ---------------------------------------------------------------------------- output


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1e3:.1f} ms"


def _fmt_mib(m: float | None) -> str:
    if m is None:
        return "-"
    if m >= 2**20:
        return f"{m / 2**20:.1f} TiB"
    return f"{m / 1024:.1f} GiB" if m >= 1024 else f"{m:.1f} MiB"


def workload_table(w: dict) -> str:
    """One workload's rows as text."""
    f = w["floor"]
    lines = [f"{w['workload']}: {w['params']:,} parameters, input {tuple(w['input_shape'])}, {w['coords']:,} coordinates, "
             f"{w['outputs']:,} outputs (correct code: any alarm is false)",
             f"  floor {_fmt_s(f['total'])} = user fwd+bwd {_fmt_s(f['user'])} + torch vjp {_fmt_s(f['torch'])} "
             f"+ jax vjp {_fmt_s(f['jax'])}",
             f"  {'peer':<17} {'time (median)':>13} {'runs':>4} {'first run':>10} {'fwd calls':>10} {'bwd calls':>10} "
             f"{'net f/b':>9} {'peak RSS':>10}  verdict"]
    for peer, r in w["peers"].items():
        c = r["calls"]
        net = f"{c['net_forward']}/{c['net_backward']}" if c["net_forward"] or c["net_backward"] else "-"
        mem = _fmt_mib(r["memory_mib"]) + ("*" if "memory_mib_full_estimate" in r else "")
        verdict = "FALSE ALARM" if r["caught"] else "pass"  # every workload is correct code
        extra = f"  [{r['extrapolated_from']}; measured {_fmt_s(r['measured_seconds'])}" if r["extrapolated"] else ""
        if "memory_mib_full_estimate" in r:
            extra += f"; full run needs ~{_fmt_mib(r['memory_mib_full_estimate'])}"
        extra += "]" if extra else ""
        if peer == "trigrad":
            extra += f"  = {r['floor_ratio']:.0f}x floor"
        lines.append(f"  {LABELS[peer]:<17} {_fmt_s(r['seconds']):>13} {r['runs']:>4} {_fmt_s(r['first_seconds']):>10} "
                     f"{c['forward']:>10,} "
                     f"{c['backward']:>10,} {net:>9} {mem:>10}  {verdict}{extra}")
    return "\n".join(lines)


def detection_table(d: dict) -> str:
    s = d["summary"]
    t = s["trigrad"]
    lines = [f"detection: {t['mutants']} zoo mutants, {t['variants']} network variants; false alarms on "
             f"{t['correct']} correct layers/networks and {t['kinks']} correct layers at kinks",
             f"  {'peer':<17} {'mutants':>8} {'variants':>9} {'fraction':>9} {'false alarms':>13} {'at kinks':>9}"]
    for peer, r in s.items():
        frac = f"{r['detection_fraction']:.0%}" if r["detection_fraction"] is not None else "-"
        lines.append(f"  {LABELS[peer]:<17} {r['mutants_caught']:>4}/{r['mutants']:<3} {r['variants_caught']:>5}/"
                     f"{r['variants']:<3} {frac:>9} {r['false_alarms']:>9}/{r['correct']:<3} {r['kink_alarms']:>5}/"
                     f"{r['kinks']:<3}")
    lines.append(f"  trigrad named the expected layer and side for {t['located']} of {t['mutants'] + t['variants']}; "
                 f"inconclusive on correct code: {t['inconclusive_on_correct']}")
    c = s["cs231n"]
    lines.append(f"  CS231n with a norm-wise relative error instead: {c['false_alarms_normwise']} false alarms, "
                 f"{c['kink_alarms_normwise']} at kinks")
    for peer in PEERS:
        missed = [e["name"] + (" (an alarm, not attributable to the bug)" if e["peers"][peer]["caught"] else "")
                  for e in d["mutants"] + d["variants"] if not e["peers"][peer]["counted"]]
        if missed:
            lines.append(f"  {LABELS[peer]} missed: " + "; ".join(missed))
    for group in ("correct", "kinks"):
        for e in d[group]:
            alarms = [LABELS[p] for p in PEERS if e["peers"][p]["caught"]]
            if alarms:
                lines.append(f"  false alarm on {e['name']} ({group}): " + ", ".join(alarms))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Cost against parameter count (log-log), one line per peer, from the scaling series;
    hollow markers for extrapolated times."""
    from svg_plot import loglog_svg

    floor = "floor (user + torch + jax)"
    series: dict[str, list[tuple[float, float, bool]]] = {LABELS[p]: [] for p in PEERS}
    series[floor] = []
    for w in results["scaling"]:
        for peer, r in w["peers"].items():
            series[LABELS[peer]].append((w["params"], r["seconds"], r["extrapolated"]))
        series[floor].append((w["params"], w["floor"]["total"], False))
    svg = loglog_svg(series, title="Gradient checkers on one Linear layer (batch 8, float64, 1 thread)",
                     xlabel="parameters", ylabel="time per check (median)", dashed=(floor,))
    path.write_text(svg)


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny workloads, 1 repeat, a few zoo entries")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per peer (default 5; 1 with --quick)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of differencing a partial exhaustive run aims at (default 8; 0.5 with --quick)")
    parser.add_argument("--max-coords", type=int, default=None, help="coordinates a partial run differences at most "
                        "(default 2000; 200 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="numpy/torch/XLA threads in the measuring processes "
                        "(default 1; 0: the libraries' defaults)")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/peers_results.json; "
                        "--quick writes none unless given)")
    parser.add_argument("--plot", type=Path, default=None, help="SVG plot (default benchmarks/cost_vs_params.svg)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of check_network on LeNet-5 and exit")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.budget = args.budget if args.budget is not None else (0.5 if args.quick else 8.0)
    args.max_coords = args.max_coords or (200 if args.quick else 2000)
    if args.child:
        kind, *rest = args.child
        if kind == "workload":
            out: Any = time_workload(rest[0], args.repeats, args.budget, args.max_coords)
        elif kind == "profile":
            out = {"profile": profile_lenet()}
        else:
            out = detection(args.quick)
        print(json.dumps(_jsonable(out)))
        return
    if args.profile:  # in a child, under the same thread settings as the measurements
        print(_child(["profile"], args.threads)["profile"])
        return
    results = _jsonable(run_all(args))
    for w in [*results["workloads"].values(), *results["scaling"]]:
        print(workload_table(w) + "\n")
    if "detection" in results:
        print(detection_table(results["detection"]))
    out = args.out or (None if args.quick else HERE / "peers_results.json")
    svg = args.plot or (None if args.quick else HERE / "cost_vs_params.svg")
    if out:
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")
    if svg:
        plot(results, svg)
        print(f"wrote {svg}")
    print(f"total {_fmt_s(results['meta']['seconds'])}")


if __name__ == "__main__":
    main()
