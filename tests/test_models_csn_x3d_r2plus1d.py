"""ir-/ip-CSN, X3D and R(2+1)D: reference parameter counts and GMACs
(../shared/reference/model_numbers.md), output shapes, STS placement and errors,
NumPy oracles for the units, save/load, STS on/off weight interchange and one
MirroredStrategy training step per family.

FLOP and parameter checks build models at full input size without running them
(`count_macs` uses static shapes), so they are cheap.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests import model_test_utils as mtu
from tests import reference_numpy as ref
from tfsts import models
from tfsts.flops import count_macs
from tfsts.layers import STSConv3D
from tfsts.models import csn, r2plus1d, x3d
from tfsts.models.blocks import count_params

SMALL = (4, 32, 32, 3)


def _build_and_count(name: str, input_shape, **kwargs) -> tuple[int, float]:
    model = models.build_model(name, 400, input_shape=input_shape, **kwargs)
    result = count_params(model), count_macs(model) / 1e9
    keras.backend.clear_session()
    return result


# ------------------------------------------------------- reference params and GMACs
# (name, input (T, H, W, 3), build kwargs, exact params, reference GMACs)
REFERENCE = [
    # VMZ layers [3, 4, 6, 3]; GMACs with the baseline temporal strides (1, 2, 2, 2).
    ("ircsn_50", (32, 224, 224, 3), {"sts": False}, 13_131_152, 42.309),
    ("ircsn_152", (32, 224, 224, 3), {"sts": False}, 29_703_568, 74.046),
    ("ipcsn_152", (32, 224, 224, 3), {"sts": False}, 33_016_592, 83.295),
    ("x3d_s", (13, 160, 160, 3), {}, 3_794_274, 1.963),
    ("x3d_m", (16, 224, 224, 3), {}, 3_794_274, 4.732),
    ("r2plus1d_34", (8, 112, 112, 3), {}, 63_697_175, 38.089),
]


@pytest.mark.parametrize("name,input_shape,kwargs,params,gmacs", REFERENCE, ids=[r[0] for r in REFERENCE])
def test_reference_params_and_gmacs(name, input_shape, kwargs, params, gmacs):
    got_params, got_gmacs = _build_and_count(name, input_shape, **kwargs)
    assert got_params == params
    assert got_gmacs == pytest.approx(gmacs, rel=1e-3)


def test_r2plus1d_18_matches_vmz_r25d_18():
    """VMZ's Caffe2 "R2.5D-18": 33.3M, 20.7 G at 8x112x112 and 41.5 G at 16x112x112.
    VMZ's PyTorch block definition with [2, 2, 2, 2] gives 33,370,839 (+0.21%)."""
    params, gmacs_8 = _build_and_count("r2plus1d_18", (8, 112, 112, 3))
    assert params == 33_370_839
    assert abs(params - 33.3e6) / 33.3e6 < 0.005
    assert gmacs_8 == pytest.approx(20.7, rel=0.01)
    assert _build_and_count("r2plus1d_18", (16, 112, 112, 3))[1] == pytest.approx(41.5, rel=0.01)


def test_x3d_at_pytorchvideo_test_sizes():
    """pytorchvideo's X3D-S @13x182 (2.727) and X3D-M @16x256 (6.186) counts come from
    the hub models, whose head pools with a fixed kernel sized for 160 / 224 at stride
    1: at 182 / 256 it leaves 2x2 positions, so lin5 (432 -> 2048) and the 400-way
    projection run 3 more times. Global pooling runs them once; the rest is equal.
    (182 is not STS-able: odd maps meet a stride-2 case-A conv, so baseline there.)"""
    extra = 3 * (432 * 2048 + 2048 * 400) / 1e9
    assert _build_and_count("x3d_s", (13, 182, 182, 3), sts=False)[1] + extra == pytest.approx(2.727, rel=2e-4)
    assert _build_and_count("x3d_m", (16, 256, 256, 3))[1] + extra == pytest.approx(6.186, rel=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,params,gmacs",
    [
        # No published VMZ count: the same block definitions with mmaction2's depths.
        # ir-CSN-101 equals pytorchvideo's `csn_r101` count (22,213,776).
        ("ircsn_101", 22_213_776, 56.468),
        ("ipcsn_50", 14_396_176, 47.652),
        ("ipcsn_101", 24_601_616, 63.559),
    ],
)
def test_derived_csn_counts(name, params, gmacs):
    got_params, got_gmacs = _build_and_count(name, (32, 224, 224, 3), sts=False)
    assert got_params == params
    assert got_gmacs == pytest.approx(gmacs, rel=1e-4)


@pytest.mark.slow
def test_r2plus1d_34_at_32_frames():
    assert _build_and_count("r2plus1d_34", (32, 112, 112, 3))[1] == pytest.approx(152.356, rel=1e-3)


def test_sts_changes_neither_params_nor_macs():
    """With the same strides, STS and plain give identical counts (sts.md: no extra
    parameters or FLOPs)."""
    for name, kwargs in [
        ("ipcsn_50", {"temporal_strides": (1, 1, 1, 1)}),
        ("x3d_s", {}),
        ("r2plus1d_18", {}),
    ]:
        on = _build_and_count(name, SMALL, sts=True, stage_blocks=(2, 1, 1, 1), **kwargs)
        off = _build_and_count(name, SMALL, sts=False, stage_blocks=(2, 1, 1, 1), **kwargs)
        assert on == off, name


# ------------------------------------------------------------------- output shapes
@pytest.mark.parametrize(
    "name,input_shape,kwargs,expected",
    [
        # CSN: STS keeps time (temporal strides 1); the baseline strides 2 three times.
        ("ircsn_50", (4, 32, 32, 3), {}, (1, 4, 1, 1, 2048)),
        ("ircsn_50", (8, 64, 96, 3), {"sts": False}, (1, 1, 2, 3, 2048)),
        ("ipcsn_50", (3, 64, 64, 3), {}, (1, 3, 2, 2, 2048)),
        ("x3d_s", (4, 32, 32, 3), {}, (1, 4, 1, 1, 192)),
        ("x3d_m", (5, 64, 96, 3), {}, (1, 5, 2, 3, 192)),
        ("r2plus1d_18", (8, 32, 32, 3), {}, (1, 1, 2, 2, 512)),
        ("r2plus1d_18", (5, 48, 64, 3), {"sts": False}, (1, 1, 3, 4, 512)),
        ("r2plus1d_18", (4, 32, 32, 3), {"temporal_strides": (1, 1, 1, 1)}, (1, 4, 2, 2, 512)),
    ],
)
def test_output_shapes(name, input_shape, kwargs, expected):
    mtu.assert_output_shape(name, input_shape, expected, **kwargs)


def test_x3d_head_outputs():
    """int -> one output named "head"; dict -> outputs keyed by dataset from Dense
    layers `head_{dataset}`; pytorchvideo's conv5 / lin5 are in the head."""
    single = models.build_model("x3d_s", 7, input_shape=SMALL)
    assert single.output_names == ["head"] and tuple(single.output.shape) == (None, 7)
    for layer in ("head_conv5_conv", "head_conv5_bn", "head_pool", "head_lin5_conv", "head_dropout"):
        single.get_layer(layer)
    assert single.get_layer("head_lin5_conv").kernel.shape == (1, 1, 1, 432, 2048)
    multi = models.build_model("x3d_s", {"k400": 400, "ssv2": 174}, input_shape=SMALL)
    out = multi(mtu.random_clip(SMALL, batch=2), training=False)
    assert set(out) == {"k400", "ssv2"}
    assert tuple(out["k400"].shape) == (2, 400) and tuple(out["ssv2"].shape) == (2, 174)
    assert multi.get_layer("head_ssv2").units == 174


# --------------------------------------------------------------- structure and STS
def _sts_layers(model) -> list[str]:
    return [l.name for l in model.layers if isinstance(l, STSConv3D) and l.sts]


def test_csn_structure_and_sts_placement():
    model = models.build_backbone("ipcsn_50", input_shape=SMALL)
    names = {l.name for l in model.layers}
    for expected in (
        "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pool", "conv2_block1_0_conv", "conv2_block1_0_bn",
        "conv2_block1_1_conv", "conv2_block1_2_pointwise_conv", "conv2_block1_2_pointwise_bn",
        "conv2_block1_2_conv", "conv2_block1_2_bn", "conv2_block1_2_relu", "conv2_block1_3_bn",
        "conv2_block1_add", "conv2_block1_out", "conv3_block1_0_conv", "conv5_block3_out",
    ):
        assert expected in names, expected
    assert "conv2_block2_0_conv" not in names  # identity shortcut
    sts = _sts_layers(model)
    assert len(sts) == 16 and all(n.endswith("_2_conv") for n in sts)
    dw = model.get_layer("conv3_block1_2_conv")
    assert dw.groups == 128 and dw.strides == (1, 2, 2) and dw.resolved_case == "A"
    assert model.get_layer("conv3_block1_0_conv").strides == (1, 2, 2)
    assert model.get_layer("conv1_bn").epsilon == pytest.approx(1e-3)
    plain = models.build_backbone("ircsn_50", input_shape=(8, 32, 32, 3), sts=False)
    assert not _sts_layers(plain)
    assert plain.get_layer("conv3_block1_2_conv").strides == (2, 2, 2)  # VMZ baseline
    assert "conv2_block1_2_pointwise_conv" not in {l.name for l in plain.layers}


def test_x3d_structure_and_sts_placement():
    model = models.build_backbone("x3d_s", input_shape=SMALL)
    names = {l.name for l in model.layers}
    for expected in (
        "conv1_spatial_conv", "conv1_temporal_conv", "conv1_bn", "conv1_relu", "conv2_block1_0_conv",
        "conv2_block1_se_pool", "conv2_block1_se_reduce_conv", "conv2_block1_se_expand_conv",
        "conv2_block1_se_scale", "conv2_block1_2_swish", "conv3_block1_0_bn", "conv5_block7_out",
    ):
        assert expected in names, expected
    # pytorchvideo: the strided conv2 shortcut keeps 24 channels, so it has no BN;
    # SE on the 1st, 3rd, ... block of each stage.
    assert "conv2_block1_0_bn" not in names
    assert "conv2_block2_se_pool" not in names and "conv2_block3_se_pool" in names
    assert [model.get_layer(f"conv{s}_block1_se_reduce_conv").filters for s in (2, 3, 4, 5)] == [8, 8, 16, 32]
    assert [model.get_layer(f"conv{s}_block1_2_conv").filters for s in (2, 3, 4, 5)] == [54, 108, 216, 432]
    stem_t = model.get_layer("conv1_temporal_conv")
    assert stem_t.kernel_size == (5, 1, 1) and stem_t.groups == 24 and not stem_t.sts
    sts = _sts_layers(model)
    assert len(sts) == 3 + 5 + 11 + 7 and all(n.endswith("_2_conv") for n in sts)
    assert [cfg["blocks"] for cfg in x3d.stage_config("l")] == [5, 10, 25, 15]


def test_r2plus1d_structure_and_sts_placement():
    model = models.build_backbone("r2plus1d_18", input_shape=(8, 32, 32, 3))
    names = {l.name for l in model.layers}
    for expected in (
        "conv1_spatial_conv", "conv1_spatial_relu", "conv1_temporal_conv", "conv1_temporal_relu",
        "conv2_block1_1_spatial_conv", "conv2_block1_1_spatial_bn", "conv2_block1_1_spatial_relu",
        "conv2_block1_1_temporal_conv", "conv2_block1_1_temporal_bn", "conv2_block1_1_temporal_relu",
        "conv2_block1_2_temporal_bn", "conv3_block1_0_conv", "conv3_block1_add", "conv5_block2_out",
    ):
        assert expected in names, expected
    assert "conv2_block1_0_conv" not in names and "conv2_block1_2_temporal_relu" not in names
    assert "pool1_pool" not in names  # VMZ r2plus1d_34: use_pool1=False
    sts = _sts_layers(model)
    assert len(sts) == 16 and all(n.endswith("_temporal_conv") and not n.startswith("conv1") for n in sts)
    t = model.get_layer("conv3_block1_1_temporal_conv")
    assert t.strides == (2, 1, 1) and t.resolved_case == "C"
    assert model.get_layer("conv3_block1_1_spatial_conv").strides == (1, 2, 2)
    # VMZ's per-conv mid width: 64->128 gives 230, 128->128 gives 288.
    assert model.get_layer("conv3_block1_1_spatial_conv").filters == 230
    assert model.get_layer("conv3_block1_2_spatial_conv").filters == 288
    assert model.get_layer("conv1_spatial_conv").filters == 45


def test_sts_rejects_shapes_it_cannot_take():
    with pytest.raises(ValueError, match="temporal stride"):
        models.build_backbone("ircsn_50", input_shape=SMALL, sts=True, temporal_strides=(1, 2, 2, 2))
    one = (1, 1, 1, 1)
    models.build_backbone("ircsn_50", input_shape=SMALL, sts=False, temporal_strides=(1, 2, 2, 2), stage_blocks=one)
    with pytest.raises(ValueError, match="divisible"):  # 48 -> ... -> 3: odd map, stride 2
        models.build_backbone("x3d_s", input_shape=(4, 48, 48, 3), sts=True, stage_blocks=one)
    models.build_backbone("x3d_s", input_shape=(4, 48, 48, 3), sts=False, stage_blocks=one)
    with pytest.raises(ValueError):
        models.build_backbone("ircsn_50", input_shape=SMALL, mode="xx")
    with pytest.raises(ValueError):
        csn.csn_backbone(SMALL, depth=34)
    with pytest.raises(ValueError):
        r2plus1d.r2plus1d_backbone(SMALL, depth=50)
    with pytest.raises(ValueError):
        x3d.x3d_backbone(SMALL, variant="xl")


# -------------------------------------------------------------------- NumPy oracles
def _bn_numpy(x, layer):
    gamma, beta, mean, var = layer.get_weights()
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _unit_model(build, input_shape):
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, build(inputs))
    mtu.perturb_batch_norms(model)
    return model


@pytest.mark.parametrize("sts", [True, False])
def test_conv2plus1d_unit_against_numpy(sts):
    """(2+1)D conv with stride (2, 2, 2): 1x3x3 spatial (stride 2) + BN + ReLU, then
    3x1x1 temporal (stride 2; STS case C when on) + BN + ReLU."""
    shape = (5, 6, 8, 8)
    model = _unit_model(lambda x: r2plus1d.conv2plus1d(x, 16, "u", strides=(2, 2, 2), sts=sts), shape)
    x = mtu.random_clip(shape, batch=2).astype("float64")
    spatial = model.get_layer("u_spatial_conv").kernel.numpy().astype("float64")
    temporal = model.get_layer("u_temporal_conv").kernel.numpy().astype("float64")
    assert spatial.shape == (1, 3, 3, 8, r2plus1d.mid_channels(8, 16)) == (1, 3, 3, 8, 28)
    y = np.maximum(_bn_numpy(ref.conv_nd(x, spatial, (1, 2, 2)), model.get_layer("u_spatial_bn")), 0)
    y = ref.sts_case_bc(y, temporal, temporal_stride=2) if sts else ref.conv_nd(y, temporal, (2, 1, 1))
    expected = np.maximum(_bn_numpy(y, model.get_layer("u_temporal_bn")), 0)
    actual = model(x.astype("float32"), training=False).numpy()
    assert actual.shape == (2, 3, 3, 4, 16)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_x3d_squeeze_excitation_against_numpy():
    shape = (3, 4, 5, 16)
    model = _unit_model(lambda x: x3d.squeeze_excitation(x, 8, "se"), shape)
    x = mtu.random_clip(shape, batch=2).astype("float64")
    w1, b1 = (w.astype("float64") for w in model.get_layer("se_reduce_conv").get_weights())
    w2, b2 = (w.astype("float64") for w in model.get_layer("se_expand_conv").get_weights())
    s = x.mean(axis=(1, 2, 3))  # [B, C]
    h = np.maximum(s @ w1.reshape(16, 8) + b1, 0)
    gate = 1 / (1 + np.exp(-(h @ w2.reshape(8, 16) + b2)))
    expected = x * gate[:, None, None, None, :]
    np.testing.assert_allclose(model(x.astype("float32")).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert x3d.round_width(54, 1 / 16) == 8 and x3d.round_width(432, 1 / 16) == 32


def test_ip_csn_bottleneck_against_numpy():
    """ip-CSN bottleneck, strided (1, 2, 2), STS case A: 1x1x1 + BN + ReLU,
    1x1x1 + BN, depthwise 3x3x3 (STS) + BN + ReLU, 1x1x1 + BN, + projection, ReLU."""
    shape = (3, 8, 8, 12)
    model = _unit_model(lambda x: csn.csn_bottleneck(x, 8, "b", mode="ip", strides=(1, 2, 2), sts=True), shape)
    x = mtu.random_clip(shape, batch=2).astype("float64")

    def conv(name, y, strides=(1, 1, 1), groups=1):
        return ref.conv_nd(y, model.get_layer(f"{name}_conv").kernel.numpy().astype("float64"), strides, groups)

    def bn(name, y):
        return _bn_numpy(y, model.get_layer(f"{name}_bn"))

    y = np.maximum(bn("b_1", conv("b_1", x)), 0)
    y = bn("b_2_pointwise", conv("b_2_pointwise", y))
    y = ref.sts_case_a(y, model.get_layer("b_2_conv").kernel.numpy().astype("float64"), spatial_stride=2)
    y = np.maximum(bn("b_2", y), 0)
    y = bn("b_3", conv("b_3", y))
    shortcut = bn("b_0", conv("b_0", x, (1, 2, 2)))
    expected = np.maximum(y + shortcut, 0)
    np.testing.assert_allclose(model(x.astype("float32"), training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------- save/load, interchange, training
FAMILY_MODELS = ["ircsn_50", "x3d_s", "r2plus1d_18"]


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_save_load_round_trip(name, tmp_path):
    model = models.build_model(name, 7, input_shape=SMALL)
    mtu.assert_save_load_round_trip(model, tmp_path)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_sts_weight_interchange(name):
    mtu.assert_sts_weight_interchange(name, SMALL)


# Every layer type of the family, with fewer blocks per stage (the graph trace of the
# full nets dominates: 30-50 s each on 2 cores); the full nets run under -m slow.
@pytest.mark.parametrize(
    "name,stage_blocks",
    [("ipcsn_50", (1, 1, 1, 1)), ("x3d_s", (2, 1, 1, 1)), ("r2plus1d_18", (1, 1, 1, 1))],
)
@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_mirrored_train_step_reduced(name, stage_blocks):
    mtu.assert_mirrored_train_step(name, (2, 32, 32, 3), stage_blocks=stage_blocks)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_mirrored_train_step_full(name):
    mtu.assert_mirrored_train_step(name, (2, 32, 32, 3))
