"""Shared checks for model-family tests (one call each, as keras-hub's TestCase helpers)."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfsts import models


def random_clip(input_shape, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *input_shape)).astype("float32")


def perturb_batch_norms(model: keras.Model, seed: int = 1) -> None:
    """Non-trivial BN statistics and affine weights, so numerical checks mean something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.1, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ])


def assert_output_shape(name: str, input_shape, expected, **kwargs) -> keras.Model:
    """Builds backbone `name` for `input_shape`, runs a clip, checks the feature shape."""
    backbone = models.build_backbone(name, input_shape=input_shape, **kwargs)
    out = backbone(random_clip(input_shape), training=False)
    shapes = [tuple(o.shape) for o in out] if isinstance(out, (list, tuple)) else tuple(out.shape)
    assert shapes == expected, f"{name} at {input_shape}: {shapes} != {expected}"
    return backbone


def assert_save_load_round_trip(model: keras.Model, tmp_path, input_shape=None) -> None:
    """`.keras` save/load gives identical outputs (BN perturbed so they are non-trivial)."""
    perturb_batch_norms(model)
    x = random_clip(input_shape or model.input_shape[1:])
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    expected = tf.nest.flatten(model(x, training=False))
    actual = tf.nest.flatten(loaded(x, training=False))
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(np.asarray(e), np.asarray(a), rtol=1e-5, atol=1e-5)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def assert_mirrored_train_step(name: str, input_shape, num_classes=3, batch: int = 4, **kwargs) -> None:
    """One SGD step under MirroredStrategy on two logical CPUs: loss finite, every
    trainable weight moves, replicas agree.

    Reduction goes to one device: the default collective all-reduce clashes when
    several strategies live in one process ("Shape mismatch in the collective
    instance"). Batch 4 puts 2 clips on each replica, so training-mode BN followed by
    an SE block or a 1x1x1 map still passes a gradient.
    """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = models.build_model(name, num_classes, input_shape=input_shape, dropout=0.0, **kwargs)
        optimizer = keras.optimizers.SGD(0.01)
    x = random_clip(input_shape, batch=batch)
    y = np.arange(batch) % num_classes
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch))
    before = [v.numpy().copy() for v in model.trainable_variables]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def step(inputs):
        def replica(clips, labels):
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(clips, training=True)) / batch
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(replica, inputs), axis=None)

    loss = step(next(iter(dataset)))
    assert np.isfinite(loss.numpy()), name
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert np.mean(moved) > 0.95, f"{name}: only {np.mean(moved):.0%} of the weights moved"
    for v in model.trainable_variables:
        replicas = strategy.experimental_local_results(v.value)
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())


def assert_sts_weight_interchange(name: str, input_shape, **kwargs) -> None:
    """The STS and the plain model have the same variables (names, shapes) and accept
    each other's weights; outputs differ (STS really changes the computation)."""
    sts_model = models.build_model(name, 5, sts=True, input_shape=input_shape, dropout=0.0, **kwargs)
    plain = models.build_model(name, 5, sts=False, input_shape=input_shape, dropout=0.0, **kwargs)
    assert [(w.path, w.shape) for w in sts_model.weights] == [(w.path, w.shape) for w in plain.weights]
    plain.set_weights(sts_model.get_weights())
    perturb_batch_norms(sts_model)
    plain.set_weights(sts_model.get_weights())
    x = random_clip(input_shape)
    a, b = sts_model(x, training=False), plain(x, training=False)
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    sts_layers = [l.name for l in sts_model.layers if getattr(l, "sts", False)]
    assert sts_layers, f"{name}: sts=True switched no conv to STS"
