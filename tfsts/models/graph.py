"""Reading and rewiring functional Keras models with public API only.

`LayerGraph` gives each layer's producers and consumers by name, read from
`model.get_config()`: the functional config is the graph format `.keras` files store,
so it is stable across Keras versions where node attributes (`_inbound_nodes`,
`_keras_history`) are private. `with_input_normalization` / `normalised_copy` put the
input contract's `InputNormalization` layer first with `keras.models.clone_model`;
`fold_batch_norms` makes the inference copy that export serves.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import keras
import numpy as np

from tfsts.layers.normalization import NORMALIZATION_LAYER, InputNormalization
from tfsts.layers.sts_conv import STSConv3D

_KERAS_TENSOR = "__keras_tensor__"


def leaf_layers(model: keras.Model) -> Iterable[keras.layers.Layer]:
    """Every layer of `model`, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def _layer_entries(config: dict) -> Iterator[dict]:
    for entry in config.get("layers", []):
        yield entry
        if isinstance(entry.get("config"), dict) and "layers" in entry["config"]:
            yield from _layer_entries(entry["config"])


def _producer_names(value: Any) -> Iterator[str]:
    """Names of the layers whose outputs appear in one serialised node's arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == _KERAS_TENSOR:
            yield value["config"]["keras_history"][0]
            return
        for item in value.values():
            yield from _producer_names(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _producer_names(item)


class LayerGraph:
    """Producers and consumers of each layer of one functional model, by name.

    A layer shared with another model only shows its connections inside this one. Raises RuntimeError if the config carries
    no connections at all, i.e. if Keras changed its functional config format.
    """

    def __init__(self, model: keras.Model):
        self.layers = {layer.name: layer for layer in leaf_layers(model)}
        self._producers: dict[str, list[str]] = {}
        self._consumers: dict[str, list[str]] = {}
        for entry in _layer_entries(model.get_config()):
            for node in entry.get("inbound_nodes", []):
                for producer in _producer_names(node):
                    self._producers.setdefault(entry["name"], []).append(producer)
                    self._consumers.setdefault(producer, []).append(entry["name"])
        if len(self.layers) > 1 and not self._producers:
            raise RuntimeError(
                f"{model.name}: no layer connections found in model.get_config(); Keras' functional "
                "config format ('inbound_nodes' / 'keras_history') has changed: update tfsts.models.graph."
            )

    def producers(self, layer: keras.layers.Layer) -> list[keras.layers.Layer]:
        return [self.layers[n] for n in self._producers.get(layer.name, []) if n in self.layers]

    def single_consumer(self, layer: keras.layers.Layer) -> keras.layers.Layer | None:
        consumers = self._consumers.get(layer.name, [])
        return self.layers.get(consumers[0]) if len(consumers) == 1 else None


def normalization_layer(model: keras.Model) -> InputNormalization | None:
    """The model's `input_normalization` layer, or None if it has none."""
    for layer in leaf_layers(model):
        if layer.name == NORMALIZATION_LAYER and isinstance(layer, InputNormalization):
            return layer
    return None


def model_normalization(model: keras.Model) -> str | None:
    """The mode of the model's `input_normalization` layer, or None if it has none."""
    layer = normalization_layer(model)
    return None if layer is None else layer.mode


def _fresh_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.__class__.from_config(layer.get_config())


def normalised_copy(model: keras.Model, mode: str, copy_weights: bool = True) -> keras.Model:
    """A new model: `InputNormalization(mode)` named `input_normalization` first (added,
    or replacing one in another mode), then fresh copies of `model`'s layers (same
    names, configs and, with `copy_weights`, weight values).

    Fresh layers, not shared ones: a shared layer keeps its first call's graph, so its
    `layer.output` would point into `model`'s graph and feature extraction
    (`keras.Model(new.input, new.get_layer(name).output)`) would fail.
    """
    current = normalization_layer(model)
    norm = InputNormalization(mode, name=NORMALIZATION_LAYER)
    if current is not None:
        new = keras.models.clone_model(
            model, clone_function=lambda layer: norm if layer is current else _fresh_layer(layer)
        )
    else:
        inputs = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name), model.input
        )
        input_ids = {id(t) for t in keras.tree.flatten(inputs)}
        normalised: dict[int, Any] = {}

        def swap(value):
            if id(value) in input_ids:
                if id(value) not in normalised:
                    normalised[id(value)] = norm(value)
                return normalised[id(value)]
            return value

        def call_function(layer, *args, **kwargs):
            args, kwargs = keras.tree.map_structure(swap, (args, kwargs))
            return layer(*args, **kwargs)

        new = keras.models.clone_model(model, input_tensors=inputs, clone_function=_fresh_layer, call_function=call_function)
    if copy_weights:
        new.set_weights(model.get_weights())
    return new


def with_input_normalization(model: keras.Model, mode: str) -> keras.Model:
    """`model` with `InputNormalization(mode)`, named `input_normalization`, applied to
    its input(s) first; a model whose layer has another mode gets it replaced. The
    result is a new model with the same layer names and weight values (`model` is left
    as it was); a model that already normalises in `mode` is returned as is.

    Args:
        model: a functional keras.Model taking RGB frames.
        mode: an `InputNormalization` mode ("torch", "caffe", "tf", "none").

    Example:
        >>> model = with_input_normalization(resnet3d_backbone((4, 32, 32, 3), depth=10), "caffe")
        >>> model.layers[1].name, model.get_layer("input_normalization").mode
        ('input_normalization', 'caffe')
    """
    current = normalization_layer(model)
    if current is not None and current.mode == mode:
        return model
    return normalised_copy(model, mode)


def foldable_batch_norms(model: keras.Model) -> dict[str, keras.layers.BatchNormalization]:
    """{conv name: the BN it feeds} for each top-level STSConv3D whose only consumer is a BN
    over the last axis whose only input it is: conv, then BN, nothing else reading the
    conv's output (pre-activation BNs, BNs after a sum or a concatenation are not)."""
    graph = LayerGraph(model)
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, len(layer.input.shape) - 1):
            continue
        producers = graph.producers(layer)
        if len(producers) == 1 and isinstance(producers[0], STSConv3D) and graph.single_consumer(producers[0]) is layer:
            pairs[producers[0].name] = layer
    return pairs


def folded_conv_weights(conv: STSConv3D, bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of conv then BN in inference: with a = gamma / sqrt(var + eps),
    kernel * a (each output channel's taps; the same in every STS formulation, which splits
    channels, never mixes an output channel's kernel with another's) and (bias - mean) * a + beta."""
    def value(weight, default):
        return default if weight is None else keras.ops.convert_to_numpy(weight).astype("float64")

    channels = int(conv.kernel.shape[-1])
    mean, variance = value(bn.moving_mean, None), value(bn.moving_variance, None)
    gamma = value(bn.gamma if bn.scale else None, np.ones(channels))
    beta = value(bn.beta if bn.center else None, np.zeros(channels))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel = value(conv.kernel, None) * scale
    bias = (value(conv.bias, np.zeros(channels)) - mean) * scale + beta
    return kernel.astype(conv.kernel.dtype), bias.astype(conv.kernel.dtype)


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """An inference copy of `model` with each BN that follows a conv (`foldable_batch_norms`)
    folded into that conv's kernel and bias (`folded_conv_weights`, in float64): the same
    function in inference up to float32 rounding, one pass over the activations fewer per
    BN, and on TensorFlow the bias add fuses into the conv (`backend_kernels.bias_add`).
    The other layers are fresh copies with the same names and weights. For inference only:
    the copy has no BN to train. Where nothing folds, the model itself is returned.

    Args:
        model: a functional keras.Model (every zoo model is one).

    Example:
        >>> folded = fold_batch_norms(build_model("x3d_s", 400, input_shape=(13, 160, 160, 3)))
        >>> len(folded.layers) < len(build_model("x3d_s", 400, input_shape=(13, 160, 160, 3)).layers)
        True
    """
    pairs = foldable_batch_norms(model)
    if not pairs:
        return model
    folded = {bn.name for bn in pairs.values()}

    def clone(layer):
        if layer.name in pairs:
            return STSConv3D.from_config({**layer.get_config(), "use_bias": True})
        return _fresh_layer(layer)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in folded else layer(*args, **kwargs)

    new = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        if layer.name in folded or not layer.weights:
            continue
        target = new.get_layer(layer.name)
        if layer.name in pairs:
            kernel, bias = folded_conv_weights(layer, pairs[layer.name])
            target.kernel.assign(kernel)
            target.bias.assign(bias)
        else:
            target.set_weights(layer.get_weights())
    return new


__all__ = [
    "LayerGraph",
    "fold_batch_norms",
    "foldable_batch_norms",
    "folded_conv_weights",
    "leaf_layers",
    "model_normalization",
    "normalised_copy",
    "normalization_layer",
    "with_input_normalization",
]
