"""The training config: one schema (`base_config`), helpers that config files call, checks.

Config files in `configs/` are Python files whose `get_config()` returns a ConfigDict built
from `base_config()`; `python -m tfsts.train` locks it, so `--config.a.b=value` can only set
keys that exist. Every field is listed (with its meaning) in `base_config` below: one place.
"""
from __future__ import annotations

import difflib
import importlib.util
import math
import os
from typing import Any, Iterable, Sequence

import ml_collections

OPTIMIZERS = ("sgd", "adamw", "lamb")
LOSSES = ("softmax", "bce")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SOURCE_KINDS = ("video", "image")
BATCHING = ("mixed", "per_source")


class ConfigError(ValueError):
    """A config that cannot run: names the field and the fix."""


def source(
    kind: str = "video",
    *,
    train_pattern: str = "",
    eval_pattern: str = "",
    num_classes: int = 400,
    label_map: str = "",
    num_frames: int = 8,
    frame_interval: int = 1,
    sampling: str = "dense",
    crop_size: int = 224,
    short_side: int = 256,
    eval_num_clips: int = 1,
    eval_num_crops: int = 1,
    eval_short_side: int = 256,
    eval_crop_size: int = 0,
    weight: float = 1.0,
    num_train_examples: int = 0,
    randaugment_magnitude: float = 0.0,
    randaugment_num_ops: int = 2,
    **options: Any,
) -> ml_collections.ConfigDict:
    """One data source (a dataset with its own head).

    weight: relative sampling weight in a mixture; < 0 on every source: proportional to the
        record counts in the data_prep manifests (CoVeR).
    eval_crop_size: crop of the eval views (mmaction2 tests at 3 x 256 crops); 0: crop_size.
    num_train_examples: size of the training split; with `train.epochs` gives the step count.
    randaugment_magnitude, randaugment_num_ops: RandAugment of this source's training clips
        (timm's 0..10 magnitude scale, e.g. 7 for the reference's m7; ops per clip), one
        draw per clip for all its frames, in the training step (tfsts.data.ClipAugment);
        0 in either: off.
    options: further keyword arguments for the tfsts.data reader (e.g. flip=False); checked
        against the reader's signature at start-up, so a misspelt option is an error.
    """
    return ml_collections.ConfigDict(
        dict(
            kind=kind, train_pattern=train_pattern, eval_pattern=eval_pattern,
            num_classes=num_classes, label_map=label_map, num_frames=num_frames,
            frame_interval=frame_interval, sampling=sampling, crop_size=crop_size,
            short_side=short_side, eval_num_clips=eval_num_clips, eval_num_crops=eval_num_crops,
            eval_short_side=eval_short_side, eval_crop_size=eval_crop_size, weight=weight, num_train_examples=num_train_examples,
            randaugment_magnitude=float(randaugment_magnitude), randaugment_num_ops=int(randaugment_num_ops),
            options=ml_collections.ConfigDict(options),
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """Every field a training run reads, with its default."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.deterministic = False  # op determinism + seeded everything: a rerun gives identical weights

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet3d_18"  # a name from tfsts.models.available_models()
    c.model.sts = ml_collections.config_dict.placeholder(bool)  # None: the model's default (STS on where the reference uses it); False: plain convs, same weights
    c.model.input_shape = ml_collections.config_dict.placeholder(tuple)  # (T, H, W, 3); None: from the sources
    c.model.dropout = -1.0  # head dropout; < 0: the model's default
    c.model.drop_path = 0.0  # stochastic depth rate (only for models whose builder takes drop_path_rate)
    c.model.bn_momentum = -1.0  # Keras momentum of every BatchNormalization (PyTorch 0.1 = Keras 0.9); < 0: keep
    c.model.freeze_bn = False  # BN layers in inference mode and not trained
    c.model.sync_bn = False  # BN batch statistics over all replicas (SyncBN)
    c.model.kwargs = ml_collections.ConfigDict()  # family-specific build_model arguments

    c.init = ml_collections.ConfigDict()
    c.init.checkpoint = ""  # a previous run / image pre-training run: workdir or checkpoint prefix
    c.init.keras_weights = ""  # 2D ImageNet weights to inflate: "imagenet" or a .keras/.weights.h5 path
    c.init.inflation = "mean"  # "mean", "center" or "sts_center"
    c.init.skip_mismatched_heads = True  # init from a run with other classes: heads keep their init

    c.data = ml_collections.ConfigDict()
    c.data.sources = ml_collections.ConfigDict()  # {name: source(...)}
    c.data.batching = "mixed"  # mixture batching: "mixed" or "per_source"
    c.data.shuffle_seed = 0

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 16  # summed over all replicas and workers
    c.train.epochs = 1.0
    c.train.steps_per_epoch = 0  # 0: ceil(sum of sources' num_train_examples / global_batch_size)
    c.train.num_steps = 0  # > 0 overrides epochs * steps_per_epoch
    c.train.stop_at_step = 0  # > 0: stop there (the schedule still spans num_steps); for tests and pauses
    c.train.loss = "softmax"  # "softmax" (cross-entropy) or "bce" (sigmoid per class, mean over classes)
    c.train.label_smoothing = 0.0
    c.train.mixup = 0.0  # mixup alpha (soft targets come from the input pipeline)
    c.train.cutmix = 0.0  # cutmix alpha
    c.train.grad_accum_steps = 1  # micro-batches per optimizer step (effective batch x this)
    c.train.precision = "float32"  # "float32", "mixed_bfloat16", "mixed_float16" (with loss scaling)
    c.train.jit_compile = False  # XLA for the forward/backward computation
    c.train.log_every = 10
    c.train.checkpoint_every = 500  # steps
    c.train.keep_checkpoints = 3
    c.train.eval_every = 0  # steps; 0: no periodic validation
    c.train.eval_steps = 0  # 0: the whole eval split
    c.train.eval_batch_size = 0  # 0: global_batch_size
    c.train.best_metric = "top1"  # eval metric kept for the best checkpoint (mean over sources)
    c.train.eval_only = False  # evaluate the workdir's (or init) checkpoint and stop
    c.train.progress_bar = True
    c.train.strategy = "auto"  # "auto" (multi_worker from TF_CONFIG, else mirrored on >1 GPU, else default), "default", "mirrored", "multi_worker"

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"  # "sgd" (momentum), "adamw", "lamb"
    c.optimizer.lr = 0.1  # at optimizer.lr_reference_batch; scaled linearly with global_batch_size
    c.optimizer.lr_reference_batch = 256
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.beta1 = 0.9
    c.optimizer.beta2 = 0.999
    c.optimizer.epsilon = 1e-8
    c.optimizer.weight_decay = 1e-4  # SGD: L2 added to the gradient (PyTorch); AdamW/LAMB: decoupled
    c.optimizer.decay_norm_and_bias = False  # weight decay on BN parameters and biases too
    c.optimizer.clip_norm = 0.0  # global gradient-norm clip; 0: off
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.warmup_steps = 0  # > 0 overrides warmup_epochs
    c.optimizer.min_lr = 0.0  # cosine end value
    return c


def lr_for(config: ml_collections.ConfigDict) -> float:
    """Peak learning rate: optimizer.lr scaled linearly from lr_reference_batch to the global
    batch times gradient accumulation (the effective batch)."""
    effective = config.train.global_batch_size * config.train.grad_accum_steps
    return config.optimizer.lr * effective / config.optimizer.lr_reference_batch


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
    if config.train.steps_per_epoch > 0:
        return int(config.train.steps_per_epoch)
    examples = sum(s.num_train_examples for s in config.data.sources.values())
    effective = config.train.global_batch_size * config.train.grad_accum_steps
    return max(1, math.ceil(examples / effective)) if examples else 0


def total_steps(config: ml_collections.ConfigDict) -> int:
    if config.train.num_steps > 0:
        return int(config.train.num_steps)
    per_epoch = steps_per_epoch(config)
    if not per_epoch:
        raise ConfigError(
            "Cannot tell how long to train: set train.num_steps, or train.steps_per_epoch, "
            "or data.sources.<name>.num_train_examples."
        )
    return max(1, int(round(config.train.epochs * per_epoch)))


def warmup_steps(config: ml_collections.ConfigDict) -> int:
    if config.optimizer.warmup_steps > 0:
        return int(config.optimizer.warmup_steps)
    if config.optimizer.warmup_epochs <= 0:
        return 0
    return int(round(config.optimizer.warmup_epochs * (steps_per_epoch(config) or 0)))


def _choice(value: str, allowed: Sequence[str], field: str) -> None:
    if value not in allowed:
        raise ConfigError(f"config.{field} = {value!r}: must be one of {', '.join(allowed)}.")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks that need no data or model: raise ConfigError naming the field and the fix."""
    _choice(config.optimizer.name, OPTIMIZERS, "optimizer.name")
    _choice(config.train.loss, LOSSES, "train.loss")
    _choice(config.train.precision, PRECISIONS, "train.precision")
    _choice(config.data.batching, BATCHING, "data.batching")
    if not config.data.sources:
        raise ConfigError("config.data.sources is empty: add at least one source (tfsts.training.config.source).")
    for name, src in config.data.sources.items():
        _choice(src.kind, SOURCE_KINDS, f"data.sources.{name}.kind")
        if src.num_classes < 1:
            raise ConfigError(f"config.data.sources.{name}.num_classes = {src.num_classes}: must be >= 1.")
        _check_randaugment(name, src)
    shapes = {name: (s.num_frames, s.crop_size) for name, s in config.data.sources.items()}
    if len(set(shapes.values())) > 1:
        raise ConfigError(
            f"config.data.sources have different (num_frames, crop_size) {shapes}: the model has one input "
            "shape, so give every source the same num_frames and crop_size (an image source repeats its frame)."
        )
    if config.train.global_batch_size < 1:
        raise ConfigError(f"config.train.global_batch_size = {config.train.global_batch_size}: must be >= 1.")
    if config.train.grad_accum_steps < 1:
        raise ConfigError(f"config.train.grad_accum_steps = {config.train.grad_accum_steps}: must be >= 1.")
    if config.init.checkpoint and config.init.keras_weights:
        raise ConfigError("Set one of config.init.checkpoint and config.init.keras_weights, not both.")


def _check_randaugment(name: str, src: ml_collections.ConfigDict) -> None:
    magnitude = src.get("randaugment_magnitude", 0.0)
    num_ops = src.get("randaugment_num_ops", 0)
    if not 0.0 <= magnitude <= 10.0:
        raise ConfigError(
            f"config.data.sources.{name}.randaugment_magnitude = {magnitude}: RandAugment's magnitude is on "
            "timm's 0..10 scale (the reference uses 7); 0 turns it off."
        )
    if isinstance(num_ops, bool) or int(num_ops) != num_ops or num_ops < 0:
        raise ConfigError(
            f"config.data.sources.{name}.randaugment_num_ops = {num_ops}: a whole number of ops per clip >= 0 "
            "(the reference uses 2); 0 turns RandAugment off."
        )


def randaugment_sources(config: ml_collections.ConfigDict) -> dict[int, tuple[int, float]]:
    """{source index (the batches' "source"): (num_ops, magnitude)} for the sources with
    RandAugment on."""
    return {
        index: (int(src.randaugment_num_ops), float(src.randaugment_magnitude))
        for index, src in enumerate(config.data.sources.values())
        if src.get("randaugment_magnitude", 0.0) > 0 and src.get("randaugment_num_ops", 0) > 0
    }


# --- Config files and --config.x=y overrides ---------------------------------------------
def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of a config file (`path[:argument]`, as ml_collections accepts)."""
    file_path, _, argument = path.partition(":")
    if not os.path.isfile(file_path):
        raise ConfigError(f"--config={path}: no such file.")
    spec = importlib.util.spec_from_file_location("_tfsts_config", file_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{file_path}: defines no get_config().")
    return module.get_config(argument) if argument else module.get_config()


def key_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every settable dotted key of a ConfigDict (leaves and sub-dicts)."""
    paths = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            paths.extend(key_paths(value, path + "."))
    return paths


def unknown_key_message(config: ml_collections.ConfigDict, key: str) -> str | None:
    """None when `key` (dotted) exists, else a one-line error naming the nearest valid key."""
    valid = key_paths(config)
    if key in valid:
        return None
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    hint = f"; nearest valid key: config.{nearest[0]}" if nearest else ""
    return f"unknown config key config.{key}{hint}"


def check_overrides(config: ml_collections.ConfigDict, argv: Iterable[str], flag: str = "config") -> None:
    """Raise ConfigError for the first `--config.a.b=value` whose key the config lacks."""
    prefix = f"--{flag}."
    for arg in argv:
        if arg.startswith(prefix):
            key = arg[len(prefix):].split("=", 1)[0]
            message = unknown_key_message(config, key)
            if message:
                raise ConfigError(message)
