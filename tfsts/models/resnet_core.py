"""One ResNet core for every post-activation 3D ResNet family: a stem, a basic and a
bottleneck block, and a stage loop driven by a per-family table of `Stage`s (as TF
Model Garden's `resnet_3d.py` drives `_block_group` from a specs table).

The families (resnet3d.py with wide_resnet3d.py and resnext3d.py, slow.py, slowfast.py,
csn.py, r2plus1d.py) are spec tables plus calls into this module. Layer names follow
keras.applications' ResNet: stage `s` block `i` is `conv{s}_block{i}`, its units
`_1`, `_2`, `_3` (`_conv`, `_bn`, `_relu`), its projection shortcut `_0_conv` / `_0_bn`
(or `_0_zero_pad`), its sum `_add` and `_out`. They are the keys of weight inflation
and of saved models, so they never change.

Stride layout, one name for every family (`stride_layout`):
* "3x3": a bottleneck's stride on its 3x3 conv (torchvision "v1.5", pytorchvideo,
  mmaction2, Hara et al.); the default;
* "1x1": on its first 1x1 conv (Keras applications' ResNet v1, Caffe), the layout a
  network inflated from Keras' 2D ResNets needs to compute the same features.

Drop-path (stochastic depth, `drop_path_rate`): a `{block}_drop_path` layer on each
block's residual branch before `_add`, its rate rising linearly over the blocks of the
whole table from 0 (timm, pytorchvideo); blocks whose rate is 0 (the first; all of them
with rate 0) get no layer, so with rate 0 the network is exactly the one without it
(with rate > 0: the same weights, in another order: `blocks.drop_path`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
from keras import ops

from tfsts.models.blocks import BN_EPSILON, MaxPool3D, Subsample, add_and_relu, conv_bn, drop_path, drop_path_schedule, strided_subsample

STRIDE_LAYOUTS = ("3x3", "1x1")
SHORTCUT_TYPES = ("A", "B")
BLOCK_KINDS = ("basic", "bottleneck")
NO_STRIDE = (1, 1, 1)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of a family's spec table: a stage of `blocks` residual blocks.

    filters: the blocks' output channels. width: a bottleneck's inner channels (unused
    by basic blocks). strides: the first block's (T, H, W) stride (the others have
    none). t_sizes: the temporal kernel of each block's temporal conv, an int or a
    tuple cycled over the blocks (I3D alternates 3 and 1). groups: of a bottleneck's
    3x3 conv (ResNeXt cardinality; the width for CSN's depthwise conv).
    """

    blocks: int
    filters: int
    width: int = 0
    strides: tuple[int, int, int] = NO_STRIDE
    t_sizes: int | tuple[int, ...] = 3
    groups: int = 1

    def t_size(self, block: int) -> int:
        return self.t_sizes if isinstance(self.t_sizes, int) else self.t_sizes[block % len(self.t_sizes)]


def check_stride_layout(stride_layout: str, name: str) -> str:
    if stride_layout not in STRIDE_LAYOUTS:
        raise ValueError(
            f"{name}: stride_layout must be '3x3' (stride on the 3x3 conv: torchvision, pytorchvideo, "
            f"Hara) or '1x1' (on the first 1x1 conv: Keras applications, Caffe); got {stride_layout!r}."
        )
    return stride_layout


@keras.saving.register_keras_serializable(package="tfsts")
class ZeroPadShortcut(keras.layers.Layer):
    """Hara's shortcut "A": `avg_pool3d(kernel_size=1, stride=s)` (i.e. keep every s-th
    position along T, H, W) followed by zero channels up to `filters`. No weights.

    The reference concatenates `out.data`, which in PyTorch also stops the gradient
    through this shortcut; here the gradient flows (a training-dynamics quirk of the
    reference, not part of its forward numerics).
    """

    def __init__(self, filters: int, strides: Sequence[int] = NO_STRIDE, **kwargs):
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
        x = strided_subsample(x, self.strides)
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
    prefix: str = "",
    pool_name: str = "pool1_pool",
):
    """`{prefix}conv1`: conv (conv1_t_size, 7, 7) stride (conv1_t_stride, 2, 2), BN, ReLU;
    then `{prefix}{pool_name}`: a (pool1_t_size, 3, 3) max pool with stride
    (pool1_t_stride, 2, 2) and PyTorch's -inf padding (unless `no_max_pool`).

    Hara's stem is the default; SlowOnly's is conv1_t_size=1, I3D's 5, the SlowFast fast
    pathway's 5, CSN's 3, all with a (1, 3, 3) / (1, 2, 2) pool."""
    for what, size in (("conv1_t_size", conv1_t_size), ("pool1_t_size", pool1_t_size)):
        if size < 1 or size % 2 == 0:
            raise ValueError(f"{what} must be odd (symmetric padding); got {size}.")
    x = conv_bn(
        x, filters, (conv1_t_size, 7, 7), f"{prefix}conv1", strides=(conv1_t_stride, 2, 2), use_bias=conv_bias,
        bn_epsilon=bn_epsilon,
    )
    if not no_max_pool:
        x = MaxPool3D((pool1_t_size, 3, 3), (pool1_t_stride, 2, 2), name=f"{prefix}{pool_name}")(x)
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
    if tuple(strides) == NO_STRIDE and x.shape[-1] == filters:
        return x
    if shortcut_type == "A":
        return ZeroPadShortcut(filters, strides, name=f"{name}_0_zero_pad")(x)
    return conv_bn(
        x, filters, 1, f"{name}_0", strides=strides, activation=None, use_bias=conv_bias, bn_epsilon=bn_epsilon
    )


def mid_channels(in_channels: int, out_channels: int, kernel: int = 3) -> int:
    """R(2+1)D's mid width, chosen so the (2+1)D pair has about the parameters of the
    full kxkxk conv: floor(k k k C O / (k k C + k O))."""
    return (kernel**3 * in_channels * out_channels) // (kernel * kernel * in_channels + kernel * out_channels)


def conv2plus1d(
    x,
    filters: int,
    name: str,
    *,
    strides: Sequence[int] = NO_STRIDE,
    activation: str | None = "relu",
    t_size: int = 3,
    sts: bool = False,
    sts_case: str | None = "C",
    sts_variant: str = "reference",
    bn_epsilon: float = BN_EPSILON,
):
    """One (2+1)D conv + BN (+ activation): `{name}_spatial_conv/bn/relu` (1x3x3,
    spatial stride, R(2+1)D's mid width), then `{name}_temporal_conv/bn[/relu]`
    (t_size x 1 x 1, temporal stride, STS when `sts`)."""
    st, sh, sw = strides
    mid = mid_channels(int(x.shape[-1]), filters)
    x = conv_bn(x, mid, (1, 3, 3), f"{name}_spatial", strides=(1, sh, sw), bn_epsilon=bn_epsilon)
    return conv_bn(
        x, filters, (t_size, 1, 1), f"{name}_temporal", strides=(st, 1, 1), activation=activation,
        sts=sts, sts_case=sts_case, sts_variant=sts_variant, bn_epsilon=bn_epsilon,
    )


def basic_block(
    x,
    filters: int,
    *,
    name: str,
    strides: Sequence[int] = NO_STRIDE,
    t_size: int = 3,
    factorized: bool = False,
    shortcut_type: str = "B",
    sts: bool = False,
    sts_case: str | None = None,
    sts_variant: str = "reference",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
):
    """Two (t_size, 3, 3) convs to `filters`, the first strided (`{name}_1`, `{name}_2`),
    the shortcut, the sum and ReLU. `factorized` makes each conv a (2+1)D pair
    (R(2+1)D; STS then goes on the temporal convs)."""
    if factorized and conv_bias:
        raise ValueError(f"{name}: a factorized (2+1)D block has no conv biases (R(2+1)D); use conv_bias=False.")
    residual = shortcut(x, filters, strides, shortcut_type, name, conv_bias, bn_epsilon)
    sts_options = dict(sts=sts, sts_case=sts_case, sts_variant=sts_variant, bn_epsilon=bn_epsilon)
    if factorized:
        y = conv2plus1d(x, filters, f"{name}_1", strides=strides, t_size=t_size, **sts_options)
        y = conv2plus1d(y, filters, f"{name}_2", activation=None, t_size=t_size, **sts_options)
    else:
        y = conv_bn(x, filters, (t_size, 3, 3), f"{name}_1", strides=strides, use_bias=conv_bias, **sts_options)
        y = conv_bn(y, filters, (t_size, 3, 3), f"{name}_2", activation=None, use_bias=conv_bias, **sts_options)
    return add_and_relu(residual, drop_path(y, drop_path_rate, name), name)


def bottleneck_block(
    x,
    width: int,
    filters: int,
    *,
    name: str,
    strides: Sequence[int] = NO_STRIDE,
    groups: int = 1,
    t_size: int = 3,
    temporal_first: bool = False,
    stride_layout: str = "3x3",
    subsample: bool = False,
    pointwise: bool = False,
    shortcut_type: str = "B",
    sts: bool = False,
    sts_case: str | None = None,
    sts_variant: str = "reference",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
):
    """1x1x1 to `width` (`{name}_1`), 3x3 with `groups` (`{name}_2`), 1x1x1 to `filters`
    (`{name}_3`), the shortcut, the sum and ReLU.

    t_size: the temporal kernel of the block's one temporal conv: the 3x3 conv
        ((t_size, 3, 3): Hara, ResNeXt, CSN) or, with `temporal_first`, the first conv
        ((t_size, 1, 1): pytorchvideo's conv_a, SlowOnly, I3D, SlowFast). STS
        (`sts_case`) goes on that conv where t_size > 1.
    stride_layout: "3x3" or "1x1" (module docstring). With "1x1" and `subsample`, the
        stride is an explicit `{name}_1_subsample` before an unstrided first conv (the
        same numbers, as that conv is 1x1 in space; it keeps the conv open to STS).
    pointwise: ip-CSN's extra 1x1x1 conv + BN (`{name}_2_pointwise`) before the 3x3.
    drop_path_rate: of `{name}_drop_path` on the residual branch (none when 0).
    """
    check_stride_layout(stride_layout, name)
    strides = tuple(strides)
    residual = shortcut(x, filters, strides, shortcut_type, name, conv_bias, bn_epsilon)
    stride_1, stride_2 = (strides, NO_STRIDE) if stride_layout == "1x1" else (NO_STRIDE, strides)
    y = x
    if stride_layout == "1x1" and subsample and strides != NO_STRIDE:
        y = Subsample(strides, name=f"{name}_1_subsample")(y)
        stride_1 = NO_STRIDE
    common = dict(use_bias=conv_bias, bn_epsilon=bn_epsilon)
    temporal = dict(sts=sts and t_size > 1, sts_case=sts_case, sts_variant=sts_variant, **common)
    if temporal_first:
        y = conv_bn(y, width, (t_size, 1, 1), f"{name}_1", strides=stride_1, **temporal)
    else:
        y = conv_bn(y, width, 1, f"{name}_1", strides=stride_1, **common)
    if pointwise:
        y = conv_bn(y, width, 1, f"{name}_2_pointwise", activation=None, **common)
    kernel_2, options_2 = ((1, 3, 3), common) if temporal_first else ((t_size, 3, 3), temporal)
    y = conv_bn(y, width, kernel_2, f"{name}_2", strides=stride_2, groups=groups, **options_2)
    y = conv_bn(y, filters, 1, f"{name}_3", activation=None, **common)
    return add_and_relu(residual, drop_path(y, drop_path_rate, name), name)


def stage_drop_path_rates(stages: Sequence[Stage], drop_path_rate: float) -> list[list[float]]:
    """Per stage, its blocks' drop-path rates: linear from 0 to `drop_path_rate` over
    every block of the table (`blocks.drop_path_schedule`)."""
    rates = drop_path_schedule(sum(stage.blocks for stage in stages), drop_path_rate)
    out, start = [], 0
    for stage in stages:
        out.append(rates[start : start + stage.blocks])
        start += stage.blocks
    return out


def resnet_stage(x, stage: Stage, *, name: str, block: str, drop_path_rates: Sequence[float] = (), **block_options):
    """The blocks `{name}_block1` .. `{name}_block{n}` of one `Stage`; `block_options`
    (layout, shortcut, STS, bias, epsilon) go to every block; `drop_path_rates`: one per
    block (`stage_drop_path_rates`), empty for none."""
    if block not in BLOCK_KINDS:
        raise ValueError(f"{name}: block must be 'basic' or 'bottleneck'; got {block!r}.")
    if drop_path_rates and len(drop_path_rates) != stage.blocks:
        raise ValueError(f"{name}: drop_path_rates needs one rate per block ({stage.blocks}); got {len(drop_path_rates)}.")
    for i in range(stage.blocks):
        strides = stage.strides if i == 0 else NO_STRIDE
        block_name = f"{name}_block{i + 1}"
        rate = float(drop_path_rates[i]) if drop_path_rates else 0.0
        if block == "basic":
            x = basic_block(
                x, stage.filters, name=block_name, strides=strides, t_size=stage.t_size(i), drop_path_rate=rate,
                **block_options,
            )
        else:
            x = bottleneck_block(
                x, stage.width, stage.filters, name=block_name, strides=strides, groups=stage.groups,
                t_size=stage.t_size(i), drop_path_rate=rate, **block_options,
            )
    return x


def resnet_stages(
    x,
    stages: Sequence[Stage],
    *,
    block: str,
    prefix: str = "",
    first: int = 2,
    drop_path_rate: float = 0.0,
    drop_path_rates: Sequence[Sequence[float]] | None = None,
    **block_options,
):
    """The stages `{prefix}conv{first}`, `{prefix}conv{first + 1}`, ... of a spec table.

    drop_path_rate: the last block's stochastic-depth rate (linear from 0 over these
        stages' blocks); drop_path_rates: per-stage rates instead (a table split over
        several calls, as I3D's).
    """
    if drop_path_rates is None:
        drop_path_rates = stage_drop_path_rates(stages, drop_path_rate)
    for number, (stage, rates) in enumerate(zip(stages, drop_path_rates), start=first):
        x = resnet_stage(x, stage, name=f"{prefix}conv{number}", block=block, drop_path_rates=rates, **block_options)
    return x


__all__ = [
    "SHORTCUT_TYPES",
    "STRIDE_LAYOUTS",
    "Stage",
    "ZeroPadShortcut",
    "basic_block",
    "bottleneck_block",
    "check_stride_layout",
    "conv2plus1d",
    "mid_channels",
    "resnet_stage",
    "resnet_stages",
    "shortcut",
    "stage_drop_path_rates",
    "stem",
]
