"""RandAugment in the training step: per-source config fields, one draw per clip applied to
the chosen source's clips only, and its RNG state in the checkpoint (exact resumes)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.train_helpers import in_memory_dataset_fn, model_weights, tiny_config, toy_examples
from tfsts.training import config as config_lib
from tfsts.training import loop, modeling, restore_model

T, S = 4, 32


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def _static_clips(n, seed=0):
    """n clips whose T frames are the same textured image (a per-frame draw would show)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 1, S, S, 3)).astype(np.uint8)
    images[:, :, S // 4 : S // 2] = 240  # a bright band: geometry ops move it
    return np.repeat(images, T, axis=1)


def test_fields_are_validated_and_select_their_sources():
    c = tiny_config(sources=("kinetics", "imagenet"), num_classes=(3, 3))
    assert (c.data.sources.kinetics.randaugment_magnitude, c.data.sources.kinetics.randaugment_num_ops) == (0.0, 2)
    assert config_lib.randaugment_sources(c) == {}
    c.data.sources.imagenet.randaugment_magnitude = 7.0
    index = list(c.data.sources).index("imagenet")  # the batches' "source" (ConfigDict order)
    assert config_lib.randaugment_sources(c) == {index: (2, 7.0)}
    c.data.sources.imagenet.randaugment_num_ops = 0
    assert config_lib.randaugment_sources(c) == {}
    config_lib.validate(c)
    c.data.sources.imagenet.randaugment_magnitude = 11.0
    with pytest.raises(config_lib.ConfigError, match=r"config.data.sources.imagenet.randaugment_magnitude = 11.0: .*0..10 scale"):
        config_lib.validate(c)
    c.data.sources.imagenet.randaugment_magnitude = 7.0
    c.data.sources.imagenet.randaugment_num_ops = -1
    with pytest.raises(config_lib.ConfigError, match=r"config.data.sources.imagenet.randaugment_num_ops = -1"):
        config_lib.validate(c)
    assert config_lib.unknown_key_message(c, "data.sources.imagenet.randaugment_magnitude") is None
    assert "nearest valid key: config.data.sources.imagenet.randaugment_magnitude" in config_lib.unknown_key_message(
        c, "data.sources.imagenet.randaugment_magnitud"
    )


def test_augments_only_the_chosen_source_one_draw_per_clip():
    """Mixed batch (3 clips per source) with RandAugment (m9, 2 ops) on "images": its clips
    change, every frame of a clip the same way (the frames were equal, they stay equal);
    the other source's clips are bit-identical; the same in a tf.function."""
    c = tiny_config(sources=("video", "images"), num_classes=(3, 3))
    c.data.sources.images.randaugment_magnitude = 9.0
    augments = loop.make_randaugments(c)
    chosen = list(c.data.sources).index("images")
    assert list(augments) == [chosen]
    frames = _static_clips(6)
    source = np.array([0, 1, 0, 1, 1, 0], np.int32)
    if chosen == 0:
        source = 1 - source
    batch = {"frames": tf.constant(frames), "label": tf.zeros(6, tf.int32), "source": tf.constant(source)}
    for run in (lambda b: loop.augment_sources(b, augments), tf.function(lambda b: loop.augment_sources(b, augments))):
        out = run(batch)["frames"].numpy()
        assert out.dtype == np.uint8 and out.shape == frames.shape
        np.testing.assert_array_equal(out[source != chosen], frames[source != chosen])
        for i in np.flatnonzero(source == chosen):
            assert not np.array_equal(out[i], frames[i]), f"clip {i} was not augmented"
            for t in range(1, T):
                np.testing.assert_array_equal(out[i, t], out[i, 0])
    # a batch without any clip of the source passes through untouched
    none = {**batch, "source": tf.fill([6], 1 - chosen)}
    np.testing.assert_array_equal(loop.augment_sources(none, augments)["frames"].numpy(), frames)


def _train(config, workdir, examples):
    return loop.train(config, str(workdir), train_data=in_memory_dataset_fn(examples, config.train.global_batch_size))


def _final_weights(config, workdir):
    model = modeling.build_model_from_config(config)
    restore_model(model, str(workdir))
    return model_weights(model)


@pytest.mark.slow  # ~45 s: three short runs
def test_the_train_step_augments_only_the_configured_source(tmp_path):
    """Deterministic 2-step runs on "toy" clips only: RandAugment on "toy" changes the
    weights; on "other" (no clip of it in the batches) they equal the run without it."""
    names = list(tiny_config(sources=("toy", "other")).data.sources)  # the "source" index order
    examples = toy_examples(16, source=names.index("toy"))

    def run(name, on):
        c = tiny_config(sources=("toy", "other"), num_classes=(3, 3), steps=2)
        c.deterministic = True
        c.train.checkpoint_every = 2
        if on:
            c.data.sources[on].randaugment_magnitude = 9.0
        _train(c, tmp_path / name, examples)
        return _final_weights(c, tmp_path / name)

    plain, on_toy, on_other = run("plain", None), run("toy", "toy"), run("other", "other")
    assert any(not np.array_equal(a, b) for a, b in zip(plain, on_toy))
    for a, b in zip(plain, on_other):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # ~30 s
def test_resume_with_randaugment_and_drop_path_equals_an_uninterrupted_run(tmp_path):
    """RandAugment m7 and drop-path 0.2 on, deterministic: stop at 3 of 6 steps, rerun: the
    same weights as the uninterrupted run (their RNG states are in the checkpoint)."""
    examples = toy_examples(24)
    c = tiny_config(steps=6)
    c.deterministic = True
    c.train.checkpoint_every = 3
    c.model.drop_path = 0.2
    c.data.sources.toy.randaugment_magnitude = 7.0
    _train(c, tmp_path / "full", examples)
    c.train.stop_at_step = 3
    assert _train(c, tmp_path / "split", examples).step == 3
    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "split" / "checkpoints" / "ckpt-3"))]
    assert any(name.startswith("randaugment/") for name in saved)
    # the saved RandAugment state has advanced past its seed (a fresh layer's would redraw steps 1-3)
    initial = [np.array(v) for v in loop.randaugment_state_variables(loop.make_randaugments(c))]
    reader = tf.train.load_checkpoint(str(tmp_path / "split" / "checkpoints" / "ckpt-3"))
    stored = [reader.get_tensor(f"randaugment/{i}/.ATTRIBUTES/VARIABLE_VALUE") for i in range(len(initial))]
    assert any(not np.array_equal(a, b) for a, b in zip(initial, stored))
    c.train.stop_at_step = 0
    assert [r["step"] for r in _train(c, tmp_path / "split", examples).history] == [4, 5, 6]
    for a, b in zip(_final_weights(c, tmp_path / "full"), _final_weights(c, tmp_path / "split")):
        np.testing.assert_array_equal(a, b)
