"""The input contract of tfsts.models (issue 7) and build_model's argument checks (issue 11).

Every model from build_model / build_backbone takes RGB [B, T, H, W, 3] in 0..255,
float or uint8, and starts with `input_normalization` ("torch" unless inflated). Checked
here: the first layer of one model per family builder (every card: slow), uint8 ==
float, the "torch" numbers against a NumPy normalisation with the ImageNet mean/std,
unchanged names / weights / counts against the raw family builder, the mode after a
`.keras` reload in a fresh process; `num_classes` validation; the STS shape error as a
build_model user meets it, with suggested frame sizes checked by building at them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import model_test_utils as mtu
from tfsts import models
from tfsts.flops import count_macs
from tfsts.models import cards
from tfsts.models.graph import with_input_normalization

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_MEAN_255 = np.array([123.675, 116.28, 103.53])  # the contract's numbers (CONTRACTS.md / README)
IMAGENET_STD_255 = np.array([58.395, 57.12, 57.375])
ONE = (1, 1, 1, 1)

# One cheap instance per family builder: (name, input shape, overrides).
PER_BUILDER = [
    ("resnet3d_10", (4, 32, 32, 3), {}),
    ("preact_resnet3d_200", (4, 32, 32, 3), {"depth": 10}),
    ("wide_resnet3d_50", (4, 32, 32, 3), {"k": 1, "blocks": ONE}),
    ("resnext3d_101", (4, 32, 32, 3), {"blocks": ONE}),
    ("densenet3d_121", (16, 32, 32, 3), {"block_config": ONE}),
    ("i3d_r50", (4, 32, 32, 3), {}),
    ("slowonly_r50", (4, 32, 32, 3), {}),
    ("slowfast_r50_8x8", (8, 32, 32, 3), {}),
    ("r2plus1d_18", (8, 32, 32, 3), {}),
    ("ircsn_50", (4, 32, 32, 3), {"stage_blocks": ONE}),
    ("x3d_s", (4, 32, 32, 3), {"stage_blocks": ONE}),
    ("videoswin_tiny", (4, 32, 32, 3), {}),
]


def uint8_clip(shape, batch=2, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, *shape)).astype("uint8")


def assert_contract_layers(model: keras.Model, mode: str) -> None:
    assert isinstance(model.layers[0], keras.layers.InputLayer)
    assert model.layers[1].name == "input_normalization"
    assert model.get_layer("input_normalization").mode == mode
    assert model.input.shape[-1] == 3


def test_builders_in_the_table_cover_every_family():
    assert {cards.CARDS[name].function for name, _, _ in PER_BUILDER} == {c.function for c in cards.CARDS.values()}


@pytest.mark.parametrize("name,shape,overrides", PER_BUILDER, ids=[p[0] for p in PER_BUILDER])
def test_every_family_starts_with_torch_input_normalization(name, shape, overrides):
    assert cards.CARDS[name].normalization == "torch"
    assert_contract_layers(models.build_backbone(name, input_shape=shape, **overrides), "torch")
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(cards.CARDS))
def test_every_card_starts_with_input_normalization(name):
    shape = (16, 32, 32, 3) if name.startswith("densenet") else (8, 32, 32, 3)
    model = models.build_model(name, 5, input_shape=shape)
    assert_contract_layers(model, cards.CARDS[name].normalization_for(inflated=False))
    keras.backend.clear_session()


def test_uint8_and_float_clips_give_the_same_output_and_torch_is_imagenet_mean_std():
    shape = (4, 32, 32, 3)
    model = models.build_model("x3d_s", 6, input_shape=shape, stage_blocks=ONE, dropout=0.0)
    mtu.perturb_batch_norms(model)
    clip = uint8_clip(shape)
    from_uint8 = np.asarray(model(clip, training=False))
    from_float = np.asarray(model(clip.astype("float32"), training=False))
    np.testing.assert_array_equal(from_uint8, from_float)
    np.testing.assert_array_equal(model.predict(clip, verbose=0), model.predict(clip.astype("float32"), verbose=0))
    # "torch": (x - mean) / std with the ImageNet numbers on 0..255, fed to the same layers
    # behind an identity normalisation.
    after_norm = with_input_normalization(model, "none")
    normalised = ((clip.astype("float64") - IMAGENET_MEAN_255) / IMAGENET_STD_255).astype("float32")
    np.testing.assert_allclose(np.asarray(after_norm(normalised, training=False)), from_float, rtol=1e-4, atol=1e-4)


def test_normalization_changes_no_names_weights_or_counts():
    """build_backbone = the family builder's model with one weightless layer in front."""
    card = cards.CARDS["slowonly_r50"]
    shape = (4, 64, 64, 3)
    raw = card.builder()(shape, name=card.name, **card.kwargs, sts=True)
    contract = models.build_backbone("slowonly_r50", input_shape=shape)
    names = [layer.name for layer in raw.layers]
    assert [layer.name for layer in contract.layers] == names[:1] + ["input_normalization"] + names[1:]
    assert not contract.get_layer("input_normalization").weights
    assert [(w.path, tuple(w.shape)) for w in contract.weights] == [(w.path, tuple(w.shape)) for w in raw.weights]
    assert models.count_params(contract) == models.count_params(raw)
    assert count_macs(contract) == count_macs(raw)
    keras.backend.clear_session()


def test_with_input_normalization_replaces_another_mode():
    model = models.build_backbone("resnet3d_10", input_shape=(2, 32, 32, 3))
    mtu.perturb_batch_norms(model)
    caffe = with_input_normalization(model, "caffe")
    assert_contract_layers(caffe, "caffe")
    assert model.get_layer("input_normalization").mode == "torch"  # the original is left as it was
    assert [layer.name for layer in caffe.layers] == [layer.name for layer in model.layers]
    for a, b in zip(model.weights, caffe.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert with_input_normalization(caffe, "caffe") is caffe
    clip = uint8_clip((2, 32, 32, 3), batch=1).astype("float32")
    after_norm = with_input_normalization(caffe, "none")
    bgr = clip[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32")
    np.testing.assert_allclose(np.asarray(caffe(clip)), np.asarray(after_norm(bgr)), rtol=1e-5, atol=1e-5)


def test_features_of_any_layer_can_be_taken_from_the_model():
    """The model's layers belong to its own graph only (not to the family builder's):
    `keras.Model(model.input, model.get_layer(name).output)` works."""
    model = models.build_model("r2plus1d_18", 3, input_shape=(4, 32, 32, 3))
    for candidate in (model, with_input_normalization(model, "tf")):
        stem = keras.Model(candidate.input, candidate.get_layer("conv1_spatial_conv").output)
        assert stem.layers[1].name == "input_normalization"
        assert tuple(stem.output.shape) == (None, 4, 16, 16, 45)


_RELOAD = """
import json, sys
import numpy as np
from tfsts import models
out = {}
for path in sys.argv[1:]:
    model = models.load_model(path)
    clip = np.load(path + ".clip.npy")
    expected = np.load(path + ".out.npy")
    out[path] = dict(first=model.layers[1].name, mode=model.get_layer("input_normalization").mode,
                     err=float(np.abs(np.asarray(model(clip, training=False)) - expected).max()))
print("RESULT" + json.dumps(out))
"""


def test_reloaded_model_keeps_its_mode_in_a_fresh_process(tmp_path):
    shape = (4, 32, 32, 3)
    torch_model = models.build_model("ircsn_50", 4, input_shape=shape, stage_blocks=ONE)
    caffe_model = with_input_normalization(models.build_model("resnet3d_10", 4, input_shape=shape), "caffe")
    paths = {}
    for mode, model in (("torch", torch_model), ("caffe", caffe_model)):
        mtu.perturb_batch_norms(model)
        path = os.path.join(str(tmp_path), f"{model.name}_{mode}.keras")
        clip = uint8_clip(shape, batch=1, seed=len(mode))
        model.save(path)
        np.save(path + ".clip.npy", clip)
        np.save(path + ".out.npy", np.asarray(model(clip, training=False)))
        paths[path] = mode
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", _RELOAD, *paths], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    for path, mode in paths.items():
        assert result[path]["first"] == "input_normalization"
        assert result[path]["mode"] == mode
        assert result[path]["err"] < 1e-4, result[path]


# ------------------------------------------------------------ num_classes (issue 11)


@pytest.mark.parametrize(
    "num_classes", ["400", 0, -3, 2.5, True, None, {}, {"k400": 0}, {"k400": "400"}, {"": 3}, {"k400": 400, "ssv2": -1}],
    ids=repr,
)
def test_num_classes_is_validated_naming_the_argument(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        models.build_model("x3d_s", num_classes, input_shape=(4, 32, 32, 3), stage_blocks=ONE)


def test_valid_num_classes_build():
    single = models.build_model("x3d_s", np.int64(3), input_shape=(4, 32, 32, 3), stage_blocks=ONE)
    assert tuple(single.output.shape) == (None, 3)
    multi = models.build_model("x3d_s", {"k400": 4, "ssv2": 2}, input_shape=(4, 32, 32, 3), stage_blocks=ONE)
    assert {k: tuple(v.shape) for k, v in multi.output.items()} == {"k400": (None, 4), "ssv2": (None, 2)}


# ------------------------------------------------------- STS shape errors (issue 11)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length of a conv / pool with symmetric (k - 1) / 2 padding (PyTorch's formula)."""
    return (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1


def test_nearest_sts_sizes_against_the_conv_formula():
    """X3D: a stride-2 3x3 stem, then a stride-2 depthwise (STS case A) conv starting
    each of 4 stages. Oracle: walk the conv output formula; a size works when every
    case-A conv's input is even."""

    def works(size: int) -> bool:
        h = _conv_out(size, 3, 2)
        for _ in range(4):
            if h % 2:
                return False
            h = _conv_out(h, 3, 2)
        return True

    constraints = [(2, 2), (4, 2), (8, 2), (16, 2)]
    for size in (31, 32, 48, 100, 160, 182, 224):
        expected = [size] if works(size) else [
            max(n for n in range(1, size) if works(n)), min(n for n in range(size + 1, 4 * size) if works(n))
        ]
        assert models.nearest_sts_sizes(size, constraints) == expected, size


def test_sts_shape_error_says_what_a_build_model_user_can_do():
    shape = (4, 48, 48, 3)
    with pytest.raises(ValueError) as error:
        models.build_model("x3d_s", 5, input_shape=shape, stage_blocks=ONE)
    message = str(error.value)
    assert "x3d_s with sts=True at input_shape=(4, 48, 48, 3)" in message
    assert "conv5_block1_2_conv: STS cannot take this conv" in message and "divisible" in message
    assert "build_model('x3d_s', ..., sts=False)" in message
    assert "build this conv with sts=False" not in message
    assert "height 32 or 63, width 32 or 63" in message
    for size in (32, 63):  # the suggestions really build with STS on
        models.build_backbone("x3d_s", input_shape=(4, size, size, 3), stage_blocks=ONE)
    for size in (33, 47, 62):
        with pytest.raises(ValueError, match="STS cannot take this conv"):
            models.build_backbone("x3d_s", input_shape=(4, size, size, 3), stage_blocks=ONE)
    models.build_model("x3d_s", 5, input_shape=shape, stage_blocks=ONE, sts=False)


def test_sts_error_not_about_the_frame_size_suggests_sts_false_only():
    with pytest.raises(ValueError, match="temporal stride") as error:
        models.build_backbone("ircsn_50", input_shape=(4, 32, 32, 3), temporal_strides=(1, 2, 2, 2), stage_blocks=ONE)
    message = str(error.value)
    assert "build_model('ircsn_50', ..., sts=False)" in message and "frame size" not in message


@pytest.mark.parametrize("name, shape, overrides", [
    ("resnet3d_10", (4, 32, 32, 3), {}),
    ("x3d_s", (4, 32, 32, 3), {"stage_blocks": ONE}),  # its own head builder
])
def test_heads_start_as_the_reference_heads_do(name, shape, overrides):
    """The classifier is initialised normal(0, 0.01) with zero bias (mmaction2 / pytorchvideo):
    every head of a co-training model too; the first training step's softmax loss is about ln(C)
    (Keras' default Glorot init gave logits of std ~1.5 and a first loss well above chance)."""
    keras.utils.set_random_seed(0)
    model = models.build_model(name, {"a": 400, "b": 7}, input_shape=shape, sts=False, **overrides)
    for head, classes in (("head_a", 400), ("head_b", 7)):
        kernel, bias = (np.asarray(w) for w in model.get_layer(head).weights)
        assert kernel.shape[-1] == classes
        np.testing.assert_allclose(kernel.std(), 0.01, rtol=0.1 if kernel.size > 10_000 else 0.3)
        assert abs(kernel.mean()) < 0.002 and not bias.any()
    clip = np.random.default_rng(0).uniform(0, 255, size=(4, *shape)).astype("float32")
    logits = np.asarray(model(clip, training=True)["a"], dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    loss = -(shifted[:, 0] - np.log(np.exp(shifted).sum(axis=1)))
    # logits ~ N(0, (0.01 |features|)^2), loss ~ ln C + var / 2 (dropout doubles the kept
    # features). Keras' Glorot default gave X3D-S a first loss of 3.5 on 10 classes (ln 10 = 2.3).
    assert np.all(loss > np.log(400) - 0.5) and np.all(loss < np.log(400) + 1.0), loss
    assert logits.std() < 1.0
