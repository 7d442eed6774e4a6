"""The model code is backend-neutral: under KERAS_BACKEND=jax every model family
builds, gives the TensorFlow backend's outputs on the same weights (moved through a
`.weights.h5` file) and takes the same SGD training step.

Both backends run in subprocesses (a Keras backend is fixed per process) of one
script, on one batch of four clips of RGB frames in 0..255; BN statistics are
perturbed first so that the comparison means something. The inputs are large enough
that no training-mode BN normalises over a handful of values: at batch 2 and 32 px,
Hara's WRN / ResNeXt, SlowFast and CSN reach 1x1 maps where BN sees 2 values, and
the step's gradient there is ill-conditioned (float32 rounding differences
became 20-30 % differences in single stem-gradient entries, 1e-3 to 1e-2 relative
update differences, while logits and loss agreed to 1e-6).

Tolerances (float32, different conv / matmul kernels, so sums run in another
order), all relative: logits max|jax - tf| <= 1e-4 * max|tf|, or, where not, JAX's
logits no further from TF's float64 logits (same weights) than twice TF's float32 ones
are: X3D-S with perturbed BN reaches logits of 1e4 and amplifies float32 rounding to
0.6-1.9e-4 of that on both backends (measured against float64 with this stop's and the
previous stop's STS case A code, whose sums run in another order); the training step's
loss (BN on batch statistics) within 1e-3; the step's weight update (all weights,
BN statistics included, as one vector) within 1e-3 in L2 norm, and not zero.
Measured here (batch 4, every family): logits <= 5.3e-5 (X3D; the others <= 2.8e-6; X3D
1.3e-4 after STS case A's sums were reordered, against float64 TF 1.9e-4 and JAX 6.2e-5),
loss <= 7.1e-6 (SlowOnly), update <= 2.2e-4 (CSN; SlowFast 1.9e-4, SlowOnly 1.4e-4,
the others <= 2.4e-5), measured before tfsts.layers.BatchNorm took the analytic BN gradient (the
tolerances still hold). About 8-10 min on a quiet 2-core machine: slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

REPO = Path(__file__).resolve().parents[1]

# family (one per file of tfsts/models) -> (model, input (T, H, W, 3), build overrides):
# small depths / widths of the same builders, STS on wherever the family has it, so
# STS cases A (csn, x3d), B (slow, slowfast) and C (r2plus1d) all run under JAX.
FAMILIES = {
    "resnet3d": ("resnet3d_10", (4, 32, 32, 3), {"shortcut_type": "A"}),
    "preact_resnet3d": ("preact_resnet3d_200", (4, 32, 32, 3), {"depth": 10}),
    "wide_resnet3d": ("wide_resnet3d_50", (4, 64, 64, 3), {"blocks": (1, 1, 1, 1)}),
    "resnext3d": ("resnext3d_101", (4, 64, 64, 3), {"blocks": (1, 1, 1, 1)}),
    "densenet3d": ("densenet3d_121", (4, 32, 32, 3), {"block_config": (2, 2, 2, 2), "transition_t_stride": 1}),
    "slow": ("slowonly_r50", (4, 32, 32, 3), {"sts": True}),
    "slowfast": ("slowfast_r50_8x8", (8, 64, 64, 3), {"sts": True}),
    "r2plus1d": ("r2plus1d_18", (4, 32, 32, 3), {"sts": True, "depth": 10}),
    "csn": ("ipcsn_50", (4, 64, 64, 3), {"sts": True}),
    "x3d": ("x3d_s", (4, 64, 64, 3), {"sts": True}),
    # stochastic depth off: its random draws differ between backends.
    "videoswin": ("videoswin_tiny", (4, 32, 32, 3), {"drop_path_rate": 0.0}),
}

_SCRIPT = r'''
import json, sys
import numpy as np
import keras
from tfsts import models

workdir, families = sys.argv[1], json.loads(sys.argv[2])
backend = keras.backend.backend()
float64 = len(sys.argv) > 3 and sys.argv[3] == "float64"  # the logits only, from the saved weights
if float64:
    keras.config.set_floatx("float64")
for family, (name, shape, overrides) in families.items():
    keras.utils.set_random_seed(0)
    model = models.build_model(name, 5, input_shape=tuple(shape), dropout=0.0, **overrides)
    weights_file = f"{workdir}/{family}.weights.h5"
    if float64:
        model.load_weights(weights_file)
        x = np.random.default_rng(0).uniform(0, 255, (4, *shape))
        np.savez(f"{workdir}/{family}.float64.npz", logits=keras.ops.convert_to_numpy(model(x, training=False)))
        print(family, "float64 ok", flush=True)
        continue
    if backend == "tensorflow":  # the reference side: perturb BN, then save
        rng = np.random.default_rng(1)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, var = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                                   rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        model.save_weights(weights_file)
    else:
        model.load_weights(weights_file)
    x = np.random.default_rng(0).uniform(0, 255, (4, *shape)).astype("float32")
    y = np.array([1, 3, 0, 4], dtype="int32")
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    before = np.concatenate([np.ravel(w) for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=backend == "jax")
    loss = model.train_on_batch(x, y)
    after = np.concatenate([np.ravel(w) for w in model.get_weights()])
    np.savez(f"{workdir}/{family}.{backend}.npz", logits=logits, loss=float(loss), update=after - before)
    print(family, backend, "ok", flush=True)
    keras.backend.clear_session()
'''


# The tolerances of the module docstring.
LOGITS_TOL, LOSS_TOL, UPDATE_TOL = 1e-4, 1e-3, 1e-3


def _run(backend: str, workdir: Path, families: dict, *extra: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(workdir), json.dumps(families), *extra],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=3000,
    )
    assert result.returncode == 0, f"{backend} side failed:\n{result.stderr[-6000:]}"


@pytest.mark.slow
def test_every_family_gives_tensorflows_outputs_and_step_under_jax(tmp_path):
    _run("tensorflow", tmp_path, FAMILIES)
    _run("jax", tmp_path, FAMILIES)

    def relative(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    logits = {f: relative(np.load(tmp_path / f"{f}.jax.npz")["logits"], np.load(tmp_path / f"{f}.tensorflow.npz")["logits"])
              for f in FAMILIES}
    beyond = {f: FAMILIES[f] for f, error in logits.items() if not error <= LOGITS_TOL}
    rounding = {}
    if beyond:  # float32 rounding or a real difference? Both backends against TF in float64.
        _run("tensorflow", tmp_path, beyond, "float64")
        for f in beyond:
            truth = np.load(tmp_path / f"{f}.float64.npz")["logits"]
            rounding[f] = (relative(np.load(tmp_path / f"{f}.tensorflow.npz")["logits"], truth),
                           relative(np.load(tmp_path / f"{f}.jax.npz")["logits"], truth))
    problems = []
    for family in FAMILIES:
        tf_side = np.load(tmp_path / f"{family}.tensorflow.npz")
        jax_side = np.load(tmp_path / f"{family}.jax.npz")
        tf_error, jax_error = rounding.get(family, (0.0, 0.0))
        logits_ok = logits[family] <= LOGITS_TOL or jax_error <= 2 * tf_error
        loss = abs(float(jax_side["loss"]) - float(tf_side["loss"])) / abs(float(tf_side["loss"]))
        update_tf, update_jax = tf_side["update"], jax_side["update"]
        update = np.linalg.norm(update_jax - update_tf) / np.linalg.norm(update_tf)
        if not (logits_ok and loss <= LOSS_TOL and update <= UPDATE_TOL and np.linalg.norm(update_tf) > 0):
            problems.append(f"{family}: logits {logits[family]:.1e} (against float64: TF {tf_error:.1e}, JAX "
                            f"{jax_error:.1e}), loss {loss:.1e}, update {update:.1e} (relative)")
    assert not problems, "JAX differs from TensorFlow:\n" + "\n".join(problems)

_CONV_GRADIENT_SCRIPT = r'''
import json, sys
import jax, numpy as np
from keras import ops
from tfsts.layers import STSConv3D

worst = 0.0
for kernel_size, c, frames, strides in json.loads(sys.argv[1]):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, frames, 6, 5, c)).astype("float32")
    kernel = rng.normal(size=(*kernel_size, c, 4)).astype("float32")
    layer = STSConv3D(4, kernel_size, strides=strides, sts=False)
    layer.build(x.shape)
    pads = [(0, 0)] + [(k // 2, k // 2) for k in kernel_size] + [(0, 0)]
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    ours = lambda x, k: ops.sum(layer._plain(x, k) * upstream)
    plain = lambda x, k: ops.sum(ops.conv(ops.pad(x, pads), k, strides=strides, padding="valid") * upstream)
    for g_ours, g_plain in zip(jax.grad(ours, (0, 1))(x, kernel), jax.grad(plain, (0, 1))(x, kernel)):
        worst = max(worst, float(np.abs(g_ours - g_plain).max() / np.abs(g_plain).max()))
print(worst)
'''


def test_plain_conv_gradients_under_jax():
    """The plain conv's formulations, the custom-gradient temporal convs among them (stride 1;
    strided, over frame phases), give JAX's autodiff of a plain padded conv (relative max
    error <= 1e-5)."""
    stride_1 = (1, 1, 1)
    cases = [((3, 1, 1), 128, 5, stride_1), ((5, 1, 1), 128, 7, stride_1), ((3, 1, 1), 8, 5, stride_1),
             ((3, 3, 3), 16, 4, stride_1), ((3, 1, 1), 16, 6, (2, 1, 1)), ((3, 1, 1), 16, 5, (2, 1, 1)),
             ((3, 1, 1), 16, 8, (4, 1, 1))]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _CONV_GRADIENT_SCRIPT, json.dumps(cases)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert float(result.stdout.split()[-1]) <= 1e-5


_INFERENCE_SCRIPT = r"""
import json, sys
import numpy as np
from keras import ops
from tfsts.layers import BatchNorm, STSConv3D
from tfsts.layers.sts_conv import cuts_aligned_frames

worst, cut = 0.0, 0
for kernel_size, strides, shape in json.loads(sys.argv[1]):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *shape)).astype("float32")
    c = shape[-1]
    layer = STSConv3D(c, kernel_size, strides=strides, groups=c, sts=False)
    layer.build(x.shape)
    cut += cuts_aligned_frames(x.shape, "float32", kernel_size, strides[1:])
    infer, train = (ops.convert_to_numpy(layer(x, training=t)) for t in (False, True))
    worst = max(worst, float(np.abs(infer - train).max() / np.abs(train).max()))
    bn = {fused: BatchNorm(fused=fused) for fused in (True, False)}
    weights = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)]
    for layer_ in bn.values():
        layer_.build(x.shape)
        layer_.set_weights(weights)
    a, b = (ops.convert_to_numpy(bn[f](x, training=False)) for f in (True, False))
    worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
print(cut, worst)
"""


def test_inference_formulations_under_jax():
    """Under JAX, a depthwise conv that does not train (`depthwise_conv3d_inference`, where its
    cuts are aligned) gives the training formulation's outputs, and BatchNorm(fused=True) Keras'
    inference BN (relative max error <= 1e-6; the families' test runs them inside whole models)."""
    cases = [((3, 3, 3), (1, 1, 1), (4, 8, 8, 16)), ((3, 3, 3), (1, 2, 2), (4, 8, 8, 16)),
             ((5, 3, 3), (1, 1, 1), (6, 4, 4, 16)), ((3, 3, 3), (1, 1, 1), (4, 5, 5, 3))]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _INFERENCE_SCRIPT, json.dumps(cases)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    cut, worst = result.stdout.split()[-2:]
    assert int(cut) == 3  # the last case's frames are not 64-byte multiples: the training formulation
    assert float(worst) <= 1e-6


def test_the_model_code_imports_no_tensorflow():
    """tfsts/layers and tfsts/models are written on keras.ops and Keras layers: no
    module there names TensorFlow (inflation reads 2D Keras models, also backend-neutral),
    but tfsts/layers/backend_kernels.py, whose TensorFlow custom gradients run only on that
    backend (its keras.ops path is what the JAX tests here run)."""
    offenders = []
    for path in sorted((REPO / "tfsts").glob("layers/*.py")) + sorted((REPO / "tfsts").glob("models/*.py")):
        if path.name == "backend_kernels.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if "import tensorflow" in code or "tf." in code.replace("tfsts.", ""):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


_STS_SCRIPT = r'''
import json, sys
import jax, numpy as np
from keras import ops
from tfsts.layers import STSConv3D

for name, kwargs, shape in json.loads(sys.argv[2]):
    data = np.load(sys.argv[1] + f"/{name}.inputs.npz")
    layer = STSConv3D(**kwargs)
    layer.build(shape)
    layer.kernel.assign(data["kernel"])
    conv = layer._sts_depthwise if layer.resolved_case == "A" else layer._sts_temporal
    loss = lambda x, k: ops.sum(conv(x, k) * data["upstream"])
    gx, gk = jax.grad(loss, (0, 1))(data["x"], data["kernel"])
    np.savez(sys.argv[1] + f"/{name}.jax.npz", y=np.asarray(layer(data["x"])), gx=np.asarray(gx), gk=np.asarray(gk))
'''

STS_CASES = [
    ("a", dict(filters=16, kernel_size=3, groups=16), (2, 3, 8, 6, 16)),
    ("a_stride2", dict(filters=16, kernel_size=3, groups=16, strides=(1, 2, 2)), (2, 3, 8, 12, 16)),
    ("a_rowcol", dict(filters=16, kernel_size=3, groups=16, sts_variant="rowcol"), (2, 3, 8, 6, 16)),
    ("b_products", dict(filters=8, kernel_size=(3, 1, 1)), (2, 3, 4, 5, 8)),
    ("b_convs", dict(filters=8, kernel_size=(3, 1, 1)), (2, 3, 4, 5, 16)),
    ("b_rowcol", dict(filters=8, kernel_size=(3, 1, 1), sts_variant="rowcol"), (2, 3, 4, 5, 16)),
    ("c", dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (2, 5, 4, 5, 16)),
    ("c_even_frames", dict(filters=8, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (2, 6, 4, 5, 16)),
]


def test_sts_outputs_and_gradients_under_jax_equal_tensorflows(tmp_path):
    """Every STS case and variant, both forwards of case B (tap products below 16 channels,
    each branch's conv from 16) and the TensorFlow-only custom gradients
    (tfsts/layers/backend_kernels.py, `shifted_tap_conv`): JAX's outputs and its autodiff
    gradients equal TensorFlow's (relative max error <= 1e-5)."""
    import tensorflow as tf

    from tfsts.layers import STSConv3D

    rng = np.random.default_rng(0)
    want = {}
    for name, kwargs, shape in STS_CASES:
        layer = STSConv3D(**kwargs)
        layer.build(shape)
        x = rng.normal(size=shape).astype("float32")
        upstream = rng.normal(size=layer.compute_output_shape(shape)).astype("float32")
        np.savez(tmp_path / f"{name}.inputs.npz", x=x, kernel=layer.kernel.numpy(), upstream=upstream)
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        want[name] = [y.numpy(), *[g.numpy() for g in tape.gradient(loss, [x, layer.kernel])]]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _STS_SCRIPT, str(tmp_path), json.dumps(STS_CASES)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    problems = []
    for name, _, _ in STS_CASES:
        got = np.load(tmp_path / f"{name}.jax.npz")
        for key, expected in zip(("y", "gx", "gk"), want[name]):
            error = np.abs(got[key] - expected).max() / np.abs(expected).max()
            if not error <= 1e-5:
                problems.append(f"{name} {key}: {error:.1e}")
    assert not problems, problems
