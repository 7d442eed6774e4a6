"""The fast paths of tfsts.data.video give the same pixels as the plain TF ops they replace."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfsts.data import video


def _jpegs(n: int = 3, height: int = 120, width: int = 170) -> tf.Tensor:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(height // 8, width // 10, 3), dtype=np.uint8)
    frames = [np.kron(np.roll(base, k, axis=1), np.ones((8, 10, 1), np.uint8)) for k in range(n)]
    return tf.stack([tf.io.encode_jpeg(f, quality=90) for f in frames])


def test_decode_crop_resize_equals_decode_crop_then_uint8_resize():
    jpegs = _jpegs()
    box = tf.constant([7, 13, 90, 101])
    got = video.decode_crop_resize(jpegs, box, 64).numpy()
    crops = tf.stack([tf.image.decode_and_crop_jpeg(j, box, channels=3, dct_method="INTEGER_FAST") for j in jpegs])
    want = tf.cast(tf.image.resize(crops, [64, 64], method="bilinear") + 0.5, tf.uint8).numpy()
    np.testing.assert_array_equal(got, want)  # the float32 cast before resizing changes no pixel


def test_resize_short_side_equals_uint8_resize():
    frames = tf.stack([tf.io.decode_jpeg(j, channels=3) for j in _jpegs()])
    got = video.resize_short_side(frames, 48).numpy()
    want = tf.cast(tf.image.resize(frames, [48, 68], method="bilinear") + 0.5, tf.uint8).numpy()
    np.testing.assert_array_equal(got, want)
