"""mixture(): proportions within a stated tolerance, source tags, both batching modes, restore."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfsts.data as data
from tests import data_pipeline_helpers as helpers


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mix")
    return {
        "a": helpers.make_video_records(root / "a", {f"a{i}": ("flat", 8 + i, i % 3) for i in range(6)}),
        "b": helpers.make_video_records(root / "b", {f"b{i}": ("flat", 5 + i, i % 2) for i in range(3)}),
        "img": helpers.make_image_records(root / "img", 9),
    }


def sources(folders, *, frames_b: int = 2, **kwargs) -> dict[str, tf.data.Dataset]:
    common = dict(training=True, batch_size=2, crop_size=16, seed=1, deterministic=True)
    common.update(kwargs)
    return {
        "a": data.video_dataset(str(folders["a"] / "train-*"), num_frames=2, **common),
        "b": data.video_dataset(str(folders["b"] / "train-*"), num_frames=frames_b, **common),
        "img": data.image_dataset(str(folders["img"] / "train-*"), num_frames=2, **common),
    }


def origin(media_id: bytes) -> int:
    text = media_id.decode()
    return 0 if text.startswith("a") else 1 if text.startswith("b") else 2


def within(counts: np.ndarray, weights: np.ndarray) -> None:
    """Each observed share within 4 binomial standard deviations of its weight (p ~ 6e-5 per source)."""
    n = counts.sum()
    sigma = np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(counts / n - weights) < 4 * sigma), (counts / n, weights, sigma)


def test_per_source_batches_default_weights_are_the_manifest_sizes(folders):
    mix = data.mixture(sources(folders, frames_b=4), batching="per_source", seed=3)  # b: other T is fine here
    counts = np.zeros(3, int)
    for batch in mix.take(300).as_numpy_iterator():
        tags = set(batch["source"].tolist())
        assert len(tags) == 1  # a whole batch from one source
        (tag,) = tags
        assert all(origin(m) == tag for m in batch["media_id"])
        assert batch["frames"].shape[1] == (4 if tag == 1 else 2)
        counts[tag] += 1
    within(counts, np.array([6, 3, 9]) / 18)


def test_mixed_batches_tag_every_element_and_follow_weights(folders):
    srcs = sources(folders, num_classes=3, label_smoothing=0.1)
    srcs["b"] = data.video_dataset(str(folders["b"] / "train-*"), training=True, batch_size=2, num_frames=2,
                                   crop_size=16, seed=1, deterministic=True, num_classes=2, label_smoothing=0.1)
    mix = data.mixture(srcs, weights={"a": 0.5, "b": 0.2, "img": 0.3}, batching="mixed", batch_size=8, seed=4)
    counts = np.zeros(3, int)
    mixed_batches = 0
    for batch in mix.take(100).as_numpy_iterator():
        assert batch["frames"].shape == (8, 2, 16, 16, 3) and batch["soft_label"].shape == (8, 3)
        tags = batch["source"]
        np.testing.assert_array_equal(tags, [origin(m) for m in batch["media_id"]])
        np.testing.assert_allclose(batch["soft_label"][tags == 1, 2], 0.0)  # padded column of the 2-class head
        mixed_batches += len(set(tags.tolist())) > 1
        counts += np.bincount(tags, minlength=3)
    within(counts, np.array([0.5, 0.2, 0.3]))
    assert mixed_batches > 90


def test_mixture_is_deterministic_and_its_iterator_restores(folders, tmp_path):
    def take(it, n):
        return [next(it) for _ in range(n)]

    mix = data.mixture(sources(folders), weights=[1, 1, 1], batching="mixed", seed=7)
    it = iter(mix)
    take(it, 3)
    prefix = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "mix"))
    want = take(it, 4)
    again = iter(data.mixture(sources(folders), weights=[1, 1, 1], batching="mixed", seed=7))
    tf.train.Checkpoint(iterator=again).read(prefix).assert_consumed()
    for w, g in zip(want, take(again, 4)):
        np.testing.assert_array_equal(w["frames"].numpy(), g["frames"].numpy())
        np.testing.assert_array_equal(w["source"].numpy(), g["source"].numpy())


def test_mixture_errors_name_the_fix(folders):
    built = sources(folders, frames_b=4)
    with pytest.raises(ValueError, match="one frame shape.*per_source"):
        data.mixture(built, batching="mixed")
    with pytest.raises(ValueError, match="weights keys"):
        data.mixture(built, weights={"a": 1})
    with pytest.raises(ValueError, match="batching"):
        data.mixture(built, batching="round_robin")
    plain = tf.data.Dataset.from_tensors({"frames": tf.zeros([1, 2, 16, 16, 3], tf.uint8), "label": tf.zeros([1], tf.int32),
                                          "media_id": tf.constant(["x"])})
    with pytest.raises(ValueError, match="no record count.*pass weights"):
        data.mixture({"plain": plain, "a": built["a"]})
