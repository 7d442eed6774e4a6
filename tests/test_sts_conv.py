"""STSConv3D: hand-checked values, a NumPy oracle for cases A/B/C, the plain-conv
identity, gradients, serialisation, compilation, precision and distribution."""

import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import reference_numpy as ref
from tfsts.layers import STSConv3D
from tfsts.layers.sts_conv import cuts_aligned_frames

RNG = np.random.default_rng(0)


def _layer_with_kernel(kernel: np.ndarray, input_shape, **kwargs) -> STSConv3D:
    layer = STSConv3D(filters=kernel.shape[-1], kernel_size=kernel.shape[:3], **kwargs)
    layer.build((None, *input_shape))
    layer.kernel.assign(kernel)
    return layer


def _run(layer, x):
    return keras.ops.convert_to_numpy(layer(x.astype("float32")))


# --------------------------------------------------------------- hand-checked values
def test_case_a_raster_conv_wraps_across_rows_by_hand():
    """One frame 2x3, 2 channels (1 appearance, 1 motion). Only K_app[2][2, 2] (the
    last tap of the row-raster 1-D kernel... of slice 0) is 1: r[p] = seq[p + 4]."""
    x = np.zeros((1, 1, 2, 3, 2), "float32")
    x[0, 0, :, :, 0] = np.arange(6).reshape(2, 3)  # raster sequence 0..5
    kernel = np.zeros((3, 3, 3, 1, 2), "float32")
    kernel[0, 2, 2, 0, 0] = 1.0  # slice 0 (r), flat tap 8 -> offset +4
    y = _run(_layer_with_kernel(kernel, (1, 2, 3, 2), groups=2), x)
    # (0,0) reads raster position 4 = (1,1); (0,1) reads 5 = (1,2); the rest is padding.
    np.testing.assert_array_equal(y[0, 0, :, :, 0], [[4, 5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(y[..., 1], 0)


def test_case_a_transposed_raster_by_hand():
    """K_app[2] flat tap 0 (offset -4) over the w-major sequence [0, 3, 1, 4, 2, 5]."""
    x = np.zeros((1, 1, 2, 3, 2), "float32")
    x[0, 0, :, :, 0] = np.arange(6).reshape(2, 3)
    kernel = np.zeros((3, 3, 3, 1, 2), "float32")
    kernel[2, 0, 0, 0, 0] = 1.0
    y = _run(_layer_with_kernel(kernel, (1, 2, 3, 2), groups=2), x)
    # w-major index q = w * 2 + h; out[q] = seq[q - 4]: q=4 (w=2,h=0) -> 0, q=5 (w=2,h=1) -> 3
    np.testing.assert_array_equal(y[0, 0, :, :, 0], [[0, 0, 0], [0, 0, 3]])


def test_case_a_rowcol_variant_does_not_wrap_by_hand():
    x = np.zeros((1, 1, 2, 3, 2), "float32")
    x[0, 0, :, :, 0] = np.arange(6).reshape(2, 3)
    kernel = np.zeros((3, 3, 3, 1, 2), "float32")
    kernel[0, 2, 2, 0, 0] = 1.0  # row tap +4: reads 4 columns to the right
    y = _run(_layer_with_kernel(kernel, (1, 2, 3, 2), groups=2, sts_variant="rowcol"), x)
    np.testing.assert_array_equal(y[..., 0], 0)  # no row is 5 wide: nothing to read


def test_case_a_constant_kernel_motion_and_spatial_by_hand():
    """All-ones kernel on an all-ones clip T=3, 3x3: the motion half counts the taps
    that fall inside (27 at the centre), the appearance half only spatial/raster taps."""
    x = np.ones((1, 3, 3, 3, 2), "float32")
    kernel = np.ones((3, 3, 3, 1, 2), "float32")
    y = _run(_layer_with_kernel(kernel, (3, 3, 3, 2), groups=2), x)
    assert y[0, 1, 1, 1, 1] == 27  # interior motion
    assert y[0, 0, 1, 1, 1] == 18  # first frame: the t-1 tap is padding
    assert y[0, 0, 0, 0, 1] == 8  # corner of the first frame: 2 x 2 x 2
    # appearance at the centre pixel: s = 9; r and c read raster offsets -4..4 of a
    # 9-long sequence around index 4: all 9 inside -> 9 each. No temporal taps.
    assert y[0, 0, 1, 1, 0] == 27
    # at (0, 0): s = 4; r: raster index 0 reads 0..4 -> 5; c: likewise 5.
    assert y[0, 1, 0, 0, 0] == 14


def test_case_b_raster_shift_by_hand():
    """Case B, 4 filters: K_1 tap 0 reads the previous raster position (wrapping to
    the previous row), K_2 tap 2 reads the next w-major position."""
    x = np.zeros((1, 1, 2, 3, 1), "float32")
    x[0, 0, :, :, 0] = np.arange(1, 7).reshape(2, 3)  # raster 1..6
    kernel = np.zeros((3, 1, 1, 1, 4), "float32")
    kernel[0, 0, 0, 0, 0] = 1.0  # a1: out[p] = seq[p - 1]
    kernel[2, 0, 0, 0, 1] = 1.0  # a2: out[q] = seqT[q + 1]
    kernel[1, 0, 0, 0, 2] = 2.0  # motion: 2 x the frame itself
    y = _run(_layer_with_kernel(kernel, (1, 2, 3, 1)), x)
    np.testing.assert_array_equal(y[0, 0, :, :, 0], [[0, 1, 2], [3, 4, 5]])  # (1,0) reads (0,2)=3
    # w-major seqT = [1, 4, 2, 5, 3, 6]; shifted by +1: [4, 2, 5, 3, 6, 0]
    np.testing.assert_array_equal(y[0, 0, :, :, 1], [[4, 5, 6], [2, 3, 0]])
    np.testing.assert_array_equal(y[0, 0, :, :, 2], 2 * x[0, 0, :, :, 0])
    np.testing.assert_array_equal(y[0, 0, :, :, 3], 0)


# --------------------------------------------------------------------- NumPy oracle
@pytest.mark.parametrize(
    "t,h,w,c,stride",
    [(1, 4, 4, 4, 1), (3, 5, 7, 6, 1), (4, 6, 8, 8, 2), (2, 8, 4, 4, 2), (5, 3, 9, 2, 1)],
)
def test_case_a_matches_numpy(t, h, w, c, stride):
    x = RNG.normal(size=(2, t, h, w, c))
    kernel = RNG.normal(size=(3, 3, 3, 1, c))
    layer = _layer_with_kernel(kernel, (t, h, w, c), groups=c, strides=(1, stride, stride))
    assert layer.resolved_case == "A"
    np.testing.assert_allclose(_run(layer, x), ref.sts_case_a(x, kernel, stride), atol=1e-4)


@pytest.mark.parametrize("t,h,w,c,stride", [(3, 5, 7, 6, 1), (2, 8, 4, 4, 2)])
def test_case_a_rowcol_is_true_row_and_column_convs(t, h, w, c, stride):
    """sts_variant="rowcol": the appearance half is the centre 3x3 slice plus a true 1x9 row
    and 9x1 column depthwise conv (zero padding, no wrap); the motion half the depthwise 3D conv."""
    half = c // 2
    x = RNG.normal(size=(2, t, h, w, c))
    kernel = RNG.normal(size=(3, 3, 3, 1, c))
    layer = _layer_with_kernel(kernel, (t, h, w, c), groups=c, strides=(1, stride, stride), sts_variant="rowcol")
    app, k_app = x[..., :half], kernel[..., :half]
    strides = (1, stride, stride)
    appearance = (
        ref.conv_nd(app, k_app[1:2], strides, half)
        + ref.conv_nd(app, k_app[0].reshape(1, 1, 9, 1, half), strides, half)
        + ref.conv_nd(app, k_app[2].reshape(1, 9, 1, 1, half), strides, half)
    )
    motion = ref.conv_nd(x[..., half:], kernel[..., half:], strides, half)
    np.testing.assert_allclose(_run(layer, x), np.concatenate([appearance, motion], axis=-1), atol=1e-4)


@pytest.mark.parametrize(
    "t,h,w,c,o,tstride",
    [
        (1, 4, 4, 3, 4, 1), (4, 5, 3, 6, 8, 1), (6, 4, 6, 4, 8, 2), (5, 3, 3, 2, 12, 2), (8, 2, 5, 5, 4, 3),
        # from 16 channels on frames of 256 positions or more (BRANCH_CONVS_MIN_POSITIONS) the
        # forward is each branch's conv (`TapOrder.conv`), elsewhere the tap products; frames of
        # 1 and 2 rows are the column-raster conv's edge cases
        (3, 4, 6, 16, 8, 1), (2, 1, 5, 16, 8, 1), (2, 2, 5, 16, 8, 1), (5, 3, 4, 20, 8, 2),
        (3, 16, 16, 16, 8, 1), (2, 1, 256, 16, 8, 1), (2, 2, 128, 16, 8, 1),
    ],
)
def test_case_bc_matches_numpy(t, h, w, c, o, tstride):
    x = RNG.normal(size=(2, t, h, w, c))
    kernel = RNG.normal(size=(3, 1, 1, c, o))
    layer = _layer_with_kernel(kernel, (t, h, w, c), strides=(tstride, 1, 1))
    assert layer.resolved_case == ("B" if tstride == 1 else "C")
    np.testing.assert_allclose(_run(layer, x), ref.sts_case_bc(x, kernel, tstride), atol=1e-4)


@pytest.mark.parametrize("t,h,w,c,tstride", [(3, 4, 6, 4, 1), (3, 4, 6, 16, 1), (2, 1, 5, 16, 1), (5, 3, 4, 16, 2), (2, 16, 16, 16, 1)])
def test_case_bc_rowcol_is_row_column_and_temporal_convs(t, h, w, c, tstride):
    """sts_variant="rowcol": quarter 1 is a 1x1x3 conv along each row, quarter 2 a 1x3x1 conv
    down each column (zero padding, no wrap), on the kept frames; the rest the temporal conv."""
    o = 8
    x = RNG.normal(size=(2, t, h, w, c))
    kernel = RNG.normal(size=(3, 1, 1, c, o))
    layer = _layer_with_kernel(kernel, (t, h, w, c), strides=(tstride, 1, 1), sts_variant="rowcol")
    kept = x[:, ::tstride]
    want = np.concatenate([
        ref.conv_nd(kept, kernel[..., :2].reshape(1, 1, 3, c, 2), (1, 1, 1)),
        ref.conv_nd(kept, kernel[..., 2:4].reshape(1, 3, 1, c, 2), (1, 1, 1)),
        ref.conv_nd(x, kernel[..., 4:], (tstride, 1, 1)),
    ], axis=-1)
    np.testing.assert_allclose(_run(layer, x), want, atol=1e-4)


# Every formulation `STSConv3D._plain` can pick (see NATIVE_CONV3D_MIN_CHANNELS and
# GEMM_KERNEL_GRADIENT_MIN_CHANNELS in sts_conv.py) appears here, and the one-frame inputs where
# only the centre temporal tap is evaluated.
PLAIN_CASES = [
    # kernel_size, strides, groups, c, o, frames
    ((3, 3, 3), (1, 1, 1), 1, 3, 5, 5),  # RGB-like input: frames stacked as channels, Conv2D
    ((3, 7, 7), (1, 2, 2), 1, 3, 4, 5),
    ((3, 3, 3), (2, 2, 2), 1, 4, 4, 5),
    ((1, 1, 1), (1, 2, 2), 1, 4, 6, 5),
    ((3, 3, 3), (1, 1, 1), 6, 6, 6, 5),  # depthwise: 2D depthwise convs over temporal taps
    ((3, 3, 3), (2, 2, 2), 6, 6, 6, 5),
    ((5, 3, 3), (1, 2, 2), 4, 4, 4, 5),
    ((3, 3, 3), (1, 2, 2), 2, 4, 6, 5),  # grouped: native Conv3D
    ((3, 3, 3), (1, 1, 1), 1, 16, 4, 5),  # dense, >= 16 channels: native Conv3D
    ((3, 3, 3), (2, 2, 2), 1, 16, 4, 5),
    ((3, 1, 1), (1, 1, 1), 1, 16, 8, 5),  # temporal, < 128 channels: native Conv3D
    ((3, 1, 1), (2, 1, 1), 1, 16, 8, 5),  # ... strided: a conv over [T, H * W], its own padding (odd T)
    ((3, 1, 1), (2, 1, 1), 1, 16, 8, 6),  # ... T a multiple of the stride: GEMM gradients over frame phases
    ((5, 1, 1), (2, 1, 1), 1, 16, 4, 8),
    ((3, 1, 1), (3, 1, 1), 1, 16, 4, 9),
    ((3, 1, 1), (4, 1, 1), 1, 16, 4, 8),  # a phase no tap reads: zero gradient there
    ((3, 1, 1), (1, 1, 1), 1, 8, 4, 5),  # temporal, < 16 channels: one GEMM over the taps
    ((3, 1, 1), (1, 1, 1), 1, 128, 4, 5),  # temporal, >= 128: Conv3D, GEMM kernel gradient
    ((5, 1, 1), (1, 1, 1), 1, 128, 6, 7),
    ((3, 1, 1), (1, 1, 1), 1, 512, 4, 5),
    ((3, 1, 1), (2, 1, 1), 1, 512, 4, 5),
    ((3, 3, 3), (1, 1, 1), 1, 16, 4, 1),  # one frame: the centre tap only
    ((3, 3, 3), (2, 2, 2), 1, 3, 4, 1),
    ((3, 3, 3), (1, 2, 2), 6, 6, 6, 1),
    ((3, 1, 1), (1, 1, 1), 1, 16, 4, 1),
    ((5, 1, 1), (2, 1, 1), 1, 512, 4, 1),
]


@pytest.mark.parametrize("kernel_size,strides,groups,c,o,frames", PLAIN_CASES)
def test_plain_conv_matches_numpy_with_symmetric_padding(kernel_size, strides, groups, c, o, frames):
    x = RNG.normal(size=(2, frames, 8, 6, c))
    kernel = RNG.normal(size=(*kernel_size, c // groups, o))
    layer = _layer_with_kernel(kernel, (frames, 8, 6, c), strides=strides, groups=groups, sts=False)
    np.testing.assert_allclose(_run(layer, x), ref.conv_nd(x, kernel, strides, groups), atol=1e-4 * np.sqrt(c / 4))


def pads_shape(shape, kernel_size):
    """[T, H, W, C] after PyTorch's symmetric padding of a [B, T, H, W, C] input."""
    return (*(int(n) + 2 * (k // 2) for n, k in zip(shape[1:4], kernel_size)), int(shape[4]))


@pytest.mark.parametrize("kernel_size,strides,groups,c,o,frames", [c for c in PLAIN_CASES if c[3] < 512])
def test_plain_conv_gradients_equal_keras_conv3d(kernel_size, strides, groups, c, o, frames):
    """Input and kernel gradients of every formulation equal keras' own Conv3D on the padded
    input; on one frame the padding-only taps get exactly zero gradient, as in Conv3D."""
    x = tf.constant(RNG.normal(size=(2, frames, 8, 6, c)).astype("float32"))
    kernel = RNG.normal(size=(*kernel_size, c // groups, o)).astype("float32")
    ours = _layer_with_kernel(kernel, (frames, 8, 6, c), strides=strides, groups=groups, sts=False)
    theirs = keras.layers.Conv3D(o, kernel_size, strides=strides, groups=groups, use_bias=False)
    theirs.build((None, *pads_shape(x.shape, kernel_size)))
    theirs.kernel.assign(kernel)
    pads = [[0, 0]] + [[k // 2, k // 2] for k in kernel_size] + [[0, 0]]
    upstream = tf.constant(RNG.normal(size=theirs.compute_output_shape((2, *pads_shape(x.shape, kernel_size)))).astype("float32"))
    grads = []
    calls = ((lambda v: ours(v, training=True), ours.kernel), (lambda v: theirs(tf.pad(v, pads)), theirs.kernel))
    for call, kernel_variable in calls:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(call(x) * upstream)  # a random upstream gradient
        grads.append([g.numpy() for g in tape.gradient(loss, [x, kernel_variable])])
    for g_ours, g_theirs in zip(*grads):
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-3 * np.abs(g_theirs).max())
    if frames == 1 and kernel_size[0] > 1:
        centre = kernel_size[0] // 2
        assert not np.delete(grads[0][1], centre, axis=0).any()


@pytest.mark.parametrize("kernel_size,strides,batch,shape,views", [
    ((3, 3, 3), (1, 1, 1), 2, (5, 8, 6, 6), True),
    ((3, 3, 3), (1, 2, 2), 3, (4, 8, 6, 6), True),  # frames padded to 10 x 8 x 6
    ((5, 3, 3), (1, 2, 2), 1, (6, 8, 8, 4), True),
    ((3, 3, 3), (1, 1, 1), 2, (3, 7, 7, 6), False),  # 7 x 7 x 6 floats: not a multiple of 64 bytes
    ((3, 3, 3), (2, 2, 2), 2, (5, 8, 6, 6), False),  # temporal stride: the training formulation
])
def test_depthwise_inference_formulation_equals_training_one(kernel_size, strides, batch, shape, views):
    """A depthwise conv that does not train cuts its taps' frames along the first axis of a
    flat padded tensor (`depthwise_conv3d_inference`) where those cuts are 64-byte aligned:
    the same products and sums as the training formulation, so bit-identical outputs, at any
    batch, under a tf.function with an unknown batch, and its (autodiff) gradients equal the
    training one's."""
    c = shape[-1]
    assert views == (strides[0] == 1 and cuts_aligned_frames((batch, *shape), "float32", kernel_size, strides[1:]))
    kernel = RNG.normal(size=(*kernel_size, 1, c)).astype("float32")
    layer = _layer_with_kernel(kernel, shape, strides=strides, groups=c, sts=False)
    x = tf.constant(RNG.normal(size=(batch, *shape)).astype("float32"))
    outputs, grads = {}, {}
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs[training] = layer(x, training=training)
            loss = tf.reduce_sum(outputs[training] ** 2)
        grads[training] = tape.gradient(loss, [x, layer.kernel])
    np.testing.assert_array_equal(outputs[False].numpy(), outputs[True].numpy())
    np.testing.assert_allclose(outputs[False].numpy(), ref.conv_nd(x.numpy(), kernel, strides, c), atol=1e-4)
    for a, b in zip(grads[False], grads[True]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * np.abs(b.numpy()).max())
    dynamic = tf.function(lambda v: layer(v, training=False), input_signature=[tf.TensorSpec((None, *shape))])
    np.testing.assert_array_equal(dynamic(x).numpy(), outputs[False].numpy())


def test_plain_conv_equals_keras_conv3d_on_padded_input():
    """sts=False is keras' Conv3D with PyTorch padding (pad 1 each side, then 'valid')."""
    x = RNG.normal(size=(1, 4, 6, 6, 3)).astype("float32")
    ours = STSConv3D(4, 3, strides=2, sts=False)
    theirs = keras.layers.Conv3D(4, 3, strides=2, padding="valid", use_bias=False)
    ours.build(x.shape)
    theirs.build((1, 6, 8, 8, 3))
    theirs.kernel.assign(ours.kernel)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)])
    np.testing.assert_allclose(ours(x), theirs(padded), atol=1e-5)
    # and TF's "same" would differ (it pads only at the end for stride 2)
    same = keras.layers.Conv3D(4, 3, strides=2, padding="same", use_bias=False)
    same.build(x.shape)
    same.kernel.assign(ours.kernel)
    assert not np.allclose(ours(x), same(x), atol=1e-3)


# ----------------------------------------------------------- parameters and FLOPs
@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(filters=64, kernel_size=3, groups=64), (8, 56, 56, 64)),
        (dict(filters=64, kernel_size=3, groups=64, strides=(1, 2, 2)), (8, 56, 56, 64)),
        (dict(filters=256, kernel_size=(3, 1, 1)), (8, 14, 14, 1024)),
        (dict(filters=144, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (8, 28, 28, 230)),
    ],
)
def test_sts_has_the_plain_convs_params_and_flops(kwargs, shape):
    sts = STSConv3D(sts=True, **kwargs)
    plain = keras.layers.Conv3D(padding="same", use_bias=False, **kwargs)
    sts.build((None, *shape))
    plain.build((None, *shape))
    assert sts.count_params() == plain.count_params()
    assert sts.kernel.shape == plain.kernel.shape
    mirror = STSConv3D(sts=False, **kwargs)
    mirror.build((None, *shape))
    assert sts.count_macs(shape) == mirror.count_macs(shape)
    t, h, w = sts.compute_output_shape((None, *shape))[1:4]
    kt, kh, kw = sts.kernel_size
    assert mirror.count_macs(shape) == t * h * w * kwargs["filters"] * kt * kh * kw * shape[-1] // kwargs.get("groups", 1)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,shape,message",
    [
        (dict(filters=5, kernel_size=3, groups=5), (4, 8, 8, 5), "odd"),
        (dict(filters=4, kernel_size=3, groups=4, strides=(2, 1, 1)), (4, 8, 8, 4), "temporal stride 1"),
        (dict(filters=4, kernel_size=(3, 5, 5), groups=4), (4, 8, 8, 4), "3x3x3 only"),
        (dict(filters=6, kernel_size=(3, 1, 1)), (4, 8, 8, 4), "divisible by 4"),
        (dict(filters=8, kernel_size=(5, 1, 1)), (4, 8, 8, 4), "3x1x1 only"),
        (dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1), sts_case="B"), (4, 8, 8, 4), "case B needs temporal stride 1"),
        (dict(filters=8, kernel_size=3, groups=2), (4, 8, 8, 4), "neither depthwise"),
        (dict(filters=4, kernel_size=3, groups=4, strides=(1, 2, 2)), (4, 7, 8, 4), "divisible"),
        (dict(filters=8, kernel_size=3), (4, 8, 8, 4), "3x1x1 only"),
    ],
)
def test_shapes_sts_cannot_take_raise_clearly(kwargs, shape, message):
    layer = STSConv3D(name="conv_under_test", **kwargs)
    with pytest.raises(ValueError, match=message) as err:
        layer.build((None, *shape))
    assert "conv_under_test" in str(err.value) and "sts=False" in str(err.value)


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd kernel"):
        STSConv3D(4, (2, 3, 3))


# ------------------------------------------------------------------------ gradients
@pytest.mark.parametrize(
    "case_kwargs,shape",
    [
        (dict(filters=4, kernel_size=3, groups=4, strides=(1, 2, 2)), (1, 3, 4, 4, 4)),
        # case A's raster convs (`depthwise_conv1d`'s custom gradient on TF): at stride 1 on
        # frames that take the extended-frame column conv (4 x 6) and on ones that do not (3 x 5)
        (dict(filters=4, kernel_size=3, groups=4), (1, 3, 4, 6, 4)),
        (dict(filters=4, kernel_size=3, groups=4), (2, 3, 3, 5, 4)),
        (dict(filters=4, kernel_size=3, groups=4, strides=(1, 2, 2)), (2, 3, 4, 8, 4)),
        (dict(filters=4, kernel_size=3, groups=4, sts_variant="rowcol"), (1, 3, 4, 6, 4)),
        (dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (1, 3, 4, 4, 4)),
        # the custom gradient of `shifted_tap_conv`: case B in both variants, case C's
        # appearance branches, the plain tap GEMM; frames not square, so that the raster
        # and column-raster wraps are not each other's
        (dict(filters=8, kernel_size=(3, 1, 1)), (1, 3, 3, 5, 4)),
        (dict(filters=8, kernel_size=(3, 1, 1), sts_variant="rowcol"), (1, 3, 3, 5, 4)),
        (dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1), sts_variant="rowcol"), (1, 3, 3, 5, 4)),
        (dict(filters=6, kernel_size=(5, 1, 1), sts=False), (2, 4, 3, 5, 4)),
    ],
)
def test_gradients_match_finite_differences(case_kwargs, shape):
    layer = STSConv3D(dtype="float64", **case_kwargs)
    x = tf.constant(RNG.normal(size=shape))
    layer.build(x.shape)
    weights = tf.constant(RNG.normal(size=(1, *layer.compute_output_shape(x.shape)[1:])))

    def loss(inp):
        return tf.reduce_sum(layer(inp) * weights)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        value = loss(x)
    grad_x = tape.gradient(value, x).numpy()
    grad_k = tape.gradient(value, layer.kernel).numpy()
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_k))
    eps = 1e-6
    flat = x.numpy().ravel()
    for i in RNG.choice(flat.size, 12, replace=False):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric = (loss(plus.reshape(x.shape)) - loss(minus.reshape(x.shape))) / (2 * eps)
        np.testing.assert_allclose(grad_x.ravel()[i], numeric, rtol=1e-5, atol=1e-7)
    kernel = layer.kernel.numpy()
    for i in RNG.choice(kernel.size, 6, replace=False):
        values = []
        for sign in (1, -1):
            k = kernel.ravel().copy()
            k[i] += sign * eps
            layer.kernel.assign(k.reshape(kernel.shape))
            values.append(loss(x).numpy())
        layer.kernel.assign(kernel)
        np.testing.assert_allclose(grad_k.ravel()[i], (values[0] - values[1]) / (2 * eps), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "case_kwargs,shape",
    [
        (dict(filters=16, kernel_size=3, groups=16), (2, 3, 8, 12, 16)),
        (dict(filters=16, kernel_size=3, groups=16, strides=(1, 2, 2)), (2, 3, 8, 12, 16)),
        (dict(filters=8, kernel_size=(3, 1, 1)), (2, 3, 4, 5, 16)),
        (dict(filters=8, kernel_size=(3, 1, 1)), (2, 3, 16, 16, 16)),  # frames of 256 positions: the branch convs
        # case C on an even number of frames: the motion half's GEMM gradients over frame phases
        (dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (2, 6, 4, 5, 16)),
    ],
)
def test_float32_graph_gradients_equal_float64_eager(case_kwargs, shape):
    """In a tf.function in float32, TF rewrites the depthwise convs (and `depthwise_conv1d`'s
    custom gradient) to its oneDNN kernels, and cases B and C take each branch's native conv
    (on frames of 256 positions; the tap products on smaller ones) and (case C) `strided_temporal_conv`'s GEMM gradients, none of which the eager float64 run
    uses (tap products, frames as channels): the gradients agree (the finite differences above
    check the float64 sums)."""
    x64 = RNG.normal(size=shape)
    weights = RNG.normal(size=(1, *STSConv3D(**case_kwargs).compute_output_shape(shape)[1:]))
    grads = {}
    for dtype, run in (("float64", lambda f: f), ("float32", tf.function)):
        layer = STSConv3D(dtype=dtype, **case_kwargs)
        layer.build(shape)
        if dtype == "float32":
            layer.kernel.assign(grads["kernel"].astype("float32"))
        else:
            grads["kernel"] = layer.kernel.numpy()
        x = tf.constant(x64.astype(dtype))

        def step(x=x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) * tf.cast(weights, x.dtype))
            return tape.gradient(loss, [x, layer.kernel])

        grads[dtype] = [g.numpy() for g in run(step)()]
    for got, want in zip(grads["float32"], grads["float64"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# ------------------------------------------------ serialisation, compilation, dtypes
def _sts_model(**kwargs):
    inputs = keras.Input((4, 8, 8, 8))
    x = STSConv3D(8, 3, groups=8, name="sts_a", **kwargs)(inputs)
    x = STSConv3D(8, (3, 1, 1), strides=(2, 1, 1), use_bias=True, name="sts_c", **kwargs)(x)
    return keras.Model(inputs, x)


def test_get_config_round_trip():
    layer = STSConv3D(8, (3, 1, 1), strides=(2, 1, 1), sts_case="C", sts_variant="rowcol", use_bias=True, name="x")
    clone = STSConv3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_keras_save_load_round_trip(tmp_path):
    model = _sts_model()
    x = RNG.normal(size=(2, 4, 8, 8, 8)).astype("float32")
    path = os.path.join(tmp_path, "sts.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(model(x), loaded(x), atol=1e-6)
    assert [l.sts for l in loaded.layers[1:]] == [True, True]


def test_sts_and_plain_share_weights_and_differ_in_output():
    sts_model, plain_model = _sts_model(sts=True), _sts_model(sts=False)
    plain_model.set_weights(sts_model.get_weights())
    x = RNG.normal(size=(1, 4, 8, 8, 8)).astype("float32")
    assert not np.allclose(sts_model(x), plain_model(x), atol=1e-3)


def test_tf_function_and_jit_compile_match_eager():
    model = _sts_model()
    x = tf.constant(RNG.normal(size=(2, 4, 8, 8, 8)).astype("float32"))
    eager = model(x)
    graph = tf.function(model)(x)
    xla = tf.function(model, jit_compile=True)(x)
    np.testing.assert_allclose(eager, graph, atol=1e-5)
    np.testing.assert_allclose(eager, xla, atol=1e-4)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x = RNG.normal(size=(2, 4, 8, 8, 8)).astype("float32")
    reference = _sts_model()
    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = _sts_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    y = mixed(x)
    assert y.dtype == policy.split("_")[1]
    assert mixed.layers[1].kernel.dtype == "float32"
    tol = 0.05 if policy == "mixed_bfloat16" else 0.01
    scale = np.abs(reference(x)).max()
    np.testing.assert_allclose(np.asarray(y, "float32") / scale, np.asarray(reference(x)) / scale, atol=tol)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("kernel_size,strides,groups,o,shape", [
    ((3, 3, 3), (1, 1, 1), 1, 32, (4, 2, 4, 4, 32)),  # TF's bfloat16 Conv3D filter gradient is 94 % off here
    ((3, 3, 3), (1, 1, 1), 1, 8, (2, 5, 8, 8, 16)),
    ((3, 1, 1), (1, 1, 1), 1, 8, (2, 4, 8, 8, 32)),
    ((3, 3, 3), (2, 2, 2), 1, 8, (2, 4, 8, 8, 16)),
    ((3, 3, 3), (1, 1, 1), 16, 16, (2, 4, 8, 8, 16)),
])
def test_plain_conv_gradients_under_mixed_precision(policy, kernel_size, strides, groups, o, shape):
    """Every formulation's kernel and input gradients in reduced precision stay within its
    rounding of the float32 ones (one formulation that is wrong in bfloat16 made a
    bfloat16 training run diverge)."""
    c = shape[-1]
    x = tf.constant(RNG.normal(size=shape).astype("float32"))
    kernel = RNG.normal(size=(*kernel_size, c // groups, o)).astype("float32") * 0.2
    grads = {}
    for name in ("float32", policy):
        layer = STSConv3D(o, kernel_size, strides=strides, groups=groups, sts=False, dtype=name)
        layer.build((None, *shape[1:]))
        layer.kernel.assign(kernel)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x), "float32")
            upstream = tf.constant(np.random.default_rng(1).normal(size=y.shape).astype("float32"))
            loss = tf.reduce_sum(y * upstream)
        grads[name] = [g.numpy() for g in tape.gradient(loss, [x, layer.kernel])]
    tol = 0.03 if policy == "mixed_bfloat16" else 0.005
    for ours, exact in zip(grads[policy], grads["float32"]):
        np.testing.assert_allclose(ours / np.abs(exact).max(), exact / np.abs(exact).max(), atol=tol)


def test_mirrored_strategy_training_step():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert strategy.num_replicas_in_sync == 2
    x = RNG.normal(size=(4, 4, 8, 8, 8)).astype("float32")
    with strategy.scope():
        model = _sts_model()
        optimizer = keras.optimizers.SGD(0.1)
    before = [w.copy() for w in model.get_weights()]
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))

    @tf.function
    def step(batch):
        def replica(b):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(b))) / strategy.num_replicas_in_sync
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(replica, (batch,)), axis=None)

    loss = step(next(iter(dataset)))
    assert np.isfinite(loss.numpy())
    after = model.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


def _formulations():
    from tfsts.layers import sts_conv

    appearance = [(2, sts_conv.RASTER), (2, sts_conv.COLUMN_RASTER)]
    return {
        "strided_temporal_conv": lambda x, k: sts_conv.strided_temporal_conv(x, k, 2),
        "strided_temporal_conv, case C": lambda x, k: sts_conv.strided_temporal_conv(x, k, 2, appearance),
        "shifted_tap_conv, case B": lambda x, k: sts_conv.shifted_tap_conv(x, k, [*appearance, (4, sts_conv.TEMPORAL)]),
        "temporal_conv3d": sts_conv.temporal_conv3d,
        "dense_conv3d_as_2d": lambda x, k: sts_conv.dense_conv3d_as_2d(x, k, (2, 1, 1)),
    }


@pytest.mark.parametrize("name", list(_formulations()))
def test_autograph_converts_every_formulation(name, caplog):
    """The module's conv functions called inside a user's tf.function (as the benchmarks call
    them) are converted by AutoGraph, custom gradients included; where AutoGraph cannot convert
    one (a variable annotation in a converted closure did that), TF logs a warning to every
    such caller and runs the code unconverted."""
    conv = _formulations()[name]
    x = tf.constant(RNG.normal(size=(2, 6, 4, 5, 16)).astype("float32"))
    kernel = tf.Variable(RNG.normal(size=(3, 1, 1, 16, 8)).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(conv(x, kernel))
        return tape.gradient(loss, [x, kernel])

    with caplog.at_level(logging.WARNING):
        step()
    assert not [r.getMessage() for r in caplog.records if "AutoGraph" in r.getMessage()]
