"""Which formulation of the zoo's stem max pools is fastest on this machine's TF CPU kernels:
the measurements behind `tfsts.layers.backend_kernels.max_pool3d`.

Each formulation gives the same maxima (checked before timing) and routes each output's
gradient to one input of its window; they are timed forward and forward + backward side by
side, round after round (tf.function, float32, 2 threads), median per formulation:

- `MaxPool3D`: -inf Pad, then TF's MaxPool3D ('valid'), what `keras.ops.max_pool` runs;
- `2D MaxPools`: the kh x kw pool as one 2D MaxPool over the clip's frames, then the temporal
  one as a kt x 1 2D MaxPool over [T, H * W] (a max over a box is the max over t of the max over
  h, w); what tfsts runs on TensorFlow (exact gradients; Eigen: faster too).

Inputs are distinct values 1e-4 apart (no near-ties), so both give the same gradients (checked).

`--models`: then each model's training step (SGD, batch 2, 8x112x112) with its MaxPool3D layers
as tfsts runs them against the same model and weights with Keras' MaxPool3D op (traced with the
layer's old call), interleaved in one process, median of the per-round ratios.

    python -m benchmarks.bench_pools [--rounds 7] [--models resnet3d_18,slowonly_r50 --model-rounds 9]
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (what, input [B, T, H, W, C], pool size, strides): the stems at batch 2, 8x112x112
CASES = [
    ("ResNet-18 pool1 3x3x3 /2 (Hara)", (2, 8, 56, 56, 64), (3, 3, 3), (2, 2, 2)),
    ("SlowOnly / I3D pool1 1x3x3 /1x2x2", (2, 8, 56, 56, 64), (1, 3, 3), (1, 2, 2)),
    ("SlowOnly pool1 at 8x224, batch 1", (1, 8, 112, 112, 64), (1, 3, 3), (1, 2, 2)),
]


def keras_max_pool(x, pool_size, strides):
    """A -inf Pad (PyTorch's symmetric padding), then Keras' 'valid' max pool: TF's MaxPool3D."""
    from keras import ops

    from tfsts.models.blocks import symmetric_pads

    x = ops.pad(x, [(0, 0), *symmetric_pads(pool_size), (0, 0)], constant_values=float("-inf"))
    return ops.max_pool(x, pool_size, strides, padding="valid")


def formulations(pool_size, strides) -> dict:
    from keras import ops

    from tfsts.layers.backend_kernels import max_pool3d_as_2d
    from tfsts.models.blocks import symmetric_pads

    pads = [(0, 0), *symmetric_pads(pool_size), (0, 0)]
    return {
        "MaxPool3D": lambda x: keras_max_pool(x, pool_size, strides),
        "2D MaxPools (tfsts)": lambda x: max_pool3d_as_2d(ops.pad(x, pads, constant_values=float("-inf")), pool_size, strides),
    }


def main() -> None:
    from benchmarks.timing import formulation_benchmark_args, interleaved_medians, print_table

    args = formulation_benchmark_args(__doc__, model_rounds=9)

    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rows = []
    for what, x_shape, pool_size, strides in CASES:
        # Distinct values 1e-4 apart: TF's MaxPool3DGrad credits every input within about 1e-5 of
        # the maximum (backend_kernels.max_pool3d), so closer values would give it other gradients.
        x = tf.constant(rng.permutation(np.prod(x_shape)).reshape(x_shape) * 1e-4, tf.float32)
        fns = formulations(pool_size, strides)
        first = None
        candidates = {}
        for name, fn in fns.items():

            def grad(fn=fn):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.square(fn(x)))
                return tape.gradient(loss, x)

            forward, backward = tf.function(lambda fn=fn: fn(x)), tf.function(grad)
            result = (forward().numpy(), backward().numpy())
            first = result if first is None else first
            np.testing.assert_array_equal(result[0], first[0])
            np.testing.assert_allclose(result[1], first[1], rtol=1e-6)  # overlapping windows: sums' order
            candidates[(name, "forward")] = lambda f=forward: f().numpy()
            candidates[(name, "train")] = lambda f=backward: f().numpy()
        times = interleaved_medians(candidates, rounds=args.rounds, warmup=1)
        for name in fns:
            rows.append([what, name, f"{times[(name, 'forward')] * 1e3:.1f}", f"{times[(name, 'train')] * 1e3:.1f}"])
        print(f"  {what} done", flush=True)
    print_table(["pool (input)", "formulation", "forward ms", "forward + backward ms"], rows)
    if args.models:
        model_rows = [model_row(name, args.model_rounds) for name in args.models.split(",") if name]
        print_table(["model (train step, batch 2, 8x112x112)", "2D MaxPools ms", "MaxPool3D ms", "ratio (per round)"], model_rows)


def keras_max_pool_call(layer, x):
    """MaxPool3D's call as it was (`keras_max_pool`; float32 here, so -inf is the dtype's lowest)."""
    return keras_max_pool(x, layer.pool_size, layer.strides)


@contextlib.contextmanager
def keras_max_pools():
    """MaxPool3D layers call Keras' op while inside."""
    from tfsts.models import blocks

    tfsts_call = blocks.MaxPool3D.call
    blocks.MaxPool3D.call = keras_max_pool_call
    try:
        yield
    finally:
        blocks.MaxPool3D.call = tfsts_call


def model_row(name: str, rounds: int) -> list:
    from benchmarks.timing import ab_row, training_step_ab

    times = training_step_ab(name, {"tfsts": contextlib.nullcontext, "keras": keras_max_pools}, rounds)
    return ab_row(name, times, "tfsts", "keras")


if __name__ == "__main__":
    main()
