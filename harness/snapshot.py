"""Snapshots: what the user's code computed at one point, on disk, to compare later versions with.

A snapshot holds, per entry (each layer in isolation, and ``(network)`` for the user's own
network pass), the point it was taken at (input ``x``, upstream gradient ``g``, the
parameters) and what the user's code returned there (output, input gradient, parameter
gradients), next to what the PyTorch reference returns at the same point. All arrays are
canonical float64 (NCHW, PyTorch parameter layouts), so a later version may change its
layout, its dtype or its algorithm (loops to im2col) and still be compared.

On disk a snapshot is two files written atomically (temporary file, then rename):
``NAME.npz`` (numpy, read with ``allow_pickle=False``; or ``NAME.safetensors``) and ``NAME.json``, the
manifest: format, versions of trigrad, numpy, torch and jax, the spec, seed, dtype, per
tensor its tolerance, and the sha256 of every array. Loading refuses a file whose arrays do
not match the manifest's hashes, shapes or names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .report.files import write_atomic

FORMAT = "trigrad.snapshot/1"


class SnapshotError(Exception):
    """A snapshot file is missing, corrupted, tampered with, or of another format or spec."""


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


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
        out += [(k[len("grad/"):], k, "ref/" + k) for k in self.arrays if k.startswith("grad/")]
        return [(n, k, r if r in self.arrays else None) for n, k, r in out if k in self.arrays]


@dataclass
class Snapshot:
    """A recorded point and what the code computed there; see the module docstring."""

    spec: dict[str, Any] | None
    seed: int
    dtype: str
    params: dict[str, np.ndarray]
    entries: dict[str, Entry]
    versions: dict[str, str] = field(default_factory=_versions)

    # -- files
    def save(self, path: str | os.PathLike, *, container: str = "npz") -> tuple[Path, Path]:
        """Write ``PATH.npz`` (or ``PATH.safetensors`` with ``container="safetensors"``, which
        needs the safetensors package) and ``PATH.json`` atomically; ``PATH`` may carry a
        suffix or none. Returns both paths."""
        if container not in CONTAINERS:
            raise ValueError(f"save: container must be one of {CONTAINERS}, got {container!r}")
        data_path, json_path = paths(path, container)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"params/{k}": np.ascontiguousarray(v) for k, v in self.params.items()}
        for e in self.entries.values():
            arrays.update({f"entries/{e.name}/{k}": np.ascontiguousarray(v) for k, v in e.arrays.items()})
        for key, value in arrays.items():
            if value.dtype.kind not in "fiub":  # object arrays would need pickle
                raise SnapshotError(f"snapshot array '{key}' has dtype {value.dtype}; only numbers are stored")
        if container == "npz":
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            blob = buf.getvalue()
        else:
            from safetensors.numpy import save as st_save

            blob = st_save(arrays)
        manifest = {
            "format": FORMAT, "container": container, "versions": self.versions, "spec": self.spec, "seed": self.seed,
            "dtype": self.dtype, "params": list(self.params),
            "entries": {e.name: {"kind": e.kind, "arrays": list(e.arrays), "tolerances": e.tolerances}
                        for e in self.entries.values()},
            "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": _sha256(v)} for k, v in arrays.items()},
        }
        write_atomic(data_path, blob)  # the arrays first: a crash in between leaves a refusable pair
        write_atomic(json_path, json.dumps(manifest, indent=1) + "\n")
        return data_path, json_path


CONTAINERS = ("npz", "safetensors")


def paths(path: str | os.PathLike, container: str = "npz") -> tuple[Path, Path]:
    """``(PATH.npz or PATH.safetensors, PATH.json)`` for a snapshot path given with or
    without a suffix."""
    p = Path(path)
    if p.suffix in (".npz", ".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(f"{p.name}.{container}"), p.with_name(p.name + ".json")


def _read_arrays(data_path: Path, container: str) -> dict[str, np.ndarray]:
    """Every array of the data file, never unpickling anything."""
    try:
        if container == "safetensors":
            from safetensors.numpy import load_file

            return load_file(str(data_path))
        with np.load(data_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ImportError as e:
        raise SnapshotError(f"{data_path}: reading a safetensors snapshot needs the safetensors package "
                            "(pip install safetensors)") from e
    except Exception as e:  # pickled objects, a truncated or foreign file: never fall back to pickle
        raise SnapshotError(f"{data_path}: unreadable without pickle or corrupted ({type(e).__name__}: {e}); "
                            "re-record the snapshot") from e


def load(path: str | os.PathLike) -> Snapshot:
    """Read a snapshot, refusing anything that does not match its manifest."""
    _, json_path = paths(path)
    if not json_path.is_file():
        raise SnapshotError(f"no snapshot file {json_path}; record one first (pytest --trigrad-update, or "
                            f"harness.record_snapshot(...).save('{json_path.with_suffix('')}'))")
    try:
        manifest = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SnapshotError(f"{json_path}: not a valid JSON manifest ({e}); the file is corrupted") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise SnapshotError(f"{json_path}: format {found!r}, expected {FORMAT!r}; re-record the snapshot")
    container = manifest.get("container", "npz")
    if container not in CONTAINERS:
        raise SnapshotError(f"{json_path}: container {container!r} is not one of {CONTAINERS}")
    npz_path, _ = paths(path, container)
    if not npz_path.is_file():
        raise SnapshotError(f"no snapshot file {npz_path} (named by {json_path.name}); record the snapshot again")
    arrays = _read_arrays(npz_path, container)
    expected = manifest.get("arrays")
    if not isinstance(expected, dict):
        raise SnapshotError(f"{json_path}: the manifest has no 'arrays' table; re-record the snapshot")
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise SnapshotError(f"{npz_path}: arrays do not match {json_path.name} (missing {missing[:5]}, unexpected "
                            f"{extra[:5]}); the files were changed or come from different recordings")
    for key, info in expected.items():
        a = arrays[key]
        if not isinstance(info, dict) or list(a.shape) != info.get("shape") or a.dtype.str != info.get("dtype") \
                or _sha256(a) != info.get("sha256"):
            raise SnapshotError(f"{npz_path}: array '{key}' does not match the sha256 in {json_path.name} "
                                "(tampered with or corrupted); re-record the snapshot if the change is intended")
    try:
        entries = {name: Entry(name=name, kind=e["kind"], tolerances=dict(e["tolerances"]),
                               arrays={k: arrays[f"entries/{name}/{k}"] for k in e["arrays"]})
                   for name, e in manifest["entries"].items()}
        return Snapshot(spec=manifest["spec"], seed=manifest["seed"], dtype=manifest["dtype"],
                        params={k: arrays[f"params/{k}"] for k in manifest["params"]}, entries=entries,
                        versions=manifest["versions"])
    except (KeyError, TypeError, AttributeError) as e:
        raise SnapshotError(f"{json_path}: the manifest lacks {e} or has it malformed; re-record the snapshot") from e


# --------------------------------------------------------------------------- recording


def _layer_entry(w: Any, x: np.ndarray, g: np.ndarray, name: str, ref: Any | None) -> Entry:
    """Run a wrapped layer at (x, g) and keep what it and the reference returned."""
    from .compare import tolerance

    e = Entry(name=name, kind="layer", arrays={"x": x, "g": g})
    e.arrays["output"] = w.forward(x)
    e.arrays["input"] = w.backward(g)
    grads = w.param_grads()
    e.arrays.update({f"grad/{k}": v for k, v in grads.items()})
    n = x.shape[0]
    e.tolerances = {"output": tolerance(w.dtype, x.size // n), "input": tolerance(w.dtype, max(g.size // n, 1))}
    e.tolerances.update({k: tolerance(w.dtype, n * int(np.prod(g.shape[2:]))) for k in grads})
    if ref is not None:
        prefix = f"{w.spec.name}." if w.spec.name else ""
        e.arrays["ref/output"], e.arrays["ref/input"] = ref.output, ref.input_grad
        e.arrays.update({f"ref/grad/{k}": ref.param_grads[prefix + k] for k in grads})
    return e


def record(target: Any, *, x: np.ndarray | None = None, input_shape: tuple[int, ...] | None = None,
           seed: int = 0) -> Snapshot:
    """Run ``target`` (a wrapped layer or network) at a point drawn from ``seed`` (or at ``x``)
    and record what it computed there, with the PyTorch reference's values when it has a
    spec. A network gets one entry per layer, each fed the reference's own input to it and
    upstream gradient (so entries are independent), plus ``(network)`` for its own pass.
    The user's parameters are restored bit for bit."""
    from .adapters.layer import WrappedLayer
    from .adapters.network import WrappedNetwork
    from .kinks import random_input
    from .spec import Sequential, example_input_shape, join_path

    if not isinstance(target, (WrappedLayer, WrappedNetwork)):
        raise TypeError(f"record: wrap the code first (harness.wrap_layer / wrap_functions / wrap_network), got "
                        f"{type(target).__name__}")
    spec = target.spec
    rng = np.random.default_rng(seed)
    if x is None:
        shape = input_shape or getattr(target, "input_shape", None) or (example_input_shape(spec) if spec else None)
        if shape is None:
            raise ValueError(f"record: pass x= or input_shape= for a {type(spec).__name__ if spec else 'spec-less'} target")
        x = random_input(spec, tuple(shape), rng) if spec is not None else rng.standard_normal(tuple(shape))
    x = np.asarray(x, dtype=np.float64)
    entries: dict[str, Entry] = {}
    with target.preserved():
        if isinstance(target, WrappedLayer):
            params = target.get_params()
            g = rng.standard_normal(spec.output_shape(x.shape) if spec else np.shape(target.forward(x)))
            ref = None
            if spec is not None:
                from reference_models import build

                ref = build("torch", Sequential([spec])).vjp({join_path(spec.name, k): v for k, v in params.items()}, x, g)
            entries[target.name] = _layer_entry(target, x, g, target.name, ref)  # params keep their local names
        else:
            from reference_models import build

            params = target.get_params()
            g = rng.standard_normal(spec.output_shape(x.shape))
            ref = build("torch", spec).vjp(params, x, g)
            for path, layer in target.layers.items():
                local = {k[len(path) + 1:]: v for k, v in params.items() if k.startswith(path + ".")}
                layer_ref = build("torch", Sequential([layer.spec])).vjp(
                    {join_path(layer.spec.name, k): v for k, v in local.items()}, ref.inputs[path], ref.output_grads[path])
                entries[path] = _layer_entry(layer, ref.inputs[path], ref.output_grads[path], path, layer_ref)
            if target.end_to_end:
                entries["(network)"] = _network_entry(target, x, g, ref)
    return Snapshot(spec=spec.to_dict() if spec is not None else None, seed=seed, dtype=str(target.dtype),
                    params=params, entries=entries)


def _network_entry(net: Any, x: np.ndarray, g: np.ndarray, ref: Any) -> Entry:
    from .compare import tolerance

    e = Entry(name="(network)", kind="network", arrays={"x": x, "g": g})
    e.arrays["output"] = net.forward(x, mode="network")
    e.arrays["input"] = net.backward(g)
    grads = net.param_grads()
    e.arrays.update({f"grad/{k}": v for k, v in grads.items()})
    e.arrays["ref/output"], e.arrays["ref/input"] = ref.output, ref.input_grad
    e.arrays.update({f"ref/grad/{k}": ref.param_grads[k] for k in grads})
    n = x.shape[0]
    tol = tolerance(net.dtype, max(x.size // n, max(int(np.prod(v.shape)) // max(v.shape[0], 1) for v in grads.values())
                                   if grads else 1))
    e.tolerances = {name: tol for name, _, _ in e.tensors()}
    return e


__all__ = ["CONTAINERS", "Entry", "FORMAT", "Snapshot", "SnapshotError", "load", "paths", "record"]
