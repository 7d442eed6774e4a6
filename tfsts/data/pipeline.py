"""``video_dataset`` and ``image_dataset``: data_prep TFRecords -> batches of uint8 RGB clips.

Phases (DMVR): files -> records (with their shard file and position) -> shuffle -> parse ->
sample -> decode the sampled frames only -> crop/flip/colour (one draw per clip) -> batch ->
mixup/cutmix (one draw per batch). No Python runs per element.

Determinism and checkpointing: every random choice is a stateless op whose seed is derived from
``(seed, epoch, shard file name, record position)`` (per element) or ``(seed, batch index)``
(per batch), so an element gets the same augmentation whatever the parallelism, and the
iterator holds no hidden random state: ``tf.train.Checkpoint(iterator=iter(ds))`` saves and
restores it (mid-epoch, in another process). The record order comes from a per-epoch
stateless shuffle of the files, a deterministic interleave and a seeded shuffle buffer. With
``deterministic=True`` the parallel map keeps its input order, so two runs (and a restored
run) give identical batches; otherwise elements may come out of the parallel map in any order.

Memory: the reader holds at most ``shuffle_buffer`` serialized records (bound: shuffle_buffer x
the largest record; a 10 s Kinetics clip at short side 256 is about 6 MB, so the default 64
holds about 400 MB) plus, per in-flight element, its sampled frames, plus the prefetched
batches. The iterator checkpoint holds the shuffle buffer too (same bound on disk).

Bad records: a record that fails to parse or decode is skipped, counted, and logged (first
epoch) with its shard file and position; ``strict=True`` makes it fatal. Bad configuration (a
glob that matches nothing, zero records, a manifest with another schema version, a label map
larger than the head) fails at once, naming the path and the fix.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import weakref
from typing import Any, Sequence

import tensorflow as tf

from tfsts.data import augment, schema, video

_LOG = logging.getLogger("tfsts.data")
MANIFEST = "manifest.json"
AUTOTUNE = tf.data.AUTOTUNE
_SIZES: "weakref.WeakKeyDictionary[tf.data.Dataset, int]" = weakref.WeakKeyDictionary()


# --- Files and manifests ------------------------------------------------------------------------
@dataclasses.dataclass
class SourceInfo:
    """What the start-up checks learnt about a file pattern."""

    files: list[str]
    num_records: int | None  # from the manifests (None when a folder has none)
    num_classes: int | None  # label map size from the manifest
    dataset: str | None  # data_prep's dataset name ("kinetics", "ssv2", ...)


def resolve_files(file_pattern: str | Sequence[str], kind: str, num_classes: int | None = None) -> SourceInfo:
    """Glob the pattern(s), check the data_prep manifests next to the files, count the records."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(
                f"tfsts.data: file pattern {pattern!r} matches no files; check the path (data_prep writes "
                f"{{split}}-00000-of-0000N.tfrecord, e.g. '/data/k400_tfrecords/train-*.tfrecord')"
            )
        files.extend(matched)
    records: int | None = 0
    classes: list[int] = []
    datasets: set[str] = set()
    for folder in sorted({os.path.dirname(f) for f in files}):
        path = os.path.join(folder, MANIFEST)
        mine = [f for f in files if os.path.dirname(f) == folder]
        if not tf.io.gfile.exists(path):
            records = None
            continue
        manifest = _load_manifest(path, kind)
        datasets.add(str(manifest.get("dataset", "")))
        label_map = manifest.get("label_map") or {}
        if label_map.get("num_classes"):
            classes.append(int(label_map["num_classes"]))
        counts = {s["file"]: int(s["records"]) for split in manifest.get("splits", {}).values()
                  for s in split.get("shards", [])}
        if records is not None:
            unknown = [f for f in mine if os.path.basename(f) not in counts]
            records = None if unknown else records + sum(counts[os.path.basename(f)] for f in mine)
    if records is None and all(tf.io.gfile.stat(f).length == 0 for f in files):
        records = 0
    if records == 0:
        raise ValueError(
            f"tfsts.data: {patterns} matches {len(files)} file(s) holding zero records "
            f"(first: {files[0]}); point the pattern at a split data_prep wrote records for"
        )
    manifest_classes = max(classes) if classes else None
    if num_classes is not None and manifest_classes is not None and manifest_classes > num_classes:
        raise ValueError(
            f"tfsts.data: the label map of {os.path.dirname(files[0])}/{MANIFEST} has {manifest_classes} classes "
            f"but the head has num_classes={num_classes}: labels would fall outside the head; set "
            f"num_classes={manifest_classes} (or pass the matching label map)"
        )
    return SourceInfo(files, records, manifest_classes, datasets.pop() if len(datasets) == 1 else None)


def _load_manifest(path: str, kind: str) -> dict[str, Any]:
    with tf.io.gfile.GFile(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"tfsts.data: {path} is not valid JSON ({e}); re-run data_prep to rewrite it") from None
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise ValueError(
            f"tfsts.data: {path} has schema_version={version!r} but this tfsts reads schema_version="
            f"{schema.SCHEMA_VERSION}; re-run data_prep with this tfsts version to rewrite the records, "
            "or read them with the tfsts version that wrote them"
        )
    if manifest.get("kind") not in (None, kind):
        raise ValueError(
            f"tfsts.data: {path} describes {manifest.get('kind')} records but {'an image' if kind == 'image' else 'a video'} dataset was asked "
            f"for; use {'image' if kind == 'video' else 'video'}_dataset for these files"
        )
    return manifest


def dataset_size(dataset: tf.data.Dataset) -> int | None:
    """Number of records behind a dataset made by video_dataset / image_dataset (from the manifests)."""
    return _SIZES.get(dataset)


# --- Sharding and keys --------------------------------------------------------------------------
def shard_files(files: list[str], input_context: tf.distribute.InputContext | None) -> tuple[list[str], tuple[int, int] | None]:
    """(this worker's files, element-level (num, index) shard or None)."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return files, None
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) >= n:
        return files[i::n], None
    _LOG.warning(
        "tfsts.data: %d file(s) for %d input pipelines: sharding by element (every worker reads every file); "
        "write more shards (data_prep --num_shards) for file-level sharding", len(files), n,
    )
    return files, (n, i)


def element_key(seed: int, epoch: tf.Tensor, file: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """int64 [2] stateless seed of one element: (seed, epoch, shard file name, record position)."""
    name = tf.strings.split(file, "/")[-1]
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x5EED], tf.int64), epoch)
    key = tf.random.experimental.stateless_fold_in(key, tf.strings.to_hash_bucket_fast(name, 2**62))
    return tf.random.experimental.stateless_fold_in(key, position)


def repeat_key(key: tf.Tensor, clip: int) -> tf.Tensor:
    """int64 [2] seed of clip ``clip`` >= 1 of one record (``clips_per_record``); clip 0 uses ``key``."""
    return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(key, 0x2E9EA7), clip)


def _records(files: list[str], *, training: bool, seed: int, element_shard: tuple[int, int] | None,
             cycle_length: int) -> tf.data.Dataset:
    """Dicts {file, position, record, epoch}; training: forever, files reshuffled each epoch."""
    file_tensor = tf.constant(files)

    def one_file(path: tf.Tensor) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(path, buffer_size=1 << 20).enumerate().map(
            lambda i, r: {"file": path, "position": i, "record": r})

    def epoch_records(epoch: tf.Tensor) -> tf.data.Dataset:
        order = file_tensor
        if training:
            order = tf.random.experimental.stateless_shuffle(file_tensor, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            one_file, cycle_length=min(len(files), cycle_length) if training else 1, block_length=1,
            **({"num_parallel_calls": AUTOTUNE, "deterministic": True} if training else {}))
        if element_shard is not None:
            ds = ds.shard(*element_shard)
        return ds.map(lambda e: dict(e, epoch=epoch))

    epochs = tf.data.Dataset.counter() if training else tf.data.Dataset.range(1)
    return epochs.flat_map(epoch_records)


def _robust_map(ds: tf.data.Dataset, fn: Any, *, strict: bool, deterministic: bool) -> tf.data.Dataset:
    """Map ``fn`` over record dicts; records whose parse/decode fails are skipped (or fatal if strict).

    Each element runs in its own one-element dataset with ``ignore_errors``; an empty result is
    replaced by a sentinel carrying the record's file and position, which is counted, logged
    and dropped (or raised).
    """
    spec = ds.element_spec

    def run(element: dict[str, tf.Tensor]) -> tf.data.Dataset:
        good = tf.data.Dataset.from_tensors(element).map(lambda e: dict(fn(e), _ok=tf.constant(True))).ignore_errors()
        out_spec = good.element_spec
        bad = tf.data.Dataset.from_tensors(element).map(lambda e: _sentinel(out_spec, e))
        return good.concatenate(bad).take(1)

    del spec
    ds = ds.interleave(run, cycle_length=AUTOTUNE, block_length=1, num_parallel_calls=AUTOTUNE,
                       deterministic=deterministic)

    def count(skipped: tf.Tensor, e: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        skipped = skipped + tf.cast(tf.logical_not(e["_ok"]), tf.int64)
        return skipped, dict(e, _skipped=skipped)

    ds = ds.scan(tf.constant(0, tf.int64), count)

    def report(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        where = tf.strings.format("record {} of {}", (e["_position"], e["_file"]))
        if strict:
            check = tf.debugging.Assert(e["_ok"], ["tfsts.data: a record failed to parse or decode (strict=True):",
                                                   where, "; re-write it with data_prep or drop strict"])
            with tf.control_dependencies([check]):
                return {k: tf.identity(v) for k, v in e.items()}
        log = tf.cond(
            tf.logical_and(tf.logical_not(e["_ok"]), tf.equal(e["_epoch"], 0)),
            lambda: _print_skip(where, e["_skipped"]), lambda: tf.constant(True))
        with tf.control_dependencies([log]):
            return {k: tf.identity(v) for k, v in e.items()}

    return ds.map(report).filter(lambda e: e["_ok"])


def _print_skip(where: tf.Tensor, skipped: tf.Tensor) -> tf.Tensor:
    op = tf.print("tfsts.data: skipped", where, "(it failed to parse or decode; skipped so far:", skipped,
                  "); pass strict=True to stop instead")
    with tf.control_dependencies([op]):
        return tf.constant(True)


def _sentinel(out_spec: dict[str, tf.TensorSpec], element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    out = {}
    for key, s in out_spec.items():
        if key == "_file":
            out[key] = element["file"]
        elif key == "_position":
            out[key] = element["position"]
        elif key == "_epoch":
            out[key] = element["epoch"]
        elif key == "_ok":
            out[key] = tf.constant(False)
        elif s.dtype == tf.string:
            out[key] = tf.fill([d or 0 for d in s.shape], "") if s.shape.rank else tf.constant("")
        else:
            out[key] = tf.zeros([d or 0 for d in s.shape], s.dtype)
    return out


def _bookkeeping(element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"_file": element["file"], "_position": element["position"], "_epoch": element["epoch"]}


def _check_labels(num_classes: int | None) -> Any:
    def check(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if num_classes is None:
            return e
        ok = tf.logical_and(e["label"] >= -1, e["label"] < num_classes)
        assertion = tf.debugging.Assert(ok, [
            "tfsts.data: label index", e["label"], "outside the head range [0,", num_classes, ") in",
            tf.strings.format("record {} of {}", (e["_position"], e["_file"])),
            "; set num_classes to the label map's size or re-write the records with the right --label_map"])
        with tf.control_dependencies([assertion]):
            return {k: tf.identity(v) for k, v in e.items()}
    return check


def _finish(ds: tf.data.Dataset, *, training: bool, batch_size: int, views: int, seed: int,
            num_classes: int | None, mixup: float, cutmix: float, label_smoothing: float,
            deterministic: bool) -> tf.data.Dataset:
    """Batch, fold views into the batch, mixup/cutmix + soft labels, prefetch, options."""
    ds = ds.map(lambda e: {k: v for k, v in e.items() if not k.startswith("_")})
    ds = ds.batch(batch_size, drop_remainder=training)
    if views > 1:
        def fold(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            f = e["frames"]
            return dict(e, frames=tf.reshape(f, tf.concat([[-1], tf.shape(f)[2:]], 0)))
        ds = ds.map(fold)
    soft = bool(mixup or cutmix or label_smoothing)
    if soft:
        if not num_classes:
            raise ValueError("tfsts.data: mixup/cutmix/label_smoothing need num_classes (the head's class count)")

        def mix(index: tf.Tensor, e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            target = augment.soft_labels(e["label"], num_classes, label_smoothing)
            frames = e["frames"]
            if training and (mixup or cutmix):
                key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0xB47C], tf.int64), index)
                frames, target, _ = augment.mixup_cutmix(frames, target, key, mixup=mixup, cutmix=cutmix)
            return dict(e, frames=frames, soft_label=target)

        ds = ds.enumerate().map(mix, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    # tf.print / tf.debugging.Assert (bad-record reporting) hold no state; let the iterator be saved.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options)


def _common_checks(batch_size: int, training: bool, input_context: Any) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"tfsts.data: batch_size={batch_size!r}: must be a positive int")
    if input_context is not None:
        return input_context.get_per_replica_batch_size(batch_size)
    return batch_size


# --- Video ---------------------------------------------------------------------------------------
def video_dataset(
    file_pattern: str | Sequence[str], *, training: bool, batch_size: int, num_frames: int,
    frame_interval: int = 1, sampling: str = "dense", crop_size: int = 224, num_clips: int = 1,
    num_crops: int = 1, short_side: int = 256, seed: int = 0, deterministic: bool = False,
    input_context: tf.distribute.InputContext | None = None, num_classes: int | None = None,
    mixup: float = 0.0, cutmix: float = 0.0, label_smoothing: float = 0.0,
    train_short_side: tuple[int, int] | None = None, crop: str = "random_resized",
    area_range: tuple[float, float] = (0.08, 1.0), aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool | None = None, flip_label_map: dict[int, int] | None = None, color_jitter: float = 0.0,
    shuffle_buffer: int = 64, strict: bool = False, cycle_length: int = 8, clips_per_record: int = 1,
) -> tf.data.Dataset:
    """Batches ``{"frames": uint8 [B*V, T, S, S, 3], "label": int32 [B], "media_id": string [B]}``.

    Training (``training=True``): forever, V = 1, one clip per video sampled by ``sampling``
    ("dense": ``num_frames x frame_interval``; "uniform": ``num_frames`` segments), short side
    ``short_side`` (or a random one in ``train_short_side = (lo, hi)``), ``crop``
    ("random_resized" with ``area_range`` / ``aspect_ratio_range``, "multi_scale", "center") to
    ``crop_size``, horizontal flip (default on, off for SSv2 records; ``flip_label_map`` swaps
    left/right labels of flipped clips), colour jitter of strength ``color_jitter`` (0 = off),
    last partial batch dropped. ``mixup`` / ``cutmix`` (Beta alphas) and ``label_smoothing`` add
    ``"soft_label"`` float32 [B, num_classes]. Evaluation: one pass in file order, the last
    batch kept, V = num_clips x num_crops views per video (``eval_views_from_jpegs``), rows
    ``b*V .. b*V+V-1`` belonging to video b.

    ``clips_per_record`` (training, default 1): k > 1 takes k clips, each with its own sampling
    and augmentation draws, from every record read (MAE-ST's "repeated sampling"): the reading,
    parsing and bad-record guard of a whole-video record are paid once per k clips (about 4 of
    the 10 CPU ms of an 8x8 clip from 256-short-side records, benchmarks/bench_input.py). The k
    clips of a record come out consecutively, so they usually share a batch; clip 0 is the clip
    that k = 1 gives.

    ``batch_size`` is the global batch: with ``input_context`` each pipeline batches
    ``input_context.get_per_replica_batch_size(batch_size)`` and reads its share of the files.

    Example:
        >>> ds = video_dataset("/data/k400/train-*.tfrecord", training=True, batch_size=8, num_frames=8,
        ...                    frame_interval=8, num_classes=400, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    """
    per_replica = _common_checks(batch_size, training, input_context)
    spec = None if training else video.ViewSpec(
        num_frames=num_frames, frame_interval=frame_interval, sampling=sampling, num_clips=num_clips,
        num_crops=num_crops, short_side=short_side, crop_size=crop_size)
    if not isinstance(clips_per_record, int) or isinstance(clips_per_record, bool) or clips_per_record < 1:
        raise ValueError(f"tfsts.data: clips_per_record={clips_per_record!r}: must be a positive int (1: one clip per record read)")
    if clips_per_record > 1 and not training:
        raise ValueError(f"tfsts.data: clips_per_record={clips_per_record} is for training; evaluation takes "
                         "num_clips x num_crops views of each video instead")
    if training and sampling not in ("dense", "uniform"):
        raise ValueError(f"tfsts.data: sampling={sampling!r}: use 'dense' or 'uniform'")
    info = resolve_files(file_pattern, "video", num_classes)
    files, element_shard = shard_files(info.files, input_context)
    if flip is None:
        flip = info.dataset != "ssv2"
    table = augment.flip_label_table(flip_label_map)
    worker_seed = seed if input_context is None else seed * 1000 + input_context.input_pipeline_id

    def train_clip(jpegs: tf.Tensor, shape: tf.Tensor, label: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        frames, _ = video.train_clip_from_jpegs(
            jpegs, shape[0], shape[1], key, num_frames=num_frames, frame_interval=frame_interval,
            sampling_mode=sampling, crop_size=crop_size, short_side=train_short_side or short_side,
            crop=crop, area_range=area_range, aspect_ratio_range=aspect_ratio_range)
        if flip:
            frames, label, _ = augment.random_flip(frames, label, key, table=table)
        if color_jitter:
            frames = augment.color_jitter(frames, key, brightness=color_jitter, contrast=color_jitter,
                                          saturation=color_jitter, hue=min(0.5, color_jitter / 4))
        return frames, label

    def process(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        context, sequence = schema.parse_video(e["record"])
        jpegs = sequence[schema.IMAGE_ENCODED]
        label = tf.cast(context[schema.LABEL_INDEX], tf.int32)
        if training:
            key = element_key(seed, e["epoch"], e["file"], e["position"])
            shape = tf.io.extract_jpeg_shape(jpegs[0])
            if clips_per_record == 1:
                frames, label = train_clip(jpegs, shape, label, key)
            else:  # clip j > 0 draws from its own key; clip 0 is the k = 1 clip
                keys = [key] + [repeat_key(key, j) for j in range(1, clips_per_record)]
                frames, labels = zip(*(train_clip(jpegs, shape, label, k) for k in keys))
                frames, label = tf.stack(frames), tf.stack(labels)
        else:
            frames = video.eval_views_from_jpegs(jpegs, spec)
            if spec.num_views == 1:
                frames = frames[0]
        return dict(_bookkeeping(e), frames=frames, label=label, media_id=context[schema.MEDIA_ID])

    return _assemble(files, process, training=training, seed=worker_seed, element_shard=element_shard,
                     cycle_length=cycle_length, shuffle_buffer=shuffle_buffer, strict=strict,
                     deterministic=deterministic, batch_size=per_replica, views=spec.num_views if spec else 1,
                     num_classes=num_classes, mixup=mixup, cutmix=cutmix, label_smoothing=label_smoothing,
                     num_records=info.num_records, clips_per_record=clips_per_record)


def _assemble(files, process, *, training: bool, seed, element_shard, cycle_length: int, shuffle_buffer: int,
              strict: bool, deterministic: bool, batch_size: int, views: int, num_classes, mixup: float,
              cutmix: float, label_smoothing: float, num_records, clips_per_record: int = 1) -> tf.data.Dataset:
    """The stages every stream shares around its own `process` (parse, sample, decode,
    preprocess one record): read, shuffle (training), guarded map, label check, batch.
    With ``clips_per_record`` k > 1, `process` returns k clips per record, split here."""
    ds = _records(files, training=training, seed=seed, element_shard=element_shard, cycle_length=cycle_length)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = _robust_map(ds, process, strict=strict, deterministic=deterministic or not training)
    if clips_per_record > 1:  # the record's bookkeeping (scalars) repeated for each of its clips
        ds = ds.map(lambda e: {k: v if v.shape.rank else tf.fill([clips_per_record], v) for k, v in e.items()}).unbatch()
    ds = ds.map(_check_labels(num_classes))
    ds = _finish(ds, training=training, batch_size=batch_size, views=views, seed=seed, num_classes=num_classes,
                 mixup=mixup if training else 0.0, cutmix=cutmix if training else 0.0,
                 label_smoothing=label_smoothing, deterministic=deterministic or not training)
    if num_records is not None:
        _SIZES[ds] = num_records
    return ds


# --- Images --------------------------------------------------------------------------------------
def image_dataset(
    file_pattern: str | Sequence[str], *, training: bool, batch_size: int, crop_size: int = 224,
    num_frames: int = 1, short_side: int = 256, seed: int = 0, deterministic: bool = False,
    input_context: tf.distribute.InputContext | None = None, num_classes: int | None = None,
    mixup: float = 0.0, cutmix: float = 0.0, label_smoothing: float = 0.0,
    area_range: tuple[float, float] = (0.08, 1.0), aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True, color_jitter: float = 0.0, shuffle_buffer: int = 1024, strict: bool = False,
    cycle_length: int = 8,
) -> tf.data.Dataset:
    """Image records as clips: ``{"frames": uint8 [B, T, S, S, 3], "label", "media_id"}``, T = num_frames.

    Each image is one clip of ``num_frames`` copies of itself (T = 1: the reference's image
    pre-training of 3D nets). Training: random resized crop (``area_range``, ``aspect_ratio_range``),
    flip, colour jitter, mixup/cutmix as ``video_dataset``. Evaluation: short side ``short_side``,
    centre crop. ``media_id`` is the image's source path (``image/filename``).
    """
    per_replica = _common_checks(batch_size, training, input_context)
    if crop_size > short_side and not training:
        raise ValueError(f"tfsts.data: crop_size={crop_size} > short_side={short_side}; raise short_side")
    info = resolve_files(file_pattern, "image", num_classes)
    files, element_shard = shard_files(info.files, input_context)
    worker_seed = seed if input_context is None else seed * 1000 + input_context.input_pipeline_id

    def process(e: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        features = schema.parse_image(e["record"])
        jpeg = features[schema.IMAGE_ENCODED]
        label = tf.cast(features[schema.IMAGE_CLASS_LABEL], tf.int32)
        if training:
            key = element_key(seed, e["epoch"], e["file"], e["position"])
            shape = tf.io.extract_jpeg_shape(jpeg)
            box = video.random_resized_crop_box(shape[0], shape[1], key, area_range=area_range,
                                                aspect_ratio_range=aspect_ratio_range)
            frame = video.decode_crop_resize(jpeg[None], box, crop_size)
            if flip:
                frame, label, _ = augment.random_flip(frame, label, key)
            if color_jitter:
                frame = augment.color_jitter(frame, key, brightness=color_jitter, contrast=color_jitter,
                                             saturation=color_jitter, hue=min(0.5, color_jitter / 4))
        else:
            image = tf.io.decode_jpeg(jpeg, channels=3)[None]
            image = video.resize_short_side(image, short_side)
            frame = video.spatial_crops(image[None], crop_size, 1)[0, 0]
        frames = tf.ensure_shape(tf.tile(frame, [num_frames, 1, 1, 1]), [num_frames, crop_size, crop_size, 3])
        return dict(_bookkeeping(e), frames=frames, label=label, media_id=features[schema.IMAGE_FILENAME])

    return _assemble(files, process, training=training, seed=worker_seed, element_shard=element_shard,
                     cycle_length=cycle_length, shuffle_buffer=shuffle_buffer, strict=strict,
                     deterministic=deterministic, batch_size=per_replica, views=1,
                     num_classes=num_classes, mixup=mixup, cutmix=cutmix, label_smoothing=label_smoothing,
                     num_records=info.num_records)
