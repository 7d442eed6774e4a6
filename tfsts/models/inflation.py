"""2D -> 3D inflation: initialise 3D CNNs from Keras' ImageNet applications.

`inflate(model_3d, source_2d, inflation="mean")` copies every conv and BatchNorm
weight of a `keras.applications` ResNet v1 or DenseNet into the 3D network whose layers
carry the same names (tfsts' models mirror keras.applications' naming), inflating each
2D kernel over the 3D kernel's temporal taps:

* "mean"   (I3D; Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017):
  the 2D kernel repeated over the kt taps, divided by kt.
* "center" (the identity-at-the-centre initialisation of temporal filters of
  Feichtenhofer, Pinz & Wildes, "Spatiotemporal Residual Networks for Video Action
  Recognition", NeurIPS 2016; also what image pre-training of the 3D net with one-frame
  clips leaves in effect): the 2D kernel in the centre tap, zeros elsewhere.
* "sts_center" (Li et al., "In Defense of Image Pre-Training for Spatiotemporal
  Recognition", ECCV 2022, one released config): a 3-tap kernel with centre c becomes
  [c/9, c/3, c/9]; 1-tap kernels take c; other lengths fall back to "center" (the
  reference only re-weights 3-tap kernels).

On a clip whose frames are all one image, a "center"-inflated network gives the 2D
network's features at every frame, a "mean"-inflated one at the frames whose temporal
receptive field does not reach the zero temporal padding (with STS off: an STS conv's
appearance half applies the temporal taps along the raster-flattened frame, so with
STS on only "center" keeps the static features; the weights are the same either way). "sts_center" scales each
3-tap conv's static response by 5/9 before its BN: it is a fine-tuning initialisation
(training-mode BN renormalises), not a feature-preserving one.

Everything is checked, nothing is silently random: each source conv/BN weight must be
used exactly once, each 3D weight must get a source weight or have a stated reason to
stay at its initialiser (the SlowFast fast pathway and lateral connections, the head
unless `copy_head=True`); shapes, spatial strides and padding must match the source's
layout; otherwise `InflationError` lists everything that is unused or mismatched.
Layout details that can be compensated exactly are: a source conv bias where the 3D
conv has none (folded into the next BN's moving mean) and a different BN epsilon
(folded into the moving variance); the report lists each such fold.

The input normalisation is part of the weights' contract: a 3D model initialised from a
2D source must start with a `tfsts.layers.InputNormalization` layer named
`input_normalization` whose mode is the source's ("caffe" for ResNet v1, "torch" for
DenseNet); `build_model(..., weights=...)` inserts it, and `inflate` refuses a model
whose normalisation disagrees.

Models with no 2D counterpart in keras.applications (CSN, X3D, R(2+1)D, Video Swin,
ResNet-10/18/34/200, wide ResNet, ResNeXt, pre-activation ResNet) raise
`NoImageCounterpartError`: they are initialised from images by pre-training the 3D
network itself on images (one-frame clips; see docs/inflation.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import warnings
from typing import Any, Iterable, Mapping, Sequence

import keras
import numpy as np

from tfsts.layers.normalization import InputNormalization
from tfsts.layers.sts_conv import STSConv3D

INFLATION_MODES = ("mean", "center", "sts_center")
LATERAL_MODES = ("zeros", "keep")
NORMALIZATION_LAYER = "input_normalization"

# --------------------------------------------------------------------------- metadata


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A 2D ImageNet source from keras.applications.

    name: the builder's name ("ResNet50"); builder: its import path;
    keras_name: the `model.name` the builder gives ("resnet50");
    preprocessing: the `preprocess_input` mode its ImageNet weights expect;
    bn_epsilon / conv_bias: the layout facts a 3D model must reproduce;
    targets: the tfsts models it fits, in the order they are listed in the docs.
    """

    name: str
    builder: str
    keras_name: str
    family: str
    preprocessing: str
    bn_epsilon: float
    conv_bias: bool
    targets: tuple[str, ...]

    def build(self, weights: str | None = None, include_top: bool = False) -> keras.Model:
        module, function = self.builder.rsplit(".", 1)
        return getattr(importlib.import_module(module), function)(weights=weights, include_top=include_top)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A tfsts model that takes a 2D source.

    build_options: the 3D builder options that reproduce the source's layout
        (applied where the builder has them; the rest is compensated exactly or checked).
    prefix: prepended to the source's layer names ("slow_" for SlowFast).
    note: what else to know (e.g. which part has no 2D counterpart).
    """

    model: str
    source: str
    build_options: Mapping[str, Any]
    prefix: str = ""
    note: str = ""


_KERAS_RESNET_V1 = dict(family="resnet_v1", preprocessing="caffe", bn_epsilon=1.001e-5, conv_bias=True)
_KERAS_DENSENET = dict(family="densenet", preprocessing="torch", bn_epsilon=1.001e-5, conv_bias=False)

SOURCES: dict[str, SourceSpec] = {
    "ResNet50": SourceSpec(
        "ResNet50", "keras.applications.ResNet50", "resnet50",
        targets=("i3d_r50", "slowonly_r50", "slowfast_r50_4x16", "slowfast_r50_8x8", "resnet3d_50"),
        **_KERAS_RESNET_V1,
    ),
    "ResNet101": SourceSpec("ResNet101", "keras.applications.ResNet101", "resnet101", targets=("resnet3d_101",), **_KERAS_RESNET_V1),
    "ResNet152": SourceSpec("ResNet152", "keras.applications.ResNet152", "resnet152", targets=("resnet3d_152",), **_KERAS_RESNET_V1),
    "DenseNet121": SourceSpec("DenseNet121", "keras.applications.DenseNet121", "densenet121", targets=("densenet3d_121",), **_KERAS_DENSENET),
    "DenseNet201": SourceSpec("DenseNet201", "keras.applications.DenseNet201", "densenet201", targets=("densenet3d_201",), **_KERAS_DENSENET),
}

_SLOW_CAFFE = {"stride_layout": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}
_HARA_CAFFE = {"stride_layout": "1x1", "conv_bias": True, "shortcut_type": "B", "bn_epsilon": 1.001e-5}
_SLOWFAST_NOTE = (
    "slow pathway only: the fast pathway (fast_*) and the lateral connections (fuse*) have no 2D "
    "counterpart and stay at their initialisers; the slow convs' lateral input channels are zeroed"
)

TARGETS: dict[str, TargetSpec] = {
    "i3d_r50": TargetSpec("i3d_r50", "ResNet50", _SLOW_CAFFE),
    "slowonly_r50": TargetSpec("slowonly_r50", "ResNet50", _SLOW_CAFFE),
    "slowfast_r50_4x16": TargetSpec("slowfast_r50_4x16", "ResNet50", _SLOW_CAFFE, prefix="slow_", note=_SLOWFAST_NOTE),
    "slowfast_r50_8x8": TargetSpec("slowfast_r50_8x8", "ResNet50", _SLOW_CAFFE, prefix="slow_", note=_SLOWFAST_NOTE),
    "resnet3d_50": TargetSpec("resnet3d_50", "ResNet50", _HARA_CAFFE),
    "resnet3d_101": TargetSpec("resnet3d_101", "ResNet101", _HARA_CAFFE),
    "resnet3d_152": TargetSpec("resnet3d_152", "ResNet152", _HARA_CAFFE),
    "densenet3d_121": TargetSpec("densenet3d_121", "DenseNet121", {"bn_epsilon": 1.001e-5}),
    "densenet3d_201": TargetSpec("densenet3d_201", "DenseNet201", {"bn_epsilon": 1.001e-5}),
}

_IMAGE_PRETRAINING = (
    "Initialise it from images by pre-training the 3D network itself on ImageNet with one-frame "
    "clips (T = 1), as Li et al. (ECCV 2022) do (docs/inflation.md, 'Models with no 2D counterpart'; "
    "a later tfsts issue), or train it from scratch (weights=None)."
)
NO_COUNTERPART: dict[str, str] = {
    "ircsn": "channel-separated (depthwise 3x3x3) bottlenecks; keras.applications has no 2D CSN",
    "ipcsn": "channel-separated (depthwise 3x3x3) bottlenecks; keras.applications has no 2D CSN",
    "x3d": "X3D's expanded depthwise blocks have no keras.applications 2D counterpart",
    "r2plus1d": "(2+1)D convs with R(2+1)D's mid-channel counts have no 2D counterpart",
    "videoswin": "keras.applications has no Swin Transformer",
    "preact_resnet3d": "keras.applications' pre-activation ResNets (ResNet50V2/101V2/152V2) have no depth 200",
    "wide_resnet3d": "keras.applications has no wide ResNet",
    "resnext3d": "keras.applications has no ResNeXt",
    "resnet3d_10": "keras.applications has no ResNet-10",
    "resnet3d_18": "keras.applications has no ResNet-18",
    "resnet3d_34": "keras.applications has no ResNet-34",
    "resnet3d_200": "keras.applications has no ResNet-200",
}


class InflationError(ValueError):
    """Raised when a 2D source does not fit a 3D model; lists every problem.

    Attributes: unused_source, unmatched_target, mismatched (lists of strings).
    """

    def __init__(self, message: str, unused_source=(), unmatched_target=(), mismatched=()):
        super().__init__(message)
        self.unused_source = list(unused_source)
        self.unmatched_target = list(unmatched_target)
        self.mismatched = list(mismatched)


class NoImageCounterpartError(ValueError):
    """The 3D model has no 2D keras.applications counterpart to inflate from."""


def supported_pairs() -> list[dict[str, Any]]:
    """One row per (source, target) pair: the docs' table, as data."""
    rows = []
    for source in SOURCES.values():
        for target in source.targets:
            spec = TARGETS[target]
            rows.append(
                dict(
                    source=source.builder,
                    target=target,
                    build_options=dict(spec.build_options),
                    preprocessing=source.preprocessing,
                    note=spec.note,
                )
            )
    return rows


def _no_counterpart_reason(name: str) -> str | None:
    for key, reason in NO_COUNTERPART.items():
        if name == key or name.startswith(key + "_"):
            return reason
    return None


def no_counterpart_error(name: str, reason: str | None = None) -> NoImageCounterpartError:
    reason = reason or _no_counterpart_reason(name) or "it is not in the supported-pairs table"
    supported = ", ".join(TARGETS)
    return NoImageCounterpartError(
        f"{name} cannot be inflated from a 2D ImageNet network: {reason}. {_IMAGE_PRETRAINING} "
        f"Models with a 2D source: {supported}."
    )


def source_for(name: str, overrides: Mapping[str, Any] | None = None, source: str | None = None) -> SourceSpec:
    """The 2D source for tfsts model `name` (`source` overrides the table's choice; a
    ResNet `depth` override picks ResNet{depth})."""
    if source is not None:
        if source not in SOURCES:
            raise ValueError(f"Unknown 2D source {source!r}; known: {', '.join(SOURCES)}.")
        return SOURCES[source]
    if name not in TARGETS:
        raise no_counterpart_error(name)
    spec = SOURCES[TARGETS[name].source]
    depth = (overrides or {}).get("depth")
    if depth is not None and spec.family == "resnet_v1" and f"ResNet{depth}" in SOURCES:
        spec = SOURCES[f"ResNet{depth}"]
    elif depth is not None and spec.family == "densenet" and f"DenseNet{depth}" in SOURCES:
        spec = SOURCES[f"DenseNet{depth}"]
    return spec


def layout_options(name: str, builder=None) -> dict[str, Any]:
    """The 3D builder options that reproduce the 2D source's layout for model `name`,
    restricted to those `builder` accepts (a missing BN-epsilon option is compensated
    exactly by `inflate`)."""
    if name not in TARGETS:
        raise no_counterpart_error(name)
    options = dict(TARGETS[name].build_options)
    if builder is not None:
        params = inspect.signature(builder).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            options = {k: v for k, v in options.items() if k in params}
    return options


# --------------------------------------------------------------------- the report


@dataclasses.dataclass(frozen=True)
class Transfer:
    """One 2D weight that went into one 3D weight."""

    source: str
    target: str
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    how: str


@dataclasses.dataclass(frozen=True)
class Kept:
    """A 3D weight (or slice of one) that no 2D weight went into, and why."""

    target: str
    shape: tuple[int, ...]
    reason: str


@dataclasses.dataclass
class InflationReport:
    """What `inflate` did: which 2D weight went to which 3D weight (`transfers`), which
    3D weights stayed at their initialiser or were zeroed and why (`kept`), which source
    weights were not used and why (`source_unused`: only a head that was not asked for),
    and the notes on exact compensations."""

    source: str
    target: str
    inflation: str
    preprocessing: str
    transfers: list[Transfer] = dataclasses.field(default_factory=list)
    kept: list[Kept] = dataclasses.field(default_factory=list)
    source_unused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    source_backbone_weights: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def used_source_weights(self) -> set[str]:
        return {t.source for t in self.transfers}

    @property
    def coverage(self) -> float:
        """Fraction of the source's conv/BN weights that went into the 3D model (1.0 or
        `inflate` would have raised)."""
        total = set(self.source_backbone_weights)
        return len(total & self.used_source_weights) / max(1, len(total))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "inflation": self.inflation,
            "preprocessing": self.preprocessing,
            "coverage": self.coverage,
            "transfers": [dataclasses.asdict(t) for t in self.transfers],
            "kept": [dataclasses.asdict(k) for k in self.kept],
            "source_unused": [{"source": s, "reason": r} for s, r in self.source_unused],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        n_src = len(self.source_backbone_weights)
        n_used = len(set(self.source_backbone_weights) & self.used_source_weights)
        lines = [
            f"Inflation {self.source} -> {self.target} ({self.inflation}); input normalisation "
            f"{self.preprocessing!r}",
            f"  source conv/BN weights used: {n_used}/{n_src} ({self.coverage:.0%}); "
            f"{len(self.transfers)} transfers; {len(self.kept)} 3D weights (or slices) not from the source",
        ]
        reasons: dict[str, int] = {}
        for k in self.kept:
            reasons[k.reason] = reasons.get(k.reason, 0) + 1
        lines += [f"  kept/zeroed x{n}: {reason}" for reason, n in reasons.items()]
        lines += [f"  source unused: {s} ({r})" for s, r in self.source_unused]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> str:
        rows = [("2D weight", "2D shape", "3D weight", "3D shape", "how")]
        rows += [(t.source, str(t.source_shape), t.target, str(t.target_shape), t.how) for t in self.transfers]
        rows += [("-", "", k.target, str(k.shape), f"NOT FROM SOURCE: {k.reason}") for k in self.kept]
        rows += [(s, "", "-", "", f"UNUSED: {r}") for s, r in self.source_unused]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        out = [fmt.format(*rows[0]), fmt.format(*("-" * w for w in widths), "-" * 3)]
        out += [fmt.format(*r) for r in rows[1:]]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()

    def __repr__(self) -> str:
        return (
            f"InflationReport(source={self.source!r}, target={self.target!r}, inflation={self.inflation!r}, "
            f"coverage={self.coverage:.3f}, transfers={len(self.transfers)}, kept={len(self.kept)})"
        )


# ----------------------------------------------------------------- kernel inflation


def inflate_kernel(kernel_2d: np.ndarray, temporal_size: int, mode: str) -> tuple[np.ndarray, str]:
    """A 2D kernel (kh, kw, cin, cout) as a 3D one (kt, kh, kw, cin, cout); returns it
    and a description of what was done."""
    if mode not in INFLATION_MODES:
        raise ValueError(f"inflation must be one of {INFLATION_MODES}; got {mode!r}.")
    kt = int(temporal_size)
    k = np.asarray(kernel_2d, dtype=np.float64)
    if kt == 1:
        return k[None].astype(np.float32), "copied (1 temporal tap)"
    out = np.zeros((kt, *k.shape), dtype=np.float64)
    centre = kt // 2
    if mode == "mean":
        out[:] = k / kt
        how = f"mean: repeated over {kt} taps / {kt}"
    elif mode == "sts_center" and kt == 3:
        out[0], out[1], out[2] = k / 9.0, k / 3.0, k / 9.0
        how = "sts_center: [c/9, c/3, c/9]"
    else:
        out[centre] = k
        how = f"center: tap {centre} of {kt}, zeros elsewhere"
        if mode == "sts_center":
            how += f" (sts_center re-weights 3-tap kernels only; this one has {kt})"
    return out.astype(np.float32), how


# ------------------------------------------------------------------ graph helpers


class _Graph:
    """Producers and consumers of each layer inside one functional model (a layer may
    also belong to other graphs, e.g. after `with_input_normalization`)."""

    def __init__(self, model: keras.Model):
        self.node = {}
        self.consumers: dict[int, list] = {}
        nodes_by_depth = getattr(model, "_nodes_by_depth", None)
        nodes = [n for ns in nodes_by_depth.values() for n in ns] if nodes_by_depth else []
        if not nodes:
            nodes = [op._inbound_nodes[-1] for op in _leaf_layers(model) if getattr(op, "_inbound_nodes", None)]
        for node in nodes:
            if node.operation is None:
                continue
            self.node[id(node.operation)] = node
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                self.consumers.setdefault(id(producer), []).append(node.operation)

    def producers(self, layer) -> list:
        node = self.node.get(id(layer))
        if node is None:
            return []
        return [t._keras_history.operation for t in node.input_tensors]

    def single_consumer(self, layer):
        consumers = self.consumers.get(id(layer), [])
        return consumers[0] if len(consumers) == 1 else None


def _leaf_layers(model: keras.Model) -> Iterable[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    layers = {}
    for layer in _leaf_layers(model):
        if layer.weights:
            if layer.name in layers:
                raise InflationError(f"{model.name}: two weighted layers are named {layer.name!r}; names must be unique.")
            layers[layer.name] = layer
    return layers


def _var(layer, name: str):
    for v in layer.weights:
        if v.name == name:
            return v
    return None


def _bn_vars(layer) -> dict[str, Any]:
    return {n: _var(layer, n) for n in ("gamma", "beta", "moving_mean", "moving_variance")}


def _shape(v) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def model_normalization(model: keras.Model) -> str | None:
    """The mode of the model's `input_normalization` layer, or None if it has none."""
    for layer in _leaf_layers(model):
        if layer.name == NORMALIZATION_LAYER and isinstance(layer, InputNormalization):
            return layer.mode
    return None


def with_input_normalization(model: keras.Model, mode: str) -> keras.Model:
    """`model` with an `InputNormalization(mode)` layer named `input_normalization`
    applied to its input(s) first. The layers (and weights) are shared with `model`,
    which should be discarded. A model that already has the layer is returned as is if
    the mode agrees, else this raises."""
    current = model_normalization(model)
    if current is not None:
        if current != mode:
            raise ValueError(
                f"{model.name} already normalises its input with mode {current!r}; cannot make it {mode!r}."
            )
        return model
    norm = InputNormalization(mode, name=NORMALIZATION_LAYER)
    normalised: dict[int, Any] = {}

    def call_function(layer, *args, **kwargs):
        def swap(value):
            if isinstance(value, keras.KerasTensor) and isinstance(
                value._keras_history.operation, keras.layers.InputLayer
            ):
                if id(value) not in normalised:
                    normalised[id(value)] = norm(value)
                return normalised[id(value)]
            return value

        args, kwargs = keras.tree.map_structure(swap, (args, kwargs))
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function)


# ----------------------------------------------------------------- source loading


def check_weights_argument(weights) -> None:
    """Fails early (before a 3D model is built) on a `weights=` value `load_source`
    could not take."""
    if weights is None or isinstance(weights, keras.Model) or (isinstance(weights, str) and weights == "imagenet"):
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'imagenet', a path or a keras.Model; got {type(weights).__name__}.")
    path = os.fspath(weights)
    if not path.lower().endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"weights={path!r}: expected 'imagenet' or a .keras, .weights.h5 or legacy .h5 file.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"2D source file not found: {path}")


def _guess_source(model: keras.Model) -> SourceSpec | None:
    for spec in SOURCES.values():
        if model.name == spec.keras_name:
            return spec
    return None


def load_source(source_2d, source: str | SourceSpec | None = None, include_top: bool | None = None) -> keras.Model:
    """The 2D source as a keras.Model.

    source_2d: a keras.Model; "imagenet" (builds `source` with ImageNet weights: this
        downloads); or a path to a `.keras` model, a `.weights.h5` file saved from the
        `source` builder (stored by position: the builder is built with weights=None and
        loads it), or a legacy `.h5` (a whole model, or a weights file such as Keras'
        own ImageNet downloads).
    source: a SOURCES name ("ResNet50"), needed for "imagenet" and weights-only files.
    include_top: for "imagenet": download the file with the classifier; for weights-only
        files: which layout to try first (both are tried).
    """
    if isinstance(source_2d, keras.Model):
        return source_2d
    spec = SOURCES[source] if isinstance(source, str) else source
    if isinstance(source_2d, str) and source_2d == "imagenet":
        if spec is None:
            raise ValueError('weights="imagenet" needs the source architecture (e.g. source="ResNet50").')
        return spec.build(weights="imagenet", include_top=bool(include_top))
    if not isinstance(source_2d, (str, os.PathLike)):
        raise TypeError(f"source_2d must be a keras.Model, 'imagenet' or a path; got {type(source_2d).__name__}.")
    path = os.fspath(source_2d)
    if not os.path.exists(path):
        raise FileNotFoundError(f"2D source file not found: {path}")
    lower = path.lower()
    if lower.endswith(".keras"):
        return keras.saving.load_model(path, compile=False)
    if lower.endswith((".h5", ".hdf5")) and not lower.endswith(".weights.h5"):
        import h5py

        with h5py.File(path, "r") as f:
            whole_model = "model_config" in f.attrs
        if whole_model:
            return keras.saving.load_model(path, compile=False)
    elif not lower.endswith(".weights.h5"):
        raise ValueError(f"{path}: expected a .keras, .weights.h5 or legacy .h5 file.")
    if spec is None:
        raise ValueError(
            f"{path} holds weights only (stored by position); pass the 2D architecture that saved it, "
            f"e.g. source='ResNet50' (known: {', '.join(SOURCES)})."
        )
    errors = []
    for top in (bool(include_top), not include_top):
        model = spec.build(weights=None, include_top=top)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Skipping nested container")
                model.load_weights(path)
            return model
        except Exception as error:  # noqa: BLE001 - collected and re-raised below
            errors.append(f"include_top={top}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
    raise InflationError(
        f"{path} could not be loaded into {spec.builder}(weights=None): the file does not hold that "
        "architecture's weights. If it was saved from another model, pass source=<its name> "
        f"(known: {', '.join(SOURCES)}).\n  " + "\n  ".join(errors)
    )


# ---------------------------------------------------------------------- inflate


def _limited(items: Sequence[str], limit: int = 15) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return "    " + shown + more


def _spatial_stride_3d(graph: _Graph, conv: STSConv3D) -> tuple[int, int]:
    """The conv's spatial stride times any Subsample directly before it."""
    from tfsts.models.blocks import Subsample

    sh, sw = conv.strides[1], conv.strides[2]
    layer = conv
    while True:
        producers = graph.producers(layer)
        if len(producers) != 1 or not isinstance(producers[0], Subsample):
            return sh, sw
        layer = producers[0]
        sh, sw = sh * layer.strides[1], sw * layer.strides[2]


def _check_2d_padding(graph: _Graph, conv) -> str | None:
    """None if the 2D conv pads symmetrically ((k-1)/2 each side), as the 3D convs do."""
    kh, kw = conv.kernel_size
    if (kh, kw) == (1, 1):
        return None
    if conv.padding == "same":
        if tuple(conv.strides) == (1, 1):
            return None
        return f"padding 'same' with stride {conv.strides} pads at the end only"
    producers = graph.producers(conv)
    want = ((kh - 1) // 2, (kw - 1) // 2)
    if len(producers) == 1 and isinstance(producers[0], keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = producers[0].padding
        if (top, left) == (bottom, right) == want:
            return None
        return f"zero padding {producers[0].padding} is not symmetric (k-1)/2 = {want}"
    return f"'valid' {kh}x{kw} conv without symmetric zero padding {want} before it"


def inflate(
    model_3d: keras.Model,
    source_2d,
    inflation: str = "mean",
    copy_head: bool = False,
    *,
    source: str | None = None,
    lateral: str = "zeros",
    check_normalization: bool = True,
) -> InflationReport:
    """Initialise `model_3d` in place from a 2D keras.applications network.

    source_2d: a keras.Model, "imagenet", or a `.keras` / `.weights.h5` / legacy `.h5`
        path (see `load_source`).
    inflation: "mean", "center" or "sts_center" (module docstring).
    copy_head: also copy the 2D classifier ("predictions") into the 3D model's Dense
        head; needs the same class count (1000). Otherwise the head stays at its
        initialiser.
    source: the 2D architecture name (SOURCES), for "imagenet" and weights-only files;
        by default the one the table gives for `model_3d.name`.
    lateral: two-pathway models (SlowFast): "zeros" zeroes the slow convs' input
        channels that carry the fast pathway's lateral features (as mmaction2's
        inflation does), so that the inflated slow pathway computes exactly the 2D
        features whatever the fast pathway does; "keep" leaves them at the initialiser.
    check_normalization: require an `input_normalization` layer whose mode is the
        source's (default). False skips the check (the caller normalises input).

    Returns the InflationReport; raises InflationError listing every unused or
    mismatched weight, and NoImageCounterpartError for models with no 2D counterpart.
    """
    if inflation not in INFLATION_MODES:
        raise ValueError(f"inflation must be one of {INFLATION_MODES}; got {inflation!r}.")
    if lateral not in LATERAL_MODES:
        raise ValueError(f"lateral must be one of {LATERAL_MODES}; got {lateral!r}.")
    reason = _no_counterpart_reason(model_3d.name)
    if reason is not None:
        raise no_counterpart_error(model_3d.name, reason)
    target_spec = TARGETS.get(model_3d.name)
    if source is None and target_spec is not None:
        source = target_spec.source
    if isinstance(source_2d, str) and source_2d == "imagenet" and source is None:
        raise ValueError(f"{model_3d.name}: pass source=<keras.applications name> to inflate from 'imagenet'.")
    src_model = load_source(source_2d, source, include_top=copy_head)
    spec = _guess_source(src_model) or (SOURCES.get(source) if source else None)
    src_name = spec.name if spec else src_model.name
    preprocessing = spec.preprocessing if spec else None

    # ---- input normalisation contract
    mode = model_normalization(model_3d)
    if check_normalization:
        if preprocessing is None:
            raise InflationError(
                f"Cannot tell the input normalisation of the 2D source {src_model.name!r} (not a known "
                f"keras.applications model: {', '.join(s.keras_name for s in SOURCES.values())}); pass "
                "source=<name> or check_normalization=False."
            )
        if mode is None:
            raise InflationError(
                f"{model_3d.name} has no '{NORMALIZATION_LAYER}' layer, but {src_name}'s weights expect "
                f"{preprocessing!r} input normalisation. Build it with build_model(..., weights=...), or wrap it "
                f"with tfsts.models.inflation.with_input_normalization(model, {preprocessing!r}), or pass "
                "check_normalization=False if your pipeline normalises the input."
            )
        if mode != preprocessing:
            raise InflationError(
                f"{model_3d.name} normalises its input with mode {mode!r}, but {src_name}'s weights expect "
                f"{preprocessing!r} (keras.applications preprocess_input). Rebuild with "
                f"InputNormalization({preprocessing!r})."
            )

    report = InflationReport(
        source=src_name, target=model_3d.name, inflation=inflation, preprocessing=preprocessing or mode or "unknown"
    )
    src_layers = _weighted_layers(src_model)
    tgt_layers = _weighted_layers(model_3d)
    src_graph, tgt_graph = _Graph(src_model), _Graph(model_3d)

    # ---- how the 3D names relate to the 2D ones
    prefix = target_spec.prefix if target_spec is not None else ""
    first = next(iter(src_layers), None)
    if target_spec is None and first is not None and first not in tgt_layers and f"slow_{first}" in tgt_layers:
        prefix = "slow_"
    two_pathway = prefix == "slow_"

    unused: list[str] = []
    mismatched: list[str] = []
    plan: list[tuple[Any, np.ndarray]] = []
    matched_targets: set[str] = set()
    folded_bias: dict[str, tuple[np.ndarray, str]] = {}  # 3D BN name -> (bias, source var name)
    eps_notes = 0
    stride_problem = False
    src_head: list[keras.layers.Layer] = []

    # ---- convs first (bias folds feed the BNs)
    for name, layer in src_layers.items():
        if isinstance(layer, keras.layers.Dense):
            src_head.append(layer)
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization)):
            mismatched.append(f"{name}: source layer type {type(layer).__name__} is not supported (Conv2D, BatchNormalization, Dense)")
            continue
        report.source_backbone_weights += [f"{name}/{v.name}" for v in layer.weights]
        target = tgt_layers.get(prefix + name)
        if target is None:
            unused.append(f"{name} ({type(layer).__name__}, {', '.join(str(_shape(v)) for v in layer.weights)}): no 3D layer {prefix + name!r}")
            continue
        matched_targets.add(target.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            if not isinstance(target, keras.layers.BatchNormalization):
                mismatched.append(f"{name}: 2D BatchNormalization vs 3D {type(target).__name__}")
            continue
        if not isinstance(target, STSConv3D):
            mismatched.append(f"{name}: 2D Conv2D vs 3D {type(target).__name__}")
            continue
        k2 = np.asarray(layer.kernel)
        k3 = target.kernel
        kh, kw, cin2, cout2 = k2.shape
        kt, kh3, kw3, cin3, cout3 = _shape(k3)
        problem = None
        if (kh3, kw3, cout3) != (kh, kw, cout2) or target.groups != 1 or cin3 < cin2 or (cin3 > cin2 and not two_pathway):
            problem = f"kernel 2D {tuple(k2.shape)} vs 3D {_shape(k3)}" + (f" (groups={target.groups})" if target.groups != 1 else "")
        stride2 = tuple(layer.strides)
        stride3 = _spatial_stride_3d(tgt_graph, target)
        if stride3 != stride2:
            problem = (problem + "; " if problem else "") + f"spatial stride 2D {stride2} vs 3D {stride3}"
            stride_problem = True
        padding = _check_2d_padding(src_graph, layer)
        if padding:
            problem = (problem + "; " if problem else "") + f"2D {padding}"
        if problem:
            mismatched.append(f"{name} -> {target.name}: {problem}")
            continue
        value, how = inflate_kernel(k2, kt, inflation)
        if cin3 > cin2:
            full = np.zeros(_shape(k3), dtype=np.float32) if lateral == "zeros" else np.array(k3, dtype=np.float32)
            full[..., :cin2, :] = value
            value = full
            how += f"; into input channels [0:{cin2}]"
            report.kept.append(
                Kept(
                    f"{target.name}/kernel[..., {cin2}:{cin3}, :]",
                    (kt, kh, kw, cin3 - cin2, cout3),
                    "lateral input from the fast pathway: no 2D counterpart; "
                    + ("zeroed (as mmaction2's SlowFast inflation)" if lateral == "zeros" else "kept at its initialiser"),
                )
            )
        plan.append((k3, value))
        report.transfers.append(Transfer(f"{name}/kernel", f"{target.name}/kernel", tuple(k2.shape), _shape(k3), how))
        b2 = np.asarray(layer.bias) if layer.use_bias else None
        b3 = target.bias
        if b2 is not None and b3 is not None:
            plan.append((b3, b2.astype(np.float32)))
            report.transfers.append(Transfer(f"{name}/bias", f"{target.name}/bias", b2.shape, _shape(b3), "copied"))
        elif b2 is not None:
            bn3 = tgt_graph.single_consumer(target)
            bn2 = src_graph.single_consumer(layer)
            if (
                isinstance(bn3, keras.layers.BatchNormalization)
                and isinstance(bn2, keras.layers.BatchNormalization)
                and bn3.name == prefix + bn2.name
            ):
                folded_bias[bn3.name] = (b2, f"{name}/bias")
            else:
                mismatched.append(
                    f"{name} -> {target.name}: the 2D conv has a bias, the 3D conv has none and no BatchNormalization "
                    "directly after it to fold it into (build with conv_bias=True)"
                )
        elif b3 is not None:
            plan.append((b3, np.zeros(_shape(b3), np.float32)))
            report.kept.append(Kept(f"{target.name}/bias", _shape(b3), "the 2D conv has no bias: set to zero"))

    # ---- BatchNorms
    for name, layer in src_layers.items():
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        target = tgt_layers.get(prefix + name)
        if not isinstance(target, keras.layers.BatchNormalization):
            continue
        v2, v3 = _bn_vars(layer), _bn_vars(target)
        shapes2 = {k: _shape(v) for k, v in v2.items() if v is not None}
        shapes3 = {k: _shape(v) for k, v in v3.items() if v is not None}
        if shapes2 != shapes3:
            mismatched.append(f"{name} -> {target.name}: BatchNormalization weights 2D {shapes2} vs 3D {shapes3}")
            continue
        eps2, eps3 = float(layer.epsilon), float(target.epsilon)
        for key, var3 in v3.items():
            if var3 is None:
                continue
            value = np.asarray(v2[key], dtype=np.float64)
            how = "copied"
            if key == "moving_mean" and target.name in folded_bias:
                bias, bias_name = folded_bias.pop(target.name)
                value = value - bias
                report.transfers.append(
                    Transfer(bias_name, f"{target.name}/moving_mean", bias.shape, _shape(var3),
                             "folded: the 3D conv has no bias, BN(conv + b) = BN'(conv) with moving_mean - b")
                )
                how = "copied, minus the folded conv bias"
            if key == "moving_variance" and eps2 != eps3:
                value = value + (eps2 - eps3)
                if np.any(value < 0):
                    mismatched.append(f"{name}: BN epsilon 2D {eps2} vs 3D {eps3} cannot be compensated (variance < 0)")
                how = f"copied + (epsilon 2D {eps2:g} - 3D {eps3:g}), so var + eps is unchanged"
                eps_notes += 1
            plan.append((var3, value.astype(np.float32)))
            report.transfers.append(Transfer(f"{name}/{key}", f"{target.name}/{key}", shapes2[key], shapes3[key], how))
    for bn_name, (_, bias_name) in folded_bias.items():
        mismatched.append(f"{bias_name}: could not be folded into {bn_name} (no matching BN)")
    if eps_notes:
        report.notes.append(
            f"BN epsilon differs ({eps_notes} BNs): folded exactly into moving_variance for inference; "
            "build the 3D model with the source's bn_epsilon (layout_options) to match training-mode BN too"
        )
    if any("folded" in t.how for t in report.transfers):
        report.notes.append("conv biases folded into the following BN's moving_mean (exact for inference)")

    # ---- the head
    tgt_heads = [l for l in tgt_layers.values() if isinstance(l, keras.layers.Dense)]
    if copy_head:
        if len(src_head) != 1:
            mismatched.append(
                f"copy_head=True but the 2D source has {len(src_head)} Dense layers (load it with include_top=True)"
            )
        else:
            head2 = src_head[0]
            k2, b2 = np.asarray(head2.kernel), np.asarray(head2.bias)
            fits = [l for l in tgt_heads if l.units == head2.units]
            if len(fits) != 1:
                mismatched.append(
                    f"copy_head=True: the 2D head {head2.name!r} has {head2.units} classes; the 3D model's heads "
                    f"{[(l.name, l.units) for l in tgt_heads]} need exactly one with {head2.units} classes"
                )
            else:
                head3 = fits[0]
                kin3 = _shape(head3.kernel)[0]
                if kin3 == k2.shape[0] or (two_pathway and kin3 > k2.shape[0]):
                    value = np.zeros(_shape(head3.kernel), np.float32)
                    value[: k2.shape[0]] = k2
                    plan += [(head3.kernel, value), (head3.bias, b2.astype(np.float32))]
                    matched_targets.add(head3.name)
                    report.transfers += [
                        Transfer(f"{head2.name}/kernel", f"{head3.name}/kernel", k2.shape, _shape(head3.kernel),
                                 "copied" + (f" into rows [0:{k2.shape[0]}]" if kin3 > k2.shape[0] else "")),
                        Transfer(f"{head2.name}/bias", f"{head3.name}/bias", b2.shape, _shape(head3.bias), "copied"),
                    ]
                    if kin3 > k2.shape[0]:
                        report.kept.append(Kept(f"{head3.name}/kernel[{k2.shape[0]}:{kin3}]", (kin3 - k2.shape[0], head3.units),
                                                "head rows of the fast pathway's features: zeroed"))
                    if getattr(head2, "activation", None) is keras.activations.softmax:
                        report.notes.append(f"the 2D head applies softmax; {head3.name} outputs the same logits before it")
                else:
                    mismatched.append(f"copy_head=True: head kernel 2D {k2.shape} vs 3D {_shape(head3.kernel)}")
    else:
        for head2 in src_head:
            for v in head2.weights:
                report.source_unused.append((f"{head2.name}/{v.name}", "classification head: not copied (copy_head=False)"))

    # ---- 3D weights that no source weight reaches
    unmatched: list[str] = []
    for name, layer in tgt_layers.items():
        if name in matched_targets:
            continue
        if isinstance(layer, keras.layers.Dense):
            why = "classification head: not copied (copy_head=False)" if not copy_head else "head without a 2D counterpart"
            report.kept += [Kept(f"{name}/{v.name}", _shape(v), why + "; stays at its initialiser") for v in layer.weights]
        elif two_pathway and name.startswith("fast_"):
            report.kept += [Kept(f"{name}/{v.name}", _shape(v), "SlowFast fast pathway: no 2D counterpart (1/beta of the channels, temporal convs in every stage); stays at its initialiser, see docs/inflation.md for image pre-training of the 3D net")
                            for v in layer.weights]
        elif two_pathway and name.startswith("fuse"):
            report.kept += [Kept(f"{name}/{v.name}", _shape(v), "fast->slow lateral connection: no 2D counterpart; stays at its initialiser")
                            for v in layer.weights]
        else:
            unmatched.append(f"{name} ({type(layer).__name__}, {', '.join(str(_shape(v)) for v in layer.weights)})")

    if unused or unmatched or mismatched:
        hint = ""
        if spec is not None and target_spec is not None and model_3d.name not in spec.targets:
            hint = (
                f"\n  The source looks like {spec.builder}, which fits {', '.join(spec.targets)}; "
                f"{model_3d.name} takes {SOURCES[target_spec.source].builder}."
            )
        parts = [f"Cannot inflate {model_3d.name} from {src_name} ({src_model.name}):{hint}"]
        if unused:
            parts.append(f"  {len(unused)} source conv/BN layers unused:\n" + _limited(unused))
        if unmatched:
            parts.append(f"  {len(unmatched)} 3D layers with no source weights:\n" + _limited(unmatched))
        if mismatched:
            parts.append(f"  {len(mismatched)} mismatched:\n" + _limited(mismatched))
        if stride_problem:
            parts.append(
                "  The 3D model strides other convs than the source: Keras' ResNet v1 puts a block's stride on "
                "its first 1x1 conv. Build the 3D model in the source's layout (stride_layout='1x1'; "
                "build_model(..., weights=...) does this by itself)."
            )
        raise InflationError("\n".join(parts), unused, unmatched, mismatched)

    sts_temporal = [
        l.name for l in tgt_layers.values()
        if isinstance(l, STSConv3D) and l.sts and l.kernel_size[0] > 1 and l.name in matched_targets
    ]
    if sts_temporal and inflation == "mean":
        report.notes.append(
            f"{len(sts_temporal)} inflated convs run STS: their appearance half applies the temporal taps along the "
            "raster-flattened frame, so 'mean' does not keep the 2D features on a static clip there; 'center' does"
        )
    for var, value in plan:
        var.assign(value)
    if spec is not None and target_spec is not None and model_3d.name not in spec.targets:
        report.notes.append(f"{model_3d.name} is not a listed target of {spec.builder}, but every weight matched")
    return report


__all__ = [
    "INFLATION_MODES",
    "InflationError",
    "InflationReport",
    "Kept",
    "NoImageCounterpartError",
    "SOURCES",
    "SourceSpec",
    "TARGETS",
    "TargetSpec",
    "Transfer",
    "inflate",
    "inflate_kernel",
    "layout_options",
    "load_source",
    "model_normalization",
    "check_weights_argument",
    "no_counterpart_error",
    "source_for",
    "supported_pairs",
    "with_input_normalization",
]
