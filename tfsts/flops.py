"""Parameter and multiply-accumulate counts from a model's layer graph.

Counts conv and dense layers only (BN, activations and pooling are free), the
convention of the computed numbers in ../shared/reference/model_numbers.md and of the
pytorchvideo / SlowFast / torchvision tables (whose "GFLOPs" are GMACs).

    python -m tfsts.flops --model slowonly_r50 --frames 8 --size 256
"""

from __future__ import annotations

import contextlib
import math

import keras
import tensorflow as tf
from keras.src.models.functional import Functional  # no public alias in Keras 3

from tfsts.layers import STSConv3D
from tfsts.models.blocks import count_params

_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_COUNTED_TYPES = (STSConv3D, keras.layers.Dense, keras.layers.DepthwiseConv2D, *_CONV_TYPES)


def layer_macs(layer: keras.layers.Layer, in_shape: tuple, out_shape: tuple) -> int:
    """MACs of one call of a conv / dense layer on one sample (shapes without batch)."""
    if isinstance(layer, STSConv3D):
        return layer.count_macs(in_shape)
    if isinstance(layer, keras.layers.Dense):
        return math.prod(in_shape[:-1]) * in_shape[-1] * layer.units
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return math.prod(out_shape) * math.prod(layer.kernel_size)
    if isinstance(layer, _CONV_TYPES):
        return math.prod(out_shape) * math.prod(layer.kernel_size) * in_shape[-1] // layer.groups
    return 0


@contextlib.contextmanager
def _recording_calls(records: list):
    """Temporarily wraps `call` of the counted layer types to record their shapes;
    for layers used inside subclassed layers, which leave no functional graph."""
    originals = {cls: cls.__dict__.get("call") for cls in _COUNTED_TYPES}

    def wrap(original):
        def call(self, inputs, *args, **kwargs):
            outputs = original(self, inputs, *args, **kwargs)
            records.append((self, tuple(inputs.shape)[1:], tuple(outputs.shape)[1:]))
            return outputs

        return call

    for cls in _COUNTED_TYPES:
        cls.call = wrap(cls.call)
    try:
        yield
    finally:
        for cls, original in originals.items():
            if original is None:
                del cls.call
            else:
                cls.call = original


def count_macs(model: keras.Model) -> int:
    """Total conv + dense MACs for one sample at the model's (static) input shape.

    Functional graphs are walked without running anything; a layer that hides
    sublayers (a subclassed block, e.g. keras-cv's Swin blocks) is run once on zeros
    with its conv / dense calls recorded.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, _COUNTED_TYPES):
            total += layer_macs(layer, tuple(layer.input.shape)[1:], tuple(layer.output.shape)[1:])
        elif isinstance(layer, Functional):
            total += count_macs(layer)
        elif layer._layers:
            records: list = []
            inputs = tf.nest.map_structure(
                lambda t: keras.ops.zeros((1, *tuple(t.shape)[1:]), dtype=t.dtype), layer.input
            )
            with _recording_calls(records):
                layer(inputs, training=False)
            total += sum(layer_macs(*record) for record in records)
    return total


def summary(model: keras.Model) -> dict:
    return {"params": count_params(model), "gmacs": count_macs(model) / 1e9}


def main(argv=None) -> None:
    from absl import app, flags

    from tfsts import models

    flags.DEFINE_string("model", None, "Model name (see tfsts.models.available_models()).", required=False)
    flags.DEFINE_integer("frames", None, "Clip length T (default: the model's).")
    flags.DEFINE_integer("size", None, "Frame height and width (default: the model's).")
    flags.DEFINE_integer("num_classes", 400, "Classes of the head.")
    flags.DEFINE_bool("sts", None, "STS on/off (default: the reference's for the model).")
    flags.DEFINE_bool("all", False, "Print a table for every model at its default size.")
    FLAGS = flags.FLAGS

    def run(_):
        names = models.available_models() if FLAGS.all else [FLAGS.model]
        if names == [None]:
            raise app.UsageError("Give --model NAME or --all. Models: " + ", ".join(models.available_models()))
        print(f"{'model':<22} {'input (T,H,W)':<16} {'params':>14} {'GMACs':>10}")
        for name in names:
            spec = models.model_spec(name)
            t, h, w, c = spec.input_shape
            t = FLAGS.frames or t
            h = w = FLAGS.size or h
            model = models.build_model(name, FLAGS.num_classes, sts=FLAGS.sts, input_shape=(t, h, w, c))
            result = summary(model)
            print(f"{name:<22} {f'{t}x{h}x{w}':<16} {result['params']:>14,} {result['gmacs']:>10.3f}")
            keras.backend.clear_session()

    app.run(run, argv=argv)


if __name__ == "__main__":
    main()
