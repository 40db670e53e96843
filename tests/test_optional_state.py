"""Optional state and where it lives (issue 13, contract decision 2), on layers written the
way public from-scratch code is: CS231n's batchnorm and dropout function pairs, an object
batch norm that keeps no running statistics, an NHWC dropout that draws its own mask, a conv
whose bias is ``(F, 1)`` (im2col with fancy indexing), a per-activation batch norm whose
``gamma`` is ``(1, D)``. Correct versions pass (alone and in a network), buggy ones are found
on the right side, every new error names the layer, what was expected and found, and the
option; the user's arrays are bit-identical afterwards."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_functions, wrap_layer
from harness.adapters.layouts import Layout, LayoutError
from harness.adapters.network import wrap_network
from harness.check import check_layer, check_network
from realcode.keras_like import Sequential as Net  # a network that runs its layers in order, as from-scratch code does

NOT_CHECKED = "note: running_mean and running_var are not kept by the code (none found), so not checked"


def fingerprints(*arrays):
    return [fingerprint(a) for a in arrays]


# --------------------------------------------------------------------------- CS231n batch norm (layers.py)


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    out, cache = None, None
    if mode == "train":
        sample_mean = x.mean(axis=0)
        sample_var = x.var(axis=0)
        std = np.sqrt(sample_var + eps)
        x_hat = (x - sample_mean) / std
        out = gamma * x_hat + beta
        cache = (x_hat, gamma, std)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    elif mode == "test":
        std = np.sqrt(running_var + eps)
        x_hat = (x - running_mean) / std
        out = gamma * x_hat + beta
        cache = (x_hat, gamma, std)
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
    bn_param["running_mean"] = running_mean  # CS231n stores them back (and creates them on the first call)
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward_alt(dout, cache):
    x_hat, gamma, std = cache
    N = dout.shape[0]
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dx_hat = dout * gamma
    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / (N * std)
    return dx, dgamma, dbeta


def batchnorm_backward_no_mean_term(dout, cache):
    x_hat, gamma, std = cache
    N = dout.shape[0]
    dx_hat = dout * gamma
    dx = (N * dx_hat - x_hat * (dx_hat * x_hat).sum(axis=0)) / (N * std)  # forgot - sum(dx_hat)
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)


def batchnorm_test_backward(dout, cache):
    x_hat, gamma, std = cache
    return dout * gamma / std, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)


def batchnorm_test_backward_as_train(dout, cache):
    x_hat, gamma, std = cache
    dx_hat, n = dout * gamma, dout.shape[0]  # the training-mode formula, in eval mode
    return (n * dx_hat - dx_hat.sum(0) - x_hat * (dx_hat * x_hat).sum(0)) / (n * std), np.sum(dout * x_hat, 0), dout.sum(0)


def _bn_arrays(d=5, seed=0):
    rng = np.random.default_rng(seed)
    return 1 + 0.2 * rng.standard_normal(d), 0.2 * rng.standard_normal(d)


def test_cs231n_batchnorm_pair_without_running_stats_passes_with_a_note() -> None:
    gamma, beta = _bn_arrays()
    bn_param = {"mode": "train"}  # CS231n creates the running statistics lazily, in here
    before = fingerprints(gamma, beta)
    pair = wrap_functions(batchnorm_forward, batchnorm_backward_alt, S.BatchNorm1d("bn", 5), [gamma, beta],
                          args=(bn_param,))
    report = check_layer(pair, input_shape=(6, 5), seed=3)
    assert report.layers[0].verdict == "pass", str(report)
    assert NOT_CHECKED in report.layers[0].message
    assert bn_param == {"mode": "train"}, "the user's bn_param must not gain running statistics"
    assert fingerprints(gamma, beta) == before


def test_cs231n_batchnorm_pair_with_running_stats_in_bn_param_reads_them_and_leaves_them_alone() -> None:
    gamma, beta = _bn_arrays()
    rm, rv = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5)
    bn_param = {"mode": "train", "momentum": 0.9, "running_mean": rm, "running_var": rv}
    before = fingerprints(gamma, beta, rm, rv)
    pair = wrap_functions(batchnorm_forward, batchnorm_backward_alt, S.BatchNorm1d("bn", 5), [gamma, beta],
                          args=(bn_param,))
    np.testing.assert_array_equal(pair.get_params()["running_mean"], rm)
    report = check_layer(pair, input_shape=(6, 5), seed=4)
    assert report.layers[0].verdict == "pass" and "not checked" not in report.layers[0].message, str(report)
    assert bn_param["running_mean"] is rm and bn_param["running_var"] is rv
    assert fingerprints(gamma, beta, rm, rv) == before


def test_cs231n_batchnorm_pair_in_test_mode_uses_the_running_stats_of_bn_param() -> None:
    gamma, beta = _bn_arrays()
    bn_param = {"mode": "test", "running_mean": np.linspace(-1, 1, 5), "running_var": np.linspace(0.5, 2, 5)}
    pair = wrap_functions(batchnorm_forward, batchnorm_test_backward, S.BatchNorm1d("bn", 5, training=False),
                          [gamma, beta], args=(bn_param,))
    kept = {k: fingerprint(v) for k, v in bn_param.items() if k != "mode"}
    report = check_layer(pair, input_shape=(4, 5), seed=1)
    assert report.layers[0].verdict == "pass", str(report)
    assert {k: fingerprint(v) for k, v in bn_param.items() if k != "mode"} == kept
    buggy = wrap_functions(batchnorm_forward, batchnorm_test_backward_as_train, S.BatchNorm1d("bn", 5, training=False),
                           [gamma, beta], args=(bn_param,))
    assert check_layer(buggy, input_shape=(4, 5), seed=1).layers[0].verdict == "backward"


def test_cs231n_batchnorm_pair_buggy_backward_is_found() -> None:
    gamma, beta = _bn_arrays()
    pair = wrap_functions(batchnorm_forward, batchnorm_backward_no_mean_term, S.BatchNorm1d("bn", 5), [gamma, beta],
                          args=({"mode": "train"},))
    assert check_layer(pair, input_shape=(6, 5), seed=0).layers[0].verdict == "backward"


def test_batchnorm_pair_with_the_running_stats_positional() -> None:
    def forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
        mu, var = x.mean(0), x.var(0)
        running_mean *= 0.9  # in place, as some code does: it gets a copy
        xh = (x - mu) / np.sqrt(var + eps)
        return gamma * xh + beta, (xh, gamma, np.sqrt(var + eps))

    gamma, beta = _bn_arrays()
    rm, rv = np.zeros(5), np.ones(5)
    before = fingerprints(gamma, beta, rm, rv)
    pair = wrap_functions(forward, batchnorm_backward_alt, S.BatchNorm1d("bn", 5), [gamma, beta, rm, rv])
    report = check_layer(pair, seed=2)  # a batch norm needs no input_shape, as a conv does not
    assert report.layers[0].verdict == "pass" and "not checked" not in report.layers[0].message, str(report)
    assert fingerprints(gamma, beta, rm, rv) == before


def test_eval_mode_pair_without_running_stats_is_refused_naming_params() -> None:
    gamma, beta = _bn_arrays()
    with pytest.raises(AdapterError, match=r"layer 'bn': an eval-mode BatchNorm1d \(training=False\) normalises with "
                                           r"its running statistics, but running_mean, running_var were not found "
                                           r"\(not in params and no dict in args= or kwargs= holds them\); pass them "
                                           r"in params= \(\[gamma, beta, running_mean, running_var\]\)"):
        wrap_functions(batchnorm_forward, batchnorm_test_backward, S.BatchNorm1d("bn", 5, training=False),
                       [gamma, beta], args=({"mode": "test"},))


def test_pair_missing_a_trainable_parameter_is_refused() -> None:
    gamma, _ = _bn_arrays()
    with pytest.raises(AdapterError, match=r"layer 'bn': params gives \['weight'\] as a place \('gamma'\); only a dropout "
                                           r"mask is read from a place \(after each forward\): pass the arrays themselves"):
        wrap_functions(batchnorm_forward, batchnorm_backward_alt, S.BatchNorm1d("bn", 5),
                       {"weight": "gamma", "bias": gamma}, args=({"mode": "train"},))
    with pytest.raises(AdapterError, match=r"layer 'bn': params lack \['bias'\] \(the spec's parameters are "
                                           r"\['weight', 'bias', 'running_mean', 'running_var'\]\); got \['weight'\]"):
        wrap_functions(batchnorm_forward, batchnorm_backward_alt, S.BatchNorm1d("bn", 5), {"weight": gamma},
                       args=({"mode": "train"},))


# --------------------------------------------------------------------------- object batch norm, no running stats


class BatchNorm2dScratch:
    """Per-channel batch norm as from-scratch code writes it: gamma/beta only, no running stats."""

    def __init__(self, c, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma = 1 + 0.1 * rng.standard_normal(c)
        self.beta = 0.1 * rng.standard_normal(c)
        self.eps = 1e-5

    def forward(self, x):
        n, c, h, w = x.shape
        flat = x.transpose(0, 2, 3, 1).reshape(-1, c)
        self.mu, self.var = flat.mean(axis=0), flat.var(axis=0)
        self.x_hat = (flat - self.mu) / np.sqrt(self.var + self.eps)
        out = self.gamma * self.x_hat + self.beta
        return out.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        n, c, h, w = dout.shape
        flat = dout.transpose(0, 2, 3, 1).reshape(-1, c)
        m = flat.shape[0]
        self.dgamma = np.sum(flat * self.x_hat, axis=0)
        self.dbeta = np.sum(flat, axis=0)
        dx_hat = flat * self.gamma
        dx = (m * dx_hat - dx_hat.sum(axis=0) - self.x_hat * (dx_hat * self.x_hat).sum(axis=0))
        dx /= m * np.sqrt(self.var + self.eps)
        return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


class BatchNorm2dScratchBadGamma(BatchNorm2dScratch):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dgamma = self.dgamma / dout.shape[0]  # "averaged" over the batch
        return dx


class BatchNorm2dWithStats(BatchNorm2dScratch):
    def __init__(self, c, seed=0):
        super().__init__(c, seed)
        self.running_mean, self.running_var = np.zeros(c), np.ones(c)

    def forward(self, x):
        out = super().forward(x)
        self.running_mean = 0.9 * self.running_mean + 0.1 * self.mu  # rebinds: the user's array is left alone
        return out


def test_object_batchnorm_without_running_stats_passes_with_a_note_and_no_input_shape() -> None:
    bn = BatchNorm2dScratch(3)
    before = fingerprints(bn.gamma, bn.beta)
    report = check_layer(bn, S.BatchNorm2d("bn", 3), seed=5)  # no params=, no dummy arrays, no input_shape=
    assert report.layers[0].verdict == "pass", str(report)
    assert NOT_CHECKED in report.layers[0].message
    assert fingerprints(bn.gamma, bn.beta) == before
    assert not hasattr(bn, "running_mean")


def test_object_batchnorm_keeping_running_stats_still_reads_them() -> None:
    bn = BatchNorm2dWithStats(3)
    rm = bn.running_mean
    wrapped = wrap_layer(bn, S.BatchNorm2d("bn", 3))
    assert "running_mean" in wrapped._param_names() and not wrapped.notes()
    report = check_layer(wrapped, seed=1)
    assert report.layers[0].verdict == "pass" and "not checked" not in report.layers[0].message, str(report)
    assert bn.running_mean is rm and not rm.any()  # put back as it was


def test_object_batchnorm_buggy_gradient_is_found() -> None:
    report = check_layer(BatchNorm2dScratchBadGamma(3), S.BatchNorm2d("bn", 3), input_shape=(4, 3, 3, 2), seed=0)
    assert report.layers[0].verdict == "backward", str(report)


def test_eval_mode_object_batchnorm_without_running_stats_is_refused_naming_params() -> None:
    with pytest.raises(AdapterError, match=r"layer 'bn': an eval-mode BatchNorm2d \(training=False\) normalises with "
                                           r"its running statistics, but running_mean, running_var were not found "
                                           r"\(tried running_mean, .* on BatchNorm2dScratch\); pass "
                                           r"params=\{'running_mean': \"...\", 'running_var': \"...\"\}"):
        wrap_layer(BatchNorm2dScratch(3), S.BatchNorm2d("bn", 3, training=False))


def test_running_stats_set_on_a_layer_that_keeps_none_go_nowhere() -> None:
    wrapped = wrap_layer(BatchNorm2dScratch(3), S.BatchNorm2d("bn", 3))
    params = wrapped.get_params()
    np.testing.assert_array_equal(params["running_var"], np.ones(3))
    wrapped.set_params({**params, "running_mean": np.full(3, 7.0)})  # e.g. a snapshot's values: ignored
    assert not hasattr(wrapped.obj, "running_mean")


# --------------------------------------------------------------------------- dropout


def dropout_forward(x, dropout_param):
    """CS231n (2019+): p is the probability of KEEPING a unit; the mask carries the 1/p scale."""
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    out = None
    if mode == "train":
        mask = (np.random.rand(*x.shape) < p) / p
        out = x * mask
    elif mode == "test":
        out = x
    cache = (dropout_param, mask)
    out = out.astype(x.dtype, copy=False)
    return out, cache


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    mode = dropout_param["mode"]
    dx = None
    if mode == "train":
        dx = dout * mask
    elif mode == "test":
        dx = dout
    return dx


def dropout_backward_unscaled(dout, cache):
    _, mask = cache
    return dout * (mask > 0)  # forgot that the mask carries the 1/p scale


@pytest.mark.parametrize("seeded", [False, True])
def test_cs231n_dropout_pair_mask_from_the_cache_passes(seeded: bool) -> None:
    dropout_param = {"mode": "train", "p": 0.8, **({"seed": 123} if seeded else {})}
    kept = copy.deepcopy(dropout_param)
    state = np.random.get_state()
    pair = wrap_functions(dropout_forward, dropout_backward, S.Dropout("drop", p=0.2), {}, args=(dropout_param,))
    for seed in range(3):
        report = check_layer(pair, input_shape=(4, 6), seed=seed)
        assert report.layers[0].verdict == "pass", str(report)
    assert dropout_param == kept
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_cs231n_dropout_pair_buggy_backward_is_found() -> None:
    pair = wrap_functions(dropout_forward, dropout_backward_unscaled, S.Dropout("drop", p=0.2), {},
                          args=({"mode": "train", "p": 0.8},))
    assert check_layer(pair, input_shape=(4, 6), seed=0).layers[0].verdict == "backward"


def test_dropout_pair_declared_mask_place_and_its_errors() -> None:
    spec = S.Dropout("drop", p=0.2)
    args = ({"mode": "train", "p": 0.8},)
    declared = wrap_functions(dropout_forward, dropout_backward, spec, {"mask": "cache[1]"}, args=args)
    assert check_layer(declared, input_shape=(4, 6), seed=1).ok
    wrong = wrap_functions(dropout_forward, dropout_backward, spec, {"mask": "cache[0]['mask']"}, args=args)
    with pytest.raises(AdapterError, match=r"layer 'drop': cannot find its dropout mask after the forward \(nothing at "
                                           r"cache\[0\]\['mask'\]\); pass params=\{'mask': \"cache\[1\]\"\}"):
        check_layer(wrong, input_shape=(4, 6))

    def forward_no_mask(x, dropout_param):  # keeps the random draw, not the mask
        r = np.random.rand(*x.shape)
        return x * (r < dropout_param["p"]) / dropout_param["p"], (dropout_param, r)

    hidden = wrap_functions(forward_no_mask, dropout_backward, spec, {}, args=args)
    with pytest.raises(AdapterError, match=r"layer 'drop': cannot find its dropout mask after the forward \(no dict "
                                           r"argument holds 'mask', and the cache holds no single 0/1 array of the "
                                           r"input's shape \(4, 6\)\); pass params=\{'mask': \"cache\[1\]\"\}"):
        check_layer(hidden, input_shape=(4, 6))


def test_dropout_pair_with_the_mask_in_dropout_param() -> None:
    def forward(x, dropout_param):  # a variant that keeps the mask in its parameter dict
        if "mask" not in dropout_param:
            dropout_param["mask"] = np.random.rand(*x.shape) >= dropout_param["p"]
        return x * dropout_param["mask"] / (1 - dropout_param["p"]), dropout_param

    def backward(dout, dropout_param):
        return dout * dropout_param["mask"] / (1 - dropout_param["p"])

    mask = np.random.default_rng(0).random((4, 6)) >= 0.3  # given by the user: bool, kept
    given = {"p": 0.3, "mask": mask}
    before = fingerprint(mask)
    assert check_layer(wrap_functions(forward, backward, S.Dropout("drop", 0.3), {}, args=(given,)), seed=2).ok
    assert given["mask"] is mask and fingerprint(mask) == before
    drawn = {"p": 0.3}
    assert check_layer(wrap_functions(forward, backward, S.Dropout("drop", 0.3), {}, args=(drawn,)),
                       input_shape=(3, 5), seed=2).ok
    assert drawn == {"p": 0.3}


class DropoutNHWC:
    """Inverted dropout as NHWC code writes it: a fresh 0/1 mask from np.random on every forward."""

    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        self.mask = (np.random.rand(*x.shape) > self.p).astype(x.dtype)
        return x * self.mask / (1 - self.p)

    def backward(self, dout):
        return dout * self.mask / (1 - self.p)


class DropoutPrivateMask(DropoutNHWC):
    def forward(self, x):
        self._mask = np.random.binomial(1, 1 - self.p, size=x.shape)  # int 0/1, under another name
        return x * self._mask / (1 - self.p)

    def backward(self, dout):
        return dout * self._mask / (1 - self.p)


class DropoutOwnGenerator(DropoutNHWC):
    def __init__(self, p=0.5, seed=0):
        super().__init__(p)
        self.rng = np.random.default_rng(seed)  # advances on every call: replayed by trigrad
        self.cache = {}

    def forward(self, x):
        self.cache["mask"] = (self.rng.random(x.shape) >= self.p) / (1 - self.p)
        return x * self.cache["mask"]

    def backward(self, dout):
        return dout * self.cache["mask"]


class DropoutNHWCForgetsScale(DropoutNHWC):
    def backward(self, dout):
        return dout * self.mask


NHWC = Layout(data="NHWC")
SYM = (2, 3, 3, 3)  # the same shape read as NCHW or NHWC


@pytest.mark.parametrize("cls", [DropoutNHWC, DropoutPrivateMask, DropoutOwnGenerator])
def test_dropout_that_draws_its_mask_passes_and_leaves_the_random_streams_alone(cls) -> None:
    layer = cls(0.5)
    rng_before = copy.deepcopy(getattr(layer, "rng", None))
    state = np.random.get_state()
    for seed in range(3):
        report = check_layer(layer, S.Dropout("drop", 0.5), layout=NHWC, input_shape=SYM, seed=seed)
        assert report.layers[0].verdict == "pass", str(report)
    assert np.array_equal(np.random.get_state()[1], state[1])
    if rng_before is not None:
        assert layer.rng.bit_generator.state == rng_before.bit_generator.state


def test_dropout_nhwc_buggy_backward_is_found() -> None:
    report = check_layer(DropoutNHWCForgetsScale(0.5), S.Dropout("drop", 0.5), layout=NHWC, input_shape=SYM)
    assert report.layers[0].verdict == "backward", str(report)


class FixedMaskDropout:
    """A mask given at construction, stored in the code's own NHWC layout."""

    def __init__(self, mask, p=0.5):
        self.mask, self.p = mask, p

    def forward(self, x):
        return np.where(self.mask, x / (1 - self.p), 0.0)

    def backward(self, dout):
        return np.where(self.mask, dout / (1 - self.p), 0.0)


def test_dropout_mask_given_at_construction_in_nhwc_sizes_the_input() -> None:
    mask = np.random.default_rng(1).random((2, 4, 5, 3)) > 0.5  # (N, H, W, C), bool
    before = fingerprint(mask)
    layer = FixedMaskDropout(mask)
    report = check_layer(layer, S.Dropout("drop", 0.5), layout=NHWC, seed=3)  # no lazy=, no input_shape=
    assert report.layers[0].verdict == "pass", str(report)
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 3))  # in the declared NHWC, like the mask
    assert check_layer(FixedMaskDropout(mask), S.Dropout("drop", 0.5), layout=NHWC, x=x).ok
    assert layer.mask is mask and fingerprint(mask) == before


def test_dropout_mask_given_at_construction_and_an_input_of_another_shape() -> None:
    layer = FixedMaskDropout(np.ones((2, 4, 4, 4), bool))
    with pytest.raises(LayoutError, match=r"layer 'drop': its forward raised on an input of shape \(3, 4, 4, 4\) \(in "
                                          r"the declared Layout\(data='NHWC'\)\) while the dropout mask it keeps at mask "
                                          r"has shape \(2, 4, 4, 4\): a mask kept at construction fixes the input's "
                                          r"shape; check it on an input of that shape \(x= or input_shape=\)"):
        check_layer(layer, S.Dropout("drop", 0.5), layout=NHWC, input_shape=(3, 4, 4, 4))
    from harness.adapters.layouts import param_from_user  # a mask read for another input: the message says why

    with pytest.raises(LayoutError, match=r"layer 'drop': parameter 'mask' has shape \(2, 4, 4, 4\) in the declared "
                                          r"Layout\(data='NHWC'\); expected \(3, 4, 4, 4\) there; a dropout mask has "
                                          r"the input's shape: one kept at construction fixes it"):
        param_from_user(S.Dropout("drop", 0.5), "mask", np.ones((2, 4, 4, 4)), NHWC, (3, 4, 4, 4))


def test_an_array_at_mask_that_is_not_a_mask_is_refused_naming_params() -> None:
    class Noise(DropoutNHWC):
        def forward(self, x):
            self.mask = np.random.rand(*x.shape)  # the random draw, not the 0/1 mask
            return x * (self.mask > self.p) / (1 - self.p)

    with pytest.raises(AdapterError, match=r"layer 'drop': the array read as its dropout mask at mask holds values "
                                           r"other than 0 and one constant .*pass params=\{'mask': \"...\"\}"):
        check_layer(Noise(), S.Dropout("drop", 0.5), input_shape=(3, 4))


def test_a_mask_drawn_by_the_forward_needs_the_input_shape() -> None:
    with pytest.raises(ValueError, match=r"layer 'drop': pass input_shape= or x= to check a Dropout"):
        check_layer(DropoutNHWC(), S.Dropout("drop", 0.5))
    with pytest.raises(AdapterError, match=r"layer 'drop': its dropout mask is drawn by its forward, which has not run, "
                                           r"and its input shape is not known: pass x= or input_shape="):
        wrap_layer(DropoutNHWC(), S.Dropout("drop", 0.5)).get_params()


# --------------------------------------------------------------------------- unit axes: (F, 1) bias, (1, D) gamma


def im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    N, C, H, W = x_shape
    out_height = (H + 2 * padding - field_height) // stride + 1
    out_width = (W + 2 * padding - field_width) // stride + 1
    i0 = np.tile(np.repeat(np.arange(field_height), field_width), C)
    i1 = stride * np.repeat(np.arange(out_height), out_width)
    j0 = np.tile(np.arange(field_width), field_height * C)
    j1 = stride * np.tile(np.arange(out_width), out_height)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(C), field_height * field_width).reshape(-1, 1)
    return k, i, j


class ConvIm2col:
    """W (F, C, HH, WW), b (F, 1): out = W_col @ X_col + b, as the im2col tutorials write it."""

    def __init__(self, cin, cout, k, pad=1, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.standard_normal((cout, cin, k, k)) * 0.3
        self.b = rng.standard_normal((cout, 1))
        self.pad = pad

    def forward(self, X):
        n_filters, d_filter, h_filter, w_filter = self.W.shape
        n_x, d_x, h_x, w_x = X.shape
        h_out, w_out = h_x - h_filter + 2 * self.pad + 1, w_x - w_filter + 2 * self.pad + 1
        p = self.pad
        x_padded = np.pad(X, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant")
        k, i, j = im2col_indices(X.shape, h_filter, w_filter, p)
        cols = x_padded[:, k, i, j]
        self.X_col = cols.transpose(1, 2, 0).reshape(h_filter * w_filter * d_x, -1)
        self.cache = (X.shape, k, i, j)
        out = self.W.reshape(n_filters, -1) @ self.X_col + self.b
        return out.reshape(n_filters, h_out, w_out, n_x).transpose(3, 0, 1, 2)

    def backward(self, dout):
        shape, k, i, j = self.cache
        n_filter = self.W.shape[0]
        self.db = np.sum(dout, axis=(0, 2, 3)).reshape(n_filter, -1)
        dout_reshaped = dout.transpose(1, 2, 3, 0).reshape(n_filter, -1)
        self.dW = (dout_reshaped @ self.X_col.T).reshape(self.W.shape)
        dX_col = self.W.reshape(n_filter, -1).T @ dout_reshaped
        N, C, H, W = shape
        p = self.pad
        x_padded = np.zeros((N, C, H + 2 * p, W + 2 * p))
        cols = dX_col.reshape(C * self.W.shape[2] * self.W.shape[3], -1, N).transpose(2, 0, 1)
        np.add.at(x_padded, (slice(None), k, i, j), cols)
        return x_padded[:, :, p:-p, p:-p]


class ConvIm2colSqueezedGrad(ConvIm2col):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = self.db.ravel()  # the gradient comes back (F,) for a (F, 1) bias
        return dx


class ConvIm2colBadBias(ConvIm2col):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = np.sum(dout[0], axis=(1, 2)).reshape(-1, 1)  # only the first example
        return dx


@pytest.mark.parametrize("cls", [ConvIm2col, ConvIm2colSqueezedGrad])
def test_conv_with_a_column_bias_passes_and_writes_keep_the_users_shape(cls) -> None:
    conv = cls(3, 4, 3)
    before = fingerprints(conv.W, conv.b)
    report = check_layer(conv, S.Conv2d("conv", 3, 4, 3, padding=1), seed=1)
    assert report.layers[0].verdict == "pass", str(report)
    assert fingerprints(conv.W, conv.b) == before
    wrapped = wrap_layer(conv, S.Conv2d("conv", 3, 4, 3, padding=1))
    with wrapped.preserved():
        wrapped.set_params({"bias": np.arange(4.0)})
        assert conv.b.shape == (4, 1) and conv.b[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert fingerprints(conv.W, conv.b) == before


def test_conv_with_a_column_bias_buggy_gradient_is_found() -> None:
    report = check_layer(ConvIm2colBadBias(3, 4, 3), S.Conv2d("conv", 3, 4, 3, padding=1), seed=0)
    assert report.layers[0].verdict == "backward", str(report)
    assert not report.layer("conv").tensors[3].ok  # bias


def test_conv_weight_stored_without_its_unit_axes_follows_the_declared_kernel_order() -> None:
    from harness.adapters.layouts import param_from_user, param_to_user

    spec = S.Conv2d("conv", 1, 3, (1, 3))  # weight (O, I, kh, kw) = (3, 1, 1, 3)
    canonical = np.arange(9.0).reshape(3, 1, 1, 3)
    hwio = canonical.transpose(2, 3, 1, 0)  # (1, 3, 1, 3): kw, O once squeezed
    layout = Layout(kernel="HWIO")
    squeezed = hwio.reshape(3, 3)
    np.testing.assert_array_equal(param_from_user(spec, "weight", squeezed, layout, (3, 1, 1, 3)), canonical)
    np.testing.assert_array_equal(param_to_user(spec, "weight", canonical, layout, (3, 3)), squeezed)


class PerActivationBN:
    """Batch norm per activation over flattened features, gamma/beta kept as rows (1, D)."""

    def __init__(self, d, seed=0):
        rng = np.random.default_rng(seed)
        self.gamma = 1 + 0.1 * rng.standard_normal((1, d))
        self.beta = 0.1 * rng.standard_normal((1, d))

    def forward(self, X):
        self.shape = X.shape
        X = X.reshape(X.shape[0], -1)
        self.mu, self.var = np.mean(X, axis=0, keepdims=True), np.var(X, axis=0, keepdims=True)
        self.X_norm = (X - self.mu) / np.sqrt(self.var + 1e-5)
        return (self.gamma * self.X_norm + self.beta).reshape(self.shape)

    def backward(self, dout):
        dout = dout.reshape(dout.shape[0], -1)
        N = dout.shape[0]
        self.dgamma = np.sum(dout * self.X_norm, axis=0)  # comes back (D,) for a (1, D) gamma
        self.dbeta = np.sum(dout, axis=0, keepdims=True)
        dX_norm = dout * self.gamma
        std_inv = 1.0 / np.sqrt(self.var + 1e-5)
        dX = std_inv / N * (N * dX_norm - dX_norm.sum(axis=0) - self.X_norm * (dX_norm * self.X_norm).sum(axis=0))
        return dX.reshape(self.shape)


class PerActivationBNBad(PerActivationBN):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dbeta = self.dbeta * 0.5
        return dx


def test_per_activation_batchnorm_with_row_parameters_passes() -> None:
    bn = PerActivationBN(6)
    before = fingerprints(bn.gamma, bn.beta)
    report = check_layer(bn, S.BatchNorm1d("bn", 6), seed=2)
    assert report.layers[0].verdict == "pass", str(report)
    assert NOT_CHECKED in report.layers[0].message
    assert fingerprints(bn.gamma, bn.beta) == before


@pytest.mark.parametrize("data", ["NCHW", "NHWC"])
def test_per_activation_batchnorm_over_conv_maps_with_a_row_gamma(data: str) -> None:
    bn = PerActivationBN(60 if data == "NCHW" else 27)  # gamma (1, C*H*W) in the code's own data order
    report = check_layer(bn, S.BatchNorm2d("bn", 3, over="feature"), layout=Layout(data=data),
                         input_shape=(5, 3, 4, 5) if data == "NCHW" else SYM, seed=1)
    assert report.layers[0].verdict == "pass", str(report)


def test_per_activation_batchnorm_buggy_gradient_is_found() -> None:
    report = check_layer(PerActivationBNBad(6), S.BatchNorm1d("bn", 6), seed=0)
    assert report.layers[0].verdict == "backward", str(report)


def test_per_feature_parameter_that_fits_two_orders_is_refused() -> None:
    class NHWCFeatureBN(PerActivationBN):
        def __init__(self):
            super().__init__(4)
            self.gamma = self.gamma.reshape(2, 2)  # (C, H, W) = (2, 1, 2): (W, C) or (C, W)?

    with pytest.raises(LayoutError, match=r"layer 'bn': parameter 'weight' has shape \(2, 2\), which under the declared "
                                          r"Layout\(data='NHWC'\) reads both as \(H, W, C\) = \(1, 2, 2\) and as "
                                          r"\(C, H, W\) = \(2, 1, 2\) once its unit axes are dropped; keep it as "
                                          r"\(H, W, C\), \(1, H, W, C\) or flat"):
        wrapped = wrap_layer(NHWCFeatureBN(), S.BatchNorm2d("bn", 2, over="feature"), layout=NHWC)
        wrapped.expect_input((3, 2, 1, 2))
        wrapped.get_params()


# --------------------------------------------------------------------------- in a network


class ReLU:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * (self.x > 0)


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.shape)


class Dense:
    def __init__(self, fin, fout, seed=1):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.standard_normal((fin, fout)) * 0.2, np.zeros(fout)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T




def _network(layers, spec, layout):
    net = Net(layers)
    return dict(zip([l.name for l in spec.layers], layers)), dict(forward=net.forward, backward=net.backward,
                                                                  layout=layout)


def test_network_with_optional_state_passes_layer_by_layer_and_end_to_end() -> None:
    spec = S.Sequential([S.Conv2d("conv", 3, 4, 3, padding=1), S.ReLU("relu"), S.BatchNorm2d("bn", 4),
                         S.Flatten("flat"), S.Dropout("drop", 0.5), S.BatchNorm1d("bn2", 48), S.Linear("fc", 48, 3)])
    layers = [ConvIm2col(3, 4, 3), ReLU(), BatchNorm2dScratch(4), Flatten(), DropoutNHWC(), PerActivationBN(48),
              Dense(48, 3)]
    watched = [layers[0].W, layers[0].b, layers[2].gamma, layers[5].gamma, layers[6].W]
    before = fingerprints(*watched)
    mapping, kw = _network(layers, spec, Layout(linear="in_out"))
    report = check_network(mapping, spec, input_shape=(4, 3, 3, 4), seed=1, **kw)
    assert report.ok, str(report)
    assert NOT_CHECKED in report.layer("bn").message
    assert fingerprints(*watched) == before


def test_network_with_a_buggy_layer_names_it() -> None:
    spec = S.Sequential([S.Conv2d("conv", 3, 4, 3, padding=1), S.ReLU("relu"), S.Flatten("flat"),
                         S.Dropout("drop", 0.5), S.Linear("fc", 36, 3)])
    layers = [ConvIm2col(3, 4, 3), ReLU(), Flatten(), DropoutNHWCForgetsScale(), Dense(36, 3)]
    mapping, kw = _network(layers, spec, Layout(linear="in_out"))
    report = check_network(mapping, spec, input_shape=(4, 3, 3, 3), seed=2, **kw)
    assert report.first_failure == "drop" and report.layer("drop").verdict == "backward", str(report)
    assert all(report.layer(n).ok for n in ("conv", "relu", "flat", "fc"))


def test_nhwc_network_with_a_mask_in_the_data_layout() -> None:
    spec = S.Sequential([S.Dropout("drop", 0.5), S.Flatten("flat"), S.Linear("fc", 27, 2)])
    layers = [DropoutNHWC(), Flatten(), Dense(27, 2)]
    mapping, kw = _network(layers, spec, Layout(data="NHWC", linear="in_out", flatten="HWC"))
    report = check_network(wrap_network(mapping, spec, input_shape=SYM, **kw), input_shape=SYM, seed=0)
    assert report.ok, str(report)


class CS231nBatchNormLayer:
    """An object wrapping the CS231n pair, as course code does: its bn_param gains the running
    statistics on the first forward."""

    def __init__(self, d, seed=0):
        self.gamma, self.beta = _bn_arrays(d, seed)
        self.bn_param = {"mode": "train"}

    def forward(self, x):
        out, self.cache = batchnorm_forward(x, self.gamma, self.beta, self.bn_param)
        return out

    def backward(self, dout):
        dx, self.dgamma, self.dbeta = batchnorm_backward_alt(dout, self.cache)
        return dx


def test_object_whose_forward_creates_running_stats_in_bn_param_is_left_as_it_was() -> None:
    layer = CS231nBatchNormLayer(5)
    report = check_layer(layer, S.BatchNorm1d("bn", 5), seed=1)
    assert report.layers[0].verdict == "pass" and NOT_CHECKED in report.layers[0].message, str(report)
    assert layer.bn_param == {"mode": "train"}
    layer.forward(np.random.default_rng(0).standard_normal((4, 5)))  # now it keeps them: they are read, restored
    rm = layer.bn_param["running_mean"]
    wrapped = wrap_layer(layer, S.BatchNorm1d("bn", 5))
    assert wrapped.params["running_mean"].path == "bn_param['running_mean']"
    assert check_layer(wrapped, seed=2).ok
    assert layer.bn_param["running_mean"] is rm


def test_a_mask_from_an_unseeded_generator_cannot_be_replayed_and_the_report_says_so() -> None:
    class FreshGenerator(DropoutNHWC):
        def forward(self, x):
            self.mask = np.random.default_rng().random(x.shape) > self.p  # new entropy on every call
            return x * self.mask / (1 - self.p)

    report = check_layer(FreshGenerator(), S.Dropout("drop", 0.5), input_shape=(3, 4))
    assert report.layers[0].verdict != "pass"
    assert any(line.startswith("likely cause: the dropout mask is drawn from a generator the forward creates unseeded")
               for line in report.layers[0].diagnosis), str(report)


def test_shapes_that_only_the_input_tells_are_asked_for() -> None:
    pair = wrap_functions(dropout_forward, dropout_backward, S.Dropout("drop", p=0.2), {},
                          args=({"mode": "train", "p": 0.8},))
    with pytest.raises(AdapterError, match=r"layer 'drop': its dropout mask is drawn by its forward, which has not run, "
                                           r"and its input shape is not known: pass x= or input_shape= to check_layer"):
        pair.get_params()
    bn = wrap_layer(PerActivationBN(60), S.BatchNorm2d("bn", 3, over="feature"))
    with pytest.raises(AdapterError, match=r"layer 'bn': the shape of its parameter 'weight' is the input's \(or its "
                                           r"\(C, H, W\)\), which is not known yet; pass x= or input_shape= to "
                                           r"check_layer \(input_shape= to wrap_network\), or run its forward once"):
        bn.get_params()
    bn.expect_input((4, 3, 4, 5))
    assert bn.get_params()["weight"].shape == (3, 4, 5)


def test_a_mask_drawn_from_torchs_generator_is_replayed_too() -> None:
    torch = pytest.importorskip("torch")

    class TorchMaskDropout(DropoutNHWC):
        def forward(self, x):
            self.mask = (torch.rand(x.shape, dtype=torch.float64) > self.p).numpy()
            return x * self.mask / (1 - self.p)

    state = torch.get_rng_state().clone()
    assert check_layer(TorchMaskDropout(), S.Dropout("drop", 0.5), input_shape=(3, 4), seed=1).ok
    assert torch.equal(state, torch.get_rng_state())


class LazyStatsBN:
    """Running statistics None until the first forward, as from-scratch code often starts."""

    def __init__(self, d: int):
        self.gamma, self.beta = np.ones(d), np.zeros(d)
        self.running_mean = self.running_var = None

    def forward(self, x):
        if self.running_mean is None:
            self.running_mean, self.running_var = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self.xc = x - x.mean(0)
        self.std = np.sqrt(x.var(0) + 1e-5)
        self.xn = self.xc / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dy):
        n = dy.shape[0]
        self.dgamma, self.dbeta = (dy * self.xn).sum(0), dy.sum(0)
        dxn = dy * self.gamma
        return (n * dxn - dxn.sum(0) - self.xn * (dxn * self.xn).sum(0)) / (n * self.std)


def test_slots_of_statistics_the_code_creates_later_are_put_back_as_they_were() -> None:
    layer = LazyStatsBN(4)
    assert check_layer(layer, S.BatchNorm1d("bn", 4), input_shape=(5, 4)).ok
    # before the fix the check deleted the attributes, and the user's next forward raised AttributeError
    assert layer.running_mean is None and layer.running_var is None
    layer.forward(np.random.default_rng(0).normal(size=(5, 4)))


def test_a_check_without_input_shape_does_not_reuse_an_earlier_checks_shape() -> None:
    from harness import wrap_layer

    class Dense:
        def __init__(self):
            self.W, self.b = np.random.default_rng(0).normal(size=(6, 3)), np.zeros(3)

        def forward(self, x):
            self.x = x
            return x @ self.W + self.b

        def backward(self, dy):
            self.dW, self.db = self.x.T @ dy, dy.sum(0)
            return dy @ self.W.T

    wrapped = wrap_layer(Dense(), S.Linear("fc", 6, 3), layout=Layout(linear="in_out"))
    first = check_layer(wrapped).layers[0].tensors[0].shape
    check_layer(wrapped, input_shape=(7, 6))
    assert check_layer(wrapped).layers[0].tensors[0].shape == first  # the default, not (7, 3)


def test_batched_false_with_a_training_dropout_is_refused() -> None:
    from harness import wrap_layer

    class Drop:
        def forward(self, x):
            self.mask = np.random.rand(*x.shape) > 0.5
            return x * self.mask / 0.5

        def backward(self, dy):
            return dy * self.mask / 0.5

    with pytest.raises(AdapterError, match=r"layer 'd': batched=False with a training-mode dropout is not supported"):
        wrap_layer(Drop(), S.Dropout("d", 0.5), batched=False)
