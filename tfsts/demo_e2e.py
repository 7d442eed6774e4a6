"""The whole pipeline on a tiny embedded default: `python -m tfsts.demo_e2e [--workdir DIR] [--steps N]`.

data (synthetic videos, tfsts.training.demo_data) -> data_prep (TFRecords) -> train
(configs/demo/tiny_resnet.py) -> multi-view evaluation -> SavedModel export -> a fresh process
that loads the export and predicts on validation videos. Nothing is downloaded. Writes, under
the work directory: data/, run/ (checkpoints, learning_curve.png), eval/result.json and its
confusion-matrix PNG, export/resnet3d_10/1/, predict/ (predictions.json, GIFs) and
predictions.png (a contact sheet), and prints a summary table.

Not yet here (issue 10's comparison): from-scratch vs image-initialised vs STS, and single-dataset
vs co-trained, over seeds; this module runs the pipeline once, on one model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

DEFAULT_WORKDIR = "tfsts_demo"
MODEL_NAME = "resnet3d_10"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def demo_config(records: str, steps: int):
    """configs/demo/tiny_resnet.py on the records written here, evaluated with 2 clips x 3 crops."""
    from configs.demo import tiny_resnet

    config = tiny_resnet.get_config()
    src = config.data.sources.demo
    src.train_pattern = os.path.join(records, "train-*.tfrecord")
    src.eval_pattern = os.path.join(records, "val-*.tfrecord")
    src.eval_num_clips, src.eval_num_crops = 2, 3
    config.train.num_steps = steps
    config.train.eval_every = 0
    config.train.checkpoint_every = steps
    config.train.log_every = max(1, steps // 20)
    return config


def contact_sheet(results: list[dict], path: str, class_names: list[str], *, columns: int = 4) -> str:
    """First frame of each predicted video with its true class and top prediction."""
    from PIL import Image, ImageDraw

    from data_prep.decode import FrameOptions, iter_video

    tiles = []
    for entry in results:
        if "error" in entry:
            continue
        _, rgb = next(iter(iter_video(entry["file"], FrameOptions(short_side=0))))
        tile = Image.fromarray(rgb).resize((160, 128))
        top = entry["predictions"][""][0]
        true = class_names[int(Path(entry["file"]).name.split("_c")[1].split("_")[0])]
        ok = top["label"] == true
        canvas = Image.new("RGB", (160, 160), "white")
        canvas.paste(tile, (0, 0))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 131), f"true {true}", fill="black")
        draw.text((4, 145), f"pred {top['label']} {top['probability']:.0%}", fill=(0, 120, 0) if ok else (200, 0, 0))
        tiles.append(canvas)
    rows = max(1, -(-len(tiles) // columns))
    sheet = Image.new("RGB", (160 * columns, 160 * rows), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (160 * (i % columns), 160 * (i // columns)))
    sheet.save(path)
    return path


def run_demo(workdir: str, *, steps: int = 120) -> dict:
    """Run every stage; returns the summary (also written to workdir/summary.json)."""
    from tfsts.evaluate import evaluate_checkpoint, summary_table
    from tfsts.export import export_checkpoint
    from tfsts.training import train
    from tfsts.training.demo_data import make_demo_data

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.time()

    _say(f"1/5 data: synthetic videos -> data_prep TFRecords in {root / 'data'}")
    records = make_demo_data(str(root / "data"), progress=True)
    timings["data"] = time.time() - t0

    config = demo_config(records, steps)
    _say(f"2/5 train {MODEL_NAME} (width 1/4) for {steps} steps in {root / 'run'}")
    t = time.time()
    result = train(config, str(root / "run"))
    timings["train"] = time.time() - t
    losses = [r["loss"] for r in result.history if "loss" in r]

    _say("3/5 evaluate: 2 clips x 3 crops per validation video")
    t = time.time()
    evaluation = evaluate_checkpoint(config, str(root / "run"), out=str(root / "eval" / "result.json"))
    timings["evaluate"] = time.time() - t

    _say("4/5 export a SavedModel for TF Serving")
    t = time.time()
    export = export_checkpoint(config, str(root / "run"), str(root / "export" / MODEL_NAME), overwrite=True)
    timings["export"] = time.time() - t

    _say("5/5 a fresh process loads the export and predicts on the validation videos")
    t = time.time()
    videos = sorted(str(p) for p in (root / "data" / "videos").glob("val_*.mp4"))
    proc = subprocess.run(
        [sys.executable, "-m", "tfsts.predict", f"--model={export}", "--json", "--save_gif",
         f"--output_dir={root / 'predict'}", "--short_side=0", *videos],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tfsts.predict failed:\n{proc.stderr[-2000:]}")
    predictions = json.loads(proc.stdout)["results"]
    (root / "predict").mkdir(exist_ok=True)
    (root / "predict" / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    class_names = evaluation["demo"]["class_names"]
    sheet = contact_sheet(predictions, str(root / "predictions.png"), class_names)
    timings["predict"] = time.time() - t
    correct = sum(
        p["predictions"][""][0]["label"] == class_names[int(Path(p["file"]).name.split("_c")[1].split("_")[0])]
        for p in predictions
    )

    metrics = evaluation["demo"]["metrics"]
    summary = {
        "workdir": str(root),
        "model": MODEL_NAME,
        "steps": result.step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "eval": {k: metrics[k] for k in ("top1_acc", "top5_acc", "mean_class_accuracy", "num_videos", "num_views")},
        "export": str(export),
        "fresh_process_top1": correct / max(1, len(predictions)),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "pictures": [str(root / "run" / "learning_curve.png"), metrics.get("confusion_png"), sheet],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    rows = [
        ("stage", "result", "seconds"),
        ("data", f"{len(videos)} val videos, records in {records}", summary["seconds"]["data"]),
        ("train", f"{result.step} steps, loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}" if losses else f"{result.step} steps", summary["seconds"]["train"]),
        ("evaluate", summary_table(evaluation), summary["seconds"]["evaluate"]),
        ("export", str(export), summary["seconds"]["export"]),
        ("predict", f"fresh process, top-1 {correct}/{len(predictions)} on the val videos", summary["seconds"]["predict"]),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{r[0]:<{width}}  {r[1]}  ({r[2]} s)" if i else f"{r[0]:<{width}}  {r[1]}" for i, r in enumerate(rows)))
    print("pictures: " + ", ".join(p for p in summary["pictures"] if p))
    return summary


def main(argv=None) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", DEFAULT_WORKDIR, "Where everything is written.")
    flags.DEFINE_integer("steps", 120, "Training steps.")
    flags.FLAGS(sys.argv if argv is None else argv)
    _say(f"work directory: {Path(flags.FLAGS.workdir).resolve()}")
    run_demo(flags.FLAGS.workdir, steps=flags.FLAGS.steps)


if __name__ == "__main__":
    main()
