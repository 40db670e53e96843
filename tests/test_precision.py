"""Issue 18: low-precision code judged by what its precision can do. Below float64 the torch
reference runs at the code's own dtype and device, and each tensor may be off by a stated
multiple of torch's own error there (harness.precision). Layers are written as people write
them: torch tensors of dtype bfloat16 / float16 / float32 held as attributes ``W``, ``b``,
computed with torch ops; numpy float16 arrays computed with numpy."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness import fd, precision
from harness import spec as S
from harness.adapters.array_kind import ArrayKind
from harness.compare import tolerance
from harness.judge import _judge
from harness.results import FDSummary, LayerResult

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
LINEAR, CONV, NORM = S.Linear("fc", 16, 8), S.Conv2d("conv", 3, 4, 3, padding=1), S.LayerNorm("ln", 16)
SHAPES = {"linear": (4, 16), "conv": (2, 3, 6, 6), "layernorm": (4, 16), "softmax": (4, 10)}


def _randn(shape, seed, scale, dtype):
    """float64 draws rounded to ``dtype``: the weights a low-precision model holds."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


class Linear:
    """``x @ W.T + b`` in the parameters' dtype; ``bug``: "bias twice" (forward), "accumulate"
    (the weight gradient summed example by example into a tensor of that dtype)."""

    def __init__(self, fin=16, fout=8, dtype=BF16, seed=0, bug=None):
        self.W, self.b, self.bug = (
            _randn((fout, fin), seed, fin**-0.5, dtype),
            _randn((fout,), seed + 1, 0.1, dtype),
            bug,
        )

    def forward(self, x):
        self.x = x
        y = x @ self.W.T + self.b
        return y + self.b if self.bug == "bias twice" else y

    def backward(self, dy):
        if self.bug == "accumulate":
            acc = torch.zeros_like(self.W)
            for i in range(dy.shape[0]):
                acc = acc + dy[i : i + 1].T @ self.x[i : i + 1]
            self.dW = acc
        else:
            self.dW = dy.T @ self.x
        self.db = dy.sum(0)
        return dy @ self.W


class Conv:
    """``F.conv2d`` forward; the backward by im2col (``F.unfold`` / ``F.fold``) in the dtype."""

    def __init__(self, cin=3, cout=4, k=3, dtype=BF16, seed=0):
        self.W, self.b = (
            _randn((cout, cin, k, k), seed, (cin * k * k) ** -0.5, dtype),
            _randn((cout,), seed + 1, 0.1, dtype),
        )
        self.k = k

    def forward(self, x):
        self.x = x
        return F.conv2d(x, self.W, self.b, padding=1)

    def backward(self, dy):
        n, f = dy.shape[:2]
        cols, d = F.unfold(self.x, self.k, padding=1), dy.reshape(n, f, -1)
        self.dW = (d @ cols.transpose(1, 2)).sum(0).reshape(self.W.shape)
        self.db = d.sum((0, 2))
        return F.fold(self.W.reshape(f, -1).T @ d, self.x.shape[2:], self.k, padding=1)


class LayerNorm:
    """The statistics computed in the dtype, the CS231n-style backward."""

    def __init__(self, d=16, dtype=BF16, seed=0):
        self.gamma, self.beta = 1 + _randn((d,), seed, 0.1, torch.float64), _randn((d,), seed + 1, 0.1, dtype)
        self.gamma = self.gamma.to(dtype)

    def forward(self, x):
        xc = x - x.mean(-1, keepdim=True)
        self.inv = 1 / torch.sqrt((xc * xc).mean(-1, keepdim=True) + 1e-5)
        self.xh = xc * self.inv
        return self.xh * self.gamma + self.beta

    def backward(self, dy):
        d, dxh = dy.shape[-1], dy * self.gamma
        self.dgamma, self.dbeta = (dy * self.xh).sum(0), dy.sum(0)
        return self.inv / d * (d * dxh - dxh.sum(-1, keepdim=True) - self.xh * (dxh * self.xh).sum(-1, keepdim=True))


class Softmax:
    def forward(self, x):
        e = torch.exp(x - x.max(-1, keepdim=True).values)
        self.y = e / e.sum(-1, keepdim=True)
        return self.y

    def backward(self, dy):
        return self.y * (dy - (dy * self.y).sum(-1, keepdim=True))


class NumpyLinear:
    """A numpy float16 dense layer, ``x @ W.T + b``."""

    def __init__(self, fin=16, fout=8, seed=0):
        r = np.random.default_rng(seed)
        self.W = (r.standard_normal((fout, fin)) / fin**0.5).astype(np.float16)
        self.b = (r.standard_normal(fout) * 0.1).astype(np.float16)

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        self.dW, self.db = dy.T @ self.x, dy.sum(0)
        return dy @ self.W


def _layer(kind, dtype, seed):
    if kind == "numpy linear":
        return NumpyLinear(seed=seed), LINEAR, {}
    made = {
        "linear": (lambda: Linear(dtype=dtype, seed=seed), LINEAR),
        "conv": (lambda: Conv(dtype=dtype, seed=seed), CONV),
        "layernorm": (lambda: LayerNorm(dtype=dtype, seed=seed), NORM),
        "softmax": (lambda: Softmax(), S.Softmax("sm", -1)),
    }[kind]
    return made[0](), made[1], ({"dtype": dtype} if kind == "softmax" else {})


CASES = [(k, d) for d in (BF16, FP16) for k in ("linear", "conv", "layernorm", "softmax")] + [("numpy linear", FP16)]


def _check(kind, dtype, seed):
    obj, spec, kw = _layer(kind, dtype, seed)
    shape = SHAPES.get(kind, (4, 16))
    return harness.check_layer(obj, spec, input_shape=shape, seed=seed, **kw).layers[0]


def _passes(kind, dtype, seeds):
    name = "float16" if dtype == FP16 else "bfloat16"
    for seed in seeds:
        entry = _check(kind, dtype, seed)
        assert entry.verdict == "pass", (
            kind,
            dtype,
            seed,
            entry.message,
            [(t.name, t.error_torch, t.tolerance) for t in entry.tensors],
        )
        assert f"note: {name} tolerances are 8x torch's own {name} error at this point" in entry.message


@pytest.mark.parametrize("kind,dtype", CASES)
def test_correct_low_precision_layers_pass(kind, dtype) -> None:
    _passes(kind, dtype, range(2))


@pytest.mark.slow
@pytest.mark.parametrize("kind,dtype", CASES)
def test_correct_low_precision_layers_pass_at_20_seeds(kind, dtype) -> None:
    _passes(kind, dtype, range(20))


def test_bfloat16_is_judged_at_bfloat16_not_float32() -> None:
    # bfloat16 values are recorded as float32: float32's table (~2e-5) failed every correct layer
    entry = _check("linear", BF16, 0)
    assert entry.dtype == "bfloat16" and entry.verdict == "pass"
    for t in entry.tensors:
        assert tolerance(np.float32, 16) < t.tolerance < tolerance("bfloat16", 16)
        assert t.tolerance >= precision.MIN_ULPS * 2.0**-7  # the eps floor


def _accumulating(dtype, n, seed):
    obj = Linear(dtype=dtype, seed=seed, bug="accumulate")
    return harness.check_layer(obj, LINEAR, input_shape=(n, 16), seed=seed).layers[0]


@pytest.mark.parametrize("dtype", [FP16, BF16])
def test_weight_gradient_accumulated_in_low_precision_is_a_backward_bug(dtype) -> None:
    # summed example by example into a float16 tensor: ~14x torch's own error over 1024 examples
    entry = _accumulating(dtype, 1024, 0)
    assert entry.verdict == "backward", entry.message
    assert [t.name for t in entry.tensors if not t.ok] == ["weight"]


@pytest.mark.slow
def test_float16_accumulation_is_a_backward_bug_at_20_seeds() -> None:
    assert {_accumulating(FP16, 1024, s).verdict for s in range(20)} == {"backward"}


def test_float32_accumulation_stays_within_the_table() -> None:
    # the twin in float32 is not caught, by construction: summing N products one by one costs
    # ~eps * sqrt(N / 2) relative, and float32 keeps its table, 64 * eps * sqrt(N), as a floor
    entry = _accumulating(FP32, 1024, 0)
    assert entry.verdict == "pass"
    weight = next(t for t in entry.tensors if t.name == "weight")
    assert weight.tolerance == pytest.approx(tolerance(np.float32, 1024))


def test_bfloat16_bias_added_twice_is_a_forward_bug() -> None:
    entry = harness.check_layer(Linear(dtype=BF16, bug="bias twice"), LINEAR, input_shape=(4, 16)).layers[0]
    assert entry.verdict == "forward"
    assert "bfloat16 tolerances are 8x" in entry.message


def test_float64_is_not_measured(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("no reference run at float64")

    monkeypatch.setattr(precision, "_errors", refuse)
    entry = _check("linear", torch.float64, 0)
    assert entry.verdict == "pass" and "tolerances" not in entry.message
    assert [t.tolerance for t in entry.tensors] == [tolerance(np.float64, k) for k in (16, 8, 4, 4)]


def test_float32_keeps_the_table_when_torch_does_better() -> None:
    entry = _check("linear", FP32, 0)
    assert entry.verdict == "pass" and entry.message == ""  # no note: the measurement raised nothing
    assert [t.tolerance for t in entry.tensors] == [tolerance(np.float32, k) for k in (16, 8, 4, 4)]


def test_a_reference_that_cannot_run_at_the_dtype_falls_back_to_the_table(monkeypatch) -> None:
    import reference_models.torch_bridge as bridge

    def no_module(spec, params):
        raise NotImplementedError("no module for this kind")

    monkeypatch.setattr(bridge, "to_module", no_module)
    entry = _check("linear", BF16, 0)
    assert entry.verdict == "pass"  # bfloat16's own table (eps 2**-7), not float32's
    assert "note: bfloat16 tolerances from the table: torch could not run the reference in bfloat16" in entry.message
    assert "NotImplementedError: no module for this kind" in entry.message
    assert [t.tolerance for t in entry.tensors] == [tolerance("bfloat16", k) for k in (16, 8, 4, 4)]


def test_a_reference_overflowing_at_the_dtype_falls_back_to_the_table(monkeypatch) -> None:
    monkeypatch.setattr(precision, "_errors", lambda *a: {"output": float("inf"), "input": 1e-4})
    entry = _check("linear", FP16, 0)
    assert "note: float16 tolerances from the table: torch's own float16 output not finite" in entry.message
    assert entry.tensors[0].tolerance == tolerance(np.float16, 16)


def test_note_names_unmeasured_tensors_and_the_device() -> None:
    m = precision.Measured("bfloat16", {"output": 1e-3}, "cuda:0")
    said = precision.note(m, {"output": 16, "weight": 4}, 1.0)
    assert "bfloat16 tolerances are 8x torch's own bfloat16 error at this point on cuda:0" in said
    assert "the table's for weight" in said
    assert precision.note(None, {"output": 16}, 1.0) == ""


def test_arrays_torch_cannot_follow_are_measured_on_the_cpu() -> None:
    kind = ArrayKind("cupy", np.dtype(np.float16), (), "cuda:0", "float16")
    assert precision._device(kind) == (
        "cpu",
        "note: the cupy arrays are on cuda:0; torch's own error was measured on the CPU",
    )
    assert precision._device(ArrayKind("torch", np.dtype(np.float16), (), "cuda:1", "torch.float16")) == ("cuda:1", "")
    assert precision.precision_of(ArrayKind("torch", np.dtype(np.float32), (), "cpu", "torch.bfloat16")) == "bfloat16"
    assert precision.precision_of(ArrayKind("jax", np.dtype(np.float32), (), None, "bfloat16")) == "bfloat16"


def test_round_to_bfloat16_matches_torch() -> None:
    v = np.random.default_rng(0).standard_normal(10_000) * np.logspace(-3, 3, 10_000)
    expected = torch.tensor(v.astype(np.float32)).to(BF16).double().numpy()
    assert np.array_equal(precision.round_to(v, "bfloat16"), expected)
    assert np.array_equal(precision.round_to(v, "float16"), v.astype(np.float16).astype(np.float64))


def _judged(measured, consistent):
    row = ("input", "backward", np.ones(3), np.ones(3), np.ones(3), 1, 0.0)
    result = LayerResult(name="l", kind="ReLU", verdict="error", dtype="float32")
    fds = {"input": FDSummary(probes=3, kinks=0, worst=0.3, consistent=consistent)}
    _judge(result, [row], fds, np.dtype(np.float32), 1.0, batch=1, measured=measured)
    return result


def test_fd_too_noisy_in_low_precision_does_not_stop_a_pass() -> None:
    result = _judged(precision.Measured("bfloat16", {"input": 1e-3}), None)
    assert result.verdict == "pass"
    assert "finite differences were too noisy in bfloat16 to witness this (input)" in result.message
    # float32: as before, no witness left
    assert _judged(precision.Measured("float32", {"input": 1e-7}), None).verdict == "inconclusive"
    assert _judged(precision.Measured("bfloat16", {"input": 1e-3}), False).verdict == "inconclusive"


def test_fd_probe_within_tolerance_of_both_is_no_evidence_in_low_precision() -> None:
    probe = fd.Probe(value=1.003, error=0.0, h=0.1)
    judged = [(probe, 1.0, 1.0, 1.006)]  # the backward 1.0, the references 1.006: FD's 0.1 sees neither
    assert fd.summary(judged, "bfloat16").consistent is None
    assert fd.summary(judged, np.float16).consistent is None
    assert fd.summary(judged, np.float32).consistent is True  # float32: agreement, as before
    assert fd.step_for(np.ones(4), np.ones(4), "bfloat16") == fd.STEP[fd.BF16]


def test_bfloat16_max_pool_at_ties_routes_the_rounded_upstream_gradient() -> None:
    class MaxPool:
        def forward(self, x):
            self.shape = x.shape
            y, self.idx = F.max_pool2d(x, 2, return_indices=True)
            return y

        def backward(self, dy):
            return F.max_unpool2d(dy, self.idx, 2, output_size=self.shape[2:])

    entry = harness.check_layer(MaxPool(), S.MaxPool2d("pool", 2), input_shape=(2, 3, 6, 6), dtype=BF16).layers[0]
    assert entry.verdict == "pass", entry.diagnosis


def test_bfloat16_network_and_its_own_pass_are_judged_at_bfloat16() -> None:
    layers = {"fc1": Linear(16, 12, dtype=BF16), "fc2": Linear(12, 4, dtype=BF16, seed=1)}
    spec = S.Sequential([S.Linear("fc1", 16, 12), S.Linear("fc2", 12, 4)])

    def forward(x):
        return layers["fc2"].forward(layers["fc1"].forward(x))

    def backward(g):
        return layers["fc1"].backward(layers["fc2"].backward(g))

    report = harness.check_network(layers, spec, input_shape=(4, 16), forward=forward, backward=backward)
    assert [(e.name, e.verdict) for e in report.layers] == [("fc1", "pass"), ("fc2", "pass"), ("(network)", "pass")]
    assert all("bfloat16 tolerances are 8x" in e.message for e in report.layers)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_measured_on_their_device() -> None:
    obj = Linear(dtype=BF16)
    obj.W, obj.b = obj.W.cuda(), obj.b.cuda()
    entry = harness.check_layer(obj, LINEAR, input_shape=(4, 16)).layers[0]
    assert entry.verdict == "pass", entry.message
    assert "error at this point on cuda:0" in entry.message
