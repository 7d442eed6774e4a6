"""Media files -> JPEG frames: PyAV decoding, rotation, short-side resize, fps resampling.

Kept separate from annotation parsing and record writing so it can be tested on a file
alone. Every way a file can be bad ends in ``DecodeError(kind, reason)``; nothing here
knows about shards or manifests.

Timestamps: containers lie (AVI with packed B-frames reports out-of-order pts, browser
WebM has no durations and a variable frame rate, some files have no pts at all), so the
frame times used for trimming and resampling are repaired first: missing pts continue
from the previous frame, and pts that come out of the decoder out of order are re-sorted
within a small window (the decoder already outputs frames in display order; only their
labels are wrong).
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import io
import os
import stat
from typing import Any, Iterable, Iterator

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data_prep.items import DecodeError

_REORDER_WINDOW = 16  # frames; pts displacement we repair (packed B-frames need 1-3)
_EPS = 1e-6
# Formats FFmpeg opens that are still images, not videos.
_IMAGE_DEMUXERS = ("image2", "webp_pipe", "jpeg_pipe", "png_pipe", "bmp_pipe", "gif", "tiff_pipe")
_MAX_PIXELS = 8192 * 8192  # larger frames are fuzzed headers, not datasets


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """How frames are produced; part of the shard fingerprint, so it must stay hashable."""

    short_side: int = 256  # 0 keeps the source size
    fps: float = 0.0  # 0 keeps every decoded frame (native rate)
    jpeg_quality: int = 90
    decode_threads: int = 1  # per worker; parallelism comes from the workers


@dataclasses.dataclass
class Clip:
    """Decoded, resized, JPEG-encoded frames of one video (or one window of it)."""

    frames: list[bytes]
    timestamps_us: list[int]  # since the clip start
    frame_rate: float
    height: int
    width: int
    original_height: int  # displayed, rotation applied
    original_width: int
    rotation: int  # degrees counter-clockwise applied to the coded frames
    start_us: int  # clip position in the source file
    end_us: int
    # (kind, reason) when the clip is shorter than asked: "truncated" (the file ends before the
    # duration it declares: a cut download) or "short" (the file ends inside the annotation window).
    incomplete: tuple[str, str] | None = None


# --- Opening and classifying -----------------------------------------------------------
def check_file(path: str) -> bytes:
    """The first bytes of a regular, non-empty, readable file, else DecodeError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DecodeError("missing", "no such file") from None
    except OSError as e:
        raise DecodeError("unreadable", f"cannot stat: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DecodeError("unreadable", "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError("unreadable", "not a regular file")
    if st.st_size == 0:
        raise DecodeError("empty", "zero-byte file")
    try:
        with open(path, "rb") as f:
            return f.read(512)
    except OSError as e:
        raise DecodeError("unreadable", f"cannot read: {e.strerror or e}") from None


def looks_like_video_container(head: bytes) -> bool:
    """Magic bytes of the containers we expect, to tell 'corrupt video' from 'not a video'."""
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM (EBML)
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith((b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75"))
        or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)  # MPEG-TS packets
    )


def _read_vint(data: bytes, at: int, keep_marker: bool) -> tuple[int | None, int]:
    """(value, length) of an EBML variable-length integer; value None for 'unknown size'."""
    if at >= len(data) or data[at] == 0:
        return None, 0
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None, 0
    value = int.from_bytes(data[at : at + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
        if value == (1 << (7 * length)) - 1:
            return None, length  # all ones: size unknown (live WebM)
    return value, length


def container_cut_short(path: str) -> str | None:
    """Why the file is shorter than its own container structure says, or None.

    A cut download ends inside a box (MP4/MOV), the Matroska/WebM segment or the AVI RIFF
    chunk whose size the header states; FFmpeg then reports "Invalid data" (an MP4 whose
    moov came after the cut) or returns fewer frames, so this is how "truncated" is told
    from "corrupt".
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
                offset = 0
                while offset + 8 <= size:
                    f.seek(offset)
                    header = f.read(16)
                    box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
                    if box_size == 1 and len(header) == 16:
                        box_size = int.from_bytes(header[8:16], "big")
                    if box_size == 0:
                        return None  # extends to the end of the file by definition
                    if box_size < 8 or not all(32 <= c < 127 for c in box_type):
                        return None  # not a box structure (garbage, not a cut): let FFmpeg judge
                    if offset + box_size > size:
                        name = box_type.decode("latin-1")
                        return f"the file has {size:,} bytes but its '{name}' box ends at byte {offset + box_size:,}"
                    offset += box_size
                return None
    except OSError:
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            return f"the file has {size:,} bytes but its RIFF header declares {declared:,}"
        return None
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        header_size, length = _read_vint(head, 4, keep_marker=False)
        if header_size is None:
            return None
        at = 4 + length + header_size
        if head[at : at + 4] != b"\x18\x53\x80\x67":
            return None
        segment_size, length = _read_vint(head, at + 4, keep_marker=False)
        if segment_size is None:
            return None
        declared = at + 4 + length + segment_size
        if declared > size:
            return f"the file has {size:,} bytes but its Matroska segment declares {declared:,}"
    return None


def _corrupt_or_truncated(path: str, reason: str) -> DecodeError:
    cut = container_cut_short(path)
    if cut:
        return DecodeError("truncated", f"{cut}, a cut download ({reason})")
    return DecodeError("corrupt", reason)


def open_video(path: str) -> tuple[Any, Any]:
    """(container, first video stream) or DecodeError with the failure kind."""
    head = check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as e:
        reason = f"FFmpeg cannot open it: {_ffmpeg_message(e)}"
        if looks_like_video_container(head):
            raise _corrupt_or_truncated(path, reason) from None
        raise DecodeError("not_video", reason) from None
    except OSError as e:
        raise DecodeError("unreadable", f"cannot open: {e.strerror or e}") from None
    try:
        if container.format.name in _IMAGE_DEMUXERS:
            raise DecodeError("not_video", f"a still image ({container.format.name}), not a video")
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise DecodeError("no_video_stream", f"no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError("unsupported_codec", "FFmpeg has no decoder for the video codec")
        if stream.width * stream.height > _MAX_PIXELS:
            raise DecodeError("corrupt", f"implausible frame size {stream.width}x{stream.height}")
    except DecodeError:
        container.close()
        raise
    return container, stream


def _ffmpeg_message(error: Exception) -> str:
    """FFmpeg's message without the file path (the failure record names the file already)."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        where = f" in {error.filename}" if error.filename and not os.path.sep in str(error.filename) else ""
        return f"{error.strerror}{where}"
    return str(error)


# --- Timing ------------------------------------------------------------------------------
@dataclasses.dataclass
class _StreamState:
    """Filled while frames are read; consulted after the loop (EOF, last frame end)."""

    eof: bool = False
    last_time: float | None = None
    last_duration: float = 0.0


def repaired_times(
    frames: Iterable[Any], time_base: float, default_duration: float, state: _StreamState
) -> Iterator[tuple[float, float, Any]]:
    """(time s, duration s, frame) in display order with monotonic times; see module doc."""
    pending: collections.deque = collections.deque()
    heap: list[float] = []
    last_raw: float | None = None
    last_out: float | None = None
    prev_delta = default_duration

    def emit(frame: Any, time: float) -> tuple[float, float, Any]:
        nonlocal last_out, prev_delta
        if last_out is not None:
            time = max(time, last_out)
            if time > last_out:
                prev_delta = time - last_out
        duration = float(frame.duration * time_base) if frame.duration else prev_delta
        last_out = time
        state.last_time, state.last_duration = time, duration
        return time, duration, frame

    for frame in frames:
        if frame.pts is not None:
            raw = float(frame.pts * time_base)
        else:
            raw = 0.0 if last_raw is None else last_raw + default_duration
        last_raw = raw
        heapq.heappush(heap, raw)
        pending.append(frame)
        if len(pending) > _REORDER_WINDOW:
            yield emit(pending.popleft(), heapq.heappop(heap))
    while pending:
        yield emit(pending.popleft(), heapq.heappop(heap))
    state.eof = True


def native_frames(
    timed: Iterable[tuple[float, float, Any]], duration: float | None, half_interval: float
) -> Iterator[tuple[float, Any]]:
    """Every frame whose time (relative to the clip start) rounds into [0, duration)."""
    for time, _, frame in timed:
        if time < -half_interval:
            continue
        if duration is not None and time >= duration - half_interval:
            return
        yield max(time, 0.0), frame


def resampled_frames(
    timed: Iterable[tuple[float, float, Any]], fps: float, duration: float | None
) -> Iterator[tuple[float, Any]]:
    """Frames at times k / fps, each the frame on screen then (FFmpeg's fps filter, round=near).

    Slot k takes the last frame with time < (k + 0.5) / fps; slots before the first frame
    take the first frame; after the last frame, slots continue until that frame's end
    (time + duration), so variable frame rates and missing durations resample correctly.
    """
    slot = 0
    previous: Any = None
    end = None
    for time, frame_duration, frame in timed:
        if previous is None:
            previous = frame
        while (slot + 0.5) / fps <= time:
            if duration is not None and slot / fps >= duration - _EPS:
                return
            yield slot / fps, previous
            slot += 1
        previous = frame
        end = time + frame_duration
        if duration is not None and time >= duration + 0.5 / fps:
            return
    if previous is None or end is None:
        return
    if duration is not None:
        end = min(end, duration)
    while slot / fps < end - _EPS:
        yield slot / fps, previous
        slot += 1


# --- Pixels --------------------------------------------------------------------------------
def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to short_side (0: unchanged)."""
    if short_side <= 0:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def frame_to_rgb(frame: Any, width: int, height: int, rotation: int) -> np.ndarray:
    """uint8 [height, width, 3] display-oriented RGB from a decoded frame.

    Scales in the source pixel format first (3x cheaper than converting full-size frames
    to RGB), then converts with the frame's own colour matrix, then rotates. (PyAV's
    'rgba' output would save Pillow a copy, but FFmpeg 8's yuv->rgba conversion returns
    memory-dependent garbage for widths that are not a multiple of 16, so: rgb24.)
    """
    quarter = round(rotation / 90) % 4
    coded_w, coded_h = (height, width) if quarter % 2 else (width, height)
    if (frame.width, frame.height) != (coded_w, coded_h):
        frame = frame.reformat(width=coded_w, height=coded_h, interpolation="AREA", threads=1)
    rgb = frame.to_ndarray(format="rgb24", threads=1)
    if quarter:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter))
    return rgb


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# --- Videos --------------------------------------------------------------------------------
def iter_video(
    path: str,
    options: FrameOptions,
    start: float | None = None,
    end: float | None = None,
    info: dict[str, Any] | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """(time since clip start, display RGB frame) for the clip; fills ``info`` as it goes.

    The generator form lets decode_video JPEG-encode frame by frame (bounded memory) and
    lets tests compare the RGB frames before JPEG.
    """
    info = {} if info is None else info
    container, stream = open_video(path)
    state = _StreamState()
    try:
        stream.codec_context.thread_count = options.decode_threads
        if options.decode_threads != 1:
            stream.thread_type = "AUTO"
        time_base = float(stream.time_base)
        native_rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        default_duration = 1.0 / native_rate if native_rate else 1.0 / 30
        trimming = start is not None
        if trimming and start > 0:
            try:
                container.seek(int(start / time_base), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                container.seek(0, stream=stream)
        timed = repaired_times(container.decode(stream), time_base, default_duration, state)
        origin = start if trimming else None
        duration = (end - start) if trimming and end is not None else None

        def relative() -> Iterator[tuple[float, float, Any]]:
            nonlocal origin
            for time, frame_duration, frame in timed:
                if origin is None:
                    origin = time
                yield time - origin, frame_duration, frame

        if options.fps > 0:
            selected = resampled_frames(relative(), options.fps, duration)
            info["frame_rate"] = float(options.fps)
        else:
            selected = native_frames(relative(), duration, 0.5 * default_duration)
            info["frame_rate"] = native_rate or 0.0
        size = None
        for time, frame in selected:
            if size is None:
                rotation = int(getattr(frame, "rotation", 0) or 0)
                quarter = round(rotation / 90) % 4
                shown_w, shown_h = (frame.height, frame.width) if quarter % 2 else (frame.width, frame.height)
                size = target_size(shown_w, shown_h, options.short_side)
                info.update(rotation=rotation, original_width=shown_w, original_height=shown_h)
                info.update(width=size[0], height=size[1], origin=origin)
            yield time, frame_to_rgb(frame, size[0], size[1], rotation)
        info["origin"] = origin
        info["clip_end"] = None if state.last_time is None or origin is None else (
            state.last_time + state.last_duration - origin
        )
        info["eof"] = state.eof
        info["frame_duration"] = default_duration
        if state.eof:
            info["truncated"] = _shortfall(path, container, stream, state, default_duration)
    except av.DecoderNotFoundError:
        raise DecodeError("unsupported_codec", "FFmpeg has no decoder for the video codec") from None
    except av.FFmpegError as e:
        raise _corrupt_or_truncated(path, f"decoding failed: {_ffmpeg_message(e)}") from None
    finally:
        container.close()


def _shortfall(path: str, container: Any, stream: Any, state: _StreamState, frame_duration: float) -> str | None:
    """Why the decoded frames stop before the file's end, or None: the container structure
    is cut (see container_cut_short), or the frames end before the stated duration.

    The video stream's own duration is trusted more than the container's (which may be
    the audio's), hence the looser tolerance for the latter. Tolerances are a few frames:
    the real test files end within 1.5 frames of what they declare.
    """
    cut = container_cut_short(path)
    if cut:
        return f"{cut}, a cut download"
    if state.last_time is None:
        return None
    decoded_end = state.last_time + state.last_duration
    if stream.duration:
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        declared = start + float(stream.duration * stream.time_base)
        tolerance = max(0.1, 2 * frame_duration)
    elif container.duration:
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
        declared = start + container.duration / 1e6
        tolerance = max(0.25, 3 * frame_duration)
    else:
        return None
    if declared - decoded_end > tolerance:
        return f"frames end at {decoded_end:.2f} s but the file declares {declared:.2f} s"
    return None


SHORT_CLIP_POLICIES = ("fail", "keep")


def decode_video(
    path: str,
    options: FrameOptions,
    start: float | None = None,
    end: float | None = None,
    short_clips: str = "fail",
) -> Clip:
    """The whole clip (or [start, end) of the file, in seconds) as JPEG frames.

    A clip shorter than asked (a cut file: "truncated"; a window past the file's end:
    "short") raises DecodeError with that kind when ``short_clips="fail"``; with "keep" it
    is returned with ``Clip.incomplete`` set, so the caller can keep it and say so.
    """
    if short_clips not in SHORT_CLIP_POLICIES:
        raise ValueError(f"short_clips={short_clips!r}: use one of {SHORT_CLIP_POLICIES}")
    if start is not None and end is not None and end <= start:
        raise DecodeError("no_frames", f"empty time window [{start}, {end})")
    info: dict[str, Any] = {}
    frames: list[bytes] = []
    times: list[int] = []
    for time, rgb in iter_video(path, options, start, end, info):
        frames.append(encode_jpeg(rgb, options.jpeg_quality))
        times.append(round(time * 1e6))
    if not frames:
        window = "" if start is None else f" in [{start}, {end})"
        raise DecodeError("no_frames", f"no decodable frames{window}")
    frame_rate = info["frame_rate"]
    if options.fps > 0:
        covered = len(frames) / options.fps
    else:
        covered = info["clip_end"] if info.get("clip_end") is not None else times[-1] / 1e6
        if end is not None and start is not None:
            covered = min(covered, end - start)
        if not frame_rate:
            frame_rate = len(frames) / covered if covered > 0 else 0.0
    incomplete = None
    if info.get("truncated"):
        incomplete = ("truncated", info["truncated"])
    elif start is not None and end is not None and info.get("eof") and info.get("clip_end") is not None:
        wanted = end - start
        tolerance = max(0.1, 2 * info["frame_duration"])
        if info["clip_end"] < wanted - tolerance:
            incomplete = (
                "short",
                f"asked [{start:g}, {end:g}) s but the file ends at {start + info['clip_end']:.2f} s: "
                f"{info['clip_end']:.2f} of {wanted:g} s",
            )
    if incomplete and short_clips == "fail":
        raise DecodeError(*incomplete)
    origin = info["origin"] or 0.0
    start_us = round(max(origin, 0.0) * 1e6)
    return Clip(
        frames=frames,
        timestamps_us=times,
        frame_rate=float(frame_rate),
        height=info["height"],
        width=info["width"],
        original_height=info["original_height"],
        original_width=info["original_width"],
        rotation=info["rotation"],
        start_us=start_us,
        end_us=start_us + round(covered * 1e6),
        incomplete=incomplete,
    )


# --- Images --------------------------------------------------------------------------------
@dataclasses.dataclass
class EncodedImage:
    data: bytes
    height: int
    width: int


def decode_image(path: str, short_side: int, jpeg_quality: int) -> EncodedImage:
    """An image file as JPEG bytes; original bytes are kept when already a plain JPEG.

    EXIF orientation is applied (TF's decode_jpeg ignores it), CMYK/PNG/palette images are
    converted, so every record decodes with tf.io.decode_jpeg(channels=3).
    """
    check_file(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DecodeError("unreadable", f"cannot read: {e.strerror or e}") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise DecodeError("not_image", "not an image format PIL recognises") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        kind = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise DecodeError(kind, f"cannot decode: {e}") from None
    orientation = image.getexif().get(0x0112, 1)
    if image.format == "JPEG" and image.mode in ("RGB", "L") and orientation == 1 and short_side <= 0:
        return EncodedImage(data, image.height, image.width)
    image = ImageOps.exif_transpose(image).convert("RGB")
    width, height = target_size(image.width, image.height, short_side)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=jpeg_quality)
    return EncodedImage(buffer.getvalue(), height, width)
