"""tfsts.flops: MAC counts against an independent oracle (the conv / matmul ops
TensorFlow actually runs), hand counts, the sublayer walk, and the CLI as a user
meets it (subprocess: output, one-line errors, exit status)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from tfsts import flops, models
from tfsts.layers import STSConv3D

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ the graph oracle
def _shape(tensor) -> list[int]:
    return [int(d) for d in tensor.shape]


def graph_macs(model: keras.Model, input_shape) -> int:
    """MACs of the conv / matmul ops of the model's traced TF graph (batch 1) that
    multiply an activation with a weight: conv + dense, as tfsts.flops counts, but
    read from what runs instead of from the layers. Activation-by-activation
    products (attention's q @ k, attn @ v) are left out, as flops leaves them out."""
    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32)).graph
    clip = [op for op in graph.get_operations() if op.type == "Placeholder" and op.outputs[0].dtype == tf.float32]
    if len(clip) != 1:
        raise AssertionError(f"expected one float input placeholder, got {clip}")
    depends: dict[str, bool] = {}

    def on_input(tensor) -> bool:  # does this tensor depend on the clip?
        op = tensor.op
        if op.name not in depends:
            depends[op.name] = op is clip[0] or any(on_input(t) for t in op.inputs)
        return depends[op.name]

    total = 0
    for op in graph.get_operations():
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            # Keras' TF backend runs a grouped conv as a jit-compiled function: one
            # call of (activation, kernel) -> output, counted as the conv it is.
            a, b = op.inputs[0], op.inputs[1]
            if not (len(op.inputs) == 2 and len(op.outputs) == 1 and on_input(a) and not on_input(b)
                    and len(a.shape) == len(b.shape) == 5):
                raise AssertionError(f"the oracle does not know what {op.name} computes")
            total += math.prod(_shape(op.outputs[0])) * math.prod(_shape(b)[:-1])
            continue
        if op.type not in ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            continue
        a, b = op.inputs[0], op.inputs[1]
        if on_input(a) == on_input(b):  # activation x activation (or constants)
            continue
        out = _shape(op.outputs[0])
        if op.type == "DepthwiseConv2dNative":
            total += math.prod(out) * math.prod(_shape(b)[:2])
        elif op.type.startswith("Conv"):
            total += math.prod(out) * math.prod(_shape(b)[:-1])
        else:  # (batched) matmul: out [..., M, N], contraction K
            transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            k = _shape(a)[-2] if transpose_a else _shape(a)[-1]
            total += math.prod(out) * k
    return total


# Every family at a small size, STS on and off where the model has it.
ORACLE_CASES = [
    ("resnet3d_18", (4, 32, 32, 3), {"shortcut_type": "A"}),
    ("resnet3d_18", (4, 32, 32, 3), {"shortcut_type": "B"}),
    ("resnet3d_50", (4, 32, 32, 3), {}),
    ("preact_resnet3d_200", (4, 32, 32, 3), {}),
    ("wide_resnet3d_50", (4, 32, 32, 3), {}),
    ("resnext3d_101", (4, 32, 32, 3), {}),
    ("densenet3d_121", (16, 32, 32, 3), {}),
    ("i3d_r50", (8, 32, 32, 3), {}),
    ("slowonly_r50", (4, 32, 32, 3), {"sts": True}),
    ("slowonly_r50", (4, 32, 32, 3), {"sts": False}),
    ("slowfast_r50_8x8", (16, 32, 32, 3), {"sts": True}),
    ("r2plus1d_18", (4, 32, 32, 3), {"sts": True}),
    ("r2plus1d_18", (4, 32, 32, 3), {"sts": False}),
    ("ircsn_50", (4, 64, 64, 3), {"sts": True}),
    ("ipcsn_50", (4, 32, 32, 3), {"sts": False}),
    ("x3d_s", (4, 64, 64, 3), {"sts": True}),
    # 2x8x8 tokens: attention runs on windows padded to 2x14x14 (2x16x16: 2x21x21).
    ("videoswin_tiny", (4, 32, 32, 3), {}),
    ("videoswin_tiny", (4, 64, 64, 3), {}),
]


@pytest.mark.parametrize("name,shape,kwargs", ORACLE_CASES, ids=[f"{c[0]}-{c[2]}" for c in ORACLE_CASES])
def test_count_macs_equals_the_conv_and_matmul_ops_tf_runs(name, shape, kwargs):
    model = models.build_model(name, 7, input_shape=shape, **kwargs)
    assert flops.count_macs(model) - padding_tap_macs(model) == graph_macs(model, shape)
    keras.backend.clear_session()


def padding_tap_macs(model: keras.Model) -> int:
    """The MACs flops counts that tfsts does not run, all products with zero padding: a plain
    conv with kt > 1 taps on a one-frame input evaluates its centre tap only; STS case A's
    motion half runs each side tap on the T - 1 frames it reads (`motion_side_taps`), so the
    first frame's tap 0 and the last frame's tap 2 (3x3 taps per output) are not run."""
    skipped = 0
    for layer in model.layers:
        if not isinstance(layer, STSConv3D):
            continue
        if not layer.sts and layer.kernel_size[0] > 1 and layer.input.shape[1] == 1:
            kt = layer.kernel_size[0]
            skipped += layer.count_macs(layer.input.shape) * (kt - 1) // kt
        if layer.sts and layer.resolved_case == "A":
            _, _, h_out, w_out, filters = layer.output.shape
            skipped += 2 * h_out * w_out * (filters // 2) * 9
    return skipped


def test_one_frame_inputs_skip_exactly_the_padding_taps():
    """resnet3d_18 on 4 frames reaches one frame after res3's strided conv; the eleven 3x3x3
    convs from there on run their centre taps, a third of their MACs."""
    model = models.build_model("resnet3d_18", 7, input_shape=(4, 32, 32, 3))
    convs = [l for l in model.layers if isinstance(l, STSConv3D) and l.kernel_size == (3, 3, 3)]
    one_frame = [l.name for l in convs if l.input.shape[1] == 1]
    assert one_frame == [l.name for l in convs[5:]] and one_frame[0] == "conv3_block1_2_conv"
    skipped = sum(l.count_macs(l.input.shape) for l in convs[5:]) * 2 // 3
    assert skipped > 0 and padding_tap_macs(model) == skipped
    assert flops.count_macs(model) - skipped == graph_macs(model, (4, 32, 32, 3))


# ------------------------------------------------------------------ hand counts
def test_hand_count_of_a_small_functional_model_with_a_nested_one():
    inner_in = keras.Input((4, 8, 8, 16))
    inner = keras.Model(inner_in, keras.layers.Conv3D(8, (1, 3, 3), padding="same", groups=2, name="grouped")(inner_in), name="inner")
    x_in = keras.Input((4, 8, 8, 3))
    x = keras.layers.Conv3D(16, 3, strides=(1, 2, 2), padding="same", name="c1")(x_in)
    x = inner(keras.layers.UpSampling3D((1, 2, 2))(x))
    x = keras.layers.Reshape((4 * 8 * 8, 8))(x)
    x = keras.layers.Dense(5, name="fc")(x)
    model = keras.Model(x_in, x)
    c1 = 4 * 4 * 4 * 16 * 27 * 3
    grouped = 4 * 8 * 8 * 8 * 9 * 16 // 2
    fc = 4 * 8 * 8 * 8 * 5
    assert flops.macs_by_layer(model) == {"c1": c1, "inner/grouped": grouped, "fc": fc}
    assert flops.count_macs(model) == c1 + grouped + fc


def test_videoswin_tiny_at_8x224_by_hand():
    """Swin-T, 8x224: tokens 4x56x56 (C=96), 4x28x28 (192), 4x14x14 (384), 4x7x7 (768);
    the 8x7x7 window shrinks to 4x7x7 and tiles every stage, so nothing is padded.
    Per block 4C^2 (qkv + proj) + 8C^2 (MLP) per token; merging 4C -> 2C per output
    token; embedding 2x4x4x3 -> 96 per token; head 768 -> 400."""
    stages = [(4 * 56 * 56, 96, 2), (4 * 28 * 28, 192, 2), (4 * 14 * 14, 384, 6), (4 * 7 * 7, 768, 2)]
    blocks = sum(depth * tokens * 12 * c * c for tokens, c, depth in stages)
    merging = sum(stages[i + 1][0] * 4 * c * 2 * c for i, (_, c, _) in enumerate(stages[:-1]))
    expected = blocks + merging + 4 * 56 * 56 * 96 * 2 * 4 * 4 * 3 + 768 * 400
    model = models.build_model("videoswin_tiny", 400, input_shape=(8, 224, 224, 3))
    assert flops.count_macs(model) == expected == 17_456_738_304


# ------------------------------------------------------------- the sublayer walk
class _HiddenDense(keras.layers.Layer):
    """Computes with a Dense (and a list and a dict of them) outside any graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(4)
        self.stack = [keras.layers.Dense(4), keras.layers.ReLU()]
        self.named = {"out": keras.layers.Dense(4)}

    def call(self, x):
        return self.named["out"](self.stack[1](self.stack[0](self.fc(x))))


def test_sublayers_finds_attributes_lists_and_dicts():
    layer = _HiddenDense()
    layer(keras.ops.zeros((1, 3)))
    found = {id(sub) for sub in flops.sublayers(layer)}
    assert found == {id(layer.fc), id(layer.stack[0]), id(layer.stack[1]), id(layer.named["out"])}


def test_a_layer_hiding_dense_sublayers_is_refused_not_counted_as_zero():
    x_in = keras.Input((3,))
    model = keras.Model(x_in, _HiddenDense(name="hidden")(x_in))
    with pytest.raises(ValueError, match=r"'hidden' \(_HiddenDense\) computes with conv/dense sublayers.*_HIDDEN_SUBLAYER_RULES"):
        flops.count_macs(model)


def test_unknown_sizes_are_an_error_naming_the_layer():
    x_in = keras.Input((None, 8, 8, 3))
    model = keras.Model(x_in, keras.layers.Conv3D(4, 1, name="conv")(x_in))
    with pytest.raises(ValueError, match="'conv' has unknown sizes"):
        flops.count_macs(model)


# ---------------------------------------------------------------- the README table
def _readme_rows() -> list[tuple[str, str, str]]:
    """(model, input, settings) of each row of the README's model table."""
    text = (REPO / "README.md").read_text()
    table = text.split("| model | input | settings | params (ours)", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:4] for line in table.splitlines()[2:] if line.startswith("|")]
    return [tuple(cell.strip() for cell in row) for row in rows]


def test_all_covers_exactly_the_readme_rows_in_order():
    ours = [(r.name, f"{r.frames}x{r.size}x{r.size}", r.note) for r in flops.readme_table()]
    readme = [row for row in _readme_rows() if row[0] in {r.name for r in flops.readme_table()}]
    assert ours == readme


def _variant(name: str, settings: dict) -> str:
    """The EXPECTED_ALL key's variant: Hara's basic-block nets default to shortcut A;
    ir-CSN-50 has a row with STS on (temporal strides 1) beside the sts=False baseline."""
    if name in ("resnet3d_10", "resnet3d_18", "resnet3d_34"):
        return "shortcut " + settings.get("shortcut_type", "A")
    if name == "ircsn_50" and settings.get("sts", True):
        return "sts on"
    return ""


# (params, GMACs to 3 decimals) of every README row as --all prints them: the
# existing tests' exact counts; videoswin_tiny by hand (test above).
EXPECTED_ALL = {
    ("slowonly_r50", ""): (32_454_096, "54.518"),
    ("i3d_r50", ""): (28_043_472, "37.104"),
    ("slowfast_r50_8x8", ""): (34_566_488, "65.709"),
    ("slowfast_r50_4x16", ""): (34_480_216, "36.099"),
    ("resnet3d_10", "shortcut A"): (14_430_800, "5.642"),
    ("resnet3d_18", "shortcut A"): (33_235_280, "8.296"),
    ("resnet3d_18", "shortcut B"): (33_409_104, "8.308"),
    ("resnet3d_34", "shortcut A"): (63_544_912, "12.685"),
    ("resnet3d_34", "shortcut B"): (63_718_736, "12.696"),
    ("resnet3d_50", ""): (47_018_576, "10.069"),
    ("resnet3d_101", ""): (86_064_720, "13.891"),
    ("resnet3d_152", ""): (118_223_440, "18.611"),
    ("resnet3d_200", ""): (127_423_056, "25.805"),
    ("preact_resnet3d_200", ""): (127_419_088, "25.805"),
    ("wide_resnet3d_50", ""): (158_248_272, "26.240"),
    ("resnext3d_101", ""): (48_340_816, "9.568"),
    ("densenet3d_121", ""): (11_696_528, "10.404"),
    ("densenet3d_201", ""): (26_143_120, "11.243"),
    ("ircsn_50", ""): (13_131_152, "42.309"),
    ("ircsn_50", "sts on"): (13_131_152, "80.344"),
    ("ircsn_101", ""): (22_213_776, "56.468"),
    ("ircsn_152", ""): (29_703_568, "74.046"),
    ("ipcsn_50", ""): (14_396_176, "47.652"),
    ("ipcsn_101", ""): (24_601_616, "63.559"),
    ("ipcsn_152", ""): (33_016_592, "83.295"),
    ("x3d_s", ""): (3_794_274, "1.963"),
    ("x3d_m", ""): (3_794_274, "4.732"),
    ("r2plus1d_18", ""): (33_370_839, "20.748"),
    ("r2plus1d_34", ""): (63_697_175, "38.089"),
    ("videoswin_tiny", ""): (27_971_494, "17.457"),
}


def _cli(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfsts.flops", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def _own_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's native start-up log lines, which its C++ runtime
    writes before Python runs (absl's pre-init notice, "I0000 ..." records)."""
    native = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} )")
    return [line for line in stderr.strip().splitlines() if line and not native.match(line)]


@pytest.mark.slow
def test_all_prints_the_readme_table_with_each_rows_settings():
    result = _cli("--all", timeout=1800)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "input", "params", "GMACs", "settings"]
    rows = [line.split(None, 4) for line in lines[1:]]
    table = flops.readme_table()
    assert [(r[0], r[1]) for r in rows] == [(r.name, f"{r.frames}x{r.size}x{r.size}") for r in table]
    for (name, _, params, gmacs, settings), row in zip(rows, table):
        assert (int(params.replace(",", "")), gmacs) == EXPECTED_ALL[(name, _variant(name, row.overrides))], name
        assert settings == row.note  # the README's settings column
        if name.startswith(("ircsn", "ipcsn")) and row.overrides.get("sts") is False:
            assert settings == "sts=False"
        elif name in ("slowonly_r50", "slowfast_r50_8x8", "x3d_s", "r2plus1d_18"):
            assert settings.startswith("sts=True")
    # keras-cv's Video Swin blocks no longer print a mask warning each.
    assert "mask" not in result.stderr.lower()


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_cli_one_model_states_its_settings():
    result = _cli("--model", "x3d_s")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1].split(None, 4)
    assert row[:4] == ["x3d_s", "13x160x160", "3,794,274", "1.963"]
    assert row[4] == "sts on"
    result = _cli("--model", "x3d_s", "--nosts", "--frames", "4", "--size", "64")
    assert result.stdout.splitlines()[1].split(None, 4)[1::3] == ["4x64x64", "sts off"]


@pytest.mark.parametrize(
    "args,status,message",
    [
        pytest.param(["--model", "resnet3d_51"], 2, "Unknown model 'resnet3d_51'. Available: ", marks=pytest.mark.slow),
        pytest.param(["--model", "ircsn_50", "--size", "100"], 1, "cannot build ircsn_50 at 32x100x100: ",
                     marks=pytest.mark.slow),
        (["--model", "x3d_s", "--frames", "abc"], 2, "flag --frames=abc"),
        (["--model", "x3d_s", "--frames", "0"], 2, "flag --frames=0"),
        (["--model", "x3d_s", "--sise", "3"], 2, "Unknown command line flag 'sise'"),
        (["--all", "--size", "64"], 2, "--all prints the README's rows at their own settings; drop --size"),
        ([], 2, "give --model NAME or --all"),
    ],
    ids=["unknown-model", "impossible-shape", "bad-int", "zero-frames", "misspelled-flag", "all-with-size", "nothing"],
)
def test_cli_user_errors_are_one_line_and_a_nonzero_exit(args, status, message):
    result = _cli(*args)
    assert result.returncode == status
    assert result.stdout == ""
    lines = _own_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfsts.flops: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_cli_verbose_shows_the_traceback():
    result = _cli("--model", "ircsn_50", "--size", "100", "--verbose")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "STS cannot take this conv" in result.stderr


_SWIN_SCRIPT = """
import sys, warnings
import keras
from tfsts import models
import tfsts.models.videoswin  # installs its filter now, so that "reset" drops it
if sys.argv[1] == "reset":
    warnings.resetwarnings()  # drops every filter, videoswin's included
model = models.build_model("videoswin_tiny", 3, input_shape=(4, 32, 32, 3))
model(keras.ops.zeros((1, 4, 32, 32, 3)), training=False)
warnings.warn("a real warning stays")
"""


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_videoswin_mask_warnings_are_silenced_and_real_warnings_stay():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def stderr(mode: str) -> str:
        result = subprocess.run([sys.executable, "-c", _SWIN_SCRIPT, mode], capture_output=True, text=True,
                                timeout=600, cwd=REPO, env=env)
        assert result.returncode == 0, result.stderr
        return result.stderr

    quiet, loud = stderr("keep"), stderr("reset")
    assert "a real warning stays" in quiet and "a real warning stays" in loud
    assert "does not support masking" in loud  # what keras-cv's blocks print unfiltered
    assert "does not support masking" not in quiet
