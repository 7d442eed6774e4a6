"""Optimizers and the learning-rate schedule (linear warm-up, then cosine).

Gradient clipping and SGD's L2 weight decay are applied by the training loop to the
all-reduced gradient (tfsts.training.loop.finish_gradients): Keras' `global_clipnorm` clips
each replica's partial gradient before the all-reduce, which is not a global norm.
"""
from __future__ import annotations

import math

import keras
import ml_collections
import tensorflow as tf

from tfsts.training import config as config_lib


@keras.saving.register_keras_serializable(package="tfsts")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step): linear from 0 to `peak` over `warmup` steps, then cosine from `peak` to
    `end` at `total` steps (constant `end` after).

    step counts optimizer updates from 0; the update at step s uses lr(s + 1) during
    warm-up so that the first update is not wasted at lr 0 (as mmcv's linear warm-up).
    """

    def __init__(self, peak: float, total: int, warmup: int = 0, end: float = 0.0):
        self.peak, self.total, self.warmup, self.end = float(peak), int(total), int(warmup), float(end)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup, 1)
        span = max(self.total - self.warmup, 1)
        progress = tf.clip_by_value((step - self.warmup) / span, 0.0, 1.0)
        cosine = self.end + 0.5 * (self.peak - self.end) * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return dict(peak=self.peak, total=self.total, warmup=self.warmup, end=self.end)


def schedule_from_config(config: ml_collections.ConfigDict) -> WarmupCosine:
    return WarmupCosine(
        peak=config_lib.lr_for(config),
        total=config_lib.total_steps(config),
        warmup=config_lib.warmup_steps(config),
        end=config.optimizer.min_lr,
    )


def decays(variable, decay_norm_and_bias: bool) -> bool:
    """Weight decay applies to kernels; BN scales/offsets and biases (rank <= 1) only
    when `decay_norm_and_bias` (the timm / mmaction2 convention)."""
    return decay_norm_and_bias or len(variable.shape) > 1


def build_optimizer(config: ml_collections.ConfigDict, model: keras.Model) -> keras.optimizers.Optimizer:
    """The optimizer named by config.optimizer, wrapped in LossScaleOptimizer for
    mixed_float16. SGD's weight decay is coupled L2 (added by the loop), AdamW's and
    LAMB's are decoupled (the optimizer's own), both skipping BN and biases by default."""
    opt = config.optimizer
    lr = schedule_from_config(config)
    name = opt.name
    if name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=opt.momentum, nesterov=opt.nesterov)
    elif name in ("adamw", "lamb"):
        cls = keras.optimizers.AdamW if name == "adamw" else keras.optimizers.Lamb
        optimizer = cls(
            learning_rate=lr, weight_decay=opt.weight_decay, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.epsilon
        )
        excluded = [v for v in model.trainable_variables if not decays(v, opt.decay_norm_and_bias)]
        if excluded:
            optimizer.exclude_from_weight_decay(var_list=excluded)
    else:
        raise config_lib.ConfigError(f"config.optimizer.name = {name!r}: must be one of {config_lib.OPTIMIZERS}.")
    if config.train.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def l2_decay_mask(config: ml_collections.ConfigDict, variables) -> list[bool]:
    """Which variables get the loop's L2 term (SGD only; the other optimizers decay themselves)."""
    if config.optimizer.name != "sgd" or config.optimizer.weight_decay <= 0:
        return [False] * len(variables)
    return [decays(v, config.optimizer.decay_norm_and_bias) for v in variables]
