"""Which formulation of a plain 3D conv is fastest where: the measurements behind
`STSConv3D._plain`'s choice (NATIVE_CONV3D_MIN_CHANNELS, GEMM_KERNEL_GRADIENT_MIN_CHANNELS
and `centre_tap` in tfsts/layers/sts_conv.py).

For layer shapes of ResNet-18, R(2+1)D-18 and SlowOnly at batch 2, 8x112x112 (and
R(2+1)D-34's strided res3 temporal conv at 224 px), each
formulation's forward pass and its forward + backward (input and kernel gradients) are
timed side by side, round after round, median per formulation (tf.function, float32,
CPU, 2 threads). All formulations give the same sums (checked before timing):

- `frames-as-channels`: the kt temporal neighbours stacked as channels, one Conv2D
  (`dense_conv3d_as_2d`);
- `Conv3D`: TF's native Conv3D with 'same' padding (stride 1), or after a Pad (strided);
- `[T, H*W] conv, own padding`: a strided kt x 1 x 1 conv as a kt x 1 Conv2D over each
  clip laid out as [T, H * W], with the conv's explicit padding, and either TF's own
  gradients of that conv or GEMMs over the frame phases (`strided_temporal_conv`);
- `Conv3D, GEMM kernel grad`: Conv3D with its kernel gradient taken as one matmul over the
  taps (`temporal_conv3d`);
- `centre tap`: what tfsts runs on a one-frame input (the other taps read only padding).

    python -m benchmarks.bench_convs [--rounds 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (what, input [B, T, H, W, C], kernel [kt, kh, kw, C, O][, strides])
CASES = [
    ("ResNet-18 res2 3x3x3", (2, 8, 56, 56, 64), (3, 3, 3, 64, 64)),
    ("ResNet-18 res3 3x3x3", (2, 4, 28, 28, 128), (3, 3, 3, 128, 128)),
    ("ResNet-18 res4 3x3x3", (2, 2, 14, 14, 256), (3, 3, 3, 256, 256)),
    ("ResNet-18 res5 3x3x3, one frame", (2, 1, 7, 7, 512), (3, 3, 3, 512, 512)),
    ("RGB stem 3x7x7", (2, 8, 112, 112, 3), (3, 7, 7, 3, 64)),
    ("R(2+1)D stem temporal 3x1x1", (2, 8, 56, 56, 45), (3, 1, 1, 45, 64)),
    ("R(2+1)D res2 temporal 3x1x1", (2, 8, 56, 56, 144), (3, 1, 1, 144, 64)),
    ("R(2+1)D res3 temporal 3x1x1", (2, 4, 28, 28, 288), (3, 1, 1, 288, 128)),
    ("R(2+1)D res4 temporal 3x1x1", (2, 2, 14, 14, 576), (3, 1, 1, 576, 256)),
    ("SlowOnly res4 3x1x1", (2, 8, 14, 14, 1024), (3, 1, 1, 1024, 256)),
    ("SlowOnly res5 3x1x1", (2, 8, 7, 7, 2048), (3, 1, 1, 2048, 512)),
    ("R(2+1)D res3 temporal 3x1x1, stride 2", (2, 8, 28, 28, 230), (3, 1, 1, 230, 128), (2, 1, 1)),
    ("R(2+1)D res4 temporal 3x1x1, stride 2", (2, 4, 14, 14, 460), (3, 1, 1, 460, 256), (2, 1, 1)),
    ("R(2+1)D-34 res3 temporal, stride 2, 224 px", (2, 8, 56, 56, 230), (3, 1, 1, 230, 128), (2, 1, 1)),
]


def formulations(kernel_shape, frames: int, strides=(1, 1, 1)) -> dict:
    from keras import ops

    from tfsts.layers.sts_conv import centre_tap, dense_conv3d_as_2d, pad_symmetric, strided_temporal_conv, temporal_conv3d

    if strides != (1, 1, 1):
        from tfsts.layers.backend_kernels import conv2d_padded

        def temporal_view_conv(x, k, st):
            b, t, h, w, c = x.shape
            pt = (k.shape[0] - 1) // 2
            y = conv2d_padded(ops.reshape(x, (b, t, h * w, c)), ops.reshape(k, (k.shape[0], 1, c, -1)), (st, 1), ((pt, pt), (0, 0)))
            return ops.reshape(y, (b, -1, h, w, k.shape[-1]))

        def padded_conv3d(x, k):
            x, padding = pad_symmetric(x, k.shape[:3], strides)
            return ops.conv(x, k, strides=strides, padding=padding)

        return {
            "frames-as-channels": lambda x, k: dense_conv3d_as_2d(x, k, strides),
            "Conv3D": padded_conv3d,
            "[T, H*W] conv, own padding, TF's gradients": lambda x, k: temporal_view_conv(x, k, strides[0]),
            "[T, H*W] conv, own padding, GEMM gradients": lambda x, k: strided_temporal_conv(x, k, strides[0]),
        }
    out = {
        "frames-as-channels": lambda x, k: dense_conv3d_as_2d(x, k, (1, 1, 1)),
        "Conv3D": lambda x, k: ops.conv(x, k, strides=1, padding="same"),
    }
    if kernel_shape[1:3] == (1, 1):
        out["Conv3D, GEMM kernel grad"] = temporal_conv3d
    if frames == 1:
        out["centre tap"] = lambda x, k: dense_conv3d_as_2d(x, centre_tap(k), (1, 1, 1))
    return out


def picked(kernel_shape, frames: int, strides=(1, 1, 1)) -> str:
    """The formulation STSConv3D(sts=False) runs on this shape: read from its graph (Conv3D,
    with the IdentityN of a custom gradient, or Conv2D ops), except that a one-frame input is
    the centre tap by construction."""
    import tensorflow as tf

    from tfsts.layers import STSConv3D

    kt, kh, kw, c, o = kernel_shape
    layer = STSConv3D(o, (kt, kh, kw), strides=strides, sts=False)
    layer.build((None, frames, 8, 8, c))
    x = tf.zeros((1, frames, 8, 8, c))
    graph = tf.function(lambda: layer(x, training=True)).get_concrete_function().graph  # the training step's
    types = {op.type for op in graph.get_operations()}
    if frames == 1 and kt > 1:
        return "centre tap"
    if any(op.type == "Conv2D" and op.get_attr("padding") == b"EXPLICIT" for op in graph.get_operations()):
        return "[T, H*W] conv, own padding, " + ("GEMM gradients" if "IdentityN" in types else "TF's gradients")
    if "Conv3D" in types:
        return "Conv3D, GEMM kernel grad" if "IdentityN" in types else "Conv3D"
    return "frames-as-channels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    import tfsts
    from benchmarks.timing import interleaved_medians, print_table

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {tfsts.cpu_kernels()}; "
          f"ms, median of {args.rounds} rounds; (tfsts): what a training call runs")
    rng = np.random.default_rng(0)
    rows = []
    for what, x_shape, k_shape, *stride in CASES:
        strides = stride[0] if stride else (1, 1, 1)
        x = tf.constant(rng.standard_normal(x_shape).astype("float32"))
        kernel = tf.Variable(rng.standard_normal(k_shape).astype("float32") * 0.05)
        fns = formulations(k_shape, x_shape[1], strides)
        first = None
        candidates = {}
        for name, fn in fns.items():
            y = fn(x, kernel).numpy()
            first = y if first is None else first
            np.testing.assert_allclose(y, first, rtol=1e-3, atol=1e-3 * np.abs(first).max())

            def grad(fn=fn):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.square(fn(x, kernel)))
                return tape.gradient(loss, [x, kernel])

            forward, backward = tf.function(lambda fn=fn: fn(x, kernel)), tf.function(grad)
            candidates[(name, "forward")] = lambda f=forward: f().numpy()
            candidates[(name, "train")] = lambda f=backward: [g.numpy() for g in f()]
        times = interleaved_medians(candidates, rounds=args.rounds, warmup=1)
        choice = picked(k_shape, x_shape[1], strides)
        for name in fns:
            rows.append([what, name + (" (tfsts)" if name == choice else ""),
                         f"{times[(name, 'forward')] * 1e3:.1f}", f"{times[(name, 'train')] * 1e3:.1f}"])
        print(f"  {what} done", flush=True)
    print_table(["layer (batch 2)", "formulation", "forward ms", "forward + backward ms"], rows)


if __name__ == "__main__":
    main()
