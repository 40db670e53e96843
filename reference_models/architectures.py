"""Spec builders for classic CNNs: LeNet-5, a small VGG and ResNet-18.

Every builder is a pure function returning a :class:`~harness.spec.Sequential` root named
``""``, so parameter names are the dotted paths PyTorch would give the same network
(``conv1.weight``, ``layer2.0.downsample.1.running_var``). ResNet names match
torchvision's ``state_dict`` keys, except that batch norm's ``num_batches_tracked``
counter is not part of the spec. :data:`ARCHITECTURES` maps names to builders and
:func:`param_count` counts parameters (torchvision-style: trainable only by default)::

    spec = ARCHITECTURES["resnet18"]()
    param_count(spec, (1, 3, 224, 224))   # 11_689_512
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from harness.spec import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
    Shape,
    SpecError,
    Tanh,
    named_params,
)


def _choice(value: str, options: tuple[str, ...], what: str, builder: str) -> str:
    if value not in options:
        raise SpecError(f"{builder}: {what} must be one of {options}, got {value!r}")
    return value


def lenet5(num_classes: int = 10, activation: str = "tanh", pool: str = "avg", in_channels: int = 1) -> Sequential:
    """LeNet-5 (LeCun et al. 1998, with full conv2 connectivity).

    Input ``(N, in_channels, 32, 32)`` -> logits ``(N, num_classes)``.
    conv1 (6, 5x5) -> act1 -> pool1 2x2 -> conv2 (16, 5x5) -> act2 -> pool2 -> flatten
    -> fc1 400->120 -> act3 -> fc2 120->84 -> act4 -> fc3 84->num_classes.
    Parameters: 61,706 with the defaults (``150 * in_channels + 61_556 + 85 * (num_classes - 10)``).
    """
    act = {"tanh": Tanh, "relu": ReLU}[_choice(activation, ("tanh", "relu"), "activation", "lenet5")]
    pooling = {"avg": AvgPool2d, "max": MaxPool2d}[_choice(pool, ("avg", "max"), "pool", "lenet5")]
    return Sequential(
        [
            Conv2d("conv1", in_channels, 6, 5),
            act("act1"),
            pooling("pool1", 2),
            Conv2d("conv2", 6, 16, 5),
            act("act2"),
            pooling("pool2", 2),
            Flatten("flatten"),
            Linear("fc1", 16 * 5 * 5, 120),
            act("act3"),
            Linear("fc2", 120, 84),
            act("act4"),
            Linear("fc3", 84, num_classes),
        ]
    )


def small_vgg(
    num_classes: int = 10,
    widths: tuple[int, ...] = (16, 32, 64),
    batch_norm: bool = False,
    in_channels: int = 3,
    input_size: int = 32,
    hidden: int = 128,
) -> Sequential:
    """A small VGG: one block per width, then a two-layer classifier.

    Input ``(N, in_channels, input_size, input_size)`` -> logits ``(N, num_classes)``.
    Block ``block{i}`` = conv1 3x3 pad 1 [-> bn1] -> relu1 -> conv2 3x3 pad 1 [-> bn2]
    -> relu2 -> pool (max 2x2); then flatten -> fc1 (-> ``hidden``) -> relu -> fc2.
    With the defaults the spatial size goes 32 -> 16 -> 8 -> 4 and there are 204,570
    parameters (205,018 trainable with ``batch_norm=True``, plus 448 running-stat buffers).
    """
    blocks: list[Layer] = []
    c, s = in_channels, input_size
    for i, w in enumerate(widths, 1):
        layers: list[Layer] = []
        for j, cin in ((1, c), (2, w)):
            layers.append(Conv2d(f"conv{j}", cin, w, 3, padding=1))
            if batch_norm:
                layers.append(BatchNorm2d(f"bn{j}", w))
            layers.append(ReLU(f"relu{j}"))
        blocks.append(Sequential([*layers, MaxPool2d("pool", 2)], name=f"block{i}"))
        c, s = w, s // 2
        if s < 1:
            raise SpecError(f"small_vgg: input_size={input_size} is too small for {len(widths)} 2x2 pools")
    return Sequential(
        [
            *blocks,
            Flatten("flatten"),
            Linear("fc1", c * s * s, hidden),
            ReLU("relu"),
            Linear("fc2", hidden, num_classes),
        ]
    )


def resnet_basic_block(name: str, in_channels: int, out_channels: int, stride: int = 1) -> Residual:
    """torchvision's ``BasicBlock`` as a :class:`Residual` named ``name``.

    ``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H/stride), ceil(W/stride))``.
    block: conv1 3x3 (stride) -> bn1 -> relu1 -> conv2 3x3 -> bn2, convs bias-free;
    shortcut: identity, or ``downsample`` = 1x1 conv (stride) + batch norm when the shape
    changes; post: relu2 (torchvision reuses one ``relu`` module; ReLU has no parameters,
    so the state_dict keys agree). Parameters: ``9*in*out + 9*out*out + 4*out``, plus
    ``in*out + 2*out`` with a downsample.
    """
    block = (
        Conv2d("conv1", in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        BatchNorm2d("bn1", out_channels),
        ReLU("relu1"),
        Conv2d("conv2", out_channels, out_channels, 3, padding=1, bias=False),
        BatchNorm2d("bn2", out_channels),
    )
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(
            [Conv2d("0", in_channels, out_channels, 1, stride=stride, bias=False), BatchNorm2d("1", out_channels)],
            name="downsample",
        )
    return Residual(name, block, shortcut, (ReLU("relu2"),))


def resnet18(num_classes: int = 1000, stem: str = "imagenet", in_channels: int = 3) -> Sequential:
    """ResNet-18 (He et al. 2016) with torchvision's layer names.

    ``stem="imagenet"``: input ``(N, in_channels, 224, 224)``, conv1 7x7 s2 p3 -> bn1 -> relu
    -> maxpool 3x3 s2 p1 (56x56 into layer1). ``stem="cifar"``: input ``(N, in_channels, 32, 32)``,
    conv1 3x3 s1 p1 -> bn1 -> relu, no maxpool (32x32 into layer1).
    Then layer1..layer4 (two basic blocks "0", "1" each; widths 64, 128, 256, 512; the first
    block of layer2..4 has stride 2), avgpool (global) and fc 512 -> num_classes.
    Output ``(N, num_classes)``. Trainable parameters: 11,689,512 (imagenet, 1000 classes,
    as torchvision); 11,173,962 (cifar, 10 classes); plus 9,600 running-stat buffers.
    """
    _choice(stem, ("imagenet", "cifar"), "stem", "resnet18")
    if stem == "imagenet":
        head: list[Layer] = [
            Conv2d("conv1", in_channels, 64, 7, stride=2, padding=3, bias=False),
            BatchNorm2d("bn1", 64),
            ReLU("relu"),
            MaxPool2d("maxpool", 3, stride=2, padding=1),
        ]
    else:
        head = [Conv2d("conv1", in_channels, 64, 3, padding=1, bias=False), BatchNorm2d("bn1", 64), ReLU("relu")]
    stages, c = [], 64
    for i, w in enumerate((64, 128, 256, 512), 1):
        stride = 1 if i == 1 else 2
        stages.append(
            Sequential([resnet_basic_block("0", c, w, stride), resnet_basic_block("1", w, w)], name=f"layer{i}")
        )
        c = w
    return Sequential([*head, *stages, GlobalAvgPool2d("avgpool"), Linear("fc", 512, num_classes)])


def param_count(spec: Layer, input_shape: Shape, trainable_only: bool = True) -> int:
    """Number of scalars in ``spec``'s parameters for an input of ``input_shape`` (batch
    included); ``trainable_only=False`` also counts buffers such as running statistics."""
    return sum(
        int(np.prod(info.shape, dtype=np.int64))
        for info in named_params(spec, input_shape).values()
        if info.trainable or not trainable_only
    )


ARCHITECTURES: dict[str, Callable[..., Sequential]] = {
    "lenet5": lenet5,
    "small_vgg": small_vgg,
    "resnet18": resnet18,
    "resnet18_cifar": partial(resnet18, num_classes=10, stem="cifar"),
}

# The input each registered builder expects by default, (C, H, W) without the batch axis.
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (1, 32, 32),
    "small_vgg": (3, 32, 32),
    "resnet18": (3, 224, 224),
    "resnet18_cifar": (3, 32, 32),
}

__all__ = ["ARCHITECTURES", "INPUT_SHAPES", "lenet5", "param_count", "resnet18", "resnet_basic_block", "small_vgg"]
