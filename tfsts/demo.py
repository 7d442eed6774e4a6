"""End-to-end smoke of the model zoo on an embedded default (no downloads):
builds STS and plain variants of a few models, runs a clip through each, checks that
STS changes the computation but not the parameters or MACs, and prints a table.

    python -m tfsts.demo [--models slowonly_r50,slowfast_r50_8x8] [--frames 8] [--size 128]
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tfsts import models  # noqa: E402
from tfsts.flops import count_macs  # noqa: E402

flags.DEFINE_list("models", ["slowonly_r50", "slowfast_r50_8x8"], "Models to run.")
flags.DEFINE_integer("frames", 8, "Clip length.")
flags.DEFINE_integer("size", 128, "Frame size (STS with spatial stride needs sizes divisible by 32).")
FLAGS = flags.FLAGS


def main(_):
    clip = np.random.default_rng(0).uniform(-1, 1, (1, FLAGS.frames, FLAGS.size, FLAGS.size, 3)).astype("float32")
    print(f"{'model':<16} {'sts':<5} {'params':>12} {'GMACs':>8} {'ms':>7}  top-1 class")
    for name in FLAGS.models:
        results = {}
        for sts in (True, False):
            model = models.build_model(name, 400, sts=sts, input_shape=clip.shape[1:])
            if sts is False:
                model.set_weights(results[True]["weights"])
            start = time.perf_counter()
            logits = np.asarray(model(clip, training=False))
            ms = (time.perf_counter() - start) * 1e3
            results[sts] = dict(weights=model.get_weights(), params=models.count_params(model), macs=count_macs(model), logits=logits)
            print(f"{name:<16} {str(sts):<5} {results[sts]['params']:>12,} {results[sts]['macs'] / 1e9:>8.3f} {ms:>7.0f}  {int(logits.argmax())}")
        assert results[True]["params"] == results[False]["params"], "STS must not add parameters"
        assert results[True]["macs"] == results[False]["macs"], "STS must not add MACs"
        assert not np.allclose(results[True]["logits"], results[False]["logits"]), "STS must change the computation"
    print("OK: STS and plain share weights, parameters and MACs; outputs differ as they should.")


if __name__ == "__main__":
    app.run(main)
