"""Training images/s with AutoAugment inside the training step (device) against AutoAugment in
``tf.data`` on the host, the same trainer step otherwise (issue 16).

    python benchmarks/device_augment.py [--data DIR] [--policy imagenet] [--image_size 96]
        [--batch_size 32] [--steps 15] [--warmup 3] [--repeats 2] [--model resnet18]
        [--width 16] [--jit_compile] [--modes host,device,none]

Three trainer configurations, each built with the trainer's own code (``official.train``
``prepare_config`` / ``make_optimizer``, ``official.train_backends.TFBackend``: its
``tf.data`` input and its ``tf.function`` step), measured in one process, interleaved, best of
``--repeats`` rounds of ``--steps`` steps after ``--warmup`` steps:

* ``host``:   ``--autoaugment=POLICY`` (``--augment_on=host``, the default): ``tf.data``
  decodes, crops, flips, runs AutoAugment per image (``data.autoaugment``) and normalizes;
* ``device``: ``--autoaugment=POLICY --augment_on=device``: ``tf.data`` decodes, crops and
  flips; AutoAugment and the normalization run batched in the step
  (``data.device_augment.DeviceAugment``);
* ``none``:   no AutoAugment (the rate the GPU target of the issue is stated against:
  device AutoAugment >= 0.9 of it).

Printed: images/s of each (wall clock: input pipeline and step overlap as in training; the
prefetching ``tf.data`` runs on the same cores as the step on a CPU), the ratios
``device / host`` (the issue's CPU figure), ``device / none`` and ``host / none``, and the
augmentation alone: ``DeviceAugment`` in a ``tf.function`` on a fixed batch, and the host
pipeline's batches with and without AutoAugment (no step), images/s each.

Data: ``--data`` (default ``$ASSEMBLE_DATA_DIR/imagenette2-224``, 224 px JPEGs). The model is
small (``--model resnet18 --width 16`` at ``--image_size 96``) so a run takes a few minutes on
two cores; the step's share of the time, and so every ratio, depends on that choice.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))


def parse(argv=None):
    default = pathlib.Path(os.environ.get("ASSEMBLE_DATA_DIR", _REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default / "imagenette2-224"))
    p.add_argument("--policy", default="imagenet")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--jit_compile", action="store_true", help="XLA-compile the step (--jit_compile)")
    p.add_argument("--modes", default="host,device,none")
    return p.parse_args(argv)


def build(args, mode, model_dir):
    """(step_fn, batches) of the trainer for one mode."""
    from official import checkpoints as ckpt_lib
    from official import train
    from official.config import RunConfig
    from official.train_backends import TFBackend
    cfg = RunConfig(recipe="bench_device_augment")
    cfg.model.name = args.model
    cfg.model.overrides = {"width": args.width}
    cfg.model.image_size = args.image_size
    cfg.data.source = args.data
    cfg.data.autoaugment = args.policy if mode in ("host", "device") else None
    cfg.data.augment_on = "device" if mode == "device" else "host"
    cfg.optimization.batch_size = args.batch_size
    cfg.optimization.train_steps = 10 ** 6
    cfg.optimization.warmup_epochs = 0
    cfg.optimization.jit_compile = bool(args.jit_compile)
    cfg.runtime.model_dir = model_dir
    cfg = train.prepare_config(cfg)
    backend = TFBackend(cfg)
    model = ckpt_lib.build_model_from_config(cfg)
    optimizer, _ = train.make_optimizer(cfg, model, cfg.steps_per_epoch(), cfg.total_steps())
    optimizer.build(model.trainable_variables)
    step_fn = backend.make_train_step(model, optimizer, None, None, None)
    return step_fn, backend.train_batches(0), cfg


def time_steps(step_fn, batches, start, n):
    t0 = time.perf_counter()
    for i in range(n):
        m = step_fn(batches, start + i)
    assert m["loss"] == m["loss"], "non-finite loss"
    return n / (time.perf_counter() - t0)


def main(argv=None):
    args = parse(argv)
    import data
    data.use_pooling_cpu_allocator(quiet=True)  # the trainer's default (--host_allocator=bfc)
    import numpy as np
    import tensorflow as tf
    import keras
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"TF {tf.__version__}, Keras {keras.__version__} ({keras.backend.backend()}), "
          f"{os.cpu_count()} CPUs; data {args.data}; {args.model} width {args.width} at "
          f"{args.image_size} px, batch {args.batch_size}; policy {args.policy}; "
          f"jit_compile={args.jit_compile}; {args.steps} steps x {args.repeats} rounds after "
          f"{args.warmup} warm-up steps", flush=True)
    tmp = tempfile.mkdtemp(prefix="bench_device_augment_")
    built, pos = {}, {}
    for mode in modes:
        t0 = time.perf_counter()
        step_fn, batches, cfg = build(args, mode, os.path.join(tmp, mode))
        time_steps(step_fn, batches, 0, args.warmup)  # trace + first steps
        built[mode], pos[mode] = (step_fn, batches), args.warmup
        print(f"built {mode}: {time.perf_counter() - t0:.1f} s (incl. tracing and {args.warmup} "
              f"warm-up steps)", flush=True)
    best = {m: 0.0 for m in modes}
    for r in range(args.repeats):
        for mode in modes:
            step_fn, batches = built[mode]
            rate = time_steps(step_fn, batches, pos[mode], args.steps) * args.batch_size
            pos[mode] += args.steps
            best[mode] = max(best[mode], rate)
            print(f"round {r + 1} {mode:>6}: {rate:8.1f} img/s", flush=True)
    print("\nbest of rounds (training images/s):")
    for mode in modes:
        print(f"  {mode:>6}: {best[mode]:8.1f}")
    if "host" in best and "device" in best:
        print(f"device / host  = {best['device'] / best['host']:.3f}   (device AutoAugment in the step "
              "vs host tf.data AutoAugment; > 1: the device path is faster here)")
    if "none" in best:
        for mode in ("device", "host"):
            if mode in best:
                print(f"{mode} / none = {best[mode] / best['none']:.3f}   ({mode} AutoAugment vs no "
                      "AutoAugment" + ("; the issue's GPU target: >= 0.9" if mode == "device" else "") + ")")

    # the augmentation alone
    from data import device_augment as da
    x = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3))
    x = tf.constant(x.astype("float32"))
    aug = da.DeviceAugment(autoaugment=args.policy, output_normalization="mean")
    fn = tf.function(lambda im, s: aug(im, s), jit_compile=bool(args.jit_compile))
    fn(x, tf.constant([0, 0], tf.int64)).numpy()
    rates = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        for i in range(args.steps):
            fn(x, tf.constant([0, i + 1], tf.int64)).numpy()
        rates.append(args.steps * args.batch_size / (time.perf_counter() - t0))
    print(f"\naugmentation alone: DeviceAugment({args.policy}) in a tf.function on a fixed batch: "
          f"{max(rates):.1f} img/s")
    for mode in ("host", "none"):
        if mode not in built:
            continue
        _, batches = built[mode]
        rates = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.steps):
                next(batches)
            rates.append(args.steps * args.batch_size / (time.perf_counter() - t0))
        print(f"host tf.data batches alone ({'with' if mode == 'host' else 'without'} AutoAugment, "
              f"no step): {max(rates):.1f} img/s")


if __name__ == "__main__":
    main()
