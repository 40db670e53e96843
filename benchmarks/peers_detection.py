"""What each peer catches, for ``peers.py`` (run in a child process): every peer once on the
bug zoo's layer mutants, the example network's variants, correct layers and networks (false
alarms) and correct layers at kinks; the summary counts per peer."""

from __future__ import annotations

from typing import Any, Callable

from peer_checks import PEERS
from peers_run import DATA_SEED, _progress, run_peer

# forward bugs whose backward is the exact gradient of the wrong forward: a peer that only
# compares the backward with finite differences of the same forward cannot see them, so
# an alarm it raises there comes from something else (a kink, a strict tolerance) and is
# not counted as a detection (it is kept as ``caught``; ``counted`` is False). Likewise an
# alarm on a network variant that the peer also raises on the correct network (see
# ``_attributable``).
CONSISTENT_FORWARD = ("dense wrong forward, consistent backward", "conv bias added twice, consistently",
                      "conv1-true-convolution")


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
