"""tfsts.demo_data: real video files that data_prep decodes, labels that match the motion on
screen (measured on the decoded frames, not taken from the generator), data_prep's own
annotation parsers accepting the layouts, and the same bytes for the same seed."""
import csv
import dataclasses
import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_prep import images as dp_images
from data_prep import kinetics as dp_kinetics
from data_prep import ssv2 as dp_ssv2
from data_prep.annotations import VIDEO_EXTENSIONS, index_files, labels_from_mapping
from data_prep.decode import FrameOptions, decode_video
from tfsts import demo_data

TINY = demo_data.DemoDataConfig(kinetics_per_class=(2, 1), ssv2_per_class=(1, 1), images_per_class=(1, 1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return demo_data.make_demo_data(str(root), TINY)


def decoded(path: str) -> np.ndarray:
    """uint8 [T, H, W, 3] through data_prep's decoder (its JPEG frames, decoded)."""
    clip = decode_video(path, FrameOptions(short_side=0, jpeg_quality=95))
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")) for jpeg in clip.frames])


def digit_weight(frame: np.ndarray) -> np.ndarray:
    """How much each pixel looks like the (bright) digit rather than the (dark) background."""
    brightness = frame.astype(np.float64).max(axis=-1)
    return np.clip(brightness - np.median(brightness) - 40.0, 0.0, None)


def centroid_and_spread(frame: np.ndarray) -> tuple[np.ndarray, float]:
    w = digit_weight(frame)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]] + 0.5
    total = w.sum()
    cx, cy = (w * xs).sum() / total, (w * ys).sum() / total
    spread = np.sqrt((w * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / total)
    return np.array([cx, cy]), float(spread)


def index(data) -> dict:
    with open(data.index_json) as f:
        return json.load(f)


def test_every_video_decodes_with_data_prep_and_moves_as_labelled(tiny):
    items = index(tiny)["items"]
    motions = {"kinetics": demo_data.KINETICS_MOTIONS, "ssv2": demo_data.SSV2_MOTIONS}
    checked = 0
    for dataset in ("kinetics", "ssv2"):
        assert len(items[dataset]) == sum(getattr(TINY, f"{dataset}_per_class")) * len(motions[dataset])
        for item in items[dataset]:
            frames = decoded(os.path.join(tiny.root, item["file"]))
            assert frames.shape == (TINY.num_frames, TINY.height, TINY.width, 3), item["file"]
            motion = {demo_data.ssv2_class_name(m.name): m for m in motions[dataset]}[item["label_text"]]
            assert demo_data.class_names()[dataset][item["label"]] == item["label_text"]  # data_prep's index
            first, spread_first = centroid_and_spread(frames[0])
            last, spread_last = centroid_and_spread(frames[-1])
            moved = last - first
            if motion.zoom:
                ratio = spread_last / spread_first
                expected = np.exp(motion.zoom)  # size ratio over the clip
                assert ratio == pytest.approx(expected, rel=0.25), (item["file"], ratio, expected)
                assert np.abs(moved).max() < 2.0, (item["file"], moved)
            else:
                direction = np.array([motion.dx, motion.dy])
                along = moved @ direction
                across = moved @ np.array([-direction[1], direction[0]])
                assert along > 0.6 * TINY.travel * 0.8, (item["file"], motion.name, moved)
                assert abs(across) < 2.0, (item["file"], motion.name, moved)
            # The decoded digit moves as far as the generator's recorded path says.
            recorded = np.subtract(item["centres"][-1], item["centres"][0])
            np.testing.assert_allclose(moved, recorded, atol=1.5, err_msg=item["file"])
            checked += 1
    assert checked == 3 * 4 + 2 * 6  # (2 + 1) Kinetics clips and (1 + 1) SSv2 clips per class


def test_containers_and_codecs_are_the_real_formats(tiny):
    import av

    seen = set()
    for item in index(tiny)["items"]["kinetics"] + index(tiny)["items"]["ssv2"]:
        with av.open(os.path.join(tiny.root, item["file"])) as container:
            stream = container.streams.video[0]
            seen.add((os.path.splitext(item["file"])[1], stream.codec_context.name))
            assert float(stream.average_rate) == TINY.fps
    assert seen == {(".mp4", "h264"), (".webm", "vp8"), (".webm", "vp9")}
    by_class = {}
    for item in index(tiny)["items"]["kinetics"]:
        by_class.setdefault(item["label"], set()).add(item["codec"])
    assert all(codecs == {"h264", "vp8"} for codecs in by_class.values()), by_class  # codec says nothing of the class


def test_kinetics_layout_parses_with_data_prep(tiny):
    rows = [row for path in tiny.kinetics_csvs for row in dp_kinetics.read_csv(path)]
    with open(tiny.kinetics_csvs[0], newline="") as f:
        assert next(csv.reader(f)) == ["label", "youtube_id", "time_start", "time_end", "split"]
    files = index_files(tiny.kinetics_videos, VIDEO_EXTENSIONS)
    annotations = dp_kinetics.kinetics_annotations(rows, files, tiny.kinetics_videos)
    assert annotations.failures == []
    assert annotations.labels == demo_data.class_names()["kinetics"]
    assert len(annotations.items) == sum(TINY.kinetics_per_class) * 4
    assert {i.split for i in annotations.items} == {"train", "val"}
    truth = {i["media_id"]: (i["label"], i["label_text"]) for i in index(tiny)["items"]["kinetics"]}
    assert {i.media_id: (i.label_index, i.label_text) for i in annotations.items} == truth
    for item in annotations.items:  # already-cut clips: no window to cut
        assert (item.start, item.end) == (None, None)
        assert os.path.basename(os.path.dirname(item.path)) == item.label_text.replace(" ", "_")


def test_ssv2_layout_parses_with_data_prep(tiny):
    with open(tiny.ssv2_labels_json) as f:
        labels = labels_from_mapping(json.load(f), tiny.ssv2_labels_json)
    assert labels == demo_data.class_names()["ssv2"]
    entries = {}
    for split, path in tiny.ssv2_split_jsons.items():
        assert os.path.basename(path) == dp_ssv2.SPLIT_FILES[split]
        with open(path) as f:
            entries[split] = (path, json.load(f))
    files = index_files(tiny.ssv2_videos, VIDEO_EXTENSIONS)
    annotations = dp_ssv2.ssv2_annotations(labels, tiny.ssv2_labels_json, entries, files, tiny.ssv2_videos)
    assert annotations.failures == []
    assert len(annotations.items) == sum(TINY.ssv2_per_class) * 6
    truth = {i["media_id"]: i["label"] for i in index(tiny)["items"]["ssv2"]}
    assert {i.media_id: i.label_index for i in annotations.items} == truth
    assert os.path.basename(tiny.ssv2_labels_json) == dp_ssv2.LABELS_FILE


def test_image_folders_parse_with_data_prep_and_show_the_digit(tiny):
    rows = dp_images.tree_rows(tiny.image_trees)
    assert sorted(rows) == ["train", "validation"]
    for split, count in zip(("train", "validation"), TINY.images_per_class):
        assert sorted({label for _, _, label in rows[split]}) == list(demo_data.DIGIT_CLASSES)
        assert len(rows[split]) == 10 * count
    images, labels = demo_data.load_digit_images()
    for item in index(tiny)["items"]["images"]:
        assert labels[item["digit_index"]] == item["label"]
        rgb = np.asarray(Image.open(os.path.join(tiny.root, item["file"])))
        assert rgb.shape == (TINY.height, TINY.width, 3)
        assert digit_weight(rgb).sum() > 50  # a digit is drawn


def test_train_and_validation_use_different_digit_instances(tiny):
    items = index(tiny)["items"]
    for dataset in ("kinetics", "ssv2", "images"):
        train = {i["digit_index"] for i in items[dataset] if i["split"] == "train"}
        val = {i["digit_index"] for i in items[dataset] if i["split"] in ("val", "validation")}
        assert train and val and not train & val, dataset


def _digests(root: str) -> dict[str, str]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_seed_same_bytes_other_seed_other_data(tiny, tmp_path):
    again = demo_data.make_demo_data(str(tmp_path / "again"), TINY)
    assert _digests(again.root) == _digests(tiny.root)
    other = demo_data.make_demo_data(str(tmp_path / "other"), dataclasses.replace(TINY, seed=1))
    first, second = index(tiny)["items"]["kinetics"], index(other)["items"]["kinetics"]
    assert [i["centres"] for i in first] != [i["centres"] for i in second]


def test_trajectories_leave_position_uninformative():
    """Over many clips, where the digit is in a frame barely depends on the class: the
    class-mean positions of the middle frame differ by much less than the travel."""
    config = demo_data.DemoDataConfig()
    rng = np.random.default_rng(0)
    for motions in (demo_data.KINETICS_MOTIONS, demo_data.SSV2_MOTIONS):
        middles = []
        for motion in motions:
            paths = [demo_data.trajectory(motion, rng, config) for _ in range(300)]
            middles.append(np.mean([p.centres[config.num_frames // 2] for p in paths], axis=0))
            for p in paths:  # the digit stays on screen
                half = p.sizes[:, None] / 2
                assert (p.centres - half >= -1e-6).all() and (p.centres[:, 0] + half[:, 0] <= config.width + 1e-6).all()
                assert (p.centres[:, 1] + half[:, 0] <= config.height + 1e-6).all()
        spread = np.ptp(np.array(middles), axis=0)
        assert spread.max() < 0.25 * config.travel, spread


def test_bad_config_is_rejected_with_the_field():
    with pytest.raises(ValueError, match="width and height must be even"):
        demo_data.DemoDataConfig(width=47)
    with pytest.raises(ValueError, match="kinetics_per_class"):
        demo_data.DemoDataConfig(kinetics_per_class=(0, 1))
    assert demo_data.DemoDataConfig().scaled(0.5).kinetics_per_class == (20, 6)
