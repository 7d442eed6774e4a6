"""The 3D CNN model zoo: one entry point, `build_model`, over plain family builders.

The table below is an explicit dict (no registration by import side effects); each
family module is imported only when one of its models is built, so building a ResNet
does not import keras-cv.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable, Mapping

import keras

from tfsts.models.blocks import classification_head, count_params
from tfsts.models import inflation as _inflation_lib
from tfsts.models.inflation import InflationError, InflationReport, NoImageCounterpartError, inflate


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    module / function: the family's backbone builder, called as
        `function(input_shape, name=..., [sts=...,] **kwargs)` and returning a functional
        keras.Model whose outputs are the features before pooling (a list for
        two-pathway models).
    kwargs: the arguments that make this named variant.
    input_shape: (T, H, W, 3) the model is usually trained at (the FLOP table's size).
    sts: the default for `sts`, or None where the reference has no STS for this model.
    head: "module:function" of a family-specific head; None for the standard one.
    """

    module: str
    function: str
    kwargs: Mapping[str, Any]
    input_shape: tuple[int, int, int, int]
    sts: bool | None = None
    head: str | None = None
    dropout: float = 0.5


def _hara(function, module, **kwargs):
    return ModelSpec(f"tfsts.models.{module}", function, kwargs, (16, 112, 112, 3))


_SPECS: dict[str, ModelSpec] = {
    **{f"resnet3d_{d}": _hara("resnet3d_backbone", "resnet3d", depth=d) for d in (10, 18, 34, 50, 101, 152, 200)},
    "preact_resnet3d_200": _hara("preact_resnet3d_backbone", "preact_resnet3d", depth=200),
    "wide_resnet3d_50": _hara("wide_resnet3d_backbone", "wide_resnet3d", depth=50),
    "resnext3d_101": _hara("resnext3d_backbone", "resnext3d", depth=101),
    "densenet3d_121": _hara("densenet3d_backbone", "densenet3d", depth=121),
    "densenet3d_201": _hara("densenet3d_backbone", "densenet3d", depth=201),
    "i3d_r50": ModelSpec("tfsts.models.slow", "i3d_backbone", {"depth": 50}, (8, 224, 224, 3), sts=False),
    "slowonly_r50": ModelSpec("tfsts.models.slow", "slowonly_backbone", {"depth": 50}, (8, 224, 224, 3), sts=True),
    "slowfast_r50_4x16": ModelSpec(
        "tfsts.models.slowfast", "slowfast_backbone",
        {"depth": 50, "alpha": 8, "beta_inv": 8, "fusion_kernel": 5}, (32, 224, 224, 3), sts=True,
    ),
    "slowfast_r50_8x8": ModelSpec(
        "tfsts.models.slowfast", "slowfast_backbone",
        {"depth": 50, "alpha": 4, "beta_inv": 8, "fusion_kernel": 7}, (32, 224, 224, 3), sts=True,
    ),
    **{
        f"r2plus1d_{d}": ModelSpec("tfsts.models.r2plus1d", "r2plus1d_backbone", {"depth": d}, (8, 112, 112, 3), sts=True)
        for d in (18, 34)
    },
    **{
        f"{mode}csn_{d}": ModelSpec("tfsts.models.csn", "csn_backbone", {"depth": d, "mode": mode}, (32, 224, 224, 3), sts=True)
        for mode in ("ir", "ip")
        for d in (50, 101, 152)
    },
    "x3d_s": ModelSpec("tfsts.models.x3d", "x3d_backbone", {"variant": "s"}, (13, 160, 160, 3), sts=True, head="tfsts.models.x3d:x3d_head"),
    "x3d_m": ModelSpec("tfsts.models.x3d", "x3d_backbone", {"variant": "m"}, (16, 224, 224, 3), sts=True, head="tfsts.models.x3d:x3d_head"),
    **{
        f"videoswin_{size}": ModelSpec("tfsts.models.videoswin", "videoswin_backbone", {"size": size}, (8, 224, 224, 3), dropout=0.2)
        for size in ("tiny", "small", "base")
    },
}


def load_model(path: str, **kwargs) -> keras.Model:
    """`keras.saving.load_model` after importing every family module, so that their
    custom layers are registered in a fresh process (Keras only auto-imports its own)."""
    for module in sorted({spec.module for spec in _SPECS.values()}):
        importlib.import_module(module)
    return keras.saving.load_model(path, **kwargs)


def available_models() -> list[str]:
    """Every name `build_model` accepts, sorted."""
    return sorted(_SPECS)


def model_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(available_models())}.") from None


def _resolve(module: str, function: str) -> Callable:
    return getattr(importlib.import_module(module), function)


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

    weights: None (initialisers); "imagenet" (the matching keras.applications model with
        its ImageNet weights, downloaded by Keras, inflated to 3D); a path to a 2D
        `.keras`, `.weights.h5` (saved from the matching keras.applications builder) or
        legacy `.h5` file; or a 2D keras.Model. With weights, the 3D layout options
        that reproduce the 2D source (e.g. style="caffe", conv_bias, bn_epsilon) come
        from `tfsts.models.inflation.TARGETS` (explicit overrides win, and `inflate`
        checks them), the model's first layer is an `InputNormalization` named
        `input_normalization` in the source's mode, and `model.inflation_report` says
        which 2D weight went where. Models without a 2D counterpart raise
        `NoImageCounterpartError`.
    inflation: "mean" (I3D), "center" or "sts_center" (see docs/inflation.md).
    """
    backbone, source = _backbone_for_weights(name, input_shape, sts, weights, inflation, overrides)
    if source is not None:
        backbone.inflation_report = inflate(backbone, weights, inflation=inflation, source=source.name)
    return backbone


def _backbone_for_weights(name, input_shape, sts, weights, inflation, overrides):
    """The backbone, laid out like the 2D source when `weights` are given (with its
    `input_normalization` layer), not yet inflated; and that source's metadata (None
    without weights). Inflation waits so that build_model can add its heads first."""
    if inflation not in _inflation_lib.INFLATION_MODES:
        raise ValueError(f"inflation must be one of {_inflation_lib.INFLATION_MODES}; got {inflation!r}.")
    spec = model_spec(name)
    source = None
    if weights is not None:
        source = _inflation_lib.source_for(name, overrides)
        _inflation_lib.check_weights_argument(weights)
        layout = _inflation_lib.layout_options(name, _resolve(spec.module, spec.function))
        overrides = {**layout, **overrides}
    kwargs = {**spec.kwargs, **overrides}
    if spec.sts is None:
        if sts:
            raise ValueError(
                f"{name}: the reference applies no STS convolution to this model "
                "(see ../shared/reference/sts.md); build it with sts=False or None."
            )
    else:
        kwargs["sts"] = spec.sts if sts is None else bool(sts)
    shape = tuple(input_shape or spec.input_shape)
    backbone = _resolve(spec.module, spec.function)(shape, name=name, **kwargs)
    if source is not None:
        backbone = _inflation_lib.with_input_normalization(backbone, source.preprocessing)
    return backbone, source


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
    """Backbone + classification head(s).

    num_classes: an int (one output) or `{dataset_name: num_classes}` (one head per
        dataset, outputs keyed by dataset name, for co-training).
    sts: None takes the reference's default for this model (on wherever it uses STS).
    weights, inflation: initialise the backbone from a 2D ImageNet network (see
        `build_backbone`); `model.inflation_report` says what went where.
    copy_head: also copy the 2D classifier (needs num_classes == 1000).
    overrides: family-specific builder arguments (e.g. `shortcut_type="A"`).
    """
    spec = model_spec(name)
    backbone, source = _backbone_for_weights(name, input_shape, sts, weights, inflation, overrides)
    head = classification_head if spec.head is None else _resolve(*spec.head.split(":"))
    outputs = head(backbone.outputs, num_classes, dropout=spec.dropout if dropout is None else dropout)
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    model = keras.Model(inputs, outputs, name=name)
    if source is not None:
        model.inflation_report = inflate(model, weights, inflation=inflation, copy_head=copy_head, source=source.name)
    return model


__all__ = [
    "InflationError",
    "InflationReport",
    "ModelSpec",
    "NoImageCounterpartError",
    "available_models",
    "build_backbone",
    "build_model",
    "count_params",
    "load_model",
    "inflate",
    "model_spec",
]
