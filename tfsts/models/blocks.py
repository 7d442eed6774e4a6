"""Building blocks shared by every 3D CNN family: conv + BN + activation with stable
names, PyTorch-style symmetric pooling, classification heads and parameter counting.

Naming follows keras.applications ("conv2_block1_1_conv"): a unit called
`{prefix}` creates `{prefix}_conv`, `{prefix}_bn` and `{prefix}_relu`. These names are
the keys for weight inflation and checkpoint conversion, so they never change.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import ml_dtypes
import numpy as np
from keras import ops

from tfsts.layers import BatchNorm, STSConv3D
from tfsts.layers.backend_kernels import max_pool3d
from tfsts.layers.normalization import InputNormalization
from tfsts.layers.sts_conv import conv_output_length, slice_axis, symmetric_pads

# PyTorch's BatchNorm3d defaults (momentum 0.1 there is 0.9 here).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def clip_input(input_shape: Sequence[int], normalization: str | None):
    """The model input `clip` and the tensor the family starts from.

    Every family builder begins here, so the input contract (RGB 0..255 in, the
    `input_normalization` layer first) is written once. `normalization` is an
    `InputNormalization` mode ("torch", "caffe", ...); None leaves the input as it is
    (a raw family graph, for tests of the builders themselves).

    Returns:
        (inputs, x): the `keras.Input` and `x`, the normalised input (or `inputs`).
    """
    inputs = keras.Input(tuple(input_shape), name="clip")
    x = inputs if normalization is None else InputNormalization(normalization)(inputs)
    return inputs, x


def batch_norm(x, name: str, epsilon: float = BN_EPSILON, gamma_zero: bool = False, fused: bool = False):
    """The zoo's BN: `tfsts.layers.BatchNorm` (Keras' BN, with the analytic training gradient);
    `fused` where the conv before it runs as a Conv2D (`runs_as_conv2d`)."""
    return BatchNorm(
        axis=-1,
        epsilon=epsilon,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if gamma_zero else "ones",
        fused=fused,
        name=name,
    )(x)


def runs_as_conv2d(conv: STSConv3D) -> bool:
    """Whether a conv always runs as one Conv2D over frames (plain, dense, one temporal tap):
    TF's fused inference BN after it is folded into it (`BatchNorm(fused=True)`)."""
    return not conv.sts and conv.groups == 1 and conv.kernel_size[0] == 1


def conv_bn(
    x,
    filters: int,
    kernel_size: int | Sequence[int],
    name: str,
    strides: int | Sequence[int] = 1,
    groups: int = 1,
    activation: str | None = "relu",
    sts: bool = False,
    sts_case: str | None = None,
    sts_variant: str = "reference",
    use_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
    gamma_zero: bool = False,
):
    """`{name}_conv` (an STSConv3D, plain unless `sts`), `{name}_bn`, `{name}_{activation}`."""
    conv = STSConv3D(
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        use_bias=use_bias,
        sts=sts,
        sts_case=sts_case,
        sts_variant=sts_variant,
        name=f"{name}_conv",
    )
    x = batch_norm(conv(x), f"{name}_bn", epsilon=bn_epsilon, gamma_zero=gamma_zero, fused=runs_as_conv2d(conv))
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


@keras.saving.register_keras_serializable(package="tfsts")
class DropPath(keras.layers.Layer):
    """Stochastic depth (timm's `DropPath`): in training, each sample's residual branch is
    kept with probability 1 - rate and scaled by 1 / (1 - rate), else zeroed; identity at
    inference. No weights (its seed generator's state is a non-weight variable).

    Args:
        rate: the drop probability, in [0, 1).
        seed: of its `keras.random.SeedGenerator`; None draws from Keras' global seed.

    Example:
        >>> y = DropPath(0.1, name="conv2_block1_drop_path")(residual)
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{self.name}: rate is a drop probability in [0, 1); got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        kept = keras.random.uniform(shape, seed=self.seed_generator) < keep
        return x * ops.cast(kept, x.dtype) / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def drop_path(x, rate: float, name: str):
    """`{name}_drop_path` (DropPath) on a residual branch; with rate 0 no layer at all (the
    layouts, and the models built without drop-path, stay as they were).

    With rate > 0 the weights are the same (names, shapes) but Keras orders a functional
    model's layers by depth, so `model.weights` and the checkpoint keys (layer indices)
    differ from the model without drop-path: move weights between the two by layer name
    (`tfsts.training.copy_matching_weights`, which `init.checkpoint` uses).
    """
    return DropPath(rate, name=f"{name}_drop_path")(x) if rate > 0 else x


def drop_path_schedule(num_blocks: int, rate: float) -> list[float]:
    """Per-block rates rising linearly from 0 (first block) to `rate` (last), as timm's and
    pytorchvideo's `linspace(0, rate, num_blocks)`."""
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"drop_path_rate is a drop probability in [0, 1); got {rate}.")
    if num_blocks <= 1:
        return [0.0] * num_blocks
    return [float(rate) * i / (num_blocks - 1) for i in range(num_blocks)]


def add_and_relu(shortcut, residual, name: str):
    """The end of a post-activation residual block: `{name}_add`, then `{name}_out`."""
    y = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


@keras.saving.register_keras_serializable(package="tfsts")
class MaxPool3D(keras.layers.Layer):
    """Max pooling with PyTorch's symmetric padding ((k - 1) / 2 of -inf on each side).

    TensorFlow's 'same' pads at the end only for stride 2, which shifts every window. On
    TensorFlow it runs as 2D pools, whose gradient goes to the maximum only
    (`backend_kernels.max_pool3d`).
    """

    def __init__(self, pool_size: Sequence[int], strides: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)

    def call(self, x):
        if all(s == 1 for s in self.strides):  # 'same' (symmetric for odd sizes)
            pads = [((k - 1) // 2, k // 2) for k in self.pool_size]
        else:
            pads = symmetric_pads(self.pool_size)
        # ml_dtypes.finfo also knows bfloat16 (NumPy's finfo does not: mixed_bfloat16 would fail here).
        lowest = float(ml_dtypes.finfo(keras.backend.standardize_dtype(x.dtype)).min)
        return max_pool3d(x, self.pool_size, self.strides, pads, lowest)

    def compute_output_shape(self, input_shape):
        b, *spatial, c = input_shape
        if all(s == 1 for s in self.strides):
            return tuple(input_shape)
        out = [conv_output_length(n, k, s) for n, k, s in zip(spatial, self.pool_size, self.strides)]
        return (b, *out, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


def strided_subsample(x, strides: Sequence[int]):
    """x[:, ::st, ::sh, ::sw] written with `slice_axis` (Slice ops: their gradient is a
    cheap Pad, not TF's slow StridedSliceGrad)."""
    for axis, stride in zip((1, 2, 3), strides):
        if stride > 1:
            x = slice_axis(x, axis, 0, -(-int(x.shape[axis]) // stride), stride)
    return x


@keras.saving.register_keras_serializable(package="tfsts")
class Subsample(keras.layers.Layer):
    """Keeps every s-th element along T, H and W, starting at 0: SlowFast's slow
    pathway input, and a 1x1 spatial stride made explicit."""

    def __init__(self, strides: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.strides = tuple(int(v) for v in strides)

    def call(self, x):
        return strided_subsample(x, self.strides)

    def compute_output_shape(self, input_shape):
        b, *spatial, c = input_shape
        out = [None if n is None else -(-n // s) for n, s in zip(spatial, self.strides)]
        return (b, *out, c)

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


HEAD_INIT_STD = 0.01  # mmaction2's heads (normal_init(fc_cls, std=0.01)) and pytorchvideo's init_net_weights


def classifier(num_classes: int, name: str, activation: str | None = None) -> keras.layers.Dense:
    """The final Dense layer, initialised as the reference heads are (normal, std 0.01, zero
    bias): the first logits are near zero and the first loss is about ln(num_classes).
    Keras' default (Glorot uniform) gave logits of std ~1.5 on a 2048-wide ReLU feature here
    and a first loss well above chance."""
    return keras.layers.Dense(
        int(num_classes), activation=activation, name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_INIT_STD), bias_initializer="zeros",
    )


def classification_head(
    features,
    num_classes: int | Mapping[str, int],
    dropout: float = 0.5,
    name: str = "head",
    activation: str | None = None,
):
    """Global average pool (each pathway), concatenate, dropout, one Dense per dataset.

    `num_classes` as an int gives one output tensor named `name`; a mapping
    `{dataset: classes}` gives a dict of outputs, one head `{name}_{dataset}` each
    (CoVeR-style co-training: each sample's loss uses its own dataset's head).
    """
    feats = features if isinstance(features, (list, tuple)) else [features]
    pooled = [
        keras.layers.GlobalAveragePooling3D(name=f"{name}_pool" + (f"_{i}" if len(feats) > 1 else ""))(f)
        for i, f in enumerate(feats)
    ]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=f"{name}_concat")(pooled)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if isinstance(num_classes, Mapping):
        if not num_classes:
            raise ValueError("num_classes is an empty mapping; give {dataset_name: num_classes}.")
        return {
            dataset: classifier(n, f"{name}_{dataset}", activation)(x)
            for dataset, n in num_classes.items()
        }
    return classifier(num_classes, name, activation)(x)


def count_params(model: keras.Model) -> int:
    """Parameters as PyTorch counts them: weights and BN gamma/beta, without the BN
    moving statistics (which Keras' `count_params` includes)."""
    moving = {id(v) for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
              for v in (layer.moving_mean, layer.moving_variance)}
    return int(sum(np.prod(v.shape) for v in model.weights if id(v) not in moving))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
