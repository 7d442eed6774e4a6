"""Writes one shard: decode its items in order, frame the records, publish atomically.

This is the only code that runs inside Beam workers. A shard is written by one worker
from its sorted item list to a temporary name, fsync'ed and renamed, then a small state
file records its hash, size, counts and failures. On a rerun (after a crash or a kill at
any moment) a shard is skipped when its final file and state agree with the plan, and
redone otherwise; redoing produces the same bytes, so the result is always identical to
an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Iterable, Iterator

from data_prep.decode import FrameOptions, decode_image, decode_video
from data_prep.items import DecodeError, Failure, Item, item_failure
from data_prep.sharding import ShardSpec
from data_prep.tfrecord import frame_record
from tfsts.data import schema

STATE_DIR = ".state"  # per-shard plan and state files
PROGRESS_DIR = ".progress"  # per-shard progress, read by the driver's progress display
TMP_MARKER = ".tmp-"


@dataclasses.dataclass(frozen=True)
class Job:
    """What every worker needs besides its shard: where to write and how to convert."""

    kind: str  # "video" or "image"
    output_dir: str
    frame_options: FrameOptions
    driver: tuple[str, int] | None = None  # (host, pid) of a local driver to outlive no longer than
    short_clips: str = "fail"  # clips shorter than asked: "fail" (a failure) or "keep" (a warning)


def plan_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATE_DIR, name + ".plan.json")


def state_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATE_DIR, name + ".json")


def temporary_name(path: str) -> str:
    """A unique hidden name next to path; TMP_MARKER lets a later run clean it up."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    """Write to a temporary name, fsync, rename over path: readers see old or new, never half."""
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def json_bytes(data: Any, sort_keys: bool = True) -> bytes:
    """Deterministic JSON for manifests, plans and states (the manifest keeps its own,
    fixed key order so people read the status before the failures)."""
    return (json.dumps(data, indent=1, sort_keys=sort_keys, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: str, data: Any, sync: bool = True) -> None:
    atomic_write(path, json_bytes(data), sync)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def completed_state(spec: ShardSpec, output_dir: str, rehash: bool = False) -> dict[str, Any] | None:
    """The state of a finished shard that still matches the plan, else None (redo it).

    Matching means: same fingerprint, and the final file has the recorded size and
    mtime (cheap), or, with rehash, the recorded sha256 (reads the whole file).
    """
    try:
        with open(state_path(output_dir, spec.name), encoding="utf-8") as f:
            state = json.load(f)
        st = os.stat(os.path.join(output_dir, spec.name))
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != spec.fingerprint or state.get("bytes") != st.st_size:
        return None
    if rehash:
        if sha256_file(os.path.join(output_dir, spec.name)) != state.get("sha256"):
            return None
    elif state.get("mtime_ns") != st.st_mtime_ns:
        return None
    return state


def convert_item(item: Item, root: str, job: Job) -> tuple[bytes, int, float, Failure | None]:
    """(serialized record, frames, seconds of source covered, warning) for one item; the
    warning names a clip kept although shorter than asked (--short_clips=keep)."""
    path = os.path.join(root, item.path)
    options = job.frame_options
    if job.kind == "image":
        image = decode_image(path, options.short_side, options.jpeg_quality)
        record = schema.encode_image(
            image.data,
            label_index=item.label_index,
            label_text=item.label_text,
            filename=item.path,
            height=image.height,
            width=image.width,
        )
        return record, 1, 0.0, None
    clip = decode_video(path, options, item.start, item.end, short_clips=job.short_clips)
    record = schema.encode_video(
        clip.frames,
        clip.timestamps_us,
        media_id=item.media_id,
        label_index=item.label_index,
        label_text=item.label_text,
        frame_rate=clip.frame_rate,
        data_path=item.path,
        start_us=clip.start_us,
        end_us=clip.end_us,
        height=clip.height,
        width=clip.width,
        original_height=clip.original_height,
        original_width=clip.original_width,
        rotation=clip.rotation,
    )
    warning = item_failure(item, *clip.incomplete) if clip.incomplete else None
    return record, len(clip.frames), (clip.end_us - clip.start_us) / 1e6, warning


def write_shard(spec: ShardSpec, job: Job) -> dict[str, Any]:
    """Write (or find already written) one shard and return its state."""
    existing = completed_state(spec, job.output_dir)
    if existing is not None:
        return existing
    started = time.perf_counter()
    final = os.path.join(job.output_dir, spec.name)
    tmp = temporary_name(final)
    progress = os.path.join(job.output_dir, PROGRESS_DIR, spec.name + ".json")
    digest = hashlib.sha256()
    failures: list[Failure] = []
    warnings: list[Failure] = []  # records written although shorter than asked
    classes: dict[tuple[int, str], int] = {}
    records = frames = size = source_bytes = 0
    source_seconds = 0.0
    with open(tmp, "wb") as out:
        for done, item in enumerate(spec.items, 1):
            try:
                record, n_frames, seconds, warning = convert_item(item, spec.root, job)
            except DecodeError as e:
                failures.append(item_failure(item, e.kind, e.reason))
            except Exception as e:  # one bad file must never stop the run
                failures.append(item_failure(item, "error", f"{type(e).__name__}: {e}"))
            else:
                framed = frame_record(record)
                out.write(framed)
                digest.update(framed)
                size += len(framed)
                records += 1
                frames += n_frames
                if warning is not None:
                    warnings.append(warning)
                source_seconds += seconds
                source_bytes += _file_size(os.path.join(spec.root, item.path))
                key = (item.label_index, item.label_text)
                classes[key] = classes.get(key, 0) + 1
            _report_progress(progress, done, len(spec.items), frames, len(failures))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)
    _fsync_dir(job.output_dir)
    state = {
        "name": spec.name,
        "split": spec.split,
        "fingerprint": spec.fingerprint,
        "sha256": digest.hexdigest(),
        "bytes": size,
        "mtime_ns": os.stat(final).st_mtime_ns,
        "records": records,
        "frames": frames,
        "source_bytes": source_bytes,
        "source_seconds": round(source_seconds, 6),
        "classes": [{"index": i, "text": t, "records": n} for (i, t), n in sorted(classes.items())],
        "failures": [f.to_json() for f in sorted(failures)],
        "warnings": [w.to_json() for w in sorted(warnings)],
        "elapsed_s": round(time.perf_counter() - started, 3),  # this run only; not in the manifest
        "worker_pid": os.getpid(),
    }
    write_json(state_path(job.output_dir, spec.name), state)
    return state


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _report_progress(path: str, done: int, total: int, frames: int, failures: int) -> None:
    """Best effort: progress is for display only and must never fail a shard."""
    try:
        write_json(path, {"done": done, "total": total, "frames": frames, "failures": failures}, sync=False)
    except OSError:
        pass


def load_spec(output_dir: str, name: str) -> ShardSpec:
    with open(plan_path(output_dir, name), encoding="utf-8") as f:
        return ShardSpec.from_json(json.load(f))


_watchdog: threading.Thread | None = None


def _exit_with_driver(host: str, pid: int) -> None:
    """DirectRunner worker processes outlive a SIGKILLed driver; stop with it instead.

    Output would stay correct either way (same bytes, atomic renames); this only avoids
    orphaned processes that keep decoding for nobody.
    """
    while True:
        time.sleep(2.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _start_watchdog(driver: tuple[str, int] | None) -> None:
    global _watchdog
    if driver is None or _watchdog is not None or driver[1] == os.getpid() or driver[0] != socket.gethostname():
        return
    _watchdog = threading.Thread(target=_exit_with_driver, args=driver, daemon=True)
    _watchdog.start()


def write_shards_by_name(keyed: tuple[int, Iterable[str]], job: Job) -> Iterator[str]:
    """Beam FlatMap body: the shard names grouped under one key, each written in turn."""
    _start_watchdog(job.driver)
    for name in keyed[1]:
        write_shard(load_spec(job.output_dir, name), job)
        yield name


def claim_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATE_DIR, name + ".claim")


def _claim(output_dir: str, name: str) -> bool:
    """Atomically take a shard (O_EXCL create); False when another worker has it."""
    try:
        os.close(os.open(claim_path(output_dir, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def write_claimed_shards(slot: tuple[int, Iterable[Any]], job: Job, names: list[str]) -> Iterator[str]:
    """Beam FlatMap body for local worker slots: take the next unclaimed shard until none is left.

    The DirectRunner hands each worker a fixed share of the elements up front; with
    shards of unequal cost (videos of different lengths and sizes) the slowest share
    decides the run time. Pulling shards from a shared list instead keeps every worker
    busy until the end. Which worker writes a shard does not change its bytes.
    """
    _start_watchdog(job.driver)
    for name in names:
        if _claim(job.output_dir, name):
            write_shard(load_spec(job.output_dir, name), job)
            yield name
