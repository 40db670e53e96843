"""Time to verdict from a cold start (issue 16): each checker run in a fresh Python process on
the bundled example LeNet (NHWC numpy code, 5,282 parameters, batch 4), as a user runs it
in the edit-check loop; wall time and peak RSS per run, the first run and the second (the
operating system's file cache and any on-disk cache warm), side by side in one run.

    python benchmarks/time_to_verdict.py                # all four, writes its RESULTS.md section
    python benchmarks/time_to_verdict.py --no-slow      # without gradcheck's slow mode

Checkers: ``trigrad check`` (the command line, which runs the user's code in a child
process), ``torch.autograd.gradcheck`` fast and slow mode and ``jax.test_util.check_grads``
(benchmarks/peer_checks: the same numpy code behind a torch.autograd.Function / a
jax.custom_vjp, at the same point). Peak RSS is the largest of the process and the children
it waited for (``os.wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
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

CASES = {
    "trigrad check": lambda target: [sys.executable, "-c", "from harness.cli import main; raise SystemExit(main())", "check", target,
                                     "--quiet"],
    "gradcheck fast": lambda target: [sys.executable, "-c", PEER, "fast"],
    "gradcheck slow": lambda target: [sys.executable, "-c", PEER, "slow"],
    "jax check_grads": lambda target: [sys.executable, "-c", PEER, "jax"],
}  # fmt: skip


def run(cmd: list[str], cwd: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of ``cmd`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{cmd[:3]} exited {code}: {err[-400:]}")
    return wall, usage.ru_maxrss / 1024, code  # ru_maxrss is in kB on Linux


def measure(names: list[str]) -> dict[str, dict[str, float]]:
    """Every case twice, interleaved (first runs of all, then second runs), so that load on
    the shared machine falls on all of them alike."""
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "bundled.py"
        target.write_text(TARGET)
        for label in ("first", "second"):
            for name in names:
                wall, rss, _ = run(CASES[name](f"{target}:lenet"), folder)
                out[name][f"{label} s"], out[name][f"{label} MB"] = wall, rss
                print(f"{name:<16} {label:<6} {wall:6.2f} s {rss:7.0f} MB", flush=True)
    return out


def section(results: dict[str, dict[str, float]]) -> str:
    """The RESULTS.md section: the table and the ratios to gradcheck's fast mode."""
    base = results.get("gradcheck fast")
    lines = [
        "# Time to verdict from a cold start (issue 16)",
        "",
        "`python benchmarks/time_to_verdict.py`: each checker in a fresh process on the bundled",
        "example LeNet (5,282 parameters, batch 4), first and second run, side by side.",
        "",
        "| checker | first run | second run | peak RSS | vs gradcheck fast (first / second) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratio = f"{r['first s'] / base['first s']:.2f}x / {r['second s'] / base['second s']:.2f}x" if base else "-"
        mb = max(r["first MB"], r["second MB"])
        lines.append(f"| {name} | {r['first s']:.2f} s | {r['second s']:.2f} s | {mb:.0f} MB | {ratio} |")
    return "\n".join(lines)


def write(text: str, path: Path = HERE / "RESULTS.md") -> None:
    """Replace (or append) the section between its markers, leaving the rest of the file."""
    start, end = "<!-- time-to-verdict -->", "<!-- /time-to-verdict -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old.split(start, 1)[0] + block + old.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--no-slow", action="store_true", help="leave out gradcheck's slow mode")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    names = [n for n in CASES if not (args.no_slow and n == "gradcheck slow")]
    results = measure(names)
    text = section(results)
    print(text)
    write(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
