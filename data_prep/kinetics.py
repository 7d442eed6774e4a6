"""Kinetics 400/600/700 -> video TFRecords.

    python -m data_prep.kinetics --csv=train.csv,validate.csv --videos_root=/data/k400 \\
        --output_dir=/data/k400_tfrecords [--label_map=label_map_k400.txt]

CSV: ``label,youtube_id,time_start,time_end,split[,is_cc]`` (test CSVs have no label).
Videos, anywhere under --videos_root (flat or per-class folders):
``{youtube_id}_{time_start:06d}_{time_end:06d}.EXT`` (already cut), or the untrimmed
``{youtube_id}.EXT``, which is cut to [time_start, time_end) while decoding; EXT is any of
annotations.VIDEO_EXTENSIONS.
Without --label_map the classes are the sorted labels of the CSVs.

Flags: --help lists this command's flags and the common ones. Apache Beam pipeline options
(--runner=..., --direct_running_mode=...) pass through; any other unknown flag is an error.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Mapping, Sequence

from data_prep.annotations import (
    SAFE_ID,
    VIDEO_EXTENSIONS,
    Annotations,
    extensions_text,
    format_seconds,
    index_files,
    load_label_map,
    require_dir,
    require_file,
    row_failure,
    split_kept_and_duplicates,
)
from data_prep.items import Failure, InputError, Item
from data_prep.pipeline import RunConfig, RunResult, run

REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")


def read_csv(path: str) -> list[dict[str, str]]:
    """Rows of one Kinetics CSV, each with '_source' (file:line) and '_split' fallback."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {missing}; expected a header like "
                "label,youtube_id,time_start,time_end,split"
            )
        reader.fieldnames = columns
        default_split = os.path.splitext(os.path.basename(path))[0]
        rows = []
        for row in reader:
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            row["_source"] = f"{path}:{reader.line_num}"
            row.setdefault("split", "")
            row["_split"] = row["split"] or default_split
            rows.append(row)
    return rows


def _pick(paths: Sequence[str], label: str) -> str:
    """Prefer the copy in the clip's class folder when a name exists in several folders."""
    folders = {label, label.replace(" ", "_")}
    for path in paths:
        if os.path.basename(os.path.dirname(path)) in folders:
            return path
    return paths[0]


def kinetics_annotations(
    rows: Sequence[Mapping[str, str]],
    files: Mapping[str, Sequence[str]],
    videos_root: str,
    label_map: Sequence[str] | None = None,
) -> Annotations:
    """Items for the rows whose clip exists; failures for the others. Pure (no I/O)."""
    labels = list(label_map) if label_map is not None else sorted({r.get("label", "") for r in rows} - {""})
    index = {name: i for i, name in enumerate(labels)}
    candidates: list[Item] = []
    failures: list[Failure] = []
    for row in rows:
        split, source, ytid = row["_split"], row["_source"], row["youtube_id"]
        if not SAFE_ID.match(ytid):
            kind = "path_escape" if ("/" in ytid or "\\" in ytid or ".." in ytid) else "bad_annotation"
            failures.append(
                row_failure(split, ytid, kind, f"youtube_id {ytid!r} is not a YouTube id", "youtube_id", source)
            )
            continue
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except ValueError:
            failures.append(
                row_failure(
                    split, ytid, "bad_annotation",
                    f"time_start/time_end must be numbers, got {row['time_start']!r}, {row['time_end']!r}",
                    "time_start", source,
                )
            )
            continue
        media_id = f"{ytid}_{format_seconds(start)}_{format_seconds(end)}"
        if not 0 <= start < end:
            failures.append(
                row_failure(split, media_id, "bad_annotation", f"need 0 <= time_start < time_end, got {start}, {end}",
                            "time_end", source)
            )
            continue
        label = row.get("label", "")
        if label and label not in index:
            reason = f"label {label!r} is not in the label map"
            failures.append(row_failure(split, media_id, "unknown_label", reason, "label", source))
            continue
        candidates.append(
            Item(split, media_id, "", index.get(label, -1), label, start, end, source)
        )
    kept, duplicates = split_kept_and_duplicates(candidates)
    failures += duplicates
    items: list[Item] = []
    for item in kept:
        clip = files.get(item.media_id)
        untrimmed = files.get(item.media_id.rsplit("_", 2)[0])
        if clip:
            items.append(_with_file(item, _pick(clip, item.label_text), None, None))
        elif untrimmed:
            items.append(_with_file(item, _pick(untrimmed, item.label_text), item.start, item.end))
        else:
            ytid = item.media_id.rsplit("_", 2)[0]
            failures.append(
                row_failure(
                    item.split, item.media_id, "missing",
                    f"no {item.media_id} clip (flat or in a class folder) and no untrimmed {ytid} file "
                    f"under {videos_root} (extensions looked for: {extensions_text()})",
                    "youtube_id", item.source,
                )
            )
    roots = {split: videos_root for split in {r["_split"] for r in rows}}
    return Annotations(items=items, failures=failures, labels=labels, roots=roots)


def _with_file(item: Item, path: str, start: float | None, end: float | None) -> Item:
    return Item(item.split, item.media_id, path, item.label_index, item.label_text, start, end, item.source)


def prepare(
    csv_paths: Sequence[str], videos_root: str, config: RunConfig, label_map: str | None = None
) -> RunResult:
    """Read the CSVs, find the clips, convert. The API behind the command line."""
    videos_root = require_dir(os.path.abspath(videos_root), "--videos_root")
    if not csv_paths:
        raise InputError("--csv: give at least one Kinetics CSV")
    rows: list[dict[str, str]] = []
    for path in csv_paths:
        rows += read_csv(require_file(path, "--csv"))
    labels = load_label_map(label_map) if label_map else None
    annotations = kinetics_annotations(rows, index_files(videos_root, VIDEO_EXTENSIONS), videos_root, labels)
    config = dataclasses.replace(config, inputs={
        "csv": [os.path.abspath(p) for p in csv_paths],
        "videos_root": videos_root,
        "label_map": os.path.abspath(label_map) if label_map else None,
    })
    return run(annotations, config)


def main(argv: list[str]) -> int:
    from data_prep import cli

    flags = cli.FLAGS
    config = cli.config_from_flags("kinetics", "video", {}, argv)
    csvs = [p for p in flags.csv.split(",") if p.strip()]
    return cli.report(prepare(csvs, flags.videos_root, config, flags.label_map))


def define_flags() -> None:
    from absl import flags

    from data_prep import cli

    cli.define_common_flags()
    cli.show_common_flags_in_help()
    flags.DEFINE_string("csv", None, "Comma-separated Kinetics annotation CSVs.", required=True)
    flags.DEFINE_string("videos_root", None, "Directory holding the clips (any depth).", required=True)


if __name__ == "__main__":
    from data_prep import cli

    define_flags()
    cli.run_main(main)
