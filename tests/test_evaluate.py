"""Tests of official.metrics and official.evaluate (issue 5).

A tiny ResNet-18 (width 16, 32x32 inputs, 10 classes) run directory is written once per module
with the trainer's own functions (official.checkpoints), and evaluated on the real Imagenette
validation split (shared data, `require_data`), limited to a few dozen images.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data
from keras_test_utils import calibrate_batch_norm
from official import metrics as M

IMAGE_SIZE = 32


# ----------------------------------------------------------------------------- metrics
def _brute_topk(scores, labels, k):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.mean([labels[i] in order[i] for i in range(len(labels))])


def test_topk_matches_argsort():
    rng = np.random.RandomState(0)
    scores = rng.randn(200, 12)
    scores[:5] = 0.0  # ties: lower index wins, like a stable argsort
    labels = rng.randint(0, 12, 200)
    for k in (1, 3, 5, 12):
        assert M.topk_accuracy(scores, labels, k) == pytest.approx(_brute_topk(scores, labels, k))
    assert M.topk_accuracy(scores, labels, 20) == 1.0


def test_topk_counts_in_keras_ops_match_argsort():
    """The trainer's evaluation (both backends, inside the compiled step) counts with
    metrics.topk_counts: the same stable-argsort rule, ties included, and k clipped to the
    class count (5 of 3 classes)."""
    from keras import ops
    rng = np.random.RandomState(2)
    scores = rng.randn(64, 12).astype("float32")
    scores[:6] = 0.0
    labels = rng.randint(0, 12, 64)
    top1, top5, n = (float(ops.convert_to_numpy(v)) for v in M.topk_counts(scores, labels))
    assert n == 64 and top1 == pytest.approx(64 * _brute_topk(scores, labels, 1))
    assert top5 == pytest.approx(64 * _brute_topk(scores, labels, 5))
    three = scores[:, :3]
    lab3 = labels % 3
    _, top5_of_3, _ = (float(ops.convert_to_numpy(v)) for v in M.topk_counts(three, lab3))
    assert top5_of_3 == 64.0


def test_ece_matches_definition():
    rng = np.random.RandomState(1)
    probs = M.softmax(rng.randn(500, 7) * 2)
    labels = rng.randint(0, 7, 500)
    conf, pred = probs.max(1), probs.argmax(1)
    ece = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs((pred[sel] == labels[sel]).mean() - conf[sel].mean())
    assert M.expected_calibration_error(probs, labels, 10) == pytest.approx(ece, abs=1e-12)
    # Perfectly calibrated one-hot predictions that are always right: ECE 0.
    onehot = np.eye(7)[labels]
    assert M.expected_calibration_error(onehot, labels) == pytest.approx(0.0)
    # Always confident and always wrong: ECE 1.
    assert M.expected_calibration_error(np.eye(7)[(labels + 1) % 7], labels) == pytest.approx(1.0)


def test_confusion_matrix_and_streaming_equal_batch():
    rng = np.random.RandomState(2)
    logits = rng.randn(300, 10) * 3
    labels = rng.randint(0, 10, 300)
    cm = M.confusion_matrix(labels, logits.argmax(1), 10)
    assert cm.sum() == 300 and cm[labels[0], logits[0].argmax()] >= 1
    assert np.trace(cm) == (logits.argmax(1) == labels).sum()
    stream = M.ClassificationMetrics(10)
    for i in range(0, 300, 64):
        stream.update(logits[i:i + 64], labels[i:i + 64])
    r = stream.result()
    assert r["top1"] == pytest.approx(M.topk_accuracy(logits, labels, 1))
    assert r["top5"] == pytest.approx(M.topk_accuracy(logits, labels, 5))
    assert r["ece"] == pytest.approx(M.expected_calibration_error(M.softmax(logits), labels))
    np.testing.assert_array_equal(stream.cm, cm)
    assert r["num_examples"] == 300 and sum(r["calibration"]["count"]) == 300
    with pytest.raises(ValueError, match="classes"):
        stream.update(logits[:, :5], labels % 5)
    with pytest.raises(ValueError, match="labels must lie"):
        M.topk_correct(logits, labels + 10, 1)


# ----------------------------------------------------------------------------- run dirs
def _make_run(model_dir, num_classes=10, name="resnet18", overrides=None):
    """A run directory written with the trainer's functions (weights BN-calibrated)."""
    from official import checkpoints
    from official.config import DataConfig, ModelConfig, RunConfig
    config = RunConfig(
        model=ModelConfig(name=name, num_classes=num_classes, image_size=IMAGE_SIZE,
                          overrides=dict(overrides or {"width": 16})),
        data=DataConfig(source="imagenette2-224", eval_preprocess="imagenet",
                        normalization="mean", eval_batch_size=16))
    checkpoints.save_run_config(str(model_dir), config)
    model = checkpoints.build_model_from_config(config)
    x = np.random.RandomState(0).normal(0, 60, (16, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    calibrate_batch_norm(model, x)
    checkpoints.CheckpointManager(str(model_dir)).save(1, model, top1=0.1)
    return str(model_dir)


@pytest.fixture(scope="module")
def imagenette():
    return str(require_data("imagenette2-224"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("eval_run") / "run")


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_cli_main_prints_json_last_line(run_dir, imagenette, tmp_path, capsys):
    from official import evaluate as E
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"brightness": [0.5, 0.55, 0.6, 0.65, 0.7],
                                    "clean_error": 0.4}))
    out_dir = tmp_path / "out"
    E.main(["--model_dir", run_dir, "--data", imagenette, "--batch_size", "16",
            "--max_examples", "40", "--corruptions", "brightness", "--severities", "1..5",
            "--baseline_errors", str(baseline), "--output_dir", str(out_dir),
            "--benchmark_steps", "2", "--no_progress"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    for key in ("top1", "top5", "ece", "images_per_second", "details"):
        assert key in result
    d = result["details"]
    assert d["num_examples"] == 40 and d["split"] == "val" and d["num_classes"] == 10
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0 and 0.0 <= result["ece"] <= 1.0
    cm = np.asarray(d["confusion_matrix"])
    assert cm.sum() == 40 and np.trace(cm) / 40 == pytest.approx(result["top1"])
    tp = d["throughput"]
    assert result["images_per_second"] > 0 and tp["batch_size"] == 16
    assert tp["dtype"] == "float32" and tp["device"]["type"] in ("CPU", "GPU")
    c = d["corruptions"]
    assert c["severities"] == [1, 2, 3, 4, 5] and len(c["errors"]["brightness"]) == 5
    assert c["normalization"] == "baseline"
    # CE of brightness = 100 * sum(E_s) / sum(baseline E_s); the subset mCE is that CE.
    expected = 100 * sum(c["errors"]["brightness"]) / sum([0.5, 0.55, 0.6, 0.65, 0.7])
    assert c["per_corruption"]["brightness"]["ce"] == pytest.approx(expected)
    assert c["evaluated"]["mCE"] == pytest.approx(expected)
    assert "mCE-15" not in result  # only one corruption evaluated
    # Files: the JSON equals what was printed; both plots exist.
    with open(d["files"]["json"]) as f:
        assert json.load(f)["top1"] == result["top1"]
    for key in ("confusion_png", "corruptions_png"):
        with open(d["files"][key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(out_dir) if ".tmp-" in p]


def test_evaluate_default_output_beside_checkpoint(run_dir, imagenette):
    from official import checkpoints
    from official import evaluate as E
    result = E.evaluate(run_dir, imagenette, max_examples=16, batch_size=16, benchmark_steps=1,
                        progress=False, plots=False)
    ckpt = checkpoints.checkpoint_path(run_dir, "latest")
    assert result["details"]["files"]["json"] == os.path.join(ckpt, "eval-val.json")
    assert os.path.exists(os.path.join(ckpt, "eval-val.json"))


def test_evaluate_weights_file_with_its_metadata(run_dir, imagenette, tmp_path):
    """--weights X.weights.h5 (no run): the network and its preprocessing come from X.json
    beside it, and the evaluation equals the run's own (--model_dir); without the
    normalization in X.json it is refused naming the file (never a silent guess)."""
    import shutil
    from official import checkpoints
    from official import evaluate as E
    weights = tmp_path / "mine.weights.h5"
    shutil.copy(os.path.join(checkpoints.checkpoint_path(run_dir), checkpoints.WEIGHTS), weights)
    meta = {"model": "resnet18", "overrides": {"width": 16}, "num_classes": 10,
            "image_size": IMAGE_SIZE, "eval_preprocess": "imagenet"}
    (tmp_path / "mine.json").write_text(json.dumps(meta))
    kw = dict(max_examples=8, batch_size=8, benchmark_steps=1, progress=False, plots=False)
    with pytest.raises(E.EvaluationError, match=r"mine.json"):
        E.evaluate(None, imagenette, weights=str(weights), output_dir=str(tmp_path / "a"), **kw)
    (tmp_path / "mine.json").write_text(json.dumps(dict(meta, normalization="mean")))
    ours = E.evaluate(None, imagenette, weights=str(weights), **kw)
    theirs = E.evaluate(run_dir, imagenette, output_dir=str(tmp_path / "run"), **kw)
    assert ours["details"]["confusion_matrix"] == theirs["details"]["confusion_matrix"]
    assert ours["details"]["weights"] == str(weights)
    assert ours["details"]["files"]["json"] == str(tmp_path / "eval-val.json")  # beside it
    with pytest.raises(E.EvaluationError, match="give --model_dir .* or --weights .*not both"):
        E.evaluate(run_dir, imagenette, weights=str(weights), **kw)


def test_corruption_dir_source(run_dir, imagenette, tmp_path, monkeypatch):
    """--corruption_dir reads DIR/<corruption>/<severity>/<split>/<class>/<image>."""
    import zipfile
    from official import evaluate as E
    z = zipfile.ZipFile(os.path.join(imagenette, "val.zip"))
    first = {}
    for n in z.namelist():
        parts = n.split("/")
        if len(parts) == 3 and parts[2] and parts[1] not in first:
            first[parts[1]] = n
    root = tmp_path / "corrupted"
    for cls, member in first.items():
        d = root / "fog" / "2" / "val" / cls
        d.mkdir(parents=True)
        (d / os.path.basename(member)).write_bytes(z.read(member))
    result = E.evaluate(run_dir, imagenette, max_examples=16, batch_size=8, benchmark_steps=1,
                        corruptions="fog", severities="2", corruption_dir=str(root),
                        output_dir=str(tmp_path / "o"), progress=False, plots=False)
    c = result["details"]["corruptions"]
    assert c["num_examples"]["fog"] == [10] and 0.0 <= c["errors"]["fog"][0] <= 1.0
    assert c["normalization"] == "none" and c["notes"]

    # The corrupted images (224 x 224 crops, as ImageNet-C) reach the network as they are,
    # not resized and cropped a second time as the run's clean images (the original reads
    # them as they are).
    import tensorflow as tf
    from data import preprocessing
    fed = []
    real_call = E._Predictor.__call__

    def spy(self, images):
        fed.append(np.asarray(images))
        return real_call(self, images)
    monkeypatch.setattr(E._Predictor, "__call__", spy)
    E.evaluate(run_dir, imagenette, max_examples=16, batch_size=16, benchmark_steps=1,
               corruptions="fog", severities="2", corruption_dir=str(root),
               output_dir=str(tmp_path / "o3"), progress=False, plots=False)
    files = sorted((root / "fog" / "2" / "val").glob("*/*"))
    expected = np.stack([np.asarray(preprocessing.normalize(tf.io.decode_jpeg(f.read_bytes(), channels=3)))
                         for f in files])
    corrupted = [b for b in fed if b.shape[1:] == (224, 224, 3)]
    assert len(corrupted) == 1 and corrupted[0].shape[0] == len(files) == 10
    # the batch follows the folder order (class folders sorted, then files)
    np.testing.assert_allclose(corrupted[0], expected, atol=1e-4)
    with pytest.raises(E.EvaluationError, match="no fog/3"):
        E.evaluate(run_dir, imagenette, max_examples=8, batch_size=8, corruptions="fog",
                   severities="3", corruption_dir=str(root), output_dir=str(tmp_path / "o2"),
                   progress=False, plots=False)


def test_corruption_summary_alexnet_labels_15_and_19():
    from official import evaluate as E
    from official import robustness
    rng = np.random.RandomState(0)
    errors = {c: list(rng.uniform(0.2, 0.8, 5)) for c in robustness.CORRUPTIONS_19}
    s = E.corruption_summary(errors, [1, 2, 3, 4, 5], 0.25, 1000, None)
    assert s["normalization"] == "alexnet"
    assert s["mCE-15"] == pytest.approx(robustness.mce(errors, "alexnet",
                                                       robustness.CORRUPTIONS_15))
    assert s["mCE-19"] == pytest.approx(robustness.mce(errors, "alexnet",
                                                       robustness.CORRUPTIONS_19))
    # Not ImageNet and no baseline: unnormalized only, with a note.
    s = E.corruption_summary(errors, [1, 2, 3, 4, 5], 0.25, 10, None)
    assert "mCE-15" not in s and "mean_error-15" in s and s["notes"]


def test_class_count_mismatch_is_a_clear_error(tmp_path, imagenette):
    from official import evaluate as E
    run = _make_run(tmp_path / "run5", num_classes=5)
    with pytest.raises(E.EvaluationError, match="has 10 classes but the model has 5"):
        E.evaluate(run, imagenette, max_examples=8, progress=False)
    ckpt_dir = os.path.join(run, "checkpoints")
    leftovers = [f for _, _, files in os.walk(ckpt_dir) for f in files if f.startswith("eval")]
    assert leftovers == []


def test_bad_arguments():
    from official import evaluate as E
    assert E.parse_severities("1..5") == [1, 2, 3, 4, 5]
    assert E.parse_severities("3,1") == [1, 3]
    with pytest.raises(E.EvaluationError):
        E.parse_severities("0,6")
    assert len(E.parse_corruptions("15")) == 15 and len(E.parse_corruptions("all")) == 19
    with pytest.raises(E.EvaluationError, match="unknown"):
        E.parse_corruptions("fog,nope")


def test_model_dir_without_config_cli_error(tmp_path):
    """The console entry point: one clear line on stderr, exit status 2, nothing written."""
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from official.evaluate import run; "
         "sys.argv = ['assemble-evaluate', '--model_dir', sys.argv[1], '--data', 'x']; run()",
         str(empty)], cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "no run_config.json" in proc.stderr and "not a training run directory" in proc.stderr
    assert os.listdir(empty) == []


def test_evaluate_retrieval_matches_bruteforce_recall(run_dir, imagenette):
    """--retrieval: Recall@K of the pooled features equals a brute-force count written here
    (cosine similarity, query excluded) on embeddings taken from the model independently."""
    import keras
    import data as data_lib
    from official import checkpoints
    from official import evaluate as E
    n = 160  # the split is ordered by class: 100 images of the first class, 60 of the second
    result = E.evaluate(run_dir, imagenette, split="val", batch_size=16, max_examples=n,
                        benchmark_steps=1, progress=False, plots=False, retrieval=True)
    ret = result["details"]["retrieval"]
    assert ret["layer"] == "pool" and ret["num_examples"] == n and ret["metric"] == "cosine"
    assert 0.0 < result["R@1"] <= result["R@2"] <= result["R@4"] <= result["R@8"] <= 1.0

    model, config = checkpoints.restore_model(run_dir, "latest")
    feats = keras.Model(model.input, model.get_layer("pool").output)
    ds = data_lib.build_dataset(imagenette, "val", training=False, batch_size=16,
                                image_size=IMAGE_SIZE, num_classes=10,
                                eval_preprocess=config.data.eval_preprocess,
                                normalization=config.data.normalization)
    emb, lab = [], []
    for images, labels in ds.take(n // 16):
        emb.append(np.asarray(feats(images, training=False)))
        lab.append(labels.numpy())
    emb, lab = np.concatenate(emb).astype(np.float64), np.concatenate(lab)
    assert len(np.unique(lab)) == 2
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    for k in (1, 2, 4, 8):
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        expected = np.mean([np.any(lab[top[i]] == lab[i]) for i in range(n)])
        assert result[f"R@{k}"] == pytest.approx(expected)
    # Zero-shot protocol: only classes after the first N take part.
    zs = E.evaluate(run_dir, imagenette, split="val", batch_size=16, max_examples=n,
                    benchmark_steps=1, progress=False, plots=False, retrieval=True,
                    retrieval_zero_shot_classes=1)["details"]["retrieval"]
    assert zs["num_examples"] == int(np.sum(lab != np.unique(lab)[0]))
    with pytest.raises(E.EvaluationError, match="retrieval_metric"):
        E.evaluate(run_dir, imagenette, retrieval=True, retrieval_metric="hamming")
