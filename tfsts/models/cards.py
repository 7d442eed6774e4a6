"""One card per named model: everything tfsts knows about it, in one table.

A `ModelCard` says how to build the model (family builder, its arguments, default
input shape, STS default, head, dropout), what it takes as input (the normalisation
mode without 2D weights), where its ImageNet initialisation comes from (a 2D
`keras.applications` source and the builder options that reproduce that source's
layout, or why there is none) and its parameter / MAC counts next to the reference's,
with where those come from. `CARDS` is the only table; the model list, the 2D
sources' targets, the no-counterpart reasons, the supported-pairs table and the
README's model table are derived from it. Nothing here imports a family module.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from tfsts.layers.normalization import DEFAULT_NORMALIZATION, NORMALIZATION_MODES

# ------------------------------------------------------------------ 2D sources


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A 2D ImageNet network from keras.applications that tfsts models inflate from.

    name: the builder's name ("ResNet50"); builder: its import path; keras_name: the
    `model.name` the builder gives ("resnet50"); family / depth: which sibling a
    `depth=` override picks; preprocessing: the `preprocess_input` mode its ImageNet
    weights expect; bn_epsilon / conv_bias: layout facts a 3D model must reproduce.
    """

    name: str
    builder: str
    keras_name: str
    family: str
    depth: int
    preprocessing: str
    bn_epsilon: float
    conv_bias: bool

    @property
    def targets(self) -> tuple[str, ...]:
        """The tfsts models whose card names this source, in table order."""
        return tuple(card.name for card in CARDS.values() if card.source == self.name)

    def build(self, weights: str | None = None, include_top: bool = False):
        module, function = self.builder.rsplit(".", 1)
        return getattr(importlib.import_module(module), function)(weights=weights, include_top=include_top)


_KERAS_RESNET_V1 = dict(family="resnet_v1", preprocessing="caffe", bn_epsilon=1.001e-5, conv_bias=True)
_KERAS_DENSENET = dict(family="densenet", preprocessing="torch", bn_epsilon=1.001e-5, conv_bias=False)

SOURCES: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        SourceSpec("ResNet50", "keras.applications.ResNet50", "resnet50", depth=50, **_KERAS_RESNET_V1),
        SourceSpec("ResNet101", "keras.applications.ResNet101", "resnet101", depth=101, **_KERAS_RESNET_V1),
        SourceSpec("ResNet152", "keras.applications.ResNet152", "resnet152", depth=152, **_KERAS_RESNET_V1),
        SourceSpec("DenseNet121", "keras.applications.DenseNet121", "densenet121", depth=121, **_KERAS_DENSENET),
        SourceSpec("DenseNet201", "keras.applications.DenseNet201", "densenet201", depth=201, **_KERAS_DENSENET),
    )
}

# Builder options that reproduce Keras' ResNet v1 / DenseNet layout (small named
# constants: the stride-layout keyword is renamed in one place when the ResNet core changes).
_SLOW_CAFFE = {"stride_layout": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}
_HARA_CAFFE = {"stride_layout": "1x1", "conv_bias": True, "shortcut_type": "B", "bn_epsilon": 1.001e-5}
_DENSENET_LAYOUT = {"bn_epsilon": 1.001e-5}

_SLOWFAST_NOTE = (
    "slow pathway only: the fast pathway (fast_*) and the lateral connections (fuse*) have no 2D "
    "counterpart and stay at their initialisers; the slow convs' lateral input channels are zeroed"
)
_NO_CSN = "channel-separated (depthwise 3x3x3) bottlenecks; keras.applications has no 2D CSN"


# ------------------------------------------------------------------ counts


@dataclasses.dataclass(frozen=True)
class Counts:
    """Our parameter / MAC counts of one model at one setting, next to the reference's.

    input_shape: (T, H, W, 3); settings: extra `build_model` arguments of this row
    (e.g. {"sts": False}); params: exact, PyTorch's convention (weights and BN
    gamma/beta, not BN moving statistics) with a 400-way head; gmacs: conv + dense
    multiply-accumulates / 1e9 (rounded as `decimals`), None where not measured;
    reference_*: the reference's numbers as it states them ("-" where it has none);
    provenance: where they come from.
    """

    input_shape: tuple[int, int, int, int]
    params: int
    gmacs: float | None
    reference_params: str = "-"
    reference_gmacs: str = "-"
    provenance: str = ""
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    decimals: int = 3


def _computed(params: str, gmacs: str, code: str) -> dict[str, str]:
    return dict(
        reference_params=params, reference_gmacs=gmacs,
        provenance=f"computed: {code}",
    )


_HAND = dict(reference_params="hand count", provenance="counted by hand from Hara et al.'s architecture")
_R224 = (32, 224, 224, 3)
_R256 = (8, 256, 256, 3)
_SF256 = (32, 256, 256, 3)
_HARA112 = (16, 112, 112, 3)


# --------------------------------------------------------------------- cards


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Everything known about one named model.

    module / function: the family's backbone builder, called as
        `function(input_shape, name=..., [sts=...,] **kwargs)`, returning a functional
        keras.Model whose outputs are the features before pooling (a list for
        two-pathway models); kwargs: the arguments that make this named variant.
    input_shape: the (T, H, W, 3) `build_model` uses by default.
    sts: the default for `sts`, or None where the reference has no STS for this model.
    head: "module:function" of a family-specific head (None: the standard one); dropout.
    normalization: the `InputNormalization` mode of a model built without 2D weights.
    source: the SOURCES name it inflates from; layout: the builder options that
        reproduce that source's layout; prefix: prepended to the source's layer names
        ("slow_" for SlowFast); inflation_note: what else to know.
    no_counterpart: why there is no 2D source (exactly one of source / no_counterpart).
    counts: parameter / MAC counts at the settings the README lists.
    """

    name: str
    module: str
    function: str
    kwargs: Mapping[str, Any]
    input_shape: tuple[int, int, int, int]
    sts: bool | None = None
    head: str | None = None
    dropout: float = 0.5
    normalization: str = DEFAULT_NORMALIZATION
    source: str | None = None
    layout: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    prefix: str = ""
    inflation_note: str = ""
    no_counterpart: str = ""
    counts: tuple[Counts, ...] = ()

    def __post_init__(self):
        if (self.source is None) == (not self.no_counterpart):
            raise ValueError(f"card {self.name}: give exactly one of source= and no_counterpart=.")
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"card {self.name}: unknown 2D source {self.source!r}; known: {', '.join(SOURCES)}.")
        if self.normalization not in NORMALIZATION_MODES:
            raise ValueError(f"card {self.name}: normalization must be one of {NORMALIZATION_MODES}.")

    def builder(self) -> Callable:
        """The family's backbone builder (imports its module)."""
        return getattr(importlib.import_module(self.module), self.function)

    def head_builder(self) -> Callable | None:
        if self.head is None:
            return None
        module, function = self.head.split(":")
        return getattr(importlib.import_module(module), function)

    def normalization_for(self, inflated: bool) -> str:
        """The input normalisation mode: the 2D source's when inflated, else the card's."""
        return SOURCES[self.source].preprocessing if inflated and self.source else self.normalization


def _family(module: str, function: str, **common) -> Callable[..., ModelCard]:
    def card(name: str, **fields) -> ModelCard:
        return ModelCard(name, f"tfsts.models.{module}", function, **{**common, **fields})

    return card


_hara_resnet = _family("resnet3d", "resnet3d_backbone", input_shape=_HARA112)
_slow = _family("slow", "slowonly_backbone", input_shape=(8, 224, 224, 3), source="ResNet50", layout=_SLOW_CAFFE)
_slowfast = _family(
    "slowfast", "slowfast_backbone", input_shape=(32, 224, 224, 3), sts=True, source="ResNet50", layout=_SLOW_CAFFE,
    prefix="slow_", inflation_note=_SLOWFAST_NOTE,
)
_csn = _family("csn", "csn_backbone", input_shape=_R224, sts=True, no_counterpart=_NO_CSN)
_x3d = _family(
    "x3d", "x3d_backbone", sts=True, head="tfsts.models.x3d:x3d_head",
    no_counterpart="X3D's expanded depthwise blocks have no keras.applications 2D counterpart",
)
_r2plus1d = _family(
    "r2plus1d", "r2plus1d_backbone", input_shape=(8, 112, 112, 3), sts=True,
    no_counterpart="(2+1)D convs with R(2+1)D's mid-channel counts have no 2D counterpart",
)
_videoswin = _family(
    "videoswin", "videoswin_backbone", input_shape=(8, 224, 224, 3), dropout=0.2,
    no_counterpart="keras.applications has no Swin Transformer",
)

_HARA_C = "Hara et al.'s 3D-ResNets-PyTorch `models/resnet.py`"
_VMZ_CSN = "VMZ's `pt/vmz/models/csn.py`"
_CSN_OFF = {"sts": False}

_CARD_LIST = [
    _hara_resnet(
        "resnet3d_10", kwargs={"depth": 10}, no_counterpart="keras.applications has no ResNet-10",
        counts=(Counts(_HARA112, 14_430_800, 5.642, **_HAND),),
    ),
    _hara_resnet(
        "resnet3d_18", kwargs={"depth": 18}, no_counterpart="keras.applications has no ResNet-18",
        counts=(
            Counts(_HARA112, 33_235_280, 8.296, **_computed("33,235,280", "8.296", f"{_HARA_C} (CVPR 2018 branch), shortcut A")),
            Counts(_HARA112, 33_409_104, 8.308, settings={"shortcut_type": "B"},
                   **_computed("33,409,104", "8.308", f"{_HARA_C} (master), shortcut B")),
        ),
    ),
    _hara_resnet(
        "resnet3d_34", kwargs={"depth": 34}, no_counterpart="keras.applications has no ResNet-34",
        counts=(
            Counts(_HARA112, 63_544_912, 12.685, **_computed("63,544,912", "12.685", f"{_HARA_C} (CVPR 2018 branch), shortcut A")),
            Counts(_HARA112, 63_718_736, 12.696, settings={"shortcut_type": "B"},
                   **_computed("63,718,736", "12.696", f"{_HARA_C} (master), shortcut B")),
        ),
    ),
    *(
        _hara_resnet(
            f"resnet3d_{depth}", kwargs={"depth": depth}, source=f"ResNet{depth}", layout=_HARA_CAFFE,
            counts=(Counts(_HARA112, params, gmacs, **_computed(f"{params:,}", f"{gmacs:.3f}", _HARA_C)),),
        )
        for depth, params, gmacs in ((50, 47_018_576, 10.069), (101, 86_064_720, 13.891), (152, 118_223_440, 18.611))
    ),
    _hara_resnet(
        "resnet3d_200", kwargs={"depth": 200}, no_counterpart="keras.applications has no ResNet-200",
        counts=(Counts(_HARA112, 127_423_056, 25.805, **_computed("127,423,056", "25.805", _HARA_C)),),
    ),
    ModelCard(
        "preact_resnet3d_200", "tfsts.models.preact_resnet3d", "preact_resnet3d_backbone", {"depth": 200}, _HARA112,
        no_counterpart="keras.applications' pre-activation ResNets (ResNet50V2/101V2/152V2) have no depth 200",
        counts=(Counts(_HARA112, 127_419_088, 25.805, **_HAND),),
    ),
    ModelCard(
        "wide_resnet3d_50", "tfsts.models.wide_resnet3d", "wide_resnet3d_backbone", {"depth": 50}, _HARA112,
        no_counterpart="keras.applications has no wide ResNet",
        counts=(Counts(_HARA112, 158_248_272, 26.240, **_HAND),),
    ),
    ModelCard(
        "resnext3d_101", "tfsts.models.resnext3d", "resnext3d_backbone", {"depth": 101}, _HARA112,
        no_counterpart="keras.applications has no ResNeXt",
        counts=(Counts(_HARA112, 48_340_816, 9.568, **_HAND),),
    ),
    *(
        ModelCard(
            f"densenet3d_{depth}", "tfsts.models.densenet3d", "densenet3d_backbone", {"depth": depth}, _HARA112,
            source=f"DenseNet{depth}", layout=_DENSENET_LAYOUT, counts=(Counts(_HARA112, params, gmacs, **_HAND),),
        )
        for depth, params, gmacs in ((121, 11_696_528, 10.404), (201, 26_143_120, 11.243))
    ),
    ModelCard(
        "i3d_r50", "tfsts.models.slow", "i3d_backbone", {"depth": 50}, (8, 224, 224, 3), sts=False,
        source="ResNet50", layout=_SLOW_CAFFE,
        counts=(Counts(_R256, 28_043_472, 37.104, **_computed("28,043,472", "37.106", "pytorchvideo's `hub.i3d_r50`")),),
    ),
    _slow(
        "slowonly_r50", kwargs={"depth": 50}, sts=True,
        counts=(Counts(_R256, 32_454_096, 54.518, **_computed("32,454,096", "54.521", "pytorchvideo's `hub.slow_r50`")),),
    ),
    _slowfast(
        "slowfast_r50_4x16", kwargs={"depth": 50, "alpha": 8, "beta_inv": 8, "fusion_kernel": 5},
        counts=(Counts(_SF256, 34_480_216, 36.099, **_computed(
            "34,480,216", "36.099", "pytorchvideo's `create_slowfast` (depth 50, fusion kernel 5, alpha 8)")),),
    ),
    _slowfast(
        "slowfast_r50_8x8", kwargs={"depth": 50, "alpha": 4, "beta_inv": 8, "fusion_kernel": 7},
        counts=(Counts(_SF256, 34_566_488, 65.709, **_computed("34,566,488", "65.712", "pytorchvideo's `hub.slowfast_r50`")),),
    ),
    _r2plus1d(
        "r2plus1d_18", kwargs={"depth": 18},
        counts=(Counts((8, 112, 112, 3), 33_370_839, 20.748, reference_params="33.3M", reference_gmacs="20.7",
                       provenance="published: VMZ's Caffe2 model table (`c2/tutorials/models.md`, R2.5D-18)"),),
    ),
    _r2plus1d(
        "r2plus1d_34", kwargs={"depth": 34},
        counts=(Counts((8, 112, 112, 3), 63_697_175, 38.089,
                       **_computed("63,697,175", "38.089", "VMZ's `pt/vmz/models/r2plus1d.py` `r2plus1d_34`")),),
    ),
    _csn(
        "ircsn_50", kwargs={"depth": 50, "mode": "ir"},
        counts=(
            Counts(_R224, 13_131_152, 42.309, settings=_CSN_OFF,
                   **_computed("13,131,152", "42.309", f"{_VMZ_CSN} blocks with layers [3, 4, 6, 3]")),
            Counts(_R224, 13_131_152, 80.344, provenance="STS on: temporal strides 1, as the reference's STS configs"),
        ),
    ),
    _csn(
        "ircsn_101", kwargs={"depth": 101, "mode": "ir"},
        counts=(Counts(_R224, 22_213_776, 56.468, settings=_CSN_OFF, reference_params="22,213,776",
                       provenance="computed: pytorchvideo's `hub.csn_r101` (params; its MACs are at 256 px)"),),
    ),
    _csn(
        "ircsn_152", kwargs={"depth": 152, "mode": "ir"},
        counts=(Counts(_R224, 29_703_568, 74.046, settings=_CSN_OFF,
                       **_computed("29,703,568", "74.046", f"{_VMZ_CSN} `ir_csn_152`")),),
    ),
    _csn(
        "ipcsn_50", kwargs={"depth": 50, "mode": "ip"},
        counts=(Counts(_R224, 14_396_176, 47.652, settings=_CSN_OFF, provenance="no reference count"),),
    ),
    _csn(
        "ipcsn_101", kwargs={"depth": 101, "mode": "ip"},
        counts=(Counts(_R224, 24_601_616, 63.559, settings=_CSN_OFF, provenance="no reference count"),),
    ),
    _csn(
        "ipcsn_152", kwargs={"depth": 152, "mode": "ip"},
        counts=(Counts(_R224, 33_016_592, 83.295, settings=_CSN_OFF,
                       **_computed("33,016,592", "83.295", f"{_VMZ_CSN} `ip_csn_152`")),),
    ),
    _x3d(
        "x3d_s", kwargs={"variant": "s"}, input_shape=(13, 160, 160, 3),
        counts=(Counts((13, 160, 160, 3), 3_794_274, 1.963, **_computed("3,794,274", "1.963", "pytorchvideo's `hub.x3d_s`")),),
    ),
    _x3d(
        "x3d_m", kwargs={"variant": "m"}, input_shape=(16, 224, 224, 3),
        counts=(Counts((16, 224, 224, 3), 3_794_274, 4.732, **_computed("3,794,274", "4.732", "pytorchvideo's `hub.x3d_m`")),),
    ),
    _videoswin(
        "videoswin_tiny", kwargs={"size": "tiny"},
        counts=(Counts((8, 224, 224, 3), 27_971_494, 17.457, reference_params="27,663,894 + 307,600 head",
                       provenance="keras-cv's VideoSwinBackbone count plus our 400-way head; MACs of every conv and "
                       "dense layer over all windows, without the attention matmuls"),),
    ),
    _videoswin("videoswin_small", kwargs={"size": "small"}),
    _videoswin("videoswin_base", kwargs={"size": "base"}),
]

CARDS: dict[str, ModelCard] = {card.name: card for card in _CARD_LIST}
if len(CARDS) != len(_CARD_LIST):
    raise ValueError("two model cards share a name")


# ------------------------------------------------------------------ derived


def available_models() -> list[str]:
    """Every name `build_model` accepts, sorted."""
    return sorted(CARDS)


def model_card(name: str) -> ModelCard:
    """The card of model `name`; a clear error listing the models otherwise."""
    try:
        return CARDS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(available_models())}.") from None


def inflatable_models() -> list[str]:
    """The models with a 2D source, in table order."""
    return [card.name for card in CARDS.values() if card.source is not None]


def no_counterpart_reason(name: str) -> str | None:
    """Why model `name` has no 2D source (None if it has one or is not a card)."""
    card = CARDS.get(name)
    return card.no_counterpart if card is not None and card.source is None else None


def supported_pairs() -> list[dict[str, Any]]:
    """One row per (2D source, 3D model) pair, grouped by source: the docs' table as data."""
    return [
        dict(
            source=source.builder, target=target, build_options=dict(CARDS[target].layout),
            preprocessing=source.preprocessing, note=CARDS[target].inflation_note,
        )
        for source in SOURCES.values()
        for target in source.targets
    ]


def settings_text(counts: Counts, card: ModelCard) -> str:
    """A count row's `build_model` settings as the README's table states them (STS always)."""
    settings = dict(counts.settings)
    if card.sts is not None:
        settings.setdefault("sts", card.sts)
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "-"


def _gmacs_text(counts: Counts) -> str:
    return "-" if counts.gmacs is None else f"{counts.gmacs:.{counts.decimals}f}"


def model_table() -> str:
    """The README's model table (markdown): one row per card's counts; models without
    counts get a row with the default input and "-"."""
    lines = [
        "| model | input | settings | params (ours) | params (reference) | GMACs (ours) | GMACs (reference) | reference numbers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for card in CARDS.values():
        rows = card.counts or (None,)
        for counts in rows:
            if counts is None:
                t, h, w, _ = card.input_shape
                sts = "-" if card.sts is None else f"sts={card.sts}"
                lines.append(f"| {card.name} | {t}x{h}x{w} | {sts} | - | - | - | - | not counted yet |")
                continue
            t, h, w, _ = counts.input_shape
            lines.append(
                f"| {card.name} | {t}x{h}x{w} | {settings_text(counts, card)} | {counts.params:,} | "
                f"{counts.reference_params} | {_gmacs_text(counts)} | {counts.reference_gmacs} | {counts.provenance or '-'} |"
            )
    return "\n".join(lines)


def inflation_table() -> str:
    """docs/inflation.md's table of supported pairs (markdown), from the cards."""
    lines = [
        "| 2D source | 3D model | layout options `build_model` picks | input normalisation | notes |",
        "|---|---|---|---|---|",
    ]
    for row in supported_pairs():
        options = ", ".join(f"`{k}={v!r}`" for k, v in row["build_options"].items())
        lines.append(f"| `{row['source']}` | `{row['target']}` | {options} | `{row['preprocessing']}` | {row['note'] or '-'} |")
    return "\n".join(lines)


__all__ = [
    "CARDS",
    "Counts",
    "ModelCard",
    "SOURCES",
    "SourceSpec",
    "available_models",
    "inflatable_models",
    "inflation_table",
    "model_card",
    "model_table",
    "no_counterpart_reason",
    "supported_pairs",
]
