"""2D -> 3D inflation from keras.applications (issue 4), offline.

Each 2D source is built with weights=None, its BN statistics calibrated on a batch and
then perturbed (and its conv biases made non-zero) so that nothing is trivial, saved to
a temporary file, and inflated from that file. The main property: a clip of T copies
of one image through the inflated 3D backbone gives the 2D backbone's features of that
image: "center" at every output frame, "mean" at the output frames whose temporal
receptive field stays inside the clip (computed from the model's graph, see
`valid_frames`). Tolerance: 1e-4 relative to the largest feature, float32.

Exhaustive variants (every pair with "mean", the biggest sources) are marked slow.
"""

from __future__ import annotations

import collections
import json
import math
import os

import keras
import numpy as np
import pytest

from tfsts import layers as tfsts_layers
from tfsts import models
from tfsts.models import inflation as inf
from tfsts.models.blocks import MaxPool3D, Subsample
from tfsts.models.graph import LayerGraph
from tfsts.models.resnet3d import resnet3d_backbone

RTOL = 1e-4
FRAME = 64  # ResNet frames: 2x2 at conv5


# ------------------------------------------------------------------ 2D sources

PREPROCESS = {
    "ResNet50": keras.applications.resnet.preprocess_input,
    "ResNet101": keras.applications.resnet.preprocess_input,
    "ResNet152": keras.applications.resnet.preprocess_input,
    "DenseNet121": keras.applications.densenet.preprocess_input,
    "DenseNet201": keras.applications.densenet.preprocess_input,
}
FEATURES_2D = {"ResNet50": "conv5_block3_out", "ResNet101": "conv5_block3_out", "ResNet152": "conv5_block3_out"}


def images(n=2, size=FRAME, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def make_source(name: str, seed: int = 0) -> keras.Model:
    """keras.applications `name` (weights=None, no top), with calibrated-then-perturbed
    BN statistics and affine weights and non-zero conv biases."""
    model = inf.SOURCES[name].build(weights=None, include_top=False)
    rng = np.random.default_rng(seed)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype("float32"))
    # Moving statistics := this batch's statistics (one training-mode pass with momentum 0),
    # so activations stay well scaled through 50-200 layers; then perturb everything.
    for bn in bns:
        bn.momentum = 0.0
    model(PREPROCESS[name](images(4, 64, seed=seed + 7)), training=True)
    for bn in bns:
        bn.momentum = 0.99
        gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
        bn.set_weights([
            (gamma * rng.uniform(0.5, 1.5, gamma.shape)).astype("float32"),
            rng.normal(0, 0.2, beta.shape).astype("float32"),
            (mean + rng.normal(0, 0.2, mean.shape) * np.sqrt(var)).astype("float32"),
            (var * rng.uniform(0.7, 1.4, var.shape)).astype("float32"),
        ])
    return model


_SOURCE_FILES: dict[str, str] = {}


@pytest.fixture(scope="session")
def source_file(tmp_path_factory):
    """`source_file("ResNet50")` -> path of that perturbed source's `.weights.h5` (built
    once per test process)."""

    def get(name: str) -> str:
        if name not in _SOURCE_FILES:
            path = os.path.join(str(tmp_path_factory.mktemp(name)), f"{name}.weights.h5")
            make_source(name).save_weights(path)
            _SOURCE_FILES[name] = path
        return _SOURCE_FILES[name]

    return get


_LOADED: dict[str, keras.Model] = {}


def load_2d(name: str, path: str) -> keras.Model:
    """The 2D source back from its file (cached per process; do not modify it)."""
    if path not in _LOADED:
        model = inf.SOURCES[name].build(weights=None, include_top=False)
        model.load_weights(path)
        _LOADED[path] = model
    return _LOADED[path]


def features_2d(name: str, source: keras.Model, image: np.ndarray) -> np.ndarray:
    if name in FEATURES_2D:
        source = keras.Model(source.input, source.get_layer(FEATURES_2D[name]).output)
    return np.asarray(source(PREPROCESS[name](image.copy()), training=False))


# --------------------------------------------------------------- valid frames


class _Frames:
    """Frames [lo, hi] of a length-n tensor whose temporal receptive field lies inside the clip."""

    def __init__(self, lo, hi, n):
        self.lo, self.hi, self.n = lo, hi, n


def valid_frames(model: keras.Model, num_frames: int, lateral_zeroed: bool = True) -> list[tuple[int, int]]:
    """For each output of `model`, the output frames whose temporal receptive field
    does not reach the zero temporal padding (symmetric (k-1)/2 padding, strides):
    where a "mean"-inflated net must equal the 2D net on a static clip. With
    `lateral_zeroed`, SlowFast's fuse concatenations pass only the slow input (the
    inflated lateral weights are zero)."""

    def window(x, k, s, pad):
        lo = math.ceil((x.lo + pad) / s)
        hi = math.floor((x.hi - (k - 1 - pad)) / s)
        n = (x.n + 2 * pad - k) // s + 1
        return _Frames(lo, min(hi, n - 1), n)

    def call_fn(op, *args, **kwargs):
        ins = [a for a in keras.tree.flatten((args, kwargs)) if isinstance(a, _Frames)]
        if isinstance(op, keras.layers.Concatenate) and lateral_zeroed and op.name.startswith("fuse"):
            ins = ins[:1]
        x = _Frames(max(i.lo for i in ins), min(i.hi for i in ins), min(i.n for i in ins))
        if isinstance(op, tfsts_layers.STSConv3D):
            k, s = op.kernel_size[0], op.strides[0]
            return window(x, k, s, (k - 1) // 2)
        if isinstance(op, MaxPool3D):
            k, s = op.pool_size[0], op.strides[0]
            return window(x, k, s, (k - 1) // 2)
        if isinstance(op, keras.layers.AveragePooling3D):
            k, s = op.pool_size[0], op.strides[0]
            return window(x, k, s, 0)
        if isinstance(op, Subsample) or type(op).__name__ == "ZeroPadShortcut":
            return window(x, 1, op.strides[0], 0)
        return x

    outs = model._run_through_graph([_Frames(0, num_frames - 1, num_frames)], call_fn=call_fn)
    return [(o.lo, o.hi) for o in keras.tree.flatten(outs)]


# ------------------------------------------------------------------- checks


def assert_close(actual, expected, what=""):
    scale = float(np.abs(expected).max())
    err = float(np.abs(np.asarray(actual) - expected).max())
    assert scale > 1e-3, f"{what}: reference features are ~0 (test would be vacuous)"
    assert err <= RTOL * scale, f"{what}: max |3D - 2D| = {err:.3g} > {RTOL} x {scale:.3g}"


def assert_full_coverage(report: inf.InflationReport, source: keras.Model):
    """Every conv/BN weight of the source went into the 3D model exactly once."""
    expected = {
        f"{l.name}/{v.name}"
        for l in source.layers
        if isinstance(l, (keras.layers.Conv2D, keras.layers.BatchNormalization))
        for v in l.weights
    }
    used = collections.Counter(t.source for t in report.transfers)
    assert set(used) == expected, (sorted(expected - set(used))[:5], sorted(set(used) - expected)[:5])
    assert max(used.values()) == 1, [k for k, n in used.items() if n > 1][:5]
    assert set(report.source_backbone_weights) == expected
    assert report.coverage == 1.0


def static_clip_check(model_name, source_name, path, shape, inflation, frames="all", output=0, **overrides):
    """Inflates `model_name` from the file, runs a static clip, compares with 2D."""
    backbone = models.build_backbone(model_name, input_shape=shape, weights=path, inflation=inflation, **overrides)
    source = load_2d(source_name, path)
    assert_full_coverage(backbone.inflation_report, source)
    assert backbone.get_layer("input_normalization").mode == inf.SOURCES[source_name].preprocessing
    image = images(1, shape[1], seed=3)
    expected = features_2d(source_name, source, image)[0]
    clip = np.repeat(image[:, None], shape[0], axis=1)
    out = backbone(clip, training=False)
    out = np.asarray(out[output] if isinstance(out, (list, tuple)) else out)[0]
    if frames == "all":
        lo, hi = 0, out.shape[0] - 1
    else:
        lo, hi = valid_frames(backbone, shape[0])[output]
        assert hi >= lo, f"{model_name}: no interior frame at T={shape[0]}"
    for t in range(lo, hi + 1):
        assert_close(out[t], expected, f"{model_name} <- {source_name} ({inflation}) frame {t}/{out.shape[0]}")
    return backbone


# ------------------------------------------------------- InputNormalization


@pytest.mark.parametrize(
    "mode,preprocess",
    [
        ("caffe", keras.applications.resnet.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("tf", keras.applications.resnet_v2.preprocess_input),
        ("none", lambda x: x),
    ],
)
def test_input_normalization_matches_keras_preprocess_input(mode, preprocess):
    x = images(2, 8, seed=1)
    clip = np.stack([x, x[::-1]], axis=1)  # rank 5: [B, T, H, W, C]
    layer = tfsts_layers.InputNormalization(mode)
    assert layer.name == "input_normalization"
    expected = np.stack([preprocess(x.copy()), preprocess(x[::-1].copy())], axis=1)
    np.testing.assert_allclose(np.asarray(layer(clip)), expected, rtol=1e-6, atol=1e-4)
    clone = tfsts_layers.InputNormalization.from_config(layer.get_config())
    assert clone.mode == mode
    # integer pixels are accepted too
    np.testing.assert_allclose(np.asarray(layer(clip.astype("uint8"))), np.asarray(layer(np.floor(clip))), rtol=1e-6, atol=1e-4)


def test_input_normalization_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        tfsts_layers.InputNormalization("bgr")


# ------------------------------------------------------ kernel inflation


def test_inflate_kernel_modes():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    mean, _ = inf.inflate_kernel(k, 3, "mean")
    np.testing.assert_allclose(mean, np.stack([k / 3] * 3), rtol=1e-6)
    np.testing.assert_allclose(mean.sum(0), k, rtol=1e-5)
    centre, _ = inf.inflate_kernel(k, 5, "center")
    np.testing.assert_array_equal(centre[2], k)
    assert not centre[[0, 1, 3, 4]].any()
    sts, how = inf.inflate_kernel(k, 3, "sts_center")
    np.testing.assert_allclose(sts, np.stack([k / 9, k / 3, k / 9]), rtol=1e-6)
    sts5, how5 = inf.inflate_kernel(k, 5, "sts_center")
    np.testing.assert_array_equal(sts5, centre)
    assert "3-tap kernels only" in how5
    one, _ = inf.inflate_kernel(k, 1, "sts_center")
    np.testing.assert_array_equal(one[0], k)
    with pytest.raises(ValueError, match="inflation must be one of"):
        inf.inflate_kernel(k, 3, "gaussian")


# ------------------------------------------------------ static-clip equivalence

RESNET50_TARGETS = {
    "i3d_r50": (4, FRAME, FRAME, 3),
    "slowonly_r50": (4, FRAME, FRAME, 3),
    "slowfast_r50_8x8": (8, FRAME, FRAME, 3),
    "resnet3d_50": (4, FRAME, FRAME, 3),
}


@pytest.mark.parametrize("model_name", sorted(RESNET50_TARGETS))
def test_static_clip_center_resnet50(model_name, source_file):
    """'center' gives the 2D features at every frame; for SlowFast, the slow pathway."""
    backbone = static_clip_check(model_name, "ResNet50", source_file("ResNet50"), RESNET50_TARGETS[model_name], "center")
    report = backbone.inflation_report
    if model_name.startswith("slowfast"):
        reasons = " ".join(k.reason for k in report.kept)
        assert "fast pathway" in reasons and "lateral" in reasons
        kept = {k.target for k in report.kept}
        assert "slow_conv2_block1_1_conv/kernel[..., 64:80, :]" in kept
        assert "fuse1_conv/kernel" in kept and "fast_conv1_conv/kernel" in kept
        lateral = np.asarray(backbone.get_layer("slow_conv2_block1_0_conv").kernel)[..., 64:, :]
        assert lateral.shape[-2] == 16 and not lateral.any()
        # the report, readable and as data
        text = str(report)
        assert text.startswith(f"Inflation ResNet50 -> {model_name} (center)")
        assert "2D weight" in text and "slow_conv1_conv/kernel" in text and "NOT FROM SOURCE" in text
        data = json.loads(json.dumps(report.to_dict()))
        assert data["coverage"] == 1.0 and data["preprocessing"] == "caffe"
    else:
        assert not report.kept  # every 3D weight came from the source


def test_build_model_takes_the_source_layout(source_file):
    """weights=... makes the builder reproduce Keras' ResNet v1 layout: stride on the
    first 1x1 conv (caffe style), conv biases, BN epsilon 1.001e-5."""
    model = models.build_model("i3d_r50", 7, input_shape=(4, 32, 32, 3), weights=source_file("ResNet50"))
    assert model.layers[1].name == "input_normalization"
    assert model.get_layer("input_normalization").mode == "caffe"
    assert isinstance(model.get_layer("conv3_block1_1_subsample"), Subsample)
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 1, 1)
    assert model.get_layer("conv3_block1_1_conv").use_bias
    assert model.get_layer("conv3_block1_1_bn").epsilon == pytest.approx(1.001e-5)
    kept = {k.target: k.reason for k in model.inflation_report.kept}
    assert set(kept) == {"head/kernel", "head/bias"} and "copy_head=False" in kept["head/kernel"]
    # Without weights: the input contract's default normalisation, the pytorchvideo layout.
    # (Before the one input contract of issue 7 such a model had no normalisation layer.)
    plain = models.build_model("i3d_r50", 7, input_shape=(4, 32, 32, 3))
    assert plain.layers[1].name == "input_normalization"
    assert plain.get_layer("input_normalization").mode == "torch"
    assert plain.get_layer("conv3_block1_2_conv").strides == (1, 2, 2)


def test_static_clip_mean_i3d_interior_frames(source_file):
    """'mean' equals 2D at the frames that zero temporal padding does not reach (I3D:
    5-tap stem, 3-tap convs, a temporal pool: at T=48 output frames 9..14 of 24)."""
    shape = (48, 32, 32, 3)
    backbone = static_clip_check("i3d_r50", "ResNet50", source_file("ResNet50"), shape, "mean", frames="interior")
    assert valid_frames(backbone, shape[0]) == [(9, 14)]
    # and the frames next to the ends really differ (the padding cuts taps there)
    image = images(1, 32, seed=3)
    out = np.asarray(backbone(np.repeat(image[:, None], shape[0], axis=1), training=False))[0]
    expected = features_2d("ResNet50", load_2d("ResNet50", source_file("ResNet50")), image)[0]
    assert np.abs(out[0] - expected).max() > 100 * RTOL * np.abs(expected).max()


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_static_clip_resnet101_into_resnet3d_101(source_file):
    static_clip_check("resnet3d_101", "ResNet101", source_file("ResNet101"), (4, 32, 32, 3), "center")


@pytest.mark.slow  # CI time: a heavy build/train; the slow suite runs it
def test_static_clip_densenet121_into_densenet3d_121(source_file):
    static_clip_check("densenet3d_121", "DenseNet121", source_file("DenseNet121"), (16, 32, 32, 3), "center")


def test_static_clip_mean_resnet3d_50_interior_frames(source_file):
    """Hara's layout halves T at the stem pool and at stages 3-5, and every block has a
    3-tap conv: at T=256 output frame 8 of 16 is interior (Keras' layout, stride on the
    first 1x1x1 conv)."""
    backbone = static_clip_check("resnet3d_50", "ResNet50", source_file("ResNet50"), (256, 32, 32, 3), "mean", frames="interior")
    assert valid_frames(backbone, 256) == [(8, 8)]


# Exhaustive: every pair, both feature-preserving modes.
SLOW_CASES = [
    ("i3d_r50", "ResNet50", (48, 32, 32, 3), {}),
    # STS models with sts=False: the STS appearance half applies the temporal taps along
    # the raster-flattened frame, so only "center" keeps static features with sts=True.
    ("slowonly_r50", "ResNet50", (24, 32, 32, 3), {"sts": False}),
    ("slowfast_r50_8x8", "ResNet50", (80, 32, 32, 3), {"sts": False}),
    ("slowfast_r50_4x16", "ResNet50", (160, 32, 32, 3), {"sts": False}),
    ("resnet3d_50", "ResNet50", (48, 32, 32, 3), {"stage_t_strides": (1, 1, 1), "pool1_t_stride": 1}),
    ("resnet3d_101", "ResNet101", (80, 32, 32, 3), {"stage_t_strides": (1, 1, 1), "pool1_t_stride": 1}),
    ("resnet3d_152", "ResNet152", (112, 32, 32, 3), {"stage_t_strides": (1, 1, 1), "pool1_t_stride": 1}),
    ("densenet3d_121", "DenseNet121", (128, 32, 32, 3), {"transition_t_stride": 1, "pool1_t_stride": 1}),
    ("densenet3d_201", "DenseNet201", (208, 32, 32, 3), {"transition_t_stride": 1, "pool1_t_stride": 1}),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_name,source_name,shape,overrides", SLOW_CASES, ids=[f"{c[0]}-T{c[2][0]}" for c in SLOW_CASES]
)
def test_static_clip_mean_every_pair(model_name, source_name, shape, overrides, source_file):
    static_clip_check(model_name, source_name, source_file(source_name), shape, "mean", frames="interior", **overrides)


CENTER_SLOW = [
    ("slowfast_r50_4x16", "ResNet50", (16, FRAME, FRAME, 3)),
    ("resnet3d_152", "ResNet152", (4, 32, 32, 3)),
    ("densenet3d_201", "DenseNet201", (16, 32, 32, 3)),
    ("resnet3d_50", "ResNet50", (16, FRAME, FRAME, 3)),
]


@pytest.mark.slow
@pytest.mark.parametrize("model_name,source_name,shape", CENTER_SLOW, ids=[c[0] for c in CENTER_SLOW])
def test_static_clip_center_every_pair(model_name, source_name, shape, source_file):
    static_clip_check(model_name, source_name, source_file(source_name), shape, "center")


# --------------------------------------------------------- sts / sts_center


def test_sts_on_and_off_inflate_to_identical_weights(source_file):
    src = load_2d("ResNet50", source_file("ResNet50"))
    on = models.build_backbone("slowonly_r50", input_shape=(4, 32, 32, 3), sts=True, weights=src)
    off = models.build_backbone("slowonly_r50", input_shape=(4, 32, 32, 3), sts=False, weights=src)
    assert any(getattr(l, "sts", False) for l in on.layers) and not any(getattr(l, "sts", False) for l in off.layers)
    assert [w.path for w in on.weights] == [w.path for w in off.weights]
    for a, b in zip(on.weights, off.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    # sts_center, in place on the same model: 3-tap kernels [c/9, c/3, c/9], 1-tap copied
    report = models.inflate(on, src, inflation="sts_center")
    c = np.asarray(src.get_layer("conv4_block1_1_conv").kernel)
    k = np.asarray(on.get_layer("conv4_block1_1_conv").kernel)
    np.testing.assert_allclose(k, np.stack([c / 9, c / 3, c / 9]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(on.get_layer("conv2_block1_1_conv").kernel)[0], np.asarray(src.get_layer("conv2_block1_1_conv").kernel))
    hows = {t.target: t.how for t in report.transfers}
    assert hows["conv4_block1_1_conv/kernel"].startswith("sts_center")


# -------------------------------------------------------- file formats, head


def test_keras_weights_h5_and_legacy_h5_sources_inflate_identically(source_file, tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    import h5py

    path = source_file("ResNet50")
    src = load_2d("ResNet50", path)
    keras_path = os.path.join(str(tmp_path), "r50.keras")
    legacy_model = os.path.join(str(tmp_path), "r50_model.h5")
    legacy_weights = os.path.join(str(tmp_path), "r50_weights.h5")  # the format of Keras' ImageNet downloads
    src.save(keras_path)
    src.save(legacy_model)
    with h5py.File(legacy_weights, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, src)

    model = inf.with_input_normalization(models.build_backbone("resnet3d_50", input_shape=(2, 32, 32, 3), stride_layout="1x1"), "caffe")
    reference = None
    for source in (src, path, keras_path, legacy_model, legacy_weights):
        report = models.inflate(model, source, inflation="mean", source="ResNet50")
        assert report.coverage == 1.0 and report.source == "ResNet50"
        weights = [np.asarray(w) for w in model.weights]
        if reference is None:
            reference = weights
            for w in model.weights:  # scramble, so each load must restore everything
                w.assign(np.zeros(w.shape, w.dtype))
        else:
            for a, b in zip(reference, weights):
                np.testing.assert_array_equal(a, b)
    # resnet3d has no BN-epsilon option: the epsilon difference is folded into the variance
    assert any("epsilon" in n for n in report.notes) or all(
        l.epsilon == pytest.approx(1.001e-5) for l in model.layers if isinstance(l, keras.layers.BatchNormalization)
    )


def test_conv_bias_folds_into_batch_norm_exactly(source_file):
    """A 3D model without conv biases takes Keras' biased convs by folding each bias
    into the next BN's moving mean: same features on a static clip."""
    backbone = static_clip_check(
        "slowonly_r50", "ResNet50", source_file("ResNet50"), (2, 32, 32, 3), "center", conv_bias=False, bn_epsilon=1e-5
    )
    hows = [t.how for t in backbone.inflation_report.transfers]
    assert sum(h.startswith("folded") for h in hows) == 53  # every conv of ResNet50
    assert sum("epsilon" in h for h in hows) == 53


def test_copy_head_and_save_load_keep_normalization(source_file, tmp_path):
    """copy_head copies the 2D classifier (softmax(3D logits) == 2D predictions on a
    static clip); the inflated model saves and loads with its normalisation layer."""
    src = load_2d("ResNet50", source_file("ResNet50"))
    logits = keras.layers.Dense(1000, name="predictions")
    top = keras.Model(
        src.input, keras.layers.Activation("softmax")(logits(keras.layers.GlobalAveragePooling2D(name="avg_pool")(src.output))),
        name="resnet50",
    )
    rng = np.random.default_rng(0)
    logits.kernel.assign(rng.normal(0, 0.01, logits.kernel.shape).astype("float32"))
    logits.bias.assign(rng.normal(0, 0.1, logits.bias.shape).astype("float32"))
    model = models.build_model(
        "resnet3d_50", 1000, input_shape=(2, 32, 32, 3), weights=top, inflation="center", copy_head=True, dropout=0.0
    )
    assert {t.target for t in model.inflation_report.transfers} >= {"head/kernel", "head/bias"}
    image = images(1, 32, seed=5)
    clip = np.repeat(image[:, None], 2, axis=1)
    probs = np.asarray(keras.ops.softmax(model(clip, training=False)))
    np.testing.assert_allclose(probs[0], np.asarray(top(PREPROCESS["ResNet50"](image.copy())))[0], rtol=1e-3, atol=1e-6)

    ten_classes = keras.Model(model.input, keras.layers.Dense(10, name="head")(model.get_layer("head_pool").output))
    with pytest.raises(inf.InflationError, match="has 1000 classes"):
        models.inflate(ten_classes, top, copy_head=True)

    path = os.path.join(str(tmp_path), "inflated.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[1].name == "input_normalization"
    assert loaded.get_layer("input_normalization").mode == "caffe"
    np.testing.assert_allclose(np.asarray(loaded(clip, training=False)), np.asarray(model(clip, training=False)), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------- failures


def test_wrong_depth_source_fails_listing_the_weights(source_file):
    """ResNet101 weights into resnet3d_50: the 17 extra conv4 blocks are listed."""
    src = load_2d("ResNet101", source_file("ResNet101"))
    model = inf.with_input_normalization(models.build_backbone("resnet3d_50", input_shape=(2, 32, 32, 3), stride_layout="1x1", conv_bias=True), "caffe")
    before = [np.asarray(w).copy() for w in model.weights]
    with pytest.raises(inf.InflationError) as error:
        models.inflate(model, src)
    message = str(error.value)
    assert "ResNet101" in message and "fits resnet3d_101" in message
    assert "source conv/BN layers unused" in message and "conv4_block7_1_conv" in message
    assert len(error.value.unused_source) == 17 * 6  # 3 convs + 3 BNs in each of conv4_block7..23
    # nothing was written
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.asarray(b))

    # and the other way round: a weights file of the wrong architecture
    with pytest.raises(inf.InflationError, match="could not be loaded into keras.applications.ResNet50"):
        models.inflate(model, source_file("ResNet101"), source="ResNet50")


def test_channel_and_layout_mismatches_fail_clearly(source_file):
    src = load_2d("ResNet50", source_file("ResNet50"))
    # A raw family builder's model has no normalisation layer; build_backbone's has "torch".
    raw = resnet3d_backbone((2, 32, 32, 3), name="resnet3d_50", depth=50, stride_layout="1x1", widen_factor=0.5)
    with pytest.raises(inf.InflationError, match="has no 'input_normalization' layer"):
        models.inflate(raw, src)
    narrow = models.build_backbone("resnet3d_50", input_shape=(2, 32, 32, 3), stride_layout="1x1", widen_factor=0.5)
    with pytest.raises(inf.InflationError, match="normalises its input with mode 'torch'.*expect 'caffe'"):
        models.inflate(narrow, src)
    narrow = inf.with_input_normalization(narrow, "caffe")
    with pytest.raises(inf.InflationError, match=r"mismatched:[\s\S]*conv1_conv -> conv1_conv: kernel 2D \(7, 7, 3, 64\) vs 3D \(7, 7, 7, 3, 32\)"):
        models.inflate(narrow, src)

    # pytorch style (stride on the 3x3 conv) cannot reproduce Keras' ResNet v1
    with pytest.raises(inf.InflationError, match=r"conv3_block1_1_conv -> conv3_block1_1_conv: spatial stride 2D \(2, 2\) vs 3D \(1, 1\)[\s\S]*stride_layout='1x1'"):
        models.build_backbone("i3d_r50", input_shape=(4, 32, 32, 3), weights=src, stride_layout="3x3")

    # normalisation that disagrees with the source
    torch_norm = models.build_backbone("densenet3d_121", input_shape=(16, 32, 32, 3), weights=None)
    torch_norm = inf.with_input_normalization(torch_norm, "torch")
    with pytest.raises(inf.InflationError, match="normalises its input with mode 'torch'.*expect 'caffe'"):
        models.inflate(torch_norm, src, source="ResNet50")
    # ResNet weights into a DenseNet: listed, nothing written
    before = [np.asarray(w).copy() for w in torch_norm.weights]
    with pytest.raises(inf.InflationError, match="source conv/BN layers unused") as error:
        models.inflate(torch_norm, src, check_normalization=False)
    assert "densenet3d_121 takes keras.applications.DenseNet121" in str(error.value)
    assert error.value.unmatched_target and error.value.mismatched
    for a, b in zip(before, torch_norm.weights):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.parametrize("name", ["ircsn_50", "x3d_s", "r2plus1d_18", "videoswin_tiny", "resnet3d_18", "resnext3d_101"])
def test_models_without_2d_counterpart_point_to_image_pretraining(name, tmp_path):
    with pytest.raises(inf.NoImageCounterpartError, match="pre-training the 3D network itself on ImageNet"):
        models.build_model(name, 10, weights=os.path.join(str(tmp_path), "missing.weights.h5"))


def test_supported_pairs_table_matches_the_zoo():
    assert {row["target"] for row in inf.supported_pairs()} == set(inf.TARGETS)
    for name, target in inf.TARGETS.items():
        assert name in models.available_models()
        assert name in inf.SOURCES[target.source].targets
    for name in models.available_models():
        assert name in inf.TARGETS or inf._no_counterpart_reason(name), name


@pytest.mark.slow
def test_mean_with_sts_on_does_not_keep_static_features(source_file):
    """Documented limitation: under STS (case B) the appearance half applies a temporal
    kernel's taps along the raster-flattened frame, so "mean" (c/3 at three taps) mixes
    neighbouring pixels and the static-clip property holds for "center" only."""
    with pytest.raises(AssertionError, match="max \\|3D - 2D\\|"):
        static_clip_check("slowonly_r50", "ResNet50", source_file("ResNet50"), (24, 32, 32, 3), "mean", frames="interior", sts=True)


# ------------------------------------------------------- the phases, one by one


def _tiny_2d(bias=True, eps=1e-3):
    x = keras.Input((8, 8, 2), name="image")
    y = keras.layers.ZeroPadding2D(1, name="c1_pad")(x)
    y = keras.layers.Conv2D(4, 3, use_bias=bias, name="c1_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=eps, name="c1_bn")(y)
    y = keras.layers.Conv2D(4, 1, name="extra_conv")(y)
    y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    return keras.Model(x, keras.layers.Dense(5, name="predictions")(y), name="tiny2d")


def _tiny_3d(prefix="", strides=(1, 1, 1), eps=1e-5, fast=False):
    x = keras.Input((3, 8, 8, 2), name="clip")
    y = tfsts_layers.STSConv3D(4, 3, strides=strides, sts=False, name=f"{prefix}c1_conv")(x)
    y = keras.layers.BatchNormalization(epsilon=eps, name=f"{prefix}c1_bn")(y)
    if fast:
        y = tfsts_layers.STSConv3D(4, 1, sts=False, name="fast_c2_conv")(y)
        y = keras.layers.Conv3D(4, 1, name="fuse_conv")(y)
        y = keras.layers.Conv3D(4, 1, name="odd_conv")(y)
    y = keras.layers.GlobalAveragePooling3D(name="head_pool")(y)
    return keras.Model(x, keras.layers.Dense(5, name="head")(y), name="tiny3d")


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(size=w.shape)
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype("float32"))


def test_layer_graph_reads_connections_from_the_public_config():
    """Fails loudly if Keras changes its functional config format (the graph's source)."""
    src = _tiny_2d()
    graph = LayerGraph(src)
    assert [l.name for l in graph.producers(src.get_layer("c1_conv"))] == ["c1_pad"]
    assert graph.single_consumer(src.get_layer("c1_conv")).name == "c1_bn"
    assert graph.single_consumer(src.get_layer("predictions")) is None
    x = keras.Input((4,), name="x")
    dense = keras.layers.Dense(3, name="d")
    both = keras.Model(x, keras.layers.Add(name="add")([dense(x), keras.layers.Dense(3, name="e")(x)]))
    assert {l.name for l in LayerGraph(both).producers(both.get_layer("add"))} == {"d", "e"}
    assert LayerGraph(both).single_consumer(both.get_layer("x")) is None  # two consumers


def test_match_layers_pairs_by_prefixed_name_and_lists_the_rest():
    src, tgt = _tiny_2d(), _tiny_3d(prefix="slow_")
    matching = inf.match_layers(inf.weighted_layers(src), inf.weighted_layers(tgt), "slow_")
    assert [(a.name, b.name) for a, b in matching.convs] == [("c1_conv", "slow_c1_conv")]
    assert [(a.name, b.name) for a, b in matching.batch_norms] == [("c1_bn", "slow_c1_bn")]
    assert [h.name for h in matching.heads] == ["predictions"]
    assert len(matching.unused) == 1 and matching.unused[0].startswith("extra_conv (Conv2D") and "'slow_extra_conv'" in matching.unused[0]
    assert matching.matched_targets == {"slow_c1_conv", "slow_c1_bn"}
    assert "c1_conv/kernel" in matching.source_weights and "c1_bn/moving_variance" in matching.source_weights
    # a 2D BN whose 3D twin is a conv is a type mismatch
    swapped = inf.match_layers({"c1_bn": src.get_layer("c1_bn")}, {"c1_bn": tgt.get_layer("slow_c1_conv")})
    assert swapped.mismatched == ["c1_bn: 2D BatchNormalization vs 3D STSConv3D"]


def test_plan_conv_and_batch_norm_by_hand():
    """mean: k / 3 on each tap; the 2D bias folds into the BN's moving mean, the epsilon
    difference into the moving variance; nothing is written by planning."""
    src, tgt = _tiny_2d(eps=1e-3), _tiny_3d(eps=1e-5)
    _randomise(src, 0)
    _randomise(tgt, 1)
    before = [np.asarray(w).copy() for w in tgt.weights]
    conv2d, conv3d = src.get_layer("c1_conv"), tgt.get_layer("c1_conv")
    plan = inf.plan_conv(conv2d, conv3d, inflation="mean", fold_bias_into="c1_bn")
    assert not plan.has_problems and len(plan.writes) == 1
    variable, value = plan.writes[0]
    assert variable is conv3d.kernel
    k = np.asarray(conv2d.kernel)
    np.testing.assert_allclose(value, np.stack([k / 3] * 3), rtol=1e-6)
    bias, name = plan.folded_bias["c1_bn"]
    assert name == "c1_conv/bias"
    np.testing.assert_array_equal(bias, np.asarray(conv2d.bias))
    bn_plan = inf.plan_batch_norm(src.get_layer("c1_bn"), tgt.get_layer("c1_bn"), plan.folded_bias["c1_bn"])
    values = {v.path.split("/")[-1]: x for v, x in bn_plan.writes}
    gamma, beta, mean, var = (np.asarray(w) for w in src.get_layer("c1_bn").weights)
    np.testing.assert_allclose(values["moving_mean"], mean - bias, rtol=1e-6)
    np.testing.assert_allclose(values["moving_variance"], var + (1e-3 - 1e-5), rtol=1e-6)
    np.testing.assert_array_equal(values["gamma"], gamma)
    assert [t.source for t in bn_plan.transfers].count("c1_conv/bias") == 1
    for a, b in zip(before, tgt.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    # the plan, assigned, gives the 2D conv + BN on a static clip (centre frame: interior)
    full = inf.Plan().merge(plan, bn_plan)
    inf.assign(full)
    image = np.random.default_rng(2).normal(size=(1, 8, 8, 2)).astype("float32")
    bn_2d = keras.Model(src.input, src.get_layer("c1_bn").output)(image, training=False)
    bn_3d = keras.Model(tgt.input, tgt.get_layer("c1_bn").output)(np.repeat(image[:, None], 3, 1), training=False)
    np.testing.assert_allclose(np.asarray(bn_3d)[:, 1], np.asarray(bn_2d), rtol=1e-4, atol=1e-4)


def test_plan_conv_lists_each_problem_and_writes_nothing():
    src, tgt = _tiny_2d(), _tiny_3d(strides=(1, 2, 2))
    plan = inf.plan_conv(src.get_layer("c1_conv"), tgt.get_layer("c1_conv"), padding_problem="zero padding ((0, 1), (0, 1))")
    assert not plan.writes and plan.stride_problem
    (problem,) = plan.mismatched
    assert "spatial stride 2D (1, 1) vs 3D (2, 2)" in problem and "2D zero padding" in problem
    no_bn = inf.plan_conv(src.get_layer("c1_conv"), _tiny_3d().get_layer("c1_conv"), fold_bias_into=None)
    assert any("no BatchNormalization directly after it" in m for m in no_bn.mismatched)


def test_plan_head_and_unmatched_targets():
    src, tgt = _tiny_2d(), _tiny_3d(fast=True)
    heads = [src.get_layer("predictions")]
    off = inf.plan_head(heads, [tgt.get_layer("head")], copy_head=False)
    assert [s for s, _ in off.source_unused] == ["predictions/kernel", "predictions/bias"] and not off.writes
    on = inf.plan_head(heads, [tgt.get_layer("head")], copy_head=True)
    assert len(on.writes) == 2 and on.matched_targets == {"head"} and not on.has_problems
    assert inf.plan_head(heads, [], copy_head=True).mismatched
    rest = inf.plan_unmatched_targets(inf.weighted_layers(tgt), {"c1_conv", "c1_bn"}, copy_head=False, two_pathway=True)
    reasons = {k.target: k.reason for k in rest.kept}
    assert "fast pathway" in reasons["fast_c2_conv/kernel"] and "lateral" in reasons["fuse_conv/kernel"]
    assert "copy_head=False" in reasons["head/kernel"]
    assert rest.unmatched_target == ["odd_conv (Conv3D, (1, 1, 1, 4, 4), (4,))"]


def test_check_plan_lists_every_problem():
    plan = inf.Plan(unused_source=["a (Conv2D)"], unmatched_target=["b (STSConv3D)"], mismatched=["c -> c: kernel"])
    plan.stride_problem = True
    with pytest.raises(inf.InflationError) as error:
        inf.check_plan(plan, "tiny3d", "tiny2d", layout_hint="Build it in layout X.")
    message = str(error.value)
    for part in ("1 source conv/BN layers unused", "a (Conv2D)", "1 3D layers with no source weights", "b (STSConv3D)",
                 "1 mismatched", "c -> c: kernel", "Build it in layout X.", "docs/inflation.md"):
        assert part in message, part
    assert (error.value.unused_source, error.value.unmatched_target, error.value.mismatched) == (
        ["a (Conv2D)"], ["b (STSConv3D)"], ["c -> c: kernel"]
    )
    inf.check_plan(inf.Plan(), "tiny3d", "tiny2d")  # a clean plan passes
