"""The pure-Python record encoder must produce exactly what TensorFlow would, and TF readers must read it."""
import io
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_prep import tfrecord
from tfsts.data import schema


def _jpeg(value: int, size=(6, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _video_kwargs(**overrides):
    kwargs = dict(
        media_id="abc_000001_000011",
        label_index=7,
        label_text="arm wrestling (\u00e9)",
        frame_rate=29.97,
        data_path="arm_wrestling/abc_000001_000011.mp4",
        start_us=1_000_000,
        end_us=11_000_000,
        height=6,
        width=8,
        original_height=480,
        original_width=640,
        rotation=-90,
    )
    kwargs.update(overrides)
    return kwargs


def test_video_bytes_equal_tensorflow_deterministic_serialization():
    frames = [_jpeg(10), _jpeg(200), _jpeg(90)]
    stamps = [0, 33_367, 66_733]
    ours = schema.encode_video(frames, stamps, **_video_kwargs())
    reference = tf.train.SequenceExample()
    context = reference.context.feature
    context[schema.MEDIA_ID].bytes_list.value.append(b"abc_000001_000011")
    context[schema.LABEL_INDEX].int64_list.value.append(7)
    context[schema.LABEL_TEXT].bytes_list.value.append("arm wrestling (\u00e9)".encode())
    context[schema.FRAME_RATE].float_list.value.append(29.97)
    context[schema.NUM_FRAMES].int64_list.value.append(3)
    context[schema.DATA_PATH].bytes_list.value.append(b"arm_wrestling/abc_000001_000011.mp4")
    context[schema.START_TIMESTAMP].int64_list.value.append(1_000_000)
    context[schema.END_TIMESTAMP].int64_list.value.append(11_000_000)
    context[schema.ORIGINAL_HEIGHT].int64_list.value.append(480)
    context[schema.ORIGINAL_WIDTH].int64_list.value.append(640)
    context[schema.ROTATION].int64_list.value.append(-90)
    context[schema.IMAGE_HEIGHT].int64_list.value.append(6)
    context[schema.IMAGE_WIDTH].int64_list.value.append(8)
    context[schema.IMAGE_FORMAT].bytes_list.value.append(b"jpeg")
    lists = reference.feature_lists.feature_list
    for frame, stamp in zip(frames, stamps):
        lists[schema.IMAGE_ENCODED].feature.add().bytes_list.value.append(frame)
        lists[schema.IMAGE_TIMESTAMP].feature.add().int64_list.value.append(stamp)
    assert ours == reference.SerializeToString(deterministic=True)


def test_image_bytes_equal_tensorflow_and_negative_and_empty_values():
    ours = schema.encode_image(_jpeg(3), label_index=-1, label_text="", filename="n01/x.JPEG", height=6, width=8)
    parsed = tf.train.Example.FromString(ours)
    assert parsed.SerializeToString(deterministic=True) == ours
    assert parsed.features.feature[schema.IMAGE_CLASS_LABEL].int64_list.value == [-1]
    for values in ([], [0], [2**63 - 1], [-(2**63)], [1, -1, 300]):
        feature = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        assert schema.int64_feature(values) == feature.SerializeToString(deterministic=True)
    for values in ([], [0.5, -2.25]):
        feature = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        assert schema.float_feature(values) == feature.SerializeToString(deterministic=True)


def test_tf_parse_helpers_and_tf_record_reader(tmp_path):
    frames = [_jpeg(v) for v in (0, 128, 255)]
    video = schema.encode_video(frames, [0, 40_000, 80_000], **_video_kwargs())
    image = schema.encode_image(_jpeg(50), label_index=3, label_text="cat", filename="cat/1.jpg", height=6, width=8)
    path = tmp_path / "x.tfrecord"
    path.write_bytes(tfrecord.frame_record(video) + tfrecord.frame_record(image))
    # TensorFlow's own reader checks our framing and CRCs.
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert records == [video, image] == list(tfrecord.read_records(str(path)))
    assert schema.is_video_record(video) and not schema.is_video_record(image)
    context, sequence = schema.parse_video(records[0])
    assert int(context[schema.NUM_FRAMES]) == 3 and int(context[schema.LABEL_INDEX]) == 7
    assert context[schema.LABEL_TEXT].numpy().decode() == "arm wrestling (\u00e9)"
    assert sequence[schema.IMAGE_TIMESTAMP].numpy().tolist() == [0, 40_000, 80_000]
    decoded = schema.decode_frames(sequence[schema.IMAGE_ENCODED]).numpy()
    assert decoded.shape == (3, 6, 8, 3)
    assert [int(round(decoded[i].mean())) for i in range(3)] == pytest.approx([0, 128, 255], abs=2)
    features = schema.parse_image(records[1])
    assert int(features[schema.IMAGE_CLASS_LABEL]) == 3 and features[schema.IMAGE_CLASS_TEXT].numpy() == b"cat"


def test_tf_writer_output_matches_ours_and_corruption_is_detected(tmp_path):
    payload = schema.encode_image(_jpeg(9), label_index=1, label_text="a", filename="a", height=6, width=8)
    tf_path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(tf_path) as writer:
        writer.write(payload)
    with open(tf_path, "rb") as f:
        assert f.read() == tfrecord.frame_record(payload)
    damaged = bytearray(tfrecord.frame_record(payload))
    damaged[40] ^= 0xFF
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(tfrecord.CorruptRecordError, match="checksum"):
        list(tfrecord.read_records(str(bad)))
    bad.write_bytes(tfrecord.frame_record(payload)[:-3])
    with pytest.raises(tfrecord.CorruptRecordError, match="truncated"):
        list(tfrecord.read_records(str(bad)))


def test_schema_and_writer_import_without_tensorflow():
    """Beam workers import the writer; it must not pull TensorFlow in (seconds and ~550 MB per worker)."""
    import subprocess

    code = "import sys, data_prep.writer, data_prep.pipeline; print('tensorflow' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
