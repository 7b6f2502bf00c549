"""CPU cost of AutoAugment / RandAugment per 224 px image, per op and per whole policy.

    python benchmarks/autoaugment_cost.py [--data DIR] [--images 64] [--passes 8] [--rounds 4]

What a user needs to decide whether to train with AutoAugment on the CPU input pipeline: how
many CPU milliseconds one image costs with each policy, which op dominates, and how that
compares with the training preprocessing every image pays anyway.

Method. ``--images`` training JPEGs of the data set (default Imagewoof-320's ``train.zip``)
are decoded and resized to 224 x 224 once, then ``floor``-ed: float32 holding integers, what
``data.build_dataset`` hands to ``data.autoaugment.distort_float_with_*``. Each configuration
is a ``tf.data`` map over those images repeated ``--passes`` times, run sequentially on one
thread (``map_parallelization``, autotuning and prefetch injection off, private thread pool
of 1, intra-op parallelism 1), with a fresh iterator whose first pass is not timed (so the
instantiation of the iterator and of the switch branches a long-lived training iterator
pays once is not counted). The figure is process
CPU time per element, the minimum over ``--rounds`` interleaved rounds, minus the same for
the reference map (``floor`` only): what the op adds to one image inside ``tf.data``.
The op arguments are those of a typical level (listed) and are tensors computed per element,
as in the policy (no constant folding).

Printed, all from this one run:
* per op: CPU ms per call and the ratio to the base training preprocessing (fused
  ``decode_and_crop_jpeg`` + resize + flip of the same JPEGs, measured the same way: the
  reference every training image pays);
* whole policies ``v0`` (the input pipeline's), ``imagenet`` and RandAugment (2, 9): CPU ms
  per image and ratio to the base preprocessing;
* for each AutoAugment policy, the expected calls of each op per image (from the policy
  table: sub-policy drawn uniformly, each op applied with its probability) times that op's
  measured cost: each op's share of the policy's cost, and the sum against the measured whole;
* ``v0`` with its two ``tf.switch_case`` left lowered to Switch/Merge (what
  ``data.autoaugment._switch`` avoids): the extra cost per image and per untaken branch.
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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data import autoaugment as aa  # noqa: E402
from data import preprocessing  # noqa: E402


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _options():
    o = tf.data.Options()
    o.experimental_optimization.map_parallelization = False
    o.experimental_optimization.inject_prefetch = False
    o.autotune.enabled = False
    o.threading.private_threadpool_size = 1
    o.threading.max_intra_op_parallelism = 1
    return o


def _jpegs(data_dir, n):
    path = pathlib.Path(data_dir) / "train.zip"
    with zipfile.ZipFile(path) as z:
        names = sorted(m for m in z.namelist() if m.lower().endswith((".jpg", ".jpeg")))
        if len(names) < n:
            raise SystemExit(f"{path}: {len(names)} JPEGs, fewer than --images {n}")
        step = len(names) // n   # spread over the classes (the zip is sorted by class)
        return [z.read(names[i * step]) for i in range(n)]


def _uniform(i, k=0):
    """A per-element uniform in [0, 1) (keeps the op arguments tensors, as in the policy)."""
    return tf.random.stateless_uniform([], seed=tf.stack([i, tf.constant(k, tf.int64)]))


# (label, function of (image, i)): op arguments at the level named in the label, on the
# policies' 0..10 scale (data.autoaugment level -> argument table).
def _op_table():
    def f(v):   # a float tensor equal to v, computed per element
        return lambda i: v + 0.0 * _uniform(i)
    return [
        ("Equalize", lambda x, i: aa.equalize(x)),
        ("AutoContrast", lambda x, i: aa.autocontrast(x)),
        ("Color (level 8: factor 1.54)", lambda x, i: aa.color(x, f(1.54)(i))),
        ("Contrast (level 8)", lambda x, i: aa.contrast(x, f(1.54)(i))),
        ("Sharpness (level 8)", lambda x, i: aa.sharpness(x, f(1.54)(i))),
        ("Brightness (level 8)", lambda x, i: aa.brightness(x, f(1.54)(i))),
        ("Rotate (level 8: 24 degrees)", lambda x, i: aa.rotate(x, f(24.0)(i))),
        ("ShearX (level 5: 0.15)", lambda x, i: aa.shear_x(x, f(0.15)(i))),
        ("ShearY (level 5: 0.15)", lambda x, i: aa.shear_y(x, f(0.15)(i))),
        ("TranslateX (level 4: 100 px)", lambda x, i: aa.translate_x(x, f(100.0)(i))),
        ("TranslateY (level 4: 100 px)", lambda x, i: aa.translate_y(x, f(100.0)(i))),
        ("Solarize (level 5: threshold 128)", lambda x, i: aa.solarize(x, f(128.0)(i))),
        ("SolarizeAdd (level 3: +33)", lambda x, i: aa.solarize_add(x, f(33.0)(i))),
        ("Posterize (level 6: 2 bits)", lambda x, i: aa.posterize(x, f(2.0)(i))),
        ("Invert", lambda x, i: aa.invert(x)),
    ]


def _op_key(label):
    return label.split(" ")[0]


def _expected_calls(policy):
    """Expected number of calls of each op per image: sub-policy uniform, op with its p."""
    calls = {}
    for sub in policy:
        for name, p, _ in sub:
            calls[name] = calls.get(name, 0.0) + p / len(policy)
    return calls


def main(argv=None):
    default = pathlib.Path(os.environ.get(
        "ASSEMBLE_DATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(default / "imagewoof2-320"),
                   help="directory with train.zip (JPEGs)")
    p.add_argument("--images", type=int, default=64, help="distinct source images")
    p.add_argument("--passes", type=int, default=8, help="each measurement maps images x passes")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds; minimum kept")
    p.add_argument("--only_ops", action="store_true", help="skip the whole policies")
    a = p.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    blobs = _jpegs(a.data, a.images)
    resized = np.stack([np.floor(tf.image.resize(tf.io.decode_jpeg(b, channels=3), [224, 224])
                                 .numpy()) for b in blobs]).astype(np.float32)
    n = a.images * a.passes

    def images_ds():
        return (tf.data.Dataset.from_tensor_slices(resized).repeat(a.passes).enumerate()
                .with_options(_options()))

    def jpeg_ds():
        return (tf.data.Dataset.from_tensor_slices(tf.constant(blobs)).repeat(a.passes)
                .enumerate().with_options(_options()))

    # name -> zero-argument builder of a dataset
    configs = {"reference: floor only": lambda: images_ds().map(lambda i, x: tf.floor(x))}

    def base(i, b):
        seed = tf.stack([tf.constant(1, tf.int64), i])
        return preprocessing.preprocess_for_train(b, 224, seed, fused=True, jpeg=True)
    configs["base preprocessing (decode_and_crop + resize + flip)"] = \
        lambda: jpeg_ds().map(base)
    configs["reference for base: bytes only"] = \
        lambda: jpeg_ds().map(lambda i, b: tf.strings.length(b))
    for label, fn in _op_table():
        configs[label] = (lambda fn=fn: images_ds().map(lambda i, x: fn(tf.floor(x), i)))
    policies = {}
    if not a.only_ops:
        for pol in ("v0", "imagenet"):
            policies[pol] = aa.get_policy(pol)
            configs[f"AutoAugment {pol}"] = (lambda pol=pol: images_ds().map(
                lambda i, x: aa.distort_float_with_autoaugment(
                    tf.floor(x), pol, tf.stack([i, tf.constant(5, tf.int64)]))))
        configs["RandAugment N=2, M=9"] = lambda: images_ds().map(
            lambda i, x: aa.distort_float_with_randaugment(
                tf.floor(x), 2, 9, tf.stack([i, tf.constant(5, tf.int64)])))

        def lowered_switch(index, branches, shape):   # what aa._switch avoids
            return tf.ensure_shape(tf.switch_case(index, branches), shape)

        def v0_lowered():
            kept = aa._switch
            aa._switch = lowered_switch
            try:
                return images_ds().map(lambda i, x: aa.distort_float_with_autoaugment(
                    tf.floor(x), "v0", tf.stack([i, tf.constant(5, tf.int64)])))
            finally:
                aa._switch = kept
        configs["AutoAugment v0, switches lowered"] = v0_lowered

    warm = a.images   # the first pass is not timed: iterator and branch instantiation
    if a.passes < 2:
        raise SystemExit("--passes must be >= 2 (the first pass is the warm-up)")

    def measure(build):
        it = iter(build())
        for _ in range(warm):
            next(it)
        c = _cpu_seconds()
        for _ in range(n - warm):
            next(it)
        return (_cpu_seconds() - c) / (n - warm) * 1e3

    best = {k: float("inf") for k in configs}
    t0, load = time.time(), [os.getloadavg()[0]]
    for r in range(a.rounds):
        for name, build in configs.items():
            best[name] = min(best[name], measure(build))
            load.append(os.getloadavg()[0])
        print(f"round {r + 1}/{a.rounds} done, {time.time() - t0:.0f} s", flush=True)

    ref = best["reference: floor only"]
    base_ms = best["base preprocessing (decode_and_crop + resize + flip)"] - \
        best["reference for base: bytes only"]
    print(f"\n# {os.path.basename(a.data.rstrip('/'))}: {a.images} images resized to 224 px, "
          f"{n - warm} timed calls per measurement after {warm}, min of {a.rounds} rounds, one thread; "
          f"TF {tf.__version__}; load average (1 min) {min(load):.1f}-{max(load):.1f}")
    print(f"reference map (floor only): {ref:.3f} CPU ms per element (subtracted below)")
    print(f"base training preprocessing of the JPEGs (fused decode_and_crop + resize + flip): "
          f"{base_ms:.3f} CPU ms per image (= 1.00, the reference of the ratios)")
    print(f"\n{'op (argument)':40s} {'CPU ms/call':>11s} {'x base':>7s}")
    op_ms = {}
    for label, _ in _op_table():
        ms = best[label] - ref
        op_ms[_op_key(label)] = ms
        print(f"{label:40s} {ms:11.3f} {ms / base_ms:7.2f}")
    if a.only_ops:
        return
    print(f"\n{'whole policy':40s} {'CPU ms/img':>11s} {'x base':>7s}")
    for name in ("AutoAugment v0", "AutoAugment imagenet", "RandAugment N=2, M=9",
                 "AutoAugment v0, switches lowered"):
        ms = best[name] - ref
        print(f"{name:40s} {ms:11.3f} {ms / base_ms:7.2f}")
    for pol, table in policies.items():
        calls = _expected_calls(table)
        parts = {k: v * op_ms[k] for k, v in calls.items() if k in op_ms}
        total = sum(parts.values())
        whole = best[f"AutoAugment {pol}"] - ref
        print(f"\npolicy {pol}: expected op calls per image {sum(calls.values()):.2f}; "
              f"sum of expected calls x op cost {total:.3f} ms vs measured whole "
              f"{whole:.3f} ms (the rest: random draw, switches, sub-policy tables)")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {k:14s} {calls[k]:5.2f} calls/img x {op_ms[k]:6.3f} ms = {v:6.3f} ms "
                  f"({v / total:5.1%} of the ops' cost)")
    names = sorted({nm for sub in policies["v0"] for nm, _, _ in sub})
    extra = best["AutoAugment v0, switches lowered"] - best["AutoAugment v0"]
    dead = 2 * len(names)   # two switches of 1 + len(names) branches, one taken in each
    print(f"\nlowered switches (v0, {len(names)} op branches + 'not applied' per switch, "
          f"2 switches): {extra:+.3f} CPU ms per image, {extra / dead:+.3f} ms per untaken "
          f"branch ({dead} per image); ratio lowered / not lowered "
          f"{(best['AutoAugment v0, switches lowered'] - ref) / (best['AutoAugment v0'] - ref):.2f}")


if __name__ == "__main__":
    main()
