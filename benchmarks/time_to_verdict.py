"""Time to verdict from a cold start (issue 16): each checker run in a fresh Python process on
the bundled example LeNet (NHWC numpy code, 5,282 parameters, batch 4), as a user runs it
in the edit-check loop; wall time and peak RSS, the first run (trigrad's caches empty: a
fresh cache and server folder) and the median of the next ``--repeats`` runs, side by
side, interleaved, in one run.

    python benchmarks/time_to_verdict.py                # all, writes its RESULTS.md section
    python benchmarks/time_to_verdict.py --no-slow      # without gradcheck's slow mode

Checkers: ``trigrad check`` as a terminal user gets it (the first run in a fresh interpreter,
which then starts the warm server; later runs forked from it), ``trigrad check --no-server``
(a fresh interpreter every run; the JAX compilation cache warm from the second run on), each
with its own cache folder,
``torch.autograd.gradcheck`` fast and slow mode and ``jax.test_util.check_grads``
(benchmarks/peer_checks: the same numpy code behind a torch.autograd.Function / a
jax.custom_vjp, at the same point). Peak RSS is the largest of the process and the children
it waited for (``os.wait4``); for the served check, of the client and the forked child (the
server's log says the child's), and the server's own resident size is given apart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TARGET = """
from harness.examples.example import build


def lenet():
    ex = build()
    return {"check": ex.net, "x": ex.x}
"""

# a peer on the same network at the same point: the wrapped network, its canonical input
PEER = """
import sys
from harness.examples.example import build
import peer_checks as pc

ex = build()
problem = pc.Problem(ex.net, ex.x.transpose(0, 3, 1, 2).copy())
which = sys.argv[1]
result = pc.jax_check_grads(problem) if which == "jax" else pc.gradcheck(problem, fast=which == "fast")
sys.exit(1 if result.caught else 0)
"""

CLI = [sys.executable, "-c", "from harness.cli import main; raise SystemExit(main())"]
CASES = {
    "trigrad check": lambda target: [*CLI, "check", target, "--quiet"],
    "trigrad check --no-server": lambda target: [*CLI, "check", target, "--quiet", "--no-server"],
    "gradcheck fast": lambda target: [sys.executable, "-c", PEER, "fast"],
    "gradcheck slow": lambda target: [sys.executable, "-c", PEER, "slow"],
    "jax check_grads": lambda target: [sys.executable, "-c", PEER, "jax"],
}  # fmt: skip


def run(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of ``cmd`` in a fresh process."""
    paths = os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **(env or {}), "PYTHONPATH": paths}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{cmd[:3]} exited {code}: {err[-400:]}")
    return wall, usage.ru_maxrss / 1024, code  # ru_maxrss is in kB on Linux


def _served(folder: Path) -> tuple[float, float]:
    """(peak RSS of the last forked child, resident size of the server) in MB, from the
    server's log and /proc."""
    log = "".join(p.read_text() for p in folder.glob("*.log"))
    peaks = re.findall(r"peak RSS (\d+) MB", log)
    rss = 0.0
    for lock in folder.glob("*.lock"):
        status = Path(f"/proc/{lock.read_text().strip()}/status")
        found = re.search(r"VmRSS:\s+(\d+) kB", status.read_text()) if status.exists() else None
        rss = max(rss, int(found.group(1)) / 1024 if found else 0.0)
    return (float(peaks[-1]) if peaks else 0.0), rss


def measure(names: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Every case once cold, then ``repeats`` more times, interleaved (each round runs all
    of them), so that load on the shared machine falls on all alike; "second s" is the
    median of the later runs. trigrad's caches and server live in a fresh folder."""
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory(prefix="ttv-") as folder:
        target = Path(folder) / "bundled.py"
        target.write_text(TARGET)
        servers = Path(folder) / "srv"
        env = {"TRIGRAD_CACHE_DIR": str(Path(folder) / "cache"), "TRIGRAD_SERVER_DIR": str(servers),
               "TRIGRAD_SERVER": "1"}  # fmt: skip
        later: dict[str, list[float]] = {n: [] for n in names}
        try:
            for round_ in range(1 + repeats):
                for i, name in enumerate(names):
                    own = {**env, "TRIGRAD_CACHE_DIR": str(Path(folder) / f"cache-{i}")}  # each first run cold
                    wall, rss, _ = run(CASES[name](f"{target}:lenet"), folder, own)
                    if name == "trigrad check":
                        child, out[name]["server MB"] = _served(servers)
                        rss = max(rss, child)
                    out[name]["MB"] = max(out[name].get("MB", 0.0), rss)
                    if round_ == 0:
                        out[name]["first s"] = wall
                    else:
                        later[name].append(wall)
                    print(f"{name:<26} run {round_ + 1} {wall:6.2f} s {rss:7.0f} MB", flush=True)
        finally:
            run([*CLI, "server", "stop"], folder, env)
        for name in names:
            out[name]["second s"] = statistics.median(later[name])
    return out


def section(results: dict[str, dict[str, float]], repeats: int) -> str:
    """The RESULTS.md section: the table and the ratios to gradcheck's fast mode."""
    base = results.get("gradcheck fast")
    lines = [
        "# Time to verdict from a cold start (issue 16)",
        "",
        "`python benchmarks/time_to_verdict.py`: each checker in a fresh process on the bundled",
        "example LeNet (5,282 parameters, batch 4): the first run with trigrad's caches empty, then",
        f"the median of {repeats} more, interleaved, side by side. `trigrad check` is what a terminal",
        "user gets: its first run is a fresh interpreter that then starts the warm server in the",
        "background; later runs fork from it (the first of them may wait for it to finish starting).",
        "",
        "| checker | first run | later runs (median) | peak RSS | vs gradcheck fast (first / later) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratio = f"{r['first s'] / base['first s']:.2f}x / {r['second s'] / base['second s']:.2f}x" if base else "-"
        mb = f"{r['MB']:.0f} MB" + (f" (+ server {r['server MB']:.0f} MB)" if r.get("server MB") else "")
        lines.append(f"| {name} | {r['first s']:.2f} s | {r['second s']:.2f} s | {mb} | {ratio} |")
    return "\n".join(lines)


def write(text: str, path: Path = HERE / "RESULTS.md") -> None:
    """Replace (or append) this script's section of RESULTS.md, leaving the rest of the file."""
    if str(HERE) not in sys.path:  # run as a script or loaded by path (tests)
        sys.path.insert(0, str(HERE))
    from results_md import write_section

    write_section("time-to-verdict", text, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--no-slow", action="store_true", help="leave out gradcheck's slow mode")
    ap.add_argument("--repeats", type=int, default=3, help="runs after the first, whose median is given (default 3)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    names = [n for n in CASES if not (args.no_slow and n == "gradcheck slow")]
    results = measure(names, args.repeats)
    text = section(results, args.repeats)
    print(text)
    write(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
