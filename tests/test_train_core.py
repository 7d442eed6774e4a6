"""Losses, schedule, optimizer step and config locking against hand / NumPy computations."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsts.training import config as config_lib
from tfsts.training import losses, optim
from tfsts.training.loop import Steps


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_per_source_softmax_loss_matches_numpy_with_masks_and_smoothing():
    rng = np.random.default_rng(0)
    logits_a, logits_b = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([2, 3, 0, -1, 1], np.int32)
    source = np.array([0, 1, 0, 1, 1], np.int32)
    batch = {"label": labels, "source": source}
    total, stats = losses.batch_loss_and_stats(
        {"a": logits_a, "b": logits_b}, batch, {"a": 3, "b": 4}, kind="softmax", label_smoothing=0.1
    )
    expected, correct = 0.0, {"a": 0, "b": 0}
    for i in range(5):
        if labels[i] < 0:
            continue  # unlabeled: no loss
        logits, c = (logits_a[i], 3) if source[i] == 0 else (logits_b[i], 4)
        target = np.full(c, 0.1 / c)
        target[labels[i]] += 0.9
        expected -= (target * _np_log_softmax(logits)).sum()
        correct["a" if source[i] == 0 else "b"] += int(logits.argmax() == labels[i])
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)
    assert float(stats["count/a"]) == 2 and float(stats["count/b"]) == 2
    assert float(stats["correct/a"]) == correct["a"] and float(stats["correct/b"]) == correct["b"]


def test_bce_with_soft_targets_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4)).astype(np.float32)
    soft = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
    batch = {"label": np.array([0, 1, 2], np.int32), "soft_label": soft}
    total, _ = losses.batch_loss_and_stats(logits, batch, {"x": 4}, kind="bce")
    p = 1 / (1 + np.exp(-logits))
    expected = -(soft * np.log(p) + (1 - soft) * np.log(1 - p)).mean(-1).sum()
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_label_beyond_head_fails_naming_source_and_fix():
    batch = {"label": tf.constant([0, 5]), "source": tf.constant([0, 0])}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"source 'toy'.*head size 3.*num_classes"):
        losses.label_checks(batch, {"toy": 3})


def test_warmup_cosine_schedule_values():
    s = optim.WarmupCosine(peak=0.4, total=10, warmup=2, end=0.0)
    got = [float(s(i)) for i in range(12)]
    expected = [0.4 * (i + 1) / 2 for i in range(2)] + [
        0.5 * 0.4 * (1 + math.cos(math.pi * min((i - 2) / 8, 1.0))) for i in range(2, 12)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_lr_scales_linearly_with_effective_batch():
    c = config_lib.base_config()
    c.optimizer.lr, c.optimizer.lr_reference_batch = 0.01, 128
    c.train.global_batch_size = 32
    assert config_lib.lr_for(c) == pytest.approx(0.0025)
    c.train.grad_accum_steps = 4
    assert config_lib.lr_for(c) == pytest.approx(0.01)


def _linear_setup(config, strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inputs = keras.Input((1, 2, 2, 3))
        x = keras.layers.Flatten()(inputs)
        outputs = keras.layers.Dense(3, name="head")(x)
        model = keras.Model(inputs, outputs)
        optimizer = optim.build_optimizer(config, model)
    return model, optimizer


def test_sgd_step_l2_clip_momentum_match_numpy():
    """Two SGD steps: coupled L2 on the kernel only (not the bias), global-norm clip of the
    summed gradient, momentum, warm-up lr: against a NumPy re-computation."""
    c = config_lib.base_config()
    c.data.sources["toy"] = config_lib.source(num_classes=3)
    c.train.global_batch_size, c.train.num_steps = 4, 10
    c.optimizer.update(lr=0.5, lr_reference_batch=4, weight_decay=0.1, clip_norm=0.3, momentum=0.9, warmup_steps=2)
    strategy = tf.distribute.get_strategy()
    model, optimizer = _linear_setup(c, strategy)
    steps = Steps(model, optimizer, c, strategy)
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 2, size=(4, 1, 2, 2, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1], np.int32)
    batch = {"frames": tf.constant(frames), "label": tf.constant(labels), "source": tf.zeros(4, tf.int32)}
    w, b = [np.array(v) for v in model.weights]
    vel_w, vel_b = np.zeros_like(w), np.zeros_like(b)
    x = frames.reshape(4, -1)
    for step in range(2):
        steps.train_step(batch)
        logits = x @ w + b
        p = np.exp(_np_log_softmax(logits))
        d = (p - np.eye(3)[labels]) / 4
        gw, gb = x.T @ d + 0.1 * w, d.sum(0)
        norm = np.sqrt((gw**2).sum() + (gb**2).sum())
        gw, gb = [g * min(1.0, 0.3 / norm) for g in (gw, gb)]
        lr = 0.5 * (step + 1) / 2
        vel_w, vel_b = 0.9 * vel_w - lr * gw, 0.9 * vel_b - lr * gb
        w, b = w + vel_w, b + vel_b
    np.testing.assert_allclose(np.array(model.weights[0]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(model.weights[1]), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adamw", "lamb"])
@pytest.mark.parametrize("decay_all", [False, True])
def test_decoupled_weight_decay_skips_bias_unless_asked(name, decay_all):
    """With zero gradients only weight decay moves weights: kernel *= 1 - lr * wd; the
    bias stays unless decay_norm_and_bias."""
    c = config_lib.base_config()
    c.data.sources["toy"] = config_lib.source(num_classes=3)
    c.train.num_steps, c.train.global_batch_size = 10, 4
    c.optimizer.update(name=name, lr=0.2, lr_reference_batch=4, weight_decay=0.5, decay_norm_and_bias=decay_all)
    model, optimizer = _linear_setup(c, tf.distribute.get_strategy())
    model.weights[1].assign(np.ones(3, np.float32))
    kernel, bias = [np.array(v) for v in model.weights]
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    lr = float(optim.schedule_from_config(c)(0))
    np.testing.assert_allclose(np.array(model.weights[0]), kernel * (1 - lr * 0.5), rtol=1e-6)
    np.testing.assert_allclose(np.array(model.weights[1]), bias * (1 - lr * 0.5) if decay_all else bias, rtol=1e-6)


def test_unknown_key_message_names_nearest_valid_key():
    c = config_lib.base_config()
    message = config_lib.unknown_key_message(c, "optimizer.learnig_rate")
    assert message.startswith("unknown config key config.optimizer.learnig_rate; nearest valid key: config.optimizer.")
    assert config_lib.unknown_key_message(c, "optimizer.lr") is None
    with pytest.raises(config_lib.ConfigError, match=r"config.train.global_bach_size; nearest valid key: config.train.global_batch_size"):
        config_lib.check_overrides(c, ["--config.train.global_bach_size=8"])


def test_locked_config_rejects_new_keys():
    c = config_lib.base_config()
    c.lock()
    with pytest.raises(AttributeError):
        c.train.new_field = 1
    with pytest.raises(config_lib.ConfigError, match="optimizer.name"):
        c2 = config_lib.base_config()
        c2.optimizer.name = "adam"
        c2.data.sources["x"] = config_lib.source()
        config_lib.validate(c2)
