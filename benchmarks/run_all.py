"""Every benchmark in one command: the references' own cost, trigrad against its peers, the
ResNet-18 target, the time to verdict and the floor ratios (about 35 minutes on 2 cores).
Each script writes its own results; see benchmarks/RESULTS.md for what they mean.

    python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    [sys.executable, str(HERE / "bench_references.py")],
    [sys.executable, str(HERE / "peers.py")],
    [sys.executable, str(HERE / "bench_resnet18.py"), "--runs", "3", "--json", str(HERE / "resnet18_results.json")],
    [sys.executable, str(HERE / "time_to_verdict.py")],
    [sys.executable, str(HERE / "floor_ratios.py")],
]

if __name__ == "__main__":
    for step in STEPS:
        print("$", " ".join(Path(a).name if a.endswith(".py") else a for a in step), flush=True)
        subprocess.run(step, check=True)
