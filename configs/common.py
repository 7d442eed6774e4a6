"""What every recipe shares: the datasets and the reference's fine-tuning schedule (sts.md).

Each config file builds on `tfsts.training.config.base_config()` and these helpers, and states
its command and the result the reference reports. Batch sizes: the reference's per-GPU batch
times its 8 GPUs is `train.global_batch_size`; `optimizer.lr` is the reference lr at that
batch (`optimizer.lr_reference_batch`), so `--config.train.global_batch_size=N` rescales the lr
linearly (lr_for = lr * N * grad_accum_steps / lr_reference_batch).
"""
from __future__ import annotations

import ml_collections

from tfsts.training.config import base_config, source

REFERENCE_GPUS = 8
KINETICS400_TRAIN, KINETICS400_VAL = 240_436, 19_796  # mmaction2's Kinetics-400 lists
SSV2_TRAIN, SSV2_VAL = 168_913, 24_777
IMAGENET_TRAIN = 1_281_167


def kinetics400(num_frames: int, frame_interval: int, crop_size: int = 224, eval_short_side: int = 256,
                eval_crop_size: int = 256) -> ml_collections.ConfigDict:
    """K400 records from data_prep (short side 320): dense clips, 10 clips x 3 crops at test."""
    return source(
        "video", train_pattern="data/kinetics400/train-*.tfrecord", eval_pattern="data/kinetics400/val-*.tfrecord",
        num_classes=400, num_frames=num_frames, frame_interval=frame_interval, sampling="dense",
        crop_size=crop_size, short_side=256, eval_num_clips=10, eval_num_crops=3,
        eval_short_side=eval_short_side, eval_crop_size=eval_crop_size, num_train_examples=KINETICS400_TRAIN,
    )


def ssv2(num_frames: int = 8) -> ml_collections.ConfigDict:
    """SSv2: uniform segments (8, SlowFast 32), one frame each, no flip; 1 clip x 3 crops at 256."""
    return source(
        "video", train_pattern="data/ssv2/train-*.tfrecord", eval_pattern="data/ssv2/validation-*.tfrecord",
        num_classes=174, num_frames=num_frames, frame_interval=1, sampling="uniform", crop_size=224,
        short_side=256, eval_num_clips=1, eval_num_crops=3, eval_short_side=256, eval_crop_size=256,
        num_train_examples=SSV2_TRAIN, flip=False,
    )


def imagenet(crop_size: int = 224, num_frames: int = 1) -> ml_collections.ConfigDict:
    """ImageNet-1k from data_prep.images: each image a num_frames-frame clip (T = 1 for pre-training)."""
    return source(
        "image", train_pattern="data/imagenet/train-*.tfrecord", eval_pattern="data/imagenet/validation-*.tfrecord",
        num_classes=1000, num_frames=num_frames, crop_size=crop_size, short_side=256, eval_short_side=256,
        eval_crop_size=crop_size, num_train_examples=IMAGENET_TRAIN,
    )


def finetune(model: str, src: ml_collections.ConfigDict, *, per_gpu_batch: int, lr: float, epochs: float = 50,
             name: str = "kinetics400") -> ml_collections.ConfigDict:
    """The reference fine-tuning recipe: SGD momentum 0.9, wd 1e-4 (not on BN / biases),
    5 linear warm-up epochs then cosine to 0, gradient-norm clip 40, fp16, STS on."""
    c = base_config()
    c.model.name = model
    c.model.sts = True
    c.data.sources[name] = src
    c.train.global_batch_size = per_gpu_batch * REFERENCE_GPUS
    c.train.epochs = epochs
    c.train.precision = "mixed_float16"
    c.train.eval_every = 0  # the reference tests once at the end (run with --config.train.eval_only=True)
    c.train.checkpoint_every = 1000
    c.train.log_every = 50
    c.optimizer.update(name="sgd", lr=lr, lr_reference_batch=per_gpu_batch * REFERENCE_GPUS, momentum=0.9,
                       weight_decay=1e-4, clip_norm=40.0, warmup_epochs=5.0, min_lr=0.0)
    return c
