"""Parameter and multiply-accumulate counts of a built model, read from its layers.

Counts conv and dense layers only (BN, activations, pooling and attention's
activation-by-activation products are free), the convention of the pytorchvideo /
SlowFast / torchvision tables (whose "GFLOPs" are GMACs) and of the reference counts
in the README's model table. A conv's MACs are its kernel volume times its output
size, taps over zero padding included, as those tables count them; on a one-frame input
tfsts evaluates only a plain conv's centre temporal tap (`sts_conv.centre_tap`), so it
runs fewer MACs there than it reports.

Nothing is run and no Keras class is touched: `count_macs` walks the model's layers
(into nested functional models) and computes each count from the layer's config, its
kernel shape and its symbolic output shape. Layers that compute with sublayers outside
any functional graph (keras-cv's Video Swin stages) have a rule each, written from
their config and input/output shapes; any other such layer is refused with an error
rather than counted as zero.

    python -m tfsts.flops --model slowonly_r50 --frames 8 --size 256
    python -m tfsts.flops --all        # the README's model table, row by row
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Callable, Iterator, Mapping, Sequence

import keras

from tfsts.layers import STSConv3D
from tfsts.models.blocks import count_params

_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE_TYPES = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_COUNTED_TYPES = (STSConv3D, keras.layers.Dense, *_DEPTHWISE_TYPES, *_CONV_TYPES)


# ------------------------------------------------------------------ one layer
def layer_macs(layer: keras.layers.Layer, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """MACs of one call of a conv / dense layer on one sample (shapes without batch).

    Every output element of a conv costs one MAC per kernel entry feeding it
    (kernel shape without its filters axis, i.e. k^d * C / groups); of a depthwise
    conv, k^d; of a dense layer, its input width. STS convs count branch by branch
    (`STSConv3D.count_macs`).
    """
    if isinstance(layer, STSConv3D):
        return layer.count_macs(tuple(in_shape))
    if isinstance(layer, keras.layers.Dense):
        return math.prod(out_shape) * int(in_shape[-1])
    if isinstance(layer, _DEPTHWISE_TYPES):
        return math.prod(out_shape) * math.prod(layer.kernel_size)
    if isinstance(layer, _CONV_TYPES):
        return math.prod(out_shape) * math.prod(layer.kernel_size) * int(in_shape[-1]) // layer.groups
    return 0


def _static_shape(tensor, layer: keras.layers.Layer, what: str) -> tuple[int, ...]:
    """The shape of a symbolic tensor without its batch axis; every axis must be known."""
    shape = tuple(tensor.shape)[1:]
    if any(d is None for d in shape):
        raise ValueError(
            f"count_macs: the {what} of layer {layer.name!r} has unknown sizes {shape}; "
            "build the model with a static input_shape (T, H, W, C)."
        )
    return tuple(int(d) for d in shape)


def _single(tensors, layer: keras.layers.Layer, what: str):
    if isinstance(tensors, (list, tuple)):
        if len(tensors) != 1:
            raise ValueError(f"count_macs: layer {layer.name!r} has {len(tensors)} {what}s; expected one.")
        return tensors[0]
    return tensors


# ------------------------------------------------- layers that hide sublayers
def _swin_embedding_macs(layer) -> int:
    """keras-cv VideoSwinPatchingAndEmbedding: one Conv3D, kernel = stride = patch size,
    `embed_dim` filters, on the input padded up to whole patches (the layer's output)."""
    config = layer.get_config()
    channels = _static_shape(_single(layer.input, layer, "input"), layer, "input")[-1]
    out = _static_shape(layer.output, layer, "output")
    return math.prod(out) * math.prod(config["patch_size"]) * channels


def _swin_stage_macs(layer) -> int:
    """keras-cv VideoSwinBasicLayer: `depth` transformer blocks on [T, H, W, C] tokens,
    then (where its output is narrower in space) a patch merging.

    Per block: qkv (C -> 3C) and proj (C -> C) run on every token of the input padded
    up to whole windows (the window shrinks to the input where the input is smaller);
    the MLP (C -> hidden -> C, hidden = int(C * mlp_ratio)) on every token. Patch
    merging: a bias-free dense 4C -> C_out on every output token. The attention's
    q @ k and attn @ v products are not counted (conv + dense convention).
    """
    config = layer.get_config()
    t, h, w, c = _static_shape(_single(layer.input, layer, "input"), layer, "input")
    if int(config["input_dim"]) != c:
        raise ValueError(f"count_macs: {layer.name!r} has input_dim {config['input_dim']} but {c} input channels.")
    window = [min(n, k) for n, k in zip((t, h, w), config["window_size"])]
    padded = math.prod(-(-n // k) * k for n, k in zip((t, h, w), window))
    tokens = t * h * w
    hidden = int(c * config["mlp_ratio"])
    block = padded * c * 3 * c + padded * c * c + 2 * tokens * c * hidden
    macs = int(config["depth"]) * block
    out = _static_shape(layer.output, layer, "output")
    if out != (t, h, w, c):  # downsampled by VideoSwinPatchMerging
        macs += math.prod(out[:-1]) * 4 * c * out[-1]
    return macs


# Rules for layers whose sublayers run outside any functional graph, keyed by
# (module prefix, class name) so that keras-cv is never imported here.
_HIDDEN_SUBLAYER_RULES: dict[tuple[str, str], Callable[[keras.layers.Layer], int]] = {
    ("keras_cv", "VideoSwinPatchingAndEmbedding"): _swin_embedding_macs,
    ("keras_cv", "VideoSwinBasicLayer"): _swin_stage_macs,
}


def _rule_for(layer: keras.layers.Layer) -> Callable[[keras.layers.Layer], int] | None:
    cls = type(layer)
    for (module, name), rule in _HIDDEN_SUBLAYER_RULES.items():
        if cls.__name__ == name and cls.__module__.split(".")[0] == module:
            return rule
    return None


def sublayers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer `layer` holds in its attributes (directly, or in lists, tuples and
    dicts), recursively: plain Python introspection, the attributes through which
    Keras itself tracks sublayers, without its private tracker."""
    seen: set[int] = {id(layer)}

    def visit(value, depth: int):
        if depth > 8:
            return
        if isinstance(value, keras.layers.Layer):
            if id(value) in seen:
                return
            seen.add(id(value))
            yield value
            yield from visit(vars(value), depth + 1)
        elif isinstance(value, Mapping):
            for item in value.values():
                yield from visit(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from visit(item, depth + 1)

    yield from visit(vars(layer), 0)


def _is_graph(layer: keras.layers.Layer) -> bool:
    """A functional (or Sequential) model: its layers carry symbolic inputs/outputs."""
    return isinstance(layer, keras.Model) and isinstance(getattr(layer, "outputs", None), list)


# ------------------------------------------------------------------ the walk
def macs_by_layer(model: keras.Model, prefix: str = "") -> dict[str, int]:
    """MACs per counted layer for one sample, keyed by layer path ("outer/inner")."""
    counts: dict[str, int] = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, _COUNTED_TYPES):
            in_shape = _static_shape(_single(layer.input, layer, "input"), layer, "input")
            out_shape = _static_shape(layer.output, layer, "output")
            counts[path] = layer_macs(layer, in_shape, out_shape)
        elif _is_graph(layer):
            counts.update(macs_by_layer(layer, prefix=f"{path}/"))
        elif (rule := _rule_for(layer)) is not None:
            counts[path] = rule(layer)
        else:
            hidden = [sub.name for sub in sublayers(layer) if isinstance(sub, _COUNTED_TYPES) or _is_graph(sub)]
            if hidden:
                raise ValueError(
                    f"count_macs: layer {path!r} ({type(layer).__name__}) computes with conv/dense "
                    f"sublayers outside the functional graph ({', '.join(hidden[:4])}"
                    f"{', ...' if len(hidden) > 4 else ''}); add a rule for its class to "
                    "tfsts.flops._HIDDEN_SUBLAYER_RULES."
                )
    return counts


def count_macs(model: keras.Model) -> int:
    """Total conv + dense MACs for one sample at the model's (static) input shape."""
    return sum(macs_by_layer(model).values())


def summary(model: keras.Model) -> dict:
    return {"params": count_params(model), "gmacs": count_macs(model) / 1e9}


# ------------------------------------------------------- the README's table
@dataclasses.dataclass(frozen=True)
class TableRow:
    """One model configuration of the README's model table."""

    name: str
    frames: int
    size: int
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
    note: str = ""


def readme_table() -> list[TableRow]:
    """The rows of the README's model table, in its order: what `--all` prints. They are
    the model cards' counts (tfsts/models/cards.py), so the README, the tests' expected
    counts and this command read one table."""
    from tfsts.models.cards import CARDS, settings_text

    return [
        TableRow(card.name, counts.input_shape[0], counts.input_shape[1], dict(counts.settings), settings_text(counts, card))
        for card in CARDS.values()
        for counts in card.counts
    ]


def _sts_setting(name: str, overrides: Mapping[str, object]) -> str:
    from tfsts import models

    default = models.model_spec(name).sts
    if default is None:
        return "no STS"
    return "sts on" if overrides.get("sts", default) else "sts off"


def _format_row(name: str, frames: int, size: int, params: int, gmacs: float, settings: str) -> str:
    return f"{name:<22} {f'{frames}x{size}x{size}':<12} {params:>14,} {gmacs:>9.3f}  {settings}"


HEADER = f"{'model':<22} {'input':<12} {'params':>14} {'GMACs':>9}  settings"


# ----------------------------------------------------------------------- CLI
class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""


def _define_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("model", None, "Model name (see tfsts.models.available_models()).", flag_values=fv)
    flags.DEFINE_integer("frames", None, "Clip length T (default: the model's).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("size", None, "Frame height and width (default: the model's).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("num_classes", 400, "Classes of the head.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("sts", None, "STS on/off (default: the reference's for the model).", flag_values=fv)
    flags.DEFINE_bool("all", False, "Print the README's model table (each row's size and settings).", flag_values=fv)
    flags.DEFINE_bool("verbose", False, "Show the traceback of an error.", flag_values=fv)
    return fv


def _rows(fv) -> list[TableRow]:
    from tfsts import models

    if fv.all:
        given = [f"--{f}" for f in ("model", "frames", "size", "sts") if fv[f].present]
        if given:
            raise UsageError(f"--all prints the README's rows at their own settings; drop {', '.join(given)}.")
        return readme_table()
    if fv.model is None:
        raise UsageError("give --model NAME or --all (models: " + ", ".join(models.available_models()) + ").")
    try:
        spec = models.model_spec(fv.model)
    except ValueError as err:  # names the available models
        raise UsageError(str(err)) from None
    t, h, _, _ = spec.input_shape
    overrides = {} if fv.sts is None else {"sts": fv.sts}
    return [TableRow(fv.model, fv.frames or t, fv.size or h, overrides)]


def _print_table(rows: Sequence[TableRow], num_classes: int, out=sys.stdout) -> None:
    from tfsts import models

    for index, row in enumerate(rows):
        try:
            model = models.build_model(row.name, num_classes, input_shape=(row.frames, row.size, row.size, 3), **row.overrides)
        except ValueError as err:
            reason = " ".join(str(err).split())
            raise ValueError(f"cannot build {row.name} at {row.frames}x{row.size}x{row.size}: {reason}") from err
        result = summary(model)
        settings = row.note or _sts_setting(row.name, row.overrides)
        if index == 0:  # after the first build: a model that cannot be built prints nothing
            print(HEADER, file=out, flush=True)
        print(_format_row(row.name, row.frames, row.size, result["params"], result["gmacs"], settings), file=out, flush=True)
        keras.backend.clear_session()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0, 1 for a model that cannot be built as
    asked, 2 for a command-line mistake)."""
    from absl import flags

    argv = list(sys.argv if argv is None else argv)
    fv = _define_flags()
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
        print(__doc__.strip() + "\n\nflags:\n" + fv.get_help(include_special_flags=False))
        return 0
    verbose = "--verbose" in argv[1:]
    try:
        try:
            rest = fv(argv)
        except flags.Error as err:
            raise UsageError(str(err)) from err
        verbose = fv.verbose
        if len(rest) > 1:
            raise UsageError(f"unexpected argument(s): {' '.join(rest[1:])}")
        _print_table(_rows(fv), fv.num_classes)
    except (UsageError, ValueError) as err:
        if verbose:
            raise
        status = 2 if isinstance(err, UsageError) else 1
        print(f"tfsts.flops: error: {' '.join(str(err).split())}  (--verbose for the traceback)", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
