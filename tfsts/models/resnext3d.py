"""3D ResNeXt-50/101/152, as Hara et al. define it in kenshohara/3D-ResNets-PyTorch
(`models/resnext.py`; the released `resnext-101-kinetics.pth`:
`--model_depth 101 --resnet_shortcut B --resnext_cardinality 32`).

The 3D ResNet bottleneck with a grouped 3x3x3 conv: stage "planes" 128, 256, 512,
1024, inner width `cardinality * (planes // 32)` (= planes for cardinality 32, i.e.
ResNeXt 32x4d), `cardinality` groups, expansion 2 (outputs 256 ... 2048). Stem,
strides and shortcuts as the 3D ResNet; layer names as resnet3d.py.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.resnet3d import build_resnet3d

RESNEXT3D_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
RESNEXT_PLANES = (128, 256, 512, 1024)
RESNEXT_EXPANSION = 2


def resnext3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "resnext3d",
    depth: int = 101,
    blocks: Sequence[int] | None = None,
    cardinality: int = 32,
    shortcut_type: str = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    **options,
) -> keras.Model:
    """Hara et al.'s 3D ResNeXt (depth 50, 101 or 152; `cardinality` groups).

    `blocks` (blocks per stage 2-5) overrides `depth`'s, e.g. for a tiny test network.
    `options` go to `resnet3d.build_resnet3d` (pool1_t_size, pool1_t_stride, stage_t_strides,
    block_t_size, stride_layout, conv_bias). Returns the functional model whose output
    is the last block's (`conv5_block3_out`, 2048 channels).
    """
    if blocks is None:
        if depth not in RESNEXT3D_DEPTHS:
            raise ValueError(f"resnext3d depth must be one of {sorted(RESNEXT3D_DEPTHS)}; got {depth}.")
        blocks = RESNEXT3D_DEPTHS[depth]
    widths = [cardinality * (p // 32) for p in RESNEXT_PLANES]
    if cardinality < 1 or min(widths) == 0:
        raise ValueError(f"cardinality must be a positive int giving non-empty groups; got {cardinality}.")
    return build_resnet3d(
        input_shape,
        name=name,
        block="bottleneck",
        blocks=tuple(blocks),
        filters=[p * RESNEXT_EXPANSION for p in RESNEXT_PLANES],
        widths=widths,
        groups=cardinality,
        stem_filters=64,
        shortcut_type=shortcut_type,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        **options,
    )


__all__ = ["RESNEXT3D_DEPTHS", "resnext3d_backbone"]
