"""tfsts.layers.BatchNorm against Keras' own BatchNormalization: the same outputs, moving
statistics and gradients in training (its analytic gradient against Keras' autodiff, and
against finite differences), inference (TF's fused op) against a float64 NumPy BN and
Keras', Keras' call where neither applies, and serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsts.layers import BatchNorm

RNG = np.random.default_rng(0)


def _pair(shape, fused=True, **kwargs):
    ours = BatchNorm(axis=-1, momentum=0.9, epsilon=1e-5, fused=fused, **kwargs)
    theirs = keras.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-5, **kwargs)
    for layer in (ours, theirs):
        layer.build((None, *shape[1:]))
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        value = RNG.uniform(0.5, 1.5, size=shape[-1]) if "var" in name or name == "gamma" else RNG.normal(size=shape[-1])
        getattr(ours, name).assign(value)
        getattr(theirs, name).assign(value)
    return ours, theirs


def _train_step(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * upstream)
    return y, tape.gradient(loss, [x, layer.gamma, layer.beta])


@pytest.mark.parametrize("shape", [(2, 4, 6, 6, 8), (3, 5, 5, 16), (4, 1, 1, 1, 8)])
def test_training_matches_keras_outputs_statistics_and_gradients(shape):
    ours, theirs = _pair(shape)
    assert ours.uses_analytic_gradient(tf.zeros(shape), training=True)
    for _ in range(2):  # two updates of the moving statistics
        x = tf.constant(RNG.normal(loc=2.0, scale=3.0, size=shape).astype("float32"))
        upstream = tf.constant(RNG.normal(size=shape).astype("float32"))
        (y1, g1), (y2, g2) = (tf.function(lambda layer=layer: _train_step(layer, x, upstream))() for layer in (ours, theirs))
        np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-5, atol=1e-5)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4 * np.abs(b.numpy()).max())
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), rtol=1e-5, atol=1e-6)
    x = tf.constant(RNG.normal(size=shape).astype("float32"))
    np.testing.assert_allclose(ours(x, training=False).numpy(), theirs(x, training=False).numpy(), rtol=1e-6, atol=1e-6)


def _numpy_inference(layer, x):
    values = {name: getattr(layer, name).numpy().astype("float64") for name in ("gamma", "beta", "moving_mean", "moving_variance")}
    rstd = 1.0 / np.sqrt(values["moving_variance"] + layer.epsilon)
    return (x.astype("float64") - values["moving_mean"]) * rstd * values["gamma"] + values["beta"]


@pytest.mark.parametrize("shape", [(2, 4, 6, 6, 8), (3, 5, 5, 16), (6, 8), (4, 1, 1, 1, 8)])
def test_inference_matches_numpy_as_closely_as_keras(shape):
    """On TF, inference is one FusedBatchNormV3 (`batch_norm_inference`): another order of the
    same float32 operations as Keras' x * a + b, so within float32 rounding of a float64 BN,
    as Keras' is; under a tf.function with unknown dimensions too."""
    ours, theirs = _pair(shape)
    assert ours.uses_fused_inference(tf.zeros(shape), training=False)
    x = RNG.normal(loc=2.0, scale=3.0, size=shape).astype("float32")
    want = _numpy_inference(ours, x)
    scale = np.abs(want).max()
    errors = {}
    for name, layer in (("ours", ours), ("keras", theirs)):
        y = layer(x, training=False).numpy()
        assert y.dtype == np.float32
        errors[name] = np.abs(y - want).max() / scale
    assert errors["ours"] < 1e-6 and errors["ours"] <= 2 * errors["keras"] + 1e-7, errors
    dynamic = tf.function(lambda v: ours(v, training=False), input_signature=[tf.TensorSpec([None] * len(shape))])
    np.testing.assert_array_equal(dynamic(x).numpy(), ours(x, training=False).numpy())
    unfused, theirs = _pair(shape, fused=False)  # Keras' own inference
    assert not unfused.uses_fused_inference(x, training=False)
    np.testing.assert_array_equal(unfused(x, training=False).numpy(), theirs(x, training=False).numpy())


def test_frozen_gradients_match_keras():
    """Frozen BN (fine-tuning with the moving statistics): the fused op's gradients, x's and
    gamma's and beta's, against Keras' autodiff of x * a + b."""
    shape = (2, 3, 4, 4, 8)
    x = tf.constant(RNG.normal(size=shape).astype("float32"))
    upstream = tf.constant(RNG.normal(size=shape).astype("float32"))
    grads = []
    for layer in _pair(shape):
        layer.trainable = False
        with tf.GradientTape() as tape:
            tape.watch([x, layer.gamma.value, layer.beta.value])
            loss = tf.reduce_sum(layer(x, training=True) * upstream)
        grads.append(tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * np.abs(b.numpy()).max())


def test_gradient_matches_finite_differences():
    shape = (2, 3, 3, 4)
    layer, _ = _pair(shape, dtype="float64")
    x = tf.constant(RNG.normal(loc=1.0, size=shape))
    weights = tf.constant(RNG.normal(size=shape))

    def loss(inputs):
        return tf.reduce_sum(layer(inputs, training=True) * weights)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(x)
    grad = tape.gradient(value, x).numpy().ravel()
    flat = x.numpy().ravel()
    eps = 1e-6
    for i in RNG.choice(flat.size, 10, replace=False):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric = (loss(plus.reshape(shape)) - loss(minus.reshape(shape))).numpy() / (2 * eps)
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-5, atol=1e-8)


def test_keras_call_where_the_analytic_gradient_does_not_apply():
    shape = (2, 3, 4, 4, 8)
    x = tf.constant(RNG.normal(size=shape).astype("float32"))
    ours, _ = _pair(shape)
    assert ours.uses_analytic_gradient(x, True) and not ours.uses_analytic_gradient(x, False)
    synced, theirs = _pair(shape, synchronized=True)
    assert not synced.uses_analytic_gradient(x, True)
    np.testing.assert_allclose(synced(x, training=True).numpy(), theirs(x, training=True).numpy(), rtol=1e-5, atol=1e-5)
    frozen, theirs = _pair(shape)
    frozen.trainable = theirs.trainable = False  # frozen BN normalises with the moving statistics
    assert not frozen.uses_analytic_gradient(x, True) and frozen.uses_fused_inference(x, True)
    np.testing.assert_allclose(frozen(x, training=True).numpy(), theirs(x, training=True).numpy(), rtol=1e-6, atol=1e-6)
    masked, theirs = _pair(shape)
    mask = tf.constant(RNG.uniform(size=shape[:-1]) > 0.5)
    assert not masked.uses_fused_inference(x, False, mask)
    np.testing.assert_array_equal(masked(x, training=False, mask=mask).numpy(), theirs(x, training=False, mask=mask).numpy())


def test_mixed_precision_computes_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ours, theirs = _pair((2, 3, 4, 4, 8))
        x = tf.constant(RNG.normal(size=(2, 3, 4, 4, 8)).astype("float32"))
        for training in (True, False):  # bfloat16 inference: Keras' own call (float32 inside)
            y = ours(x, training=training)
            assert y.dtype == "bfloat16"
            np.testing.assert_array_equal(y.numpy(), theirs(x, training=training).numpy())
    finally:
        keras.config.set_dtype_policy("float32")


def test_config_and_keras_file_round_trip(tmp_path):
    inputs = keras.Input((3, 4, 4, 8))
    model = keras.Model(inputs, BatchNorm(momentum=0.9, epsilon=1e-5, fused=True, name="bn")(inputs))
    layer = model.get_layer("bn")
    layer.moving_mean.assign(np.arange(8, dtype="float32"))
    assert layer.get_config()["fused"] is True
    assert BatchNorm.from_config(layer.get_config()).get_config() == layer.get_config()
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("bn")) is BatchNorm and loaded.get_layer("bn").fused
    x = RNG.normal(size=(2, 3, 4, 4, 8)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
