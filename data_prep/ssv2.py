"""Something-Something V2 -> video TFRecords.

    python -m data_prep.ssv2 --annotations_dir=/data/ssv2/labels --videos_root=/data/ssv2/videos \\
        --output_dir=/data/ssv2_tfrecords

--annotations_dir holds the official ``something-something-v2-labels.json`` and
``something-something-v2-{train,validation,test}.json`` (any missing split is skipped);
each can also be given on its own (--labels_json, --train_json, ...). Explicit split files
win: when any --{split}_json is given, only the given splits are read (the directory then
only supplies the labels file). Videos are ``{id}.webm`` (any of
annotations.VIDEO_EXTENSIONS is found). The class of an entry is its template with "[" and "]" removed, matched
case-sensitively against the labels file; the label map keeps the official indices.

Flags: --help lists this command's flags and the common ones. Apache Beam pipeline options
(--runner=..., --direct_running_mode=...) pass through; any other unknown flag is an error.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

from data_prep.annotations import (
    SAFE_ID,
    VIDEO_EXTENSIONS,
    Annotations,
    extensions_text,
    index_files,
    labels_from_mapping,
    load_label_map,
    require_dir,
    require_file,
    row_failure,
    split_kept_and_duplicates,
)
from data_prep.items import Failure, InputError, Item
from data_prep.pipeline import RunConfig, RunResult, run

LABELS_FILE = "something-something-v2-labels.json"
SPLIT_FILES = {
    "train": "something-something-v2-train.json",
    "validation": "something-something-v2-validation.json",
    "test": "something-something-v2-test.json",
}


def class_name(template: str) -> str:
    """'Putting [something] on [something]' -> 'Putting something on something'."""
    return template.replace("[", "").replace("]", "")


def ssv2_annotations(
    labels: Sequence[str],
    labels_source: str,
    entries: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]],
    files: Mapping[str, Sequence[str]],
    videos_root: str,
) -> Annotations:
    """Items and failures from {split: (file name, entries)}. Pure (no I/O)."""
    index = {name: i for i, name in enumerate(labels)}
    candidates: list[Item] = []
    failures: list[Failure] = []
    for split, (path, split_entries) in sorted(entries.items()):
        for number, entry in enumerate(split_entries):
            source = f"{path}[{number}]"
            video_id = str(entry.get("id", "")).strip() if isinstance(entry, Mapping) else ""
            if not SAFE_ID.match(video_id):
                kind = "path_escape" if ("/" in video_id or ".." in video_id) else "bad_annotation"
                failures.append(row_failure(split, video_id, kind, f"bad video id {video_id!r}", "id", source))
                continue
            template = entry.get("template")
            if template is None:  # the test list has ids only
                candidates.append(Item(split, video_id, "", -1, "", source=source))
                continue
            name = class_name(str(template))
            if name not in index:
                failures.append(
                    row_failure(
                        split, video_id, "unknown_label",
                        f"template {template!r} -> class {name!r} is not in {labels_source} "
                        "(matching is case-sensitive)",
                        "template", source,
                    )
                )
                continue
            candidates.append(Item(split, video_id, "", index[name], name, source=source))
    kept, duplicates = split_kept_and_duplicates(candidates)
    failures += duplicates
    items: list[Item] = []
    for item in kept:
        paths = files.get(item.media_id)
        if not paths:
            failures.append(
                row_failure(
                    item.split, item.media_id, "missing",
                    f"no {item.media_id} video under {videos_root} (extensions looked for: {extensions_text()})",
                    "id", item.source,
                )
            )
            continue
        path = next((p for p in paths if p.endswith(".webm")), paths[0])
        items.append(Item(item.split, item.media_id, path, item.label_index, item.label_text, source=item.source))
    return Annotations(items=items, failures=failures, labels=list(labels), roots={s: videos_root for s in entries})


def _load_json(path: str, flag: str) -> Any:
    require_file(path, flag)
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None


def prepare(
    labels_json: str,
    split_jsons: Mapping[str, str],
    videos_root: str,
    config: RunConfig,
    label_map: str | None = None,
) -> RunResult:
    """Read the official JSON files, find the videos, convert."""
    videos_root = require_dir(os.path.abspath(videos_root), "--videos_root")
    if label_map:
        labels = load_label_map(label_map)
        labels_source = label_map
    else:
        mapping = _load_json(labels_json, "--labels_json (or --annotations_dir)")
        if not isinstance(mapping, dict):
            raise InputError(f"{labels_json}: expected {{template: index}}")
        labels = labels_from_mapping(mapping, labels_json)
        labels_source = labels_json
    entries = {}
    for split, path in split_jsons.items():
        data = _load_json(path, f"--{split}_json" if split in SPLIT_FILES else f"split {split}")
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a list of {{'id': ..., 'template': ...}} entries")
        entries[split] = (path, data)
    annotations = ssv2_annotations(
        labels, labels_source, entries, index_files(videos_root, VIDEO_EXTENSIONS), videos_root
    )
    config = dataclasses.replace(config, inputs={
        "labels_json": os.path.abspath(labels_json) if labels_json else None,
        "splits": {s: os.path.abspath(p) for s, p in sorted(split_jsons.items())},
        "videos_root": videos_root,
        "label_map": os.path.abspath(label_map) if label_map else None,
    })
    return run(annotations, config)


def main(argv: list[str]) -> int:
    from data_prep import cli

    flags = cli.FLAGS
    config = cli.config_from_flags("ssv2", "video", {}, argv)
    explicit = {split: getattr(flags, f"{split}_json") for split in SPLIT_FILES}
    labels_json, split_jsons = annotation_files(flags.annotations_dir, flags.labels_json, explicit, flags.label_map)
    return cli.report(prepare(labels_json, split_jsons, flags.videos_root, config, flags.label_map))


def annotation_files(
    annotations_dir: str | None,
    labels_json: str | None,
    explicit_splits: Mapping[str, str | None],
    label_map: str | None = None,
) -> tuple[str | None, dict[str, str]]:
    """(labels file, {split: file}) from the flags. Explicit split files win: when any is
    given, only those splits are read, and the directory supplies only the labels file."""
    if annotations_dir:
        require_dir(annotations_dir, "--annotations_dir")
    labels = labels_json or (os.path.join(annotations_dir, LABELS_FILE) if annotations_dir else None)
    splits = {split: path for split, path in explicit_splits.items() if path}
    if not splits and annotations_dir:
        for split, name in SPLIT_FILES.items():
            if os.path.exists(os.path.join(annotations_dir, name)):
                splits[split] = os.path.join(annotations_dir, name)
        if not splits:
            raise InputError(f"--annotations_dir: {annotations_dir} holds none of {', '.join(SPLIT_FILES.values())}")
    if not labels and not label_map:
        raise InputError("give --annotations_dir or --labels_json (or --label_map)")
    if not splits:
        raise InputError("no split file: give --annotations_dir or --train_json/--validation_json/--test_json")
    return labels, splits


def define_flags() -> None:
    from absl import flags

    from data_prep import cli

    cli.define_common_flags()
    cli.show_common_flags_in_help()
    flags.DEFINE_string("annotations_dir", None, "Directory with the official SSv2 JSON files.")
    flags.DEFINE_string("labels_json", None, f"{LABELS_FILE} (template -> index).")
    for split, name in SPLIT_FILES.items():
        flags.DEFINE_string(f"{split}_json", None, f"{name} (given split files replace the ones in --annotations_dir).")
    flags.DEFINE_string("videos_root", None, "Directory holding {id}.webm.", required=True)


if __name__ == "__main__":
    from data_prep import cli

    define_flags()
    cli.run_main(main)
