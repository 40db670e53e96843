"""Time the two reference networks: import cost, then forward+backward (one ``vjp``) on
LeNet-5 (batch 8, 32x32) and ResNet-18 (batch 2, 224x224), eager and jitted, float64.

    python benchmarks/bench_references.py                 # everything, writes RESULTS.md
    python benchmarks/bench_references.py --quick         # LeNet-5 only, 3 repeats, no file

"first" is the first call (tracing and compilation included); "median" is over the
repeats after it. Each backend runs in its own process so one framework's threads and
caches cannot slow the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKLOADS = {
    "lenet5": ("lenet5", {}, (8, 1, 32, 32)),
    "resnet18": ("resnet18", {}, (2, 3, 224, 224)),
}

IMPORTS = {
    "harness": "import harness",
    "torch": "import torch",
    "jax": "import jax",
    "torch reference": "import reference_models.torch_ref",
    "jax reference": "import reference_models.jax_ref",
}


def _import_time(stmt: str, repeats: int) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(repeats)]
    return statistics.median(times)


def _child(workload: str, backend: str, jit: bool, repeats: int) -> dict:
    """Runs in a subprocess: build, first call, then ``repeats`` timed calls."""
    import numpy as np

    from harness.spec import init_params
    from reference_models import architectures, build

    arch, kwargs, shape = WORKLOADS[workload]
    spec = architectures.ARCHITECTURES[arch](**kwargs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    g = rng.normal(size=spec.output_shape(shape))
    params = init_params(spec, shape, seed=0)
    ref = build(backend, spec, jit=jit)
    t0 = time.perf_counter()
    ref.vjp(params, x, g)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref.vjp(params, x, g)
        times.append(time.perf_counter() - t0)
    return {"first": first, "median": statistics.median(times), "min": min(times), "repeats": repeats}


def _run_child(workload: str, backend: str, jit: bool, repeats: int) -> dict:
    args = [sys.executable, __file__, "--child", workload, backend, str(int(jit)), str(repeats)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax
    import numpy
    import torch

    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"torch {torch.__version__}, jax {jax.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="LeNet-5 only, 3 repeats, print only")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, backend, jit, repeats = args.child
        print(json.dumps(_child(workload, backend, bool(int(jit)), int(repeats))))
        return

    repeats = 3 if args.quick else args.repeats
    workloads = ["lenet5"] if args.quick else list(WORKLOADS)
    rows = []
    imports = {name: _import_time(stmt, repeats) for name, stmt in IMPORTS.items()}
    for workload in workloads:
        for backend in ("torch", "jax"):
            for jit in (False, True):
                r = _run_child(workload, backend, jit, repeats if workload == "lenet5" else max(5, repeats // 2 + 1))
                rows.append((workload, backend, jit, r))
                shown = r.get("error") or f"first {r['first']:.3f} s, median {r['median'] * 1e3:.1f} ms"
                print(f"{workload:<9} {backend:<6} {'jit' if jit else 'eager':<6} {shown}", flush=True)
    for name, t in imports.items():
        print(f"import {name}: {t * 1e3:.0f} ms (median of {repeats})")
    if args.quick:
        return

    lines = [
        "# Reference network timings",
        "",
        f"Machine: {_machine()}.",
        "",
        "Command: `python benchmarks/bench_references.py` (writes this file). Each cell runs in a",
        "fresh process; *first* is the first `vjp` call (tracing/compilation included), *median*",
        "and *min* are over the later calls. One `vjp` = forward + backward of the whole network",
        "in float64, with every layer's input, output and upstream gradient recorded. This",
        "machine is shared: compare ratios within one run, not across runs.",
        "",
        "| network | input | reference | mode | first call | median | min | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, backend, jit, r in rows:
        shape = WORKLOADS[workload][2]
        mode = ("torch.compile" if backend == "torch" else "jax.jit") if jit else "eager"
        if "error" in r:
            lines.append(f"| {workload} | {shape} | {backend} | {mode} | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {workload} | {shape} | {backend} | {mode} | {r['first']:.2f} s | "
                         f"{r['median'] * 1e3:.1f} ms | {r['min'] * 1e3:.1f} ms | {r['repeats']} |")
    lines += ["", f"Import time (median of {repeats} fresh processes):", "", "| import | time |", "|---|---|"]
    lines += [f"| `{IMPORTS[name]}` | {t * 1e3:.0f} ms |" for name, t in imports.items()]
    out = HERE / "RESULTS.md"
    marker = "<!-- notes -->"
    notes = ""
    if out.exists() and marker in out.read_text():
        notes = out.read_text().split(marker, 1)[1]
    out.write_text("\n".join(lines) + "\n\n" + marker + notes)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
