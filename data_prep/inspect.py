"""A contact sheet of one record, so a person can look at what went into the shards.

    python -m data_prep.inspect /data/k400_tfrecords/train-00000-of-00100.tfrecord --index 3 --out sheet.png

Video records: up to --max_frames frames spread over the clip, each with its index and
timestamp, under a header with id, label, frame count and rate, sizes and source path.
Image records: the image with its label. Parsing goes through tfsts.data.schema (the
reader's parser), so what you see is what training will read.
"""
from __future__ import annotations

import io
import sys
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from data_prep.tfrecord import read_record
from tfsts.data import schema


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def describe(record: bytes) -> dict[str, Any]:
    """Header fields and decoded frames (a list of (caption, RGB array)) of one record."""
    if schema.is_video_record(record):
        context, sequence = schema.parse_video(record)
        text = {k: (v.numpy().decode() if v.dtype.name == "string" else v.numpy().item()) for k, v in context.items()}
        encoded = [e for e in sequence[schema.IMAGE_ENCODED].numpy()]
        stamps = sequence[schema.IMAGE_TIMESTAMP].numpy().tolist()
        header = [
            f"{text[schema.MEDIA_ID]}   label {text[schema.LABEL_INDEX]}: {text[schema.LABEL_TEXT] or '(unlabeled)'}",
            f"{len(encoded)} frames @ {text[schema.FRAME_RATE]:.3f} fps, {text[schema.IMAGE_WIDTH]}x"
            f"{text[schema.IMAGE_HEIGHT]} (source {text[schema.ORIGINAL_WIDTH]}x{text[schema.ORIGINAL_HEIGHT]}, "
            f"rotation {text[schema.ROTATION]}), "
            f"[{text[schema.START_TIMESTAMP] / 1e6:.2f} s, {text[schema.END_TIMESTAMP] / 1e6:.2f} s)",
            f"{text[schema.DATA_PATH]}",
        ]
        return {"header": header, "encoded": encoded, "timestamps": stamps}
    features = schema.parse_image(record)
    label = int(features[schema.IMAGE_CLASS_LABEL])
    header = [
        f"{features[schema.IMAGE_FILENAME].numpy().decode()}",
        f"label {label}: {features[schema.IMAGE_CLASS_TEXT].numpy().decode()}, "
        f"{int(features[schema.IMAGE_WIDTH])}x{int(features[schema.IMAGE_HEIGHT])}",
    ]
    return {"header": header, "encoded": [features[schema.IMAGE_ENCODED].numpy()], "timestamps": [0]}


def pick_frames(count: int, max_frames: int) -> list[int]:
    """min(max_frames, count) frame indices spread evenly over all ``count`` frames, first
    and last included (every frame when the clip has no more than max_frames)."""
    wanted = min(max_frames, count)
    if wanted <= 1:
        return [0] if count else []
    return [round(i * (count - 1) / (wanted - 1)) for i in range(wanted)]


def contact_sheet(record: bytes, max_frames: int = 16, columns: int = 4, tile_height: int = 160) -> Image.Image:
    """The sheet as a PIL image."""
    info = describe(record)
    encoded, stamps = info["encoded"], info["timestamps"]
    chosen = pick_frames(len(encoded), max_frames)
    tiles = []
    for index in chosen:
        image = Image.open(io.BytesIO(encoded[index])).convert("RGB")
        width = max(1, round(image.width * tile_height / image.height))
        tiles.append((index, image.resize((width, tile_height), Image.Resampling.BILINEAR)))
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    tile_width = max(t.width for _, t in tiles)
    font, small = _font(15), _font(12)
    caption, header_height, pad = 16, 22 * len(info["header"]) + 8, 6
    sheet = Image.new(
        "RGB",
        (max(columns * (tile_width + pad) + pad, 640), header_height + rows * (tile_height + caption + pad) + pad),
        (24, 24, 24),
    )
    draw = ImageDraw.Draw(sheet)
    for line_number, line in enumerate(info["header"]):
        draw.text((pad, 4 + 22 * line_number), line, fill=(240, 240, 240), font=font)
    for position, (index, tile) in enumerate(tiles):
        x = pad + (position % columns) * (tile_width + pad)
        y = header_height + (position // columns) * (tile_height + caption + pad)
        sheet.paste(tile, (x, y))
        draw.text((x, y + tile_height + 1), f"#{index}  t={stamps[index] / 1e6:.2f}s", fill=(200, 200, 200), font=small)
    return sheet


def main(argv: list[str]) -> int:
    from absl import flags

    if len(argv) != 2:
        print("usage: python -m data_prep.inspect RECORD_FILE --index N --out sheet.png", file=sys.stderr)
        return 2
    options = flags.FLAGS
    try:
        record = read_record(argv[1], options.index)
    except (OSError, IndexError, ValueError) as e:
        print(f"data_prep.inspect: {e}", file=sys.stderr)
        return 1
    sheet = contact_sheet(record, options.max_frames, options.columns, options.tile_height)
    try:
        sheet.save(options.out)
    except (OSError, ValueError) as e:
        print(f"data_prep.inspect: error: --out {options.out}: {e}", file=sys.stderr)
        return 2
    info = describe(record)
    print("\n".join(info["header"]))
    print("frames shown: " + ", ".join(f"#{i}" for i in pick_frames(len(info["encoded"]), options.max_frames)))
    print(f"wrote {options.out} ({sheet.width}x{sheet.height})")
    return 0


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_integer("index", 0, "Record number in the file (from 0).", lower_bound=0)
    flags.DEFINE_string("out", "sheet.png", "Where to write the contact sheet.")
    flags.DEFINE_integer("max_frames", 16, "Frames on the sheet, spread evenly over the clip.", lower_bound=1)
    flags.DEFINE_integer("columns", 4, "Frames per row.", lower_bound=1)
    flags.DEFINE_integer("tile_height", 160, "Height of each frame on the sheet.", lower_bound=16)
    from data_prep import cli

    app.run(main, flags_parser=cli.parse_flags)
