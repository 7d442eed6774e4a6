"""Single-pathway 3D ResNets in the pytorchvideo / mmaction2 layout: I3D-R50 and
SlowOnly-R50 (and their shared bottleneck stages, reused by SlowFast).

Layout (pytorchvideo `create_resnet`, mmaction2 `ResNet3d` style='pytorch'): the
bottleneck's spatial stride is on its 3x3 conv; whether its first conv is temporal
(3x1x1) or not (1x1x1) is chosen per stage and block, which is what distinguishes
I3D from SlowOnly. STS (case B) applies to those temporal 3x1x1 first convs. `style="caffe"`,
`conv_bias=True` and `bn_epsilon=1.001e-5` give the layout of Keras' ResNet v1
applications, for 2D -> 3D inflation (tfsts.models.inflation).

Parameter counts with a 400-way head: SlowOnly-R50 32,454,096 and I3D-R50 28,043,472,
as pytorchvideo's `slow_r50` / `i3d_r50` (../shared/reference/model_numbers.md).
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import BN_EPSILON, MaxPool3D, Subsample, add_and_relu, conv_bn

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Temporal kernel of each bottleneck's first conv, per stage; a list cycles over blocks.
SLOWONLY_CONV_A = (1, 1, 3, 3)
I3D_CONV_A = (3, (3, 1), (3, 1), (1, 3))


def bottleneck_block(
    x,
    inner: int,
    out: int,
    name: str,
    temporal_kernel: int = 1,
    spatial_stride: int = 1,
    sts: bool = False,
    sts_variant: str = "reference",
    style: str = "pytorch",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
):
    """conv_a (kt x 1 x 1) -> conv_b (1 x 3 x 3) -> conv_c (1x1x1), projection
    shortcut when the shape changes, ReLU after the sum.

    style "pytorch" puts the spatial stride on conv_b (pytorchvideo, mmaction2,
    torchvision); "caffe" puts it on conv_a, as Keras' ResNet v1 applications do, so a
    net inflated from them computes the same features. conv_a has a 1x1 spatial
    kernel, so its stride is an explicit subsampling before it (identical numbers),
    which keeps conv_a stride-free and so open to STS. `conv_bias` keeps a bias
    before each BN (also as Keras' ResNet v1).
    """
    if style not in ("pytorch", "caffe"):
        raise ValueError(f"{name}: style must be 'pytorch' or 'caffe'; got {style!r}.")
    stride = (1, spatial_stride, spatial_stride)
    stride_b = 1 if style == "caffe" else stride
    common = dict(use_bias=conv_bias, bn_epsilon=bn_epsilon)
    shortcut = x
    if x.shape[-1] != out or spatial_stride != 1:
        shortcut = conv_bn(x, out, 1, f"{name}_0", strides=stride, activation=None, **common)
    y = x
    if style == "caffe" and spatial_stride > 1:
        y = Subsample(stride, name=f"{name}_1_subsample")(y)
    y = conv_bn(
        y, inner, (temporal_kernel, 1, 1), f"{name}_1",
        sts=sts and temporal_kernel == 3, sts_case="B", sts_variant=sts_variant, **common,
    )
    y = conv_bn(y, inner, (1, 3, 3), f"{name}_2", strides=stride_b, **common)
    y = conv_bn(y, out, 1, f"{name}_3", activation=None, **common)
    return add_and_relu(shortcut, y, name)


def _kernel_for_block(spec: int | Sequence[int], block: int) -> int:
    return spec if isinstance(spec, int) else spec[block % len(spec)]


def resnet_stage(
    x,
    *,
    stage: int,
    depth: int,
    temporal_kernels: int | Sequence[int],
    width: int = 64,
    prefix: str = "",
    sts: bool = False,
    sts_variant: str = "reference",
    **block_options,
):
    """Stage `stage` (2..5) of a bottleneck ResNet: `width * 2 ** (stage - 2)` inner
    channels, 4x that out, spatial stride 2 in its first block from conv3 on.
    `temporal_kernels`: the first conv's temporal size, one int or a list cycled over
    the blocks."""
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}; got {depth}.")
    inner = width * 2 ** (stage - 2)
    for block in range(STAGE_BLOCKS[depth][stage - 2]):
        x = bottleneck_block(
            x,
            inner,
            inner * 4,
            f"{prefix}conv{stage}_block{block + 1}",
            temporal_kernel=_kernel_for_block(temporal_kernels, block),
            spatial_stride=2 if (block == 0 and stage > 2) else 1,
            sts=sts,
            sts_variant=sts_variant,
            **block_options,
        )
    return x


def stem(x, *, filters: int, temporal_kernel: int, prefix: str = "", conv_bias: bool = False, bn_epsilon: float = BN_EPSILON):
    """kt x 7 x 7 conv, stride (1, 2, 2), BN, ReLU, 1 x 3 x 3 max pool stride (1, 2, 2)."""
    x = conv_bn(
        x, filters, (temporal_kernel, 7, 7), f"{prefix}conv1", strides=(1, 2, 2), use_bias=conv_bias, bn_epsilon=bn_epsilon
    )
    return MaxPool3D((1, 3, 3), (1, 2, 2), name=f"{prefix}pool1_pool")(x)


def slowonly_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "slowonly_r50",
    depth: int = 50,
    sts: bool = True,
    sts_variant: str = "reference",
    style: str = "pytorch",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
) -> keras.Model:
    """SlowOnly (Feichtenhofer et al. 2019): temporal convs only in conv4/conv5, the
    stages the reference turns to STS."""
    inputs = keras.Input(tuple(input_shape), name="clip")
    layout = dict(conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    x = stem(inputs, filters=64, temporal_kernel=1, **layout)
    for stage, kernels in enumerate(SLOWONLY_CONV_A, start=2):
        x = resnet_stage(
            x, stage=stage, depth=depth, temporal_kernels=kernels, sts=sts, sts_variant=sts_variant, style=style, **layout
        )
    return keras.Model(inputs, x, name=name)


def i3d_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "i3d_r50",
    depth: int = 50,
    sts: bool = False,
    sts_variant: str = "reference",
    style: str = "pytorch",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
) -> keras.Model:
    """I3D-R50 as pytorchvideo's `i3d_r50`: 5x7x7 stem, temporal first convs
    alternating per block, a 2x1x1 temporal max pool after conv2. The reference has
    STS flags for it but no released config uses them, so `sts` defaults to off."""

    inputs = keras.Input(tuple(input_shape), name="clip")
    layout = dict(conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    x = stem(inputs, filters=64, temporal_kernel=5, **layout)
    for stage, kernels in enumerate(I3D_CONV_A, start=2):
        x = resnet_stage(
            x, stage=stage, depth=depth, temporal_kernels=kernels, sts=sts, sts_variant=sts_variant, style=style, **layout
        )
        if stage == 2:
            x = MaxPool3D((2, 1, 1), (2, 1, 1), name="pool2_pool")(x)
    return keras.Model(inputs, x, name=name)
