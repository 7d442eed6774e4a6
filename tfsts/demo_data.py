"""The demo's dataset, made here from nothing downloaded: moving handwritten digits.

The digits are scikit-learn's bundled 8x8 handwritten digits (`sklearn.datasets.load_digits`,
1,797 images shipped inside the wheel). Each clip moves one digit, in a random colour over a
static textured background, in one direction; the class is the direction of motion, which no
single frame shows (a trajectory is centred on a random point, so where the digit is in any
one frame says next to nothing about where it is going). Three datasets come out, each in the
layout data_prep reads for the real thing:

- `kinetics/`: 4 translations ("moving left/right/up/down"); CSVs
  ``label,youtube_id,time_start,time_end,split`` and already-cut clips
  ``videos/<label>/{youtube_id}_{start:06d}_{end:06d}.{mp4,webm}`` (H.264 and VP8 alternating,
  as Kinetics downloads mix them) -> ``python -m data_prep.kinetics``.
- `ssv2/`: 6 other motions (4 diagonals, towards / away from the camera as growing /
  shrinking) with Something-Something V2's JSON files (``labels/something-something-v2-*.json``,
  templates with ``[something]``) and ``videos/{id}.webm`` (VP9) -> ``python -m data_prep.ssv2``.
- `images/`: the digits themselves, one still per image (class = the digit), as class folders
  ``images/{train,validation}/<digit>/*.png`` -> ``python -m data_prep.images``: the image set
  for image pre-training (T = 1) and co-training.

Train and validation use disjoint digit instances (different writers' samples). Everything is
a pure function of the seed: frames, annotations, ids and (with single-threaded encoders) the
file bytes.

    python -m tfsts.demo_data --out /tmp/digits [--seed 0] [--scale 0.25]
"""
from __future__ import annotations

import csv
import dataclasses
import fractions
import json
import math
import os
from typing import Iterator, Mapping, Sequence

import numpy as np

# --- Classes -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Motion:
    """A class of clip: a unit direction (x right, y down) and a zoom (log size change over
    the clip; > 0 grows: approaching)."""

    name: str
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 0.0


_D = 1 / math.sqrt(2)
KINETICS_MOTIONS = (
    Motion("moving left", dx=-1.0),
    Motion("moving right", dx=1.0),
    Motion("moving up", dy=-1.0),
    Motion("moving down", dy=1.0),
)
# SSv2 classes are templates; the class name is the template without brackets.
SSV2_MOTIONS = (
    Motion("Moving [something] up and to the left", dx=-_D, dy=-_D),
    Motion("Moving [something] up and to the right", dx=_D, dy=-_D),
    Motion("Moving [something] down and to the left", dx=-_D, dy=_D),
    Motion("Moving [something] down and to the right", dx=_D, dy=_D),
    Motion("Moving [something] towards the camera", zoom=math.log(1.8)),
    Motion("Moving [something] away from the camera", zoom=-math.log(1.8)),
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

SSV2_LABELS_FILE = "something-something-v2-labels.json"
SSV2_SPLIT_FILES = {"train": "something-something-v2-train.json", "validation": "something-something-v2-validation.json"}
KINETICS_SPLITS = {"train": "train.csv", "val": "validate.csv"}


def ssv2_class_name(template: str) -> str:
    return template.replace("[", "").replace("]", "")


# --- Configuration -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoDataConfig:
    """Sizes of the demo data. Per-class counts are (train, validation).

    The default (a few hundred clips of 16 frames at 48x32) keeps the whole demo within
    minutes on two CPU cores; `scaled(f)` shrinks or grows every count.
    """

    seed: int = 0
    width: int = 48
    height: int = 32
    num_frames: int = 16
    fps: int = 8
    digit_size: tuple[float, float] = (10.0, 13.0)  # digit height in pixels (before zoom)
    travel: float = 14.0  # pixels a translating digit moves over the clip
    kinetics_per_class: tuple[int, int] = (40, 12)
    ssv2_per_class: tuple[int, int] = (30, 8)
    images_per_class: tuple[int, int] = (200, 20)  # 40 per class: memorised, chance on validation

    def __post_init__(self):
        if self.width % 2 or self.height % 2:
            raise ValueError(f"DemoDataConfig: width and height must be even (H.264 4:2:0); got {self.width}x{self.height}.")
        if self.num_frames < 2:
            raise ValueError(f"DemoDataConfig.num_frames={self.num_frames}: motion needs at least 2 frames.")
        for field in ("kinetics_per_class", "ssv2_per_class", "images_per_class"):
            train, val = getattr(self, field)
            if train < 1 or val < 1:
                raise ValueError(f"DemoDataConfig.{field}={(train, val)}: need at least one train and one validation item per class.")

    def scaled(self, factor: float) -> "DemoDataConfig":
        def scale(pair):
            return tuple(max(1, int(round(n * factor))) for n in pair)

        return dataclasses.replace(
            self, kinetics_per_class=scale(self.kinetics_per_class), ssv2_per_class=scale(self.ssv2_per_class),
            images_per_class=scale(self.images_per_class),
        )


@dataclasses.dataclass(frozen=True)
class DemoData:
    """Where make_demo_data wrote each dataset, and the inputs data_prep needs."""

    root: str
    kinetics_csvs: tuple[str, ...]
    kinetics_videos: str
    ssv2_labels_json: str
    ssv2_split_jsons: Mapping[str, str]
    ssv2_videos: str
    image_trees: Mapping[str, str]
    index_json: str  # every item with its class and motion parameters (ground truth)

    @property
    def ssv2_annotations_dir(self) -> str:
        return os.path.dirname(self.ssv2_labels_json)


# --- Rendering -----------------------------------------------------------------------------


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as float32 [N, 8, 8] in [0, 1] and int labels [N]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def split_pools(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Digit indices for train and validation: disjoint, 3:1 within each digit class."""
    rng = np.random.default_rng([seed, 7])
    pools: dict[str, list[int]] = {"train": [], "validation": []}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = (3 * len(members)) // 4
        pools["train"] += members[:cut].tolist()
        pools["validation"] += members[cut:].tolist()
    return {k: np.array(sorted(v)) for k, v in pools.items()}


def sample_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """image[v, u] by bilinear interpolation at pixel-centre coordinates, 0 outside."""
    h, w = image.shape
    padded = np.pad(image, 1)
    x = np.clip(u - 0.5 + 1, 0, w + 1 - 1e-6)
    y = np.clip(v - 0.5 + 1, 0, h + 1 - 1e-6)
    inside = (u > -0.5) & (u < w + 0.5) & (v > -0.5) & (v < h + 0.5)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
    fx, fy = x - x0, y - y0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
    bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
    return np.where(inside, top * (1 - fy) + bottom * fy, 0.0)


def digit_alpha(digit: np.ndarray, centre: tuple[float, float], size: float, width: int, height: int) -> np.ndarray:
    """Coverage [height, width] in [0, 1] of an 8x8 digit drawn `size` pixels tall at `centre` (x, y)."""
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    u = (xs[None, :] - centre[0]) * (8.0 / size) + 4.0
    v = (ys[:, None] - centre[1]) * (8.0 / size) + 4.0
    u, v = np.broadcast_to(u, (height, width)), np.broadcast_to(v, (height, width))
    return np.clip(sample_bilinear(digit, u, v), 0.0, 1.0)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A dark, smooth random texture [height, width, 3] in 0..255 (static over a clip)."""
    base = rng.uniform(10, 70, size=3)
    coarse = rng.normal(0, 12, size=(height // 8 + 2, width // 8 + 2, 3))
    ys = (np.arange(height) + 0.5) / 8
    xs = (np.arange(width) + 0.5) / 8
    texture = np.stack(
        [sample_bilinear(coarse[..., c], np.broadcast_to(xs[None], (height, width)),
                         np.broadcast_to(ys[:, None], (height, width))) for c in range(3)], axis=-1)
    return np.clip(base + texture, 0, 255)


def digit_colour(rng: np.random.Generator) -> np.ndarray:
    colour = rng.uniform(120, 255, size=3)
    colour[rng.integers(3)] = 255.0
    return colour


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Where the digit is (centre x, y) and how tall (pixels) in each frame."""

    centres: np.ndarray  # [T, 2] (x, y)
    sizes: np.ndarray  # [T]

    def to_json(self) -> dict:
        return {"centres": np.round(self.centres, 3).tolist(), "sizes": np.round(self.sizes, 3).tolist()}


def trajectory(motion: Motion, rng: np.random.Generator, config: DemoDataConfig) -> Trajectory:
    """A path for `motion`, centred on a random point so that the digit stays on screen."""
    t = np.linspace(-0.5, 0.5, config.num_frames)
    speed = rng.uniform(0.8, 1.2)
    size0 = rng.uniform(*config.digit_size)
    sizes = size0 * np.exp(motion.zoom * t)
    offsets = np.stack([motion.dx * t, motion.dy * t], axis=-1) * config.travel * speed
    half = sizes.max() / 2
    lo = np.array([half, half]) - offsets.min(axis=0)
    hi = np.array([config.width - half, config.height - half]) - offsets.max(axis=0)
    centre = rng.uniform(lo, np.maximum(lo, hi))
    return Trajectory(centres=centre + offsets, sizes=sizes)


def render_clip(digit: np.ndarray, path: Trajectory, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """uint8 [T, height, width, 3] RGB frames of `digit` following `path`."""
    back = background(rng, width, height)
    colour = digit_colour(rng)
    frames = []
    for centre, size in zip(path.centres, path.sizes):
        alpha = digit_alpha(digit, tuple(centre), float(size), width, height)[..., None]
        frames.append(back * (1 - alpha) + colour * alpha)
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


def render_image(digit: np.ndarray, rng: np.random.Generator, config: DemoDataConfig) -> np.ndarray:
    """uint8 [H, W, 3]: one still, the digit at a random place and size, as in a video frame."""
    size = rng.uniform(config.digit_size[0], config.digit_size[1] * 1.3)
    half = size / 2
    # Inside the central square, so that a centre crop (evaluation) keeps the whole digit.
    side = min(config.width, config.height)
    x0, y0 = (config.width - side) / 2, (config.height - side) / 2
    centre = (rng.uniform(x0 + half, x0 + side - half), rng.uniform(y0 + half, y0 + side - half))
    path = Trajectory(centres=np.array([centre]), sizes=np.array([size]))
    return render_clip(digit, path, rng, config.width, config.height)[0]


# --- Writing -------------------------------------------------------------------------------

CODECS = {"h264": ("mp4", "libx264"), "vp8": ("webm", "libvpx"), "vp9": ("webm", "libvpx-vp9")}


def write_video(path: str, frames: np.ndarray, fps: int, codec: str) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames with PyAV (single-threaded: same bytes every run)."""
    import av

    container_format, codec_name = CODECS[codec]
    options = {"h264": {"crf": "16", "preset": "medium"}, "vp8": {"crf": "8", "b": "1M"},
               "vp9": {"crf": "20", "b": "0", "row-mt": "0"}}[codec]
    tmp = path + ".partial"
    # bitexact: no random Matroska segment UID, no encoder version strings: same seed, same bytes.
    with av.open(tmp, mode="w", format=container_format, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec_name, rate=fractions.Fraction(fps, 1), options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def write_png(path: str, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, format="PNG")


def _items(motions: Sequence[Motion], per_class: tuple[int, int], pools: Mapping[str, np.ndarray],
           rng: np.random.Generator) -> Iterator[tuple[str, int, Motion, int]]:
    """(split, class index, motion, digit index), class-interleaved within each split."""
    for split, count in zip(("train", "validation"), per_class):
        digits = rng.choice(pools[split], size=count * len(motions), replace=len(pools[split]) < count * len(motions))
        for n in range(count):
            for c, motion in enumerate(motions):
                yield split, c, motion, int(digits[n * len(motions) + c])


def make_demo_data(root: str, config: DemoDataConfig = DemoDataConfig(), progress: bool = False) -> DemoData:
    """Write the three datasets under `root` (created; existing files are overwritten)."""
    images, digit_labels = load_digit_images()
    pools = split_pools(digit_labels, config.seed)
    # "label" in the index is the class index of data_prep's label map (class_names()).
    index: dict[str, list[dict]] = {"kinetics": [], "ssv2": [], "images": []}
    total = (sum(config.kinetics_per_class) * len(KINETICS_MOTIONS) + sum(config.ssv2_per_class) * len(SSV2_MOTIONS)
             + sum(config.images_per_class) * len(DIGIT_CLASSES))
    bar = _bar(total, progress)

    # Kinetics layout.
    kin = os.path.join(root, "kinetics")
    rng = np.random.default_rng([config.seed, 1])
    rows: dict[str, list[list]] = {"train": [], "val": []}
    for number, (split, c, motion, digit) in enumerate(_items(KINETICS_MOTIONS, config.kinetics_per_class, pools, rng)):
        split = "train" if split == "train" else "val"
        youtube_id = f"dg{config.seed % 1000:03d}{number:06d}"
        start = int(rng.integers(0, 600))
        end = start + int(math.ceil(config.num_frames / config.fps))
        codec = "h264" if (number // len(KINETICS_MOTIONS) + c) % 2 == 0 else "vp8"  # both codecs in every class
        folder = os.path.join(kin, "videos", motion.name.replace(" ", "_"))
        os.makedirs(folder, exist_ok=True)
        name = f"{youtube_id}_{start:06d}_{end:06d}.{CODECS[codec][0]}"
        path_info = trajectory(motion, rng, config)
        write_video(os.path.join(folder, name), render_clip(images[digit], path_info, rng, config.width, config.height), config.fps, codec)
        rows[split].append([motion.name, youtube_id, start, end, split])
        index["kinetics"].append(dict(split=split, media_id=f"{youtube_id}_{start:06d}_{end:06d}",
                                      label=class_names()["kinetics"].index(motion.name),  # data_prep's index
                                      label_text=motion.name, digit=int(digit_labels[digit]), digit_index=digit,
                                      file=os.path.relpath(os.path.join(folder, name), root), codec=codec,
                                      **path_info.to_json()))
        bar.update(1)
    csvs = []
    for split, file_name in KINETICS_SPLITS.items():
        csvs.append(os.path.join(kin, file_name))
        with open(csvs[-1], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows[split])

    # Something-Something V2 layout.
    ssv2 = os.path.join(root, "ssv2")
    os.makedirs(os.path.join(ssv2, "videos"), exist_ok=True)
    os.makedirs(os.path.join(ssv2, "labels"), exist_ok=True)
    rng = np.random.default_rng([config.seed, 2])
    entries: dict[str, list[dict]] = {"train": [], "validation": []}
    for number, (split, c, motion, digit) in enumerate(_items(SSV2_MOTIONS, config.ssv2_per_class, pools, rng)):
        video_id = f"{config.seed % 1000 + 1}{number:06d}"
        path_info = trajectory(motion, rng, config)
        path = os.path.join(ssv2, "videos", f"{video_id}.webm")
        write_video(path, render_clip(images[digit], path_info, rng, config.width, config.height), config.fps, "vp9")
        entries[split].append({"id": video_id, "label": ssv2_class_name(motion.name).lower(),
                               "template": motion.name, "placeholders": ["digit"]})
        index["ssv2"].append(dict(split=split, media_id=video_id, label=c, label_text=ssv2_class_name(motion.name),
                                  digit=int(digit_labels[digit]), digit_index=digit,
                                  file=os.path.relpath(path, root), codec="vp9", **path_info.to_json()))
        bar.update(1)
    labels_json = os.path.join(ssv2, "labels", SSV2_LABELS_FILE)
    _write_json(labels_json, {ssv2_class_name(m.name): str(i) for i, m in enumerate(SSV2_MOTIONS)})
    split_jsons = {}
    for split, file_name in SSV2_SPLIT_FILES.items():
        split_jsons[split] = os.path.join(ssv2, "labels", file_name)
        _write_json(split_jsons[split], entries[split])

    # Images (class folders).
    rng = np.random.default_rng([config.seed, 3])
    trees = {}
    for split, count in zip(("train", "validation"), config.images_per_class):
        trees[split] = os.path.join(root, "images", split)
        for digit_class in DIGIT_CLASSES:
            members = pools[split][digit_labels[pools[split]] == int(digit_class)]
            chosen = rng.choice(members, size=count, replace=len(members) < count)
            folder = os.path.join(trees[split], digit_class)
            os.makedirs(folder, exist_ok=True)
            for n, digit in enumerate(chosen):
                path = os.path.join(folder, f"{digit_class}_{n:04d}.png")
                write_png(path, render_image(images[digit], rng, config))
                index["images"].append(dict(split=split, file=os.path.relpath(path, root), label=int(digit_class),
                                            digit_index=int(digit)))
                bar.update(1)
    bar.close()
    index_json = os.path.join(root, "demo_data.json")
    _write_json(index_json, {"config": _config_json(config), "classes": class_names(), "items": index})
    return DemoData(
        root=root, kinetics_csvs=tuple(csvs), kinetics_videos=os.path.join(kin, "videos"),
        ssv2_labels_json=labels_json, ssv2_split_jsons=split_jsons, ssv2_videos=os.path.join(ssv2, "videos"),
        image_trees=trees, index_json=index_json,
    )


def class_names() -> dict[str, list[str]]:
    """The class names each dataset's label map will hold, in index order (data_prep: sorted
    CSV labels for Kinetics, labels.json order for SSv2, sorted folders for images)."""
    return {
        "kinetics": sorted(m.name for m in KINETICS_MOTIONS),
        "ssv2": [ssv2_class_name(m.name) for m in SSV2_MOTIONS],
        "images": sorted(DIGIT_CLASSES),
    }


def _config_json(config: DemoDataConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=False)
        f.write("\n")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="demo data", unit="file", dynamic_ncols=True)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tfsts.demo_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write kinetics/, ssv2/, images/ into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every per-class count")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale={args.scale}: must be > 0")
    data = make_demo_data(args.out, DemoDataConfig(seed=args.seed).scaled(args.scale), progress=True)
    print(f"wrote {data.root}: kinetics/ ssv2/ images/ (index: {data.index_json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
