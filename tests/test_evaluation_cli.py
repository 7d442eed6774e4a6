"""`tfsts.evaluate` and `tfsts.export` on a really trained checkpoint and data_prep records.

The reference for the per-video scores is built by hand: records parsed with the schema, frames
sampled with mmaction2 0.x's test formula written out here, three 32x32 crops at x = 0, 4, 8,
the restored model run on those views in process, softmax averaged (rtol 1e-5).
"""
import glob
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import evaluation_helpers as H
from tfsts.data import schema
from tfsts.evaluate import EvaluationError, evaluate_checkpoint, summary_table
from tfsts.evaluation import metrics_from_result
from tfsts.training import config as config_lib


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return H.shared_run(tmp_path_factory)


def _records(pattern):
    out = []
    for raw in tf.data.TFRecordDataset(sorted(glob.glob(pattern))):
        context, sequence = schema.parse_video(raw)
        out.append((context[schema.MEDIA_ID].numpy().decode(), int(context[schema.LABEL_INDEX]), sequence[schema.IMAGE_ENCODED].numpy()))
    return out


def _test_indices(n, clip_len=4, interval=2, num_clips=2):
    """mmaction2 0.x SampleFrames(test_mode=True): avg = (N - L*s + 1) / clips, start int(i*avg + avg/2)."""
    avg = (n - clip_len * interval + 1) / num_clips
    starts = [int(i * avg + avg / 2) for i in range(num_clips)] if n > clip_len * interval - 1 else [0] * num_clips
    return [[(s + k * interval) % n for k in range(clip_len)] for s in starts]


def _restored_model(run):
    from tfsts.training import build_model_from_config, restore_model

    config = config_lib.load_config_file(str(run["config"]))
    model = build_model_from_config(config)
    restore_model(model, str(run["workdir"]))
    return model


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("crop", [32, 24])
def test_scores_and_metrics_match_hand_built_views(run, tmp_path, crop):
    """crop 24: eval_crop_size below the training crop (the model then runs on free spatial dims)."""
    config = config_lib.load_config_file(str(run["config"]))
    config.data.sources.toy.eval_crop_size = crop
    out = tmp_path / "eval" / "result.json"
    results = evaluate_checkpoint(config, str(run["workdir"]), out=str(out), progress=False)
    saved = json.loads(out.read_text())
    assert list(saved) == ["toy"]
    entry = saved["toy"]
    assert entry["class_names"] == ["0", "1", "2"]  # data_prep's label_map.txt beside the shards
    assert entry["metrics"]["num_views"] == 6 and entry["metrics"]["num_videos"] == 6

    model = _restored_model(run)
    if crop != 32:
        from tfsts.evaluate import with_free_spatial_dims

        model = with_free_spatial_dims(model)
    by_id = {v["media_id"]: v for v in entry["videos"]}
    records = _records(run["pattern"])
    assert sorted(by_id) == sorted(r[0] for r in records)
    hits = []
    for media_id, label, jpegs in records:
        frames = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
        y = (32 - crop) // 2  # centred on the short side, start / centre / end of the long one
        views = [
            frames[idx][:, y : y + crop, x : x + crop]
            for idx in _test_indices(len(jpegs)) for x in (0, (40 - crop) // 2, 40 - crop)
        ]
        probs = _softmax(model(np.stack(views).astype(np.float32), training=False).numpy().astype(np.float64)).mean(0)
        np.testing.assert_allclose(by_id[media_id]["scores"], probs, rtol=1e-5, atol=1e-7, err_msg=media_id)
        assert by_id[media_id]["label"] == label
        hits.append(int(np.argmax(probs)) == label)
    assert entry["metrics"]["top1_acc"] == pytest.approx(np.mean(hits))
    assert entry["metrics"]["top5_acc"] == 1.0  # 3 classes
    assert metrics_from_result(entry)["top1_acc"] == entry["metrics"]["top1_acc"]
    png = out.parent / "result_confusion_toy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry["metrics"]["confusion_png"] == str(png)
    assert np.sum(entry["metrics"]["confusion_matrix"]) == 6
    assert results["toy"]["metrics"]["top1_acc"] == entry["metrics"]["top1_acc"]
    assert summary_table(results).startswith("toy: 6 videos x 6 views (prob): ")


def test_mismatched_checkpoint_names_checkpoint_and_config(run):
    config = config_lib.load_config_file(str(run["config"]))
    config.model.kwargs.widen_factor = 0.25
    with pytest.raises(EvaluationError) as info:
        evaluate_checkpoint(config, str(run["workdir"]), progress=False, config_path="cfg.py")
    message = str(info.value)
    assert "--config=cfg.py (model.name=resnet3d_10, num_classes={'toy': 3}) does not match" in message
    assert f"--checkpoint={run['workdir']}" in message and "ckpt-2" in message
    with pytest.raises(EvaluationError, match=r"--num_crops=2: must be 1 \(centre\) or 3"):
        evaluate_checkpoint(None, str(run["workdir"]), num_crops=2, progress=False)
    with pytest.raises(EvaluationError, match="--average_clips=mean"):
        evaluate_checkpoint(None, str(run["workdir"]), average="mean", progress=False)


def _cli(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


def test_evaluate_cli_overrides_views_and_averaging(run, tmp_path):
    out = tmp_path / "r.json"
    proc = _cli(
        "tfsts.evaluate", f"--config={run['config']}", f"--checkpoint={run['workdir']}", "--num_clips", "1",
        "--num_crops", "1", "--average_clips", "score", "--metrics", "top_k_accuracy", "--topk", "1,2", f"--out={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "toy: 6 videos x 1 views (score): top1_acc" in proc.stdout
    m = json.loads(out.read_text())["toy"]["metrics"]
    assert m["num_views"] == 1 and m["average_clips"] == "score" and "top2_acc" in m and "mean_class_accuracy" not in m


def test_evaluate_cli_bad_input_is_one_line(run, tmp_path):
    proc = _cli("tfsts.evaluate", f"--config={run['config']}", f"--checkpoint={tmp_path / 'nowhere'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"tfsts.evaluate: error: --checkpoint={tmp_path / 'nowhere'}: No checkpoint at")
    assert "Traceback" not in proc.stderr
    proc = _cli("tfsts.evaluate", f"--config={run['config']}", f"--checkpoint={run['workdir']}", "--config.model.nmae=x")
    assert proc.returncode == 2 and "unknown config key config.model.nmae; nearest valid key: config.model.name" in proc.stderr


def test_export_checkpoint_serves_what_evaluate_scores(run, tmp_path):
    """The exported sequence_example signature on the records == evaluate's scores per video."""
    from tfsts.export import ExportError, export_checkpoint

    export_dir = tmp_path / "export" / "toy"
    path = export_checkpoint(None, str(run["workdir"]), str(export_dir))
    assert path == export_dir / "1"
    with pytest.raises(ExportError, match=r"toy/1 already exists; pass --overwrite"):
        export_checkpoint(None, str(run["workdir"]), str(export_dir))
    loaded = tf.saved_model.load(str(path))
    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(run["pattern"])))]
    served = loaded.signatures["sequence_example"](sequence_example=tf.constant(records))
    results = evaluate_checkpoint(None, str(run["workdir"]), progress=False)
    by_id = {v["media_id"]: v["scores"] for v in results["toy"]["videos"]}
    ids = [schema.parse_video(r)[0][schema.MEDIA_ID].numpy().decode() for r in records]
    np.testing.assert_allclose(served["probabilities"].numpy(), [by_id[i] for i in ids], rtol=1e-5, atol=1e-7)
    assert [s.decode() for s in served["top_k_labels"].numpy()[0]] == [
        ["0", "1", "2"][i] for i in served["top_k_indices"].numpy()[0]
    ]


@pytest.mark.slow
def test_export_cli_refuses_existing_version_unless_overwrite(run, tmp_path):
    export_dir = tmp_path / "export" / "toy"
    args = [f"--checkpoint={run['workdir']}", f"--export_dir={export_dir}"]
    proc = _cli("tfsts.export", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"exported resnet3d_10 to {export_dir / '1'}" in proc.stdout
    before = (export_dir / "1" / "saved_model.pb").stat().st_mtime_ns
    again = _cli("tfsts.export", *args)
    assert again.returncode == 1 and f"{export_dir / '1'} already exists; pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (export_dir / "1" / "saved_model.pb").stat().st_mtime_ns == before
    replaced = _cli("tfsts.export", *args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert sorted(p.name for p in export_dir.iterdir()) == ["1"]


@pytest.mark.slow
def test_co_trained_model_evaluates_every_source_with_its_head(tmp_path):
    """Two sources (3 and 2 classes, dense 2x3 views and uniform 1x1) trained together."""
    kinetics = H.make_records(tmp_path / "k", 6, 3)
    ssv2 = H.make_records(tmp_path / "s", 4, 2, first_length=9)
    config_path, workdir = H.trained_run(tmp_path, {
        "kinetics": dict(pattern=kinetics, classes=3, sampling="dense", clips=2, crops=3),
        "ssv2": dict(pattern=ssv2, classes=2, sampling="uniform", clips=1, crops=1),
    })
    out = tmp_path / "eval.json"
    proc = _cli("tfsts.evaluate", f"--config={config_path}", f"--checkpoint={workdir}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert list(result) == ["kinetics", "ssv2"]
    assert result["kinetics"]["metrics"]["num_views"] == 6 and len(result["kinetics"]["videos"]) == 6
    assert result["ssv2"]["metrics"]["num_views"] == 1 and len(result["ssv2"]["videos"]) == 4
    assert all(len(v["scores"]) == 3 for v in result["kinetics"]["videos"])
    assert all(len(v["scores"]) == 2 for v in result["ssv2"]["videos"])
    assert (tmp_path / "eval_confusion_kinetics.png").exists() and (tmp_path / "eval_confusion_ssv2.png").exists()
    export_dir = tmp_path / "export" / "co"
    proc = _cli("tfsts.export", f"--config={config_path}", f"--checkpoint={workdir}", f"--export_dir={export_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = tf.saved_model.load(str(export_dir / "1"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(ssv2)))]
    served = loaded.signatures["sequence_example"](sequence_example=tf.constant(records))
    by_id = {v["media_id"]: v["scores"] for v in result["ssv2"]["videos"]}
    ids = [schema.parse_video(r)[0][schema.MEDIA_ID].numpy().decode() for r in records]
    np.testing.assert_allclose(served["ssv2_probabilities"].numpy(), [by_id[i] for i in ids], rtol=1e-5, atol=1e-7)
