"""Snapshot writes lose nothing (issue 11): a writer killed (SIGKILL) between any two steps
leaves the previous snapshot usable and is reported as an interrupted write, with no
temporary files left once the snapshot is next read; two processes writing the same
snapshot at once end with one consistent pair, and a reader never sees a mixed one. Real
processes, killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import harness as tg
from harness import snapshot_files
from harness.regress import compare
from harness.snapshot import SnapshotError, SnapshotWarning, load, paths, record
from harness.snapshot_manifest import canonical
from zoo.layers import Dense  # x @ W + b, W of shape (in, out)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or snapshot_files.fcntl is None,
                                reason="needs POSIX processes and flock")

SPEC = tg.Linear("fc", 4, 3)
STEPS = ("locked", "json-temp", "data-temp", "json-renamed", "data-renamed")

# a writer: loads SOURCE, then saves it to TARGET with another seed; MODE says how it behaves
CHILD = textwrap.dedent('''
    import os, signal, sys, time
    from pathlib import Path
    from harness import snapshot, snapshot_files

    source, target, seed, mode, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    snap = snapshot.load(source)

    def wait_for(flag):
        deadline = time.monotonic() + 30
        while not Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.002)

    def at(step):
        if mode == "kill" and step == arg:
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "pause" and step == "json-renamed":  # hold the lock between the two renames
            Path(arg + ".paused").touch()
            wait_for(arg + ".go")

    snapshot_files._step_hook = at
    if mode == "loop":  # many saves, started together with the other writer
        wait_for(arg)
        for i in range(int(os.environ["SAVES"])):
            snap.seed = seed + i
            snap.save(target)
    else:
        if mode == "announce":
            Path(arg).touch()
        snap.seed = seed
        snap.save(target)
''')


def wrap(layer: Dense):
    return tg.wrap_layer(layer, SPEC, layout=tg.Layout(linear="in_out"))


def writer(tmp_path: Path, source: Path, target: Path, seed: int, mode: str, arg: str = "-",
           saves: int = 0) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(CHILD)
    env = {**os.environ, "SAVES": str(saves), "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, str(script), str(source), str(target), str(seed), mode, arg], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def temporaries(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if "trigrad-tmp" in f)


def load_noting(path: Path) -> tuple[object, list[str]]:
    """The snapshot and the SnapshotWarnings loading it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snap = load(path)
    return snap, [str(w.message) for w in caught if issubclass(w.category, SnapshotWarning)]


@pytest.fixture(scope="module")
def original():
    return record(wrap(Dense(4, 3)), input_shape=(5, 4), seed=3)


def test_a_writer_killed_between_any_two_steps_loses_nothing(tmp_path, original) -> None:
    # temporaries the killed writer leaves: the JSON's, both, then the data file's alone
    left = {"locked": 0, "json-temp": 1, "data-temp": 2, "json-renamed": 1, "data-renamed": 0}
    folders = {step: tmp_path / step for step in STEPS}
    for folder in folders.values():
        original.save(folder / "fc")
    first = tmp_path / "first"  # the first write ever of a snapshot, killed between its renames
    procs = {step: writer(tmp_path, f / "fc", f / "fc", 7, "kill", step) for step, f in folders.items()}
    procs["first"] = writer(tmp_path, folders["locked"] / "fc", first / "fc", 7, "kill", "json-renamed")
    for step, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (step, err)

    for step, folder in folders.items():
        assert len(temporaries(folder)) == left[step], (step, temporaries(folder))
        snap, notes = load_noting(folder / "fc")
        assert snap.seed == (7 if step == "data-renamed" else 3), step  # the previous snapshot, whole
        assert bool(notes) == (left[step] > 0), (step, notes)
        assert all("interrupted write" in n and "tampered" not in n for n in notes), notes
        assert temporaries(folder) == [], step  # the dead writer's temporaries are gone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SnapshotWarning)
            assert compare(wrap(Dense(4, 3)), folder / "fc").ok, step
        snap.save(folder / "fc")  # the lock died with the writer: the next save goes through...
        assert load_noting(folder / "fc")[1] == [], step  # ...and leaves a consistent pair

    assert paths(first / "fc")[1].is_file() and not paths(first / "fc")[0].exists()
    with pytest.raises(SnapshotError, match=r"no snapshot file .*first/fc\.npz \(named by fc\.json\): an interrupted "
                                            r"first write"):
        with pytest.warns(SnapshotWarning, match=r"an interrupted write .* left \['\.fc\.npz\.trigrad-tmp-\d+-"):
            load(first / "fc")
    assert temporaries(first) == []


def test_a_second_writer_waits_for_the_first_to_commit(tmp_path, original) -> None:
    """Writer A stops between its two renames (JSON new, data file old) while B saves: B
    must wait for A's commit, so the pair ends as B's, consistent, with no warning."""
    original.save(tmp_path / "fc")
    original.save(tmp_path / "elsewhere" / "fc")  # B reads its snapshot here: A's lock must not stop that
    flag = str(tmp_path / "a")
    a = writer(tmp_path, tmp_path / "fc", tmp_path / "fc", 100, "pause", flag)
    deadline = time.monotonic() + 30
    while not Path(flag + ".paused").exists() and a.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert Path(flag + ".paused").exists(), a.communicate()
    b = writer(tmp_path, tmp_path / "elsewhere" / "fc", tmp_path / "fc", 200, "announce", str(tmp_path / "b.saving"))
    while not (tmp_path / "b.saving").exists() and b.poll() is None:
        time.sleep(0.005)
    time.sleep(0.3)  # a save takes milliseconds: unlocked, B would be done by now
    waited = b.poll() is None
    Path(flag + ".go").touch()
    for p in (a, b):
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert waited, "B saved while A was between its renames"
    snap, notes = load_noting(tmp_path / "fc")
    assert (snap.seed, notes) == (200, [])


def test_concurrent_writers_and_a_reader_never_meet_a_mixed_pair(tmp_path, original) -> None:
    saves = 60
    original.save(tmp_path / "fc")
    start = tmp_path / "start"
    procs = [writer(tmp_path, tmp_path / "fc", tmp_path / "fc", seed, "loop", str(start), saves)
             for seed in (1000, 2000)]
    time.sleep(0.05)
    start.touch()
    seen, mixed = set(), []
    while any(p.poll() is None for p in procs):
        try:
            snap, notes = load_noting(tmp_path / "fc")
            seen.add(snap.seed)
            mixed += notes
        except SnapshotError as e:
            mixed.append(str(e))
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert mixed == [], mixed[:3]
    assert len(seen) > 1  # the reader did run while they wrote
    snap, notes = load_noting(tmp_path / "fc")
    assert notes == [] and snap.seed in (1000 + saves - 1, 2000 + saves - 1)
    manifest = canonical(__import__("json").loads(paths(tmp_path / "fc")[1].read_text()))
    assert manifest == canonical(load_embedded(tmp_path / "fc")) and temporaries(tmp_path) == []


def load_embedded(path: Path) -> dict:
    import json

    with np.load(paths(path)[0], allow_pickle=False) as data:
        return json.loads(data["__manifest__"].tobytes().decode())


def test_a_live_writers_temporary_is_left_alone(tmp_path, original) -> None:
    original.save(tmp_path / "fc")
    mine = tmp_path / f".fc.npz.trigrad-tmp-{os.getpid()}-0000abcd"  # this process is alive
    mine.write_bytes(b"half a file")
    snap, notes = load_noting(tmp_path / "fc")
    assert snap.seed == 3 and notes == [] and mine.exists()


def test_without_fcntl_writes_still_work(tmp_path, original, monkeypatch) -> None:
    monkeypatch.setattr(snapshot_files, "fcntl", None)
    original.save(tmp_path / "fc")
    snap, notes = load_noting(tmp_path / "fc")
    assert snap.seed == 3 and notes == [] and temporaries(tmp_path) == []


def test_where_processes_cannot_be_probed_another_writers_temporaries_stay(tmp_path, original, monkeypatch) -> None:
    """On Windows ``os.kill(pid, 0)`` is no probe (signal 0 is CTRL_C_EVENT; others terminate
    the process), and the writer may be a sibling pytest-xdist worker: there it is never
    called, and another process's temporary stays (hidden, never read)."""
    original.save(tmp_path / "fc")

    def kill(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) called where it is no probe")

    monkeypatch.setattr(snapshot_files, "_CAN_PROBE", False)
    monkeypatch.setattr(os, "kill", kill)
    other = tmp_path / ".fc.npz.trigrad-tmp-999999999-0000abcd"  # a pid no process has
    other.write_bytes(b"half a file")
    snap, notes = load_noting(tmp_path / "fc")
    assert snap.seed == 3 and notes == [] and other.exists()
    original.save(tmp_path / "fc")  # a save leaves it too, and goes through
    assert other.exists() and load_noting(tmp_path / "fc")[1] == []
