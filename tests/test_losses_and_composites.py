"""Losses checked alone (check_loss, wrap_loss's forward_kwargs), a two-layer net's
loss_and_grads(x, y) with dotted names (wrap_loss_model), and composite objects — a
ResNet-style basic block holding conv / batch-norm sub-objects, a stack holding ``.layers`` —
wrapped with no params= / grads=. The code is written the way from-scratch code is written:
CS231n's softmax_loss, im2col with fancy indexing, np.add.at, running statistics updated in
place. Correct versions pass; buggy ones are found on the right side; every misuse is a
clear error naming the option."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import seed_list

import harness as tg
from harness import spec as S
from harness.adapters.layer import AdapterError
from harness.target import TargetError, run

from scratch_layers import BasicBlock, BatchNorm, Conv, Stack

SCE = S.SoftmaxCrossEntropy()

# ------------------------------------------------------------------ losses


def softmax_loss(x, y, bug=False):
    """CS231n: loss and gradient of softmax cross-entropy, mean over the batch."""
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    probs, n = np.exp(log_probs), x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    return loss, dx if bug else dx / n  # the bug: forgets the mean's 1/N


class CrossEntropyLoss:
    """forward(scores, y, reg, weights) -> data loss + L2 penalty; backward() -> dscores."""

    def __init__(self, bug=False):
        self.bug = bug

    def forward(self, scores, y, reg, weights=()):
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        self.probs, self.y = e / e.sum(axis=1, keepdims=True), y
        data = -np.log(self.probs[range(len(y)), y]).mean()
        return data + 0.5 * reg * sum(np.sum(w * w) for w in weights)

    def backward(self):
        d = self.probs.copy()
        if not self.bug:  # the bug: the one-hot is never subtracted
            d[range(len(self.y)), self.y] -= 1
        return d / len(self.y)


def mse_loss(pred, target):
    diff = pred - target
    return np.mean(diff ** 2), 2 * diff / diff.size


@pytest.mark.parametrize("seed", seed_list(20))
def test_check_loss_passes_the_correct_losses(seed: int) -> None:
    obj = tg.wrap_loss(CrossEntropyLoss(), SCE, style="object", forward_kwargs={"reg": 0.0})
    for report in (tg.check_loss(softmax_loss, SCE, input_shape=(6, 5), seed=seed),
                   tg.check_loss(obj, input_shape=(7, 3), seed=seed),
                   tg.check_loss(mse_loss, S.MSE(), input_shape=(4, 3), seed=seed)):
        assert [entry.name for entry in report.layers] == ["(loss)"]
        assert report.ok and report.layers[0].verdict == "pass", str(report)


def test_check_loss_finds_the_buggy_losses_on_the_backward() -> None:
    fn = tg.check_loss(lambda x, y: softmax_loss(x, y, bug=True), SCE, input_shape=(6, 5))
    assert fn.layers[0].verdict == "backward" and any("batch size" in d for d in fn.layers[0].diagnosis)
    obj = tg.check_loss(tg.wrap_loss(CrossEntropyLoss(bug=True), SCE, style="object", forward_kwargs={"reg": 0.0}),
                        input_shape=(6, 5))
    assert obj.layers[0].verdict == "backward"
    assert [t.name for t in obj.layers[0].tensors if not t.ok] == ["scores"]


def test_check_loss_takes_given_scores_and_labels_and_wraps_a_raw_object() -> None:
    scores = np.random.default_rng(3).normal(size=(5, 4)) * 2
    y = np.array([0, 3, 3, 1, 2])
    obj = CrossEntropyLoss()
    obj.forward = lambda s, t, _f=obj.forward: _f(s, t, 0.0)  # an object whose forward takes (scores, y)
    report = tg.check_loss(obj, SCE, scores=scores, y=y)
    assert report.ok and np.array_equal(obj.y, y)  # style="object" chosen for an object with forward/backward


def test_forward_kwargs_reach_the_loss_and_are_needed() -> None:
    with pytest.raises(AdapterError, match=r"loss: CrossEntropyLoss.forward\(\) cannot be called with \(scores, y\): "
                                           r"missing a required argument: 'reg'; pass it with wrap_loss\(\.\.\., "
                                           r"forward_kwargs=\{'reg': \.\.\.\}\)"):
        tg.check_loss(tg.wrap_loss(CrossEntropyLoss(), SCE, style="object"), input_shape=(4, 3))
    with pytest.raises(AdapterError, match=r"softmax_loss\(\) cannot be called with \(scores, y, reg=\): got an "
                                           r"unexpected keyword argument 'reg'; the call is fn\(scores, y, "):
        tg.check_loss(tg.wrap_loss(softmax_loss, SCE, forward_kwargs={"reg": 0.0}), input_shape=(4, 3))
    kw = tg.wrap_loss(lambda x, y, reduction: softmax_loss(x, y), SCE, forward_kwargs={"reduction": "mean"})
    assert tg.check_loss(kw, input_shape=(4, 3)).ok
    with pytest.raises(AdapterError, match=r"forward_kwargs must be a dict of keyword arguments for the loss's "
                                           r"forward, e.g. forward_kwargs=\{'reg': 0.0\}, got tuple"):
        tg.wrap_loss(CrossEntropyLoss(), SCE, style="object", forward_kwargs=("reg", 0.0))


def test_check_loss_misuse_is_a_clear_error() -> None:
    inferred = tg.check_loss(softmax_loss, input_shape=(4, 3))  # no spec: inferred (tests/test_infer_loss.py)
    assert inferred.ok and inferred.inferred["status"] == "exact"
    with pytest.raises(AdapterError, match="spec must be a loss spec such as harness.SoftmaxCrossEntropy"):
        tg.check_loss(softmax_loss, S.Linear("fc", 3, 3), input_shape=(4, 3))
    with pytest.raises(AdapterError, match=r"the loss was wrapped for SoftmaxCrossEntropy\(\) but "
                                           r"spec=MSE\(\); pass one of them"):
        tg.check_loss(tg.wrap_loss(softmax_loss, SCE), S.MSE(), input_shape=(4, 3))
    with pytest.raises(AdapterError, match=r"check_loss needs scores= \(N, K\) or input_shape=\(N, K\)"):
        tg.check_loss(softmax_loss, SCE)
    with pytest.raises(AdapterError, match=r"a int is neither a function fn\(scores, y\) -> \(loss, dscores\) nor"):
        tg.check_loss(3, SCE, input_shape=(4, 3))
    with pytest.raises(tg.SpecError, match=r"labels must be integers in \[0, 3\)"):
        tg.check_loss(softmax_loss, SCE, input_shape=(4, 3), y=np.array([0, 1, 2, 3]))


def test_a_loss_as_the_target_of_trigrad_check() -> None:
    assert run({"check": softmax_loss, "spec": SCE, "input_shape": (6, 5)}).ok
    scores = np.random.default_rng(1).normal(size=(4, 3))
    wrapped = tg.wrap_loss(CrossEntropyLoss(), SCE, style="object", forward_kwargs={"reg": 0.0})
    report = run({"check": wrapped, "scores": scores, "y": np.array([2, 0, 1, 1])})
    assert report.ok and report.layers[0].name == "(loss)"
    raw = {"check": CrossEntropyLoss(bug=True), "spec": SCE, "x": scores,
           "options": {"style": "object", "forward_kwargs": {"reg": 0.0}}}
    assert run(raw).layers[0].verdict == "backward"
    with pytest.raises(TargetError, match=r"'scores' is for a loss check"):
        run({"check": CrossEntropyLoss(), "spec": S.ReLU("r"), "scores": scores})
    with pytest.raises(TargetError, match=r"both 'scores' and 'x'"):
        run({"check": wrapped, "scores": scores, "x": scores})
    with pytest.raises(TargetError, match=r"a loss needs its scores: return \{'check': loss, 'scores': scores\}"):
        run(wrapped)
    with pytest.raises(TargetError, match=r"'options' \['style'\] are wrap_loss keywords; the loss is already wrapped"):
        run({"check": wrapped, "scores": scores, "options": {"style": "object"}})


# ------------------------------------------------------------------ loss_and_grads(x, y)

NET = S.Sequential([S.Linear("fc1", 6, 5), S.ReLU("relu"), S.Linear("fc2", 5, 4)])
IN_OUT = tg.Layout(linear="in_out")


def two_layer_net(seed=0, bug=False, names=None, grads_as=None, raise_on=None):
    """A two-layer net closed over its weights; grads keyed by dotted names (or ``names``)."""
    rng = np.random.default_rng(seed)
    W1, b1 = rng.standard_normal((6, 5)) / 2, rng.standard_normal(5) / 4
    W2, b2 = rng.standard_normal((5, 4)) / 2, rng.standard_normal(4) / 4
    calls = [0]

    def loss_and_grads(X, y):
        calls[0] += 1
        if calls[0] == raise_on:
            W1[...] *= 2  # the user's code writes into its weights, then raises
            raise FloatingPointError("the loss diverged")
        h = X @ W1 + b1
        a = np.maximum(h, 0)
        loss, ds = softmax_loss(a @ W2 + b2, y)
        da = ds @ W2.T
        dh = da if bug else da * (h > 0)  # the bug: ReLU's mask forgotten
        grads = [X.T @ dh, dh.sum(axis=0), a.T @ ds, ds.sum(axis=0)]
        if grads_as == "list":
            return loss, grads
        keys = names or ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        return loss, dict(zip(grads_as or keys, grads))

    params = dict(zip(names or ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], [W1, b1, W2, b2]))
    return loss_and_grads, params


@pytest.mark.parametrize("seed", seed_list(5))
def test_loss_and_grads_with_dotted_names_passes_and_is_untouched(seed: int) -> None:
    fn, params = two_layer_net(seed)
    before = {k: v.copy() for k, v in params.items()}
    model = tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT)
    report = tg.check_network(model, input_shape=(8, 6), seed=seed)
    assert report.ok and report.layers[0].name == "(network)", str(report)
    assert {t.name for t in report.layers[0].tensors} == {"loss", *params}
    assert all(np.array_equal(before[k], v) for k, v in params.items())


def test_loss_and_grads_by_the_users_names_and_its_bug() -> None:
    for names in (["W1", "b1", "W2", "b2"], ["w_in", "b_in", "w_out", "b_out"]):  # CS231n's, or any in forward order
        fn, params = two_layer_net(1, names=names)
        model = tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT)
        assert tg.check_network(model, input_shape=(8, 6)).ok
    assert model.in_order == {"w_in": "fc1.weight", "b_in": "fc1.bias", "w_out": "fc2.weight", "b_out": "fc2.bias"}
    swapped = {"w_out": params["w_out"], "b_out": params["b_out"], "w_in": params["w_in"], "b_in": params["b_in"]}
    with pytest.raises(AdapterError, match=r"params \['w_out', 'b_out', 'w_in', 'b_in'\] were read in forward order as "
                                           r"\['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'\], but .*; key them "
                                           r"by the canonical names instead"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params=swapped, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"params keys \['w_in', 'b_in'\] are neither canonical nor CS231n names; "
                                           r"read in forward order they must give one array per trainable parameter"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params={"w_in": params["w_in"], "b_in": params["b_in"]}, layout=IN_OUT)
    fn, params = two_layer_net(1, bug=True)
    entry = tg.check_network(tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT),
                             input_shape=(8, 6)).layers[0]
    assert entry.verdict == "backward"
    assert {t.name for t in entry.tensors if not t.ok} == {"fc1.weight", "fc1.bias"}


def test_loss_and_grads_that_raises_leaves_the_arrays_bit_for_bit() -> None:
    fn, params = two_layer_net(2, raise_on=3)
    before = {k: v.copy() for k, v in params.items()}
    entry = tg.check_network(tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT),
                             input_shape=(8, 6)).layers[0]
    assert entry.verdict == "error" and "FloatingPointError: the loss diverged" in entry.message
    assert all(np.array_equal(before[k], v) for k, v in params.items())


def test_loss_and_grads_errors_name_the_fix() -> None:
    fn, params = two_layer_net(0, grads_as=["fc1.wieght", "fc1.bias", "fc2.weight", "fc2.bias"])
    model = tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"grads has the key 'fc1.wieght', which names no parameter \(did you "
                                           r"mean 'fc1.weight'\?\)"):
        tg.check_network(model, input_shape=(8, 6))
    fn, params = two_layer_net(0, grads_as=["fc1.weight", "fc1.bias", "fc2.weight"])
    with pytest.raises(AdapterError, match=r"grads has no 'fc2.bias' \(the gradient of 'fc2.bias'\)"):
        tg.check_network(tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT), input_shape=(8, 6))
    fn, params = two_layer_net(0, grads_as="list")
    entry = tg.check_network(tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT),
                             input_shape=(8, 6)).layers[0]
    assert entry.verdict == "error"
    assert "loss_and_grads(x, y) must return grads as a dict keyed like the params (e.g. {'fc1.weight': dW}), " \
           "got list" in entry.message
    with pytest.raises(AdapterError, match=r"loss_and_grads\(x, y\) computes with arrays it closes over; pass them "
                                           r"as params=\{name: array\}"):
        tg.wrap_loss_model(fn, NET, loss=SCE, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"params key 'fc3.weight' is not a parameter of the spec \(did you mean"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params={**params, "fc3.weight": params["fc1.weight"]}, layout=IN_OUT)
    frozen = {**params, "fc1.bias": np.broadcast_to(params["fc1.bias"], (5,))}
    with pytest.raises(AdapterError, match=r"params\['fc1.bias'\] is a ndarray that cannot be written in place"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params=frozen, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"no location given for \['fc2.bias'\]; map every trainable parameter"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params={k: v for k, v in params.items() if k != "fc2.bias"}, layout=IN_OUT)


# ------------------------------------------------------------------ composite objects


def block_spec(cin=2, cout=3, stride=2, shortcut=None):
    return S.Residual("block", [S.Conv2d("conv1", cin, cout, 3, stride, 1, bias=False), S.BatchNorm2d("bn1", cout),
                                S.ReLU("relu1"), S.Conv2d("conv2", cout, cout, 3, 1, 1, bias=False),
                                S.BatchNorm2d("bn2", cout)],
                      shortcut=shortcut or S.Conv2d("shortcut", cin, cout, 1, stride, bias=False), post=[S.ReLU("relu2")])


def arrays(obj):
    """Copies of every parameter and running statistic of the block's sub-layers."""
    names = ("W", "gamma", "beta", "running_mean", "running_var")
    return [getattr(sub, k).copy() for sub in vars(obj).values() for k in names if hasattr(sub, k)]


@pytest.mark.parametrize("seed", seed_list(5))
def test_basic_block_finds_its_sub_layers_and_passes_untouched(seed: int) -> None:
    block = BasicBlock(seed=seed)
    wrapped = tg.wrap_layer(block, block_spec())
    assert {k: r.path for k, r in wrapped.params.items() if k.startswith("bn1")} == {
        "bn1.weight": "bn1.gamma", "bn1.bias": "bn1.beta", "bn1.running_mean": "bn1.running_mean",
        "bn1.running_var": "bn1.running_var"}
    before = arrays(block)
    report = tg.check_layer(wrapped, input_shape=(4, 2, 6, 6), seed=seed)
    assert report.ok, str(report)
    assert {t.name for t in report.layers[0].tensors} >= {"conv1.weight", "bn2.bias", "shortcut.weight"}
    after = arrays(block)
    assert len(before) == 11 and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert wrapped.grads["conv2.weight"].path == "conv2.dW" and wrapped.grads["bn1.weight"].path == "bn1.dgamma"


@pytest.mark.parametrize("bug", ["shortcut", pytest.param("bn", marks=pytest.mark.slow)])
def test_basic_block_bugs_are_found_on_the_backward(bug: str) -> None:
    entry = tg.check_layer(BasicBlock(bug=bug), block_spec(), input_shape=(4, 2, 6, 6)).layers[0]
    assert entry.verdict == "backward"
    if bug == "shortcut":
        assert [t.name for t in entry.tensors if not t.ok] == ["input"]
    else:
        assert {t.name for t in entry.tensors if not t.ok} >= {"input", "conv2.weight"}


def test_a_nested_shortcut_held_as_a_list_and_the_block_as_a_target() -> None:
    block = BasicBlock(cout=4, seed=3)
    conv, bn = block.shortcut, BatchNorm(4)
    block.shortcut = [conv, bn]
    block.shortcut_forward = lambda x: bn.forward(conv.forward(x))
    spec = block_spec(cout=4, shortcut=S.Sequential([S.Conv2d("conv", 2, 4, 1, 2, bias=False), S.BatchNorm2d("bn", 4)],
                                                    name="shortcut"))

    class Downsampled(BasicBlock):
        def forward(self, x):
            out = self.relu1.forward(self.bn1.forward(self.conv1.forward(x)))
            return self.relu2.forward(self.bn2.forward(self.conv2.forward(out)) + self.shortcut_forward(x))

        def backward(self, dout):
            d = self.relu2.backward(dout)
            dx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
            return dx + self.shortcut[0].backward(self.shortcut[1].backward(d))

    block.__class__ = Downsampled
    assert tg.wrap_layer(block, spec).params["shortcut.bn.weight"].path == "shortcut[1].gamma"
    report = run({"check": block, "spec": spec, "input_shape": (4, 2, 6, 6)})
    assert report.ok and report.layers[0].name == "block", str(report)


STACK = S.Sequential([S.Conv2d("conv", 2, 4, 3, padding=1, bias=False), S.ReLU("relu"), S.GlobalAvgPool2d("gap"),
                      S.Linear("fc", 4, 3)], name="stack")


@pytest.mark.parametrize("params_only", [False, True])
def test_a_stack_holding_layers_passes(params_only: bool) -> None:
    wrapped = tg.wrap_layer(Stack(params_only=params_only), STACK, layout=IN_OUT)
    assert wrapped.params["fc.weight"].path == ("layers[1].W" if params_only else "layers[3].W")
    for seed in range(3):
        report = tg.check_layer(wrapped, input_shape=(3, 2, 5, 5), seed=seed)
        assert report.ok, str(report)
    assert wrapped.grads["fc.bias"].path == ("layers[1].db" if params_only else "layers[3].db")


def test_composite_misuse_is_a_clear_error_naming_params() -> None:
    stack = Stack()
    stack.conv = Conv(2, 4, 3, 1, 1, np.random.default_rng(9))  # not the object in .layers
    with pytest.raises(AdapterError, match=r"layer 'stack': its layer 'conv' could be conv \(a Conv\) or layers\[0\] "
                                           r"\(a Conv\), two different objects; pass params="):
        tg.wrap_layer(stack, STACK, layout=IN_OUT)
    stack.conv = stack.layers[0]  # the same object under both: no doubt
    assert tg.wrap_layer(stack, STACK, layout=IN_OUT).params["conv.weight"].path == "conv.W"
    short = Stack()
    short.layers = short.layers[:3]
    with pytest.raises(AdapterError, match=r"cannot tell which object is 'conv': layers holds 3 objects, but 'stack' "
                                           r"has 4 layers \(2 with parameters\); it should hold them in forward order"):
        tg.wrap_layer(short, STACK, layout=IN_OUT)
    block = BasicBlock()
    block.conv2 = type("Odd", (), {"kernel_weights": block.conv2.W})()
    with pytest.raises(AdapterError, match=r"cannot find parameter 'conv2.weight' on conv2 \(a Odd\) \(tried conv2.W, "
                                           r"conv2.params\['W'\].*pass params=\{'conv2.weight': \"conv2.W\"\}"):
        tg.wrap_layer(block, block_spec())
    declared = tg.wrap_layer(block, block_spec(), params={"conv2.weight": "conv2.kernel_weights"})
    assert declared.params["conv2.weight"].path == "conv2.kernel_weights"


def test_the_rarer_misuses_are_clear_errors_too() -> None:
    with pytest.raises(AdapterError, match=r"scores has shape \(4, 3\) but input_shape=\(5, 3\); pass one of them"):
        tg.check_loss(softmax_loss, SCE, scores=np.zeros((4, 3)), input_shape=(5, 3))
    with pytest.raises(TargetError, match=r"'loss' is for networks"):
        run({"check": softmax_loss, "spec": SCE, "input_shape": (4, 3), "loss": tg.wrap_loss(softmax_loss, SCE)})
    with pytest.raises(TargetError, match=r"'layout' is for layers and networks"):
        run({"check": softmax_loss, "spec": SCE, "input_shape": (4, 3), "layout": IN_OUT})
    fn, params = two_layer_net(0, names=["W1", "b1", "W2", "b2"])
    with pytest.raises(AdapterError, match=r"params keys 'W1' and 'fc1.weight' both name 'fc1.weight'"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params={**params, "fc1.weight": params["W1"]}, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"a loss_and_grads function gives no scores"):
        tg.wrap_loss_model(fn, NET, loss=SCE, params=params, layout=IN_OUT).scores(np.zeros((2, 6)))
    model = type("Model", (), {"params": params, "loss": lambda self, X, y=None: 0.0})()
    with pytest.raises(AdapterError, match=r"params\['fc1.weight'\] is a ndarray; for a model with a loss\(\) method "
                                           r"params= says where each array lives on it"):
        tg.wrap_loss_model(model, NET, loss=SCE, params={"fc1.weight": params["W1"]}, layout=IN_OUT)
    both = S.Residual("res", [S.Conv2d("conv1", 2, 2, 3, padding=1), S.ReLU("relu"), S.Conv2d("conv2", 2, 2, 3, padding=1)],
                      shortcut=S.Conv2d("shortcut", 2, 2, 1))
    rng = np.random.default_rng(0)
    three = Stack()
    three.layers = [Conv(2, 2, 3, 1, 1, rng), BatchNorm(2), Conv(2, 2, 3, 1, 1, rng)]
    with pytest.raises(AdapterError, match=r"layers holds 3 objects, which could be the layers \['conv1', 'conv2', "
                                           r"'shortcut'\] or \['conv1', 'relu', 'conv2'\] of 'res'"):
        tg.wrap_layer(three, both)
    bare = type("Bare", (), {"forward": lambda self, x: x, "backward": lambda self, d: d})()
    with pytest.raises(AdapterError, match=r"cannot find parameter 'conv.weight' on Bare \(tried W, .*; nor is there a "
                                           r"sub-object for 'conv' \(an attribute named 'conv', or a .layers list"):
        tg.wrap_layer(bare, STACK, layout=IN_OUT)
