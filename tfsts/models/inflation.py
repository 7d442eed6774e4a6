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
STS on only "center" keeps the static features; the weights are the same either way).
"sts_center" scales each 3-tap conv's static response by 5/9 before its BN: it is a
fine-tuning initialisation (training-mode BN renormalises), not a feature-preserving one.

Everything is checked, nothing is silently random: each source conv/BN weight must be
used exactly once, each 3D weight must get a source weight or have a stated reason to
stay at its initialiser (the SlowFast fast pathway and lateral connections, the head
unless `copy_head=True`); shapes, spatial strides and padding must match the source's
layout; otherwise `InflationError` lists everything that is unused or mismatched.
Layout details that can be compensated exactly are: a source conv bias where the 3D
conv has none (folded into the next BN's moving mean) and a different BN epsilon
(folded into the moving variance); the report lists each such fold.

`inflate` runs in phases, each a small function testable on its own: resolve the
source (`load_source`), check the input normalisation, match the 2D and 3D layers by
name (`match_layers`), plan each weight (`plan_conv`, `plan_batch_norm`, `plan_head`,
`plan_unmatched_targets`, gathered by `plan_weights` into a `Plan`), check the plan
and list every problem (`check_plan`), assign (`assign`), report (`build_report`).
Nothing is written unless the whole plan is clean.

The input normalisation is part of the weights' contract: every model of
`tfsts.models` starts with a `tfsts.layers.InputNormalization` layer named
`input_normalization`, and one initialised from a 2D source has the source's mode
("caffe" for ResNet v1, "torch" for DenseNet); `build_model(..., weights=...)` sets it,
and `inflate` refuses a model whose normalisation disagrees.

Which model takes which source, with which layout options, and why the others have
none, is on each model's card (`tfsts.models.cards`). Models with no 2D counterpart in
keras.applications (CSN, X3D, R(2+1)D, Video Swin, ResNet-10/18/34/200, wide ResNet,
ResNeXt, pre-activation ResNet) raise `NoImageCounterpartError`: they are initialised
from images by pre-training the 3D network itself on images (one-frame clips; see
docs/inflation.md).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from tfsts.layers.normalization import NORMALIZATION_LAYER
from tfsts.layers.sts_conv import STSConv3D
from tfsts.models.cards import CARDS, SOURCES, ModelCard, SourceSpec, no_counterpart_reason, supported_pairs
from tfsts.models.graph import LayerGraph, leaf_layers, model_normalization, with_input_normalization
from tfsts.models.inflation_report import InflationReport, Kept, Transfer

INFLATION_MODES = ("mean", "center", "sts_center")
LATERAL_MODES = ("zeros", "keep")
DOCS = "docs/inflation.md"

# Derived views of the model cards, for callers of the former tables.
TARGETS: dict[str, ModelCard] = {name: card for name, card in CARDS.items() if card.source is not None}
NO_COUNTERPART: dict[str, str] = {name: card.no_counterpart for name, card in CARDS.items() if card.source is None}
_no_counterpart_reason = no_counterpart_reason


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


_IMAGE_PRETRAINING = (
    "Initialise it from images by pre-training the 3D network itself on ImageNet with one-frame "
    f"clips (T = 1), as Li et al. (ECCV 2022) do ({DOCS}, 'Models with no 2D counterpart'; "
    "a later tfsts issue), or train it from scratch (weights=None)."
)


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}; got {value!r}.")


def no_counterpart_error(name: str, reason: str | None = None) -> NoImageCounterpartError:
    reason = reason or no_counterpart_reason(name) or "it has no model card with a 2D source"
    return NoImageCounterpartError(
        f"{name} cannot be inflated from a 2D ImageNet network: {reason}. {_IMAGE_PRETRAINING} "
        f"Models with a 2D source: {', '.join(TARGETS)}."
    )


def source_for(name: str, overrides: Mapping[str, Any] | None = None, source: str | None = None) -> SourceSpec:
    """The 2D source for tfsts model `name` (`source` overrides the card's choice; a
    `depth` override picks the source family's sibling of that depth, e.g. ResNet101)."""
    if source is not None:
        if source not in SOURCES:
            raise ValueError(f"Unknown 2D source {source!r}; known: {', '.join(SOURCES)}.")
        return SOURCES[source]
    if name not in TARGETS:
        raise no_counterpart_error(name)
    spec = SOURCES[TARGETS[name].source]
    depth = (overrides or {}).get("depth")
    siblings = [s for s in SOURCES.values() if s.family == spec.family and s.depth == depth]
    return siblings[0] if siblings else spec


def layout_options(name: str, builder=None) -> dict[str, Any]:
    """The 3D builder options that reproduce the 2D source's layout for model `name`,
    restricted to those `builder` accepts (a missing BN-epsilon option is compensated
    exactly by `inflate`)."""
    if name not in TARGETS:
        raise no_counterpart_error(name)
    options = dict(TARGETS[name].layout)
    if builder is not None:
        params = inspect.signature(builder).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            options = {k: v for k, v in options.items() if k in params}
    return options


# ----------------------------------------------------------------- kernel inflation


def inflate_kernel(kernel_2d: np.ndarray, temporal_size: int, mode: str) -> tuple[np.ndarray, str]:
    """A 2D kernel (kh, kw, cin, cout) as a 3D one (kt, kh, kw, cin, cout); returns it
    and a description of what was done."""
    _check_choice("inflation", mode, INFLATION_MODES)
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


def _load_weights_only(path: str, spec: SourceSpec | None, include_top: bool | None) -> keras.Model:
    """A `.weights.h5` / legacy weights `.h5` file into `spec`'s builder (stored by
    position), trying both head layouts."""
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
    return _load_weights_only(path, spec, include_top)


def check_input_normalization(model_3d: keras.Model, src_model: keras.Model, spec: SourceSpec | None) -> None:
    """Raises InflationError unless `model_3d` normalises its input as the source's
    ImageNet weights expect."""
    if spec is None:
        raise InflationError(
            f"Cannot tell the input normalisation of the 2D source {src_model.name!r} (not a known "
            f"keras.applications model: {', '.join(s.keras_name for s in SOURCES.values())}); pass "
            "source=<name> or check_normalization=False."
        )
    mode, expected = model_normalization(model_3d), spec.preprocessing
    if mode is None:
        raise InflationError(
            f"{model_3d.name} has no '{NORMALIZATION_LAYER}' layer, but {spec.name}'s weights expect "
            f"{expected!r} input normalisation. Build it with build_model(..., weights=...), or wrap it "
            f"with tfsts.models.inflation.with_input_normalization(model, {expected!r}), or pass "
            "check_normalization=False if your pipeline normalises the input."
        )
    if mode != expected:
        raise InflationError(
            f"{model_3d.name} normalises its input with mode {mode!r}, but {spec.name}'s weights expect "
            f"{expected!r} (keras.applications preprocess_input). Rebuild with build_model(..., weights=...) "
            f"or tfsts.models.inflation.with_input_normalization(model, {expected!r})."
        )


# ------------------------------------------------------------ phase: match layers


def weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """The layers with weights, by name (names must be unique: they are the keys)."""
    layers = {}
    for layer in leaf_layers(model):
        if layer.weights:
            if layer.name in layers:
                raise InflationError(f"{model.name}: two weighted layers are named {layer.name!r}; names must be unique.")
            layers[layer.name] = layer
    return layers


def _shape(v) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def _describe(layer) -> str:
    return f"{layer.name} ({type(layer).__name__}, {', '.join(str(_shape(v)) for v in layer.weights)})"


@dataclasses.dataclass
class Matching:
    """2D layers paired with the 3D layers of the same (prefixed) name.

    convs / batch_norms: (2D, 3D) pairs of the right types; heads: the 2D Dense
    layers; source_weights: every 2D conv/BN weight ("layer/variable"); unused and
    mismatched: 2D layers with no 3D twin, or a twin of another type; matched_targets:
    the names of the 3D layers some 2D layer reached.
    """

    prefix: str
    convs: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    batch_norms: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    heads: list[Any] = dataclasses.field(default_factory=list)
    source_weights: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[str] = dataclasses.field(default_factory=list)
    matched_targets: set[str] = dataclasses.field(default_factory=set)


def name_prefix(card: ModelCard | None, src_layers: Mapping[str, Any], tgt_layers: Mapping[str, Any]) -> str:
    """What the 3D model prepends to the source's layer names: the card's, or "slow_"
    when an unlisted model's names say so (a two-pathway model)."""
    if card is not None:
        return card.prefix
    first = next(iter(src_layers), None)
    if first is not None and first not in tgt_layers and f"slow_{first}" in tgt_layers:
        return "slow_"
    return ""


def match_layers(src_layers: Mapping[str, Any], tgt_layers: Mapping[str, Any], prefix: str = "") -> Matching:
    """Pairs each 2D conv / BN with the 3D layer named `prefix + name`."""
    matching = Matching(prefix)
    for name, layer in src_layers.items():
        if isinstance(layer, keras.layers.Dense):
            matching.heads.append(layer)
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization)):
            matching.mismatched.append(
                f"{name}: source layer type {type(layer).__name__} is not supported (Conv2D, BatchNormalization, Dense)"
            )
            continue
        matching.source_weights += [f"{name}/{v.name}" for v in layer.weights]
        target = tgt_layers.get(prefix + name)
        if target is None:
            matching.unused.append(f"{_describe(layer)}: no 3D layer {prefix + name!r}")
            continue
        matching.matched_targets.add(target.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            if isinstance(target, keras.layers.BatchNormalization):
                matching.batch_norms.append((layer, target))
            else:
                matching.mismatched.append(f"{name}: 2D BatchNormalization vs 3D {type(target).__name__}")
        elif isinstance(target, STSConv3D):
            matching.convs.append((layer, target))
        else:
            matching.mismatched.append(f"{name}: 2D Conv2D vs 3D {type(target).__name__}")
    return matching


# ------------------------------------------------------------- phase: plan weights


@dataclasses.dataclass
class Plan:
    """What inflation would write and every problem found, built by the plan_*
    functions, merged, checked by `check_plan` and only then assigned.

    writes: (3D variable, value) pairs; transfers / kept / source_unused / notes: the
    report's entries; unused_source / unmatched_target / mismatched: the problems
    `InflationError` lists; folded_bias: 3D BN name -> (2D conv bias, its name), from a
    conv plan to the BN plan that takes it; stride_problem: a spatial stride differs.
    """

    writes: list[tuple[Any, np.ndarray]] = dataclasses.field(default_factory=list)
    transfers: list[Transfer] = dataclasses.field(default_factory=list)
    kept: list[Kept] = dataclasses.field(default_factory=list)
    source_unused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    unused_source: list[str] = dataclasses.field(default_factory=list)
    unmatched_target: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[str] = dataclasses.field(default_factory=list)
    folded_bias: dict[str, tuple[np.ndarray, str]] = dataclasses.field(default_factory=dict)
    matched_targets: set[str] = dataclasses.field(default_factory=set)
    stride_problem: bool = False

    def merge(self, *others: "Plan") -> "Plan":
        for other in others:
            for field in dataclasses.fields(self):
                mine, theirs = getattr(self, field.name), getattr(other, field.name)
                if isinstance(mine, list):
                    mine.extend(theirs)
                elif isinstance(mine, (dict, set)):
                    mine.update(theirs)
                else:
                    setattr(self, field.name, mine or theirs)
        return self

    @property
    def has_problems(self) -> bool:
        return bool(self.unused_source or self.unmatched_target or self.mismatched)


def spatial_stride_3d(graph: LayerGraph, conv: STSConv3D) -> tuple[int, int]:
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


def padding_problem_2d(graph: LayerGraph, conv) -> str | None:
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


def conv_problem(conv2d, conv3d, stride_3d: tuple[int, int], padding_problem: str | None, two_pathway: bool) -> str | None:
    """Why the 2D conv's kernel cannot go into the 3D conv (None if it can)."""
    kh, kw, cin2, cout2 = _shape(conv2d.kernel)
    _, kh3, kw3, cin3, cout3 = _shape(conv3d.kernel)
    problems = []
    if (kh3, kw3, cout3) != (kh, kw, cout2) or conv3d.groups != 1 or cin3 < cin2 or (cin3 > cin2 and not two_pathway):
        groups = f" (groups={conv3d.groups})" if conv3d.groups != 1 else ""
        problems.append(f"kernel 2D {_shape(conv2d.kernel)} vs 3D {_shape(conv3d.kernel)}{groups}")
    if tuple(stride_3d) != tuple(conv2d.strides):
        problems.append(f"spatial stride 2D {tuple(conv2d.strides)} vs 3D {tuple(stride_3d)}")
    if padding_problem:
        problems.append(f"2D {padding_problem}")
    return "; ".join(problems) or None


def _lateral_kernel(conv3d, value: np.ndarray, lateral: str) -> tuple[np.ndarray, Kept]:
    """A two-pathway conv's kernel: the 2D kernel in the slow input channels, the fast
    pathway's lateral input channels zeroed or kept."""
    shape3 = _shape(conv3d.kernel)
    cin2 = value.shape[-2]
    full = np.zeros(shape3, np.float32) if lateral == "zeros" else np.array(conv3d.kernel, dtype=np.float32)
    full[..., :cin2, :] = value
    kt, kh, kw, cin3, cout3 = shape3
    kept = Kept(
        f"{conv3d.name}/kernel[..., {cin2}:{cin3}, :]",
        (kt, kh, kw, cin3 - cin2, cout3),
        "lateral input from the fast pathway: no 2D counterpart; "
        + ("zeroed (as mmaction2's SlowFast inflation)" if lateral == "zeros" else "kept at its initialiser"),
    )
    return full, kept


def plan_conv(
    conv2d,
    conv3d,
    *,
    inflation: str = "mean",
    lateral: str = "zeros",
    two_pathway: bool = False,
    stride_3d: tuple[int, int] | None = None,
    padding_problem: str | None = None,
    fold_bias_into: str | None = None,
) -> Plan:
    """The writes for one 2D conv -> 3D conv: the inflated kernel, and the bias copied,
    zeroed, or (2D bias, no 3D bias) handed to the BN `fold_bias_into` via `folded_bias`.

    stride_3d: the 3D conv's effective spatial stride (default: its own); padding_problem:
    what is wrong with the 2D conv's padding, if anything (`padding_problem_2d`).
    """
    plan = Plan()
    stride_3d = stride_3d or tuple(conv3d.strides[1:])
    problem = conv_problem(conv2d, conv3d, stride_3d, padding_problem, two_pathway)
    if problem:
        plan.mismatched.append(f"{conv2d.name} -> {conv3d.name}: {problem}")
        plan.stride_problem = "spatial stride" in problem
        return plan
    k2, k3 = np.asarray(conv2d.kernel), conv3d.kernel
    value, how = inflate_kernel(k2, _shape(k3)[0], inflation)
    if _shape(k3)[-2] > k2.shape[-2]:
        value, kept = _lateral_kernel(conv3d, value, lateral)
        how += f"; into input channels [0:{k2.shape[-2]}]"
        plan.kept.append(kept)
    plan.writes.append((k3, value))
    plan.transfers.append(Transfer(f"{conv2d.name}/kernel", f"{conv3d.name}/kernel", tuple(k2.shape), _shape(k3), how))
    return plan.merge(_plan_conv_bias(conv2d, conv3d, fold_bias_into))


def _plan_conv_bias(conv2d, conv3d, fold_bias_into: str | None) -> Plan:
    plan = Plan()
    b2 = np.asarray(conv2d.bias) if conv2d.use_bias else None
    b3 = conv3d.bias
    if b2 is not None and b3 is not None:
        plan.writes.append((b3, b2.astype(np.float32)))
        plan.transfers.append(Transfer(f"{conv2d.name}/bias", f"{conv3d.name}/bias", b2.shape, _shape(b3), "copied"))
    elif b2 is not None and fold_bias_into is not None:
        plan.folded_bias[fold_bias_into] = (b2, f"{conv2d.name}/bias")
    elif b2 is not None:
        plan.mismatched.append(
            f"{conv2d.name} -> {conv3d.name}: the 2D conv has a bias, the 3D conv has none and no BatchNormalization "
            "directly after it to fold it into (build with conv_bias=True)"
        )
    elif b3 is not None:
        plan.writes.append((b3, np.zeros(_shape(b3), np.float32)))
        plan.kept.append(Kept(f"{conv3d.name}/bias", _shape(b3), "the 2D conv has no bias: set to zero"))
    return plan


def _bn_vars(layer) -> dict[str, Any]:
    variables = {v.name: v for v in layer.weights}
    return {n: variables.get(n) for n in ("gamma", "beta", "moving_mean", "moving_variance")}


def plan_batch_norm(bn2, bn3, folded_bias: tuple[np.ndarray, str] | None = None) -> Plan:
    """The writes for one 2D BN -> 3D BN: copied, the moving mean minus a folded conv
    bias (BN(conv + b) = BN'(conv) with mean - b), the moving variance plus the epsilon
    difference (var + eps unchanged)."""
    plan = Plan()
    v2, v3 = _bn_vars(bn2), _bn_vars(bn3)
    shapes2 = {k: _shape(v) for k, v in v2.items() if v is not None}
    shapes3 = {k: _shape(v) for k, v in v3.items() if v is not None}
    if shapes2 != shapes3:
        plan.mismatched.append(f"{bn2.name} -> {bn3.name}: BatchNormalization weights 2D {shapes2} vs 3D {shapes3}")
        return plan
    eps2, eps3 = float(bn2.epsilon), float(bn3.epsilon)
    for key, var3 in v3.items():
        if var3 is None:
            continue
        value = np.asarray(v2[key], dtype=np.float64)
        how = "copied"
        if key == "moving_mean" and folded_bias is not None:
            bias, bias_name = folded_bias
            value = value - bias
            plan.transfers.append(Transfer(
                bias_name, f"{bn3.name}/moving_mean", bias.shape, _shape(var3),
                "folded: the 3D conv has no bias, BN(conv + b) = BN'(conv) with moving_mean - b",
            ))
            how = "copied, minus the folded conv bias"
        if key == "moving_variance" and eps2 != eps3:
            value = value + (eps2 - eps3)
            if np.any(value < 0):
                plan.mismatched.append(f"{bn2.name}: BN epsilon 2D {eps2} vs 3D {eps3} cannot be compensated (variance < 0)")
            how = f"copied + (epsilon 2D {eps2:g} - 3D {eps3:g}), so var + eps is unchanged"
        plan.writes.append((var3, value.astype(np.float32)))
        plan.transfers.append(Transfer(f"{bn2.name}/{key}", f"{bn3.name}/{key}", shapes2[key], shapes3[key], how))
    return plan


def plan_head(src_heads: Sequence[Any], tgt_heads: Sequence[Any], copy_head: bool, two_pathway: bool = False) -> Plan:
    """The 2D classifier into the one 3D Dense head with as many classes (copy_head),
    or listed as not used."""
    plan = Plan()
    if not copy_head:
        for head2 in src_heads:
            plan.source_unused += [
                (f"{head2.name}/{v.name}", "classification head: not copied (copy_head=False)") for v in head2.weights
            ]
        return plan
    if len(src_heads) != 1:
        plan.mismatched.append(f"copy_head=True but the 2D source has {len(src_heads)} Dense layers (load it with include_top=True)")
        return plan
    head2 = src_heads[0]
    fits = [layer for layer in tgt_heads if layer.units == head2.units]
    if len(fits) != 1:
        plan.mismatched.append(
            f"copy_head=True: the 2D head {head2.name!r} has {head2.units} classes; the 3D model's heads "
            f"{[(layer.name, layer.units) for layer in tgt_heads]} need exactly one with {head2.units} classes"
        )
        return plan
    head3 = fits[0]
    k2, b2 = np.asarray(head2.kernel), np.asarray(head2.bias)
    rows2, rows3 = k2.shape[0], _shape(head3.kernel)[0]
    if not (rows3 == rows2 or (two_pathway and rows3 > rows2)):
        plan.mismatched.append(f"copy_head=True: head kernel 2D {k2.shape} vs 3D {_shape(head3.kernel)}")
        return plan
    value = np.zeros(_shape(head3.kernel), np.float32)
    value[:rows2] = k2
    plan.writes += [(head3.kernel, value), (head3.bias, b2.astype(np.float32))]
    plan.matched_targets.add(head3.name)
    into = f" into rows [0:{rows2}]" if rows3 > rows2 else ""
    plan.transfers += [
        Transfer(f"{head2.name}/kernel", f"{head3.name}/kernel", k2.shape, _shape(head3.kernel), "copied" + into),
        Transfer(f"{head2.name}/bias", f"{head3.name}/bias", b2.shape, _shape(head3.bias), "copied"),
    ]
    if rows3 > rows2:
        plan.kept.append(Kept(f"{head3.name}/kernel[{rows2}:{rows3}]", (rows3 - rows2, head3.units),
                              "head rows of the fast pathway's features: zeroed"))
    if getattr(head2, "activation", None) is keras.activations.softmax:
        plan.notes.append(f"the 2D head applies softmax; {head3.name} outputs the same logits before it")
    return plan


_FAST_PATHWAY = (
    "SlowFast fast pathway: no 2D counterpart (1/beta of the channels, temporal convs in every stage); "
    f"stays at its initialiser, see {DOCS} for image pre-training of the 3D net"
)
_LATERAL = "fast->slow lateral connection: no 2D counterpart; stays at its initialiser"


def plan_unmatched_targets(tgt_layers: Mapping[str, Any], matched: set[str], copy_head: bool, two_pathway: bool) -> Plan:
    """Every 3D weight no 2D weight reached: kept with its reason (head, SlowFast fast
    pathway and laterals), or listed as unmatched."""
    plan = Plan()
    for name, layer in tgt_layers.items():
        if name in matched:
            continue
        if isinstance(layer, keras.layers.Dense):
            why = "classification head: not copied (copy_head=False)" if not copy_head else "head without a 2D counterpart"
            reason = why + "; stays at its initialiser"
        elif two_pathway and name.startswith("fast_"):
            reason = _FAST_PATHWAY
        elif two_pathway and name.startswith("fuse"):
            reason = _LATERAL
        else:
            plan.unmatched_target.append(_describe(layer))
            continue
        plan.kept += [Kept(f"{name}/{v.name}", _shape(v), reason) for v in layer.weights]
    return plan


def _bias_fold_target(src_graph: LayerGraph, tgt_graph: LayerGraph, conv2d, conv3d, prefix: str) -> str | None:
    """The 3D BN a 2D conv bias can fold into: the conv's only consumer, twin of the 2D one's."""
    bn3, bn2 = tgt_graph.single_consumer(conv3d), src_graph.single_consumer(conv2d)
    if isinstance(bn3, keras.layers.BatchNormalization) and isinstance(bn2, keras.layers.BatchNormalization):
        if bn3.name == prefix + bn2.name:
            return bn3.name
    return None


def plan_weights(
    matching: Matching, src_model: keras.Model, model_3d: keras.Model, *, inflation: str, lateral: str, copy_head: bool
) -> Plan:
    """Every planned write and problem for one source and target (convs first: their
    bias folds feed the BNs)."""
    src_graph, tgt_graph = LayerGraph(src_model), LayerGraph(model_3d)
    two_pathway = matching.prefix == "slow_"
    plan = Plan(unused_source=list(matching.unused), mismatched=list(matching.mismatched),
                matched_targets=set(matching.matched_targets))
    for conv2d, conv3d in matching.convs:
        plan.merge(plan_conv(
            conv2d, conv3d, inflation=inflation, lateral=lateral, two_pathway=two_pathway,
            stride_3d=spatial_stride_3d(tgt_graph, conv3d), padding_problem=padding_problem_2d(src_graph, conv2d),
            fold_bias_into=_bias_fold_target(src_graph, tgt_graph, conv2d, conv3d, matching.prefix),
        ))
    folded = dict(plan.folded_bias)
    for bn2, bn3 in matching.batch_norms:
        plan.merge(plan_batch_norm(bn2, bn3, folded.pop(bn3.name, None)))
    plan.mismatched += [f"{bias}: could not be folded into {bn} (no matching BN)" for bn, (_, bias) in folded.items()]
    tgt_layers = weighted_layers(model_3d)
    tgt_heads = [layer for layer in tgt_layers.values() if isinstance(layer, keras.layers.Dense)]
    plan.merge(plan_head(matching.heads, tgt_heads, copy_head, two_pathway))
    plan.merge(plan_unmatched_targets(tgt_layers, plan.matched_targets, copy_head, two_pathway))
    plan.notes += compensation_notes(plan.transfers)
    return plan


def compensation_notes(transfers: Sequence[Transfer]) -> list[str]:
    """The report's notes on the exact compensations among `transfers`."""
    notes = []
    eps = sum("epsilon" in t.how for t in transfers)
    if eps:
        notes.append(
            f"BN epsilon differs ({eps} BNs): folded exactly into moving_variance for inference; "
            "build the 3D model with the source's bn_epsilon (layout_options) to match training-mode BN too"
        )
    if any(t.how.startswith("folded") for t in transfers):
        notes.append("conv biases folded into the following BN's moving_mean (exact for inference)")
    return notes


# ------------------------------------------------------- phases: check, assign, report


def _limited(items: Sequence[str], limit: int = 15) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return "    " + shown + more


def _layout_hint(card: ModelCard | None) -> str:
    if card is not None and card.layout:
        options = ", ".join(f"{k}={v!r}" for k, v in card.layout.items())
        return f"Build {card.name} in the source's layout ({options}); build_model(..., weights=...) does this by itself."
    return "Build the 3D model in the source's layout (tfsts.models.inflation.layout_options)."


def check_plan(plan: Plan, target: str, source: str, header_hint: str = "", layout_hint: str = "") -> None:
    """Raises InflationError listing every problem of the plan (nothing is written then)."""
    if not plan.has_problems:
        return
    parts = [f"Cannot inflate {target} from {source}:{header_hint}"]
    if plan.unused_source:
        parts.append(f"  {len(plan.unused_source)} source conv/BN layers unused:\n" + _limited(plan.unused_source))
    if plan.unmatched_target:
        parts.append(f"  {len(plan.unmatched_target)} 3D layers with no source weights:\n" + _limited(plan.unmatched_target))
    if plan.mismatched:
        parts.append(f"  {len(plan.mismatched)} mismatched:\n" + _limited(plan.mismatched))
    if plan.stride_problem:
        parts.append(
            "  The 3D model strides other convs than the source: Keras' ResNet v1 puts a block's stride on "
            f"its first 1x1 conv. {layout_hint}"
        )
    parts.append(f"  See {DOCS}, 'Errors you may see'.")
    raise InflationError("\n".join(parts), plan.unused_source, plan.unmatched_target, plan.mismatched)


def assign(plan: Plan) -> None:
    """Writes every planned value (call only after `check_plan`)."""
    for variable, value in plan.writes:
        variable.assign(value)


def build_report(plan: Plan, matching: Matching, model_3d: keras.Model, *, source: str, inflation: str,
                 preprocessing: str) -> InflationReport:
    notes = list(plan.notes)
    sts_temporal = [
        layer.name for layer in leaf_layers(model_3d)
        if isinstance(layer, STSConv3D) and layer.sts and layer.kernel_size[0] > 1 and layer.name in plan.matched_targets
    ]
    if sts_temporal and inflation == "mean":
        notes.append(
            f"{len(sts_temporal)} inflated convs run STS: their appearance half applies the temporal taps along the "
            "raster-flattened frame, so 'mean' does not keep the 2D features on a static clip there; 'center' does"
        )
    return InflationReport(
        source=source, target=model_3d.name, inflation=inflation, preprocessing=preprocessing,
        transfers=list(plan.transfers), kept=list(plan.kept), source_unused=list(plan.source_unused),
        source_backbone_weights=list(matching.source_weights), notes=notes,
    )


def _card_to_inflate(name: str) -> ModelCard | None:
    """The card of the model being inflated (None for a model tfsts does not name);
    raises NoImageCounterpartError for a named model without a 2D source."""
    card = CARDS.get(name)
    if card is not None and card.source is None:
        raise no_counterpart_error(name, card.no_counterpart)
    return card


def _other_source_hint(target: str, card: ModelCard | None, spec: SourceSpec | None) -> str:
    if spec is None or card is None or target in spec.targets:
        return ""
    return (
        f"\n  The source looks like {spec.builder}, which fits {', '.join(spec.targets)}; "
        f"{target} takes {SOURCES[card.source].builder}."
    )


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

    Args:
        model_3d: a functional 3D model whose layers carry keras.applications' names
            (every tfsts model with a 2D source on its card).
        source_2d: a keras.Model, "imagenet", or a `.keras` / `.weights.h5` / legacy
            `.h5` path (see `load_source`).
        inflation: "mean", "center" or "sts_center" (module docstring).
        copy_head: also copy the 2D classifier ("predictions") into the 3D model's Dense
            head; needs the same class count (1000). Otherwise the head stays at its
            initialiser.
        source: the 2D architecture name (SOURCES), for "imagenet" and weights-only
            files; by default the one on `model_3d.name`'s card.
        lateral: two-pathway models (SlowFast): "zeros" zeroes the slow convs' input
            channels that carry the fast pathway's lateral features (as mmaction2's
            inflation does), so that the inflated slow pathway computes exactly the 2D
            features whatever the fast pathway does; "keep" leaves them at the initialiser.
        check_normalization: require an `input_normalization` layer whose mode is the
            source's (default). False skips the check (the caller normalises input).

    Returns the InflationReport; raises InflationError listing every unused or
    mismatched weight (nothing is written then), and NoImageCounterpartError for models
    with no 2D counterpart.

    Example:
        >>> model = build_model("i3d_r50", 400)            # torch normalisation, pytorch layout
        >>> model = build_model("i3d_r50", 400, weights="/data/resnet50.keras")  # inflated
        >>> print(model.inflation_report.summary())
    """
    _check_choice("inflation", inflation, INFLATION_MODES)
    _check_choice("lateral", lateral, LATERAL_MODES)
    card = _card_to_inflate(model_3d.name)
    source = source or (card.source if card is not None else None)
    if isinstance(source_2d, str) and source_2d == "imagenet" and source is None:
        raise ValueError(f"{model_3d.name}: pass source=<keras.applications name> to inflate from 'imagenet'.")
    src_model = load_source(source_2d, source, include_top=copy_head)
    spec = _guess_source(src_model) or (SOURCES.get(source) if source else None)
    src_name = spec.name if spec else src_model.name
    if check_normalization:
        check_input_normalization(model_3d, src_model, spec)
    src_layers, tgt_layers = weighted_layers(src_model), weighted_layers(model_3d)
    matching = match_layers(src_layers, tgt_layers, name_prefix(card, src_layers, tgt_layers))
    plan = plan_weights(matching, src_model, model_3d, inflation=inflation, lateral=lateral, copy_head=copy_head)
    check_plan(plan, model_3d.name, f"{src_name} ({src_model.name})", _other_source_hint(model_3d.name, card, spec),
               _layout_hint(card))
    assign(plan)
    report = build_report(plan, matching, model_3d, source=src_name, inflation=inflation,
                          preprocessing=(spec.preprocessing if spec else None) or model_normalization(model_3d) or "unknown")
    if _other_source_hint(model_3d.name, card, spec):
        report.notes.append(f"{model_3d.name} is not a listed target of {spec.builder}, but every weight matched")
    return report


__all__ = [
    "INFLATION_MODES",
    "InflationError",
    "InflationReport",
    "Kept",
    "Matching",
    "NoImageCounterpartError",
    "Plan",
    "SOURCES",
    "SourceSpec",
    "TARGETS",
    "Transfer",
    "assign",
    "build_report",
    "check_input_normalization",
    "check_plan",
    "check_weights_argument",
    "inflate",
    "inflate_kernel",
    "layout_options",
    "load_source",
    "match_layers",
    "model_normalization",
    "no_counterpart_error",
    "plan_batch_norm",
    "plan_conv",
    "plan_head",
    "plan_unmatched_targets",
    "plan_weights",
    "source_for",
    "supported_pairs",
    "with_input_normalization",
]
