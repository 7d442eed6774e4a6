"""The two value types every stage passes around: an input to convert, and a failure.

Annotation parsers produce ``Item``s and ``Failure``s; decoders raise ``DecodeError``
which the shard writer turns into ``Failure``s. Both are plain frozen dataclasses so
they pickle cheaply into Beam workers and sort deterministically.
"""
from __future__ import annotations

import dataclasses
from typing import Any

# kind -> what the user should do about it (printed with the failures, written to the manifest).
FAILURE_HINTS: dict[str, str] = {
    "missing": "the file is not under the videos/images root: check --videos_root and the file naming",
    "unreadable": "the file cannot be opened (permissions, or a directory/special file in its place)",
    "empty": "the file has zero bytes: re-download it",
    "not_video": "the file is not a video container FFmpeg recognises (or is a still image): replace it",
    "not_image": "the file is not an image PIL can read: replace it",
    "no_video_stream": "the file has no video stream (audio only?): replace it",
    "unsupported_codec": (
        "FFmpeg (PyAV) has no decoder for this codec: transcode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
    ),
    "corrupt": "demuxing or decoding failed: re-download or transcode the file",
    "truncated": (
        "the file ends before the duration or size its header declares (a cut download): re-download it, "
        "or keep the frames that decode with --short_clips=keep"
    ),
    "short": (
        "the file ends inside the annotation window [time_start, time_end): check the row's times, "
        "or keep the shorter clip with --short_clips=keep"
    ),
    "no_frames": "no frame could be decoded in the requested time window: check the file and time_start/time_end",
    "unknown_label": "the class is not in the label map: add it to --label_map (or the labels file) or fix the row",
    "duplicate_id": "the id appears more than once: the first occurrence is kept, remove the other rows",
    "path_escape": "annotation paths must be relative and stay inside the root (no absolute paths, no '..')",
    "bad_annotation": "the annotation row is malformed: fix the field named in the reason",
    "error": "unexpected error while converting this input: please report it with the reason",
}


@dataclasses.dataclass(frozen=True, order=True)
class Item:
    """One input to convert: a video (optionally a [start, end) window of it) or an image."""

    split: str
    media_id: str
    path: str  # relative to the split's root, posix separators
    label_index: int  # -1 when unlabeled
    label_text: str
    start: float | None = None  # seconds into the source; None = whole file
    end: float | None = None
    source: str = ""  # "annotation_file:line", for messages


@dataclasses.dataclass(frozen=True, order=True)
class Failure:
    """One input that produced no record, and why."""

    split: str
    media_id: str
    kind: str
    path: str
    reason: str
    field: str = "file"  # the annotation field or "file" for the media file itself
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line for people: where, which field, what happened."""
        where = self.source or self.path or self.media_id
        target = f"{self.path}: " if self.source and self.path else ""
        return f"{where} [{self.kind}, field '{self.field}'] {target}{self.reason}"


class InputError(ValueError):
    """Unusable inputs or flags (a CSV without its columns, a bad label map, ...): the run
    cannot start; the message says which file or flag and what is expected."""


class DecodeError(Exception):
    """A media file could not be turned into frames; ``kind`` is a FAILURE_HINTS key."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def item_failure(item: Item, kind: str, reason: str, field: str = "file") -> Failure:
    """A Failure about an Item (keeps its split, id, path and annotation location)."""
    return Failure(
        split=item.split,
        media_id=item.media_id,
        kind=kind,
        path=item.path,
        reason=reason,
        field=field,
        source=item.source,
    )
