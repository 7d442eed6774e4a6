"""Clip consistency of every augmentation (one draw per clip), eagerly and inside tf.data.

The clip is T copies of one textured frame: a clip-consistent op must give T identical output
frames (a per-frame draw would not); each op must also change something for some seed.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfsts.data import augment, video

T = 4
REPO = Path(__file__).resolve().parents[1]


def texture(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * y) % 256], -1).astype(np.float64)
    img += rng.integers(-20, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


CLIP = np.repeat(texture()[None], T, axis=0)


def jpegs(frames: np.ndarray) -> tf.Tensor:
    out = []
    for f in frames:
        buffer = io.BytesIO()
        Image.fromarray(f).save(buffer, format="JPEG", quality=95)
        out.append(buffer.getvalue())
    return tf.constant(out)


def both(fn, seeds):
    """fn(seed) eagerly and inside a tf.data map: the same results."""
    eager = [fn(tf.constant(s, tf.int64)) for s in seeds]
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64)).map(fn)
    for e, d in zip(eager, ds):
        tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), e, d)
    return [tf.nest.map_structure(np.asarray, e) for e in eager]


SEEDS = [(s, 9) for s in range(8)]


def assert_clip_consistent(frames: np.ndarray) -> None:
    for t in range(1, frames.shape[0]):
        np.testing.assert_array_equal(frames[t], frames[0], err_msg=f"frame {t} differs from frame 0")


@pytest.mark.parametrize("crop", ["random_resized", "multi_scale", "center"])
def test_train_clip_crop_is_one_draw_per_clip(crop):
    encoded = jpegs(CLIP)
    results = both(lambda s: video.train_clip_from_jpegs(encoded, 64, 80, s, num_frames=T, crop_size=32,
                                                          short_side=64, crop=crop)[0], SEEDS)
    for frames in results:
        assert frames.shape == (T, 32, 32, 3) and frames.dtype == np.uint8
        assert_clip_consistent(frames)
    distinct = {r.tobytes() for r in results}
    assert len(distinct) == (1 if crop == "center" else len(results)) or (crop == "multi_scale" and len(distinct) > 2)


def test_random_flip_consistent_and_label_swap():
    table = augment.flip_label_table({3: 4, 4: 3})
    out = both(lambda s: augment.random_flip(tf.constant(CLIP), tf.constant(3), s, table=table), SEEDS)
    flips = 0
    for frames, label, flipped in out:
        assert_clip_consistent(frames)
        if flipped:
            flips += 1
            np.testing.assert_array_equal(frames, CLIP[:, :, ::-1])
            assert label == 4
        else:
            np.testing.assert_array_equal(frames, CLIP)
            assert label == 3
    assert 0 < flips < len(out)


@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 5, 7, 3), (2, 3, 5, 7, 3), (3, 5, 7, 1)])
def test_flip_left_right_equals_numpy_flip_of_the_width_axis(shape):
    x = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
    want = x[..., ::-1, :]
    np.testing.assert_array_equal(augment.flip_left_right(tf.constant(x)).numpy(), want)
    (got,) = list(tf.data.Dataset.from_tensors(x).map(augment.flip_left_right).as_numpy_iterator())
    np.testing.assert_array_equal(got, want)


def test_color_jitter_consistent_and_matches_brightness_formula():
    out = both(lambda s: augment.color_jitter(tf.constant(CLIP), s), SEEDS)
    for frames in out:
        assert frames.dtype == np.uint8
        assert_clip_consistent(frames)
        assert not np.array_equal(frames, CLIP)
    # brightness only: every pixel scaled by one factor f (clip-wide), rounded
    (frames,) = both(lambda s: augment.color_jitter(tf.constant(CLIP), s, contrast=0, saturation=0, hue=0), SEEDS[:1])
    x = CLIP.astype(np.float64)
    mask = (x > 40) & (x < 150)
    f = np.median(frames[mask] / x[mask])
    np.testing.assert_allclose(frames, np.clip(np.round(x * f), 0, 255), atol=1.01)


def test_mixup_and_cutmix_match_their_definition_and_keep_clips_consistent():
    rng = np.random.default_rng(1)
    batch = np.repeat(rng.integers(0, 256, (4, 1, 16, 16, 3), dtype=np.uint8), T, axis=1)
    soft = augment.soft_labels(tf.constant([0, 1, 2, 1]), 3, 0.1).numpy()
    np.testing.assert_allclose(soft[0], [1 - 0.1 + 0.1 / 3, 0.1 / 3, 0.1 / 3], rtol=1e-6)
    for seed in SEEDS[:4]:
        frames, target, lam = [t.numpy() for t in augment.mixup_cutmix(tf.constant(batch), tf.constant(soft), seed,
                                                                       mixup=0.4)]
        want = np.round(batch * lam + batch[::-1].astype(np.float64) * (1 - lam))
        np.testing.assert_allclose(frames, want, atol=1.0)
        np.testing.assert_allclose(target, soft * lam + soft[::-1] * (1 - lam), rtol=1e-5)
        frames, target, lam = [t.numpy() for t in augment.mixup_cutmix(tf.constant(batch), tf.constant(soft), seed,
                                                                       cutmix=1.0)]
        for b in range(4):
            assert_clip_consistent(frames[b])  # the same box in every frame
            from_other = np.all(frames[b, 0] == batch[3 - b, 0], -1) & np.any(batch[b, 0] != batch[3 - b, 0], -1)
            kept = 1 - from_other.mean()
            assert abs(kept - lam) < 0.02  # lam is the kept area (ties where the pixels agree aside)
        np.testing.assert_allclose(target, soft * lam + soft[::-1] * (1 - lam), rtol=1e-5)


def test_mixup_cutmix_in_tf_data_equals_eager():
    batch = tf.constant(np.repeat(np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 1, 8, 8, 3), 2, axis=1))
    soft = augment.soft_labels(tf.constant([0, 1, 2, 0]), 3)
    both(lambda s: augment.mixup_cutmix(batch, soft, s, mixup=0.2, cutmix=1.0), SEEDS[:4])


def test_crop_boxes_follow_mmaction2_ranges():
    areas, ratios = [], []
    for s in range(200):
        y, x, h, w = video.random_resized_crop_box(256, 340, (s, 0)).numpy()
        assert 0 <= y and 0 <= x and y + h <= 256 and x + w <= 340
        areas.append(h * w / (256 * 340))
        ratios.append(w / h)
    assert 0.07 < min(areas) and max(areas) <= 1.0 and np.mean(areas) > 0.3
    assert 3 / 4 - 0.05 < min(ratios) and max(ratios) < 4 / 3 + 0.05
    # nothing fits -> centred square of the short side
    assert video.random_resized_crop_box(256, 340, (1, 1), area_range=(2.0, 3.0)).numpy().tolist() == [0, 42, 256, 256]
    sizes = {int(256 * s) for s in video.MULTI_SCALES}
    for s in range(50):
        y, x, h, w = video.multi_scale_crop_box(256, 340, (s, 0)).numpy()
        assert h in sizes and w in sizes and y + h <= 256 and x + w <= 340
        assert x in (0, (340 - w) // 4 * 4, (340 - w) // 4 * 2) and y in (0, (256 - h) // 4 * 4, (256 - h) // 4 * 2)


def test_crop_offsets_landscape_and_portrait():
    np.testing.assert_array_equal(video.crop_offsets(256, 340, 256, 3).numpy(), [[0, 0], [0, 42], [0, 84]])
    np.testing.assert_array_equal(video.crop_offsets(340, 256, 224, 3).numpy(), [[0, 16], [58, 16], [116, 16]])
    np.testing.assert_array_equal(video.crop_offsets(256, 340, 224, 1).numpy(), [[16, 58]])


@pytest.mark.parametrize("make", [
    lambda: keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.7, seed=1),
    lambda: keras.layers.RandomRotation(0.2, seed=1),
    lambda: keras.layers.RandomContrast(0.5, seed=1),
    lambda: keras.layers.RandomHue(0.3, value_range=(0, 255), seed=1),
])
def test_keras_layers_after_the_iterator_draw_once_per_clip(make):
    clip_augment = augment.ClipAugment(make())
    batch = tf.constant(np.stack([CLIP, np.repeat(texture(seed=3)[None], T, 0)]))
    eager = clip_augment(batch).numpy()
    graph = tf.function(clip_augment)(batch).numpy()
    for out in (eager, graph):
        assert out.dtype == np.uint8 and out.shape == batch.shape
        for clip in out:
            assert_clip_consistent(clip)
    assert not np.array_equal(eager, batch.numpy()) or not np.array_equal(graph, batch.numpy())
    # a plain layer(clip) draws per frame: what ClipAugment exists to avoid
    per_frame = make()(tf.cast(batch[0], tf.float32), training=True).numpy()
    assert any(not np.array_equal(per_frame[t], per_frame[0]) for t in range(1, T)) or isinstance(
        make(), keras.layers.RandomContrast)


RESTORE_AUGMENT_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    from tfsts.data import augment
    from tfsts.training.loop import randaugment_state_variables
    batch_path, prefix, out_path = sys.argv[1:4]
    batch = tf.constant(np.load(batch_path))
    fresh = augment.clip_randaugment(2, 7, seed=11)  # another seed, and a draw of its own, before the restore
    unrestored = fresh(batch).numpy()
    tf.train.Checkpoint(randaugment=randaugment_state_variables({0: fresh})).read(prefix).assert_consumed()
    np.savez(out_path, unrestored=unrestored, first=fresh(batch).numpy(), second=fresh(batch).numpy())
""")


def test_clip_randaugment_seed_state_restores_draws_in_a_fresh_process(tmp_path):
    """The seed state the trainer checkpoints (the layer's seed-generator variables, saved by
    tfsts.training.loop.randaugment_state_variables) makes a fresh process repeat the next draws."""
    from tfsts.training.loop import randaugment_state_variables

    aug = augment.clip_randaugment(2, 7, seed=3)
    batch = np.stack([CLIP, CLIP[:, ::-1]])
    for _ in range(3):  # mid-run: the seed state has moved on from its initial value
        aug(tf.constant(batch))
    state = randaugment_state_variables({0: aug})
    assert state and all(isinstance(v, tf.Variable) for v in state)
    prefix = tf.train.Checkpoint(randaugment=state).write(str(tmp_path / "aug"))
    want = [aug(tf.constant(batch)).numpy() for _ in range(2)]
    assert not np.array_equal(want[0], want[1])  # successive draws differ: equality below is not luck
    np.save(tmp_path / "batch.npy", batch)
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", RESTORE_AUGMENT_SCRIPT, str(tmp_path / "batch.npy"), prefix,
                             str(tmp_path / "out.npz")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    assert not np.array_equal(got["unrestored"], want[0])  # without the restored state: other draws
    np.testing.assert_array_equal(got["first"], want[0])
    np.testing.assert_array_equal(got["second"], want[1])
