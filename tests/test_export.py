"""SavedModel export: every signature, reloaded in a fresh process where tfsts and Keras cannot be
imported, against the in-process model; saved_model_cli; warm-up records; bad requests; the
export directory rules.

The model is resnet3d_10 at 4 x 32 x 32 (the zoo's quickest to trace). Tolerance: the reloaded
graph serves the model with its BNs folded into the convs (export's default; the same function
up to float32 rounding, tests/test_models_graph.py), so outputs agree with the in-process model
to rtol 1e-5 / atol 1e-6 (measured differences are ~1e-7). JPEG inputs are compared to the in-process model on
`tf.io.decode_jpeg` of the same JPEG bytes, cropped by hand.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfsts.data import ViewSpec, schema
from tfsts.export import ExportError, export_model, read_metadata
from tfsts.models import build_model
from tfsts.models.graph import foldable_batch_norms

CLASSES = ["left", "right", "up"]
SPEC = ViewSpec(num_frames=4, frame_interval=2, num_clips=2, num_crops=3, short_side=32, crop_size=32)
RTOL, ATOL = 1e-5, 1e-6

# Runs in a fresh interpreter from an empty directory; any import of tfsts, keras or data_prep
# fails, so the SavedModel must stand on TensorFlow alone.
RELOAD_SCRIPT = textwrap.dedent(
    r"""
    import importlib.abc, importlib.machinery, pickle, sys
    BLOCKED = {"tfsts", "keras", "data_prep"}

    class BlockingLoader(importlib.abc.Loader):
        def create_module(self, spec):
            raise ImportError(f"{spec.name} is blocked in this process")

        def exec_module(self, module):
            raise ImportError(f"{module.__name__} is blocked in this process")

    class Blocker:
        # TF looks keras up with importlib.util.find_spec (for its location) without importing
        # it; so specs are found as usual (with their origin) but can never be loaded.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in BLOCKED:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path) or importlib.machinery.ModuleSpec(name, None)
            spec.loader = BlockingLoader()
            return spec

    sys.meta_path.insert(0, Blocker())
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    export, inputs_path, out_path = sys.argv[1:4]
    loaded = tf.saved_model.load(export)
    with open(inputs_path, "rb") as f:
        requests = pickle.load(f)
    out = {"signatures": sorted(loaded.signatures), "results": {}, "errors": {}, "warmup": []}
    for name, (key, value) in requests.items():
        fn = loaded.signatures[name]
        result = fn(**{key: tf.constant(value)})
        out["results"][name] = {k: v.numpy() for k, v in result.items()}
    bad = {
        "float_wrong_shape": ("serving_default", "frames", np.zeros([1, 3, 32, 32, 3], np.float32)),
        "float_given_uint8": ("serving_default", "frames", np.zeros([1, 4, 32, 32, 3], np.uint8)),
        "wrong_key": ("serving_default", "images", np.zeros([1, 4, 32, 32, 3], np.float32)),
        "not_a_jpeg": ("encoded_frames", "jpeg_frames", np.array([[b"no"] * 4], dtype=object)),
    }
    for case, (name, key, value) in bad.items():
        try:
            loaded.signatures[name](**{key: tf.constant(value)})
            out["errors"][case] = None
        except Exception as e:
            out["errors"][case] = f"{type(e).__name__}: {e}"
    for raw in tf.data.TFRecordDataset(export + "/assets.extra/tf_serving_warmup_requests"):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        request = log.predict_log.request
        feed = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        result = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in feed.items()})
        out["warmup"].append((request.model_spec.name, request.model_spec.signature_name,
                              {k: list(v.shape) for k, v in result.items()}))
    out["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    with open(out_path, "wb") as f:
        pickle.dump(out, f)
    """
)


def _frame(index: int, height: int = 32, width: int = 40) -> np.ndarray:
    """Smooth content that moves with the frame index (JPEG keeps it well)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([(yy * 4 + 9 * index) % 256, (xx * 5 + 20 * index) % 256, ((yy + xx) * 3) % 256], -1).astype(np.uint8)


def _jpeg(frame: np.ndarray) -> bytes:
    return tf.io.encode_jpeg(frame, quality=95).numpy()


def _decode(jpegs) -> np.ndarray:
    return np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])


def _three_crops(frames: np.ndarray, size: int) -> list[np.ndarray]:
    """Start, centre and end squares along the long (width) side."""
    w = frames.shape[2]
    return [frames[:, :, x : x + size] for x in (0, (w - size) // 2, w - size)]


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs(model, views: np.ndarray) -> np.ndarray:
    """Mean over views of the softmax (the "prob" average) of the in-process model."""
    return _softmax(model(views.astype(np.float32), training=False).numpy()).mean(axis=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras_seed = 7
    import keras

    keras.utils.set_random_seed(keras_seed)
    model = build_model("resnet3d_10", len(CLASSES), input_shape=(4, 32, 32, 3))
    root = tmp_path_factory.mktemp("export")
    path = export_model(model, root / "tiny", view_spec=SPEC, class_names=CLASSES, top_k=2)
    return model, root, path


def _record(frames, media_id="clip"):
    jpegs = [_jpeg(f) for f in frames]
    h, w = frames[0].shape[:2]
    n = len(frames)
    data = schema.encode_video(
        jpegs, [round(i * 1e6 / 25) for i in range(n)], media_id=media_id, label_index=0, label_text="left",
        frame_rate=25.0, data_path=f"{media_id}.mp4", start_us=0, end_us=round(n * 1e6 / 25),
        height=h, width=w, original_height=h, original_width=w,
    )
    return data, jpegs


def test_every_signature_reloads_without_tfsts_or_keras(exported, tmp_path):
    model, root, path = exported
    rng = np.random.default_rng(0)
    floats = rng.uniform(0, 255, (2, 4, 32, 32, 3)).astype(np.float32)
    uint8 = rng.integers(0, 256, (2, 4, 32, 32, 3)).astype(np.uint8)
    clips = [[_frame(i + 10 * row) for i in range(4)] for row in range(2)]
    jpeg_rows = np.array([[_jpeg(f) for f in clip] for clip in clips], dtype=object)
    # Videos of 13 and 9 frames: the evaluation sampler (mmaction2 0.x test mode, N, L=4, s=2,
    # 2 clips) takes avg = (N - 8 + 1) / 2, starts int(i * avg + avg / 2).
    records, record_jpegs = zip(*[_record([_frame(i) for i in range(n)], f"v{n}") for n in (13, 9)])
    expected_indices = {13: [[1, 3, 5, 7], [4, 6, 8, 10]], 9: [[0, 2, 4, 6], [1, 3, 5, 7]]}
    requests = {
        "serving_default": ("frames", floats),
        "frames_uint8": ("frames", uint8),
        "encoded_frames": ("jpeg_frames", jpeg_rows),
        "sequence_example": ("sequence_example", np.array(records, dtype=object)),
    }
    import pickle

    (tmp_path / "in.pkl").write_bytes(pickle.dumps(requests))
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    run = subprocess.run(
        [sys.executable, "-I", "-c", RELOAD_SCRIPT, str(path), str(tmp_path / "in.pkl"), str(tmp_path / "out.pkl")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = pickle.loads((tmp_path / "out.pkl").read_bytes())
    assert out["imported"] == []
    assert set(out["signatures"]) == {"serving_default", "frames_uint8", "encoded_frames", "sequence_example"}
    res = out["results"]

    expected = {
        "serving_default": _softmax(model(floats, training=False).numpy()),
        "frames_uint8": _softmax(model(uint8.astype(np.float32), training=False).numpy()),
        # Each row: T frames kept as they are, three 32x32 crops along the 40-pixel side.
        "encoded_frames": np.stack([_probs(model, np.stack(_three_crops(_decode(row), 32))) for row in jpeg_rows]),
        "sequence_example": np.stack([
            _probs(model, np.stack([crop for clip in expected_indices[n] for crop in _three_crops(_decode([jpegs[i] for i in clip]), 32)]))
            for n, jpegs in zip((13, 9), record_jpegs)
        ]),
    }
    for name, probs in expected.items():
        got = res[name]
        np.testing.assert_allclose(got["probabilities"], probs, rtol=RTOL, atol=ATOL, err_msg=name)
        order = np.argsort(-got["probabilities"], axis=1, kind="stable")[:, :2]
        np.testing.assert_array_equal(got["top_k_indices"], order, err_msg=name)
        assert got["top_k_indices"].dtype == np.int32
        labels = [[CLASSES[i] for i in row] for row in order]
        assert [[s.decode() for s in row] for row in got["top_k_labels"]] == labels, name

    errors = out["errors"]
    assert "frames (float32 RGB 0..255) must have shape [B, 4, 32, 32, 3]; got shape] [1 3 32" in errors["float_wrong_shape"]
    assert "expected to be a float tensor but is a uint8 tensor" in errors["float_given_uint8"]
    assert "frames" in errors["wrong_key"] and "images" in errors["wrong_key"]
    assert "Unknown image file format" in errors["not_a_jpeg"]

    # One warm-up request per signature, named after the model directory, all run.
    assert [(name, sig) for name, sig, _ in out["warmup"]] == [
        ("tiny", s) for s in ("serving_default", "frames_uint8", "encoded_frames", "sequence_example")
    ]
    for _, _, shapes in out["warmup"]:
        assert shapes == {"probabilities": [1, 3], "top_k_indices": [1, 2], "top_k_labels": [1, 2]}


def test_saved_model_cli_lists_signatures(exported):
    _, _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    run = subprocess.run([cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout
    for name in ("serving_default", "frames_uint8", "encoded_frames", "sequence_example"):
        assert f"signature_def['{name}']" in text
    for key in ("probabilities", "top_k_indices", "top_k_labels"):
        assert f"outputs['{key}']" in text
    assert "inputs['frames'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 4, 32, 32, 3)" in text
    assert "inputs['jpeg_frames'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1, 4)" in text
    assert "inputs['sequence_example'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in text


def test_metadata_and_directory_layout(exported):
    model, root, path = exported
    assert path == root / "tiny" / "1"
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["1"]  # no staging left behind
    meta = read_metadata(path)
    assert meta["class_names"] == {"": CLASSES}
    assert meta["view_specs"][""]["num_clips"] == 2 and meta["view_specs"][""]["num_crops"] == 3
    assert meta["batch_norms_folded"] == len(foldable_batch_norms(model)) > 0  # served with BN folded
    assert oct(path.stat().st_mode & 0o777) == "0o755"


def test_existing_version_refused_unless_overwrite(exported):
    model, root, path = exported
    before = (path / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(ExportError, match=r"tiny/1 already exists; pass --overwrite"):
        export_model(model, root / "tiny", view_spec=SPEC, class_names=CLASSES)
    # A failing export with overwrite leaves the old version untouched.
    with pytest.raises(ExportError, match="3 classes but 2 class names"):
        export_model(model, root / "tiny", view_spec=SPEC, class_names=CLASSES[:2], overwrite=True)
    assert (path / "saved_model.pb").stat().st_mtime_ns == before
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["1"]
    again = export_model(model, root / "tiny", view_spec=SPEC, class_names=CLASSES, version=2, warmup=False)
    assert again == root / "tiny" / "2" and not (again / "assets.extra" / "tf_serving_warmup_requests").exists()


def test_bad_export_arguments(exported, tmp_path):
    model, _, _ = exported
    with pytest.raises(ExportError, match=r"num_frames=8 but model 'resnet3d_10' takes clips of 4 frames"):
        export_model(model, tmp_path / "m", view_spec=ViewSpec(8, crop_size=32, short_side=32), class_names=CLASSES)
    with pytest.raises(ExportError, match=r"crop_size=224 .* input_shape=\(T, None, None, 3\)"):
        export_model(model, tmp_path / "m", view_spec=ViewSpec(4), class_names=CLASSES)
    with pytest.raises(ExportError, match="average must be one of"):
        export_model(model, tmp_path / "m", view_spec=SPEC, class_names=CLASSES, average="none")
    with pytest.raises(ExportError, match="--version must be a non-negative integer"):
        export_model(model, tmp_path / "m", view_spec=SPEC, class_names=CLASSES, version=-1)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_missing_serving_api_is_one_clear_error_and_nothing_written(exported, tmp_path, monkeypatch):
    """Without tensorflow-serving-api (not in the demo's extras once, so the README's main
    command died in a traceback at the export step) the export stops before writing, naming the
    extra to install and the way out."""
    model, _, _ = exported
    for name in [m for m in sys.modules if m == "tensorflow_serving" or m.startswith("tensorflow_serving.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)  # import fails as if not installed
    with pytest.raises(ExportError, match=r"need tensorflow-serving-api.*pip install -e '\.\[serving\]'.*warmup=False.*nothing was written"):
        export_model(model, tmp_path / "m", view_spec=SPEC, class_names=CLASSES)
    assert not (tmp_path / "m").exists()
    path = export_model(model, tmp_path / "m", view_spec=SPEC, class_names=CLASSES, warmup=False)
    assert (path / "saved_model.pb").exists() and not (path / "assets.extra" / "tf_serving_warmup_requests").exists()


def test_co_trained_model_one_output_set_per_head_with_its_own_views(tmp_path):
    """Two heads, two view specs: each head's sequence_example outputs come from its own views."""
    model = build_model("resnet3d_10", {"kinetics": 3, "ssv2": 2}, input_shape=(4, 32, 32, 3))
    specs = {
        "kinetics": SPEC,
        "ssv2": ViewSpec(num_frames=4, sampling="uniform", num_crops=1, short_side=32, crop_size=32),
    }
    names = {"kinetics": CLASSES, "ssv2": ["push", "pull"]}
    path = export_model(model, tmp_path / "co", view_spec=specs, class_names=names, top_k=5, warmup=False)
    loaded = tf.saved_model.load(str(path))
    record, jpegs = _record([_frame(i) for i in range(13)])
    out = loaded.signatures["sequence_example"](sequence_example=tf.constant([record]))
    assert set(out) == {f"{h}_{k}" for h in names for k in ("probabilities", "top_k_indices", "top_k_labels")}
    kin = [c for clip in [[1, 3, 5, 7], [4, 6, 8, 10]] for c in _three_crops(_decode([jpegs[i] for i in clip]), 32)]
    # Uniform, 4 segments of 13 frames, test mode: centre frame of each, int(13/4 * (i + 0.5)).
    ssv2_frames = _decode([jpegs[i] for i in (1, 4, 8, 11)])[:, :, 4:36]
    ref_k = _softmax(model(np.stack(kin).astype(np.float32), training=False)["kinetics"].numpy()).mean(0)
    ref_s = _softmax(model(ssv2_frames[None].astype(np.float32), training=False)["ssv2"].numpy()).mean(0)
    np.testing.assert_allclose(out["kinetics_probabilities"].numpy()[0], ref_k, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out["ssv2_probabilities"].numpy()[0], ref_s, rtol=RTOL, atol=ATOL)
    assert out["ssv2_top_k_indices"].shape == (1, 2)  # top_k is capped at the head's classes
    frames = np.zeros((1, 4, 32, 32, 3), np.float32)
    both = loaded.signatures["serving_default"](frames=tf.constant(frames))
    ref = model(frames, training=False)
    for head in names:
        np.testing.assert_allclose(both[f"{head}_probabilities"].numpy(), _softmax(ref[head].numpy()), rtol=RTOL, atol=ATOL)
    with pytest.raises(ExportError, match=r"heads \['kinetics', 'ssv2'\]; class_names must be a dict"):
        export_model(model, tmp_path / "bad", view_spec=specs, class_names=CLASSES)
