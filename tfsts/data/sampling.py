"""Frame samplers: pure functions of (frames in the video, seed) -> frame indices.

Each returns int32 ``[num_clips, clip_len]`` indices into the video's frames, computed with
core TF ops (so they run eagerly, inside ``tf.data`` and inside SavedModel signatures) and
with stateless random ops (the seed is a ``[2]`` int tensor; the same seed gives the same
indices in every process). They follow mmaction2 0.x ``SampleFrames``, which the reference's
numbers were measured with (see docs/data_pipeline.md for the formulas):

- dense clips ``L x s`` (``8x8``, ``32x2``): train: one random start per clip inside
  ``avg = (N - L*s + 1) // num_clips`` wide windows; test: ``num_clips`` evenly spaced clips
  starting at ``int(i * avg + avg / 2)`` with ``avg = (N - L*s + 1) / num_clips``.
- uniform segments (TSN / the SSv2 recipe): the same sampler with ``L = 1, s = 1`` and
  ``num_segments`` "clips" of one frame, returned as ONE clip of ``num_segments`` frames.

Clips longer than the video loop: indices are taken modulo N (mmaction2's ``loop``), so a
2-second video still gives a 32x2 clip (frames repeat). SlowFast models take one clip of
the fast pathway's length and split the pathways inside the model: sample them as dense.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

SAMPLINGS = ("dense", "uniform")


def _starts_train(n: tf.Tensor, span: int, num_clips: int, seed: Any) -> tf.Tensor:
    """mmaction2 0.x ``_get_train_clips``: int32 [num_clips] clip starts (before the modulo)."""
    n = tf.cast(n, tf.int32)
    free = n - span + 1  # number of valid starts when the clip fits
    avg = tf.math.floordiv(free, num_clips)  # Python-style floor (negative when the clip does not fit)
    base = tf.range(num_clips, dtype=tf.int32) * tf.maximum(avg, 1)
    jitter = tf.random.stateless_uniform([num_clips], seed, minval=0, maxval=tf.maximum(avg, 1), dtype=tf.int32)
    seed_b = tf.random.experimental.stateless_fold_in(seed, 1)
    draws = tf.random.stateless_uniform([num_clips], seed_b, minval=0, maxval=tf.maximum(free, 1), dtype=tf.int32)
    ratio = tf.cast(free, tf.float64) / num_clips
    spread = tf.cast(tf.round(tf.range(num_clips, dtype=tf.float64) * ratio), tf.int32)  # np.round: half to even
    return tf.case(
        [
            (avg > 0, lambda: base + jitter),
            (n > max(num_clips, span), lambda: tf.sort(draws)),
            (tf.equal(avg, 0), lambda: spread),
        ],
        default=lambda: tf.zeros([num_clips], tf.int32),
    )


def _starts_test(n: tf.Tensor, span: int, num_clips: int, shift: float = 0.5) -> tf.Tensor:
    """mmaction2 0.x ``_get_test_clips``: ``int(i * avg + avg * shift)``, or 0 for short videos."""
    n = tf.cast(n, tf.int32)
    avg = tf.cast(n - span + 1, tf.float64) / num_clips
    starts = tf.cast(tf.range(num_clips, dtype=tf.float64) * avg + avg * shift, tf.int32)  # truncation = int()
    return tf.where(n > span - 1, starts, tf.zeros_like(starts))


def _clip_indices(n: tf.Tensor, starts: tf.Tensor, clip_len: int, frame_interval: int) -> tf.Tensor:
    offsets = tf.range(clip_len, dtype=tf.int32) * frame_interval
    return tf.math.floormod(starts[:, None] + offsets[None, :], tf.maximum(tf.cast(n, tf.int32), 1))


def dense_indices(
    num_video_frames: Any, *, num_frames: int, frame_interval: int = 1, num_clips: int = 1,
    training: bool, seed: Any = (0, 0),
) -> tf.Tensor:
    """int32 [num_clips, num_frames]: dense ``num_frames x frame_interval`` clips (looped when short).

    Example: ``dense_indices(300, num_frames=32, frame_interval=2, num_clips=10, training=False)``
    starts the clips at 11, 35, 59, ..., 225 (mmaction2 0.x test mode).
    """
    _check(num_frames, frame_interval, num_clips)
    span = num_frames * frame_interval
    if training:
        starts = _starts_train(num_video_frames, span, num_clips, _seed(seed))
    else:
        starts = _starts_test(num_video_frames, span, num_clips)
    return _clip_indices(num_video_frames, starts, num_frames, frame_interval)


def uniform_indices(
    num_video_frames: Any, *, num_segments: int, num_clips: int = 1, training: bool, seed: Any = (0, 0)
) -> tf.Tensor:
    """int32 [num_clips, num_segments]: one frame per equal segment (TSN; the reference's SSv2 recipe).

    Train: a random frame in each segment (mmaction2 ``SampleFrames(clip_len=1, num_clips=8)``).
    Test: the centre frame of each segment; with ``num_clips = k > 1`` clip j takes the frame at
    ``(j + 0.5) / k`` of each segment (k = 2 is mmaction2's ``twice_sample``-like spread).
    Training always returns one clip.
    """
    _check(num_segments, 1, num_clips)
    if training:
        starts = _starts_train(num_video_frames, 1, num_segments, _seed(seed))
        return _clip_indices(num_video_frames, starts, 1, 1)[None, :, 0]
    clips = [_starts_test(num_video_frames, 1, num_segments, (j + 0.5) / num_clips) for j in range(num_clips)]
    return tf.math.floormod(tf.stack(clips), tf.maximum(tf.cast(num_video_frames, tf.int32), 1))


def frame_indices(
    num_video_frames: Any, *, num_frames: int, frame_interval: int = 1, sampling: str = "dense",
    num_clips: int = 1, training: bool, seed: Any = (0, 0),
) -> tf.Tensor:
    """int32 [clips, num_frames] for either sampler; training gives one clip (``num_clips`` is for testing).

    ``sampling="uniform"`` reads ``num_frames`` as the number of segments and ignores
    ``frame_interval``.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r}: use one of {SAMPLINGS}")
    clips = 1 if training else num_clips
    if sampling == "dense":
        return dense_indices(num_video_frames, num_frames=num_frames, frame_interval=frame_interval,
                             num_clips=clips, training=training, seed=seed)
    return uniform_indices(num_video_frames, num_segments=num_frames, num_clips=clips, training=training, seed=seed)


def _seed(seed: Any) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(seed), tf.int64)


def _check(num_frames: int, frame_interval: int, num_clips: int) -> None:
    for name, value in (("num_frames", num_frames), ("frame_interval", frame_interval), ("num_clips", num_clips)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive int")
