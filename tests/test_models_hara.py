"""Hara et al.'s 3D CNN families: 3D ResNet, pre-activation ResNet, wide ResNet,
ResNeXt and DenseNet (kenshohara/3D-ResNets-PyTorch).

Parameter counts are checked against model_numbers.md (computed PyTorch counts) where
it has them and otherwise against counts derived by hand below from the reference
architecture, written as one short formula per block, independent of the builders.
Numerics: shortcut A against NumPy, the one-frame (T = 1) centre-slice property, and
the temporal-kernel-1 configurations against Keras' own 2D ResNet50 / DenseNet121
applied frame by frame (which also checks the layer names used for inflation).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tests.model_test_utils import (
    assert_mirrored_train_step,
    assert_output_shape,
    assert_save_load_round_trip,
    perturb_batch_norms,
    random_clip,
)
from tfsts import models
from tfsts.flops import count_macs
from tfsts.models.densenet3d import densenet3d_backbone
from tfsts.models.resnet3d import ZeroPadShortcut, resnet3d_backbone

SMALL = (4, 32, 32, 3)  # small clip: params do not depend on the input size
DENSE_SMALL = (16, 32, 32, 3)  # DenseNet halves T four times


# ----------------------------------------------------------------- hand-derived counts
def conv(cin: int, cout: int, k=(3, 3, 3), groups: int = 1) -> int:
    return math.prod(k) * (cin // groups) * cout


def bn(c: int) -> int:
    return 2 * c  # gamma, beta (moving statistics are not parameters)


def head(c: int, classes: int = 400) -> int:
    return c * classes + classes


STEM = conv(3, 64, (7, 7, 7)) + bn(64)
ONE = (1, 1, 1)


def basic_count(blocks, shortcut: str) -> int:
    """Post-activation BasicBlock net: two 3x3x3 conv+BN per block; a 1x1x1 conv+BN
    projection (type B) where the shape changes."""
    total, cin = STEM, 64
    for planes, n in zip((64, 128, 256, 512), blocks):
        for i in range(n):
            total += conv(cin, planes) + bn(planes) + conv(planes, planes) + bn(planes)
            if shortcut == "B" and i == 0 and (cin != planes or planes != 64):
                total += conv(cin, planes, ONE) + bn(planes)
            cin = planes
    return total + head(cin)


def bottleneck_count(blocks, widths, outs, groups: int = 1) -> int:
    """Post-activation bottleneck net, shortcut B: 1x1x1, 3x3x3 (grouped), 1x1x1, each
    with BN; a projection on the first block of every stage (stride or width change)."""
    total, cin = STEM, 64
    for width, out, n in zip(widths, outs, blocks):
        for i in range(n):
            total += conv(cin, width, ONE) + bn(width)
            total += conv(width, width, groups=groups) + bn(width)
            total += conv(width, out, ONE) + bn(out)
            if i == 0:
                total += conv(cin, out, ONE) + bn(out)
            cin = out
    return total + head(cin)


def preact_bottleneck_count(blocks) -> int:
    """Pre-activation bottleneck: BN(in), 1x1x1, BN, 3x3x3, BN, 1x1x1 (no BN after the
    last conv, none after the last block); projection conv + BN, shortcut B."""
    total, cin = STEM, 64
    for planes, n in zip((64, 128, 256, 512), blocks):
        for i in range(n):
            total += bn(cin) + conv(cin, planes, ONE) + bn(planes) + conv(planes, planes) + bn(planes)
            total += conv(planes, 4 * planes, ONE)
            if i == 0:
                total += conv(cin, 4 * planes, ONE) + bn(4 * planes)
            cin = 4 * planes
    return total + head(cin)


def densenet_count(blocks, growth: int = 32, bn_size: int = 4) -> int:
    """DenseNet-BC: per dense layer BN(c), 1x1x1 to 128, BN, 3x3x3 to 32; transition
    BN(c), 1x1x1 to c // 2; final BN."""
    total, c = STEM, 64
    for index, n in enumerate(blocks):
        for _ in range(n):
            total += bn(c) + conv(c, bn_size * growth, ONE) + bn(bn_size * growth) + conv(bn_size * growth, growth)
            c += growth
        if index < len(blocks) - 1:
            total += bn(c) + conv(c, c // 2, ONE)
            c //= 2
    return total + bn(c) + head(c)


WRN_WIDTHS = lambda k: [64 * k, 128 * k, 256 * k, 512 * k]  # noqa: E731
RESNEXT_WIDTHS = [128, 256, 512, 1024]


def test_hand_formulas_reproduce_the_reference_counts():
    """The formulas above give model_numbers.md's PyTorch counts where it has them."""
    assert basic_count((2, 2, 2, 2), "A") == 33_235_280
    assert basic_count((2, 2, 2, 2), "B") == 33_409_104
    assert basic_count((3, 4, 6, 3), "A") == 63_544_912
    assert basic_count((3, 4, 6, 3), "B") == 63_718_736
    resnet_widths, resnet_outs = [64, 128, 256, 512], [256, 512, 1024, 2048]
    assert bottleneck_count((3, 4, 6, 3), resnet_widths, resnet_outs) == 47_018_576
    assert bottleneck_count((3, 24, 36, 3), resnet_widths, resnet_outs) == 127_423_056


# ------------------------------------------------------------ expected shapes
def ceil_halve(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


def resnet_out(t: int, s: int, channels: int):
    """conv1 (T kept, HW halved), max pool and stages 3-5 halve T, H, W (ceil)."""
    return (1, ceil_halve(t, 4), ceil_halve(s, 5), ceil_halve(s, 5), channels)


def densenet_out(t: int, s: int, channels: int):
    """conv1 halves H, W and pool1 T, H, W with padding (ceil); 3 transitions pool 2 (floor)."""
    return (1, ceil_halve(t, 1) // 8, ceil_halve(s, 2) // 8, ceil_halve(s, 2) // 8, channels)


# --------------------------------------------------- counts against model_numbers.md
# (name, overrides, params (C), GMACs @16x112x112 (C)) from model_numbers.md section 1.
REFERENCE = [
    ("resnet3d_18", {"shortcut_type": "A"}, 33_235_280, 8.296),
    ("resnet3d_18", {"shortcut_type": "B"}, 33_409_104, 8.308),
    ("resnet3d_50", {}, 47_018_576, 10.069),
    pytest.param("resnet3d_34", {"shortcut_type": "A"}, 63_544_912, 12.685, marks=pytest.mark.slow),
    pytest.param("resnet3d_34", {"shortcut_type": "B"}, 63_718_736, 12.696, marks=pytest.mark.slow),
    pytest.param("resnet3d_101", {}, 86_064_720, 13.891, marks=pytest.mark.slow),
    pytest.param("resnet3d_152", {}, 118_223_440, 18.611, marks=pytest.mark.slow),
    pytest.param("resnet3d_200", {}, 127_423_056, 25.805, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, overrides, params, gmacs", REFERENCE)
def test_resnet3d_params_and_macs_match_reference(name, overrides, params, gmacs):
    model = models.build_model(name, 400, input_shape=(16, 112, 112, 3), **overrides)
    assert models.count_params(model) == params
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, rel=1e-3)
    channels = 512 if int(name.split("_")[-1]) < 50 else 2048
    assert tuple(model.get_layer("head_pool").input.shape) == (None, *resnet_out(16, 112, channels)[1:])


def test_resnet3d_default_shortcuts_are_a_then_b():
    """Registry defaults: A (no projection weights) for 10/18/34, B from 50."""
    r10 = models.build_backbone("resnet3d_10", input_shape=SMALL)
    assert [l.name for l in r10.layers if isinstance(l, ZeroPadShortcut)] == [
        "conv3_block1_0_zero_pad", "conv4_block1_0_zero_pad", "conv5_block1_0_zero_pad"
    ]
    assert not any(l.name.endswith("_0_conv") for l in r10.layers)
    r50 = models.build_backbone("resnet3d_50", input_shape=SMALL, widen_factor=0.25)  # narrow: cheap to build
    assert not any(isinstance(l, ZeroPadShortcut) for l in r50.layers)
    assert {f"conv{s}_block1_0_conv" for s in (2, 3, 4, 5)} <= {l.name for l in r50.layers}


# --------------------------------------------------------- counts derived by hand
HAND = [
    ("resnet3d_10", {}, basic_count((1, 1, 1, 1), "A")),
    ("resnet3d_10", {"shortcut_type": "B"}, basic_count((1, 1, 1, 1), "B")),
    # Cheap members of each family, same formulas, in the default suite.
    ("preact_resnet3d_200", {"depth": 50}, preact_bottleneck_count((3, 4, 6, 3))),
    ("wide_resnet3d_50", {"k": 1}, bottleneck_count((3, 4, 6, 3), WRN_WIDTHS(1), [128, 256, 512, 1024])),
    ("resnext3d_101", {"depth": 50}, bottleneck_count((3, 4, 6, 3), RESNEXT_WIDTHS, [256, 512, 1024, 2048], groups=32)),
    ("densenet3d_121", {}, densenet_count((6, 12, 24, 16))),
    # The registered (released-checkpoint) configurations.
    pytest.param("preact_resnet3d_200", {}, preact_bottleneck_count((3, 24, 36, 3)), marks=pytest.mark.slow),
    pytest.param(
        "wide_resnet3d_50", {}, bottleneck_count((3, 4, 6, 3), WRN_WIDTHS(2), [256, 512, 1024, 2048]),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "resnext3d_101", {}, bottleneck_count((3, 4, 23, 3), RESNEXT_WIDTHS, [256, 512, 1024, 2048], groups=32),
        marks=pytest.mark.slow,
    ),
    pytest.param("densenet3d_201", {}, densenet_count((6, 12, 48, 32)), marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, overrides, expected", HAND)
def test_params_match_hand_count(name, overrides, expected):
    shape = DENSE_SMALL if name.startswith("densenet") else SMALL
    model = models.build_model(name, 400, input_shape=shape, **overrides)
    assert models.count_params(model) == expected


# ------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "name, overrides, input_shape, expected",
    [
        ("resnet3d_10", {}, (1, 32, 32, 3), resnet_out(1, 32, 512)),
        ("resnet3d_10", {}, (8, 48, 40, 3), (1, 1, 2, 2, 512)),
        ("resnet3d_10", {}, (16, 112, 112, 3), resnet_out(16, 112, 512)),
        ("resnet3d_10", {"shortcut_type": "B"}, (32, 64, 64, 3), resnet_out(32, 64, 512)),
        ("resnet3d_10", {"widen_factor": 0.5}, (4, 32, 32, 3), resnet_out(4, 32, 256)),
        ("resnet3d_10", {"no_max_pool": True, "conv1_t_stride": 2}, (16, 64, 64, 3), (1, 1, 4, 4, 512)),
        (
            "resnet3d_10",
            {"pool1_t_stride": 1, "stage_t_strides": (1, 1, 1), "conv1_t_size": 1, "block_t_size": (1, 1, 3, 3)},
            (6, 32, 32, 3),
            (1, 6, 1, 1, 512),
        ),
        ("preact_resnet3d_200", {"depth": 10}, (8, 64, 64, 3), resnet_out(8, 64, 512)),
        ("preact_resnet3d_200", {"depth": 10, "post_activation": True}, (5, 40, 40, 3), resnet_out(5, 40, 512)),
        ("wide_resnet3d_50", {"k": 1, "blocks": (1, 1, 1, 1)}, (4, 32, 32, 3), resnet_out(4, 32, 1024)),
        ("resnext3d_101", {"blocks": (1, 2, 1, 1)}, (5, 40, 40, 3), resnet_out(5, 40, 2048)),
        ("densenet3d_121", {"block_config": (2, 1, 1, 1)}, (16, 32, 32, 3), densenet_out(16, 32, 72)),
        ("densenet3d_121", {"block_config": (1, 1, 1, 1)}, (24, 80, 64, 3), (1, 1, 2, 2, 68)),
        (
            "densenet3d_201",
            {"block_config": (1, 2, 1, 2), "transition_t_stride": 1, "pool1_t_stride": 1},
            (1, 64, 64, 3),
            (1, 1, 2, 2, 108),
        ),
    ],
)
def test_output_shapes(name, overrides, input_shape, expected):
    assert_output_shape(name, input_shape, expected, **overrides)


def test_densenet_rejects_short_clips_with_a_clear_error():
    with pytest.raises(ValueError, match="T >= 16"):
        densenet3d_backbone((8, 64, 64, 3), block_config=(1, 1, 1, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 20}, "depth must be one of"),
        ({"shortcut_type": "C"}, "shortcut_type"),
        ({"block_t_size": 2}, "odd"),
        ({"conv1_t_size": 4}, "odd"),
        ({"stage_t_strides": (2, 2)}, "stages 3-5"),
    ],
)
def test_resnet3d_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet3d_backbone(SMALL, **{"depth": 10, **kwargs})


def test_preact_layer_names_follow_keras_resnet_v2():
    preact = {l.name for l in models.build_backbone("preact_resnet3d_200", input_shape=SMALL, depth=10).layers}
    assert {"conv1_conv", "conv1_bn", "pool1_pool", "conv2_block1_preact_bn", "conv2_block1_preact_relu"} <= preact
    assert {"conv3_block1_0_conv", "conv3_block1_0_bn", "conv3_block1_1_bn", "conv5_block1_out"} <= preact
    assert "conv2_block1_2_bn" not in preact  # basic pre-act block: BN only before each conv
    assert "post_bn" not in preact  # Hara: no BN-ReLU after the last block


# ----------------------------------------------------------------------- numerics
def test_shortcut_a_is_a_subsampled_zero_padded_identity():
    """PyTorch: avg_pool3d(kernel 1, stride s) then concat zeros along channels."""
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 6, 3)).astype("float32")
    layer = ZeroPadShortcut(8, (2, 2, 2))
    y = keras.ops.convert_to_numpy(layer(x))
    expected = np.concatenate([x[:, ::2, ::2, ::2, :], np.zeros((2, 3, 4, 3, 5), "float32")], axis=-1)
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape((None, 5, 7, 6, 3)) == (None, 3, 4, 3, 8)
    assert not layer.weights


def test_one_frame_clip_uses_only_the_centre_temporal_taps():
    """With T = 1 and zero temporal padding, a 3D ResNet equals the same network with
    every temporal kernel cut to its centre tap (the paper's image pre-training)."""
    full = models.build_backbone("resnet3d_10", input_shape=(1, 32, 32, 3))
    flat = models.build_backbone("resnet3d_10", input_shape=(1, 32, 32, 3), conv1_t_size=1, block_t_size=1)
    perturb_batch_norms(full)
    for target in flat.layers:
        for w_flat, w_full in zip(target.weights, full.get_layer(target.name).weights):
            value = keras.ops.convert_to_numpy(w_full)
            if value.ndim == 5:  # conv kernel (kt, kh, kw, cin, cout): centre tap
                value = value[value.shape[0] // 2 : value.shape[0] // 2 + 1]
            w_flat.assign(value)
    x = random_clip((1, 32, 32, 3), batch=2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(full(x, training=False)),
        keras.ops.convert_to_numpy(flat(x, training=False)),
        rtol=1e-5, atol=1e-5,
    )


FRAMEWISE = dict(conv1_t_size=1, block_t_size=1, pool1_t_size=1, pool1_t_stride=1, bn_epsilon=1.001e-5)


def _copy_2d_weights_by_name(model_2d: keras.Model, model_3d: keras.Model) -> None:
    """Every weighted layer of the 2D net has a same-named 3D twin; kernels get a
    leading temporal axis of size 1."""
    weighted_2d = {l.name for l in model_2d.layers if l.weights}
    weighted_3d = {l.name for l in model_3d.layers if l.weights}
    assert weighted_2d == weighted_3d
    for layer in model_2d.layers:
        if not layer.weights:
            continue
        twin = model_3d.get_layer(layer.name)
        for w2, w3 in zip(layer.get_weights(), twin.weights):
            w3.assign(w2.reshape(w3.shape))


def _assert_framewise(model_2d: keras.Model, model_3d: keras.Model, frames: int, size: int) -> None:
    x = random_clip((frames, size, size, 3), batch=1)
    y3 = keras.ops.convert_to_numpy(model_3d(x, training=False))[0]
    y2 = keras.ops.convert_to_numpy(model_2d(x[0], training=False))
    np.testing.assert_allclose(y3, y2, rtol=1e-5, atol=1e-5)


def test_framewise_resnet50_equals_keras_resnet50_by_name():
    """Temporal kernels 1, temporal strides 1, stride in the 1x1, conv biases: the 3D
    ResNet-50 is keras.applications.ResNet50 on each frame (names are the inflation
    keys; symmetric stride-2 padding matches Keras' explicit ZeroPadding2D)."""
    model_2d = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    perturb_batch_norms(model_2d)
    model_3d = resnet3d_backbone(
        (2, 32, 32, 3), depth=50, stage_t_strides=(1, 1, 1), stride_layout="1x1", conv_bias=True, **FRAMEWISE
    )
    assert all(l.epsilon == 1.001e-5 for l in model_3d.layers if isinstance(l, keras.layers.BatchNormalization))
    _copy_2d_weights_by_name(model_2d, model_3d)
    _assert_framewise(model_2d, model_3d, frames=2, size=32)


@pytest.mark.slow
def test_framewise_densenet121_equals_keras_densenet121_by_name():
    model_2d = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(64, 64, 3))
    perturb_batch_norms(model_2d)
    model_3d = densenet3d_backbone((2, 64, 64, 3), depth=121, transition_t_stride=1, **FRAMEWISE)
    _copy_2d_weights_by_name(model_2d, model_3d)
    _assert_framewise(model_2d, model_3d, frames=2, size=64)


# ------------------------------------------------------ serialisation, distribution
# One instance per family: registered names with small overrides (the registered
# configurations are 33-158M parameters). Final feature maps are 1x2x1 so that BN in
# training mode with one clip per replica is not degenerate (a single value per
# channel normalises to 0 and passes no gradient).
FAMILY_INSTANCES = [
    ("resnet3d_10", {}, (2, 64, 32, 3)),  # shortcut A: the ZeroPadShortcut layer
    ("preact_resnet3d_200", {"depth": 10}, (2, 64, 32, 3)),
    ("wide_resnet3d_50", {"k": 1, "blocks": (1, 1, 1, 1)}, (2, 64, 32, 3)),
    ("resnext3d_101", {"blocks": (1, 1, 1, 1)}, (2, 64, 32, 3)),
    ("densenet3d_121", {"block_config": (1, 1, 1, 1), "transition_t_stride": 1}, (2, 64, 32, 3)),
]


@pytest.mark.parametrize("name, overrides, input_shape", FAMILY_INSTANCES)
def test_save_load_round_trip(name, overrides, input_shape, tmp_path):
    model = models.build_model(name, 5, input_shape=input_shape, **overrides)
    assert_save_load_round_trip(model, tmp_path)


@pytest.mark.parametrize("name, overrides, input_shape", FAMILY_INSTANCES)
@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_mirrored_train_step(name, overrides, input_shape):
    assert_mirrored_train_step(name, input_shape, **overrides)


def test_sts_is_refused_for_hara_models():
    with pytest.raises(ValueError, match="no STS"):
        models.build_backbone("resnet3d_18", input_shape=SMALL, sts=True)
