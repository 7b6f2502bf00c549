"""python -m official.predict (issue 14 item 1): top-k classes by name for image files,
folders, zips and globs, bad inputs named and skipped, the evaluation's preprocessing.

The reference is the evaluation pipeline itself (``data.build_dataset`` on a labelled image
folder, as ``official.evaluate`` reads it) followed by the restored network and a softmax:
the program must give the same probabilities for the same JPEGs. (Its use of timm weights is
checked against timm's logits in tests/test_weights.py, its SavedModel path in
tests/test_export.py.)
"""
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data

IMAGE_SIZE = 32
NAMES = [f"class {c}" for c in "abcdefghij"]  # the run's class names (with spaces)


def _jpegs(n):
    z = zipfile.ZipFile(require_data("imagenet-sample-images") / "images.zip")
    members = sorted(m for m in z.namelist() if m.endswith(".JPEG"))
    # the first n, plus the grayscale 75x56 edge case (index 101 tusker) when asked for 4+
    chosen = members[: n - 1] + [m for m in members if "tusker" in m][:1] if n >= 4 else \
        members[:n]
    return [(os.path.basename(m), z.read(m)) for m in chosen]


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory):
    """A tiny run (resnet18 width 16, 32 px, mean normalization, 10 named classes, BN
    calibrated) and a tree of inputs: good JPEGs in a folder, a zip and a glob-only folder,
    and bad ones (text named .jpg, a corrupt JPEG body, an empty folder)."""
    from keras_test_utils import calibrate_batch_norm
    from official import checkpoints
    from official.config import DataConfig, ModelConfig, RunConfig
    root = tmp_path_factory.mktemp("predict")
    config = RunConfig(model=ModelConfig(name="resnet18", num_classes=10, image_size=IMAGE_SIZE,
                                         overrides={"width": 16}),
                       data=DataConfig(eval_preprocess="imagenet", normalization="mean",
                                       class_names=NAMES))
    run = root / "run"
    checkpoints.save_run_config(str(run), config)
    model = checkpoints.build_model_from_config(config)
    x = np.random.RandomState(0).normal(0, 60, (16, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    calibrate_batch_norm(model, x)
    checkpoints.CheckpointManager(str(run)).save(1, model, top1=0.5)

    images = _jpegs(4)
    (root / "photos" / "sub").mkdir(parents=True)
    (root / "photos" / images[0][0]).write_bytes(images[0][1])
    (root / "photos" / "sub" / images[1][0]).write_bytes(images[1][1])
    (root / "photos" / "notes.txt").write_text("not an image, not looked at")
    (root / "photos" / "broken.jpg").write_text("this is text, not a JPEG")
    # JPEG magic and end marker around a garbage body: passes the header check, fails decoding
    (root / "photos" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    with zipfile.ZipFile(root / "more.zip", "w") as z:
        z.writestr(f"inside/{images[2][0]}", images[2][1])
    (root / "globbed").mkdir()
    (root / "globbed" / images[3][0].replace(".JPEG", ".jpg")).write_bytes(images[3][1])
    (root / "empty").mkdir()
    # the evaluation's view of the same 4 JPEGs: one class folder per image
    for i, (name, raw) in enumerate(images):
        (root / "labelled" / "val" / f"img{i}").mkdir(parents=True)
        (root / "labelled" / "val" / f"img{i}" / name).write_bytes(raw)
    return run, root, images


def _evaluation_probabilities(run, root):
    """Softmax of the restored run on the evaluation pipeline's batches (data.build_dataset,
    the run's image size, eval preprocessing and normalization), by image index."""
    import data
    from official import checkpoints
    model, config = checkpoints.restore_model(str(run))
    ds = data.build_dataset(str(root / "labelled"), "val", training=False, batch_size=8,
                            image_size=config.model.image_size, num_classes=10,
                            eval_preprocess=config.data.eval_preprocess,
                            normalization=config.data.normalization)
    out = {}
    for x, y in ds:
        logits = np.asarray(model(x.numpy(), training=False), np.float64)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        for label, row in zip(y.numpy().reshape(len(p), -1), p):
            out[int(label.argmax()) if label.size > 1 else int(label[0])] = row
    return out


def test_predict_cli_table_files_folders_zips_globs_and_bad_inputs(run_and_images):
    run, root, images = run_and_images
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    args = [sys.executable, "-m", "official.predict", f"--model_dir={run}", "--top_k=3",
            str(root / "photos"), str(root / "more.zip"), str(root / "globbed" / "*.jpg"),
            str(root / "missing.jpg"), str(root / "empty"), str(root / "nothing_*.png")]
    proc = subprocess.run(args, cwd=str(root), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    # every bad input is named with what is wrong, the good ones are still predicted
    assert f"skipped {root / 'photos' / 'broken.jpg'}: not an image (unknown format)" in err
    assert f"skipped {root / 'photos' / 'corrupt.jpg'}: cannot decode it" in err
    assert f"skipped {root / 'missing.jpg'}: no such file or directory" in err
    assert f"skipped {root / 'empty'}: the folder has no image files" in err
    assert f"skipped {root / 'nothing_*.png'}: no file matches this pattern" in err
    assert "notes.txt" not in err + proc.stdout  # folders are searched for image files only
    assert "4 image(s) predicted, 5 skipped" in err

    # the table: image on the first of its 3 rows; probabilities equal the evaluation's
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["image", "rank", "probability", "class_id", "class_name"]
    rows, current = {}, None
    for line in lines[1:]:
        m = re.match(r"^(\S.*?)?\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(class \w)$", line)
        assert m, line
        if m.group(1):
            current = m.group(1).strip()
        rows.setdefault(current, []).append((int(m.group(2)), float(m.group(3)),
                                             int(m.group(4)), m.group(5)))
    expected_names = [str(root / "photos" / images[0][0]),
                      str(root / "photos" / "sub" / images[1][0]),
                      f"{root / 'more.zip'}:inside/{images[2][0]}",
                      str(root / "globbed" / images[3][0].replace(".JPEG", ".jpg"))]
    assert sorted(rows) == sorted(expected_names)
    ref = _evaluation_probabilities(run, root)
    for i, name in enumerate(expected_names):
        top = np.argsort(-ref[i])[:3]
        assert [r[0] for r in rows[name]] == [1, 2, 3]
        assert [r[2] for r in rows[name]] == [int(t) for t in top], name
        assert [r[3] for r in rows[name]] == [NAMES[t] for t in top]
        np.testing.assert_allclose([r[1] for r in rows[name]], ref[i][top], atol=1e-4)


def test_predict_function_json_and_exit_status(run_and_images, capsys):
    from official import predict as P
    run, root, images = run_and_images
    records = P.predict(str(run), [str(root / "photos" / images[0][0]),
                                   str(root / "photos" / "broken.jpg")], top_k=20)
    assert records[0]["image"].endswith(images[0][0]) and len(records[0]["top_k"]) == 10
    assert abs(sum(e["probability"] for e in records[0]["top_k"]) - 1.0) < 1e-5
    assert records[1] == {"image": str(root / "photos" / "broken.jpg"),
                          "error": "not an image (unknown format)"}
    # --format=json: one object per line; nothing predictable -> exit status 1
    assert P.main([f"--model_dir={run}", "--format=json", "--top_k=2",
                   str(root / "more.zip")]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["image"].endswith(images[2][0]) and [e["rank"] for e in line["top_k"]] == [1, 2]
    assert P.main([f"--model_dir={run}", str(root / "photos" / "broken.jpg"),
                   str(root / "missing.jpg")]) == 1
    with pytest.raises(P.PredictionError, match="no images given"):
        P.main([f"--model_dir={run}"])
    with pytest.raises(P.PredictionError, match=r"--model_dir \(or --weights\) is required"):
        P.main([str(root / "more.zip")])
    with pytest.raises(P.PredictionError, match="cannot load --weights .*does not exist"):
        P.main([f"--weights={root / 'no_such.weights.h5'}", str(root / "more.zip")])


def test_predict_with_a_keras_file_needs_its_normalization(run_and_images, tmp_path):
    """--weights X.keras: the network is in the file, the preprocessing is not; without
    X.json saying the normalization the program refuses (naming the file), with it the
    predictions equal the run's."""
    from official import checkpoints
    from official import predict as P
    run, root, images = run_and_images
    model, config = checkpoints.restore_model(str(run))
    model.save(str(tmp_path / "net.keras"))
    image = str(root / "more.zip")
    with pytest.raises(P.PredictionError, match=r"net.keras.*normalization.*net.json"):
        P.predict(str(tmp_path / "net.keras"), [image])
    (tmp_path / "net.json").write_text(json.dumps({
        "model": "resnet18", "overrides": {"width": 16}, "normalization": "mean",
        "image_size": IMAGE_SIZE, "class_names": NAMES}))
    ours = P.predict(str(tmp_path / "net.keras"), [image], top_k=3)
    assert ours == P.predict(str(run), [image], top_k=3)
