"""The one place where model code names a backend: convs that TensorFlow's CPU kernels
run much faster in a form `keras.ops` does not offer (another layout of the same memory
for a gradient; explicit padding), and a max pool whose TF gradient is exact only in
another form. Each function is the `keras.ops` op on every other backend (and the tests
check both against the same NumPy references); only where the backend is TensorFlow does
it call TensorFlow, which it imports when first called.
"""

from __future__ import annotations

import functools

import keras
from keras import ops


def depthwise_conv1d(seq, kernel_1d, stride: int, padding: str):
    """`ops.depthwise_conv` of [N, L, C] sequences with a [k, C, 1] kernel ('valid' where
    stride > 1).

    On the TensorFlow backend the kernel gradient is taken with the sequence along H
    ([N, L, 1, C] and a k x 1 filter: the same sums over the same memory): TF's CPU
    DepthwiseConv2dNativeBackpropFilter takes 2.4x as long for a 1 x 9 filter along W
    (16 x 3136 x 32: 6.1 against 2.6 ms), which put the reference STS case A at 1.10x the
    plain conv (benchmarks/bench_sts.py). Other backends keep their own gradient.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.depthwise_conv(seq, kernel_1d, strides=stride, padding=padding)
    if stride > 1 and padding != "valid":
        raise ValueError(f"depthwise_conv1d: stride {stride} takes padding 'valid' (pad first); got {padding!r}")
    import tensorflow as tf

    k, c = int(kernel_1d.shape[0]), int(kernel_1d.shape[1])
    padding = padding.upper()
    strides = [1, stride, stride, 1]  # TF's depthwise convs take equal strides only

    def kernel_gradient(seq, dy):
        if stride > 1:
            # The kernel gradient of a strided conv is the stride-1 one of dy with stride - 1
            # zeros after each entry. (Strides [1, s, 1, 1] along H: TF's own kernel refuses
            # unequal strides; [1, s, s, 1] takes 7x as long, 15.6 against 2.1 ms.)
            dy = tf.pad(tf.expand_dims(dy, 2), [(0, 0), (0, 0), (0, stride - 1), (0, 0)])
            dy = tf.reshape(dy, (tf.shape(dy)[0], -1, c))
            needed = None if dy.shape[1] is None else int(dy.shape[1]) + k - 1  # inputs those read
            if needed is None or seq.shape[1] != needed:  # at most stride - 1 zeros past the end
                seq = tf.pad(seq, [(0, 0), (0, stride - 1), (0, 0)])[:, : tf.shape(dy)[1] + k - 1]
        dk = tf.nn.depthwise_conv2d_backprop_filter(
            tf.expand_dims(seq, 2), (k, 1, c, 1), tf.expand_dims(dy, 2), [1, 1, 1, 1], padding
        )
        return tf.reshape(dk, (k, c, 1))

    @tf.custom_gradient
    def conv(seq, kernel_1d):
        rows = tf.expand_dims(seq, 1)  # [N, 1, L, C], as Keras' own 1-D depthwise conv
        filter_2d = tf.expand_dims(kernel_1d, 0)

        def grad(dy):
            dx = tf.nn.depthwise_conv2d_backprop_input(tf.shape(rows), filter_2d, tf.expand_dims(dy, 1), strides, padding)
            return tf.squeeze(dx, 1), kernel_gradient(seq, dy)

        return tf.squeeze(tf.nn.depthwise_conv2d(rows, filter_2d, strides, padding), 1), grad

    return conv(seq, kernel_1d)


def conv2d_padded(x, kernel, strides: tuple[int, int], pads: tuple[tuple[int, int], tuple[int, int]]):
    """A 2D conv of [N, H, W, C] with a [kh, kw, C, O] kernel and explicit (before, after)
    zero padding of H and W: `ops.pad` then a 'valid' `ops.conv` on every other backend.

    On TensorFlow the padding is the conv's own (`tf.nn.conv2d`'s explicit paddings), with
    no Pad op and no Slice in the gradient: R(2+1)D-34's strided 3 x 1 x 1 temporal conv
    (2x8x56x56x230 -> 128, as a 3 x 1 conv over clips of 8 x 3,136 positions) takes 69
    against 111 ms for the training step of the same sums as stacked taps and a Conv2D, and
    187 ms as a padded Conv3D (benchmarks/bench_convs.py). Not a general win: for spatial
    3 x 3 convs TF's explicit-padding gradient kernels (Eigen's) are slower than Pad + 'valid'.
    """
    if keras.backend.backend() != "tensorflow":
        x = ops.pad(x, [(0, 0), *pads, (0, 0)])
        return ops.conv(x, kernel, strides=strides, padding="valid")
    import tensorflow as tf

    return tf.nn.conv2d(x, kernel, (1, *strides, 1), [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])


def _as_frames(x):
    """A TF tensor [..., H, W, C] as [-1, H, W, C] (static sizes where known): the layout of TF's
    frame ops (FusedBatchNormV3, BiasAdd), which Grappler fuses with a Conv2D over the same frames."""
    import tensorflow as tf

    return tf.reshape(x, [-1, *_dims(x)[-3:]])


def batch_norm_inference(x, mean, variance, offset, scale, epsilon: float):
    """`ops.batch_normalization` over the last axis (Keras' inference BN) of a float32 x.

    On TensorFlow one FusedBatchNormV3 (is_training=False, the raw op: its Python wrapper
    raises epsilon to 1.001e-5) over x as [-1, H, W, C]: one pass over the activations where
    `tf.nn.batch_normalization` takes two (a Mul and an Add), and which Grappler folds into a
    Conv2D feeding it: 1x1x1 conv + BN + ReLU at X3D-S's and ir-CSN's shapes 0.70-0.88x the
    time of the two-op form; alone it is slower than that form (1.3-1.9x), hence
    `BatchNorm(fused=...)` (benchmarks/bench_inference.py). Its gradient is TF's (frozen BN).
    """
    if keras.backend.backend() != "tensorflow" or len(x.shape) < 3:
        return ops.batch_normalization(x, mean, variance, axis=-1, offset=offset, scale=scale, epsilon=epsilon)
    import tensorflow as tf

    rank4 = len(x.shape) == 4
    frames = x if rank4 else _as_frames(x)
    y = tf.raw_ops.FusedBatchNormV3(
        x=frames, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=False,
    )[0]
    return y if rank4 else tf.reshape(y, tf.shape(x))


def bias_add(x, bias):
    """x + bias over the last axis, the same sums. On TensorFlow a BiasAdd over x as
    [-1, H, W, C] (rank 5 and up), the op Grappler's remapper can fuse into a Conv2D feeding it
    through the conv's own reshapes: BN-folded models (`tfsts.models.fold_batch_norms`) infer
    in 0.91-0.98x the time of the unfolded ones with it, where a BiasAdd over the rank-5 tensor
    read ResNet3D-18 at 1.01x (benchmarks/bench_inference.py)."""
    if keras.backend.backend() != "tensorflow":
        return x + ops.cast(bias, x.dtype)
    import tensorflow as tf

    bias = tf.cast(bias, x.dtype)
    if len(x.shape) <= 4:
        return tf.nn.bias_add(x, bias)
    frames = _as_frames(x)
    return tf.reshape(tf.nn.bias_add(frames, bias), tf.shape(x))


def max_pool3d(x, pool_size: tuple[int, int, int], strides: tuple[int, int, int],
               pads: list[tuple[int, int]], pad_value: float):
    """`ops.pad` of T, H, W by `pads` with `pad_value`, then a 'valid' `ops.max_pool` of
    [N, T, H, W, C].

    On TensorFlow the same maxima come from 2D MaxPools (`max_pool3d_as_2d`), for their
    gradient: TF's CPU MaxPool3DGrad (Eigen's and with oneDNN on) gives the full gradient to
    every input within about 1e-5 of its window's maximum, not to one: [1.0, 1.000001] pooled
    to 1.000001 gets gradient [1, 1]; 86 of 3.2 million inputs at ResNet-18's stem pool on
    distinct values (tests/test_cpu_kernels.py). TF's 2D MaxPoolGrad routes each output's
    gradient to one input, as PyTorch does. It is also faster on Eigen: 41 against 229 ms for
    the forward + backward of that 3x3x3 pool at 2x8x56x56x64, 32 against 163 for SlowOnly's
    1x3x3; with oneDNN within 0.3 ms of it (`python -m benchmarks.bench_pools`).
    """
    x = ops.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    if keras.backend.backend() != "tensorflow":
        return ops.max_pool(x, pool_size, strides, padding="valid")
    return max_pool3d_as_2d(x, pool_size, strides)


def max_pool3d_as_2d(x, pool_size: tuple[int, int, int], strides: tuple[int, int, int]):
    """A 'valid' 3D max pool of a TF tensor [N, T, H, W, C] as a kh x kw TF MaxPool over its
    frames, then a kt x 1 one over [T, H' * W'] (`max_pool3d`)."""
    import tensorflow as tf

    (kt, kh, kw), (st, sh, sw) = pool_size, strides
    n, t, h, w, c = _dims(x)
    if (kh, kw, sh, sw) != (1, 1, 1, 1):
        frames = tf.nn.max_pool2d(tf.reshape(x, [-1, h, w, c]), (kh, kw), (sh, sw), "VALID")
        _, h, w, _ = _dims(frames)
        x = tf.reshape(frames, [n, t, h, w, c])
    if (kt, st) == (1, 1):
        return x
    rows = tf.nn.max_pool2d(tf.reshape(x, [n, t, h * w, c]), (kt, 1), (st, 1), "VALID")
    return tf.reshape(rows, [n, _dims(rows)[1], h, w, c])


def _dims(x) -> list:
    """A TF tensor's sizes: static where known, else from tf.shape (so reshapes keep them)."""
    import tensorflow as tf

    shape = tf.shape(x)
    return [shape[i] if d is None else int(d) for i, d in enumerate(x.shape)]


@functools.cache
def tf_cpu_convs_on_eigen() -> bool:
    """Whether the backend is TensorFlow running its convs on the CPU with Eigen's kernels, not
    oneDNN's: TF's default on x86 CPUs without AVX-512 VNNI (tfsts/__init__.py). There Conv3D's
    gradients are slow: a 3x3x3 conv's training step at 2x8x56x56x64 took 831 ms against 589 as
    frames stacked into one Conv2D, while its forward stays faster (126 against 186 ms;
    benchmarks/bench_convs.py, AMD EPYC). TF decides once, when it loads, and no public API
    reports it, so this asks TF's own build-info module (oneDNN assumed if that moves)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return False
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return not _pywrap_util_port.IsMklEnabled()
