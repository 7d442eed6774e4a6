"""Re-read a data_prep output folder and check it against its manifest.

    python -m data_prep.verify /data/k400_tfrecords [--sample_records=2] [--sample_frames=3]

Checks every shard listed in manifest.json: present, size and sha256 as recorded, every
record's CRCs, record and frame counts; parses every record with TensorFlow (the reader's
parser) and checks its label against label_map.txt and its frame count against
clip/num_frames; decodes a sample of frames with tf.io.decode_jpeg and checks their size;
recounts the classes per split; flags shard files the manifest does not list and
leftovers of interrupted runs. Exit status 0 when everything holds, 1 otherwise.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import sys
from typing import Any

from data_prep.annotations import label_map_version
from data_prep.pipeline import LABEL_MAP, MANIFEST, MANIFEST_FORMAT
from data_prep.sharding import SHARD_PATTERN
from data_prep.tfrecord import CorruptRecordError, iter_records
from data_prep.writer import TMP_MARKER
from tfsts.data import schema


@dataclasses.dataclass
class Report:
    problems: list[str] = dataclasses.field(default_factory=list)
    lines: list[str] = dataclasses.field(default_factory=list)
    records: int = 0
    frames: int = 0
    decoded_frames: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = list(self.lines)
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append(
            f"{'OK' if self.ok else 'FAILED'}: {self.records} records, {self.frames} frames checked, "
            f"{self.decoded_frames} frames decoded, {len(self.problems)} problems"
        )
        return "\n".join(out)


class _HashingReader:
    """File wrapper that hashes what the record reader consumes: one pass for both."""

    def __init__(self, handle: Any):
        self._handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self._handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def _sample_indices(count: int, wanted: int) -> list[int]:
    if count <= 0 or wanted <= 0:
        return []
    if wanted >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)} if wanted > 1 else {0})


def _read_shard(directory: str, shard: dict[str, Any], report: Report) -> list[bytes] | None:
    """The records of one shard, CRC-checked, hashed in the same pass; None when unreadable."""
    serialized: list[bytes] = []
    try:
        with open(os.path.join(directory, shard["file"]), "rb") as handle:
            reader = _HashingReader(handle)
            serialized.extend(iter_records(reader, shard["file"]))
            while reader.read(1 << 20):  # to EOF, so the hash also covers trailing garbage
                pass
    except FileNotFoundError:
        report.problems.append(f"{shard['file']}: missing")
        return None
    except CorruptRecordError as e:
        report.problems.append(str(e))
        return None
    if reader.size != shard["bytes"] or reader.digest.hexdigest() != shard["sha256"]:
        report.problems.append(f"{shard['file']}: size or sha256 differs from the manifest")
    return serialized


def _parse(record: bytes, video: bool) -> tuple[int, str, Any, tuple[int, int], int | None]:
    """(label, text, encoded frames [T], stored (height, width), clip/num_frames), parsed
    with the reader's parser."""
    import tensorflow as tf

    if video:
        context, sequence = schema.parse_video(record)
        size = (int(context[schema.IMAGE_HEIGHT]), int(context[schema.IMAGE_WIDTH]))
        return (int(context[schema.LABEL_INDEX]), context[schema.LABEL_TEXT].numpy().decode(),
                sequence[schema.IMAGE_ENCODED], size, int(context[schema.NUM_FRAMES]))
    features = schema.parse_image(record)
    size = (int(features[schema.IMAGE_HEIGHT]), int(features[schema.IMAGE_WIDTH]))
    return (int(features[schema.IMAGE_CLASS_LABEL]), features[schema.IMAGE_CLASS_TEXT].numpy().decode(),
            tf.reshape(features[schema.IMAGE_ENCODED], [1]), size, None)


def _check_frames(where: str, encoded: Any, size: tuple[int, int], wanted: int, report: Report) -> None:
    """Decode a few frames with tf.io.decode_jpeg (what the input pipeline does)."""
    import tensorflow as tf

    for frame in _sample_indices(int(encoded.shape[0]), wanted):
        try:
            image = tf.io.decode_jpeg(encoded[frame], channels=3)
        except tf.errors.OpError as e:
            report.problems.append(f"{where} frame {frame}: JPEG does not decode: {str(e).splitlines()[0]}")
            continue
        report.decoded_frames += 1
        if tuple(image.shape[:2]) != size:
            report.problems.append(f"{where} frame {frame}: {tuple(image.shape[:2])}, expected {size}")


def _check_split(directory: str, split: str, info: dict[str, Any], labels: list[str], video: bool,
                 sample_records: int, sample_frames: int, report: Report) -> None:
    import tensorflow as tf

    classes: collections.Counter = collections.Counter()
    split_records = split_frames = 0
    for shard in info["shards"]:
        serialized = _read_shard(directory, shard, report)
        if serialized is None:
            continue
        records = frames = 0
        sampled = set(_sample_indices(len(serialized), sample_records))
        for number, record in enumerate(serialized):
            where = f"{shard['file']} record {number}"
            try:
                label, text, encoded, size, num_frames = _parse(record, video)
            except (tf.errors.OpError, ValueError) as e:
                report.problems.append(f"{where}: does not parse: {str(e).splitlines()[0]}")
                continue
            count = int(encoded.shape[0])
            if video and (count == 0 or count != num_frames):
                report.problems.append(f"{where}: {count} frames, clip/num_frames says {num_frames}")
            expected = labels[label] if 0 <= label < len(labels) else ("" if label == -1 else None)
            if expected != text:
                report.problems.append(f"{where}: label {label} {text!r} does not match {LABEL_MAP}")
            if number in sampled:
                _check_frames(where, encoded, size, sample_frames, report)
            records += 1
            frames += count
            classes[(label, text)] += 1
        if (records, frames) != (shard["records"], shard["frames"]):
            report.problems.append(
                f"{shard['file']}: {records} records / {frames} frames, manifest says "
                f"{shard['records']} / {shard['frames']}"
            )
        split_records += records
        split_frames += frames
    if dict(classes) != {(c["index"], c["text"]): c["records"] for c in info["classes"]}:
        report.problems.append(f"split {split}: class counts differ from the manifest")
    if split_records != info["records"]:
        report.problems.append(f"split {split}: {split_records} records, manifest says {info['records']}")
    report.records += split_records
    report.frames += split_frames
    report.lines.append(
        f"{split}: {len(info['shards'])} shards, {split_records} records, {split_frames} frames, "
        f"{len(classes)} classes, {info['failures']} inputs failed during preparation"
    )


def verify(directory: str, sample_records: int = 2, sample_frames: int = 3) -> Report:
    """Check one output folder; see the module doc for what is checked."""
    report = Report()
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        report.problems.append(f"cannot read {MANIFEST}: {e}")
        return report
    if manifest.get("format") != MANIFEST_FORMAT:
        report.problems.append(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
        return report
    if manifest.get("status") != "complete":
        report.problems.append(f"{MANIFEST}: status is {manifest.get('status')!r}, not 'complete'")
    try:
        with open(os.path.join(directory, LABEL_MAP), encoding="utf-8") as f:
            labels = f.read().splitlines()
    except OSError as e:
        report.problems.append(f"cannot read {LABEL_MAP}: {e}")
        labels = []
    if label_map_version(labels) != manifest["label_map"]["version"]:
        report.problems.append(f"{LABEL_MAP} does not match the version in {MANIFEST}")
    video = manifest["kind"] == "video"
    for split, info in sorted(manifest["splits"].items()):
        _check_split(directory, split, info, labels, video, sample_records, sample_frames, report)
    listed = {shard["file"] for info in manifest["splits"].values() for shard in info["shards"]}
    for name in sorted(os.listdir(directory)):
        if SHARD_PATTERN.match(name) and name not in listed:
            report.problems.append(f"{name}: a shard file the manifest does not list")
        elif TMP_MARKER in name:
            report.problems.append(f"{name}: leftover of an interrupted run (a rerun removes it)")
    return report


def main(argv: list[str]) -> int:
    from absl import flags

    if len(argv) != 2:
        print("usage: python -m data_prep.verify DIR [--sample_records=N] [--sample_frames=N]", file=sys.stderr)
        return 2
    report = verify(argv[1], flags.FLAGS.sample_records, flags.FLAGS.sample_frames)
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_integer("sample_records", 2, "Records per shard whose frames are JPEG-decoded.")
    flags.DEFINE_integer("sample_frames", 3, "Frames decoded per sampled record (first, middle, last...).")
    from data_prep import cli

    app.run(main, flags_parser=cli.parse_flags)
