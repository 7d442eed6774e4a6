"""The training graphs TensorFlow optimises: no Grappler pass may fail on them.

When one of Grappler's optimizers fails on a graph, TF logs it ("meta_optimizer.cc ...
remapper failed: ...") and runs the graph without that pass: here, without any of the
remapper's conv/pad/activation fusions, so the whole training step gets slower with no
error. An explicitly padded strided Conv3D did that (its gradient's ShapeN reads the
Pad the remapper folds away); tfsts.layers.sts_conv keeps strided convs off that
pattern. This runs one training step and one inference of the families with strided
convs, STS on and off, and of their BN-folded copies (`fold_batch_norms`, what export
serves), in a fresh process with TF's C++ log on, and reads the log.

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
from tfsts.models.graph import fold_batch_norms

for spec in sys.argv[1:]:
    name, sts, frames = spec.split(":")
    shape = (int(frames), 32, 32, 3)
    model = models.build_model(name, 5, input_shape=shape, sts=sts == "sts")
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32"))
    loss = tf_sgd_train_step(model, x, tf.constant([1, 3]))()
    assert np.isfinite(loss.numpy()), spec
    logits = tf.function(lambda: model(x, training=False))()  # the inference formulations
    assert np.isfinite(logits.numpy()).all(), spec
    folded = fold_batch_norms(model)  # export's BN-folded copy: its bias adds fuse into the convs
    assert np.isfinite(tf.function(lambda: folded(x, training=False))().numpy()).all(), spec
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


# family -> (model, input (T, H, W, 3), build overrides, BNs a conv feeds alone): every family
# of tfsts/models, STS on where it has it (cases A, B, C), with its own BN placements:
# pre-activation BNs, DenseNet's BNs after concatenations and Swin's LayerNorms do not fold.
FOLD_FAMILIES = {
    "resnet3d": ("resnet3d_10", (4, 32, 32, 3), {"shortcut_type": "B"}, 12),
    "preact_resnet3d": ("preact_resnet3d_200", (4, 32, 32, 3), {"depth": 10}, 8),
    "densenet3d": ("densenet3d_121", (4, 32, 32, 3), {"block_config": (2, 2, 2, 2), "transition_t_stride": 1}, 9),
    "slow": ("slowonly_r50", (4, 32, 32, 3), {"sts": True}, 53),
    "slowfast": ("slowfast_r50_8x8", (8, 64, 64, 3), {"sts": True}, 110),
    "r2plus1d": ("r2plus1d_18", (4, 32, 32, 3), {"sts": True, "depth": 10}, 21),
    "csn": ("ipcsn_50", (4, 64, 64, 3), {"sts": True}, 69),
    "x3d": ("x3d_s", (4, 64, 64, 3), {}, 83),
    "videoswin": ("videoswin_tiny", (4, 32, 32, 3), {"drop_path_rate": 0.0}, 0),
}


# TF's CPU AvgPool3D has no float64 kernel: DenseNet's transitions run in float32.
FOLD_FLOAT32_ONLY = {"densenet3d"}


def test_fold_batch_norms_gives_the_models_inference_with_the_bns_folded():
    """`fold_batch_norms` on every family, BN statistics perturbed: in float64 the folded
    model's logits are the unfolded model's within 1e-12 of max|logit| (measured <= 2e-15),
    so folding is exact algebra; exactly the BNs a conv alone feeds gone (count per family
    pinned), parameters exactly the original's less 4C per folded BN plus C per conv that
    gains a bias, and a folded model has nothing more to fold.

    Why float64: on random weights and raw-pixel BN statistics X3D's float32 logits are
    ill-conditioned. Against a float64 run of the same weights, the unfolded float32 model
    was itself off by up to 4.5e-4 of max|logit| in 8 weight draws (the folded one by 2.6e-4),
    so a float32 bound between the two measured rounding, not folding. DenseNet, which has
    no float64 pooling kernel here, is checked in float32 (measured 5.4e-7, bound 1e-4)."""
    import keras

    try:
        for family, (name, shape, overrides, expected) in FOLD_FAMILIES.items():
            _check_fold(family, name, shape, overrides, expected, "float32" if family in FOLD_FLOAT32_ONLY else "float64")
    finally:
        keras.backend.clear_session()
        keras.config.set_dtype_policy("float32")


def _check_fold(family: str, name: str, shape: tuple, overrides: dict, expected: int, dtype: str) -> None:
    import keras
    import numpy as np

    from tfsts import models
    from tfsts.layers import STSConv3D
    from tfsts.models.graph import fold_batch_norms, foldable_batch_norms

    from tests.model_test_utils import perturb_batch_norms

    keras.backend.clear_session()
    keras.config.set_dtype_policy(dtype)
    keras.utils.set_random_seed(0)
    model = models.build_model(name, 5, input_shape=shape, **overrides)
    perturb_batch_norms(model)
    pairs = foldable_batch_norms(model)
    assert len(pairs) == expected, (family, len(pairs))
    folded = fold_batch_norms(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(dtype)
    want = np.asarray(model(x, training=False))
    got = np.asarray(folded(x, training=False))
    assert got.dtype == want.dtype == dtype, (family, got.dtype, want.dtype)
    bound = 1e-4 if dtype == "float32" else 1e-12
    assert np.abs(got - want).max() <= bound * np.abs(want).max(), (family, np.abs(got - want).max() / np.abs(want).max())
    removed = sum(4 * int(bn.gamma.shape[0]) - (0 if model.get_layer(conv).use_bias else int(bn.gamma.shape[0]))
                  for conv, bn in pairs.items())
    assert folded.count_params() == model.count_params() - removed, family
    kept = {layer.name for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)}
    originals = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert kept == originals - {bn.name for bn in pairs.values()}, family
    assert foldable_batch_norms(folded) == {} and all(
        folded.get_layer(conv).use_bias and isinstance(folded.get_layer(conv), STSConv3D) for conv in pairs), family


def test_folded_conv_weights_by_hand():
    """One conv then BN: kernel * gamma / sqrt(var + eps) per output channel, bias
    (bias - mean) * that + beta, and the folded conv's output is the BN's."""
    import keras
    import numpy as np

    from tfsts.layers import BatchNorm, STSConv3D
    from tfsts.models.graph import fold_batch_norms, folded_conv_weights

    inputs = keras.Input((2, 4, 4, 3))
    conv = STSConv3D(2, 1, sts=False, use_bias=True, name="c")
    bn = BatchNorm(epsilon=0.25, name="bn")
    model = keras.Model(inputs, bn(conv(inputs)))
    conv.kernel.assign(np.arange(6, dtype="float32").reshape(1, 1, 1, 3, 2))
    conv.bias.assign([1.0, -1.0])
    bn.set_weights([np.array([2.0, 3.0]), np.array([0.5, 0.0]), np.array([1.0, 2.0]), np.array([0.75, 8.75])])
    kernel, bias = folded_conv_weights(conv, bn)
    scale = np.array([2.0 / 1.0, 3.0 / 3.0])  # gamma / sqrt(var + 0.25)
    np.testing.assert_array_equal(kernel, np.arange(6, dtype="float32").reshape(1, 1, 1, 3, 2) * scale)
    np.testing.assert_array_equal(bias, np.array([(1 - 1) * 2 + 0.5, (-1 - 2) * 1 + 0.0]))
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(fold_batch_norms(model)(x), model(x, training=False), rtol=1e-6, atol=1e-6)
