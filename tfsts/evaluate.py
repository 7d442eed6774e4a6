"""Multi-view evaluation of a checkpoint: `python -m tfsts.evaluate --config=... --checkpoint=... --out result.json`.

    python -m tfsts.evaluate --config=configs/kinetics400/slowonly_r50_8x8.py \
        --checkpoint=runs/k400 --num_clips 10 --num_crops 3 --average_clips prob \
        --metrics top_k_accuracy,mean_class_accuracy --out runs/k400/eval/result.json

Every source of the config that has an `eval_pattern` is evaluated with its own head and label
map; its views (eval_num_clips x eval_num_crops, or --num_clips / --num_crops) come batched from
the data pipeline, the model's logits are combined per video as --average_clips says, and the
result JSON holds, per source, `{"metrics": {...}, "class_names": [...], "videos": [{"media_id",
"label", "scores"}, ...]}` (scores averaged as asked, so the file can be re-scored later with
`tfsts.evaluation.metrics_from_result`). A confusion-matrix PNG per source is written beside it.
`--config` may be left out when the checkpoint's workdir has the config.json training wrote.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from tfsts.evaluation import metrics as metrics_lib  # noqa: E402



def define_flags() -> None:
    """The CLI's flags (defined on demand, so that importing this module as a library defines none)."""
    config_flags.DEFINE_config_file("config", None, "The training config (configs/<dataset>/<experiment>.py); default: the checkpoint's config.json.")
    flags.DEFINE_string("checkpoint", None, "Training workdir (its latest checkpoint) or a checkpoint prefix DIR/checkpoints/ckpt-N.")
    flags.DEFINE_integer("num_clips", None, "Clips per video (default: each source's eval_num_clips).")
    flags.DEFINE_integer("num_crops", None, "Crops per clip, 1 or 3 (default: each source's eval_num_crops).")
    flags.DEFINE_enum("average_clips", "prob", list(metrics_lib.AVERAGE_CLIPS), "How the views of a video are combined.")
    flags.DEFINE_list("metrics", list(metrics_lib.METRICS), "Metrics: top_k_accuracy, mean_class_accuracy.")
    flags.DEFINE_list("topk", ["1", "5"], "k values of top_k_accuracy.")
    flags.DEFINE_string("out", None, "Result JSON path (confusion-matrix PNGs are written beside it).")
    flags.DEFINE_integer("batch_size", 0, "Videos per batch (default: train.eval_batch_size or train.global_batch_size).")
    flags.DEFINE_list("sources", [], "Evaluate only these sources (default: every source with an eval_pattern).")
    flags.DEFINE_boolean("progress", True, "Show a progress bar.")


class EvaluationError(ValueError):
    """The evaluation cannot run as asked; the message names the flag or file and the fix."""


def class_names_for(config, name: str) -> list[str]:
    """The source's label map (config label_map, else label_map.txt beside its eval shards),
    else the class indices as strings."""
    from data_prep.annotations import load_label_map
    from tfsts.training import datasets

    src = config.data.sources[name]
    path = datasets.label_map_path(src, src.eval_pattern or src.train_pattern)
    if path is None:
        return [str(i) for i in range(src.num_classes)]
    try:
        names = load_label_map(path)
    except FileNotFoundError:
        raise EvaluationError(f"config.data.sources.{name}.label_map = {path!r}: no such file.") from None
    if len(names) != src.num_classes:
        raise EvaluationError(
            f"source {name!r}: the label map {path} has {len(names)} classes but config.data.sources.{name}.num_classes "
            f"= {src.num_classes}; use the label map the model was trained with."
        )
    return names


def describe_config(config, path: str | None = None) -> str:
    classes = {n: int(s.num_classes) for n, s in config.data.sources.items()}
    where = f"--config={path} " if path else "config "
    return f"{where}(model.name={config.model.name}, num_classes={classes})"


def load_model(config, checkpoint: str, *, config_path: str | None = None):
    """The config's model with the checkpoint's weights; a mismatch is an EvaluationError
    naming both the checkpoint and the config."""
    from tfsts.training import build_model_from_config, restore_model

    model = build_model_from_config(config)
    try:
        prefix = restore_model(model, checkpoint)
    except FileNotFoundError as e:
        raise EvaluationError(f"--checkpoint={checkpoint}: {e}") from None
    except ValueError as e:
        raise EvaluationError(f"{describe_config(config, config_path)} does not match --checkpoint={checkpoint}: {e}") from None
    if needs_free_spatial_dims(config):
        model = with_free_spatial_dims(model)
    return model, prefix


def needs_free_spatial_dims(config) -> bool:
    """True when a source evaluates at another crop size than the model is built for
    (eval_crop_size, e.g. mmaction2's 3 x 256 crops of a model trained at 224)."""
    from tfsts.training import datasets, modeling

    shape = modeling.input_shape_for(config)
    return any(not (datasets.eval_crop(s) == shape[1] == shape[2]) for s in config.data.sources.values())


def with_free_spatial_dims(model):
    """The same network and weights on [B, T, None, None, 3] input (convolutional models do
    not depend on the frame size)."""
    import keras

    shape = model.inputs[0].shape
    clone = keras.models.clone_model(model, input_tensors=keras.Input((shape[1], None, None, shape[4]), name=model.inputs[0].name))
    clone.set_weights(model.get_weights())
    return clone


def config_for(checkpoint: str, config=None):
    """The given config, else the config.json beside the checkpoint."""
    if config is not None:
        return config
    from tfsts.training import modeling

    try:
        prefix = modeling.checkpoint_prefix(checkpoint)
    except FileNotFoundError as e:
        raise EvaluationError(f"--checkpoint={checkpoint}: {e}") from None
    saved = modeling.saved_config(prefix)
    if saved is None:
        raise EvaluationError(
            f"--checkpoint={checkpoint} has no config.json in its workdir: pass --config=configs/<dataset>/<experiment>.py."
        )
    return saved


def with_views(config, num_clips: int | None, num_crops: int | None):
    """A copy of the config with every source's evaluation views overridden."""
    import ml_collections

    config = ml_collections.ConfigDict(config.to_dict())
    for src in config.data.sources.values():
        if num_clips is not None:
            if num_clips < 1:
                raise EvaluationError(f"--num_clips={num_clips}: must be >= 1.")
            src.eval_num_clips = int(num_clips)
        if num_crops is not None:
            if num_crops not in (1, 3):
                raise EvaluationError(f"--num_crops={num_crops}: must be 1 (centre) or 3 (along the long side).")
            src.eval_num_crops = int(num_crops)
    return config


def view_specs(config, clip_len: int | None = None) -> dict[str, Any]:
    """{source: tfsts.data.ViewSpec} of the evaluation views each source's config describes.

    Image sources (and video sources when clip_len is given) take the model's clip length, so
    a co-trained model's image head can be served on video clips.
    """
    from tfsts.data import ViewSpec
    from tfsts.training.datasets import eval_crop

    specs = {}
    for name, src in config.data.sources.items():
        if src.kind == "video":
            frames = int(src.num_frames)
            if clip_len is not None and frames != clip_len:
                raise EvaluationError(
                    f"config.data.sources.{name}.num_frames = {frames} but the model takes {clip_len}-frame clips; "
                    "serve sources of one clip length (set config.model.input_shape to match)."
                )
            specs[name] = ViewSpec(
                num_frames=frames, frame_interval=int(src.frame_interval), sampling=src.sampling,
                num_clips=int(src.eval_num_clips), num_crops=int(src.eval_num_crops),
                short_side=int(src.eval_short_side), crop_size=eval_crop(src),
            )
        else:
            specs[name] = ViewSpec(
                num_frames=int(clip_len or 1), num_clips=1, num_crops=1,
                short_side=max(int(src.eval_short_side), eval_crop(src)), crop_size=eval_crop(src),
            )
    return specs


def _progress(total: int | None, label: str, enabled: bool):
    if not enabled:
        return None
    import keras

    print(f"evaluating {label}", file=sys.stderr)
    return keras.utils.Progbar(total, unit_name="video", stateful_metrics=None)


def run_source(model, config, name: str, *, batch_size: int, progress: bool = True) -> tuple[list[str], Any, Any]:
    """(media ids, labels [N], raw logits [N, V, C]) of one source, every view through its head."""
    import numpy as np
    import tensorflow as tf

    from tfsts import data
    from tfsts.training import datasets, losses

    src = config.data.sources[name]
    dataset = datasets.source_dataset(config, name, training=False, batch_size=batch_size)
    views = int(src.eval_num_clips * src.eval_num_crops) if src.kind == "video" else 1
    names = list(config.data.sources)
    predict = tf.function(lambda frames: model(tf.cast(frames, tf.float32), training=False), reduce_retracing=True)
    bar = _progress(data.dataset_size(dataset), name, progress)
    ids, labels, logits = [], [], []
    for batch in dataset:
        out = losses.source_outputs(predict(batch["frames"]), names)[name].numpy().astype(np.float64)
        out = out.reshape(-1, views, out.shape[-1])
        ids.extend(m.decode("utf-8", "replace") for m in batch["media_id"].numpy())
        labels.append(batch["label"].numpy())
        logits.append(out)
        if bar is not None:
            bar.add(out.shape[0])
    if not logits:
        raise EvaluationError(f"config.data.sources.{name}.eval_pattern = {src.eval_pattern!r} holds no records.")
    return ids, np.concatenate(labels), np.concatenate(logits)


def evaluate_checkpoint(
    config,
    checkpoint: str,
    *,
    num_clips: int | None = None,
    num_crops: int | None = None,
    average: str = "prob",
    metrics: Sequence[str] = metrics_lib.METRICS,
    topk: Sequence[int] = (1, 5),
    out: str | None = None,
    batch_size: int = 0,
    sources: Sequence[str] = (),
    progress: bool = True,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate every source (with an eval_pattern) of a trained model; returns the result
    dict (and writes it as JSON plus `<out stem>_confusion_<source>.png` when `out` is given)."""
    if average not in metrics_lib.AVERAGE_CLIPS:
        raise EvaluationError(f"--average_clips={average}: use one of {', '.join(metrics_lib.AVERAGE_CLIPS)}.")
    unknown = [m for m in metrics if m not in metrics_lib.METRICS]
    if unknown:
        raise EvaluationError(f"--metrics: unknown {unknown}; available: {', '.join(metrics_lib.METRICS)}.")
    from tfsts.training import modeling

    try:
        modeling.checkpoint_prefix(checkpoint)  # fail before building anything
    except FileNotFoundError as e:
        raise EvaluationError(f"--checkpoint={checkpoint}: {e}") from None
    config = with_views(config_for(checkpoint, config), num_clips, num_crops)
    names = list(sources) or [n for n, s in config.data.sources.items() if s.eval_pattern]
    missing = [n for n in names if n not in config.data.sources]
    if missing:
        raise EvaluationError(f"--sources: {missing} not in the config (it has {', '.join(config.data.sources)}).")
    if not names:
        raise EvaluationError("no source has an eval_pattern: set --config.data.sources.<name>.eval_pattern=GLOB.")
    for n in names:
        if not config.data.sources[n].eval_pattern:
            raise EvaluationError(f"source {n!r} has no eval_pattern: set --config.data.sources.{n}.eval_pattern=GLOB.")
    class_names = {n: class_names_for(config, n) for n in names}
    model, prefix = load_model(config, checkpoint, config_path=config_path)
    batch = batch_size or config.train.eval_batch_size or config.train.global_batch_size
    results: dict[str, Any] = {}
    confusion = {}
    for n in names:
        ids, labels, logits = run_source(model, config, n, batch_size=batch, progress=progress)
        entry, cm = metrics_lib.source_result(
            ids, labels, logits, class_names=class_names[n], average=average, metrics=metrics, topk=topk
        )
        entry["metrics"]["checkpoint"] = prefix
        results[n] = entry
        confusion[n] = cm
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(results) + "\n")
        tmp.replace(path)
        for n, cm in confusion.items():
            if cm is not None:
                png = path.with_name(f"{path.stem}_confusion_{n}.png")
                metrics_lib.plot_confusion_matrix(cm, class_names[n], str(png), title=f"{n}: {config.model.name}, {average}")
                results[n]["metrics"]["confusion_png"] = str(png)
        if any(cm is not None for cm in confusion.values()):  # record the PNG paths too
            tmp.write_text(json.dumps(results) + "\n")
            tmp.replace(path)
    return results


def summary_table(results: Mapping[str, Any]) -> str:
    """One line per source: videos, views, and every scalar metric."""
    lines = []
    for name, entry in results.items():
        m = entry["metrics"]
        values = [f"{k} {m[k]:.4f}" for k in sorted(m) if k.startswith("top") or k == "mean_class_accuracy"]
        lines.append(f"{name}: {m['num_videos']} videos x {m['num_views']} views ({m['average_clips']}): " + (", ".join(values) or "no labels"))
    return "\n".join(lines)


def _fail(message: str, code: int = 1):
    print(f"tfsts.evaluate: error: {message}", file=sys.stderr)
    sys.exit(code)


def _precheck(argv: Sequence[str]) -> str | None:
    """One-line errors for a bad --config path or key before absl (which prints tracebacks)."""
    from tfsts.training import config as config_lib

    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not any(a.startswith("--checkpoint") for a in argv):
        _fail("--checkpoint=WORKDIR_or_PREFIX is required.", 2)
    if not paths:
        if any(a.startswith("--config.") for a in argv):
            _fail("--config.x=y overrides need --config=FILE.", 2)
        return None
    try:
        config = config_lib.load_config_file(paths[-1])
        config_lib.check_overrides(config, argv)
    except config_lib.ConfigError as e:
        _fail(str(e), 2)
    return paths[-1]


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; config fields are set with --config.a.b=value.", 2)
    import tensorflow as tf

    from tfsts.training import config as config_lib

    try:
        topk = [int(k) for k in flags.FLAGS.topk]
    except ValueError:
        _fail(f"--topk={','.join(flags.FLAGS.topk)}: give integers such as 1,5.", 2)
    config_path = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
    try:
        results = evaluate_checkpoint(
            flags.FLAGS.config, flags.FLAGS.checkpoint, num_clips=flags.FLAGS.num_clips, num_crops=flags.FLAGS.num_crops,
            average=flags.FLAGS.average_clips, metrics=flags.FLAGS.metrics, topk=topk, out=flags.FLAGS.out, batch_size=flags.FLAGS.batch_size,
            sources=flags.FLAGS.sources, progress=flags.FLAGS.progress, config_path=config_path,
        )
    except (EvaluationError, config_lib.ConfigError, FileNotFoundError) as e:
        _fail(str(e))
    except tf.errors.OpError as e:
        _fail(e.message.strip().splitlines()[0][:600])
    print(summary_table(results))
    if flags.FLAGS.out:
        print(f"wrote {flags.FLAGS.out}")


def run() -> None:
    _precheck(sys.argv[1:])
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
