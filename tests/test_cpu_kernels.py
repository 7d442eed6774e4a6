"""tfsts leaves TensorFlow's CPU-kernel choice (oneDNN or Eigen) to TF and the user
(tfsts/__init__.py says why), and names the choice in benchmark headers."""

from __future__ import annotations

import os
import subprocess
import sys


def cpu_kernels_in_fresh_process(env_value: str | None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    probe = "import os, tfsts; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS')); print(tfsts.cpu_kernels())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=True)
    setting, kernels = out.stdout.strip().splitlines()[-2:]
    return setting, kernels


def test_importing_tfsts_leaves_the_onednn_switch_alone():
    assert cpu_kernels_in_fresh_process(None) == ("None", "TensorFlow's default CPU kernels (oneDNN on AVX-512 VNNI CPUs, else Eigen)")


def test_cpu_kernels_names_the_users_setting():
    assert cpu_kernels_in_fresh_process("1") == ("1", "oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS=1)")
    assert cpu_kernels_in_fresh_process("0") == ("0", "Eigen CPU kernels (TF_ENABLE_ONEDNN_OPTS=0)")
