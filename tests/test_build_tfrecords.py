"""data.build_tfrecords: round trip, reproducible sharding, teacher logits, rejects."""
import io
import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import data
from data import build_tfrecords as bt
from conftest import require_data

SAMPLES = "imagenet-sample-images/images.zip"


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory):
    """Real ImageNet JPEGs (incl. grayscale) in train/val class folders, plus CMYK, PNG and a
    truncated JPEG in train."""
    from PIL import Image
    src = require_data(SAMPLES)
    with zipfile.ZipFile(src) as z:
        names = sorted(n for n in z.namelist() if not n.endswith("/"))
        gray = [n for n in names if Image.open(io.BytesIO(z.read(n))).mode == "L"][:1]
        picked = sorted(set(names[:9] + gray))
        out = tmp_path_factory.mktemp("src") / "small.zip"
        with zipfile.ZipFile(out, "w") as zo:
            for i, n in enumerate(picked):
                split = "val" if i % 3 == 0 else "train"
                zo.writestr(f"{split}/{n.split('/')[1]}/{os.path.basename(n)}", z.read(n))
            jpg = z.read(names[0])
            cls = names[0].split("/")[1]
            buf = io.BytesIO()
            Image.open(io.BytesIO(jpg)).convert("CMYK").save(buf, "JPEG", quality=95)
            zo.writestr(f"train/{cls}/cmyk.jpg", buf.getvalue())
            buf = io.BytesIO()
            Image.open(io.BytesIO(jpg)).save(buf, "PNG")
            zo.writestr(f"train/{cls}/image.png", buf.getvalue())
            zo.writestr(f"train/{cls}/truncated.JPEG", jpg[:4000])
    with zipfile.ZipFile(out) as z:
        members = [n for n in z.namelist() if not n.endswith("/")]
    return str(out), members


def _logits_csv(path, members, k):
    rows = {}
    with open(path, "w") as f:
        for j, m in enumerate(sorted(members)):
            vals = [j + c / 100.0 for c in range(k)]
            rows[m] = vals
            f.write(m + "," + ",".join(repr(v) for v in vals) + "\n")
    return rows


def _parse_all(files):
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/filename": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
            "image/class/synset": tf.io.FixedLenFeature([], tf.string),
            "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/width": tf.io.FixedLenFeature([], tf.int64),
            "image/format": tf.io.FixedLenFeature([], tf.string),
            "image/logit": tf.io.VarLenFeature(tf.float32)}
    for k in ("xmin", "ymin", "xmax", "ymax"):
        spec[f"image/object/bbox/{k}"] = tf.io.VarLenFeature(tf.float32)
    out = []
    for r in tf.data.TFRecordDataset(sorted(files)):
        e = tf.io.parse_single_example(r, spec)
        out.append({k: (v.values.numpy() if isinstance(v, tf.SparseTensor) else v.numpy())
                    for k, v in e.items()})
    return out


def test_round_trip_and_reproducible_shards(tmp_path, small_zip):
    zpath, members = small_zip
    info = data.inspect_source(zpath)
    k = info.num_classes
    logits = _logits_csv(tmp_path / "logits.csv", members, k)
    first = sorted(m for m in members if m.startswith("train/") and m.endswith(".JPEG")
                   and "truncated" not in m)[0]
    with open(tmp_path / "boxes.csv", "w") as f:
        f.write(f"{os.path.basename(first)},0.1,0.2,0.7,0.8\n")
        f.write(f"{os.path.basename(first)},0.3,0.3,0.9,0.9\n")
    outs = [tmp_path / "out1", tmp_path / "out2"]
    for out in outs:
        rc = bt.main(["--input", zpath, "--output", str(out), "--num_shards", "3",
                      "--teacher_logits", str(tmp_path / "logits.csv"),
                      "--bounding_boxes", str(tmp_path / "boxes.csv"), "--no_progress"])
        assert rc == 0
    files = sorted(os.listdir(outs[0]))
    assert files == sorted(os.listdir(outs[1]))
    assert [f for f in files if f.startswith("train-")] == [
        f"train-0000{i}-of-00003" for i in range(3)]
    assert [f for f in files if f.startswith("validation-")] == [
        f"validation-0000{i}-of-00003" for i in range(3)]
    for f in files:   # byte-identical
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f

    summary = json.loads((outs[0] / "summary.json").read_text())
    train = summary["splits"]["train"]
    assert [r["name"] for r in train["rejected"]] == [
        m for m in members if m.endswith("truncated.JPEG")]
    assert "truncated" in train["rejected"][0]["reason"]
    assert sorted(os.path.basename(c["name"]) for c in train["converted"]) == [
        "cmyk.jpg", "image.png"]

    recs = _parse_all([outs[0] / f for f in files if f.startswith("train-")])
    n_train = sum(1 for m in members if m.startswith("train/")) - 1
    assert len(recs) == train["records"] == n_train
    by_name = {r["image/filename"].decode(): r for r in recs}
    assert set(by_name) == {m for m in members if m.startswith("train/")
                            and not m.endswith("truncated.JPEG")}
    for name, r in by_name.items():
        cls = name.split("/")[1]
        assert r["image/class/label"] == info.class_names.index(cls)
        assert r["image/class/synset"].decode() == cls
        np.testing.assert_allclose(r["image/logit"], logits[name], rtol=1e-6)
        assert r["image/format"] == b"JPEG" and r["image/encoded"][:3] == b"\xff\xd8\xff"
        img = tf.io.decode_jpeg(r["image/encoded"], channels=3)
        assert img.shape[:2] == (r["image/height"], r["image/width"])
    r = by_name[first]
    np.testing.assert_allclose(r["image/object/bbox/xmin"], [0.1, 0.3])
    np.testing.assert_allclose(r["image/object/bbox/ymax"], [0.8, 0.9])
    assert len(by_name[sorted(set(by_name) - {first})[0]]["image/object/bbox/xmin"]) == 0

    # read back through build_dataset: same labels and logits
    out_info = data.inspect_source(str(outs[0]))
    assert out_info.kind == "tfrecord" and out_info.class_names == info.class_names
    assert out_info.split_sizes == {"train": n_train,
                                    "validation": summary["splits"]["validation"]["records"]}
    assert data.resolve_eval_split(str(outs[0])) == "validation"
    stats = data.DatasetStats()
    ds = data.build_dataset(str(outs[0]), "train", training=False, batch_size=4, image_size=32,
                            teacher_logits=True, stats=stats)
    got = [(int(lab), tuple(np.round(lg, 4))) for _, y in ds
           for lab, lg in zip(y["label"].numpy(), y["teacher_logits"].numpy())]
    want = [(int(r["image/class/label"]), tuple(np.round(r["image/logit"], 4))) for r in recs]
    assert got == want   # evaluation order = shard order
    assert stats.records_used == n_train and stats.records_skipped == 0
    ds = data.build_dataset(str(outs[0]), "train", training=True, batch_size=4, image_size=32,
                            teacher_logits=True, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (4, 32, 32, 3) and y["teacher_logits"].shape == (4, k)


def test_missing_teacher_logits_is_an_error_before_writing(tmp_path, small_zip):
    zpath, members = small_zip
    k = data.inspect_source(zpath).num_classes
    _logits_csv(tmp_path / "logits.csv", members[1:], k)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no logits"):
        bt.build(zpath, str(out), 2, teacher_logits=str(tmp_path / "logits.csv"),
                 progress=False)
    assert not out.exists() or not os.listdir(out)
    assert bt.main(["--input", str(tmp_path / "missing"), "--output", str(out),
                    "--num_shards", "1"]) == 2


def test_teacher_savedmodel_and_label_offset(tmp_path, small_zip):
    zpath, members = small_zip
    k = data.inspect_source(zpath).num_classes

    class Teacher(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 24, 24, 3], tf.float32)])
        def serve(self, images):
            return {"logits": tf.tile(tf.reduce_mean(images, [1, 2])[:, :1], [1, k])
                    + tf.range(k, dtype=tf.float32)}

    teacher = Teacher()
    tf.saved_model.save(teacher, str(tmp_path / "teacher"),
                        signatures={"serving_default": teacher.serve})
    out = tmp_path / "out"
    bt.build(zpath, str(out), 1, splits=["val"], teacher=str(tmp_path / "teacher"),
             teacher_image_size=24, label_offset=1, progress=False)
    assert sorted(os.listdir(out)) == ["classes.csv", "summary.json",
                                       "validation-00000-of-00001"]
    recs = _parse_all([out / "validation-00000-of-00001"])
    assert len(recs) == sum(1 for m in members if m.startswith("val/"))
    for r in recs:
        x = data.preprocessing.normalize(data.preprocessing.preprocess_for_eval(
            tf.constant(r["image/encoded"]), 24), "mean")
        expected = float(tf.reduce_mean(x[..., 0])) + np.arange(k)
        np.testing.assert_allclose(r["image/logit"], expected, rtol=1e-4, atol=1e-3)
        assert r["image/class/label"] >= 1
    ds = data.build_dataset(str(out), "validation", training=False, batch_size=8, image_size=24,
                            label_offset=1, num_classes=k, teacher_logits=True)
    labels = np.concatenate([y["label"].numpy() for _, y in ds])
    assert sorted(labels.tolist()) == sorted(int(r["image/class/label"]) - 1 for r in recs)


def test_label_offset_has_one_meaning_in_pipeline_train_and_evaluate(tmp_path, small_zip):
    """``label_offset=1``: records store class + 1 (ImageNet TFRecords with background 0), the
    teacher is 1001-style (K + 1 logits, background first). The pipeline yields the class
    index of each image's folder and the teacher's K class logits; the trainer's model and
    the evaluation's class check both count the K true classes."""
    from official import evaluate
    from official import train
    from official.config import RunConfig
    zpath, members = small_zip
    info = data.inspect_source(zpath)
    k = info.num_classes
    logits = {}
    with open(tmp_path / "logits.csv", "w") as f:
        for j, m in enumerate(sorted(members)):
            logits[m] = [100.0 * j + c for c in range(k)]   # class c of image j
            f.write(m + ",-50.0," + ",".join(repr(v) for v in logits[m]) + "\n")
    out = str(tmp_path / "tfr")
    bt.build(zpath, out, 1, teacher_logits=str(tmp_path / "logits.csv"), label_offset=1,
             progress=False, out=io.StringIO())
    recs = _parse_all([os.path.join(out, "validation-00000-of-00001")])
    assert recs and all(len(r["image/logit"]) == k + 1 for r in recs)
    for r in recs:   # stored: folder index + 1
        folder = r["image/filename"].decode().split("/")[1]
        assert r["image/class/label"] == info.class_names.index(folder) + 1
    out_info = data.inspect_source(out)
    assert out_info.num_classes == k and out_info.label_offset == 1

    ds = data.build_dataset(out, "validation", training=False, batch_size=3, image_size=24,
                            num_classes=k, label_offset=1, teacher_logits=True)
    got = [(int(lab), lg) for _, y in ds
           for lab, lg in zip(y["label"].numpy(), y["teacher_logits"].numpy())]
    assert len(got) == len(recs)
    for (label, lg), r in zip(got, recs):   # evaluation order = shard order
        name = r["image/filename"].decode()
        assert label == info.class_names.index(name.split("/")[1])
        np.testing.assert_allclose(lg, logits[name], rtol=1e-6)
    with pytest.raises(ValueError, match="written with label_offset 1"):
        data.build_dataset(out, "validation", training=False, batch_size=3, image_size=24,
                           num_classes=k)

    cfg = RunConfig(recipe="test")
    cfg.data.source, cfg.data.label_offset = out, 1
    cfg.optimization.batch_size, cfg.optimization.train_steps = 2, 1
    cfg.runtime.model_dir = str(tmp_path / "run")
    assert train.prepare_config(cfg).model.num_classes == k
    assert evaluate._check_source(out, k, 1).num_classes == k
    with pytest.raises(evaluate.EvaluationError, match=f"has {k} classes"):
        evaluate._check_source(out, k + 1, 1)
    # evaluating that run on image files (e.g. --corruption_dir output): labels from 0
    cfg.model.image_size = 24
    assert evaluate._check_source(zpath, k, 1).num_classes == k
    labels = [int(v) for _, y in evaluate._dataset(zpath, "val", cfg, 8, k) for v in y.numpy()]
    assert sorted(labels) == sorted(info.class_names.index(m.split("/")[1])
                                    for m in members if m.startswith("val/"))
