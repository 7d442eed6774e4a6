"""End to end: annotations -> Beam -> shards + manifest; failures, determinism, kill-and-resume, tools."""
import collections
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import generic, images, kinetics, ssv2
from data_prep.decode import FrameOptions
from data_prep.pipeline import RunConfig, RunError, beam_arguments
from data_prep.tfrecord import read_record, read_records
from data_prep.verify import verify
from tests import data_prep_helpers as helpers
from tfsts.data import schema

K400_NAMES = ["answering questions", "arm wrestling", "bowling", "counting money", "flipping pancake", "riding a bike"]


def kinetics_label_map(tmp: Path) -> Path:
    shared = helpers.SHARED_LABELS / "kinetics400_label_map.txt"
    if shared.exists():
        return shared
    path = tmp / "label_map.txt"
    path.write_text("".join(f"{n}\n" for n in K400_NAMES))
    return path


def config(out: Path, dataset: str, **overrides) -> RunConfig:
    options = dict(
        output_dir=str(out),
        dataset=dataset,
        frame_options=FrameOptions(short_side=64),
        shard_size=2,
        max_failures="100%",
        num_workers=1,
        progress=False,
    )
    options.update(overrides)
    return RunConfig(**options)


def video_records(out: Path) -> dict[str, dict]:
    """Every record of every shard, parsed with the reader's parser, by media id."""
    found = {}
    for shard in sorted(out.glob("*.tfrecord")):
        for record in read_records(str(shard)):
            context, sequence = schema.parse_video(record)
            values = {k: (v.numpy().decode() if v.dtype.name == "string" else v.numpy().item()) for k, v in context.items()}
            values["frames"] = sequence[schema.IMAGE_ENCODED].numpy().tolist()
            values["timestamps"] = sequence[schema.IMAGE_TIMESTAMP].numpy().tolist()
            values["shard"] = shard.name
            found[values[schema.MEDIA_ID]] = values
    return found


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def kinetics_run(tmp_path_factory, cache):
    tmp = tmp_path_factory.mktemp("kinetics")
    layout = helpers.kinetics_layout(tmp / "data", cache)
    label_map = kinetics_label_map(tmp)
    out = tmp / "out"
    result = kinetics.prepare([str(p) for p in layout["csvs"]], str(layout["videos"]), config(out, "kinetics"), str(label_map))
    return {"layout": layout, "out": out, "result": result, "label_map": label_map}


def test_kinetics_records_manifest_and_every_failure_kind(kinetics_run, cache):
    out, result, layout = kinetics_run["out"], kinetics_run["result"], kinetics_run["layout"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.ok and manifest == result.manifest and manifest["status"] == "complete"
    labels = (out / "label_map.txt").read_text().splitlines()
    assert labels == kinetics_run["label_map"].read_text().splitlines()
    assert manifest["label_map"]["num_classes"] == len(labels)

    # Records: ids, labels, frame counts and sizes.
    records = video_records(out)
    good = sorted(m for m, kind in layout["expect"].items() if kind == "ok")
    assert sorted(records) == good
    sources = {f"{y}_{s:06d}_{e:06d}": (label, name, lay) for label, y, s, e, _, name, lay in helpers.KINETICS_GOOD}
    for media_id, record in records.items():
        assert min(record[schema.IMAGE_HEIGHT], record[schema.IMAGE_WIDTH]) == 64
        assert record[schema.NUM_FRAMES] == len(record["frames"]) > 0
        jpeg = Image.open(io.BytesIO(record["frames"][-1]))
        assert (jpeg.format, jpeg.width, jpeg.height) == ("JPEG", record[schema.IMAGE_WIDTH], record[schema.IMAGE_HEIGHT])
        if media_id.startswith("carphonetst"):
            assert (record[schema.LABEL_INDEX], record[schema.LABEL_TEXT]) == (-1, "")
            continue
        label, name, lay = sources[media_id]
        assert labels[record[schema.LABEL_INDEX]] == record[schema.LABEL_TEXT] == label
        source = helpers.video(name, cache)
        if lay == "untrimmed":  # cut to [2, 5) s while decoding
            assert record[schema.NUM_FRAMES] == 75 and record[schema.DATA_PATH] == f"smpteclock1{source.suffix}"
            assert (record[schema.START_TIMESTAMP], record[schema.END_TIMESTAMP]) == (2_000_000, 5_000_000)
        else:
            assert record[schema.NUM_FRAMES] == helpers.decoded_frame_count(source), media_id
            assert record[schema.DATA_PATH].endswith(f"{media_id}{source.suffix}")

    # Manifest: counts per split and class, shard hashes, failures with file and reason.
    splits = manifest["splits"]
    assert set(splits) == {"train", "val", "test"}
    assert sum(s["records"] for s in splits.values()) == len(records) == manifest["totals"]["records"]
    for split, info in splits.items():
        assert info["num_shards"] == len(info["shards"]) >= 1
        per_class = collections.Counter(
            (r[schema.LABEL_INDEX], r[schema.LABEL_TEXT]) for r in records.values() if r["shard"].startswith(split + "-")
        )
        assert {(c["index"], c["text"]): c["records"] for c in info["classes"]} == dict(per_class)
        for shard in info["shards"]:
            data = (out / shard["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
            assert len(list(read_records(str(out / shard["file"])))) == shard["records"]
    failures = {(f["media_id"], f["kind"]) for f in manifest["failures"]}
    expected = {(m, kind) for m, kind in layout["expect"].items() if kind != "ok"}
    expected.add(("armwrestle1_000010_000020", "duplicate_id"))
    assert failures == expected
    for failure in manifest["failures"]:
        assert failure["reason"] and failure["source"].split(":")[0].endswith(".csv")
        if failure["field"] == "file":  # decode failures name the media file
            assert (layout["videos"] / failure["path"]).exists() or failure["kind"] == "missing"
    assert manifest["totals"]["failures"] == len(expected) == sum(manifest["failures_by_kind"].values())
    assert manifest["totals"]["inputs"] == len(records) + len(expected)
    assert "options" in manifest and manifest["options"]["short_side"] == 64
    assert "num_workers" not in manifest["options"]  # engine settings do not change the output
    assert f"{len(expected)} failed" in result.summary and "frames/s" in result.summary

    report = verify(str(out))
    assert report.ok, report.text()


def test_verify_detects_damage_and_strays(kinetics_run, tmp_path):
    copy = tmp_path / "copy"
    helpers.copy_tree(kinetics_run["out"], copy)
    shard = max(copy.glob("train-*.tfrecord"), key=lambda p: p.stat().st_size)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    (copy / "train-00099-of-00100.tfrecord").write_bytes(b"")
    report = verify(str(copy))
    assert not report.ok
    assert any(shard.name in p and "checksum" in p for p in report.problems), report.problems
    assert any("train-00099-of-00100.tfrecord" in p for p in report.problems)


def test_rerun_is_byte_identical_and_skips_finished_shards(kinetics_run, tmp_path):
    """A second run into a copy rewrites nothing; a fresh run elsewhere writes the same bytes."""
    layout = kinetics_run["layout"]
    copy = tmp_path / "copy"
    helpers.copy_tree(kinetics_run["out"], copy)
    os.utime(copy / "manifest.json", ns=(1, 1))
    stamps = {p.name: p.stat().st_mtime_ns for p in copy.glob("*.tfrecord")}
    csvs = [str(p) for p in layout["csvs"]]
    again = kinetics.prepare(csvs, str(layout["videos"]), config(copy, "kinetics"), str(kinetics_run["label_map"]))
    # copytree keeps mtimes, so every shard is recognised as done and left alone
    assert again.stats["shards_written"] == 0 and again.stats["shards_resumed"] == len(stamps)
    assert {p.name: p.stat().st_mtime_ns for p in copy.glob("*.tfrecord")} == stamps
    assert helpers.output_files(copy) == helpers.output_files(kinetics_run["out"])
    # Other inputs into the same folder: refused instead of mixing shard sets.
    with pytest.raises(RunError, match="would not write"):
        kinetics.prepare(csvs, str(layout["videos"]), config(copy, "kinetics", shard_size=50), str(kinetics_run["label_map"]))


def test_ssv2_end_to_end(tmp_path, cache):
    layout = helpers.ssv2_layout(tmp_path / "data", cache)
    annotations = layout["annotations"]
    splits = {s: str(annotations / f"something-something-v2-{s}.json") for s in ("train", "validation", "test")}
    out = tmp_path / "out"
    result = ssv2.prepare(str(annotations / ssv2.LABELS_FILE), splits, str(layout["videos"]), config(out, "ssv2"))
    assert result.ok
    labels = (out / "label_map.txt").read_text().splitlines()
    official = json.loads((annotations / ssv2.LABELS_FILE).read_text())
    assert labels == sorted(official, key=lambda name: int(official[name]))  # official indices kept
    records = video_records(out)
    assert sorted(records) == sorted(m for m, k in layout["expect"].items() if k == "ok")
    for media_id, record in records.items():
        if media_id == "2000":
            assert record[schema.LABEL_INDEX] == -1
        else:
            assert labels[record[schema.LABEL_INDEX]] == record[schema.LABEL_TEXT]
            assert int(official[record[schema.LABEL_TEXT]]) == record[schema.LABEL_INDEX]
    assert records["1001"][schema.LABEL_TEXT] == "Something falling like a rock"  # "[Something] ..." template
    failures = {(f["media_id"], f["kind"]) for f in result.manifest["failures"]}
    assert failures == {("1100", "unknown_label"), ("1101", "missing"), ("1000", "duplicate_id")}
    assert set(result.manifest["splits"]) == {"train", "validation", "test"}


def _small_generic(tmp: Path, cache: Path, bad: int) -> tuple[Path, Path]:
    root = tmp / "videos"
    lines = []
    for number in range(4):
        helpers.link(helpers.video("decord_unordered_4frames.mov", cache), root / f"good{number}.mov")
        lines.append(f"good{number}.mov {number % 2}")
    makers = [helpers.make_zero_byte, helpers.make_not_video, helpers.make_unreadable]
    for number in range(bad):
        makers[number % 3](root / f"bad{number}.mp4")
        lines.append(f"bad{number}.mp4 0")
    listing = tmp / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return root, listing


def test_max_failures_count_and_fraction(tmp_path, cache):
    root, listing = _small_generic(tmp_path, cache, bad=3)
    out = tmp_path / "out"
    strict = generic.prepare({"train": str(listing)}, str(root), config(out, "generic", max_failures="2"))
    assert not strict.ok and strict.manifest["status"] == "max_failures_exceeded"
    assert "3 of 7 inputs failed" in strict.error and "--max_failures=2" in strict.error and "allows (2)" in strict.error
    for text in ("bad0.mp4", "bad1.mp4", "bad2.mp4", "field 'file'", "empty:", "not_video:", "unreadable:", "manifest.json"):
        assert text in strict.error, text
    # The shards are there; allowing more finishes without redoing them.
    relaxed = generic.prepare({"train": str(listing)}, str(root), config(out, "generic", max_failures="50%"))
    assert relaxed.ok and relaxed.manifest["status"] == "complete" and relaxed.stats["shards_written"] == 0
    assert relaxed.manifest["totals"]["records"] == 4 and relaxed.manifest["totals"]["failures"] == 3


def test_annotation_failures_abort_before_decoding(tmp_path, cache):
    root, listing = _small_generic(tmp_path, cache, bad=0)
    listing.write_text(listing.read_text() + "../escape.mp4 0\n/abs.mp4 1\nnothere.mp4 1\n")
    out = tmp_path / "out"
    result = generic.prepare({"train": str(listing)}, str(root), config(out, "generic", max_failures="0.1"))
    assert not result.ok and result.manifest["status"] == "aborted"
    assert not list(out.glob("*.tfrecord"))
    assert "path_escape" in result.error and "field 'path'" in result.error and "train.txt:5" in result.error


def test_cli_reports_too_many_failures_with_exit_status(tmp_path, cache):
    root, listing = _small_generic(tmp_path, cache, bad=2)
    out = tmp_path / "out"
    run = helpers.run_module(  # --direct_running_mode is Beam's: unknown to data_prep, passed through
        "data_prep.generic", f"--annotations={listing}", f"--videos_root={root}", f"--output_dir={out}",
        "--max_failures=1", "--num_workers=2", "--short_side=32", "--direct_running_mode=multi_threading", check=False,
    )
    assert run.returncode == 1, run.stderr
    assert "2 of 6 inputs failed" in run.stderr and "bad0.mp4" in run.stderr and "raise" not in run.stdout
    assert "data_prep generic: 6 inputs -> 4 records" in run.stdout
    bad_flag = helpers.run_module("data_prep.generic", f"--annotations={listing}", f"--videos_root={root}",
                                  f"--output_dir={out}", "--max_failures=lots", check=False)
    assert bad_flag.returncode == 2 and "max_failures" in bad_flag.stderr and "Traceback" not in bad_flag.stderr


def test_beam_arguments_defaults_and_pass_through():
    assert beam_arguments([], 2) == [
        "--direct_num_workers=2", "--direct_running_mode=multi_processing", "--default_sdk_harness_log_level=WARNING"]
    assert beam_arguments([], 1)[1] == "--direct_running_mode=in_memory"
    given = ["--runner=DataflowRunner", "--project=p", "--direct_running_mode=multi_threading",
             "--default_sdk_harness_log_level=DEBUG"]
    assert beam_arguments(given, 4) == given + ["--direct_num_workers=4"]


def test_images_tree_records(tmp_path):
    tree = tmp_path / "train"
    for cls, color in (("n01", (255, 0, 0)), ("n02", (0, 0, 255))):
        (tree / cls).mkdir(parents=True)
        Image.new("RGB", (48, 32), color).save(tree / cls / "a.JPEG", quality=92)
    Image.new("RGBA", (20, 30), (0, 255, 0, 128)).save(tree / "n02" / "b.png")
    Image.new("CMYK", (30, 20)).save(tree / "n01" / "cmyk.jpg")
    (tree / "n01" / "broken.JPEG").write_bytes((tree / "n01" / "a.JPEG").read_bytes()[:100])
    out = tmp_path / "out"
    result = images.prepare_trees({"train": str(tree)}, config(out, "images", kind="image", frame_options=FrameOptions(short_side=0)))
    assert result.ok and (out / "label_map.txt").read_text() == "n01\nn02\n"
    found = {}
    for shard in out.glob("*.tfrecord"):
        for record in read_records(str(shard)):
            assert not schema.is_video_record(record)
            features = schema.parse_image(record)
            name = features[schema.IMAGE_FILENAME].numpy().decode()
            found[name] = features
    assert sorted(found) == ["n01/a.JPEG", "n01/cmyk.jpg", "n02/a.JPEG", "n02/b.png"]
    assert found["n01/a.JPEG"][schema.IMAGE_ENCODED].numpy() == (tree / "n01" / "a.JPEG").read_bytes()  # kept as is
    png = np.asarray(Image.open(io.BytesIO(found["n02/b.png"][schema.IMAGE_ENCODED].numpy())))
    assert png.shape == (30, 20, 3)
    assert [int(found[n][schema.IMAGE_CLASS_LABEL]) for n in sorted(found)] == [0, 0, 1, 1]
    assert [(f["path"], f["kind"]) for f in result.manifest["failures"]] == [("n01/broken.JPEG", "truncated")]
    assert verify(str(out)).ok


def test_kill_and_resume_with_two_worker_processes(tmp_path, cache):
    """SIGKILL a real 2-process DirectRunner run mid-way, rerun: identical bytes, finished shards kept."""
    layout = helpers.kinetics_layout(tmp_path / "data", cache, bad=False, extra_good=10)
    label_map = kinetics_label_map(tmp_path)
    csvs = [str(p) for p in layout["csvs"]]
    reference = tmp_path / "reference"
    ref = kinetics.prepare(csvs, str(layout["videos"]), config(reference, "kinetics", shard_size=1, max_failures="0"),
                           str(label_map))
    assert ref.ok and ref.stats["shards_written"] == 17

    out = tmp_path / "out"
    args = [f"--csv={','.join(csvs)}", f"--videos_root={layout['videos']}", f"--output_dir={out}",
            f"--label_map={label_map}", "--short_side=64", "--shard_size=1", "--max_failures=0", "--num_workers=2"]
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0.0, 0.15)
    process = start(args, tmp_path / "killed.log")
    wait_for(lambda: any((out / ".state").glob("*.tfrecord.json")), process, timeout=120)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = {p.name[: -len(".json")] for p in (out / ".state").glob("*.tfrecord.json")}
    assert not (out / "manifest.json").exists(), f"the run finished before the kill (seed {seed}); make it longer"
    assert 0 < len(done) < 17, (seed, done)
    before = {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in done}

    resumed = start(args, tmp_path / "resumed.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()
    assert f"({len(done)} already done)" in (tmp_path / "resumed.log").read_text()
    assert helpers.output_files(out) == helpers.output_files(reference), f"seed {seed}"
    assert {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in done} == before
    assert not [p for p in out.iterdir() if ".tmp-" in p.name] and not list((out / ".state").glob("*.claim"))
    # The shards written after the restart came from Beam worker processes, not the driver.
    states = [json.loads(p.read_text()) for p in (out / ".state").glob("*.tfrecord.json")]
    pids = {s["worker_pid"] for s in states if s["name"] not in done}
    assert pids and resumed.pid not in pids
    assert verify(str(out)).ok


def start(args, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    handle = open(log, "w")
    return subprocess.Popen([helpers.PYTHON, "-m", "data_prep.kinetics", *args], cwd=helpers.REPO_ROOT, env=env,
                            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"data_prep exited early with {process.returncode}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("timed out waiting for the first shard")
        time.sleep(0.02)


def test_verify_and_inspect_command_lines(kinetics_run, tmp_path):
    out = kinetics_run["out"]
    checked = helpers.run_module("data_prep.verify", str(out))
    assert checked.stdout.strip().splitlines()[-1].startswith("OK:")
    shards = json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"]
    shard = next(s["file"] for s in shards if s["records"])
    sheet = tmp_path / "sheet.png"
    shown = helpers.run_module("data_prep.inspect", str(out / shard), "--index=0", f"--out={sheet}", "--max_frames=6")
    assert "label" in shown.stdout and sheet.exists()
    image = Image.open(sheet)
    assert image.width >= 640 and image.height > 64
    with pytest.raises(IndexError, match="no record 999"):
        read_record(str(out / shard), 999)


@pytest.mark.slow
def test_repeated_random_kills_converge_to_identical_output(tmp_path, cache):
    """Five SIGKILLs at random moments (start-up, mid-shard, manifest) and a final run."""
    layout = helpers.kinetics_layout(tmp_path / "data", cache, bad=True, extra_good=16)
    label_map = kinetics_label_map(tmp_path)
    csvs = [str(p) for p in layout["csvs"]]
    reference = tmp_path / "reference"
    kinetics.prepare(csvs, str(layout["videos"]), config(reference, "kinetics", shard_size=1), str(label_map))
    out = tmp_path / "out"
    args = [f"--csv={','.join(csvs)}", f"--videos_root={layout['videos']}", f"--output_dir={out}",
            f"--label_map={label_map}", "--short_side=64", "--shard_size=1", "--max_failures=100%", "--num_workers=2"]
    started = time.monotonic()
    helpers.run_module("data_prep.kinetics", *args)
    full = time.monotonic() - started
    for path in list(out.iterdir()):  # start over from nothing
        if path.is_dir():
            for inner in path.iterdir():
                inner.unlink()
            path.rmdir()
        else:
            path.unlink()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    progress = []  # shards finished after each kill, shown if the final comparison fails
    for round_number in range(5):
        process = start(args, tmp_path / f"kill{round_number}.log")
        time.sleep(rng.uniform(0.0, full))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        progress.append(len(list((out / ".state").glob("*.tfrecord.json"))) if (out / ".state").exists() else 0)
    helpers.run_module("data_prep.kinetics", *args)
    assert helpers.output_files(out) == helpers.output_files(reference), f"seed {seed}, shards done per kill {progress}"
    assert verify(str(out)).ok


@pytest.mark.slow
def test_worker_count_does_not_change_bytes(tmp_path, cache):
    layout = helpers.kinetics_layout(tmp_path / "data", cache, bad=True, extra_good=6)
    label_map = kinetics_label_map(tmp_path)
    csvs = [str(p) for p in layout["csvs"]]
    outputs = []
    for workers in (1, 2, 4):
        out = tmp_path / f"w{workers}"
        result = kinetics.prepare(csvs, str(layout["videos"]),
                                  config(out, "kinetics", shard_size=3, num_workers=workers), str(label_map))
        assert result.ok
        outputs.append(helpers.output_files(out))
    assert outputs[0] == outputs[1] == outputs[2]
