"""Video-level scores and metrics, as mmaction2 defines them (the reference's numbers use them).

Pure NumPy on arrays that have already left the model, so that a result JSON can be re-scored
later without TensorFlow (`metrics_from_result`).

Conventions (see docs in README, "Evaluation, export and serving"):
- `view_scores` are raw logits `[N, V, C]`: N videos, V views per video (clips x crops), C classes.
- `average_clips`: "prob" = softmax per view, then the mean over views (the reference's choice);
  "score" = the mean of the logits; "none" = keep every view (metrics are then computed over
  views: each view is one prediction of its video's label, i.e. single-view accuracy).
- top-k accuracy breaks ties like mmaction2's `np.argsort(scores)[:, -k:]`: the scores are
  sorted ascending, stably, and the last k taken, so among equal scores the higher class index
  ranks first, as classic NumPy's stable small-array sort gave. (NumPy's default sort is no longer
  stable on x86 SIMD builds, so mmaction2's own ties now vary by machine; we fix it to "stable".)
- mean class accuracy: the mean, over the classes that occur among the labels, of each class's
  top-1 recall. mmaction2's code also averages in, as 0, classes that are predicted but never
  labelled; `mean_class_accuracy(..., mmaction2_absent_as_zero=True)` reproduces that.
- Videos with label -1 (unlabeled splits) are kept in the per-video scores but left out of
  every metric.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

AVERAGE_CLIPS = ("prob", "score", "none")
METRICS = ("top_k_accuracy", "mean_class_accuracy")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def average_clips(view_scores: np.ndarray, mode: str = "prob") -> np.ndarray:
    """Combine the views of each video.

    Args:
        view_scores: raw logits `[N, V, C]`.
        mode: "prob" (softmax per view, mean over views), "score" (mean logits) or "none"
            (unchanged `[N, V, C]`).

    Returns:
        `[N, C]` float64 for "prob" / "score", the input (as float64) for "none".

    Example:
        >>> average_clips(np.array([[[0.0, 0.0], [0.0, np.log(3.0)]]]), "prob")
        array([[0.375, 0.625]])
    """
    scores = np.asarray(view_scores, dtype=np.float64)
    if scores.ndim != 3:
        raise ValueError(f"view_scores must be [videos, views, classes]; got shape {scores.shape}.")
    if mode == "prob":
        return softmax(scores, axis=-1).mean(axis=1)
    if mode == "score":
        return scores.mean(axis=1)
    if mode == "none":
        return scores
    raise ValueError(f"average_clips must be one of {AVERAGE_CLIPS}; got {mode!r}.")


def flatten_views(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`[N, V, C]` scores and `[N]` labels -> `[N * V, C]` and `[N * V]` (one row per view)."""
    scores = np.asarray(scores)
    n, v, c = scores.shape
    return scores.reshape(n * v, c), np.repeat(np.asarray(labels), v)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [N, C] and labels [N]; got {scores.shape} and {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {scores.shape[1]}) (drop unlabeled videos first); "
            f"got min {labels.min()}, max {labels.max()}."
        )
    return scores, labels


def ranked_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """`[N, min(k, C)]` class indices, best first, ties toward the higher index (mmaction2)."""
    order = np.argsort(np.asarray(scores), axis=1, kind="stable")
    return order[:, ::-1][:, :k]


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, topk: Sequence[int] = (1, 5)) -> dict[int, float]:
    """{k: fraction of rows whose label is among the k highest scores}."""
    scores, labels = _check(scores, labels)
    if not labels.size:
        raise ValueError("top_k_accuracy needs at least one labelled video.")
    out = {}
    for k in topk:
        if int(k) < 1:
            raise ValueError(f"top-k needs k >= 1; got {k}.")
        hits = (ranked_classes(scores, int(k)) == labels[:, None]).any(axis=1)
        out[int(k)] = float(hits.mean())
    return out


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 `[C, C]`: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def predictions(scores: np.ndarray) -> np.ndarray:
    """Top-1 class per row, with the same tie rule as top-k accuracy."""
    return ranked_classes(scores, 1)[:, 0]


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`[C]` top-1 recall per class; NaN for classes with no labelled video."""
    scores, labels = _check(scores, labels)
    cm = confusion_matrix(labels, predictions(scores), scores.shape[1]).astype(np.float64)
    counts = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.diag(cm) / counts, np.nan)


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray, *, mmaction2_absent_as_zero: bool = False) -> float:
    """Mean top-1 recall over the classes present among the labels.

    mmaction2_absent_as_zero: also average in, as 0, the classes that are predicted but never
        labelled (what mmaction2's `mean_class_accuracy` code does, through its confusion matrix
        over the union of predicted and true classes).
    """
    scores, labels = _check(scores, labels)
    if not labels.size:
        raise ValueError("mean_class_accuracy needs at least one labelled video.")
    recall = per_class_accuracy(scores, labels)
    present = ~np.isnan(recall)
    if mmaction2_absent_as_zero:
        predicted = np.zeros_like(present)
        predicted[predictions(scores)] = True
        return float(np.nan_to_num(recall)[present | predicted].mean())
    return float(recall[present].mean())


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Sequence[str],
    metrics: Sequence[str] = METRICS,
    topk: Sequence[int] = (1, 5),
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The metrics of one source, over its labelled rows, and its confusion matrix.

    scores: `[N, C]` (already averaged) or `[N, V, C]` ("none": every view counts as a row).
    Returns ({"top1_acc", "top5_acc", "mean_class_accuracy", "per_class_accuracy":
    {class: recall or None}, "num_videos", "num_labelled"}, confusion matrix or None when
    nothing is labelled). Keys follow mmaction2's result names.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; available: {', '.join(METRICS)}.")
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = scores.shape[-1]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} scores per video.")
    out: dict[str, Any] = {"num_videos": int(scores.shape[0])}
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    out["num_labelled"] = int(keep.sum())
    if scores.ndim == 3:
        scores, labels = flatten_views(scores, labels)
        out["num_views_scored"] = int(labels.size)
    if not labels.size:
        return out, None
    if "top_k_accuracy" in metrics:
        for k, acc in top_k_accuracy(scores, labels, topk).items():
            out[f"top{k}_acc"] = acc
    if "mean_class_accuracy" in metrics:
        out["mean_class_accuracy"] = mean_class_accuracy(scores, labels)
    recall = per_class_accuracy(scores, labels)
    out["per_class_accuracy"] = {name: (None if np.isnan(r) else float(r)) for name, r in zip(class_names, recall)}
    return out, confusion_matrix(labels, predictions(scores), num_classes)


def source_result(
    media_ids: Sequence[str],
    labels: np.ndarray,
    view_scores: np.ndarray,
    *,
    class_names: Sequence[str],
    average: str = "prob",
    metrics: Sequence[str] = METRICS,
    topk: Sequence[int] = (1, 5),
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One source's `{"metrics": {...}, "videos": [...]}` entry of the result JSON, from raw
    per-view logits `[N, V, C]`, and its confusion matrix (None when nothing is labelled)."""
    view_scores = np.asarray(view_scores)
    if len(media_ids) != view_scores.shape[0] or len(labels) != view_scores.shape[0]:
        raise ValueError(
            f"{len(media_ids)} media ids, {len(labels)} labels and {view_scores.shape[0]} videos of scores."
        )
    scores = average_clips(view_scores, average)
    values, cm = compute_metrics(scores, labels, class_names=class_names, metrics=metrics, topk=topk)
    values = {"average_clips": average, "num_views": int(view_scores.shape[1]), **values}
    if cm is not None:
        values["confusion_matrix"] = cm.tolist()
    videos = [
        {"media_id": str(m), "label": int(l), "scores": s.tolist()}
        for m, l, s in zip(media_ids, np.asarray(labels), scores)
    ]
    return {"metrics": values, "class_names": list(class_names), "videos": videos}, cm


def metrics_from_result(
    entry: Mapping[str, Any], *, metrics: Sequence[str] = METRICS, topk: Sequence[int] = (1, 5)
) -> dict[str, Any]:
    """Re-score one source entry of a result JSON (its per-video scores, as averaged then)."""
    scores = np.array([v["scores"] for v in entry["videos"]], dtype=np.float64)
    labels = np.array([v["label"] for v in entry["videos"]], dtype=np.int64)
    values, _ = compute_metrics(scores, labels, class_names=entry["class_names"], metrics=metrics, topk=topk)
    return values


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str, *, title: str = "") -> str:
    """A PNG of the row-normalised confusion matrix (true class down, predicted across)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(rows > 0, matrix / rows, 0.0)
    n = len(class_names)
    size = min(max(4.0, 0.35 * n + 2.0), 40.0)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 60:
        ax.set_xticks(range(n), labels=class_names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels=class_names, fontsize=8)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if matrix[i, j]:
                        color = "white" if normalised[i, j] > 0.5 else "black"
                        ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
