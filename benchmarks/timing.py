"""Side-by-side timing: candidates run interleaved, round after round, so machine
noise hits all of them alike; the median per candidate is reported."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_times(candidates: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one call each per round (each call should block
    until done). The order rotates from round to round, so that no candidate always runs
    first (after another benchmark's work) or right after the same neighbour."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(candidates: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate (`interleaved_times`)."""
    return {name: statistics.median(ts) for name, ts in interleaved_times(candidates, rounds, warmup).items()}


def paired_median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of a / b over pairs timed side by side: a slow spell of the machine moves it less
    than a ratio of medians."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def median_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """`paired_median_ratio` of two candidates of `interleaved_times`, round by round."""
    return paired_median_ratio(times[numerator], times[denominator])


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def split_choices(parser, args, choices: dict[str, tuple[str, ...]]) -> None:
    """Turn each comma-list flag in `choices` ({dest: allowed}) into a list, rejecting unknown
    values with one parser error that lists the allowed ones."""
    for dest, allowed in choices.items():
        values = [v for v in getattr(args, dest).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad:
            parser.error(f"--{dest.replace('_', '-')}: unknown {bad}; choose from {', '.join(allowed)}")
        setattr(args, dest, values)


def tf_sgd_train_step(model, x, y):
    """A tf.function training step (forward, softmax cross-entropy, backward, SGD with momentum)
    on fixed inputs: what the TensorFlow benchmarks time and profile."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


def training_step_ab(name: str, variants: dict, rounds: int, **build_kwargs) -> dict[str, list[float]]:
    """`interleaved_times` of one zoo model's SGD training step (batch 2, 8x112x112, the same
    weights each; `build_kwargs` to `build_model`) traced once per variant: {label: a context
    manager factory that is entered while that variant's graph is traced}, the formulation
    under test patched in or out."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfsts import models

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 8, 112, 112, 3)).astype("float32"))
    y = tf.constant([1, 2])
    steps = {}
    for label, patched in variants.items():
        keras.utils.set_random_seed(0)
        step = tf_sgd_train_step(models.build_model(name, num_classes=400, input_shape=(8, 112, 112, 3), **build_kwargs), x, y)
        with patched():
            step()  # traces the graph with this variant
        steps[label] = step
    return interleaved_times({k: (lambda s=s: s().numpy()) for k, s in steps.items()}, rounds=rounds, warmup=1)


def ab_row(name: str, times: dict[str, list[float]], first: str, second: str) -> list[str]:
    """A table row of `training_step_ab`'s times: the name, both medians in ms, and the median of
    the per-round ratios first / second."""
    import statistics

    return [name, f"{statistics.median(times[first]) * 1e3:.0f}", f"{statistics.median(times[second]) * 1e3:.0f}",
            f"{median_ratio(times, first, second):.3f}"]


def formulation_benchmark_args(doc: str, model_rounds: int):
    """The flags of a formulation benchmark (`--rounds`, `--models`, `--model-rounds`) parsed; TF
    on 2 threads; the header line (load, TF's CPU kernels) printed."""
    import argparse
    import os

    import tensorflow as tf

    import tfsts

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", default="", help="comma list of zoo names: whole training steps too")
    parser.add_argument("--model-rounds", type=int, default=model_rounds)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {tfsts.cpu_kernels()}; "
          f"ms, median of {args.rounds} rounds")
    return args
