"""`tfsts.predict` on real video files: the same answer as evaluation gives on the data_prep
record of the same file (decoded the same way), from an export and from a checkpoint; a
corrupt and a missing file each get a clear line while the others are answered; --save_gif."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import evaluation_helpers as H
from tfsts.evaluate import evaluate_checkpoint
from tfsts.export import export_checkpoint
from tfsts.predict import format_text, load_predictor, predict_files


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    paths = H.shared_run(tmp_path_factory)
    export_dir = paths["root"] / "export" / "toy"
    if not export_dir.exists():
        export_checkpoint(None, str(paths["workdir"]), str(export_dir))
    paths["export"] = export_dir
    scores = evaluate_checkpoint(None, str(paths["workdir"]), progress=False)["toy"]["videos"]
    paths["scores"] = {v["media_id"]: v["scores"] for v in scores}
    return paths


@pytest.fixture()
def bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # an mp4 header, then junk
    return corrupt, tmp_path / "missing.webm"


def test_export_predictions_equal_evaluation_of_the_same_video(run, bad_files):
    predictor = load_predictor(str(run["export"]))
    assert predictor.source == str(run["export"] / "1")
    corrupt, missing = bad_files
    videos = [str(run["videos"] / "vid00.mkv"), str(corrupt), str(missing), str(run["videos"] / "vid03.mkv")]
    # short_side=0 decodes like the test records were written (source size kept).
    results = predict_files(predictor, videos, top_k=2, short_side=0)
    assert [r["file"] for r in results] == videos
    for entry, media_id in ((results[0], "vid00.mkv"), (results[3], "vid03.mkv")):
        preds = entry["predictions"][""]
        expected = np.asarray(run["scores"][media_id])
        order = np.argsort(-expected, kind="stable")[:2]
        assert [p["index"] for p in preds] == list(order)
        assert [p["label"] for p in preds] == [["0", "1", "2"][i] for i in order]
        np.testing.assert_allclose([p["probability"] for p in preds], expected[order], rtol=1e-5, atol=1e-7)
    assert results[0]["num_frames"] == 12 and results[3]["num_frames"] == 15
    assert results[1]["error"].startswith("cannot decode (corrupt): FFmpeg cannot open it")
    assert "re-download or transcode the file" in results[1]["error"]
    assert results[2]["error"] == (
        "cannot decode (missing): no such file; the file is not under the videos/images root: check --videos_root and the file naming"
    )
    text = format_text(results)
    assert f"{corrupt}: error: cannot decode (corrupt)" in text
    assert text.splitlines()[0] == f"{videos[0]}:" and text.splitlines()[1].startswith("  1. ")


def test_checkpoint_predictions_equal_export_predictions(run):
    video = str(run["videos"] / "vid01.mkv")
    from_ckpt = predict_files(load_predictor(str(run["workdir"])), [video], short_side=0)[0]
    from_export = predict_files(load_predictor(str(run["export"] / "1")), [video], short_side=0)[0]
    a, b = from_ckpt["predictions"][""], from_export["predictions"][""]
    assert [p["index"] for p in a] == [p["index"] for p in b] and len(a) == 3  # top_k capped at 3 classes
    np.testing.assert_allclose([p["probability"] for p in a], [p["probability"] for p in b], rtol=1e-5, atol=1e-7)


def test_bad_model_path(tmp_path):
    from tfsts.export import ExportError

    with pytest.raises(ExportError, match=r"--model=.*nothing: no such file or directory; give an export"):
        load_predictor(str(tmp_path / "nothing"))


def test_cli_json_gif_and_exit_status(run, bad_files, tmp_path):
    corrupt, missing = bad_files
    video = str(run["videos"] / "vid02.mkv")
    gifs = tmp_path / "gifs"
    proc = subprocess.run(
        [sys.executable, "-m", "tfsts.predict", f"--model={run['export']}", "--json", "--save_gif",
         f"--output_dir={gifs}", "--short_side=0", video, str(corrupt), str(missing)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # some files failed; the others answered
    out = json.loads(proc.stdout)
    good, bad, gone = out["results"]
    np.testing.assert_allclose(
        good["predictions"][""][0]["probability"], max(run["scores"]["vid02.mkv"]), rtol=1e-5, atol=1e-7
    )
    assert "error" in bad and "error" in gone and "Traceback" not in proc.stderr
    with Image.open(good["gif"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == 14 and gif.size == (40, 32)
