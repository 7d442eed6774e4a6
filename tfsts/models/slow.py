"""Single-pathway 3D ResNets in the pytorchvideo / mmaction2 layout: I3D-R50 and
SlowOnly-R50 (and their shared bottleneck stages, reused by SlowFast).

Layout (pytorchvideo `create_resnet`, mmaction2 `ResNet3d` style='pytorch'): the
bottleneck's spatial stride is on its 3x3 conv; whether its first conv is temporal
(3x1x1) or not (1x1x1) is chosen per stage and block, which is what distinguishes
I3D from SlowOnly. STS (case B) applies to those temporal 3x1x1 first convs.
`stride_layout="1x1"`, `conv_bias=True` and `bn_epsilon=1.001e-5` give the layout of
Keras' ResNet v1 applications, for 2D -> 3D inflation (tfsts.models.inflation). Stem,
blocks and stage loop are the ResNet core's (resnet_core.py); this file is the spec
table (`slow_stages`) and the two builders.

Parameter counts with a 400-way head: SlowOnly-R50 32,454,096 and I3D-R50 28,043,472,
as pytorchvideo's `slow_r50` / `i3d_r50` (docs/reference_numbers.md).
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import BN_EPSILON, MaxPool3D, clip_input
from tfsts.models.resnet_core import Stage, check_stride_layout, resnet_stages, stage_drop_path_rates, stem

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Temporal kernel of each bottleneck's first conv, per stage; a tuple cycles over blocks.
SLOWONLY_CONV_A = (1, 1, 3, 3)
I3D_CONV_A = (3, (3, 1), (3, 1), (1, 3))


def slow_stages(depth: int, temporal_kernels: Sequence[int | Sequence[int]], width: int = 64) -> list[Stage]:
    """The spec table of a pytorchvideo bottleneck ResNet: stage s (2..5) has
    `width * 2 ** (s - 2)` inner channels, 4x that out, spatial stride 2 in its first
    block from conv3 on, and `temporal_kernels[s - 2]` as its first convs' temporal
    size (an int, or a tuple cycled over the blocks)."""
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}; got {depth}.")
    stages = []
    for index, (blocks, kernels) in enumerate(zip(STAGE_BLOCKS[depth], temporal_kernels)):
        inner = width * 2**index
        t_sizes = kernels if isinstance(kernels, int) else tuple(kernels)
        stride = (1, 2, 2) if index > 0 else (1, 1, 1)
        stages.append(Stage(blocks=blocks, filters=inner * 4, width=inner, strides=stride, t_sizes=t_sizes))
    return stages


def block_options(
    *, sts: bool, sts_variant: str, stride_layout: str, conv_bias: bool, bn_epsilon: float, name: str
) -> dict:
    """The core bottleneck's options for pytorchvideo's layout: temporal first conv
    (STS case B), and under stride_layout "1x1" an explicit subsample before it."""
    check_stride_layout(stride_layout, name)
    return dict(
        temporal_first=True, stride_layout=stride_layout, subsample=True, sts=sts, sts_case="B",
        sts_variant=sts_variant, conv_bias=conv_bias, bn_epsilon=bn_epsilon,
    )


def slowonly_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "slowonly_r50",
    depth: int = 50,
    sts: bool = True,
    sts_variant: str = "reference",
    stride_layout: str = "3x3",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """SlowOnly (Feichtenhofer et al. 2019): temporal convs only in conv4/conv5, the
    stages the reference turns to STS. stride_layout: "3x3" (pytorchvideo) or "1x1"
    (Keras' ResNet v1; resnet_core.py). drop_path_rate: stochastic depth, linear over
    the blocks (resnet_core.py); 0: none."""
    options = block_options(
        sts=sts, sts_variant=sts_variant, stride_layout=stride_layout, conv_bias=conv_bias, bn_epsilon=bn_epsilon,
        name=name,
    )
    inputs, clip = clip_input(input_shape, normalization)
    x = stem(clip, conv1_t_size=1, pool1_t_size=1, pool1_t_stride=1, conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    x = resnet_stages(x, slow_stages(depth, SLOWONLY_CONV_A), block="bottleneck", drop_path_rate=drop_path_rate, **options)
    return keras.Model(inputs, x, name=name)


def i3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "i3d_r50",
    depth: int = 50,
    sts: bool = False,
    sts_variant: str = "reference",
    stride_layout: str = "3x3",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """I3D-R50 as pytorchvideo's `i3d_r50`: 5x7x7 stem, temporal first convs
    alternating per block, a 2x1x1 temporal max pool after conv2. The reference has
    STS flags for it but no released config uses them, so `sts` defaults to off.
    drop_path_rate: stochastic depth, linear over all blocks (resnet_core.py)."""
    options = block_options(
        sts=sts, sts_variant=sts_variant, stride_layout=stride_layout, conv_bias=conv_bias, bn_epsilon=bn_epsilon,
        name=name,
    )
    stages = slow_stages(depth, I3D_CONV_A)
    rates = stage_drop_path_rates(stages, drop_path_rate)
    inputs, clip = clip_input(input_shape, normalization)
    x = stem(clip, conv1_t_size=5, pool1_t_size=1, pool1_t_stride=1, conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    x = resnet_stages(x, stages[:1], block="bottleneck", drop_path_rates=rates[:1], **options)
    x = MaxPool3D((2, 1, 1), (2, 1, 1), name="pool2_pool")(x)
    x = resnet_stages(x, stages[1:], block="bottleneck", first=3, drop_path_rates=rates[1:], **options)
    return keras.Model(inputs, x, name=name)
