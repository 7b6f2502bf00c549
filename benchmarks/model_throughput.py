"""Model throughput: inference and training-step images/s, all models in one run.

    python benchmarks/model_throughput.py [--batch_size=32] [--image_size=224] [--steps=10]
        [--warmup=2] [--repeats=3] [--models=resnet50,assemble_resnet50,keras_resnet50]
        [--dtype=float32|mixed_bfloat16|mixed_float16] [--jit_compile=auto|true|false]
    KERAS_BACKEND=jax python benchmarks/model_throughput.py ...

``keras_resnet50`` is ``keras.applications.ResNet50(weights=None, classifier_activation=None)``,
the reference measured in the same run. Prints images/s per model and the ratios
``ours/keras.applications`` (resnet50 / keras_resnet50) and ``assemble/resnet50``
(targets: >= 1.0 and, for inference, >= 0.70).

Backend-neutral: inference is ``model.predict_on_batch`` (a compiled predict function under
every backend), a training step is ``model.train_on_batch`` after ``model.compile`` with SGD
(momentum 0.9) and sparse softmax cross-entropy on logits. Every measurement is repeated
``--repeats`` times, models interleaved, and the best (least disturbed) repeat is reported:
on a shared machine the minimum time is the most reproducible statistic.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("image_size", 224, "Input size S (S x S x 3).")
flags.DEFINE_integer("steps", 10, "Timed steps per repeat.")
flags.DEFINE_integer("warmup", 2, "Untimed steps (compilation) before timing.")
flags.DEFINE_integer("repeats", 3, "Repeats (interleaved over models); the best is reported.")
flags.DEFINE_list("models", ["keras_resnet50", "resnet50", "assemble_resnet50"],
                  "Registered model names and/or keras_resnet50.")
flags.DEFINE_enum("dtype", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Global dtype policy.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "model.compile jit_compile.")
flags.DEFINE_boolean("train", True, "Also measure training steps.")
flags.DEFINE_integer("num_classes", 1000, "Classes.")
flags.DEFINE_enum("host_allocator", "bfc", ["bfc", "default"],
                  "TensorFlow's host (CPU) allocator, as the trainer's --host_allocator: 'bfc' "
                  "(TF_CPU_ALLOCATOR_USE_BFC=true, the trainer's default) or TensorFlow's default.")


def build(name, input_shape, num_classes):
    import keras
    if name == "keras_resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=input_shape,
                                           classes=num_classes, classifier_activation=None)
    import models
    return models.build_model(name, num_classes=num_classes, input_shape=input_shape)


def main(argv):
    del argv
    if FLAGS.host_allocator == "bfc":   # before TensorFlow starts (an environment value wins)
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    import keras
    import numpy as np

    keras.config.set_dtype_policy(FLAGS.dtype)
    jit = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    s, b = FLAGS.image_size, FLAGS.batch_size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, s, s, 3)).astype("float32")
    y = rng.integers(0, FLAGS.num_classes, size=(b,)).astype("int32")

    built = {}
    for name in FLAGS.models:
        t0 = time.perf_counter()
        model = build(name, (s, s, 3), FLAGS.num_classes)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        for _ in range(FLAGS.warmup):
            model.predict_on_batch(x)
            if FLAGS.train:
                model.train_on_batch(x, y)
        built[name] = model
        print(f"built+warmed {name} ({model.count_params():,} params) in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)

    best = {(n, k): float("inf") for n in built for k in ("infer", "train")}
    for r in range(FLAGS.repeats):
        for name, model in built.items():
            t0 = time.perf_counter()
            for _ in range(FLAGS.steps):
                out = model.predict_on_batch(x)
            np.asarray(out)
            best[(name, "infer")] = min(best[(name, "infer")], time.perf_counter() - t0)
            if FLAGS.train:
                t0 = time.perf_counter()
                for _ in range(FLAGS.steps):
                    logs = model.train_on_batch(x, y, return_dict=True)
                float(logs["loss"])
                best[(name, "train")] = min(best[(name, "train")], time.perf_counter() - t0)
            print(f"repeat {r + 1}/{FLAGS.repeats} {name}: infer "
                  f"{b * FLAGS.steps / best[(name, 'infer')]:.1f} img/s"
                  + (f", train {b * FLAGS.steps / best[(name, 'train')]:.1f} img/s"
                     if FLAGS.train else ""), flush=True)

    ips = {k: b * FLAGS.steps / v for k, v in best.items() if v != float("inf")}
    print(f"\nbackend={keras.backend.backend()} dtype={FLAGS.dtype} jit_compile={FLAGS.jit_compile} "
          f"batch={b} size={s} steps={FLAGS.steps} warmup={FLAGS.warmup} repeats={FLAGS.repeats} "
          f"TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC', '(unset)')}")
    print(f"{'model':22s} {'infer img/s':>12s} {'train img/s':>12s}")
    for name in built:
        train = f"{ips[(name, 'train')]:12.1f}" if (name, "train") in ips else f"{'-':>12s}"
        print(f"{name:22s} {ips[(name, 'infer')]:12.1f} {train}")

    def ratio(a, c, kind):
        if (a, kind) in ips and (c, kind) in ips:
            print(f"ratio {a}/{c} {kind}: {ips[(a, kind)] / ips[(c, kind)]:.3f}")
    for kind in ("infer", "train"):
        ratio("resnet50", "keras_resnet50", kind)
        ratio("assemble_resnet50", "resnet50", kind)
    return 0


if __name__ == "__main__":
    app.run(main)
