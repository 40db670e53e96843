"""Both directions between specs and real torch modules: to_module and from_torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from harness import spec as S  # noqa: E402
from reference_models import architectures as A  # noqa: E402
from reference_models import build  # noqa: E402
from reference_models.torch_bridge import from_torch, to_module  # noqa: E402


def mixed_net() -> S.Sequential:
    return S.Sequential([
        S.Conv2d("conv1", 3, 8, 3, padding=((0, 1), (2, 0))),
        S.BatchNorm2d("bn1", 8),
        S.BatchNorm2d("bnf2", 8, over="feature"),
        S.LeakyReLU("act", 0.2),
        S.Residual(
            "res",
            [S.Conv2d("conv1", 8, 16, 3, stride=2, padding="same", groups=2), S.ELU("elu", 0.7)],
            shortcut=S.Conv2d("sc", 8, 16, 1, stride=2),
            post=[S.GELU("gelu", "tanh")],
        ),
        S.AvgPool2d("pool", 3, 2, 1, count_include_pad=False),
        S.MaxPool2d("mpool", 2, 1, dilation=1),
        S.GlobalAvgPool2d("gap", keepdims=True),
        S.Flatten("flat"),
        S.LayerNorm("ln", 16),
        S.Dropout("drop", 0.3),
        S.Linear("fc", 16, 6),
        S.BatchNorm1d("bn2", 6, training=False),
        S.BatchNorm1d("bnf", 6, over="feature"),
        S.Sigmoid("sig"),
        S.Softmax("soft", 1),
    ])


def test_to_module_matches_reference_and_round_trips() -> None:
    spec = mixed_net()
    x = np.random.default_rng(0).normal(size=(3, 3, 11, 12))
    params = S.init_params(spec, x.shape, seed=1)
    module = to_module(spec, params)
    keys = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    assert keys == list(S.named_params(spec, x.shape))

    back_spec, back_params = from_torch(module)  # before any forward updates running stats
    assert back_spec == spec
    assert set(back_params) == set(params)
    assert all(np.array_equal(back_params[k], params[k]) for k in params)

    y = module(torch.tensor(x)).detach().numpy()
    ref = build("torch", spec).forward(params, x).output
    assert np.array_equal(y, ref)


def test_named_root_keeps_its_prefix() -> None:
    spec = S.Sequential([S.Linear("fc", 4, 2)], name="head")
    params = S.init_params(spec, (2, 4))
    assert list(to_module(spec, params).state_dict()) == ["head.fc.weight", "head.fc.bias"]


@pytest.mark.parametrize("padding", ["same", ((0, 1), (2, 0))])
def test_padded_conv_takes_an_unbatched_input_like_nn_conv2d(padding) -> None:
    # SamePadConv2d computed "same" padding from x.shape[2:]: for a (C, H, W) input that is
    # (W,), and it raised IndexError where nn.Conv2d (and F.pad, on the last two axes) take it
    spec = S.Sequential([S.Conv2d("conv", 2, 3, 3, stride=2, padding=padding)])
    x = np.random.default_rng(0).normal(size=(1, 2, 7, 8))
    module = to_module(spec, S.init_params(spec, x.shape, seed=1))
    batched = module(torch.tensor(x)).detach().numpy()
    unbatched = module(torch.tensor(x[0])).detach().numpy()
    assert unbatched.shape == batched.shape[1:]
    np.testing.assert_allclose(unbatched, batched[0], rtol=1e-12, atol=1e-12)


def test_to_module_missing_parameter_is_named() -> None:
    spec = S.Sequential([S.Linear("fc", 4, 2)])
    with pytest.raises(S.SpecError, match=r"no values given for parameters \['fc.bias'\]"):
        to_module(spec, {"fc.weight": np.zeros((2, 4))})


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, as people copy it (one ReLU module used twice, `+=`)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.layer1(x)
        return self.fc(torch.flatten(x.mean((2, 3), keepdim=True), 1))


def test_from_torch_traces_custom_modules_and_residuals() -> None:
    torch.manual_seed(0)
    module = TinyResNet().double()
    spec, params = from_torch(module)
    paths = dict(S.walk(spec))
    assert isinstance(paths["layer1.1"], S.Residual)
    assert paths["layer1.1"].shortcut.name == "downsample"
    assert isinstance(paths["layer1.0"], S.Residual) and paths["layer1.0"].shortcut is None
    assert [p.name for p in paths["layer1.0"].post] == ["relu_2"]  # the reused ReLU, renamed
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    ours = build("torch", spec).forward(params, x).output
    theirs = module(torch.tensor(x)).detach().numpy()  # train mode: batch statistics, as the spec
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-13)


def test_from_torch_resnet_block_matches_known_architecture() -> None:
    block = BasicBlock(8, 16, 2).double()
    spec, params = from_torch(nn.Sequential(block))
    known = A.resnet_basic_block("0", 8, 16, stride=2)
    assert list(S.named_params(spec, (2, 8, 8, 8))) == list(S.named_params(S.Sequential([known]), (2, 8, 8, 8)))
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 8))
    a = build("torch", spec).forward(params, x).output
    b = build("torch", S.Sequential([known])).forward(params, x).output
    assert np.array_equal(a, b)


def test_branch_with_one_module_becomes_the_shortcut() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()

        def forward(self, x):
            return self.a(x) + self.c(self.b(x))

    spec, _ = from_torch(Gated())
    assert spec == S.Residual("", [S.Tanh("b"), S.Sigmoid("c")], shortcut=S.ReLU("a"))
    assert list(S.layer_shapes(spec, (2, 3))) == ["b", "c", "a"]  # the unnamed root is not a layer
    x = np.random.default_rng(0).normal(size=(2, 3))
    expected = np.maximum(x, 0) + 1 / (1 + np.exp(-np.tanh(x)))
    np.testing.assert_allclose(build("torch", spec).forward({}, x).output, expected, rtol=1e-14)


def test_bare_leaf_module_becomes_one_layer_sequential() -> None:
    spec, params = from_torch(nn.Linear(3, 2))
    assert spec == S.Sequential([S.Linear("0", 3, 2)])
    assert set(params) == {"0.weight", "0.bias"}


def test_eval_mode_dropout_and_batchnorm() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    spec, _ = from_torch(m)
    assert spec.layers[1].training is False and spec.layers[2] == S.Dropout("2", 0.5, training=False)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


class TwoAdds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.ReLU(), nn.Tanh()

    def forward(self, x):
        return self.a(x) + x + self.b(x)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ReLU()

    def forward(self, x):
        return x * self.a(x)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ReLU()

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else x


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ReLU()

    def forward(self, x, y):
        return self.a(x)


class LongShortcut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.ELU()

    def forward(self, x):
        return self.d(self.a(x)) + self.c(self.b(x))


@pytest.mark.parametrize(
    "module,message",
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="reflect")), "module '0' (Conv2d) uses padding_mode='reflect'"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), "module '0' (MaxPool2d) uses ceil_mode"),
        (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), "module '0' (AvgPool2d) uses ceil_mode or divisor_override"),
        (nn.Sequential(nn.AdaptiveAvgPool2d(2)), "has output_size=2; only 1"),
        (nn.Sequential(nn.Flatten(0)), "(Flatten) flattens other than"),
        (nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)), "track_running_stats=False"),
        (nn.Sequential(nn.LayerNorm(3, bias=False)), "(LayerNorm) has a weight but no bias"),
        (nn.Sequential(nn.Sequential(nn.PixelShuffle(2))), "module '0.0' (PixelShuffle) is not a layer the spec knows"),
        (Shared(), "applies child 'fc' twice (shared weights"),
        (TwoAdds(), "adds more than once"),
        (Branchy(), "uses call_function <built-in function mul>"),
        (DataDependent(), "could not be traced by torch.fx"),
        (TwoInputs(), "takes 2 inputs"),
        (LongShortcut(), "has a shortcut of several modules"),
    ],
)
def test_from_torch_errors_name_the_module(module, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        from_torch(module)
    assert message in str(err.value)
