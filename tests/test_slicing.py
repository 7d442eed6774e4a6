"""The slicing helpers the model code uses instead of Python indexing (tfsts/layers/sts_conv.py):
`slice_axis`, `take_axis`, `shift_axis` and `blocks.strided_subsample`, against NumPy indexing,
values and gradients (the gradient of a slice is the upstream gradient scattered back)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfsts.layers.sts_conv import shift_axis, slice_axis, take_axis
from tfsts.models.blocks import strided_subsample

X = np.arange(2 * 7 * 5 * 3, dtype=np.float32).reshape(2, 7, 5, 3)


def _index(axis: int, sl) -> tuple:
    index = [slice(None)] * X.ndim
    index[axis] = sl
    return tuple(index)


@pytest.mark.parametrize("axis, start, length, stride", [
    (1, 0, 7, 1), (1, 2, 3, 1), (2, 1, 4, 1), (1, 0, 4, 2), (1, 1, 3, 2), (1, 2, 2, 3), (2, 0, 3, 2), (-2, 1, 2, 2),
])
def test_slice_axis_is_numpy_indexing(axis, start, length, stride):
    got = slice_axis(tf.constant(X), axis, start, length, stride)
    want = X[_index(axis, slice(start, start + (length - 1) * stride + 1, stride))]
    np.testing.assert_array_equal(np.asarray(got), want)


def test_slice_axis_gradient_scatters_back():
    x = tf.constant(X)
    weights = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 5, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(slice_axis(x, 1, 1, 3, 2) * weights)
    want = np.zeros_like(X)
    want[:, 1:6:2] = weights.numpy()
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), want)


@pytest.mark.parametrize("axis, index", [(1, 0), (1, 6), (2, 3), (-1, 2)])
def test_take_axis_is_numpy_indexing(axis, index):
    np.testing.assert_array_equal(np.asarray(take_axis(tf.constant(X), axis, index)), X[_index(axis, index)])


@pytest.mark.parametrize("axis, offset", [(1, 0), (1, 2), (1, -3), (2, 1), (2, -1)])
def test_shift_axis_reads_offset_with_zeros_outside(axis, offset):
    got = np.asarray(shift_axis(tf.constant(X), axis, offset))
    want = np.zeros_like(X)
    size = X.shape[axis]
    for i in range(size):
        if 0 <= i + offset < size:
            want[_index(axis, i)] = X[_index(axis, i + offset)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("strides", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (4, 2, 3)])
def test_strided_subsample_is_numpy_strides(strides):
    clip = np.arange(2 * 9 * 7 * 5 * 2, dtype=np.float32).reshape(2, 9, 7, 5, 2)
    st, sh, sw = strides
    np.testing.assert_array_equal(np.asarray(strided_subsample(tf.constant(clip), strides)), clip[:, ::st, ::sh, ::sw])
