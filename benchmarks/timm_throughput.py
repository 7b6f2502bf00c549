"""PyTorch/timm reference throughput: inference and training-step images/s of timm models.

    python benchmarks/timm_throughput.py [--models resnet50,resnet50d,skresnet50d]
        [--batch_size 256] [--image_size 224] [--dtypes float32,bfloat16] [--steps 20]
        [--warmup 5] [--repeats 3] [--compile] [--device cuda|cpu] [--json OUT.jsonl]

The reference that ``benchmarks/gpu_suite.sh`` compares the project's Keras/JAX models with.
Set-up, as timm's own ``benchmark.py`` does it: randomly initialized models (no download),
``channels_last`` memory format for the model and the input, the input batch created once on
the device, ``bfloat16`` through ``torch.autocast`` (weights stay float32, as Keras'
``mixed_bfloat16`` policy), ``float32`` with PyTorch's defaults (cuDNN may use TF32 for
convolutions on Ampere/Hopper; XLA does the same for JAX's default precision). Inference:
``model.eval()`` under ``torch.inference_mode()``; training step: ``model.train()``, forward,
cross-entropy, backward, SGD (momentum 0.9) step, ``zero_grad(set_to_none=True)``.
``--compile`` wraps the model in ``torch.compile`` (mode "max-autotune-no-cudagraphs" is not
used: the default mode, compilation time not counted). Every measurement is repeated
``--repeats`` times and the best repeat is reported (least disturbed), timed with
``torch.cuda.synchronize()``.

Output: a table, and with ``--json`` one JSON line per (model, dtype, mode) with
``images_per_second``. Does not import TensorFlow or Keras.
"""
from __future__ import annotations

import argparse
import json
import platform
import time


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet50,resnet50d,skresnet50d")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--modes", default="infer,train")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--json", default="", help="append one JSON line per measurement here")
    p.add_argument("--skip_done", default="",
                   help="a JSON-lines file of an earlier run on this machine: (model, dtype) measured "
                        "there in every mode, with the same --compile, are skipped")
    return p.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    import torch
    import timm

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    results = []
    from throughput_table import measured  # benchmarks/ is on sys.path when run as a script
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    done = measured(a.skip_done, "timm", modes, a.compile)
    if done:
        print(f"already measured in {a.skip_done}: {sorted(done)}", flush=True)
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        for dtype in [d.strip() for d in a.dtypes.split(",") if d.strip()]:
            if (name, dtype) in done:
                continue
            amp = dtype in ("bfloat16", "bf16", "mixed_bfloat16")
            model = timm.create_model(name, pretrained=False, num_classes=a.num_classes)
            model = model.to(device).to(memory_format=torch.channels_last)
            fn = torch.compile(model) if a.compile else model
            x = torch.randn(a.batch_size, 3, a.image_size, a.image_size, device=device)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, a.num_classes, (a.batch_size,), device=device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss_fn = torch.nn.CrossEntropyLoss()

            def autocast():
                return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

            def infer():
                with torch.inference_mode(), autocast():
                    return fn(x)

            def train():
                with autocast():
                    loss = loss_fn(fn(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss

            nparams = sum(p.numel() for p in model.parameters())
            for mode in modes:
                step = infer if mode == "infer" else train
                model.train(mode == "train")
                t0 = time.perf_counter()
                for _ in range(a.warmup):
                    step()
                sync()
                warm_s = time.perf_counter() - t0
                best = float("inf")
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    for _ in range(a.steps):
                        step()
                    sync()
                    best = min(best, time.perf_counter() - t0)
                ips = a.batch_size * a.steps / best
                r = dict(framework="pytorch", impl="timm", model=name, dtype=dtype, mode=mode,
                         images_per_second=ips, batch_size=a.batch_size, image_size=a.image_size,
                         steps=a.steps, repeats=a.repeats, compile=a.compile, device=dev_name,
                         params=nparams, warmup_s=warm_s, torch=torch.__version__, timm=timm.__version__)
                results.append(r)
                print(f"timm {name:14s} {dtype:9s} {mode:5s} {ips:10.1f} img/s  (warm-up {warm_s:.1f}s)",
                      flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
            del model, fn, opt
            if cuda:
                torch.cuda.empty_cache()
    print(f"device: {dev_name}; batch {a.batch_size}, {a.image_size}px, channels_last, "
          f"compile={a.compile}, torch {torch.__version__}, timm {timm.__version__}")
    return results


if __name__ == "__main__":
    main()
