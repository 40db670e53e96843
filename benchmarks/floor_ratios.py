"""trigrad against its floor (issue 16): the median time of ``check_network`` /
``check_layer`` next to the floor, one forward+backward of the user's code plus one ``vjp``
of each reference (torch, jax; warm), measured in one fresh process per workload so that
each ratio compares numbers taken side by side.

    python benchmarks/floor_ratios.py                    # all four, writes its RESULTS.md section
    python benchmarks/floor_ratios.py --resnet-size 64   # a quicker ResNet-18 (2x3x64x64)
    python benchmarks/floor_ratios.py --quick            # tiny sizes, 1 repeat, writes nothing

Workloads: LeNet-5 (``numpy_nets.lenet5``, 61,706 parameters, batch 8), ResNet-18
(``numpy_layers.wrap`` of ``reference_models.architectures.resnet18``, float64, input
``(--resnet-batch, 3, --resnet-size, --resnet-size)``, default 2x3x224x224), and square
Linear layers of 1e6 and 1e7 parameters (``numpy_nets.linear_layer``, batch 8). Targets:
LeNet-5 at most 1.5x the floor, ResNet-18 2x, the Linear layers 3x.

numpy, torch and XLA run single-threaded by default (``--threads``, as ``peers.py``): the
machine is shared and a busy core stalls multi-threaded kernels. The load average before
and after each workload is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):  # numpy_nets / peers, harness
    if p not in sys.path:
        sys.path.insert(0, p)

TARGETS = {"lenet5": 1.5, "resnet18": 2.0, "linear-1e6": 3.0, "linear-1e7": 3.0}
QUICK = ("lenet5", "resnet18", "linear-1e3", "linear-1e4")


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def _setup(key: str, quick: bool, resnet: tuple[int, int]) -> dict[str, Any]:
    """The workload ``key``: the wrapped subject, canonical input ``x`` (N, ...), upstream
    gradient ``g`` (the output's shape), the spec, the user's forward+backward as one call,
    the parameters by full name, and how to check it."""
    import numpy as np

    import harness
    import numpy_nets as nn

    rng = np.random.default_rng(1)  # the peers' data seed: a stream independent of the weights'
    if key == "resnet18":
        from numpy_layers import wrap
        from reference_models.architectures import resnet18

        spec = resnet18()
        shape = (resnet[0], 3, resnet[1], resnet[1])
        subject = wrap(spec, shape)
        x, g = rng.standard_normal(shape), rng.standard_normal(spec.output_shape(shape))
        user = lambda: (subject.forward(x, mode="chain"), subject.backward(g))  # noqa: E731
        params = subject.get_params()
        check = lambda: harness.check_network(subject, x=x, seed=0)  # noqa: E731
        return {
            "spec": spec,
            "x": x,
            "g": g,
            "user": user,
            "params": params,
            "check": check,
            "params_count": int(sum(v.size for v in params.values())),
            "input": list(shape),
        }
    wl = nn.lenet5(batch=2 if quick else 8) if key == "lenet5" else nn.linear_layer(int(float(key.split("-")[1])))
    subject = wl.wrap()
    from peer_checks import _spec_of

    spec = _spec_of(subject)
    x = rng.standard_normal(wl.input_shape)
    g = rng.standard_normal(spec.output_shape(x.shape))
    raw = wl.net if wl.is_network else next(iter(wl.layers.values()))
    prefix = "" if wl.is_network else f"{wl.spec.name}."
    params = {prefix + k: v for k, v in subject.get_params().items()}
    check = (
        (lambda: harness.check_network(subject, x=x, seed=0))
        if wl.is_network
        else (lambda: harness.check_layer(subject, x=x, seed=0))
    )
    return {
        "spec": spec,
        "x": x,
        "g": g,
        "user": lambda: (raw.forward(x), raw.backward(g)),
        "params": params,
        "check": check,
        "params_count": wl.param_count(),
        "input": list(wl.input_shape),
    }


def measure(key: str, repeats: int, quick: bool = False, resnet: tuple[int, int] = (2, 224)) -> dict[str, Any]:
    """One workload in this process: the floor's parts (median of at least 3), a warm-up
    check, then the median of ``repeats`` checks. Seconds throughout."""
    from reference_models import build

    load_before = os.getloadavg()
    w = _setup(key, quick, resnet)
    x, g, params = w["x"], w["g"], w["params"]
    n = max(repeats, 3)
    w["user"]()  # warm-up: the user's caches, numpy's first-call costs
    floor = {"user": _timed(w["user"], n)}
    for backend in ("torch", "jax"):
        ref = build(backend, w["spec"])
        ref.vjp(params, x, g)  # warm-up: jax compiles its primitives on the first call
        floor[backend] = _timed(lambda ref=ref: ref.vjp(params, x, g), n)
    floor["total"] = floor["user"] + floor["torch"] + floor["jax"]
    t0 = time.perf_counter()
    report = w["check"]()
    first = time.perf_counter() - t0
    check = _timed(w["check"], repeats)
    return {
        "workload": key,
        "params": w["params_count"],
        "input": w["input"],
        "floor": floor,
        "check_s": check,
        "first_check_s": first,
        "repeats": repeats,
        "ratio": check / floor["total"],
        "ok": bool(report.ok),
        "verdicts": sorted({layer.verdict for layer in report.layers}),
        "loadavg": {"before": load_before, "after": os.getloadavg()},
    }


def _child(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` of ``key`` in a fresh process (under ``--threads``); its last stdout line is JSON."""
    from peers import thread_env

    cmd = [
        sys.executable,
        __file__,
        "--child",
        key,
        "--repeats",
        str(args.repeats),
        "--resnet-batch",
        str(args.resnet_batch),
        "--resnet-size",
        str(args.resnet_size),
        *(["--quick"] if args.quick else []),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **thread_env(args.threads)})
    if proc.returncode != 0:
        raise RuntimeError(f"floor_ratios child {key} failed with exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


LABELS = {"lenet5": "LeNet-5", "resnet18": "ResNet-18", "linear-1e6": "Linear 1e6", "linear-1e7": "Linear 1e7"}


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: one row per workload (check median, floor and its parts, ratio,
    target and whether it is met, load average before/after)."""
    lines = [
        "| workload | parameters | input | check (median) | floor | user / torch / jax | ratio | target | met | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, target = r["floor"], TARGETS.get(r["workload"])
        parts = " / ".join(_fmt(f[k]) for k in ("user", "torch", "jax"))
        met = "-" if target is None else ("yes" if r["ratio"] <= target else "no")
        load = f"{r['loadavg']['before'][0]:.1f} / {r['loadavg']['after'][0]:.1f}"
        lines.append(
            f"| {LABELS.get(r['workload'], r['workload'])} | {r['params']:,} | {tuple(r['input'])} | "
            f"{_fmt(r['check_s'])} | {_fmt(f['total'])} | {parts} | {r['ratio']:.2f}x | "
            f"{'-' if target is None else f'{target:g}x'} | {met} | {load} |"
        )
    return "\n".join(lines)


def section(rows: list[dict[str, Any]], command: str, threads: int) -> str:
    """The RESULTS.md section: how it was measured, then :func:`table`."""
    return "\n".join(
        [
            "# trigrad against the floor (issue 16)",
            "",
            f"`{command}`: each workload in a fresh process ({threads or 'library default'} thread(s) for numpy, "
            "torch and XLA), the check's median over warm runs next to the floor (one forward+backward of the user's "
            "code + one warm `vjp` of torch and of jax, medians). Load: the 1-minute load average before / after "
            "the workload (2 cores, shared).",
            "",
            table(rows),
        ]
    )


def write(text: str, path: Path = HERE / "RESULTS.md") -> None:
    """Replace (or append) this script's section of RESULTS.md, leaving the rest of the file."""
    from results_md import write_section

    write_section("floor-ratios", text, path)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (LeNet-5 batch 2, ResNet-18 2x3x32x32, "
        "Linear 1e3 and 1e4), 1 repeat; writes RESULTS.md only with --out",
    )
    ap.add_argument("--repeats", type=int, default=None, help="timed checks per workload (default 5; 1 with --quick)")
    ap.add_argument("--resnet-batch", type=int, default=None, help="ResNet-18 batch (default 2)")
    ap.add_argument(
        "--resnet-size", type=int, default=None, help="ResNet-18 height and width (default 224; 32 with --quick)"
    )
    ap.add_argument("--only", default=None, help="comma-separated workloads (lenet5, resnet18, linear-1e6, ...)")
    ap.add_argument("--threads", type=int, default=1, help="numpy/torch/XLA threads (default 1; 0: the defaults)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the RESULTS.md to write the section into (default "
        "benchmarks/RESULTS.md; none with --quick or --only unless given)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.resnet_batch = args.resnet_batch or 2  # batch norm needs 2 values per channel at 1x1
    args.resnet_size = args.resnet_size or (32 if args.quick else 224)
    if args.child:
        out = measure(args.child, args.repeats, args.quick, (args.resnet_batch, args.resnet_size))
        print(json.dumps(out))
        return [out]
    keys = args.only.split(",") if args.only else list(QUICK if args.quick else TARGETS)
    rows = []
    for key in keys:
        print(f"[floor_ratios] {key}", file=sys.stderr, flush=True)
        rows.append(_child(key, args))
    command = " ".join(["python", "benchmarks/floor_ratios.py", *(argv if argv is not None else sys.argv[1:])])
    text = section(rows, command, args.threads)
    print(text)
    out = args.out or (None if args.quick or args.only else HERE / "RESULTS.md")
    if out:
        write(text, out)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
