"""This project's models under Keras 3 + JAX: inference and training-step images/s, input on the device.

    KERAS_BACKEND=jax python benchmarks/jax_throughput.py [--models resnet50,assemble_resnet50]
        [--variants assemble_resnet50:blur=shifts] [--dtypes float32,bfloat16]
        [--batch_size 256] [--image_size 224] [--steps 20] [--warmup 2] [--repeats 3]
        [--compile_threads 8] [--budget_s 0] [--json OUT.jsonl]

The GPU half of ``benchmarks/gpu_suite.sh`` (the other half is ``timm_throughput.py``, the
PyTorch reference, measured in the same run). Definitions, the same on both sides: images/s at
``--image_size``, batch ``--batch_size``, the input batch created once on the device; float32
(XLA's default precision: TF32 convolutions on Ampere/Hopper, as cuDNN's default in PyTorch)
and bfloat16 (Keras ``mixed_bfloat16``: float32 weights, bf16 compute, float32 logits);
inference = ``model.stateless_call(..., training=False)``; training step = forward + softmax
cross-entropy + backward + SGD momentum 0.9 (``optimizer.stateless_apply``), state donated.
Best of ``--repeats`` repeats of ``--steps`` steps after ``--warmup`` calls.

``benchmarks/model_throughput.py`` is not used for GPU figures: it feeds a NumPy batch to
``predict_on_batch``/``train_on_batch``, so every step copies the batch to the device.

Compilation: one build (a model in one dtype) at a time, in order of importance: every build
in the first of ``--dtypes`` (``--models`` order, variants after the first two models), then
the next dtype (variants last). While a build's programs compile (XLA releases the GIL), the
next build is traced in a background thread (Keras keeps its dtype policy per thread), which
hides most of the ~10 s of Python tracing per build on the GPU machine; timing starts only
once that thread is done, so nothing else runs while a program is timed. A time limit keeps
every build finished before it. Measured on an H200 (2026-11-26): compiling 6 programs in 8
threads took 140+ s per program (GPU autotuning of the convolutions does not run well
concurrently), while one at a time took 8-14 s per inference program, so the default is one
compile thread. The state is passed with strong dtypes, so the compiled train step takes
its own outputs back without a second compilation. Reported with each figure: the compiled
program's FLOPs per image as XLA's cost analysis counts them (``xla_cost_gflops_per_image``:
on GPUs it leaves out library calls such as cuDNN convolutions, so it is far below the
model's real FLOPs there and is recorded for reference only).

``--variants NAME:key=value[,key=value]`` measures a model with a changed implementation
detail beside the default build, e.g. ``assemble_resnet50:blur=depthwise`` or
``blur=shifts`` (``models.layers.blur_pool.BlurPool2D.implementation``), so what holds a model
back can be measured in the same run. ``--budget_s``: stop measuring (keeping what is done)
once this many seconds have passed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,resnet50d,skresnet50,assemble_resnet50")
    p.add_argument("--variants", default="", help="NAME:key=value[,key=value];... extra builds")
    p.add_argument("--dtypes", default="bfloat16,float32", help="measured in this order")
    p.add_argument("--modes", default="infer,train",
                   help="infer, train, train_aa (the train step with data.device_augment AutoAugment "
                        "--aa_policy inside it; train_aa / train is the GPU figure of issue 16)")
    p.add_argument("--aa_policy", default="imagenet")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile_threads", type=int, default=1,
                   help="programs compiled at once (see the module docstring: >1 was slower on a GPU)")
    p.add_argument("--budget_s", type=float, default=0.0, help="0: no limit")
    p.add_argument("--json", default="")
    p.add_argument("--skip_done", default="",
                   help="a JSON-lines file of an earlier run on this machine: builds measured there in "
                        "every mode are skipped (to finish a run that a time limit cut short)")
    return p.parse_args(argv)


VARIANT_KEYS = ("blur",)


def parse_variants(text):
    """``"a:blur=depthwise;b:blur=shifts"`` -> ``[("a", {"blur": "depthwise"}), ...]``."""
    out = []
    for item in [v for v in text.split(";") if v.strip()]:
        name, _, opts = item.partition(":")
        kv = {}
        for pair in [o for o in opts.split(",") if o]:
            k, _, v = pair.partition("=")
            if k not in VARIANT_KEYS:
                raise SystemExit(f"--variants {item!r}: unknown key {k!r} (known: {VARIANT_KEYS})")
            kv[k] = v
        out.append((name.strip(), kv))
    return out


def apply_variant(model, opts):
    from models.layers.blur_pool import BlurPool2D, IMPLEMENTATIONS
    n = 0
    if "blur" in opts:
        if opts["blur"] not in IMPLEMENTATIONS:
            raise SystemExit(f"blur={opts['blur']!r}: expected one of {IMPLEMENTATIONS}")
        for layer in _all_layers(model):
            if isinstance(layer, BlurPool2D):
                layer.implementation = opts["blur"]
                n += 1
        if not n:
            raise SystemExit("variant blur=...: the model has no BlurPool2D layer")
    return n


def _all_layers(model):
    seen = []
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        seen.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
        stack.extend(getattr(layer, "_layers", []) or [])
    return seen


def label(name, opts):
    return name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(opts.items())) + "]" if opts else "")


def trace_build(a, build, x, y, strong, jax, jnp, keras, models):
    """Builds one model under its dtype policy and lowers its inference and train programs.

    Safe in a background thread: Keras keeps the dtype policy in thread-local state."""
    dtype, name, opts = build
    jobs = []
    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    try:
        t0 = time.perf_counter()
        model = models.build_model(name, num_classes=a.num_classes,
                                   input_shape=(a.image_size, a.image_size, 3))
        apply_variant(model, opts)
        opt = keras.optimizers.SGD(0.01, momentum=0.9)
        opt.build(model.trainable_variables)
        tv = [strong(v.value) for v in model.trainable_variables]
        ntv = [strong(v.value) for v in model.non_trainable_variables]
        ov = [strong(v.value) for v in opt.variables]

        def infer(tv, ntv, x, model=model):
            return model.stateless_call(tv, ntv, x, training=False)[0]

        def loss_fn(tv, ntv, x, y, model=model):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1)), ntv

        def train_step(tv, ntv, ov, x, y, opt=opt, loss_fn=loss_fn):
            (loss, ntv), g = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x, y)
            tv, ov = opt.stateless_apply(ov, g, tv)
            return loss, tv, ntv, ov
        for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
            if mode == "infer":
                lowered = jax.jit(infer).lower(tv, ntv, x)
                args = (tv, ntv)
            elif mode == "train_aa":  # the train step with AutoAugment batched inside it (issue 16)
                from data import device_augment as da
                aug = da.DeviceAugment(autoaugment=a.aa_policy, output_normalization="mean")
                seed = jnp.array([0, 1], jnp.uint32)  # every op runs on every image: cost is seed-free

                def train_aa(tv, ntv, ov, x, y, aug=aug, seed=seed, train_step=train_step):
                    return train_step(tv, ntv, ov, aug(x * 64.0 + 128.0, seed), y)  # noise -> pixels
                lowered = jax.jit(train_aa, donate_argnums=(0, 1, 2)).lower(tv, ntv, ov, x, y)
                args = ([strong(v) for v in tv], [strong(v) for v in ntv], [strong(v) for v in ov])
            else:
                lowered = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(tv, ntv, ov, x, y)
                args = ([strong(v) for v in tv], [strong(v) for v in ntv], [strong(v) for v in ov])
            jobs.append(dict(name=label(name, opts), dtype=dtype, mode=mode, lowered=lowered, args=args,
                             params=int(model.count_params())))
        print(f"traced {label(name, opts)} {dtype} in {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        keras.config.set_dtype_policy("float32")
    return jobs


def compile_jobs(a, jobs):
    """Compiles the lowered programs ahead of time, in parallel threads."""
    t0 = time.perf_counter()

    def compile_job(job):
        t = time.perf_counter()
        job["compiled"] = job["lowered"].compile()
        job["compile_s"] = time.perf_counter() - t
        try:
            cost = job["compiled"].cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            job["flops"] = float(cost.get("flops", 0.0)) if cost else 0.0
        except Exception:  # noqa: BLE001 -- cost analysis is informative only
            job["flops"] = 0.0
        return job
    with concurrent.futures.ThreadPoolExecutor(max(1, a.compile_threads)) as pool:
        for job in pool.map(compile_job, jobs):
            print(f"compiled {job['name']} {job['dtype']} {job['mode']} in {job['compile_s']:.1f}s", flush=True)
    print(f"{len(jobs)} programs compiled in {time.perf_counter() - t0:.1f}s (wall)", flush=True)


def time_job(a, job, x, y, dev, jax, keras):
    """Best of ``repeats`` x ``steps`` calls of one compiled program; appends a JSON line."""
    bs = a.batch_size
    fn = job["compiled"]
    if job["mode"] == "infer":
        tv, ntv = job["args"]

        def run(state):
            return fn(tv, ntv, x), state
        state = None
    else:
        state = job["args"]

        def run(state):
            loss, tv, ntv, ov = fn(*state, x, y)
            return loss, (tv, ntv, ov)
    for _ in range(max(1, a.warmup)):
        out, state = run(state)
    out.block_until_ready()
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            out, state = run(state)
        out.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    ips = bs * a.steps / best
    flops_img = job["flops"] / bs if job["flops"] else 0.0
    r = dict(framework="keras-jax", impl="ours", model=job["name"], dtype=job["dtype"], mode=job["mode"],
             images_per_second=ips, batch_size=bs, image_size=a.image_size, steps=a.steps, repeats=a.repeats,
             device=str(dev.device_kind), params=job["params"], compile_s=job["compile_s"],
             xla_cost_gflops_per_image=flops_img / 1e9, jax=jax.__version__, keras=keras.__version__)
    print(f"ours {job['name']:32s} {job['dtype']:9s} {job['mode']:5s} {ips:10.1f} img/s  "
          f"(compiled in {job['compile_s']:.1f}s)", flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(r) + "\n")
    return r


def main(argv=None):
    a = parse(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np
    import models
    if keras.backend.backend() != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    t_start = time.perf_counter()
    dev = jax.devices()[0]
    bs, size = a.batch_size, a.image_size
    x = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(bs, size, size, 3)), jnp.float32), dev)
    y = jax.device_put(jnp.asarray(np.random.default_rng(1).integers(0, a.num_classes, bs), jnp.int32), dev)
    plain = [(m.strip(), {}) for m in a.models.split(",") if m.strip()]
    variants = parse_variants(a.variants)
    builds = plain[:2] + variants + plain[2:]  # variants after the first two
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]

    def strong(v):  # a non-weakly-typed copy, so compiled steps accept their own outputs
        return jnp.array(v, dtype=v.dtype)

    # builds in order of importance: every build in the first dtype, then the next dtype with
    # the variants last
    order = [(dtypes[0], n, o) for n, o in builds]
    order += [(d, n, o) for d in dtypes[1:] for n, o in plain + variants]
    from throughput_table import measured  # benchmarks/ is on sys.path when run as a script
    done = measured(a.skip_done, "ours", [m.strip() for m in a.modes.split(",") if m.strip()])
    if done:
        print(f"already measured in {a.skip_done}: {sorted(done)}", flush=True)
        order = [b for b in order if (label(b[1], b[2]), b[0]) not in done]
    results = []
    pool = concurrent.futures.ThreadPoolExecutor(1)  # traces the next build during a compile
    trace = lambda build: trace_build(a, build, x, y, strong, jax, jnp, keras, models)  # noqa: E731
    pending = pool.submit(trace, order[0]) if order else None
    for i, build in enumerate(order):
        jobs = pending.result()
        pending = None
        if a.budget_s and time.perf_counter() - t_start > a.budget_s:
            print(f"budget of {a.budget_s:.0f}s spent: skipping "
                  f"{[b[0] + ' ' + label(b[1], b[2]) for b in order[i:]]}", flush=True)
            break
        if i + 1 < len(order):
            pending = pool.submit(trace, order[i + 1])
        compile_jobs(a, jobs)
        if pending is not None:
            pending.exception()  # wait: nothing else runs while a program is timed
        for job in jobs:
            results.append(time_job(a, job, x, y, dev, jax, keras))
            job["compiled"] = job["lowered"] = job["args"] = None
    pool.shutdown(wait=True)
    assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None, "TensorFlow was imported"
    print(f"device {dev.device_kind}; jax {jax.__version__}, keras {keras.__version__}; "
          f"total {time.perf_counter() - t_start:.0f}s")
    return results


if __name__ == "__main__":
    main()
