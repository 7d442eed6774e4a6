"""Tiny synthetic video dataset for the demo configs, written to TFRecords by data_prep itself.

    python -m tfsts.training.demo_data --output_dir=demo_data [--videos_per_class=8]

Class k's videos show a bright bar moving across a noisy background, coloured and moving
in a direction that depend on k, so a small 3D net separates them in a few hundred steps
on a CPU. Writes OUTPUT_DIR/videos/*.mp4, OUTPUT_DIR/{train,val}.txt and the records with
manifest.json and label_map.txt in OUTPUT_DIR/records (train-*.tfrecord, val-*.tfrecord).
"""
from __future__ import annotations

import os
import sys

import numpy as np

COLOURS = ((230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40))


def demo_frames(label: int, index: int, *, num_frames: int = 16, width: int = 80, height: int = 64) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of one demo video of class `label`."""
    rng = np.random.default_rng(1000 * label + index)
    frames = rng.integers(0, 90, size=(num_frames, height, width, 3)).astype(np.uint8)
    start = int(rng.integers(0, width // 2))
    direction = 1 if label % 2 == 0 else -1
    for t in range(num_frames):
        x = (start + direction * 3 * t) % (width - 10)
        frames[t, :, x : x + 10] = COLOURS[label % len(COLOURS)]
    return frames


def write_mp4(path: str, frames: np.ndarray, fps: int = 16) -> None:
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_demo_data(output_dir: str, *, num_classes: int = 4, videos_per_class: int = 8, val_per_class: int = 2,
                   num_frames: int = 16, progress: bool = False) -> str:
    """Write the videos and convert them with data_prep.generic; returns the records folder."""
    from data_prep import generic
    from data_prep.decode import FrameOptions
    from data_prep.pipeline import RunConfig

    videos = os.path.join(output_dir, "videos")
    os.makedirs(videos, exist_ok=True)
    lists = {}
    for split, count in (("train", videos_per_class), ("val", val_per_class)):
        lines = []
        for label in range(num_classes):
            for i in range(count):
                name = f"{split}_c{label}_{i:03d}.mp4"
                offset = 0 if split == "train" else 500
                write_mp4(os.path.join(videos, name), demo_frames(label, offset + i, num_frames=num_frames))
                lines.append(f"{name} {label}")
        lists[split] = os.path.join(output_dir, f"{split}.txt")
        with open(lists[split], "w") as f:
            f.write("\n".join(lines) + "\n")
    records = os.path.join(output_dir, "records")
    config = RunConfig(output_dir=records, dataset="generic", frame_options=FrameOptions(short_side=0), shard_size=8,
                       max_failures="0", num_workers=1, progress=progress)
    result = generic.prepare(lists, videos, config)
    if not result.ok:
        raise RuntimeError(f"data_prep failed on the demo videos: {result.summary}")
    return records


def main(argv: list[str] | None = None) -> None:
    from absl import flags

    flags.DEFINE_string("output_dir", "demo_data", "Where to write videos/ and records/.")
    flags.DEFINE_integer("videos_per_class", 8, "Training videos per class (4 classes).")
    flags.FLAGS(sys.argv if argv is None else argv)
    records = make_demo_data(flags.FLAGS.output_dir, videos_per_class=flags.FLAGS.videos_per_class, progress=True)
    print(f"demo records in {records}")


if __name__ == "__main__":
    main()
