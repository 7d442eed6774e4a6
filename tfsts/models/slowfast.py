"""SlowFast-R50 (Feichtenhofer et al. 2019), pytorchvideo / mmaction2 layout.

One clip of T frames comes in; the slow pathway sees every `alpha`-th frame
(mmaction2's nearest-neighbour resampling, i.e. frames 0, alpha, 2 alpha, ...), the fast
pathway all T frames with 1/`beta_inv` of the channels. After the stem and after
conv2..conv4, a time-strided `fusion_kernel` x 1 x 1 conv maps the fast features
(2x channels) into the slow pathway by concatenation. STS (case B) applies to every
temporal 3x1x1 first conv of a bottleneck in both pathways.

Parameter counts with a 400-way head: 8x8 (alpha 4, fusion kernel 7) 34,566,488 and
4x16 (alpha 8, fusion kernel 5) 34,480,216, as pytorchvideo.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfsts.models.blocks import BN_EPSILON, Subsample, clip_input, conv_bn
from tfsts.models.resnet_core import resnet_stage, stage_drop_path_rates, stem
from tfsts.models.slow import SLOWONLY_CONV_A, block_options, slow_stages

FAST_CONV_A = (3, 3, 3, 3)


def _fuse(slow, fast, *, alpha: int, kernel: int, name: str):
    """Fast -> slow lateral connection: kt x 1 x 1 conv, stride alpha, 2x channels."""
    lateral = conv_bn(fast, 2 * fast.shape[-1], (kernel, 1, 1), name, strides=(alpha, 1, 1))
    return keras.layers.Concatenate(name=f"{name}_concat")([slow, lateral])


def slowfast_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "slowfast_r50_8x8",
    depth: int = 50,
    alpha: int = 4,
    beta_inv: int = 8,
    fusion_kernel: int = 7,
    sts: bool = True,
    sts_variant: str = "reference",
    stride_layout: str = "3x3",
    conv_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    drop_path_rate: float = 0.0,
    normalization: str | None = None,
) -> keras.Model:
    """Returns a model with two outputs: [slow features, fast features].

    `stride_layout`, `conv_bias` and `bn_epsilon` apply to both pathways (see
    tfsts.models.slow). drop_path_rate: stochastic depth, linear over each pathway's
    blocks (resnet_core.py); 0: none.
    """
    if input_shape[0] is not None and input_shape[0] % alpha:
        raise ValueError(f"{name}: clip length {input_shape[0]} must be divisible by alpha={alpha}.")
    options = block_options(
        sts=sts, sts_variant=sts_variant, stride_layout=stride_layout, conv_bias=conv_bias, bn_epsilon=bn_epsilon,
        name=name,
    )
    slow_specs = slow_stages(depth, SLOWONLY_CONV_A)
    fast_specs = slow_stages(depth, FAST_CONV_A, width=64 // beta_inv)
    slow_rates = stage_drop_path_rates(slow_specs, drop_path_rate)
    fast_rates = stage_drop_path_rates(fast_specs, drop_path_rate)
    stem_options = dict(pool1_t_size=1, pool1_t_stride=1, conv_bias=conv_bias, bn_epsilon=bn_epsilon)
    inputs, clip = clip_input(input_shape, normalization)
    slow_in = Subsample((alpha, 1, 1), name="slow_subsample")(clip)
    slow = stem(slow_in, filters=64, conv1_t_size=1, prefix="slow_", **stem_options)
    fast = stem(clip, filters=64 // beta_inv, conv1_t_size=5, prefix="fast_", **stem_options)
    slow = _fuse(slow, fast, alpha=alpha, kernel=fusion_kernel, name="fuse1")

    # The pathways advance stage by stage and fuse after conv2..conv4.
    for index, (slow_spec, fast_spec) in enumerate(zip(slow_specs, fast_specs)):
        stage = index + 2
        slow = resnet_stage(
            slow, slow_spec, name=f"slow_conv{stage}", block="bottleneck", drop_path_rates=slow_rates[index], **options
        )
        fast = resnet_stage(
            fast, fast_spec, name=f"fast_conv{stage}", block="bottleneck", drop_path_rates=fast_rates[index], **options
        )
        if stage < 5:
            slow = _fuse(slow, fast, alpha=alpha, kernel=fusion_kernel, name=f"fuse{stage}")
    return keras.Model(inputs, [slow, fast], name=name)
