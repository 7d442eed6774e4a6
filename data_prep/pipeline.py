"""The run: plan shards, write the missing ones on Apache Beam, then the manifest and summary.

Engine: the DirectRunner with ``--direct_running_mode=multi_processing`` and one process
per core by default (nothing to install beyond apache-beam); any Beam option passes
through (``--runner=DataflowRunner --project=...``, Flink, Spark). The unit of work is a
whole shard, so no frame data ever flows through the runner (the DirectRunner keeps
grouped data in the driver's memory) and determinism never depends on scheduling: see
data_prep.sharding and data_prep.writer. Workers must see output_dir and the media roots
at the same paths (local disk for the DirectRunner, a shared mount on a cluster).
"""
from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from typing import Any, Sequence, TextIO

import av
import PIL

from data_prep import beam_logging
from data_prep.annotations import Annotations, label_map_text, label_map_version
from data_prep.decode import SHORT_CLIP_POLICIES, FrameOptions
from data_prep.items import FAILURE_HINTS, Failure, InputError
from data_prep.sharding import SHARD_PATTERN, ShardSpec, plan_shards
from data_prep.writer import (
    PROGRESS_DIR,
    STATE_DIR,
    TMP_MARKER,
    Job,
    atomic_write,
    completed_state,
    json_bytes,
    plan_path,
    write_claimed_shards,
    write_shards_by_name,
)
from tfsts.data import schema

MANIFEST = "manifest.json"
LABEL_MAP = "label_map.txt"
MANIFEST_FORMAT = "tfsts.data_prep.manifest/1"
MISSING_POLICIES = ("fail", "skip")
_LOCK = ".lock"


def default_num_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


@dataclasses.dataclass
class RunConfig:
    """Options of one run. Only some reach the manifest: see manifest_options()."""

    output_dir: str
    dataset: str
    kind: str = "video"  # "video" or "image"
    frame_options: FrameOptions = FrameOptions()
    shard_size: int = 64  # records per shard (the last shards of a split may hold one less)
    num_shards: int = 0  # per split; 0 = ceil(records / shard_size)
    max_failures: str = "5%"  # a count ("10") or a fraction ("0.01", "1%") of the inputs
    missing: str = "fail"  # inputs whose file is absent: "fail" (count them) or "skip" (list, don't count)
    short_clips: str = "fail"  # clips shorter than asked: "fail" (a failure) or "keep" (a record + a warning)
    seed: int = 0  # salt of the item -> shard order
    num_workers: int = dataclasses.field(default_factory=default_num_workers)
    beam_args: Sequence[str] = ()
    rehash_existing: bool = False  # resume: re-hash finished shards instead of size+mtime
    progress: bool = True
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # dataset arguments, for the manifest


@dataclasses.dataclass
class RunResult:
    ok: bool  # False when more inputs failed than --max_failures allows
    manifest_path: str
    manifest: dict[str, Any]
    summary: str
    stats: dict[str, Any]
    error: str = ""


class RunError(RuntimeError):
    """A run that cannot start or finish (lock held, stale shards, shards not written)."""


# --- Failure budget ------------------------------------------------------------------------
def failure_limit(spec: str, num_inputs: int) -> int:
    """How many failures --max_failures allows: a count, or a fraction / percentage of inputs."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
        else:
            value = float(text)
            if value < 1 and ("." in text or "e" in text.lower()):
                fraction = value
            elif value.is_integer() and value >= 0:
                return int(value)
            else:
                raise ValueError  # caught below
    except ValueError:
        raise InputError(
            f"--max_failures={spec!r}: use a count (10), a fraction below 1 (0.05) or a percentage (5%)"
        ) from None
    if not 0 <= fraction <= 1:
        raise InputError(f"--max_failures={spec!r}: a fraction must lie between 0 and 1")
    return math.floor(fraction * num_inputs + 1e-9)


def counted_failures(failures: Sequence[Failure], config: RunConfig) -> list[Failure]:
    """The failures --max_failures counts: all of them, except absent files under --missing=skip."""
    if config.missing == "skip":
        return [f for f in failures if f.kind != "missing"]
    return list(failures)


def check_policies(config: RunConfig) -> None:
    if config.missing not in MISSING_POLICIES:
        raise InputError(f"--missing={config.missing!r}: use one of {', '.join(MISSING_POLICIES)}")
    if config.short_clips not in SHORT_CLIP_POLICIES:
        raise InputError(f"--short_clips={config.short_clips!r}: use one of {', '.join(SHORT_CLIP_POLICIES)}")


def failure_report(failures: Sequence[Failure], num_inputs: int, config: RunConfig, limit: int, manifest: str) -> str:
    """The message of a run that failed on --max_failures: which files, which field, what to do."""
    counted = counted_failures(failures, config)
    missing = sum(f.kind == "missing" for f in failures)
    lines = [
        f"data_prep: {len(counted)} of {num_inputs} inputs failed, more than --max_failures={config.max_failures} "
        f"allows ({limit})."
    ]
    if missing and config.missing == "skip":
        lines.append(f"  ({missing} inputs with an absent file are listed but not counted: --missing=skip.)")
    elif missing:
        lines.append(
            f"  ({missing} of them name a file that is absent; --missing=skip lists those in the manifest "
            "without counting them against --max_failures.)"
        )
    failures = counted
    for failure in failures[:20]:
        lines.append("  " + failure.describe())
    if len(failures) > 20:
        lines.append(f"  ... and {len(failures) - 20} more.")
    lines.append("What to do:")
    for kind in sorted({f.kind for f in failures}):
        lines.append(f"  {kind}: {FAILURE_HINTS.get(kind, '')}")
    lines.append(
        f'Every failure is listed under "failures" in {manifest}. Fix those inputs, or allow more with --max_failures.'
    )
    return "\n".join(lines)


# --- Run ---------------------------------------------------------------------------------------
def run(annotations: Annotations, config: RunConfig) -> RunResult:
    """Convert the annotated inputs into shards + manifest under config.output_dir."""
    output_dir = config.output_dir
    check_policies(config)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise RunError(f"--output_dir {output_dir} is a file, not a directory: give a directory (it is created if absent)")
    try:
        os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
    except OSError as e:
        raise RunError(f"--output_dir {output_dir}: cannot create it ({e.strerror or e})") from None
    lock = _acquire_lock(output_dir)
    try:
        return _run_locked(annotations, config)
    finally:
        lock.close()


def _run_locked(annotations: Annotations, config: RunConfig) -> RunResult:
    output_dir = config.output_dir
    _remove_temporaries(output_dir)
    frame_options = config.frame_options
    settings = {
        "kind": config.kind,
        "frame_options": dataclasses.asdict(frame_options) | {"decode_threads": None},
        "software": software_versions(),
        "short_clips": config.short_clips,  # decides which short clips become records
    }
    splits = sorted({item.split for item in annotations.items} | {f.split for f in annotations.failures})
    specs = plan_shards(
        annotations.items,
        annotations.roots,
        shard_size=config.shard_size,
        num_shards=config.num_shards,
        seed=config.seed,
        settings=settings,
        splits=splits,
    )
    _check_no_stale_shards(output_dir, specs)
    _write_if_changed(os.path.join(output_dir, LABEL_MAP), label_map_text(annotations.labels).encode("utf-8"))
    num_inputs = annotations.num_inputs
    limit = failure_limit(config.max_failures, num_inputs)
    manifest_path = os.path.join(output_dir, MANIFEST)

    if len(counted_failures(annotations.failures, config)) > limit:  # fail before hours of decoding
        failures = sorted(annotations.failures)
        manifest = build_manifest(annotations, config, specs, {}, failures, status="aborted")
        atomic_write(manifest_path, json_bytes(manifest, sort_keys=False))
        error = failure_report(failures, num_inputs, config, limit, manifest_path)
        return RunResult(False, manifest_path, manifest, "", {}, error)

    for spec in specs:
        _write_if_changed(plan_path(output_dir, spec.name), json_bytes(spec.to_json()))
    job = Job(
        kind=config.kind,
        output_dir=output_dir,
        frame_options=frame_options,
        driver=_local_driver(config),
        short_clips=config.short_clips,
    )
    done_states = {s.name: completed_state(s, output_dir, config.rehash_existing) for s in specs}
    pending = [s for s in specs if done_states[s.name] is None]
    started = time.perf_counter()
    if pending:
        os.makedirs(os.path.join(output_dir, PROGRESS_DIR), exist_ok=True)
        # The progress line counts what the summary counts: every input, including the ones
        # rejected before decoding and those in shards finished by an earlier run.
        finished = [st for st in done_states.values() if st is not None]
        already = len(annotations.failures) + sum(len(s.items) for s in specs if done_states[s.name] is not None)
        already_failed = len(annotations.failures) + sum(len(st["failures"]) for st in finished)
        progress = (
            _Progress(output_dir, pending, sys.stderr, num_inputs, already, already_failed, len(specs))
            if config.progress
            else None
        )
        if progress:
            progress.start()
        try:
            _run_beam([s.name for s in pending], job, config)
        finally:
            if progress:
                progress.finish()
    wall = time.perf_counter() - started

    states: dict[str, dict[str, Any]] = {}
    for spec in specs:
        state = completed_state(spec, output_dir)
        if state is None:
            raise RunError(f"shard {spec.name} was not written; see the errors above, then run again to resume")
        states[spec.name] = state
    failures = sorted(
        list(annotations.failures) + [Failure(**f) for s in states.values() for f in s["failures"]]
    )
    status = "complete" if len(counted_failures(failures, config)) <= limit else "max_failures_exceeded"
    manifest = build_manifest(annotations, config, specs, states, failures, status=status)
    atomic_write(manifest_path, json_bytes(manifest, sort_keys=False))
    _remove_temporaries(output_dir)

    stats = run_stats([states[s.name] for s in pending], wall, len(specs) - len(pending))
    summary = format_summary(config, manifest, stats, limit, manifest_path)
    error = "" if status == "complete" else failure_report(failures, num_inputs, config, limit, manifest_path)
    return RunResult(status == "complete", manifest_path, manifest, summary, stats, error)


def software_versions() -> dict[str, str]:
    """Library versions that determine the bytes (FFmpeg's decoders, libjpeg via Pillow)."""
    return {
        "av": av.__version__,
        "libavcodec": ".".join(str(v) for v in av.library_versions["libavcodec"]),
        "libswscale": ".".join(str(v) for v in av.library_versions["libswscale"]),
        "pillow": PIL.__version__,
        "schema": str(schema.SCHEMA_VERSION),
    }


def manifest_options(config: RunConfig) -> dict[str, Any]:
    """Options that shape the output. Engine options (workers, runner) are left out on
    purpose: the output is identical whatever they are."""
    return {
        **config.inputs,
        "short_side": config.frame_options.short_side,
        "fps": config.frame_options.fps,
        "jpeg_quality": config.frame_options.jpeg_quality,
        "shard_size": config.shard_size,
        "num_shards": config.num_shards,
        "max_failures": str(config.max_failures),
        "missing": config.missing,
        "short_clips": config.short_clips,
        "seed": config.seed,
    }


def build_manifest(
    annotations: Annotations,
    config: RunConfig,
    specs: Sequence[ShardSpec],
    states: dict[str, dict[str, Any]],
    failures: Sequence[Failure],
    status: str,
) -> dict[str, Any]:
    """The manifest: deterministic (no times, no hosts), so reruns reproduce it byte for byte."""
    splits: dict[str, dict[str, Any]] = {}
    warnings = sorted(Failure(**w) for state in states.values() for w in state.get("warnings", []))
    split_names = sorted({s.split for s in specs} | {f.split for f in failures})
    inputs_per_split = collections.Counter(item.split for item in annotations.items)
    inputs_per_split.update(f.split for f in annotations.failures)
    for split in split_names:
        shards = []
        classes: dict[tuple[int, str], int] = collections.Counter()
        for spec in (s for s in specs if s.split == split):
            state = states.get(spec.name)
            if state is None:
                continue
            shards.append(
                {
                    "file": spec.name,
                    "records": state["records"],
                    "frames": state["frames"],
                    "bytes": state["bytes"],
                    "sha256": state["sha256"],
                }
            )
            for entry in state["classes"]:
                classes[(entry["index"], entry["text"])] += entry["records"]
        split_failures = [f for f in failures if f.split == split]
        splits[split] = {
            "inputs": inputs_per_split.get(split, 0),
            "records": sum(s["records"] for s in shards),
            "frames": sum(s["frames"] for s in shards),
            "bytes": sum(s["bytes"] for s in shards),
            "failures": len(split_failures),
            "warnings": sum(w.split == split for w in warnings),
            "num_shards": len(shards),
            "shards": shards,
            "classes": [{"index": i, "text": t, "records": n} for (i, t), n in sorted(classes.items())],
        }
    return {
        "format": MANIFEST_FORMAT,
        "status": status,
        "dataset": config.dataset,
        "kind": config.kind,
        "schema_version": schema.SCHEMA_VERSION,
        "options": manifest_options(config),
        "software": software_versions(),
        "label_map": {
            "file": LABEL_MAP,
            "num_classes": len(annotations.labels),
            "version": label_map_version(annotations.labels),
        },
        "totals": {
            "inputs": annotations.num_inputs,
            "records": sum(s["records"] for s in splits.values()),
            "frames": sum(s["frames"] for s in splits.values()),
            "bytes": sum(s["bytes"] for s in splits.values()),
            "failures": len(failures),
            "counted_failures": len(counted_failures(failures, config)),  # what --max_failures compares
            "warnings": len(warnings),
        },
        "failures_by_kind": dict(sorted(collections.Counter(f.kind for f in failures).items())),
        "warnings_by_kind": dict(sorted(collections.Counter(w.kind for w in warnings).items())),
        "splits": splits,
        "failures": [f.to_json() for f in failures],
        # Records written although shorter than asked (--short_clips=keep): kind "truncated" or "short".
        "warnings": [w.to_json() for w in warnings],
    }


def run_stats(states: Sequence[dict[str, Any]], wall: float, resumed: int) -> dict[str, Any]:
    """Throughput of this run (shards written now), for the summary and the benchmark."""
    records = sum(s["records"] for s in states)
    frames = sum(s["frames"] for s in states)
    written = sum(s["bytes"] for s in states)
    source_bytes = sum(s["source_bytes"] for s in states)
    source_seconds = sum(s["source_seconds"] for s in states)
    return {
        "shards_written": len(states),
        "shards_resumed": resumed,
        "records": records,
        "frames": frames,
        "failures": sum(len(s["failures"]) for s in states),
        "bytes": written,
        "source_bytes": source_bytes,
        "source_seconds": source_seconds,
        "wall_s": wall,
        "records_per_s": records / wall if wall > 0 else 0.0,
        "frames_per_s": frames / wall if wall > 0 else 0.0,
        "bytes_per_frame": written / frames if frames else 0.0,
        "bytes_per_second": written / source_seconds if source_seconds else 0.0,
        "source_bytes_per_second": source_bytes / source_seconds if source_seconds else 0.0,
    }


def format_summary(
    config: RunConfig, manifest: dict[str, Any], stats: dict[str, Any], limit: int, manifest_path: str
) -> str:
    totals = manifest["totals"]
    shards = sum(s["num_shards"] for s in manifest["splits"].values())
    uncounted = totals["failures"] - totals["counted_failures"]
    allowed = f"allowed: {limit}" + (f"; {uncounted} absent files not counted, --missing=skip" if uncounted else "")
    lines = [
        f"data_prep {config.dataset}: {totals['inputs']} inputs -> {totals['records']} records in {shards} shards "
        f"({stats['shards_resumed']} already done), {totals['failures']} failed ({allowed})",
    ]
    if stats["shards_written"] and config.kind == "image":
        lines.append(
            f"  this run: {stats['records']} images in {stats['wall_s']:.1f} s = "
            f"{stats['records_per_s']:.1f} images/s; "
            f"wrote {stats['bytes'] / 1e6:.1f} MB ({stats['bytes_per_frame'] / 1e3:.1f} KB/image)"
        )
    elif stats["shards_written"]:
        line = (
            f"  this run: {stats['records']} videos, {stats['frames']:,} frames in {stats['wall_s']:.1f} s = "
            f"{stats['records_per_s']:.2f} videos/s, {stats['frames_per_s']:.0f} frames/s; "
            f"wrote {stats['bytes'] / 1e6:.1f} MB ({stats['bytes_per_frame'] / 1e3:.1f} KB/frame"
        )
        if stats["source_seconds"]:
            line += (
                f", {stats['bytes_per_second'] / 1e3:.0f} KB per video-second vs "
                f"{stats['source_bytes_per_second'] / 1e3:.0f} KB/s in the sources"
            )
        lines.append(line + ")")
    if manifest["failures_by_kind"]:
        kinds = ", ".join(f"{k} {n}" for k, n in manifest["failures_by_kind"].items())
        lines.append(f"  failures: {kinds} (details in the manifest)")
    if manifest["warnings"]:
        kinds = ", ".join(f"{k} {n}" for k, n in manifest["warnings_by_kind"].items())
        lines.append(
            f"  kept although shorter than asked (--short_clips=keep): {kinds}; listed under \"warnings\" in the manifest"
        )
        for warning in manifest["warnings"][:10]:
            lines.append("    " + Failure(**warning).describe())
        if len(manifest["warnings"]) > 10:
            lines.append(f"    ... and {len(manifest['warnings']) - 10} more.")
    lines.append(f"  manifest: {manifest_path} ({manifest['status']})")
    return "\n".join(lines)


# --- Beam ------------------------------------------------------------------------------------
def beam_arguments(beam_args: Sequence[str], num_workers: int) -> list[str]:
    """Our DirectRunner defaults, unless the caller chose otherwise (any runner option wins)."""
    args = list(beam_args)
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    if "--direct_num_workers" not in given:
        args.append(f"--direct_num_workers={num_workers}")
    if "--direct_running_mode" not in given:
        # One worker runs in-process (no subprocess start-up); more run as processes.
        args.append("--direct_running_mode=" + ("multi_processing" if num_workers > 1 else "in_memory"))
    if "--default_sdk_harness_log_level" not in given:
        args.append("--default_sdk_harness_log_level=WARNING")
    return args


class _QuietBeam(logging.Filter):
    """Drops Beam's informational chatter (optional GCP clients, runner choice) from our output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "apache_beam" not in record.pathname


def _run_beam(names: Sequence[str], job: Job, config: RunConfig) -> None:
    quiet = _QuietBeam()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(quiet)
    previous_pythonpath = _export_pythonpath()
    beam_logging.install()
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        options = PipelineOptions(beam_arguments(config.beam_args, config.num_workers))
        with beam.Pipeline(options=options) as pipeline:
            if job.driver is not None and config.num_workers > 1 and len(names) > config.num_workers:
                # Local worker processes: one slot per worker, each pulling shards from the
                # shared list (see writer.write_claimed_shards).
                _ = (
                    pipeline
                    | "WorkerSlots" >> beam.Create([(i, i) for i in range(config.num_workers)], reshuffle=False)
                    | "OneSlotPerKey" >> beam.GroupByKey()
                    | "WriteShards" >> beam.FlatMap(write_claimed_shards, job, list(names))
                )
            else:
                # Any runner: one key per shard; the runner spreads keys over its workers and
                # each shard is written whole by one of them.
                _ = (
                    pipeline
                    | "ShardNames" >> beam.Create(list(enumerate(names)))
                    | "OneShardPerKey" >> beam.GroupByKey()
                    | "WriteShards" >> beam.FlatMap(write_shards_by_name, job)
                )
    finally:
        _restore_pythonpath(previous_pythonpath)
        for handler in handlers:
            handler.removeFilter(quiet)


def _local_driver(config: RunConfig) -> tuple[str, int] | None:
    """(host, pid) when the workers are local DirectRunner processes, so they can stop with us."""
    runner = None
    for number, arg in enumerate(config.beam_args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and number + 1 < len(config.beam_args):
            runner = config.beam_args[number + 1]
    if runner is not None and "direct" not in runner.lower():
        return None  # remote workers: another host, nothing to watch
    return socket.gethostname(), os.getpid()


WORKER_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "beam_worker_site")


def _export_pythonpath() -> str | None:
    """Let worker subprocesses import data_prep and tfsts even when not installed, and start
    them with beam_worker_site/sitecustomize.py (drops Beam's known-harmless start-up
    warnings at their source). Returns the previous PYTHONPATH, to restore after the run."""
    previous = os.environ.get("PYTHONPATH")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [p for p in (previous or "").split(os.pathsep) if p and p != WORKER_SITE]
    if root not in parts:
        parts.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join([WORKER_SITE, *parts])
    return previous


def _restore_pythonpath(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


# --- Files ------------------------------------------------------------------------------------
def _acquire_lock(output_dir: str) -> Any:
    """An exclusive lock on output_dir; the kernel drops it when the process dies (even on SIGKILL)."""
    handle = open(os.path.join(output_dir, _LOCK), "a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunError(f"another data_prep run is writing to {output_dir}; wait for it or use another --output_dir")
    return handle


def _remove_temporaries(output_dir: str) -> None:
    """Leftovers of a killed run: temporaries and shard claims (we hold the lock, so no
    other run is using them)."""
    for directory in (output_dir, os.path.join(output_dir, STATE_DIR)):
        for name in os.listdir(directory):
            if (name.startswith(".") and TMP_MARKER in name) or name.endswith(".claim"):
                os.remove(os.path.join(directory, name))
    _remove_dir(os.path.join(output_dir, PROGRESS_DIR))


def _remove_dir(path: str) -> None:
    if os.path.isdir(path):
        for name in os.listdir(path):
            os.remove(os.path.join(path, name))
        os.rmdir(path)


def _check_no_stale_shards(output_dir: str, specs: Sequence[ShardSpec]) -> None:
    planned = {spec.name for spec in specs}
    stale = sorted(n for n in os.listdir(output_dir) if SHARD_PATTERN.match(n) and n not in planned)
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        raise RunError(
            f"{output_dir} holds {len(stale)} shard files this run would not write ({shown}): they come from "
            f"a run with other inputs or shard settings. Delete them or choose another --output_dir."
        )


def _write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    atomic_write(path, data)


# --- Progress ----------------------------------------------------------------------------------
class _Progress(threading.Thread):
    """Prints shards / inputs / frames done from the workers' progress files."""

    def __init__(
        self,
        output_dir: str,
        specs: Sequence[ShardSpec],
        stream: TextIO,
        total_inputs: int,
        already_done: int = 0,
        already_failed: int = 0,
        total_shards: int = 0,
    ):
        super().__init__(daemon=True)
        self._dir = os.path.join(output_dir, PROGRESS_DIR)
        self._names = [s.name for s in specs]
        self._total_inputs = total_inputs
        self._already_done = already_done  # rejected before decoding, or in shards finished earlier
        self._already_failed = already_failed
        self._total_shards = max(total_shards, len(self._names))
        self._stream = stream
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        self._interval = 1.0 if self._tty else 30.0
        self._done = threading.Event()
        self._start = time.perf_counter()

    def run(self) -> None:
        while not self._done.wait(self._interval):
            self._print(final=False)

    def finish(self) -> None:
        self._done.set()
        self.join()
        self._print(final=True)

    def _print(self, final: bool) -> None:
        shards = done = frames = failures = 0
        for name in self._names:
            try:
                with open(os.path.join(self._dir, name + ".json"), encoding="utf-8") as f:
                    progress = json.load(f)
            except (OSError, ValueError):
                continue
            done += progress["done"]
            frames += progress["frames"]
            failures += progress["failures"]
            shards += progress["done"] == progress["total"]
        elapsed = time.perf_counter() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self._total_inputs - self._already_done - done) / rate if rate > 0 else float("nan")
        done += self._already_done
        failures += self._already_failed
        shards += self._total_shards - len(self._names)
        line = (
            f"[data_prep] {shards}/{self._total_shards} shards, {done}/{self._total_inputs} inputs, "
            f"{frames:,} frames ({frames / max(elapsed, 1e-9):.0f}/s), {failures} failed, "
            f"{_clock(elapsed)} elapsed" + ("" if final or math.isnan(eta) else f", ETA {_clock(eta)}")
        )
        if self._tty:
            self._stream.write("\r" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
