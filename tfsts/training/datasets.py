"""config.data.sources -> input pipelines (tfsts.data), with start-up checks that name the fix.

Training always goes through `tfsts.data.mixture`, also with one source (the one-source
mixture), so every element carries "source".
"""
from __future__ import annotations

import inspect
import os
from typing import Callable, Mapping

import ml_collections
import tensorflow as tf

from tfsts.training import config as config_lib

LABEL_MAP_TXT = "label_map.txt"  # written by data_prep beside the shards


def _reader(kind: str):
    from tfsts import data

    return data.video_dataset if kind == "video" else data.image_dataset


def check_files(name: str, pattern: str, field: str) -> list[str]:
    if not pattern:
        raise config_lib.ConfigError(f"config.data.sources.{name}.{field} is empty: set it to the TFRecord shards' glob.")
    files = tf.io.gfile.glob(pattern)
    if not files:
        folder = os.path.dirname(pattern) or "."
        what = "does not exist" if not tf.io.gfile.isdir(folder) else "has no file matching it"
        raise config_lib.ConfigError(
            f"config.data.sources.{name}.{field} = {pattern!r}: the folder {folder} {what}. Write the records "
            "with data_prep first, or point the pattern at them."
        )
    return files


def label_map_path(src: ml_collections.ConfigDict, pattern: str) -> str | None:
    if src.label_map:
        return src.label_map
    beside = os.path.join(os.path.dirname(pattern), LABEL_MAP_TXT)
    return beside if tf.io.gfile.exists(beside) else None


def check_label_map(name: str, src: ml_collections.ConfigDict, pattern: str) -> None:
    """The head size must equal the records' label map length."""
    path = label_map_path(src, pattern)
    if path is None:
        return
    from data_prep.annotations import load_label_map

    try:
        labels = load_label_map(path)
    except FileNotFoundError:
        raise config_lib.ConfigError(f"config.data.sources.{name}.label_map = {path!r}: no such file.") from None
    if len(labels) != src.num_classes:
        raise config_lib.ConfigError(
            f"source {name!r}: head size config.data.sources.{name}.num_classes = {src.num_classes} but the label "
            f"map {path} has {len(labels)} classes; set --config.data.sources.{name}.num_classes={len(labels)}."
        )


def _options(name: str, src, reader) -> dict:
    options = dict(src.options.to_dict()) if src.options else {}
    accepted = inspect.signature(reader).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise config_lib.ConfigError(
            f"config.data.sources.{name}.options: {unknown} not accepted by tfsts.data.{reader.__name__} "
            f"(it takes {', '.join(sorted(accepted))})."
        )
    return options


def source_dataset(config, name: str, *, training: bool, batch_size: int, input_context=None) -> tf.data.Dataset:
    """One source's pipeline. batch_size is global (tfsts.data divides it by the replicas
    of input_context)."""
    src = config.data.sources[name]
    pattern = src.train_pattern if training else src.eval_pattern
    check_files(name, pattern, "train_pattern" if training else "eval_pattern")
    check_label_map(name, src, pattern)
    reader = _reader(src.kind)
    kwargs = dict(
        training=training, batch_size=batch_size, crop_size=src.crop_size if training else eval_crop(src), num_classes=src.num_classes,
        seed=config.data.shuffle_seed or config.seed, deterministic=config.deterministic, input_context=input_context,
    )
    if training and (config.train.mixup or config.train.cutmix):  # soft targets from the pipeline
        kwargs.update(mixup=config.train.mixup, cutmix=config.train.cutmix, label_smoothing=config.train.label_smoothing)
    if src.kind == "video":
        kwargs.update(
            num_frames=src.num_frames, frame_interval=src.frame_interval, sampling=src.sampling,
            short_side=src.short_side if training else src.eval_short_side,
            num_clips=1 if training else src.eval_num_clips, num_crops=1 if training else src.eval_num_crops,
        )
    else:
        kwargs.update(num_frames=src.num_frames, short_side=src.short_side if training else src.eval_short_side)
    kwargs.update(_options(name, src, reader))
    return reader(pattern, **kwargs)


def eval_crop(src: ml_collections.ConfigDict) -> int:
    return int(src.eval_crop_size or src.crop_size)


def mixture_weights(config: ml_collections.ConfigDict):
    """Per-source weights, or None (proportional to the records in the manifests, as CoVeR)
    when every source's weight is < 0."""
    weights = [float(s.weight) for s in config.data.sources.values()]
    if all(w < 0 for w in weights):
        return None
    if any(w < 0 for w in weights):
        raise config_lib.ConfigError(
            f"config.data.sources.*.weight = {weights}: all >= 0 (explicit weights) or all < 0 (by dataset size)."
        )
    return weights


def train_dataset_fn(config: ml_collections.ConfigDict) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """`fn(input_context)` for strategy.distribute_datasets_from_function: the mixture of
    every source's training pipeline (per-replica batches), also for one source."""
    for name, src in config.data.sources.items():  # fail before any TF work
        check_files(name, src.train_pattern, "train_pattern")
        check_label_map(name, src, src.train_pattern)
    weights = mixture_weights(config)

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        from tfsts import data

        per_replica = input_context.get_per_replica_batch_size(config.train.global_batch_size)
        sources = {
            name: source_dataset(
                config, name, training=True, batch_size=config.train.global_batch_size, input_context=input_context
            )
            for name in config.data.sources
        }
        return data.mixture(
            sources, weights=weights if len(sources) > 1 else [1.0], batching=config.data.batching,
            batch_size=per_replica, seed=config.data.shuffle_seed or config.seed,
        )

    return dataset_fn


def has_eval_data(config: ml_collections.ConfigDict) -> bool:
    return any(src.eval_pattern for src in config.data.sources.values())


def eval_datasets(config: ml_collections.ConfigDict) -> Mapping[str, tf.data.Dataset]:
    """{source: one-pass eval dataset} for the sources with an eval_pattern."""
    batch = config.train.eval_batch_size or config.train.global_batch_size
    return {
        name: source_dataset(config, name, training=False, batch_size=batch)
        for name, src in config.data.sources.items()
        if src.eval_pattern
    }
