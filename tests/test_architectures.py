"""Tests for reference_models.architectures: parameter counts, shapes, layer names, and
agreement with the same networks written by hand in torch.nn (torchvision's structure and
attribute names; torchvision itself is not needed)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.spec import (
    AvgPool2d, BatchNorm2d, MaxPool2d, ReLU, Residual, SpecError, Tanh, init_params, layer_shapes,
    named_params, walk,
)
from reference_models.architectures import (
    ARCHITECTURES, INPUT_SHAPES, lenet5, param_count, resnet18, resnet_basic_block, small_vgg,
)

IMAGENET = (1, 3, 224, 224)
CIFAR = (2, 3, 32, 32)


# --------------------------------------------------------------------------- hand-written torch nets


def _torch_nets():
    """The hand-written torch.nn counterparts (built lazily so torch is imported in tests only)."""
    from collections import OrderedDict

    import torch
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self, num_classes=10, activation="tanh", pool="avg", in_channels=1):
            super().__init__()
            act = nn.Tanh if activation == "tanh" else nn.ReLU
            pooling = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
            self.conv1, self.act1, self.pool1 = nn.Conv2d(in_channels, 6, 5), act(), pooling(2)
            self.conv2, self.act2, self.pool2 = nn.Conv2d(6, 16, 5), act(), pooling(2)
            self.flatten = nn.Flatten()
            self.fc1, self.act3 = nn.Linear(400, 120), act()
            self.fc2, self.act4 = nn.Linear(120, 84), act()
            self.fc3 = nn.Linear(84, num_classes)

        def forward(self, x):
            x = self.pool1(self.act1(self.conv1(x)))
            x = self.flatten(self.pool2(self.act2(self.conv2(x))))
            return self.fc3(self.act4(self.fc2(self.act3(self.fc1(x)))))

    class SmallVGG(nn.Module):
        def __init__(self, num_classes=10, widths=(16, 32, 64), batch_norm=False, in_channels=3, input_size=32, hidden=128):
            super().__init__()
            c, s = in_channels, input_size
            for i, w in enumerate(widths, 1):
                mods = OrderedDict()
                for j, cin in ((1, c), (2, w)):
                    mods[f"conv{j}"] = nn.Conv2d(cin, w, 3, padding=1)
                    if batch_norm:
                        mods[f"bn{j}"] = nn.BatchNorm2d(w)
                    mods[f"relu{j}"] = nn.ReLU()
                mods["pool"] = nn.MaxPool2d(2)
                setattr(self, f"block{i}", nn.Sequential(mods))
                c, s = w, s // 2
            self.nblocks = len(widths)
            self.flatten = nn.Flatten()
            self.fc1, self.relu, self.fc2 = nn.Linear(c * s * s, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)

        def forward(self, x):
            for i in range(1, self.nblocks + 1):
                x = getattr(self, f"block{i}")(x)
            return self.fc2(self.relu(self.fc1(self.flatten(x))))

    class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
        def __init__(self, inplanes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):  # torchvision.models.resnet18, plus the common CIFAR stem
        def __init__(self, num_classes=1000, stem="imagenet", in_channels=3):
            super().__init__()
            if stem == "imagenet":
                self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
            else:
                self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
                self.maxpool = nn.Identity()
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            c = 64
            for i, w in enumerate((64, 128, 256, 512), 1):
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c, w, 1 if i == 1 else 2), BasicBlock(w, w)))
                c = w
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return {"lenet5": LeNet5, "small_vgg": SmallVGG, "resnet18": ResNet18, "basic_block": BasicBlock}


def _keys_and_shapes(module) -> dict[str, tuple[int, ...]]:
    """state_dict keys and shapes, minus batch norm's ``num_batches_tracked`` counter
    (an integer step count, not part of the spec)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


CASES = [  # (id, spec builder, torch class key, kwargs, input shape)
    ("lenet5", lenet5, "lenet5", {}, (2, 1, 32, 32)),
    ("lenet5-relu-max-rgb", lenet5, "lenet5", dict(num_classes=7, activation="relu", pool="max", in_channels=3), (2, 3, 32, 32)),
    ("small_vgg", small_vgg, "small_vgg", {}, CIFAR),
    ("small_vgg-bn", small_vgg, "small_vgg", dict(batch_norm=True, widths=(8, 16), input_size=28, in_channels=1), (2, 1, 28, 28)),
    ("resnet18-imagenet", resnet18, "resnet18", {}, IMAGENET),
    ("resnet18-cifar", resnet18, "resnet18", dict(num_classes=10, stem="cifar"), CIFAR),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_matches_named_params(case):
    """Same names, in the same order, with the same shapes; same trainable count."""
    _, build, key, kwargs, shape = case
    import torch

    spec, module = build(**kwargs), _torch_nets()[key](**kwargs)
    ours = {k: info.shape for k, info in named_params(spec, shape).items()}
    theirs = _keys_and_shapes(module)
    assert set(ours) == set(theirs), (set(ours) ^ set(theirs))
    assert list(ours) == list(theirs)  # forward order == torch registration order
    assert ours == theirs
    buffers = {k for k, v in module.named_buffers() if not k.endswith("num_batches_tracked")}
    assert {k for k, i in named_params(spec, shape).items() if not i.trainable} == buffers
    assert param_count(spec, shape) == sum(p.numel() for p in module.parameters())
    assert param_count(spec, shape, trainable_only=False) == sum(
        v.numel() for v in module.state_dict().values() if v.dtype != torch.int64
    )


@pytest.mark.parametrize(
    "stride,cin,cout,downsample", [(1, 64, 64, False), (2, 64, 128, True), (1, 32, 64, True), (2, 64, 64, True)]
)
def test_basic_block_matches_torchvision_layout(stride, cin, cout, downsample):
    block = resnet_basic_block("0", cin, cout, stride)
    assert isinstance(block, Residual) and block.name == "0"
    assert (block.shortcut is not None) == downsample
    assert [layer.name for layer in block.post] == ["relu2"] and isinstance(block.post[0], ReLU)
    shape = (2, cin, 8, 8)
    assert block.output_shape(shape) == (2, cout, 8 // stride, 8 // stride)
    theirs = _keys_and_shapes(_torch_nets()["basic_block"](cin, cout, stride))
    ours = {k.removeprefix("0."): i.shape for k, i in named_params(block, shape).items()}
    assert ours == theirs
    assert param_count(block, shape) == 9 * cin * cout + 9 * cout * cout + 4 * cout + (cin * cout + 2 * cout) * downsample


# --------------------------------------------------------------------------- counts, shapes, names


def test_parameter_counts():
    assert param_count(lenet5(), (1, 1, 32, 32)) == 61_706
    assert param_count(resnet18(), IMAGENET) == 11_689_512
    # cifar, 10 classes: the imagenet count, minus the 7x7 stem conv, plus a 3x3 stem conv,
    # minus the 1000-way fc, plus a 10-way fc
    cifar = 11_689_512 - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3 - (512 * 1000 + 1000) + (512 * 10 + 10)
    assert cifar == 11_173_962
    assert param_count(resnet18(num_classes=10, stem="cifar"), CIFAR) == cifar
    assert param_count(resnet18(), IMAGENET, trainable_only=False) == 11_689_512 + 2 * 4800  # running stats
    assert param_count(small_vgg(), CIFAR) == 204_570
    assert param_count(small_vgg(batch_norm=True), CIFAR) == 205_018


def test_lenet5_names_and_shapes():
    for act, pool, act_cls, pool_cls in (("tanh", "avg", Tanh, AvgPool2d), ("relu", "max", ReLU, MaxPool2d)):
        spec = lenet5(activation=act, pool=pool)
        assert spec.name == ""
        paths = dict(walk(spec))
        assert list(paths) == ["conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten",
                               "fc1", "act3", "fc2", "act4", "fc3"]
        assert all(isinstance(paths[f"act{i}"], act_cls) for i in range(1, 5))
        assert isinstance(paths["pool1"], pool_cls) and isinstance(paths["pool2"], pool_cls)
    outs = {k: v[1] for k, v in layer_shapes(lenet5(), (4, 1, 32, 32)).items()}
    assert outs["conv1"] == (4, 6, 28, 28) and outs["pool1"] == (4, 6, 14, 14)
    assert outs["conv2"] == (4, 16, 10, 10) and outs["pool2"] == (4, 16, 5, 5)
    assert outs["flatten"] == (4, 400) and outs["fc3"] == (4, 10)
    assert lenet5(num_classes=5, in_channels=3).output_shape((2, 3, 32, 32)) == (2, 5)


def test_small_vgg_names_and_shapes():
    spec = small_vgg(batch_norm=True)
    paths = [p for p, _ in walk(spec)]
    assert paths[:8] == ["block1", "block1.conv1", "block1.bn1", "block1.relu1", "block1.conv2",
                         "block1.bn2", "block1.relu2", "block1.pool"]
    assert paths[-4:] == ["flatten", "fc1", "relu", "fc2"]
    assert "block3.pool" in paths and "block4" not in paths
    assert not any(isinstance(layer, BatchNorm2d) for _, layer in walk(small_vgg()))
    outs = {k: v[1] for k, v in layer_shapes(spec, CIFAR).items()}
    assert outs["block1"] == (2, 16, 16, 16) and outs["block3"] == (2, 64, 4, 4)
    assert outs["flatten"] == (2, 1024) and outs["fc2"] == (2, 10)
    assert small_vgg(num_classes=3, widths=(8,), input_size=9, in_channels=1).output_shape((1, 1, 9, 9)) == (1, 3)


def test_resnet18_names_and_shapes():
    spec = resnet18()
    paths = [p for p, _ in walk(spec)]
    assert paths[:4] == ["conv1", "bn1", "relu", "maxpool"] and paths[-2:] == ["avgpool", "fc"]
    for p in ("layer1.0.conv1", "layer1.1.bn2", "layer2.0.downsample", "layer2.0.downsample.0",
              "layer4.1.relu2", "layer4.0.downsample.1"):
        assert p in paths
    assert "layer1.0.downsample" not in paths and "layer2.1.downsample" not in paths
    params = named_params(spec, IMAGENET)
    assert params["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert not params["layer2.0.downsample.1.running_var"].trainable
    assert "layer1.0.conv1.bias" not in params
    outs = {k: v[1] for k, v in layer_shapes(spec, IMAGENET).items()}
    assert outs["conv1"] == (1, 64, 112, 112) and outs["maxpool"] == (1, 64, 56, 56)
    assert [outs[f"layer{i}"] for i in range(1, 5)] == [
        (1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)]
    assert outs["avgpool"] == (1, 512) and outs["fc"] == (1, 1000)
    cifar = resnet18(num_classes=10, stem="cifar")
    assert "maxpool" not in dict(walk(cifar))
    outs = {k: v[1] for k, v in layer_shapes(cifar, CIFAR).items()}
    assert outs["layer1"] == (2, 64, 32, 32) and outs["layer4"] == (2, 512, 4, 4) and outs["fc"] == (2, 10)


def test_registry_and_errors():
    defaults = {"lenet5": ((1, 1, 32, 32), (1, 10)), "small_vgg": ((1, 3, 32, 32), (1, 10)),
                "resnet18": (IMAGENET, (1, 1000)), "resnet18_cifar": (CIFAR, (2, 10))}
    assert set(ARCHITECTURES) == set(defaults) == set(INPUT_SHAPES)
    for name, (shape, out) in defaults.items():
        assert ARCHITECTURES[name]().output_shape(shape) == out
        assert INPUT_SHAPES[name] == shape[1:]
    with pytest.raises(SpecError, match="activation"):
        lenet5(activation="sigmoid")
    with pytest.raises(SpecError, match="pool"):
        lenet5(pool="min")
    with pytest.raises(SpecError, match="stem"):
        resnet18(stem="tiny")
    with pytest.raises(SpecError, match="too small"):
        small_vgg(input_size=4)
    with pytest.raises(SpecError):  # LeNet-5 is fixed to 32x32 inputs
        lenet5().output_shape((1, 1, 28, 28))


# --------------------------------------------------------------------------- same function as torch.nn


FORWARD_CASES = [
    ("lenet5", lenet5, "lenet5", {}, (3, 1, 32, 32)),
    ("lenet5-relu-max", lenet5, "lenet5", dict(activation="relu", pool="max", num_classes=4), (3, 1, 32, 32)),
    ("small_vgg-bn", small_vgg, "small_vgg", dict(batch_norm=True), (2, 3, 32, 32)),
    # small inputs keep this fast; every layer still sees > 1 value per channel
    ("resnet18-cifar-16px", resnet18, "resnet18", dict(num_classes=10, stem="cifar"), (2, 3, 16, 16)),
    ("resnet18-imagenet-32px", resnet18, "resnet18", dict(num_classes=6), (2, 3, 32, 32)),
]
SLOW_FORWARD = {"resnet18-imagenet-32px"}  # the cifar-stem ResNet-18 covers its blocks in the default run


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW_FORWARD else [])
                                  for c in FORWARD_CASES])
def test_forward_matches_hand_written_torch(case):
    """The spec, run by the torch reference, computes what the torch.nn network computes
    when it carries the same parameters (training-mode batch norm on both sides)."""
    _, build, key, kwargs, shape = case
    import torch

    import reference_models

    spec = build(**kwargs)
    params = init_params(spec, shape, seed=1)
    x = np.random.default_rng(2).normal(size=shape)
    module = _torch_nets()[key](**kwargs).double().train()
    result = module.load_state_dict({k: torch.tensor(v) for k, v in params.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    got = reference_models.build("torch", spec).forward(params, x).output
    assert got.shape == expected.shape == spec.output_shape(shape)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_imagenet_resnet18_torch_output_shape():
    import torch

    module = _torch_nets()["resnet18"]().eval()
    with torch.no_grad():
        out = module(torch.zeros(IMAGENET))
    assert tuple(out.shape) == resnet18().output_shape(IMAGENET) == (1, 1000)


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_from_torch_of_hand_written_resnet18_is_the_known_spec(stem):
    """torch.fx conversion of torchvision-structured code reproduces the builder's spec: same
    canonical names in the same order, same forward (only ReLU names differ: torchvision
    reuses one ReLU module, the spec names each use; torch's AdaptiveAvgPool2d + flatten is a
    keepdims pool and a Flatten where the builder pools straight to (N, C))."""
    import torch

    from harness.interop import from_torch
    from reference_models import build

    torch.manual_seed(0)
    kwargs = dict(num_classes=10, stem=stem)
    module = _torch_nets()["resnet18"](**kwargs).double()
    spec, params = from_torch(module)
    known = resnet18(**kwargs)
    shape = (2, 3, 32, 32)
    assert list(named_params(spec, shape)) == list(named_params(known, shape))
    kinds = lambda s: [type(layer).__name__ for _, layer in walk(s)]  # noqa: E731
    assert kinds(spec) == kinds(known)[:-1] + ["Flatten", "Linear"]
    x = np.random.default_rng(0).normal(size=shape)
    ours = build("torch", spec).forward(params, x).output
    np.testing.assert_allclose(ours, build("torch", known).forward(params, x).output, rtol=1e-12, atol=1e-12)
