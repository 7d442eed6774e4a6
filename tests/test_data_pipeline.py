"""video_dataset / image_dataset on index-valued records written by data_prep (tests/data_pipeline_helpers.py).

Frame indices are read back from the pixels (tolerance: +-3 levels on steps of 8, see the helpers),
so every sampled index, view position, shard split and restore is checked exactly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfsts.data as data
from tests import data_pipeline_helpers as helpers
from tests.data_pipeline_helpers import ref_indices, ref_test_starts, train_branch

REPO = Path(__file__).resolve().parents[1]
# name: (kind, frames, label); shard_size 2 -> 3 shards
VIDEOS = {"v300": ("flat", 300, 0), "v20": ("flat", 20, 1), "v5": ("flat", 5, 2), "v64": ("flat", 64, 0),
          "v121": ("flat", 121, 1), "probe": ("probe", 40, 2)}
LENGTHS = {f"{k}.mkv": v[1] for k, v in VIDEOS.items()}
LABELS = {f"{k}.mkv": v[2] for k, v in VIDEOS.items()}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return helpers.make_video_records(tmp_path_factory.mktemp("videos"), VIDEOS)


def pattern(folder: Path) -> str:
    return str(folder / "train-*.tfrecord")


def file_order(folder: Path) -> list[str]:
    from data_prep.tfrecord import read_records
    from tfsts.data import schema

    ids = []
    for shard in sorted(folder.glob("train-*.tfrecord")):
        for record in read_records(str(shard)):
            ids.append(schema.parse_video(record)[0][schema.MEDIA_ID].numpy().decode())
    return ids


def eval_batches(folder: Path, **kwargs) -> list[dict[str, np.ndarray]]:
    ds = data.video_dataset(pattern(folder), training=False, **kwargs)
    return list(ds.as_numpy_iterator())


# --- Evaluation ----------------------------------------------------------------------------
@pytest.mark.parametrize("sampling,frames,interval,clips", [("dense", 8, 8, 3), ("dense", 4, 2, 1), ("uniform", 8, 1, 1),
                                                            ("uniform", 8, 1, 2)])
def test_eval_indices_exact_file_order_partial_last_batch(records, sampling, frames, interval, clips):
    batches = eval_batches(records, batch_size=4, num_frames=frames, frame_interval=interval, sampling=sampling,
                           num_clips=clips, crop_size=32, short_side=48)
    ids = [m.decode() for b in batches for m in b["media_id"]]
    assert ids == file_order(records)  # one pass, file order
    assert [len(b["label"]) for b in batches] == [4, 2]  # last batch kept
    assert [int(l) for b in batches for l in b["label"]] == [LABELS[i] for i in ids]
    for b in batches:
        assert b["frames"].dtype == np.uint8 and b["frames"].shape[1:] == (frames, 32, 32, 3)
        views = b["frames"].reshape(len(b["label"]), clips, frames, 32, 32, 3)
        for media_id, clip_views in zip(b["media_id"], views):
            n = LENGTHS[media_id.decode()]
            if media_id.decode() == "probe.mkv":
                continue  # striped, checked below
            got = helpers.read_index(clip_views)
            if sampling == "dense":
                want = ref_indices(ref_test_starts(n, frames * interval, clips), n, frames, interval)
            else:
                want = np.stack([((np.arange(frames) * (n / frames) + (n / frames) * (j + 0.5) / clips).astype(int)) % n
                                 if n > 0 else 0 for j in range(clips)])
            np.testing.assert_array_equal(got, want, err_msg=media_id.decode())


def test_three_crops_and_centre_crop_positions(records):
    # probe frames are 336 x 256: three 256 crops at x = 0, 40, 80 (start, centre, end); centre 224 crop at x = 56
    batches = eval_batches(records, batch_size=8, num_frames=4, frame_interval=5, num_clips=2, num_crops=3,
                           crop_size=256, short_side=256)
    (b,) = batches
    row = [m.decode() for m in b["media_id"]].index("probe.mkv")
    views = b["frames"].reshape(len(b["label"]), 6, 4, 256, 256, 3)[row]  # [clip * 3 + crop]
    offsets = helpers.stripe_offset(views[:, 0])
    assert offsets.tolist() == [0, 40, 80, 0, 40, 80]
    times = helpers.read_index(views[:, :, :16])  # the time band (rows 0..15)
    want = ref_indices(ref_test_starts(40, 20, 2), 40, 4, 5)
    np.testing.assert_array_equal(times, np.repeat(want, 3, axis=0))
    (c,) = eval_batches(records, batch_size=8, num_frames=4, frame_interval=5, crop_size=224, short_side=256)
    centre = c["frames"][[m.decode() for m in c["media_id"]].index("probe.mkv")]
    assert helpers.stripe_offset(centre[0]) == 56
    # other videos (96 x 64) were resized up to short side 256 (384 x 256) before cropping: still flat


def test_eval_views_from_serialized_and_jpegs_match_the_dataset_inside_a_graph(records):
    from data_prep.tfrecord import read_records
    from tfsts.data import schema

    spec = data.ViewSpec(num_frames=4, frame_interval=3, num_clips=2, num_crops=3, short_side=64, crop_size=48)
    shard = sorted(records.glob("train-*.tfrecord"))[0]
    record = next(iter(read_records(str(shard))))
    serving = tf.function(lambda s: data.eval_views_from_serialized(s, spec),
                          input_signature=[tf.TensorSpec([], tf.string)])
    views = serving(tf.constant(record)).numpy()
    assert views.shape == (6, 4, 48, 48, 3) and views.dtype == np.uint8
    jpegs = schema.parse_video(record)[1][schema.IMAGE_ENCODED]
    np.testing.assert_array_equal(data.eval_views_from_jpegs(jpegs, spec).numpy(), views)
    (b, *_) = eval_batches(records, batch_size=2, num_frames=4, frame_interval=3, num_clips=2, num_crops=3,
                           short_side=64, crop_size=48)
    np.testing.assert_array_equal(b["frames"][:6], views)  # video 0's 6 views come first (video-major)


# --- Training ------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling,frames,interval", [("dense", 8, 8), ("dense", 32, 2), ("uniform", 8, 1)])
def test_train_indices_follow_the_train_sampler(records, sampling, frames, interval):
    ds = data.video_dataset(pattern(records), training=True, batch_size=3, num_frames=frames, frame_interval=interval,
                            sampling=sampling, crop_size=32, seed=3, flip=False)
    seen = {}
    for b in ds.take(8).as_numpy_iterator():
        assert b["frames"].shape == (3, frames, 32, 32, 3)
        for media_id, clip in zip(b["media_id"], b["frames"]):
            media_id = media_id.decode()
            if media_id == "probe.mkv":
                continue
            n, got = LENGTHS[media_id], helpers.read_index(clip)
            span = frames * interval if sampling == "dense" else 1
            if sampling == "dense":
                start = got[0]
                np.testing.assert_array_equal(got, ref_indices(np.array([start]), n, frames, interval)[0])
                if train_branch(n, span, 1) == "windows":
                    assert 0 <= start <= n - span
                else:
                    assert start == 0, (media_id, got)
            else:
                if n >= 8:
                    avg = n // 8
                    assert np.all((got >= np.arange(8) * avg) & (got < np.arange(8) * avg + avg)), got
            seen.setdefault(media_id, set()).add(tuple(got))
    assert len(seen.get("v300.mkv", ())) >= 2 or len(seen.get("v121.mkv", ())) >= 2  # random starts change


def test_clips_per_record_repeats_the_k1_clip_and_adds_own_draws(records):
    kwargs = dict(training=True, num_frames=4, frame_interval=4, crop_size=32, seed=3, deterministic=True)
    single = [c for b in data.video_dataset(pattern(records), batch_size=3, **kwargs).take(4).as_numpy_iterator()
              for c in zip(b["media_id"], b["frames"], b["label"])]
    repeated = [c for b in data.video_dataset(pattern(records), batch_size=4, clips_per_record=2, **kwargs)
                .take(6).as_numpy_iterator() for c in zip(b["media_id"], b["frames"], b["label"])]
    assert len(repeated) == 2 * len(single)
    for (media_id, frames, label), first, second in zip(single, repeated[0::2], repeated[1::2]):
        assert first[0] == second[0] == media_id  # the record's two clips come out together
        np.testing.assert_array_equal(first[1], frames)  # clip 0 is the clip of clips_per_record=1
        assert first[2] == second[2] == label == LABELS[media_id.decode()]
        n = LENGTHS[media_id.decode()]
        if media_id.decode() != "probe.mkv":
            got = helpers.read_index(second[1])  # clip 1: a dense 4x4 clip of the same video
            np.testing.assert_array_equal(got, ref_indices(np.array([got[0]]), n, 4, 4)[0])
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(repeated[0::2], repeated[1::2]))  # own draws
    with pytest.raises(ValueError, match="clips_per_record=2 is for training"):
        data.video_dataset(pattern(records), training=False, batch_size=2, num_frames=4, clips_per_record=2)
    with pytest.raises(ValueError, match="clips_per_record=0"):
        data.video_dataset(pattern(records), batch_size=2, clips_per_record=0, **kwargs)


def first_batches(ds: tf.data.Dataset, count: int) -> list[dict[str, np.ndarray]]:
    return list(ds.take(count).as_numpy_iterator())


def test_deterministic_mode_repeats_and_seed_changes(records):
    kwargs = dict(training=True, batch_size=2, num_frames=4, frame_interval=4, crop_size=32, color_jitter=0.3,
                  deterministic=True, num_classes=3, mixup=0.2, cutmix=1.0, label_smoothing=0.1)
    a = first_batches(data.video_dataset(pattern(records), seed=5, **kwargs), 5)
    b = first_batches(data.video_dataset(pattern(records), seed=5, **kwargs), 5)
    c = first_batches(data.video_dataset(pattern(records), seed=6, **kwargs), 5)
    for x, y in zip(a, b):
        for key in ("frames", "label", "media_id", "soft_label"):
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["frames"], z["frames"]) for x, z in zip(a, c))
    assert a[0]["soft_label"].shape == (2, 3)
    np.testing.assert_allclose(a[0]["soft_label"].sum(1), 1.0, atol=1e-5)


RESTORE_SCRIPT = textwrap.dedent("""
    import sys, hashlib, json
    import tensorflow as tf
    import tfsts.data as data
    mode, pattern, prefix = sys.argv[1:4]
    ds = data.video_dataset(pattern, training=True, batch_size=2, num_frames=4, frame_interval=4, crop_size=32,
                            seed=11, deterministic=True, color_jitter=0.2, num_classes=3, mixup=0.5)
    it = iter(ds)
    ckpt = tf.train.Checkpoint(iterator=it)
    if mode == "save":
        for _ in range(4):  # mid-epoch: 8 of 6 records, the second epoch has begun
            next(it)
        ckpt.write(prefix)
    else:
        ckpt.read(prefix).assert_consumed()
    out = []
    for _ in range(3):
        b = next(it)
        out.append([hashlib.sha256(b["frames"].numpy().tobytes()).hexdigest(), b["media_id"].numpy().astype(str).tolist(),
                    b["soft_label"].numpy().round(6).tolist()])
    print("RESULT" + json.dumps(out))
""")


def run_script(*args: str) -> list:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", RESTORE_SCRIPT, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_iterator_restores_mid_epoch_in_process(records, tmp_path):
    kwargs = dict(training=True, batch_size=2, num_frames=4, frame_interval=4, crop_size=32, seed=11,
                  deterministic=True, color_jitter=0.2, num_classes=3, cutmix=1.0)
    it = iter(data.video_dataset(pattern(records), **kwargs))
    for _ in range(4):
        next(it)
    prefix = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "it"))
    want = [next(it) for _ in range(3)]
    again = iter(data.video_dataset(pattern(records), **kwargs))
    tf.train.Checkpoint(iterator=again).read(prefix).assert_consumed()
    for w in want:
        g = next(again)
        for key in ("frames", "media_id", "soft_label"):
            np.testing.assert_array_equal(w[key].numpy(), g[key].numpy())


@pytest.mark.slow  # two fresh TF processes (~40 s)
def test_iterator_saved_mid_epoch_restores_in_a_fresh_process(records, tmp_path):
    prefix = str(tmp_path / "iterator")
    after_save = run_script("save", pattern(records), prefix)
    after_restore = run_script("restore", pattern(records), prefix)
    assert after_save == after_restore


@pytest.mark.parametrize("shard_size", [2, 6])  # 3 files (file-level) and 1 file (element-level) for 2 workers
def test_two_input_contexts_cover_every_record_once(tmp_path, shard_size, caplog):
    videos = {f"c{i}": ("flat", 6 + i, i % 3) for i in range(6)}
    folder = helpers.make_video_records(tmp_path, videos, shard_size=shard_size)
    everything = sorted(f"{k}.mkv" for k in videos)
    seen_eval, seen_train = [], []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = data.video_dataset(pattern(folder), training=False, batch_size=2, num_frames=2, crop_size=16,
                                short_side=16, input_context=context)
        ids = [m.decode() for b in ds.as_numpy_iterator() for m in b["media_id"]]
        assert all(len(b["label"]) == 1 for b in ds.as_numpy_iterator())  # per-replica batch: 2 / 2
        seen_eval.append(ids)
        train = data.video_dataset(pattern(folder), training=True, batch_size=2, num_frames=2, crop_size=16,
                                   short_side=16, input_context=context, shuffle_buffer=1, seed=worker)
        first_epoch = [b["media_id"][0].decode() for b in train.take(len(ids)).as_numpy_iterator()]
        assert sorted(first_epoch) == sorted(ids)
    assert sorted(seen_eval[0] + seen_eval[1]) == everything
    assert not set(seen_eval[0]) & set(seen_eval[1])
    if shard_size == 6:
        assert "sharding by element" in caplog.text


# --- Bad input -------------------------------------------------------------------------------
def test_glob_matching_nothing_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing/train-\*.*matches no files"):
        data.video_dataset(str(tmp_path / "missing" / "train-*"), training=True, batch_size=1, num_frames=2)


def test_zero_records_fail_at_start(tmp_path):
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="zero records"):
        data.video_dataset(pattern(tmp_path), training=True, batch_size=1, num_frames=2)


def test_manifest_schema_version_mismatch_names_manifest_and_fix(records, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(records, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"copy/manifest.json has schema_version=99.*re-run data_prep"):
        data.video_dataset(pattern(copy), training=False, batch_size=1, num_frames=2)
    with pytest.raises(ValueError, match="describes video records but an image dataset.*use video_dataset"):
        data.image_dataset(pattern(records), training=False, batch_size=1)


def test_label_outside_the_head_fails_at_start_and_in_stream(records, tmp_path):
    with pytest.raises(ValueError, match=r"manifest.json has 3 classes but the head has num_classes=2"):
        data.video_dataset(pattern(records), training=True, batch_size=1, num_frames=2, num_classes=2)
    bare = tmp_path / "bare"  # shards without their manifest: caught per record, naming it
    bare.mkdir()
    for shard in records.glob("train-*.tfrecord"):
        shutil.copy(shard, bare)
    ds = data.video_dataset(pattern(bare), training=False, batch_size=6, num_frames=2, num_classes=2, short_side=16,
                            crop_size=16)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside the head range.*record \d of .*train-0000"):
        list(ds.as_numpy_iterator())


def corrupt_copy(records: Path, tmp_path: Path) -> Path:
    from data_prep.tfrecord import frame_record, read_records

    shard = sorted(records.glob("train-*.tfrecord"))[0]
    good = list(read_records(str(shard)))
    folder = tmp_path / "corrupt"
    folder.mkdir()
    jpeg_broken = good[1].replace(b"\xff\xd9", b"\x00\x00")  # JPEG end markers gone: parses, fails to decode
    (folder / "train-00000-of-00001.tfrecord").write_bytes(
        frame_record(good[0]) + frame_record(b"not a protobuf") + frame_record(good[1][: len(good[1]) // 3])
        + frame_record(good[1]))
    return folder


def test_corrupt_records_skipped_counted_logged_or_fatal_with_strict(records, tmp_path, capfd):
    folder = corrupt_copy(records, tmp_path)
    ds = data.video_dataset(pattern(folder), training=False, batch_size=8, num_frames=2, short_side=16, crop_size=16)
    (batch,) = list(ds.as_numpy_iterator())
    assert len(batch["label"]) == 2  # 4 records, 2 skipped
    err = capfd.readouterr().err
    for position, count in ((1, 1), (2, 2)):
        assert f"skipped \"record {position} of" in err and "train-00000-of-00001.tfrecord" in err
        assert f"skipped so far: {count}" in err
    assert err.count("tfsts.data: skipped") == 2  # logged once each
    strict = data.video_dataset(pattern(folder), training=False, batch_size=8, num_frames=2, short_side=16,
                                crop_size=16, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"strict=True.*record 1 of .*train-00000-of-00001"):
        list(strict.as_numpy_iterator())


def test_corrupt_records_in_training_are_skipped_and_the_iterator_still_saves(records, tmp_path):
    folder = corrupt_copy(records, tmp_path)
    ds = data.video_dataset(pattern(folder), training=True, batch_size=2, num_frames=2, crop_size=16, seed=1,
                            deterministic=True)
    it = iter(ds)
    ids = [m.decode() for _ in range(4) for m in next(it)["media_id"].numpy()]
    assert set(ids) <= set(LENGTHS) and len(ids) == 8
    tf.train.Checkpoint(iterator=it).write(str(tmp_path / "it"))


# --- Images ------------------------------------------------------------------------------------
def test_image_dataset_train_and_eval(tmp_path):
    folder = helpers.make_image_records(tmp_path, 10)
    ev = list(data.image_dataset(pattern(folder), training=False, batch_size=4, crop_size=32, short_side=40,
                                 num_frames=3).as_numpy_iterator())
    ids = [m.decode() for b in ev for m in b["media_id"]]
    assert sorted(ids) == sorted(f"class{n % 3}/img{n:04d}.jpg" for n in range(10))
    for b in ev:
        assert b["frames"].shape[1:] == (3, 32, 32, 3)
        np.testing.assert_array_equal(b["frames"][:, 0], b["frames"][:, 2])  # a repeated frame
        for media_id, clip, label in zip(b["media_id"], b["frames"], b["label"]):
            n = int(media_id.decode()[-8:-4])
            assert helpers.read_index(clip[0]) == n and label == n % 3
    train = data.image_dataset(pattern(folder), training=True, batch_size=4, crop_size=24, num_classes=3,
                               cutmix=1.0, label_smoothing=0.1, seed=2, deterministic=True)
    b = next(iter(train))
    assert b["frames"].shape == (4, 1, 24, 24, 3) and b["soft_label"].shape == (4, 3)
