"""SlowOnly-R50 8x8 with STS, fine-tuned on Kinetics-400 from Keras' 2D ImageNet ResNet50,
inflated to 3D (I3D "mean" inflation; "center" / "sts_center" via --config.init.inflation).

Run (weights="imagenet" makes Keras download ResNet50's ImageNet weights; offline, save them once
with keras.applications.ResNet50().save_weights("resnet50.weights.h5") and pass that path):
    python -m tfsts.train --config=configs/kinetics400/slowonly_r50_keras_inflation.py \
        --workdir=runs/kinetics400/slowonly_r50_keras_inflation \
        [--config.init.keras_weights=resnet50.weights.h5]

Recipe: as configs/kinetics400/slowonly_r50_sts.py (16 clips per GPU x 8 = 128 at lr 0.02,
50 epochs) but starting from the inflated 2D network instead of the 3D net's own image
pre-training. Reference: the paper's point is that this classic path (I3D inflation of 2D
ImageNet weights) is what its image pre-training of the 3D net improves on; its SlowOnly
with 3D image pre-training and STS reaches 75.7 % top-1 (from scratch 75.2 %).
"""
from configs import common


def get_config():
    c = common.finetune("slowonly_r50", common.kinetics400(8, 8), per_gpu_batch=16, lr=0.02, epochs=50)
    c.init.keras_weights = "imagenet"
    c.init.inflation = "mean"
    return c
