"""Evaluation: per-video score averaging, mmaction2's metrics, the result JSON and its plots.

`tfsts.evaluation.metrics` is plain NumPy (a result JSON re-scores without TensorFlow);
`python -m tfsts.evaluate` runs a checkpoint over a config's evaluation data.
"""
from tfsts.evaluation.metrics import (
    AVERAGE_CLIPS,
    METRICS,
    average_clips,
    compute_metrics,
    confusion_matrix,
    mean_class_accuracy,
    metrics_from_result,
    per_class_accuracy,
    plot_confusion_matrix,
    ranked_classes,
    softmax,
    source_result,
    top_k_accuracy,
)

__all__ = [
    "AVERAGE_CLIPS",
    "METRICS",
    "average_clips",
    "compute_metrics",
    "confusion_matrix",
    "mean_class_accuracy",
    "metrics_from_result",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "ranked_classes",
    "softmax",
    "source_result",
    "top_k_accuracy",
]
