"""tfsts leaves TensorFlow's CPU-kernel choice (oneDNN or Eigen) to TF and the user
(tfsts/__init__.py says why), and names the choice in benchmark headers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.reference_numpy import conv_nd, conv_nd_gradients


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


# One dense 3x3x3 conv, trained and inferred, in a process whose TF loads with the given
# kernels: which TF conv op each call runs, and its gradients against Keras' Conv3D.
FORMULATION_PROBE = """
import numpy as np, tensorflow as tf, keras
from tfsts.layers import STSConv3D
from tfsts.layers.backend_kernels import tf_cpu_convs_on_eigen
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(2, 4, 8, 6, 16)).astype("float32"))
kernel = rng.normal(size=(3, 3, 3, 16, 8)).astype("float32")
ours = STSConv3D(8, 3, sts=False, use_bias=False)
ours.build(x.shape)
ours.kernel.assign(kernel)
theirs = keras.layers.Conv3D(8, 3, padding="same", use_bias=False)
theirs.build(x.shape)
theirs.kernel.assign(kernel)
def ops_of(training):
    graph = tf.function(lambda: ours(x, training=training)).get_concrete_function().graph
    return sorted({op.type for op in graph.get_operations()} & {"Conv2D", "Conv3D"})
grads = []
for layer in (ours, theirs):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.kernel])])
error = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(*grads))
# A temporal 3x1x1 conv on 128 channels: its input gradient as Eigen's transposed Conv3D or a GEMM.
xt = tf.constant(rng.normal(size=(1, 4, 3, 3, 128)).astype("float32"))
temporal = STSConv3D(16, (3, 1, 1), sts=False, use_bias=False)
temporal.build(xt.shape)
def input_gradient():
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(temporal(xt, training=True) ** 2)
    return tape.gradient(loss, xt)
dx_ops = {op.type for op in tf.function(input_gradient).get_concrete_function().graph.get_operations()}
reference = keras.layers.Conv3D(16, (3, 1, 1), padding="same", use_bias=False)
reference.build(xt.shape)
reference.kernel.assign(temporal.kernel)
with tf.GradientTape() as tape:
    tape.watch(xt)
    loss = tf.reduce_sum(reference(xt) ** 2)
dx_reference = tape.gradient(loss, xt).numpy()
error = max(error, float(np.abs(input_gradient().numpy() - dx_reference).max() / np.abs(dx_reference).max()))
print(tf_cpu_convs_on_eigen(), ",".join(ops_of(True)), ",".join(ops_of(False)), "Conv3DBackpropInputV2" in dx_ops, error)
"""


def formulation_in_fresh_process(env_value: str) -> tuple[str, str, str, str, float]:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": env_value, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", FORMULATION_PROBE], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    eigen, train_ops, infer_ops, transposed_conv3d, error = out.stdout.strip().splitlines()[-1].split()
    return eigen, train_ops, infer_ops, transposed_conv3d, float(error)


def test_on_eigen_convs_train_as_conv2d_and_gemms():
    """Eigen's Conv3D gradients are slow (tfsts/layers/sts_conv.py, the formulation rules): the
    training call stacks the frames into one Conv2D, inference keeps Conv3D, and a temporal
    conv's input gradient is a GEMM; same gradients as Keras' Conv3D."""
    eigen, train_ops, infer_ops, transposed_conv3d, error = formulation_in_fresh_process("0")
    assert (eigen, train_ops, infer_ops, transposed_conv3d) == ("True", "Conv2D", "Conv3D", "False")
    assert error < 1e-5


def test_on_onednn_dense_and_temporal_convs_train_on_conv3d():
    eigen, train_ops, infer_ops, transposed_conv3d, error = formulation_in_fresh_process("1")
    assert (eigen, train_ops, infer_ops, transposed_conv3d) == ("False", "Conv3D", "Conv3D", "True")
    assert error < 1e-5


# frame_conv2d's outputs and gradients, and whether its gradient graph runs TF's
# Conv2DBackpropInput, in a process whose TF loads with Eigen's kernels.
FRAME_CONV_PROBE = """
import sys
import numpy as np, tensorflow as tf
from tfsts.layers.backend_kernels import frame_conv2d, tf_cpu_convs_on_eigen
data = dict(np.load(sys.argv[1]))
x, kernel, dy = (tf.constant(data[k]) for k in ("x", "kernel", "dy"))
strides, padding = tuple(int(s) for s in data["strides"]), str(data["padding"])
def run():
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = frame_conv2d(x, kernel, strides, padding)
        loss = tf.reduce_sum(y * dy)
    return [y, *tape.gradient(loss, [x, kernel])]
graph = tf.function(run).get_concrete_function().graph
y, dx, dk = (t.numpy() for t in run())
np.savez(sys.argv[2], y=y, dx=dx, dk=dk)
print(tf_cpu_convs_on_eigen(), "Conv2DBackpropInput" in {op.type for op in graph.get_operations()})
"""


@pytest.mark.parametrize(
    "x_shape, kernel_size, strides, tf_input_gradient",
    [
        ((2, 4, 4, 16), (3, 3), (1, 1), False),  # small frames: a forward conv of dy
        ((2, 5, 9, 8), (1, 3), (1, 1), False),
        ((2, 6, 6, 16), (1, 1), (1, 1), False),  # 1 x 1: a GEMM
        ((2, 7, 7, 16), (1, 1), (2, 2), False),  # ... set back on the stride's grid, odd frames
        ((2, 7, 6, 8), (1, 1), (2, 2), False),
        ((1, 20, 20, 8), (3, 3), (1, 1), True),  # 400 positions: TF's own
        ((2, 9, 9, 8), (3, 3), (2, 2), True),  # strided k x k: TF's own
    ],
)
def test_frame_conv2d_gradients_on_eigen_match_a_numpy_oracle(tmp_path, x_shape, kernel_size, strides, tf_input_gradient):
    """On Eigen, `frame_conv2d` takes 1 x 1 and small-frame input gradients without TF's slow
    Conv2DBackpropInput (benchmarks/bench_frame_convs.py); outputs and both gradients against
    NumPy, the padded input of a strided conv as `dense_conv3d_as_2d` passes it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=x_shape).astype("float32")
    kernel = rng.normal(size=(*kernel_size, x_shape[-1], 4)).astype("float32")
    y_ref = conv_nd(x, kernel, strides)
    dy = rng.normal(size=y_ref.shape).astype("float32")
    dx_ref, dk_ref = conv_nd_gradients(x, kernel, strides, dy)
    ph, pw = ((k - 1) // 2 for k in kernel_size)
    if strides == (1, 1):
        x_in, padding = x, "same"
    else:  # pad_symmetric: the zeros written out, then a 'valid' conv
        x_in, padding = np.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)]), "valid"
    np.savez(tmp_path / "in.npz", x=x_in, kernel=kernel, dy=dy, strides=np.array(strides), padding=np.array(padding))
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", FRAME_CONV_PROBE, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    eigen, uses_tf_input_gradient = out.stdout.strip().splitlines()[-1].split()
    assert (eigen, uses_tf_input_gradient) == ("True", str(tf_input_gradient))
    got = np.load(tmp_path / "out.npz")
    got_dx = got["dx"] if strides == (1, 1) else got["dx"][:, ph : ph + x_shape[1], pw : pw + x_shape[2]]
    for name, ours, reference in (("y", got["y"], y_ref), ("dx", got_dx, dx_ref), ("dk", got["dk"], dk_ref)):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max(), err_msg=name)


# A max pool over [1.0, 1.000001]: TF's own MaxPool3D gradient and tfsts's MaxPool3D's.
MAX_POOL_PROBE = """
import numpy as np, tensorflow as tf
from tfsts.models.blocks import MaxPool3D
x = tf.constant(np.array([1.0, 1.000001], np.float32).reshape(1, 1, 1, 2, 1))
def gradient(pool):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = pool(x)
    return tape.gradient(y, x)
ours = MaxPool3D((1, 1, 2), (1, 1, 2))
graph = tf.function(lambda: gradient(ours)).get_concrete_function().graph
def text(grad):
    return ",".join(str(v) for v in grad.numpy().ravel())
print(text(gradient(lambda v: tf.nn.max_pool3d(v, (1, 1, 2), (1, 1, 2), "VALID"))), text(gradient(ours)),
      "MaxPool3DGrad" in {op.type for op in graph.get_operations()})
"""


def test_max_pool_gradient_goes_to_the_maximum_with_either_kernels():
    """TF's MaxPool3DGrad credits every input within about 1e-5 of the maximum (Eigen's and with
    oneDNN on; if TF fixes it, the first assert fails and backend_kernels.max_pool3d may go back
    to the Keras op); tfsts's MaxPool3D takes TF's 2D MaxPoolGrad, which credits the maximum."""
    for env_value in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": env_value, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run([sys.executable, "-c", MAX_POOL_PROBE], env=env, capture_output=True, text=True,
                             timeout=300, check=True)
        tf_grad, tfsts_grad, uses_3d_grad = out.stdout.strip().splitlines()[-1].split()
        assert tf_grad == "1.0,1.0", env_value
        assert (tfsts_grad, uses_3d_grad) == ("0.0,1.0", "False"), env_value
