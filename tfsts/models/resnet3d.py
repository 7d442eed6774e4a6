"""3D ResNet-10/18/34/50/101/152/200 of Hara et al. (kenshohara/3D-ResNets-PyTorch).

"Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?" (CVPR 2018):
a 2D ResNet with every kernel made 3D. Defaults reproduce the reference code:

* stem: conv 7x7x7 (`conv1_t_size`), stride (1, 2, 2), BN, ReLU, then a 3x3x3 max pool
  with stride 2 in all three dims (`no_max_pool` drops it);
* BasicBlock (two 3x3x3 convs) for depth 10/18/34, Bottleneck (1x1x1, 3x3x3, 1x1x1,
  expansion 4, stride on the 3x3x3 conv) for 50 and deeper;
* the first block of stages 3-5 has stride 2 in T, H and W;
* shortcut "A" (the CVPR2018 release of ResNet-18/34): identity, subsampled and
  zero-padded along channels where the shape changes, no weights; shortcut "B" (50+,
  and the master branch's default): 1x1x1 conv + BN where the shape changes.

Layer names follow keras.applications' ResNet ("conv3_block2_1_conv", "conv3_block2_0_bn",
"conv3_block2_add", "conv3_block2_out"), so a later issue can inflate Keras' 2D ImageNet
ResNets by name. The seams for that are `stride_layout="1x1"` (Keras' ResNet v1 strides
the first 1x1 conv), `conv_bias` (Keras' convs carry a bias), and the temporal kernel and
stride options `conv1_t_size`, `pool1_t_size`, `pool1_t_stride`, `block_t_size` and
`stage_t_strides` (all 1 gives a frame-wise 2D ResNet: with `stride_layout="1x1"`,
`conv_bias` and `bn_epsilon=1.001e-5`, exactly Keras' ResNet50 applied to every frame).

`build_resnet3d` is the general builder shared with the wide ResNet and ResNeXt
families (wide_resnet3d.py, resnext3d.py); stem, blocks and stage loop are the ResNet
core's (resnet_core.py).
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import BN_EPSILON, clip_input
from tfsts.models.resnet_core import (
    SHORTCUT_TYPES,
    Stage,
    ZeroPadShortcut,
    basic_block,
    bottleneck_block,
    check_stride_layout,
    resnet_stages,
    shortcut,
    stem,
)

# depth -> (block type, blocks per stage 2..5), as Hara's `generate_model`.
RESNET3D_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def _per_stage(value: int | Sequence[int], what: str) -> tuple[int, int, int, int]:
    values = (value,) * 4 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 4:
        raise ValueError(f"{what} must be an int or 4 ints (stages 2-5); got {value}.")
    return values


def hara_stages(
    blocks: Sequence[int],
    filters: Sequence[int],
    widths: Sequence[int] | None = None,
    groups: int = 1,
    stage_t_strides: Sequence[int] = (2, 2, 2),
    block_t_size: int | Sequence[int] = 3,
) -> list[Stage]:
    """Hara's spec table: stage 2 unstrided, the first blocks of stages 3-5 strided
    (stage_t_strides, 2, 2); every block's 3x3x3 conv (block_t_size, 3, 3)."""
    stage_t_strides = tuple(int(s) for s in stage_t_strides)
    if len(stage_t_strides) != 3:
        raise ValueError(f"stage_t_strides gives the temporal stride of stages 3-5 (3 ints); got {stage_t_strides}.")
    t_sizes = _per_stage(block_t_size, "block_t_size")
    if any(t < 1 or t % 2 == 0 for t in t_sizes):
        raise ValueError(f"block_t_size must be odd (symmetric padding); got {block_t_size}.")
    if len(blocks) != 4 or len(filters) != 4 or (widths is not None and len(widths) != 4):
        raise ValueError("blocks, filters and widths give one value per stage 2-5 (4 each).")
    if min(blocks) < 1:
        raise ValueError(f"every stage needs at least one block; got blocks={tuple(blocks)}.")
    t_strides = (1, *stage_t_strides)
    return [
        Stage(
            blocks=int(blocks[i]), filters=int(filters[i]), width=0 if widths is None else int(widths[i]),
            strides=(1, 1, 1) if i == 0 else (t_strides[i], 2, 2), t_sizes=t_sizes[i], groups=groups,
        )
        for i in range(4)
    ]


def build_resnet3d(
    input_shape: Sequence[int],
    *,
    name: str,
    block: str,
    blocks: Sequence[int],
    filters: Sequence[int],
    widths: Sequence[int] | None = None,
    groups: int = 1,
    stem_filters: int = 64,
    shortcut_type: str = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    pool1_t_size: int = 3,
    pool1_t_stride: int = 2,
    stage_t_strides: Sequence[int] = (2, 2, 2),
    block_t_size: int | Sequence[int] = 3,
    stride_layout: str = "3x3",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """General post-activation 3D ResNet (shared by ResNet, wide ResNet and ResNeXt).

    block: "basic" or "bottleneck"; blocks: blocks per stage 2..5; filters: each
    stage's output channels; widths: a bottleneck's inner channels per stage; groups:
    the bottleneck 3x3x3 conv's groups (ResNeXt cardinality); stride_layout: "3x3"
    (Hara) or "1x1" (Keras' ResNet v1; resnet_core.py). Returns the functional model
    from `clip` to the last block's output (`conv5_block{n}_out`). drop_path_rate:
    stochastic depth, linear over the blocks (resnet_core.py); 0: none.
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}.")
    if shortcut_type not in SHORTCUT_TYPES:
        raise ValueError(f"shortcut_type must be one of {SHORTCUT_TYPES}; got {shortcut_type!r}.")
    check_stride_layout(stride_layout, name)
    if block == "bottleneck" and widths is None:
        raise ValueError("a bottleneck network needs `widths`.")
    stages = hara_stages(blocks, filters, widths, groups, stage_t_strides, block_t_size)
    layout = dict(conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    inputs, clip = clip_input(input_shape, normalization)
    x = stem(
        clip, filters=stem_filters, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool, pool1_t_size=pool1_t_size, pool1_t_stride=pool1_t_stride, **layout,
    )
    if block == "bottleneck":
        layout["stride_layout"] = stride_layout
    x = resnet_stages(x, stages, block=block, shortcut_type=shortcut_type, drop_path_rate=drop_path_rate, **layout)
    return keras.Model(inputs, x, name=name)


def resnet3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "resnet3d",
    depth: int = 18,
    shortcut_type: str | None = None,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    widen_factor: float = 1.0,
    pool1_t_size: int = 3,
    pool1_t_stride: int = 2,
    stage_t_strides: Sequence[int] = (2, 2, 2),
    block_t_size: int | Sequence[int] = 3,
    stride_layout: str = "3x3",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """Hara et al.'s 3D ResNet (master `models/resnet.py`; CVPR2018 branch for shortcut A).

    input_shape: (T, H, W, C) of the clip (channels last).
    depth: 10, 18, 34 (BasicBlock), 50, 101, 152 or 200 (Bottleneck).
    shortcut_type: "A" (zero-padded identity; the released 18/34 models) or "B"
        (1x1x1 conv + BN; the released 50+ models). None: A below 50, B from 50.
    conv1_t_size, conv1_t_stride, no_max_pool, widen_factor: as Hara's options
        (`widen_factor` scales every stage's width and the stem, rounded down).
    pool1_t_size, pool1_t_stride: temporal size and stride of the stem's max pool
        (Hara: 3 and 2).
    stage_t_strides: temporal strides of the first blocks of stages 3, 4, 5 (Hara: 2).
    block_t_size: temporal size of the 3x3x3 convs (odd; int or one per stage 2-5).
        With conv1_t_size=1, pool1_t_size=1, block_t_size=1 and all temporal strides 1
        the network is a 2D ResNet applied frame by frame (the I3D-inflation seam).
    stride_layout: where a bottleneck's stride sits: "3x3" on the 3x3x3 conv (Hara) or
        "1x1" on its first 1x1x1 conv (Keras' ResNet v1).
    conv_bias: give every conv a bias (Keras' ResNet convs have one; Hara's have none).
    bn_epsilon: every BN's epsilon (PyTorch's 1e-5; Keras' applications use 1.001e-5).
    drop_path_rate: stochastic depth, linear over the blocks (resnet_core.py); 0: none.

    Returns the functional model whose output is the last feature map before global
    pooling ([B, T', H', W', 512 or 2048] times widen_factor).
    """
    if depth not in RESNET3D_DEPTHS:
        raise ValueError(f"resnet3d depth must be one of {sorted(RESNET3D_DEPTHS)}; got {depth}.")
    if widen_factor <= 0:
        raise ValueError(f"widen_factor must be positive; got {widen_factor}.")
    block, blocks = RESNET3D_DEPTHS[depth]
    if shortcut_type is None:
        shortcut_type = "A" if block == "basic" else "B"
    planes = [int(p * widen_factor) for p in (64, 128, 256, 512)]
    expansion = 1 if block == "basic" else 4
    return build_resnet3d(
        input_shape,
        name=name,
        block=block,
        blocks=blocks,
        filters=[p * expansion for p in planes],
        widths=None if block == "basic" else planes,
        stem_filters=planes[0],
        shortcut_type=shortcut_type,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        pool1_t_size=pool1_t_size,
        pool1_t_stride=pool1_t_stride,
        stage_t_strides=stage_t_strides,
        block_t_size=block_t_size,
        stride_layout=stride_layout,
        conv_bias=conv_bias,
        bn_epsilon=bn_epsilon,
        drop_path_rate=drop_path_rate,
        normalization=normalization,
    )


__all__ = [
    "RESNET3D_DEPTHS",
    "SHORTCUT_TYPES",
    "ZeroPadShortcut",
    "basic_block",
    "bottleneck_block",
    "build_resnet3d",
    "hara_stages",
    "resnet3d_backbone",
    "shortcut",
    "stem",
]
