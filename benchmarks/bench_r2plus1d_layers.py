"""R(2+1)D-18's convs one by one, tfsts against PyTorch: forward + backward (input and kernel
gradients) of each of its 19 distinct conv shapes at batch 2, 8x112x112, float32, 2 threads.
This is how the slow layer of R(2+1)D-18's training step was found (res2's 144 -> 64 temporal
conv; README, "Speed against PyTorch").

Each framework runs in a subprocess of its own, the two alternating for `--runs` runs; per conv,
the best of the runs' medians (7 calls each). tfsts runs `STSConv3D(sts=False)`, i.e. whatever
formulation `STSConv3D._plain` picks for the shape; PyTorch runs `torch.nn.Conv3d`.

    python -m benchmarks.bench_r2plus1d_layers [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = 2
# name, input (T, H, W, C), kernel, filters, strides, times per step, input gradient needed
LAYERS = [
    ("stem spatial 1x7x7 3->45", (8, 112, 112, 3), (1, 7, 7), 45, (1, 2, 2), 1, False),
    ("stem temporal 3x1x1 45->64", (8, 56, 56, 45), (3, 1, 1), 64, (1, 1, 1), 1, True),
    ("res2 spatial 64->144", (8, 56, 56, 64), (1, 3, 3), 144, (1, 1, 1), 4, True),
    ("res2 temporal 144->64", (8, 56, 56, 144), (3, 1, 1), 64, (1, 1, 1), 4, True),
    ("res3 spatial 64->230 /2", (8, 56, 56, 64), (1, 3, 3), 230, (1, 2, 2), 1, True),
    ("res3 temporal 230->128 /2", (8, 28, 28, 230), (3, 1, 1), 128, (2, 1, 1), 1, True),
    ("res3 shortcut 64->128 /2", (8, 56, 56, 64), (1, 1, 1), 128, (2, 2, 2), 1, True),
    ("res3 spatial 128->288", (4, 28, 28, 128), (1, 3, 3), 288, (1, 1, 1), 3, True),
    ("res3 temporal 288->128", (4, 28, 28, 288), (3, 1, 1), 128, (1, 1, 1), 3, True),
    ("res4 spatial 128->460 /2", (4, 28, 28, 128), (1, 3, 3), 460, (1, 2, 2), 1, True),
    ("res4 temporal 460->256 /2", (4, 14, 14, 460), (3, 1, 1), 256, (2, 1, 1), 1, True),
    ("res4 shortcut 128->256 /2", (4, 28, 28, 128), (1, 1, 1), 256, (2, 2, 2), 1, True),
    ("res4 spatial 256->576", (2, 14, 14, 256), (1, 3, 3), 576, (1, 1, 1), 3, True),
    ("res4 temporal 576->256", (2, 14, 14, 576), (3, 1, 1), 256, (1, 1, 1), 3, True),
    ("res5 spatial 256->921 /2", (2, 14, 14, 256), (1, 3, 3), 921, (1, 2, 2), 1, True),
    ("res5 temporal 921->512 /2", (2, 7, 7, 921), (3, 1, 1), 512, (2, 1, 1), 1, True),
    ("res5 shortcut 256->512 /2", (2, 14, 14, 256), (1, 1, 1), 512, (2, 2, 2), 1, True),
    ("res5 spatial 512->1152", (1, 7, 7, 512), (1, 3, 3), 1152, (1, 1, 1), 3, True),
    ("res5 temporal 1152->512", (1, 7, 7, 1152), (3, 1, 1), 512, (1, 1, 1), 3, True),
]


def median_ms(fn, calls: int = 7) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def tfsts_steps():
    import numpy as np
    import tensorflow as tf

    from tfsts.layers import STSConv3D

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rng = np.random.default_rng(0)
    for _, (t, h, w, c), kernel, filters, strides, _, input_grad in LAYERS:
        layer = STSConv3D(filters, kernel, strides=strides, sts=False)
        x = tf.constant(rng.standard_normal((BATCH, t, h, w, c)).astype("float32"))
        layer.build(x.shape)

        @tf.function
        def step(x=x, layer=layer, input_grad=input_grad):
            with tf.GradientTape() as tape:
                if input_grad:
                    tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x, layer.kernel] if input_grad else [layer.kernel])

        yield lambda step=step: [g.numpy() for g in step()]


def torch_steps():
    import torch

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    for _, (t, h, w, c), kernel, filters, strides, _, input_grad in LAYERS:
        conv = torch.nn.Conv3d(c, filters, kernel, stride=strides, padding=tuple(k // 2 for k in kernel), bias=False)
        x = torch.randn(BATCH, c, t, h, w, requires_grad=input_grad)

        def step(x=x, conv=conv):
            conv.zero_grad()
            (conv(x) ** 2).sum().backward()

        yield step


def worker(framework: str) -> None:
    steps = tfsts_steps() if framework == "tfsts" else torch_steps()
    print(json.dumps([median_ms(step) for step in steps]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--worker", choices=["tfsts", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    from benchmarks.timing import print_table

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    best = {"tfsts": None, "torch": None}
    for index in range(args.runs):
        for framework in ("tfsts", "torch") if index % 2 == 0 else ("torch", "tfsts"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_r2plus1d_layers", "--worker", framework],
                                 capture_output=True, text=True, env=env, check=True).stdout
            times = json.loads(out.strip().splitlines()[-1])
            best[framework] = times if best[framework] is None else [min(a, b) for a, b in zip(best[framework], times)]
    rows, totals = [], {"tfsts": 0.0, "torch": 0.0}
    for (name, *_, count, _), ours, theirs in zip(LAYERS, best["tfsts"], best["torch"]):
        totals["tfsts"] += count * ours
        totals["torch"] += count * theirs
        rows.append([name, count, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}"])
    rows.append(["per step (x count)", "", f"{totals['tfsts']:.0f}", f"{totals['torch']:.0f}", f"{totals['tfsts'] / totals['torch']:.2f}"])
    print(f"R(2+1)D-18 convs, batch {BATCH}, forward + backward, float32, 2 threads; ms, best of {args.runs} runs' medians")
    print_table(["conv", "per step", "tfsts ms", "PyTorch ms", "ratio"], rows)


if __name__ == "__main__":
    main()
