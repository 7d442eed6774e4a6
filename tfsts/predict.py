"""Predict on video files: `python -m tfsts.predict --model EXPORT_DIR_or_CHECKPOINT video.mp4 [more.webm ...]`.

Each file is decoded with data_prep's decoder (PyAV; the same frames, rotation and short-side
resize as the records), written as the record data_prep would write, and run through the
export's `sequence_example` signature, so views are sampled exactly as evaluation samples them.
`--model` is an export (`DIR/NAME` or `DIR/NAME/<version>`, loaded with tf.saved_model.load) or a
training checkpoint (workdir or prefix; the model comes from `--config` or the workdir's
config.json and runs through the same signature functions in process).

Prints the top-k labels with probabilities per file (per head for co-trained models), or JSON
with `--json`. A missing or undecodable file gets one line saying why; the other files still get
their answers, and the exit status is 1 when any file failed. `--save_gif` writes
`<output_dir>/<file stem>.gif` with the top prediction drawn on the frames.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402



def define_flags() -> None:
    """The CLI's flags (defined on demand, so that importing this module as a library defines none)."""
    flags.DEFINE_string("model", None, "An export (DIR/NAME or DIR/NAME/<version>) or a training workdir / checkpoint prefix.")
    config_flags.DEFINE_config_file("config", None, "With a checkpoint: its training config (default: the workdir's config.json).")
    flags.DEFINE_boolean("json", False, "Print one JSON document instead of text.")
    flags.DEFINE_integer("top_k", 5, "Labels per file (at most the export's top_k).")
    flags.DEFINE_boolean("save_gif", False, "Write <output_dir>/<file stem>.gif with the prediction overlaid.")
    flags.DEFINE_string("output_dir", ".", "Where --save_gif writes.")
    flags.DEFINE_integer("short_side", 256, "Decode at this short side, as data_prep --short_side (0: source size).")
    flags.DEFINE_float("fps", 0.0, "Resample to this frame rate, as data_prep --fps (0: native).")


class Predictor:
    """`predict(serialized_records) -> {output name: array}` plus the export metadata."""

    def __init__(self, fn: Callable, metadata: Mapping[str, Any], source: str):
        self._fn = fn
        self.metadata = metadata
        self.source = source

    def predict(self, records: Sequence[bytes]) -> dict[str, Any]:
        import tensorflow as tf

        out = self._fn(sequence_example=tf.constant(list(records), tf.string))
        return {k: v.numpy() for k, v in out.items()}


def load_predictor(model: str, config=None, *, top_k: int = 5) -> Predictor:
    """An export (anything with saved_model.pb in it or in a numbered version below it), else
    a training checkpoint with its config."""
    from tfsts import export

    path = Path(model)
    is_export = (path / "saved_model.pb").exists() or any(
        p.name.isdigit() and (p / "saved_model.pb").exists() for p in path.glob("*")
    ) if path.is_dir() else False
    if is_export:
        import tensorflow as tf

        version = export.latest_version(path)
        metadata = export.read_metadata(version)
        loaded = tf.saved_model.load(str(version))
        signature = loaded.signatures["sequence_example"]
        return Predictor(lambda **kw: signature(**kw), metadata, str(version))
    from tfsts import evaluate

    if not path.exists() and not Path(f"{model}.index").exists():
        raise export.ExportError(
            f"--model={model}: no such file or directory; give an export (DIR/NAME or DIR/NAME/<version>), "
            "a training workdir or a checkpoint prefix DIR/checkpoints/ckpt-N."
        )
    config = evaluate.config_for(model, config)
    net, prefix = evaluate.load_model(config, model)
    specs = evaluate.view_specs(config, net.inputs[0].shape[1])
    names = {n: evaluate.class_names_for(config, n) for n in config.data.sources}
    if not isinstance(net.output, Mapping):
        (only,) = names
        specs, names = specs[only], names[only]
    _, metadata, endpoints = export.build_archive(net, view_spec=specs, class_names=names, top_k=top_k)
    fn = endpoints["sequence_example"]
    return Predictor(lambda **kw: fn(kw["sequence_example"]), metadata, prefix)


def video_record(path: str, *, short_side: int = 256, fps: float = 0.0) -> tuple[bytes, Any]:
    """(serialized SequenceExample as data_prep writes it, the decoded Clip); DecodeError when
    the file cannot be decoded."""
    from data_prep.decode import FrameOptions, decode_video
    from tfsts.data import schema

    clip = decode_video(path, FrameOptions(short_side=short_side, fps=fps))
    record = schema.encode_video(
        clip.frames, clip.timestamps_us, media_id=Path(path).name, label_index=-1, label_text="",
        frame_rate=clip.frame_rate, data_path=Path(path).name, start_us=clip.start_us, end_us=clip.end_us,
        height=clip.height, width=clip.width, original_height=clip.original_height,
        original_width=clip.original_width, rotation=clip.rotation,
    )
    return record, clip


def top_predictions(outputs: Mapping[str, Any], metadata: Mapping[str, Any], top_k: int) -> dict[str, list[dict]]:
    """{head ("" for a single-head model): [{"label", "index", "probability"}, ...]} of one video."""
    result = {}
    for head in metadata["heads"]:
        prefix = "" if head is None else f"{head}_"
        probs = outputs[f"{prefix}probabilities"][0]
        indices = outputs[f"{prefix}top_k_indices"][0][:top_k]
        labels = outputs[f"{prefix}top_k_labels"][0][:top_k]
        result["" if head is None else head] = [
            {"label": label.decode("utf-8"), "index": int(i), "probability": float(probs[i])}
            for label, i in zip(labels, indices)
        ]
    return result


def save_gif(clip, predictions: Mapping[str, list[dict]], path: str, *, max_frames: int = 48) -> str:
    """The decoded frames (evenly subsampled to max_frames) with the top label drawn on them."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    step = max(1, len(clip.frames) // max_frames)
    text = "  ".join(
        f"{(head + ': ') if head else ''}{preds[0]['label']} {preds[0]['probability']:.0%}" for head, preds in predictions.items()
    )
    images = []
    for jpeg in clip.frames[::step][:max_frames]:
        image = Image.open(io.BytesIO(jpeg)).convert("RGB")
        draw = ImageDraw.Draw(image)
        box = draw.textbbox((4, 4), text)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((4, 4), text, fill=(255, 255, 0))
        images.append(image)
    fps = clip.frame_rate or 25.0
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * step / fps), loop=0)
    return path


def predict_files(
    predictor: Predictor, files: Sequence[str], *, top_k: int = 5, gif_dir: str | None = None,
    short_side: int = 256, fps: float = 0.0,
) -> list[dict[str, Any]]:
    """One entry per file: {"file", "predictions"} or {"file", "error"} (the others go on)."""
    from data_prep.items import FAILURE_HINTS, DecodeError

    results = []
    for file in files:
        try:
            record, clip = video_record(file, short_side=short_side, fps=fps)
        except DecodeError as e:
            hint = FAILURE_HINTS.get(e.kind, "")
            results.append({"file": file, "error": f"cannot decode ({e.kind}): {e.reason}" + (f"; {hint}" if hint else "")})
            continue
        predictions = top_predictions(predictor.predict([record]), predictor.metadata, top_k)
        entry: dict[str, Any] = {"file": file, "num_frames": len(clip.frames), "predictions": predictions}
        if gif_dir is not None:
            os.makedirs(gif_dir, exist_ok=True)
            entry["gif"] = save_gif(clip, predictions, os.path.join(gif_dir, f"{Path(file).stem}.gif"))
        results.append(entry)
    return results


def format_text(results: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for entry in results:
        if "error" in entry:
            lines.append(f"{entry['file']}: error: {entry['error']}")
            continue
        lines.append(f"{entry['file']}:")
        for head, preds in entry["predictions"].items():
            indent = "  "
            if head:
                lines.append(f"  {head}:")
                indent = "    "
            for rank, p in enumerate(preds, 1):
                lines.append(f"{indent}{rank}. {p['label']:<30} {p['probability']:.4f}")
        if "gif" in entry:
            lines.append(f"  gif: {entry['gif']}")
    return "\n".join(lines)


def _fail(message: str, code: int = 1):
    print(f"tfsts.predict: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv):
    files = argv[1:]
    if not files:
        _fail("give one or more video files after the flags.", 2)
    import tensorflow as tf

    from tfsts import evaluate, export
    from tfsts.training import config as config_lib

    try:
        predictor = load_predictor(flags.FLAGS.model, flags.FLAGS.config, top_k=flags.FLAGS.top_k)
    except (export.ExportError, evaluate.EvaluationError, config_lib.ConfigError, FileNotFoundError) as e:
        _fail(str(e))
    except tf.errors.OpError as e:
        _fail(f"--model={flags.FLAGS.model}: {e.message.strip().splitlines()[0][:400]}")
    results = predict_files(
        predictor, files, top_k=flags.FLAGS.top_k, gif_dir=flags.FLAGS.output_dir if flags.FLAGS.save_gif else None,
        short_side=flags.FLAGS.short_side, fps=flags.FLAGS.fps,
    )
    if flags.FLAGS.json:
        print(json.dumps({"model": predictor.source, "results": results}, indent=1))
    else:
        print(format_text(results))
    if any("error" in r for r in results):
        sys.exit(1)


def run() -> None:
    argv = sys.argv[1:]
    if not any(a.startswith("--model") for a in argv):
        _fail("--model=EXPORT_DIR_or_CHECKPOINT is required.", 2)
    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if paths:
        from tfsts.training import config as config_lib

        try:
            config_lib.check_overrides(config_lib.load_config_file(paths[-1]), argv)
        except config_lib.ConfigError as e:
            _fail(str(e), 2)
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
