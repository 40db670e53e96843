"""Issue 15, losses: ``check_loss(fn, scores=, y=)`` with no spec infers the loss
(harness/inference/loss.py) and ``check_network(model, x=)`` a CS231n loss model
(harness/inference/loss_model.py): the real-code losses of tests/realcode exactly as their
hand-written wraps declare them, their bugs found with the hand-written verdicts (and said to
be ambiguous, never a confident wrong reduction), the user's arrays and objects untouched,
and every bad input refused with a message naming the fix."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import numpy as np
import pytest

import harness as tg
from harness.adapters.refs import AdapterError
from harness.inference.loss import InferredLoss, LossInference, infer_loss
from harness.inference.loss_model import infer_loss_model
from realcode import cs231n_net, dlfs, nets
from realcode.table import BY_NAME
from test_real_code import (
    IN_OUT,
    TANH_NET,
    TWO_LAYER,
    wrap_cs231n_softmax_loss,
    wrap_cs231n_two_layer_net,
    wrap_dlfs_softmax_loss,
    wrap_dotted_names_net,
    wrap_loss_object_reg,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# shape name -> (the user's loss from the module, input shape, the hand-written wrap, the spec and options it declares)
REAL = {
    "cs231n_softmax_loss": (
        lambda m: m.softmax_loss,
        (4, 5),
        wrap_cs231n_softmax_loss,
        tg.SoftmaxCrossEntropy(),
        {"style": "function"},
    ),
    "dlfs_softmax_loss": (
        lambda m: m.SoftmaxWithLoss(),
        (8, 10),
        wrap_dlfs_softmax_loss,
        tg.SoftmaxCrossEntropy(log_eps=1e-7),
        {"style": "object"},
    ),
    "loss_object_reg": (
        lambda m: m.SoftmaxCrossEntropyLoss(),
        (4, 5),
        wrap_loss_object_reg,
        tg.SoftmaxCrossEntropy(),
        {"style": "object", "forward_kwargs": {"reg": 0.0}},
    ),
}
BUGS = [pytest.param(name, bug, id=f"{name}-{bug.name}") for name in REAL for bug in BY_NAME[name].bugs]


def _softmax(s):
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", list(REAL))
def test_real_code_loss_is_inferred_exactly(name):
    get, shape, _, spec, kw = REAL[name]
    rng = np.random.default_rng(0)
    li = infer_loss(get(BY_NAME[name].code), rng.normal(size=shape), rng.integers(0, shape[1], size=shape[0]))
    assert li.status == "exact", li.summary()
    assert li.spec == spec
    assert li.wrap_kwargs == kw


@pytest.mark.parametrize("name", list(REAL))
@pytest.mark.parametrize("seed", [0, 1])
def test_correct_real_code_loss_passes_without_spec(name, seed):
    get, shape, _, _, _ = REAL[name]
    report = tg.check_loss(get(BY_NAME[name].code), input_shape=shape, seed=seed)
    assert report.ok and report.layer("(loss)").verdict == "pass", str(report)
    assert report.inferred is not None and report.inferred["status"] == "exact"


@pytest.mark.parametrize("name,bug", BUGS)
def test_bug_verdict_equals_the_hand_written_wraps(name, bug):
    get, shape, wrap, _, _ = REAL[name]
    by_hand = wrap(bug.code, 0).layer("(loss)")
    report = tg.check_loss(get(bug.code), input_shape=shape, seed=0)
    entry = report.layer("(loss)")
    assert entry.verdict == by_hand.verdict == bug.verdict, str(report)
    assert [t.ok for t in entry.tensors] == [t.ok for t in by_hand.tensors]
    # value and gradient of different reductions: never an exact claim; the doubt is said
    assert report.inferred["status"] == "ambiguous"
    assert "checked as the mean" in " ".join(report.inferred["layers"])


def test_summed_value_is_not_a_confident_sum():
    """The value is a sum, the gradient a mean's: the sum fits the value exactly, but it is
    reported ambiguous and checked as the mean, so the check says forward."""
    rng = np.random.default_rng(2)
    li = infer_loss(cs231n_net.softmax_loss_summed, rng.normal(size=(4, 5)), rng.integers(0, 5, size=4))
    assert li.status == "ambiguous" and li.spec == tg.SoftmaxCrossEntropy()
    assert [f.spec for f in li.ambiguous] == [tg.SoftmaxCrossEntropy(reduction="sum")]
    assert "the value is a sum" in li.why[-1]


def test_user_arrays_and_objects_are_untouched():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=(8, 10)), rng.integers(0, 10, size=8)
    s0, y0 = s.copy(), y.copy()
    obj = dlfs.SoftmaxWithLoss()
    obj.forward(s, y)
    before = copy.deepcopy(vars(obj))
    li = infer_loss(obj, s, y)
    assert li.target is obj and li.exact
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(y, y0)
    assert vars(obj).keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(vars(obj)[k], v)


def mse_mean(s, t):
    return ((s - t) ** 2).mean(), 2 * (s - t) / s.size


def mse_sum(s, t):
    return ((s - t) ** 2).sum(), 2 * (s - t)


def ce_onehot(s, t):
    p = _softmax(s)
    return -(t * np.log(p)).sum() / len(s), (p - t) / len(s)


def ce_sum(s, y):
    p, n = _softmax(s), len(y)
    d = p.copy()
    d[np.arange(n), y] -= 1
    return -np.log(p[np.arange(n), y]).sum(), d


def ce_float32(s, y):
    p, n = _softmax(s.astype(np.float32)), len(y)
    d = p.copy()
    d[np.arange(n), y] -= 1
    return np.float32(-np.log(p[np.arange(n), y]).mean()), d / n


def multiclass_svm(s, y):
    n = len(y)
    m = np.maximum(0, s - s[np.arange(n), y][:, None] + 1)
    m[np.arange(n), y] = 0
    d = (m > 0).astype(float)
    d[np.arange(n), y] = -d.sum(axis=1)
    return m.sum() / n, d / n


def _data(seed=3):
    rng = np.random.default_rng(seed)
    s, y = rng.normal(size=(4, 5)), rng.integers(0, 5, size=4)
    return s, y, np.eye(5)[y], rng.normal(size=(4, 5))


@pytest.mark.parametrize(
    "fn,target,spec,kw",
    [
        (mse_mean, "T", tg.MSE(), {}),
        (mse_sum, "T", tg.MSE(reduction="sum"), {}),
        (mse_mean, None, tg.MSE(), {}),
        (ce_onehot, "y", tg.SoftmaxCrossEntropy(), {"target_format": "onehot"}),
        (ce_onehot, "Y", tg.SoftmaxCrossEntropy(), {"target_format": "onehot"}),
        (ce_sum, "y", tg.SoftmaxCrossEntropy(reduction="sum"), {}),
    ],
    ids=["mse_mean", "mse_sum", "mse_no_y", "ce_onehot_labels", "ce_onehot_given", "ce_sum"],
)
def test_kind_reduction_and_target_format(fn, target, spec, kw):
    s, y, Y, T = _data()
    t = {"y": y, "Y": Y, "T": T, None: None}[target]
    li = infer_loss(fn, s, t)
    assert li.status == "exact" and li.spec == spec, li.summary()
    assert li.wrap_kwargs == {"style": "function", **kw}
    report = tg.check_loss(fn, scores=s, y=t)
    assert report.layer("(loss)").verdict == "pass", str(report)


def test_float32_loss_is_exact_in_its_dtype():
    s, y, _, _ = _data()
    li = infer_loss(ce_float32, s.astype(np.float32), y)
    assert li.status == "exact" and li.spec == tg.SoftmaxCrossEntropy(), li.summary()
    assert li.wrap_kwargs["dtype"] == "float32"


def test_another_loss_is_unmatched_and_fails_forward():
    s, y, _, _ = _data()
    report = tg.check_loss(multiclass_svm, scores=s, y=y)
    assert report.inferred["status"] == "unmatched"
    assert "nothing reproduces the loss value" in report.inferred["layers"][0]
    assert report.layer("(loss)").verdict == "forward"


def test_emitted_python_pins_the_same_wrap():
    s, y, _, _ = _data()
    obj = nets.SoftmaxCrossEntropyLoss()
    report = tg.check_loss(obj, scores=s, y=y)
    source = report.inferred["python"]
    assert "forward_kwargs={'reg': 0.0}" in source
    scope: dict = {"loss_fn": obj}
    exec(source, scope)
    pinned = tg.check_loss(scope["loss"], scores=s, y=y)
    assert pinned.layer("(loss)").verdict == report.layer("(loss)").verdict == "pass"


def test_inferred_loss_wraps_and_prints():
    s, y, _, _ = _data()
    li = infer_loss(cs231n_net.softmax_loss, s, y)
    assert isinstance(li, LossInference)
    value, grad = li.wrap().loss_and_grad(s, y)
    assert grad.shape == s.shape and np.isfinite(value)
    from harness.inference.loss import inferred_loss

    inf = inferred_loss(cs231n_net.softmax_loss, s, y, 0, {})
    assert isinstance(inf, InferredLoss) and inf.exact and "SoftmaxCrossEntropy" in str(inf)


# --------------------------------------------------------------------------- errors


class NoMethods:
    pass


class SoftmaxLayer:
    """forward(scores) -> probs, backward(onehot y) -> probs - y."""

    def forward(self, scores):
        self.p = _softmax(scores)
        return self.p

    def backward(self, y):
        return self.p - y


class SoftmaxLayerMean(SoftmaxLayer):
    def backward(self, y):
        return (self.p - y) / len(y)


class SoftmaxLayerForgetsY(SoftmaxLayer):
    def backward(self, y):
        return self.p


@pytest.mark.parametrize(
    "layer,scale,verdict",
    [
        (SoftmaxLayer(), "unbatch", "pass"),
        (SoftmaxLayerMean(), None, "pass"),
        (SoftmaxLayerForgetsY(), None, "backward"),
    ],
    ids=["probs_minus_y", "divided_by_n", "forgets_y"],
)
def test_softmax_layer_style(layer, scale, verdict):
    s, y, _, _ = _data()
    li = infer_loss(layer, s, y)
    assert li.status == "exact" and li.spec == tg.SoftmaxCrossEntropy(), li.summary()
    assert li.wrap_kwargs["style"] == "softmax" and li.wrap_kwargs.get("grad_scale") == scale
    assert tg.check_loss(layer, scores=s, y=y).layer("(loss)").verdict == verdict


class NeedsMargin:
    def forward(self, scores, y, margin):
        return 0.0

    def backward(self):
        return None


def returns_value_only(s, y):
    return 1.0


@pytest.mark.parametrize(
    "fn,scores,y,match",
    [
        (42, None, None, "is not a loss"),
        (NoMethods(), None, None, "is not a loss"),
        (dlfs.SoftmaxWithLoss, None, None, "not an instance"),
        (NeedsMargin(), None, None, r"requires \['margin'\]"),
        (returns_value_only, None, None, "must return \\(loss, dscores\\)"),
        (cs231n_net.softmax_loss, np.zeros((2, 3, 4)), None, "scores must be a float array \\(N, K\\)"),
        (cs231n_net.softmax_loss, np.zeros(5), None, "scores must be a float array \\(N, K\\)"),
        (cs231n_net.softmax_loss, None, np.arange(4) + 3, "neither labels in \\[0, 5\\)"),
        (cs231n_net.softmax_loss, None, np.zeros((4, 2)), "expected labels \\(4,\\) or targets \\(4, 5\\)"),
    ],
    ids=[
        "int",
        "no_methods",
        "class",
        "unknown_argument",
        "value_only",
        "scores_3d",
        "scores_1d",
        "labels_out_of_range",
        "targets_wrong_shape",
    ],
)
def test_errors_are_clear(fn, scores, y, match):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 5)) if scores is None else scores
    t = rng.integers(0, 5, size=4) if y is None else y
    with pytest.raises(AdapterError, match=match):
        infer_loss(fn, s, t)


def test_check_loss_refuses_options_for_a_wrapped_loss():
    wrapped = tg.wrap_loss(cs231n_net.softmax_loss, tg.SoftmaxCrossEntropy())
    with pytest.raises(AdapterError, match="already wrapped"):
        tg.check_loss(wrapped, input_shape=(4, 5), forward_kwargs={"reg": 0.0})


def test_check_loss_without_spec_needs_scores():
    with pytest.raises(AdapterError, match="scores= \\(N, K\\) or input_shape"):
        tg.check_loss(cs231n_net.softmax_loss)


# --------------------------------------------------------------------------- CS231n loss models


MODELS = {
    "cs231n_two_layer_net": (
        lambda m, seed: m.TwoLayerNet(input_dim=6, hidden_dim=8, num_classes=4, seed=seed),
        (4, 6),
        wrap_cs231n_two_layer_net,
        TWO_LAYER,
        IN_OUT,
    ),
    "dotted_names_net": (lambda m, seed: m.TanhNet(seed=seed), (4, 5), wrap_dotted_names_net, TANH_NET, tg.Layout()),
}
MODEL_BUGS = [pytest.param(name, bug, id=f"{name}-{bug.name}") for name in MODELS for bug in BY_NAME[name].bugs]


@pytest.mark.parametrize("name", list(MODELS))
def test_real_code_loss_model_is_inferred_exactly(name):
    make, shape, _, spec, layout = MODELS[name]
    inference = infer_loss_model(make(BY_NAME[name].code, 0), np.random.default_rng(0).normal(size=shape))
    assert inference.status == "exact", str(inference)
    assert inference.spec == spec and inference.layout == layout
    assert inference.layers[0].wrap_kwargs["loss"] == tg.SoftmaxCrossEntropy()


@pytest.mark.parametrize("name", list(MODELS))
def test_correct_loss_model_passes_without_spec_and_is_untouched(name):
    make, shape, *_ = MODELS[name]
    model = make(BY_NAME[name].code, 1)
    before = {k: v.copy() for k, v in model.params.items()}
    report = tg.check_network(model, input_shape=shape, seed=1)
    assert report.ok and report.inferred["status"] == "exact", str(report)
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)


@pytest.mark.parametrize("name,bug", MODEL_BUGS)
def test_loss_model_bug_verdict_equals_the_hand_written_wraps(name, bug):
    make, shape, wrap, *_ = MODELS[name]
    by_hand = wrap(bug.code, 0).layer("(network)")
    report = tg.check_network(make(bug.code, 0), input_shape=shape, seed=0)
    entry = report.layer("(network)")
    assert entry.verdict == by_hand.verdict == bug.verdict, str(report)
    assert [(t.name, t.ok) for t in entry.tensors] == [(t.name, t.ok) for t in by_hand.tensors]


class Mlp:
    """CS231n-style model with a chosen activation and loss; W stored (out, in) under 'Wi';
    gradients when ``dact`` (the activation's derivative from its output) is given."""

    def __init__(self, sizes, act, loss="ce", seed=0, dact=None, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.act, self.kind, self.dact = act, loss, dact
        self.params = {}
        for i, (a, b) in enumerate(itertools.pairwise(sizes), 1):
            self.params[f"W{i}"] = (rng.normal(size=(b, a)) / np.sqrt(a)).astype(dtype)
            self.params[f"b{i}"] = (0.1 * rng.normal(size=b)).astype(dtype)

    def loss(self, X, y=None):
        hs = [X.reshape(len(X), -1)]
        n = len(self.params) // 2
        for i in range(1, n + 1):
            z = hs[-1] @ self.params[f"W{i}"].T + self.params[f"b{i}"]
            hs.append(self.act(z) if i < n else z)
        if y is None:
            return hs[-1]
        if self.kind == "mse":
            return ((hs[-1] - y) ** 2).sum(), {}  # the value is what inference reads
        p = _softmax(hs[-1])
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        grads = {}
        for i in range(n, 0, -1) if self.dact else ():
            grads[f"W{i}"], grads[f"b{i}"] = d.T @ hs[i - 1], d.sum(axis=0)
            d = (d @ self.params[f"W{i}"]) * self.dact(hs[i - 1]) if i > 1 else d
        return -np.log(p[np.arange(len(y)), y]).mean(), grads


def test_loss_model_checks_on_a_4d_input_and_in_float32():
    model = Mlp((4, 6, 5, 3), np.tanh, dact=lambda a: 1 - a**2)
    report = tg.check_network(model, x=np.random.default_rng(0).normal(size=(3, 1, 2, 2)))
    assert report.ok and report.inferred["status"] == "exact", str(report)
    model32 = Mlp((4, 6, 3), np.tanh, dact=lambda a: 1 - a**2, dtype=np.float32)
    report = tg.check_network(model32, x=np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    assert report.ok and report.inferred["status"] == "exact", str(report)


@pytest.mark.parametrize(
    "act,layer,loss,shape",
    [
        (lambda h: np.where(h > 0, h, 0.1 * h), tg.LeakyReLU("leakyrelu", 0.1), "ce", (5, 4)),
        (lambda h: 1 / (1 + np.exp(-h)), tg.Sigmoid("sigmoid"), "mse", (5, 4)),
        (np.tanh, tg.Tanh("tanh"), "ce", (3, 1, 2, 2)),
    ],
    ids=["leaky_ce", "sigmoid_mse_sum", "tanh_4d_input"],
)
def test_activation_and_loss_from_the_value(act, layer, loss, shape):
    model = Mlp((4, 6, 5, 3), act, loss)
    inference = infer_loss_model(model, np.random.default_rng(1).normal(size=shape))
    assert inference.status == "exact", str(inference)
    kinds = [type(s).__name__ for s in inference.spec.layers]
    assert kinds[-5:] == ["Linear", type(layer).__name__, "Linear", type(layer).__name__, "Linear"]
    assert inference.spec.layers[-4] == dataclasses.replace(layer, name=kinds[-4].lower() + "1")
    assert inference.layout == tg.Layout()
    assert inference.layers[0].wrap_kwargs["loss"] == (
        tg.MSE(reduction="sum") if loss == "mse" else tg.SoftmaxCrossEntropy()
    )
    assert ("Flatten" in kinds) == (len(shape) == 4)


def test_unknown_activation_is_unmatched():
    model = Mlp((4, 6, 3), lambda h: np.log1p(np.exp(h)))  # softplus: no candidate
    inference = infer_loss_model(model, np.random.default_rng(1).normal(size=(5, 4)))
    assert inference.status == "unmatched"
    assert "nothing reproduces the loss value" in inference.layers[0].why[-1]


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda m: setattr(m, "reg", 0.5), "reg = 0.5: set it to 0"),
        (lambda m: m.params.update(W3=np.zeros((2, 3, 3, 3))), "not a fully connected layer's weight or bias"),
        (lambda m: m.params.update(W2=np.zeros((5, 7))), "do not chain from the input's 4 features"),
    ],
    ids=["reg_on", "conv_weight", "no_chain"],
)
def test_loss_model_errors(change, match):
    model = Mlp((4, 6, 3), np.tanh)
    change(model)
    with pytest.raises(AdapterError, match=match):
        infer_loss_model(model, np.zeros((5, 4)))


def test_loss_model_input_and_kind_errors():
    with pytest.raises(AdapterError, match="is not a CS231n-style model"):
        infer_loss_model(object(), np.zeros((5, 4)))
    with pytest.raises(AdapterError, match=r"x must be a batch \(N, D\)"):
        infer_loss_model(Mlp((4, 6, 3), np.tanh), np.zeros(4))
    with pytest.raises(AdapterError, match="raised on x of shape"):
        infer_loss_model(Mlp((4, 6, 3), lambda h: h[:, 99]), np.zeros((5, 4)))
    with pytest.raises(AdapterError, match="are not inferred for it"):
        tg.infer(Mlp((4, 6, 3), np.tanh), np.zeros((5, 4)), layout=tg.Layout())


# --------------------------------------------------------------------------- tg.infer and the checks' dispatch


def test_infer_dispatches_losses_and_loss_models():
    from harness.inference.api import is_loss
    from realcode import quirks

    s, y, _, _ = _data()
    inference = tg.infer(cs231n_net.softmax_loss, s, y=y)
    assert isinstance(inference, InferredLoss) and inference.exact
    assert "tg.wrap_loss(softmax_loss, tg.SoftmaxCrossEntropy()" in inference.to_python("softmax_loss")
    assert tg.infer(dlfs.SoftmaxWithLoss(), s, y=y).layers[0].spec == tg.SoftmaxCrossEntropy(log_eps=1e-7)
    model = tg.infer(cs231n_net.TwoLayerNet(6, 8, 4), input_shape=(4, 6))
    assert model.exact and model.spec == TWO_LAYER
    assert not is_loss(quirks.DenseTraining(4, 3))  # forward(x, training): a layer with a flag, not a loss


def test_a_loss_given_to_check_layer_is_sent_to_check_loss():
    s, _, _, _ = _data()
    with pytest.raises(AdapterError, match=r"softmax_loss is a loss .* check it with harness\.check_loss"):
        tg.check_layer(cs231n_net.softmax_loss, x=s)


class ValueSummed(cs231n_net.TwoLayerNet):
    def loss(self, X, y=None):
        out = super().loss(X, y)
        return out if y is None else (out[0] * len(y), out[1])


class GradsSummed(cs231n_net.TwoLayerNet):
    def loss(self, X, y=None):
        out = super().loss(X, y)
        return out if y is None else (out[0], {k: v * len(y) for k, v in out[1].items()})


@pytest.mark.parametrize("cls,verdict", [(ValueSummed, "forward"), (GradsSummed, "backward")], ids=["value", "grads"])
def test_loss_model_reductions_that_disagree_are_ambiguous(cls, verdict):
    """The value and the gradients of different reductions: ambiguous, checked as the mean,
    the verdict the hand-written wrap (a mean) gives."""
    report = tg.check_network(cls(6, 8, 4), input_shape=(4, 6))
    by_hand = tg.check_network(
        tg.wrap_loss_model(cls(6, 8, 4), TWO_LAYER, loss=tg.SoftmaxCrossEntropy(), layout=IN_OUT), input_shape=(4, 6)
    )
    assert report.inferred["status"] == "ambiguous" and "checked as the mean" in report.inferred["layers"][0]
    assert report.layer("(network)").verdict == by_hand.layer("(network)").verdict == verdict
