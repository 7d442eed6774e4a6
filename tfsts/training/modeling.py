"""Models from configs, and moving weights between runs (resume, init, image pre-training)."""
from __future__ import annotations

import inspect
import json
import os

import keras
import ml_collections
import tensorflow as tf

from tfsts import models as zoo
from tfsts.training import config as config_lib

CONFIG_JSON = "config.json"  # written into every workdir by the trainer


def input_shape_for(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    """config.model.input_shape, else (max num_frames, crop, crop, 3) over the sources."""
    if config.model.input_shape:
        return tuple(int(d) for d in config.model.input_shape)
    sources = list(config.data.sources.values())
    if not sources:
        return tuple(zoo.model_spec(config.model.name).input_shape)
    frames = max(s.num_frames for s in sources)  # one shape across sources (config.validate)
    crop = max(s.crop_size for s in sources)
    return (frames, crop, crop, 3)


def num_classes_for(config: ml_collections.ConfigDict):
    """An int for one source (single output), {source: C} for several (one head each)."""
    sources = config.data.sources
    if len(sources) == 1:
        return int(next(iter(sources.values())).num_classes)
    return {name: int(s.num_classes) for name, s in sources.items()}


def _builder_accepts(name: str, argument: str) -> bool:
    spec = zoo.model_spec(name)
    function = getattr(__import__(spec.module, fromlist=[spec.function]), spec.function)
    return argument in inspect.signature(function).parameters


def build_model_from_config(config: ml_collections.ConfigDict) -> keras.Model:
    """The keras.Model config.model describes, with heads for config.data.sources.

    Applies init.keras_weights (2D ImageNet inflation), drop_path, BN momentum and frozen /
    synchronised BN. Checkpoint initialisation (init.checkpoint) is `initialize_from_checkpoint`.
    """
    m = config.model
    kwargs = dict(m.kwargs.to_dict()) if m.kwargs else {}
    if m.drop_path > 0:
        if not _builder_accepts(m.name, "drop_path_rate"):
            raise config_lib.ConfigError(
                f"config.model.drop_path = {m.drop_path}: model {m.name!r} has no drop-path option; set it to 0."
            )
        kwargs["drop_path_rate"] = m.drop_path
    spec = zoo.model_spec(m.name)
    sts = m.sts
    if spec.sts is None and sts:
        raise config_lib.ConfigError(
            f"config.model.sts = True but {m.name!r} has no STS convolution; run with --config.model.sts=False."
        )
    try:
        model = zoo.build_model(
            m.name,
            num_classes_for(config),
            sts=None if (spec.sts is None or sts is None) else bool(sts),
            input_shape=input_shape_for(config),
            dropout=None if m.dropout < 0 else m.dropout,
            weights=config.init.keras_weights or None,
            inflation=config.init.inflation,
            **kwargs,
        )
    except TypeError as e:
        raise config_lib.ConfigError(f"config.model.kwargs for {m.name!r}: {e}") from None
    configure_batch_norm(model, momentum=m.bn_momentum, freeze=m.freeze_bn, synchronized=m.sync_bn)
    return model


def batch_norm_layers(model: keras.Model) -> list:
    """Every BatchNormalization, also inside nested models."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def configure_batch_norm(model: keras.Model, *, momentum: float = -1.0, freeze: bool = False, synchronized: bool = False):
    """Set every BatchNormalization's momentum (>= 0), freeze it (inference mode, not
    trained), or synchronise its batch statistics across replicas (SyncBN)."""
    for layer in batch_norm_layers(model):
        if momentum >= 0:
            layer.momentum = float(momentum)
        if freeze:
            layer.trainable = False
        if synchronized:
            layer.synchronized = True


# --- Checkpoints -> models ----------------------------------------------------------------
def checkpoint_prefix(path: str) -> str:
    """The checkpoint prefix for a workdir (its latest), a checkpoints folder, or a prefix."""
    path = os.fspath(path)
    for folder in (os.path.join(path, "checkpoints"), path):
        if tf.io.gfile.isdir(folder):
            latest = tf.train.latest_checkpoint(folder)
            if latest:
                return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(
        f"No checkpoint at {path}: expected a training workdir (with checkpoints/), a checkpoints folder, "
        "or a checkpoint prefix such as DIR/checkpoints/ckpt-100."
    )


def workdir_of(prefix: str) -> str:
    """The workdir a checkpoint prefix DIR/checkpoints/ckpt-N belongs to."""
    return os.path.dirname(os.path.dirname(os.path.abspath(prefix)))


def saved_config(prefix: str) -> ml_collections.ConfigDict | None:
    """The config.json of the run that wrote a checkpoint, if there is one."""
    path = os.path.join(workdir_of(prefix), CONFIG_JSON)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def _describe(config) -> str:
    if config is None:
        return "no config.json beside it"
    classes = {n: s["num_classes"] for n, s in config.data.sources.items()}
    return f"model.name={config.model.name}, num_classes={classes}"


def restore_model(model: keras.Model, path: str) -> str:
    """Restore only the model's weights from a checkpoint prefix or a workdir (its latest).

    Returns the prefix restored. Raises ValueError naming the checkpoint and its config
    when the checkpoint does not fit the model (other architecture or head sizes).
    """
    prefix = checkpoint_prefix(path)
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ValueError(
            f"Checkpoint {prefix} does not fit model {model.name!r} "
            f"(checkpoint from: {_describe(saved_config(prefix))}): {first}. Build the model with the "
            "config the checkpoint was trained with (its workdir's config.json)."
        ) from None
    return prefix


def copy_matching_weights(source: keras.Model, target: keras.Model) -> tuple[list[str], list[str]]:
    """Copy weights layer by layer (by layer name) where every weight's shape agrees.
    Returns (copied layer names, skipped layer names)."""
    by_name = {layer.name: layer for layer in source.layers}
    copied, skipped = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None or [w.shape for w in other.weights] != [w.shape for w in layer.weights]:
            skipped.append(layer.name)
            continue
        layer.set_weights(other.get_weights())
        copied.append(layer.name)
    return copied, skipped


def initialize_from_checkpoint(model: keras.Model, config: ml_collections.ConfigDict) -> dict:
    """config.init.checkpoint: start from a previous run or an image pre-training run.

    The source run's model is rebuilt from its config.json (at this model's input shape:
    weights do not depend on T), restored, and copied layer by layer; heads whose sizes
    differ keep their initialisation when init.skip_mismatched_heads. Returns a report
    {"checkpoint", "copied", "skipped"}.
    """
    prefix = checkpoint_prefix(config.init.checkpoint)
    source_config = saved_config(prefix)
    if source_config is None:
        restore_model(model, prefix)
        return {"checkpoint": prefix, "copied": [l.name for l in model.layers if l.weights], "skipped": []}
    source_config = ml_collections.ConfigDict(source_config.to_dict())
    source_config.init.keras_weights = ""
    source_config.init.checkpoint = ""
    source_config.model.input_shape = tuple(model.inputs[0].shape[1:])
    source_model = build_model_from_config(source_config)
    restore_model(source_model, prefix)
    copied, skipped = copy_matching_weights(source_model, model)
    if skipped and not config.init.skip_mismatched_heads:
        raise ValueError(
            f"init.checkpoint {prefix}: layers {skipped[:5]} do not match the source run "
            f"({_describe(source_config)}); set config.init.skip_mismatched_heads=True to keep their init."
        )
    if not copied:
        raise ValueError(f"init.checkpoint {prefix}: no layer of {model.name!r} matches ({_describe(source_config)}).")
    return {"checkpoint": prefix, "copied": copied, "skipped": skipped}
