"""R(2+1)D (Tran et al., CVPR 2018): 3D ResNets whose 3x3x3 convs are factorised into
a 1x3x3 spatial conv, BN, ReLU and a 3x1x1 temporal conv.

Layout follows VMZ's PyTorch port (`pt/vmz/models/r2plus1d.py` on torchvision's
`VideoResNet`, whose `r2plus1d_34` is the IG65M / Kinetics checkpoint definition):

* stem (`R2Plus1dStem`, no max pool): 1x7x7 conv stride (1, 2, 2) to 45 channels,
  BN, ReLU, 3x1x1 conv to 64, BN, ReLU;
* four basic-block stages `conv2`..`conv5` (64, 128, 256, 512 channels); each block
  is two (2+1)D convs, the first carrying the stage's stride (the spatial part on the
  1x3x3 conv, the temporal part on the 3x1x1 conv), with a strided 1x1x1 projection
  shortcut where the shape changes;
* every (2+1)D conv has its own mid width M = floor(27 C O / (9 C + 3 O)) (VMZ's
  `Conv2Plus1D` recomputes it per conv; torchvision's `r2plus1d_18` reuses the
  block's first value for the second conv, hence its smaller 31.5M);
* BatchNorm epsilon 1e-3 (VMZ sets Caffe2's value).

STS (sts.md case C) goes on the temporal conv of every (2+1)D conv in the stages,
with its temporal stride; the stem's temporal conv stays plain (sts.md: stems never
get STS). `temporal_strides` defaults to VMZ's (1, 2, 2, 2) whether or not STS is on
(case C can stride in time; the reference's own STS config uses (1, 1, 1, 1): pass it).

Parameter counts with a 400-way head: R(2+1)D-34 63,697,175, exactly VMZ's
`r2plus1d_34`; R(2+1)D-18 is the same definition with [2, 2, 2, 2] blocks (VMZ's
Caffe2 "R2.5D-18", published as 33.3M / 20.7 G at 8x112x112 / 41.5 G at 16x112x112):
33,370,839 (+0.21%), 20.748 / 41.496 conv + linear GMACs. (Hara et al.'s
`resnet2p1d` 18 is 33,421,164; torchvision's `r2plus1d_18` 31,505,325.) R(2+1)D-34
at 8x112x112: 38.089 GMACs, as VMZ's PyTorch model counts.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import add_and_relu, conv_bn

STAGE_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BN_EPSILON = 1e-3  # Caffe2's, as VMZ sets on every BN
STEM_MID_CHANNELS = 45


def mid_channels(in_channels: int, out_channels: int, kernel: int = 3) -> int:
    """R(2+1)D's mid width, chosen so the (2+1)D pair has about the parameters of the
    full kxkxk conv: floor(k k k C O / (k k C + k O))."""
    return (kernel**3 * in_channels * out_channels) // (kernel * kernel * in_channels + kernel * out_channels)


def conv2plus1d(
    x,
    filters: int,
    name: str,
    *,
    strides: Sequence[int] = (1, 1, 1),
    activation: str | None = "relu",
    sts: bool = False,
    sts_variant: str = "reference",
    bn_epsilon: float = BN_EPSILON,
):
    """One (2+1)D conv + BN (+ activation): `{name}_spatial_conv/bn/relu` (1x3x3,
    spatial stride), then `{name}_temporal_conv/bn[/relu]` (3x1x1, temporal stride,
    STS case C when `sts`)."""
    st, sh, sw = strides
    mid = mid_channels(int(x.shape[-1]), filters)
    x = conv_bn(x, mid, (1, 3, 3), f"{name}_spatial", strides=(1, sh, sw), bn_epsilon=bn_epsilon)
    return conv_bn(
        x, filters, (3, 1, 1), f"{name}_temporal", strides=(st, 1, 1), activation=activation,
        sts=sts, sts_case="C", sts_variant=sts_variant, bn_epsilon=bn_epsilon,
    )


def basic_block(
    x,
    filters: int,
    name: str,
    *,
    strides: Sequence[int] = (1, 1, 1),
    sts: bool = False,
    sts_variant: str = "reference",
):
    """Two (2+1)D convs (the first strided), projection shortcut where the shape
    changes, ReLU after the sum."""
    strides = tuple(strides)
    shortcut = x
    if x.shape[-1] != filters or any(s != 1 for s in strides):
        shortcut = conv_bn(x, filters, 1, f"{name}_0", strides=strides, activation=None, bn_epsilon=BN_EPSILON)
    y = conv2plus1d(x, filters, f"{name}_1", strides=strides, sts=sts, sts_variant=sts_variant)
    y = conv2plus1d(y, filters, f"{name}_2", activation=None, sts=sts, sts_variant=sts_variant)
    return add_and_relu(shortcut, y, name)


def r2plus1d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "r2plus1d_34",
    depth: int = 34,
    sts: bool = True,
    sts_variant: str = "reference",
    temporal_strides: Sequence[int] = (1, 2, 2, 2),
    spatial_strides: Sequence[int] = (1, 2, 2, 2),
    stage_blocks: Sequence[int] | None = None,
) -> keras.Model:
    """R(2+1)D features before global pooling ([B, T / 8, H / 16, W / 16, 512] with
    the default strides).

    temporal_strides: per stage conv2..conv5; VMZ's (1, 2, 2, 2) by default, with or
        without STS (case C strides in time). The reference's STS fine-tuning config
        uses (1, 1, 1, 1).
    stage_blocks: blocks per stage, overriding `depth`'s (as mmaction2's
        `stage_blocks`; e.g. (1, 1, 1, 1) for fast structural tests).
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"R(2+1)D depth must be one of {sorted(STAGE_BLOCKS)}; got {depth}.")
    blocks_per_stage = tuple(stage_blocks) if stage_blocks is not None else STAGE_BLOCKS[depth]
    if len(temporal_strides) != 4 or len(spatial_strides) != 4 or len(blocks_per_stage) != 4:
        raise ValueError(
            f"temporal_strides, spatial_strides and stage_blocks need one entry per stage (4); "
            f"got {tuple(temporal_strides)}, {tuple(spatial_strides)} and {blocks_per_stage}."
        )
    inputs = keras.Input(tuple(input_shape), name="clip")
    x = conv_bn(inputs, STEM_MID_CHANNELS, (1, 7, 7), "conv1_spatial", strides=(1, 2, 2), bn_epsilon=BN_EPSILON)
    x = conv_bn(x, 64, (3, 1, 1), "conv1_temporal", bn_epsilon=BN_EPSILON)
    for stage, blocks in enumerate(blocks_per_stage, start=2):
        filters = 64 * 2 ** (stage - 2)
        st, ss = int(temporal_strides[stage - 2]), int(spatial_strides[stage - 2])
        for block in range(blocks):
            x = basic_block(
                x,
                filters,
                f"conv{stage}_block{block + 1}",
                strides=(st, ss, ss) if block == 0 else (1, 1, 1),
                sts=sts,
                sts_variant=sts_variant,
            )
    return keras.Model(inputs, x, name=name)
