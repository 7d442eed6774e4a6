"""tfsts: image pre-training for spatiotemporal recognition on TensorFlow 2 / Keras 3."""
from __future__ import annotations

import os
import platform

__version__ = "0.1.0"

# TensorFlow turns on its oneDNN CPU kernels by default only on x86 CPUs with AVX-512 VNNI and
# newer; elsewhere (AMD EPYC, older Intel) its convs run on Eigen. On a 2-core AMD EPYC the
# training step then took 1.11-1.50x PyTorch's (r2plus1d_18, slowonly_r50, resnet3d_18) and
# 0.52-0.85x with oneDNN on (README, "CPU kernels"). TensorFlow reads the switch once, when it
# loads, so this holds where tfsts is imported first (every tfsts CLI, the benchmarks, the
# tests); a setting of the user's own, TF_ENABLE_ONEDNN_OPTS=0 included, wins.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault(ONEDNN_ENV, "1")


def cpu_kernels() -> str:
    """Which CPU conv kernels TensorFlow was asked for, for benchmark and log headers."""
    value = os.environ.get(ONEDNN_ENV)
    if value is None:
        return "TensorFlow's default CPU kernels (oneDNN only on AVX-512 VNNI CPUs)"
    return f"{'oneDNN' if value.strip().lower() in ('1', 'true') else 'Eigen'} CPU kernels ({ONEDNN_ENV}={value})"
