"""X3D-S with STS, fine-tuned on Kinetics-400 from its ImageNet (T = 1) pre-training.

Run (8 GPUs as the reference; any global batch works, the lr scales linearly):
    python -m tfsts.train --config=configs/kinetics400/x3d_s_sts.py --workdir=runs/kinetics400/x3d_s_sts \
        --config.init.checkpoint=runs/imagenet/x3d_s
Baseline without STS (same weights, plain convs): add --config.model.sts=False.
Test (10 clips x 3 crops at 192): add --config.train.eval_only=True.

Recipe (sts.md): 13x6 frames, 32 clips per GPU x 8 GPUs = global batch 256 at lr 0.02,
SGD momentum 0.9, wd 1e-4, 5 warm-up epochs then cosine, clip 40, fp16, 100 epochs.
Reference result: top-1 73.9 (50 ep: 72.5) % (from-scratch public baseline 73.1 %; the ImageNet
pre-training of this 3D net: 74.8 %).
"""
from configs import common


def get_config():
    src = common.kinetics400(13, 6, crop_size=160, eval_short_side=192, eval_crop_size=192)
    c = common.finetune("x3d_s", src, per_gpu_batch=32, lr=0.02, epochs=100)
    c.init.checkpoint = "runs/imagenet/x3d_s"  # the image pre-training run (configs/imagenet/pretrain_3d.py)
    return c
