"""CoVeR-style co-training: one ir-CSN-50 (STS) on Kinetics-400 + SSv2 + ImageNet at once,
one classifier head per dataset, each sample's loss from its own dataset's head.

Run:
    python -m tfsts.train --config=configs/cotrain/cover_ircsn50.py --workdir=runs/cotrain/cover_ircsn50 \
        --config.init.checkpoint=runs/imagenet/ircsn_50

Recipe (CoVeR, sts.md): every batch mixes samples of all datasets, drawn in proportion to
their sizes (source weight -1: sizes from the data_prep manifests); an image is a still clip
(its frame repeated: the model has one input shape, so every source gives 8 x 224 x 224 clips:
K400 8x8 dense, SSv2 8 uniform segments). Optimizer and schedule: the reference fine-tuning
recipe at 16 clips per GPU x 8 = 128, lr 0.01, 50 epochs of the combined data. Reported (CoVeR,
transformers with ImageNet-21k pre-training): co-training improves K400 by 2.4 and SSv2 by 2.3
top-1 over single-dataset fine-tuning; there is no reference number for ir-CSN-50.
"""
from configs import common


def get_config():
    c = common.finetune("ircsn_50", common.kinetics400(8, 8), per_gpu_batch=16, lr=0.01, epochs=50)
    c.data.sources["ssv2"] = common.ssv2(8)
    c.data.sources["imagenet"] = common.imagenet(num_frames=8)
    for src in c.data.sources.values():
        src.weight = -1.0  # proportional to dataset size
        src.eval_crop_size = 224
    c.data.batching = "mixed"
    c.init.checkpoint = "runs/imagenet/ircsn_50"
    return c
