"""tfsts: image pre-training for spatiotemporal recognition on TensorFlow 2 / Keras 3."""
from __future__ import annotations

import os

__version__ = "0.1.0"

# TensorFlow's CPU convs run on oneDNN by default only on x86 CPUs with AVX-512 VNNI and newer,
# on Eigen elsewhere (AMD EPYC, older Intel), and TF_ENABLE_ONEDNN_OPTS=1 turns oneDNN on there.
# tfsts leaves TF's choice alone: on a 2-core AMD EPYC (AVX2) oneDNN made the training step
# 1.1-1.9x faster but gave wrong kernel gradients for 1x1 strided convs with fewer than 8 input
# channels, and the demo's ResNet stopped learning (README, "CPU kernels").
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def cpu_kernels() -> str:
    """Which CPU conv kernels TensorFlow was asked for, for benchmark and log headers."""
    value = os.environ.get(ONEDNN_ENV)
    if value is None:
        return "TensorFlow's default CPU kernels (oneDNN on AVX-512 VNNI CPUs, else Eigen)"
    return f"{'oneDNN' if value.strip().lower() in ('1', 'true') else 'Eigen'} CPU kernels ({ONEDNN_ENV}={value})"
