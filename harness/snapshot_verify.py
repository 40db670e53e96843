"""Loading's checks that a pair of snapshot files is one intact snapshot.

:func:`harness.snapshot.load` reads ``NAME.json`` and the data file, then asks here: is the
manifest embedded in the data file sealed and valid (:func:`_embedded`), does a JSON that
differs from it come from a save killed between its two renames or from another snapshot
(:func:`_mismatched`), and does every array match its shape, dtype and sha256 in the
manifest (:func:`_check_arrays`, hashing with :func:`_sha256`, which saves use too).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .snapshot_manifest import (
    HASH_FIELD,
    RERECORD,
    SnapshotError,
    SnapshotWarning,
    differences,
    is_sealed,
    parse,
    validate,
)


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _mismatched(on_disk: dict[str, Any], manifest: dict[str, Any], json_path: Path, data_path: Path) -> None:
    """Two sealed manifests that differ: a save killed between its renames (a warning) if the
    JSON names the data file's manifest as the one it replaced, else a SnapshotError."""
    if on_disk.get("replaces") is not None and on_disk.get("replaces") == manifest[HASH_FIELD]:
        warnings.warn(
            SnapshotWarning(
                f"{json_path}: an interrupted write: {json_path.name} and {data_path.name} come from different saves (a "
                f"writer killed between its two renames: {json_path.name} is the new save's, {data_path.name} the one it "
                f"was replacing). Using the complete snapshot in {data_path.name}; {RERECORD} to make them agree"
            ),
            stacklevel=3,
        )
        return
    changed = [d for d in differences(on_disk, manifest) if "manifest_sha256" not in d and "'replaces'" not in d]
    replaced = on_disk.get("replaces")
    raise SnapshotError(
        f"{json_path} and {data_path}: the data file and the manifest come from different snapshots: a copied or "
        f"swapped file? {json_path.name} describes snapshot {str(on_disk[HASH_FIELD])[:12]} and {data_path.name} holds "
        f"{manifest[HASH_FIELD][:12]} ({json_path.name} against {data_path.name}: {'; '.join(changed[:3]) or 'other'}). "
        f"A save killed between its two renames leaves a {json_path.name} naming the data file's snapshot as the one "
        f"it replaced; this one names {str(replaced)[:12] if replaced else 'none'}. Restore both files from one save "
        f"(e.g. git checkout {json_path.name} {data_path.name}) or {RERECORD}"
    )


def _embedded(text: str | None, data_path: Path) -> dict[str, Any]:
    """The manifest embedded in the data file, parsed, hash-checked and validated."""
    if text is None:
        raise SnapshotError(
            f"{data_path}: has no embedded manifest (written by an older trigrad or another program); {RERECORD}"
        )
    manifest = parse(text, f"{data_path} (embedded manifest)")
    if not is_sealed(manifest):
        raise SnapshotError(
            f"{data_path}: the embedded manifest does not match its manifest_sha256 (tampered with "
            f"or corrupted); {RERECORD}"
        )
    validate(manifest, f"{data_path} (embedded manifest)")
    return manifest


def _check_arrays(arrays: dict[str, np.ndarray], manifest: dict[str, Any], data_path: Path) -> None:
    expected = manifest["arrays"]
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise SnapshotError(
            f"{data_path}: arrays do not match its manifest (missing {missing[:5]}, unexpected "
            f"{extra[:5]}); the file was changed or comes from different recordings"
        )
    for key, info in expected.items():
        a = arrays[key]
        if list(a.shape) != info["shape"] or a.dtype.str != info["dtype"] or _sha256(a) != info["sha256"]:
            raise SnapshotError(
                f"{data_path}: array '{key}' does not match the sha256 in its manifest (tampered with "
                f"or corrupted; expected shape {info['shape']} {info['dtype']}, found {list(a.shape)} "
                f"{a.dtype.str}); re-record the snapshot if the change is intended"
            )
