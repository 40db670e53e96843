"""Issue 15, single layers: ``infer_layer(code, x)`` finds the spec, layout and parameter
places the existing tests write by hand (tests/zoo/inferable.py: the zoo's layers with
parameters and tests/realcode's objects and function pairs), never claims a wrong one
``exact``, leaves the user's code untouched, states ambiguity, and the check run on what it
inferred gives the verdict the hand-written wrapping gives."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import harness as tg
from conftest import slow
from harness.adapters.arrays import fingerprint
from harness.adapters.refs import AdapterError
from harness.inference.found import arrays_of
from harness.inference.layer import infer_layer
from realcode import objects
from zoo import layers as Z
from zoo.inferable import ENTRIES, Entry, spec_equal


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(entry: Entry, code, seed: int = 0):
    target, x, kw = entry.make(seed, code)
    return infer_layer(target, x, **kw), x


def _right(li, entry: Entry) -> bool:
    return spec_equal(li.spec, entry.spec) and li.layout == entry.layout


CORRECT = [pytest.param(e, id=e.name) for e in ENTRIES]
BUGGY = [pytest.param(e, b, id=f"{e.name}-{b[0][:40]}") for e in ENTRIES for b in e.bugs]


# --------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("entry", CORRECT)
def test_inferred_as_the_existing_tests_wrap_it_and_the_check_passes(entry: Entry) -> None:
    li, x = _run(entry, entry.code)
    assert li.status == "exact", li.summary()
    assert _right(li, entry), (li.summary(), entry.spec, entry.layout)
    report = tg.check_layer(li.wrap(), x=x)
    assert [e.verdict for e in report.layers] == ["pass"], str(report)


def test_acceptance_figures_at_three_seeds() -> None:
    """At least 90% of the corpus exact and right at every seed; never a wrong ``exact``."""
    for seed in (1, 2, 3):
        outcomes = []
        for entry in ENTRIES:
            li, _ = _run(entry, entry.code, seed)
            outcomes.append((li.status, _right(li, entry)))
        wrong_exact = [e.name for e, (s, r) in zip(ENTRIES, outcomes) if s == "exact" and not r]
        assert not wrong_exact, (seed, wrong_exact)
        assert sum(s == "exact" and r for s, r in outcomes) >= 0.9 * len(ENTRIES), (seed, outcomes)


@pytest.mark.parametrize("entry,bug", BUGGY)
def test_a_buggy_version_is_never_explained_by_a_wrong_exact_kind(entry: Entry, bug) -> None:
    _, code, verdict = bug
    li, _ = _run(entry, code)
    assert li.status != "exact" or _right(li, entry), li.summary()
    if verdict == "forward":  # the bug makes the forward fit nothing (or another kind): never "exact"
        assert li.status in ("unmatched", "ambiguous"), li.summary()
        assert li.why, li.summary()


@slow
@pytest.mark.parametrize("entry,bug", BUGGY)
def test_the_check_on_the_inferred_wrapping_finds_the_bug(entry: Entry, bug) -> None:
    _, code, verdict = bug
    li, x = _run(entry, code)
    report = tg.check_layer(li.wrap(), x=x)
    assert [e.verdict for e in report.layers] == [verdict], str(report)


@pytest.mark.parametrize(
    "cls", [Z.DenseForwardNoBias, Z.DenseConsistentWrongForward], ids=["no bias", "consistent wrong forward"]
)
def test_a_forward_matching_nothing_is_unmatched_and_the_check_says_forward(cls) -> None:
    x = np.random.default_rng(0).normal(size=(5, 6))
    li = infer_layer(cls(), x)
    assert li.status == "unmatched"
    assert "closest" in li.why[-1] and "Linear" in li.why[-1]
    assert li.spec == tg.Linear("fc", 6, 4) and li.layout == tg.Layout(linear="in_out")  # the closest, kept
    assert tg.check_layer(li.wrap(), x=x).layer("fc").verdict == "forward"


# --------------------------------------------------------------------------- the user's code untouched


def _prints(obj) -> dict:
    return {k: fingerprint(v) for k, v in arrays_of(obj).items()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Z.Dense(),
        lambda: Z.DenseSGD(),
        lambda: Z.BatchNorm(),
        lambda: objects.BatchNormRows(5),  # running statistics updated by every forward
    ],
    ids=["dense", "sgd step in backward", "batchnorm", "running stats"],
)
def test_the_users_object_and_input_are_not_changed(make) -> None:
    obj = make()
    shape = (
        (4, 3, 3, 2) if isinstance(obj, Z.BatchNorm) else (4, 5) if isinstance(obj, objects.BatchNormRows) else (5, 6)
    )
    x = np.random.default_rng(0).normal(size=shape)
    before, x_before = _prints(obj), fingerprint(x)
    kw = {"sgd": (None, 1e-3), "backward_args": (1e-3,)} if isinstance(obj, Z.DenseSGD) else {}
    infer_layer(obj, x, **kw)
    assert _prints(obj) == before and fingerprint(x) == x_before


class _Raises(Z.Dense):
    def forward(self, x):
        self.W += 1.0  # changes its parameter, then fails
        raise RuntimeError("boom")


def test_a_forward_that_raises_leaves_the_object_untouched_and_says_so() -> None:
    obj = _Raises()
    before = _prints(obj)
    with pytest.raises(AdapterError, match=r"raised RuntimeError: boom .*shape \(5, 6\)"):
        infer_layer(obj, np.zeros((5, 6)))
    assert _prints(obj) == before


def test_a_function_pairs_arrays_are_not_changed() -> None:
    w, b = np.random.default_rng(0).normal(size=(5, 3)), np.zeros(3)
    prints = fingerprint(w), fingerprint(b)
    li = infer_layer((Z.affine_forward, Z.affine_backward), np.ones((4, 5)), params=[w, b])
    assert (fingerprint(w), fingerprint(b)) == prints
    assert li.best.params == {"weight": "0", "bias": "1"}
    assert list(li.wrap_kwargs["params"]) == ["weight", "bias"]


# --------------------------------------------------------------------------- clear errors


class _NoForward:
    W = np.ones((3, 3))

    def run(self, x):
        return x @ self.W


@pytest.mark.parametrize(
    "target,x,match",
    [
        (_NoForward(), np.ones((2, 3)), r"_NoForward has no method forward\(\).*forward=/backward="),
        (Z.Dense(), np.float64(3.0), r"x has shape \(\) \(0-D\); expected the example input as the code takes it"),
        (Z.Dense(), np.ones((1, 2, 3, 4, 6)), r"5-D"),
        (Z.Dense(), "not an array", r"x must be an array"),
        (
            (Z.affine_forward, Z.affine_backward, Z.affine_backward),
            np.ones((4, 5)),
            r"function pair is \(forward, backward\)",
        ),
        (Z.Dense(), np.ones((5, 7)), r"the code raised ValueError.*shape \(5, 7\)"),
    ],
    ids=["no forward", "0-D x", "5-D x", "x not an array", "three functions", "x of the wrong width"],
)
def test_bad_input_gets_a_clear_error(target, x, match) -> None:
    with pytest.raises(AdapterError, match=match):
        infer_layer(target, x)


class _Unknown:
    def __init__(self):
        self.A, self.B = np.ones((2, 3, 4)), np.ones((5, 5, 5))

    def forward(self, x):
        return x * self.A.sum()

    def backward(self, dy):
        return dy


def test_parameters_no_kind_has_are_refused_by_name() -> None:
    with pytest.raises(AdapterError, match=r"no layer kind fits what _Unknown holds .*'A': \(2, 3, 4\)"):
        infer_layer(_Unknown(), np.ones((2, 3)))


# --------------------------------------------------------------------------- ambiguity stated, or decided by the backward


class _SymmetricDense(Z.Dense):
    def __init__(self, backward_ok=True):
        super().__init__(5, 5)
        self.W = self.W + self.W.T  # symmetric: W and W.T give the same forward
        self.ok = backward_ok

    def backward(self, dy):
        dx = super().backward(dy)
        if not self.ok:
            self.dW = self.dW / len(dy)
        return dx


def test_a_symmetric_square_weight_the_backward_decides_its_orientation() -> None:
    x = np.random.default_rng(0).normal(size=(4, 5))
    li = infer_layer(_SymmetricDense(), x)
    assert li.status == "exact" and li.layout == tg.Layout(linear="in_out")
    assert any("the backward matches only" in w for w in li.why), li.why
    assert tg.check_layer(li.wrap(), x=x).layer("fc").verdict == "pass"


def test_a_symmetric_square_weight_with_a_wrong_backward_is_ambiguous() -> None:
    x = np.random.default_rng(0).normal(size=(4, 5))
    li = infer_layer(_SymmetricDense(backward_ok=False), x)
    assert li.status == "ambiguous", li.summary()
    assert {f.layout.linear for f in [li.best, *li.ambiguous]} == {"in_out", "out_in"}
    assert "does not tell them apart" in li.summary()
    assert tg.check_layer(li.wrap(), x=x).layer("fc").verdict == "backward"


class _Conv1x1:
    """A 1x1 convolution, C_in == C_out: every kernel order whose O and I axes agree reads it alike."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.normal(size=(3, 3, 1, 1)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        return np.einsum("nchw,oc->nohw", x, self.W[:, :, 0, 0]) + self.b[None, :, None, None]

    def backward(self, dy):
        self.dW = np.einsum("nohw,nchw->oc", dy, self.x)[:, :, None, None]
        self.db = dy.sum(axis=(0, 2, 3))
        return np.einsum("nohw,oc->nchw", dy, self.W[:, :, 0, 0])


def test_a_1x1_kernel_is_read_in_the_canonical_order_without_doubt() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    li = infer_layer(_Conv1x1(), x)
    assert li.status == "exact", li.summary()
    assert li.spec == tg.Conv2d("conv", 3, 3, 1) and li.layout == tg.Layout()
    assert tg.check_layer(li.wrap(), x=x).layer("conv").verdict == "pass"


class LayerNormScratch(objects.LayerNorm):
    """Named a layer norm; its forward normalises over the batch (a batch norm's statistics)."""

    def forward(self, x):
        self.x = x
        mu, var = x.mean(axis=0), x.var(axis=0)
        self.xhat = (x - mu) / np.sqrt(var + self.eps)
        return self.gamma * self.xhat + self.beta


def test_a_forward_fitting_another_kind_than_the_codes_name_is_ambiguous_and_checked_as_named() -> None:
    x = np.random.default_rng(0).normal(size=(4, 6))
    li = infer_layer(LayerNormScratch(6), x)
    assert li.status == "ambiguous"
    assert isinstance(li.spec, tg.LayerNorm) and isinstance(li.ambiguous[0].spec, tg.BatchNorm1d)
    assert "named 'LayerNormScratch' (LayerNorm)" in li.summary() and "BatchNorm1d" in li.summary()
    assert tg.check_layer(li.wrap(), x=x).layer("ln").verdict == "forward"


# --------------------------------------------------------------------------- what inference finds by watching


def test_gradients_under_unusual_names_are_found_by_watching_the_backward() -> None:
    x = np.random.default_rng(0).normal(size=(4, 5))
    li = infer_layer(objects.DenseGradsGW(5, 3), x)
    assert li.exact and li.grads == {"weight": "gW", "bias": "gb"}
    assert tg.check_layer(li.wrap(), x=x).layer("fc").verdict == "pass"


def test_parameters_built_by_the_first_forward_need_no_declaration() -> None:
    from realcode import keras_like

    x = np.random.default_rng(0).normal(size=(4, 5))
    li = infer_layer(keras_like.LazyDense(3), x)
    assert li.exact and li.wrap_kwargs.get("lazy") is True
    assert any("lazy=True" in w for w in li.why)
    assert tg.check_layer(li.wrap(), x=x).layer("fc").verdict == "pass"


def test_an_sgd_step_not_declared_is_named_by_the_check() -> None:
    x = np.random.default_rng(0).normal(size=(4, 5))
    li = infer_layer(objects.DenseSGD(5, 3, lr=0.05), x)
    assert li.exact and li.spec == tg.Linear("fc", 5, 3)
    assert any("sgd=(None, lr)" in w for w in li.why), li.why
    with pytest.raises(AdapterError, match=r"declare sgd=\(None, lr\)"):
        tg.check_layer(li.wrap(), x=x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps", [1e-3, 1e-5, 1e-6, 1e-8, 2e-5])
def test_eps_is_read_from_the_values(eps, dtype) -> None:
    """float32 hides 1e-5 vs 1e-6 on unit-variance data: a small input tells them apart; an
    eps no code writes by default (2e-5) is fitted."""
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype(dtype)
    li = infer_layer(Z.BatchNorm(eps=eps, dtype=dtype), x)
    assert li.exact and li.spec == tg.BatchNorm2d("bn", 3, eps=eps), li.summary()
    assert ("fitted" in li.best.note) == (eps == 2e-5)


def test_a_nhwc_batch_norm_is_read_per_channel_in_its_layout() -> None:
    class BNNHWC(Z.BatchNorm):
        def forward(self, x):
            return super().forward(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)

    x = np.random.default_rng(0).normal(size=(4, 3, 2, 3))  # (N, H, W, C) with C = 3
    li = infer_layer(BNNHWC(), x)
    assert li.exact and li.spec == tg.BatchNorm2d("bn", 3) and li.layout == tg.Layout(data="NHWC"), li.summary()


def test_the_name_given_names_the_layer_and_every_candidate() -> None:
    li = infer_layer(Z.Dense(), np.ones((5, 6)), name="head")
    assert li.name == "head" and li.spec.name == "head"
    assert all(f.spec.name == "head" for f in li.candidates)


def test_a_copy_of_the_users_object_is_what_runs() -> None:
    obj = Z.Conv()
    keep = copy.deepcopy(obj)
    infer_layer(obj, np.random.default_rng(0).normal(size=(2, 2, 7, 6)))
    assert not hasattr(obj, "x") and not hasattr(obj, "dW")  # no forward or backward ran on it
    assert _prints(obj) == _prints(keep)


# --------------------------------------------------------------------------- parameter-free layers (harness.inference.free)


def _free_rows() -> list:
    from zoo import ties as T

    rows = [(n, f, s, kw, sh) for n, f, s, kw, sh in Z.CORRECT if isinstance(f, type) and not kw.get("lazy")]
    rows = [r for r in rows if not r[2].local_params(r[4])]
    return [pytest.param(*r, id=r[0]) for r in rows + [tuple(c[:5]) for c in T.CORRECT]]


@pytest.mark.parametrize("name,factory,spec,kw,shape", _free_rows())
def test_a_parameter_free_layer_is_inferred_through_free_and_checks(name, factory, spec, kw, shape) -> None:
    x = np.random.default_rng(0).normal(size=shape)
    li = infer_layer(factory(), x, **{k: v for k, v in kw.items() if k != "layout"})
    assert li.status == "exact" and spec_equal(li.spec, spec), li.summary()
    assert li.layout == kw.get("layout", tg.Layout())
    assert [e.verdict for e in tg.check_layer(li.wrap(), x=x).layers] == ["pass"]


class MaxPool(Z.AvgPool):
    """Named a max pool; its forward averages (copied from the average pool)."""


def test_a_pool_named_max_that_averages_is_ambiguous_and_checked_as_a_max_pool() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6))
    li = infer_layer(MaxPool(), x)
    assert li.status == "ambiguous" and isinstance(li.spec, tg.MaxPool2d), li.summary()
    assert isinstance(li.ambiguous[0].spec, tg.AvgPool2d)
    assert "named 'MaxPool' (MaxPool2d)" in li.summary()
    assert tg.check_layer(li.wrap(), x=x).layers[0].verdict == "forward"


# --------------------------------------------------------------------------- hyperparameters from the output's shape, then values


class _TorchForwardConv:
    """A conv whose forward is computed by torch from the kernel stored in ``layout``'s
    order, NCHW or NHWC data (its backward is not needed to infer the forward)."""

    def __init__(self, spec: tg.Conv2d, layout: tg.Layout):
        from harness.adapters.layouts import param_to_user

        rng = np.random.default_rng(0)
        w = rng.normal(size=(spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size))
        user = tuple(dict(zip("OIHW", w.shape))[c] for c in layout.kernel)
        self.kernel, self.bias = param_to_user(spec, "weight", w, layout, user), rng.normal(size=spec.out_channels)
        self.spec, self.layout = spec, layout

    def forward(self, x):
        import torch
        import torch.nn.functional as F

        from harness.adapters.layouts import param_from_user

        spec, layout = self.spec, self.layout
        w = param_from_user(
            spec, "weight", self.kernel, layout, (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel_size)
        )
        xc = x.transpose(0, 3, 1, 2) if layout.data == "NHWC" else x
        (t, b), (left, r) = spec.pads(xc.shape[2:])
        xp = torch.tensor(np.pad(xc, ((0, 0), (0, 0), (t, b), (left, r))))
        y = F.conv2d(xp, torch.tensor(w), torch.tensor(self.bias), spec.stride, 0, spec.dilation, spec.groups).numpy()
        return y.transpose(0, 2, 3, 1) if layout.data == "NHWC" else y

    def backward(self, dy):
        raise NotImplementedError


@pytest.mark.parametrize(
    "spec,layout,shape",
    [
        (tg.Conv2d("conv", 2, 4, 3, stride=2, dilation=2), tg.Layout(), (2, 2, 9, 9)),
        (tg.Conv2d("conv", 4, 4, 3, padding=1, groups=2), tg.Layout(), (2, 4, 6, 6)),
        (tg.Conv2d("conv", 4, 4, 3, padding=1, groups=4), tg.Layout(), (2, 4, 6, 6)),
        (tg.Conv2d("conv", 3, 5, 3, padding=1), tg.Layout(data="NHWC", kernel="OHWI"), (2, 6, 6, 3)),
        (tg.Conv2d("conv", 3, 3, (3, 2), stride=(1, 2)), tg.Layout(), (2, 3, 7, 8)),
        (tg.Conv2d("conv", 3, 3, 3), tg.Layout(kernel="IOHW"), (2, 3, 6, 6)),
        (tg.Conv2d("conv", 3, 3, 1, stride=2), tg.Layout(data="NHWC", kernel="HWIO"), (2, 4, 4, 3)),
        (tg.Conv2d("conv", 3, 4, 3, stride=2, padding="same"), tg.Layout(data="NHWC", kernel="HWIO"), (2, 6, 6, 3)),
    ],
    ids=["dilated", "groups 2", "depthwise", "NHWC OHWI", "3x2 kernel", "IOHW square", "1x1 stride 2", "same stride 2"],
)
def test_conv_hyperparameters_and_layout_are_inferred(spec, layout, shape) -> None:
    x = np.random.default_rng(1).normal(size=shape)
    li = infer_layer(_TorchForwardConv(spec, layout), x)
    assert li.status == "exact" and spec_equal(li.spec, spec) and li.layout == layout, li.summary()
    assert any("backward was not compared" in w for w in li.why)  # said, not hidden


class _LayerNorm4d:
    """Layer norm over (C, H, W) of NCHW maps, parameters (C, H, W)."""

    def __init__(self, shape):
        rng = np.random.default_rng(0)
        self.gamma, self.beta = rng.uniform(0.5, 1.5, shape), rng.normal(size=shape)

    def forward(self, x):
        self.x, ax = x, (1, 2, 3)
        self.xh = (x - x.mean(axis=ax, keepdims=True)) / np.sqrt(x.var(axis=ax, keepdims=True) + 1e-5)
        return self.gamma * self.xh + self.beta

    def backward(self, dy):
        ax = (1, 2, 3)
        self.dgamma, self.dbeta = (dy * self.xh).sum(0), dy.sum(0)
        g = dy * self.gamma
        inv = 1 / np.sqrt(self.x.var(axis=ax, keepdims=True) + 1e-5)
        return (g - g.mean(axis=ax, keepdims=True) - self.xh * (g * self.xh).mean(axis=ax, keepdims=True)) * inv


def test_a_layer_norm_over_feature_maps_is_inferred_and_checks() -> None:
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    li = infer_layer(_LayerNorm4d((3, 4, 5)), x)
    assert li.exact and li.spec == tg.LayerNorm("ln", (3, 4, 5)), li.summary()
    assert tg.check_layer(li.wrap(), x=x).layer("ln").verdict == "pass"


# --------------------------------------------------------------------------- the backward's word against the forward's


class DenseOutIn:
    """W stored (out, in) as PyTorch does; the forward forgets the transpose (W is square, so
    the shapes hide it); the backward is the true one for y = x W^T + b."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W, self.b = rng.normal(size=(5, 5)), rng.normal(size=5)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b  # bug: x @ W.T meant

    def backward(self, dy):
        self.dW, self.db = dy.T @ self.x, dy.sum(axis=0)
        return dy @ self.W


class ConvFlipsInForward(Z.Conv):
    """The forward applies the kernel rotated by 180 degrees (a true convolution); the
    backward is the cross-correlation's."""

    def forward(self, x):
        w = self.W
        self.W = w[:, :, ::-1, ::-1]
        try:
            return super().forward(x)
        finally:
            self.W = w


@pytest.mark.parametrize(
    "make,shape,intended",
    [
        (DenseOutIn, (4, 5), (tg.Linear("fc", 5, 5), tg.Layout())),
        (lambda: ConvFlipsInForward(stride=1, pad=0), (2, 2, 6, 5), (tg.Conv2d("conv", 2, 3, 3), tg.Layout())),
    ],
    ids=["square dense forgets the transpose", "conv flips its kernel in the forward"],
)
def test_another_reading_that_fits_the_forward_is_not_trusted_over_the_backward(make, shape, intended) -> None:
    """The bug makes another layout fit the forward exactly; the backward is the intended
    reading's true gradient: ambiguous, the backward's reading kept, the check says forward."""
    x = np.random.default_rng(0).normal(size=shape)
    li = infer_layer(make(), x)
    assert li.status == "ambiguous", li.summary()
    assert (li.spec, li.layout) == intended, li.summary()
    assert "but the backward computes the gradient of" in li.summary()
    assert [e.verdict for e in tg.check_layer(li.wrap(), x=x).layers] == ["forward"]


def test_a_backward_forgetting_the_fused_activation_is_a_backward_bug() -> None:
    from realcode import keras_like

    x = np.random.default_rng(0).normal(size=(3, 6))
    li = infer_layer(keras_like.DenseIgnoresActivation(4, 6, activation="relu"), x)
    assert li.exact and [type(s).__name__ for s in li.spec.layers] == ["Linear", "ReLU"], li.summary()
    assert tg.check_layer(li.wrap(), x=x).layers[0].verdict == "backward"
