"""Drop-path (stochastic depth): the `blocks.DropPath` layer against NumPy, its linear
schedule over the blocks, and the CNN builders with and without it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_resnet_core import MAIN_LAYOUTS, layout_fingerprint
from tfsts import models
from tfsts.models import resnet_core
from tfsts.models.blocks import DropPath, drop_path_schedule
from tfsts.models.graph import LayerGraph
from tfsts.training.modeling import copy_matching_weights

SMALL = (4, 32, 32, 3)
ONE = (1, 1, 1, 1)


def test_drop_path_zeroes_or_scales_whole_samples():
    """Training: out / x is, per sample, either all 0 or all 1 / (1 - p); a fixed seed
    repeats the pattern and another seed gives another one."""
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(64, 2, 3, 3, 4)).astype("float32")
    out = np.asarray(DropPath(0.25, seed=7)(x, training=True))
    ratio = out / x
    per_sample = ratio.reshape(64, -1)
    kept = per_sample[:, 0] != 0
    np.testing.assert_allclose(per_sample, np.where(kept, 1 / 0.75, 0.0)[:, None] * np.ones_like(per_sample), rtol=1e-6)
    assert 0 < kept.sum() < 64
    again = np.asarray(DropPath(0.25, seed=7)(x, training=True))
    np.testing.assert_array_equal(out, again)
    other = np.asarray(DropPath(0.25, seed=8)(x, training=True))
    assert not np.array_equal(out != 0, other != 0)


def test_drop_path_keeps_the_expectation():
    """20,000 samples at p = 0.3: kept fraction 0.7 and mean output 1 (for x = 1), each
    within 0.015 (about 5 standard deviations: sqrt(0.3 * 0.7 / 20000) = 0.0032 for the
    fraction, 0.0046 for the mean)."""
    x = np.ones((20000, 1, 1, 1, 2), "float32")
    layer = DropPath(0.3, seed=1)
    out = np.asarray(layer(x, training=True))
    assert abs((out[:, 0, 0, 0, 0] != 0).mean() - 0.7) < 0.015
    assert abs(out.mean() - 1.0) < 0.015
    second = np.asarray(layer(x, training=True))  # the seed generator advances
    assert not np.array_equal(out, second)


def test_drop_path_is_the_identity_at_inference_and_round_trips():
    x = np.random.default_rng(1).normal(size=(5, 2, 4, 4, 3)).astype("float32")
    layer = DropPath(0.5, seed=3, name="blk_drop_path")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    copy = DropPath.from_config(layer.get_config())
    assert (copy.name, copy.rate, copy.seed) == ("blk_drop_path", 0.5, 3)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, DropPath) and restored.rate == 0.5
    assert layer.weights == [] and copy.weights == []
    with pytest.raises(ValueError, match=r"rate is a drop probability in \[0, 1\); got 1.0"):
        DropPath(1.0)


def test_schedule_rises_linearly_from_zero():
    assert drop_path_schedule(5, 0.2) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_schedule(1, 0.2) == [0.0]
    stages = [resnet_core.Stage(blocks=n, filters=8) for n in (2, 1, 2)]
    assert resnet_core.stage_drop_path_rates(stages, 0.4) == [
        pytest.approx([0.0, 0.1]), pytest.approx([0.2]), pytest.approx([0.3, 0.4]),
    ]
    with pytest.raises(ValueError, match="drop_path_rate"):
        drop_path_schedule(3, -0.1)


def _drop_path_layers(model):
    return {layer.name: layer.rate for layer in model.layers if isinstance(layer, DropPath)}


@pytest.mark.parametrize(
    "name, kwargs, blocks",
    [
        ("resnet3d_10", {}, ["conv2_block1", "conv3_block1", "conv4_block1", "conv5_block1"]),
        ("ircsn_50", {"stage_blocks": (1, 2, 1, 1)}, ["conv2_block1", "conv3_block1", "conv3_block2", "conv4_block1", "conv5_block1"]),
        ("x3d_s", {"stage_blocks": (1, 2, 1, 1)}, ["conv2_block1", "conv3_block1", "conv3_block2", "conv4_block1", "conv5_block1"]),
    ],
)
def test_builders_put_drop_path_on_every_residual_branch_but_the_first(name, kwargs, blocks):
    """rate 0.2 over n blocks: block i gets 0.2 i / (n - 1) before its `_add`; block 1
    (rate 0) gets no layer; layers and weights are those of the model without drop-path
    (in another order), and at inference it computes the same."""
    plain = models.build_model(name, 3, input_shape=SMALL, **kwargs)
    model = models.build_model(name, 3, input_shape=SMALL, drop_path_rate=0.2, **kwargs)
    n = len(blocks)
    expected = {f"{b}_drop_path": pytest.approx(0.2 * i / (n - 1)) for i, b in enumerate(blocks) if i}
    assert _drop_path_layers(model) == expected
    graph = LayerGraph(model)
    for block in blocks[1:]:
        assert f"{block}_drop_path" in {l.name for l in graph.producers(model.get_layer(f"{block}_add"))}
    # the same layers and weights (names, shapes); weights move by name (as init.checkpoint)
    assert sorted(l.name for l in plain.layers) == sorted(l.name for l in model.layers if not isinstance(l, DropPath))
    assert sorted((w.path, tuple(w.shape)) for w in model.weights) == sorted((w.path, tuple(w.shape)) for w in plain.weights)
    assert len(model.weights) == len(plain.weights)
    for v in plain.weights:
        v.assign(np.random.default_rng(len(v.path)).uniform(0.5, 1.5, size=v.shape).astype("float32"))
    copied, skipped = copy_matching_weights(plain, model)
    assert skipped == [] and len(copied) == len([l for l in plain.layers if l.weights])
    # inference: the same function as the model without drop-path
    clip = np.random.default_rng(2).uniform(0, 255, size=(2, *SMALL)).astype("float32")
    np.testing.assert_allclose(model(clip, training=False), plain(clip, training=False), rtol=1e-5, atol=1e-5)


def test_a_model_with_drop_path_trains_a_step():
    keras.utils.set_random_seed(0)
    model = models.build_model("resnet3d_10", 3, input_shape=SMALL, drop_path_rate=0.3, widen_factor=0.125)
    assert _drop_path_layers(model)
    clip = tf.constant(np.random.default_rng(3).uniform(0, 255, size=(4, *SMALL)).astype("float32"))
    # training mode reaches the layers: two calls draw two masks; inference is fixed
    assert not np.allclose(model(clip, training=True), model(clip, training=True))
    np.testing.assert_array_equal(model(clip, training=False), model(clip, training=False))
    labels = tf.constant([0, 1, 2, 0])
    before = [np.array(v) for v in model.trainable_variables]
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(clip, training=True), from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads) and np.isfinite(float(loss))
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert any(not np.array_equal(a, np.array(b)) for a, b in zip(before, model.trainable_variables))


@pytest.mark.parametrize("case", ["resnet3d_10", "ipcsn_50:rowcol", "r2plus1d_34:rowcol"])
def test_rate_zero_adds_no_layer_and_keeps_mains_fingerprint(case):
    name, overrides, fingerprint = MAIN_LAYOUTS[case]
    overrides = dict(overrides)
    sts = overrides.pop("sts", None)
    model = models.build_model(name, 10, input_shape=(16, 32, 32, 3), sts=sts, drop_path_rate=0.0, **overrides)
    assert not _drop_path_layers(model)
    assert layout_fingerprint(model) == fingerprint


def test_config_model_drop_path_reaches_the_cnn_builders():
    from tests.train_helpers import tiny_config
    from tfsts.training import ConfigError, build_model_from_config

    c = tiny_config()
    c.model.drop_path = 0.05
    rates = _drop_path_layers(build_model_from_config(c))
    assert rates == {f"conv{s}_block1_drop_path": pytest.approx(0.05 * (s - 2) / 3) for s in (3, 4, 5)}
    c.model.name = "densenet3d_121"
    c.model.kwargs = {}
    with pytest.raises(ConfigError, match=r"config.model.drop_path = 0.05: model 'densenet3d_121' has no drop-path option"):
        build_model_from_config(c)
