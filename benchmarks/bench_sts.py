"""STS vs plain convolution, forward + backward, float32, CPU, at the shapes where the
reference uses STS: ir-CSN-50 stages 2-3 (case A, depthwise 3x3x3), SlowOnly-R50 res4
(case B, dense 3x1x1) and R(2+1)D-34's temporal convs (case C, with and without temporal
stride). Same weights, same parameter and MAC counts (checked).

Then the whole models: a training step (forward, loss, backward, SGD) of each model with
STS on against the same model with STS off, same weights, interleaved. With `--demo`, also the
demo's own networks (configs/demo/digits.py, built as the demo builds them, batch 16 of 8x32x32):
STS on and off, and ir-CSN with its no-STS default temporal strides, which is not the same
network (fewer MACs), for scale.

    python -m benchmarks.bench_sts [--rounds 15] [--frames 8] [--batch 2]
        [--models ircsn_50,slowonly_r50,r2plus1d_34] [--model-shape 8,160,160,3] [--model-rounds 7]
        [--demo] [--no-convs]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.timing import interleaved_times, median_ratio, print_table, tf_sgd_train_step  # noqa: E402
import tfsts  # noqa: E402
from tfsts import flops, models  # noqa: E402
from tfsts.models import csn  # noqa: E402
from tfsts.layers import STSConv3D  # noqa: E402


def cases(batch: int, frames: int):
    """(label, layer kwargs, input shape) at 224 px input."""
    return [
        ("ir-CSN-50 conv2 stage 2 (A)", dict(filters=64, kernel_size=3, groups=64), (batch, frames, 56, 56, 64)),
        ("ir-CSN-50 conv2 stage 3 (A)", dict(filters=128, kernel_size=3, groups=128), (batch, frames, 28, 28, 128)),
        ("ir-CSN-50 conv2 stage 3 stride 2 (A)", dict(filters=128, kernel_size=3, groups=128, strides=(1, 2, 2)), (batch, frames, 56, 56, 128)),
        ("SlowOnly res4 conv1 (B)", dict(filters=256, kernel_size=(3, 1, 1)), (batch, frames, 14, 14, 1024)),
        ("R(2+1)D-34 res2 temporal conv (C, stride 1)", dict(filters=64, kernel_size=(3, 1, 1), sts_case="C"), (batch, frames, 112, 112, 144)),
        ("R(2+1)D-34 res3 temporal conv (C, stride 1)", dict(filters=128, kernel_size=(3, 1, 1), sts_case="C"), (batch, frames // 2, 56, 56, 288)),
        ("R(2+1)D-34 res3 temporal conv, stride 2 (C)", dict(filters=128, kernel_size=(3, 1, 1), strides=(2, 1, 1)), (batch, frames, 56, 56, 230)),
    ]


# The same architecture both ways: ir-CSN's STS default is temporal stride 1 everywhere (case A
# needs it), its plain default (1, 2, 2, 2).
MODEL_KWARGS = {"ircsn_50": dict(temporal_strides=(1, 1, 1, 1))}


def train_step_times(built: dict, x, y, rounds: int) -> dict[str, list[float]]:
    """`interleaved_times` of an SGD training step of each model on (x, y)."""
    steps = {name: tf_sgd_train_step(model, x, y) for name, model in built.items()}
    return interleaved_times({name: (lambda step=step: step().numpy()) for name, step in steps.items()}, rounds=rounds)


def model_rows(names: list[str], shape: tuple[int, ...], rounds: int) -> list[list[str]]:
    """Training step of each model, STS on against off (the same weights: the layouts match)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(1, *shape)).astype("float32"))
    y = tf.constant([3])
    rows = []
    for name in names:
        built = {variant: models.build_model(name, 400, input_shape=shape, sts=variant == "STS", **MODEL_KWARGS.get(name, {}))
                 for variant in ("plain", "STS")}
        macs = {variant: flops.count_macs(model) for variant, model in built.items()}
        assert macs["plain"] == macs["STS"], (name, macs)
        built["STS"].set_weights(built["plain"].get_weights())
        sts_layers = sum(isinstance(layer, STSConv3D) and layer.sts for layer in built["STS"].layers)
        times = train_step_times(built, x, y, rounds)
        medians = {k: statistics.median(v) for k, v in times.items()}
        rows.append([name, str(shape), str(sts_layers), f"{built['plain'].count_params():,}", f"{macs['plain'] / 1e9:.2f}",
                     f"{medians['plain'] * 1e3:.0f}", f"{medians['STS'] * 1e3:.0f}", f"{median_ratio(times, 'STS', 'plain'):.2f}"])
    return rows


def demo_rows(rounds: int) -> list[list[str]]:
    """The demo's fine-tuning network with STS on and off (its config: the same network), and
    ir-CSN's default no-STS strides, one training step of a batch of 16 each, interleaved."""
    from tfsts.training import config as config_lib
    from tfsts.training import modeling

    config_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo", "digits.py")

    def network(variant: str, **model_kwargs):
        config = config_lib.load_config_file(f"{config_file}:{variant},records")
        config.model.kwargs.update(model_kwargs)
        return modeling.build_model_from_config(config)

    built = {
        "image_plain": network("image_plain"),
        "image_sts": network("image_sts"),
        "ir-CSN default strides, no STS": network("image_plain", temporal_strides=csn.BASELINE_TEMPORAL_STRIDES),
    }
    built["image_sts"].set_weights(built["image_plain"].get_weights())
    shape = tuple(built["image_plain"].inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, *shape)).astype("float32"))
    y = tf.constant(np.arange(16) % 4)
    times = train_step_times(built, x, y, rounds)
    return [[k, str(shape), f"{flops.count_macs(built[k]) / 1e6:.1f}", f"{statistics.median(v) * 1e3:.0f}",
             f"{median_ratio(times, k, 'image_plain'):.2f}"] for k, v in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--models", default="ircsn_50,slowonly_r50,r2plus1d_34", help="comma list; '' skips the models")
    parser.add_argument("--model-shape", default="8,160,160,3")
    parser.add_argument("--model-rounds", type=int, default=7)
    parser.add_argument("--convs", action=argparse.BooleanOptionalAction, default=True, help="--no-convs: the models only")
    parser.add_argument("--demo", action="store_true", help="also the demo's networks (configs/demo/digits.py)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for label, kwargs, shape in cases(args.batch, args.frames) if args.convs else []:
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
                    y = layer(x, training=True)
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
    if rows:
        print(f"STS vs plain conv, float32, forward+backward, tf.function, {args.rounds} interleaved rounds "
              f"(order rotating), {tfsts.cpu_kernels()}; ms: medians; ratios: median of the per-round ratios")
        print_table(["conv", "input", "params (both)", "GMACs (both)", "plain ms", "STS ms", "STS/plain", "rowcol/plain"], rows)
    names = [n for n in args.models.split(",") if n]
    if names:
        shape = tuple(int(v) for v in args.model_shape.split(","))
        print(f"\nWhole models, training step (SGD), batch 1, {args.model_rounds} interleaved rounds; STS on against off, same weights")
        print_table(["model", "input", "STS convs", "params (both)", "GMACs (both)", "plain ms", "STS ms", "STS/plain"],
                    model_rows(names, shape, args.model_rounds))
    if args.demo:
        print(f"\nThe demo's networks (configs/demo/digits.py), training step (SGD), batch 16, {args.model_rounds} interleaved rounds")
        print_table(["network", "input", "MMACs per clip", "ms", "/ image_plain"], demo_rows(args.model_rounds))


if __name__ == "__main__":
    main()
