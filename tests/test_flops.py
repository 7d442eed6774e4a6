"""tfsts.flops: MAC counts against an independent oracle (the conv / matmul ops
TensorFlow actually runs), hand counts, the sublayer walk, and the CLI as a user
meets it (subprocess: output, one-line errors, exit status)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from tfsts import flops, models
from tfsts.layers import STSConv3D

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ the graph oracle
def _shape(tensor) -> list[int]:
    return [int(d) for d in tensor.shape]


def graph_macs(model: keras.Model, input_shape) -> int:
    """MACs of the conv / matmul ops of the model's traced TF graph (batch 1) that
    multiply an activation with a weight: conv + dense, as tfsts.flops counts, but
    read from what runs instead of from the layers. Activation-by-activation
    products (attention's q @ k, attn @ v) are left out, as flops leaves them out."""
    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32)).graph
    clip = [op for op in graph.get_operations() if op.type == "Placeholder" and op.outputs[0].dtype == tf.float32]
    if len(clip) != 1:
        raise AssertionError(f"expected one float input placeholder, got {clip}")
    depends: dict[str, bool] = {}

    def on_input(tensor) -> bool:  # does this tensor depend on the clip?
        op = tensor.op
        if op.name not in depends:
            depends[op.name] = op is clip[0] or any(on_input(t) for t in op.inputs)
        return depends[op.name]

    total = 0
    for op in graph.get_operations():
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            # Keras' TF backend runs a grouped conv as a jit-compiled function: one
            # call of (activation, kernel) -> output, counted as the conv it is.
            a, b = op.inputs[0], op.inputs[1]
            if not (len(op.inputs) == 2 and len(op.outputs) == 1 and on_input(a) and not on_input(b)
                    and len(a.shape) == len(b.shape) == 5):
                raise AssertionError(f"the oracle does not know what {op.name} computes")
            total += math.prod(_shape(op.outputs[0])) * math.prod(_shape(b)[:-1])
            continue
        if op.type not in ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            continue
        a, b = op.inputs[0], op.inputs[1]
        if on_input(a) == on_input(b):  # activation x activation (or constants)
            continue
        out = _shape(op.outputs[0])
        if op.type == "DepthwiseConv2dNative":
            total += math.prod(out) * math.prod(_shape(b)[:2])
        elif op.type.startswith("Conv"):
            total += math.prod(out) * math.prod(_shape(b)[:-1])
        else:  # (batched) matmul: out [..., M, N], contraction K
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            k = _shape(a)[-2] if transpose_a else _shape(a)[-1]
            total += math.prod(out) * k
    return total


# Every family at a small size, STS on and off where the model has it.
ORACLE_CASES = [
    ("resnet3d_18", (4, 32, 32, 3), {"shortcut_type": "A"}),
    ("resnet3d_18", (4, 32, 32, 3), {"shortcut_type": "B"}),
    ("resnet3d_50", (4, 32, 32, 3), {}),
    ("preact_resnet3d_200", (4, 32, 32, 3), {}),
    ("wide_resnet3d_50", (4, 32, 32, 3), {}),
    ("resnext3d_101", (4, 32, 32, 3), {}),
    ("densenet3d_121", (16, 32, 32, 3), {}),
    ("i3d_r50", (8, 32, 32, 3), {}),
    ("slowonly_r50", (4, 32, 32, 3), {"sts": True}),
    ("slowonly_r50", (4, 32, 32, 3), {"sts": False}),
    ("slowfast_r50_8x8", (16, 32, 32, 3), {"sts": True}),
    ("r2plus1d_18", (4, 32, 32, 3), {"sts": True}),
    ("r2plus1d_18", (4, 32, 32, 3), {"sts": False}),
    ("ircsn_50", (4, 64, 64, 3), {"sts": True}),
    ("ipcsn_50", (4, 32, 32, 3), {"sts": False}),
    ("x3d_s", (4, 64, 64, 3), {"sts": True}),
    # 2x8x8 tokens: attention runs on windows padded to 2x14x14 (2x16x16: 2x21x21).
    ("videoswin_tiny", (4, 32, 32, 3), {}),
    ("videoswin_tiny", (4, 64, 64, 3), {}),
]


@pytest.mark.parametrize("name,shape,kwargs", ORACLE_CASES, ids=[f"{c[0]}-{c[2]}" for c in ORACLE_CASES])
def test_count_macs_equals_the_conv_and_matmul_ops_tf_runs(name, shape, kwargs):
    model = models.build_model(name, 7, input_shape=shape, **kwargs)
    assert flops.count_macs(model) - padding_tap_macs(model) == graph_macs(model, shape)
    keras.backend.clear_session()


def padding_tap_macs(model: keras.Model) -> int:
    """The MACs flops counts that tfsts does not run: a plain conv with kt > 1 taps on a
    one-frame input evaluates its centre tap only (the others read zero padding)."""
    skipped = 0
    for layer in model.layers:
        if isinstance(layer, STSConv3D) and not layer.sts and layer.kernel_size[0] > 1 and layer.input.shape[1] == 1:
            kt = layer.kernel_size[0]
            skipped += layer.count_macs(layer.input.shape) * (kt - 1) // kt
    return skipped


def test_one_frame_inputs_skip_exactly_the_padding_taps():
    """resnet3d_18 on 4 frames reaches one frame after res3's strided conv; the eleven 3x3x3
    convs from there on run their centre taps, a third of their MACs."""
    model = models.build_model("resnet3d_18", 7, input_shape=(4, 32, 32, 3))
    convs = [l for l in model.layers if isinstance(l, STSConv3D) and l.kernel_size == (3, 3, 3)]
    one_frame = [l.name for l in convs if l.input.shape[1] == 1]
    assert one_frame == [l.name for l in convs[5:]] and one_frame[0] == "conv3_block1_2_conv"
    skipped = sum(l.count_macs(l.input.shape) for l in convs[5:]) * 2 // 3
    assert skipped > 0 and padding_tap_macs(model) == skipped
    assert flops.count_macs(model) - skipped == graph_macs(model, (4, 32, 32, 3))
