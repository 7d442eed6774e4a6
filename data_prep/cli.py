"""absl flags shared by the dataset entry points, and the run-and-report wrapper.

Flags are defined by calling define_common_flags() from an entry point's ``__main__``
block, never at import time, so importing several data_prep modules (tests, notebooks)
does not collide. Arguments data_prep does not define go to Apache Beam
(``--runner=DataflowRunner --project=... --region=...``) when Beam's PipelineOptions
know them; anything else is rejected with the nearest valid flag, so a misspelled flag
never silently keeps its default.
"""
from __future__ import annotations

import difflib
import os
import sys
import traceback
from typing import Any, Callable, Sequence

from absl import app, flags

from data_prep.decode import SHORT_CLIP_POLICIES, FrameOptions
from data_prep.items import InputError
from data_prep.pipeline import MISSING_POLICIES, RunConfig, RunError, RunResult, default_num_workers

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
    flags.DEFINE_enum(
        "missing", "fail", list(MISSING_POLICIES),
        "Inputs whose file is absent: 'fail' counts them against --max_failures, 'skip' lists them in the "
        "manifest without counting them.",
    )
    flags.DEFINE_enum(
        "short_clips", "fail", list(SHORT_CLIP_POLICIES),
        "Clips shorter than asked (a cut file: 'truncated'; a window past the file's end: 'short'): "
        "'fail' makes them failures, 'keep' writes them and lists them under warnings in the manifest.",
    )
    flags.DEFINE_integer("seed", 0, "Salt of the deterministic item-to-shard order.")
    flags.DEFINE_integer(
        "num_workers", default_num_workers(), "DirectRunner worker processes (1 = run in this process).", lower_bound=1
    )
    flags.DEFINE_integer("decode_threads", 1, "FFmpeg threads per worker (0 = auto).", lower_bound=0)
    flags.DEFINE_bool("rehash_existing", False, "On resume, re-hash finished shards instead of trusting size+mtime.")
    flags.DEFINE_bool("progress", True, "Print progress while running.")
    flags.DEFINE_bool("verbose", False, "Show the Python traceback of an error (for bug reports).")


def show_common_flags_in_help() -> None:
    """Make --help of the running entry point list the common flags next to its own.

    absl shows only the main module's own ("key") flags under --help; the common flags are
    defined in this module, so they are registered as key flags of the main module too.
    """
    main_module = sys.argv[0]  # absl's name for the __main__ module
    for flag in FLAGS.get_flags_for_module(__name__):
        FLAGS.register_key_flag_for_module(main_module, flag)


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
        missing=FLAGS.missing,
        short_clips=FLAGS.short_clips,
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


def _fail(message: str) -> None:
    print(f"data_prep: error: {message}", file=sys.stderr)
    sys.exit(2)


def beam_flag_names() -> set[str]:
    """Every ``--flag`` Beam's PipelineOptions classes define (runner, Dataflow, Flink, ...)."""
    import argparse

    from data_prep import beam_logging

    beam_logging.install()
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_value_provider_argument = parser.add_argument  # what Beam's own parser adds
    pending, seen = list(PipelineOptions.__subclasses__()), set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending += cls.__subclasses__()
        try:
            cls._add_argparse_args(parser)  # the public parse path does the same, then drops unknowns
        except argparse.ArgumentError:
            pass  # a flag two classes both define
    return {option for action in parser._actions for option in action.option_strings if option.startswith("--")}


def check_beam_arguments(args: Sequence[str], own_flags: Sequence[str]) -> list[str]:
    """The arguments absl left over, if Beam knows every one; else a one-line error naming
    the first unknown one and the nearest valid flag (data_prep's or Beam's)."""
    if not args:
        return []
    known = beam_flag_names()
    for arg in args:
        if not arg.startswith("-"):
            _fail(f"unexpected argument {arg!r}: every input is given by a flag (see --help)")
        name = "--" + arg.lstrip("-").split("=", 1)[0]
        if name in known:
            continue
        candidates = sorted({f"--{n}" for n in own_flags}) + sorted(known)
        nearest = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        _fail(
            f"unknown flag {arg.split('=', 1)[0]!r}: neither data_prep nor Apache Beam's pipeline options "
            f"define it{hint} (see --help)"
        )
    return list(args)


def parse_flags(argv: list[str]) -> list[str]:
    """absl parser for the tools (verify, inspect): every flag must be theirs; one-line errors."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(f"{' '.join(str(e).split())} (see --help)")


def parse_known_flags(argv: list[str]) -> list[str]:
    """absl parser: data_prep's flags, then the rest checked against Beam's options."""
    try:
        rest = FLAGS(argv, known_only=True)
    except flags.Error as e:
        _fail(f"{' '.join(str(e).split())} (see --help)")
    own = [name for name in FLAGS]
    beam_args = check_beam_arguments(rest[1:], own)
    return [rest[0], *beam_args]


def run_main(main: Callable[[list[str]], int]) -> None:
    """app.run with Beam pass-through and one-line errors.

    A user error (bad flag value, missing or unusable file, a locked or foreign output
    folder) prints one line and exits 2; --verbose adds the traceback. Anything else is a
    bug and keeps its traceback.
    """

    def wrapped(argv: list[str]) -> int:
        try:
            return main(argv[1:])
        except (RunError, InputError, OSError) as e:
            if FLAGS.verbose:
                traceback.print_exc()
            message = str(e) if not isinstance(e, OSError) or not e.filename else (
                f"{e.filename}: {e.strerror or e}"
            )
            print(f"data_prep: error: {message}", file=sys.stderr)
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
