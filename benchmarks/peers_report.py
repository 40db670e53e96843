"""Reporting the peer benchmark's results, for ``peers.py``: the text tables it prints (one per
workload, one for detection), the cost-vs-parameters SVG plot, and the results made
JSON-ready. Reads the results dict; measures nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peer_checks import PEERS

LABELS = {"gradcheck": "gradcheck (slow)", "gradcheck_fast": "gradcheck (fast)", "jax_check_grads": "jax check_grads",
          "cs231n": "CS231n loop", "trigrad": "trigrad"}


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
