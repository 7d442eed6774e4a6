"""STS vs plain convolution, forward + backward, float32, CPU, at the shapes where the
reference uses STS: ir-CSN-50 stages 2-3 (case A, depthwise 3x3x3) and SlowOnly-R50
res4 (case B, dense 3x1x1). Same weights, same parameter and MAC counts (checked).

    python -m benchmarks.bench_sts [--rounds 15] [--frames 8] [--batch 2]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import interleaved_times, median_ratio, print_table  # noqa: E402
from tfsts.layers import STSConv3D  # noqa: E402


def cases(batch: int, frames: int):
    """(label, layer kwargs, input shape) at 224 px input."""
    return [
        ("ir-CSN-50 conv2 stage 2 (A)", dict(filters=64, kernel_size=3, groups=64), (batch, frames, 56, 56, 64)),
        ("ir-CSN-50 conv2 stage 3 (A)", dict(filters=128, kernel_size=3, groups=128), (batch, frames, 28, 28, 128)),
        ("ir-CSN-50 conv2 stage 3 stride 2 (A)", dict(filters=128, kernel_size=3, groups=128, strides=(1, 2, 2)), (batch, frames, 56, 56, 128)),
        ("SlowOnly res4 conv1 (B)", dict(filters=256, kernel_size=(3, 1, 1)), (batch, frames, 14, 14, 1024)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for label, kwargs, shape in cases(args.batch, args.frames):
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        layers = {}
        for variant in ("plain", "sts", "sts rowcol"):
            layer = STSConv3D(sts=variant != "plain", sts_variant="rowcol" if variant == "sts rowcol" else "reference", **kwargs)
            layer.build(shape)
            layers[variant] = layer
        layers["sts"].kernel.assign(layers["plain"].kernel)
        layers["sts rowcol"].kernel.assign(layers["plain"].kernel)
        assert layers["sts"].count_params() == layers["plain"].count_params()
        macs = {k: l.count_macs(shape[1:]) for k, l in layers.items()}
        assert len(set(macs.values())) == 1, macs

        def make_step(layer):
            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, [x, layer.kernel])

            return lambda: [g.numpy() for g in step()]

        times = interleaved_times({k: make_step(l) for k, l in layers.items()}, rounds=args.rounds)
        medians = {k: statistics.median(v) for k, v in times.items()}
        rows.append([
            label, str(shape), f"{layers['plain'].count_params():,}", f"{macs['plain'] / 1e9:.3f}",
            f"{medians['plain'] * 1e3:.1f}", f"{medians['sts'] * 1e3:.1f}", f"{median_ratio(times, 'sts', 'plain'):.2f}",
            f"{median_ratio(times, 'sts rowcol', 'plain'):.2f}",
        ])
    print(f"STS vs plain conv, float32, forward+backward, tf.function, {args.rounds} interleaved rounds "
          "(order rotating); ms: medians; ratios: median of the per-round ratios")
    print_table(["conv", "input", "params (both)", "GMACs (both)", "plain ms", "STS ms", "STS/plain", "rowcol/plain"], rows)


if __name__ == "__main__":
    main()
