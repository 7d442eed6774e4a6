"""Pre-activation 3D ResNet (He et al.'s "identity mappings"), as Hara et al. define
it in kenshohara/3D-ResNets-PyTorch (`models/pre_act_resnet.py`; the released
`preresnet-200-kinetics.pth` was built with it, `--resnet_shortcut B`).

Hara's definition, reproduced here, differs from keras.applications' ResNetV2:
* the stem is the post-activation one of the 3D ResNet (conv 7x7x7 stride (1, 2, 2),
  BN, ReLU, 3x3x3 max pool with stride 2);
* a block is BN-ReLU-conv (x3 for Bottleneck, x2 for BasicBlock) and the shortcut
  (identity, A or B) takes the block's raw input, not its pre-activated input;
* the stride sits on the first block of a stage (stages 3-5, stride 2 in T, H, W) and,
  in a bottleneck, on the 3x3x3 conv;
* there is no BN-ReLU after the last block (`post_activation=True` adds one, named
  `post_bn` / `post_relu` as in Keras' ResNetV2).

Layer names follow ResNetV2's: `conv{s}_block{i}_preact_bn`, `..._preact_relu`,
`..._1_conv`, `..._1_bn`, `..._1_relu`, `..._2_conv`, ..., `..._3_conv`, the projection
`..._0_conv` / `..._0_bn` (or `..._0_zero_pad` for shortcut A), and the sum `..._out`.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.layers import STSConv3D
from tfsts.models.blocks import batch_norm, clip_input, conv_bn
from tfsts.models.resnet3d import RESNET3D_DEPTHS
from tfsts.models.resnet_core import SHORTCUT_TYPES, shortcut, stem


def preact_block(
    x,
    width: int,
    filters: int,
    *,
    name: str,
    bottleneck: bool,
    strides: Sequence[int] = (1, 1, 1),
    shortcut_type: str = "B",
    t_size: int = 3,
):
    """BN-ReLU-conv units plus the shortcut of the raw input.

    Bottleneck: 1x1x1 to `width`, (t_size, 3, 3) with the stride, 1x1x1 to `filters`.
    Basic: two (t_size, 3, 3) convs to `filters`, the first with the stride.
    """
    residual = shortcut(x, filters, strides, shortcut_type, name)
    y = batch_norm(x, f"{name}_preact_bn")
    y = keras.layers.Activation("relu", name=f"{name}_preact_relu")(y)
    if bottleneck:
        y = conv_bn(y, width, 1, f"{name}_1")
        y = conv_bn(y, width, (t_size, 3, 3), f"{name}_2", strides=strides)
        y = STSConv3D(filters, 1, sts=False, name=f"{name}_3_conv")(y)
    else:
        y = conv_bn(y, filters, (t_size, 3, 3), f"{name}_1", strides=strides)
        y = STSConv3D(filters, (t_size, 3, 3), sts=False, name=f"{name}_2_conv")(y)
    return keras.layers.Add(name=f"{name}_out")([residual, y])


def preact_resnet3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "preact_resnet3d",
    depth: int = 200,
    shortcut_type: str = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    block_t_size: int = 3,
    post_activation: bool = False,
    normalization: str | None = None,
) -> keras.Model:
    """Hara et al.'s pre-activation 3D ResNet (any depth of the 3D ResNet table;
    BasicBlock below 50). Shortcut "B" is the reference default for every depth.

    Returns the functional model whose output is the last block's sum
    (`conv5_block{n}_out`), or `post_relu` with `post_activation`.
    """
    if depth not in RESNET3D_DEPTHS:
        raise ValueError(f"preact_resnet3d depth must be one of {sorted(RESNET3D_DEPTHS)}; got {depth}.")
    if shortcut_type not in SHORTCUT_TYPES:
        raise ValueError(f"shortcut_type must be one of {SHORTCUT_TYPES}; got {shortcut_type!r}.")
    if block_t_size < 1 or block_t_size % 2 == 0:
        raise ValueError(f"block_t_size must be odd (symmetric padding); got {block_t_size}.")
    block, blocks = RESNET3D_DEPTHS[depth]
    bottleneck = block == "bottleneck"
    expansion = 4 if bottleneck else 1

    inputs, clip = clip_input(input_shape, normalization)
    x = stem(clip, conv1_t_size=conv1_t_size, conv1_t_stride=conv1_t_stride, no_max_pool=no_max_pool)
    for stage_index, planes in enumerate((64, 128, 256, 512)):
        for i in range(blocks[stage_index]):
            strides = (2, 2, 2) if (stage_index > 0 and i == 0) else (1, 1, 1)
            x = preact_block(
                x, planes, planes * expansion, name=f"conv{stage_index + 2}_block{i + 1}",
                bottleneck=bottleneck, strides=strides, shortcut_type=shortcut_type, t_size=block_t_size,
            )
    if post_activation:
        x = batch_norm(x, "post_bn")
        x = keras.layers.Activation("relu", name="post_relu")(x)
    return keras.Model(inputs, x, name=name)


__all__ = ["preact_block", "preact_resnet3d_backbone"]
