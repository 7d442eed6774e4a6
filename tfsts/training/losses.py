"""Per-source losses and metrics: each example's loss comes from its own source's head.

A batch carries `"source"` (int32 [B], the index of the source in config.data.sources'
order) and `"label"` (in that source's own label space). With one source the model has a
single output and every example has source 0: the same code path.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf


def targets_for(labels, num_classes: int, label_smoothing: float = 0.0, soft_labels=None):
    """Dense float32 targets [B, C]: the pipeline's soft labels where given (mixup/cutmix,
    smoothing already applied there), else one-hot smoothed by `label_smoothing`."""
    if soft_labels is not None:
        return tf.cast(soft_labels[:, :num_classes], tf.float32)
    onehot = tf.one_hot(tf.maximum(labels, 0), num_classes, dtype=tf.float32)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    return onehot


def per_example_loss(logits, targets, kind: str):
    """[B] losses from float32 logits [B, C]: softmax cross-entropy, or sigmoid BCE
    averaged over classes (timm's BinaryCrossEntropy)."""
    if kind == "softmax":
        return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    if kind == "bce":
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)
    raise ValueError(f"loss must be 'softmax' or 'bce'; got {kind!r}.")


_LABEL_MARK = "a label is >= the head size"


class LabelError(ValueError):
    """A label does not fit its source's head (config num_classes vs the records' label map)."""


def label_error(error: Exception) -> LabelError | None:
    """The clean LabelError inside a failed label assert's graph error; None for others."""
    text = str(getattr(error, "message", error)).replace("\\'", "'")
    if _LABEL_MARK not in text:
        return None
    start = text.rfind("[", 0, text.index(_LABEL_MARK)) + 1
    return LabelError(text[start:text.index("]", start)])


def check_labels(labels, mask, num_classes: int, source_name: str):
    """Graph-time check that labels fit the head: a label map / head size mismatch."""
    bad = tf.logical_and(mask, labels >= num_classes)
    return tf.debugging.assert_equal(
        tf.reduce_any(bad), False,
        message=(
            f"source {source_name!r}: {_LABEL_MARK} {num_classes}. The records' label map "
            f"has more classes than config.data.sources.{source_name}.num_classes; set it to the label "
            "map's length."
        ),
    )


def label_checks(batch: Mapping[str, tf.Tensor], source_classes: Mapping[str, int]) -> list:
    """Assert ops (run outside XLA) that every labelled example's label fits its head."""
    labels = tf.cast(batch["label"], tf.int32)
    source = tf.cast(batch["source"], tf.int32) if "source" in batch else tf.zeros_like(labels)
    return [
        check_labels(labels, tf.logical_and(tf.equal(source, index), labels >= 0), classes, name)
        for index, (name, classes) in enumerate(source_classes.items())
    ]


def source_outputs(outputs, source_names: Sequence[str]) -> dict:
    """{source_name: logits} for a single-output (one source) or dict-output model."""
    if isinstance(outputs, Mapping):
        return {name: outputs[name] for name in source_names}
    if len(source_names) != 1:
        raise ValueError(f"model has one output but the config has {len(source_names)} sources.")
    return {source_names[0]: outputs}


def batch_loss_and_stats(
    outputs,
    batch: Mapping[str, tf.Tensor],
    source_classes: Mapping[str, int],
    *,
    kind: str = "softmax",
    label_smoothing: float = 0.0,
):
    """Sum over the batch of each example's loss (from its own head), and per-source
    counts: {"loss_sum", f"correct/{s}", f"count/{s}"} (float32 scalars)."""
    names = list(source_classes)
    logits_by_source = source_outputs(outputs, names)
    labels = tf.cast(batch["label"], tf.int32)
    source = tf.cast(batch["source"], tf.int32) if "source" in batch else tf.zeros_like(labels)
    soft = batch.get("soft_label")
    loss_sum = tf.constant(0.0)
    stats = {}
    for index, name in enumerate(names):
        classes = source_classes[name]
        mask = tf.logical_and(tf.equal(source, index), labels >= 0)
        logits = tf.cast(logits_by_source[name], tf.float32)
        soft_here = soft[name] if isinstance(soft, Mapping) else soft
        targets = targets_for(tf.where(mask, labels, 0), classes, label_smoothing, soft_here)
        losses = per_example_loss(logits, targets, kind)
        weights = tf.cast(mask, tf.float32)
        loss_sum += tf.reduce_sum(losses * weights)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        stats[f"correct/{name}"] = tf.reduce_sum(correct * weights)
        stats[f"count/{name}"] = tf.reduce_sum(weights)
    stats["loss_sum"] = loss_sum
    return loss_sum, stats
