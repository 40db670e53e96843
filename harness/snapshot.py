"""Snapshots: what the user's code computed at one point, on disk, to compare later versions with.

A snapshot holds, per entry (each layer in isolation, and ``(network)`` for the user's own
network pass), the point it was taken at (input ``x``, upstream gradient ``g``, the
parameters) and what the user's code returned there (output, input gradient, parameter
gradients), next to what the PyTorch reference returns at the same point. All arrays are
canonical float64 (NCHW, PyTorch parameter layouts), so a later version may change its
layout, its dtype or its algorithm (loops to im2col) and still be compared.

On disk a snapshot is ``NAME.npz`` (numpy, read with ``allow_pickle=False``; or
``NAME.safetensors``) and ``NAME.json``, the manifest: format, versions of trigrad, numpy,
torch and jax, the spec, seed, dtype, per tensor its tolerance, the sha256 of every array,
and ``manifest_sha256``, the hash of the manifest itself. The data file embeds the same
manifest and is the source of truth. Loading refuses arrays that do not match the manifest,
a manifest edited by hand, and any field out of range (:mod:`harness.snapshot_manifest`);
writes are locked and ordered so that concurrent or killed writers never leave a mixed pair
(:mod:`harness.snapshot_files`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .snapshot_files import decode, encode, paths, read_pair, write_pair
from .snapshot_manifest import (
    CONTAINERS,
    FORMAT,
    RERECORD,
    SnapshotError,
    SnapshotWarning,
    canonical,
    differences,
    is_sealed,
    parse,
    seal,
    successor,
    validate,
)
from .snapshot_verify import _check_arrays, _embedded, _mismatched, _sha256


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("trigrad", "numpy", "torch", "jax"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


@dataclass
class Entry:
    """One checked unit: a layer (``kind="layer"``) or the user's whole network pass
    (``kind="network"``). ``arrays`` (canonical float64): ``x``, ``g``; the user's ``output``,
    ``input`` (gradient) and ``grad/NAME`` per parameter; the reference's ``ref/output``,
    ``ref/input``, ``ref/grad/NAME``. ``tolerances``: per compared tensor (``output``,
    ``input``, ``NAME``)."""

    name: str
    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)

    def tensors(self) -> list[tuple[str, str, str | None]]:
        """``(tensor name, array key of the user's value, key of the reference's or None)``."""
        out = [("output", "output", "ref/output"), ("input", "input", "ref/input")]
        out += [(k[len("grad/") :], k, "ref/" + k) for k in self.arrays if k.startswith("grad/")]
        return [(n, k, r if r in self.arrays else None) for n, k, r in out if k in self.arrays]


@dataclass
class Snapshot:
    """A recorded point and what the code computed there; see the module docstring.
    ``source``: the file it was loaded from (None when recorded in memory)."""

    spec: dict[str, Any] | None
    seed: int
    dtype: str
    params: dict[str, np.ndarray]
    entries: dict[str, Entry]
    versions: dict[str, str] = field(default_factory=_versions)
    source: Path | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array under its file key (``params/NAME``, ``entries/ENTRY/KEY``)."""
        out = {f"params/{k}": np.ascontiguousarray(v) for k, v in self.params.items()}
        for e in self.entries.values():
            out.update({f"entries/{e.name}/{k}": np.ascontiguousarray(v) for k, v in e.arrays.items()})
        return out

    def manifest(
        self,
        container: str = "npz",
        arrays: dict[str, np.ndarray] | None = None,
        where: str = "the snapshot (in memory)",
    ) -> dict[str, Any]:
        """The sealed manifest (with ``manifest_sha256``) describing this snapshot (``where``
        names it in an error)."""
        arrays = self.arrays() if arrays is None else arrays
        return seal(
            {
                "format": FORMAT,
                "container": container,
                "versions": self.versions,
                "spec": self.spec,
                "seed": self.seed,
                "dtype": self.dtype,
                "params": list(self.params),
                "entries": {
                    e.name: {"kind": e.kind, "arrays": list(e.arrays), "tolerances": e.tolerances}
                    for e in self.entries.values()
                },
                "arrays": {
                    k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": _sha256(v)} for k, v in arrays.items()
                },
            },
            where,
        )

    def validate(self, where: str = "snapshot") -> None:
        """Refuse a snapshot whose fields are out of range (an unknown dtype, a tolerance of
        1e300, no entries): the checks :func:`load` applies, on one built in memory."""
        validate(parse(json.dumps(self.manifest(where=where)), where), where)

    # -- files
    def save(self, path: str | os.PathLike, *, container: str = "npz") -> tuple[Path, Path]:
        """Write ``PATH.npz`` (or ``PATH.safetensors`` with ``container="safetensors"``, which
        needs the safetensors package) and ``PATH.json`` as one pair (locked, ordered; see
        :mod:`harness.snapshot_files`); ``PATH`` may carry a suffix or none. Returns both
        paths. A snapshot :func:`load` would refuse is not written."""
        if container not in CONTAINERS:
            raise ValueError(f"save: container must be one of {CONTAINERS}, got {container!r}")
        data_path, json_path = paths(path, container)
        arrays = self.arrays()
        for key, value in arrays.items():
            if value.dtype.kind not in "fiub":  # object arrays would need pickle
                raise SnapshotError(f"snapshot array '{key}' has dtype {value.dtype}; only numbers are stored")
        where = f"{json_path} (being saved)"
        manifest = self.manifest(container, arrays, where)
        validate(parse(json.dumps(manifest), where), where)

        def build(previous: dict[str, Any] | None) -> tuple[bytes, str]:  # under the lock
            final = successor(manifest, previous)
            return (
                encode(arrays, json.dumps(final, sort_keys=True), container),
                json.dumps(final, indent=1, sort_keys=True) + "\n",
            )

        write_pair(data_path, json_path, build)
        return data_path, json_path


def load(path: str | os.PathLike) -> Snapshot:
    """Read a snapshot, refusing anything that does not match its manifest.

    The manifest embedded in the data file decides; ``NAME.json`` must hash to its own
    ``manifest_sha256`` (else it was edited: refused, naming the field) and equal the
    embedded one, or else be the JSON of a save killed between its two renames: one whose
    ``replaces`` names the embedded manifest (the complete previous snapshot is used and a
    :class:`SnapshotWarning` says so). Any other pair of files is refused: they come from
    different snapshots (a data file copied or swapped)."""
    json_path, text, data_path, blob, container = read_pair(path)
    on_disk = parse(text, str(json_path))
    if on_disk.get("format") != FORMAT:
        validate(on_disk, str(json_path))  # names the format found and says to re-record
    arrays, embedded_text = decode(blob, data_path, container)
    manifest = _embedded(embedded_text, data_path)
    if not is_sealed(on_disk):
        changed = [d for d in differences(on_disk, manifest) if "manifest_sha256" not in d] or [
            "field 'manifest_sha256' does not match the content"
        ]
        raise SnapshotError(
            f"{json_path}: edited or tampered manifest (its manifest_sha256 no longer matches; compared "
            f"with the one recorded in {data_path.name}): {'; '.join(changed[:3])}. Restore the file "
            f"(e.g. git checkout) or {RERECORD}"
        )
    if canonical(on_disk) != canonical(manifest):
        _mismatched(on_disk, manifest, json_path, data_path)
    _check_arrays(arrays, manifest, data_path)
    return _snapshot(manifest, arrays, data_path)


def _snapshot(manifest: dict[str, Any], arrays: dict[str, np.ndarray], source: Path) -> Snapshot:
    """A Snapshot from a validated manifest and its hash-checked arrays."""
    entries = {
        name: Entry(
            name=name,
            kind=e["kind"],
            tolerances={k: float(v) for k, v in e["tolerances"].items()},
            arrays={k: arrays[f"entries/{name}/{k}"] for k in e["arrays"]},
        )
        for name, e in manifest["entries"].items()
    }
    return Snapshot(
        spec=manifest["spec"],
        seed=manifest["seed"],
        dtype=manifest["dtype"],
        params={k: arrays[f"params/{k}"] for k in manifest["params"]},
        entries=entries,
        versions=manifest["versions"],
        source=source,
    )


# --------------------------------------------------------------------------- recording


def _layer_entry(w: Any, x: np.ndarray, g: np.ndarray, name: str, ref: Any | None) -> Entry:
    """Run a wrapped layer at (x, g) and keep what it and the reference returned."""
    from .compare import tolerance

    e = Entry(name=name, kind="layer", arrays={"x": x, "g": g})
    e.arrays["output"] = w.forward(x)
    dx = w.backward(g)
    if dx is not None:  # None: declared input_grad=False (nothing to record or compare)
        e.arrays["input"] = dx
    grads = w.param_grads()
    e.arrays.update({f"grad/{k}": v for k, v in grads.items()})
    n = x.shape[0]
    e.tolerances = {"output": tolerance(w.dtype, x.size // n)}
    if dx is not None:
        e.tolerances["input"] = tolerance(w.dtype, max(g.size // n, 1))
    e.tolerances.update({k: tolerance(w.dtype, n * int(np.prod(g.shape[2:]))) for k in grads})
    if ref is not None:
        prefix = f"{w.spec.name}." if w.spec.name else ""
        e.arrays["ref/output"] = ref.output
        if dx is not None:
            e.arrays["ref/input"] = ref.input_grad
        e.arrays.update({f"ref/grad/{k}": ref.param_grads[prefix + k] for k in grads})
    return e


def record(
    target: Any, *, x: np.ndarray | None = None, input_shape: tuple[int, ...] | None = None, seed: int = 0
) -> Snapshot:
    """Run ``target`` (a wrapped layer or network) at a point drawn from ``seed`` (or at ``x``)
    and record what it computed there, with the PyTorch reference's values when it has a
    spec. A network gets one entry per layer, each fed the reference's own input to it and
    upstream gradient (so entries are independent), plus ``(network)`` for its own pass.
    ``x`` / ``input_shape`` are in the target's declared layout (4-D in ``layout.data``);
    the snapshot stores the canonical (NCHW) input. The user's parameters are restored bit
    for bit."""
    from .adapters.layer import WrappedLayer
    from .adapters.network import WrappedNetwork

    if not isinstance(target, (WrappedLayer, WrappedNetwork)):
        raise TypeError(
            f"record: wrap the code first (harness.wrap_layer / wrap_functions / wrap_network), got "
            f"{type(target).__name__}"
        )
    spec = target.spec
    rng = np.random.default_rng(seed)
    x = _point(target, x, input_shape, rng)
    with target.preserved():
        if isinstance(target, WrappedLayer):
            params, entries = _layer_entries(target, x, rng)
        else:
            params, entries = _network_entries(target, x, rng)
    return Snapshot(
        spec=spec.to_dict() if spec is not None else None,
        seed=seed,
        dtype=str(target.dtype),
        params=params,
        entries=entries,
    )


def _point(target: Any, x: np.ndarray | None, input_shape: tuple[int, ...] | None, rng: Any) -> np.ndarray:
    """The canonical input to record at: ``x`` read in the target's declared layout, or drawn
    from ``rng`` at ``input_shape`` (else the target's own, else the spec's example shape)."""
    from .adapters.inputs import read_input, read_shape
    from .kinks import random_input
    from .spec import example_input_shape

    spec = target.spec
    if x is not None:  # x / input_shape in the target's declared layout (adapters.inputs); recorded canonical
        return read_input(x, spec, target.layout)
    given = input_shape or getattr(target, "input_shape", None)
    shape = read_shape(given, spec, target.layout) if given else (example_input_shape(spec) if spec else None)
    if shape is None:
        raise ValueError(f"record: pass x= or input_shape= for a {type(spec).__name__ if spec else 'spec-less'} target")
    return random_input(spec, tuple(shape), rng) if spec is not None else rng.standard_normal(tuple(shape))


def _layer_entries(layer: Any, x: np.ndarray, rng: Any) -> tuple[dict[str, np.ndarray], dict[str, Entry]]:
    """A wrapped layer's parameters and its one entry, with the reference's values when it
    has a spec; the upstream gradient drawn from ``rng`` (after ``x``)."""
    from .spec import Sequential, join_path

    spec = layer.spec
    params = layer.get_params()
    g = rng.standard_normal(spec.output_shape(x.shape) if spec else np.shape(layer.forward(x)))
    ref = None
    if spec is not None:
        from reference_models import build

        ref = build("torch", Sequential([spec])).vjp({join_path(spec.name, k): v for k, v in params.items()}, x, g)
    return params, {layer.name: _layer_entry(layer, x, g, layer.name, ref)}  # params keep their local names


def _network_entries(net: Any, x: np.ndarray, rng: Any) -> tuple[dict[str, np.ndarray], dict[str, Entry]]:
    """A wrapped network's parameters and its entries: each layer at the reference's own
    input to it and upstream gradient, then ``(network)`` for the user's own pass."""
    from reference_models import build

    from .spec import Sequential, join_path

    params = net.get_params()
    g = rng.standard_normal(net.spec.output_shape(x.shape))
    ref = build("torch", net.spec).vjp(params, x, g)
    entries: dict[str, Entry] = {}
    for path, layer in net.layers.items():
        assert layer.spec is not None  # a network's layers are the spec's
        local = {k[len(path) + 1 :]: v for k, v in params.items() if k.startswith(path + ".")}
        layer_ref = build("torch", Sequential([layer.spec])).vjp(
            {join_path(layer.spec.name, k): v for k, v in local.items()},
            ref.inputs[path],
            ref.output_grads[path],
        )
        entries[path] = _layer_entry(layer, ref.inputs[path], ref.output_grads[path], path, layer_ref)
    if net.end_to_end:
        entries["(network)"] = _network_entry(net, x, g, ref)
    return params, entries


def _network_entry(net: Any, x: np.ndarray, g: np.ndarray, ref: Any) -> Entry:
    from .compare import tolerance

    e = Entry(name="(network)", kind="network", arrays={"x": x, "g": g})
    e.arrays["output"] = net.forward(x, mode="network")
    dx = net.backward(g)
    grads = net.param_grads()
    e.arrays.update({f"grad/{k}": v for k, v in grads.items()})
    e.arrays["ref/output"] = ref.output
    if dx is not None:  # None: the first layer is declared input_grad=False
        e.arrays["input"], e.arrays["ref/input"] = dx, ref.input_grad
    e.arrays.update({f"ref/grad/{k}": ref.param_grads[k] for k in grads})
    n = x.shape[0]
    tol = tolerance(
        net.dtype,
        max(x.size // n, max(int(np.prod(v.shape)) // max(v.shape[0], 1) for v in grads.values()) if grads else 1),
    )
    e.tolerances = {name: tol for name, _, _ in e.tensors()}
    return e


__all__ = ["CONTAINERS", "Entry", "FORMAT", "Snapshot", "SnapshotError", "SnapshotWarning", "load", "paths", "record"]
