"""Demo: X3D-S with STS convolution on the synthetic demo videos (CPU, minutes).

Run:
    python -m tfsts.training.demo_data --output_dir=demo_data
    python -m tfsts.train --config=configs/demo/tiny_x3d_sts.py --workdir=runs/demo/tiny_x3d_sts
Baseline without STS: add --config.model.sts=False.

Recipe: 8 frames x 2 at 64 x 64 (STS with spatial stride needs sizes divisible by 32), global
batch 8 at lr 0.05 (scales linearly), SGD, 10 warm-up steps then cosine, 200 steps. Expected:
the training loss falls well below its start (about ln(4) = 1.39); slower per step than
tiny_resnet (3.0 M parameters against 0.9 M).
"""
from configs.demo import tiny_resnet


def get_config():
    c = tiny_resnet.get_config()
    c.model.name = "x3d_s"
    c.model.sts = True
    c.model.kwargs = {}
    return c
