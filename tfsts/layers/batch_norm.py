"""`BatchNorm`: Keras' BatchNormalization with a cheaper training-mode gradient.

Keras differentiates its training-mode BN op by op (moments, then x * a + b), about a dozen
full passes over the activations in the backward. The analytic gradient needs fewer:
with xhat = (x - mean) * rstd and a = gamma * rstd,

    dbeta = sum(dy),  dgamma = rstd * (sum(dy * x) - mean * dbeta),
    dx = a * dy - a / N * (dbeta + xhat * dgamma),

written as dy * a + (x * k2 + k1) with per-channel k1, k2. Forward and moving statistics are
Keras' own formulas (`ops.moments`, then x * a + (beta - mean * a)), and the weights are
Keras', so a checkpoint, a `.keras` file or an inflated ImageNet BN moves between the two
unchanged. With `fused=True`, inference in float32 (frozen BN too) is `batch_norm_inference`,
on TF one fused op that Grappler folds into the Conv2D feeding it (a 1x1x1 or 1 x k x k conv:
conv + BN + ReLU 0.85-0.93x the time of Keras' two ops); alone, after a depthwise conv or a
Conv3D, that op is no faster than Keras' Mul and Add, or slower (up to 2x), so the zoo sets
`fused` only after convs that run as a Conv2D (benchmarks/bench_inference.py).
Training steps at batch 2, 8x112x112, CPU, side by side in one process against Keras' BN:
R(2+1)D-18 0.96-0.99x, SlowOnly 0.92x, ir-CSN-50 0.89x (README, "Speed against PyTorch").
"""

from __future__ import annotations

import keras
from keras import ops

from tfsts.layers.backend_kernels import batch_norm_inference


def batch_norm_training(x, gamma, beta, mean, variance, epsilon: float):
    """y = (x - mean) / sqrt(variance + epsilon) * gamma + beta over the last axis, with the
    analytic gradient above. mean and variance are x's batch moments (computed by the caller
    on stop_gradient(x); their dependence on x is in this gradient)."""
    axes = tuple(range(len(x.shape) - 1))
    channels = int(x.shape[-1])

    @ops.custom_gradient
    def normalize(x, gamma, beta, mean, variance):
        rstd = ops.rsqrt(variance + epsilon)
        scale = gamma * rstd
        y = x * scale + (beta - mean * scale)

        def grad(*args, upstream=None):  # upstream: the torch backend's keyword
            dy = args[0] if upstream is None else upstream
            count = ops.cast(ops.size(dy) // channels, dy.dtype)
            dbeta = ops.sum(dy, axes)
            dgamma = rstd * (ops.sum(dy * x, axes) - mean * dbeta)
            k2 = -scale * rstd * dgamma / count
            k1 = -scale * dbeta / count - mean * k2
            return dy * scale + (x * k2 + k1), dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(variance)

        return y, grad

    return normalize(x, gamma, beta, mean, variance)


@keras.saving.register_keras_serializable(package="tfsts")
class BatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization (same arguments and weights) whose training mode takes
    the analytic gradient (`batch_norm_training`). Where that does not apply (renorm,
    synchronized moments, a mask, no scale or centre, a channel axis other than the last),
    it is Keras' own call.

    Args:
        fused: inference (float32, last axis) through `batch_norm_inference`, TF's fused op,
            which Grappler folds into a Conv2D that feeds this layer; False: Keras' x * a + b.
        **kwargs: keras.layers.BatchNormalization's.

    Example:
        >>> layer = BatchNorm(momentum=0.9, epsilon=1e-5, fused=True)
        >>> y = layer(keras.ops.ones((2, 4, 8, 8, 16)), training=True)
    """

    def __init__(self, fused: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fused = bool(fused)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}

    def uses_analytic_gradient(self, inputs, training=None, mask=None) -> bool:
        """Whether this call takes `batch_norm_training` (else it is Keras' own call)."""
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            bool(training) and self.trainable and mask is None and self.scale and self.center
            and not self.renorm and not self.synchronized and axis in (-1, len(inputs.shape) - 1)
        )

    def uses_fused_inference(self, inputs, training=None, mask=None) -> bool:
        """Whether this call takes `batch_norm_inference` (else it is Keras' own call)."""
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            self.fused and not (training and self.trainable) and mask is None and self.scale and self.center
            and axis in (-1, len(inputs.shape) - 1)
            and keras.backend.standardize_dtype(inputs.dtype) == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        if self.uses_fused_inference(inputs, training, mask):
            return batch_norm_inference(
                inputs, self.moving_mean, self.moving_variance, self.beta, self.gamma, self.epsilon
            )
        if not self.uses_analytic_gradient(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        # In float32 at least, as Keras (bfloat16 / float16 moments overflow).
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = ops.moments(ops.stop_gradient(x), list(range(len(x.shape) - 1)))
        self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, x.dtype) * self.momentum + variance * (1.0 - self.momentum)
        )
        y = batch_norm_training(
            x, ops.cast(self.gamma, x.dtype), ops.cast(self.beta, x.dtype), mean, variance, self.epsilon
        )
        return ops.cast(y, self.compute_dtype)
