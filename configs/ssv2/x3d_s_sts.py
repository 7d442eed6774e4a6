"""X3D-S with STS, fine-tuned on Something-Something v2 from its ImageNet (T = 1) pre-training.

Run:
    python -m tfsts.train --config=configs/ssv2/x3d_s_sts.py --workdir=runs/ssv2/x3d_s_sts \
        --config.init.checkpoint=runs/imagenet/x3d_s
Baseline without STS: add --config.model.sts=False. Test (1 clip x 3 crops at 256): add
--config.train.eval_only=True.

Recipe (sts.md, all SSv2 configs): 8 uniform segments of one frame, no flip, 8 clips per GPU
x 8 GPUs = global batch 64 at lr 0.1, SGD momentum 0.9, wd 1e-4, 5 warm-up epochs then cosine,
clip 40, fp16, 50 epochs. Reference result: top-1 58.3 %.
"""
from configs import common


def get_config():
    c = common.finetune("x3d_s", common.ssv2(8), per_gpu_batch=8, lr=0.1, epochs=50, name="ssv2")
    c.init.checkpoint = "runs/imagenet/x3d_s"  # the image pre-training run (configs/imagenet/pretrain_3d.py)
    return c
