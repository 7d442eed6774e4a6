"""The training graphs TensorFlow optimises: no Grappler pass may fail on them.

When one of Grappler's optimizers fails on a graph, TF logs it ("meta_optimizer.cc ...
remapper failed: ...") and runs the graph without that pass: here, without any of the
remapper's conv/pad/activation fusions, so the whole training step gets slower with no
error. An explicitly padded strided Conv3D did that (its gradient's ShapeN reads the
Pad the remapper folds away); tfsts.layers.sts_conv keeps strided convs off that
pattern. This runs one training step and one inference of the families with strided
convs, STS on and off, in a fresh process with TF's C++ log on, and reads the log.

The zoo's fused inference BNs sit exactly after the convs that run as a Conv2D, which
Grappler folds them into.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from benchmarks.timing import tf_sgd_train_step
from tfsts import models

for spec in sys.argv[1:]:
    name, sts, frames = spec.split(":")
    shape = (int(frames), 32, 32, 3)
    model = models.build_model(name, 5, input_shape=shape, sts=sts == "sts")
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32"))
    loss = tf_sgd_train_step(model, x, tf.constant([1, 3]))()
    assert np.isfinite(loss.numpy()), spec
    logits = tf.function(lambda: model(x, training=False))()  # the inference formulations
    assert np.isfinite(logits.numpy()).all(), spec
    print("stepped", spec, flush=True)
"""

CASES = [
    "resnet3d_18:plain:8",  # strided 3x3x3 convs (res3-res5)
    "r2plus1d_18:plain:8",  # strided temporal 3x1x1 convs
    "r2plus1d_18:sts:8",  # STS case C: strided motion half
    "slowonly_r50:sts:8",  # STS case B
    "ircsn_50:sts:8",  # STS case A, strided depthwise convs
    "x3d_s:plain:8",
]


def test_no_grappler_optimizer_fails_on_a_training_step_or_inference():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *CASES], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("stepped") == len(CASES), proc.stdout
    failures = [line for line in proc.stderr.splitlines() if re.search(r"meta_optimizer.*failed", line)]
    assert not failures, "\n".join(failures)


def test_fused_inference_bns_follow_exactly_the_convs_that_run_as_conv2d():
    import keras

    from tfsts import models
    from tfsts.layers import BatchNorm, STSConv3D
    from tfsts.models.blocks import runs_as_conv2d
    from tfsts.models.graph import LayerGraph

    for name, sts in (("x3d_s", False), ("ircsn_50", True), ("r2plus1d_18", False), ("slowonly_r50", True)):
        model = models.build_model(name, 5, input_shape=(4, 32, 32, 3), sts=sts)
        graph = LayerGraph(model)
        bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
        fused = {layer.name for layer in bns if layer.fused}
        after_conv2d = {layer.name for layer in bns
                        if all(isinstance(p, STSConv3D) and runs_as_conv2d(p) for p in graph.producers(layer))}
        assert fused == after_conv2d and 0 < len(fused) < len(bns), (name, sorted(fused ^ after_conv2d))
        keras.backend.clear_session()
