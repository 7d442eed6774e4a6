"""Smoke demo of the model zoo (no downloads, no data): for a few models, builds the STS
and the plain variant from the same seeded random weights, runs one random clip through
each, checks that STS changes the computation but not the parameters or MACs, and prints
a table with the input size, parameters, GMACs at that size and a warmed-up median time.

    python -m tfsts.zoo_check [--models slowonly_r50,slowfast_r50_8x8] [--frames 8] [--size 128] [--seed 0]

Weights are random (seeded), so "top-1 class" only shows that both variants run; MACs are
for the printed input size, not the reference sizes of the README's model table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_list("models", ["slowonly_r50", "slowfast_r50_8x8"], "Models to run.")
flags.DEFINE_integer("frames", 8, "Clip length.", lower_bound=1)
flags.DEFINE_integer("size", 128, "Frame size (STS with spatial stride needs sizes divisible by 32).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the random weights and of the random clip.")
flags.DEFINE_integer("repeats", 3, "Timed forward passes after one warm-up pass; the median is printed.", lower_bound=1)
flags.DEFINE_bool("verbose", False, "Show the Python traceback of an error.")
FLAGS = flags.FLAGS


def median_ms(model, clip: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    """(logits, median milliseconds of ``repeats`` eager forward passes after one warm-up pass)."""
    logits = np.asarray(model(clip, training=False))  # warm-up: builds and traces kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(clip, training=False)
        times.append((time.perf_counter() - start) * 1e3)
    return logits, statistics.median(times)


def run() -> int:
    import keras

    from tfsts import models
    from tfsts.flops import count_macs

    unknown = [name for name in FLAGS.models if name not in models.available_models()]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(models.available_models())}")
    shape = (FLAGS.frames, FLAGS.size, FLAGS.size, 3)
    clip = np.random.default_rng(FLAGS.seed).uniform(0, 255, (1, *shape)).astype("float32")
    print(f"input: 1 x {FLAGS.frames} frames x {FLAGS.size} x {FLAGS.size} x 3 (random pixels 0..255, seed {FLAGS.seed}); "
          f"weights: random, seed {FLAGS.seed}; time: median of {FLAGS.repeats} eager passes after a warm-up")
    print(f"{'model':<18} {'sts':<5} {'params':>12} {'GMACs':>8} {'ms':>8}  top-1 class")
    for name in FLAGS.models:
        results = {}
        for sts in (True, False):
            keras.utils.set_random_seed(FLAGS.seed)
            model = models.build_model(name, 400, sts=sts, input_shape=shape)
            if sts is False:
                model.set_weights(results[True]["weights"])
            logits, ms = median_ms(model, clip, FLAGS.repeats)
            results[sts] = dict(weights=model.get_weights(), params=models.count_params(model),
                                macs=count_macs(model), logits=logits)
            print(f"{name:<18} {str(sts):<5} {results[sts]['params']:>12,} {results[sts]['macs'] / 1e9:>8.3f} "
                  f"{ms:>8.1f}  {int(logits.argmax())}")
        if results[True]["params"] != results[False]["params"] or results[True]["macs"] != results[False]["macs"]:
            raise RuntimeError(f"{name}: STS changed the parameter or MAC count, which it must not")
        if np.allclose(results[True]["logits"], results[False]["logits"]):
            raise RuntimeError(f"{name}: STS did not change the output, which it must")
    print("OK: STS and plain share weights, parameters and MACs; outputs differ as they should.")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"tfsts.zoo_check: error: unexpected argument {argv[1]!r} (see --help)", file=sys.stderr)
        return 2
    try:
        return run()
    except ValueError as e:  # unknown model, a frame size the model cannot take, ...
        if FLAGS.verbose:
            traceback.print_exc()
        print(f"tfsts.zoo_check: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser with a one-line error (absl's own adds a second line and 'FATAL')."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"tfsts.zoo_check: error: {' '.join(str(e).split())} (see --help)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
