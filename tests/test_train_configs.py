"""Every config file loads, builds its model and its input pipeline at tiny sizes; the CLI's
user errors; the demo config learns on records written by data_prep."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests import data_pipeline_helpers
from tfsts.training import config as config_lib
from tfsts.training import datasets, modeling
from tfsts.training.demo_data import make_demo_data

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.py") if p.name not in ("__init__.py", "common.py"))
TINY_FRAMES, TINY_CROP = 8, 64


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory):
    return make_demo_data(str(tmp_path_factory.mktemp("demo")), videos_per_class=4, val_per_class=1)


@pytest.fixture(scope="module")
def image_records(tmp_path_factory):
    return str(data_pipeline_helpers.make_image_records(tmp_path_factory.mktemp("images"), 8, classes=4, size=(80, 64)))


def _load(path):
    old = os.getcwd()
    os.chdir(REPO)
    try:
        return config_lib.load_config_file(path)
    finally:
        os.chdir(old)


def _tiny(config, demo_records, image_records):
    """The config on tiny data: 4 classes, 8 frames at 64 x 64, batch 2, the demo records."""
    config.train.global_batch_size = 2
    config.train.precision = "float32"
    config.init.checkpoint = ""
    config.init.keras_weights = ""
    for src in config.data.sources.values():
        folder = demo_records if src.kind == "video" else image_records
        src.train_pattern, src.eval_pattern = f"{folder}/train-*.tfrecord", f"{folder}/{'val' if src.kind == 'video' else 'train'}-*.tfrecord"
        src.num_classes = 4
        src.num_frames = TINY_FRAMES if src.num_frames > 1 or len(config.data.sources) > 1 else 1
        src.crop_size, src.short_side, src.eval_short_side, src.eval_crop_size = TINY_CROP, 64, 64, 0
        src.eval_num_clips = min(src.eval_num_clips, 2)
        src.label_map = ""
    return config


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_loads_builds_model_and_pipeline(path, demo_records, image_records):
    config = _load(path)
    doc = (REPO / path).read_text().split('"""')[1]
    assert "python -m tfsts.train --config=" + path in doc.replace("\\\n", "").replace("  ", " ") or (
        f"--config={path}" in doc
    ), "the docstring gives the command"
    config_lib.validate(config)
    config_lib.total_steps(config)
    assert config_lib.lr_for(config) > 0
    tiny = _tiny(config, demo_records, image_records)
    model = modeling.build_model_from_config(tiny)
    frames = TINY_FRAMES if len(tiny.data.sources) > 1 or any(s.num_frames > 1 for s in tiny.data.sources.values()) else 1
    assert tuple(model.inputs[0].shape[1:]) == (frames, TINY_CROP, TINY_CROP, 3)
    assert model.layers[1].name == "input_normalization"
    if len(tiny.data.sources) > 1:
        assert {k: v.shape[-1] for k, v in model.output.items()} == {n: 4 for n in tiny.data.sources}
    batch = next(iter(datasets.train_dataset_fn(tiny)(tf.distribute.InputContext())))
    assert batch["frames"].shape == (2, frames, TINY_CROP, TINY_CROP, 3) and batch["frames"].dtype == tf.uint8
    assert set(np.asarray(batch["source"])) <= set(range(len(tiny.data.sources)))
    logits = model(tf.cast(batch["frames"], tf.float32))
    assert all(np.isfinite(np.asarray(v)).all() for v in (logits.values() if isinstance(logits, dict) else [logits]))


def test_recipe_numbers_follow_the_reference():
    c = _load("configs/kinetics400/slowonly_r50_sts.py")
    assert (c.train.global_batch_size, c.optimizer.lr, c.train.epochs, c.optimizer.clip_norm) == (128, 0.02, 50, 40.0)
    assert c.model.sts is True and c.data.sources.kinetics400.num_frames == 8 and c.data.sources.kinetics400.frame_interval == 8
    x3d = _load("configs/kinetics400/x3d_s_sts.py")
    assert (x3d.train.global_batch_size, x3d.optimizer.lr, x3d.data.sources.kinetics400.num_frames) == (256, 0.02, 13)
    ssv2 = _load("configs/ssv2/ircsn50_sts.py")
    assert (ssv2.train.global_batch_size, ssv2.optimizer.lr, ssv2.data.sources.ssv2.sampling) == (64, 0.1, "uniform")
    assert ssv2.data.sources.ssv2.options.flip is False
    image = _load("configs/imagenet/pretrain_3d.py:slowonly_r50")
    assert (image.model.name, image.train.loss, image.optimizer.name, image.data.sources.imagenet.num_frames) == (
        "slowonly_r50", "bce", "lamb", 1)
    imagenet = image.data.sources.imagenet
    assert (imagenet.randaugment_magnitude, imagenet.randaugment_num_ops, image.model.drop_path) == (7.0, 2, 0.05)
    for name in ("ircsn_50", "r2plus1d_34", "slowfast_r50_4x16", "slowfast_r50_8x8", "slowonly_r50", "x3d_s"):
        assert modeling._builder_accepts(name, "drop_path_rate"), name  # the recipe's drop-path reaches each
    ssv2.train.global_batch_size = 16  # linear scaling from the reference batch 64
    assert config_lib.lr_for(ssv2) == pytest.approx(0.025)


def _cli(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfsts.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _own_lines(stderr):
    """stderr less TensorFlow's C++ start-up lines (oneDNN / CUDA notices it prints on import)."""
    return [l for l in stderr.strip().splitlines() if not l.startswith(("WARNING: All log", "I0000", "E0000", "W0000"))]


def test_cli_unknown_key_is_one_line_naming_the_nearest_key(tmp_path):
    run = _cli("--config=configs/demo/tiny_resnet.py", f"--workdir={tmp_path}", "--config.optimizer.learning_rate=0.1")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "tfsts.train: error: unknown config key config.optimizer.learning_rate; nearest valid key: config.optimizer.min_lr"
    )
    run = _cli("--config=configs/demo/tiny_resnet.py", f"--workdir={tmp_path}", "--config.train.global_bach_size=4")
    assert run.stderr.strip() == (
        "tfsts.train: error: unknown config key config.train.global_bach_size; nearest valid key: config.train.global_batch_size"
    )
    run = _cli("--config=configs/demo/nope.py", f"--workdir={tmp_path}")
    assert run.returncode == 2 and run.stderr.strip() == "tfsts.train: error: --config=configs/demo/nope.py: no such file."


def test_cli_missing_data_and_label_map_mismatch_are_one_line(tmp_path, demo_records):
    run = _cli("--config=configs/demo/tiny_resnet.py", f"--workdir={tmp_path}/a",
               f"--config.data.sources.demo.train_pattern={tmp_path}/none/train-*.tfrecord")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert _own_lines(run.stderr) == [
        f"tfsts.train: error: config.data.sources.demo.train_pattern = '{tmp_path}/none/train-*.tfrecord': the folder "
        f"{tmp_path}/none does not exist. Write the records with data_prep first, or point the pattern at them."
    ]
    run = _cli("--config=configs/demo/tiny_resnet.py", f"--workdir={tmp_path}/b",
               f"--config.data.sources.demo.train_pattern={demo_records}/train-*.tfrecord",
               "--config.data.sources.demo.num_classes=5")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert _own_lines(run.stderr) == [
        f"tfsts.train: error: source 'demo': head size config.data.sources.demo.num_classes = 5 but the label map "
        f"{demo_records}/label_map.txt has 4 classes; set --config.data.sources.demo.num_classes=4."
    ]


def test_sts_on_a_model_without_sts_is_a_config_error():
    c = _load("configs/demo/tiny_resnet.py")
    c.model.sts = True
    with pytest.raises(config_lib.ConfigError, match=r"'resnet3d_10' has no STS convolution; run with --config.model.sts=False"):
        modeling.build_model_from_config(c)


def test_demo_sts_runs_differ_from_the_no_sts_runs_in_sts_only():
    """The demo's "STS vs no STS" compares one network with STS on and off: the same layers,
    weight names and shapes (weights move between them), the same MACs (204.2 M per clip of
    8x32x32, counted branch by branch for STS), and only the depthwise convs' `sts` differs.
    (ir-CSN's no-STS default temporal strides would give the no-STS runs 129.2 M.)"""
    from tfsts import flops
    from tfsts.layers import STSConv3D

    built = {v: modeling.build_model_from_config(_load(f"configs/demo/digits.py:{v},records")) for v in ("image_plain", "image_sts")}
    plain, sts = built["image_plain"], built["image_sts"]
    assert [(w.path, w.shape) for w in plain.weights] == [(w.path, w.shape) for w in sts.weights]
    assert flops.count_macs(plain) == flops.count_macs(sts) == 204_173_312
    differing = [a.name for a, b in zip(plain.layers, sts.layers) if a.get_config() != b.get_config()]
    sts_convs = [layer.name for layer in sts.layers if isinstance(layer, STSConv3D) and layer.sts]
    assert len(sts_convs) == 4 and differing == sts_convs
    for name in sts_convs:
        config = sts.get_layer(name).get_config()
        assert {**config, "sts": False} == plain.get_layer(name).get_config()


def test_demo_config_learns_on_data_prep_records(tmp_path, demo_records):
    """The demo config through the CLI and tfsts.data (one-source mixture), 60 steps,
    deterministic (in a subprocess: op determinism is process-global): the mean loss of the
    last 10 steps is well below chance (ln 4; the heads start at normal(0, 0.01), so the first
    steps' loss is about chance) and the final validation, on the 4 held-out videos, gets
    every one right (measured: last-10 loss 0.98 against ln 4 = 1.39, top-1 1.0)."""
    run = _cli("--config=configs/demo/tiny_resnet.py", f"--workdir={tmp_path}",
               f"--config.data.sources.demo.train_pattern={demo_records}/train-*.tfrecord",
               f"--config.data.sources.demo.eval_pattern={demo_records}/val-*.tfrecord",
               "--config.train.num_steps=60", "--config.train.log_every=1", "--config.train.eval_every=60",
               "--config.train.progress_bar=False", "--config.deterministic=True")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("done at step 60; workdir ")
    records = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.8 * np.log(4) and np.mean(losses[-10:]) < np.mean(losses[:10]), losses
    final = [r for r in records if "eval/top1" in r]
    assert [r["step"] for r in final] == [60] and final[0]["eval/demo/num_videos"] == 4
    assert final[0]["eval/top1"] == 1.0, final
    assert (tmp_path / "learning_curve.png").exists()
