"""SlowFast-R50 4x16 (tau 8, alpha 8) with STS, fine-tuned on Kinetics-400 from its ImageNet (T = 1) pre-training.

Run (8 GPUs as the reference; any global batch works, the lr scales linearly):
    python -m tfsts.train --config=configs/kinetics400/slowfast_r50_4x16_sts.py --workdir=runs/kinetics400/slowfast_r50_4x16_sts \
        --config.init.checkpoint=runs/imagenet/slowfast_r50_4x16
Baseline without STS (same weights, plain convs): add --config.model.sts=False.
Test (10 clips x 3 crops at 256): add --config.train.eval_only=True.

Recipe (sts.md): 32x2 frames, 16 clips per GPU x 8 GPUs = global batch 128 at lr 0.01,
SGD momentum 0.9, wd 1e-4, 5 warm-up epochs then cosine, clip 40, fp16, 50 epochs.
Reference result: top-1 76.2 (100 ep: 76.9) % (from-scratch public baseline 75.6 %; the ImageNet
pre-training of this 3D net: 79.9 %).
"""
from configs import common


def get_config():
    src = common.kinetics400(32, 2, crop_size=224, eval_short_side=256, eval_crop_size=256)
    c = common.finetune("slowfast_r50_4x16", src, per_gpu_batch=16, lr=0.01, epochs=50)
    c.init.checkpoint = "runs/imagenet/slowfast_r50_4x16"  # the image pre-training run (configs/imagenet/pretrain_3d.py)
    return c
