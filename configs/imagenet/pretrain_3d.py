"""Image pre-training of a 3D network on ImageNet-1k: each image a one-frame clip (T = 1).

Run (argument after ':' is the model, default ircsn_50):
    python -m tfsts.train --config=configs/imagenet/pretrain_3d.py:ircsn_50 --workdir=runs/imagenet/ircsn_50
Then fine-tune with e.g. configs/kinetics400/ircsn50_sts.py (its init.checkpoint is this workdir).

Recipe (sts.md): 300 epochs, LAMB lr 5e-3, weight decay 0.02 (not on BN / biases), cosine with 5
warm-up epochs, mixup 0.1, cutmix 1.0, BCE loss, RandAugment m7, drop-path 0.05. The global batch
is not in sts.md: 2048 (timm's LAMB recipe, which this follows) is assumed for lr 5e-3; the lr
scales linearly from there. Reference ImageNet top-1 of the 3D net at T = 1: ir-CSN-50 78.8,
R(2+1)D-34 79.6, SlowFast-R50 4x16 79.9, 8x8 79.1, SlowOnly-R50 79.9, X3D-S 74.8.

RandAugment: 2 ops at magnitude 7 (timm's rand-m7 scale, Keras' RandAugment with factor 0.7) on
the images, in the training step (data.sources.imagenet.randaugment_*; tfsts.data.ClipAugment);
Keras' op set and magnitude mapping are not timm's, so the augmentation is close to, not equal
to, the reference's. Drop-path 0.05: the last residual block's rate, rising linearly from 0 over
the blocks (timm's rule; model.drop_path -> the builders' drop_path_rate).
"""
from configs import common

X3D_CROP = 160


def get_config(model: str = "ircsn_50"):
    c = common.base_config()
    c.model.name = model
    c.model.sts = True  # with T = 1 STS's appearance half sees the frame; the weights are the plain conv's
    c.data.sources["imagenet"] = common.imagenet(crop_size=X3D_CROP if model.startswith("x3d") else 224)
    c.data.sources["imagenet"].randaugment_magnitude = 7.0  # reference: RandAugment m7
    c.data.sources["imagenet"].randaugment_num_ops = 2
    c.train.global_batch_size = 2048
    c.train.epochs = 300
    c.train.loss = "bce"
    c.train.mixup = 0.1
    c.train.cutmix = 1.0
    c.train.precision = "mixed_float16"
    c.train.eval_every = 5000
    c.train.checkpoint_every = 1000
    c.train.log_every = 50
    c.model.drop_path = 0.05  # reference: drop-path 0.05 (linear over the blocks)
    c.optimizer.update(name="lamb", lr=5e-3, lr_reference_batch=2048, weight_decay=0.02, warmup_epochs=5.0,
                       beta1=0.9, beta2=0.999, epsilon=1e-6)
    return c
