"""3D DenseNet-121/169/201/264 (DenseNet-BC), as Hara et al. define it in
kenshohara/3D-ResNets-PyTorch (`models/densenet.py`; the released
`densenet-{121,201}-kinetics.pth`).

Hara's definition: stem conv 7x7x7 stride (1, 2, 2) (64 channels), BN, ReLU, 3x3x3 max
pool stride 2; dense layers BN-ReLU-conv 1x1x1 (bn_size * growth_rate) - BN-ReLU-conv
3x3x3 (growth_rate), concatenated to their input; transitions BN-ReLU-conv 1x1x1 (half
the channels) - average pool 2x2x2 stride 2 (T is halved too); a final BN (a BatchNorm2d
in the reference, same parameters), then ReLU before the classifier's pooling. With T
halved four times, a clip needs T >= 16 (`transition_t_stride=1` keeps T, e.g. for
one-frame images).

Layer names are keras.applications' DenseNet ones: `conv1_conv`, `conv1_bn`,
`conv1_relu`, `pool1`; dense layer i of block b (b = 2..5) `conv{b}_block{i}_0_bn`,
`..._0_relu`, `..._1_conv`, `..._1_bn`, `..._1_relu`, `..._2_conv`, `..._concat`;
transitions `pool{b}_bn`, `pool{b}_relu`, `pool{b}_conv`, `pool{b}_pool`; final `bn`,
`relu`. So Keras' 2D DenseNet121/201 ImageNet weights map onto them by name.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.layers import STSConv3D
from tfsts.models.blocks import BN_EPSILON, batch_norm, clip_input, conv_bn
from tfsts.models.resnet_core import stem

DENSENET3D_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}


def dense_layer(
    x, *, name: str, growth_rate: int, bn_size: int, t_size: int = 3, bn_epsilon: float = BN_EPSILON
):
    """BN-ReLU-1x1x1 conv (bn_size * growth_rate), BN-ReLU-(t_size)x3x3 conv
    (growth_rate), concatenated to the input."""
    y = batch_norm(x, f"{name}_0_bn", epsilon=bn_epsilon)
    y = keras.layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = conv_bn(y, bn_size * growth_rate, 1, f"{name}_1", bn_epsilon=bn_epsilon)
    y = STSConv3D(growth_rate, (t_size, 3, 3), sts=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def transition(x, *, name: str, t_stride: int = 2, bn_epsilon: float = BN_EPSILON):
    """BN-ReLU-1x1x1 conv to half the channels, average pool (t_stride, 2, 2) with
    stride (t_stride, 2, 2), no padding (floor, as PyTorch's AvgPool3d)."""
    channels = x.shape[-1]
    pool = (t_stride, 2, 2)
    if any(n is not None and n < p for n, p in zip(x.shape[1:4], pool)):
        raise ValueError(
            f"{name}: the feature map {tuple(x.shape[1:4])} (T, H, W) is smaller than the "
            f"transition's {pool} pool. Hara's DenseNet halves T after the stem and at three "
            "transitions: give T >= 16 and H, W >= 32, or transition_t_stride=1 for short clips."
        )
    x = batch_norm(x, f"{name}_bn", epsilon=bn_epsilon)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = STSConv3D(channels // 2, 1, sts=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling3D(pool, strides=pool, padding="valid", name=f"{name}_pool")(x)


def densenet3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "densenet3d",
    depth: int = 121,
    block_config: Sequence[int] | None = None,
    growth_rate: int = 32,
    bn_size: int = 4,
    num_init_features: int = 64,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    pool1_t_size: int = 3,
    pool1_t_stride: int = 2,
    transition_t_stride: int = 2,
    block_t_size: int = 3,
    bn_epsilon: float = BN_EPSILON,
    normalization: str | None = None,
) -> keras.Model:
    """Hara et al.'s 3D DenseNet-BC (depth 121, 169, 201 or 264).

    block_config: dense layers per block (4 ints), overriding `depth`'s (as the
        reference's `DenseNet(block_config=...)`; e.g. a tiny net for tests).
    growth_rate, bn_size, num_init_features: as the reference (32, 4, 64).
    conv1_t_size / conv1_t_stride: the stem conv's temporal size and stride (7, 1).
    pool1_t_size: temporal size of the stem's max pool (3).
    pool1_t_stride / transition_t_stride: temporal strides of the stem max pool and of
        the transitions' average pools (2: Hara; 1 keeps every frame).
    block_t_size: temporal size of the dense layers' 3x3x3 convs (odd). With
        conv1_t_size=1, pool1_t_size=1, block_t_size=1 and temporal strides 1 it is Keras'
        2D DenseNet applied frame by frame (the I3D-inflation seam).
    bn_epsilon: every BN's epsilon (PyTorch's 1e-5; Keras' applications use 1.001e-5).

    Returns the functional model whose output is the final `relu` (BN then ReLU of the
    last dense block, as the reference's forward does before pooling).
    """
    if block_config is None:
        if depth not in DENSENET3D_BLOCKS:
            raise ValueError(f"densenet3d depth must be one of {sorted(DENSENET3D_BLOCKS)}; got {depth}.")
        block_config = DENSENET3D_BLOCKS[depth]
    blocks = tuple(int(n) for n in block_config)
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"block_config must be 4 positive ints (dense layers per block); got {block_config}.")
    if block_t_size < 1 or block_t_size % 2 == 0:
        raise ValueError(f"block_t_size must be odd (symmetric padding); got {block_t_size}.")
    inputs, clip = clip_input(input_shape, normalization)
    x = stem(
        clip,
        filters=num_init_features,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        pool1_t_size=pool1_t_size,
        pool1_t_stride=pool1_t_stride,
        bn_epsilon=bn_epsilon,
        pool_name="pool1",  # keras.applications' DenseNet name
    )
    for index, layers in enumerate(blocks):
        block = index + 2
        for i in range(layers):
            x = dense_layer(
                x, name=f"conv{block}_block{i + 1}", growth_rate=growth_rate, bn_size=bn_size,
                t_size=block_t_size, bn_epsilon=bn_epsilon,
            )
        if index < len(blocks) - 1:
            x = transition(x, name=f"pool{block}", t_stride=transition_t_stride, bn_epsilon=bn_epsilon)
    x = batch_norm(x, "bn", epsilon=bn_epsilon)
    x = keras.layers.Activation("relu", name="relu")(x)
    return keras.Model(inputs, x, name=name)


__all__ = ["DENSENET3D_BLOCKS", "dense_layer", "densenet3d_backbone", "transition"]
