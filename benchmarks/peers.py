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

# This file is the entry point: the options, and the parent that runs each workload and the
# detection in a fresh child process and writes the results. The work is done in
# peers_timing (one workload: floor, times, calls, memory), peers_memory (peak RSS growth),
# peers_run (one run of one peer), peers_detection (what each peer catches) and
# peers_report (tables, plot, JSON); the peers themselves are in peer_checks/.

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT), str(ROOT / "tests")):  # numpy_nets / peer_checks, harness, the zoo
    if p not in sys.path:
        sys.path.insert(0, p)

# after the path set-up; none of these imports more than numpy at import time
from peer_checks import PEERS  # noqa: E402
from peers_detection import CONSISTENT_FORWARD, detection  # noqa: E402
from peers_memory import MMAP_THRESHOLD, peak_rss_growth, release_freed_memory  # noqa: E402
from peers_report import LABELS, _fmt_s, _jsonable, detection_table, plot, workload_table  # noqa: E402
from peers_run import DATA_SEED, _progress, run_peer  # noqa: E402
from peers_timing import SLOW_RUN, make_workload, profile_lenet, time_workload  # noqa: E402

MAIN_WORKLOADS = ("conv", "lenet5", "resnet")
SCALING = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_WORKLOADS = ("conv-tiny",)
QUICK_SCALING = (100, 1_000)


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


__all__ = ["CONSISTENT_FORWARD", "DATA_SEED", "LABELS", "MMAP_THRESHOLD", "PEERS", "SLOW_RUN", "detection",
           "detection_table", "main", "make_workload", "peak_rss_growth", "plot", "profile_lenet",
           "release_freed_memory", "run_all", "run_peer", "thread_env", "time_workload", "workload_table"]


if __name__ == "__main__":
    main()
