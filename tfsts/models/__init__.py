"""The 3D CNN model zoo: `build_model` and `build_backbone` over plain family builders.

Input contract (every model from `build_model` / `build_backbone`): RGB frames
`[B, T, H, W, 3]` with values in [0, 255], float32 or uint8 (cast inside). The first
layer after the input is `tfsts.layers.InputNormalization`, named
`input_normalization`: in the 2D source's mode when the model is inflated from
ImageNet weights (`weights=`; "caffe" for Keras' ResNet v1, "torch" for DenseNet), else
in the default "torch" mode (ImageNet mean (123.675, 116.28, 103.53) and std
(58.395, 57.12, 57.375) on 0..255, what the reference normalises with). Data pipelines,
trainers and serving signatures never normalise: they feed 0..255 frames, and
`model.get_layer("input_normalization").mode` says what the model does. The layer has
no weights: parameter and MAC counts, layer names and weight layouts are those of the
family builders. Outputs are logits: one `[B, C]` tensor for an int `num_classes`, a
dict `{name: [B, C_name]}` for `num_classes={name: C, ...}`.

Each named model is one card in `tfsts.models.cards.CARDS` (builder, arguments, default
input, STS default, head, 2D source and layout, counts); each family module is imported
only when one of its models is built, so building a ResNet does not import keras-cv.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
from typing import Any, Mapping

import keras

from tfsts.layers.normalization import NORMALIZATION_LAYER
from tfsts.models import inflation as _inflation_lib
from tfsts.models.blocks import classification_head, count_params
from tfsts.models.cards import CARDS, ModelCard, available_models, model_card
from tfsts.models.graph import fold_batch_norms
from tfsts.models.inflation import InflationError, InflationReport, NoImageCounterpartError, inflate

ModelSpec = ModelCard  # the former name of a model's record
model_spec = model_card

_STS_ERROR = "STS cannot take this conv"  # tfsts.layers.sts_conv's build-time error


def load_model(path: str, **kwargs) -> keras.Model:
    """`keras.saving.load_model` after importing every family module, so that their
    custom layers are registered in a fresh process (Keras only auto-imports its own).

    Args:
        path: a `.keras` file saved from a tfsts model.
        **kwargs: passed to `keras.saving.load_model` (e.g. `compile=False`).

    Example:
        >>> model = load_model("/tmp/slowonly.keras")
        >>> model.get_layer("input_normalization").mode
        'torch'
    """
    for module in sorted({card.module for card in CARDS.values()}):
        importlib.import_module(module)
    return keras.saving.load_model(path, **kwargs)


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def check_num_classes(num_classes: Any) -> None:
    """Raises ValueError unless `num_classes` is a positive int or a non-empty
    `{name: positive int}` dict (names: non-empty strings, they name the heads)."""
    usage = "num_classes must be a positive int (one output) or a non-empty dict {name: positive int} (one head each)"
    if isinstance(num_classes, Mapping):
        if not num_classes:
            raise ValueError(f"{usage}; got an empty mapping.")
        bad = {k: v for k, v in num_classes.items() if not (isinstance(k, str) and k and _positive_int(v))}
        if bad:
            raise ValueError(f"{usage}; these entries are not: {bad!r}.")
    elif not _positive_int(num_classes):
        raise ValueError(f"{usage}; got {num_classes!r} ({type(num_classes).__name__}).")


def _source_for_weights(card: ModelCard, weights, inflation: str, overrides: Mapping[str, Any]):
    """The 2D source's spec when `weights` are given (None otherwise), after checking
    the inflation mode and the weights argument."""
    if inflation not in _inflation_lib.INFLATION_MODES:
        raise ValueError(f"inflation must be one of {_inflation_lib.INFLATION_MODES}; got {inflation!r}.")
    if weights is None:
        return None
    source = _inflation_lib.source_for(card.name, overrides)
    _inflation_lib.check_weights_argument(weights)
    return source


def _builder_kwargs(card: ModelCard, sts: bool | None, inflated: bool, overrides: Mapping[str, Any]) -> dict:
    """The family builder's arguments: the card's, the source's layout when inflated,
    then the caller's overrides; `sts` where the card has an STS default."""
    layout = _inflation_lib.layout_options(card.name, card.builder()) if inflated else {}
    kwargs = {**card.kwargs, **layout, **overrides}
    if card.sts is None:
        if sts:
            raise ValueError(
                f"{card.name}: the reference applies no STS convolution to this model (the README's model "
                "table gives each model's STS setting); build it with sts=False or None."
            )
    else:
        kwargs["sts"] = card.sts if sts is None else bool(sts)
    return kwargs


def _sts_strided_convs(card: ModelCard, input_shape: tuple, kwargs: Mapping[str, Any]) -> list[tuple[int, int, int, int]] | None:
    """For each STS conv that strides spatially: (height reduction before it, its
    height stride, width reduction, width stride), read from the model built at a
    power-of-two frame size (every map exact there); None if that build fails too."""
    from tfsts.layers.sts_conv import STSConv3D

    probe = 2 ** max(8, math.ceil(math.log2(max(input_shape[1:3]))))
    try:
        model = card.builder()((input_shape[0], probe, probe, *input_shape[3:]), name=card.name, **kwargs)
    except ValueError:
        return None
    convs = []
    for layer in model.layers:
        if isinstance(layer, STSConv3D) and layer.sts and layer.resolved_case == "A" and max(layer.strides[1:]) > 1:
            _, _, h, w, _ = layer.input.shape
            convs.append((probe // h, layer.strides[1], probe // w, layer.strides[2]))
    return convs


def nearest_sts_sizes(size: int, constraints: list[tuple[int, int]]) -> list[int]:
    """The frame sizes nearest to `size` (one below, one above; `size` itself if it
    works) at which every (reduction, stride) STS conv sees a map its stride divides.
    Maps shrink as ceil(size / reduction): every conv and pool pads (k - 1) / 2."""

    def works(n: int) -> bool:
        return all(math.ceil(n / reduction) % stride == 0 for reduction, stride in constraints)

    if works(size):
        return [size]
    below = next((n for n in range(size - 1, 0, -1) if works(n)), None)
    above = next(n for n in range(size + 1, 2 * size + 2 * max(r * s for r, s in constraints) + 1) if works(n))
    return [n for n in (below, above) if n is not None]


def _sts_shape_error(card: ModelCard, input_shape: tuple, kwargs: Mapping[str, Any], error: ValueError) -> ValueError:
    """The STS build-time error as a `build_model` user can act on it."""
    why = str(error).split(". Fix:")[0]
    fixes = [f"build_model({card.name!r}, ..., sts=False) (same weights, no STS)"]
    convs = _sts_strided_convs(card, input_shape, kwargs)
    if convs:
        heights = nearest_sts_sizes(input_shape[1], [(r, s) for r, s, _, _ in convs])
        widths = nearest_sts_sizes(input_shape[2], [(r, s) for _, _, r, s in convs])
        fixes.append(
            f"a frame size STS can take: height {' or '.join(map(str, heights))}, width "
            f"{' or '.join(map(str, widths))} (from the model's spatial strides), e.g. "
            f"input_shape=({input_shape[0]}, {heights[-1]}, {widths[-1]}, {input_shape[3]})"
        )
    return ValueError(
        f"{card.name} with sts=True at input_shape={tuple(input_shape)}: {why}. Fix: " + "; or ".join(fixes) + "."
    )


def _build_family_backbone(card: ModelCard, input_shape: tuple, kwargs: Mapping[str, Any]) -> keras.Model:
    try:
        return card.builder()(input_shape, name=card.name, **kwargs)
    except ValueError as error:
        if kwargs.get("sts") and _STS_ERROR in str(error):
            raise _sts_shape_error(card, input_shape, kwargs, error) from error
        raise


def _backbone_for(name, input_shape, sts, weights, inflation, overrides):
    """The backbone with its `input_normalization` layer, laid out like the 2D source
    when `weights` are given, not yet inflated; and that source's spec (None without
    weights). Inflation waits so that build_model can add its heads first."""
    card = model_card(name)
    source = _source_for_weights(card, weights, inflation, overrides)
    if "normalization" in overrides:
        raise ValueError(
            f"{name}: normalization is not a build argument: every model normalises in its card's mode, or in "
            "its 2D source's when built with weights= (the input contract, README 'Model zoo')."
        )
    kwargs = _builder_kwargs(card, sts, source is not None, overrides)
    kwargs["normalization"] = source.preprocessing if source is not None else card.normalization
    shape = tuple(input_shape or card.input_shape)
    return _build_family_backbone(card, shape, kwargs), source


def build_backbone(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    sts: bool | None = None,
    weights: str | os.PathLike | keras.Model | None = None,
    inflation: str = "mean",
    **overrides,
) -> keras.Model:
    """The features-before-pooling network of model `name` (one output per pathway).

    Takes RGB frames in [0, 255] (the module's input contract) and starts with the
    `input_normalization` layer.

    Args:
        name: a model name (`available_models()`).
        input_shape: (T, H, W, 3); default: the model card's.
        sts: True / False; None takes the reference's default for this model.
        weights: None (initialisers); "imagenet" (the matching keras.applications model
            with its ImageNet weights, downloaded by Keras, inflated to 3D); a path to a
            2D `.keras`, `.weights.h5` (saved from the matching keras.applications
            builder) or legacy `.h5` file; or a 2D keras.Model. With weights, the 3D
            layout options that reproduce the 2D source (e.g. stride_layout="1x1",
            conv_bias, bn_epsilon) come from the model's card (explicit overrides win,
            and `inflate` checks them), the normalisation takes the source's mode, and
            `model.inflation_report` says which 2D weight went where. Models without a
            2D counterpart raise `NoImageCounterpartError`.
        inflation: "mean" (I3D), "center" or "sts_center" (see docs/inflation.md).
        **overrides: family builder arguments (e.g. `shortcut_type="A"`).

    Example:
        >>> backbone = build_backbone("x3d_s", input_shape=(13, 160, 160, 3))
        >>> backbone.output.shape
        (None, 13, 5, 5, 192)
    """
    backbone, source = _backbone_for(name, input_shape, sts, weights, inflation, overrides)
    if source is not None:
        backbone.inflation_report = inflate(backbone, weights, inflation=inflation, source=source.name)
    return backbone


def build_model(
    name: str,
    num_classes: int | Mapping[str, int],
    *,
    sts: bool | None = None,
    input_shape: tuple[int, ...] | None = None,
    dropout: float | None = None,
    weights: str | os.PathLike | keras.Model | None = None,
    inflation: str = "mean",
    copy_head: bool = False,
    **overrides,
) -> keras.Model:
    """Backbone + classification head(s), taking RGB frames `[B, T, H, W, 3]` in
    [0, 255] (float or uint8) and returning logits.

    Args:
        name: a model name (`available_models()`).
        num_classes: a positive int (one output `[B, C]`) or `{dataset_name: C}` (one
            head per dataset, outputs keyed by dataset name, for co-training).
        sts: None takes the reference's default for this model (on wherever it uses STS).
        input_shape: (T, H, W, 3); default: the model card's.
        dropout: before the classifier; default: the card's.
        weights, inflation: initialise the backbone from a 2D ImageNet network (see
            `build_backbone`); `model.inflation_report` says what went where.
        copy_head: also copy the 2D classifier (needs num_classes == 1000).
        **overrides: family-specific builder arguments (e.g. `shortcut_type="A"`).

    Example:
        >>> model = build_model("slowonly_r50", 400, input_shape=(8, 224, 224, 3))
        >>> logits = model(np.zeros((1, 8, 224, 224, 3), "uint8"))   # [1, 400]
        >>> multi = build_model("ircsn_50", {"kinetics400": 400, "ssv2": 174})
    """
    check_num_classes(num_classes)
    card = model_card(name)
    backbone, source = _backbone_for(name, input_shape, sts, weights, inflation, overrides)
    head = card.head_builder() or classification_head
    outputs = head(backbone.outputs, num_classes, dropout=card.dropout if dropout is None else dropout)
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    model = keras.Model(inputs, outputs, name=name)
    if source is not None:
        model.inflation_report = inflate(model, weights, inflation=inflation, copy_head=copy_head, source=source.name)
    return model


__all__ = [
    "InflationError",
    "InflationReport",
    "ModelCard",
    "ModelSpec",
    "NORMALIZATION_LAYER",
    "NoImageCounterpartError",
    "available_models",
    "build_backbone",
    "build_model",
    "check_num_classes",
    "count_params",
    "fold_batch_norms",
    "inflate",
    "load_model",
    "model_card",
    "model_spec",
    "nearest_sts_sizes",
]
