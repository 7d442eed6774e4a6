"""Run logs: JSON lines (DIR/log.jsonl), TensorBoard (DIR/tensorboard), learning-curve PNG."""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Mapping

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

LOG_JSONL = "log.jsonl"
CURVE_PNG = "learning_curve.png"


# TensorBoard's scalar plugin tag, written with core TF (the tensorboard package is not needed to write).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


class RunLog:
    """Writes each record as one JSON line and its numbers as TensorBoard scalars.
    Non-chief workers pass enabled=False (they write nothing)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, LOG_JSONL)
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) if enabled else None

    def write(self, record: Mapping) -> None:
        if not self.enabled:
            return
        with tf.io.gfile.GFile(self.path, "a") as f:
            f.write(json.dumps(dict(record), sort_keys=True) + "\n")
        step = int(record["step"])
        with self._writer.as_default(step=step):
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.write(key, tf.constant(float(value), tf.float32), metadata=_SCALAR_METADATA)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def truncate_log(workdir: str, step: int) -> None:
    """Drop records after `step` (a resumed run redoes the steps after its checkpoint)."""
    records = [r for r in read_log(workdir) if r["step"] <= step]
    with tf.io.gfile.GFile(os.path.join(workdir, LOG_JSONL), "w") as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_log(workdir: str) -> list[dict]:
    path = os.path.join(workdir, LOG_JSONL)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curve(records: Iterable[Mapping], path: str) -> str | None:
    """Training loss (and eval top-1 where logged) against step; None without matplotlib data."""
    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval/top1"]) for r in records if "eval/top1" in r]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", label="eval top-1", color="tab:orange")
        ax2.set_ylabel("eval top-1")
    ax.set_title("learning curve")
    fig.legend(loc="upper right")
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
