"""Snapshot manifests are integrity-checked like their arrays (issue 11, "no silent pass").

A layer whose bias gradient is three times too large must never compare as "same" because
someone edited the manifest: a hand edit (dtype int64 or bool, tolerances of 1e300, no
entries) is refused naming the field; a forged but self-consistent manifest is refused by
the field checks; a JSON that disagrees with the manifest embedded in the data file is
outvoted by it. Files are never unpickled."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import harness as tg
from harness.regress import compare
from harness.snapshot import SnapshotError, SnapshotWarning, load, paths, record
from harness.snapshot_manifest import seal

SPEC = tg.Linear("fc", 4, 3)


class Dense:
    """x @ W + b in the user's in_out layout; ``bias_factor`` scales the bias gradient (a bug)."""

    def __init__(self, bias_factor: float = 1.0):
        rng = np.random.default_rng(0)
        self.W, self.b, self.bias_factor = rng.standard_normal((4, 3)), rng.standard_normal(3), bias_factor

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0) * self.bias_factor
        return dy @ self.W.T


def wrap(layer: Dense):
    return tg.wrap_layer(layer, SPEC, layout=tg.Layout(linear="in_out"))


@pytest.fixture()
def saved(tmp_path):
    record(wrap(Dense()), input_shape=(5, 4), seed=3).save(tmp_path / "fc")
    return tmp_path / "fc"


def tripled_is_caught(path) -> None:
    """The x3 bias gradient either fails the compare or the snapshot is refused; never "same"."""
    try:
        result = compare(wrap(Dense(bias_factor=3.0)), path)
    except SnapshotError:
        return
    assert not result.ok, f"a x3 bias gradient compared as the same:\n{result}"


def edit_json(path, change) -> None:
    """Edit NAME.json by hand (its manifest_sha256 left as it was)."""
    js = paths(path)[1]
    manifest = json.loads(js.read_text())
    change(manifest)
    js.write_text(json.dumps(manifest, indent=1))


def forge(path, change, drop_arrays: bool = False) -> None:
    """Change the manifest consistently everywhere (the JSON and the copy embedded in the data
    file, both resealed), as a deliberate forger would: only the field checks can refuse it.
    ``drop_arrays``: also remove the arrays the new manifest no longer lists."""
    npz, js = paths(path)
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(arrays["__manifest__"].tobytes().decode())
    change(manifest)
    manifest = seal(manifest)
    if drop_arrays:
        arrays = {k: v for k, v in arrays.items() if k in manifest["arrays"]}
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    js.write_text(json.dumps(manifest, indent=1))


def set_tolerances(value):
    def change(m):
        for entry in m["entries"].values():
            entry["tolerances"] = {k: value for k in entry["tolerances"]}
    return change


def test_the_tripled_bias_is_caught_by_an_intact_snapshot(saved) -> None:
    result = compare(wrap(Dense(bias_factor=3.0)), saved)
    assert {t.name: t.status for t in result.entry("fc").tensors}["bias"] == "broken", str(result)
    assert compare(wrap(Dense()), saved).ok


HAND_EDITS = {
    "dtype int64": (lambda m: m.update(dtype="int64"), r"field 'dtype' is \"int64\" here, \"float64\" as recorded"),
    "dtype bool": (lambda m: m.update(dtype="bool"), r"field 'dtype' is \"bool\" here"),
    "dtype garbage": (lambda m: m.update(dtype="garbage"), r"field 'dtype' is \"garbage\" here"),
    "tolerances 1e300": (set_tolerances(1e300), r"field 'entries\.fc\.tolerances\.bias' is 1e\+300 here"),
    "tolerance abc": (lambda m: m["entries"]["fc"]["tolerances"].update(bias="abc"),
                      r"field 'entries\.fc\.tolerances\.bias' is \"abc\" here"),
    "entries emptied": (lambda m: m.update(entries={}), r"field 'entries\.fc' was removed"),
    "entries deleted": (lambda m: m.pop("entries"), r"field 'entries' was removed"),
    "container": (lambda m: m.update(container="safetensors"), r"field 'container' is \"safetensors\" here, \"npz\""),
    "hash alone": (lambda m: m.update(manifest_sha256="0" * 64), r"field 'manifest_sha256' does not match"),
}


@pytest.mark.parametrize("edit", HAND_EDITS, ids=list(HAND_EDITS))
def test_a_hand_edited_manifest_is_refused_naming_the_field(saved, edit) -> None:
    change, message = HAND_EDITS[edit]
    edit_json(saved, change)
    with pytest.raises(SnapshotError, match=message) as refused:
        compare(wrap(Dense(bias_factor=3.0)), saved)
    text = str(refused.value)
    assert "fc.json: edited or tampered manifest" in text and "git checkout" in text and "--trigrad-update" in text


FORGED = {
    "dtype int64": (lambda m: m.update(dtype="int64"), r"field 'dtype' is \"int64\", expected a floating dtype"),
    "dtype bool": (lambda m: m.update(dtype="bool"), r"field 'dtype' is \"bool\", expected a floating dtype"),
    "dtype garbage": (lambda m: m.update(dtype="garbage"), r"field 'dtype' is \"garbage\""),
    "dtype missing": (lambda m: m.pop("dtype"), r"field 'dtype' is missing"),
    "dtype a number": (lambda m: m.update(dtype=8), r"field 'dtype' is 8, expected one of"),
    "tolerances 1e300": (set_tolerances(1e300), r"field 'entries\.fc\.tolerances\.\w+' is 1e\+300, expected a finite"),
    "tolerances 1e-3": (set_tolerances(1e-3), r"'entries\.fc\.tolerances\.\w+' is 0\.001, expected a finite number "
                                              r"between 0 and [\d.e-]+ \(the most a float64"),
    "tolerance abc": (lambda m: m["entries"]["fc"]["tolerances"].update(bias="abc"),
                      r"field 'entries\.fc\.tolerances\.bias' is \"abc\""),
    "tolerance nan": (lambda m: m["entries"]["fc"]["tolerances"].update(bias=float("nan")),
                      r"field 'entries\.fc\.tolerances\.bias' is NaN"),
    "tolerance negative": (lambda m: m["entries"]["fc"]["tolerances"].update(bias=-1.0),
                           r"field 'entries\.fc\.tolerances\.bias' is -1\.0"),
    "tolerance missing": (lambda m: m["entries"]["fc"]["tolerances"].pop("bias"),
                          r"field 'entries\.fc\.tolerances' is .*one tolerance per tensor"),
    "entries emptied": (lambda m: m.update(entries={}), r"field 'entries' is \{\}, expected at least one entry"),
    "entries missing": (lambda m: m.pop("entries"), r"field 'entries' is missing"),
    "entries a list": (lambda m: m.update(entries=["fc"]), r"field 'entries' is \[\"fc\"\]"),
    "kind": (lambda m: m["entries"]["fc"].update(kind="weird"), r"field 'entries\.fc\.kind' is \"weird\""),
    "no output array": (lambda m: m["entries"]["fc"]["arrays"].remove("output"), r"field 'entries\.fc\.arrays'"),
    "seed": (lambda m: m.update(seed="3"), r"field 'seed' is \"3\", expected an integer"),
    "params": (lambda m: m.update(params="weight"), r"field 'params' is \"weight\", expected a list"),
    "array sha": (lambda m: m["arrays"]["params/bias"].update(sha256="x"), r"field 'arrays\.params/bias\.sha256'"),
    "array row": (lambda m: m["arrays"].pop("params/bias"), r"field 'arrays' .*missing \['params/bias'\]"),
    "container": (lambda m: m.update(container="pickle"), r"field 'container' is \"pickle\""),
    "format": (lambda m: m.pop("format"), r"format None, expected 'trigrad\.snapshot/2'"),
}


@pytest.mark.parametrize("edit", FORGED, ids=list(FORGED))
def test_a_forged_manifest_is_refused_by_the_field_checks(saved, edit) -> None:
    change, message = FORGED[edit]
    forge(saved, change)
    with pytest.raises(SnapshotError, match=message) as refused:  # never a TypeError or KeyError
        compare(wrap(Dense(bias_factor=3.0)), saved)
    assert "fc.npz (embedded manifest)" in str(refused.value) or "format" in edit


def test_every_snapshot_the_code_records_passes_the_field_checks(tmp_path) -> None:
    """The ranges are not so tight that honest snapshots fail: float16/32/64 layers and a net."""
    from harness.examples import build

    for dtype in (np.float16, np.float32, np.float64):
        layer = Dense()
        layer.W, layer.b = layer.W.astype(dtype), layer.b.astype(dtype)
        record(wrap(layer), input_shape=(64, 4)).save(tmp_path / f"fc-{np.dtype(dtype).name}")
        assert load(tmp_path / f"fc-{np.dtype(dtype).name}").dtype == np.dtype(dtype).name
    example = build()
    record(example.net, x=example.x, seed=1).save(tmp_path / "lenet")
    assert compare(example.net, tmp_path / "lenet").ok


def test_a_network_snapshot_without_an_entry_the_code_produces_is_refused(tmp_path) -> None:
    from harness.examples import build

    example = build()
    record(example.net, x=example.x, seed=1).save(tmp_path / "lenet")
    buggy = build("fc1-bias-averaged").net

    def drop(m):  # the two entries that would show the bug, and their arrays
        for name in ("fc1", "(network)"):
            del m["entries"][name]
            for key in [k for k in m["arrays"] if k.startswith(f"entries/{name}/")]:
                del m["arrays"][key]

    forge(tmp_path / "lenet", drop, drop_arrays=True)
    with pytest.raises(SnapshotError, match=r"lenet\.npz: has no entry for \['fc1', '\(network\)'\], which this code "
                                            r"produces .*emptied or edited"):
        compare(buggy, tmp_path / "lenet")
    snap = record(example.net, x=example.x, seed=1)  # the same in memory
    del snap.entries["fc1"]
    with pytest.raises(SnapshotError, match=r"the snapshot: has no entry for \['fc1'\]"):
        compare(buggy, snap)


def test_an_in_memory_snapshot_gets_the_field_checks(tmp_path) -> None:
    snap = record(wrap(Dense()), input_shape=(5, 4))
    snap.dtype = "int64"
    with pytest.raises(SnapshotError, match=r"field 'dtype' is \"int64\""):
        compare(wrap(Dense(bias_factor=3.0)), snap)
    with pytest.raises(SnapshotError, match=r"fc\.json \(being saved\): field 'dtype'"):
        snap.save(tmp_path / "fc")
    assert list(tmp_path.iterdir()) == []  # nothing written
    snap.dtype, snap.entries = "float64", {}
    with pytest.raises(SnapshotError, match=r"field 'entries' is \{\}"):
        compare(wrap(Dense(bias_factor=3.0)), snap)


def test_a_resealed_json_is_outvoted_by_the_embedded_manifest(saved) -> None:
    """A JSON that hashes right but differs from the data file's manifest (a write killed
    between its renames, or a clever edit) is not trusted: the embedded manifest decides."""
    js = paths(saved)[1]
    manifest = json.loads(js.read_text())
    set_tolerances(0.5)(manifest)
    js.write_text(json.dumps(seal(manifest), indent=1))
    with pytest.warns(SnapshotWarning, match=r"fc\.json: an interrupted write: fc\.json and fc\.npz come from "
                                             r"different saves.*Using the complete snapshot in fc\.npz"):
        tripled_is_caught(saved)
    with warnings.catch_warnings(record=True):
        assert load(saved).entries["fc"].tolerances["bias"] < 1e-12


def test_a_data_file_without_an_embedded_manifest_is_refused(saved) -> None:
    npz = paths(saved)[0]
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "__manifest__"}
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(SnapshotError, match=r"fc\.npz: has no embedded manifest .*--trigrad-update"):
        load(saved)


def test_a_snapshot_of_the_previous_format_asks_to_re_record(saved) -> None:
    edit_json(saved, lambda m: m.update(format="trigrad.snapshot/1"))
    with pytest.raises(SnapshotError, match=r"format 'trigrad\.snapshot/1' \(written by an older trigrad\), expected "
                                            r"'trigrad\.snapshot/2'; re-record it \(pytest --trigrad-update"):
        load(saved)


def test_loading_never_unpickles(saved, monkeypatch) -> None:
    """Every np.load says allow_pickle=False, and a pickled array is refused even under a
    forged manifest that describes it."""
    calls = []
    real = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", "default"))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    load(saved)
    assert calls and set(calls) == {False}
    npz = paths(saved)[0]
    with real(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["params/bias"] = np.array([object()])
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(SnapshotError, match=r"fc\.npz: unreadable without pickle"):
        load(saved)
    assert set(calls) == {False}
