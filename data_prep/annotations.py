"""Helpers shared by the per-dataset annotation parsers: label maps, paths, duplicates.

Parsers are pure: they take rows already read from disk (and an index of the files that
exist) and return ``Annotations``; nothing here decodes media or writes output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
from typing import Iterable, Mapping, Sequence

from data_prep.items import Failure, InputError, Item

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ogv", ".3gp", ".ts")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

# Dataset ids end up in file names we look up; anything else could walk out of the root.
SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclasses.dataclass
class Annotations:
    """What a parser found: inputs to convert, rejected rows, and the class list."""

    items: list[Item]
    failures: list[Failure]
    labels: list[str]  # index -> class name; written as label_map.txt
    roots: dict[str, str]  # split -> root directory the item paths are relative to

    @property
    def num_inputs(self) -> int:
        return len(self.items) + len(self.failures)


# --- Inputs named by flags -------------------------------------------------------------------
def require_file(path: str, flag: str) -> str:
    """path, or an InputError naming the flag it came from when it is not a readable file."""
    if not os.path.exists(path):
        raise InputError(f"{flag}: no such file {path}")
    if os.path.isdir(path):
        raise InputError(f"{flag}: {path} is a directory; give the file")
    return path


def require_dir(path: str, flag: str) -> str:
    if not os.path.isdir(path):
        what = "is a file, not a directory" if os.path.exists(path) else "does not exist"
        raise InputError(f"{flag}: {path} {what}")
    return path


def extensions_text(extensions: Sequence[str] = VIDEO_EXTENSIONS) -> str:
    """'.mp4, .webm, ...': every accepted extension, for "missing" messages."""
    return ", ".join(extensions)


# --- Label maps ----------------------------------------------------------------------------
def load_label_map(path: str, flag: str = "--label_map") -> list[str]:
    """Class names by index from a .txt (one per line) or .json ({name: index}) file."""
    require_file(path, flag)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        mapping = json.loads(text)
        if not isinstance(mapping, dict):
            raise InputError(f"{path}: expected a JSON object {{class name: index}}")
        return labels_from_mapping(mapping, path)
    labels = [line.rstrip("\r") for line in text.split("\n")]
    while labels and not labels[-1].strip():
        labels.pop()
    for number, name in enumerate(labels, 1):
        if not name.strip():
            raise InputError(f"{path}:{number}: empty class name (line number - 1 is the class index)")
    duplicated = sorted({n for n in labels if labels.count(n) > 1})
    if duplicated:
        raise InputError(f"{path}: class names listed more than once: {duplicated[:5]}")
    return labels


def labels_from_mapping(mapping: Mapping[str, int | str], where: str) -> list[str]:
    """Class names by index from {name: index}; indices must be exactly 0..N-1."""
    try:
        by_index = {int(index): name for name, index in mapping.items()}
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: class indices must be integers ({e})") from None
    if sorted(by_index) != list(range(len(mapping))):
        raise InputError(f"{where}: class indices must be 0..{len(mapping) - 1} with no gaps or repeats")
    return [by_index[i] for i in range(len(mapping))]


def label_map_text(labels: Sequence[str]) -> str:
    """label_map.txt content: line i is class i (the mmaction2 / shared testdata format)."""
    return "".join(f"{name}\n" for name in labels)


def label_map_version(labels: Sequence[str]) -> str:
    """A short content hash, so readers can check they use the map the shards were written with."""
    return "sha256:" + hashlib.sha256(label_map_text(labels).encode("utf-8")).hexdigest()[:16]


# --- Paths ---------------------------------------------------------------------------------
def safe_relative_path(path: str) -> str | None:
    """The normalised relative posix path, or None when it is absolute or leaves the root."""
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return None
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or normal == ".":
        return None
    return normal


def index_files(root: str, extensions: Sequence[str]) -> dict[str, list[str]]:
    """stem -> sorted relative paths of the files under root with one of the extensions.

    One walk instead of an exists() per row: Kinetics has ~650k clips and several
    possible names and folders per clip.
    """
    index: dict[str, list[str]] = {}
    exts = tuple(e.lower() for e in extensions)
    seen = {os.path.realpath(root)}  # linked folders are followed, link cycles are not
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        # A folder named like a media file is indexed too (it then fails as "unreadable",
        # which says more than "missing") but not descended into.
        impostors = [d for d in dirnames if os.path.splitext(d)[1].lower() in exts]
        keep = []
        for name in sorted(d for d in dirnames if d not in impostors):
            real = os.path.realpath(os.path.join(dirpath, name))
            if real not in seen:
                seen.add(real)
                keep.append(name)
        dirnames[:] = keep
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames + impostors):
            stem, ext = os.path.splitext(name)
            if ext.lower() in exts:
                rel = name if rel_dir == "." else posixpath.join(rel_dir.replace(os.sep, "/"), name)
                index.setdefault(stem, []).append(rel)
    return index


def list_files(root: str, extensions: Sequence[str]) -> list[str]:
    """Sorted relative paths of the files under root with one of the extensions."""
    return sorted(path for paths in index_files(root, extensions).values() for path in paths)


# --- Rows ----------------------------------------------------------------------------------
def split_kept_and_duplicates(items: Iterable[Item]) -> tuple[list[Item], list[Failure]]:
    """Keep the first Item per media id (across splits); later ones become failures."""
    first: dict[str, Item] = {}
    kept: list[Item] = []
    failures: list[Failure] = []
    for item in items:
        seen = first.get(item.media_id)
        if seen is None:
            first[item.media_id] = item
            kept.append(item)
        else:
            failures.append(
                Failure(
                    split=item.split,
                    media_id=item.media_id,
                    kind="duplicate_id",
                    path=item.path,
                    reason=f"id {item.media_id!r} already used at {seen.source or seen.path} (split {seen.split})",
                    field="id",
                    source=item.source,
                )
            )
    return kept, failures


def row_failure(split: str, media_id: str, kind: str, reason: str, field: str, source: str, path: str = "") -> Failure:
    """A Failure for an annotation row (no media file involved yet)."""
    return Failure(split=split, media_id=media_id, kind=kind, path=path, reason=reason, field=field, source=source)


def format_seconds(value: float) -> str:
    """Seconds as the Kinetics file names write them (integers, 6 digits)."""
    return f"{int(value):06d}" if float(value).is_integer() else f"{value:010.3f}"
