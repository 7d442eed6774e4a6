"""Throughput of data_prep against the decode + resize + JPEG bound.

    python benchmarks/bench_data_prep.py [--videos=../shared/testdata/videos] [--copies=3] [--short_side=256]

Builds a generic list of the decodable test videos (``--copies`` copies of each, one
shard per video), converts it with 1 and 2 DirectRunner workers, and compares with the
work itself: PyAV decode + resize + JPEG encode of the same frames in a tight
single-process loop (the same library calls data_prep makes, none of its bookkeeping),
run once alone and once as two processes side by side (what the machine can give two
workers). Wall-clock throughput includes Beam start-up and planning; "inside the shard
loops" leaves them out (frames over the summed time of the workers' shard loops); CPU per
frame is printed too because shared machines make wall time noisy. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep import generic  # noqa: E402
from data_prep.decode import FrameOptions  # noqa: E402
from data_prep.pipeline import RunConfig  # noqa: E402

BAD = {"decord_corrupted.mp4", "libwebm_invalid_vp9_bitstream.webm", "libwebm_bad_lace_size.mkv"}


def tight_loop(paths: list[str], short_side: int, quality: int) -> tuple[int, float, float]:
    """(frames, wall seconds, cpu seconds) of decode + resize + JPEG, nothing else."""
    frames = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            target = None
            for frame in container.decode(stream):
                if target is None:
                    quarter = round((frame.rotation or 0) / 90) % 4
                    width, height = (frame.height, frame.width) if quarter % 2 else (frame.width, frame.height)
                    scale = short_side / min(width, height)
                    width, height = max(1, round(width * scale)), max(1, round(height * scale))
                    target = (height, width) if quarter % 2 else (width, height)
                if (frame.width, frame.height) != target:
                    frame = frame.reformat(width=target[0], height=target[1], interpolation="AREA", threads=1)
                rgb = frame.to_ndarray(format="rgb24", threads=1)
                if quarter:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter))
                Image.fromarray(rgb).save(io.BytesIO(), format="JPEG", quality=quality)
                frames += 1
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def _loop_worker(args: tuple[list[str], int, int]) -> tuple[int, float, float]:
    return tight_loop(*args)


def parallel_loops(paths: list[str], short_side: int, quality: int, processes: int) -> tuple[int, float]:
    """(frames, wall seconds) of ``processes`` tight loops side by side, each over all paths."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pool.map(_loop_worker, [([paths[0]], short_side, quality)] * processes)  # warm up the pool
        started = time.perf_counter()
        results = pool.map(_loop_worker, [(paths, short_side, quality)] * processes)
        wall = time.perf_counter() - started
    return sum(r[0] for r in results), wall


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "testdata" / "videos"))
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--short_side", type=int, default=256)
    parser.add_argument("--jpeg_quality", type=int, default=90)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=2, help="repeat every measurement, keep the fastest")
    args = parser.parse_args()

    videos = sorted(
        p for p in Path(args.videos).iterdir() if p.suffix.lower() in (".mp4", ".webm", ".mkv", ".avi", ".mov") and p.name not in BAD
    )
    if not videos:
        sys.exit(f"no videos in {args.videos}")
    paths = [str(p) for p in videos]
    work = Path(tempfile.mkdtemp(prefix="bench_data_prep_"))
    try:
        root = work / "videos"
        root.mkdir()
        lines = []
        for copy in range(args.copies):
            for video in videos:
                name = f"c{copy}_{video.name}"
                os.symlink(video, root / name)
                lines.append(f"{name} 0")
        listing = work / "train.txt"
        listing.write_text("\n".join(lines) + "\n")
        load_before = os.getloadavg()

        tight_loop(paths[:1], args.short_side, args.jpeg_quality)  # warm caches
        bound = pair = None
        runs: dict[int, tuple] = {}
        for round_number in range(args.rounds):  # interleaved, so a busy spell hurts every row alike
            loop = tight_loop(paths, args.short_side, args.jpeg_quality)
            bound = loop if bound is None or loop[1] < bound[1] else bound
            both = parallel_loops(paths, args.short_side, args.jpeg_quality, 2)
            pair = both if pair is None or both[1] < pair[1] else pair
            for workers in [int(w) for w in args.workers.split(",")]:
                out = work / f"out{workers}_{round_number}"
                config = RunConfig(
                    output_dir=str(out), dataset="bench",
                    frame_options=FrameOptions(args.short_side, 0.0, args.jpeg_quality),
                    shard_size=1, max_failures="0", num_workers=workers, progress=False,
                )
                cpu_before, started = cpu_seconds(), time.perf_counter()
                result = generic.prepare({"train": str(listing)}, str(root), config)
                wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
                assert result.ok, result.error
                # Time inside the workers' shard loops: the run without Beam start-up and planning.
                busy = sum(json.loads(p.read_text())["elapsed_s"] for p in (out / ".state").glob("*.tfrecord.json"))
                if workers not in runs or wall < runs[workers][2]:
                    runs[workers] = (workers, result.stats, wall, cpu, busy)
                shutil.rmtree(out)
        frames_per_copy, bound_wall, bound_cpu = bound
        bound_fps = frames_per_copy / bound_wall
        pair_frames, pair_wall = pair
        pair_fps = pair_frames / pair_wall
        rows = [runs[w] for w in sorted(runs)]
        load_after = os.getloadavg()

        videos_total = len(lines)
        print(f"\nmachine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after; "
              f"{len(videos)} videos x {args.copies} copies = {videos_total} videos, "
              f"{frames_per_copy * args.copies:,} frames, short side {args.short_side}, JPEG q{args.jpeg_quality}\n")
        bound_cpu_per_frame = bound_cpu / frames_per_copy
        print("| configuration | videos/s | frames/s | scaling vs 1 worker | ratio to bound per worker "
              "| same, inside the shard loops | CPU ms/frame | CPU ratio to bound |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| bound: decode+resize+JPEG, tight loop, 1 process | {len(videos) / bound_wall:.2f} | {bound_fps:.0f} "
              f"| | 1.00 | | {1e3 * bound_cpu_per_frame:.2f} | 1.00 |")
        print(f"| same loop, 2 processes side by side | {2 * len(videos) / pair_wall:.2f} | {pair_fps:.0f} | "
              f"{pair_fps / bound_fps:.2f} | {pair_fps / (2 * bound_fps):.2f} | | | |")
        base = None
        for workers, stats, wall, cpu, busy in rows:
            fps = stats["frames"] / wall
            base = base or fps
            mode = "in-process" if workers == 1 else "multi_processing"
            per_frame = cpu / stats["frames"]
            inside = stats["frames"] / busy / bound_fps  # busy sums over workers: a per-worker rate
            print(f"| data_prep, {workers} worker{'s' if workers > 1 else ''} ({mode}) | {videos_total / wall:.2f} "
                  f"| {fps:.0f} | {fps / base:.2f} | {fps / (workers * bound_fps):.2f} | {inside:.2f} "
                  f"| {1e3 * per_frame:.2f} | {bound_cpu_per_frame / per_frame:.2f} |")
        stats = rows[0][1]
        source_frames = frames_per_copy * args.copies
        print("\n| bytes | per frame | per video-second |")
        print("|---|---:|---:|")
        print(f"| source files | {stats['source_bytes'] / source_frames / 1e3:.1f} KB | {stats['source_bytes_per_second'] / 1e3:.0f} KB |")
        print(f"| records (JPEG frames + context) | {stats['bytes_per_frame'] / 1e3:.1f} KB | {stats['bytes_per_second'] / 1e3:.0f} KB |")
        print(f"| records / source | {stats['bytes_per_frame'] * source_frames / stats['source_bytes']:.1f}x | "
              f"{stats['bytes_per_second'] / stats['source_bytes_per_second']:.1f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
