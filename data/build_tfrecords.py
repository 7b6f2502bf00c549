"""Writes ImageNet-format TFRecord shards from an image directory or zip (issue #3).

    python -m data.build_tfrecords --input DIR_OR_ZIP --output DIR --num_shards N \
        [--splits train,val] [--teacher SAVEDMODEL | --teacher_logits CSV] \
        [--bounding_boxes CSV] [--label_offset 0]

Input layouts are those of ``data.sources`` (``<split>/<class>/<image>`` in a directory or zip,
or one zip per split). Output, per split, ``<name>-00000-of-0000N`` with the keys of the paper's
``datasets/build_imagenet_data.py``: ``image/encoded`` (JPEG), ``image/height``, ``image/width``,
``image/colorspace`` ("RGB"), ``image/channels`` (3), ``image/format`` ("JPEG"),
``image/filename`` (relative path or member name), ``image/class/label`` (class index +
``--label_offset``), ``image/class/synset`` (class folder), ``image/class/text``,
``image/object/bbox/{xmin,ymin,xmax,ymax,label}`` (possibly empty) and ``image/logit`` (teacher
logits, when given). The split ``val`` is written as ``validation``; the other names are kept.
Also writes ``classes.csv`` (``index,name``: the class indices without ``--label_offset``, so
``data.inspect_source`` counts the true classes) and ``summary.json`` (with ``label_offset``,
which ``data.build_dataset`` checks). Bounding boxes are stored as the paper's builder does;
training does not use them (the original's training parser does not read them).

Like the paper, PNG (and other non-JPEG) images and CMYK JPEGs are re-encoded as RGB JPEG at
quality 100; grayscale JPEGs are kept (readers decode with ``channels=3``). Files that do not
decode are rejected and listed with the reason. The order is reproducible: records are sorted by
(class, name) and shuffled with a fixed seed (12345, as in the paper), then cut into contiguous
shards, so two runs write byte-identical files.

``--teacher_logits CSV``: one line per image, no header: the image's relative path (directory
input, e.g. ``train/n01440764/x.JPEG``) or member name (zip input), then K floats. A line whose
first field is only a file name matches by base name when that is unique. Every written image
must have a line (an error before anything is written otherwise).
``--teacher SAVEDMODEL``: runs the SavedModel's ``serving_default`` signature; a string input
receives the encoded bytes, a float input receives the eval-preprocessed image
(``--teacher_image_size``, ``--teacher_eval_preprocess``, ``--teacher_normalization``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys

import numpy as np
from tqdm import tqdm

from data import sources

EVAL_RENAME = {"val": "validation"}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_components(data: bytes):
    """Number of colour components in a JPEG's SOF header (4 = CMYK/YCCK), or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            return data[i + 9] if i + 9 < n else None
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def _feature_int(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _feature_float(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _feature_bytes(value):
    import tensorflow as tf
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_example(encoded, height, width, label, synset, text, filename, bboxes=(), logits=None):
    import tensorflow as tf
    bboxes = list(bboxes)
    feature = {
        "image/height": _feature_int([height]),
        "image/width": _feature_int([width]),
        "image/colorspace": _feature_bytes("RGB"),
        "image/channels": _feature_int([3]),
        "image/class/label": _feature_int([label]),
        "image/class/synset": _feature_bytes(synset),
        "image/class/text": _feature_bytes(text),
        "image/object/bbox/xmin": _feature_float([b[0] for b in bboxes]),
        "image/object/bbox/ymin": _feature_float([b[1] for b in bboxes]),
        "image/object/bbox/xmax": _feature_float([b[2] for b in bboxes]),
        "image/object/bbox/ymax": _feature_float([b[3] for b in bboxes]),
        "image/object/bbox/label": _feature_int([label] * len(bboxes)),
        "image/format": _feature_bytes("JPEG"),
        "image/filename": _feature_bytes(filename),
        "image/encoded": _feature_bytes(encoded),
    }
    if logits is not None:
        feature["image/logit"] = _feature_float(logits)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def clean_image(data: bytes):
    """Returns ``(jpeg_bytes, height, width, note)``; raises ValueError if it does not decode."""
    import tensorflow as tf
    from data import preprocessing

    reason = int(preprocessing.check_image_bytes(tf.constant(data)).numpy())
    if reason:
        raise ValueError(preprocessing.REASONS[reason])
    try:
        image = preprocessing.decode_image(tf.constant(data))
        height, width = int(image.shape[0]), int(image.shape[1])
    except tf.errors.OpError as e:
        raise ValueError("could not be decoded: " + str(e.message).splitlines()[0][:120]) from None
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    if is_jpeg and jpeg_components(data) != 4:
        return data, height, width, None
    note = "CMYK JPEG re-encoded as RGB JPEG" if is_jpeg else "re-encoded as JPEG"
    encoded = tf.io.encode_jpeg(image, format="rgb", quality=100).numpy()
    return encoded, height, width, note


def read_bboxes(path):
    """Paper format: ``<file name>,xmin,ymin,xmax,ymax`` (relative coordinates), many per file."""
    boxes = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 5:
                raise ValueError(f"{path}: bad bounding box line {row!r}")
            boxes.setdefault(row[0], []).append(tuple(float(v) for v in row[1:]))
    return boxes


def read_teacher_csv(path):
    logits = {}
    width = None
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            values = [float(v) for v in row[1:]]
            if width is None:
                width = len(values)
            if len(values) != width or not values:
                raise ValueError(f"{path}:{lineno}: expected {width} logits, got {len(values)}")
            if row[0] in logits:
                raise ValueError(f"{path}:{lineno}: duplicate entry {row[0]!r}")
            logits[row[0]] = values
    return logits


def _lookup(table, key, by_base):
    if key in table:
        return table[key]
    base = os.path.basename(key)
    if base in by_base and by_base[base] is not None:
        return table[by_base[base]]
    return None


class _Teacher:
    def __init__(self, path, image_size, eval_preprocess, normalization):
        import tensorflow as tf
        self.model = tf.saved_model.load(path)
        if "serving_default" not in self.model.signatures:
            raise ValueError(f"{path}: the SavedModel has no 'serving_default' signature")
        self.fn = self.model.signatures["serving_default"]
        args = self.fn.structured_input_signature[1]
        if len(args) != 1:
            raise ValueError(f"{path}: serving_default must take one input, takes {list(args)}")
        self.input_name, spec = next(iter(args.items()))
        self.takes_bytes = spec.dtype == tf.string
        self.image_size, self.eval_preprocess = image_size, eval_preprocess
        self.normalization = normalization

    def __call__(self, encoded_list):
        import tensorflow as tf
        from data import preprocessing
        if self.takes_bytes:
            x = tf.constant(encoded_list)
        else:
            x = tf.stack([preprocessing.preprocess_for_eval(tf.constant(b), self.image_size,
                                                             self.eval_preprocess)
                          for b in encoded_list])
            x = preprocessing.normalize(x, self.normalization)
        out = self.fn(**{self.input_name: x})
        out = out["logits"] if "logits" in out else next(iter(out.values()))
        return np.asarray(out, np.float32)


def list_input(path, splits=None):
    """[(split, class, key, read_fn)] and class names, in a reproducible order."""
    info = sources.inspect_source(path)
    if info.kind not in ("zip", "zipdir", "dir"):
        raise ValueError(f"{path}: input must be an image directory or zip (got {info.kind})")
    wanted = list(info.split_sizes) if not splits else splits
    for s in wanted:
        if s not in info.split_sizes:
            raise ValueError(f"split {s!r} not in {path}; splits: {sorted(info.split_sizes)}")
    out = {}
    for s in wanted:
        table = sources.record_table(path, s)
        out[s] = table
    return info, out


def build(input_path, output_dir, num_shards, splits=None, teacher=None, teacher_logits=None,
          bounding_boxes=None, label_offset=0, teacher_image_size=224,
          teacher_eval_preprocess="imagenet", teacher_normalization="mean", progress=True,
          seed=12345, out=sys.stdout):
    """Writes the shards; returns the summary dict (also written to ``summary.json``)."""
    import tensorflow as tf

    if num_shards < 1:
        raise ValueError("--num_shards must be >= 1")
    if teacher and teacher_logits:
        raise ValueError("use --teacher or --teacher_logits, not both")
    info, tables = list_input(input_path, splits)
    logit_table = read_teacher_csv(teacher_logits) if teacher_logits else None
    by_base = {}
    if logit_table is not None:
        for k in logit_table:
            b = os.path.basename(k)
            by_base[b] = None if b in by_base else k
    boxes = read_bboxes(bounding_boxes) if bounding_boxes else {}
    teacher_fn = (_Teacher(teacher, teacher_image_size, teacher_eval_preprocess,
                           teacher_normalization) if teacher else None)

    # Plan: reproducible order per split, and check teacher logits before writing anything.
    plans = {}
    for split, table in tables.items():
        order = sorted(range(len(table)), key=lambda i: (int(table.labels[i]), table.names[i]))
        random.Random(seed).shuffle(order)
        plans[split] = order
        if logit_table is not None:
            missing = [table.names[i] for i in order
                       if _lookup(logit_table, _key(table, i), by_base) is None]
            if missing:
                raise ValueError(f"--teacher_logits {teacher_logits}: no logits for "
                                 f"{len(missing)} image(s) of split {split!r}, e.g. "
                                 f"{missing[:3]}")
    os.makedirs(output_dir, exist_ok=True)
    reader_cache = {}
    summary = {"input": os.path.abspath(os.fspath(input_path)), "num_shards": num_shards,
               "label_offset": label_offset, "splits": {}}
    names = info.class_names
    for split, table in tables.items():
        out_name = EVAL_RENAME.get(split, split)
        order = plans[split]
        bounds = np.linspace(0, len(order), num_shards + 1).astype(int)
        written, rejected, notes = 0, [], []
        bar = tqdm(total=len(order), desc=f"{split} -> {out_name}", disable=not progress,
                   file=sys.stderr, unit="img")
        reader = _reader(table, reader_cache)
        for s in range(num_shards):
            fname = os.path.join(output_dir, f"{out_name}-{s:05d}-of-{num_shards:05d}")
            with tf.io.TFRecordWriter(fname) as writer:
                pending = []
                for i in order[bounds[s]:bounds[s + 1]]:
                    bar.update(1)
                    key = _key(table, i)
                    try:
                        raw = reader(i)
                        encoded, h, w, note = clean_image(raw)
                    except (ValueError, OSError) as e:
                        rejected.append((table.names[i], str(e)))
                        continue
                    if note:
                        notes.append((table.names[i], note))
                    label = int(table.labels[i])
                    cls = names[label]
                    logits = None
                    if logit_table is not None:
                        logits = _lookup(logit_table, key, by_base)
                    item = dict(encoded=encoded, height=h, width=w, label=label + label_offset,
                                synset=cls, text=cls, filename=key,
                                bboxes=boxes.get(os.path.basename(key), boxes.get(key, [])),
                                logits=logits)
                    pending.append(item)
                    if teacher_fn is None or len(pending) >= 32:
                        written += _flush(writer, pending, teacher_fn)
                written += _flush(writer, pending, teacher_fn)
        bar.close()
        summary["splits"][out_name] = {
            "source_split": split, "records": written, "shards": num_shards,
            "rejected": [{"name": n, "reason": r} for n, r in rejected],
            "converted": [{"name": n, "note": r} for n, r in notes]}
    with open(os.path.join(output_dir, "classes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "name"])
        for i, n in enumerate(names):
            w.writerow([i, n])
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    _print_summary(summary, output_dir, out)
    return summary


def _key(table, i):
    return table.paths[i] if table.kind != "file" else table.names[i]


def _reader(table, cache):
    if table.kind == "file":
        return lambda i: open(table.paths[i], "rb").read()
    key = tuple(table.files)
    if key not in cache:
        cache[key] = sources.ByteReader(table.files, member_names=table.paths)
    r = cache[key]
    if table.kind == "range":
        return lambda i: r.read_range(table.file_ids[i], table.offsets[i], table.lengths[i])
    return lambda i: r.read_member(table.file_ids[i], i)


def _flush(writer, pending, teacher_fn):
    if not pending:
        return 0
    if teacher_fn is not None:
        logits = teacher_fn([p["encoded"] for p in pending])
        for p, l in zip(pending, logits):
            p["logits"] = [float(v) for v in np.ravel(l)]
    for p in pending:
        writer.write(make_example(**p).SerializeToString())
    n = len(pending)
    pending.clear()
    return n


def _print_summary(summary, output_dir, out):
    print(f"wrote to {output_dir}:", file=out)
    for name, s in summary["splits"].items():
        print(f"  {name}: {s['records']} records in {s['shards']} shards "
              f"(from split {s['source_split']!r}); rejected {len(s['rejected'])}, "
              f"converted {len(s['converted'])}", file=out)
        for r in s["rejected"]:
            print(f"    rejected {r['name']}: {r['reason']}", file=out)
        for r in s["converted"]:
            print(f"    converted {r['name']}: {r['note']}", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m data.build_tfrecords", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="image directory, zip, or folder of zips")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--num_shards", type=int, required=True, help="shards per split")
    p.add_argument("--splits", default="", help="comma-separated splits (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--teacher", help="SavedModel directory for teacher logits")
    g.add_argument("--teacher_logits", help="CSV of teacher logits (see the module doc)")
    p.add_argument("--bounding_boxes", help="CSV: <file>,xmin,ymin,xmax,ymax (relative)")
    p.add_argument("--label_offset", type=int, default=0,
                   help="added to class indices (1 for the 1001-class background convention); "
                        "train and evaluate with the same --label_offset")
    p.add_argument("--teacher_image_size", type=int, default=224)
    p.add_argument("--teacher_eval_preprocess", default="imagenet")
    p.add_argument("--teacher_normalization", default="mean")
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    splits = [s for s in a.splits.split(",") if s] or None
    try:
        build(a.input, a.output, a.num_shards, splits=splits, teacher=a.teacher,
              teacher_logits=a.teacher_logits, bounding_boxes=a.bounding_boxes,
              label_offset=a.label_offset, teacher_image_size=a.teacher_image_size,
              teacher_eval_preprocess=a.teacher_eval_preprocess,
              teacher_normalization=a.teacher_normalization, progress=not a.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
