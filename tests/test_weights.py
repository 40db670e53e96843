"""Weight files in every format and naming, loaded back exactly; every error says what is wrong."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest

from harness.adapters.weights import WeightsError, load_weights, map_names, read_weight_file
from harness.spec import (
    BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU, Sequential, SpecError, init_params,
)

SPEC = Sequential([Conv2d("conv1", 1, 4, 3), BatchNorm2d("bn1", 4), ReLU("r"), Flatten("f"), Linear("fc1", 4 * 6 * 6, 3)])
SHAPE = (2, 1, 8, 8)
PARAMS = init_params(SPEC, SHAPE, seed=1)

# how a user might name the parameters in their own code
USER = {
    "conv1.weight": "c1_W", "conv1.bias": "c1_b", "bn1.weight": "bn_g", "bn1.bias": "bn_b",
    "bn1.running_mean": "bn_mean", "bn1.running_var": "bn_var", "fc1.weight": "W1", "fc1.bias": "b1",
}
TO_CANONICAL = {u: c for c, u in USER.items()}
RULES = [
    (r"W(\d+)", r"fc\1.weight"), (r"b(\d+)", r"fc\1.bias"),
    (r"c(\d+)_W", r"conv\1.weight"), (r"c(\d+)_b", r"conv\1.bias"),
    (r"bn_g", "bn1.weight"), (r"bn_b", "bn1.bias"), (r"bn_(mean|var)", r"bn1.running_\1"),
]
MAPPINGS = {"dict": TO_CANONICAL, "rules": RULES, "callable": TO_CANONICAL.get}


def save(fmt: str, arrays: dict, tmp_path):
    if fmt == "npz":
        np.savez(tmp_path / "w.npz", **arrays)
        return tmp_path / "w.npz"
    if fmt == "folder":  # dotted names go into nested folders: bn1.running_mean -> bn1/running_mean.npy
        for name, a in arrays.items():
            f = tmp_path.joinpath("w", *name.split(".", 1))
            f.parent.mkdir(parents=True, exist_ok=True)
            np.save(f.with_name(f.name + ".npy"), a)
        return tmp_path / "w"
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(dict(arrays), str(tmp_path / "w.safetensors"))
        return tmp_path / "w.safetensors"
    raise AssertionError(fmt)


def assert_same(loaded: dict, expected: dict = PARAMS) -> None:
    assert list(loaded) == list(expected)  # every canonical name, in spec order
    for name, a in expected.items():
        assert loaded[name].dtype == np.float64
        np.testing.assert_array_equal(loaded[name], a, err_msg=name)


def canonical(**changes) -> dict:
    """PARAMS with entries replaced (an array) or removed (None)."""
    out = dict(PARAMS)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            del out[name]
        else:
            out[name] = value
    return out


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["npz", "folder", "safetensors"])
@pytest.mark.parametrize("how", list(MAPPINGS))
def test_user_names_round_trip_exactly(fmt, how, tmp_path):
    path = save(fmt, {USER[n]: a for n, a in PARAMS.items()}, tmp_path)
    assert_same(load_weights(path, SPEC, SHAPE, mapping=MAPPINGS[how]))
    assert_same(load_weights(str(path), SPEC, SHAPE, mapping=MAPPINGS[how]))


@pytest.mark.parametrize("fmt", ["npz", "folder", "safetensors"])
def test_canonical_names_need_no_mapping(fmt, tmp_path):
    assert_same(load_weights(save(fmt, PARAMS, tmp_path), SPEC, SHAPE))


def test_nested_folders_give_dotted_names(tmp_path):
    (tmp_path / "w" / "layer1" / "0").mkdir(parents=True)
    np.save(tmp_path / "w" / "layer1" / "0" / "weight.npy", np.ones(2))
    np.save(tmp_path / "w" / "fc.bias.npy", np.zeros(3))
    (tmp_path / "w" / "README.txt").write_text("not an array: ignored")
    got = read_weight_file(tmp_path / "w")
    assert sorted(got) == ["fc.bias", "layer1.0.weight"]
    np.testing.assert_array_equal(got["layer1.0.weight"], np.ones(2))


def test_single_npy_is_named_by_its_stem(tmp_path):
    spec = Sequential([Linear("fc", 3, 2, bias=False)])
    w = init_params(spec, (1, 3))["fc.weight"]
    np.save(tmp_path / "fc.weight.npy", w)
    assert list(read_weight_file(tmp_path / "fc.weight.npy")) == ["fc.weight"]
    np.save(tmp_path / "W.npy", w)
    assert_same(load_weights(tmp_path / "W.npy", spec, (1, 3), mapping={"W": "fc.weight"}), {"fc.weight": w})


def test_float32_is_widened_and_dict_source_is_copied():
    src = {n: a.astype(np.float32) for n, a in PARAMS.items()}
    got = load_weights(src, SPEC, SHAPE)
    assert_same(got, {n: a.astype(np.float64) for n, a in src.items()})
    src64 = dict(PARAMS)
    got = load_weights(src64, SPEC, SHAPE)
    got["fc1.bias"][0] = 123.0
    assert PARAMS["fc1.bias"][0] != 123.0


def test_callable_mapping_drops_names_it_returns_none_for(tmp_path):
    np.savez(tmp_path / "w.npz", step=np.array(7.0), lr=np.array(0.1), **{USER[n]: a for n, a in PARAMS.items()})
    assert_same(load_weights(tmp_path / "w.npz", SPEC, SHAPE, mapping=TO_CANONICAL.get))


# --------------------------------------------------------------------------- map_names


def test_map_names_forms():
    a = {"W1": 1, "b1": 2, "other": 3}
    assert map_names(a, None) == a
    assert map_names(a, {"W1": "fc1.weight"}) == {"fc1.weight": 1, "b1": 2, "other": 3}
    assert map_names(a, RULES) == {"fc1.weight": 1, "fc1.bias": 2, "other": 3}
    assert map_names(a, lambda n: n.upper() if n != "other" else None) == {"W1": 1, "B1": 2}
    # the first rule whose pattern matches the whole name wins; partial matches do not count
    assert map_names({"ab": 1, "xab": 2}, [(r"a(.)", r"first_\1"), (r"ab", "second")]) == {"first_b": 1, "xab": 2}


def test_duplicate_target_names_both_sources():
    with pytest.raises(WeightsError, match=r"'W1' and 'W2' both map to 'fc\.weight'"):
        map_names({"W1": 1, "W2": 2}, [(r"W\d", "fc.weight")])
    # a name kept as it is can collide with a renamed one
    with pytest.raises(WeightsError, match=r"'fc\.weight' and 'W' both map to 'fc\.weight'"):
        map_names({"fc.weight": 1, "W": 2}, {"W": "fc.weight"})


def test_bad_mappings():
    with pytest.raises(WeightsError, match="not a \\(regex, replacement\\) pair"):
        map_names({"a": 1}, [("(", "x")])
    with pytest.raises(WeightsError, match="mapping must be a dict"):
        map_names({"a": 1}, "a->b")
    with pytest.raises(WeightsError, match="expected a canonical name"):
        map_names({"a": 1}, lambda n: 5)


# --------------------------------------------------------------------------- reading errors


def test_missing_path(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file '.*nope\.npz' not found"):
        read_weight_file(tmp_path / "nope.npz")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope", SPEC, SHAPE)


def test_unknown_extension_lists_formats(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"\x80\x02")
    with pytest.raises(WeightsError, match=r"unknown extension '\.pt'; supported: \.npz, \.npy, a folder of \.npy files, \.safetensors"):
        read_weight_file(tmp_path / "w.pt")


def test_empty_folder(tmp_path):
    with pytest.raises(WeightsError, match="holds no .npy files"):
        read_weight_file(tmp_path)


UNPICKLED: list[str] = []


def _record(what: str) -> str:
    UNPICKLED.append(what)
    return what


class Payload:
    """Unpickling it would call _record: proves the file is refused, not loaded."""

    def __reduce__(self):
        return (_record, ("ran",))


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([Payload(), 1], dtype=object), allow_pickle=True)
    with pytest.raises(WeightsError, match=r"evil\.npy' holds a pickled object array; pickled arrays are not read"):
        read_weight_file(tmp_path / "evil.npy")
    with pytest.raises(WeightsError, match="pickled arrays are not read"):  # inside a folder too
        read_weight_file(tmp_path)
    assert UNPICKLED == []


def test_pickled_npz_entry_is_refused(tmp_path):
    np.savez(tmp_path / "w.npz", good=np.ones(2), bad=np.array([Payload()], dtype=object))
    with pytest.raises(WeightsError, match=r"w\.npz' \(entry 'bad'\) holds a pickled object array; pickled arrays are not read"):
        load_weights(tmp_path / "w.npz", SPEC, SHAPE)
    assert UNPICKLED == []


def test_corrupt_files(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match=r"w\.npz' is not a NumPy \.npy/\.npz file \(pickles.*are not read"):
        read_weight_file(tmp_path / "w.npz")
    (tmp_path / "w.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(WeightsError, match=r"could not read '.*w\.npy' as a NumPy file"):
        read_weight_file(tmp_path / "w.npy")
    with zipfile.ZipFile(tmp_path / "t.npz", "w") as z:  # e.g. a torch checkpoint renamed to .npz
        z.writestr("archive/data.pkl", b"...")
    with pytest.raises(WeightsError, match=r"\(entry 'archive/data\.pkl'\) is not a NumPy array; is this really a \.npz\?"):
        read_weight_file(tmp_path / "t.npz")
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"could not read '.*w\.safetensors' as \.safetensors"):
        read_weight_file(tmp_path / "w.safetensors")


def test_safetensors_not_installed(tmp_path, monkeypatch):
    path = save("safetensors", PARAMS, tmp_path)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors...` fail
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(WeightsError, match="needs the 'safetensors' package: pip install safetensors"):
        read_weight_file(path)


# --------------------------------------------------------------------------- validation


def test_all_problems_in_one_error():
    src = canonical(bn1__running_var=None, conv1__bias=np.zeros(5))
    src["fc1.weights"] = src.pop("fc1.weight")  # typo: unmatched, and fc1.weight missing
    with pytest.raises(WeightsError) as e:
        load_weights(src, SPEC, SHAPE)
    msg = str(e.value)
    assert isinstance(e.value, SpecError) and "\n" not in msg
    assert "1 unmatched (in the file, not in the spec): 'fc1.weights' (did you mean 'fc1.weight'?)" in msg
    assert "2 missing (in the spec, not in the file): 'bn1.running_var', 'fc1.weight'" in msg
    assert "buffers such as running_mean/running_var/mask are required too" in msg
    assert "1 mis-shaped: 'conv1.bias' expected (4,), found (5,)" in msg


def test_errors_name_the_users_names(tmp_path):
    src = {USER[n]: a for n, a in PARAMS.items()}
    src["W1"] = src["W1"][:, :10]
    with pytest.raises(WeightsError, match=r"'fc1\.weight' \(from 'W1'\) expected \(3, 144\), found \(3, 10\)"):
        load_weights(src, SPEC, SHAPE, mapping=RULES)
    with pytest.raises(WeightsError, match="none of the names matched the spec: pass mapping= to rename them"):
        load_weights(src, SPEC, SHAPE)


def test_kernel_axis_order_hint():
    hwio = PARAMS["conv1.weight"].transpose(2, 3, 1, 0)  # (3, 3, 1, 4)
    with pytest.raises(WeightsError, match=r"'conv1\.weight' expected \(4, 1, 3, 3\), found \(3, 3, 1, 4\); "
                       r"looks like HWIO: pass Layout\(kernel='HWIO'\)"):
        load_weights(canonical(conv1__weight=hwio), SPEC, SHAPE)
    ihwo = PARAMS["conv1.weight"].transpose(1, 2, 3, 0)  # the hint names the order the sizes imply
    with pytest.raises(WeightsError, match=r"looks like IHWO: pass Layout\(kernel='IHWO'\)"):
        load_weights(canonical(conv1__weight=ihwo), SPEC, SHAPE)
    # moving the size-1 in-channel axis keeps the data order: that is just a reshape
    ohwi = PARAMS["conv1.weight"].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(load_weights(canonical(conv1__weight=ohwi), SPEC, SHAPE)["conv1.weight"], PARAMS["conv1.weight"])


def test_flattened_kernel_is_not_reshaped_silently():
    flat = PARAMS["conv1.weight"].reshape(4, 9)  # which of OIHW / OHWI ... was flattened is unknown
    with pytest.raises(WeightsError, match=r"found \(4, 9\); same number of values in another shape: reshape it"):
        load_weights(canonical(conv1__weight=flat), SPEC, SHAPE)


def test_linear_transpose_hint():
    with pytest.raises(WeightsError, match=r"'fc1\.weight' expected \(3, 144\), found \(144, 3\); looks transposed: pass Layout\(linear='in_out'\)"):
        load_weights(canonical(fc1__weight=PARAMS["fc1.weight"].T), SPEC, SHAPE)


def test_bias_layouts_are_reshaped_silently():
    src = canonical(conv1__bias=PARAMS["conv1.bias"].reshape(1, 4, 1, 1), fc1__bias=PARAMS["fc1.bias"][:, None])
    assert_same(load_weights(src, SPEC, SHAPE))


def test_strict_false_ignores_extras_but_not_missing():
    src = canonical(optimizer_step=np.array(3.0))
    assert_same(load_weights(src, SPEC, SHAPE, strict=False))
    with pytest.raises(WeightsError, match="unmatched.*'optimizer_step'"):
        load_weights(src, SPEC, SHAPE)
    src.pop("bn1.running_mean")
    with pytest.raises(WeightsError, match=r"^the weights do not fit the spec: 1 missing .*'bn1\.running_mean'") as e:
        load_weights(src, SPEC, SHAPE, strict=False)
    assert "optimizer_step" not in str(e.value)


def test_non_float_entries_are_named():
    src = canonical(fc1__bias=np.array([1, 2, 3]), bn1__weight=np.array(["a", "b", "c", "d"]))
    with pytest.raises(WeightsError, match=r"2 not floating point: 'bn1\.weight' \(dtype <U1\), 'fc1\.bias' \(dtype int64\)"):
        load_weights(src, SPEC, SHAPE)
    with pytest.raises(WeightsError, match=r"'fc1\.bias' \(not an array\)"):
        load_weights(canonical(fc1__bias=[[1.0], [2.0, 3.0]]), SPEC, SHAPE)


def test_dropout_mask_may_be_bool():
    spec = Sequential([Linear("fc", 3, 2), Dropout("drop", 0.5)])
    params = init_params(spec, (4, 3))
    got = load_weights({**params, "drop.mask": params["drop.mask"].astype(bool)}, spec, (4, 3))
    assert_same(got, params)


def test_convert_runs_before_the_shape_check():
    seen = []

    def from_hwio(name, a):
        seen.append(name)
        return a.transpose(3, 2, 0, 1) if name == "conv1.weight" else a

    src = {USER[n]: a for n, a in canonical(conv1__weight=PARAMS["conv1.weight"].transpose(2, 3, 1, 0)).items()}
    assert_same(load_weights(src, SPEC, SHAPE, mapping=TO_CANONICAL, convert=from_hwio))
    assert sorted(seen) == sorted(PARAMS)  # called with canonical names, once each

    def broken(name, a):
        raise ValueError("axes don't match array")

    with pytest.raises(WeightsError, match=r"8 convert failed: 'conv1\.weight' \(from 'c1_W'\) of shape \(3, 3, 1, 4\): axes don't match"):
        load_weights(src, SPEC, SHAPE, mapping=TO_CANONICAL, convert=broken)


def test_bad_source_type():
    with pytest.raises(WeightsError, match="must be a path or a dict"):
        load_weights(42, SPEC, SHAPE)


def test_layout_converts_a_tensorflow_style_file(tmp_path) -> None:
    """HWIO kernels, (in, out) dense weights and an HWC flatten: one Layout converts them all."""
    from harness.adapters.layouts import Layout, param_to_user
    from harness.spec import Conv2d, Flatten, Linear, ReLU, Sequential, init_params, walk

    spec = Sequential([Conv2d("conv1", 2, 4, 3), ReLU("r"), Flatten("flat"), ReLU("r2"), Linear("fc", 4 * 3 * 3, 5)])
    shape = (2, 2, 5, 5)
    params = init_params(spec, shape, seed=4)
    layout = Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
    layers = dict(walk(spec))
    user = {
        "conv1.weight": param_to_user(layers["conv1"], "weight", params["conv1.weight"], layout, (3, 3, 2, 4)),
        "conv1.bias": params["conv1.bias"].reshape(1, 4),
        "fc.weight": param_to_user(layers["fc"], "weight", params["fc.weight"], layout, (36, 5), (4, 3, 3)),
        "fc.bias": params["fc.bias"],
    }
    assert not np.array_equal(user["fc.weight"], params["fc.weight"].T)  # rows really reordered
    np.savez(tmp_path / "tf.npz", **user)
    loaded = load_weights(tmp_path / "tf.npz", spec, shape, layout=layout)
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    with pytest.raises(WeightsError, match="either layout= or convert="):
        load_weights(user, spec, shape, layout=layout, convert=lambda n, a: a)
