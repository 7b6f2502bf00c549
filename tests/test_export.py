"""Tests of official.export (issue 5): SavedModel signatures, fresh-process loading, request
validation, atomic writing and TFLite.

One tiny ResNet-18 run (width 16, 32x32, 10 classes, with an 8-d embedding) is exported once
per module (via the CLI's ``main``) and shared by the tests. Tolerance against Keras:
``max |logits diff| <= 1e-4 * max(1, max |logits|)`` (float32, CPU), probabilities 1e-5.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO_ROOT
from keras_test_utils import calibrate_batch_norm

IMAGE_SIZE = 32
MAX_PIXELS = 20_000
TOP_K = 3


def _calibrated_run(model_dir, name, overrides, num_classes=10):
    """Run dir written with the trainer's functions; BN statistics set from one batch so that
    logits are O(1) (random init alone gives vanishing or exploding activations)."""
    from official import checkpoints
    from official.config import DataConfig, ModelConfig, RunConfig
    config = RunConfig(model=ModelConfig(name=name, num_classes=num_classes,
                                         image_size=IMAGE_SIZE, overrides=overrides),
                       data=DataConfig(eval_preprocess="imagenet", normalization="mean",
                                       class_names=[f"c{i}" for i in range(num_classes)]))
    checkpoints.save_run_config(str(model_dir), config)
    model = checkpoints.build_model_from_config(config)
    x = np.random.RandomState(0).normal(0, 60, (16, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    calibrate_batch_norm(model, x)
    checkpoints.CheckpointManager(str(model_dir)).save(1, model, top1=0.5)
    return str(model_dir)


def _images():
    """(jpeg bytes 48x64, png bytes 40x30, jpeg over the pixel limit, png over the limit)."""
    import tensorflow as tf
    rng = np.random.RandomState(3)

    def img(h, w):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
        return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return (tf.io.encode_jpeg(img(48, 64)).numpy(), tf.io.encode_png(img(40, 30)).numpy(),
            tf.io.encode_jpeg(img(150, 200)).numpy(), tf.io.encode_png(img(200, 150)).numpy())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from official import export as E
    root = tmp_path_factory.mktemp("export")
    run = _calibrated_run(root / "run", "resnet18", {"width": 16, "embedding_dim": 8})
    out = root / "saved"
    metadata = E.main(["--model_dir", run, "--export_dir", str(out),
                       "--max_pixels", str(MAX_PIXELS), "--top_k", str(TOP_K)])
    return run, str(out), metadata


_FRESH = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, inputs, out = sys.argv[1:4]
    z = np.load(inputs)
    m = tf.saved_model.load(export_dir)
    report = {"signatures": sorted(m.signatures)}
    serve = m.signatures["serving_default"]
    res = serve(image_bytes=tf.constant([z["jpeg"].tobytes(), z["png"].tobytes()]))
    flt = m.signatures["serving_float"](images=tf.constant(z["floats"]))
    def host(v):  # string outputs as unicode arrays (np.load refuses object arrays)
        return np.char.decode(v.numpy().astype(bytes), "utf-8") if v.dtype == tf.string else v.numpy()
    arrays = {"bytes_" + k: host(v) for k, v in res.items()}
    arrays.update({"float_" + k: host(v) for k, v in flt.items()})
    errors = {}
    for name, request in [("empty", []), ("garbage", [z["jpeg"].tobytes(), b"not an image"]),
                          ("truncated", [z["jpeg"].tobytes()[:200]]),
                          ("big_jpeg", [z["big_jpeg"].tobytes()]),
                          ("big_png", [z["big_png"].tobytes()])]:
        try:
            serve(image_bytes=tf.constant(request, tf.string))
            errors[name] = None
        except tf.errors.InvalidArgumentError as e:
            errors[name] = e.message
    report["errors"] = errors
    report["project_modules"] = sorted(k for k in sys.modules
                                       if k.split(".")[0] in ("models", "data", "official", "flags"))
    np.savez(out, **arrays)
    print(json.dumps(report))
""")


def test_saved_model_in_fresh_process_matches_keras(exported, tmp_path):
    import tensorflow as tf
    from data import preprocessing as pp
    from official import checkpoints
    from official import export as E
    run, export_dir, metadata = exported
    assert metadata["verification"]["max_abs_logits_diff"] <= 1e-4 * metadata["verification"][
        "logits_scale"]
    jpeg, png, big_jpeg, big_png = _images()
    floats = np.random.RandomState(5).normal(0, 50, (3, 48, 40, 3)).astype(np.float32)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, jpeg=np.frombuffer(jpeg, np.uint8), png=np.frombuffer(png, np.uint8),
             big_jpeg=np.frombuffer(big_jpeg, np.uint8), big_png=np.frombuffer(big_png, np.uint8),
             floats=floats)
    script = tmp_path / "serve.py"
    script.write_text(_FRESH)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(script), export_dir, str(inputs),
                           str(tmp_path / "out.npz")], cwd=str(workdir), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    assert {"serving_default", "serving_float"} <= set(report["signatures"])
    out = dict(np.load(tmp_path / "out.npz"))

    # Keras references: the run's model on the project's own eval preprocessing.
    model, config = checkpoints.restore_model(run)
    batch = np.stack([pp.normalize(pp.preprocess_for_eval(tf.constant(b), IMAGE_SIZE,
                                                          "imagenet"), "mean").numpy()
                      for b in (jpeg, png)])
    ref = np.asarray(model(batch, training=False))
    tol = 1e-4 * max(1.0, np.abs(ref).max())
    assert np.abs(out["bytes_logits"] - ref).max() <= tol
    probs = tf.nn.softmax(ref).numpy()
    np.testing.assert_allclose(out["bytes_probabilities"], probs, atol=1e-5)
    np.testing.assert_array_equal(out["bytes_class_ids"], ref.argmax(-1))
    assert out["bytes_top_k_values"].shape == (2, TOP_K)
    np.testing.assert_array_equal(out["bytes_top_k_indices"][:, 0], ref.argmax(-1))
    # the class names come out of the graph (the run recorded c0..c9): no side file needed
    assert list(out["bytes_class_name"]) == [f"c{i}" for i in ref.argmax(-1)]
    top = np.argsort(-ref, axis=-1)[:, :TOP_K]
    assert out["bytes_top_k_class_names"].tolist() == [[f"c{i}" for i in row] for row in top]
    assert "top_k_class_names" in metadata["signatures"]["outputs"]
    emb_model = __import__("keras").Model(model.input, model.get_layer("embedding").output)
    np.testing.assert_allclose(out["bytes_embedding"], np.asarray(emb_model(batch)), atol=1e-4,
                               rtol=1e-4)
    # Float signature at another spatial size (48x40): the free-size network, same weights.
    free, _ = E.float_model(model, config)
    ref_f = np.asarray(free(floats, training=False)["logits"])
    assert np.abs(out["float_logits"] - ref_f).max() <= 1e-4 * max(1.0, np.abs(ref_f).max())

    errors = report["errors"]
    assert "empty request" in errors["empty"]
    assert "item] [1] [is not a readable JPEG or PNG image" in errors["garbage"]
    assert "truncated" in errors["truncated"]
    for name in ("big_jpeg", "big_png"):
        assert "exceeds the limit of] [20000]" in errors[name], errors[name]
        assert "[150] [x] [200]" in errors[name] or "[200] [x] [150]" in errors[name]


def test_predict_with_the_saved_model(exported, tmp_path):
    """official.predict on the SavedModel: the graph's decoding and preprocessing, the class
    names from its string output; a bad image in the batch is named and skipped."""
    import tensorflow as tf
    from data import preprocessing as pp
    from official import checkpoints
    from official import predict as P
    run, export_dir, _ = exported
    jpeg, png, _, _ = _images()
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "b.png").write_bytes(png)
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    records = P.predict(export_dir, [str(tmp_path / n) for n in ("a.jpg", "c.jpg", "b.png")],
                        top_k=2)
    assert records[1]["image"].endswith("c.jpg") and "cannot decode" in records[1]["error"]
    model, _ = checkpoints.restore_model(run)
    batch = np.stack([pp.normalize(pp.preprocess_for_eval(tf.constant(b), IMAGE_SIZE,
                                                          "imagenet"), "mean").numpy()
                      for b in (jpeg, png)])
    probs = tf.nn.softmax(np.asarray(model(batch, training=False))).numpy()
    for record, p in zip((records[0], records[2]), probs):
        top = np.argsort(-p)[:2]
        assert [e["class_id"] for e in record["top_k"]] == [int(t) for t in top]
        assert [e["class_name"] for e in record["top_k"]] == [f"c{t}" for t in top]
        np.testing.assert_allclose([e["probability"] for e in record["top_k"]], p[top],
                                   atol=1e-5)


def test_export_refuses_existing_dir_and_is_atomic(exported, monkeypatch):
    from official import export as E
    run, export_dir, _ = exported
    before = sorted(os.listdir(export_dir))
    with pytest.raises(E.ExportError, match="exists; pass --overwrite"):
        E.export(run, export_dir)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure half-way")
    monkeypatch.setattr(E, "_build_archive", boom)
    with pytest.raises(RuntimeError, match="half-way"):
        E.export(run, export_dir, overwrite=True)
    parent = os.path.dirname(export_dir)
    assert sorted(os.listdir(export_dir)) == before
    assert not [p for p in os.listdir(parent) if ".tmp-" in p or ".old-" in p]
    fresh = os.path.join(parent, "never_written")
    with pytest.raises(RuntimeError):
        E.export(run, fresh)
    assert not os.path.exists(fresh)
    assert not [p for p in os.listdir(parent) if ".tmp-" in p]


def test_model_dir_without_config(tmp_path):
    from official import export as E
    with pytest.raises(E.ExportError, match="no run_config.json"):
        E.export(str(tmp_path), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from official.export import run; sys.argv = "
         "['assemble-export', '--model_dir', sys.argv[1], '--export_dir', sys.argv[2]]; run()",
         str(tmp_path), str(tmp_path / "out")], cwd=str(REPO_ROOT), capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 2 and "not a training run directory" in proc.stderr


def test_tflite_mobilenet_float_and_dynamic_range(tmp_path):
    import tensorflow as tf
    from official import checkpoints
    from official import export as E
    run = _calibrated_run(tmp_path / "run", "se_mobilenet_v1", {"width_multiplier": 0.25})
    meta = E.export(run, str(tmp_path / "out"), tflite=True, verify=False)
    assert set(meta["tflite"]) == {"float", "dynamic_range"}
    model, _ = checkpoints.restore_model(run)
    x = np.random.RandomState(7).normal(0, 60, (4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    ref_p = tf.nn.softmax(ref).numpy()
    for kind, rel in meta["tflite"].items():
        interpreter = tf.lite.Interpreter(model_path=os.path.join(tmp_path, "out", rel))
        runner = interpreter.get_signature_runner()
        outs = [runner(images=x[i:i + 1]) for i in range(len(x))]
        logits = np.concatenate([o["logits"] for o in outs])
        probs = np.concatenate([o["probabilities"] for o in outs])
        if kind == "float":
            assert np.abs(logits - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
            np.testing.assert_allclose(probs, ref_p, atol=1e-5)
        else:  # int8 weights: an approximation
            # A random tiny network's probabilities are nearly uniform (top-1 margins ~0.001),
            # so the argmax agreement only counted ties (it failed on 2 of 4 images once).
            # Compare the logits with each row's spread instead: measured over 4 init seeds,
            # the largest error is 0.4-1 % of the row's range.
            spread = ref.max(-1) - ref.min(-1)
            assert (np.abs(logits - ref).max(-1) <= 0.05 * spread).all()
            assert np.abs(logits - ref).max() > 0   # really quantized, not the float model
            assert np.abs(probs - ref_p).max() < 0.02
