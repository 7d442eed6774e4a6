"""X3D (Feichtenhofer, CVPR 2020), as pytorchvideo's `create_x3d` / hub `x3d_s`,
`x3d_m` build it.

* stem: 1x3x3 conv, stride (1, 2, 2), 3 -> 24 channels, then a 5x1x1 depthwise
  temporal conv (no BN between the two), BN, ReLU;
* four stages `conv2`..`conv5`: out widths 24, 48, 96, 192, inner width
  int(2.25 * out) = 54, 108, 216, 432, depths ceil(2.2 * [1, 2, 5, 3]) = 3, 5, 11, 7,
  spatial stride 2 on each stage's first block, no temporal stride;
* block: 1x1x1 conv, BN, ReLU; depthwise 3x3x3 conv, BN, squeeze-excitation (every
  other block, the 1st, 3rd, ...), swish; 1x1x1 conv, BN; sum with the shortcut, ReLU.
  The shortcut is a 1x1x1 conv where the width or stride changes, with a BN only
  where the width changes (pytorchvideo's `create_x3d_res_block`: so conv2's first
  block has a strided shortcut conv without BN; mmaction2 adds one, 48 params more);
* SE: global average pool, 1x1x1 conv (with bias) to `round_width(inner, 1/16)`
  (pytorchvideo's rounding: to a multiple of 8, at least 8, bumped up by 8 when that
  lost more than 10%: 8, 8, 16, 32 per stage), ReLU, 1x1x1 conv (with bias) back,
  sigmoid, channel-wise scale;
* BatchNorm epsilon 1e-5 (pytorchvideo's).

X3D-S and X3D-M are the same network (3,794,274 parameters with a 400-way head, as
pytorchvideo's hub models); they differ only in input size (13x160x160 and
16x224x224). X3D-XS (4x160x160) is the same network too; X3D-L uses depth factor 5.

The head (`x3d_head`) is pytorchvideo's: conv5 1x1x1 to 432 + BN + ReLU, global
average pool, lin5 1x1x1 to 2048 (no bias) + ReLU, dropout, linear projection.
pytorchvideo pools with a fixed kernel (the feature size at the training input) and
stride 1; global pooling equals it at that size and takes any size.

STS (sts.md case A) goes on every block's depthwise 3x3x3 conv; the stem's
temporal conv stays plain (sts.md: stems never get STS).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import keras

from tfsts.layers import STSConv3D
from tfsts.models.blocks import add_and_relu, batch_norm, classifier, clip_input, conv_bn, drop_path, drop_path_schedule

BN_EPSILON = 1e-5
# Depth factor per variant (width factor 2.0, bottleneck factor 2.25 for all).
DEPTH_FACTORS = {"xs": 2.2, "s": 2.2, "m": 2.2, "l": 5.0}
BASE_DEPTHS = (1, 2, 5, 3)
STEM_WIDTH_BASE = 12
WIDTH_FACTOR = 2.0
BOTTLENECK_FACTOR = 2.25
SE_RATIO = 0.0625
HEAD_WIDTH = 2048


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """pytorchvideo's `round_width`: width * multiplier to the nearest multiple of
    `divisor` (at least `min_width`), one `divisor` more if that lost over 10%."""
    width = width * multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    return int(math.ceil(multiplier * repeats))


def stage_config(variant: str = "s", stage_blocks: Sequence[int] | None = None) -> list[dict]:
    """Per stage: out width, inner width, number of blocks, SE width."""
    if variant not in DEPTH_FACTORS:
        raise ValueError(f"X3D variant must be one of {sorted(DEPTH_FACTORS)}; got {variant!r}.")
    if stage_blocks is not None and len(stage_blocks) != 4:
        raise ValueError(f"stage_blocks needs one entry per stage (4); got {tuple(stage_blocks)}.")
    dims = [STEM_WIDTH_BASE]
    for _ in range(3):
        dims.append(round_width(dims[-1], 2.0))
    stages = []
    for i, (dim, depth) in enumerate(zip(dims, BASE_DEPTHS)):
        out = round_width(dim, WIDTH_FACTOR)
        inner = int(BOTTLENECK_FACTOR * out)
        stages.append({
            "out": out,
            "inner": inner,
            "blocks": int(stage_blocks[i]) if stage_blocks is not None else round_repeats(depth, DEPTH_FACTORS[variant]),
            "se": round_width(inner, SE_RATIO),
        })
    return stages


def squeeze_excitation(x, reduced: int, name: str):
    """fvcore's `SqueezeExcitation` (3D): x * sigmoid(W2 relu(W1 mean(x) + b1) + b2)."""
    channels = int(x.shape[-1])
    s = keras.layers.GlobalAveragePooling3D(keepdims=True, name=f"{name}_pool")(x)
    s = STSConv3D(reduced, 1, use_bias=True, sts=False, name=f"{name}_reduce_conv")(s)
    s = keras.layers.Activation("relu", name=f"{name}_relu")(s)
    s = STSConv3D(channels, 1, use_bias=True, sts=False, name=f"{name}_expand_conv")(s)
    s = keras.layers.Activation("sigmoid", name=f"{name}_sigmoid")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def x3d_block(
    x,
    *,
    inner: int,
    out: int,
    name: str,
    spatial_stride: int = 1,
    se_width: int = 0,
    sts: bool = False,
    sts_variant: str = "reference",
    drop_path_rate: float = 0.0,
):
    """X3D bottleneck with its residual sum (see the module docstring); with
    `drop_path_rate` > 0 a `{name}_drop_path` on the residual branch before the sum."""
    in_width = int(x.shape[-1])
    strides = (1, spatial_stride, spatial_stride)
    shortcut = x
    if in_width != out or spatial_stride != 1:
        shortcut = STSConv3D(out, 1, strides=strides, sts=False, name=f"{name}_0_conv")(x)
        if in_width != out:
            shortcut = batch_norm(shortcut, f"{name}_0_bn", epsilon=BN_EPSILON, fused=True)  # after a 1x1x1 conv
    y = conv_bn(x, inner, 1, f"{name}_1", bn_epsilon=BN_EPSILON)
    y = conv_bn(
        y, inner, 3, f"{name}_2", strides=strides, groups=inner, activation=None,
        sts=sts, sts_case="A", sts_variant=sts_variant, bn_epsilon=BN_EPSILON,
    )
    if se_width:
        y = squeeze_excitation(y, se_width, f"{name}_se")
    y = keras.layers.Activation("swish", name=f"{name}_2_swish")(y)
    y = conv_bn(y, out, 1, f"{name}_3", activation=None, bn_epsilon=BN_EPSILON)
    return add_and_relu(shortcut, drop_path(y, drop_path_rate, name), name)


def x3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "x3d_s",
    variant: str = "s",
    sts: bool = True,
    sts_variant: str = "reference",
    stage_blocks: Sequence[int] | None = None,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """X3D features before the head ([B, T, H/32, W/32, 192]); conv5 1x1x1 and the
    pooling are in `x3d_head`, as in pytorchvideo.

    stage_blocks: blocks per stage, overriding the variant's (e.g. (1, 1, 1, 1) for
        fast structural tests).
    drop_path_rate: stochastic depth of the residual branches, rising linearly from 0
        over all blocks (as the ResNet core, resnet_core.py); 0: no drop-path layers.
    """
    stages = stage_config(variant, stage_blocks)
    rates = iter(drop_path_schedule(sum(cfg["blocks"] for cfg in stages), drop_path_rate))
    inputs, clip = clip_input(input_shape, normalization)
    stem_width = round_width(STEM_WIDTH_BASE, WIDTH_FACTOR)
    x = STSConv3D(stem_width, (1, 3, 3), strides=(1, 2, 2), sts=False, name="conv1_spatial_conv")(clip)
    x = STSConv3D(stem_width, (5, 1, 1), groups=stem_width, sts=False, name="conv1_temporal_conv")(x)
    x = batch_norm(x, "conv1_bn", epsilon=BN_EPSILON)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    for stage, cfg in enumerate(stages, start=2):
        for block in range(cfg["blocks"]):
            x = x3d_block(
                x,
                inner=cfg["inner"],
                out=cfg["out"],
                name=f"conv{stage}_block{block + 1}",
                spatial_stride=2 if block == 0 else 1,
                se_width=cfg["se"] if block % 2 == 0 else 0,
                sts=sts,
                sts_variant=sts_variant,
                drop_path_rate=next(rates),
            )
    return keras.Model(inputs, x, name=name)


def x3d_head(
    features,
    num_classes: int | Mapping[str, int],
    dropout: float = 0.5,
    name: str = "head",
):
    """pytorchvideo's X3D head on the backbone's features: `{name}_conv5_conv/bn/relu`
    (1x1x1 to 2.25x the width), `{name}_pool` (global average), `{name}_lin5_conv/relu`
    (1x1x1 to 2048, no bias), dropout, then one Dense per dataset: an int gives one
    output named `name`, a mapping `{dataset: classes}` a dict of outputs from Dense
    layers `{name}_{dataset}` (as `blocks.classification_head`)."""
    if isinstance(features, (list, tuple)):
        if len(features) != 1:
            raise ValueError(f"X3D has one pathway; got {len(features)} feature maps.")
        features = features[0]
    width = int(features.shape[-1])
    x = conv_bn(features, int(BOTTLENECK_FACTOR * width), 1, f"{name}_conv5", bn_epsilon=BN_EPSILON)
    x = keras.layers.GlobalAveragePooling3D(keepdims=True, name=f"{name}_pool")(x)
    x = STSConv3D(HEAD_WIDTH, 1, sts=False, name=f"{name}_lin5_conv")(x)
    x = keras.layers.Activation("relu", name=f"{name}_lin5_relu")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if isinstance(num_classes, Mapping):
        if not num_classes:
            raise ValueError("num_classes is an empty mapping; give {dataset_name: num_classes}.")
        return {dataset: classifier(n, f"{name}_{dataset}")(x) for dataset, n in num_classes.items()}
    return classifier(num_classes, name)(x)
