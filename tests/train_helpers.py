"""Shared pieces of the training tests: a tiny config, in-memory datasets with the
tfsts.data element structure ({"frames": uint8 [B, T, S, S, 3], "label", "source"})."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfsts.training import config as config_lib

NUM_FRAMES, SIZE = 4, 32


def tiny_config(num_classes=3, sources=("toy",), steps=6, batch=4, **train):
    """resnet3d_10 at width 1/8 (about 220k parameters) on 4x32x32 clips."""
    c = config_lib.base_config()
    c.model.name = "resnet3d_10"
    c.model.kwargs.widen_factor = 0.125
    c.model.dropout = 0.0
    for i, name in enumerate(sources):
        classes = num_classes[i] if isinstance(num_classes, (tuple, list)) else num_classes
        c.data.sources[name] = config_lib.source(
            "video", num_classes=classes, num_frames=NUM_FRAMES, crop_size=SIZE, eval_num_clips=1, eval_num_crops=1
        )
    c.train.global_batch_size = batch
    c.train.num_steps = steps
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.progress_bar = False
    c.optimizer.lr = 0.05
    c.optimizer.lr_reference_batch = batch
    for key, value in train.items():
        c.train[key] = value
    return c


def toy_examples(num_examples=32, num_classes=3, num_frames=NUM_FRAMES, size=SIZE, seed=0, source=0):
    """Clips whose class sets which colour channel is bright: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(num_examples) % num_classes).astype(np.int32)
    frames = rng.integers(0, 80, size=(num_examples, num_frames, size, size, 3)).astype(np.uint8)
    for i, label in enumerate(labels):
        frames[i, ..., label % 3] += 150
    return {"frames": frames, "label": labels, "source": np.full(num_examples, source, np.int32)}


def in_memory_dataset_fn(examples, global_batch):
    """fn(input_context) for distribute_datasets_from_function: this pipeline's shard,
    repeated, in per-replica batches (example order is fixed: deterministic)."""

    def dataset_fn(input_context):
        per_replica = input_context.get_per_replica_batch_size(global_batch)
        ds = tf.data.Dataset.from_tensor_slices(examples)
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds.repeat().batch(per_replica, drop_remainder=True)

    return dataset_fn


def eval_fn(examples, batch=8):
    def make():
        ex = {k: v for k, v in examples.items() if k != "source"}
        return {"toy": tf.data.Dataset.from_tensor_slices(ex).batch(batch)}

    return make


def model_weights(model):
    return [np.array(w) for w in model.weights]


def set_path(config, dotted: str, value):
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value


def main(argv=None):
    """A real training process on the toy data: `python -m tests.train_helpers WORKDIR '{"train.num_steps": 8}'`.
    Used by the multi-worker and SIGKILL tests (TF_CONFIG picks the strategy)."""
    import json
    import sys

    argv = sys.argv[1:] if argv is None else argv
    workdir, overrides = argv[0], json.loads(argv[1] if len(argv) > 1 else "{}")
    config = tiny_config()
    for key, value in overrides.items():
        set_path(config, key, value)
    from tfsts.training import loop

    examples = toy_examples()
    result = loop.train(config, workdir, train_data=in_memory_dataset_fn(examples, config.train.global_batch_size))
    print(json.dumps({"step": result.step}))


if __name__ == "__main__":
    main()
