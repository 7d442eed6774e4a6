"""Demo: a width-1/4 3D ResNet-10 on the synthetic demo videos, on a CPU in a few minutes.

Run:
    python -m tfsts.training.demo_data --output_dir=demo_data
    python -m tfsts.train --config=configs/demo/tiny_resnet.py --workdir=runs/demo/tiny_resnet
(records elsewhere: --config.data.sources.demo.train_pattern=DIR/train-*.tfrecord and eval_pattern.)

Recipe: 8 frames x 2 at 64 x 64, global batch 8 (one CPU; the lr 0.05 is for batch 8 and scales
linearly), SGD momentum 0.9, wd 1e-4, 10 warm-up steps then cosine, 200 steps, validation every
100 steps. Expected (measured here, about 1 min): the mean training loss of steps 1-10 is 1.36
(chance: ln 4 = 1.39; the heads start at normal(0, 0.01)), of steps 181-190 0.03; validation
top-1 1.0 at steps 100 and 200 on the 8 held-out videos (the demo videos are easy by
construction).
"""
from tfsts.training.config import base_config, source

DEMO = "demo_data/records"


def get_config():
    c = base_config()
    c.model.name = "resnet3d_10"
    c.model.kwargs.widen_factor = 0.25
    c.model.dropout = 0.0
    c.data.sources["demo"] = source(
        "video", train_pattern=f"{DEMO}/train-*.tfrecord", eval_pattern=f"{DEMO}/val-*.tfrecord", num_classes=4,
        num_frames=8, frame_interval=2, crop_size=64, short_side=64, eval_num_clips=1, eval_num_crops=1,
        eval_short_side=64, num_train_examples=32,
    )
    c.train.global_batch_size = 8
    c.train.num_steps = 200
    c.train.eval_every = 100
    c.train.checkpoint_every = 50
    c.train.log_every = 10
    c.optimizer.update(name="sgd", lr=0.05, lr_reference_batch=8, momentum=0.9, weight_decay=1e-4, warmup_steps=10,
                       clip_norm=10.0)
    return c
