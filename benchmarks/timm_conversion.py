"""How close converted timm weights are: timm (PyTorch) logits vs this project's Keras model
loaded with ``models.build_model(arch, weights=FILE.safetensors)``, on real ImageNet JPEGs.

    python benchmarks/timm_conversion.py [--archs resnet18,...] [--images N] [--batch 8]

For every architecture both projects share (``models.timm_weights.TIMM_ARCHS``):

1. the JPEGs of ``$ASSEMBLE_DATA_DIR/imagenet-sample-images/images.zip`` (57 real ImageNet
   photos, 56x75 .. 2400x1600, 3 grayscale) go through this project's evaluation
   preprocessing at the weights' own settings (``models.timm_weights.pretrained_info``:
   224 or 256 px, crop 0.875 or 0.95, ``mean_std``); the same float tensors feed both
   networks, so the figures measure the conversion, not the preprocessing;
2. in a separate process (torch + timm only: importing timm after TensorFlow crashes with the
   CUDA torch build), ``timm.create_model(arch, pretrained=False)`` with random weights, its
   batch-norm statistics and affine parameters randomized (uniform: mean in [-0.5, 0.5], var
   in [0.5, 2], gamma in [0.5, 1.5], beta in [-0.2, 0.2]; timm's own init zeroes the last BN
   gamma of every block, which would hide half the network), eval mode, float32 CPU: logits
   and the state dict as ``.safetensors``;
3. here: ``models.build_model(arch, input_shape=(None, None, 3), weights=FILE)``, logits on
   the same tensors.

Printed per architecture: max and mean |logit difference|, the logit scale (max |logit|),
max difference relative to the scale, and top-1 agreement. Pretrained ImageNet weights
cannot be downloaded on the machine that wrote docs/results (no network), so the weights are
random; the mapping is the same for pretrained ones.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

_TIMM = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    import torch, timm
    from safetensors.torch import save_file
    torch.set_num_threads(int(sys.argv[3]))
    out, arch, batch = sys.argv[1], sys.argv[2], int(sys.argv[4])
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    net.eval()
    x = np.load(f"{out}/{arch}_images.npy")
    t0 = time.time()
    with torch.no_grad():
        logits = np.concatenate([net(torch.from_numpy(x[i:i + batch].transpose(0, 3, 1, 2).copy())).numpy()
                                 for i in range(0, len(x), batch)])
    np.save(f"{out}/{arch}_timm.npy", logits)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, f"{out}/{arch}.safetensors")
    print(json.dumps({"timm": timm.__version__, "torch": torch.__version__,
                      "timm_seconds": time.time() - t0}))
""")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    from models import timm_weights
    p.add_argument("--archs", default=",".join(timm_weights.TIMM_ARCHS))
    p.add_argument("--images", type=int, default=0, help="first N images (0: all 57)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    import tensorflow as tf
    import models
    from data import preprocessing as pp

    data_dir = os.environ.get("ASSEMBLE_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))
    z = zipfile.ZipFile(os.path.join(data_dir, "imagenet-sample-images", "images.zip"))
    names = sorted(n for n in z.namelist() if n.endswith(".JPEG"))
    if a.images:
        names = names[: a.images]
    raws = [z.read(n) for n in names]
    print(f"images: {len(raws)} real ImageNet JPEGs from imagenet-sample-images/images.zip")
    print(f"{'arch':<14s}{'eval':>12s}{'max|diff|':>12s}{'mean|diff|':>12s}{'max|logit|':>12s}"
          f"{'max rel':>10s}{'top1 agree':>12s}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    results = []
    with tempfile.TemporaryDirectory() as out:
        for arch in a.archs.split(","):
            pre = timm_weights.pretrained_info(arch)
            size, ep = pre["image_size"], pre["eval_preprocess"]
            x = np.stack([pp.normalize(pp.preprocess_for_eval(tf.constant(r), size, ep),
                                       "mean_std").numpy() for r in raws])
            np.save(os.path.join(out, f"{arch}_images.npy"), x)
            proc = subprocess.run([sys.executable, "-c", _TIMM, out, arch, str(a.threads),
                                   str(a.batch)], env=env, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:])
                raise SystemExit(f"timm failed for {arch}")
            versions = json.loads(proc.stdout.strip().splitlines()[-1])
            ref = np.load(os.path.join(out, f"{arch}_timm.npy"))
            t0 = time.time()
            model = models.build_model(arch, input_shape=(None, None, 3),
                                       weights=os.path.join(out, f"{arch}.safetensors"))
            ours = np.concatenate([np.asarray(model(x[i:i + a.batch], training=False))
                                   for i in range(0, len(x), a.batch)])
            diff = np.abs(ours - ref)
            scale = float(np.abs(ref).max())
            row = {"arch": arch, "image_size": size, "eval_preprocess": ep,
                   "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                   "logit_scale": scale, "max_rel_diff": float(diff.max() / scale),
                   "top1_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
                   "keras_seconds": time.time() - t0, **versions}
            results.append(row)
            print(f"{arch:<14s}{f'{size}/{ep}':>12s}{row['max_abs_diff']:>12.3g}"
                  f"{row['mean_abs_diff']:>12.3g}{scale:>12.3g}{row['max_rel_diff']:>10.2g}"
                  f"{row['top1_agreement']:>12.3f}", flush=True)
            os.remove(os.path.join(out, f"{arch}.safetensors"))
            del model
    for row in results:
        print("JSON " + json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
