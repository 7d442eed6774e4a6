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

Blocks ((2+1)D: the core's basic block with `factorized`) and stage loop are the
ResNet core's (resnet_core.py); this file is the spec table and the stem.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import clip_input, conv_bn
from tfsts.models import resnet_core
from tfsts.models.resnet_core import Stage, mid_channels, resnet_stages

STAGE_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BN_EPSILON = 1e-3  # Caffe2's, as VMZ sets on every BN
STEM_MID_CHANNELS = 45


def conv2plus1d(x, filters: int, name: str, **options):
    """`resnet_core.conv2plus1d` (one (2+1)D conv + BN (+ ReLU), STS case C on its
    temporal conv when `sts`) with R(2+1)D's BN epsilon, 1e-3, unless given."""
    return resnet_core.conv2plus1d(x, filters, name, **{"bn_epsilon": BN_EPSILON, **options})


def r2plus1d_stages(
    blocks: Sequence[int], temporal_strides: Sequence[int], spatial_strides: Sequence[int]
) -> list[Stage]:
    """The spec table: stage s (2..5) of `64 * 2 ** (s - 2)` channels, its first block
    strided (t, s, s)."""
    if len(temporal_strides) != 4 or len(spatial_strides) != 4 or len(blocks) != 4:
        raise ValueError(
            f"temporal_strides, spatial_strides and stage_blocks need one entry per stage (4); "
            f"got {tuple(temporal_strides)}, {tuple(spatial_strides)} and {tuple(blocks)}."
        )
    return [
        Stage(blocks=int(n), filters=64 * 2**index, strides=(int(st), int(ss), int(ss)))
        for index, (n, st, ss) in enumerate(zip(blocks, temporal_strides, spatial_strides))
    ]


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
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """R(2+1)D features before global pooling ([B, T / 8, H / 16, W / 16, 512] with
    the default strides).

    temporal_strides: per stage conv2..conv5; VMZ's (1, 2, 2, 2) by default, with or
        without STS (case C strides in time). The reference's STS fine-tuning config
        uses (1, 1, 1, 1).
    stage_blocks: blocks per stage, overriding `depth`'s (as mmaction2's
        `stage_blocks`; e.g. (1, 1, 1, 1) for fast structural tests).
    drop_path_rate: stochastic depth of the residual branches, rising linearly over the
        blocks to this rate (resnet_core.py); 0: no drop-path layers.
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"R(2+1)D depth must be one of {sorted(STAGE_BLOCKS)}; got {depth}.")
    blocks = tuple(stage_blocks) if stage_blocks is not None else STAGE_BLOCKS[depth]
    stages = r2plus1d_stages(blocks, temporal_strides, spatial_strides)
    inputs, clip = clip_input(input_shape, normalization)
    x = conv_bn(clip, STEM_MID_CHANNELS, (1, 7, 7), "conv1_spatial", strides=(1, 2, 2), bn_epsilon=BN_EPSILON)
    x = conv_bn(x, 64, (3, 1, 1), "conv1_temporal", bn_epsilon=BN_EPSILON)
    x = resnet_stages(
        x, stages, block="basic", factorized=True, sts=sts, sts_case="C", sts_variant=sts_variant, bn_epsilon=BN_EPSILON,
        drop_path_rate=drop_path_rate,
    )
    return keras.Model(inputs, x, name=name)


__all__ = ["STAGE_BLOCKS", "conv2plus1d", "mid_channels", "r2plus1d_backbone", "r2plus1d_stages"]
