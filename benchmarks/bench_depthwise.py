"""Depthwise 3x3x3 convolution (CSN / X3D conv2): exact implementations compared,
forward + backward, float32, on this machine's CPU.

    python -m benchmarks.bench_depthwise [--shape 2,8,56,56,64] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import interleaved_medians, print_table  # noqa: E402
from tfsts.layers import depthwise_conv3d  # noqa: E402


def stacked_taps(x, kernel):
    """One 2D depthwise conv over frames with the 3 temporal neighbours stacked as
    channels (3C), then a sum over the stack: fewer, larger ops."""
    c = kernel.shape[-1]
    xp = tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]])
    t = x.shape[1]
    stacked = tf.concat([xp[:, i : i + t] for i in range(3)], axis=-1)  # [B,T,H,W,3C]
    frames = tf.reshape(stacked, (-1, *x.shape[2:4], 3 * c))
    k = tf.reshape(tf.transpose(kernel[..., 0, :], (1, 2, 0, 3)), (3, 3, 3 * c, 1))
    y = tf.nn.depthwise_conv2d(frames, k, [1, 1, 1, 1], "SAME")
    y = tf.reduce_sum(tf.reshape(y, (-1, *x.shape[2:4], 3, c)), axis=-2)
    return tf.reshape(y, (-1, t, *x.shape[2:4], c))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="2,8,56,56,64")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    c = shape[-1]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(3, 3, 3, 1, c)).astype("float32"))
    grouped = keras.layers.Conv3D(c, 3, padding="same", groups=c, use_bias=False)
    grouped.build(shape)
    grouped.kernel.assign(kernel)

    impls = {
        "keras Conv3D(groups=C)": lambda inp: grouped(inp),
        "tfsts: sum of 2D depthwise over taps": lambda inp: depthwise_conv3d(inp, kernel, (1, 1, 1)),
        "stacked taps, one 2D depthwise": lambda inp: stacked_taps(inp, kernel),
    }
    reference = impls["keras Conv3D(groups=C)"](x).numpy()
    candidates, rows = {}, []
    for name, fn in impls.items():
        np.testing.assert_allclose(fn(x).numpy(), reference, atol=1e-3)  # exact alternatives only
        for jit in (False, True):
            def step(fn=fn):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = fn(x)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, [x, *tape.watched_variables()])

            compiled = tf.function(step, jit_compile=jit)
            candidates[f"{name}{' (XLA)' if jit else ''}"] = lambda f=compiled: [g.numpy() for g in f()]
    medians = interleaved_medians(candidates, rounds=args.rounds)
    base = medians["keras Conv3D(groups=C)"]
    for name, seconds in medians.items():
        rows.append([name, f"{seconds * 1e3:.1f}", f"{base / seconds:.1f}x"])
    print(f"Depthwise 3x3x3 conv, input {shape}, float32, forward+backward, median of {args.rounds}, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads")
    print_table(["implementation", "ms", "speed-up vs keras grouped"], rows)


if __name__ == "__main__":
    main()
