"""Annotation parsing: pure functions from rows (and a file index) to items and failures."""
import json

import pytest

from data_prep import annotations, generic, images, kinetics, ssv2
from data_prep.pipeline import failure_limit
from tests.data_prep_helpers import SHARED_LABELS


def _rows(text: str, tmp_path, name="train.csv"):
    path = tmp_path / name
    path.write_text(text)
    return kinetics.read_csv(str(path))


def test_kinetics_rows_files_labels_and_every_row_failure(tmp_path):
    rows = _rows(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"passing American football (in game)",aaaaaaaaaaa,10,20,train,0\n'
        "dancing ballet,bbbbbbbbbbb,0,10,train,0\n"
        "dancing ballet,ccccccccccc,3,13,train,1\n"  # untrimmed download
        "dancing ballet,ddddddddddd,0,10,train,0\n"  # no file at all
        "dancing ballet,../../x,0,10,train,0\n"
        "dancing ballet,eeeeeeeeeee,ten,20,train,0\n"
        "dancing ballet,fffffffffff,20,10,train,0\n"
        "dancing ballet,bbbbbbbbbbb,0,10,val,0\n"  # same clip in val: leakage
        "rock climbing,ggggggggggg,0,10,train,0\n",
        tmp_path,
    )
    files = {
        "aaaaaaaaaaa_000010_000020": ["passing American football (in game)/aaaaaaaaaaa_000010_000020.mp4"],
        "bbbbbbbbbbb_000000_000010": ["other/bbbbbbbbbbb_000000_000010.webm", "dancing_ballet/bbbbbbbbbbb_000000_000010.webm"],
        "ccccccccccc": ["ccccccccccc.mkv"],
        "ggggggggggg_000000_000010": ["ggggggggggg_000000_000010.mp4"],
    }
    label_map = ["dancing ballet", "passing American football (in game)"]
    result = kinetics.kinetics_annotations(rows, files, "/videos", label_map)
    items = {item.media_id: item for item in result.items}
    assert sorted(items) == ["aaaaaaaaaaa_000010_000020", "bbbbbbbbbbb_000000_000010", "ccccccccccc_000003_000013"]
    assert items["aaaaaaaaaaa_000010_000020"].label_index == 1
    assert items["aaaaaaaaaaa_000010_000020"].start is None  # a cut clip is used whole
    assert items["bbbbbbbbbbb_000000_000010"].path == "dancing_ballet/bbbbbbbbbbb_000000_000010.webm"
    untrimmed = items["ccccccccccc_000003_000013"]
    assert (untrimmed.path, untrimmed.start, untrimmed.end) == ("ccccccccccc.mkv", 3.0, 13.0)
    kinds = {f.media_id: (f.kind, f.field) for f in result.failures}
    assert kinds == {
        "ddddddddddd_000000_000010": ("missing", "youtube_id"),
        "../../x": ("path_escape", "youtube_id"),
        "eeeeeeeeeee": ("bad_annotation", "time_start"),
        "fffffffffff_000020_000010": ("bad_annotation", "time_end"),
        "bbbbbbbbbbb_000000_000010": ("duplicate_id", "id"),
        "ggggggggggg_000000_000010": ("unknown_label", "label"),
    }
    duplicate = next(f for f in result.failures if f.kind == "duplicate_id")
    assert duplicate.split == "val" and "train.csv:3" in duplicate.reason and duplicate.source.endswith("train.csv:9")
    unknown = next(f for f in result.failures if f.kind == "unknown_label")
    assert "rock climbing" in unknown.describe() and "field 'label'" in unknown.describe()
    assert result.num_inputs == 9


def test_kinetics_label_map_is_sorted_csv_labels_and_test_rows_are_unlabeled(tmp_path):
    rows = _rows("label,youtube_id,time_start,time_end,split\nzumba,aaaaaaaaaaa,0,10,train\nabseiling,bbbbbbbbbbb,0,10,train\n", tmp_path)
    rows += _rows("youtube_id,time_start,time_end,split\ncccccccccccc,0,10,test\n", tmp_path, "test.csv")
    files = {f"{y}_000000_000010": [f"{y}_000000_000010.mp4"] for y in ("aaaaaaaaaaa", "bbbbbbbbbbb", "cccccccccccc")}
    result = kinetics.kinetics_annotations(rows, files, "/v")
    assert result.labels == ["abseiling", "zumba"]
    by_id = {i.media_id: i for i in result.items}
    assert by_id["aaaaaaaaaaa_000000_000010"].label_index == 1
    test = by_id["cccccccccccc_000000_000010"]
    assert (test.split, test.label_index, test.label_text) == ("test", -1, "")
    with pytest.raises(ValueError, match="missing column"):
        _rows("label,id,start\nx,y,1\n", tmp_path, "bad.csv")


@pytest.mark.skipif(not (SHARED_LABELS / "kinetics400_label_map.txt").exists(), reason="needs ../shared")
def test_label_maps_round_trip_and_version(tmp_path):
    k400 = annotations.load_label_map(str(SHARED_LABELS / "kinetics400_label_map.txt"))
    assert len(k400) == 400 and k400 == sorted(k400)
    assert annotations.label_map_text(k400) == (SHARED_LABELS / "kinetics400_label_map.txt").read_text()
    ssv2_names = annotations.load_label_map(str(SHARED_LABELS / "ssv2_label_map.txt"))
    as_json = tmp_path / "labels.json"
    as_json.write_text(json.dumps({name: str(i) for i, name in enumerate(ssv2_names)}))
    assert annotations.load_label_map(str(as_json)) == ssv2_names and len(ssv2_names) == 174
    assert annotations.label_map_version(k400) != annotations.label_map_version(k400[::-1])
    gap = tmp_path / "gap.json"
    gap.write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(ValueError, match="no gaps"):
        annotations.load_label_map(str(gap))


def test_ssv2_templates_case_sensitive_test_split_and_failures():
    labels = ["Putting something on something", "Something falling like a rock"]
    entries = {
        "train": (
            "train.json",
            [
                {"id": "1", "template": "Putting [something] on [something]"},
                {"id": "2", "template": "[Something] falling like a rock"},
                {"id": "3", "template": "[something] falling like a rock"},  # wrong case
                {"id": "4", "template": "Putting [something] on [something]"},  # no video
                {"id": "1", "template": "Putting [something] on [something]"},  # duplicate
                {"id": "../5", "template": "Putting [something] on [something]"},
            ],
        ),
        "test": ("test.json", [{"id": "9"}]),
    }
    files = {"1": ["1.webm"], "2": ["2.webm"], "3": ["3.webm"], "9": ["9.webm"]}
    result = ssv2.ssv2_annotations(labels, "labels.json", entries, files, "/v")
    assert [(i.split, i.media_id, i.label_index, i.label_text) for i in sorted(result.items)] == [
        ("test", "9", -1, ""),
        ("train", "1", 0, "Putting something on something"),
        ("train", "2", 1, "Something falling like a rock"),
    ]
    failures = {(f.media_id, f.kind, f.field) for f in result.failures}
    assert failures == {("3", "unknown_label", "template"), ("4", "missing", "id"), ("1", "duplicate_id", "id"),
                        ("../5", "path_escape", "id")}
    unknown = next(f for f in result.failures if f.kind == "unknown_label")
    assert "case-sensitive" in unknown.reason and unknown.source == "train.json[2]"
    assert ssv2.class_name("[Something] falling like a rock") == "Something falling like a rock"


def test_generic_list_and_csv_paths_labels_and_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    for name in ("a/x.mp4", "a/y y.mp4", "z.avi"):
        (root / name).write_bytes(b"x")
    listing = tmp_path / "train.txt"
    listing.write_text("a/x.mp4 0\n\n# comment\na/y y.mp4 2\n../outside.mp4 1\n/abs/path.mp4 1\na/./x.mp4 1\nnolabel\nz.avi 7\nmissing.mp4 1\n")
    rows, bad = generic.read_lists({"train": str(listing)})
    result = generic.list_annotations(rows, {"train": str(root)}, generic.path_exists, None, bad)
    assert result.labels == [str(i) for i in range(8)]
    assert [(i.path, i.label_index) for i in result.items] == [("a/x.mp4", 0), ("a/y y.mp4", 2), ("z.avi", 7)]
    kinds = sorted((f.kind, f.field, f.source.rsplit(":", 1)[1]) for f in result.failures)
    assert kinds == [("bad_annotation", "line", "8"), ("duplicate_id", "id", "7"), ("missing", "path", "10"),
                     ("path_escape", "path", "5"), ("path_escape", "path", "6")]
    csv_file = tmp_path / "val.csv"
    csv_file.write_text("path,label\na/x.mp4,cat\nz.avi,dog\na/y y.mp4,bird\n")
    rows, bad = generic.read_lists({"val": str(csv_file)})
    result = generic.list_annotations(rows, {"val": str(root)}, generic.path_exists, ["cat", "dog"], bad)
    assert [(i.path, i.label_text, i.label_index) for i in result.items] == [("a/x.mp4", "cat", 0), ("z.avi", "dog", 1)]
    assert [(f.kind, f.media_id) for f in result.failures] == [("unknown_label", "a/y y.mp4")]


def test_image_tree_rows_and_per_split_duplicates(tmp_path):
    for split in ("train", "val"):
        for cls in ("n02", "n01"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "img.JPEG").write_bytes(b"x")
    (tmp_path / "train" / "n01" / "notes.txt").write_text("ignored")
    trees = {"train": str(tmp_path / "train"), "val": str(tmp_path / "val")}
    rows = images.tree_rows(trees)
    result = images.image_annotations(rows, trees, ["n01", "n02"])
    assert sorted((i.split, i.path, i.label_index) for i in result.items) == [
        ("train", "n01/img.JPEG", 0), ("train", "n02/img.JPEG", 1), ("val", "n01/img.JPEG", 0), ("val", "n02/img.JPEG", 1)]
    assert result.failures == []


def test_safe_paths_and_failure_limits():
    assert annotations.safe_relative_path("a/b/../c.mp4") == "a/c.mp4"
    for bad in ("../a.mp4", "a/../../b.mp4", "/etc/passwd", "C:\\x.mp4", "", ".", "\\\\server\\x"):
        assert annotations.safe_relative_path(bad) is None, bad
    assert failure_limit("0", 1000) == 0 and failure_limit("10", 1000) == 10
    assert failure_limit("0.05", 1000) == 50 and failure_limit("5%", 1000) == 50 and failure_limit("1%", 150) == 1
    for bad in ("-1", "1.5", "abc", "200%"):
        with pytest.raises(ValueError, match="max_failures"):
            failure_limit(bad, 100)
