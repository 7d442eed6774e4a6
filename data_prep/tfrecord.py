"""TFRecord framing without TensorFlow (so Beam workers never import TF).

Format: uint64 length, masked crc32c(length), data, masked crc32c(data), little endian;
identical to tf.io.TFRecordWriter's uncompressed output.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

import google_crc32c

_MASK_DELTA = 0xA282EAD8


class CorruptRecordError(ValueError):
    """A TFRecord file whose framing or checksums do not hold."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record with its TFRecord header and footer."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))


def iter_records(stream: BinaryIO, name: str = "<stream>") -> Iterator[bytes]:
    """Records of a TFRecord stream, checking both CRCs of every record."""
    index = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecordError(f"{name}: record {index}: truncated header")
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc(header[:8]) != length_crc:
            raise CorruptRecordError(f"{name}: record {index}: length checksum mismatch")
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4:
            raise CorruptRecordError(f"{name}: record {index}: truncated data")
        if masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise CorruptRecordError(f"{name}: record {index}: data checksum mismatch")
        yield data
        index += 1


def read_records(path: str) -> Iterator[bytes]:
    """Records of a TFRecord file (CRC-checked)."""
    with open(path, "rb") as f:
        yield from iter_records(f, path)


def read_record(path: str, index: int) -> bytes:
    """Record number ``index`` (from 0) of a TFRecord file."""
    count = 0
    for record in read_records(path):
        if count == index:
            return record
        count += 1
    raise IndexError(f"{path} has {count} records; there is no record {index}")
