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


# `frame_conv2d` on Eigen: a k x k kernel's input gradient as a forward conv on frames of at
# most this many positions; on larger frames TF's own was as fast or faster (28 x 28 x 64: 1.03x,
# 56 x 56 x 64 -> 144: 1.07x for the forward conv; 14 x 14 x 128: 0.90x; measured with this bound off,
# Eigen, 2026-12-03, in a scratch script: benchmarks/bench_frame_convs.py times the rule as it is).
FORWARD_CONV_INPUT_GRADIENT_MAX_POSITIONS = 256


def frame_conv2d(x, kernel, strides: tuple[int, int], padding: str):
    """`ops.conv` of [N, H, W, C] frames with a [kh, kw, C, O] kernel ('same' only at stride 1).

    Where TF runs its convs on Eigen (`tf_cpu_convs_on_eigen`), the input gradient is taken
    without Eigen's Conv2DBackpropInput, which is slow on small frames with many channels:
    for a 1 x 1 kernel a GEMM dy @ K^T (at stride s, its rows set back on the stride's grid
    with zeros between); for an odd k x k kernel at stride 1 on frames of at most
    FORWARD_CONV_INPUT_GRADIENT_MAX_POSITIONS positions, a forward conv of dy with the kernel
    rotated by 180 degrees and its channel axes swapped. The kernel gradient stays TF's.
    Forward + both gradients of one conv at SlowOnly-R50's 8x112 shapes
    (`python -m benchmarks.bench_frame_convs`, ms): 3 x 3 at 4 x 4 x 512 30.0 against 76.4,
    1 x 1 stride 2 at 7 x 7 x 1024 -> 2048 26.2 against 98.5, 1 x 1 at 4 x 4 x 512 -> 2048 15.4
    against 67.5; SlowOnly-R50's training step 0.73x. A strided k x k conv keeps TF's own: as a
    forward conv of dy with zeros between it took 25.6 against 12.9 ms at 28 x 28 x 128 (the same
    scratch measurement).
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    strided = tuple(strides) != (1, 1)
    one_by_one = (kh, kw) == (1, 1)
    h, w = x.shape[1], x.shape[2]
    small = h is not None and w is not None and int(h) * int(w) <= FORWARD_CONV_INPUT_GRADIENT_MAX_POSITIONS
    forward_conv = not strided and padding == "same" and kh % 2 == 1 and kw % 2 == 1 and small
    if not tf_cpu_convs_on_eigen() or not (one_by_one or forward_conv):
        return ops.conv(x, kernel, strides=strides, padding=padding)
    import tensorflow as tf

    sh, sw = strides
    c, o = int(kernel.shape[2]), int(kernel.shape[3])
    tf_strides, tf_padding = (1, sh, sw, 1), padding.upper()

    def input_gradient(dy, kernel, x_shape):
        if not one_by_one:
            rotated = tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2))
            return tf.nn.conv2d(dy, rotated, 1, "SAME")
        n, ho, wo = _dims(dy)[:3]
        dx = tf.reshape(tf.matmul(tf.reshape(dy, [-1, o]), tf.reshape(kernel, [c, o]), transpose_b=True), [n, ho, 1, wo, 1, c])
        if not strided:
            return tf.reshape(dx, x_shape)
        dx = tf.pad(dx, [(0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1), (0, 0)])
        return tf.reshape(dx, [n, ho * sh, wo * sw, c])[:, : x_shape[1], : x_shape[2]]

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            x_shape = _dims(x)
            dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                                 strides=tf_strides, padding=tf_padding)
            return input_gradient(dy, kernel, x_shape), dk

        return tf.nn.conv2d(x, kernel, tf_strides, tf_padding), grad

    return conv(x, kernel)


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
