"""Co-training mixtures (CoVeR): several named video/image sources, interleaved by weight, tagged.

``mixture({name: dataset, ...})`` takes batched datasets from ``video_dataset`` /
``image_dataset`` (each with its own sampler, frame count, size and augmentation) and adds
``"source"``: int32 [B], the index of the element's source in the dict's key order; ``"label"``
stays in that source's own label space, so the trainer routes each element to its head and loss.

Two batching modes:

- ``"per_source"``: every batch comes whole from one source, sources chosen per batch by
  weight (a weighted schedule). Sources may differ in T, H, W, batch size and soft-label width:
  this is how clips of different shapes are mixed.
- ``"mixed"``: source batches are split into elements, interleaved by weight and re-batched
  (``batch_size``, default the first source's), so one batch holds several sources; the
  per-element ``"source"`` gives the loss mask (``source == k``). Frames must have one shape
  across sources (set the image source's ``num_frames`` and every ``crop_size`` equal), else
  a ValueError says so; ``"soft_label"`` (when every source has it) is zero-padded to the widest
  head, columns past a source's class count are zero.

Weights default to the source sizes (records in the data_prep manifests). The choice of source
is a stateless draw seeded from ``(seed, position)``, so the mixture is deterministic and its
iterator checkpointable like the sources'.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from tfsts.data.pipeline import dataset_size

BATCHINGS = ("mixed", "per_source")


def _tag(index: int) -> object:
    def tag(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return dict(e, source=tf.fill(tf.shape(e["label"]), tf.constant(index, tf.int32)))
    return tag


def _selector(weights: Sequence[float], seed: int) -> tf.data.Dataset:
    logits = tf.math.log(tf.constant([weights], tf.float32))

    def pick(i: tf.Tensor) -> tf.Tensor:
        key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x3A7], tf.int64), i)
        return tf.cast(tf.random.stateless_categorical(logits, 1, key)[0, 0], tf.int64)

    return tf.data.Dataset.counter().map(pick)


def mixture(
    sources: Mapping[str, tf.data.Dataset], *, weights: Mapping[str, float] | Sequence[float] | None = None,
    batching: str = "mixed", batch_size: int | None = None, seed: int = 0,
) -> tf.data.Dataset:
    """Interleave named batched datasets by weight; elements carry ``"source"`` (index in key order).

    Example:
        >>> ds = mixture({"k400": k400, "ssv2": ssv2, "imagenet": images}, batching="per_source")
    """
    if batching not in BATCHINGS:
        raise ValueError(f"mixture: batching={batching!r}: use one of {BATCHINGS}")
    if not sources:
        raise ValueError("mixture: give at least one source")
    names = list(sources)
    weight_list = _weights(names, sources, weights)
    datasets = [sources[n].map(_tag(i)) for i, n in enumerate(names)]
    if batching == "per_source":
        return _choose(datasets, weight_list, seed)
    shapes = {n: tuple(sources[n].element_spec["frames"].shape[1:]) for n in names}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"mixture: batching='mixed' needs one frame shape [T, S, S, 3] across sources, got {shapes}; "
            "use batching='per_source', or give every source the same num_frames and crop_size"
        )
    has_soft = [("soft_label" in sources[n].element_spec) for n in names]
    width = max(sources[n].element_spec["soft_label"].shape[-1] for n in names) if all(has_soft) else None
    if batch_size is None:
        batch_size = sources[names[0]].element_spec["label"].shape[0]
        if batch_size is None:
            raise ValueError("mixture: the first source has no static batch size; pass batch_size")

    def common(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {k: e[k] for k in ("frames", "label", "media_id", "source")}
        if width is not None:
            soft = e["soft_label"]
            out["soft_label"] = tf.pad(soft, [[0, 0], [0, width - tf.shape(soft)[-1]]])
        return out

    elements = [d.map(common).unbatch() for d in datasets]
    return _choose(elements, weight_list, seed).batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _choose(datasets: list[tf.data.Dataset], weights: list[float], seed: int) -> tf.data.Dataset:
    if len(datasets) == 1:
        return datasets[0]
    return tf.data.Dataset.choose_from_datasets(datasets, _selector(weights, seed), stop_on_empty_dataset=True)


def _weights(names: list[str], sources: Mapping[str, tf.data.Dataset],
             weights: Mapping[str, float] | Sequence[float] | None) -> list[float]:
    if weights is None:
        sizes = {n: dataset_size(sources[n]) for n in names}
        missing = [n for n, s in sizes.items() if s is None]
        if missing:
            raise ValueError(
                f"mixture: no record count for {missing} (no data_prep manifest next to their files, or not "
                "made by video_dataset / image_dataset); pass weights={name: w, ...}"
            )
        values = [float(sizes[n]) for n in names]
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        absent = [n for n in names if n not in weights]
        if unknown or absent:
            raise ValueError(f"mixture: weights keys {sorted(weights)} must equal the sources {names}")
        values = [float(weights[n]) for n in names]
    else:
        values = [float(w) for w in weights]
        if len(values) != len(names):
            raise ValueError(f"mixture: {len(values)} weights for {len(names)} sources {names}")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"mixture: weights {values} must be non-negative with a positive sum")
    total = sum(values)
    return [v / total for v in values]
