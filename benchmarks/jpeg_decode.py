"""Where a JPEG decode's CPU time goes, and what the fused crop can save (the a/c bound).

    python benchmarks/jpeg_decode.py [--data DIR[,DIR...]] [--images 400] [--rounds 3]

``benchmarks/input_pipeline.py`` compares the fused ``decode_and_crop_jpeg`` training
pipeline (a) with decoding the whole image and then cropping (c). How far a/c can rise is
bounded by what a window decode saves over a whole decode, which this script measures: CPU ms
per image of ``tf.io.decode_jpeg`` / ``tf.image.decode_and_crop_jpeg`` (libjpeg-turbo) for
fixed windows (a 16x16 window at the top left: the fixed cost; at the bottom right: every row
above it skipped; top, bottom and left halves), the DCT-domain 1/2 scale (``ratio=2``) and the
paper's random windows (``data.preprocessing``'s crop sampling, seed per image), each with
libjpeg's fancy upsampling (TensorFlow's default) and without (``fancy_upscaling=False``).
Also the crop + resize + flip of the training preprocessing with the flip before the resize
(the paper's order) and after it (``data.preprocessing.preprocess_for_train``'s order).

Method: ``--images`` JPEGs of each data set's ``train.zip`` held in memory, one
``tf.function`` running a sequential ``tf.map_fn`` (``parallel_iterations=1``) over them,
TensorFlow on one thread (intra- and inter-op parallelism 1), process CPU time per image,
minimum over ``--rounds`` interleaved rounds, the same loop that only reads each JPEG's
header (``extract_jpeg_shape``) subtracted. Reference of the ratios, measured in the same
run: the whole-image decode with TensorFlow's defaults.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))

import tensorflow as tf  # noqa: E402

from data import preprocessing  # noqa: E402


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _jpegs(data_dir, n):
    path = pathlib.Path(data_dir) / "train.zip"
    with zipfile.ZipFile(path) as z:
        names = sorted(m for m in z.namelist() if m.lower().endswith((".jpg", ".jpeg")))
        n = min(n, len(names))
        step = len(names) // n   # spread over the classes (the zip is sorted by class)
        return [z.read(names[i * step]) for i in range(n)]


def _configs():
    """name -> function(jpeg bytes, shape [h, w], seed [2] int64) -> a tensor to keep."""
    def crop(window, fancy):
        return lambda b, hw, s: tf.image.decode_and_crop_jpeg(
            b, tf.stack(window(hw)), channels=3, fancy_upscaling=fancy)

    def paper_window(hw, s):
        return preprocessing._sample_crop_window(hw, None, s)

    out = {"header only (extract_jpeg_shape; subtracted)": None}
    for fancy in (True, False):
        tag = "" if fancy else ", fancy_upscaling=False"
        out[f"whole image{tag}"] = (lambda fancy=fancy: lambda b, hw, s: tf.io.decode_jpeg(
            b, channels=3, fancy_upscaling=fancy))()
        out[f"top-left 16x16 window{tag}"] = crop(lambda hw: [0, 0, 16, 16], fancy)
        out[f"bottom-right 16x16 window{tag}"] = crop(
            lambda hw: [hw[0] - 16, hw[1] - 16, 16, 16], fancy)
        out[f"top half{tag}"] = crop(lambda hw: [0, 0, hw[0] // 2, hw[1]], fancy)
        out[f"bottom half{tag}"] = crop(
            lambda hw: [hw[0] - hw[0] // 2, 0, hw[0] // 2, hw[1]], fancy)
        out[f"left half{tag}"] = crop(lambda hw: [0, 0, hw[0], hw[1] // 2], fancy)
        out[f"ratio=2 (1/2 scale in the DCT domain){tag}"] = (
            lambda fancy=fancy: lambda b, hw, s: tf.io.decode_jpeg(
                b, channels=3, ratio=2, fancy_upscaling=fancy))()
        out[f"the paper's random window{tag}"] = (
            lambda fancy=fancy: lambda b, hw, s: tf.image.decode_and_crop_jpeg(
                b, paper_window(hw, s), channels=3, fancy_upscaling=fancy))()
    out["window sampling only (no decode)"] = lambda b, hw, s: paper_window(hw, s)

    def train(flip_first):
        def fn(b, hw, s):
            image = tf.image.decode_and_crop_jpeg(b, paper_window(hw, s), channels=3)
            flip_seed = s + tf.constant([0x0F11, 0], tf.int64)
            if flip_first:   # the paper's order
                image = preprocessing.random_flip_left_right(image, flip_seed)
                return tf.image.resize(image, [224, 224])
            image = tf.image.resize(image, [224, 224])
            return preprocessing.random_flip_left_right(image, flip_seed)
        return fn
    out["paper window + flip + resize 224 (the paper's order)"] = train(True)
    out["paper window + resize 224 + flip (the pipeline's order)"] = train(False)
    return out


def run(path, a):
    blobs = tf.constant(_jpegs(path, a.images))
    n = int(blobs.shape[0])
    sizes = tf.map_fn(lambda b: tf.image.extract_jpeg_shape(b)[:2], blobs,
                      fn_output_signature=tf.int32).numpy()
    nbytes = sum(len(b) for b in blobs.numpy())
    seeds = tf.stack([tf.ones([n], tf.int64), tf.range(n, dtype=tf.int64)], 1)

    fns = {}
    for name, f in _configs().items():
        def one(args, f=f):
            b, s = args
            hw = tf.image.extract_jpeg_shape(b)[:2]
            if f is None:
                return tf.cast(hw[0], tf.float32)
            y = f(b, hw, s)
            return tf.cast(tf.reshape(y, [-1])[0], tf.float32)
        fns[name] = tf.function(lambda one=one: tf.map_fn(
            one, (blobs, seeds), fn_output_signature=tf.float32, parallel_iterations=1))
        fns[name]()                                   # trace and warm up
    best = {k: float("inf") for k in fns}
    load = [os.getloadavg()[0]]
    for _ in range(a.rounds):
        for name, fn in fns.items():
            c = _cpu_seconds()
            fn()
            best[name] = min(best[name], (_cpu_seconds() - c) / n * 1e3)
            load.append(os.getloadavg()[0])
    header = best.pop("header only (extract_jpeg_shape; subtracted)")
    ms = {k: v - header for k, v in best.items()}
    ref = ms["whole image"]
    print(f"\n# {os.path.basename(path.rstrip('/'))}: {n} JPEGs, {nbytes / n / 1024:.0f} KB on "
          f"average, height {sizes[:, 0].min()}-{sizes[:, 0].max()}, width "
          f"{sizes[:, 1].min()}-{sizes[:, 1].max()}; min of {a.rounds} rounds, one thread; "
          f"load average (1 min) {min(load):.1f}-{max(load):.1f}; header read {header:.3f} ms "
          f"subtracted")
    print(f"{'decode of':62s} {'CPU ms/img':>10s} {'x whole':>8s}")
    for name, v in ms.items():
        print(f"{name:62s} {v:10.3f} {v / ref:8.2f}")
    saved = ms["whole image"] - ms["the paper's random window"]
    print(f"fused crop saves {saved:.3f} ms of a {ref:.3f} ms whole decode per image "
          f"({saved / ref:.0%}) with the paper's windows")
    d = (ms["paper window + flip + resize 224 (the paper's order)"]
         - ms["paper window + resize 224 + flip (the pipeline's order)"])
    print(f"flip after the resize instead of before: {d:+.3f} CPU ms per image saved")
    sys.stdout.flush()


def main(argv=None):
    default = pathlib.Path(os.environ.get(
        "ASSEMBLE_DATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=f"{default / 'imagewoof2-320'},{default / 'oxford-flowers102'}",
                   help="comma-separated directories with train.zip, each measured")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    t0 = time.time()
    print(f"TF {tf.__version__}")
    for path in [d for d in a.data.split(",") if d]:
        run(path, a)
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
