"""Where TF runs its convs on Eigen: the input gradient of a Conv2D over frames (1 x k x k and
1 x 1 x 1 convs, and dense convs with their temporal taps stacked as channels) as TF's own
Conv2DBackpropInput against `tfsts.layers.backend_kernels.frame_conv2d`'s (a forward conv of dy
with the rotated kernel at stride 1; a GEMM for 1 x 1 kernels): the measurements behind it.

At SlowOnly-R50's frame shapes (batch 2, 8x112x112: 16 frames), each conv's forward, its input
gradient alone, and forward + both gradients, timed side by side round after round
(tf.function, float32, 2 threads), median per formulation; the gradients are checked equal
first. `--models`: then each model's training step, tfsts against the same model and weights
with TF's own input gradient (traced with `frame_conv2d` replaced by `keras.ops.conv`),
interleaved in one process, median of the per-round ratios (plain convs, sts=False).

Eigen unless TF_ENABLE_ONEDNN_OPTS is set (with oneDNN `frame_conv2d` is `keras.ops.conv`, and
both rows time the same op).

    python -m benchmarks.bench_frame_convs [--rounds 7] [--models slowonly_r50,ipcsn_50 --model-rounds 7]
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# (what, frames [N, H, W, C], kernel [kh, kw, C, O], strides)
CASES = [
    ("res2 1x3x3", (16, 28, 28, 64), (3, 3, 64, 64), (1, 1)),
    ("res3 1x3x3", (16, 14, 14, 128), (3, 3, 128, 128), (1, 1)),
    ("res4 1x3x3", (16, 7, 7, 256), (3, 3, 256, 256), (1, 1)),
    ("res5 1x3x3", (16, 4, 4, 512), (3, 3, 512, 512), (1, 1)),
    ("res5 1x1x1 512 -> 2048", (16, 4, 4, 512), (1, 1, 512, 2048), (1, 1)),
    ("res5 1x1x1 2048 -> 512", (16, 4, 4, 2048), (1, 1, 2048, 512), (1, 1)),
    ("res5 shortcut 1x1x1 /2", (16, 7, 7, 1024), (1, 1, 1024, 2048), (2, 2)),
    ("res3 shortcut 1x1x1 /2", (16, 28, 28, 256), (1, 1, 256, 512), (2, 2)),
]


def keras_conv(x, kernel, strides, padding):
    from keras import ops

    return ops.conv(x, kernel, strides=strides, padding=padding)


@contextlib.contextmanager
def tf_input_gradients():
    """The zoo's frame convs take TF's own gradients while inside."""
    from tfsts.layers import sts_conv

    ours = sts_conv.frame_conv2d
    sts_conv.frame_conv2d = keras_conv
    try:
        yield
    finally:
        sts_conv.frame_conv2d = ours


def conv_rows(rounds: int) -> list[list[str]]:
    import numpy as np
    import tensorflow as tf

    from benchmarks.timing import interleaved_medians
    from tfsts.layers.backend_kernels import frame_conv2d

    rng = np.random.default_rng(0)
    rows = []
    for what, x_shape, k_shape, strides in CASES:
        x = tf.constant(rng.normal(size=x_shape).astype("float32"))
        kernel = tf.constant(rng.normal(size=k_shape).astype("float32") * 0.05)
        padding = "same" if strides == (1, 1) else "valid"
        candidates, grads = {}, {}
        for name, conv in (("TF's gradients", keras_conv), ("frame_conv2d (tfsts)", frame_conv2d)):

            def gradients(conv=conv, inputs_only=False):
                with tf.GradientTape() as tape:
                    tape.watch([x, kernel])
                    loss = tf.reduce_sum(tf.square(conv(x, kernel, strides, padding)))
                return tape.gradient(loss, x if inputs_only else [x, kernel])

            forward = tf.function(lambda conv=conv: conv(x, kernel, strides, padding))
            both = tf.function(gradients)
            dx_only = tf.function(lambda gradients=gradients: gradients(inputs_only=True))
            grads[name] = [g.numpy() for g in both()]
            candidates[(name, "forward")] = lambda f=forward: f().numpy()
            candidates[(name, "dx")] = lambda f=dx_only: f().numpy()
            candidates[(name, "train")] = lambda f=both: [g.numpy() for g in f()]
        for ours, theirs in zip(*grads.values()):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(np.abs(theirs).max()))
        times = interleaved_medians(candidates, rounds=rounds, warmup=1)
        for name in grads:
            rows.append([what, str(x_shape), name, *(f"{times[(name, part)] * 1e3:.1f}" for part in ("forward", "dx", "train"))])
        print(f"  {what} done", flush=True)
    return rows


def model_row(name: str, rounds: int) -> list[str]:
    from benchmarks.timing import ab_row, training_step_ab

    times = training_step_ab(name, {"tfsts": contextlib.nullcontext, "tf": tf_input_gradients}, rounds, sts=False)
    return ab_row(name, times, "tfsts", "tf")


def main() -> None:
    from benchmarks.timing import formulation_benchmark_args, print_table

    args = formulation_benchmark_args(__doc__, model_rounds=7)
    print_table(["conv", "frames", "input gradient", "forward ms", "input gradient ms", "forward + both gradients ms"],
                conv_rows(args.rounds))
    if args.models:
        rows = [model_row(name, args.model_rounds) for name in args.models.split(",") if name]
        print_table(["model (train step, batch 2, 8x112x112)", "tfsts ms", "TF's gradients ms", "ratio (per round)"], rows)


if __name__ == "__main__":
    main()
