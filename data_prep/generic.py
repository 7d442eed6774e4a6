"""Any video dataset described by list files (mmaction2 style) -> video TFRecords.

    python -m data_prep.generic --annotations=train=train_list.txt,val=val_list.txt \\
        --videos_root=/data/ucf101/videos --output_dir=/data/ucf101_tfrecords

A list file has one ``relative/path label`` per line (the label after the last space);
a ``.csv`` file has ``path,label`` rows (an optional ``path,label`` header is skipped).
Labels are class indices when all of them are integers (names come from --label_map when
given), class names otherwise (indices from --label_map, else the sorted names). Paths
must be relative to the root and stay inside it.

Flags: --help lists this command's flags and the common ones. Apache Beam pipeline options
(--runner=..., --direct_running_mode=...) pass through; any other unknown flag is an error.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Callable, Mapping, Sequence

from data_prep.annotations import (
    Annotations,
    load_label_map,
    require_dir,
    require_file,
    row_failure,
    safe_relative_path,
    split_kept_and_duplicates,
)
from data_prep.items import Failure, Item
from data_prep.pipeline import RunConfig, RunResult, run

Row = tuple[str, str, str]  # (source "file:line", path, label token)


def read_list(path: str) -> tuple[list[Row], list[str]]:
    """(rows, sources of malformed lines) of a list file or CSV."""
    rows: list[Row] = []
    bad: list[str] = []
    with open(path, newline="", encoding="utf-8") as f:
        if path.lower().endswith(".csv"):
            for number, fields in enumerate(csv.reader(f), 1):
                if not fields or not "".join(fields).strip():
                    continue
                if number == 1 and [x.strip().lower() for x in fields] == ["path", "label"]:
                    continue
                if len(fields) != 2:
                    bad.append(f"{path}:{number}")
                    continue
                rows.append((f"{path}:{number}", fields[0].strip(), fields[1].strip()))
        else:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.rsplit(None, 1)
                if len(parts) != 2:
                    bad.append(f"{path}:{number}")
                    continue
                rows.append((f"{path}:{number}", parts[0], parts[1]))
    return rows, bad


def _is_int(token: str) -> bool:
    try:
        int(token)
        return True
    except ValueError:
        return False


def list_annotations(
    rows_by_split: Mapping[str, Sequence[Row]],
    roots: Mapping[str, str],
    exists: Callable[[str, str], bool],
    label_map: Sequence[str] | None = None,
    bad_rows: Mapping[str, Sequence[str]] | None = None,
    across_splits: bool = True,
) -> Annotations:
    """Items and failures from list rows; ``exists(root, path)`` says whether a file is there.

    Shared by the generic video lists and the image lists.
    """
    tokens = [token for rows in rows_by_split.values() for _, _, token in rows]
    by_index = bool(tokens) and all(_is_int(t) for t in tokens)
    if label_map is not None:
        labels = list(label_map)
    elif by_index:
        labels = [str(i) for i in range(max(int(t) for t in tokens) + 1)] if tokens else []
    else:
        labels = sorted(set(tokens))
    index = {name: i for i, name in enumerate(labels)}
    failures: list[Failure] = []
    candidates: list[Item] = []
    for split, sources in sorted((bad_rows or {}).items()):
        for source in sources:
            failures.append(
                row_failure(split, source, "bad_annotation", "expected 'path label' (or 'path,label' in a CSV)", "line",
                            source)
            )
    for split, rows in sorted(rows_by_split.items()):
        for source, raw_path, token in rows:
            path = safe_relative_path(raw_path)
            if path is None:
                failures.append(
                    row_failure(split, raw_path, "path_escape", f"path {raw_path!r} is absolute or leaves the root",
                                "path", source, raw_path)
                )
                continue
            if by_index:
                label_index = int(token)
                if not 0 <= label_index < len(labels):
                    failures.append(
                        row_failure(split, path, "unknown_label",
                                    f"class index {label_index} is outside the label map (0..{len(labels) - 1})",
                                    "label", source, path)
                    )
                    continue
            elif token in index:
                label_index = index[token]
            else:
                failures.append(
                    row_failure(split, path, "unknown_label", f"label {token!r} is not in the label map", "label",
                                source, path)
                )
                continue
            candidates.append(Item(split, path, path, label_index, labels[label_index], source=source))
    if across_splits:
        kept, duplicates = split_kept_and_duplicates(candidates)
    else:
        kept, duplicates = [], []
        for split in sorted({c.split for c in candidates}):
            k, d = split_kept_and_duplicates([c for c in candidates if c.split == split])
            kept += k
            duplicates += d
    failures += duplicates
    items = []
    for item in kept:
        if exists(roots[item.split], item.path):
            items.append(item)
        else:
            failures.append(
                row_failure(item.split, item.media_id, "missing", f"no file {item.path} under {roots[item.split]}",
                            "path", item.source, item.path)
            )
    splits = set(rows_by_split) | set(bad_rows or {})
    return Annotations(items=items, failures=failures, labels=labels, roots={s: roots[s] for s in splits})


def path_exists(root: str, path: str) -> bool:
    """lexists: a dangling link is still 'there' and fails later as missing/unreadable with its reason."""
    return os.path.lexists(os.path.join(root, path))


def read_lists(lists: Mapping[str, str], flag: str = "--annotations") -> tuple[dict[str, list[Row]], dict[str, list[str]]]:
    rows, bad = {}, {}
    for split, path in lists.items():
        rows[split], bad[split] = read_list(require_file(path, f"{flag} ({split}=)"))
    return rows, bad


def prepare(lists: Mapping[str, str], videos_root: str, config: RunConfig, label_map: str | None = None) -> RunResult:
    """Read {split: list file}, convert the listed videos."""
    videos_root = require_dir(os.path.abspath(videos_root), "--videos_root")
    rows, bad = read_lists(lists, "--annotations")
    labels = load_label_map(label_map) if label_map else None
    annotations = list_annotations(rows, {s: videos_root for s in lists}, path_exists, labels, bad)
    config = dataclasses.replace(config, inputs={
        "annotations": {s: os.path.abspath(p) for s, p in sorted(lists.items())},
        "videos_root": videos_root,
        "label_map": os.path.abspath(label_map) if label_map else None,
    })
    return run(annotations, config)


def main(argv: list[str]) -> int:
    from data_prep import cli

    flags = cli.FLAGS
    config = cli.config_from_flags("generic", "video", {}, argv)
    lists = cli.split_paths(flags.annotations, flags.split)
    return cli.report(prepare(lists, flags.videos_root, config, flags.label_map))


def define_flags() -> None:
    from absl import flags

    from data_prep import cli

    cli.define_common_flags()
    cli.show_common_flags_in_help()
    flags.DEFINE_string(
        "annotations", None, "SPLIT=FILE[,SPLIT=FILE...], or one FILE with --split; .csv = 'path,label'.",
        required=True,
    )
    flags.DEFINE_string("split", "train", "Split name for a single --annotations file without SPLIT=.")
    flags.DEFINE_string("videos_root", None, "Directory the listed paths are relative to.", required=True)


if __name__ == "__main__":
    from data_prep import cli

    define_flags()
    cli.run_main(main)
