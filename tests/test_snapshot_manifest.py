"""Snapshot manifests are integrity-checked like their arrays (issue 11, "no silent pass").

A layer whose bias gradient is three times too large must never compare as "same" because
someone edited the manifest: a hand edit (dtype int64 or bool, tolerances of 1e300, no
entries) is refused naming the field; a forged but self-consistent manifest is refused by
the field checks; a JSON that disagrees with the manifest embedded in the data file is
outvoted by it. Files are never unpickled."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from typing import Callable

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
    "a shape of 1e30 elements": (lambda m: m["arrays"]["entries/fc/x"].update(shape=[10**15, 10**15]),
                                 r"field 'arrays\.entries/fc/x\.shape' is \[1000000000000000, 1000000000000000\], "
                                 r"expected a list of at most 64 non-negative sizes, of at most 4611686018427387904"),
    "spec missing": (lambda m: m.pop("spec"), r"field 'spec' is missing \(expected an object or null\)"),
    "replaces": (lambda m: m.update(replaces="abc"), r"field 'replaces' is \"abc\", expected null or the 64 hex"),
    "format": (lambda m: m.pop("format"), r"format None, expected 'trigrad\.snapshot/2'"),
}


@pytest.mark.parametrize("edit", FORGED, ids=list(FORGED))
def test_a_forged_manifest_is_refused_by_the_field_checks(saved, edit) -> None:
    change, message = FORGED[edit]
    forge(saved, change)
    with pytest.raises(SnapshotError, match=message) as refused:  # never a TypeError or KeyError
        compare(wrap(Dense(bias_factor=3.0)), saved)
    # the field checks name the data file; a NaN is refused by the parser in the JSON, read first
    named = "fc.json: " if edit == "tolerance nan" else "fc.npz (embedded manifest)"
    assert named in str(refused.value) or "format" in edit


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
    snap.dtype, snap.versions = "float64", {**snap.versions, "numpy": "2.\ud800"}
    with pytest.raises(SnapshotError, match=r"fc\.json \(being saved\): field 'versions\.numpy' is not Unicode "
                                            r"text: a lone surrogate '\\ud800' at character 2"):
        snap.save(tmp_path / "fc")
    snap.versions["numpy"], snap.entries = "2.0", {}
    with pytest.raises(SnapshotError, match=r"field 'entries' is \{\}"):
        compare(wrap(Dense(bias_factor=3.0)), snap)


def test_a_resealed_json_is_outvoted_or_refused(saved) -> None:
    """A JSON that hashes right but differs from the data file's manifest is never trusted: if
    it names the data file's manifest as the one it replaced (what a save killed between its
    renames leaves), the embedded manifest decides with a warning; otherwise it is refused."""
    js, embedded = paths(saved)[1], load_embedded(saved)
    manifest = json.loads(js.read_text())
    set_tolerances(0.5)(manifest)
    js.write_text(json.dumps(seal(manifest), indent=1))
    with pytest.raises(SnapshotError, match=r"fc\.json and .*fc\.npz: the data file and the manifest come from "
                                            r"different snapshots: a copied or swapped file\?"):
        compare(wrap(Dense(bias_factor=3.0)), saved)
    js.write_text(json.dumps(seal({**manifest, "replaces": embedded["manifest_sha256"]}), indent=1))
    with pytest.warns(SnapshotWarning, match=r"fc\.json: an interrupted write: fc\.json and fc\.npz come from "
                                             r"different saves.*Using the complete snapshot in fc\.npz"):
        tripled_is_caught(saved)
    with warnings.catch_warnings(record=True):
        assert load(saved).entries["fc"].tolerances["bias"] < 1e-12


def load_embedded(path) -> dict:
    with np.load(paths(path)[0], allow_pickle=False) as data:
        return json.loads(data["__manifest__"].tobytes().decode())


MIXUPS = {  # how a pair ends up mixed: shell commands a user or a script might run
    "bad.npz copied over good.npz": lambda d: shutil.copy(d / "bad.npz", d / "good.npz"),
    "bad.json copied over good.json": lambda d: shutil.copy(d / "bad.json", d / "good.json"),
    "the data files swapped": lambda d: (os.replace(d / "good.npz", d / "t"), os.replace(d / "bad.npz", d / "good.npz"),
                                         os.replace(d / "t", d / "bad.npz")),
    "good re-recorded, then bad.npz copied over": lambda d: (
        record(wrap(Dense()), input_shape=(5, 4), seed=4).save(d / "good"),
        shutil.copy(d / "bad.npz", d / "good.npz")),
}


@pytest.mark.parametrize("mixup", MIXUPS, ids=list(MIXUPS))
def test_a_data_file_and_a_manifest_of_different_snapshots_are_refused(tmp_path, mixup) -> None:
    """An old JSON next to another snapshot's data file is no killed save (which leaves a new
    JSON next to the data file it replaced): it must be an error, not a warning and "same"."""
    record(wrap(Dense()), input_shape=(5, 4), seed=3).save(tmp_path / "good")
    record(wrap(Dense(bias_factor=3.0)), input_shape=(5, 4), seed=3).save(tmp_path / "bad")
    MIXUPS[mixup](tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SnapshotWarning)  # refused outright, not warned about
        with pytest.raises(SnapshotError, match=r"good\.json and .*good\.npz: the data file and the manifest come "
                                                r"from different snapshots: a copied or swapped file\?") as refused:
            tg.compare_snapshot(wrap(Dense(bias_factor=3.0)), tmp_path / "good")
    text = str(refused.value)
    assert re.search(r"field 'arrays\.entries/fc/[\w/]+\.sha256' is \\?\"[0-9a-f]{6}", text), text
    assert "git checkout" in text and "--trigrad-update" in text


def test_a_save_names_the_manifest_it_replaces_and_an_unchanged_one_stays_byte_identical(tmp_path) -> None:
    snap = record(wrap(Dense()), input_shape=(5, 4), seed=3)
    npz, js = snap.save(tmp_path / "fc")
    first = load_embedded(tmp_path / "fc")
    assert first["replaces"] is None  # nothing replaced
    snap.save(tmp_path / "fc")  # the same content again: no churn in a checked-in snapshot
    assert load_embedded(tmp_path / "fc") == first and json.loads(js.read_text()) == first
    snap.seed = 4
    snap.save(tmp_path / "fc")
    assert load_embedded(tmp_path / "fc")["replaces"] == first["manifest_sha256"]


def raw(manifest: dict, path: tuple, text: str) -> str:
    """``manifest`` as JSON with the field at ``path`` replaced by the raw JSON ``text``."""
    m = json.loads(json.dumps(manifest))
    node = m
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "@@"
    return json.dumps(m).replace('"@@"', text)


def with_field(path: tuple, value) -> Callable[[dict], str]:
    return lambda m: raw(m, path, json.dumps(value))


MALFORMED = {  # manifest text -> what the refusal must say
    "nested 200000 deep": (lambda m: "[" * 200000 + "]" * 200000, r"nested more than 100 levels deep"),
    "a field nested 150 deep": (lambda m: raw(m, ("spec",), "[" * 150 + "]" * 150),
                                r"field 'spec\.0\.0\.0\.0\.\.\.' is nested more than 100 levels deep"),
    "a lone surrogate in a value": (with_field(("versions", "numpy"), "1.\ud800"),
                                    r"field 'versions\.numpy' is not Unicode text: a lone surrogate '\\ud800' at "
                                    r"character 2"),
    "a lone surrogate in a key": (with_field(("versions", "\udfff"), "1"),
                                  r"field 'versions\.\\udfff' \(a key\) is not Unicode text"),
    "a list, not an object": (lambda m: "[1, 2]", r"the manifest is a JSON array, expected an object"),
    "null, not an object": (lambda m: "null", r"the manifest is a JSON null, expected an object"),
    "a number beyond float (1e400)": (lambda m: raw(m, ("entries", "fc", "tolerances", "bias"), "1e400"),
                                      r"field 'entries\.fc\.tolerances\.bias' is infinite"),
    "the literal NaN": (lambda m: raw(m, ("entries", "fc", "tolerances", "bias"), "NaN"),
                        r"field 'entries\.fc\.tolerances\.bias' is NaN, expected a finite number"),
    "the literal -Infinity": (lambda m: raw(m, ("seed",), "-Infinity"), r"field 'seed' is infinite"),
    "an integer of 5000 digits": (lambda m: raw(m, ("seed",), "9" * 5000),
                                  r"field 'seed' is an integer of 5000 digits, expected at most 40"),
    "a key given twice": (lambda m: json.dumps(m)[:-1] + ', "dtype": "float32"}', r"field 'dtype' is given twice"),
    "a nested key given twice": (lambda m: raw(m, ("entries", "fc", "kind"), '"layer", "kind": "network"'),
                                 r"field 'entries\.fc\.kind' is given twice"),
    "empty": (lambda m: "", r"not a valid JSON manifest \(Expecting value"),
}


@pytest.mark.parametrize("where", ["fc.json", "fc.npz (embedded manifest)"])
@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_manifest_is_a_snapshot_error_naming_the_file_and_field(saved, case, where) -> None:
    """Never a RecursionError, UnicodeEncodeError, ValueError or TypeError from the parser or the
    hashing: a SnapshotError that names the file, the field and what is wrong with it."""
    make, message = MALFORMED[case]
    text = make(load_embedded(saved))
    npz, js = paths(saved)
    if where == "fc.json":
        js.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["__manifest__"] = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)
        with open(npz, "wb") as f:
            np.savez(f, **arrays)
    with pytest.raises(SnapshotError, match=message) as refused:
        compare(wrap(Dense(bias_factor=3.0)), saved)
    text = str(refused.value)
    assert f"{where}: " in text and "re-record it" in text, text
    text.encode("utf-8")  # the message itself can be printed


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
