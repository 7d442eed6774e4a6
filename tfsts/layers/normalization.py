"""Input normalisation as a layer, so that a model carries the preprocessing its
weights were trained with (instead of a convention in the caller's head).

`InputNormalization(mode)` takes RGB pixels in 0..255 (any rank, channels last, 3
channels) and applies exactly what `keras.applications.imagenet_utils.preprocess_input`
does for that mode:

* "caffe": RGB -> BGR, then subtract the ImageNet mean pixel (BGR)
  [103.939, 116.779, 123.68]; no scaling. Keras' ResNet v1 (ResNet50/101/152), VGG.
* "torch": / 255, subtract [0.485, 0.456, 0.406], divide by [0.229, 0.224, 0.225]
  (RGB). Keras' DenseNet121/169/201.
* "tf": / 127.5 - 1. Keras' ResNet v2, MobileNet, Inception.
* "none": identity (the input is already normalised, or the weights expect 0..255).

Every model from `tfsts.models.build_model` / `build_backbone` has this layer first,
named `input_normalization` (the input contract of `tfsts.models`): in its 2D source's
mode when it was inflated from ImageNet weights, else in `DEFAULT_NORMALIZATION`
("torch", the ImageNet mean/std normalisation the reference uses). The data pipeline
and serving code never normalise; they feed RGB 0..255 and can read the mode back with
`model.get_layer("input_normalization").mode`. The layer has no weights, so it changes
neither parameter nor MAC counts.
"""

from __future__ import annotations

import keras
from keras import ops

NORMALIZATION_MODES = ("caffe", "torch", "tf", "none")
DEFAULT_NORMALIZATION = "torch"
NORMALIZATION_LAYER = "input_normalization"
IMAGENET_MEAN_BGR_255 = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tfsts")
class InputNormalization(keras.layers.Layer):
    """Pixel normalisation of RGB input in 0..255, channels last; integer input
    (uint8 frames) is cast to the compute dtype first.

    Args:
        mode: "caffe", "torch", "tf" or "none" (see the module docstring).

    Example:
        >>> layer = InputNormalization("torch")
        >>> y = layer(keras.ops.full((1, 2, 4, 4, 3), 255, "uint8"))  # [B, T, H, W, 3] -> float
    """

    def __init__(self, mode: str = "none", **kwargs):
        kwargs.setdefault("name", NORMALIZATION_LAYER)
        super().__init__(**kwargs)
        if mode not in NORMALIZATION_MODES:
            raise ValueError(f"{self.name}: mode must be one of {NORMALIZATION_MODES}; got {mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        if self.mode in ("caffe", "torch") and input_shape[-1] != 3:
            raise ValueError(
                f"{self.name}: mode {self.mode!r} normalises 3 RGB channels; the input has "
                f"{input_shape[-1]} channels."
            )

    def call(self, x):
        if self.mode == "none":
            return x
        dtype = x.dtype if "float" in str(x.dtype) else self.compute_dtype
        x = ops.cast(x, dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
            return x - ops.convert_to_tensor(IMAGENET_MEAN_BGR_255, dtype=dtype)
        mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=dtype)
        std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


__all__ = [
    "DEFAULT_NORMALIZATION",
    "IMAGENET_MEAN_BGR_255",
    "IMAGENET_MEAN_RGB",
    "IMAGENET_STD_RGB",
    "InputNormalization",
    "NORMALIZATION_LAYER",
    "NORMALIZATION_MODES",
]
