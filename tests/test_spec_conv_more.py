"""Specs of the other convolutions and normalisations (issue 17): Conv1d, ConvTranspose2d,
Upsample, GroupNorm, RMSNorm. Shapes, normalised arguments, the JSON round trip, parameter
shapes, example inputs, and every validation error (one line, naming the layer)."""

from __future__ import annotations

import pytest

from harness import spec as S


def test_conv1d_shapes_and_padding_forms() -> None:
    assert S.Conv1d("c", 2, 4, 3).output_shape((2, 2, 9)) == (2, 4, 7)
    assert S.Conv1d("c", 2, 4, 3, stride=2, padding=1).output_shape((2, 2, 9)) == (2, 4, 5)
    assert S.Conv1d("c", 2, 4, (3,), stride=(2,), dilation=(2,)).kernel_size == 3
    assert S.Conv1d("c", 2, 4, 3, padding=(0, 2)).pads(9) == (0, 2)
    assert S.Conv1d("c", 2, 4, 3, padding=2).padding == (2, 2)
    assert S.Conv1d("c", 2, 4, 3, padding=(1,)).padding == (1, 1)
    assert S.Conv1d("c", 2, 4, 3, padding="valid").pads(9) == (0, 0)
    # "same": PyTorch's for stride 1 (the odd pixel on the right), TensorFlow's ceil(L/s) beyond
    assert S.Conv1d("c", 1, 1, 4, padding="same").pads(9) == (1, 2)
    assert S.Conv1d("c", 1, 1, 3, stride=2, padding="same").output_shape((1, 1, 9)) == (1, 1, 5)
    assert S.Conv1d("c", 2, 4, 3, dilation=3).output_shape((2, 2, 9)) == (2, 4, 3)
    assert S.Conv1d("c", 4, 6, 3, groups=2).local_params((1, 4, 9)) == {
        "weight": S.ParamInfo((6, 2, 3)),
        "bias": S.ParamInfo((6,)),
    }
    assert "bias" not in S.Conv1d("c", 4, 6, 3, bias=False).local_params((1, 4, 9))


@pytest.mark.parametrize(
    "args,hw,out",
    [
        ({"kernel_size": 3}, (5, 4), (7, 6)),
        ({"kernel_size": 3, "stride": 2}, (5, 4), (11, 9)),
        ({"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, (5, 4), (10, 8)),
        ({"kernel_size": (2, 3), "stride": (3, 1), "padding": (0, 1), "dilation": (1, 2)}, (5, 4), (14, 6)),
        ({"kernel_size": 4, "stride": 2, "padding": 1}, (3, 3), (6, 6)),
    ],
)
def test_conv_transpose2d_output_size_is_pytorchs(args, hw, out) -> None:
    torch = pytest.importorskip("torch")
    layer = S.ConvTranspose2d("t", 2, 4, **args)
    assert layer.output_shape((1, 2, *hw))[2:] == out
    m = torch.nn.ConvTranspose2d(2, 4, **args)
    assert tuple(m(torch.zeros(1, 2, *hw)).shape[2:]) == out


def test_conv_transpose2d_weight_is_in_before_out() -> None:
    layer = S.ConvTranspose2d("t", 4, 6, (2, 3), groups=2)
    assert layer.local_params((1, 4, 3, 3)) == {"weight": S.ParamInfo((4, 3, 2, 3)), "bias": S.ParamInfo((6,))}


def test_upsample_factors_and_modes() -> None:
    assert S.Upsample("u", 2).output_shape((2, 3, 4, 5)) == (2, 3, 8, 10)
    assert S.Upsample("u", (3, 1), "bilinear").output_shape((2, 3, 4, 5)) == (2, 3, 12, 5)
    assert S.Upsample("u", 2.0).scale_factor == (2, 2)
    assert S.Upsample("u", (2.0, 3)).scale_factor == (2, 3)
    assert S.Upsample("u", 2, "bilinear", align_corners=True).local_params((1, 1, 2, 2)) == {}


def test_group_and_rms_norm_shapes() -> None:
    gn = S.GroupNorm("gn", 2, 6)
    assert gn.output_shape((2, 6, 3, 4)) == (2, 6, 3, 4)
    assert gn.output_shape((2, 6)) == (2, 6)  # 3 channels per group: enough values
    assert gn.local_params((2, 6, 3)) == {"weight": S.ParamInfo((6,)), "bias": S.ParamInfo((6,))}
    assert S.GroupNorm("gn", 2, 6, affine=False).local_params((2, 6, 3)) == {}
    rms = S.RMSNorm("rms", (3, 4))
    assert rms.output_shape((2, 5, 3, 4)) == (2, 5, 3, 4) and rms.eps == 1e-6
    assert rms.local_params((2, 3, 4)) == {"weight": S.ParamInfo((3, 4))}
    assert S.RMSNorm("rms", 4, elementwise_affine=False).local_params((2, 4)) == {}


@pytest.mark.parametrize(
    "layer",
    [
        S.Conv1d("c", 2, 4, 3, stride=2, padding=(0, 1), dilation=2, groups=2, bias=False),
        S.Conv1d("c", 2, 4, 3, padding="same"),
        S.ConvTranspose2d("t", 2, 4, (2, 3), stride=2, padding=1, output_padding=1, groups=2, dilation=1),
        S.Upsample("u", (2, 3), "bilinear", True),
        S.GroupNorm("g", 2, 4, eps=1e-3, affine=False),
        S.RMSNorm("r", (2, 3), eps=1e-8, elementwise_affine=False),
    ],
)
def test_json_round_trip(layer) -> None:
    assert S.from_dict(layer.to_dict()) == layer


def test_example_input_shapes_fit() -> None:
    cases = [
        (S.Conv1d("c", 3, 4, 5, dilation=3), (2, 3, 15)),
        (S.Conv1d("c", 3, 4, 3), (2, 3, 9)),
        (S.ConvTranspose2d("t", 3, 4, 3, padding=4), (2, 3, 10, 9)),
        (S.ConvTranspose2d("t", 3, 4, 3), (2, 3, 5, 4)),
        (S.GroupNorm("g", 2, 4), (2, 4, 5, 4)),
        (S.RMSNorm("r", (2, 3)), (3, 2, 3)),
    ]
    for layer, shape in cases:
        assert S.example_input_shape(layer) == shape
        layer.output_shape(shape)  # fits
    assert S.example_input_shape(S.Upsample("u", 2)) is None  # no channel count to read


CONSTRUCTION_ERRORS = [
    (lambda: S.Conv1d("c", 3, 8, (3, 3)), "layer 'c': kernel_size must be an int (or a 1-tuple of one), got (3, 3)"),
    (lambda: S.Conv1d("c", 3, 8, 0), "layer 'c': kernel_size must be >= 1, got 0"),
    (lambda: S.Conv1d("c", 3, 8, 3, stride=True), "layer 'c': stride must be an int"),
    (lambda: S.Conv1d("c", 3, 8, 3, dilation=0), "layer 'c': dilation must be >= 1"),
    (lambda: S.Conv1d("c", 3, 8, 3, padding="full"), "layer 'c': padding string must be 'same' or 'valid'"),
    (lambda: S.Conv1d("c", 3, 8, 3, padding=-1), "layer 'c': padding (left, right) must be >= 0"),
    (lambda: S.Conv1d("c", 3, 8, 3, padding=(1, 2, 3)), "padding (left, right) must be an int or a pair"),
    (lambda: S.Conv1d("c", 0, 8, 3), "layer 'c': in_channels must be a positive int, got 0"),
    (lambda: S.Conv1d("c", 3, 8, 3, groups=2), "layer 'c': groups=2 must divide in_channels=3 and out_channels=8"),
    (lambda: S.Conv1d("c.1", 3, 8, 3), "name 'c.1' is not valid"),
    (lambda: S.ConvTranspose2d("t", 3, 8, (3, 3, 3)), "layer 't': kernel_size must be an int or a pair"),
    (lambda: S.ConvTranspose2d("t", 3, 8, 3, padding=-1), "layer 't': padding must be >= 0"),
    (lambda: S.ConvTranspose2d("t", 3, 8, 3, padding="same"), "layer 't': padding must be an int or a pair"),
    (
        lambda: S.ConvTranspose2d("t", 3, 8, 3, stride=2, output_padding=2),
        "layer 't': output_padding 2 on H must be smaller than the stride 2 or the dilation 1",
    ),
    (lambda: S.ConvTranspose2d("t", 3, 8, 3, output_padding=-1), "layer 't': output_padding must be >= 0"),
    (
        lambda: S.ConvTranspose2d("t", 4, 6, 3, groups=4),
        "layer 't': groups=4 must divide in_channels=4 and out_channels=6",
    ),
    (lambda: S.ConvTranspose2d("t", 4, 0, 3), "layer 't': out_channels must be a positive int"),
    (lambda: S.Upsample("u", 1.5), "layer 'u': scale_factor must be a whole number or a pair of them, got 1.5"),
    (lambda: S.Upsample("u", (2, 0.5)), "layer 'u': scale_factor must be a whole number"),
    (lambda: S.Upsample("u", 0), "layer 'u': scale_factor must be >= 1, got 0"),
    (lambda: S.Upsample("u", "2"), "layer 'u': scale_factor must be an int or a pair of ints"),
    (lambda: S.Upsample("u", 2, "bicubic"), "layer 'u': mode must be 'nearest' or 'bilinear', got 'bicubic'"),
    (lambda: S.Upsample("u", 2, align_corners=True), "layer 'u': align_corners=True applies to mode='bilinear' only"),
    (lambda: S.Upsample("u", 2, "bilinear", align_corners=None), "layer 'u': align_corners must be True or False"),
    (lambda: S.GroupNorm("g", 3, 4), "layer 'g': num_groups=3 must divide num_channels=4"),
    (lambda: S.GroupNorm("g", 0, 4), "layer 'g': num_groups must be a positive int, got 0"),
    (lambda: S.GroupNorm("g", 2, True), "layer 'g': num_channels must be a positive int, got True"),
    (lambda: S.GroupNorm("g", 2, 4, eps=0.0), "layer 'g': eps must be a number > 0, got 0.0"),
    (lambda: S.RMSNorm("r", "x"), "layer 'r': normalized_shape must be an int or a tuple of ints"),
    (lambda: S.RMSNorm("r", (0,)), "layer 'r': normalized_shape must be non-empty and positive"),
    (lambda: S.RMSNorm("r", 4, eps=None), "layer 'r': eps must be a number > 0, got None"),
    (lambda: S.LayerNorm("ln", 4, eps=-1.0), "layer 'ln': eps must be a number > 0, got -1.0"),
]


@pytest.mark.parametrize("make,message", CONSTRUCTION_ERRORS)
def test_construction_errors(make, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        make()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


SHAPE_ERRORS = [
    (S.Conv1d("c", 3, 8, 3), (2, 3, 8, 8), "layer 'c': expects input (N, C, L), got shape (2, 3, 8, 8) (rank 4)"),
    (
        S.Conv1d("c", 3, 8, 3),
        (2, 4, 8),
        "layer 'c': in_channels=3 but the input has 4 channels (input shape (2, 4, 8), NCL)",
    ),
    (
        S.Conv1d("c", 3, 8, 5, dilation=2),
        (1, 3, 8),
        "layer 'c': input L=8 with padding (0, 0) is smaller than the dilated kernel 9",
    ),
    (S.ConvTranspose2d("t", 3, 8, 3), (2, 3, 8), "layer 't': expects input (N, C, H, W), got shape (2, 3, 8)"),
    (S.ConvTranspose2d("t", 3, 8, 3), (2, 4, 5, 5), "layer 't': in_channels=3 but the input has 4 channels"),
    (
        S.ConvTranspose2d("t", 3, 8, 1, padding=(0, 2)),
        (2, 3, 5, 3),
        "layer 't': the output W would be -1: padding 2 cuts 4 of the 3 rows the input W=3 spreads to",
    ),
    (S.Upsample("u", 2), (2, 3, 4), "layer 'u': expects input (N, C, H, W), got shape (2, 3, 4)"),
    (S.GroupNorm("g", 2, 4), (4,), "layer 'g': expects input (N, C, *), got shape (4,) (rank 1)"),
    (
        S.GroupNorm("g", 2, 4),
        (2, 6, 3),
        "layer 'g': num_channels=4 but the input has 6 channels (input shape (2, 6, 3))",
    ),
    (
        S.GroupNorm("g", 4, 4),
        (2, 4, 1),
        "layer 'g': each group holds one value (1 channel(s) per group, input shape (2, 4, 1)): its variance is 0",
    ),
    (S.RMSNorm("r", (3, 4)), (2, 4, 3), "layer 'r': normalized_shape=(3, 4) must equal the trailing axes of the input"),
    (
        S.RMSNorm("r", 4),
        (4,),
        "layer 'r': normalized_shape=(4,) must equal the trailing axes of the input, got input shape (4,)",
    ),
]


@pytest.mark.parametrize("layer,shape,message", SHAPE_ERRORS)
def test_shape_errors(layer, shape, message: str) -> None:
    with pytest.raises(S.SpecError) as err:
        layer.output_shape(shape)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_kinds_are_registered_and_exported() -> None:
    import harness

    for kind in ("Conv1d", "ConvTranspose2d", "Upsample", "GroupNorm", "RMSNorm"):
        assert kind in S.LAYER_KINDS and kind in S.__all__ and kind in harness.__all__
        assert getattr(harness, kind) is S.LAYER_KINDS[kind]
