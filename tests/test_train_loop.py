"""The training loop in-process on toy in-memory data: learning, replicas, accumulation,
precision, divergence, eval / best checkpoint, resume, restore_model, image pre-training."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.train_helpers import eval_fn, in_memory_dataset_fn, model_weights, tiny_config, toy_examples
from tfsts.training import losses, loop, modeling
from tfsts.training import restore_model


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def _train(config, workdir, examples=None, strategy=None, eval_data=None):
    examples = toy_examples() if examples is None else examples
    return loop.train(
        config, str(workdir), strategy=strategy,
        train_data=in_memory_dataset_fn(examples, config.train.global_batch_size), eval_data=eval_data,
    )


def _final_model(config, workdir):
    model = modeling.build_model_from_config(config)
    restore_model(model, str(workdir))
    return model


def test_toy_training_lowers_loss_and_writes_logs(tmp_path):
    c = tiny_config(steps=10)
    result = _train(c, tmp_path)
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert len(losses) == 10 and result.step == 10
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:2])
    records = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert {"lr", "clips_per_s", "input_wait_fraction", "train/toy/accuracy"} <= set(records[-1])
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tf.io.gfile.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(
        ["checkpoint"] + [f"ckpt-{n}.{ext}" for n in (6, 8, 10) for ext in ("index", "data-00000-of-00001")]
    )
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["model"]["name"] == "resnet3d_10" and saved["data"]["sources"]["toy"]["num_classes"] == 3


@pytest.mark.slow  # ~35 s on 2 busy cores
def test_mirrored_two_replicas_equal_one_replica(tmp_path):
    """Same global batch (4) on one device and on two logical CPUs (2 per replica), SyncBN,
    no dropout: equal weights up to float32 summation order (rtol 1e-4, atol 1e-5)."""
    c = tiny_config(steps=2)
    c.model.sync_bn = True
    c.optimizer.clip_norm = 1.0
    _train(c, tmp_path / "one", strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert mirrored.num_replicas_in_sync == 2
    _train(c, tmp_path / "two", strategy=mirrored)
    one, two = _final_model(c, tmp_path / "one"), _final_model(c, tmp_path / "two")
    start = modeling.build_model_from_config(c)  # not a no-op: training moved the weights
    assert max(np.abs(a - b).max() for a, b in zip(model_weights(one), model_weights(start))) > 1e-3
    for a, b in zip(model_weights(one), model_weights(two)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    """2 micro-batches of 2 == one batch of 4 (frozen BN, so statistics don't depend on
    the batch split)."""
    big = tiny_config(steps=3, batch=4)
    big.model.freeze_bn = True
    big.optimizer.update(lr=1e-3, clip_norm=1.0)  # frozen fresh BN does not normalise: keep steps small
    _train(big, tmp_path / "big")
    small = tiny_config(steps=3, batch=2)
    small.model.freeze_bn = True
    small.train.grad_accum_steps = 2
    small.optimizer.update(lr=1e-3, clip_norm=1.0, lr_reference_batch=4)  # lr scales with the effective batch 2 x 2
    _train(small, tmp_path / "small")
    for a, b in zip(model_weights(_final_model(big, tmp_path / "big")), model_weights(_final_model(small, tmp_path / "small"))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_freeze_bn_keeps_statistics_and_bn_momentum_is_set(tmp_path):
    c = tiny_config(steps=2)
    c.model.freeze_bn = True
    c.optimizer.update(lr=1e-3, clip_norm=1.0)
    model = modeling.build_model_from_config(c)
    bns = modeling.batch_norm_layers(model)
    assert bns and all(not l.trainable for l in bns)
    before = [np.array(w) for l in bns for w in l.weights]
    _train(c, tmp_path)
    after = [np.array(w) for l in modeling.batch_norm_layers(_final_model(c, tmp_path)) for w in l.weights]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    c2 = tiny_config()
    c2.model.bn_momentum = 0.99
    assert {l.momentum for l in modeling.batch_norm_layers(modeling.build_model_from_config(c2))} == {0.99}


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains(tmp_path, precision):
    c = tiny_config(steps=4)
    c.train.precision = precision
    # tfsts.models.blocks.MaxPool3D calls np.finfo on bfloat16 (fails); reported, not ours to fix.
    c.model.kwargs.no_max_pool = True
    c.optimizer.clip_norm = 5.0
    result = _train(c, tmp_path)
    losses = [r["loss"] for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    keras.mixed_precision.set_dtype_policy("float32")
    assert _final_model(c, tmp_path).weights[0].dtype == "float32"


def test_nan_loss_stops_naming_step_and_last_good_checkpoint(tmp_path):
    c = tiny_config(steps=10)
    c.train.checkpoint_every = 1
    c.optimizer.lr = 1e30
    with pytest.raises(loop.TrainingDivergedError) as info:
        _train(c, tmp_path)
    message = str(info.value)
    step = int(message.split(" at step ")[1].split(";")[0])
    assert step >= 2
    assert f"last good checkpoint: {tmp_path}/checkpoints/ckpt-{step - 1}." in message


def test_head_label_mismatch_fails_with_message(tmp_path):
    c = tiny_config(num_classes=2, steps=2)  # the toy data has 3 classes
    with pytest.raises(losses.LabelError) as info:
        _train(c, tmp_path)
    assert str(info.value) == (
        "source 'toy': a label is >= the head size 2. The records' label map has more classes than "
        "config.data.sources.toy.num_classes; set it to the label map's length."
    )


def test_periodic_eval_best_checkpoint_and_eval_only(tmp_path):
    examples = toy_examples()
    c = tiny_config(steps=6)
    c.train.eval_every = 3
    result = _train(c, tmp_path, examples, eval_data=eval_fn(examples))
    evals = [r for r in result.history if "eval/top1" in r]
    assert [r["step"] for r in evals] == [3, 6]
    best = json.load(open(tmp_path / "checkpoints" / "best" / "best.json"))
    assert best["value"] == max(r["eval/top1"] for r in evals)
    assert best["step"] == max(evals, key=lambda r: r["eval/top1"])["step"]  # first of equal values
    # Independent top-1 of the final weights.
    model = _final_model(c, tmp_path)
    predicted = np.argmax(model(examples["frames"].astype(np.float32), training=False), -1)
    assert result.eval["toy/top1"] == pytest.approx(np.mean(predicted == examples["label"]))
    c.train.eval_only = True
    only = _train(c, tmp_path, examples, eval_data=eval_fn(examples))
    assert only.step == 6 and only.eval["top1"] == pytest.approx(result.eval["top1"])
    assert json.load(open(tmp_path / "eval.json"))["eval/top1"] == pytest.approx(result.eval["top1"])


@pytest.mark.slow  # ~30 s
def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    """Stop at 4 of 8 steps, rerun: resumes at 4 (optimizer, iterator, step restored) and
    ends equal to an uninterrupted run."""
    c = tiny_config(steps=8)
    c.deterministic = True
    _train(c, tmp_path / "full")
    c.train.stop_at_step = 4
    assert _train(c, tmp_path / "split").step == 4
    c.train.stop_at_step = 0
    resumed = _train(c, tmp_path / "split")
    assert [r["step"] for r in resumed.history] == [5, 6, 7, 8]
    for a, b in zip(model_weights(_final_model(c, tmp_path / "full")), model_weights(_final_model(c, tmp_path / "split"))):
        np.testing.assert_array_equal(a, b)


def test_restore_model_mismatch_names_checkpoint_and_config(tmp_path):
    c = tiny_config(steps=2)
    _train(c, tmp_path)
    other = tiny_config(num_classes=7)
    with pytest.raises(ValueError, match=r"ckpt-2 does not fit model 'resnet3d_10' \(checkpoint from: model.name=resnet3d_10, num_classes=\{'toy': 3\}\)"):
        restore_model(modeling.build_model_from_config(other), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        restore_model(modeling.build_model_from_config(c), str(tmp_path / "nothing"))


def test_two_sources_one_head_each(tmp_path):
    a = toy_examples(24, num_classes=3, source=0)
    b = toy_examples(24, num_classes=2, seed=1, source=1)
    mixed = {k: np.concatenate([a[k], b[k]]) for k in a}
    order = np.random.default_rng(0).permutation(48)
    mixed = {k: v[order] for k, v in mixed.items()}
    # Batch 8: at 4 (about two clips per head and BN over four) single steps' losses jumped from
    # 1 to 3.9 and the last-3 / first-3 comparison went either way with the CPU kernels (TF's
    # Eigen against oneDNN); at 8 both fall from 1.0 to 0.00 by step 10.
    c = tiny_config(num_classes=(3, 2), sources=("kinetics", "ssv2"), steps=12, batch=8)
    model = modeling.build_model_from_config(c)
    assert {k: v.shape[-1] for k, v in model.output.items()} == {"kinetics": 3, "ssv2": 2}
    result = _train(c, tmp_path, mixed)
    assert {"train/kinetics/accuracy", "train/ssv2/accuracy"} <= set().union(*result.history)
    losses = [r["loss"] for r in result.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_image_pretraining_then_video_finetuning_starts_from_pretrained_weights(tmp_path):
    """T=1 images with BCE and LAMB, 5 classes; then 4-frame video, 3 classes, from that run:
    every backbone layer starts equal to the pre-trained one, the head does not."""
    pre = tiny_config(num_classes=3, steps=3)
    pre.data.sources["toy"].kind = "image"
    pre.data.sources["toy"].num_frames = 1
    pre.train.loss = "bce"
    pre.optimizer.update(name="lamb", lr=0.005, weight_decay=0.02)
    pre.data.sources["toy"].num_classes = 5
    images = toy_examples(num_frames=1)
    _train(pre, tmp_path / "pre", images)
    pretrained = _final_model(pre, tmp_path / "pre")

    fine = tiny_config(num_classes=3, steps=1)
    fine.init.checkpoint = str(tmp_path / "pre")
    model = modeling.build_model_from_config(fine)
    report = modeling.initialize_from_checkpoint(model, fine)
    assert report["skipped"] == ["head"]
    by_name = {l.name: l for l in pretrained.layers}
    backbone = [l for l in model.layers if l.weights and l.name != "head"]
    assert len(backbone) == len(report["copied"]) > 10
    for layer in backbone:
        for a, b in zip(layer.get_weights(), by_name[layer.name].get_weights()):
            np.testing.assert_array_equal(a, b)
    result = _train(fine, tmp_path / "fine")
    assert result.init_report["skipped"] == ["head"] and result.step == 1


@pytest.mark.slow  # XLA compile on CPU
def test_xla_matches_the_plain_graph(tmp_path):
    c = tiny_config(steps=2)
    _train(c, tmp_path / "plain")
    c.train.jit_compile = True
    _train(c, tmp_path / "xla")
    for a, b in zip(model_weights(_final_model(c, tmp_path / "plain")), model_weights(_final_model(c, tmp_path / "xla"))):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
