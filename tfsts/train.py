"""Train a video model: `python -m tfsts.train --config=configs/<dataset>/<experiment>.py --workdir=DIR`.

Override any config field with `--config.a.b=value` (the config is locked: an unknown key is
an error naming the nearest valid key). The run resumes from DIR/checkpoints when it has any.
Multi-worker: set TF_CONFIG on every worker and run the same command (train.strategy=auto).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from tfsts.training import config as config_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/<dataset>/<experiment>.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, config.json.")


def _fail(message: str, code: int = 1):
    print(f"tfsts.train: error: {message}", file=sys.stderr)
    sys.exit(code)


def _precheck(argv: list[str]) -> None:
    """Reject a bad --config path or an unknown --config.x key in one line, before absl
    (which would print a traceback)."""
    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not paths:
        _fail("--config=configs/<dataset>/<experiment>.py is required.", 2)
    if not any(a.startswith("--workdir=") for a in argv) and "--workdir" not in argv:
        _fail("--workdir=DIR is required.", 2)
    try:
        config = config_lib.load_config_file(paths[-1])
        config_lib.check_overrides(config, argv)
    except config_lib.ConfigError as e:
        _fail(str(e), 2)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; fields are set with --config.a.b=value.", 2)
    import tensorflow as tf
    from absl import logging

    from tfsts.training import loop

    logging.set_verbosity(logging.WARNING)  # TF's per-save INFO lines would break the progress bar

    try:
        result = loop.train(_CONFIG.value, _WORKDIR.value)
    except (config_lib.ConfigError, loop.TrainingDivergedError, FileNotFoundError) as e:
        _fail(str(e))
    except tf.errors.InvalidArgumentError as e:
        _fail(e.message.strip().splitlines()[0][:600])
    except ValueError as e:
        _fail(str(e).strip().splitlines()[0][:600])
    summary = f"done at step {result.step}; workdir {result.workdir}"
    if result.eval:
        summary += f"; eval top1 {result.eval['top1']:.4f}"
    print(summary)


def run() -> None:
    _precheck(sys.argv[1:])
    app.run(main)


if __name__ == "__main__":
    run()
