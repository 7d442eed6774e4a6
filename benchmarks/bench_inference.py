"""Inference (forward only, tf.function, float32, CPU): the formulations tfsts takes on calls
that do not train against the ones its training calls take, side by side in one process.

- depthwise 3D conv: `depthwise_conv3d_inference` (taps cut along the first axis of one flat
  padded tensor: views, not copies) against `depthwise_conv3d` (a copy of the frames per tap);
- BN: `batch_norm_inference` (TF's fused op) against Keras' x * a + b, after a 1x1x1 conv and
  before a ReLU, as in the models;
- whole models: inference as it is ("now") against the same model traced with the depthwise
  convs' training formulation ("train dw"), with Keras' BN ("keras BN"), and with both
  ("before"), the same weights; the variants swap `sts_conv.depthwise_conv3d_inference` and
  `BatchNorm.uses_fused_inference` while they trace;
- BN folded (what `tfsts.export` serves): `fold_batch_norms(model)` against the model as it is.

Ratios are the medians of the rounds' own ratios (below 1: the inference formulation is faster).

    python -m benchmarks.bench_inference [--rounds 15] [--models x3d_s,ircsn_50,ipcsn_50]
        [--fold-models x3d_s,ircsn_50,ipcsn_50,r2plus1d_18,slowonly_r50,resnet3d_18]
        [--batch 2] [--shape 8,112,112] [--no-layers]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import interleaved_times, median_ratio, print_table  # noqa: E402
from tfsts import models  # noqa: E402
from tfsts.models import graph  # noqa: E402
from tfsts.layers import backend_kernels, batch_norm, sts_conv  # noqa: E402

# X3D-S's depthwise convs at 2x8x112x112 (res2-res5, and res2's strided first block), and
# ir-CSN-50's res2 at 112 px.
DEPTHWISE_SHAPES = [((2, 8, 56, 56, 54), 2), ((2, 8, 28, 28, 54), 1), ((2, 8, 14, 14, 108), 1),
                    ((2, 8, 7, 7, 216), 1), ((2, 8, 4, 4, 432), 1), ((2, 8, 28, 28, 64), 1), ((1, 13, 40, 40, 54), 1)]
# 1x1x1 conv (C -> O) + BN + ReLU at X3D-S's and ir-CSN-50's sizes; O None: BN + ReLU alone,
# as after a depthwise conv (X3D-S's res2, ir-CSN-50's res2).
CONV_BN_SHAPES = [((2, 8, 28, 28, 54), 126), ((2, 8, 56, 56, 24), 54), ((2, 8, 28, 28, 256), 64), ((1, 13, 40, 40, 54), 126),
                  ((2, 8, 28, 28, 54), None), ((2, 8, 28, 28, 64), None)]


def depthwise_rows(rng, rounds: int) -> list[list[str]]:
    rows = []
    for shape, stride in DEPTHWISE_SHAPES:
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        kernel = tf.constant(rng.normal(size=(3, 3, 3, 1, shape[-1])).astype("float32"))
        calls = {
            "training formulation": tf.function(lambda: sts_conv.depthwise_conv3d(x, kernel, (1, stride, stride))),
            "inference formulation": tf.function(lambda: sts_conv.depthwise_conv3d_inference(x, kernel, (stride, stride))),
        }
        outputs = [f().numpy() for f in calls.values()]
        np.testing.assert_array_equal(outputs[0], outputs[1])  # the same sums
        times = interleaved_times({k: (lambda f=f: f().numpy()) for k, f in calls.items()}, rounds=rounds)
        medians = [statistics.median(v) * 1e3 for v in times.values()]
        rows.append(["depthwise 3x3x3" + (" stride 2" if stride > 1 else ""), str(shape), f"{medians[0]:.2f}", f"{medians[1]:.2f}",
                     f"{median_ratio(times, 'inference formulation', 'training formulation'):.3f}"])
    return rows


def conv_bn_rows(rng, rounds: int) -> list[list[str]]:
    rows = []
    for shape, out in CONV_BN_SHAPES:
        filters = out or shape[-1]
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        kernel = tf.constant(rng.normal(size=(1, 1, shape[-1], filters)).astype("float32"))
        gamma, beta, mean = (tf.constant(rng.normal(size=filters).astype("float32")) for _ in range(3))
        variance = tf.constant(rng.uniform(0.5, 1.5, size=filters).astype("float32"))

        def conv():
            if out is None:
                return x * 1.0001  # computed in the graph, as a conv's output is (no constant folding)
            y = tf.nn.conv2d(tf.reshape(x, (-1, *shape[2:])), kernel, 1, "VALID")
            return tf.reshape(y, (*shape[:4], filters))

        calls = {
            "keras": tf.function(lambda: tf.nn.relu(tf.nn.batch_normalization(conv(), mean, variance, beta, gamma, 1e-5))),
            "fused": tf.function(lambda: tf.nn.relu(backend_kernels.batch_norm_inference(conv(), mean, variance, beta, gamma, 1e-5))),
        }
        outputs = [f().numpy() for f in calls.values()]
        np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5 * np.abs(outputs[0]).max())
        times = interleaved_times({k: (lambda f=f: f().numpy()) for k, f in calls.items()}, rounds=rounds)
        medians = [statistics.median(v) * 1e3 for v in times.values()]
        rows.append([f"1x1x1 conv -> {filters} + BN + ReLU" if out else "BN + ReLU alone", str(shape), f"{medians[0]:.2f}", f"{medians[1]:.2f}",
                     f"{median_ratio(times, 'fused', 'keras'):.3f}"])
    return rows


VARIANTS = {"now": (True, True), "train dw": (False, True), "keras BN": (True, False), "before": (False, False)}


def model_rows(names: list[str], batch: int, frames: tuple[int, ...], rounds: int, rng) -> list[list[str]]:
    inference_dw = sts_conv.depthwise_conv3d_inference
    fused_bn = batch_norm.BatchNorm.uses_fused_inference

    def training_dw(x, kernel, spatial_strides):
        return sts_conv.depthwise_conv3d(x, kernel, (1, *spatial_strides))

    rows = []
    for name in names:
        model = models.build_model(name, 400, input_shape=(*frames, 3), sts=False)
        x = tf.constant(rng.uniform(0, 255, size=(batch, *frames, 3)).astype("float32"))
        calls, outputs = {}, {}
        try:
            for variant, (dw, bn) in VARIANTS.items():
                sts_conv.depthwise_conv3d_inference = inference_dw if dw else training_dw
                batch_norm.BatchNorm.uses_fused_inference = fused_bn if bn else (lambda self, *args, **kwargs: False)
                calls[variant] = tf.function(lambda: model(x, training=False))
                outputs[variant] = calls[variant]().numpy()  # traces under this variant's formulations
        finally:
            sts_conv.depthwise_conv3d_inference = inference_dw
            batch_norm.BatchNorm.uses_fused_inference = fused_bn
        scale = np.abs(outputs["before"]).max()
        for variant, y in outputs.items():
            np.testing.assert_allclose(y, outputs["before"], atol=1e-4 * scale, err_msg=variant)
        times = interleaved_times({k: (lambda f=f: f().numpy()) for k, f in calls.items()}, rounds=rounds)
        rows.append([name, f"{batch}x{'x'.join(map(str, frames))}", *(f"{statistics.median(times[v]) * 1e3:.1f}" for v in VARIANTS),
                     *(f"{median_ratio(times, 'now', v):.3f}" for v in ("train dw", "keras BN", "before"))])
    return rows


def fold_rows(names: list[str], batch: int, frames: tuple[int, ...], rounds: int, rng) -> list[list[str]]:
    """Each model's inference as it is against its BN-folded copy (same function: checked)."""
    rows = []
    for name in names:
        model = models.build_model(name, 400, input_shape=(*frames, 3), sts=False)
        folded = graph.fold_batch_norms(model)
        x = tf.constant(rng.uniform(0, 255, size=(batch, *frames, 3)).astype("float32"))
        calls = {"as trained": tf.function(lambda: model(x, training=False)),
                 "BN folded": tf.function(lambda: folded(x, training=False))}
        want, got = (calls[k]().numpy() for k in calls)
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), err_msg=name)
        times = interleaved_times({k: (lambda f=f: f().numpy()) for k, f in calls.items()}, rounds=rounds)
        rows.append([name, f"{batch}x{'x'.join(map(str, frames))}", str(len(graph.foldable_batch_norms(model))),
                     *(f"{statistics.median(times[k]) * 1e3:.1f}" for k in calls),
                     f"{median_ratio(times, 'BN folded', 'as trained'):.3f}"])
        keras.backend.clear_session()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--models", default="x3d_s,ircsn_50,ipcsn_50", help="comma list; '' skips the models")
    parser.add_argument("--fold-models", default="x3d_s,ircsn_50,ipcsn_50,r2plus1d_18,slowonly_r50,resnet3d_18",
                        help="comma list for the BN-folded table; '' skips it")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--shape", default="8,112,112")
    parser.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True, help="--no-layers: the models only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Inference, float32, tf.function, {os.cpu_count()} CPUs, {args.rounds} interleaved rounds; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.layers:
        print_table(["op", "input", "before ms", "now ms", "now / before"], depthwise_rows(rng, args.rounds) + conv_bn_rows(rng, args.rounds))
    frames = tuple(int(v) for v in args.shape.split(","))
    names = [n for n in args.models.split(",") if n]
    if names:
        print_table(["model", "input", *(f"{v} ms" for v in VARIANTS), "now / train dw", "now / keras BN", "now / before"],
                    model_rows(names, args.batch, frames, args.rounds, rng))
    fold_names = [n for n in args.fold_models.split(",") if n]
    if fold_names:
        print_table(["model", "input", "BNs folded", "as trained ms", "BN folded ms", "folded / as trained"],
                    fold_rows(fold_names, args.batch, frames, args.rounds, rng))


if __name__ == "__main__":
    main()
