"""Training input throughput of tfsts.data against the JPEG decode bound and online PyAV decoding.

    python benchmarks/bench_input.py [--videos=DIR] [--batches=24] [--workdir=DIR]

Writes the decodable test videos (``--videos``, default the shared test videos next to the
repository) to records with data_prep at short side 256 (once, cached in ``--workdir``), plus an
image set (frames of those videos as JPEGs, via data_prep.images), then measures, side by side
in one run, training clips/s at batch 8, crop 224:

- ``video_dataset`` (training: sample, decode-and-crop the sampled frames, random resized crop,
  flip), for 8x8 and 32x2 dense clips and the 8-segment uniform (SSv2) sampler;
- the decode bound: the same number of ``tf.io.decode_jpeg`` calls on the same sampled frames
  (pre-gathered JPEG strings) in a tight tf.data loop with the same parallelism;
- online decoding of the source videos with PyAV (the reference's way): per clip, seek to the
  keyframe before the first sampled frame, decode to the last, convert the sampled frames with
  data_prep's decoder (``data_prep.decode.frame_to_rgb``: resize to short side 256, RGB), crop
  224; one process per core (equal cores);
- ``image_dataset`` and a 3-source ``mixture`` (8x8 video, uniform video, images as 8-frame clips);
- 8x8 with ``clips_per_record=4`` (opt-in repeated sampling: one record read gives 4 clips);
- what reading and parsing one record cost as a function of its size (whole-video records).

Peak RSS of this process (TensorFlow included) is printed. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BAD = {"decord_corrupted.mp4", "libwebm_invalid_vp9_bitstream.webm", "libwebm_bad_lace_size.mkv"}
BATCH = 8


def build_records(videos: Path, workdir: Path) -> tuple[Path, Path, list[Path]]:
    from PIL import Image

    from data_prep import generic, images
    from data_prep.decode import FrameOptions, decode_video
    from data_prep.pipeline import RunConfig

    paths = sorted(p for p in videos.iterdir() if p.suffix in (".mp4", ".mkv", ".webm", ".avi", ".mov")
                   and p.name not in BAD)
    video_out, image_out = workdir / "video_records", workdir / "image_records"
    if not (video_out / "manifest.json").exists():
        listing = workdir / "list.txt"
        listing.write_text("".join(f"{p.name} {i % 4}\n" for i, p in enumerate(paths)))
        config = RunConfig(output_dir=str(video_out), dataset="generic", frame_options=FrameOptions(short_side=256),
                           shard_size=1, max_failures="100%", num_workers=1, progress=False)
        generic.prepare({"train": str(listing)}, str(videos), config)
    if not (image_out / "manifest.json").exists():
        tree = workdir / "tree"
        clip = decode_video(str(paths[0]), FrameOptions(short_side=256))
        for n, jpeg in enumerate(clip.frames[:48]):
            folder = tree / f"c{n % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{n:03d}.jpg").write_bytes(jpeg)
        config = RunConfig(output_dir=str(image_out), dataset="images", kind="image",
                           frame_options=FrameOptions(short_side=0), shard_size=16, num_workers=1, progress=False)
        images.prepare_trees({"train": str(tree)}, config)
        del Image
    return video_out, image_out, paths


def clips_per_second(ds, batches: int, clips_per_batch: int = BATCH) -> tuple[float, float]:
    """(clips/s wall, CPU ms per clip of this process: every tf.data thread counted)."""
    it = iter(ds)
    for _ in range(3):
        next(it)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    clips = batches * clips_per_batch
    return clips / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / clips


def decode_bound(records: Path, num_frames: int, interval: int, sampling: str, batches: int) -> float:
    """The same decodes of the same sampled frames, pre-gathered, in a tight tf.data loop."""
    import tensorflow as tf

    from tfsts.data import sampling as samplers
    from tfsts.data import schema

    clips = []
    for shard in sorted(records.glob("train-*.tfrecord")):
        for record in tf.data.TFRecordDataset(str(shard)):
            jpegs = schema.parse_video(record)[1][schema.IMAGE_ENCODED]
            for s in range(4):
                idx = samplers.frame_indices(tf.shape(jpegs)[0], num_frames=num_frames, frame_interval=interval,
                                             sampling=sampling, training=True, seed=(s, 1))[0]
                clips.append(tf.gather(jpegs, idx))
    ds = tf.data.Dataset.from_tensor_slices(tf.stack(clips)).repeat().shuffle(64, seed=0)
    ds = ds.map(lambda j: tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3), j,
                                    fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.map(lambda f: tf.shape(f)).batch(BATCH).prefetch(tf.data.AUTOTUNE)  # keep the decode, drop the pixels
    return clips_per_second(ds, batches)


def stage_costs(records: Path, batches: int) -> list[tuple[str, float, float]]:
    """8x8 clips: cumulative cost of each stage (minimal pipelines, no shuffle / bad-record guard / flip)."""
    import tensorflow as tf

    from tfsts.data import sampling as samplers
    from tfsts.data import schema, video

    files = sorted(str(p) for p in records.glob("train-*.tfrecord"))
    raw = tf.data.Dataset.from_tensor_slices(files).interleave(tf.data.TFRecordDataset, cycle_length=4).repeat()

    def gathered(record):
        jpegs = schema.parse_video(record)[1][schema.IMAGE_ENCODED]
        idx = samplers.frame_indices(tf.shape(jpegs)[0], num_frames=8, frame_interval=8, training=True, seed=(1, 2))[0]
        return tf.gather(jpegs, idx)

    def cropped(jpegs, resize):
        shape = tf.io.extract_jpeg_shape(jpegs[0])
        box = video.random_resized_crop_box(shape[0], shape[1], (1, 2))
        if resize:
            return video.decode_crop_resize(jpegs, box, 224)
        return tf.shape(tf.map_fn(lambda x: tf.image.decode_and_crop_jpeg(x, box, channels=3), jpegs,
                                  fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)))

    stages = [
        ("read records (TFRecordDataset)", lambda r: tf.strings.length(r)),
        ("+ parse SequenceExample", lambda r: tf.shape(schema.parse_video(r)[1][schema.IMAGE_ENCODED])),
        ("+ sample, gather, decode 8 full frames", lambda r: tf.shape(video.decode_jpegs(gathered(r)))),
        ("+ decode-and-crop instead of full decode", lambda r: cropped(gathered(r), False)),
        ("+ resize the crops to 224 (uint8)", lambda r: cropped(gathered(r), True)),
    ]
    out = []
    for name, fn in stages:
        ds = raw.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(BATCH)
        out.append((name, *clips_per_second(ds, batches)))
    return out


def record_costs(records: Path, reads: int = 16) -> list[tuple[float, float, float]]:
    """(record MB, CPU ms to read it, CPU ms to read and parse it) per record, smallest first."""
    import tensorflow as tf

    from tfsts.data import schema

    out = []
    for shard in sorted(records.glob("train-*.tfrecord"), key=os.path.getsize):
        costs = []
        for fn in (tf.strings.length, lambda r: tf.shape(schema.parse_video(r)[1][schema.IMAGE_ENCODED])):
            ds = tf.data.TFRecordDataset(str(shard), buffer_size=1 << 20).repeat(reads + 2).map(fn)
            it = iter(ds)
            next(it), next(it)
            cpu = time.process_time()
            for _ in it:
                pass
            costs.append((time.process_time() - cpu) * 1000 / reads)
        out.append((os.path.getsize(shard) / 2**20, *costs))
    return out


def online_clip(args: tuple[str, int, int, int]) -> float:
    """CPU seconds of one training clip decoded online with PyAV, as the reference's loaders do."""
    import av

    from data_prep.decode import frame_to_rgb, target_size

    path, num_frames, interval, seed = args
    cpu = time.process_time()
    rng = random.Random(seed)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = float(stream.average_rate or 25)
        total = stream.frames or max(1, int((container.duration or 0) / 1e6 * rate))  # as mmaction2's PyAVInit
        span = num_frames * interval
        start = rng.randrange(max(total - span + 1, 1))
        wanted = sorted({(start + k * interval) % total for k in range(num_frames)})
        first_pts = int(wanted[0] / rate / stream.time_base) + (stream.start_time or 0)
        container.seek(first_pts, stream=stream, backward=True, any_frame=False)
        width, height = target_size(stream.codec_context.width, stream.codec_context.height, 256)
        got = 0
        for frame in container.decode(stream):
            index = round((frame.time or 0) * rate)
            if index in wanted:
                rgb = frame_to_rgb(frame, width, height, 0)
                y, x = rng.randrange(rgb.shape[0] - 223), rng.randrange(rgb.shape[1] - 223)
                _ = rgb[y:y + 224, x:x + 224].copy()
                got += 1
            if index >= wanted[-1]:
                break
    return time.process_time() - cpu


def online(paths: list[Path], num_frames: int, interval: int, clips: int) -> tuple[float, float]:
    """(clips/s wall with one process per core, CPU ms per clip)."""
    context = multiprocessing.get_context("spawn")
    jobs = [(str(paths[i % len(paths)]), num_frames, interval, i) for i in range(clips)]
    with context.Pool(os.cpu_count()) as pool:
        pool.map(online_clip, jobs[: os.cpu_count()])  # warm up
        start = time.perf_counter()
        cpu = pool.map(online_clip, jobs, chunksize=1)
        return clips / (time.perf_counter() - start), sum(cpu) * 1000 / clips


def rss_probe(pattern: str, batches: int, shuffle_buffer: int) -> None:
    """In a fresh process: peak RSS before and after iterating the 8x8 training pipeline."""
    import tensorflow as tf  # noqa: F401

    import tfsts.data as data

    ds = data.video_dataset(pattern, training=True, batch_size=BATCH, num_frames=8, frame_interval=8, seed=0,
                            shuffle_buffer=shuffle_buffer)
    before = peak_rss_mb()
    it = iter(ds)
    for _ in range(batches):
        next(it)
    print(f"RSS {before:.0f} {peak_rss_mb():.0f}")


def peak_rss_mb() -> float:
    """VmHWM (peak RSS) of this process; unlike ru_maxrss it is not inherited across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_rss(pattern: str, batches: int, shuffle_buffer: int) -> tuple[float, float]:
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--rss_probe", pattern, "--batches", str(batches),
                          "--shuffle_buffer", str(shuffle_buffer)], env=env, capture_output=True, text=True,
                         check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("RSS ")][-1]
    before, after = map(float, line.split()[1:])
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "testdata" / "videos"))
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "tfsts_bench_input"))
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--online_clips", type=int, default=48)
    parser.add_argument("--shuffle_buffer", type=int, default=64)
    parser.add_argument("--rss_probe", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_probe:
        return rss_probe(args.rss_probe, args.batches, args.shuffle_buffer)
    if not Path(args.videos).is_dir():
        parser.error(f"--videos {args.videos}: no such folder; pass --videos DIR, a folder of test videos "
                     "(the ones data_prep's tests decode)")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    video_records, image_records, paths = build_records(Path(args.videos), workdir)
    build = time.perf_counter() - started

    import tensorflow as tf

    import tfsts.data as data

    pattern = str(video_records / "train-*.tfrecord")
    load = os.getloadavg()[0]
    rows = []
    for name, frames, interval, sampling in (("8x8", 8, 8, "dense"), ("32x2", 32, 2, "dense"),
                                             ("uniform 8 segments (SSv2)", 8, 1, "uniform")):
        ds = data.video_dataset(pattern, training=True, batch_size=BATCH, num_frames=frames, frame_interval=interval,
                                sampling=sampling, crop_size=224, seed=0)
        batches = max(4, args.batches * 8 // frames)
        ours = clips_per_second(ds, batches)
        bound = decode_bound(video_records, frames, interval, sampling, batches)
        live = online(paths, frames, interval if sampling == "dense" else 1, max(8, args.online_clips * 8 // frames))
        rows.append([name, f"{ours[0]:.1f} / {ours[1]:.1f}", f"{bound[0]:.1f} / {bound[1]:.1f}",
                     f"{ours[0] / bound[0]:.2f} / {bound[1] / ours[1]:.2f}", f"{live[0]:.1f} / {live[1]:.1f}",
                     f"{ours[0] / live[0]:.1f}x / {live[1] / ours[1]:.1f}x", f"{bound[0] / live[0]:.1f}x / {live[1] / bound[1]:.1f}x"])
        if name == "8x8":  # opt-in repeated sampling, against the same bound and online figures
            ds = data.video_dataset(pattern, training=True, batch_size=BATCH, num_frames=8, frame_interval=8,
                                    crop_size=224, seed=0, clips_per_record=4)
            rep = clips_per_second(ds, batches)
            rows.append(["8x8, clips_per_record=4 (opt-in)", f"{rep[0]:.1f} / {rep[1]:.1f}", "same",
                         f"{rep[0] / bound[0]:.2f} / {bound[1] / rep[1]:.2f}", "same",
                         f"{rep[0] / live[0]:.1f}x / {live[1] / rep[1]:.1f}x", "same"])
    stages = stage_costs(video_records, args.batches)
    per_record = record_costs(video_records)
    images = data.image_dataset(str(image_records / "train-*.tfrecord"), training=True, batch_size=BATCH, seed=0)
    image_rate = clips_per_second(images, args.batches * 4)
    sources = {
        "k": data.video_dataset(pattern, training=True, batch_size=BATCH, num_frames=8, frame_interval=8, seed=1),
        "ssv2": data.video_dataset(pattern, training=True, batch_size=BATCH, num_frames=8, sampling="uniform", seed=2),
        "img": data.image_dataset(str(image_records / "train-*.tfrecord"), training=True, batch_size=BATCH,
                                  num_frames=8, seed=3),
    }
    mixed = clips_per_second(data.mixture(sources, weights=[1, 1, 1], batching="mixed", seed=0), args.batches)
    per_source = clips_per_second(data.mixture(sources, weights=[1, 1, 1], batching="per_source", seed=0),
                                  args.batches)
    rss = peak_rss_mb()
    sizes = sorted(os.path.getsize(p) for p in video_records.glob("train-*.tfrecord"))  # one record per shard
    probe = {buffer: measure_rss(pattern, 40, buffer) for buffer in (1, 64)}
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start / {os.getloadavg()[0]:.1f} at end; "
          f"{len(paths)} videos at short side 256, batch {BATCH}, crop 224; records built in {build:.0f} s; "
          f"TF {tf.__version__}")
    print()
    print("Each cell: wall clips/s / CPU ms per clip (ratios: by wall rate / by CPU per clip).")
    print()
    print("| clip | tfsts.data | decode bound | tfsts.data / bound | online PyAV | "
          "tfsts.data / online | bound / online |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("| 8x8 stage (cumulative) | clips/s | CPU ms per clip |")
    print("|---|---:|---:|")
    for name, rate, cpu in stages:
        print(f"| {name} | {rate:.1f} | {cpu:.2f} |")
    print()
    print("| record (whole video) MB | read, CPU ms | read + parse, CPU ms |")
    print("|---:|---:|---:|")
    for mb, read, parsed in per_record:
        print(f"| {mb:.2f} | {read:.2f} | {parsed:.2f} |")
    big = [r for r in per_record if r[0] >= 1]
    if big:
        print(f"(records of 1 MB or more: read {sum(r[1] for r in big) / sum(r[0] for r in big):.2f} ms per MB, "
              f"read + parse {sum(r[2] for r in big) / sum(r[0] for r in big):.2f} ms per MB)")
    print()
    print("| stream | clips/s | CPU ms per clip |")
    print("|---|---:|---:|")
    print(f"| image_dataset (T = 1, 224) | {image_rate[0]:.1f} | {image_rate[1]:.2f} |")
    print(f"| mixture of 3 (8x8, uniform 8, images as 8-frame clips), mixed batches | {mixed[0]:.1f} | {mixed[1]:.2f} |")
    print(f"| same, per-source batches | {per_source[0]:.1f} | {per_source[1]:.2f} |")
    print()
    print(f"peak RSS of this benchmark process (every pipeline above, TensorFlow included): {rss:.0f} MB")
    print(f"records: largest {sizes[-1] / 2**20:.1f} MB, median {sizes[len(sizes) // 2] / 2**20:.1f} MB "
          f"({len(sizes)} records, one per shard)")
    for buffer, (before, after) in probe.items():
        print(f"fresh process, 8x8 training pipeline, shuffle_buffer={buffer}: peak RSS {before:.0f} MB after "
              f"building it, {after:.0f} MB after 40 batches (+{after - before:.0f} MB)")


if __name__ == "__main__":
    main()
