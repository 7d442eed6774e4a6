"""STS (Spatial-Temporal Separable) 3D convolution, and the plain 3D conv it replaces.

`STSConv3D` holds one kernel of exactly the shape `keras.layers.Conv3D` would hold,
`(kt, kh, kw, C // groups, filters)`, so weights move between STS and plain convs
unchanged. With `sts=False` it is a plain 3D convolution with PyTorch-style symmetric
padding ((k - 1) / 2 on each side, also for stride 2). With `sts=True` the output
channels are split into an appearance half (no temporal mixing) and a motion half, as
in Li et al., "In Defense of Image Pre-Training for Spatiotemporal Recognition"
(ECCV 2022). The three cases (A: depthwise 3x3x3, B: dense 3x1x1, C: the temporal
conv of a (2+1)D conv, with temporal stride) follow the reference code's numerics,
including its 1-D convolutions over raster-flattened frames, which wrap across rows.
`sts_variant="rowcol"` replaces those with true row / column convolutions (no
wrap-around, a proper 2x2 grid for stride 2): same parameters, same FLOPs, but not
the reference numerics.

Everything is written with `keras.ops`, so the layer runs on any Keras backend; on
TensorFlow, the raster convs of case A take a custom gradient (`backend_kernels.py`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import keras
from keras import ops

from tfsts.layers.backend_kernels import bias_add, conv2d_padded, depthwise_conv1d, frame_conv2d, tf_cpu_convs_on_eigen

STS_CASES = ("A", "B", "C")
STS_VARIANTS = ("reference", "rowcol")


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"`{name}` must be an int or 3 ints (t, h, w); got {value}.")
    return value


def symmetric_pads(kernel_size: Sequence[int]) -> list[tuple[int, int]]:
    """(k - 1) / 2 zeros on each side of each axis, as PyTorch's `padding=k // 2`."""
    return [((k - 1) // 2, (k - 1) // 2) for k in kernel_size]


def pad_symmetric(x, kernel_size: Sequence[int], strides: Sequence[int]):
    """Pads the spatial axes of a channels-last tensor (one per entry of
    `kernel_size`) so that a 'valid' conv or pool equals PyTorch's symmetric padding.

    Returns (x, padding_mode). Where every stride is 1, TensorFlow's 'same' already is
    symmetric for odd kernels, so nothing is copied; with stride 2, 'same' would pad
    only at the end and shift every window by one pixel.
    """
    if all(s == 1 for s in strides):
        return x, "same"
    pads = symmetric_pads(kernel_size)
    if any(p != (0, 0) for p in pads):
        x = ops.pad(x, [(0, 0)] + pads + [(0, 0)])
    return x, "valid"


def conv_output_length(length: int | None, kernel: int, stride: int) -> int | None:
    if length is None:
        return None
    pad = (kernel - 1) // 2
    return (length + 2 * pad - kernel) // stride + 1


def slice_axis(x, axis: int, start: int, length: int, stride: int = 1):
    """x's elements start, start + stride, ... (`length` of them) along `axis`.

    Written as `ops.slice` (TF's Slice, whose gradient is a Pad) and reshapes, not as
    Python indexing: TF's StridedSlice gradient (StridedSliceGrad) was the largest
    single cost of a CPU training step, 3-5x the time of the depthwise convs it fed
    (benchmarks/profile_step.py). Needs the static length of `axis`.
    """
    axis = axis % len(x.shape)
    size = int(x.shape[axis])
    if stride > 1:
        span = length * stride
        if start + span > size:  # zeros at the end so that the span reshapes by `stride`
            pads = [(0, 0)] * len(x.shape)
            pads[axis] = (0, start + span - size)
            x = ops.pad(x, pads)
        x = slice_axis(x, axis, start, span)
        shape = list(ops.shape(x))
        x = ops.reshape(x, shape[:axis] + [length, stride] + shape[axis + 1 :])
        x = slice_axis(x, axis + 1, 0, 1)
        return ops.reshape(x, shape[:axis] + [length] + shape[axis + 1 :])
    if start == 0 and length == size:
        return x
    return slice_axes(x, {axis: (start, length)})


def slice_axes(x, ranges: dict[int, tuple[int, int]]):
    """x's elements start to start + length - 1 along each axis in `ranges` ({axis: (start,
    length)}), whole along the others: one Slice op, however many axes it cuts."""
    shape = list(ops.shape(x))
    begin = [0] * len(shape)
    for axis, (start, length) in ranges.items():
        begin[axis % len(shape)] = start
        shape[axis % len(shape)] = length
    return ops.slice(x, begin, shape)


def take_axis(x, axis: int, index: int):
    """x[..., index, ...] along `axis` (that axis dropped), via `slice_axis`."""
    axis = axis % len(x.shape)
    y = slice_axis(x, axis, index, 1)
    shape = list(ops.shape(y))
    return ops.reshape(y, shape[:axis] + shape[axis + 1 :])


def shift_axis(y, axis: int, offset: int, channels: tuple[int, int] | None = None):
    """out[i] = y[i + offset] along `axis`, zeros where i + offset is outside.

    channels: (start, size) of the last axis to keep, cut by the same Slice: the custom
    gradients below shift each branch's channels of one upstream gradient, and a Split
    first would copy it once more (5.4 ms of R(2+1)D res2's 176 ms STS step)."""
    axis = axis % len(y.shape)
    size = int(y.shape[axis])
    kept = max(size - abs(offset), 0)
    ranges = {axis: (max(offset, 0), kept)} if offset else {}
    if channels is not None:
        ranges[len(y.shape) - 1] = channels
    if not ranges:
        return y
    piece = slice_axes(y, ranges)
    if not offset:
        return piece
    pads = [(0, 0)] * len(y.shape)
    pads[axis] = (size - kept, 0) if offset < 0 else (0, size - kept)
    return ops.pad(piece, pads)


def depthwise_conv3d(x, kernel, strides: Sequence[int]):
    """Depthwise 3D conv (groups == channels) as a sum over temporal taps of 2D
    depthwise convs on frames: numerically the grouped Conv3D, many times faster on
    CPU (see benchmarks/bench_depthwise.py).

    x: [B, T, H, W, C]; kernel: [kt, kh, kw, 1, C]; symmetric padding.
    """
    kt, kh, kw = (int(d) for d in kernel.shape[:3])
    channels = int(kernel.shape[-1])
    st, sh, sw = strides
    pt = (kt - 1) // 2
    if pt:
        x = ops.pad(x, [(0, 0), (pt, pt), (0, 0), (0, 0), (0, 0)])
    x_sp, padding = pad_symmetric(x, (1, kh, kw), (1, sh, sw))
    shape = ops.shape(x_sp)
    t_in, h_in, w_in = int(x_sp.shape[1]), shape[2], shape[3]
    t_out = (t_in - kt) // st + 1
    out = None
    for i in range(kt):
        frames = slice_axis(x_sp, 1, i, t_out, st)
        frames = ops.reshape(frames, (-1, h_in, w_in, channels))
        tap = ops.reshape(kernel[i], (kh, kw, channels, 1))
        y = ops.depthwise_conv(frames, tap, strides=(sh, sw), padding=padding)
        out = y if out is None else out + y
    out_shape = ops.shape(out)
    return ops.reshape(out, (-1, t_out, out_shape[1], out_shape[2], channels))


ITEM_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def cuts_aligned_frames(shape, dtype, kernel_size: Sequence[int], spatial_strides: Sequence[int]) -> bool:
    """Whether `depthwise_conv3d_inference` cuts its taps' frames at 64-byte offsets (TF's
    Slice then returns views): kt > 1 and a frame, padded as the conv pads it, a multiple
    of 64 bytes."""
    kt, kh, kw = (int(d) for d in kernel_size)
    if kt == 1 or shape[2] is None or shape[3] is None:
        return False
    pads = symmetric_pads((kh, kw)) if any(s > 1 for s in spatial_strides) else [(0, 0), (0, 0)]
    frame = (int(shape[2]) + sum(pads[0])) * (int(shape[3]) + sum(pads[1])) * int(shape[4])
    return frame * ITEM_BYTES.get(keras.backend.standardize_dtype(dtype), 4) % 64 == 0


def depthwise_conv3d_inference(x, kernel, spatial_strides: Sequence[int]):
    """`depthwise_conv3d` at temporal stride 1, the same products and sums, with the frames
    each temporal tap reads cut along the first axis of one padded [B * (T + kt - 1), H, W, C]
    tensor. TF's Slice returns a cut along the first axis as a view of its input (where its
    offset is 64-byte aligned); a cut along T of [B, T, H, W, C] is a copy per tap. The taps'
    convs also run over the kt - 1 padding frames between clips, and the clips' frames are
    gathered by one concatenation (none at batch 1). Where a padded frame is not a multiple
    of 64 bytes, TF would copy each cut anyway, and this is `depthwise_conv3d`. Its gradient
    (a full-size Pad per tap) costs more than `depthwise_conv3d`'s, so the layer takes it on
    calls that do not train: forward 0.79-1.02x the time at X3D-S's and ir-CSN's shapes
    (unaligned cuts, before they fell back: 1.07-1.09x; benchmarks/bench_inference.py).

    x: [B, T, H, W, C]; kernel: [kt, kh, kw, 1, C]; symmetric padding.
    """
    kt, kh, kw = (int(d) for d in kernel.shape[:3])
    channels = int(kernel.shape[-1])
    frames_in = int(x.shape[1])
    pt = (kt - 1) // 2
    if not cuts_aligned_frames(x.shape, x.dtype, kernel.shape[:3], spatial_strides):
        return depthwise_conv3d(x, kernel, (1, *spatial_strides))
    strided = any(s > 1 for s in spatial_strides)
    spatial_pads = symmetric_pads((kh, kw)) if strided else [(0, 0), (0, 0)]
    padded = ops.pad(x, [(0, 0), (pt, pt), *spatial_pads, (0, 0)])
    span = frames_in + 2 * pt
    shape = ops.shape(padded)
    flat = ops.reshape(padded, (-1, shape[2], shape[3], channels))
    length = ops.shape(flat)[0] - 2 * pt
    out = None
    for i in range(kt):
        frames = ops.slice(flat, [i, 0, 0, 0], [length, shape[2], shape[3], channels])
        tap = ops.reshape(kernel[i], (kh, kw, channels, 1))
        y = ops.depthwise_conv(frames, tap, strides=tuple(spatial_strides), padding="valid" if strided else "same")
        out = y if out is None else out + y
    out_shape = ops.shape(out)
    clip = [frames_in, out_shape[1], out_shape[2], channels]
    if x.shape[0] is None:  # the clips' frames by a Pad and a Slice
        out = ops.reshape(ops.pad(out, [(0, 2 * pt), (0, 0), (0, 0), (0, 0)]), (-1, span, *clip[1:]))
        return ops.slice(out, [0, 0, 0, 0, 0], [ops.shape(out)[0], *clip])
    if x.shape[0] > 1:
        out = ops.concatenate([ops.slice(out, [b * span, 0, 0, 0], clip) for b in range(x.shape[0])], axis=0)
    return ops.reshape(out, (-1, *clip))


def motion_side_taps(x, kernel, spatial_stride: int):
    """The first and last temporal taps of a depthwise 3 x 3 x 3 conv (temporal stride 1,
    symmetric padding): out[t] = dw(x[t - 1], k_0) + dw(x[t + 1], k_2), 2D depthwise convs of
    the T - 1 frames each tap reads (no temporal padding of x), their outputs padded by the
    frame the tap skips. None on one frame (both taps read only padding).

    x: [B, T, H, W, C]; kernel: [3, 3, 3, 1, C].
    """
    frames_in = int(x.shape[1])
    if frames_in == 1:
        return None
    channels = int(kernel.shape[-1])
    outs = []
    for tap, start, pads in ((0, 0, (1, 0)), (2, 1, (0, 1))):
        frames = slice_axis(x, 1, start, frames_in - 1)
        shape = ops.shape(frames)
        frames, padding = pad_symmetric(ops.reshape(frames, (-1, shape[2], shape[3], channels)), (3, 3), (spatial_stride,) * 2)
        y = ops.depthwise_conv(frames, ops.reshape(kernel[tap], (3, 3, channels, 1)), strides=spatial_stride, padding=padding)
        y_shape = ops.shape(y)
        y = ops.reshape(y, (-1, frames_in - 1, y_shape[1], y_shape[2], channels))
        outs.append(ops.pad(y, [(0, 0), pads, (0, 0), (0, 0), (0, 0)]))
    return outs[0] + outs[1]


def _raster_depthwise_unstrided(frames, kernel_1d, transpose: bool):
    """`_raster_conv1d` (depthwise, spatial stride 1) without flattening or transposing:
    the frame is extended by (k - 1) / 2 columns on each side holding the row above's
    last and the row below's first pixels (rows: with `transpose`, the column-raster
    order), which are the raster neighbours a 1-D conv reads across a row's end, and
    a 1 x k (k x 1) 'valid' 2D depthwise conv runs on it. The same sums as the raster
    conv; about half the time (benchmarks/bench_sts.py). Needs H and W >= (k - 1) / 2.

    frames: [N, H, W, C]; kernel_1d: [k, C, 1].
    """
    k = int(kernel_1d.shape[0])
    half = (k - 1) // 2
    along, across = (1, 2) if transpose else (2, 1)
    size = int(frames.shape[along])
    before = shift_axis(slice_axis(frames, along, size - half, half), across, -1)  # previous line's end
    after = shift_axis(slice_axis(frames, along, 0, half), across, 1)  # next line's start
    extended = ops.concatenate([before, frames, after], axis=along)
    kernel_2d = ops.reshape(kernel_1d, (k, 1, -1, 1) if transpose else (1, k, -1, 1))
    return ops.depthwise_conv(extended, kernel_2d, strides=1, padding="valid")


def _raster_conv1d(frames, kernel_1d, spatial_stride: int, transpose: bool, depthwise: bool):
    """The reference's 1-D conv over a frame flattened in raster order.

    frames: [N, H, W, C]. The frame is flattened h-major (w-major when `transpose`),
    convolved along the flat sequence with zero padding (k - 1) / 2 and flat stride
    `spatial_stride ** 2` (taps near a row's end read the next row, and with stride 2
    every 4th raster position is kept: both are the reference behaviour), then
    reshaped back in the same order to [H / s, W / s] (and transposed back).
    kernel_1d: [k, C, 1] if depthwise, else [k, C, O].
    """
    if transpose:
        frames = ops.transpose(frames, (0, 2, 1, 3))
    shape = ops.shape(frames)
    rows, cols, channels = shape[1], shape[2], shape[3]
    seq = ops.reshape(frames, (-1, rows * cols, channels))
    flat_stride = spatial_stride * spatial_stride
    seq, padding = pad_symmetric(seq, kernel_1d.shape[:1], (flat_stride,))
    if depthwise:
        y = depthwise_conv1d(seq, kernel_1d, flat_stride, padding)
    else:
        y = ops.conv(seq, kernel_1d, strides=flat_stride, padding=padding)
    out = ops.reshape(y, (-1, rows // spatial_stride, cols // spatial_stride, ops.shape(y)[-1]))
    if transpose:
        out = ops.transpose(out, (0, 2, 1, 3))
    return out


def tap_matrix(kernel):
    """A [k, 1, 1, C, O] kernel's taps side by side, [C, k, O], for `_tap_products`: one
    transpose of the whole kernel (STS then splits its output channels, which is cheaper
    than a strided slice and a transpose per branch)."""
    k, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    return ops.transpose(ops.reshape(kernel, (k, c, o)), (1, 0, 2))


def _tap_products(x, taps):
    """x: [B, T, H, W, C]; taps: [C, k, O] (`tap_matrix`) -> [B, T, H, W, k, O], x @ tap j
    for each j, as one matmul."""
    c, k, o = (int(d) for d in taps.shape)
    shape = ops.shape(x)
    flat = ops.reshape(x, (-1, c))
    return ops.reshape(ops.matmul(flat, ops.reshape(taps, (c, k * o))), (-1, shape[1], shape[2], shape[3], k, o))


# Shifts of a [B, T, H, W, O] tensor along some order of its positions: out[i] = y[i + offset],
# zeros outside. A 3-tap 1-D conv along that order is sum_j shift(x @ tap_j, j - 1).
# Each takes `channels` as `shift_axis` does: (start, size) of the last axis, or all of it.
def temporal_shift(y, offset: int, channels: tuple[int, int] | None = None):
    """Along time."""
    return shift_axis(y, 1, offset, channels)


def row_shift(y, offset: int, channels: tuple[int, int] | None = None):
    """Along each row of a frame."""
    return shift_axis(y, 3, offset, channels)


def column_shift(y, offset: int, channels: tuple[int, int] | None = None):
    """Down each column of a frame."""
    return shift_axis(y, 2, offset, channels)


def raster_shift(y, offset: int, channels: tuple[int, int] | None = None):
    """Along each frame's h-major raster order (row after row: the reference's `view`)."""
    shape = ops.shape(y)
    flat = ops.reshape(y, (-1, shape[1], shape[2] * shape[3], shape[4]))
    out = shift_axis(flat, 2, offset, channels)
    return ops.reshape(out, (-1, shape[1], shape[2], shape[3], ops.shape(out)[-1]))


def column_raster_shift(y, offset: int, channels: tuple[int, int] | None = None):
    """Along each frame's w-major raster order (column after column), without transposing:
    the position before (h, w) is (h - 1, w), or (H - 1, w - 1) at the top of a column; the
    one after is (h + 1, w), or (0, w + 1) at its bottom. offset: -1, 0 or 1."""
    rows, cols = int(y.shape[2]), int(y.shape[3])
    kept = {} if channels is None else {4: channels}
    if offset == 0:
        return slice_axes(y, kept) if kept else y
    if offset == -1:
        wrapped = slice_axes(y, {2: (rows - 1, 1), 3: (0, cols - 1), **kept})  # (H-1, w-1) -> (0, w)
        wrapped = ops.pad(wrapped, [(0, 0), (0, 0), (0, 0), (1, 0), (0, 0)])
        return ops.concatenate([wrapped, slice_axes(y, {2: (0, rows - 1), **kept})], axis=2)
    if offset == 1:
        wrapped = slice_axes(y, {2: (0, 1), 3: (1, cols - 1), **kept})  # (0, w+1) -> (H-1, w)
        wrapped = ops.pad(wrapped, [(0, 0), (0, 0), (0, 0), (0, 1), (0, 0)])
        return ops.concatenate([slice_axes(y, {2: (1, rows - 1), **kept}), wrapped], axis=2)
    raise ValueError(f"column_raster_shift takes offsets -1, 0 and 1; got {offset}")


# The same convs with the backend's conv ops: x [B, T, H, W, C], kernel [kt, 1, 1, C, O],
# symmetric zero padding ('same' at stride 1, odd kt).
def temporal_conv(x, kernel):
    return ops.conv(x, kernel, strides=1, padding="same")


def _frame_conv(x, kernel_2d):
    shape = ops.shape(x)
    y = ops.conv(ops.reshape(x, (-1, shape[2], shape[3], shape[4])), kernel_2d, strides=1, padding="same")
    return ops.reshape(y, (-1, shape[1], shape[2], shape[3], int(kernel_2d.shape[-1])))


def row_conv(x, kernel):
    kt, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    return _frame_conv(x, ops.reshape(kernel, (1, kt, c, o)))


def column_conv(x, kernel):
    kt, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    return _frame_conv(x, ops.reshape(kernel, (kt, 1, c, o)))


def raster_conv(x, kernel):
    """A 1-D conv over each frame flattened h-major, as the reference (which wraps rows):
    `_raster_conv1d`, dense, on the frames."""
    kt, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    shape = ops.shape(x)
    frames = ops.reshape(x, (-1, shape[2], shape[3], c))
    y = _raster_conv1d(frames, ops.reshape(kernel, (kt, c, o)), 1, transpose=False, depthwise=False)
    return ops.reshape(y, (-1, shape[1], shape[2], shape[3], o))


def column_raster_conv(x, kernel):
    """3 taps along each frame's w-major raster, without transposing x: a 'valid' 3 x 1 conv
    down each column for rows 1 to H - 2, and the first and last row as matmuls of single
    rows, where the reads wrap: row 0's predecessor is (H - 1, w - 1), row H - 1's successor
    (0, w + 1). Exactly the MACs of the 1-D conv (no products with padding)."""
    if int(kernel.shape[0]) != 3:
        raise ValueError(f"column_raster_conv takes 3 taps; got {int(kernel.shape[0])}")
    rows = int(x.shape[2])
    c, o = int(kernel.shape[3]), int(kernel.shape[4])
    before, centre, after = (ops.reshape(take_axis(kernel, 0, j), (c, o)) for j in range(3))

    def row(index):
        return slice_axis(x, 2, index, 1)

    top_before = shift_axis(row(rows - 1), 3, -1)  # (H - 1, w - 1)
    bottom_after = shift_axis(row(0), 3, 1)  # (0, w + 1)
    if rows == 1:
        return ops.matmul(top_before, before) + ops.matmul(row(0), centre) + ops.matmul(bottom_after, after)
    first = ops.matmul(top_before, before) + ops.matmul(row(0), centre) + ops.matmul(row(1), after)
    last = ops.matmul(row(rows - 2), before) + ops.matmul(row(rows - 1), centre) + ops.matmul(bottom_after, after)
    if rows == 2:
        return ops.concatenate([first, last], axis=2)
    shape = ops.shape(x)
    frames = ops.reshape(x, (-1, shape[2], shape[3], c))
    inner = ops.conv(frames, ops.reshape(kernel, (3, 1, c, o)), strides=1, padding="valid")
    inner = ops.reshape(inner, (-1, shape[1], rows - 2, shape[3], o))
    return ops.concatenate([first, inner, last], axis=2)


class TapOrder(NamedTuple):
    """An order of a [B, T, H, W, O] tensor's positions along which a kt-tap 1-D conv runs:
    its `shift` (for the tap products and the gradient: a shift's adjoint is the opposite
    shift) and its `conv` with the backend's conv ops (for the forward)."""

    shift: Callable
    conv: Callable


TEMPORAL = TapOrder(temporal_shift, temporal_conv)
ROWS = TapOrder(row_shift, row_conv)
COLUMNS = TapOrder(column_shift, column_conv)
RASTER = TapOrder(raster_shift, raster_conv)
COLUMN_RASTER = TapOrder(column_raster_shift, column_raster_conv)


def _shifted_back(dy, branches: Sequence[tuple[int, TapOrder]], kt: int):
    """The upstream gradients of the taps of sum_j shift(tap_j, j - pad), each branch's
    channels of dy shifted by pad - j (a shift's adjoint is the opposite shift), side by side
    as [N, kt * O] (tap-major, then the branches' channels): one concatenation, not a stack
    per branch and a concatenation of those. Tap pad's block is dy itself.

    branches: (filters, order) per group of dy's channels, in order (`shifted_tap_conv`)."""
    pad = (kt - 1) // 2
    starts = [sum(filters for filters, _ in branches[:i]) for i in range(len(branches))]
    channels = [(start, filters) for start, (filters, _) in zip(starts, branches)] if len(branches) > 1 else [None]
    pieces = []
    for j in range(kt):
        if j == pad:
            pieces.append(dy)
        else:
            pieces.extend(order.shift(dy, pad - j, kept) for kept, (_, order) in zip(channels, branches))
    dtaps = ops.concatenate(pieces, axis=-1) if len(pieces) > 1 else pieces[0]
    return ops.reshape(dtaps, (-1, int(dtaps.shape[-1])))


def _branch_convs(x, kernel, branches: Sequence[tuple[int, TapOrder]]):
    """Each branch's output channels of a [kt, 1, 1, C, O] kernel as its order's `conv` (the
    backend's conv ops), side by side."""
    cuts = [sum(filters for filters, _ in branches[: i + 1]) for i in range(len(branches) - 1)]
    kernels = ops.split(kernel, cuts, axis=-1) if cuts else [kernel]
    outs = [order.conv(x, k) for k, (_, order) in zip(kernels, branches)]
    return ops.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]


def _tap_kernel_gradient(x, dtaps, kt: int):
    """[kt, 1, 1, C, O] kernel gradient of tap products x @ tap_j whose upstream gradients
    are dtaps, [N, kt * O]: one GEMM x^T @ dtaps. Written matmul(transpose(a), b), which
    Grappler folds into one MatMul; TF's CPU einsum for it loses float16 precision (10x the
    matmul's rounding error)."""
    c = int(x.shape[-1])
    o = int(dtaps.shape[-1]) // kt
    dk = ops.matmul(ops.transpose(ops.reshape(x, (-1, c))), dtaps)
    return ops.reshape(ops.transpose(ops.reshape(dk, (c, kt, o)), (1, 0, 2)), (kt, 1, 1, c, o))


def shifted_tap_conv(x, kernel, branches: Sequence[tuple[int, TapOrder]]):
    """Stride-1 kt x 1 x 1 taps, each group of output channels combined along its own order:
    out = concat over branches (filters_b, order_b) of sum_j order_b.shift(x @ tap_j[b], j - pad),
    pad = (kt - 1) / 2. STS cases B and C (raster and column-raster branches, a temporal one;
    rows and columns for `sts_variant="rowcol"`) and the plain temporal conv (one temporal
    branch) are this.

    One custom-gradient op: the taps' upstream gradient is every branch's dy shifted back, side
    by side, [N, kt * O]; the kernel gradient is then one GEMM x^T @ that and the input gradient
    one GEMM that @ taps^T, not one of each per branch plus a sum of the input gradients
    (SlowOnly res4's case B: 75 against 79 ms, benchmarks/bench_sts.py). The forward is each
    branch's `conv` (the backend's convs: no tap products written out, shifted and summed;
    R(2+1)D's res2 conv 0.89-0.93x the time of those) in float32 from
    NATIVE_CONV3D_MIN_CHANNELS input channels on frames of BRANCH_CONVS_MIN_POSITIONS or more
    positions (any frame for one branch), else the tap products x @ tap_j, shifted and
    summed (TF's CPU Conv3D is wrong in bfloat16 only in its kernel gradient, not used here).

    x: [B, T, H, W, C]; kernel: [kt, 1, 1, C, O], kt odd; the branches' filters sum to O.
    """
    kt, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    pad = (kt - 1) // 2
    sizes = [filters for filters, _ in branches]
    orders = [order for _, order in branches]
    if sum(sizes) != o:
        raise ValueError(f"shifted_tap_conv: the branches' filters {sizes} must sum to the kernel's {o}")
    cuts = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]

    def split(t):
        return ops.split(t, cuts, axis=-1) if cuts else [t]

    positions = None if x.shape[2] is None or x.shape[3] is None else int(x.shape[2]) * int(x.shape[3])
    native = (
        c >= NATIVE_CONV3D_MIN_CHANNELS and keras.backend.standardize_dtype(x.dtype) == "float32"
        and (len(branches) == 1 or positions is None or positions >= BRANCH_CONVS_MIN_POSITIONS)
    )

    def tap_sum(x, taps, shift):
        products = _tap_products(x, taps)
        out = shift(take_axis(products, -2, 0), -pad)
        for j in range(1, kt):
            out = out + shift(take_axis(products, -2, j), j - pad)
        return out

    @ops.custom_gradient
    def conv(x, kernel):
        taps = tap_matrix(kernel)
        if native:
            y = _branch_convs(x, kernel, branches)
        else:
            outs = [tap_sum(x, t, order.shift) for t, order in zip(split(taps), orders)]
            y = ops.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]

        def grad(*args, upstream=None):  # upstream: the torch backend's keyword
            dy = args[0] if upstream is None else upstream
            dtaps = _shifted_back(dy, branches, kt)
            dx = ops.matmul(dtaps, ops.transpose(ops.reshape(taps, (c, kt * o))))
            return ops.reshape(dx, ops.shape(x)), _tap_kernel_gradient(x, dtaps, kt)

        return y, grad

    return conv(x, kernel)


# Which formulation a plain conv takes on which input. The sums are the same; the choice
# is speed, measured on TF's CPU kernels (oneDNN, unless a rule says Eigen) with
# benchmarks/bench_convs.py:
# - TF's native Conv3D is the fastest dense kt x kh x kw conv at stride 1 (forward and
#   training step) once the input has a few channels; on RGB stems its filter gradient
#   is slower than `dense_conv3d_as_2d`'s Conv2D.
# - For a temporal kt x 1 x 1 conv at stride 1 with 128 or more input channels, Conv3D's
#   kernel gradient is the slow part of its training step (R(2+1)D res2, 144 channels:
#   44 ms against the forward's 21); `temporal_conv3d` keeps Conv3D's forward and input
#   gradient and takes the kernel gradient as one GEMM over the taps. Below 128 channels
#   Conv3D's own gradient is as fast.
# - Only in float32: TF's CPU Conv3D filter gradient in bfloat16 is wrong for some shapes
#   (94 % off at a 2x4x4 input with 32 channels; tests/test_sts_conv.py, mixed precision).
# - Strided kt x 1 x 1 convs (spatial stride 1) are `strided_temporal_conv`: a 2D conv over
#   [T, H * W] with the conv's own padding. Other strided convs stay on `dense_conv3d_as_2d`:
#   an explicitly padded Conv3D makes Grappler's remapper fail on the training graph
#   ("remapper failed: ... missing node .../Pad"), which then leaves the whole graph
#   unfused (tests/test_models_graph.py).
# - Where TF's CPU convs run on Eigen (`tf_cpu_convs_on_eigen`: x86 without AVX-512 VNNI), a
#   training call of a dense kt x kh x kw conv with kh or kw > 1 takes `dense_conv3d_as_2d`:
#   Eigen's Conv3D gradients took 831 against 589 ms at ResNet-18's res2 shape (2x8x56x56x64),
#   232 against 206 at res3, 130 against 125 at res4. Its inference keeps Conv3D (126 against
#   186 ms forward). A temporal kt x 1 x 1 conv with GEMM_KERNEL_GRADIENT_MIN_CHANNELS or more
#   input channels takes `shifted_tap_conv` there (Conv3D forward, both gradients GEMMs): Eigen's
#   transposed Conv3D for the input gradient made `temporal_conv3d`'s step 1.2-1.4x as long
#   (SlowOnly res4 209 against 171 ms, R(2+1)D res2 232 against 166; SlowOnly res5 at parity).
#   Every Conv2D over frames there takes `frame_conv2d`'s input gradient (backend_kernels.py).
# - STS's branches (cases B and C at temporal stride 1, `shifted_tap_conv`) run the backend's
#   convs per branch from NATIVE_CONV3D_MIN_CHANNELS input channels on frames of
#   BRANCH_CONVS_MIN_POSITIONS or more positions; on smaller frames the column-raster conv's
#   first and last rows (a matmul each) and three reads of x cost more than one GEMM of the
#   tap products, shifted and summed: SlowOnly res4 (2x8x14x14x1024 -> 256) 1.00-1.01x the
#   plain conv's training step against 1.03-1.06x, at 7 x 7 x 2048 0.98x against 1.09x; at
#   28 x 28 the branch convs are faster (1.00 against 1.02x, R(2+1)D res3 1.14 against 1.21x).
NATIVE_CONV3D_MIN_CHANNELS = 16
GEMM_KERNEL_GRADIENT_MIN_CHANNELS = 128
BRANCH_CONVS_MIN_POSITIONS = 256


def temporal_conv3d(x, kernel):
    """A stride-1, symmetric-padded kt x 1 x 1 conv: Conv3D forward, with a custom gradient.

    The input gradient is Conv3D's own (a transposed conv); the kernel gradient is one GEMM,
    x^T @ [dy shifted by each tap], [C, N] x [N, kt * O]: dW_j = sum_t x[t]^T dy[t + pad - j].
    R(2+1)D res2 (2x8x56x56x144 -> 64): training step of the conv 60 against 89 ms for
    Conv3D's autodiff (benchmarks/bench_convs.py). Same sums, in another order.

    x: [B, T, H, W, C]; kernel: [kt, 1, 1, C, O], kt odd.
    """
    kt, o = int(kernel.shape[0]), int(kernel.shape[4])

    @ops.custom_gradient
    def conv(x, kernel):
        def grad(*args, upstream=None):  # upstream: the torch backend's keyword
            dy = args[0] if upstream is None else upstream
            dx = ops.conv_transpose(dy, kernel, strides=1, padding="same")
            dtaps = _shifted_back(dy, [(o, TEMPORAL)], kt)
            return dx, _tap_kernel_gradient(x, dtaps, kt)

        return ops.conv(x, kernel, strides=1, padding="same"), grad

    return conv(x, kernel)


def strided_temporal_conv(x, kernel, temporal_stride: int, kept_frame_branches: Sequence[tuple[int, TapOrder]] = ()):
    """A kt x 1 x 1 conv with temporal stride (spatial stride 1), symmetric padding.

    Forward: a kt x 1 conv with stride (st, 1) over each clip laid out as [T, H * W] (a free
    reshape), the temporal padding the conv's own (`conv2d_padded`): no stacked taps, no Pad.
    Where T is a multiple of st (and T / st frames come out), a custom gradient takes both
    gradients as GEMMs over the clip's frame phases: tap j reads frame st * t + j - pt =
    st * (t + q_j) + r_j, so with P_r the frames of phase r ([N / st, C], one Split of x) and
    D_r the upstream gradient shifted by -q_j for each tap of phase r, side by side,
    dK_j = P_r^T D_r and dx_r = D_r K_r^T. TF's own gradients of the explicitly padded conv
    are Eigen kernels (at R(2+1)D-34's res3, 2x8x56x56x230 -> 128, its kernel gradient alone
    took 32 ms of the 67 in a profile): training step 17.1 against 18.2 ms at R(2+1)D-18's
    res3, 8.7 against 9.4 at res4, and within the noise at R(2+1)D-34's res3 at 224 px (72.5
    against 69.3 and 66.4 against 68.8 in two runs; benchmarks/bench_convs.py).

    kept_frame_branches: STS case C. The first sum(filters) output channels are instead
    `shifted_tap_conv`'s stride-1 taps along each branch's order on the kept frames (phase 0,
    frames 0, st, 2 st, ...), which is P_0: the same Split feeds their forward, and their
    gradients join phase 0's GEMMs (no copy of the kept frames, no Pad of their input
    gradient, no sum of two input gradients). Float32 with each branch's native conv only.

    x: [B, T, H, W, C]; kernel: [kt, 1, 1, C, O].
    """
    kt, c, o = int(kernel.shape[0]), int(kernel.shape[3]), int(kernel.shape[4])
    st, pt = temporal_stride, (kt - 1) // 2
    frames = int(x.shape[1])
    t_out = conv_output_length(frames, kt, st)
    o_kept = sum(filters for filters, _ in kept_frame_branches)
    o_mot = o - o_kept

    def strided(x, kernel):
        shape = ops.shape(x)
        clips = ops.reshape(x, (-1, frames, shape[2] * shape[3], c))
        y = conv2d_padded(clips, ops.reshape(kernel, (kt, 1, c, o_mot)), (st, 1), ((pt, pt), (0, 0)))
        return ops.reshape(y, (-1, t_out, shape[2], shape[3], o_mot))

    if frames % st or t_out != frames // st:
        if not kept_frame_branches:
            return strided(x, kernel)
        k_kept, k_mot = ops.split(kernel, [o_kept], axis=-1)
        kept = slice_axis(x, 1, 0, t_out, st)
        return ops.concatenate([shifted_tap_conv(kept, k_kept, kept_frame_branches), strided(x, k_mot)], axis=-1)
    phases = {}  # r -> [(j, q_j)]: the taps that read frames of phase r (no annotation: AutoGraph converts this scope)
    for j in range(kt):
        q, r = divmod(j - pt, st)
        phases.setdefault(r, []).append((j, q))

    def phase_parts(x):
        shape = ops.shape(x)
        return ops.split(ops.reshape(x, (-1, t_out, st, shape[2] * shape[3], c)), st, axis=2)

    @ops.custom_gradient
    def conv(x, kernel):
        shape = ops.shape(x)
        parts = phase_parts(x) if kept_frame_branches else None
        k_kept, k_mot = ops.split(kernel, [o_kept], axis=-1) if kept_frame_branches else (None, kernel)
        y = strided(x, k_mot)
        if kept_frame_branches:
            kept = ops.reshape(parts[0], (-1, t_out, shape[2], shape[3], c))
            y = ops.concatenate([_branch_convs(kept, k_kept, kept_frame_branches), y], axis=-1)

        def grad(*args, upstream=None):  # upstream: the torch backend's keyword
            dy = args[0] if upstream is None else upstream
            positions = shape[2] * shape[3]
            pieces = parts if parts is not None else phase_parts(x)
            taps = [ops.reshape(take_axis(k_mot, 0, j), (c, o_mot)) for j in range(kt)]
            dy_kept = None
            if kept_frame_branches:
                dy_kept, dy = ops.split(dy, [o_kept], axis=-1)
                dtaps_kept = _shifted_back(dy_kept, kept_frame_branches, kt)
            dks, dxs, dk_kept = [None] * kt, [], None
            for r in range(st):
                reads = phases.get(r, [])
                if not reads:
                    dxs.append(ops.zeros_like(pieces[r]))
                    continue
                ds = [ops.reshape(temporal_shift(dy, -q), (-1, o_mot)) for _, q in reads]
                ks = [taps[j] for j, _ in reads]
                if r == 0 and dy_kept is not None:
                    ds.append(dtaps_kept)
                    ks.append(ops.reshape(tap_matrix(k_kept), (c, kt * o_kept)))
                d = ops.concatenate(ds, axis=-1) if len(ds) > 1 else ds[0]
                k_r = ops.concatenate(ks, axis=-1) if len(ks) > 1 else ks[0]
                dxs.append(ops.reshape(ops.matmul(d, ops.transpose(k_r)), (-1, t_out, 1, positions, c)))
                dk_r = ops.matmul(ops.transpose(ops.reshape(pieces[r], (-1, c))), d)
                widths = [o_mot] * len(reads) + ([kt * o_kept] if len(ds) > len(reads) else [])
                dk_parts = ops.split(dk_r, [sum(widths[: i + 1]) for i in range(len(widths) - 1)], axis=-1) if len(widths) > 1 else [dk_r]
                for (j, _), dk_j in zip(reads, dk_parts):
                    dks[j] = dk_j
                if len(widths) > len(reads):
                    dk_kept = ops.transpose(ops.reshape(dk_parts[-1], (c, kt, o_kept)), (1, 0, 2))
            dx = ops.concatenate(dxs, axis=2) if st > 1 else dxs[0]
            dk = ops.stack(dks)
            if dk_kept is not None:
                dk = ops.concatenate([dk_kept, dk], axis=-1)
            return ops.reshape(dx, shape), ops.reshape(dk, (kt, 1, 1, c, o))

        return y, grad

    return conv(x, kernel)


def centre_tap(kernel):
    """The middle temporal tap of a [kt, kh, kw, C, O] kernel, as a [1, kh, kw, C, O] kernel.

    On a one-frame input every other tap of a symmetric-padded conv reads only zero
    padding, so the conv equals its centre tap's (exactly: the skipped products are zeros).
    Deep stages reach one frame (ResNet-18 at 8 or 16 frames: res5), and skipping the
    padding taps there saves two thirds of their MACs.
    """
    return slice_axis(kernel, 0, (int(kernel.shape[0]) - 1) // 2, 1)


def dense_conv3d_as_2d(x, kernel, strides: Sequence[int]):
    """Dense 3D conv as one 2D conv over frames whose kt temporal neighbours are
    stacked as channels: the same sums as Conv3D, and a faster training step on RGB
    stems (a 3x7x7 stem: 235 against 365 ms, benchmarks/bench_convs.py) and on strided
    convs, which Conv3D would need an explicit Pad for.

    The Conv2D is `frame_conv2d`: where TF runs Eigen, its input gradient is not Eigen's slow
    transposed conv for 1 x 1 kernels and small frames.

    x: [B, T, H, W, C]; kernel: [kt, kh, kw, C, O]; symmetric padding.
    """
    kt, kh, kw, c, o = (int(d) for d in kernel.shape)
    st, sh, sw = strides
    pt = (kt - 1) // 2
    if pt:
        x = ops.pad(x, [(0, 0), (pt, pt), (0, 0), (0, 0), (0, 0)])
    t_out = (int(x.shape[1]) - kt) // st + 1
    if kt == 1 and st == 1:
        stacked = x
    else:
        stacked = ops.concatenate([slice_axis(x, 1, j, t_out, st) for j in range(kt)], axis=-1)
    shape = ops.shape(stacked)
    frames = ops.reshape(stacked, (-1, shape[2], shape[3], kt * c))
    frames, padding = pad_symmetric(frames, (kh, kw), (sh, sw))
    kernel_2d = ops.reshape(ops.transpose(kernel, (1, 2, 0, 3, 4)), (kh, kw, kt * c, o))
    y = frame_conv2d(frames, kernel_2d, (sh, sw), padding)
    y_shape = ops.shape(y)
    return ops.reshape(y, (-1, t_out, y_shape[1], y_shape[2], o))


@keras.saving.register_keras_serializable(package="tfsts")
class STSConv3D(keras.layers.Layer):
    """3D convolution with optional Spatial-Temporal Separable (STS) evaluation.

    Args:
        filters: output channels O.
        kernel_size: int or (kt, kh, kw); odd sizes (symmetric padding).
        strides: int or (st, sh, sw).
        groups: channel groups; `groups == C == filters` is a depthwise conv.
        use_bias: add a bias (once, to the whole output, also under STS).
        sts: evaluate the conv STS-style (the kernel is unchanged either way).
        sts_case: "A", "B" or "C" (sts.md); None picks A for depthwise 3x3x3, B for a
            dense 3x1x1 with temporal stride 1 and C for one with temporal stride.
        sts_variant: "reference" (raster-flattened 1-D convs, as the reference code)
            or "rowcol" (true row/column convs, no wrap-around).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = (1, 1, 1),
        groups: int = 1,
        use_bias: bool = False,
        sts: bool = True,
        sts_case: str | None = None,
        sts_variant: str = "reference",
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.filters = int(filters)
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.strides = _triple(strides, "strides")
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        self.sts = bool(sts)
        if sts_case is not None and sts_case not in STS_CASES:
            raise ValueError(f"{self.name}: sts_case must be one of {STS_CASES} or None; got {sts_case!r}.")
        if sts_variant not in STS_VARIANTS:
            raise ValueError(f"{self.name}: sts_variant must be one of {STS_VARIANTS}; got {sts_variant!r}.")
        self.sts_case = sts_case
        self.sts_variant = sts_variant
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(
                f"{self.name}: kernel_size {self.kernel_size} has an even size; symmetric "
                "(k - 1) / 2 padding needs odd kernel sizes."
            )
        self.input_spec = keras.layers.InputSpec(ndim=5)
        self.resolved_case: str | None = None

    # ----------------------------------------------------------------- build
    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis of the input must be known.")
        if channels % self.groups or self.filters % self.groups:
            raise ValueError(
                f"{self.name}: input channels ({channels}) and filters ({self.filters}) must "
                f"both be divisible by groups ({self.groups})."
            )
        self.input_channels = int(channels)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        self.resolved_case = self._resolve_case(input_shape) if self.sts else None
        self.input_spec = keras.layers.InputSpec(ndim=5, axes={-1: channels})

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.input_channels == self.filters

    def _resolve_case(self, input_shape) -> str:
        def fail(why: str, fix: str = "build this conv with sts=False") -> None:
            raise ValueError(f"{self.name}: STS cannot take this conv: {why}. Fix: {fix}.")

        kt, kh, kw = self.kernel_size
        st, sh, sw = self.strides
        if self.is_depthwise:
            case = "A"
        elif self.groups == 1:
            case = "C" if st > 1 else "B"
        else:
            fail(f"groups={self.groups} is neither depthwise (groups == channels == filters) nor dense")
        if self.sts_case is not None:
            if self.sts_case == "A" and case != "A":
                fail("case A needs a depthwise conv (groups == channels == filters)")
            if self.sts_case in ("B", "C") and case == "A":
                fail(f"case {self.sts_case} needs a dense conv (groups=1)")
            case = self.sts_case
        if case == "A":
            if (kt, kh, kw) != (3, 3, 3):
                fail(f"case A supports kernel 3x3x3 only, got {self.kernel_size}")
            if self.filters % 2:
                fail(f"case A splits channels in halves; {self.filters} channels is odd")
            if st != 1:
                fail(f"case A needs temporal stride 1, got strides {self.strides}", "use temporal stride 1 (as the reference STS configs do) or sts=False")
            if sh != sw:
                fail(f"case A needs equal spatial strides, got {self.strides}")
            h, w = input_shape[2], input_shape[3]
            if sh > 1 and ((h is not None and h % sh) or (w is not None and w % sw)):
                fail(f"with spatial stride {sh} the frame size ({h}x{w}) must be divisible by it")
        else:
            if (kt, kh, kw) != (3, 1, 1):
                fail(f"case {case} supports kernel 3x1x1 only, got {self.kernel_size}")
            if self.filters % 4:
                fail(f"case {case} splits filters in quarters; {self.filters} is not divisible by 4")
            if (sh, sw) != (1, 1):
                fail(f"case {case} needs spatial stride 1, got strides {self.strides}")
            if case == "B" and st != 1:
                fail(f"case B needs temporal stride 1, got strides {self.strides}", "use sts_case='C' (the (2+1)D temporal conv) or sts=False")
        return case

    # ------------------------------------------------------------------ call
    def call(self, x, training=None):
        kernel = ops.cast(self.kernel, x.dtype)
        if not self.sts:
            y = self._plain(x, kernel, training)
        elif self.resolved_case == "A":
            y = self._sts_depthwise(x, kernel)
        else:
            y = self._sts_temporal(x, kernel)
        if self.bias is not None:
            y = bias_add(y, self.bias)
        return y

    def _plain(self, x, kernel, training=None):
        """The plain conv in the formulation measured fastest for its shape (the rules
        above NATIVE_CONV3D_MIN_CHANNELS) and, for depthwise convs, for whether the call
        trains (`depthwise_conv3d_inference`)."""
        strides = self.strides
        if int(kernel.shape[0]) > 1 and x.shape[1] == 1:
            kernel, strides = centre_tap(kernel), (1, *strides[1:])
        kt, kh, kw = (int(d) for d in kernel.shape[:3])
        if self.is_depthwise:
            if not training and strides[0] == 1:
                return depthwise_conv3d_inference(x, kernel, strides[1:])
            return depthwise_conv3d(x, kernel, strides)
        if self.groups > 1:
            x, padding = pad_symmetric(x, kernel.shape[:3], strides)
            return ops.conv(x, kernel, strides=strides, padding=padding)
        temporal = (kh, kw) == (1, 1)
        native = self._native(x)
        if native and temporal and kt > 1 and strides[0] > 1 and strides[1:] == (1, 1):
            return strided_temporal_conv(x, kernel, strides[0])
        if kt == 1 or strides != (1, 1, 1):
            return dense_conv3d_as_2d(x, kernel, strides)
        if native and temporal and self.input_channels >= GEMM_KERNEL_GRADIENT_MIN_CHANNELS:
            if tf_cpu_convs_on_eigen():
                return shifted_tap_conv(x, kernel, [(self.filters, TEMPORAL)])
            return temporal_conv3d(x, kernel)
        if native and not (training and not temporal and tf_cpu_convs_on_eigen()):
            return ops.conv(x, kernel, strides=1, padding="same")  # 'same' is symmetric at stride 1
        if temporal:
            return shifted_tap_conv(x, kernel, [(self.filters, TEMPORAL)])
        return dense_conv3d_as_2d(x, kernel, strides)

    def _native(self, x) -> bool:
        """Whether this conv takes the backend's native conv ops (the rules above
        NATIVE_CONV3D_MIN_CHANNELS): float32, with a few input channels."""
        return self.input_channels >= NATIVE_CONV3D_MIN_CHANNELS and keras.backend.standardize_dtype(x.dtype) == "float32"

    def _sts_depthwise(self, x, kernel):
        """Case A: appearance (s + r + c, per frame) on the first half of the channels,
        depthwise 3D motion on the second half.

        The appearance's s (the centre temporal slice, 3 x 3) and the motion's centre temporal
        tap are the same 3 x 3 depthwise conv of the current frame, so one conv over all the
        channels takes both; the motion adds its two side taps, the appearance r + c. One
        depthwise conv (and its two gradients) fewer than a conv per half: TF's CPU depthwise
        convs cost nearly as much on half the channels as on all of them at these sizes.
        """
        half = self.filters // 2
        stride = self.strides[1]
        # One Split (its gradient one Concat), not two slices (two full-size Pads and a sum).
        x_app, x_mot = ops.split(x, 2, axis=-1)
        k_app, k_mot = kernel[..., :half], kernel[..., half:]
        shape = ops.shape(x)
        padded, padding = pad_symmetric(ops.reshape(x, (-1, shape[2], shape[3], self.filters)), (3, 3), (stride, stride))
        centre = ops.depthwise_conv(padded, ops.reshape(kernel[1], (3, 3, self.filters, 1)), strides=stride, padding=padding)
        side_taps = motion_side_taps(x_mot, k_mot, stride)

        frames = ops.reshape(x_app, (-1, shape[2], shape[3], half))
        if self.sts_variant == "reference":
            row = ops.reshape(k_app[0], (9, half, 1))
            col = ops.reshape(k_app[2], (9, half, 1))
            if stride == 1 and min(int(frames.shape[1]), int(frames.shape[2])) >= 4:
                # The h-major raster conv is a 1-D conv on the frame as it lies in memory (no
                # copy); the w-major one reads across columns, so it runs on extended frames
                # instead of a transposed copy (benchmarks/bench_sts.py).
                r = _raster_conv1d(frames, row, 1, transpose=False, depthwise=True)
                c = _raster_depthwise_unstrided(frames, col, transpose=True)
            else:
                r = _raster_conv1d(frames, row, stride, transpose=False, depthwise=True)
                c = _raster_conv1d(frames, col, stride, transpose=True, depthwise=True)
        else:
            r = self._rowcol(frames, ops.reshape(k_app[0], (9, half, 1)), stride, along_rows=True)
            c = self._rowcol(frames, ops.reshape(k_app[2], (9, half, 1)), stride, along_rows=False)
        out_shape = ops.shape(centre)
        rc = ops.reshape(r + c, (-1, shape[1], out_shape[1], out_shape[2], half))
        extra = ops.concatenate([rc, ops.zeros_like(rc) if side_taps is None else side_taps], axis=-1)
        return ops.reshape(centre, (-1, shape[1], out_shape[1], out_shape[2], self.filters)) + extra

    def _sts_temporal(self, x, kernel):
        """Cases B and C: quarter 1 and 2 of the filters are 3-tap 1-D convs along the
        raster (and transposed raster) order of each kept frame; the second half is
        the plain temporal conv.

        A 3-tap conv is sum_j shift_j(x @ K_j): matrix products over the channels (the
        same MACs as the plain conv), with the shifts on the (much thinner) outputs, so
        STS costs about what the plain conv does (`shifted_tap_conv`).
        """
        quarter = self.filters // 4
        if self.sts_variant == "reference":
            appearance = [(quarter, RASTER), (quarter, COLUMN_RASTER)]
        else:
            appearance = [(quarter, ROWS), (quarter, COLUMNS)]
        st = self.strides[0]
        if st == 1:
            return shifted_tap_conv(x, kernel, [*appearance, (self.filters - 2 * quarter, TEMPORAL)])
        # Strided over time; the appearance convs see only the kept frames.
        if self._native(x):
            return strided_temporal_conv(x, kernel, st, appearance)
        k_appearance, k_motion = ops.split(kernel, [2 * quarter], axis=-1)
        motion = dense_conv3d_as_2d(x, k_motion, self.strides)
        x = slice_axis(x, 1, 0, -(-int(x.shape[1]) // st), st)
        return ops.concatenate([shifted_tap_conv(x, k_appearance, appearance), motion], axis=-1)

    @staticmethod
    def _rowcol(frames, kernel_1d, stride: int, along_rows: bool):
        """A true row (1 x k) or column (k x 1) depthwise conv with symmetric padding; at
        stride 1 the row conv is `depthwise_conv1d` over the rows (its kernel gradient)."""
        k = int(kernel_1d.shape[0])
        if along_rows and stride == 1:
            shape = ops.shape(frames)
            y = depthwise_conv1d(ops.reshape(frames, (-1, shape[2], shape[3])), kernel_1d, 1, "same")
            return ops.reshape(y, shape)
        kernel_2d = ops.reshape(kernel_1d, (1, k, -1, 1) if along_rows else (k, 1, -1, 1))
        padded, padding = pad_symmetric(frames, kernel_2d.shape[:2], (stride, stride))
        return ops.depthwise_conv(padded, kernel_2d, strides=stride, padding=padding)

    # ------------------------------------------------------------ bookkeeping
    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape
        kt, kh, kw = self.kernel_size
        st, sh, sw = self.strides
        return (
            b,
            conv_output_length(t, kt, st),
            conv_output_length(h, kh, sh),
            conv_output_length(w, kw, sw),
            self.filters,
        )

    def count_macs(self, input_shape) -> int:
        """Multiply-accumulates for one sample, counted branch by branch when STS is on
        (so the 'no extra FLOPs' claim is checked, not assumed)."""
        _, t_out, h_out, w_out, _ = self.compute_output_shape((1, *input_shape[-4:]))
        kt, kh, kw = self.kernel_size
        cin = self.input_channels // self.groups
        if not self.sts:
            return t_out * h_out * w_out * self.filters * kt * kh * kw * cin
        positions = t_out * h_out * w_out
        if self.resolved_case == "A":
            half = self.filters // 2
            motion = positions * half * 27
            spatial = positions * half * 9  # centre slice, 3x3
            row = positions * half * 9  # 9-tap 1-D conv
            col = positions * half * 9
            return motion + spatial + row + col
        quarter = self.filters // 4
        motion = positions * 2 * quarter * 3 * self.input_channels
        a1 = positions * quarter * 3 * self.input_channels
        a2 = positions * quarter * 3 * self.input_channels
        return motion + a1 + a2

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            groups=self.groups,
            use_bias=self.use_bias,
            sts=self.sts,
            sts_case=self.sts_case,
            sts_variant=self.sts_variant,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config
