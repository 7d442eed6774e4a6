"""Where a tfsts training step (or inference) spends its time: a TF profiler trace of a few
steps (forward + backward + SGD, or forward only with --pass infer; tf.function, float32,
CPU), each op's self time attributed
to the kind of layer it belongs to (from the op's name scope) and split into compute
ops (convs, matmuls) and data movement (pads, slices, concats, transposes, reshapes).

    python -m benchmarks.profile_step [--models ircsn_50,x3d_s] [--shape 8,112,112] [--batch 2] [--steps 3]
        [--pass train|infer]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from benchmarks.timing import print_table, tf_sgd_train_step  # noqa: E402
from tfsts import models  # noqa: E402
from tfsts.layers import STSConv3D  # noqa: E402

COMPUTE_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "_FusedConv2D", "_MklConv2D")
MOVEMENT_OPS = ("Pad", "Slice", "StridedSlice", "ConcatV2", "Transpose", "Reshape", "Split", "SplitV", "Tile",
                "Pack", "Unpack", "Squeeze", "ExpandDims", "GatherV2", "StridedSliceGrad")


def layer_kind(layer) -> str:
    if isinstance(layer, STSConv3D):
        kt, kh, kw = layer.kernel_size
        if layer.sts:
            return "STS conv"
        if layer.is_depthwise:
            return "depthwise conv" + (" kx1x1" if (kh, kw) == (1, 1) else " 3D")
        if (kt, kh, kw) == (1, 1, 1):
            return "1x1x1 conv"
        if (kh, kw) == (1, 1):
            return "temporal kx1x1 conv"
        if kt == 1:
            return "spatial 1xkxk conv"
        return "dense kxkxk conv"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BN"
    if isinstance(layer, keras.layers.Dense):
        return "head"
    return "other layers (act, add, pool, SE, ...)"


def op_class(op_type: str) -> str:
    if op_type.startswith(COMPUTE_OPS) or "Conv" in op_type or "MatMul" in op_type:
        return "compute"
    if op_type in MOVEMENT_OPS:
        return "movement"
    return "elementwise"


def trace(step, steps: int) -> str:
    logdir = tempfile.mkdtemp(prefix="tfsts_profile_")
    tf.profiler.experimental.start(logdir, options=tf.profiler.experimental.ProfilerOptions(host_tracer_level=2))
    for _ in range(steps):
        step()
    tf.profiler.experimental.stop()
    return glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]


def op_times(path: str) -> list[tuple[str, str, float]]:
    """(op name, op type, self seconds) of every TF op executed on the host (executor
    events named 'name:type'); nested events' time is not double counted."""
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    out = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads (an op's wall time)
                continue
            events = sorted(((e.offset_ps, e.duration_ps, names.get(e.metadata_id, "")) for e in line.events))
            for offset, duration, name in events:
                if ":" not in name or "::" in name or name.startswith(("__inference", "tf_")):
                    continue
                op_name, _, op_type = name.rpartition(":")
                if not op_type or not re.match(r"^[A-Z_][A-Za-z0-9_]*$", op_type):
                    continue
                out.append((op_name, op_type, duration * 1e-12))
    return out


def attribute(model, ops) -> dict:
    kinds = {layer.name: layer_kind(layer) for layer in model.layers}
    table = collections.defaultdict(float)
    for op_name, op_type, seconds in ops:
        parts = [re.sub(r"_\d+$", "", p) for p in op_name.split("/")]
        kind = next((kinds[p] for p in parts if p in kinds), None)
        if kind is None:
            kind = "optimizer" if any(("SGD" in p or "sgd" in p or "Assign" in op_type) for p in parts) else "unattributed"
        table[(kind, op_class(op_type))] += seconds
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="ircsn_50,x3d_s,r2plus1d_18")
    parser.add_argument("--shape", default="8,112,112")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sts", action="store_true", help="STS on (the model's default cases)")
    parser.add_argument("--pass", dest="pass_", choices=("train", "infer"), default="train")
    parser.add_argument("--top-ops", type=int, default=0, help="also list the N heaviest single ops")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    frames = tuple(int(v) for v in args.shape.split(","))
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.models.split(","):
        model = models.build_model(name, 400, input_shape=(*frames, 3), sts=True if args.sts else False)
        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(0, 255, size=(args.batch, *frames, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, 400, size=(args.batch,)).astype("int32"))
        if args.pass_ == "train":
            step = tf_sgd_train_step(model, x, y)
        else:
            step = tf.function(lambda: model(x, training=False))
        step().numpy()
        ops = op_times(trace(lambda: step().numpy(), args.steps))
        table = attribute(model, ops)
        total = sum(table.values())
        by_kind = collections.defaultdict(float)
        for (kind, _), s in table.items():
            by_kind[kind] += s
        rows = []
        for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            split = {c: table.get((kind, c), 0.0) for c in ("compute", "movement", "elementwise")}
            rows.append([kind, f"{seconds / args.steps * 1e3:.0f}", f"{100 * seconds / total:.1f}%",
                         *(f"{split[c] / args.steps * 1e3:.0f}" for c in split)])
        by_type = collections.Counter()
        for _, op_type, s in ops:
            by_type[op_type] += s
        print(f"\n{name}, batch {args.batch}x{'x'.join(map(str, frames))}, sts={args.sts}, {args.pass_}: op self time per step "
              f"{total / args.steps * 1e3:.0f} ms (summed over threads' executor events)")
        print_table(["layer kind", "ms / step", "share", "compute ms", "movement ms", "elementwise ms"], rows)
        print("top op types: " + ", ".join(f"{t} {s / args.steps * 1e3:.0f}" for t, s in by_type.most_common(12)))
        if args.top_ops:
            by_op = collections.Counter()
            for op_name, op_type, s in ops:
                by_op[(op_name, op_type)] += s
            print_table(["op", "type", "ms / step"], [[n, t, f"{s / args.steps * 1e3:.1f}"]
                                                      for (n, t), s in by_op.most_common(args.top_ops)])


if __name__ == "__main__":
    main()
