"""Wide 3D ResNet-50, as Hara et al. define it in kenshohara/3D-ResNets-PyTorch
(`models/wide_resnet.py` of the CVPR2018 release, `wideresnet-50-kinetics.pth`:
`--model_depth 50 --wide_resnet_k 2 --resnet_shortcut B`).

The 3D ResNet-50 with its bottleneck widths multiplied by k (64k, 128k, 256k, 512k) and
the expansion cut from 4 to 2, so the stages output 128k ... 1024k channels (2048 for
k = 2, as ResNet-50) while the 3x3x3 convs are k times wider. The stem keeps 64
channels, as in the release (a later refactor builds the wide net through the generic
`resnet.ResNet`, whose master version widens the stem too). Layer names as the 3D
ResNet (resnet3d.py).
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.resnet3d import build_resnet3d

WIDE_RESNET3D_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3)}
WIDE_EXPANSION = 2


def wide_resnet3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "wide_resnet3d",
    depth: int = 50,
    blocks: Sequence[int] | None = None,
    k: int = 2,
    shortcut_type: str = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    **options,
) -> keras.Model:
    """Hara et al.'s wide 3D ResNet (depth 50; widening factor `k`, the reference's
    `--wide_resnet_k`, 2 for the released model).

    `blocks` (blocks per stage 2-5) overrides `depth`'s, e.g. for a tiny test network.
    `options` go to `resnet3d.build_resnet3d` (pool1_t_size, pool1_t_stride, stage_t_strides,
    block_t_size, stride_layout, conv_bias). Returns the functional model whose output
    is the last block's (`conv5_block3_out`, 1024k channels).
    """
    if blocks is None:
        if depth not in WIDE_RESNET3D_DEPTHS:
            raise ValueError(f"wide_resnet3d depth must be one of {sorted(WIDE_RESNET3D_DEPTHS)}; got {depth}.")
        blocks = WIDE_RESNET3D_DEPTHS[depth]
    if k < 1:
        raise ValueError(f"k (widening factor) must be a positive int; got {k}.")
    widths = [64 * k, 128 * k, 256 * k, 512 * k]
    return build_resnet3d(
        input_shape,
        name=name,
        block="bottleneck",
        blocks=tuple(blocks),
        filters=[w * WIDE_EXPANSION for w in widths],
        widths=widths,
        stem_filters=64,
        shortcut_type=shortcut_type,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        **options,
    )


__all__ = ["WIDE_RESNET3D_DEPTHS", "wide_resnet3d_backbone"]
