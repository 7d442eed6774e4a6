"""A tiny trained run for the evaluation, export and prediction tests: real videos written to
TFRecords by data_prep, a config file, two real training steps, a real checkpoint."""
from __future__ import annotations

import textwrap
from pathlib import Path

from tests.data_pipeline_helpers import make_video_records

# Frames 40 x 32 (short side 32): evaluation crops 32 x 32 without resizing, three crops at
# x = 0, 4, 8 along the 40-pixel side.
WIDTH, HEIGHT = 40, 32

CONFIG_TEMPLATE = '''
"""Tiny test config: resnet3d_10 at width 1/8 on 4-frame 32x32 clips."""
from tfsts.training import config as config_lib


def get_config():
    c = config_lib.base_config()
    c.model.name = "resnet3d_10"
    c.model.kwargs.widen_factor = 0.125
    c.model.dropout = 0.0
{sources}
    c.train.global_batch_size = 4
    c.train.num_steps = 2
    c.train.checkpoint_every = 2
    c.train.log_every = 1
    c.train.progress_bar = False
    c.optimizer.lr = 0.05
    c.optimizer.lr_reference_batch = 4
    return c
'''

SOURCE_TEMPLATE = (
    '    c.data.sources["{name}"] = config_lib.source("video", train_pattern="{pattern}", eval_pattern="{pattern}", '
    "num_classes={classes}, num_frames=4, frame_interval=2, sampling=\"{sampling}\", crop_size=32, short_side=32, "
    "eval_short_side=32, eval_num_clips={clips}, eval_num_crops={crops})"
)


def make_records(root: Path, num_videos: int, num_classes: int, first_length: int = 12) -> str:
    """num_videos flat index-valued videos of first_length, first_length + 1, ... frames, label
    i % num_classes; returns the shards' glob."""
    videos = {f"vid{i:02d}": ("flat", first_length + i, i % num_classes) for i in range(num_videos)}
    out = make_video_records(root, videos, size=(WIDTH, HEIGHT))
    return str(out / "train-*.tfrecord")


def write_config(path: Path, sources: dict[str, dict]) -> Path:
    lines = [SOURCE_TEMPLATE.format(name=n, **s) for n, s in sources.items()]
    path.write_text(textwrap.dedent(CONFIG_TEMPLATE.format(sources="\n".join(lines))))
    return path


def trained_run(root: Path, sources: dict[str, dict]) -> tuple[Path, Path]:
    """(config file, workdir) after two training steps."""
    from tfsts.training import config as config_lib
    from tfsts.training import train

    config_path = write_config(root / "config.py", sources)
    workdir = root / "run"
    train(config_lib.load_config_file(str(config_path)), str(workdir))
    return config_path, workdir


def shared_run(tmp_path_factory) -> dict:
    """One tiny trained single-source run per test session (built on first use, then reused by
    every evaluation / export / predict test module): records, config, workdir, video files."""
    root = tmp_path_factory.getbasetemp() / "tiny_trained_run"
    done = root / "done"
    paths = {
        "root": root,
        "pattern": str(root / "data" / "records" / "train-*.tfrecord"),
        "videos": root / "data" / "videos",
        "config": root / "config.py",
        "workdir": root / "run",
    }
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        pattern = make_records(root / "data", 6, 3)
        assert pattern == paths["pattern"]
        trained_run(root, {"toy": dict(pattern=pattern, classes=3, sampling="dense", clips=2, crops=3)})
        done.write_text("ok")
    return paths
