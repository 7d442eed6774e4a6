"""Training throughput of the real loop (tfsts.training.loop.train): clips/s and the split of
step time between waiting for input and computing, with one and two replicas.

    python -m benchmarks.bench_train [--steps=6] [--models=demo,r2plus1d_18,ircsn_50]

"demo" is configs/demo/tiny_resnet.py on demo records written by data_prep (the real tfsts.data
pipeline: decode, sample, crop); r2plus1d_18 / ircsn_50 run at 8x112x112 on in-memory clips
(compute only). Two replicas are MirroredStrategy over two logical CPUs of one machine: they
share its cores, so on a CPU they show the cost of replication, not a speed-up. Each row is
the median over the steps after the first two (tracing / warm-up excluded).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.timing import print_table  # noqa: E402
from tfsts.training import config as config_lib  # noqa: E402
from tfsts.training import loop  # noqa: E402

flags.DEFINE_integer("steps", 5, "Training steps per row (the first two are not counted).")
flags.DEFINE_list("models", ["demo", "r2plus1d_18", "ircsn_50"], "Rows: demo and/or model names at 8x112x112.")
flags.DEFINE_integer("batch", 4, "Global batch (clips per step).")
FLAGS = flags.FLAGS


def _demo_config(records: str):
    sys.path.insert(0, os.getcwd())
    config = config_lib.load_config_file("configs/demo/tiny_resnet.py")
    config.data.sources.demo.train_pattern = f"{records}/train-*.tfrecord"
    config.data.sources.demo.eval_pattern = ""
    return config


def _model_config(name: str):
    c = config_lib.base_config()
    c.model.name = name
    # STS with spatial stride needs frame sizes divisible by 32 (112 is not): plain convs, same weights and MACs.
    c.model.sts = False
    c.data.sources["clips"] = config_lib.source("video", num_classes=400, num_frames=8, crop_size=112)
    return c


def _synthetic(global_batch: int):
    rng = np.random.default_rng(0)
    examples = {
        "frames": rng.integers(0, 255, size=(8, 8, 112, 112, 3), dtype=np.uint8),
        "label": (np.arange(8) % 400).astype(np.int32),
        "source": np.zeros(8, np.int32),
    }

    def dataset_fn(ctx):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        return tf.data.Dataset.from_tensor_slices(examples).repeat().batch(per_replica, drop_remainder=True).prefetch(2)

    return dataset_fn


_STRATEGIES: dict = {}


def _strategy(replicas: int):
    """One strategy per replica count for the whole run: a second MirroredStrategy in one
    process reuses collective instance keys and its all-reduces clash with the first's."""
    if replicas not in _STRATEGIES:
        _STRATEGIES[replicas] = (tf.distribute.OneDeviceStrategy("/cpu:0") if replicas == 1
                                 else tf.distribute.MirroredStrategy(
                                     ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    return _STRATEGIES[replicas]


def measure(config, replicas: int, train_data=None) -> dict:
    config.train.global_batch_size = FLAGS.batch
    config.train.num_steps = FLAGS.steps
    config.train.log_every = 1
    config.train.checkpoint_every = 10**9
    config.train.eval_every = 0
    config.train.progress_bar = False
    strategy = _strategy(replicas)
    with tempfile.TemporaryDirectory() as workdir:
        result = loop.train(config, workdir, strategy=strategy, train_data=train_data)
    keras.mixed_precision.set_dtype_policy("float32")
    records = [r for r in result.history if "clips_per_s" in r][2:]
    step_s = statistics.median(r["input_wait_s"] + r["compute_s"] for r in records)
    wait = statistics.median(r["input_wait_s"] for r in records)
    return {"clips_per_s": FLAGS.batch / step_s, "step_s": step_s, "wait_s": wait, "wait_fraction": wait / step_s}


def main(_):
    rows = []
    records = None
    for name in FLAGS.models:
        for replicas in (1, 2):
            if name == "demo":
                if records is None:
                    from tfsts.training.demo_data import make_demo_data

                    records = make_demo_data(tempfile.mkdtemp(prefix="bench_train_"), videos_per_class=4, val_per_class=1)
                m = measure(_demo_config(records), replicas)
                label = "demo (tiny_resnet 8x64x64, tfsts.data)"
            else:
                m = measure(_model_config(name), replicas, _synthetic(FLAGS.batch))
                label = f"{name} 8x112x112 (in-memory clips, sts off)"
            rows.append([label, replicas, FLAGS.batch, f"{m['clips_per_s']:.2f}", f"{m['step_s'] * 1e3:.0f}",
                         f"{m['wait_s'] * 1e3:.1f}", f"{100 * m['wait_fraction']:.1f}%"])
            print(rows[-1], flush=True)
    print()
    print_table(["run", "replicas", "global batch", "clips/s", "step ms", "input wait ms", "input-bound share"], rows)


if __name__ == "__main__":
    app.run(main)
