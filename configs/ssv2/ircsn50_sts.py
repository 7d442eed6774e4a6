"""ir-CSN-50 with STS, fine-tuned on Something-Something v2 from its ImageNet (T = 1) pre-training.

Run:
    python -m tfsts.train --config=configs/ssv2/ircsn50_sts.py --workdir=runs/ssv2/ircsn50_sts \
        --config.init.checkpoint=runs/imagenet/ircsn_50
Baseline without STS: add --config.model.sts=False. Test (1 clip x 3 crops at 256): add
--config.train.eval_only=True.

Recipe (sts.md, all SSv2 configs): 8 uniform segments of one frame, no flip, 8 clips per GPU
x 8 GPUs = global batch 64 at lr 0.1, SGD momentum 0.9, wd 1e-4, 5 warm-up epochs then cosine,
clip 40, fp16, 50 epochs. Reference result: top-1 61.4 %.
"""
from configs import common


def get_config():
    c = common.finetune("ircsn_50", common.ssv2(8), per_gpu_batch=8, lr=0.1, epochs=50, name="ssv2")
    c.init.checkpoint = "runs/imagenet/ircsn_50"  # the image pre-training run (configs/imagenet/pretrain_3d.py)
    return c
