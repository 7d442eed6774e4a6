"""absl flags shared by the dataset entry points, and the run-and-report wrapper.

Flags are defined by calling define_common_flags() from an entry point's ``__main__``
block, never at import time, so importing several data_prep modules (tests, notebooks)
does not collide. Flags absl does not know are handed to Apache Beam untouched
(``--runner=DataflowRunner --project=... --region=...``).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

from absl import app, flags

from data_prep.decode import FrameOptions
from data_prep.items import InputError
from data_prep.pipeline import RunConfig, RunError, RunResult, default_num_workers

FLAGS = flags.FLAGS


def define_common_flags(short_side: int = 256, shard_size: int = 64) -> None:
    flags.DEFINE_string("output_dir", None, "Directory for the shards, manifest.json and label_map.txt.", required=True)
    flags.DEFINE_string(
        "label_map", None, "Class list to use instead of deriving one: .txt (line i = class i) or .json {name: index}."
    )
    flags.DEFINE_integer("short_side", short_side, "Resize so the shorter side has this many pixels (0 = keep).")
    flags.DEFINE_float("fps", 0.0, "Resample to this frame rate (0 = keep every decoded frame).")
    flags.DEFINE_integer(
        "jpeg_quality", 90, "JPEG quality of the stored frames (1-100).", lower_bound=1, upper_bound=100
    )
    flags.DEFINE_integer("shard_size", shard_size, "Records per shard.", lower_bound=1)
    flags.DEFINE_integer("num_shards", 0, "Shards per split (0 = from --shard_size).", lower_bound=0)
    flags.DEFINE_string(
        "max_failures", "5%", "Fail the run when more inputs fail: a count (10), fraction (0.01) or percentage (1%)."
    )
    flags.DEFINE_integer("seed", 0, "Salt of the deterministic item-to-shard order.")
    flags.DEFINE_integer(
        "num_workers", default_num_workers(), "DirectRunner worker processes (1 = run in this process).", lower_bound=1
    )
    flags.DEFINE_integer("decode_threads", 1, "FFmpeg threads per worker (0 = auto).", lower_bound=0)
    flags.DEFINE_bool("rehash_existing", False, "On resume, re-hash finished shards instead of trusting size+mtime.")
    flags.DEFINE_bool("progress", True, "Print progress while running.")


def config_from_flags(dataset: str, kind: str, inputs: dict[str, Any], beam_args: Sequence[str]) -> RunConfig:
    return RunConfig(
        output_dir=os.path.abspath(FLAGS.output_dir),
        dataset=dataset,
        kind=kind,
        frame_options=FrameOptions(
            short_side=FLAGS.short_side,
            fps=FLAGS.fps,
            jpeg_quality=FLAGS.jpeg_quality,
            decode_threads=FLAGS.decode_threads,
        ),
        shard_size=FLAGS.shard_size,
        num_shards=FLAGS.num_shards,
        max_failures=FLAGS.max_failures,
        seed=FLAGS.seed,
        num_workers=FLAGS.num_workers,
        beam_args=list(beam_args),
        rehash_existing=FLAGS.rehash_existing,
        progress=FLAGS.progress,
        inputs=inputs,
    )


def report(result: RunResult) -> int:
    """Print the summary (stdout) and, on too many failures, the failure report (stderr)."""
    if result.summary:
        print(result.summary)
    if not result.ok:
        print(result.error, file=sys.stderr)
        return 1
    return 0


def parse_known_flags(argv: list[str]) -> list[str]:
    """absl parser that leaves unknown flags for Beam instead of rejecting them."""
    try:
        return FLAGS(argv, known_only=True)
    except flags.Error as e:
        print(f"{e}\nRun with --helpfull for the flags.", file=sys.stderr)
        sys.exit(2)


def run_main(main: Callable[[list[str]], int]) -> None:
    """app.run with Beam pass-through and clean errors (no traceback for RunError / bad input)."""

    def wrapped(argv: list[str]) -> int:
        try:
            return main(argv[1:])
        except (RunError, InputError, FileNotFoundError) as e:
            print(f"data_prep: error: {e}", file=sys.stderr)
            return 2

    app.run(wrapped, flags_parser=parse_known_flags)


def split_paths(value: str | None, default_split: str | None = None) -> dict[str, str]:
    """'train=a.txt,val=b.txt' (or 'a.txt' with a default split) -> {split: path}."""
    if not value:
        return {}
    result: dict[str, str] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            split, path = part.split("=", 1)
        elif default_split:
            split, path = default_split, part
        else:
            raise InputError(f"{part!r}: write it as SPLIT=PATH, e.g. train={part}")
        if split in result:
            raise InputError(f"split {split!r} given twice")
        result[split.strip()] = path.strip()
    return result
