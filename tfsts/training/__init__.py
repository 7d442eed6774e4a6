"""Training on tf.distribute: configs, optimizers, per-source losses, checkpoints, the loop.

Public API (CONTRACTS section 4): `build_model_from_config`, `restore_model`, `train`,
`evaluate`; `python -m tfsts.train --config=configs/<dataset>/<experiment>.py --workdir=DIR`.
"""
from tfsts.training.config import ConfigError, base_config, source
from tfsts.training.loop import TrainingDivergedError, TrainResult, evaluate, make_strategy, train
from tfsts.training.modeling import (
    build_model_from_config,
    checkpoint_prefix,
    copy_matching_weights,
    initialize_from_checkpoint,
    restore_model,
)

__all__ = [
    "ConfigError",
    "TrainResult",
    "TrainingDivergedError",
    "base_config",
    "build_model_from_config",
    "checkpoint_prefix",
    "copy_matching_weights",
    "evaluate",
    "initialize_from_checkpoint",
    "make_strategy",
    "restore_model",
    "source",
    "train",
]
