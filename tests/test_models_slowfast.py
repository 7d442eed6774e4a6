"""I3D-R50, SlowOnly-R50, SlowFast-R50: exact counts, shapes, STS placement, numerics,
serialisation and a distributed training step; plus the zoo's entry points."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import model_test_utils as utils
from tfsts import models
from tfsts.flops import count_macs
from tfsts.layers import STSConv3D

SMALL = (8, 32, 32, 3)


@pytest.mark.parametrize(
    "name,params",
    [("slowonly_r50", 32_454_096), ("i3d_r50", 28_043_472), ("slowfast_r50_8x8", 34_566_488), ("slowfast_r50_4x16", 34_480_216)],
)
def test_param_counts_equal_pytorchvideo(name, params):
    shape = (32, 32, 32, 3) if name.startswith("slowfast") else SMALL
    assert models.count_params(models.build_model(name, 400, input_shape=shape)) == params


@pytest.mark.parametrize(
    "name,shape,gmacs",
    [
        ("slowonly_r50", (8, 256, 256, 3), 54.521),
        ("slowfast_r50_8x8", (32, 256, 256, 3), 65.712),
        ("slowfast_r50_4x16", (32, 256, 256, 3), 36.099),
        ("i3d_r50", (8, 256, 256, 3), 37.106),
    ],
)
def test_gmacs_match_reference_within_1_percent(name, shape, gmacs):
    """Computed counts from model_numbers.md. Ours use a global-pool head; pytorchvideo's
    head at 256 px applies the classifier at 2x2 positions (+0.0025 G), the only gap."""
    measured = count_macs(models.build_model(name, 400, input_shape=shape)) / 1e9
    assert abs(measured - gmacs) / gmacs < 0.01
    assert abs(measured - gmacs) < 0.004


def test_macs_by_hand_for_the_slowonly_stem():
    """conv1 1x7x7, 3 -> 64, stride (1,2,2) on 8x224x224: 8*112*112*64*147 MACs."""
    model = models.build_backbone("slowonly_r50", input_shape=(8, 224, 224, 3))
    stem = keras.Model(model.input, model.get_layer("conv1_conv").output)
    assert count_macs(stem) == 8 * 112 * 112 * 64 * 147


@pytest.mark.parametrize(
    "name,shape,expected",
    [
        ("slowonly_r50", (8, 64, 64, 3), (1, 8, 2, 2, 2048)),
        ("slowonly_r50", (4, 96, 64, 3), (1, 4, 3, 2, 2048)),
        ("i3d_r50", (8, 64, 64, 3), (1, 4, 2, 2, 2048)),
        ("i3d_r50", (16, 32, 32, 3), (1, 8, 1, 1, 2048)),
        ("slowfast_r50_8x8", (32, 64, 64, 3), [(1, 8, 2, 2, 2048), (1, 32, 2, 2, 256)]),
        ("slowfast_r50_4x16", (16, 32, 64, 3), [(1, 2, 1, 2, 2048), (1, 16, 1, 2, 256)]),
    ],
)
def test_backbone_output_shapes(name, shape, expected):
    utils.assert_output_shape(name, shape, expected)


def test_sts_sits_exactly_where_the_reference_puts_it():
    slowonly = models.build_backbone("slowonly_r50", input_shape=SMALL)
    sts_convs = sorted(l.name for l in slowonly.layers if isinstance(l, STSConv3D) and l.sts)
    assert sts_convs == sorted(f"conv{s}_block{b}_1_conv" for s, n in ((4, 6), (5, 3)) for b in range(1, n + 1))
    assert all(slowonly.get_layer(n).resolved_case == "B" for n in sts_convs)

    slowfast = models.build_backbone("slowfast_r50_8x8", input_shape=(32, 32, 32, 3))
    sts_convs = {l.name for l in slowfast.layers if isinstance(l, STSConv3D) and l.sts}
    temporal = {l.name for l in slowfast.layers if isinstance(l, STSConv3D) and l.kernel_size == (3, 1, 1)}
    assert sts_convs == temporal  # every temporal bottleneck conv, both pathways
    assert len([n for n in sts_convs if n.startswith("fast_")]) == 16
    assert len([n for n in sts_convs if n.startswith("slow_")]) == 9
    assert not any("fuse" in n or "conv1_conv" == n.split("_", 1)[-1] for n in sts_convs)

    i3d = models.build_backbone("i3d_r50", input_shape=SMALL)
    assert not any(getattr(l, "sts", False) for l in i3d.layers)  # off by default


def test_slow_pathway_sees_every_alpha_th_frame():
    """Frames not on the slow grid reach the slow output only through the fast path:
    with the fusion convs zeroed, changing them leaves slow features unchanged."""
    model = models.build_backbone("slowfast_r50_8x8", input_shape=(8, 32, 32, 3), sts=False)
    for layer in model.layers:
        if layer.name.startswith("fuse") and isinstance(layer, STSConv3D):
            layer.kernel.assign(np.zeros(layer.kernel.shape))
        if layer.name.startswith("fuse") and isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(np.zeros(layer.beta.shape))
    x = utils.random_clip((8, 32, 32, 3))
    y = x.copy()
    y[:, 1::4] += 1.0  # frames 1, 2, 3, 5, 6, 7 change; 0 and 4 do not
    y[:, 2::4] += 1.0
    y[:, 3::4] += 1.0
    slow_x, fast_x = model(x, training=False)
    slow_y, fast_y = model(y, training=False)
    np.testing.assert_allclose(slow_x, slow_y, atol=1e-5)
    assert not np.allclose(fast_x, fast_y, atol=1e-3)


def test_static_clip_gives_the_per_frame_2d_net_when_temporal_taps_are_centred():
    """A SlowOnly whose temporal kernels hold weight only on the centre tap is a 2D
    ResNet applied per frame: on a clip of T copies of one image every frame's
    features equal the T=1 features of that image (an independent 2D computation)."""
    model = models.build_backbone("slowonly_r50", input_shape=(4, 32, 32, 3), sts=False)
    one_frame = models.build_backbone("slowonly_r50", input_shape=(1, 32, 32, 3), sts=False)
    utils.perturb_batch_norms(model)
    for layer in model.layers:
        if isinstance(layer, STSConv3D) and layer.kernel_size[0] == 3:
            kernel = layer.kernel.numpy()
            kernel[0] = kernel[2] = 0.0
            layer.kernel.assign(kernel)
    one_frame.set_weights(model.get_weights())
    image = utils.random_clip((1, 32, 32, 3))
    clip = np.repeat(image, 4, axis=1)
    features = np.asarray(model(clip, training=False))
    reference = np.asarray(one_frame(image, training=False))
    # Elementwise rtol 1e-4, plus an absolute floor tied to the feature scale: after ~50
    # float32 layers with different summation orders (4-frame vs 1-frame conv paths),
    # near-zero channels of a tensor whose entries reach ~1e3 differ by ~1e-7 of that scale.
    floor = 1e-6 * np.abs(reference).max()
    for t in range(4):
        np.testing.assert_allclose(features[:, t], reference[:, 0], rtol=1e-4, atol=floor)


def test_caffe_style_moves_the_stride_without_changing_weights():
    pytorch = models.build_model("slowonly_r50", 10, input_shape=SMALL)
    caffe = models.build_model("slowonly_r50", 10, input_shape=SMALL, stride_layout="1x1")
    assert [w.shape for w in pytorch.weights] == [w.shape for w in caffe.weights]
    assert caffe.get_layer("conv3_block1_2_conv").strides == (1, 1, 1)
    assert pytorch.get_layer("conv3_block1_2_conv").strides == (1, 2, 2)
    with pytest.raises(ValueError, match="stride_layout must be"):
        models.build_model("slowonly_r50", 10, input_shape=SMALL, stride_layout="tf")


@pytest.mark.parametrize("name,shape", [("slowonly_r50", SMALL), ("slowfast_r50_8x8", (8, 32, 32, 3))])
def test_sts_weight_interchange(name, shape):
    utils.assert_sts_weight_interchange(name, shape)


def test_save_load_round_trip(tmp_path):
    utils.assert_save_load_round_trip(models.build_model("slowfast_r50_4x16", 7, input_shape=(16, 32, 32, 3)), tmp_path)


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_mirrored_training_step():
    utils.assert_mirrored_train_step("slowfast_r50_8x8", (8, 32, 32, 3))


def test_mirrored_training_step_i3d():
    utils.assert_mirrored_train_step("i3d_r50", (4, 32, 32, 3))


# ---------------------------------------------------------------------- zoo API
def test_available_models_lists_every_family():
    names = models.available_models()
    assert names == sorted(names)
    for expected in ["resnet3d_10", "resnet3d_200", "preact_resnet3d_200", "wide_resnet3d_50", "resnext3d_101",
                     "densenet3d_121", "densenet3d_201", "i3d_r50", "slowonly_r50", "slowfast_r50_4x16",
                     "slowfast_r50_8x8", "r2plus1d_18", "r2plus1d_34", "ircsn_50", "ircsn_101", "ircsn_152",
                     "ipcsn_50", "ipcsn_101", "ipcsn_152", "x3d_s", "x3d_m", "videoswin_tiny",
                     "videoswin_small", "videoswin_base"]:
        assert expected in names


def test_unknown_model_and_sts_where_the_reference_has_none():
    with pytest.raises(ValueError, match="Unknown model 'resnet3d_51'"):
        models.build_model("resnet3d_51", 10)
    with pytest.raises(ValueError, match="no STS"):
        models.build_model("videoswin_tiny", 10, sts=True)


def test_dict_num_classes_gives_one_head_per_dataset(tmp_path):
    model = models.build_model("slowonly_r50", {"kinetics400": 400, "ssv2": 174, "imagenet": 1000}, input_shape=SMALL, dropout=0.0)
    outputs = model(utils.random_clip(SMALL, batch=2), training=False)
    assert {k: v.shape for k, v in outputs.items()} == {"kinetics400": (2, 400), "ssv2": (2, 174), "imagenet": (2, 1000)}
    # The heads share the pooled features: each is a Dense on the same vector.
    pooled = keras.Model(model.input, model.get_layer("head_pool").output)(utils.random_clip(SMALL, batch=2))
    kernel, bias = model.get_layer("head_ssv2").get_weights()
    expected = np.asarray(pooled, np.float64) @ kernel + bias
    # float32 summation over 2,048 features: the absolute error grows with the logits' scale
    # (hundreds with untrained weights on 0..255 input), hence the floor of 1e-6 x that scale.
    np.testing.assert_allclose(
        model(utils.random_clip(SMALL, batch=2), training=False)["ssv2"], expected, rtol=1e-4,
        atol=max(1e-4, 1e-6 * float(np.abs(expected).max())),
    )
    utils.assert_save_load_round_trip(model, tmp_path)


def test_videoswin_wraps_keras_cv_with_our_heads():
    model = models.build_model("videoswin_tiny", {"k400": 400, "ssv2": 174}, input_shape=(4, 32, 32, 3))
    out = model(utils.random_clip((4, 32, 32, 3)), training=False)
    assert out["k400"].shape == (1, 400) and out["ssv2"].shape == (1, 174)
    # keras-cv's VideoSwin-T backbone at 8x224x224, window 8x7x7, is 27,663,894 params
    # (measured, environment.md); the position-bias tables shrink with smaller inputs.
    model = models.build_model("videoswin_tiny", {"k400": 400, "ssv2": 174}, input_shape=(8, 224, 224, 3))
    assert models.count_params(model) == 27_663_894 + 768 * 400 + 400 + 768 * 174 + 174


def test_flops_cli_prints_params_and_gmacs():
    out = subprocess.run(
        [sys.executable, "-m", "tfsts.flops", "--model", "slowonly_r50", "--frames", "8", "--size", "256"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    row = [line for line in out.splitlines() if line.startswith("slowonly_r50")][0].split()
    assert row[1] == "8x256x256"
    assert row[2] == "32,454,096"
    assert abs(float(row[3]) - 54.52) < 0.01


def test_keras_file_reloads_in_a_fresh_process(tmp_path):
    """Family-specific layers (e.g. the Hara shortcut A) load in a new interpreter via
    tfsts.models.load_model, with identical outputs."""
    model = models.build_model("resnet3d_10", 3, input_shape=(4, 32, 32, 3))
    utils.perturb_batch_norms(model)
    x = utils.random_clip((4, 32, 32, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x, training=False)))
    model.save(tmp_path / "m.keras")
    code = (
        "import numpy as np; from tfsts import models; "
        f"m = models.load_model(r'{tmp_path / 'm.keras'}'); "
        f"np.testing.assert_allclose(m(np.load(r'{tmp_path / 'x.npy'}'), training=False), "
        f"np.load(r'{tmp_path / 'y.npy'}'), rtol=1e-5, atol=1e-5); print('reloaded')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reloaded" in out.stdout
