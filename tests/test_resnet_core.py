"""The ResNet core (tfsts/models/resnet_core.py): the families built on it keep main's
exact layer layout, and its stride layouts compute what they claim."""

from __future__ import annotations

import hashlib
import json

import keras
import numpy as np
import pytest

from tests import model_test_utils as mtu
from tfsts import models
from tfsts.models import resnet_core
from tfsts.layers import BatchNorm
from tfsts.layers.normalization import NORMALIZATION_LAYER
from tfsts.models.resnet3d import resnet3d_backbone

SMALL = (16, 32, 32, 3)
# The config fields that fix a layer's computation and weight layout (not Keras'
# bookkeeping, which may change with a Keras upgrade).
LAYOUT_KEYS = (
    "filters", "kernel_size", "strides", "groups", "use_bias", "sts", "sts_case", "sts_variant",
    "epsilon", "momentum", "pool_size", "activation", "units", "rate",
)
ONE_BY_ONE = {"stride_layout": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}

# name, build_model overrides, fingerprint of the layout main's per-family code built
# before the core existed (ordered layer names, classes, LAYOUT_KEYS, weight paths and
# shapes; computed with `layout_fingerprint` from commit 6be60df). A change here means
# saved .keras files and inflation keys no longer fit.
MAIN_LAYOUTS = {
    "resnet3d_10": ("resnet3d_10", {}, "872cb03d84be64b9"),
    "resnet3d_50:1x1": ("resnet3d_50", ONE_BY_ONE, "5f2b0016721be922"),
    "resnet3d_50:A": (
        "resnet3d_50", {"shortcut_type": "A", "block_t_size": (1, 3, 3, 5), "stage_t_strides": (1, 2, 1)},
        "3f362f4c87ed6220",
    ),
    "resnext3d_101:1x1": ("resnext3d_101", {**ONE_BY_ONE, "blocks": (1, 2, 1, 1), "cardinality": 16}, "89a03d6e0cf98940"),
    "i3d_r50:1x1": ("i3d_r50", ONE_BY_ONE, "f74ac8e7485e2017"),
    "i3d_r50:sts": ("i3d_r50", {"sts": True, "sts_variant": "rowcol", "stride_layout": "3x3"}, "f3e2b711028c9b1b"),
    "slowonly_r50:1x1": ("slowonly_r50", ONE_BY_ONE, "33ebf0b08dbbde6e"),
    "slowfast_r50_8x8:1x1": ("slowfast_r50_8x8", {**ONE_BY_ONE, "sts_variant": "rowcol"}, "d947a8a14cbd470d"),
    "ircsn_50:nosts": ("ircsn_50", {"sts": False}, "edfd2623bf11cd37"),
    "ipcsn_50:rowcol": (
        "ipcsn_50", {"sts_variant": "rowcol", "stage_blocks": (1, 2, 1, 1), "spatial_strides": (1, 2, 1, 2)},
        "322927c22001ec67",
    ),
    "r2plus1d_34:rowcol": ("r2plus1d_34", {"sts_variant": "rowcol", "stage_blocks": (1, 1, 2, 1)}, "885508135cdc3731"),
    "r2plus1d_18:nosts": ("r2plus1d_18", {"sts": False, "temporal_strides": (1, 1, 1, 1)}, "5528202000313823"),
}
FAST = ("resnet3d_10", "resnext3d_101:1x1", "ipcsn_50:rowcol", "r2plus1d_34:rowcol")


# Classes that are another class with the same weights and config (another gradient only):
# tfsts.layers.BatchNorm is Keras' BatchNormalization with the analytic training gradient.
SAME_LAYOUT_AS = {BatchNorm: "BatchNormalization"}


def layout_fingerprint(model: keras.Model) -> str:
    rows = []
    for layer in model.layers:
        if layer.name == NORMALIZATION_LAYER:
            continue  # added in front of every family by the input contract (tests/test_model_contract.py)
        config = json.loads(json.dumps(layer.get_config(), default=str))
        rows.append([
            layer.name,
            SAME_LAYOUT_AS.get(type(layer), type(layer).__name__),
            {k: config[k] for k in LAYOUT_KEYS if k in config},
            [[v.path, list(v.shape)] for v in layer.weights],
        ])
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "case", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow) for c in MAIN_LAYOUTS]
)
def test_families_keep_mains_layer_layout(case):
    name, overrides, expected = MAIN_LAYOUTS[case]
    overrides = dict(overrides)
    sts = overrides.pop("sts", None)
    model = models.build_model(name, 10, input_shape=SMALL, sts=sts, **overrides)
    assert layout_fingerprint(model) == expected


def _copy_weights(source: keras.Model, target: keras.Model):
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


@pytest.mark.parametrize("temporal_first, t_size", [(True, 3), (False, 3), (True, 1)])
def test_1x1_layout_subsample_equals_strided_first_conv(temporal_first, t_size):
    """stride_layout="1x1" with `subsample` (SlowFast's form, keeps conv_a open to STS)
    computes what a strided first conv (Hara's form) computes, with the same weights."""
    shape = (4, 9, 9, 16)

    def unit(subsample):
        x = keras.Input(shape)
        y = resnet_core.bottleneck_block(
            x, 8, 32, name="b", strides=(1, 2, 2), t_size=t_size, temporal_first=temporal_first,
            stride_layout="1x1", subsample=subsample, conv_bias=True,
        )
        return keras.Model(x, y)

    strided, subsampled = unit(False), unit(True)
    mtu.perturb_batch_norms(strided)
    assert strided.get_layer("b_1_conv").strides == (1, 2, 2)
    assert subsampled.get_layer("b_1_conv").strides == (1, 1, 1)
    assert subsampled.get_layer("b_1_subsample").strides == (1, 2, 2)
    _copy_weights(strided, subsampled)
    clip = mtu.random_clip(shape, batch=2)
    expected = strided(clip, training=False).numpy()
    assert expected.shape == (2, 4, 5, 5, 32)
    np.testing.assert_allclose(subsampled(clip, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_stage_cycles_its_temporal_kernels():
    stage = resnet_core.Stage(blocks=4, filters=8, t_sizes=(3, 1))
    assert [stage.t_size(i) for i in range(4)] == [3, 1, 3, 1]
    assert resnet_core.Stage(blocks=2, filters=8, t_sizes=5).t_size(1) == 5


@pytest.mark.parametrize("name", ["resnet3d_50", "i3d_r50", "slowfast_r50_8x8"])
def test_a_bad_stride_layout_is_rejected_with_its_values(name):
    with pytest.raises(ValueError, match=rf"{name}: stride_layout must be '3x3' .* or '1x1' .*got 'caffe'"):
        models.build_backbone(name, input_shape=(8, 32, 32, 3), stride_layout="caffe")


def test_old_stride_keywords_are_gone():
    """One name for the layout: the old per-family keywords are rejected, not ignored."""
    with pytest.raises(TypeError, match="stride_in_1x1"):
        resnet3d_backbone(SMALL, depth=50, stride_in_1x1=True)
    with pytest.raises(TypeError, match="style"):
        models.build_backbone("slowonly_r50", input_shape=SMALL, style="caffe")


def test_core_rejects_unknown_blocks_and_biased_2plus1d():
    x = keras.Input((4, 8, 8, 16))
    with pytest.raises(ValueError, match="conv2: block must be 'basic' or 'bottleneck'; got 'dense'"):
        resnet_core.resnet_stage(x, resnet_core.Stage(blocks=1, filters=16), name="conv2", block="dense")
    with pytest.raises(ValueError, match="b: a factorized .* no conv biases"):
        resnet_core.basic_block(x, 16, name="b", factorized=True, conv_bias=True)


def test_strided_max_pool_runs_in_bfloat16_and_matches_float32():
    """The symmetric-padding MaxPool3D pads with the dtype's lowest value; bfloat16 (mixed_bfloat16
    training) must work and pick the same maxima as float32 on values bfloat16 represents exactly."""
    from tfsts.models.blocks import MaxPool3D

    x = np.arange(2 * 4 * 6 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 6, 3) % 17 - 8.0
    pool = MaxPool3D((3, 3, 3), (2, 2, 2))
    want = np.asarray(pool(keras.ops.convert_to_tensor(x)))
    got = MaxPool3D((3, 3, 3), (2, 2, 2), dtype="mixed_bfloat16")(keras.ops.convert_to_tensor(x))
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    np.testing.assert_array_equal(np.asarray(keras.ops.cast(got, "float32")), want)
    # Border windows see the padding, never pick it: a reference max over the in-range taps.
    ref = np.full(want.shape, -np.inf, np.float32)
    for t in range(want.shape[1]):
        for h in range(want.shape[2]):
            for w in range(want.shape[3]):
                win = x[:, max(2 * t - 1, 0):2 * t + 2, max(2 * h - 1, 0):2 * h + 2, max(2 * w - 1, 0):2 * w + 2]
                ref[:, t, h, w] = win.max(axis=(1, 2, 3))
    np.testing.assert_array_equal(want, ref)


@pytest.mark.parametrize("pool_size, strides", [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)), ((2, 1, 1), (2, 1, 1)), ((3, 3, 3), (1, 1, 1))])
def test_max_pool_and_its_gradient_match_a_numpy_oracle(pool_size, strides):
    """Hara's 3x3x3 /2 stem pool, SlowOnly's 1x3x3 /1x2x2, SlowFast's temporal 2x1x1 /2 and a
    stride-1 pool:
    maxima and each output's gradient routed to one input of its window (tests/reference_numpy.py),
    on distinct values with near-ties (neighbours 1e-6 apart, which TF's MaxPool3DGrad both
    credits: tfsts/layers/backend_kernels.py `max_pool3d`)."""
    import tensorflow as tf

    from tests.reference_numpy import max_pool3d_and_grad
    from tfsts.models.blocks import MaxPool3D

    rng = np.random.default_rng(0)
    shape = (2, 6, 9, 8, 3)
    x = (1.0 + rng.permutation(np.prod(shape)).reshape(shape) * 1e-6).astype(np.float32)
    pool = MaxPool3D(pool_size, strides)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = pool(xt)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * dy)
    want_y, want_grad = max_pool3d_and_grad(x, pool_size, strides, dy)
    np.testing.assert_array_equal(y.numpy(), want_y)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), want_grad, rtol=1e-6, atol=1e-6)
