"""Weight files that lie: zip bombs, headers claiming terabytes, corrupted deflate streams.
Every one must end in a WeightsError naming the file and the entry, the limit and the likely
cause, without inflating or allocating what the file claims."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.adapters.weights import DEFAULT_MAX_BYTES, WeightsError, load_weights, max_weight_bytes, read_weight_file
from harness.spec import Linear, Sequential

GiB = 1 << 30


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version 1.0 .npy header claiming ``shape`` (whatever data follows it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def deflated_zeros(head: bytes, n_zeros: int, mib: int = 1 << 20) -> bytes:
    """Raw deflate of ``head`` and ``n_zeros`` zero bytes, built in milliseconds: after a full
    flush the compressor starts afresh, so every MiB of zeros compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    one = c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH)
    assert one == again and n_zeros % mib == 0
    return first + one * (n_zeros // mib) + c.flush()


def raw_zip(path: Path, entries: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of deflated entries ``(name, compressed bytes, declared size, crc)``, written by hand
    so the directory can declare whatever size (zipfile would inflate to compute it)."""
    body, directory = b"", b""
    for name, data, size, crc in entries:
        n = name.encode()
        local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 0, crc, len(data), size, len(n), 0)
        directory += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, 8, 0, 0, crc, len(data), size,
                                 len(n), 0, 0, 0, 0, 0, len(body)) + n
        body += local + n + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv("TRIGRAD_MAX_WEIGHT_BYTES", raising=False)
    assert max_weight_bytes() == DEFAULT_MAX_BYTES == GiB


# --------------------------------------------------------------------------- the limit


def refused_with_peak(path):
    """The WeightsError message reading ``path`` gives, and the peak Python allocation on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError) as e:
            read_weight_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(e.value), peak


def test_zip_bomb_is_refused_from_the_directory_before_inflating(tmp_path):
    head = npy_header((2 * GiB // 8,))
    data = deflated_zeros(head, 2 * GiB)
    assert len(data) < 3 << 20  # ~2 MB on disk, 2 GiB inflated
    path = raw_zip(tmp_path / "bomb.npz", [("conv1.weight.npy", data, len(head) + 2 * GiB, 0)])
    msg, peak = refused_with_peak(path)
    assert "bomb.npz' (entry 'conv1.weight')" in msg
    assert "inflates from 2.0 MiB to 2.0 GiB" in msg and "1.0 GiB limit on a weight file" in msg
    assert "TRIGRAD_MAX_WEIGHT_BYTES" in msg and "zip bomb" in msg
    assert peak < 64 << 20


def test_directory_that_understates_the_size_cannot_inflate_the_bomb(tmp_path):
    """The directory claims 1 KiB (with the right CRC for it); the header and the stream say
    2 GiB: the header is refused against the bytes the entry holds, and nothing is inflated."""
    head = npy_header((2 * GiB // 8,))
    crc = zlib.crc32((head + bytes(1024))[:1024])
    path = raw_zip(tmp_path / "liar.npz", [("w.npy", deflated_zeros(head, 2 * GiB), 1024, crc)])
    msg, peak = refused_with_peak(path)
    assert "liar.npz' (entry 'w'): the header claims shape (268435456,) float64 = 2.0 GiB" in msg
    assert "but only 896 bytes follow the header, more than the 1.0 GiB limit" in msg
    assert peak < 64 << 20


def test_stream_longer_than_its_header_and_directory_stops_at_the_declared_size(tmp_path):
    """Header and directory agree on 10 float64s; the stream goes on for 64 MiB of zeros:
    reading stops at the declared size, or fails its CRC if that is wrong, inflating nothing more."""
    head = npy_header((10,))
    data = deflated_zeros(head, 64 << 20)
    raw_zip(tmp_path / "long.npz", [("w.npy", data, len(head) + 80, zlib.crc32(head + bytes(80)))])
    raw_zip(tmp_path / "crc.npz", [("w.npy", data, len(head) + 80, 0)])
    tracemalloc.start()
    try:
        np.testing.assert_array_equal(read_weight_file(tmp_path / "long.npz")["w"], np.zeros(10))
        with pytest.raises(WeightsError, match=r"crc\.npz' \(entry 'w'\) as a NumPy file: BadZipFile: Bad CRC-32"):
            read_weight_file(tmp_path / "crc.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_npy_header_claiming_2_to_the_40_elements(tmp_path):
    (tmp_path / "w.npy").write_bytes(npy_header((1 << 40,)) + bytes(80))
    with pytest.raises(WeightsError) as e:
        read_weight_file(tmp_path / "w.npy")
    msg = str(e.value)
    assert "w.npy': the header claims shape (1099511627776,) float64 = 8.0 TiB" in msg
    assert "but only 80 bytes follow the header" in msg and "1.0 GiB limit" in msg and "corrupted header" in msg
    # inside a .npz, with room for it below the limit: said to be truncated, entry named
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.npy", npy_header((2,)) + bytes(16))
        z.writestr("big.npy", npy_header((1 << 20,)) + bytes(80))
    (tmp_path / "w.npz").write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match=r"could not read '.*w\.npz' \(entry 'big'\) as a NumPy file: the header "
                                           r"claims shape \(1048576,\) float64 = 8\.0 MiB but only 80 bytes follow "
                                           r"the header: the file is corrupted or truncated"):
        read_weight_file(tmp_path / "w.npz")


def test_limit_from_argument_or_environment(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "w.npz", a=np.zeros(1 << 20), b=np.zeros(1 << 20))  # 16 MiB of zeros, ~16 KB
    assert set(read_weight_file(tmp_path / "w.npz")) == {"a", "b"}
    with pytest.raises(WeightsError, match=r"entry 'b'\): the zip directory says it inflates from .* to 8\.0 MiB "
                                           r"\(16\.0 MiB with the entries before it\), more than the 10\.0 MiB limit"):
        read_weight_file(tmp_path / "w.npz", max_bytes="10MiB")
    monkeypatch.setenv("TRIGRAD_MAX_WEIGHT_BYTES", "4M")
    with pytest.raises(WeightsError, match=r"entry 'a'\).*more than the 4\.0 MiB limit"):
        read_weight_file(tmp_path / "w.npz")
    assert set(read_weight_file(tmp_path / "w.npz", max_bytes=32 << 20)) == {"a", "b"}  # the argument wins
    monkeypatch.setenv("TRIGRAD_MAX_WEIGHT_BYTES", "lots")
    with pytest.raises(WeightsError, match=r"TRIGRAD_MAX_WEIGHT_BYTES='lots': expected a positive number of bytes"):
        read_weight_file(tmp_path / "w.npz")
    assert max_weight_bytes("2GiB") == 2 * GiB and max_weight_bytes(123) == 123 and max_weight_bytes("1 kb") == 1024


def test_a_folder_shares_one_limit(tmp_path):
    (tmp_path / "w").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "w" / f"{name}.npy", np.ones(1 << 17))  # 1 MiB each
    with pytest.raises(WeightsError, match=r"b\.npy': the header claims .* = 1\.0 MiB \(2\.0 MiB with the entries "
                                           r"before it\), more than the 1\.5 MiB limit"):
        read_weight_file(tmp_path / "w", max_bytes=3 << 19)


def test_load_weights_passes_the_limit_on(tmp_path):
    spec = Sequential([Linear("fc", 4, 2)])
    np.savez(tmp_path / "w.npz", **{"fc.weight": np.ones((2, 4)), "fc.bias": np.ones(2)})
    assert set(load_weights(tmp_path / "w.npz", spec, (1, 4))) == {"fc.weight", "fc.bias"}
    with pytest.raises(WeightsError, match="more than the 100 bytes limit"):
        load_weights(tmp_path / "w.npz", spec, (1, 4), max_bytes=100)


# --------------------------------------------------------------------------- corrupted files


def test_corrupted_deflate_stream_names_the_entry(tmp_path):
    raw_zip(tmp_path / "w.npz", [("conv1.weight.npy", b"\xff\xff\xff\xff", 200, 0)])  # invalid block type
    with pytest.raises(WeightsError, match=r"could not read '.*w\.npz' \(entry 'conv1\.weight'\) as a NumPy file: "
                                           r"error: Error -3 .*: the file is corrupted or truncated"):
        read_weight_file(tmp_path / "w.npz")


def test_compression_numpy_never_writes_is_refused(tmp_path):
    """zipfile inflates a whole bzip2/lzma chunk at once, unbounded: such entries are not read."""
    with zipfile.ZipFile(tmp_path / "w.npz", "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("a.npy", npy_header((2,)) + bytes(16))
    with pytest.raises(WeightsError, match=r"\(entry 'a'\): compression method bzip2; NumPy writes \.npz files "
                                           r"stored \(np\.savez\) or deflated \(np\.savez_compressed\) only"):
        read_weight_file(tmp_path / "w.npz")


def _corrupt(data: bytes, rnd: random.Random) -> bytes:
    """Flip bits, overwrite bytes or truncate: what a bad disk, download or copy does."""
    out = bytearray(data)
    how = rnd.choice(["flip", "byte", "truncate"])
    if how == "truncate":
        return bytes(out[:rnd.randrange(len(out))])
    for _ in range(rnd.randint(1, 4)):
        i = rnd.randrange(len(out))
        out[i] = out[i] ^ (1 << rnd.randrange(8)) if how == "flip" else rnd.randrange(256)
    return bytes(out)


@pytest.mark.parametrize("kind", ["npz-deflated", "npz-stored", "npy"])
def test_randomly_corrupted_files_raise_only_weights_error(kind, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"conv1.weight": rng.standard_normal((4, 1, 3, 3)), "conv1.bias": np.zeros(4),
              "fc.weight": rng.standard_normal((3, 16)).astype(np.float32)}
    buf = io.BytesIO()
    if kind == "npy":
        np.save(buf, arrays["conv1.weight"])
    else:
        (np.savez_compressed if kind == "npz-deflated" else np.savez)(buf, **arrays)
    good, rnd, seen = buf.getvalue(), random.Random(kind), {"read": 0, "refused": 0}
    path = tmp_path / ("w.npy" if kind == "npy" else "w.npz")
    for _ in range(300):
        path.write_bytes(_corrupt(good, rnd))
        try:
            read_weight_file(path)
            seen["read"] += 1  # a byte that did not matter (a timestamp, padding), or array data in a .npy
        except WeightsError as e:
            assert f"'{path}'" in str(e)
            seen["refused"] += 1
    assert seen["refused"] > 200, seen


def test_reader_matches_np_load_on_valid_files(tmp_path):
    """The bounded reader gives what np.load gives: byte order, Fortran order, 0-d, empty,
    bool masks, float16, and a stored and a deflated .npz."""
    arrays = {"f": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "big": np.arange(5, dtype=">f4"),
              "scalar": np.array(2.5), "empty": np.zeros((0, 3)), "mask": np.array([True, False]),
              "half": np.ones(3, np.float16)}
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "w.npz", **arrays)
        got = read_weight_file(tmp_path / "w.npz")
        with np.load(tmp_path / "w.npz") as ref:
            assert list(got) == list(ref.files)
            for name in ref.files:
                assert got[name].dtype == ref[name].dtype and got[name].shape == ref[name].shape
                assert got[name].flags.f_contiguous == ref[name].flags.f_contiguous
                np.testing.assert_array_equal(got[name], ref[name])
    np.save(tmp_path / "f.npy", arrays["f"])
    np.testing.assert_array_equal(read_weight_file(tmp_path / "f.npy")["f"], arrays["f"])
    (tmp_path / "short.npy").write_bytes(b"\x93NUMPY\x01")
    with pytest.raises(WeightsError, match="it ends inside the .npy magic string"):
        read_weight_file(tmp_path / "short.npy")
