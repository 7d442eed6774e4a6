"""tfsts asks TensorFlow for its oneDNN CPU kernels on x86 where TF would leave them off
(tfsts/__init__.py), and a user's own setting wins. Each case is a fresh interpreter: TF reads
the switch once, when it loads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# TF's own record of the switch it read at load (private: the public API has none).
PROBE = (
    "import tfsts, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port\n"
    "print(_pywrap_util_port.IsMklEnabled(), tfsts.cpu_kernels())\n"
)


def probe(env_value: str | None) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=True)
    enabled, kernels = out.stdout.strip().splitlines()[-1].split(" ", 1)
    return enabled == "True", kernels


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN default is for x86 only")
def test_importing_tfsts_first_turns_onednn_on():
    enabled, kernels = probe(None)
    assert enabled
    assert kernels == "oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS=1)"


def test_the_users_own_setting_wins():
    enabled, kernels = probe("0")
    assert not enabled
    assert kernels == "Eigen CPU kernels (TF_ENABLE_ONEDNN_OPTS=0)"
