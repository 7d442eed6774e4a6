"""Index-valued synthetic videos and images, written to TFRecords by data_prep itself.

Frame i of a "flat" video is one flat colour that encodes i in base 16: R = 8 + 16 * (i % 16),
G = 8 + 16 * (i // 16 % 16), B = 8 + 16 * (i // 256) (up to 4096 frames). Through FFV1 (yuv444p),
data_prep's PyAV decode + RGB conversion and a quality-90 JPEG (4:2:0 chroma), a flat colour
comes back within about +-6 levels (measured), so ``read_index`` (rounding to the nearest step
of 16) recovers i exactly: tolerance +-7 levels.

A "probe" video (336 x 256) adds a spatial code: rows 0..15 are the flat time band, rows 16..255
are grey stripes 8 px wide (JPEG-block aligned), stripe k = 4 + 6 * k, so a crop's x offset
reads back from the stripe values (tolerance +-2 levels, steps of 6).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from data_prep import generic, images
from data_prep.decode import FrameOptions
from data_prep.pipeline import RunConfig


def index_colour(i: int) -> tuple[int, int, int]:
    return 8 + 16 * (i % 16), 8 + 16 * (i // 16 % 16), 8 + 16 * (i // 256)


def read_index(rgb: np.ndarray) -> np.ndarray:
    """Frame indices from [..., H, W, 3] flat frames (mean over the pixels, then rounding)."""
    digits = np.round((rgb.astype(np.float64).mean(axis=(-3, -2)) - 8) / 16).astype(int)
    return digits[..., 0] + 16 * digits[..., 1] + 256 * digits[..., 2]


def flat_frame(i: int, width: int, height: int) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = index_colour(i)
    return frame


def probe_frame(i: int, width: int = 336, height: int = 256) -> np.ndarray:
    frame = flat_frame(i, width, height)
    stripes = (4 + 6 * (np.arange(width) // 8)).astype(np.uint8)
    frame[16:] = stripes[None, :, None]
    return frame


def stripe_offset(views: np.ndarray) -> np.ndarray:
    """x offset of crops [..., H, W, 3] of probe frames: first stripe index read at the crop's left edge * 8."""
    row = views[..., 24:, :, 0].astype(np.float64).mean(axis=-2)  # [..., W]
    stripe = np.round((row - 4) / 6).astype(int)  # stripe index per column
    column = np.arange(row.shape[-1])
    # the stripe index of column c is (x0 + c) // 8: estimate x0 from the columns at stripe centres
    return np.round(np.median(stripe * 8 + 4 - column, axis=-1)).astype(int)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def config(out: Path, dataset: str = "generic", kind: str = "video", **overrides: Any) -> RunConfig:
    options = dict(output_dir=str(out), dataset=dataset, kind=kind, frame_options=FrameOptions(short_side=0),
                   shard_size=2, max_failures="0", num_workers=1, progress=False)
    options.update(overrides)
    return RunConfig(**options)


def make_video_records(root: Path, videos: dict[str, tuple[str, int, int]], *, shard_size: int = 2,
                       size: tuple[int, int] = (96, 64), dataset: str = "generic") -> Path:
    """Write videos {name: (kind "flat"|"probe", num_frames, label)} and convert them with data_prep.

    Returns the output folder holding train-*.tfrecord and manifest.json.
    """
    source = root / "videos"
    lines = []
    for name, (kind, count, label) in videos.items():
        if kind == "flat":
            frames = [flat_frame(i, *size) for i in range(count)]
        else:
            frames = [probe_frame(i) for i in range(count)]
        write_video(source / f"{name}.mkv", frames)
        lines.append(f"{name}.mkv {label}")
    listing = root / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    out = root / "records"
    result = generic.prepare({"train": str(listing)}, str(source), config(out, dataset, shard_size=shard_size))
    if not result.ok:
        raise AssertionError(result.summary)
    return out


def make_image_records(root: Path, count: int, *, classes: int = 3, size: tuple[int, int] = (80, 60)) -> Path:
    """Image tree with image n painted index_colour(n) in class folder n % classes, via data_prep.images."""
    tree = root / "tree"
    for n in range(count):
        folder = tree / f"class{n % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(flat_frame(n, *size)).save(buffer, format="JPEG", quality=95)
        (folder / f"img{n:04d}.jpg").write_bytes(buffer.getvalue())
    out = root / "records"
    result = images.prepare_trees({"train": str(tree)}, config(out, "images", kind="image", shard_size=4))
    if not result.ok:
        raise AssertionError(result.summary)
    return out


# --- NumPy reference of the samplers (mmaction2 0.x SampleFrames, start_index 0, out_of_bound_opt="loop") ---
def ref_test_starts(n: int, span: int, clips: int) -> np.ndarray:
    avg = (n - span + 1) / float(clips)
    if n > span - 1:
        return np.array([int(avg / 2.0 + avg * x) for x in range(clips)])
    return np.zeros(clips, int)


def ref_indices(starts: np.ndarray, n: int, length: int, interval: int) -> np.ndarray:
    return np.mod(starts[:, None] + np.arange(length)[None] * interval, n)


def train_branch(n: int, span: int, clips: int) -> str:
    avg = (n - span + 1) // clips
    if avg > 0:
        return "windows"
    if n > max(clips, span):
        return "sorted"
    if avg == 0:
        return "spread"
    return "zeros"
