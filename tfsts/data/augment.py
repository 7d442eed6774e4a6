"""Clip-consistent augmentation: one random draw per clip, applied identically to all its frames.

Where each op runs, and why:

- Inside the ``tf.data`` pipeline (before the iterator the trainer checkpoints): only
  stateless TF ops seeded per element (``flip``, ``color_jitter``, the crops in
  ``tfsts.data.video``) and per batch (``mixup_cutmix``). A ``tf.data`` iterator that contains
  a stateful op (every Keras augmentation layer draws from a stateful ``SeedGenerator``)
  cannot be saved with ``tf.train.Checkpoint`` (``FailedPrecondition ... is stateful``), and
  a seeded Keras layer does not repeat across processes, so resumed runs would diverge.
- After the iterator, on the batch inside the training step: Keras augmentation layers
  (RandAugment, and any other) through ``ClipAugment``, which draws ONE transformation per
  clip with ``layer.get_random_transformation(clip[:1])`` and applies it to all frames with
  ``layer.transform_images(clip, t)`` (a plain ``layer(clip)`` would draw per frame). The
  layer's random state is its seed generators' state variables (``layer.variables``, not
  weights): ``tf.train.Checkpoint(augment=layer)`` saves none of them, so the trainer
  checkpoints those variables themselves (``tfsts.training.loop.randaugment_state_variables``),
  and a restored run repeats the same draws, also in a fresh process.

Colour jitter is written by hand from ``tf.image.stateless_random_*``: Keras'
``RandomColorJitter`` draws per frame even with one transformation, and a stateful layer
could not run in the pipeline anyway. Frames stay 0..255 (uint8 in, uint8 out).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf


def _seed(seed: Any, salt: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(tf.cast(tf.convert_to_tensor(seed), tf.int64), salt)


def flip_label_table(label_map: Mapping[int, int] | None) -> tf.Tensor | None:
    """int32 lookup vector for a left/right label swap (e.g. SSv2's "left to right" templates)."""
    if not label_map:
        return None
    size = max(max(label_map), max(label_map.values())) + 1
    table = list(range(size))
    for a, b in label_map.items():
        table[int(a)] = int(b)
    return tf.constant(table, tf.int32)


def flip_left_right(frames: tf.Tensor) -> tf.Tensor:
    """Frames [..., H, W, C] mirrored along W: ``tf.reverse(frames, [-2])``, the same pixels.

    It reverses the middle axis of a 3-D view ``[-1, W, C]``, for which TF's reverse kernel has
    a fast path (rows of C channels): 0.45 vs 1.25 CPU ms for a uint8 [8, 224, 224, 3] clip here.
    """
    shape = tf.shape(frames)
    flat = tf.reshape(frames, tf.stack([-1, shape[-2], shape[-1]]))
    return tf.reshape(tf.reverse(flat, axis=[1]), shape)


def random_flip(frames: tf.Tensor, label: tf.Tensor, seed: Any, *, table: tf.Tensor | None = None,
                probability: float = 0.5) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(frames, label, flipped): horizontal flip of the whole clip [T, H, W, 3] with one draw.

    With ``table`` the label of a flipped clip is mapped through it (labels past its end stay).
    """
    flipped = tf.random.stateless_uniform([], _seed(seed, 20)) < probability
    frames = tf.cond(flipped, lambda: flip_left_right(frames), lambda: frames)
    if table is not None:
        label32 = tf.cast(label, tf.int32)
        inside = tf.logical_and(label32 >= 0, label32 < tf.shape(table)[0])
        swapped = tf.gather(table, tf.clip_by_value(label32, 0, tf.shape(table)[0] - 1))
        label = tf.cast(tf.where(tf.logical_and(flipped, inside), swapped, label32), label.dtype)
    return frames, label, flipped


def color_jitter(frames: tf.Tensor, seed: Any, *, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, probability: float = 1.0) -> tf.Tensor:
    """uint8 clip [..., H, W, 3] with one brightness/contrast/saturation/hue draw for every frame.

    Factors as torchvision's ColorJitter: brightness/contrast/saturation multiply by a factor in
    ``[1 - x, 1 + x]`` (contrast around each frame's mean grey), hue shifts by ``[-hue, hue]``
    of a turn; applied in that fixed order with probability ``probability``.
    """
    apply = tf.random.stateless_uniform([], _seed(seed, 30)) < probability

    def jitter() -> tf.Tensor:
        x = tf.cast(frames, tf.float32) / 255.0
        if brightness:
            f = tf.random.stateless_uniform([], _seed(seed, 31), 1 - brightness, 1 + brightness)
            x = x * f
        if contrast:
            f = tf.random.stateless_uniform([], _seed(seed, 32), 1 - contrast, 1 + contrast)
            grey = tf.reduce_mean(tf.image.rgb_to_grayscale(x), axis=[-3, -2, -1], keepdims=True)
            x = (x - grey) * f + grey
        x = tf.clip_by_value(x, 0.0, 1.0)
        if saturation:
            f = tf.random.stateless_uniform([], _seed(seed, 33), 1 - saturation, 1 + saturation)
            x = tf.image.adjust_saturation(x, f)
        if hue:
            d = tf.random.stateless_uniform([], _seed(seed, 34), -hue, hue)
            x = tf.image.adjust_hue(x, d)
        return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)

    return tf.cond(apply, jitter, lambda: tf.identity(frames))


def soft_labels(label: tf.Tensor, num_classes: int, label_smoothing: float = 0.0) -> tf.Tensor:
    """float32 [B, C]: one-hot with timm's smoothing (off = eps / C, on = 1 - eps + off); -1 -> all off."""
    off = label_smoothing / num_classes
    one_hot = tf.one_hot(tf.cast(label, tf.int32), num_classes, dtype=tf.float32)
    return one_hot * (1.0 - label_smoothing) + off


def _beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
    a = tf.random.stateless_gamma([], _seed(seed, 1), alpha)
    b = tf.random.stateless_gamma([], _seed(seed, 2), alpha)
    return a / (a + b)


def mixup_cutmix(frames: tf.Tensor, soft: tf.Tensor, seed: Any, *, mixup: float = 0.0, cutmix: float = 0.0,
                 switch_prob: float = 0.5) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(frames, soft_label, lam) for a batch [B, T, H, W, 3]: timm's batch-mode Mixup / CutMix.

    One draw per batch: ``lam ~ Beta(alpha, alpha)``; each clip is mixed with the clip at the
    mirrored batch position (``x.flip(0)`` in timm). CutMix pastes the same box into every frame
    of a clip, and ``lam`` becomes the kept area. With both on, CutMix is chosen with
    probability ``switch_prob``. uint8 in, uint8 out (mixup rounds to the nearest level).
    """
    if not (mixup or cutmix):
        return frames, soft, tf.constant(1.0)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    use_cutmix = tf.constant(bool(cutmix) and not mixup)
    if mixup and cutmix:
        use_cutmix = tf.random.stateless_uniform([], _seed(seed, 40)) < switch_prob
    other = tf.reverse(frames, axis=[0])
    other_soft = tf.reverse(soft, axis=[0])

    def do_mixup() -> tuple[tf.Tensor, tf.Tensor]:
        lam = _beta(_seed(seed, 41), mixup) if mixup else tf.constant(1.0)
        mixed = tf.cast(frames, tf.float32) * lam + tf.cast(other, tf.float32) * (1 - lam)
        return tf.cast(tf.round(mixed), frames.dtype), lam

    def do_cutmix() -> tuple[tf.Tensor, tf.Tensor]:
        lam = _beta(_seed(seed, 42), cutmix) if cutmix else tf.constant(1.0)
        shape = tf.shape(frames)
        h, w = shape[-3], shape[-2]
        cut = tf.sqrt(1.0 - lam)
        ch = tf.cast(tf.cast(h, tf.float32) * cut, tf.int32)
        cw = tf.cast(tf.cast(w, tf.float32) * cut, tf.int32)
        cy = tf.random.stateless_uniform([], _seed(seed, 43), 0, h, tf.int32)
        cx = tf.random.stateless_uniform([], _seed(seed, 44), 0, w, tf.int32)
        y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + ch // 2, 0, h)
        x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + cw // 2, 0, w)
        rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y1)
        cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x1)
        box = tf.logical_and(rows[:, None], cols[None, :])[:, :, None]
        mixed = tf.where(box, other, frames)
        kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
        return mixed, kept

    mixed, lam = tf.cond(use_cutmix, do_cutmix, do_mixup)
    return mixed, soft * lam + other_soft * (1 - lam), lam


class ClipAugment:
    """Apply a Keras augmentation layer with ONE random draw per clip (after the iterator).

    Runs on a batch ``[B, T, H, W, 3]`` (0..255) in the training step: for each clip,
    ``t = layer.get_random_transformation(clip[:1], training=True)`` and
    ``layer.transform_images(clip, t, training=True)``. To resume the same draws, checkpoint
    the seed-generator state variables in ``layer.variables`` (the trainer does:
    ``tfsts.training.loop.randaugment_state_variables``); checkpointing the layer itself saves
    no seed state.

    Example:
        >>> augment = ClipAugment(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.7))
        >>> frames = augment(batch["frames"])  # float32, 0..255
    """

    def __init__(self, layer: Any):
        self.layer = layer

    def __call__(self, frames: tf.Tensor) -> tf.Tensor:
        dtype = frames.dtype
        x = tf.cast(frames, tf.float32)

        def one(clip: tf.Tensor) -> tf.Tensor:
            t = self.layer.get_random_transformation(clip[:1], training=True)
            return tf.cast(self.layer.transform_images(clip, t, training=True), tf.float32)

        out = tf.map_fn(one, x, fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32))
        if dtype == tf.uint8:
            return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
        return out


def clip_randaugment(num_ops: int = 2, magnitude: float = 7.0, seed: int | None = None) -> ClipAugment:
    """RandAugment (Keras) with one draw per clip; ``magnitude`` on timm's 0..10 scale (reference: m7)."""
    import keras

    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=magnitude / 10.0, seed=seed)
    return ClipAugment(layer)
