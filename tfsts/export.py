"""SavedModel export for TF Serving: `python -m tfsts.export --config=... --checkpoint=... --export_dir=DIR/NAME`.

Writes `DIR/NAME/<version>/` (the layout TF Serving watches) with four signatures, each
returning `probabilities` `[B, C]`, `top_k_indices` `[B, k]` int32 and `top_k_labels` `[B, k]`
string (class names baked in); a co-trained model returns one such set per head, keyed
`<source>_probabilities`, `<source>_top_k_indices`, `<source>_top_k_labels`:

- `serving_default`: `frames` float32 `[B, T, H, W, 3]`, RGB 0..255 (the model normalises);
- `frames_uint8`: the same frames as uint8;
- `encoded_frames`: `jpeg_frames` string `[B, T]`, one clip of T JPEG frames per row, decoded,
  resized and cropped in the graph by `tfsts.data.eval_views_from_jpegs` (the evaluation code
  itself); with 3 crops the crops' scores are averaged like evaluation averages views;
- `sequence_example`: `sequence_example` string `[B]`, serialized records as data_prep writes
  them (tfsts/data/schema.py), sampled into the evaluation views of `view_spec` by
  `tfsts.data.eval_views_from_serialized`, the views' scores averaged per video.

The graph serves `tfsts.models.fold_batch_norms(model)` (`--nofold_batch_norms`: the model's
own layers): each BN a conv alone feeds is folded into that conv's kernel and bias, the same
function up to float32 rounding, faster to serve (`assets.extra/tfsts_export.json` records how
many BNs were folded). Only core TensorFlow ops are used (TF Serving loads no add-on ops).
Warm-up requests (one per signature, built with tensorflow-serving-api protos) go to
`assets.extra/tf_serving_warmup_requests`,
and `assets.extra/tfsts_export.json` records heads, class names and view specs for
`tfsts.predict`. A version directory is written beside its final place and renamed in at the end,
so a failed export never leaves a half-written version nor removes an existing one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

SIGNATURES = ("serving_default", "frames_uint8", "encoded_frames", "sequence_example")
INPUT_KEYS = {
    "serving_default": "frames",
    "frames_uint8": "frames",
    "encoded_frames": "jpeg_frames",
    "sequence_example": "sequence_example",
}
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
METADATA_FILE = os.path.join("assets.extra", "tfsts_export.json")
EXPORT_AVERAGES = ("prob", "score")


class ExportError(ValueError):
    """The export cannot be written as asked; the message names the argument and the fix."""


def version_path(export_dir: str | os.PathLike, version: int) -> Path:
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ExportError(f"--version must be a non-negative integer (TF Serving's version directory); got {version!r}.")
    return Path(export_dir) / str(version)


def _heads(model, class_names) -> tuple[list[str | None], dict[str | None, list[str]]]:
    """Head names (None for a single-output model) and their class names, checked against the model."""
    outputs = model.output
    if isinstance(outputs, Mapping):
        if not isinstance(class_names, Mapping) or set(class_names) != set(outputs):
            raise ExportError(
                f"model {model.name!r} has heads {sorted(outputs)}; class_names must be a dict with exactly "
                f"those keys (got {sorted(class_names) if isinstance(class_names, Mapping) else type(class_names).__name__})."
            )
        heads = list(outputs)
        sizes = {h: outputs[h].shape[-1] for h in heads}
        names = {h: list(class_names[h]) for h in heads}
    else:
        if isinstance(class_names, Mapping):
            if len(class_names) != 1:
                raise ExportError(f"model {model.name!r} has one output but class_names has heads {sorted(class_names)}.")
            class_names = next(iter(class_names.values()))
        heads = [None]
        sizes = {None: outputs.shape[-1]}
        names = {None: list(class_names)}
    for h in heads:
        if len(names[h]) != sizes[h]:
            where = "" if h is None else f" head {h!r}"
            raise ExportError(
                f"model {model.name!r}{where} has {sizes[h]} classes but {len(names[h])} class names were given; "
                "pass the label map the model was trained with."
            )
    return heads, names


def _specs(heads, view_spec) -> dict[str | None, Any]:
    if isinstance(view_spec, Mapping):
        missing = [h for h in heads if h not in view_spec]
        if heads == [None] and len(view_spec) == 1:
            return {None: next(iter(view_spec.values()))}
        if missing:
            raise ExportError(f"view_spec has no entry for head(s) {missing}; give one ViewSpec per source.")
        return {h: view_spec[h] for h in heads}
    return {h: view_spec for h in heads}


def _clip_spec(spec):
    """The spec that keeps a [T] row of frames as it is and only crops it (encoded_frames)."""
    return dataclasses.replace(spec, frame_interval=1, sampling="dense", num_clips=1)


def _check_model_input(model, specs) -> tuple[int | None, int | None, int | None]:
    shape = tuple(model.inputs[0].shape)
    if len(model.inputs) != 1 or len(shape) != 5 or shape[-1] != 3:
        raise ExportError(f"model {model.name!r} must take one [B, T, H, W, 3] input; it takes {[tuple(i.shape) for i in model.inputs]}.")
    t, h, w = shape[1:4]
    for head, spec in specs.items():
        where = "view_spec" if head is None else f"view_spec[{head!r}]"
        if t is not None and spec.num_frames != t:
            raise ExportError(f"{where}.num_frames={spec.num_frames} but model {model.name!r} takes clips of {t} frames.")
        for size in (h, w):
            if size is not None and spec.crop_size != size:
                raise ExportError(
                    f"{where}.crop_size={spec.crop_size} but model {model.name!r} takes {h}x{w} frames; "
                    "build the model with input_shape=(T, None, None, 3) to serve other crop sizes."
                )
    return t, h, w


def build_archive(model, *, view_spec, class_names, top_k: int = 5, average: str = "prob"):
    """A `keras.export.ExportArchive` with the four signatures (not yet written), its metadata,
    and the signatures as in-process tf.functions {name: fn(input) -> outputs} (tfsts.predict
    runs a checkpoint through them, so it computes exactly what the export serves)."""
    import keras
    import tensorflow as tf

    from tfsts.data import eval_views_from_jpegs, eval_views_from_serialized

    if average not in EXPORT_AVERAGES:
        raise ExportError(f"average must be one of {EXPORT_AVERAGES} for serving (views are combined in the graph); got {average!r}.")
    heads, names = _heads(model, class_names)
    specs = _specs(heads, view_spec)
    clip_len, height, width = _check_model_input(model, specs)
    labels = {head: tf.constant(names[head]) for head in heads}
    frame_shape = [None, clip_len, height, width, 3]

    # Traced once and called by every signature: one copy of the network in the graph.
    model_fn = tf.function(
        lambda frames: model(frames, training=False),
        input_signature=[tf.TensorSpec([None, clip_len, height, width, 3], tf.float32)],
        autograph=False,
    )

    def logits_by_head(frames):
        out = model_fn(tf.cast(frames, tf.float32))
        return out if isinstance(out, Mapping) else {None: out}

    def head_outputs(head, logits, num_views):
        """[B*V, C] logits -> {probabilities, top_k_indices, top_k_labels} of [B] videos."""
        c = logits.shape[-1]
        logits = tf.reshape(tf.cast(logits, tf.float32), [-1, num_views, c])
        if average == "prob":
            probs = tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=1)
        else:
            probs = tf.nn.softmax(tf.reduce_mean(logits, axis=1), axis=-1)
        k = min(top_k, c)
        _, indices = tf.math.top_k(probs, k=k)
        prefix = "" if head is None else f"{head}_"
        return {
            f"{prefix}probabilities": probs,
            f"{prefix}top_k_indices": tf.cast(indices, tf.int32),
            f"{prefix}top_k_labels": tf.gather(labels[head], indices),
        }

    def from_views(views_fn, specs_by_head, batch):
        """Run the model once per distinct view spec; each head reads its own spec's views."""
        outputs = {}
        groups: dict[Any, list] = {}
        for head in heads:
            groups.setdefault(specs_by_head[head], []).append(head)
        for spec, group in groups.items():
            views = tf.map_fn(
                lambda x: views_fn(x, spec),
                batch,
                fn_output_signature=tf.TensorSpec([spec.num_views, spec.num_frames, spec.crop_size, spec.crop_size, 3], tf.uint8),
            )
            flat = tf.reshape(views, [-1, spec.num_frames, spec.crop_size, spec.crop_size, 3])
            logits = logits_by_head(flat)
            for head in group:
                outputs.update(head_outputs(head, logits[head], spec.num_views))
        return outputs

    def check_shape(tensor, expected, what):
        """An in-graph check with a readable message (TF Serving does not check shapes)."""
        static = [d for d in expected]
        want = "[" + ", ".join("B" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(static)) + "]"
        conditions = [tf.equal(tf.rank(tensor), len(static))]
        for axis, d in enumerate(static):
            if d is not None and axis > 0:
                conditions.append(tf.equal(tf.shape(tensor)[axis], d))
        ok = tf.reduce_all(tf.stack(conditions)) if len(conditions) > 1 else conditions[0]
        check = tf.debugging.Assert(ok, [f"{what} must have shape {want}; got shape", tf.shape(tensor)])
        with tf.control_dependencies([check]):
            return tf.identity(tensor)

    def serve_float(frames):
        frames = check_shape(frames, frame_shape, "frames (float32 RGB 0..255)")
        logits = logits_by_head(frames)
        return {k: v for head in heads for k, v in head_outputs(head, logits[head], 1).items()}

    def serve_uint8(frames):
        return serve_float(frames)  # the cast to float32 is in logits_by_head

    clip_specs = {head: _clip_spec(spec) for head, spec in specs.items()}
    jpeg_len = clip_len if clip_len is not None else specs[heads[0]].num_frames

    def serve_jpegs(jpeg_frames):
        jpeg_frames = check_shape(jpeg_frames, [None, jpeg_len], "jpeg_frames (one clip of JPEG strings per row)")
        return from_views(eval_views_from_jpegs, clip_specs, jpeg_frames)

    def serve_records(sequence_example):
        return from_views(eval_views_from_serialized, specs, sequence_example)

    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoints = {
        "serving_default": archive.add_endpoint(
            "serving_default", serve_float, [tf.TensorSpec(frame_shape, tf.float32, name="frames")]),
        "frames_uint8": archive.add_endpoint(
            "frames_uint8", serve_uint8, [tf.TensorSpec(frame_shape, tf.uint8, name="frames")]),
        "encoded_frames": archive.add_endpoint(
            "encoded_frames", serve_jpegs, [tf.TensorSpec([None, jpeg_len], tf.string, name="jpeg_frames")]),
        "sequence_example": archive.add_endpoint(
            "sequence_example", serve_records, [tf.TensorSpec([None], tf.string, name="sequence_example")]),
    }
    metadata = {
        "model": model.name,
        "heads": list(heads),
        "class_names": {("" if h is None else h): names[h] for h in heads},
        "view_specs": {("" if h is None else h): dataclasses.asdict(specs[h]) for h in heads},
        "input_shape": frame_shape,
        "top_k": top_k,
        "average_clips": average,
        "signatures": {name: INPUT_KEYS[name] for name in SIGNATURES},
    }
    return archive, metadata, endpoints


def serving_api_available() -> bool:
    """Whether tensorflow-serving-api (the warm-up requests' protos) can be imported."""
    try:
        from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def warmup_requests(metadata: Mapping[str, Any], model_name: str) -> list[bytes]:
    """One serialized PredictionLog per signature, batch 1, mid-grey content."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from tfsts.data import schema

    _, t, h, w, _ = metadata["input_shape"]
    spec = next(iter(metadata["view_specs"].values()))
    t = t or spec["num_frames"]
    h, w = h or spec["crop_size"], w or spec["crop_size"]
    frame = np.full((spec["short_side"], spec["short_side"] * 4 // 3, 3), 128, np.uint8)
    jpeg = tf.io.encode_jpeg(frame).numpy()
    record = schema.encode_video(
        [jpeg] * t, [round(i * 1e6 / 25) for i in range(t)], media_id="warmup", label_index=-1, label_text="",
        frame_rate=25.0, data_path="warmup", start_us=0, end_us=round(t * 1e6 / 25),
        height=frame.shape[0], width=frame.shape[1], original_height=frame.shape[0], original_width=frame.shape[1],
    )
    inputs = {
        "serving_default": np.full((1, t, h, w, 3), 128.0, np.float32),
        "frames_uint8": np.full((1, t, h, w, 3), 128, np.uint8),
        "encoded_frames": np.array([[jpeg] * t], dtype=object),
        "sequence_example": np.array([record], dtype=object),
    }
    logs = []
    for name in SIGNATURES:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        request.inputs[INPUT_KEYS[name]].CopyFrom(tf.make_tensor_proto(inputs[name]))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        logs.append(log.SerializeToString())
    return logs


def export_model(
    model,
    export_dir: str | os.PathLike,
    *,
    view_spec,
    class_names: Sequence[str] | Mapping[str, Sequence[str]],
    version: int = 1,
    overwrite: bool = False,
    top_k: int = 5,
    average: str = "prob",
    warmup: bool = True,
    fold_batch_norms: bool = True,
) -> Path:
    """Write `model` as `export_dir/<version>/`, a SavedModel TF Serving can load.

    Args:
        model: a tfsts model (frames `[B, T, H, W, 3]` 0..255 in, logits out; a dict of heads
            for co-trained models).
        export_dir: `DIR/NAME`, the model's base path for TF Serving (NAME is its model name).
        view_spec: a `tfsts.data.ViewSpec`, or `{source: ViewSpec}` for co-trained models: how
            `sequence_example` samples views and `encoded_frames` crops.
        class_names: the label map (`{source: names}` for co-trained models).
        version: TF Serving's version directory.
        overwrite: replace an existing version (the old one stays until the new one is complete).
        top_k: how many `top_k_indices` / `top_k_labels` per video.
        average: how views are combined, "prob" (mean of softmaxes) or "score" (mean logits).
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        fold_batch_norms: serve `tfsts.models.fold_batch_norms(model)`, each BN after a conv
            folded into it (the same function up to float32 rounding; X3D-S, ir-CSN-50 and
            ResNet3D-18 infer in 0.91-0.98x the time, benchmarks/bench_inference.py); False:
            the model's own layers.

    Returns:
        The version directory.

    Example:
        >>> export_model(model, "exports/slowonly", view_spec=ViewSpec(8, 8, num_clips=10, num_crops=3),
        ...              class_names=load_label_map("label_map.txt"))
        PosixPath('exports/slowonly/1')
    """
    import tensorflow as tf

    final = version_path(export_dir, version)
    if final.exists() and not overwrite:
        raise ExportError(f"{final} already exists; pass --overwrite to replace it or --version N to write another version.")
    if warmup and not serving_api_available():
        raise ExportError(
            "the TF Serving warm-up requests need tensorflow-serving-api, which is not installed: "
            "pip install -e '.[serving]' (tensorflow-serving-api==2.21.0), or export without warm-up requests "
            "(export_model(..., warmup=False)); nothing was written."
        )
    served, folded = model, 0
    if fold_batch_norms:
        from tfsts.models import graph

        folded = len(graph.foldable_batch_norms(model))
        served = graph.fold_batch_norms(model)
    archive, metadata, _ = build_archive(served, view_spec=view_spec, class_names=class_names, top_k=top_k, average=average)
    metadata["batch_norms_folded"] = folded
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; TF Serving may run as another user
    try:
        archive.write_out(str(staging), verbose=False)
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n")
        if warmup:
            with tf.io.TFRecordWriter(str(staging / WARMUP_FILE)) as writer:
                for record in warmup_requests(metadata, Path(export_dir).name):
                    writer.write(record)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.replaced-{os.getpid()}"
            final.rename(old)
        staging.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def read_metadata(version_dir: str | os.PathLike) -> dict[str, Any]:
    """The export's heads, class names and view specs (assets.extra/tfsts_export.json)."""
    path = Path(version_dir) / METADATA_FILE
    if not path.exists():
        raise ExportError(f"{version_dir} has no {METADATA_FILE}: not a tfsts export (export it with python -m tfsts.export).")
    return json.loads(path.read_text())


def latest_version(export_dir: str | os.PathLike) -> Path:
    """`export_dir` itself when it is a version directory, else its highest numbered version."""
    path = Path(export_dir)
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((int(p.name), p) for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").exists())
    if not versions:
        raise ExportError(f"{path}: no SavedModel here nor in a numbered version directory below it.")
    return versions[-1][1]


# --- CLI -------------------------------------------------------------------------------------
def export_checkpoint(
    config,
    checkpoint: str,
    export_dir: str,
    *,
    version: int = 1,
    overwrite: bool = False,
    top_k: int = 5,
    average: str = "prob",
    config_path: str | None = None,
    fold_batch_norms: bool = True,
) -> Path:
    """Build the config's model, restore the checkpoint, export it (heads, label maps and
    evaluation views from the config)."""
    from tfsts import evaluate

    config = evaluate.config_for(checkpoint, config)
    final = version_path(export_dir, version)
    if final.exists() and not overwrite:  # before minutes of model building
        raise ExportError(f"{final} already exists; pass --overwrite to replace it or --version N to write another version.")
    model, _ = evaluate.load_model(config, checkpoint, config_path=config_path)
    clip_len = model.inputs[0].shape[1]
    specs = evaluate.view_specs(config, clip_len)
    names = {n: evaluate.class_names_for(config, n) for n in config.data.sources}
    if not isinstance(model.output, Mapping):
        (only,) = names
        specs, names = specs[only], names[only]
    return export_model(
        model, export_dir, view_spec=specs, class_names=names, version=version, overwrite=overwrite,
        top_k=top_k, average=average, fold_batch_norms=fold_batch_norms,
    )


def _main(argv) -> None:
    from absl import flags

    import tensorflow as tf

    from tfsts import evaluate
    from tfsts.training import config as config_lib

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        evaluate._fail(f"unexpected arguments {argv[1:]}; config fields are set with --config.a.b=value.", 2)
    config_path = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
    try:
        path = export_checkpoint(
            FLAGS.config, FLAGS.checkpoint, FLAGS.export_dir, version=FLAGS.version, overwrite=FLAGS.overwrite,
            top_k=FLAGS.top_k, average=FLAGS.average_clips, config_path=config_path,
            fold_batch_norms=FLAGS.fold_batch_norms,
        )
    except (ExportError, evaluate.EvaluationError, config_lib.ConfigError, FileNotFoundError) as e:
        print(f"tfsts.export: error: {e}", file=sys.stderr)
        sys.exit(1)
    except tf.errors.OpError as e:
        print(f"tfsts.export: error: {e.message.strip().splitlines()[0][:600]}", file=sys.stderr)
        sys.exit(1)
    meta = read_metadata(path)
    print(f"exported {meta['model']} to {path} (signatures: {', '.join(SIGNATURES)}; heads: "
          f"{', '.join(h or 'default' for h in meta['heads'])})")


def run() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "The training config; default: the checkpoint's config.json.")
    flags.DEFINE_string("checkpoint", None, "Training workdir (its latest checkpoint) or a checkpoint prefix.")
    flags.DEFINE_string("export_dir", None, "DIR/NAME: TF Serving's base path for model NAME; the export goes to DIR/NAME/<version>.")
    flags.DEFINE_integer("version", 1, "Version directory under --export_dir.")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version directory.")
    flags.DEFINE_integer("top_k", 5, "How many top_k_indices / top_k_labels per video.")
    flags.DEFINE_enum("average_clips", "prob", list(EXPORT_AVERAGES), "How the views of a video are combined in the graph.")
    flags.DEFINE_boolean("fold_batch_norms", True, "Serve each BN after a conv folded into it (inference only; "
                         "--nofold_batch_norms serves the model's own layers).")
    argv = sys.argv[1:]
    for required in ("--checkpoint", "--export_dir"):
        if not any(a.startswith(required) for a in argv):
            print(f"tfsts.export: error: {required}=... is required.", file=sys.stderr)
            sys.exit(2)
    _precheck_config(argv)
    app.run(_main)


def _precheck_config(argv) -> None:
    from tfsts.training import config as config_lib

    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not paths:
        return
    try:
        config_lib.check_overrides(config_lib.load_config_file(paths[-1]), argv)
    except config_lib.ConfigError as e:
        print(f"tfsts.export: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
