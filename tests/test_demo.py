"""tfsts.demo: the end-to-end demo at a tiny size (slow: minutes, it trains six
models), plus fast checks of its command line and its summary arithmetic."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsts import demo
from tfsts.evaluation import metrics

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- Fast ----------------------------------------------------------------------------------
def test_command_line_defaults_and_seeds(tmp_path):
    options = demo.parse_args([])
    assert options.seeds == (0,)
    assert options.workdir == (Path.cwd() / demo.DEFAULT_WORKDIR).absolute()
    assert demo.parse_args(["--full"]).seeds == (0, 1, 2)
    assert demo.parse_args(["--seeds", "3,5", "--workdir", str(tmp_path)]).seeds == (3, 5)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "a,b"], "write integers"),
    (["--seeds", "1,1"], "distinct"),
    (["--full", "--seeds", "1"], "not both"),
    (["--data_scale", "0"], "must be > 0"),
    (["--steps", "-1"], "must be >= 0"),
    (["--nonsense"], "unrecognized arguments"),
])
def test_command_line_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        demo.parse_args(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_existing_workdir_is_kept_unless_overwrite(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert demo.main(["--workdir", str(tmp_path)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert demo.main(["--workdir", str(tmp_path), "--overwrite"]) == 1  # not a demo folder
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def _result(top1_by_source):
    """A result JSON whose top-1 is exactly the given fraction (10 videos per source)."""
    out = {}
    for source, acc in top1_by_source.items():
        right = int(round(acc * 10))
        out[source] = {"metrics": {"top1_acc": right / 10}}
    return out


def test_summary_means_spreads_and_paired_differences():
    evals = {
        "scratch": {0: _result({"kinetics": 0.3}), 1: _result({"kinetics": 0.5})},
        "image_plain": {0: _result({"kinetics": 0.6}), 1: _result({"kinetics": 0.6})},
        "image_sts": {0: _result({"kinetics": 0.7}), 1: _result({"kinetics": 0.5})},
        "ssv2_image_sts": {0: _result({"ssv2": 0.2}), 1: _result({"ssv2": 0.4})},
        "cotrain_sts": {0: _result({"kinetics": 0.7, "ssv2": 0.3, "images": 0.9}),
                        1: _result({"kinetics": 0.7, "ssv2": 0.5, "images": 0.8})},
    }
    rows = {r[0]: r for r in demo.summary_rows(evals, [0, 1])}
    assert rows["scratch"][2] == f"40.0 ± {100 * np.std([0.3, 0.5], ddof=1):.1f}"  # 14.1
    assert rows["image_plain"][2] == "60.0 ± 0.0"
    assert rows["cotrain_sts"][2:] == ["70.0 ± 0.0", "40.0 ± 14.1", "85.0 ± 7.1"]
    assert rows["scratch"][3] == "-"
    claims = demo.comparisons(evals, [0, 1])
    assert claims[0] == ("image init vs scratch (no STS)", "Kinetics-layout", "+20.0 ± 14.1 points (2/2 seeds better)")
    assert claims[1][2] == "+0.0 ± 14.1 points (1/2 seeds better)"  # +10 and -10
    assert claims[3][2] == "+10.0 ± 0.0 points (2/2 seeds better)"
    one_seed = demo.summary_rows({k: {0: v[0]} for k, v in evals.items()}, [0])
    assert one_seed[0][2] == "30.0"  # no spread from one seed


# --- The whole demo, tiny ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "work"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "tfsts.demo", "--workdir", str(work), "--data_scale", "0.1",
         "--steps", "3", "--pretrain_steps", "2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, proc.stdout


@pytest.mark.slow
def test_demo_prints_stages_and_the_table(tiny_demo):
    work, stdout = tiny_demo
    assert f"working in {work}" in stdout
    for i in range(1, 8):
        assert f"[{i}/7]" in stdout
    assert "one seed" in stdout and "--full" in stdout
    assert "| scratch | from scratch, no STS |" in stdout
    assert "co-trained vs single dataset" in stdout


@pytest.mark.slow
def test_demo_eval_json_has_every_validation_video_with_consistent_metrics(tiny_demo):
    work, _ = tiny_demo
    with open(work / "data" / "demo_data.json") as f:
        items = json.load(f)["items"]
    truth = {
        "kinetics": {i["media_id"]: i["label"] for i in items["kinetics"] if i["split"] == "val"},
        "ssv2": {i["media_id"]: i["label"] for i in items["ssv2"] if i["split"] == "validation"},
    }
    sources = {"pretrain_images": {"images"}, "scratch": {"kinetics"}, "image_plain": {"kinetics"},
               "image_sts": {"kinetics"}, "ssv2_image_sts": {"ssv2"}, "cotrain_sts": {"kinetics", "ssv2", "images"}}
    for variant, expected in sources.items():
        with open(work / "eval" / f"{variant}_seed0.json") as f:
            result = json.load(f)
        assert set(result) == expected, variant
        for source, entry in result.items():
            videos = entry["videos"]
            if source in truth:
                assert {v["media_id"]: v["label"] for v in videos} == truth[source], (variant, source)
                assert entry["metrics"]["num_views"] == 6
            else:
                assert len(videos) == sum(i["split"] == "validation" for i in items["images"])  # 20 at 0.1
            for v in videos:
                assert len(v["scores"]) == len(entry["class_names"])
                assert sum(v["scores"]) == pytest.approx(1.0, abs=1e-6)  # averaged probabilities
            rescored = metrics.metrics_from_result(entry)
            assert rescored["top1_acc"] == entry["metrics"]["top1_acc"]


@pytest.mark.slow
def test_demo_export_reloads_in_a_fresh_process_and_predictions_are_there(tiny_demo):
    work, _ = tiny_demo
    version = work / "export" / "ircsn_50" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
    with open(work / "predictions.json") as f:
        predictions = json.load(f)
    assert predictions["signatures"] == ["encoded_frames", "frames_uint8", "sequence_example", "serving_default"]
    assert len(predictions["answers"]) == 4 + 6  # every validation clip at --data_scale 0.1 (one per class)
    for answer in predictions["answers"]:
        assert set(answer["heads"]) == {"kinetics", "ssv2", "images"}
        assert answer["clips"] == 2
        for head in answer["heads"].values():
            assert sum(head["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    # Again here, by hand, in another process without tfsts: float frames through serving_default.
    script = (
        "import sys, numpy as np; sys.modules['tfsts'] = None; import tensorflow as tf;"
        f"m = tf.saved_model.load({str(version)!r}); f = m.signatures['serving_default'];"
        "out = f(frames=tf.constant(np.full((2, 8, 32, 32, 3), 128.0, np.float32)));"
        "print(sorted(out), out['kinetics_probabilities'].shape, float(tf.reduce_sum(out['ssv2_probabilities'][0])))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=str(work))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'kinetics_top_k_labels'" in proc.stdout and "(2, 4)" in proc.stdout
    assert float(proc.stdout.split()[-1]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_demo_pictures_and_summary(tiny_demo):
    work, _ = tiny_demo
    with open(work / "summary.json") as f:
        summary = json.load(f)
    for name in summary["pictures"]:
        with Image.open(work / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert set(summary["pictures"]) >= {"learning_curves.png", "predictions.png", "confusion_kinetics.png",
                                        "confusion_ssv2.png"}
    assert set(summary["top1"]) == {"pretrain_images", "scratch", "image_plain", "image_sts", "ssv2_image_sts",
                                    "cotrain_sts"}
    assert summary["records"]["kinetics"] == {"train": 16, "val": 4}
    assert 0.0 <= summary["top1"]["cotrain_sts"]["0"]["kinetics"] <= 1.0
    assert (work / "summary.md").read_text().startswith("# tfsts demo summary")
