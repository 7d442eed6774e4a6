"""The on-disk record schema shared by data_prep (writer), the input pipeline (reader) and export.

Videos are stored as one ``tf.train.SequenceExample`` per clip, images as one
``tf.train.Example`` per image. Key names follow the TF Model Garden / DMVR /
MediaSequence conventions so that their readers work on our files unchanged.

Encoding is done here in pure Python (a few dozen lines of protobuf wire format)
instead of through ``tf.train.*`` protos, because the writer runs inside Apache Beam
workers: importing TensorFlow there costs ~3 s and ~550 MB per worker process and
ties the workers to TF. The bytes are exactly what
``proto.SerializeToString(deterministic=True)`` produces (map keys sorted, packed
numeric lists), which tests/test_data_prep_schema.py checks against TensorFlow.
Parsing helpers use TensorFlow and import it lazily.
"""
from __future__ import annotations

import struct
from typing import Any, Iterable, Mapping, Sequence

# Bumped when the meaning or set of keys changes; written into data_prep manifests.
SCHEMA_VERSION = 1

# --- Video: SequenceExample context features -------------------------------------------
MEDIA_ID = "clip/media_id"  # bytes: dataset id (Kinetics "{ytid}_{start:06d}_{end:06d}", SSv2 "78687")
LABEL_INDEX = "clip/label/index"  # int64: class index, -1 when the split has no labels (test sets)
LABEL_TEXT = "clip/label/text"  # bytes: class name ("" when unlabeled)
FRAME_RATE = "clip/frame_rate"  # float: frames per second of the stored frames
NUM_FRAMES = "clip/num_frames"  # int64: number of stored frames
DATA_PATH = "clip/data_path"  # bytes: source file, relative to the videos root
START_TIMESTAMP = "clip/start/timestamp"  # int64: microseconds into the source file (DMVR)
END_TIMESTAMP = "clip/end/timestamp"  # int64: microseconds into the source file (DMVR)
ORIGINAL_HEIGHT = "clip/original/height"  # int64: displayed source height (rotation applied)
ORIGINAL_WIDTH = "clip/original/width"  # int64: displayed source width (rotation applied)
ROTATION = "clip/original/rotation"  # int64: degrees counter-clockwise applied from the display matrix
IMAGE_HEIGHT = "image/height"  # int64: height of every stored frame (MediaSequence)
IMAGE_WIDTH = "image/width"  # int64: width of every stored frame (MediaSequence)
IMAGE_FORMAT = "image/format"  # bytes: b"jpeg"

# --- Video: SequenceExample sequence features (one entry per frame) ---------------------
IMAGE_ENCODED = "image/encoded"  # bytes: one JPEG per frame
IMAGE_TIMESTAMP = "image/timestamp"  # int64: microseconds since the clip start

# --- Images: Example features ----------------------------------------------------------
# IMAGE_ENCODED, IMAGE_FORMAT, IMAGE_HEIGHT, IMAGE_WIDTH as above, plus:
IMAGE_CLASS_LABEL = "image/class/label"  # int64
IMAGE_CLASS_TEXT = "image/class/text"  # bytes
IMAGE_FILENAME = "image/filename"  # bytes: source file relative to its root

JPEG_FORMAT = b"jpeg"


# --- Protobuf wire format ----------------------------------------------------------------
def _varint(value: int) -> bytes:
    if value < 0:  # int64 negatives are 10-byte two's complement varints
        value += 1 << 64
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def bytes_feature(values: Iterable[bytes]) -> bytes:
    """Serialized tf.train.Feature holding a BytesList."""
    return _len_field(1, b"".join(_len_field(1, v) for v in values))


def int64_feature(values: Iterable[int]) -> bytes:
    """Serialized tf.train.Feature holding an Int64List (packed)."""
    packed = b"".join(_varint(int(v)) for v in values)
    return _len_field(3, _len_field(1, packed) if packed else b"")


def float_feature(values: Sequence[float]) -> bytes:
    """Serialized tf.train.Feature holding a FloatList (packed float32)."""
    packed = struct.pack(f"<{len(values)}f", *values)
    return _len_field(2, _len_field(1, packed) if packed else b"")


def _map(entries: Mapping[str, bytes]) -> bytes:
    """A proto map<string, Message> as field 1, keys sorted like deterministic serialization."""
    return b"".join(
        _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, entries[key]))
        for key in sorted(entries)
    )


def features(feature_map: Mapping[str, bytes]) -> bytes:
    """Serialized tf.train.Features from {key: serialized Feature}."""
    return _map(feature_map)


def example(feature_map: Mapping[str, bytes]) -> bytes:
    """Serialized tf.train.Example."""
    return _len_field(1, features(feature_map))


def sequence_example(context: Mapping[str, bytes], feature_lists: Mapping[str, Sequence[bytes]]) -> bytes:
    """Serialized tf.train.SequenceExample; feature_lists maps key -> serialized Features."""
    lists = {key: b"".join(_len_field(1, f) for f in feats) for key, feats in feature_lists.items()}
    return _len_field(1, features(context)) + _len_field(2, _map(lists))


def _text(value: str) -> bytes:
    return value.encode("utf-8")


def encode_video(
    frames: Sequence[bytes],
    timestamps_us: Sequence[int],
    *,
    media_id: str,
    label_index: int,
    label_text: str,
    frame_rate: float,
    data_path: str,
    start_us: int,
    end_us: int,
    height: int,
    width: int,
    original_height: int,
    original_width: int,
    rotation: int = 0,
) -> bytes:
    """One clip as a serialized SequenceExample (JPEG frames + context)."""
    if len(frames) != len(timestamps_us):
        raise ValueError(f"{len(frames)} frames but {len(timestamps_us)} timestamps")
    context = {
        MEDIA_ID: bytes_feature([_text(media_id)]),
        LABEL_INDEX: int64_feature([label_index]),
        LABEL_TEXT: bytes_feature([_text(label_text)]),
        FRAME_RATE: float_feature([frame_rate]),
        NUM_FRAMES: int64_feature([len(frames)]),
        DATA_PATH: bytes_feature([_text(data_path)]),
        START_TIMESTAMP: int64_feature([start_us]),
        END_TIMESTAMP: int64_feature([end_us]),
        ORIGINAL_HEIGHT: int64_feature([original_height]),
        ORIGINAL_WIDTH: int64_feature([original_width]),
        ROTATION: int64_feature([rotation]),
        IMAGE_HEIGHT: int64_feature([height]),
        IMAGE_WIDTH: int64_feature([width]),
        IMAGE_FORMAT: bytes_feature([JPEG_FORMAT]),
    }
    sequence = {
        IMAGE_ENCODED: [bytes_feature([f]) for f in frames],
        IMAGE_TIMESTAMP: [int64_feature([t]) for t in timestamps_us],
    }
    return sequence_example(context, sequence)


def encode_image(
    encoded: bytes,
    *,
    label_index: int,
    label_text: str,
    filename: str,
    height: int,
    width: int,
    image_format: bytes = JPEG_FORMAT,
) -> bytes:
    """One image as a serialized Example (Model Garden classification keys)."""
    return example(
        {
            IMAGE_ENCODED: bytes_feature([encoded]),
            IMAGE_FORMAT: bytes_feature([image_format]),
            IMAGE_HEIGHT: int64_feature([height]),
            IMAGE_WIDTH: int64_feature([width]),
            IMAGE_CLASS_LABEL: int64_feature([label_index]),
            IMAGE_CLASS_TEXT: bytes_feature([_text(label_text)]),
            IMAGE_FILENAME: bytes_feature([_text(filename)]),
        }
    )


# --- Parsing (TensorFlow) ----------------------------------------------------------------
def video_context_spec() -> dict[str, Any]:
    """Context feature spec for tf.io.parse_(single_)sequence_example."""
    import tensorflow as tf

    return {
        MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        LABEL_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        DATA_PATH: tf.io.FixedLenFeature([], tf.string, default_value=""),
        START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        END_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        ORIGINAL_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        ORIGINAL_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        ROTATION: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=JPEG_FORMAT),
    }


def video_sequence_spec() -> dict[str, Any]:
    """Sequence feature spec: frames and their timestamps."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
        IMAGE_TIMESTAMP: tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    }


def image_spec() -> dict[str, Any]:
    """Feature spec for image Examples."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=JPEG_FORMAT),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_CLASS_LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        IMAGE_CLASS_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def parse_video(serialized: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(context, sequence) tensors of one serialized video SequenceExample."""
    import tensorflow as tf

    return tf.io.parse_single_sequence_example(
        serialized, context_features=video_context_spec(), sequence_features=video_sequence_spec()
    )


def parse_image(serialized: Any) -> dict[str, Any]:
    """Feature tensors of one serialized image Example."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, image_spec())


def decode_frames(encoded: Any) -> Any:
    """uint8 [T, H, W, 3] from a [T] string tensor of JPEG frames (core TF ops only)."""
    import tensorflow as tf

    return tf.map_fn(
        lambda x: tf.io.decode_jpeg(x, channels=3),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )


def is_video_record(serialized: bytes) -> bool:
    """True for a video SequenceExample, False for an image Example.

    Both begin with field 1 (context / features); only a SequenceExample goes on with
    field 2 (feature_lists), so skipping the first field tells them apart without TF.
    """
    if not serialized or serialized[0] != 0x0A:
        return False
    length, pos = _read_varint(serialized, 1)
    pos += length
    return serialized[pos : pos + 1] == b"\x12"


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos
