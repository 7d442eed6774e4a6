"""Channel-Separated Networks (Tran et al., ICCV 2019): ir-CSN and ip-CSN.

Layout follows VMZ's PyTorch port (`pt/vmz/models/csn.py` on torchvision's
`VideoResNet`), which mmaction2's `ResNet3dCSN` reproduces and the STS reference code
builds on:

* stem: 3x7x7 conv, stride (1, 2, 2), 64 channels, BN, ReLU, then a 1x3x3 max pool,
  stride (1, 2, 2) (`BasicStem_Pool`);
* four bottleneck stages `conv2`..`conv5` (64, 128, 256, 512 inner channels, 4x that
  out), the (temporal, spatial) stride on the depthwise 3x3x3 conv of each stage's
  first block and on its 1x1x1 projection shortcut;
* ir (interaction-reduced): the bottleneck's 3x3x3 conv is depthwise;
  ip (interaction-preserved): a 1x1x1 conv + BN (no activation) before it;
* BatchNorm epsilon 1e-3 (VMZ sets Caffe2's value on every BN; mmaction2's CSN too).

STS (sts.md case A) goes on the depthwise 3x3x3 conv of every block. Case A needs
temporal stride 1, so `temporal_strides` defaults to (1, 1, 1, 1) with `sts=True`
(what the reference STS configs use: its `ResNet3dCSN` default) and to VMZ's /
mmaction2's baseline (1, 2, 2, 2) with `sts=False`.

Parameter counts with a 400-way head (PyTorch convention, no BN moving statistics):
ir-CSN-152 29,703,568 and ip-CSN-152 33,016,592 (VMZ `ir_csn_152` / `ip_csn_152`),
ir-CSN-50 13,131,152 (VMZ blocks with layers [3, 4, 6, 3], as mmaction2's 13.13M);
ir-CSN-101, ip-CSN-50 and ip-CSN-101 have no published VMZ count: they are the same
VMZ block definitions with mmaction2's stage depths ([3, 4, 23, 3] for 101), giving
22,213,776 (equal to pytorchvideo's `csn_r101` count), 14,396,176 and 24,601,616.
Conv + linear GMACs at 32x224x224 with the baseline strides: ir-CSN-50 42.309,
ir-CSN-152 74.046, ip-CSN-152 83.295 (VMZ's and mmaction2's published 96.7-109.9 G
also count elementwise work; see model_numbers.md). With STS and its temporal
strides (1, 1, 1, 1), time is never downsampled: ir-CSN-50 at 32x224x224 is 80.344.

Stem, bottleneck (depthwise: groups = width; ip: `pointwise`) and stage loop are the
ResNet core's (resnet_core.py); this file is the spec table (`csn_stages`).
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import clip_input
from tfsts.models.resnet_core import Stage, bottleneck_block, resnet_stages, stem

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
MODES = ("ir", "ip")
BN_EPSILON = 1e-3  # Caffe2's, as VMZ and mmaction2 set for CSN
BASELINE_TEMPORAL_STRIDES = (1, 2, 2, 2)  # VMZ / mmaction2 `ResNet3dCSN` without STS
STS_TEMPORAL_STRIDES = (1, 1, 1, 1)  # the reference STS configs (case A needs 1)


def csn_bottleneck(
    x,
    inner: int,
    name: str,
    *,
    mode: str = "ir",
    strides: Sequence[int] = (1, 1, 1),
    sts: bool = False,
    sts_variant: str = "reference",
    bn_epsilon: float = BN_EPSILON,
):
    """One CSN block, the core bottleneck with CSN's options: 1x1x1 -> [ip: 1x1x1 + BN]
    -> depthwise 3x3x3 (strided, STS case A) -> 1x1x1 (4x channels), projection
    shortcut where the shape changes, ReLU after the sum."""
    options = _block_options(mode, sts, sts_variant, bn_epsilon)
    return bottleneck_block(x, inner, inner * 4, name=name, strides=strides, groups=inner, **options)


def _block_options(mode: str, sts: bool, sts_variant: str, bn_epsilon: float = BN_EPSILON) -> dict:
    return dict(pointwise=mode == "ip", sts=sts, sts_case="A", sts_variant=sts_variant, bn_epsilon=bn_epsilon)


def csn_stages(blocks: Sequence[int], temporal_strides: Sequence[int], spatial_strides: Sequence[int]) -> list[Stage]:
    """The spec table: stage s (2..5) has `64 * 2 ** (s - 2)` inner channels (its 3x3x3
    conv depthwise), 4x that out, and its first block strided (t, s, s)."""
    if len(temporal_strides) != 4 or len(spatial_strides) != 4 or len(blocks) != 4:
        raise ValueError(
            f"temporal_strides, spatial_strides and stage_blocks need one entry per stage (4); "
            f"got {tuple(temporal_strides)}, {tuple(spatial_strides)} and {tuple(blocks)}."
        )
    stages = []
    for index, (n, st, ss) in enumerate(zip(blocks, temporal_strides, spatial_strides)):
        inner = 64 * 2**index
        strides = (int(st), int(ss), int(ss))
        stages.append(Stage(blocks=int(n), filters=inner * 4, width=inner, strides=strides, groups=inner))
    return stages


def csn_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "ircsn_152",
    depth: int = 152,
    mode: str = "ir",
    sts: bool = True,
    sts_variant: str = "reference",
    temporal_strides: Sequence[int] | None = None,
    spatial_strides: Sequence[int] = (1, 2, 2, 2),
    stage_blocks: Sequence[int] | None = None,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """ir-/ip-CSN features before global pooling ([B, T', H/32, W/32, 2048]).

    temporal_strides: per stage conv2..conv5; None gives (1, 1, 1, 1) with `sts`
        (the reference STS configs; case A cannot stride in time) and VMZ's baseline
        (1, 2, 2, 2) without. An explicit temporal stride > 1 with `sts=True` raises
        ValueError from the STS conv.
    stage_blocks: blocks per stage, overriding `depth`'s (as mmaction2's
        `stage_blocks`; e.g. (1, 1, 1, 1) for fast structural tests).
    drop_path_rate: stochastic depth of the residual branches, rising linearly over the
        blocks to this rate (resnet_core.py); 0: no drop-path layers.
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"CSN depth must be one of {sorted(STAGE_BLOCKS)}; got {depth}.")
    if mode not in MODES:
        raise ValueError(f"CSN mode must be one of {MODES}; got {mode!r}.")
    if temporal_strides is None:
        temporal_strides = STS_TEMPORAL_STRIDES if sts else BASELINE_TEMPORAL_STRIDES
    blocks = tuple(stage_blocks) if stage_blocks is not None else STAGE_BLOCKS[depth]
    stages = csn_stages(blocks, temporal_strides, spatial_strides)
    inputs, clip = clip_input(input_shape, normalization)
    x = stem(clip, conv1_t_size=3, pool1_t_size=1, pool1_t_stride=1, bn_epsilon=BN_EPSILON)
    x = resnet_stages(
        x, stages, block="bottleneck", drop_path_rate=drop_path_rate, **_block_options(mode, sts, sts_variant)
    )
    return keras.Model(inputs, x, name=name)
