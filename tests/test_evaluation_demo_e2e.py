"""The end-to-end demo module (tfsts.demo_e2e) at a few training steps: every stage runs, the
fresh-process predictions agree with the multi-view evaluation, the pictures are written."""
import json

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    from tfsts.demo_e2e import run_demo

    summary = run_demo(str(tmp_path / "demo"), steps=6)
    root = tmp_path / "demo"
    assert summary["steps"] == 6
    assert (root / "export" / "resnet3d_10" / "1" / "saved_model.pb").exists()
    result = json.loads((root / "eval" / "result.json").read_text())["demo"]
    assert result["metrics"]["num_videos"] == 8 and result["metrics"]["num_views"] == 6
    predictions = json.loads((root / "predict" / "predictions.json").read_text())
    assert len(predictions) == 8 and all("predictions" in p for p in predictions)
    # The export predicts what evaluation scored: same top-1 per validation video.
    by_id = {v["media_id"]: v["scores"] for v in result["videos"]}
    for p in predictions:
        scores = by_id[p["file"].rsplit("/", 1)[1]]
        assert p["predictions"][""][0]["index"] == max(range(len(scores)), key=lambda i: (scores[i], i))
    for picture in summary["pictures"]:
        with open(picture, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
