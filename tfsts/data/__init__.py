"""Video and image data: the record schema (``tfsts.data.schema``) shared by data_prep and the readers,
and the tf.data input pipelines.

Public API (docs/data_pipeline.md): ``video_dataset``, ``image_dataset``, ``mixture``, ``ViewSpec``,
``eval_views_from_jpegs``, ``eval_views_from_serialized``, ``frame_indices`` (and the samplers
``dense_indices`` / ``uniform_indices``), ``ClipAugment``, ``clip_randaugment``, ``dataset_size``.

Kept free of eager imports: data_prep's Beam workers import ``tfsts.data.schema`` and must not
pay for TensorFlow, so the pipeline names are resolved on first use (PEP 562).
"""
from __future__ import annotations

from tfsts.lazy import lazy_exports

_EXPORTS = {
    "video_dataset": "tfsts.data.pipeline",
    "image_dataset": "tfsts.data.pipeline",
    "dataset_size": "tfsts.data.pipeline",
    "resolve_files": "tfsts.data.pipeline",
    "mixture": "tfsts.data.mixture",
    "ViewSpec": "tfsts.data.video",
    "eval_views_from_jpegs": "tfsts.data.video",
    "eval_views_from_serialized": "tfsts.data.video",
    "frame_indices": "tfsts.data.sampling",
    "dense_indices": "tfsts.data.sampling",
    "uniform_indices": "tfsts.data.sampling",
    "ClipAugment": "tfsts.data.augment",
    "clip_randaugment": "tfsts.data.augment",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
