"""The spec: shape inference, canonical names, serialisation, and every validation error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import spec as S


def net() -> S.Sequential:
    return S.Sequential([
        S.Conv2d("conv1", 3, 8, 3, padding=1),
        S.BatchNorm2d("bn1", 8),
        S.ReLU("relu"),
        S.Residual(
            "res",
            [S.Conv2d("conv1", 8, 16, 3, stride=2, padding="same", bias=False), S.ReLU("relu")],
            shortcut=S.Sequential([S.Conv2d("0", 8, 16, 1, stride=2)], name="downsample"),
            post=[S.ReLU("relu_out")],
        ),
        S.MaxPool2d("pool", 2),
        S.Flatten("flatten"),
        S.Dropout("drop", 0.25),
        S.Linear("fc", 16 * 4 * 4, 10),
    ])


def test_shapes_and_paths_in_forward_order() -> None:
    shapes = S.layer_shapes(net(), (2, 3, 16, 16))
    assert list(shapes) == [
        "conv1", "bn1", "relu", "res", "res.conv1", "res.relu", "res.downsample",
        "res.downsample.0", "res.relu_out", "pool", "flatten", "drop", "fc",
    ]
    assert shapes["res"] == ((2, 8, 16, 16), (2, 16, 8, 8))
    assert shapes["res.downsample"] == ((2, 8, 16, 16), (2, 16, 8, 8))
    assert shapes["flatten"] == ((2, 16, 4, 4), (2, 256))
    assert net().output_shape((2, 3, 16, 16)) == (2, 10)
    assert [p for p, _ in S.walk(net())] == list(shapes)


def test_canonical_names_and_buffers() -> None:
    params = S.named_params(net(), (2, 3, 16, 16))
    assert list(params) == [
        "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean",
        "bn1.running_var", "res.conv1.weight", "res.downsample.0.weight",
        "res.downsample.0.bias", "drop.mask", "fc.weight", "fc.bias",
    ]
    assert params["res.conv1.weight"].shape == (16, 8, 3, 3)
    assert not params["bn1.running_var"].trainable and not params["drop.mask"].trainable
    assert params["drop.mask"].shape == (2, 256)
    assert params["fc.weight"] == S.ParamInfo((10, 256), True)


@pytest.mark.parametrize(
    "size,k,s,d,expect",
    [(7, 3, 2, 1, 4), (8, 3, 2, 1, 4), (5, 4, 1, 1, 5), (9, 3, 3, 2, 3), (1, 5, 1, 1, 1)],
)
def test_same_padding_is_tensorflow_rule(size: int, k: int, s: int, d: int, expect: int) -> None:
    conv = S.Conv2d("c", 1, 1, k, stride=s, dilation=d, padding="same")
    assert conv.output_shape((1, 1, size, size))[2:] == (expect, expect)
    (t, b), _ = conv.pads((size, size))
    assert b - t in (0, 1)  # the odd pixel goes to the bottom/right, as in TensorFlow


def test_padding_forms_normalise() -> None:
    assert S.Conv2d("c", 1, 1, 3, padding=2).padding == ((2, 2), (2, 2))
    assert S.Conv2d("c", 1, 1, 3, padding=(1, 2)).padding == ((1, 1), (2, 2))
    assert S.Conv2d("c", 1, 1, 3, padding=((0, 1), (2, 0))).padding == ((0, 1), (2, 0))
    assert S.Conv2d("c", 1, 1, 3, padding="valid").pads((5, 5)) == ((0, 0), (0, 0))
    asym = S.Conv2d("c", 1, 1, 3, padding=((0, 1), (2, 0)))
    assert asym.output_shape((1, 1, 5, 5)) == (1, 1, 4, 5)


def test_pool_shapes() -> None:
    assert S.MaxPool2d("p", 3, stride=2, padding=1).output_shape((1, 2, 7, 8)) == (1, 2, 4, 4)
    assert S.MaxPool2d("p", 2).stride == (2, 2)
    assert S.MaxPool2d("p", 2, stride=1, dilation=2).output_shape((1, 1, 5, 5)) == (1, 1, 3, 3)
    assert S.AvgPool2d("p", 3, 1, 1).output_shape((1, 2, 5, 5)) == (1, 2, 5, 5)
    assert S.GlobalAvgPool2d("g").output_shape((2, 3, 4, 5)) == (2, 3)
    assert S.GlobalAvgPool2d("g", keepdims=True).output_shape((2, 3, 4, 5)) == (2, 3, 1, 1)


def test_serialisation_round_trip() -> None:
    n = net()
    again = S.from_dict(json.loads(json.dumps(n.to_dict())))
    assert again == n
    assert S.from_dict(S.SoftmaxCrossEntropy("sum").to_dict()) == S.SoftmaxCrossEntropy("sum")
    assert S.from_dict(S.LayerNorm("ln", (3, 4)).to_dict()) == S.LayerNorm("ln", (3, 4))


def test_init_params_is_deterministic_and_fits() -> None:
    a = S.init_params(net(), (2, 3, 16, 16), seed=3)
    b = S.init_params(net(), (2, 3, 16, 16), seed=3)
    c = S.init_params(net(), (2, 3, 16, 16), seed=4)
    S.check_params(net(), (2, 3, 16, 16), a)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])
    assert set(np.unique(a["drop.mask"])) <= {0.0, 1.0}
    assert (a["bn1.running_var"] > 0).all()


# ---------------------------------------------------------------- every validation error

CONSTRUCTION_ERRORS = [
    (lambda: S.Conv2d("c", 3, 8, (3, 3, 3)), "layer 'c': kernel_size must be an int or a pair"),
    (lambda: S.Conv2d("c", 3, 8, 0), "layer 'c': kernel_size must be >= 1"),
    (lambda: S.Conv2d("c", 3, 8, 3, stride=True), "stride must be an int or a pair"),
    (lambda: S.Conv2d("c", 3, 8, 3, padding="full"), "padding string must be 'same' or 'valid'"),
    (lambda: S.Conv2d("c", 3, 8, 3, padding=-1), "padding must be >= 0"),
    (lambda: S.Conv2d("c", 3, 8, 3, padding=((0, -1), (0, 0))), "padding (top, bottom) must be >= 0"),
    (lambda: S.Conv2d("c", 0, 8, 3), "layer 'c': in_channels must be a positive int"),
    (lambda: S.Conv2d("c", 3, 8, 3, groups=2), "groups=2 must divide in_channels=3"),
    (lambda: S.Conv2d("conv.1", 3, 8, 3), "name 'conv.1' is not valid"),
    (lambda: S.Conv2d("", 3, 8, 3), "name '' is not valid"),
    (lambda: S.MaxPool2d("p", 2, padding=2), "layer 'p': padding (2, 2) must be at most half the kernel"),
    (lambda: S.MaxPool2d("p", 2, dilation=0), "layer 'p': dilation must be >= 1"),
    (lambda: S.GELU("g", "erf"), "approximate must be 'none' or 'tanh'"),
    (lambda: S.Linear("fc", 10, 0), "layer 'fc': out_features must be a positive int"),
    (lambda: S.BatchNorm2d("bn", 0), "layer 'bn': num_features must be a positive int"),
    (lambda: S.BatchNorm2d("bn", 4, eps=0.0), "layer 'bn': eps must be > 0"),
    (lambda: S.BatchNorm2d("bn", 4, over="pixel"), "layer 'bn': over must be 'channel' or 'feature'"),
    (lambda: S.LayerNorm("ln", "x"), "normalized_shape must be an int or a tuple of ints"),
    (lambda: S.LayerNorm("ln", ()), "normalized_shape must be non-empty and positive"),
    (lambda: S.Dropout("d", 1.0), "layer 'd': p must be in [0, 1)"),
    (lambda: S.Sequential(5), "must be a sequence of layers"),
    (lambda: S.Sequential([S.ReLU("a"), "relu"]), "holds 'relu', which is not a layer spec"),
    (lambda: S.Sequential([S.ReLU("a"), S.ReLU("a")]), "two layers are named 'a'"),
    (lambda: S.Sequential([]), "has no layers"),
    (lambda: S.Residual("r", []), "Residual 'r' has an empty block"),
    (lambda: S.Residual("r", [S.ReLU("a")], shortcut="conv"), "shortcut must be a layer spec or None"),
    (lambda: S.Residual("r", [S.ReLU("a")], post=[S.ReLU("a")]), "'r': two layers are named 'a'"),
    (lambda: S.MSE("none"), "MSE: reduction must be 'mean' or 'sum'"),
    (lambda: S.from_dict({"kind": "Conv3d"}), "unknown spec kind 'Conv3d'"),
    (lambda: S.from_dict({"kind": "ReLU", "name": "r", "slope": 2}), "ReLU: "),
]


@pytest.mark.parametrize("make,message", CONSTRUCTION_ERRORS)
def test_construction_errors(make, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        make()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


SHAPE_ERRORS = [
    (S.Conv2d("c", 3, 8, 3), (2, 4, 8, 8), "layer 'c': in_channels=3 but the input has 4 channels"),
    (S.Conv2d("c", 3, 8, 3), (2, 3, 8), "layer 'c': expects input (N, C, H, W), got shape (2, 3, 8)"),
    (S.Conv2d("c", 3, 8, 5, dilation=2), (1, 3, 8, 8), "input H=8 with padding (0, 0) is smaller than the dilated kernel 9"),
    (S.MaxPool2d("p", 4), (1, 3, 3, 8), "layer 'p': input H=3 with padding 0 is smaller than the window 4"),
    (S.MaxPool2d("p", (1, 2), 1, (0, 1), 2), (1, 1, 5, 1), "the window at output W=0 lies wholly in the padding (kernel 2, dilation 2, padding 1, input W=1)"),
    (S.GlobalAvgPool2d("g"), (2, 3), "layer 'g': expects input (N, C, H, W)"),
    (S.Softmax("s", axis=2), (2, 3), "layer 's': axis 2 is out of range"),
    (S.Flatten("f"), (5,), "layer 'f': expects input (N, ...)"),
    (S.Linear("fc", 10, 2), (4,), "layer 'fc': expects input (N, in_features)"),
    (S.Linear("fc", 10, 2), (4, 3, 2, 2), "in_features=10 but the input has 2 features (input shape (4, 3, 2, 2)) (insert a Flatten before it?)"),
    (S.BatchNorm2d("bn", 3), (2, 4, 5, 5), "layer 'bn': num_features=3 but the input has 4 channels"),
    (S.BatchNorm1d("bn", 3), (2, 3, 4, 5), "layer 'bn': expects input (N, C) or (N, C, L)"),
    (S.BatchNorm1d("bn", 3), (1, 3), "training-mode batch norm needs more than one value per channel"),
    (S.BatchNorm2d("bn", 3, over="feature"), (1, 3, 4, 4), "needs more than one value per feature"),
    (S.LayerNorm("ln", (4,)), (2, 5), "normalized_shape=(4,) must equal the trailing axes"),
    (S.ReLU("r"), (2, 0), "input shape (2, 0) has a non-positive size"),
    (S.ReLU("r"), 7, "input shape must be a tuple of ints"),
    (
        S.Residual("r", [S.Conv2d("c", 3, 4, 3, padding=1)]),
        (1, 3, 5, 5),
        "layer 'r': the block's output shape (1, 4, 5, 5) differs from the identity shortcut's (1, 3, 5, 5)",
    ),
    (
        S.Residual("r", [S.Conv2d("c", 3, 4, 3, padding=1)], shortcut=S.Conv2d("sc", 3, 4, 1, stride=2)),
        (1, 3, 6, 6),
        "differs from the shortcut 'r.sc''s (1, 4, 3, 3)",
    ),
    (
        S.Sequential([S.Conv2d("c", 3, 4, 3), S.Flatten("flat"), S.Linear("fc", 100, 2)]),
        (1, 3, 8, 8),
        "layer 'fc': in_features=100 but the input has 144 features (input shape (1, 144)) (after 'flat', output (1, 144))",
    ),
    (
        S.Sequential([S.Sequential([S.ReLU("r"), S.Linear("fc", 3, 2)], name="head")]),
        (2, 4),
        "layer 'head.fc': in_features=3 but the input has 4 features",
    ),
]


@pytest.mark.parametrize("layer,shape,message", SHAPE_ERRORS)
def test_shape_errors_name_the_layer(layer: S.Layer, shape, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        layer.output_shape(shape)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_param_errors_list_every_problem() -> None:
    spec = S.Sequential([S.Conv2d("conv1", 3, 4, 3), S.Flatten("f"), S.Linear("fc", 16, 2)])
    params = S.init_params(spec, (1, 3, 4, 4))
    params["conv1.weight"] = np.zeros((4, 3, 2, 2))
    del params["fc.bias"]
    params["fc.scale"] = np.ones(2)
    with pytest.raises(S.SpecError) as err:
        S.check_params(spec, (1, 3, 4, 4), params)
    msg = str(err.value)
    assert "missing ['fc.bias']" in msg
    assert "unexpected ['fc.scale']" in msg
    assert "conv1.weight: expected (4, 3, 3, 3), found (4, 3, 2, 2)" in msg


@pytest.mark.parametrize(
    "loss,out_shape,target,message",
    [
        (S.SoftmaxCrossEntropy(), (2, 3, 4), np.zeros(2, int), "expects logits (N, K)"),
        (S.SoftmaxCrossEntropy(), (2, 3), np.array([0, 3]), "labels must be integers in [0, 3)"),
        (S.SoftmaxCrossEntropy(), (2, 3), np.array([0.0, 1.0]), "labels must be integers in [0, 3)"),
        (S.SoftmaxCrossEntropy(), (2, 3), np.zeros((2, 4)), "target must be labels (2,) or probabilities (2, 3)"),
        (S.MSE(), (2, 3), np.zeros((3, 2)), "MSE: target shape (3, 2) must equal the output shape (2, 3)"),
        (S.Projection(), (2, 3), np.zeros(6), "Projection: target shape (6,)"),
    ],
)
def test_target_errors(loss: S.Loss, out_shape, target, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        S.check_target(loss, out_shape, target)
    assert message in str(err.value)


def test_spec_import_is_light() -> None:
    import subprocess
    import sys

    code = "import harness, harness.spec, sys; print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_feature_batch_norm_has_per_feature_parameters() -> None:
    bn = S.BatchNorm2d("bn", 3, over="feature")
    assert {k: v.shape for k, v in bn.local_params((5, 3, 4, 2)).items()} == {
        "weight": (3, 4, 2), "bias": (3, 4, 2), "running_mean": (3, 4, 2), "running_var": (3, 4, 2)}
    assert bn.reduce_axes((5, 3, 4, 2)) == (0,)
    assert S.BatchNorm2d("bn", 3).reduce_axes((5, 3, 4, 2)) == (0, 2, 3)


def test_example_input_shape() -> None:
    assert S.example_input_shape(S.Conv2d("c", 3, 4, 5, dilation=2)) == (2, 3, 11, 10)
    assert S.example_input_shape(S.Sequential([S.Linear("fc", 7, 2), S.ReLU("r")])) == (3, 7)
    assert S.example_input_shape(S.ReLU("r")) is None


def test_every_spec_class_is_registered_once_under_its_kind() -> None:
    from harness.spec import serial

    def concrete(base: type) -> set[type]:
        found = set()
        for cls in base.__subclasses__():
            if cls.__module__.startswith("harness.spec.") and "kind" in vars(cls):
                found.add(cls)
            found |= concrete(cls)
        return found

    assert set(serial.LAYER_KINDS.values()) == concrete(S.Layer)
    assert set(serial.LOSS_KINDS.values()) == concrete(S.Loss)
    assert all(cls.kind == kind for kind, cls in {**serial.LAYER_KINDS, **serial.LOSS_KINDS}.items())
    assert S.LAYER_KINDS is serial.LAYER_KINDS and S.Conv2d is serial.LAYER_KINDS["Conv2d"]


def test_child_fields_are_rebuilt_and_the_json_form_is_unchanged() -> None:
    block = S.Residual("b", [S.ReLU("r")], shortcut=S.Flatten("f"), post=())
    data = block.to_dict()
    assert json.dumps(data) == (
        '{"kind": "Residual", "name": "b", "block": [{"kind": "ReLU", "name": "r"}], '
        '"shortcut": {"kind": "Flatten", "name": "f"}, "post": []}'
    )
    assert S.from_dict(json.loads(json.dumps(data))) == block
    assert S.from_dict({**data, "shortcut": None}).shortcut is None
