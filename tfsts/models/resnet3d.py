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
ResNets by name. The seams for that are `stride_in_1x1` (Keras' ResNet v1 strides the
first 1x1 conv), `conv_bias` (Keras' convs carry a bias), and the temporal kernel and
stride options `conv1_t_size`, `pool1_t_size`, `pool1_t_stride`, `block_t_size` and
`stage_t_strides` (all 1 gives a frame-wise 2D ResNet: with `stride_in_1x1`,
`conv_bias` and `bn_epsilon=1.001e-5`, exactly Keras' ResNet50 applied to every frame).

`build_resnet3d` is the general builder shared with the wide ResNet and ResNeXt
families (wide_resnet3d.py, resnext3d.py).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tfsts.models.blocks import BN_EPSILON, MaxPool3D, add_and_relu, conv_bn

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
SHORTCUT_TYPES = ("A", "B")


@keras.saving.register_keras_serializable(package="tfsts")
class ZeroPadShortcut(keras.layers.Layer):
    """Hara's shortcut "A": `avg_pool3d(kernel_size=1, stride=s)` (i.e. keep every s-th
    position along T, H, W) followed by zero channels up to `filters`. No weights.

    The reference concatenates `out.data`, which in PyTorch also stops the gradient
    through this shortcut; here the gradient flows (a training-dynamics quirk of the
    reference, not part of its forward numerics).
    """

    def __init__(self, filters: int, strides: Sequence[int] = (1, 1, 1), **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = tuple(int(s) for s in strides)
        if len(self.strides) != 3 or min(self.strides) < 1:
            raise ValueError(f"{self.name}: strides must be 3 positive ints (t, h, w); got {strides}.")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels > self.filters:
            raise ValueError(
                f"{self.name}: shortcut A zero-pads channels, so the input's {channels} "
                f"channels must be known and at most filters={self.filters}."
            )

    def call(self, x):
        st, sh, sw = self.strides
        if (st, sh, sw) != (1, 1, 1):
            x = x[:, ::st, ::sh, ::sw, :]
        extra = self.filters - x.shape[-1]
        if extra:
            x = ops.pad(x, [(0, 0), (0, 0), (0, 0), (0, 0), (0, extra)])
        return x

    def compute_output_shape(self, input_shape):
        b, *spatial, _ = input_shape
        out = [None if n is None else -(-n // s) for n, s in zip(spatial, self.strides)]
        return (b, *out, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


def _per_stage(value: int | Sequence[int], what: str) -> tuple[int, int, int, int]:
    values = (value,) * 4 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 4:
        raise ValueError(f"{what} must be an int or 4 ints (stages 2-5); got {value}.")
    return values


def stem(
    x,
    *,
    filters: int = 64,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    pool1_t_size: int = 3,
    pool1_t_stride: int = 2,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    pool_name: str = "pool1_pool",
):
    """Hara's stem: conv (conv1_t_size, 7, 7) / (conv1_t_stride, 2, 2), BN, ReLU, and a
    (pool1_t_size, 3, 3) max pool with stride (pool1_t_stride, 2, 2) (-inf padding, as
    PyTorch)."""
    for what, size in (("conv1_t_size", conv1_t_size), ("pool1_t_size", pool1_t_size)):
        if size < 1 or size % 2 == 0:
            raise ValueError(f"{what} must be odd (symmetric padding); got {size}.")
    x = conv_bn(
        x, filters, (conv1_t_size, 7, 7), "conv1", strides=(conv1_t_stride, 2, 2), use_bias=conv_bias,
        bn_epsilon=bn_epsilon,
    )
    if not no_max_pool:
        x = MaxPool3D((pool1_t_size, 3, 3), (pool1_t_stride, 2, 2), name=pool_name)(x)
    return x


def shortcut(
    x,
    filters: int,
    strides: Sequence[int],
    shortcut_type: str,
    name: str,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
):
    """The residual branch's partner: identity, or (where the shape changes) type A
    (zero-padded subsampled identity, `{name}_0_zero_pad`) or type B (1x1x1 conv + BN,
    `{name}_0_conv` / `{name}_0_bn`)."""
    if tuple(strides) == (1, 1, 1) and x.shape[-1] == filters:
        return x
    if shortcut_type == "A":
        return ZeroPadShortcut(filters, strides, name=f"{name}_0_zero_pad")(x)
    return conv_bn(
        x, filters, 1, f"{name}_0", strides=strides, activation=None, use_bias=conv_bias, bn_epsilon=bn_epsilon
    )


def basic_block(
    x,
    filters: int,
    *,
    name: str,
    strides: Sequence[int] = (1, 1, 1),
    shortcut_type: str = "A",
    t_size: int = 3,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
):
    """Two (t_size, 3, 3) convs; the first carries the stride."""
    common = dict(use_bias=conv_bias, bn_epsilon=bn_epsilon)
    residual = shortcut(x, filters, strides, shortcut_type, name, conv_bias, bn_epsilon)
    y = conv_bn(x, filters, (t_size, 3, 3), f"{name}_1", strides=strides, **common)
    y = conv_bn(y, filters, (t_size, 3, 3), f"{name}_2", activation=None, **common)
    return add_and_relu(residual, y, name)


def bottleneck_block(
    x,
    width: int,
    filters: int,
    *,
    name: str,
    strides: Sequence[int] = (1, 1, 1),
    groups: int = 1,
    shortcut_type: str = "B",
    t_size: int = 3,
    stride_in_1x1: bool = False,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
):
    """1x1x1 to `width`, (t_size, 3, 3) with `groups`, 1x1x1 to `filters`. The stride
    sits on the 3x3x3 conv (Hara, torchvision "v1.5") or, with `stride_in_1x1`, on the
    first 1x1x1 conv (Keras / Caffe ResNet v1)."""
    common = dict(use_bias=conv_bias, bn_epsilon=bn_epsilon)
    residual = shortcut(x, filters, strides, shortcut_type, name, conv_bias, bn_epsilon)
    s1, s2 = (strides, (1, 1, 1)) if stride_in_1x1 else ((1, 1, 1), strides)
    y = conv_bn(x, width, 1, f"{name}_1", strides=s1, **common)
    y = conv_bn(y, width, (t_size, 3, 3), f"{name}_2", strides=s2, groups=groups, **common)
    y = conv_bn(y, filters, 1, f"{name}_3", activation=None, **common)
    return add_and_relu(residual, y, name)


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
    stride_in_1x1: bool = False,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
) -> keras.Model:
    """General post-activation 3D ResNet (shared by ResNet, wide ResNet and ResNeXt).

    block: "basic" or "bottleneck"; blocks: blocks per stage 2..5; filters: each
    stage's output channels; widths: a bottleneck's inner channels per stage; groups:
    the bottleneck 3x3x3 conv's groups (ResNeXt cardinality). Returns the functional
    model from `clip` to the last block's output (`conv5_block{n}_out`).
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}.")
    if shortcut_type not in SHORTCUT_TYPES:
        raise ValueError(f"shortcut_type must be one of {SHORTCUT_TYPES}; got {shortcut_type!r}.")
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
    if block == "bottleneck" and widths is None:
        raise ValueError("a bottleneck network needs `widths`.")

    inputs = keras.Input(tuple(input_shape), name="clip")
    x = stem(
        inputs,
        filters=stem_filters,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        pool1_t_size=pool1_t_size,
        pool1_t_stride=pool1_t_stride,
        conv_bias=conv_bias,
        bn_epsilon=bn_epsilon,
    )
    for stage_index in range(4):
        stage = stage_index + 2
        stride = (1, 1, 1) if stage_index == 0 else (stage_t_strides[stage_index - 1], 2, 2)
        for i in range(blocks[stage_index]):
            prefix = f"conv{stage}_block{i + 1}"
            strides = stride if i == 0 else (1, 1, 1)
            if block == "basic":
                x = basic_block(
                    x, filters[stage_index], name=prefix, strides=strides, shortcut_type=shortcut_type,
                    t_size=t_sizes[stage_index], conv_bias=conv_bias, bn_epsilon=bn_epsilon,
                )
            else:
                x = bottleneck_block(
                    x, widths[stage_index], filters[stage_index], name=prefix, strides=strides,
                    groups=groups, shortcut_type=shortcut_type, t_size=t_sizes[stage_index],
                    stride_in_1x1=stride_in_1x1, conv_bias=conv_bias, bn_epsilon=bn_epsilon,
                )
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
    stride_in_1x1: bool = False,
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
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
    stride_in_1x1: put a bottleneck's stride on its first 1x1x1 conv (Keras' ResNet v1)
        instead of the 3x3x3 conv (Hara).
    conv_bias: give every conv a bias (Keras' ResNet convs have one; Hara's have none).
    bn_epsilon: every BN's epsilon (PyTorch's 1e-5; Keras' applications use 1.001e-5).

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
        stride_in_1x1=stride_in_1x1,
        conv_bias=conv_bias,
        bn_epsilon=bn_epsilon,
    )


__all__ = [
    "RESNET3D_DEPTHS",
    "ZeroPadShortcut",
    "basic_block",
    "bottleneck_block",
    "build_resnet3d",
    "resnet3d_backbone",
    "shortcut",
    "stem",
]
