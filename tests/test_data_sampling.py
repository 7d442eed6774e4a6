"""Samplers against an independent NumPy transcription of mmaction2 0.x SampleFrames (pipelines.md)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.data_pipeline_helpers import ref_indices, ref_test_starts, train_branch
from tfsts.data import sampling


CASES = [(300, 32, 2, 10), (300, 8, 8, 10), (250, 8, 8, 1), (64, 8, 8, 1), (63, 8, 8, 1), (20, 8, 8, 1),
         (5, 32, 2, 3), (1, 8, 8, 2), (70, 8, 8, 10), (66, 32, 2, 4), (17, 4, 4, 2)]


@pytest.mark.parametrize("n,length,interval,clips", CASES)
def test_dense_test_mode_matches_mmaction2(n, length, interval, clips):
    got = sampling.dense_indices(n, num_frames=length, frame_interval=interval, num_clips=clips, training=False)
    want = ref_indices(ref_test_starts(n, length * interval, clips), n, length, interval)
    np.testing.assert_array_equal(got.numpy(), want)


def test_reference_example_starts():
    got = sampling.dense_indices(300, num_frames=32, frame_interval=2, num_clips=10, training=False).numpy()
    assert got[:, 0].tolist() == [11, 35, 59, 82, 106, 130, 154, 177, 201, 225]


@pytest.mark.parametrize("n,length,interval,clips", CASES + [(9, 1, 1, 8), (8, 1, 1, 8), (12, 2, 3, 8)])
def test_dense_train_mode_follows_each_mmaction2_branch(n, length, interval, clips):
    span = length * interval
    branch = train_branch(n, span, clips)
    starts_seen = set()
    for s in range(20):
        got = sampling.dense_indices(n, num_frames=length, frame_interval=interval, num_clips=clips, training=True,
                                     seed=(s, 7)).numpy()
        # every clip is start + arange(L) * s modulo N: recover the start of each clip from its first frame
        starts = got[:, 0]
        np.testing.assert_array_equal(got, ref_indices(starts, n, length, interval))
        if branch == "windows":
            avg = (n - span + 1) // clips
            assert np.all((starts >= np.arange(clips) * avg) & (starts < np.arange(clips) * avg + avg)), starts
        elif branch == "sorted":
            assert np.all(np.diff(starts) >= 0) and starts.min() >= 0 and starts.max() <= n - span
        elif branch == "spread":
            np.testing.assert_array_equal(starts, np.round(np.arange(clips) * (n - span + 1) / clips))
        else:
            np.testing.assert_array_equal(starts, 0)
        starts_seen.add(tuple(starts))
    if branch == "windows" and (n - span + 1) // clips > 1:
        assert len(starts_seen) > 1, "the random start never changed"


def test_dense_train_start_is_uniform_over_the_window():
    # 1 clip of 8x8 in 100 frames: start uniform over 0..36 (37 values); 3700 draws, each count ~100 +- 4 sigma
    seeds = tf.stack([tf.range(3700, dtype=tf.int64), tf.zeros([3700], tf.int64)], 1)
    draw = tf.function(lambda seeds: tf.map_fn(
        lambda s: sampling.dense_indices(100, num_frames=8, frame_interval=8, training=True, seed=s)[0, 0],
        seeds, fn_output_signature=tf.int32, parallel_iterations=64))
    starts = draw(seeds).numpy()
    counts = np.bincount(starts, minlength=37)
    assert len(counts) == 37 and counts.min() > 100 - 40 and counts.max() < 100 + 40, counts


@pytest.mark.parametrize("n", [8, 9, 16, 40, 121, 5, 1])
def test_uniform_test_mode_is_segment_centres(n):
    got = sampling.uniform_indices(n, num_segments=8, training=False).numpy()
    want = ref_indices(ref_test_starts(n, 1, 8), n, 1, 1)[:, 0][None]
    np.testing.assert_array_equal(got, want)
    if n >= 8:  # the centre of each of 8 equal segments
        np.testing.assert_array_equal(got[0], ((np.arange(8) + 0.5) * n / 8).astype(int))


@pytest.mark.parametrize("n", [8, 9, 40, 121, 7, 3])
def test_uniform_train_mode_one_frame_per_segment(n):
    for s in range(20):
        got = sampling.uniform_indices(n, num_segments=8, training=True, seed=(s, 1)).numpy()
        assert got.shape == (1, 8)
        branch = train_branch(n, 1, 8)
        if branch == "windows":
            avg = n // 8
            assert np.all((got[0] >= np.arange(8) * avg) & (got[0] < np.arange(8) * avg + avg))
        elif branch == "sorted":
            assert np.all(np.diff(got[0]) >= 0)
        elif branch == "spread":
            np.testing.assert_array_equal(got[0], np.round(np.arange(8) * n / 8) % n)


def test_short_videos_loop():
    got = sampling.dense_indices(5, num_frames=8, frame_interval=2, training=False).numpy()
    np.testing.assert_array_equal(got, [[0, 2, 4, 1, 3, 0, 2, 4]])


def test_frame_indices_dispatch_and_errors():
    a = sampling.frame_indices(90, num_frames=8, sampling="uniform", num_clips=3, training=True, seed=(1, 2))
    assert a.shape == (1, 8)  # training: one clip
    b = sampling.frame_indices(90, num_frames=8, frame_interval=4, num_clips=3, training=False)
    assert b.shape == (3, 8)
    with pytest.raises(ValueError, match="sampling"):
        sampling.frame_indices(90, num_frames=8, sampling="random", training=True)
    with pytest.raises(ValueError, match="num_frames"):
        sampling.frame_indices(90, num_frames=0, training=True)


def test_same_indices_eagerly_in_tf_function_and_in_tf_data():
    seeds = [(s, 3) for s in range(6)]
    eager = [sampling.frame_indices(77, num_frames=8, frame_interval=4, training=True, seed=s).numpy() for s in seeds]
    fn = tf.function(lambda n, s: sampling.frame_indices(n, num_frames=8, frame_interval=4, training=True, seed=s))
    graph = [fn(tf.constant(77), tf.constant(s, tf.int64)).numpy() for s in seeds]
    data = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64)).map(
        lambda s: sampling.frame_indices(77, num_frames=8, frame_interval=4, training=True, seed=s))
    for e, g, d in zip(eager, graph, data.as_numpy_iterator()):
        np.testing.assert_array_equal(e, g)
        np.testing.assert_array_equal(e, d)
