"""Training on tf.distribute: configs, optimizers, per-source losses, checkpoints, the loop.

Public API (CONTRACTS section 4): `build_model_from_config`, `restore_model`, `train`,
`evaluate`; `python -m tfsts.train --config=configs/<dataset>/<experiment>.py --workdir=DIR`.

Names resolve on first use (PEP 562), so config files and the CLI's argument checks import
`tfsts.training.config` without paying for TensorFlow.
"""
from __future__ import annotations

from tfsts.lazy import lazy_exports

_EXPORTS = {
    "ConfigError": "tfsts.training.config",
    "base_config": "tfsts.training.config",
    "source": "tfsts.training.config",
    "TrainResult": "tfsts.training.loop",
    "TrainingDivergedError": "tfsts.training.loop",
    "evaluate": "tfsts.training.loop",
    "make_strategy": "tfsts.training.loop",
    "train": "tfsts.training.loop",
    "LabelError": "tfsts.training.losses",
    "build_model_from_config": "tfsts.training.modeling",
    "checkpoint_prefix": "tfsts.training.modeling",
    "copy_matching_weights": "tfsts.training.modeling",
    "initialize_from_checkpoint": "tfsts.training.modeling",
    "restore_model": "tfsts.training.modeling",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
