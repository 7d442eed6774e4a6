"""The demo's training runs on the moving-digits data (tfsts.demo_data), one variant per call.

`python -m tfsts.demo` runs all of them for you. By hand, after `python -m tfsts.demo` has
written the records (or after running data_prep on `python -m tfsts.demo_data --out D`):

    python -m tfsts.train --config=configs/demo/digits.py:pretrain_images,DIR/records --workdir=DIR/runs/pretrain
    python -m tfsts.train --config=configs/demo/digits.py:cotrain_sts,DIR/records --workdir=DIR/runs/cotrain \\
        --config.init.checkpoint=DIR/runs/pretrain

Variants (the argument before the comma; after it, the folder holding data_prep's outputs
`kinetics/`, `ssv2/`, `images/`):

| variant | data | init | STS |
|---|---|---|---|
| pretrain_images | digit images, T = 1 (the 3D net itself on images) | random | off |
| scratch | Kinetics-layout motions | random | off |
| image_plain | Kinetics-layout motions | init.checkpoint (image run) | off |
| image_sts | Kinetics-layout motions | init.checkpoint | on |
| ssv2_image_sts | SSv2-layout motions | init.checkpoint | on |
| cotrain_sts | both motion sets + the images, one head each (CoVeR) | init.checkpoint | on |

Every video variant has the same budget: `train.num_steps` steps of `global_batch_size` clips
of 8 frames at 32 px, AdamW, the same schedule. Expected result (`python -m tfsts.demo --full`,
validation top-1 %, mean ± std over seeds 0-2): pretrain_images 62 ± 7 on the digit images;
Kinetics-layout scratch 75 ± 7, image_plain 91 ± 3, image_sts 81 ± 17, cotrain_sts 53 ± 20;
SSv2-layout ssv2_image_sts 38 ± 8 (README, "The demo").
"""
from __future__ import annotations

import os

from tfsts.training.config import base_config, source

# ir-CSN-50 (depthwise 3x3x3: STS case A, the paper's main family) with one block per stage:
# about a minute per fine-tuning run on 2 CPU cores. X3D-S at this size (32 px, one block per
# stage) learned neither the digits nor the motions here (chance on held-out images after 300
# steps while ir-CSN reached 32 %, Hara's ResNet-10 55 %, R(2+1)D-18 77 % at 2.5x the time).
MODEL = "ircsn_50"
# Temporal stride 1 in every stage for every variant: STS (case A) needs it, and with the same
# strides the no-STS runs are the same network (same weights, same MACs), so "STS vs no STS"
# compares STS and nothing else. ir-CSN's own no-STS default, (1, 2, 2, 2), would also give the
# no-STS runs 37 % fewer MACs (half the frames in res3, a quarter in res4, an eighth in res5).
MODEL_KWARGS = {"stage_blocks": (1, 1, 1, 1), "temporal_strides": (1, 1, 1, 1)}
NUM_FRAMES = 8
CROP = 32
EVAL_VIEWS = {"eval_num_clips": 2, "eval_num_crops": 3}  # 6 views per video
NUM_CLASSES = {"kinetics": 4, "ssv2": 6, "images": 10}
VARIANTS = ("pretrain_images", "scratch", "image_plain", "image_sts", "ssv2_image_sts", "cotrain_sts")
FINETUNE_STEPS = 80
PRETRAIN_STEPS = 1000  # one-frame clips: about 8x cheaper per step than the 8-frame runs
# The digits are small in the 48x32 frames: crops keep nearly all of the frame (a crop of half
# the area, the usual lower bound at 224 px, often cuts the digit or its path).
CROP_AUG = {"area_range": (0.8, 1.0), "aspect_ratio_range": (1.0, 1.5)}


def video_source(records: str, name: str, train_split: str, eval_split: str):
    return source(
        "video",
        train_pattern=os.path.join(records, name, f"{train_split}-*.tfrecord"),
        eval_pattern=os.path.join(records, name, f"{eval_split}-*.tfrecord"),
        num_classes=NUM_CLASSES[name], num_frames=NUM_FRAMES, frame_interval=1, sampling="dense",
        crop_size=CROP, short_side=CROP, eval_short_side=CROP, **EVAL_VIEWS,
        # No flip: a mirrored "moving left" clip is "moving right".
        flip=False, **CROP_AUG,
    )


def image_source(records: str, num_frames: int):
    return source(
        "image",
        train_pattern=os.path.join(records, "images", "train-*.tfrecord"),
        eval_pattern=os.path.join(records, "images", "validation-*.tfrecord"),
        num_classes=NUM_CLASSES["images"], num_frames=num_frames, crop_size=CROP, short_side=CROP,
        eval_short_side=CROP, flip=False, **CROP_AUG,
    )


def get_config(arg: str = "cotrain_sts,tfsts_demo/records"):
    variant, _, records = arg.partition(",")
    records = records or "tfsts_demo/records"
    if variant not in VARIANTS:
        raise ValueError(f"configs/demo/digits.py: variant {variant!r}: use one of {', '.join(VARIANTS)}.")
    c = base_config()
    c.model.name = MODEL
    c.model.kwargs.update(MODEL_KWARGS)
    c.model.sts = variant.endswith("_sts")
    if variant == "pretrain_images":
        c.data.sources.images = image_source(records, num_frames=1)
    if variant in ("scratch", "image_plain", "image_sts", "cotrain_sts"):
        c.data.sources.kinetics = video_source(records, "kinetics", "train", "val")
    if variant in ("ssv2_image_sts", "cotrain_sts"):
        c.data.sources.ssv2 = video_source(records, "ssv2", "train", "validation")
    if variant == "cotrain_sts":  # CoVeR: images are clips of repeated frames, with their own head
        c.data.sources.images = image_source(records, num_frames=NUM_FRAMES)
    c.train.global_batch_size = 16
    c.train.num_steps = PRETRAIN_STEPS if variant == "pretrain_images" else FINETUNE_STEPS
    c.train.log_every = 5
    c.train.checkpoint_every = 10_000  # the last step is always saved
    c.train.keep_checkpoints = 1
    c.optimizer.name = "adamw"
    c.optimizer.lr = 1e-3
    c.optimizer.lr_reference_batch = 16
    c.optimizer.weight_decay = 0.05
    c.optimizer.warmup_steps = 10
    return c
