"""The whole pipeline on data made here: the README's main command.

    python -m tfsts.demo [--workdir DIR] [--full | --seeds 0,1,2] [--overwrite]

1. makes moving-digit videos (mp4 + webm, Kinetics and SSv2 layouts) and digit images
   (`tfsts.demo_data`, nothing downloaded);
2. runs data_prep on them (Apache Beam, DirectRunner) into TFRecords;
3. pre-trains the 3D net on the images as one-frame clips (T = 1);
4. fine-tunes on the motions, with the same data and budget: from scratch, image-initialised
   without STS, image-initialised with STS, and co-trained on both motion sets plus the images
   (CoVeR) against the single-dataset runs (`configs/demo/digits.py`);
5. evaluates every run multi-view (2 clips x 3 crops), per video, into DIR/eval/;
6. exports the co-trained STS model as a SavedModel in DIR/export/<model>/1/;
7. reloads the export in a fresh Python process (tfsts not importable there) and predicts on
   videos decoded by data_prep's decoder;
8. prints a summary table and writes DIR/summary.{md,json}, learning_curves.png,
   confusion_<source>.png and predictions.png.

One seed by default (it says so); `--full` runs three and reports mean and spread.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO_ROOT / "configs" / "demo" / "digits.py"
DEFAULT_WORKDIR = "tfsts_demo"
FULL_SEEDS = (0, 1, 2)
EXPORT_RUN = "cotrain_sts"  # the model that is exported and served
# (variant, what it is) in table order; the pre-training run is not in the comparison.
COMPARED = (
    ("scratch", "from scratch, no STS"),
    ("image_plain", "image-initialised, no STS"),
    ("image_sts", "image-initialised, STS"),
    ("ssv2_image_sts", "image-initialised, STS (SSv2 only)"),
    ("cotrain_sts", "image-initialised, STS, co-trained"),
)
SOURCE_TITLES = {"kinetics": "Kinetics-layout", "ssv2": "SSv2-layout", "images": "images"}


class DemoError(RuntimeError):
    """A demo run that cannot go on; the message says what to do."""


# --- Console -------------------------------------------------------------------------------
class Console:
    """Numbered stage headers with elapsed times (what a user watches)."""

    def __init__(self, total: int):
        self.total, self.index, self.start, self.times = total, 0, time.perf_counter(), {}

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self.index += 1
        print(f"[{self.index}/{self.total}] {title}", flush=True)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.times[title] = round(dt, 1)
        print(f"      done in {dt:.0f} s (total {time.perf_counter() - self.start:.0f} s)", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# --- Arguments -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Options:
    workdir: Path
    seeds: tuple[int, ...]
    overwrite: bool = False
    data_scale: float = 1.0
    steps: int = 0  # 0: the config's
    pretrain_steps: int = 0
    workers: int = 1
    contact_videos: int = 12


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tfsts.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None, help=f"output folder (default ./{DEFAULT_WORKDIR})")
    parser.add_argument("--full", action="store_true", help=f"seeds {','.join(map(str, FULL_SEEDS))}: mean and spread")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0; --full: 0,1,2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --workdir")
    parser.add_argument("--data_scale", type=float, default=1.0, help="multiply the clips and images per class")
    parser.add_argument("--steps", type=int, default=0, help="fine-tuning steps per run (default: the config's)")
    parser.add_argument("--pretrain_steps", type=int, default=0, help="image pre-training steps (default: the config's)")
    parser.add_argument("--workers", type=int, default=1, help="data_prep worker processes")
    args = parser.parse_args(list(argv))
    if args.full and args.seeds:
        parser.error("give --full or --seeds, not both")
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip()) if args.seeds else (FULL_SEEDS if args.full else (0,))
    except ValueError:
        parser.error(f"--seeds={args.seeds!r}: write integers separated by commas, e.g. --seeds=0,1,2")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds={args.seeds!r}: give distinct integers")
    if args.data_scale <= 0:
        parser.error(f"--data_scale={args.data_scale}: must be > 0")
    for name in ("steps", "pretrain_steps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name}={getattr(args, name)}: must be >= 0 (0: the config's)")
    if args.workers < 1:
        parser.error(f"--workers={args.workers}: must be >= 1")
    return Options(
        workdir=Path(args.workdir or DEFAULT_WORKDIR).absolute(), seeds=seeds, overwrite=args.overwrite,
        data_scale=args.data_scale, steps=args.steps, pretrain_steps=args.pretrain_steps, workers=args.workers,
    )


def prepare_workdir(options: Options) -> None:
    path = options.workdir
    if path.exists() and any(path.iterdir()):
        if not options.overwrite:
            raise DemoError(f"--workdir {path} exists and is not empty: pass --overwrite to replace it, or another --workdir.")
        if not (path / "summary.json").exists() and not (path / "data").exists():
            raise DemoError(f"--workdir {path} holds files the demo did not write; refusing to delete it with --overwrite.")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


# --- Data ------------------------------------------------------------------------------------
def make_records(data, records: Path, workers: int) -> dict[str, Any]:
    """data_prep (its library entry points, Beam DirectRunner) on the three demo datasets."""
    from data_prep import images as dp_images
    from data_prep import kinetics as dp_kinetics
    from data_prep import ssv2 as dp_ssv2
    from data_prep.decode import FrameOptions
    from data_prep.pipeline import RunConfig
    from tfsts import demo_data

    height = demo_data.DemoDataConfig().height
    video_frames = FrameOptions(short_side=height, jpeg_quality=90)
    results = {
        "kinetics": dp_kinetics.prepare(
            list(data.kinetics_csvs), data.kinetics_videos,
            RunConfig(output_dir=str(records / "kinetics"), dataset="kinetics", kind="video",
                      frame_options=video_frames, num_workers=workers)),
        "ssv2": dp_ssv2.prepare(
            data.ssv2_labels_json, dict(data.ssv2_split_jsons), data.ssv2_videos,
            RunConfig(output_dir=str(records / "ssv2"), dataset="ssv2", kind="video",
                      frame_options=video_frames, num_workers=workers)),
        "images": dp_images.prepare_trees(
            dict(data.image_trees),
            RunConfig(output_dir=str(records / "images"), dataset="images", kind="image",
                      frame_options=FrameOptions(short_side=0), shard_size=1024, num_workers=workers)),
    }
    counts = {}
    for name, result in results.items():
        if not result.ok:
            raise DemoError(f"data_prep failed on the demo's {name} data: {result.error}")
        counts[name] = {split: s["records"] for split, s in result.manifest["splits"].items()}
        print(f"      {name}: {', '.join(f'{split} {n}' for split, n in counts[name].items())} records")
    return counts


def label_names(records: Path, source: str) -> list[str]:
    from data_prep.annotations import load_label_map

    return load_label_map(str(records / source / "label_map.txt"))


# --- Training --------------------------------------------------------------------------------
def run_config(variant: str, records: Path, seed: int, options: Options, init: Path | None = None):
    from tfsts.training import config as config_lib

    config = config_lib.load_config_file(f"{CONFIG_FILE}:{variant},{records}")
    config.seed = seed
    config.train.progress_bar = True
    if variant == "pretrain_images" and options.pretrain_steps:
        config.train.num_steps = options.pretrain_steps
    elif variant != "pretrain_images" and options.steps:
        config.train.num_steps = options.steps
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(0, config.train.num_steps // 4))
    if init is not None:
        config.init.checkpoint = str(init)
    config.lock()
    return config


def train_run(config, workdir: Path) -> float:
    from tfsts import training

    t0 = time.perf_counter()
    training.train(config, str(workdir))
    return time.perf_counter() - t0


# --- Evaluation ------------------------------------------------------------------------------
def load_trained(config, workdir: Path):
    from tfsts import training

    model = training.build_model_from_config(config)
    training.restore_model(model, str(workdir))
    return model


def evaluate_run(config, workdir: Path, records: Path, out: Path) -> dict[str, Any]:
    """Every eval video of every source through its own head, views batched as the pipeline
    makes them (V = eval_num_clips x eval_num_crops rows per video), probabilities averaged:
    the result JSON `{source: {"metrics", "class_names", "videos"}}`."""
    import tensorflow as tf

    from tfsts.evaluation import metrics
    from tfsts.training import datasets as datasets_lib

    model = load_trained(config, workdir)
    names = list(config.data.sources)
    predict = tf.function(lambda frames: model(tf.cast(frames, tf.float32), training=False))
    result: dict[str, Any] = {}
    for name, dataset in datasets_lib.eval_datasets(config).items():
        src = config.data.sources[name]
        views = int(src.eval_num_clips * src.eval_num_crops) if src.kind == "video" else 1
        logits, labels, media = [], [], []
        for batch in dataset:
            out_ = predict(batch["frames"])
            head = out_[name] if isinstance(out_, Mapping) else out_
            logits.append(np.asarray(head).reshape(-1, views, head.shape[-1]))
            labels.append(np.asarray(batch["label"]))
            media += [m.decode() for m in np.asarray(batch["media_id"])]
        entry, _ = metrics.source_result(media, np.concatenate(labels), np.concatenate(logits),
                                         class_names=label_names(records, name), average="prob")
        result[name] = entry
    del names
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    return result


# --- Export and a fresh-process prediction ---------------------------------------------------
def export_run(config, workdir: Path, records: Path, export_root: Path) -> Path:
    from tfsts import export
    from tfsts.data import ViewSpec

    model = load_trained(config, workdir)
    specs, classes = {}, {}
    for name, src in config.data.sources.items():
        specs[name] = ViewSpec(
            num_frames=int(config.model.input_shape[0]) if config.model.input_shape else int(src.num_frames),
            frame_interval=int(src.frame_interval) if src.kind == "video" else 1,
            sampling=src.sampling if src.kind == "video" else "dense",
            num_clips=int(src.eval_num_clips) if src.kind == "video" else 1,
            num_crops=int(src.eval_num_crops) if src.kind == "video" else 1,
            short_side=int(src.eval_short_side), crop_size=int(src.crop_size),
        )
        classes[name] = label_names(records, name)
    if len(specs) == 1:
        specs, classes = next(iter(specs.values())), next(iter(classes.values()))
    return export.export_model(model, export_root / config.model.name, view_spec=specs, class_names=classes,
                               version=1, overwrite=True)


# Runs in a fresh interpreter where tfsts cannot be imported: only TensorFlow, the SavedModel,
# and data_prep's decoder (the same decoding as the records). Each video is cut into clips of
# T frames (as many as fit, at most 2), sent to the `encoded_frames` signature as JPEG strings,
# and the clips' probabilities are averaged.
PREDICT_SCRIPT = r"""
import json, os, sys
sys.modules["tfsts"] = None  # the export must stand alone
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
from data_prep.decode import FrameOptions, decode_video

version_dir, short_side, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
videos = sys.argv[4:]
loaded = tf.saved_model.load(version_dir)
serve = loaded.signatures["encoded_frames"]
clip_len = int(serve.structured_input_signature[1]["jpeg_frames"].shape[1])
answers = []
for path in videos:
    jpegs = decode_video(path, FrameOptions(short_side=short_side)).frames
    clips = [jpegs[s:s + clip_len] for s in range(0, len(jpegs) - clip_len + 1, clip_len)][:2] or [
        (jpegs * clip_len)[:clip_len]]
    outputs = serve(jpeg_frames=tf.constant(clips))
    heads = {}
    for key, value in outputs.items():
        if key.endswith("probabilities"):
            head = key[: -len("probabilities")].rstrip("_") or "default"
            probs = value.numpy().mean(axis=0)
            prefix = key[: -len("probabilities")]
            labels = [l.decode() for l in outputs[prefix + "top_k_labels"].numpy()[0]]
            indices = outputs[prefix + "top_k_indices"].numpy()[0].tolist()
            order = np.argsort(-probs)[: len(labels)]
            heads[head] = {"probabilities": probs.tolist(), "top_indices": order.tolist()}
    answers.append({"video": path, "clips": len(clips), "heads": heads})
print("tfsts importable here:", __import__("importlib").util.find_spec("tfsts") is not None)
with open(out_path, "w") as f:
    json.dump({"signatures": sorted(loaded.signatures.keys()), "answers": answers}, f)
"""


def predict_fresh_process(version_dir: Path, videos: Sequence[str], short_side: int, out: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", PREDICT_SCRIPT, str(version_dir), str(short_side), str(out), *videos],
        cwd=str(out.parent), env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode:
        raise DemoError(f"reloading the export {version_dir} in a fresh process failed:\n{proc.stderr[-3000:]}")
    with open(out) as f:
        return json.load(f)


# --- Summary ---------------------------------------------------------------------------------
def top1(result: Mapping[str, Any], source: str) -> float | None:
    entry = result.get(source)
    return None if entry is None else float(entry["metrics"]["top1_acc"])


def mean_spread(values: Sequence[float]) -> tuple[float, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def fmt(values: Sequence[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, spread = mean_spread(values)
    return f"{100 * mean:.1f}" + (f" ± {100 * spread:.1f}" if spread is not None else "")


def summary_rows(evals: Mapping[str, Mapping[int, Mapping[str, Any]]], seeds: Sequence[int]) -> list[list[str]]:
    rows = []
    for variant, title in COMPARED:
        per_seed = evals.get(variant, {})
        rows.append([
            variant, title,
            fmt([top1(per_seed[s], "kinetics") for s in seeds if s in per_seed]),
            fmt([top1(per_seed[s], "ssv2") for s in seeds if s in per_seed]),
            fmt([top1(per_seed[s], "images") for s in seeds if s in per_seed]),
        ])
    return rows


def comparisons(evals, seeds) -> list[tuple[str, str, str]]:
    """(claim, source, paired difference in top-1 points: mean ± spread over seeds)."""
    pairs = (
        ("image init vs scratch (no STS)", "image_plain", "scratch", "kinetics"),
        ("STS vs no STS (image init)", "image_sts", "image_plain", "kinetics"),
        ("co-trained vs single dataset", "cotrain_sts", "image_sts", "kinetics"),
        ("co-trained vs single dataset", "cotrain_sts", "ssv2_image_sts", "ssv2"),
    )
    out = []
    for claim, better, base, source in pairs:
        diffs = [top1(evals[better][s], source) - top1(evals[base][s], source) for s in seeds
                 if s in evals.get(better, {}) and s in evals.get(base, {})]
        mean, spread = mean_spread(diffs)
        text = f"{100 * mean:+.1f}" + (f" ± {100 * spread:.1f}" if spread is not None else "")
        wins = sum(d > 0 for d in diffs)
        out.append((claim, SOURCE_TITLES[source], f"{text} points ({wins}/{len(diffs)} seeds better)"))
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- Pictures ----------------------------------------------------------------------------------
def plot_learning_curves(run_dirs: Mapping[str, Mapping[int, Path]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfsts.training import logs

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=100)
    for variant, by_seed in run_dirs.items():
        curves = [[(r["step"], r["loss"]) for r in logs.read_log(str(d)) if "loss" in r] for d in by_seed.values()]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps = [s for s, _ in curves[0]]
        n = min(len(c) for c in curves)
        losses = np.array([[v for _, v in c[:n]] for c in curves])
        ax = axes[0] if variant == "pretrain_images" else axes[1]
        line, = ax.plot(steps[:n], losses.mean(axis=0), ".-", label=variant)
        if len(curves) > 1:
            ax.fill_between(steps[:n], losses.min(axis=0), losses.max(axis=0), alpha=0.2, color=line.get_color())
    axes[0].set_title("image pre-training (T = 1): train loss")
    axes[1].set_title("fine-tuning on motion: train loss (band: min..max over seeds)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_contact_sheet(answers: Sequence[Mapping[str, Any]], truths: Sequence[tuple[str, str]],
                       class_names: Mapping[str, list[str]], path: Path) -> None:
    """One row per video: 4 frames, then the true class and the export's top-3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_prep.decode import FrameOptions, decode_video
    from PIL import Image
    import io

    rows = len(answers)
    fig, axes = plt.subplots(rows, 5, figsize=(12, 1.3 * rows + 0.4), dpi=100,
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 2.6]})
    axes = np.atleast_2d(axes)
    for r, (answer, (source, truth)) in enumerate(zip(answers, truths)):
        jpegs = decode_video(answer["video"], FrameOptions(short_side=0)).frames
        picks = np.linspace(0, len(jpegs) - 1, 4).round().astype(int)
        for c, i in enumerate(picks):
            axes[r, c].imshow(np.asarray(Image.open(io.BytesIO(jpegs[i]))))
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(f"frame {i}", fontsize=8)
        head = answer["heads"][source] if source in answer["heads"] else next(iter(answer["heads"].values()))
        probs = head["probabilities"]
        names = class_names[source]
        top = head["top_indices"][:3]
        ok = names[top[0]] == truth
        text = f"{SOURCE_TITLES[source]}  true: {truth}\n" + "\n".join(
            f"{'*' if k == 0 else ' '} {names[i]}  {probs[i]:.2f}" for k, i in enumerate(top))
        axes[r, 4].text(0.0, 0.5, text, va="center", ha="left", fontsize=8, family="monospace",
                        color="darkgreen" if ok else "darkred")
        axes[r, 4].set_axis_off()
    fig.suptitle("predictions of the exported SavedModel, reloaded in a fresh process (green: top-1 right)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusions(result: Mapping[str, Any], out_dir: Path, title: str) -> list[Path]:
    from tfsts.evaluation import metrics

    paths = []
    for source, entry in result.items():
        matrix = entry["metrics"].get("confusion_matrix")
        if matrix is None:
            continue
        path = out_dir / f"confusion_{source}.png"
        metrics.plot_confusion_matrix(np.array(matrix), entry["class_names"], str(path),
                                      title=f"{title}: {SOURCE_TITLES.get(source, source)}")
        paths.append(path)
    return paths


def pick_videos(index_json: str, root: str, per_source: int) -> list[tuple[str, str, str]]:
    """(file, source, true class name): validation clips spread over the classes."""
    with open(index_json) as f:
        items = json.load(f)["items"]
    picked = []
    for source in ("kinetics", "ssv2"):
        val = [i for i in items[source] if i["split"] != "train"]
        seen, chosen = set(), []
        for item in val:  # one per class first, then the rest in order
            if item["label"] not in seen:
                seen.add(item["label"])
                chosen.append(item)
        chosen += [i for i in val if i not in chosen]
        picked += [(os.path.join(root, i["file"]), source, i["label_text"]) for i in chosen[:per_source]]
    return picked


# --- Main ---------------------------------------------------------------------------------------
def run(options: Options) -> dict[str, Any]:
    import tensorflow as tf

    from tfsts import demo_data

    tf.get_logger().setLevel("ERROR")  # each run traces its own steps: TF's retracing hints are noise here

    prepare_workdir(options)
    work = options.workdir
    console = Console(total=7)
    seeds = options.seeds
    print(f"tfsts demo: working in {work}")
    print(f"seeds: {', '.join(map(str, seeds))}" + ("" if len(seeds) > 1 else
          "  (one seed: the table has no spread; run with --full for 3 seeds, mean and spread)"))
    records = work / "records"
    with console.stage("making the moving-digits data (scikit-learn digits -> mp4/webm, Kinetics + SSv2 layouts, images)"):
        data = demo_data.make_demo_data(str(work / "data"), demo_data.DemoDataConfig().scaled(options.data_scale),
                                        progress=True)
    with console.stage("data_prep -> TFRecords (Apache Beam, DirectRunner)"):
        counts = make_records(data, records, options.workers)

    run_dirs: dict[str, dict[int, Path]] = {}
    train_seconds: dict[str, dict[int, float]] = {}
    configs: dict[tuple[str, int], Any] = {}

    def train(variant: str, seed: int, init: Path | None = None) -> Path:
        workdir = work / "runs" / f"{variant}_seed{seed}"
        config = run_config(variant, records, seed, options, init)
        print(f"      {variant} (seed {seed}): {config.train.num_steps} steps of {config.train.global_batch_size}",
              flush=True)
        train_seconds.setdefault(variant, {})[seed] = round(train_run(config, workdir), 1)
        run_dirs.setdefault(variant, {})[seed] = workdir
        configs[variant, seed] = config
        return workdir

    with console.stage("image pre-training of the 3D net (digit images as one-frame clips)"):
        pretrained = {seed: train("pretrain_images", seed) for seed in seeds}
    with console.stage("fine-tuning on motion: scratch / image init / + STS / co-training"):
        for seed in seeds:
            for variant, _ in COMPARED:
                train(variant, seed, None if variant == "scratch" else pretrained[seed])
    evals: dict[str, dict[int, Any]] = {}
    with console.stage("multi-view evaluation (2 clips x 3 crops per video) -> eval/"):
        for (variant, seed), config in configs.items():
            evals.setdefault(variant, {})[seed] = evaluate_run(
                config, run_dirs[variant][seed], records, work / "eval" / f"{variant}_seed{seed}.json")
        for variant, by_seed in evals.items():
            line = ", ".join(f"{SOURCE_TITLES[s]} {fmt([top1(r, s) for r in by_seed.values()])}"
                             for s in by_seed[seeds[0]])
            print(f"      {variant}: top-1 {line}")
    with console.stage(f"export the {EXPORT_RUN} model (seed {seeds[0]}) as a SavedModel"):
        version_dir = export_run(configs[EXPORT_RUN, seeds[0]], run_dirs[EXPORT_RUN][seeds[0]], records, work / "export")
        print(f"      {version_dir}")
    with console.stage("reload the export in a fresh process and predict on videos"):
        picked = pick_videos(data.index_json, data.root, max(1, options.contact_videos // 2))
        fresh = predict_fresh_process(version_dir, [p for p, _, _ in picked], demo_data.DemoDataConfig().height,
                                      work / "predictions.json")
        names = {s: label_names(records, s) for s in ("kinetics", "ssv2")}
        first, (path0, source0, truth0) = fresh["answers"][0], picked[0]
        head = first["heads"][source0]
        print(f"      {os.path.relpath(path0, work)} (true: {truth0}), {source0} head, top-5:")
        for i in head["top_indices"][:5]:
            print(f"        {head['probabilities'][i]:.3f}  {names[source0][i]}")
        correct = sum(names[s][a["heads"][s]["top_indices"][0]] == t for a, (_, s, t) in zip(fresh["answers"], picked))
        print(f"      {correct}/{len(picked)} of the contact sheet's videos right")

    # Pictures and the summary.
    plot_learning_curves(run_dirs, work / "learning_curves.png")
    confusion_pngs = plot_confusions(evals[EXPORT_RUN][seeds[0]], work, f"{EXPORT_RUN}, seed {seeds[0]}")
    plot_contact_sheet(fresh["answers"], [(s, t) for _, s, t in picked], names, work / "predictions.png")
    header = ["run", "what", "Kinetics-layout top-1 %", "SSv2-layout top-1 %", "images top-1 %"]
    rows = summary_rows(evals, seeds)
    claims = comparisons(evals, seeds)
    config0 = configs[COMPARED[0][0], seeds[0]]
    budget = (f"{config0.train.num_steps} steps x {config0.train.global_batch_size} clips of "
              f"{config0.data.sources.kinetics.num_frames} frames at {config0.data.sources.kinetics.crop_size} px, "
              f"{config0.model.name} {dict(config0.model.kwargs)}; image pre-training "
              f"{configs['pretrain_images', seeds[0]].train.num_steps} steps")
    seeds_text = (f"mean ± sample std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1
                  else f"one seed ({seeds[0]}): no spread; --full runs 3 seeds")
    chance = "chance: Kinetics-layout 25.0 %, SSv2-layout 16.7 %, images 10.0 %"
    md = "\n".join([
        "# tfsts demo summary", "",
        f"Validation top-1 (multi-view: 2 clips x 3 crops, probabilities averaged), {seeds_text}; {chance}.",
        f"Same data and budget for every motion run: {budget}.", "",
        markdown_table(header, rows), "",
        markdown_table(["comparison", "on", "difference (paired by seed)"], [list(c) for c in claims]), "",
        f"Records: {json.dumps(counts)}. Total time {console.elapsed():.0f} s.", "",
    ])
    (work / "summary.md").write_text(md)
    summary = {
        "seeds": list(seeds), "records": counts, "budget": budget, "stage_seconds": console.times,
        "train_seconds": {v: {str(s): t for s, t in d.items()} for v, d in train_seconds.items()},
        "top1": {v: {str(s): {src: top1(r, src) for src in r} for s, r in d.items()} for v, d in evals.items()},
        "comparisons": [dict(comparison=c, on=o, difference=d) for c, o, d in claims],
        "export": str(version_dir), "fresh_process_signatures": fresh["signatures"],
        "pictures": [str(p.name) for p in [work / "learning_curves.png", *confusion_pngs, work / "predictions.png"]],
        "total_seconds": round(console.elapsed(), 1),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print()
    print(md)
    print(f"pictures: {', '.join(summary['pictures'])} in {work}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(options)
    except DemoError as e:
        print(f"tfsts.demo: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
