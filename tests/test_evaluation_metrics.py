"""Score averaging and metrics against hand-computed cases (no model involved).

The case: 3 classes, 3 views per video, 4 videos:
  v0 label 1: views [9, 0, -50], [0, 2, -50], [0, 2, -50]: "prob" predicts 1 (two views
      fairly sure of 1 outvote one very sure of 0), "score" predicts 0 (mean logits [3, 4/3, -50]).
  v1 label 0: three views [5, 1, 0]: class 0 in every mode.
  v2 label 0: three views [0, 0, 3]: class 2 first, then a 0/1 tie that mmaction2's rule gives
      to class 1 (the higher index), so top-2 misses the label.
  v3 label -1 (unlabeled): kept in the videos, left out of the metrics.
"""
import json
import math

import numpy as np
import pytest

from tfsts.evaluation import metrics as M

VIEWS = np.array(
    [
        [[9, 0, -50], [0, 2, -50], [0, 2, -50]],
        [[5, 1, 0]] * 3,
        [[0, 0, 3]] * 3,
        [[1, 0, 0]] * 3,
    ],
    dtype=np.float32,
)
LABELS = np.array([1, 0, 0, -1])
IDS = ["v0", "v1", "v2", "v3"]
NAMES = ["zero", "one", "two"]


def _p(logits):
    """Softmax of a short list by hand."""
    e = [math.exp(x) for x in logits]
    return [x / sum(e) for x in e]


def test_average_clips_prob_by_hand():
    a, b = _p([9, 0, -50]), _p([0, 2, -50])
    expected_v0 = [(a[i] + 2 * b[i]) / 3 for i in range(3)]
    got = M.average_clips(VIEWS, "prob")
    np.testing.assert_allclose(got[0], expected_v0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[1], _p([5, 1, 0]), rtol=1e-12)
    assert expected_v0[1] > expected_v0[0]  # the point of the case
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


def test_average_clips_score_and_none():
    got = M.average_clips(VIEWS, "score")
    np.testing.assert_allclose(got[0], [3.0, 4.0 / 3.0, -50.0], rtol=1e-7)
    np.testing.assert_allclose(got[2], [0.0, 0.0, 3.0])
    none = M.average_clips(VIEWS, "none")
    assert none.shape == (4, 3, 3)
    np.testing.assert_array_equal(none, VIEWS)
    with pytest.raises(ValueError, match="average_clips must be one of"):
        M.average_clips(VIEWS, "mean")
    with pytest.raises(ValueError, match=r"\[videos, views, classes\]"):
        M.average_clips(VIEWS[0], "prob")


def test_metrics_prob_mode():
    entry, cm = M.source_result(IDS, LABELS, VIEWS, class_names=NAMES, average="prob", topk=(1, 2, 3))
    m = entry["metrics"]
    assert m["num_videos"] == 4 and m["num_labelled"] == 3 and m["num_views"] == 3
    assert m["top1_acc"] == pytest.approx(2 / 3)  # v0, v1 right; v2 wrong
    assert m["top2_acc"] == pytest.approx(2 / 3)  # v2: top-2 is {2, 1} by the tie rule
    assert m["top3_acc"] == 1.0
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # class 2 absent
    assert m["per_class_accuracy"] == {"zero": 0.5, "one": 1.0, "two": None}
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert m["confusion_matrix"] == cm.tolist()
    assert [v["media_id"] for v in entry["videos"]] == IDS
    assert [v["label"] for v in entry["videos"]] == [1, 0, 0, -1]
    assert len(entry["videos"][3]["scores"]) == 3  # unlabeled videos keep their scores


def test_metrics_score_mode():
    entry, cm = M.source_result(IDS, LABELS, VIEWS, class_names=NAMES, average="score", topk=(1, 2))
    m = entry["metrics"]
    assert m["top1_acc"] == pytest.approx(1 / 3)  # v0 now predicted 0
    assert m["top2_acc"] == pytest.approx(2 / 3)
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 0.0) / 2)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(entry["videos"][0]["scores"], [3.0, 4.0 / 3.0, -50.0], rtol=1e-7)


def test_metrics_none_mode_scores_every_view():
    entry, _ = M.source_result(IDS, LABELS, VIEWS, class_names=NAMES, average="none", topk=(1,))
    m = entry["metrics"]
    assert m["num_views_scored"] == 9
    assert m["top1_acc"] == pytest.approx(5 / 9)  # v0: 2 of 3 views, v1: 3, v2: 0
    assert m["mean_class_accuracy"] == pytest.approx((3 / 6 + 2 / 3) / 2)
    assert np.array(entry["videos"][0]["scores"]).shape == (3, 3)


def test_mean_class_accuracy_mmaction2_variant_counts_predicted_only_classes():
    scores = M.average_clips(VIEWS[:3], "prob")
    labels = LABELS[:3]
    assert M.mean_class_accuracy(scores, labels) == pytest.approx(0.75)
    # mmaction2's confusion matrix spans predicted classes too: class 2 (predicted for v2,
    # never a label) enters as 0.
    assert M.mean_class_accuracy(scores, labels, mmaction2_absent_as_zero=True) == pytest.approx(0.5)


def _top_k_by_counting(scores, labels, k):
    """The tie rule stated directly: the label is in the top k when fewer than k classes beat
    it, counting a class that ties it as beating it when its index is higher."""
    hits = 0
    for row, label in zip(scores.tolist(), labels.tolist()):
        s = row[label]
        ahead = sum(1 for j, x in enumerate(row) if x > s or (x == s and j > label))
        hits += ahead < k
    return hits / len(labels)


def test_tie_rule_higher_index_first():
    """mmaction2 ranks by `np.argsort(scores)[:, -k:][:, ::-1]`; with the stable sort classic
    NumPy used for small arrays, equal scores put the higher class index first. (NumPy's
    default sort is no longer stable on x86 SIMD builds, so we fix the sort to "stable".)"""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(200, 10)).astype(np.float64)  # heavy ties
    labels = rng.integers(0, 10, size=200)
    for k in (1, 2, 5):
        assert M.top_k_accuracy(scores, labels, (k,))[k] == pytest.approx(_top_k_by_counting(scores, labels, k))
    np.testing.assert_array_equal(M.ranked_classes(np.zeros((1, 40)), 3), [[39, 38, 37]])
    np.testing.assert_array_equal(M.ranked_classes(np.array([[1.0, 1.0, 1.0, 0.0]]), 4), [[2, 1, 0, 3]])


def test_top_k_larger_than_classes_and_bad_labels():
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert M.top_k_accuracy(scores, [0, 0], (1, 5)) == {1: 0.5, 5: 1.0}
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        M.top_k_accuracy(scores, [0, 2])
    with pytest.raises(ValueError, match="Unknown metric"):
        M.compute_metrics(scores, [0, 1], class_names=["a", "b"], metrics=["top1"])
    with pytest.raises(ValueError, match="3 class names for 2"):
        M.compute_metrics(scores, [0, 1], class_names=["a", "b", "c"])


def test_unlabeled_source_has_videos_but_no_accuracy():
    entry, cm = M.source_result(["a", "b"], np.array([-1, -1]), VIEWS[:2], class_names=NAMES)
    assert cm is None and "top1_acc" not in entry["metrics"]
    assert entry["metrics"]["num_labelled"] == 0 and len(entry["videos"]) == 2


@pytest.mark.parametrize("average", ["prob", "score", "none"])
def test_result_json_round_trip_rescores_identically(average):
    entry, _ = M.source_result(IDS, LABELS, VIEWS, class_names=NAMES, average=average)
    reloaded = json.loads(json.dumps({"kinetics": entry}))["kinetics"]
    again = M.metrics_from_result(reloaded)
    assert again.keys() <= entry["metrics"].keys()
    for key, value in again.items():
        if isinstance(value, dict):
            assert entry["metrics"][key] == value
        else:
            assert entry["metrics"][key] == pytest.approx(value)


def test_confusion_matrix_png(tmp_path):
    from PIL import Image

    cm = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    path = M.plot_confusion_matrix(cm, NAMES, str(tmp_path / "cm.png"), title="test")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 300
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn
