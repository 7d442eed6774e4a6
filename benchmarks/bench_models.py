"""Whole-model throughput on CPU: clips/s for forward (inference) and forward+backward
(training step without the optimizer), eager vs tf.function vs jit_compile (XLA).

    python -m benchmarks.bench_models [--models r2plus1d_18,ircsn_50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import interleaved_medians, print_table  # noqa: E402
from tfsts import models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="r2plus1d_18,ircsn_50")
    parser.add_argument("--shape", default="8,112,112,3")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sts", choices=["default", "on", "off"], default="off",
                        help="off by default: at 112 px ir-CSN's last stage is 7x7, which STS cannot stride")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    x = tf.constant(np.random.default_rng(0).normal(size=(args.batch, *shape)).astype("float32"))
    rows = []
    for name in args.models.split(","):
        sts = {"default": None, "on": True, "off": False}[args.sts]
        model = models.build_model(name, 400, input_shape=shape, sts=sts)

        def forward():
            return model(x, training=False)

        def train():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            return tape.gradient(loss, model.trainable_variables)

        candidates = {}
        for label, fn in (("forward", forward), ("forward+backward", train)):
            candidates[(label, "eager")] = fn
            candidates[(label, "tf.function")] = tf.function(fn)
            candidates[(label, "XLA")] = tf.function(fn, jit_compile=True)
        runners = {k: (lambda f=f: tf.nest.map_structure(lambda t: t.numpy(), f())) for k, f in candidates.items()}
        medians = interleaved_medians(runners, rounds=args.rounds, warmup=1)
        for (label, mode), seconds in medians.items():
            rows.append([name, label, mode, f"{seconds * 1e3:.0f}", f"{args.batch / seconds:.2f}"])
    print(f"Whole models, batch {args.batch}, input {shape}, sts={args.sts}, float32, CPU, median of {args.rounds}")
    print_table(["model", "pass", "mode", "ms / batch", "clips/s"], rows)


if __name__ == "__main__":
    main()
