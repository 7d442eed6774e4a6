"""Image folders or lists -> image TFRecords (tf.train.Example), for image pre-training and co-training.

    python -m data_prep.images --trees=train=/data/imagenet/train,validation=/data/imagenet/val \\
        --output_dir=/data/imagenet_tfrecords
    python -m data_prep.images --lists=validation=val.txt --images_root=/data/imagenet/val_flat \\
        --label_map=synsets.txt --output_dir=...

Tree form: ``root/class_name/**/*.JPEG``; classes are the sorted folder names (over all
splits) unless --label_map is given. List form: like data_prep.generic. Plain RGB/grey
JPEGs are stored byte for byte by default (--short_side=0); anything else (PNG, CMYK,
EXIF-rotated, or any image with --short_side) is converted to an RGB JPEG.

Flags: --help lists this command's flags and the common ones. Apache Beam pipeline options
(--runner=..., --direct_running_mode=...) pass through; any other unknown flag is an error.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

from data_prep.annotations import IMAGE_EXTENSIONS, Annotations, list_files, load_label_map, require_dir
from data_prep.generic import Row, list_annotations, path_exists, read_lists
from data_prep.items import InputError
from data_prep.pipeline import RunConfig, RunResult, run


def tree_rows(trees: Mapping[str, str]) -> dict[str, list[Row]]:
    """{split: rows} for root/class/**/image files; the class is the first folder."""
    rows: dict[str, list[Row]] = {}
    for split, root in sorted(trees.items()):
        rows[split] = []
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                continue
            for path in list_files(folder, IMAGE_EXTENSIONS):
                rel = f"{name}/{path}"
                rows[split].append((os.path.join(root, rel), rel, name))
    return rows


def image_annotations(
    rows: Mapping[str, Sequence[Row]],
    roots: Mapping[str, str],
    label_map: Sequence[str] | None,
    bad_rows: Mapping[str, Sequence[str]] | None = None,
) -> Annotations:
    """Image items: the same rules as generic lists, duplicates judged within a split
    (train and val may both hold cat/001.jpg)."""
    return list_annotations(rows, roots, path_exists, label_map, bad_rows, across_splits=False)


def prepare_trees(trees: Mapping[str, str], config: RunConfig, label_map: str | None = None) -> RunResult:
    trees = {s: os.path.abspath(r) for s, r in trees.items()}
    for split, root in trees.items():
        require_dir(root, f"--trees ({split}=)")
    rows = tree_rows(trees)
    labels = load_label_map(label_map) if label_map else sorted({t for r in rows.values() for _, _, t in r})
    annotations = image_annotations(rows, trees, labels)
    inputs = {"trees": dict(sorted(trees.items())), "label_map": os.path.abspath(label_map) if label_map else None}
    config = dataclasses.replace(config, inputs=inputs)
    return run(annotations, config)


def prepare_lists(
    lists: Mapping[str, str], images_root: str, config: RunConfig, label_map: str | None = None
) -> RunResult:
    images_root = require_dir(os.path.abspath(images_root), "--images_root")
    rows, bad = read_lists(lists, "--lists")
    labels = load_label_map(label_map) if label_map else None
    annotations = image_annotations(rows, {s: images_root for s in lists}, labels, bad)
    config = dataclasses.replace(config, inputs={
        "lists": {s: os.path.abspath(p) for s, p in sorted(lists.items())},
        "images_root": images_root,
        "label_map": os.path.abspath(label_map) if label_map else None,
    })
    return run(annotations, config)


def main(argv: list[str]) -> int:
    from data_prep import cli

    flags = cli.FLAGS
    config = cli.config_from_flags("images", "image", {}, argv)
    if bool(flags.trees) == bool(flags.lists):
        raise InputError("give exactly one of --trees or --lists")
    if flags.trees:
        return cli.report(prepare_trees(cli.split_paths(flags.trees, flags.split), config, flags.label_map))
    if not flags.images_root:
        raise InputError("--lists needs --images_root")
    lists = cli.split_paths(flags.lists, flags.split)
    return cli.report(prepare_lists(lists, flags.images_root, config, flags.label_map))


def define_flags() -> None:
    from absl import flags

    from data_prep import cli

    cli.define_common_flags(short_side=0, shard_size=1024)
    cli.show_common_flags_in_help()
    flags.DEFINE_string("trees", None, "SPLIT=DIR[,SPLIT=DIR...]: ImageNet-style class folders.")
    flags.DEFINE_string("lists", None, "SPLIT=FILE[,...]: 'relative/path label' lines (or .csv path,label).")
    flags.DEFINE_string("split", "train", "Split name for a single --trees/--lists value without SPLIT=.")
    flags.DEFINE_string("images_root", None, "Directory the --lists paths are relative to.")


if __name__ == "__main__":
    from data_prep import cli

    define_flags()
    cli.run_main(main)
