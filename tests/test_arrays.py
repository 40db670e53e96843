"""harness.adapters.arrays: every array family in and out, copies not views, bit-exact round
trips, in-place writes, fingerprints, and every ArrayError message."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import scaled
from harness.adapters.arrays import (
    ArrayError,
    ArrayKind,
    fingerprint,
    from_float64,
    is_mutable,
    require_float,
    to_float64,
    write_into,
)
from harness.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
UINT = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}
FLOATS = [np.float16, np.float32, np.float64]


def bits(x: np.ndarray) -> bytes:
    """Exact bytes, so NaNs compare (and -0.0 differs from 0.0)."""
    return np.ascontiguousarray(x).tobytes()


def edge_values(dtype) -> np.ndarray:
    """-0.0, infinities, quiet and signalling NaNs with payloads, subnormals, extremes."""
    fi = np.finfo(dtype)
    u = UINT[np.dtype(dtype)]
    nbits = np.dtype(dtype).itemsize * 8
    exp_all = ((1 << (nbits - 1 - fi.nmant)) - 1) << fi.nmant
    nans = np.array(
        [exp_all | (1 << (fi.nmant - 1)), exp_all | 1, exp_all | (1 << (fi.nmant - 1)) | 5,
         (1 << (nbits - 1)) | exp_all | 3],  # quiet, signalling, quiet+payload, negative signalling
        dtype=u,
    ).view(dtype)
    vals = np.array(
        [0.0, -0.0, np.inf, -np.inf, fi.smallest_subnormal, -fi.smallest_subnormal,
         fi.smallest_normal, fi.max, fi.min, 1.0, -1.5], dtype=dtype,
    )
    return np.concatenate([vals, nans])


class OnlyArray:
    """A foreign array type exposing only ``__array__``."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class OnlyDLPack:
    """A foreign array type exposing only ``__dlpack__`` (wrapping a numpy array's)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


# --------------------------------------------------------------------------- families


def _jax_f64(values):
    with jax.enable_x64(True):
        return jnp.asarray(np.asarray(values, dtype=np.float64))


BASE = np.array([[1.5, -2.25, 0.0], [3.0, -0.0, 1e-3]])
FAMILY_CASES = [
    # id, builder, family, numpy dtype, framework dtype
    ("numpy-f16", lambda: BASE.astype(np.float16), "numpy", np.float16, None),
    ("numpy-f32", lambda: BASE.astype(np.float32), "numpy", np.float32, None),
    ("numpy-f64", lambda: BASE.copy(), "numpy", np.float64, None),
    ("torch-f32", lambda: torch.tensor(BASE, dtype=torch.float32), "torch", np.float32, "torch.float32"),
    ("torch-f64", lambda: torch.tensor(BASE, dtype=torch.float64), "torch", np.float64, "torch.float64"),
    ("torch-bf16", lambda: torch.tensor(BASE, dtype=torch.bfloat16), "torch", np.float32, "torch.bfloat16"),
    ("torch-grad", lambda: torch.tensor(BASE, dtype=torch.float32, requires_grad=True), "torch", np.float32, "torch.float32"),
    ("torch-param", lambda: torch.nn.Parameter(torch.tensor(BASE, dtype=torch.float32)), "torch", np.float32, "torch.float32"),
    ("jax-f32", lambda: jnp.asarray(BASE, dtype=jnp.float32), "jax", np.float32, "float32"),
    ("jax-f64-x64", lambda: _jax_f64(BASE), "jax", np.float64, "float64"),
    ("array-only", lambda: OnlyArray(BASE.astype(np.float32)), "array-like", np.float32, None),
    ("dlpack-only", lambda: OnlyDLPack(BASE.astype(np.float32)), "array-like", np.float32, None),
    ("list", lambda: BASE.tolist(), "list", np.float64, None),
    ("tuple", lambda: tuple(tuple(r) for r in BASE.tolist()), "list", np.float64, None),
]


@pytest.mark.parametrize("build, family, dtype, fdtype", [c[1:] for c in FAMILY_CASES], ids=[c[0] for c in FAMILY_CASES])
def test_every_family_reads_and_converts_back(build, family, dtype, fdtype):
    a = build()
    out, kind = to_float64(a, "x")
    assert out.dtype == np.float64 and out.shape == BASE.shape
    assert kind == ArrayKind(family, np.dtype(dtype), BASE.shape, kind.device, fdtype)
    expected = BASE.astype(np.float32).astype(np.float64) if dtype != np.float64 else BASE
    if dtype == np.float16 or fdtype == "torch.bfloat16":
        np.testing.assert_allclose(out, BASE, rtol=1e-2)
    else:
        assert bits(out) == bits(expected)

    back = from_float64(out, kind)
    if family == "torch":
        assert isinstance(back, torch.Tensor) and str(back.dtype) == fdtype
        assert str(back.device) == kind.device == "cpu" and not back.requires_grad
    elif family == "jax":
        assert isinstance(back, jax.Array) and str(back.dtype) == fdtype
        assert kind.device is not None and kind.device.startswith("cpu")
    elif family == "list":
        assert isinstance(back, list) and all(isinstance(v, float) for row in back for v in row)
    else:
        assert isinstance(back, np.ndarray) and back.dtype == dtype
    assert fingerprint(back) == fingerprint(a) or family in ("list", "array-like")
    if family == "list":
        assert back == [list(r) for r in (a if isinstance(a, list) else a)]


def test_jax_float64_rebuild_does_not_flip_global_x64():
    before = jax.config.jax_enable_x64
    out, kind = to_float64(_jax_f64([1.0, 2.0]), "x")
    back = from_float64(out, kind)
    assert back.dtype == jnp.float64 and jax.config.jax_enable_x64 == before
    assert np.asarray(back).tolist() == [1.0, 2.0]


def test_jax_bfloat16_round_trip():
    a = jnp.asarray([1.0, -2.5, 0.0078125], dtype=jnp.bfloat16)
    out, kind = to_float64(a, "x")
    assert out.tolist() == [1.0, -2.5, 0.0078125] and kind.framework_dtype == "bfloat16"
    assert fingerprint(from_float64(out, kind)) == fingerprint(a)
    require_float(kind, "x")  # an ml_dtypes float counts as floating


@pytest.mark.parametrize(
    "a, family, dtype",
    [
        (np.float32(2.5), "numpy", np.float32),
        (np.array(2.5), "numpy", np.float64),
        (2.5, "list", np.float64),
        (torch.tensor(2.5), "torch", np.float32),
        (jnp.float32(2.5), "jax", np.float32),
    ],
    ids=["numpy-scalar", "numpy-0d", "python-float", "torch-0d", "jax-0d"],
)
def test_zero_d(a, family, dtype):
    out, kind = to_float64(a, "x")
    assert out.shape == () and float(out) == 2.5 and kind.shape == () and kind.family == family
    assert kind.dtype == dtype
    back = from_float64(out, kind)
    assert float(np.asarray(back)) == 2.5
    if family == "list":
        assert type(back) is float


def test_integer_and_bool_inputs_convert_but_are_not_float():
    for a, dt in [(np.arange(3, dtype=np.int32), np.int32), ([1, 2], np.int64), (torch.tensor([True, False]), np.bool_)]:
        out, kind = to_float64(a, "x")
        assert out.dtype == np.float64 and kind.dtype == dt
        with pytest.raises(ArrayError, match=r"^p: expected a real floating-point array .*found dtype"):
            require_float(kind, "p")
    require_float(to_float64(np.zeros(2, np.float16), "x")[1], "p")
    require_float(to_float64(torch.zeros(2, dtype=torch.bfloat16), "x")[1], "p")


def test_int_round_trip_is_exact_and_refuses_fractions():
    out, kind = to_float64(np.array([-3, 7], dtype=np.int16), "x")
    back = from_float64(out, kind)
    assert back.dtype == np.int16 and back.tolist() == [-3, 7]
    with pytest.raises(ArrayError, match=r"^x: values not representable in dtype int16: .*found e\.g\. 0\.5"):
        from_float64(np.array([1.0, 0.5]), kind, "x")
    with pytest.raises(ArrayError, match="not representable in dtype int16"):
        from_float64(np.array([1.0, 1e9]), kind, "x")


# --------------------------------------------------------------------------- copies


def _underlying(case_id: str, a):
    """The memory the user's array lives in, to check the result does not share it."""
    if case_id.startswith("torch"):
        return a.detach().numpy() if a.dtype != torch.bfloat16 else None
    if case_id.startswith("jax"):
        return np.asarray(a)
    if case_id in ("array-only", "dlpack-only"):
        return a._a
    if case_id.startswith("numpy"):
        return a
    return None


@pytest.mark.parametrize("case", FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_result_is_a_copy_never_a_view(case):
    case_id, build = case[0], case[1]
    a = build()
    before = fingerprint(a)
    out, _ = to_float64(a, "x")
    mem = _underlying(case_id, a)
    if mem is not None:
        assert not np.shares_memory(out, mem)
    assert out.flags.writeable and out.flags.c_contiguous
    out[...] = 99.0
    assert fingerprint(a) == before


def test_float64_numpy_input_is_still_copied():
    a = np.arange(6.0).reshape(2, 3)[:, ::2]  # a non-contiguous view, already float64
    out, _ = to_float64(a, "x")
    assert not np.shares_memory(out, a) and out.tolist() == [[0.0, 2.0], [3.0, 5.0]]
    back = from_float64(out, ArrayKind("numpy", np.dtype(np.float64), (2, 2)))
    assert not np.shares_memory(back, out)


# --------------------------------------------------------------------------- exact round trips


def _shapes():
    return hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def float_arrays(draw, dtypes=FLOATS):
    """Either arbitrary bit patterns (every NaN payload, subnormal, signed zero) or values
    drawn by hypothesis' float strategy."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(_shapes())
    if draw(st.booleans()):
        # raw bits, a third of them forced into the NaN/inf exponent so payloads are common
        nbits, nmant = dtype.itemsize * 8, np.finfo(dtype).nmant
        special = ((1 << (nbits - 1 - nmant)) - 1) << nmant
        word = st.integers(0, (1 << nbits) - 1)
        elements = st.one_of(word, word, word.map(lambda w: w | special))
        return draw(hnp.arrays(UINT[dtype], shape, elements=elements)).view(dtype)
    return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_subnormal=True)))


@settings(max_examples=scaled(300))
@given(float_arrays())
def test_numpy_round_trip_is_bit_exact(a):
    out, kind = to_float64(a, "x")
    back = from_float64(out, kind)
    assert back.dtype == a.dtype and back.shape == a.shape and bits(back) == bits(a)
    # float64 values widened from a narrower dtype equal numpy's own widening (NaN aside)
    finite = ~np.isnan(a)
    assert np.array_equal(out[finite], a[finite].astype(np.float64))
    assert np.array_equal(np.isnan(out), ~finite)
    # and writing them back restores the original bits
    target = np.zeros_like(a)
    write_into(target, out, "x")
    assert bits(target) == bits(a) and fingerprint(target) == fingerprint(a)


@settings(max_examples=scaled(150))
@given(float_arrays())
def test_torch_round_trip_is_bit_exact(a):
    t = torch.from_numpy(a.copy()).requires_grad_(a.size > 0)
    out, kind = to_float64(t, "x")
    back = from_float64(out, kind)
    assert back.dtype == t.dtype and bits(back.numpy()) == bits(a)
    target = torch.zeros(a.shape, dtype=t.dtype)
    write_into(target, out, "x")
    assert bits(target.numpy()) == bits(a) and fingerprint(target) == fingerprint(t)


@settings(max_examples=scaled(100))
@given(hnp.arrays(np.uint16, _shapes()))
def test_torch_bfloat16_round_trip_is_exact_except_nan_payloads(u):
    t = torch.from_numpy(u.view(np.int16).copy()).view(torch.bfloat16)
    out, kind = to_float64(t, "x")
    back = from_float64(out, kind)
    assert back.dtype == torch.bfloat16
    nan = torch.isnan(t)
    assert torch.equal(back.view(torch.int16)[~nan], t.view(torch.int16)[~nan])
    assert torch.equal(torch.isnan(back), nan)


@settings(max_examples=scaled(60))
@given(float_arrays(dtypes=[np.float32, np.float64]))
def test_jax_round_trip_is_bit_exact(a):
    with jax.enable_x64(True):
        j = jnp.asarray(a)
    out, kind = to_float64(j, "x")
    back = from_float64(out, kind)
    assert back.dtype == a.dtype and bits(np.asarray(back)) == bits(a)


@pytest.mark.parametrize("dtype", FLOATS)
def test_edge_values_survive_explicitly(dtype):
    a = edge_values(dtype)
    out, kind = to_float64(a, "x")
    assert np.signbit(out[1]) and out[2] == np.inf and out[4] > 0 and np.isnan(out[-4:]).all()
    assert bits(from_float64(out, kind)) == bits(a)
    t = torch.from_numpy(a.copy())
    assert bits(from_float64(*to_float64(t, "x")).numpy()) == bits(a)


def test_no_numpy_warnings_on_nan_or_overflow_casts():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, kind = to_float64(edge_values(np.float32), "x")
        from_float64(np.array([1e300, np.nan]), ArrayKind("numpy", np.dtype(np.float16), (2,)))


# --------------------------------------------------------------------------- write_into


def test_write_into_numpy_in_place():
    a = np.zeros((2, 3), dtype=np.float32)
    ident = id(a)
    write_into(a, np.full((2, 3), 0.1), "p")
    assert id(a) == ident and a.dtype == np.float32 and np.all(a == np.float32(0.1))
    base = np.zeros((2, 4))
    view = base[:, ::2]
    write_into(view, np.ones((2, 2)), "p")  # a strided view writes through to its base
    assert base.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_write_into_torch_in_place(dtype):
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=dtype))
    ident, ptr = id(p), p.data_ptr()
    write_into(p, np.full((2, 3), 0.1), "p")
    assert id(p) == ident and p.data_ptr() == ptr and p.dtype == dtype and p.requires_grad
    assert torch.equal(p.detach(), torch.full((2, 3), 0.1, dtype=torch.float64).to(dtype))
    assert p.grad_fn is None  # nothing was recorded for autograd


def test_write_into_integer_targets_refuse_fractions():
    a = np.zeros(2, dtype=np.int64)
    write_into(a, np.array([3.0, -4.0]), "buf")
    assert a.tolist() == [3, -4]
    with pytest.raises(ArrayError, match=r"^buf: values not representable in dtype int64"):
        write_into(a, np.array([0.5, 1.0]), "buf")
    assert a.tolist() == [3, -4]


@pytest.mark.parametrize(
    "target, found",
    [
        (jnp.zeros(2), "a jax array"),
        ([0.0, 0.0], "a list"),
        ((0.0, 0.0), "a tuple"),
        (np.broadcast_to(np.zeros(1), (2,)), "a read-only numpy array"),
        (OnlyArray(np.zeros(2)), "OnlyArray"),
    ],
    ids=["jax", "list", "tuple", "readonly-numpy", "array-like"],
)
def test_write_into_refuses_immutable(target, found):
    assert not is_mutable(target)
    with pytest.raises(ArrayError, match=r"^p 'w': cannot write in place: expected a mutable") as info:
        write_into(target, np.ones(2), "p 'w'")
    assert found in str(info.value) and "must be replaced instead" in str(info.value)


def test_write_into_shape_mismatch():
    with pytest.raises(ArrayError, match=r"^p: shape mismatch: expected \(2, 3\), found \(3, 2\)"):
        write_into(np.zeros((2, 3)), np.zeros((3, 2)), "p")
    with pytest.raises(ArrayError, match=r"^p: shape mismatch: expected \(2,\), found \(\)"):
        write_into(torch.zeros(2), np.zeros(()), "p")


def test_write_into_inference_tensor_is_refused():
    with torch.inference_mode():
        t = torch.zeros(2)
    assert not is_mutable(t)
    with pytest.raises(ArrayError, match=r"^p: cannot write into torch tensor .*must be replaced instead"):
        write_into(t, np.ones(2), "p")


def test_is_mutable():
    assert is_mutable(np.zeros(2)) and is_mutable(torch.zeros(2, requires_grad=True))
    assert not is_mutable(np.float32(1)) and not is_mutable(jnp.zeros(2)) and not is_mutable([1.0])


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_equal_for_equal_bits_and_sensitive_to_one_bit():
    a = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    assert fingerprint(a) == fingerprint(a.copy()) == fingerprint(np.asfortranarray(a))
    flipped = a.copy()
    flipped.reshape(-1).view(np.uint32)[5] ^= 1  # the last mantissa bit
    assert fingerprint(flipped) != fingerprint(a)
    assert fingerprint(np.array([0.0])) != fingerprint(np.array([-0.0]))
    assert fingerprint(a) != fingerprint(a.reshape(4, 3))  # same bytes, other shape
    assert fingerprint(a) != fingerprint(a.view(np.int32))  # same bytes, other dtype
    assert fingerprint(a) != fingerprint(torch.from_numpy(a))  # same bits, other family


def test_fingerprint_every_family():
    t = torch.tensor([1.0, 2.0], dtype=torch.bfloat16, requires_grad=True)
    t2 = t.detach().clone()
    assert fingerprint(t) == fingerprint(t2)
    t2.view(torch.int16)[1] ^= 1
    assert fingerprint(t) != fingerprint(t2)
    j = jnp.asarray([1.0, 2.0], dtype=jnp.float32)
    assert fingerprint(j) == fingerprint(jnp.asarray([1.0, 2.0], dtype=jnp.float32))
    assert fingerprint(j) != fingerprint(jnp.asarray([1.0, np.nextafter(np.float32(2), np.float32(3))]))
    assert fingerprint([[1.0, 2.0]]) == fingerprint(([1.0, 2.0],)) != fingerprint([[1.0, 2.5]])
    assert fingerprint(OnlyDLPack(np.ones(2))) == fingerprint(OnlyArray(np.ones(2)))
    qnan, other_nan = np.array([0x7FC00000, 0x7FC00001], dtype=np.uint32).view(np.float32)
    assert fingerprint(np.array([qnan])) != fingerprint(np.array([other_nan]))


# --------------------------------------------------------------------------- errors


def test_array_error_is_a_spec_error():
    assert issubclass(ArrayError, SpecError)


class BadArray:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("device memory")


class GPUDLPack:
    def __dlpack__(self, **kwargs):
        raise BufferError("memory is on CUDA device 0")

    def __dlpack_device__(self):
        return (2, 0)


@pytest.mark.parametrize(
    "a, pattern",
    [
        ([[1.0, 2.0], [3.0]], r"^L: ragged nested list: expected equal lengths at every depth, found items at depth 1 have length 1 and length 2"),
        ([[1.0, [2.0]], [3.0, 4.0]], r"^L: ragged nested list: .*found items at depth 2 have a number and length 1"),
        (np.zeros(2, np.complex64), r"^L: unsupported dtype: expected a real floating-point array, found dtype complex64 \(likely cause: a complex"),
        (torch.zeros(2, dtype=torch.complex64), r"^L: unsupported dtype: expected a real floating-point array, found dtype torch\.complex64"),
        ([1.0, None], r"^L: unsupported dtype: expected a real floating-point array, found dtype object"),
        (np.array(["a", "b"]), r"^L: unsupported dtype: expected a real floating-point array, found dtype <U1 \(likely cause: strings"),
        (None, r"^L: expected an array \(numpy, torch, jax, cupy, .*found NoneType \(likely cause: the function forgot to return"),
        ({"a": 1}, r"^L: expected an array .*found dict"),
        ("abc", r"^L: expected an array .*found str"),
        (BadArray(), r"^L: test_arrays\.BadArray\.__array__ failed: expected a numpy array, found error device memory"),
        (GPUDLPack(), r"^L: cannot read test_arrays\.GPUDLPack through __dlpack__: expected CPU memory .*memory is on CUDA .*GPU memory"),
        (torch.zeros(2, device="meta"), r"^L: cannot read torch tensor \(dtype torch\.float32, device meta\): expected a dense tensor"),
    ],
    ids=["ragged", "ragged-deep", "complex", "torch-complex", "object", "string", "none", "dict", "str",
         "bad-array", "gpu-dlpack", "torch-meta"],
)
def test_to_float64_errors(a, pattern):
    with pytest.raises(ArrayError, match=pattern):
        to_float64(a, "L")


def test_fingerprint_refuses_object_arrays():
    with pytest.raises(ArrayError, match="expected a real floating-point array, found dtype object"):
        fingerprint(np.array([1, None], dtype=object))


def test_from_float64_shape_mismatch():
    kind = ArrayKind("numpy", np.dtype(np.float32), (2, 3))
    with pytest.raises(ArrayError, match=r"^layer 'c' output: shape mismatch: expected \(2, 3\), found \(6,\)"):
        from_float64(np.zeros(6), kind, "layer 'c' output")
    with pytest.raises(ArrayError, match=r"^array: shape mismatch"):
        from_float64(np.zeros(6), kind)


def test_from_float64_unknown_family():
    with pytest.raises(ArrayError, match=r"^x: unknown array family: expected one of .*found 'mxnet'"):
        from_float64(np.zeros(1), ArrayKind("mxnet", np.dtype(np.float32), (1,)), "x")


def test_jax_tracer_is_reported():
    def f(x):
        to_float64(x, "layer 'fc' output")
        return x

    with pytest.raises(ArrayError, match=r"^layer 'fc' output: cannot read jax value .*inside jax\.jit"):
        jax.jit(f)(jnp.ones(2))


# --------------------------------------------------------------------------- cupy (faked)


def test_cupy_family_with_a_fake_cupy(monkeypatch):
    """CuPy is absent here; a minimal stand-in checks detection and every code path."""
    cupy = types.ModuleType("cupy")
    entered = []

    class Device:
        def __init__(self, i):
            self.id = i

        def __enter__(self):
            entered.append(self.id)

        def __exit__(self, *exc):
            return False

    class ndarray:  # noqa: N801 - cupy's name
        def __init__(self, host):
            self._h = np.array(host)
            self.device = Device(1)

        dtype = property(lambda self: self._h.dtype)
        shape = property(lambda self: self._h.shape)

        def get(self):
            return self._h.copy()

        def __array__(self, *a, **k):  # cupy refuses implicit conversion; so must we avoid it
            raise TypeError("Implicit conversion to a NumPy array is not allowed")

        def __setitem__(self, key, value):
            self._h[key] = value._h

    cupy.ndarray, cupy.asarray = ndarray, ndarray
    cupy.cuda = types.SimpleNamespace(Device=Device)
    monkeypatch.setitem(sys.modules, "cupy", cupy)

    c = ndarray(np.array([1.0, 2.0], dtype=np.float32))
    out, kind = to_float64(c, "x")
    assert out.tolist() == [1.0, 2.0]
    assert kind == ArrayKind("cupy", np.dtype(np.float32), (2,), "cuda:1", "float32")
    back = from_float64(out * 2, kind)
    assert isinstance(back, ndarray) and back._h.tolist() == [2.0, 4.0] and back.dtype == np.float32
    assert is_mutable(c)
    write_into(c, np.array([5.0, 6.0]), "x")
    assert c._h.tolist() == [5.0, 6.0] and c.dtype == np.float32
    assert fingerprint(c) == fingerprint(ndarray(np.array([5.0, 6.0], dtype=np.float32)))
    assert entered == [1, 1]


# --------------------------------------------------------------------------- import weight


def test_import_does_not_pull_in_torch_or_jax():
    code = (
        "import sys, harness.adapters.arrays\n"
        "heavy = [m for m in ('torch', 'jax', 'jaxlib', 'cupy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_every_name_of_the_module_before_its_split_is_still_imported_from_it():
    """arrays.py became the façade of array_kind / array_cast / array_read / array_write:
    each name it defined (private helpers other modules import included) is still there,
    the same object as in the module that now holds it."""
    import harness.adapters.arrays as arrays
    from harness.adapters import array_cast, array_kind, array_read, array_write

    homes = {
        array_kind: ["ArrayError", "ArrayKind", "FAMILIES", "_TORCH_NUMPY_NATIVE", "_loaded_type", "_is_torch",
                     "_is_jax", "_is_cupy", "_type_name", "_brief", "_is_float_dtype", "_is_real_numeric",
                     "_check_real", "require_float", "is_float_dtype"],
        array_cast: ["_IEEE", "_nan_bits", "_cast", "_cast_for_user"],
        array_read: ["to_float64", "_read", "_ragged_detail", "NonFinite", "nonfinite", "fingerprint"],
        array_write: ["from_float64", "_import", "is_mutable", "write_into"],
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(arrays, name) is getattr(module, name), name
    assert sorted(arrays.__all__) == sorted(
        ["ArrayError", "ArrayKind", "fingerprint", "from_float64", "NonFinite", "is_float_dtype", "is_mutable",
         "nonfinite", "require_float", "to_float64", "write_into"])
