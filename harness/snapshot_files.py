"""Snapshot files on disk: the data file and its manifest, written and read as one pair.

``NAME.npz`` (or ``NAME.safetensors``) holds the arrays and, embedded, the manifest (npz: a
uint8 array under ``__manifest__``; safetensors: its string metadata); ``NAME.json`` is the
same manifest for people to read and diff. The embedded copy is the source of truth.

Writing (:func:`write_pair`), under an exclusive lock on the folder (``flock`` on its file
descriptor: no lock file to leave behind; none on platforms without ``fcntl``): stale
temporaries of dead writers are removed, both temporaries are written in full, then the
JSON is renamed into place and the data file last. The data file's rename is the commit
point: a writer killed before it leaves the previous data file, whose embedded manifest
describes it completely, so the previous snapshot stays usable and the reader reports an
interrupted write. The new manifest records (``replaces``) the hash of the manifest
embedded in the data file it replaces, read under the lock (:func:`previous_manifest`), so
the reader can tell that pair (new JSON, the data file it replaced) from a data file copied
in from another snapshot. Readers (:func:`read_pair`) take the lock shared, so they never see one
writer's JSON with another's data file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .snapshot_manifest import CONTAINERS, SnapshotError, SnapshotWarning, is_sealed, parse

try:  # POSIX; elsewhere writes are atomic per file but two writers are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MANIFEST_KEY = "__manifest__"  # npz: the embedded manifest, UTF-8 bytes as uint8
METADATA_KEY = "trigrad_manifest"  # safetensors: the embedded manifest, in the metadata
_CAN_PROBE = os.name == "posix"  # whether os.kill(pid, 0) asks about a process without signalling it
_TMP = re.compile(r"\.(?P<target>.+)\.trigrad-tmp-(?P<pid>\d+)-[0-9a-f]+")

# tests only: called with the name of each step of a write, to kill the writer between two
_step_hook: Callable[[str], None] | None = None


def paths(path: str | os.PathLike, container: str = "npz") -> tuple[Path, Path]:
    """``(PATH.npz or PATH.safetensors, PATH.json)`` for a snapshot path given with or
    without a suffix."""
    p = Path(path)
    if p.suffix in (".npz", ".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(f"{p.name}.{container}"), p.with_name(p.name + ".json")


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


@contextlib.contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``folder`` (exclusive to write, shared to read); released when the
    process dies, so a killed writer never blocks the next one. Without fcntl, or when the
    folder cannot be opened, no lock (the renames stay atomic)."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _alive(pid: int) -> bool:
    """Whether the writer ``pid`` may still be running (its temporaries are then left alone).
    Only POSIX can ask: on Windows ``os.kill(pid, 0)`` is no probe (signal 0 is CTRL_C_EVENT,
    and other values terminate the process), and the writer may be a sibling pytest-xdist
    worker, so there every other process counts as alive and its temporaries stay (hidden,
    and never read)."""
    if pid == os.getpid() or not _CAN_PROBE:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours (PermissionError), or the platform cannot tell
        return True
    return True


def remove_stale(data_path: Path, json_path: Path) -> list[str]:
    """Remove the temporaries a dead writer left for this snapshot; returns their names.
    Best effort: a read-only folder keeps them (they are invisible to readers anyway)."""
    targets = {p.name for p in paths(json_path, "npz") + paths(json_path, "safetensors")} | {data_path.name}
    removed: list[str] = []
    try:
        names = os.listdir(data_path.parent)
    except OSError:
        return removed
    for name in names:
        m = _TMP.fullmatch(name)
        if m and m["target"] in targets and not _alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(data_path.parent / name)
                removed.append(name)
    return removed


def _write_temp(target: Path, data: bytes) -> Path:
    """``data`` in a new temporary next to ``target`` named after it and this process."""
    tmp = target.with_name(f".{target.name}.trigrad-tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def previous_manifest(data_path: Path, container: str) -> dict[str, Any] | None:
    """The sealed manifest embedded in the data file a save is about to replace; None when
    there is no such file, or it is unreadable or its manifest unsealed (nothing a reader
    could fall back to). Reads the manifest only, not the arrays."""
    if not data_path.is_file():
        return None
    try:
        if container == "npz":
            with np.load(data_path, allow_pickle=False) as data:
                raw = data[MANIFEST_KEY] if MANIFEST_KEY in data.files else None
            text = raw.tobytes().decode("utf-8") if raw is not None and raw.dtype == np.uint8 else None
        else:
            with open(data_path, "rb") as f:
                head = f.read(8)
                text = _safetensors_metadata(head + f.read(int.from_bytes(head, "little"))).get(METADATA_KEY)
        manifest = parse(text, str(data_path)) if text is not None else None
    except Exception:  # any damage (a truncated zip, a bad header, SnapshotError): vouch for nothing
        return None
    return manifest if is_sealed(manifest) else None


def write_pair(data_path: Path, json_path: Path, build: Callable[[dict[str, Any] | None], tuple[bytes, str]]) -> None:
    """Commit the pair ``build(previous)`` returns, ``(data file bytes embedding the manifest,
    manifest text)``, as one; ``previous`` is :func:`previous_manifest` of the data file being
    replaced, read under the lock. See the module docstring for the order. An OSError becomes
    a SnapshotError that names the folder and what to do."""
    folder = data_path.parent
    temps: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder, exclusive=True):
            _step("locked")
            remove_stale(data_path, json_path)
            blob, manifest_text = build(previous_manifest(data_path, data_path.suffix[1:]))
            temps.append(_write_temp(json_path, manifest_text.encode("utf-8")))
            _step("json-temp")
            temps.append(_write_temp(data_path, blob))
            _step("data-temp")
            os.replace(temps[0], json_path)
            _step("json-renamed")
            os.replace(temps[1], data_path)  # the commit point
            _step("data-renamed")
    except OSError as e:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise SnapshotError(
            f"cannot write the snapshot {data_path.name} into the folder {folder} "
            f"({type(e).__name__}: {e.strerror or e}): {_why(folder, e)}; make {folder} a writable "
            "folder"
        ) from e


def _why(folder: Path, error: OSError) -> str:
    """The likely cause of a failed write into ``folder``, for the message."""
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    for p in (folder, *folder.parents):
        if p.exists():
            return f"{p} is a file, not a folder" if not p.is_dir() else f"{p} is read-only"
    return "the folder cannot be created"


# --------------------------------------------------------------------------- containers


def encode(arrays: dict[str, np.ndarray], manifest_text: str, container: str) -> bytes:
    """The data file's bytes: every array plus the embedded manifest."""
    if container == "npz":
        buf = io.BytesIO()
        # typed Any: numpy's stub would otherwise match an array to savez's allow_pickle flag
        entries: dict[str, Any] = dict(arrays)
        manifest: dict[str, Any] = {MANIFEST_KEY: np.frombuffer(manifest_text.encode("utf-8"), np.uint8)}
        np.savez(buf, **entries, **manifest)
        return buf.getvalue()
    from safetensors.numpy import save as st_save

    return st_save(arrays, metadata={METADATA_KEY: manifest_text})


def decode(blob: bytes, data_path: Path, container: str) -> tuple[dict[str, np.ndarray], str | None]:
    """Every array of a data file and its embedded manifest text (None when it has none),
    never unpickling anything."""
    try:
        if container == "safetensors":
            from safetensors.numpy import load as st_load

            return st_load(blob), _safetensors_metadata(blob).get(METADATA_KEY)
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ImportError as e:
        raise SnapshotError(
            f"{data_path}: reading a safetensors snapshot needs the safetensors package (pip install safetensors)"
        ) from e
    except Exception as e:  # pickled objects, a truncated or foreign file: never fall back to pickle
        raise SnapshotError(
            f"{data_path}: unreadable without pickle or corrupted ({type(e).__name__}: {e}); re-record the snapshot"
        ) from e
    embedded = arrays.pop(MANIFEST_KEY, None)
    if embedded is None:
        return arrays, None
    if embedded.dtype != np.uint8 or embedded.ndim != 1:
        raise SnapshotError(
            f"{data_path}: the embedded manifest '{MANIFEST_KEY}' is a {embedded.dtype} array of "
            f"shape {embedded.shape}, expected uint8 bytes; the file is corrupted or foreign"
        )
    try:
        return arrays, embedded.tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SnapshotError(f"{data_path}: the embedded manifest is not UTF-8 text; the file is corrupted") from e


def _safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length, then JSON)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


# --------------------------------------------------------------------------- reading


def read_pair(path: str | os.PathLike) -> tuple[Path, str, Path, bytes, str]:
    """``(json path, its text, data path, its bytes, container)`` read under the shared lock,
    so both files come from the same write. Warns (:class:`SnapshotWarning`) when it removes
    the temporaries of an interrupted write."""
    _, json_path = paths(path)
    folder = json_path.parent
    with _locked(folder, exclusive=False) if folder.is_dir() else contextlib.nullcontext():
        stale = remove_stale(paths(path)[0], json_path)
        if stale:
            warnings.warn(
                SnapshotWarning(
                    f"{json_path.with_suffix('')}: an interrupted write (a writer killed midway) left {stale}; removed "
                    "them. The snapshot on disk is the previous complete one."
                ),
                stacklevel=3,
            )
        if not json_path.is_file():
            raise SnapshotError(
                f"no snapshot file {json_path}; record one first (pytest --trigrad-update, or "
                f"harness.record_snapshot(...).save('{json_path.with_suffix('')}'))"
            )
        text = _read(json_path, "text")
        container = _container_of(text, path)
        data_path = paths(path, container)[0]
        if not data_path.is_file():
            raise SnapshotError(
                f"no snapshot file {data_path} (named by {json_path.name}): an interrupted first "
                "write, or the file was deleted; record the snapshot again"
            )
        return json_path, text, data_path, _read(data_path, "bytes"), container


def _read(path: Path, mode: str) -> Any:
    try:
        return path.read_bytes() if mode == "bytes" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SnapshotError(f"{path}: not UTF-8 text ({e}); the file is corrupted") from e
    except OSError as e:
        raise SnapshotError(f"cannot read {path} ({type(e).__name__}: {e.strerror or e})") from e


def _container_of(text: str, path: str | os.PathLike) -> str:
    """The container the JSON names if its hash vouches for it; else (unreadable, edited)
    whichever data file exists, so the loader can compare the JSON with the embedded manifest
    and name the edited field."""
    try:
        manifest = parse(text, "")
        container = manifest.get("container") if is_sealed(manifest) else None
    except SnapshotError:  # the loader parses it again and says what is wrong
        container = None
    if container in CONTAINERS:
        return container
    return next((c for c in CONTAINERS if paths(path, c)[0].is_file()), "npz")


__all__ = [
    "MANIFEST_KEY",
    "METADATA_KEY",
    "decode",
    "encode",
    "paths",
    "previous_manifest",
    "read_pair",
    "remove_stale",
    "write_pair",
]
