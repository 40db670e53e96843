"""Snapshots and old-vs-new checks: a handwritten conv refactored from loops to im2col passes
when the refactor is right and is pinpointed when it is not; a network snapshot names the
changed layer; files are refused when corrupted or tampered with; parameters restored."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import harness as tg
from harness.adapters.arrays import fingerprint
from harness.regress import check_equivalent, compare
from harness.snapshot import SnapshotError, load, paths, record

SPEC = tg.Conv2d("conv", 2, 3, 3, stride=2, padding=1)
SHAPE = (2, 2, 7, 6)


class LoopConv:
    """The first version: NCHW, OIHW, explicit loops over output positions."""

    def __init__(self, dtype=np.float64):
        rng = np.random.default_rng(0)
        self.W = (rng.standard_normal((3, 2, 3, 3)) / 3).astype(dtype)
        self.b = rng.standard_normal(3).astype(dtype)
        self.s, self.p = 2, 1

    def forward(self, x):
        self.x = x
        xp = np.pad(x, ((0, 0), (0, 0), (self.p, self.p), (self.p, self.p)))
        n, _, h, w = xp.shape
        k = self.W.shape[2]
        oh, ow = (h - k) // self.s + 1, (w - k) // self.s + 1
        out = np.zeros((n, self.W.shape[0], oh, ow), x.dtype)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, :, i * self.s:i * self.s + k, j * self.s:j * self.s + k]
                out[:, :, i, j] = np.tensordot(patch, self.W, axes=([1, 2, 3], [1, 2, 3]))
        self.xp = xp
        return out + self.b[None, :, None, None]

    def backward(self, dout):
        k, s = self.W.shape[2], self.s
        dxp, self.dW = np.zeros_like(self.xp), np.zeros_like(self.W)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                patch = self.xp[:, :, i * s:i * s + k, j * s:j * s + k]
                self.dW += np.tensordot(dout[:, :, i, j], patch, axes=([0], [0]))
                dxp[:, :, i * s:i * s + k, j * s:j * s + k] += np.tensordot(dout[:, :, i, j], self.W, axes=([1], [0]))
        self.db = dout.sum(axis=(0, 2, 3))
        p = self.p
        return dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]


class Im2colConv(LoopConv):
    """The refactor: im2col / col2im. ``overwrite``: the classic col2im slip of assigning
    overlapping patches with = instead of adding them."""

    def __init__(self, dtype=np.float64, overwrite=False):
        super().__init__(dtype)
        self.overwrite = overwrite

    def _cols(self, xp, oh, ow):
        k, s = self.W.shape[2], self.s
        return np.stack([xp[:, :, i * s:i * s + k, j * s:j * s + k].reshape(xp.shape[0], -1)
                         for i in range(oh) for j in range(ow)], axis=1)  # (N, oh*ow, C*k*k)

    def forward(self, x):
        p, k, s = self.p, self.W.shape[2], self.s
        self.xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.oh, self.ow = (self.xp.shape[2] - k) // s + 1, (self.xp.shape[3] - k) // s + 1
        self.cols = self._cols(self.xp, self.oh, self.ow)
        out = self.cols @ self.W.reshape(self.W.shape[0], -1).T + self.b  # (N, oh*ow, O)
        return out.transpose(0, 2, 1).reshape(x.shape[0], -1, self.oh, self.ow)

    def backward(self, dout):
        n, o = dout.shape[:2]
        k, s, p = self.W.shape[2], self.s, self.p
        d = dout.reshape(n, o, -1).transpose(0, 2, 1)  # (N, oh*ow, O)
        self.dW = np.einsum("npo,npc->oc", d, self.cols).reshape(self.W.shape)
        self.db = d.sum(axis=(0, 1))
        dcols = d @ self.W.reshape(o, -1)  # (N, oh*ow, C*k*k)
        dxp = np.zeros_like(self.xp)
        for idx in range(self.oh * self.ow):
            i, j = divmod(idx, self.ow)
            patch = dcols[:, idx].reshape(n, -1, k, k)
            if self.overwrite:
                dxp[:, :, i * s:i * s + k, j * s:j * s + k] = patch
            else:
                dxp[:, :, i * s:i * s + k, j * s:j * s + k] += patch
        return dxp[:, :, p:dxp.shape[2] - p, p:dxp.shape[3] - p]


def wrap(layer):
    return tg.wrap_layer(layer, SPEC)


@pytest.fixture()
def saved(tmp_path):
    snap = record(wrap(LoopConv()), input_shape=SHAPE, seed=3)
    snap.save(tmp_path / "conv")
    return tmp_path / "conv"


def test_the_first_version_passes_its_own_check() -> None:
    assert tg.check_layer(LoopConv(), SPEC, input_shape=SHAPE).ok


def test_a_correct_refactor_is_the_same(saved) -> None:
    result = compare(wrap(Im2colConv()), saved)
    assert result.ok, str(result)
    assert [t.name for t in result.entry("conv").tensors] == ["output", "input", "weight", "bias"]
    assert all(t.change < 1e-13 for t in result.entry("conv").tensors)


def test_a_buggy_refactor_is_pinpointed(saved) -> None:
    result = compare(wrap(Im2colConv(overwrite=True)), saved)
    assert not result.ok
    entry = result.entry("conv")
    assert entry.status == "broken"
    status = {t.name: t.status for t in entry.tensors}
    assert status == {"output": "same", "input": "broken", "weight": "same", "bias": "same"}, str(result)
    t = next(t for t in entry.tensors if t.name == "input")
    assert t.old_error < 1e-13 and t.new_error > 0.01 and 0 < t.changed < t.size
    # stride 2, kernel 3, padding 1: windows overlap on the odd rows and columns of the input
    assert t.worst_index[2] % 2 == 1 or t.worst_index[3] % 2 == 1
    text = str(result)
    assert "1 of 1 entries differ: conv (broken)" in text and f"{t.changed}/{t.size} differ" in text


def test_toward_the_reference_is_fixed_and_old_vs_new(saved) -> None:
    bad = record(wrap(Im2colConv(overwrite=True)), input_shape=SHAPE, seed=3)
    fixed = compare(wrap(Im2colConv()), bad)
    assert {t.name: t.status for t in fixed.entry("conv").tensors}["input"] == "fixed"
    result = check_equivalent(LoopConv(), Im2colConv(overwrite=True), SPEC, input_shape=SHAPE)
    assert result.title == "old vs new" and {t.name: t.status for t in result.entry("conv").tensors}["input"] == "broken"
    assert check_equivalent(LoopConv(), Im2colConv(), SPEC, input_shape=SHAPE).ok


def test_float32_port_is_held_to_float32_precision(saved) -> None:
    assert compare(wrap(Im2colConv(dtype=np.float32)), saved).ok


def test_compare_restores_the_users_parameters(saved) -> None:
    layer = Im2colConv()
    layer.W *= 2  # its own weights differ from the snapshot's: they are set for the compare, then put back
    before = {k: fingerprint(v) for k, v in vars(layer).items() if isinstance(v, np.ndarray)}
    assert compare(wrap(layer), saved).ok
    after = {k: fingerprint(v) for k, v in vars(layer).items() if k in before}
    assert after["W"] == before["W"] and after["b"] == before["b"]


def test_user_code_that_raises_is_an_error_entry(saved) -> None:
    class Raises(Im2colConv):
        def backward(self, dout):
            raise IndexError("off by one")

    entry = compare(wrap(Raises()), saved).entry("conv")
    assert entry.status == "error" and "IndexError: off by one at" in entry.message and "test_snapshot.py" in entry.message


def test_network_snapshot_names_the_changed_layer(tmp_path) -> None:
    from harness.examples import build

    correct = build()
    record(correct.net, x=correct.x, seed=1).save(tmp_path / "lenet")
    result = compare(build("fc1-bias-averaged").net, tmp_path / "lenet")
    statuses = {e.name: e.status for e in result.entries}
    assert statuses.pop("fc1") == "broken" and statuses.pop("(network)") == "broken"
    assert set(statuses.values()) == {"same"}, str(result)
    assert compare(build().net, tmp_path / "lenet").ok


# --------------------------------------------------------------------------- files


def test_files_manifest_and_atomic_write(saved) -> None:
    npz, manifest_path = paths(saved)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "trigrad.snapshot/2" and manifest["seed"] == 3 and manifest["dtype"] == "float64"
    assert set(manifest["versions"]) == {"trigrad", "numpy", "torch", "jax"}
    assert manifest["spec"]["kind"] == "Conv2d" and all(len(a["sha256"]) == 64 for a in manifest["arrays"].values())
    assert not [f for f in os.listdir(saved.parent) if f.startswith(".")]  # no temporary files left
    snap = load(saved)
    assert set(snap.entries) == {"conv"} and snap.entries["conv"].arrays["x"].shape == SHAPE


def _rewrite_npz(path, change) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_tampered_array_is_refused(saved) -> None:
    npz, _ = paths(saved)

    def nudge(arrays):
        arrays["entries/conv/grad/weight"][0, 0, 0, 0] += 1e-12

    _rewrite_npz(npz, nudge)
    with pytest.raises(SnapshotError, match=r"array 'entries/conv/grad/weight' does not match the sha256 .*tampered"):
        load(saved)


@pytest.mark.parametrize("damage,message", [
    (lambda npz, js: npz.unlink(), r"no snapshot file .*conv\.npz"),
    (lambda npz, js: js.write_text("{not json"), r"not a valid JSON manifest"),
    (lambda npz, js: js.write_text(json.dumps({"format": "other/9"})), r"format 'other/9', expected 'trigrad.snapshot/2'"),
    (lambda npz, js: npz.write_bytes(npz.read_bytes()[:100]), r"unreadable without pickle or corrupted"),
    (lambda npz, js: _rewrite_npz(npz, lambda a: a.pop("params/bias")), r"missing \['params/bias'\]"),
    (lambda npz, js: _rewrite_npz(npz, lambda a: a.update(extra=np.zeros(2))), r"unexpected \['extra'\]"),
    (lambda npz, js: _rewrite_npz(npz, lambda a: a.update({"params/bias": np.array([object()])})),
     r"unreadable without pickle"),
])
def test_damaged_files_are_refused(saved, damage, message) -> None:
    npz, js = paths(saved)
    damage(npz, js)
    with pytest.raises(SnapshotError, match=message):
        load(saved)


def test_a_snapshot_of_another_spec_is_refused(saved) -> None:
    other = tg.Conv2d("conv", 2, 3, 3, stride=1, padding=1)
    with pytest.raises(SnapshotError, match="recorded for another spec"):
        compare(tg.wrap_layer(Im2colConv(), other), saved)


def test_record_needs_wrapped_code_and_a_point() -> None:
    with pytest.raises(TypeError, match="wrap the code first"):
        record(LoopConv())
    with pytest.raises(TypeError, match="pass the spec layer it implements"):
        check_equivalent(LoopConv(), Im2colConv())


def test_safetensors_container(tmp_path) -> None:
    pytest.importorskip("safetensors")
    data, manifest = record(wrap(LoopConv()), input_shape=SHAPE, seed=3).save(tmp_path / "conv", container="safetensors")
    assert data.name == "conv.safetensors" and json.loads(manifest.read_text())["container"] == "safetensors"
    assert compare(wrap(Im2colConv()), tmp_path / "conv").ok
    assert not compare(wrap(Im2colConv(overwrite=True)), tmp_path / "conv").ok
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(data), framework="np") as f:
        metadata = f.metadata()  # the embedded manifest: kept, so only the array differs
    arrays = load_file(str(data))
    arrays["entries/conv/x"] = arrays["entries/conv/x"] * 1.0000001
    save_file(arrays, str(data), metadata=metadata)
    with pytest.raises(SnapshotError, match="entries/conv/x' does not match the sha256"):
        load(tmp_path / "conv")
    data.write_bytes(b"garbage")
    with pytest.raises(SnapshotError, match="unreadable without pickle or corrupted"):
        load(tmp_path / "conv")
    with pytest.raises(ValueError, match="container must be one of"):
        record(wrap(LoopConv()), input_shape=SHAPE).save(tmp_path / "x", container="pickle")


# --------------------------------------------------------------------------- review findings, pinned


class BiasIntoNorm:
    """Linear whose bias feeds a training-mode batch norm: its true gradient is zero, so any
    version returns rounding noise for it. ``reverse``: the refactor sums rows in another order."""

    def __init__(self, reverse=False):
        rng = np.random.default_rng(0)
        self.W, self.b, self.reverse = rng.standard_normal((3, 4)), rng.standard_normal(3), reverse

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        self.dW = dy.T @ self.x
        self.db = dy[::-1].sum(0) if self.reverse else dy.sum(0)
        return dy @ self.W


class BatchNorm:
    def __init__(self):
        self.gamma, self.beta = np.ones(3) * 1.5, np.zeros(3) + 0.1
        self.rm, self.rv = np.zeros(3), np.ones(3)

    def forward(self, x):
        self.mu, self.var = x.mean(0), x.var(0)
        self.xh = (x - self.mu) / np.sqrt(self.var + 1e-5)
        return self.gamma * self.xh + self.beta

    def backward(self, dy):
        n = dy.shape[0]
        self.dgamma, self.dbeta = (dy * self.xh).sum(0), dy.sum(0)
        dxh = dy * self.gamma
        return (n * dxh - dxh.sum(0) - self.xh * (dxh * self.xh).sum(0)) / (n * np.sqrt(self.var + 1e-5))


def _norm_net(reverse: bool):
    spec = tg.Sequential([tg.Linear("fc", 4, 3), tg.BatchNorm1d("bn", 3)])
    fc = tg.wrap_layer(BiasIntoNorm(reverse), spec.layers[0], params={"weight": "W", "bias": "b"})
    bn = tg.wrap_layer(BatchNorm(), spec.layers[1], params={"weight": "gamma", "bias": "beta", "running_mean": "rm",
                                                          "running_var": "rv"}, grads={"weight": "dgamma", "bias": "dbeta"})
    return tg.wrap_network({"fc": fc, "bn": bn}, spec)


@pytest.mark.parametrize("seed", range(3))
def test_a_truly_zero_gradient_is_judged_against_the_entry_floor(seed) -> None:
    snap = record(_norm_net(False), input_shape=(8, 4), seed=seed)
    assert np.abs(snap.entries["fc"].arrays["ref/grad/bias"]).max() < 1e-13  # zero up to rounding
    result = compare(_norm_net(True), snap)
    assert result.ok, str(result)


def test_tol_scale_is_applied_once(saved) -> None:
    snap = load(saved)
    base = snap.entries["conv"].tolerances["bias"]
    layer = Im2colConv()

    class Nudged(Im2colConv):
        def backward(self, dout):
            dx = super().backward(dout)
            self.db = self.db * (1 + 5 * base)  # 5 tolerances off
            return dx

    assert not compare(wrap(Nudged()), saved).ok
    assert compare(wrap(Nudged()), saved, tol_scale=10).ok
    assert not compare(wrap(Nudged()), saved, tol_scale=2).ok  # 2x, not 4x
    del layer


def test_spec_less_layers_compare_across_wrapper_names() -> None:
    class Scale:
        def __init__(self):
            self.w = np.array([1.5, -2.0, 0.5])

        def forward(self, x):
            self.x = x
            return x * self.w

        def backward(self, dy):
            self.dw = (dy * self.x).sum(axis=0)
            return dy * self.w

    old = tg.wrap_layer(Scale(), None, params={"w": "w"}, grads={"w": "dw"}, name="loops")
    new = tg.wrap_layer(Scale(), None, params={"w": "w"}, grads={"w": "dw"}, name="vectorised")
    assert check_equivalent(old, new, (4, 3)).ok


def test_a_snapshot_of_buggy_code_says_same_means_unchanged_not_correct(tmp_path) -> None:
    buggy = record(wrap(Im2colConv(overwrite=True)), input_shape=SHAPE, seed=3)
    result = compare(wrap(Im2colConv(overwrite=True)), buggy)
    assert result.ok  # a snapshot pins behaviour: the same bug is no change
    assert result.wrong_when_recorded == ["conv.input"]
    assert "note: conv.input already disagreed with the reference when the snapshot was taken" in str(result)
    assert compare(wrap(LoopConv()), record(wrap(LoopConv()), input_shape=SHAPE, seed=3)).wrong_when_recorded == []
