"""Video ops: gather the sampled JPEG strings, decode only those, resize, crop; evaluation views.

Phases (DMVR / TF Model Garden order): parse -> sample indices -> gather the sampled encoded
frames -> decode -> spatial processing. Core TF ops only, so the evaluation functions run inside
SavedModel signatures; random choices are stateless and take an explicit ``[2]`` seed; one draw
per clip, applied to every frame. Frames stay uint8 RGB 0..255: models normalise themselves.

Spatial conventions (mmaction2 0.x, see docs/data_pipeline.md):
- short-side resize to ``short_side`` keeps the aspect ratio, long side ``int(long * scale + 0.5)``;
  skipped when the stored frames already have that short side (data_prep writes 256 by default);
- centre crop: offsets ``(size - crop) // 2``;
- three crops: squares of ``crop_size`` at the start, centre and end of the long side, centred on
  the short side; the reference's test views are ``short_side = crop_size = 256``;
- views of one video are ordered clip-major, then crop: view ``v = clip * num_crops + crop``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from tfsts.data import sampling, schema


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How evaluation (and serving) turns one video into ``num_views`` clips.

    Example:
        >>> spec = ViewSpec(num_frames=8, frame_interval=8, num_clips=10, num_crops=3, crop_size=256)
        >>> spec.num_views
        30
    """

    num_frames: int
    frame_interval: int = 1
    sampling: str = "dense"
    num_clips: int = 1
    num_crops: int = 1
    short_side: int = 256
    crop_size: int = 224

    def __post_init__(self) -> None:
        if self.sampling not in sampling.SAMPLINGS:
            raise ValueError(f"ViewSpec.sampling={self.sampling!r}: use one of {sampling.SAMPLINGS}")
        if self.num_crops not in (1, 3):
            raise ValueError(f"ViewSpec.num_crops={self.num_crops}: use 1 (centre) or 3 (along the long side)")
        for name in ("num_frames", "frame_interval", "num_clips", "short_side", "crop_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ViewSpec.{name}={value!r}: must be a positive int")
        if self.crop_size > self.short_side:
            raise ValueError(
                f"ViewSpec.crop_size={self.crop_size} > short_side={self.short_side}: a crop cannot be larger "
                "than the resized frame; lower crop_size or raise short_side"
            )

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops


# --- Decoding --------------------------------------------------------------------------------
def decode_jpegs(jpegs: tf.Tensor) -> tf.Tensor:
    """uint8 [N, H, W, 3] from a [N] tf.string tensor of same-size JPEGs."""
    return tf.map_fn(
        lambda x: tf.io.decode_jpeg(x, channels=3, dct_method="INTEGER_FAST"),
        jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8), parallel_iterations=16,
    )


def gather_decode(jpegs: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """uint8 [*indices.shape, H, W, 3]: decode each distinct sampled frame once, then gather.

    (Overlapping test clips share frames: 10 clips of 8x8 in a 300-frame video decode at most
    80 distinct frames, not 300.)
    """
    flat = tf.reshape(indices, [-1])
    unique, position = tf.unique(flat)
    decoded = decode_jpegs(tf.gather(jpegs, unique))
    frames = tf.gather(decoded, position)
    shape = tf.concat([tf.shape(indices), tf.shape(decoded)[1:]], 0)
    return tf.reshape(frames, shape)


# --- Geometry ----------------------------------------------------------------------------------
def short_side_size(height: tf.Tensor, width: tf.Tensor, short_side: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """(new_height, new_width) int32 with the shorter side = short_side (mmcv ``rescale_size``)."""
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    scale = tf.cast(short_side, tf.float64) / tf.minimum(h, w)
    new_h = tf.cast(tf.floor(h * scale + 0.5), tf.int32)
    new_w = tf.cast(tf.floor(w * scale + 0.5), tf.int32)
    return new_h, new_w


def resize_short_side(frames: tf.Tensor, short_side: int) -> tf.Tensor:
    """uint8 [..., h, w, 3] resized (bilinear, no antialias, as cv2) so min(h, w) = short_side; no-op if already."""
    shape = tf.shape(frames)
    height, width = shape[-3], shape[-2]
    new_h, new_w = short_side_size(height, width, short_side)

    def resize() -> tf.Tensor:
        lead = shape[:-3]
        flat = tf.reshape(frames, tf.concat([[-1], shape[-3:]], 0))
        out = _to_uint8(_resize_bilinear(flat, tf.stack([new_h, new_w])))
        return tf.reshape(out, tf.concat([lead, tf.stack([new_h, new_w, 3])], 0))

    same = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
    return tf.cond(same, lambda: frames, resize)


def crop_offsets(height: tf.Tensor, width: tf.Tensor, crop_size: int, num_crops: int) -> tf.Tensor:
    """int32 [num_crops, 2] (y, x) offsets: centre (1) or start/centre/end of the long side (3)."""
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    cy = (height - crop_size) // 2
    cx = (width - crop_size) // 2
    if num_crops == 1:
        return tf.stack([cy, cx])[None]
    if num_crops != 3:
        raise ValueError(f"num_crops={num_crops}: use 1 or 3")
    landscape = width >= height
    along_x = tf.stack([tf.stack([cy, 0]), tf.stack([cy, cx]), tf.stack([cy, width - crop_size])])
    along_y = tf.stack([tf.stack([0, cx]), tf.stack([cy, cx]), tf.stack([height - crop_size, cx])])
    return tf.where(landscape, along_x, along_y)


def spatial_crops(frames: tf.Tensor, crop_size: int, num_crops: int) -> tf.Tensor:
    """uint8 [C, num_crops, T, S, S, 3] from frames [C, T, H, W, 3] (fixed crop positions)."""
    shape = tf.shape(frames)
    offsets = crop_offsets(shape[2], shape[3], crop_size, num_crops)
    crops = [frames[:, :, offsets[k, 0]:offsets[k, 0] + crop_size, offsets[k, 1]:offsets[k, 1] + crop_size]
             for k in range(num_crops)]
    return tf.stack(crops, axis=1)


def random_resized_crop_box(
    height: Any, width: Any, seed: Any, *, area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3), max_attempts: int = 10,
) -> tf.Tensor:
    """int32 [4] = (y, x, h, w): mmaction2 ``RandomResizedCrop.get_crop_bbox`` with stateless draws.

    ``max_attempts`` candidates (area uniform in ``area_range`` of the frame, aspect ratio
    log-uniform); the first that fits is used with a uniform offset; none fits -> the centred
    square of the short side.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    s_ratio, s_area, s_x, s_y = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(4)]
    h = tf.cast(height, tf.int32)
    w = tf.cast(width, tf.int32)
    area = tf.cast(h * w, tf.float32)
    log_lo, log_hi = tf.math.log(aspect_ratio_range[0]), tf.math.log(aspect_ratio_range[1])
    ratios = tf.exp(tf.random.stateless_uniform([max_attempts], s_ratio, log_lo, log_hi))
    areas = tf.random.stateless_uniform([max_attempts], s_area, area_range[0], area_range[1]) * area
    cand_w = tf.cast(tf.round(tf.sqrt(areas * ratios)), tf.int32)
    cand_h = tf.cast(tf.round(tf.sqrt(areas / ratios)), tf.int32)
    fits = tf.logical_and(cand_h <= h, cand_w <= w)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    side = tf.minimum(h, w)
    crop_h = tf.where(tf.reduce_any(fits), cand_h[first], side)
    crop_w = tf.where(tf.reduce_any(fits), cand_w[first], side)
    x = tf.random.stateless_uniform([], s_x, 0, w - crop_w + 1, dtype=tf.int32)
    y = tf.random.stateless_uniform([], s_y, 0, h - crop_h + 1, dtype=tf.int32)
    x = tf.where(tf.reduce_any(fits), x, (w - side) // 2)
    y = tf.where(tf.reduce_any(fits), y, (h - side) // 2)
    return tf.stack([y, x, crop_h, crop_w])


MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)


def multi_scale_crop_box(
    height: Any, width: Any, seed: Any, *, scales: tuple[float, ...] = MULTI_SCALES, max_wh_scale_gap: int = 1,
) -> tf.Tensor:
    """int32 [4] = (y, x, h, w): mmaction2 ``MultiScaleCrop`` (TSN), fixed 5 positions, no random offsets.

    Crop sides are ``int(min(h, w) * s)`` for s in ``scales``, (w, h) pairs whose scale indices
    differ by at most ``max_wh_scale_gap``, placed at one of the four corners or the centre.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    h = tf.cast(height, tf.int32)
    w = tf.cast(width, tf.int32)
    base = tf.cast(tf.minimum(h, w), tf.float64)
    sizes = tf.cast(base * tf.constant(scales, tf.float64), tf.int32)
    pairs = [(i, j) for i in range(len(scales)) for j in range(len(scales)) if abs(i - j) <= max_wh_scale_gap]
    pick = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 0), 0, len(pairs), tf.int32)
    pair = tf.gather(tf.constant(pairs, tf.int32), pick)
    crop_w, crop_h = sizes[pair[0]], sizes[pair[1]]
    w_step = (w - crop_w) // 4
    h_step = (h - crop_h) // 4
    positions = tf.stack([
        tf.stack([0, 0]), tf.stack([0, 4 * w_step]), tf.stack([4 * h_step, 0]),
        tf.stack([4 * h_step, 4 * w_step]), tf.stack([2 * h_step, 2 * w_step]),
    ])
    where = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 1), 0, 5, tf.int32)
    return tf.concat([positions[where], tf.stack([crop_h, crop_w])], 0)


def scale_box(box: tf.Tensor, scale_y: tf.Tensor, scale_x: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """A (y, x, h, w) box drawn on a resized frame, mapped back to the stored frame's pixels."""
    y = tf.cast(tf.round(tf.cast(box[0], tf.float64) * scale_y), tf.int32)
    x = tf.cast(tf.round(tf.cast(box[1], tf.float64) * scale_x), tf.int32)
    bh = tf.maximum(tf.cast(tf.round(tf.cast(box[2], tf.float64) * scale_y), tf.int32), 1)
    bw = tf.maximum(tf.cast(tf.round(tf.cast(box[3], tf.float64) * scale_x), tf.int32), 1)
    y = tf.clip_by_value(y, 0, tf.cast(height, tf.int32) - bh)
    x = tf.clip_by_value(x, 0, tf.cast(width, tf.int32) - bw)
    return tf.stack([y, x, bh, bw])


def decode_crop_resize(jpegs: tf.Tensor, box: tf.Tensor, crop_size: int) -> tf.Tensor:
    """uint8 [N, S, S, 3]: decode only ``box`` of each JPEG (one box for all), resize to S x S.

    ``tf.image.decode_and_crop_jpeg`` skips the IDCT of blocks outside the box. The resize is
    bilinear without antialias (cv2's, which mmaction2 uses); aspect ratio is not kept.
    """
    crops = tf.map_fn(
        lambda x: tf.image.decode_and_crop_jpeg(x, box, channels=3, dct_method="INTEGER_FAST"),
        jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8), parallel_iterations=16,
    )
    return _to_uint8(_resize_bilinear(crops, [crop_size, crop_size]))


def _resize_bilinear(images: tf.Tensor, size: Any) -> tf.Tensor:
    """float32 bilinear resize (half-pixel centres, no antialias) of uint8 images.

    Casting to float32 first gives the same values as resizing the uint8 tensor (the kernel
    converts each tap to float either way) but runs the float kernel, about 1.7x cheaper in CPU
    here (2.5 vs 1.4 ms for 8 crops to 224; benchmarks/bench_input.py).
    """
    return tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    """Round a bilinear resize of uint8 pixels (a convex combination, so within 0..255) back to uint8."""
    return tf.cast(x + 0.5, tf.uint8)


def train_clip_from_jpegs(
    jpegs: tf.Tensor, height: Any, width: Any, seed: Any, *, num_frames: int, frame_interval: int = 1,
    sampling_mode: str = "dense", crop_size: int = 224, short_side: int | tuple[int, int] = 256,
    crop: str = "random_resized", area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 [T, S, S, 3], int32 [T] indices): one training clip, one crop draw for all frames.

    ``short_side``: the frame is (virtually) resized to this short side first, or to a short side
    drawn uniformly from a ``(lo, hi)`` range (scale jitter); the crop box is drawn on that frame
    and mapped back to stored pixels, so the frames are decoded-and-cropped, then resized once.
    ``crop``: "random_resized" (mmaction2 RandomResizedCrop defaults), "multi_scale" (TSN
    MultiScaleCrop) or "center".
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    s_sample, s_side, s_crop = [tf.random.experimental.stateless_fold_in(seed, i) for i in (10, 11, 12)]
    n = tf.shape(jpegs)[0]
    indices = sampling.frame_indices(n, num_frames=num_frames, frame_interval=frame_interval,
                                     sampling=sampling_mode, training=True, seed=s_sample)[0]
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    if isinstance(short_side, (tuple, list)):
        side = tf.random.stateless_uniform([], s_side, short_side[0], short_side[1] + 1, dtype=tf.int32)
    else:
        side = tf.constant(short_side, tf.int32)
    rh, rw = short_side_size(height, width, side)
    if crop == "random_resized":
        box = random_resized_crop_box(rh, rw, s_crop, area_range=area_range, aspect_ratio_range=aspect_ratio_range)
    elif crop == "multi_scale":
        box = multi_scale_crop_box(rh, rw, s_crop)
    elif crop == "center":
        off = crop_offsets(rh, rw, crop_size, 1)[0]
        box = tf.concat([off, [crop_size, crop_size]], 0)
    else:
        raise ValueError(f"crop={crop!r}: use 'random_resized', 'multi_scale' or 'center'")
    scale_y = tf.cast(height, tf.float64) / tf.cast(rh, tf.float64)
    scale_x = tf.cast(width, tf.float64) / tf.cast(rw, tf.float64)
    box = scale_box(box, scale_y, scale_x, height, width)
    frames = decode_crop_resize(tf.gather(jpegs, indices), box, crop_size)
    return tf.ensure_shape(frames, [num_frames, crop_size, crop_size, 3]), indices


# --- Evaluation views ----------------------------------------------------------------------------
def eval_indices(num_video_frames: Any, spec: ViewSpec) -> tf.Tensor:
    """int32 [num_clips, num_frames]: the evaluation sampler of ``spec`` (deterministic)."""
    return sampling.frame_indices(num_video_frames, num_frames=spec.num_frames, frame_interval=spec.frame_interval,
                                  sampling=spec.sampling, num_clips=spec.num_clips, training=False)


def eval_views_from_jpegs(jpegs: Any, spec: ViewSpec) -> tf.Tensor:
    """uint8 [V, T, S, S, 3] evaluation views of one video from all its encoded JPEG frames.

    Samples as evaluation samples (``spec``), decodes only the sampled frames (each distinct frame
    once), resizes the short side to ``spec.short_side``, takes the centre or three crops.
    Views are clip-major, then crop. Core TF ops only: safe inside ``tf.function`` / SavedModel.

    Example:
        >>> views = eval_views_from_jpegs(sequence["image/encoded"], ViewSpec(8, 8, num_clips=10, num_crops=3))
    """
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    indices = eval_indices(tf.shape(jpegs)[0], spec)
    frames = gather_decode(jpegs, indices)  # [C, T, H, W, 3]
    frames = resize_short_side(frames, spec.short_side)
    views = spatial_crops(frames, spec.crop_size, spec.num_crops)  # [C, K, T, S, S, 3]
    views = tf.reshape(views, [spec.num_views, spec.num_frames, spec.crop_size, spec.crop_size, 3])
    return views


def eval_views_from_serialized(serialized: Any, spec: ViewSpec) -> tf.Tensor:
    """uint8 [V, T, S, S, 3] from one serialized data_prep video SequenceExample (tfsts/data/schema.py)."""
    _, sequence = schema.parse_video(serialized)
    return eval_views_from_jpegs(sequence[schema.IMAGE_ENCODED], spec)
